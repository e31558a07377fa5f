"""Reading structures for hienet-eval: frames of an extxyz (any ase.io format) or a LAMMPS text
dump, and the progress bar of the evaluation loops."""
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np


def progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="structure", disable=not enabled, dynamic_ncols=True,
                file=sys.stderr)


def _dump_columns(path: Path) -> Optional[List[str]]:
    """The per-atom columns of a LAMMPS text dump, None if `path` is not one."""
    with open(path, errors="replace") as f:
        first = f.readline()
        if not first.startswith("ITEM: TIMESTEP"):
            return None
        for line in f:
            if line.startswith("ITEM: ATOMS"):
                return line.split()[2:]
    raise ValueError(f"{path}: a LAMMPS dump without an 'ITEM: ATOMS' section")


def parse_type_map(text: Optional[str]) -> Optional[List[str]]:
    """'Si,O' -> ['Si', 'O'] (element of type 1, 2, ...), each a chemical symbol."""
    if not text:
        return None
    from ase.data import chemical_symbols

    elements = [e.strip() for e in text.split(",")]
    bad = [e for e in elements if e not in chemical_symbols[1:]]
    if bad:
        raise ValueError(f"--type-map {text}: {', '.join(repr(b) for b in bad)} not a chemical symbol "
                         "(give the element of each LAMMPS type in order, e.g. Si,O)")
    return elements


def read_frames(path, type_map: Optional[Sequence[str]] = None) -> list:
    """Frames of an extxyz (any ase.io format) or a LAMMPS text dump, with their elements."""
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    columns = _dump_columns(path)
    if columns is None:
        kwargs = {}
    else:
        if "element" not in columns and not type_map:
            raise ValueError(f"{path} is a LAMMPS dump with atom types ({' '.join(columns)}) but no element "
                             "column: give --type-map El1,El2,... (the element of types 1, 2, ...) or dump "
                             "the element column")
        if not any(c in columns for c in ("x", "xs", "xu", "xsu")):
            raise ValueError(f"{path}: the LAMMPS dump has no positions (columns {' '.join(columns)})")
        kwargs = {"format": "lammps-dump-text", "specorder": list(type_map) if type_map else None}
    try:
        frames = ase.io.read(path, index=":", **kwargs)
    except IndexError:
        raise ValueError(f"{path}: an atom type beyond --type-map {','.join(type_map)} "
                         f"({len(type_map)} types)") from None
    except Exception as err:
        raise ValueError(f"cannot read structures from {path}: {err}") from None
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise ValueError(f"{path} holds no structures")
    return frames


def frame_steps(frames: Sequence) -> np.ndarray:
    """The step of each frame: a dump's timestep, info['step'], else the frame index."""
    steps = []
    for k, atoms in enumerate(frames):
        step = atoms.info.get("timestep", atoms.info.get("step", k))
        steps.append(int(step))
    return np.array(steps, dtype=np.int64)
