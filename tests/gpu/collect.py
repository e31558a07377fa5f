"""figures.json of tests/gpu/run.sh: the machine, each stage's outcome, every CUDA test's
outcome and the GPU benchmark's figures, rewritten (atomically) after every stage so that a
run cut short still reports what it did.

    python tests/gpu/collect.py OUT machine [--dry-run]
    python tests/gpu/collect.py OUT stage NAME RC SECONDS [BOX]
    python tests/gpu/collect.py OUT tests JUNIT_XML
    python tests/gpu/collect.py OUT bench BENCH_JSON

Only the standard library and (for `machine`) torch: it runs before anything is installed.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

FIGURES = "figures.json"


def load(out: Path) -> dict:
    path = out / FIGURES
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


def save(out: Path, figures: dict) -> None:
    tmp = out / (FIGURES + ".tmp")
    tmp.write_text(json.dumps(figures, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, out / FIGURES)


def machine(dry_run: bool) -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "dry_run": dry_run}
    try:
        import torch

        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                        compute_capability=f"{p.major}.{p.minor}", gpus=torch.cuda.device_count())
    except Exception as err:    # a broken torch is a finding too
        info["torch_error"] = str(err)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if smi.returncode == 0:
            info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=20)
        info["nvcc"] = nvcc.stdout.strip().splitlines()[-1] if nvcc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        info["nvcc"] = None
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    info["git"] = git.stdout.strip() or None
    return info


def stage(name: str, rc: int, seconds: float, box: float | None) -> dict:
    if rc == 0:
        status = "ok"
    elif rc in (124, 137):
        status = f"timed out after {box:.0f} s" if box else "timed out"
    elif rc == 77:
        status = "skipped"
    else:
        status = f"failed (exit {rc})"
    return {"status": status, "rc": rc, "seconds": round(seconds, 1), "box": box}


def tests(junit: Path) -> dict:
    """{'counts': {...}, 'results': {test id: outcome (+ message)}} from pytest's JUnit XML."""
    root = ET.parse(junit).getroot()
    results, counts = {}, {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, message = "passed", None
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                message = (child.get("message") or child.text or "").strip().splitlines()[:1]
                message = message[0][:300] if message else None
                break
        counts[outcome] += 1
        results[name] = {"outcome": outcome, "seconds": float(case.get("time", 0.0))}
        if message:
            results[name]["message"] = message
    return {"counts": counts, "results": results}


def main(argv: list[str]) -> int:
    out, command, rest = Path(argv[0]), argv[1], argv[2:]
    out.mkdir(parents=True, exist_ok=True)
    figures = load(out)
    if command == "machine":
        figures["machine"] = machine("--dry-run" in rest)
    elif command == "stage":
        name, rc, seconds = rest[0], int(rest[1]), float(rest[2])
        box = float(rest[3]) if len(rest) > 3 else None
        figures.setdefault("stages", {})[name] = stage(name, rc, seconds, box)
    elif command == "tests":
        figures["tests"] = tests(Path(rest[0])) if Path(rest[0]).is_file() else {"error": f"no {rest[0]}"}
    elif command == "bench":
        path = Path(rest[0])
        figures["benchmark"] = json.loads(path.read_text()) if path.is_file() else {"error": f"no {path}"}
    else:
        print(f"collect.py: unknown command {command!r}", file=sys.stderr)
        return 2
    save(out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
