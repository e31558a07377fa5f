"""tests/gpu/run.sh, the one call a session with a GPU makes (tests/gpu/README.md), run here in
its dry-run mode so that it cannot rot: the same stages on the CPU (the carried wheels
installed into a temporary prefix when .whl/ holds them, CMake configured, the CUDA tests
rehearsed on the CPU, the GPU benchmark at tiny sizes) and its figures.json."""
import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "gpu" / "run.sh"


def test_dry_run_writes_every_figure(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(out), "--dry-run", "--budget", "300"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads((out / "figures.json").read_text())
    assert figures["machine"]["dry_run"] is True and figures["machine"]["torch"]
    stages = figures["stages"]
    wheels = list((REPO / ".whl").glob("*.whl"))
    assert stages["install"]["status"] == ("ok" if wheels else "skipped"), stages["install"]
    for name in ("build", "tests", "bench"):
        assert stages[name]["status"] == "ok", (name, stages[name], (out / f"{name}.log").read_text()[-2000:])

    tests = figures["tests"]
    assert tests["counts"]["failed"] == 0 and tests["counts"]["error"] == 0
    rehearsed = [name for name in tests["results"] if "test_cuda_step" in name]
    assert len(rehearsed) >= 15 and all(tests["results"][n]["outcome"] == "passed" for n in rehearsed)

    bench = figures["benchmark"]
    assert bench["machine"]["device"] == "cpu"
    kinds = {(r["model"], r["kernel"], r["step"]) for r in bench["rows"] if r["status"] == "ok"}
    assert kinds == {(m, k, s) for m in ("si-demo", "hienet-v3") for k, s in
                     (("fused", "device"), ("e3nn", "device"), ("fused", "host"))}
    assert all(r["us_per_atom_step"] > 0 for r in bench["rows"] if r["status"] == "ok")
    assert {"fused_speedup_over_e3nn", "lean_speedup_over_host_step"} <= set(bench["ratios"][0])
    assert bench["largest_v3"]["atoms"] >= 64 and bench["largest_v3"]["probes"]
    assert set(bench["profiles"]) == {"si-demo", "hienet-v3"}
    assert bench["openequivariance"]["status"] == "unavailable"
    assert "hienet" in (out / "profile.txt").read_text()

    # what a device call returns: at most 8 files, plain names, one folder
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files), files
    assert all(p.is_file() for p in out.iterdir())


@pytest.mark.parametrize("args, message", [
    ([], "--out DIR is required"),
    (["--out", "x", "--budget", "ten"], "--budget must be whole seconds"),
    (["--out", "x", "--stages", "install deploy"], "unknown stage 'deploy'"),
    (["--out", "x", "--fast"], "unknown argument '--fast'"),
])
def test_bad_arguments_are_named(tmp_path, args, message):
    proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr
