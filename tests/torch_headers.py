"""The C++ headers of another torch release, for compile-only tests (C++20 against torch 2.14,
CUDA sources against a CUDA build of torch).

pip takes the wheel from this machine's local disk (`pip download --no-deps torch==2.14.1`:
the CUDA 13.0 build, about 550 MB); only `torch/include` is extracted, once, into a cache
folder outside the checkout (HIENET_TEST_CACHE, default ~/.cache/hienet-tests).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("HIENET_TEST_CACHE", Path.home() / ".cache" / "hienet-tests"))


def torch_include(version: str = "2.14.1") -> tuple[Path | None, str]:
    """(include folder, "") for torch `version`, or (None, why not)."""
    target = CACHE / f"torch-{version}-include"
    marker = target / ".complete"
    if marker.is_file():
        return target / "torch" / "include", ""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        run = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
             f"torch=={version}", "-d", tmp],
            capture_output=True, text=True,
        )
        wheels = list(Path(tmp).glob("torch-*.whl"))
        if run.returncode != 0 or not wheels:
            tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no wheel"]
            return None, f"pip download torch=={version} failed: {tail[0]}"
        with zipfile.ZipFile(wheels[0]) as wheel:
            names = [n for n in wheel.namelist() if n.startswith("torch/include/")]
            if not names:
                return None, f"{wheels[0].name} has no torch/include"
            wheel.extractall(target, names)
    marker.write_text(version + "\n")
    return target / "torch" / "include", ""


def header_flags(include: Path) -> list[str]:
    """-I flags for code that includes <torch/...> and <ATen/...>."""
    return [f"-I{include}", f"-I{include / 'torch' / 'csrc' / 'api' / 'include'}"]
