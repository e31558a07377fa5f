"""hienet-config (issue 17): what a build needs, the same as torch and hienet say, without
importing torch."""
import subprocess
import sys
from pathlib import Path

import pytest

import hienet
from hienet.plugin_path import plugin_dir

SCRIPT = Path(sys.executable).parent / "hienet-config"


def config(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "hienet.config", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_answers_match_torch_and_hienet():
    import torch
    import torch.utils

    assert config("--cmake-prefix") == torch.utils.cmake_prefix_path
    assert (Path(config("--cmake-prefix")) / "Torch" / "TorchConfig.cmake").is_file()
    assert config("--torch-version") == torch.__version__
    assert config("--cuda") == (torch.version.cuda or "none")
    assert config("--version") == hienet.__version__
    assert config("--plugin-dir") == plugin_dir()
    summary = config()
    for value in (hienet.__version__, torch.__version__, torch.utils.cmake_prefix_path, plugin_dir()):
        assert value in summary


def test_does_not_import_torch():
    code = ("import sys; from hienet.config import main; main(['--cuda']); main([]); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_console_script_is_installed():
    assert SCRIPT.is_file(), f"{SCRIPT} missing: reinstall hienet (pip install --no-build-isolation -e .)"
    out = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == hienet.__version__


def test_missing_torch_is_an_error_naming_it(tmp_path):
    """An interpreter where torch cannot be found: exit 1 with the reason, not a traceback."""
    code = ("import sys, importlib.util; real = importlib.util.find_spec; "
            "importlib.util.find_spec = lambda name, *a: None if name == 'torch' else real(name, *a); "
            "from hienet.config import main; sys.exit(main(['--cmake-prefix']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "torch is not installed" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("option", ["--bogus"])
def test_unknown_option_is_refused(option):
    proc = subprocess.run([sys.executable, "-m", "hienet.config", option], capture_output=True, text=True)
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr
