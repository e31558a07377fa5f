"""Data sets larger than memory: structures read from disk on demand, graphs built on the fly.

`data.stream: true` reads the training (and validation) file through an index instead of
loading it: for extxyz, one pass records the byte offset and atom count of every frame (and the
elements, for a new model's species), so structure i is one seek and the parse of its own
lines; for an ASE database (.db) the index is the list of row ids. The graphs are built (vesin)
when a DataLoader worker asks for a structure, so memory holds the index, the batches in
flight and at most `data.cache_size` graphs per process (least recently used dropped first).

Why no converted format (HDF5, LMDB, memory-mapped arrays): the user's extxyz file stays the
single source of truth, with nothing to regenerate when it changes, and reading a frame costs
less than building its graph; the index of MPtrj-sized files (1.6 M frames) is a few tens of MB
and one linear read. Each process opens its own file handle (a handle inherited by forked
DataLoader workers would share the file position).
"""
import io
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from .dataset import INDEX, describe, structure_to_graph

STREAM_FORMATS = (".xyz", ".extxyz", ".db")
_PROPERTIES = re.compile(rb'Properties=(?:"([^"]*)"|(\S+))', re.IGNORECASE)


def _species_column(comment: bytes) -> Tuple[int, bool]:
    """(column of the element of each atom line, True if it holds atomic numbers)."""
    match = _PROPERTIES.search(comment)
    if not match:
        return 0, False
    fields = (match.group(1) or match.group(2)).split(b":")
    column = 0
    for k in range(0, len(fields) - 2, 3):
        name, count = fields[k].lower(), int(fields[k + 2])
        if name in (b"species", b"z"):
            return column, name == b"z"
        column += count
    return 0, False


class ExtxyzFrames:
    """Random access to the frames of an extxyz file through a byte-offset index."""

    def __init__(self, path, offsets: np.ndarray, natoms: np.ndarray):
        self.path = str(path)
        self.offsets, self.natoms = offsets, natoms
        self._handle, self._pid = None, None

    @classmethod
    def scan(cls, path, want_species: bool = True) -> Tuple["ExtxyzFrames", Set[str]]:
        from ase.data import chemical_symbols

        offsets, natoms, species = [], [], set()
        line_no = 0
        with open(path, "rb") as f:
            while True:
                position = f.tell()
                line = f.readline()
                line_no += 1
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    n = int(line)
                except ValueError:
                    raise ValueError(f"{path}: line {line_no}: expected the atom count of structure {len(offsets)}, "
                                     f"found {line[:60].decode(errors='replace').strip()!r}") from None
                comment = f.readline()
                column, numbers = _species_column(comment) if want_species else (0, False)
                for k in range(n):
                    atom = f.readline()
                    if not atom:
                        raise ValueError(f"{path}: structure {len(offsets)} (line {line_no}) ends after {k} of its "
                                         f"{n} atom lines: the file is truncated")
                    if want_species:
                        token = atom.split()[column].decode()
                        species.add(chemical_symbols[int(token)] if numbers else token)
                line_no += n + 1
                offsets.append(position)
                natoms.append(n)
        if not offsets:
            raise ValueError(f"{path} holds no structures")
        return cls(path, np.array(offsets, dtype=np.int64), np.array(natoms, dtype=np.int64)), species

    def __len__(self) -> int:
        return len(self.offsets)

    def _file(self):
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = open(self.path, "rb"), os.getpid()
        return self._handle

    def read(self, i: int):
        import ase.io

        f = self._file()
        f.seek(int(self.offsets[i]))
        text = b"".join(f.readline() for _ in range(int(self.natoms[i]) + 2)).decode()
        return ase.io.read(io.StringIO(text), format="extxyz", index=0)

    def __getstate__(self):
        return {**self.__dict__, "_handle": None, "_pid": None}


class AseDbFrames:
    """Random access to the rows of an ASE database by row id; key-value pairs go to atoms.info."""

    def __init__(self, path, ids: np.ndarray, natoms: np.ndarray):
        self.path, self.ids, self.natoms = str(path), ids, natoms
        self._db, self._pid = None, None

    @classmethod
    def scan(cls, path, want_species: bool = True) -> Tuple["AseDbFrames", Set[str]]:
        import ase.db

        ids, natoms, species = [], [], set()
        for row in ase.db.connect(path).select():
            ids.append(row.id)
            natoms.append(row.natoms)
            if want_species:
                species.update(row.symbols)
        if not ids:
            raise ValueError(f"{path} holds no structures")
        return cls(path, np.array(ids, dtype=np.int64), np.array(natoms, dtype=np.int64)), species

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, i: int):
        import ase.db

        if self._db is None or self._pid != os.getpid():
            self._db, self._pid = ase.db.connect(self.path), os.getpid()
        row = self._db.get(id=int(self.ids[i]))
        atoms = row.toatoms()
        atoms.info.update(row.key_value_pairs)
        return atoms

    def __getstate__(self):
        return {**self.__dict__, "_db": None, "_pid": None}


def index_file(path, want_species: bool = True):
    """(frames with random access, set of element symbols) of an extxyz file or ASE database."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".xyz", ".extxyz"):
        return ExtxyzFrames.scan(path, want_species)
    if suffix == ".db":
        return AseDbFrames.scan(path, want_species)
    raise ValueError(f"data.stream reads extxyz (.xyz, .extxyz) and ASE database (.db) files, not {path.name}: "
                     f"convert it once (e.g. `ase convert {path.name} data.extxyz`) or set data.stream: false")


class StreamedGraphDataset(torch.utils.data.Dataset):
    """Graphs of the structures at `positions` of `frames`, read and built when asked for."""

    def __init__(self, frames, positions: Sequence[int], species: Sequence[str], cutoff: float, source: str,
                 energy_key=None, forces_key=None, stress_key=None, cache_size: int = 0):
        self.frames = frames
        self.positions = np.asarray(positions, dtype=np.int64)
        self.species, self.cutoff, self.source = list(species), float(cutoff), source
        self.label_keys = {"energy_key": energy_key, "forces_key": forces_key, "stress_key": stress_key}
        self.cache_size = int(cache_size)
        self._cache: "OrderedDict[int, Dict[str, torch.Tensor]]" = OrderedDict()

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        i = int(i)
        item = self._cache.get(i)
        if item is None:
            position = int(self.positions[i])
            atoms = self.frames.read(position)
            item = structure_to_graph(atoms, self.species, self.cutoff, describe(atoms, position, self.source),
                                      **self.label_keys)
            if self.cache_size > 0:
                self._cache[i] = item
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return {**item, INDEX: torch.tensor(i)}

    def num_atoms(self) -> np.ndarray:
        """Atoms of each structure, from the index (no structure is read)."""
        return self.frames.natoms[self.positions]

    def name(self, i: int) -> str:
        position = int(self.positions[i])
        return describe(self.frames.read(position), position, self.source)

    def subset(self, indices: Sequence[int]) -> "StreamedGraphDataset":
        return StreamedGraphDataset(self.frames, self.positions[np.asarray(indices, dtype=np.int64)], self.species,
                                    self.cutoff, self.source, cache_size=self.cache_size, **self.label_keys)

    def __getstate__(self):  # workers start with an empty cache of their own
        return {**self.__dict__, "_cache": OrderedDict()}


def streamed_dataset(path, species: Optional[Sequence[str]], cutoff: Optional[float], frames=None, **kwargs):
    """A StreamedGraphDataset of every structure of `path` (frames: an index made before)."""
    if frames is None:
        frames, _ = index_file(path, want_species=False)
    return StreamedGraphDataset(frames, range(len(frames)), species, cutoff, str(path), **kwargs)
