# HIENet developer entry points. Everything runs inside .venv/, created on first use and
# re-used while it is complete (the stamp file records a finished install).
#   make demo   LAMMPS NPT molecular dynamics of Si with the bundled model, plus a plot
#   make test   the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hienet-installed
# Rebuild the package when the build inputs or the C++ sources change.
BUILD_INPUTS := requirements.txt setup.py hienet_build.py CMakeLists.txt \
	$(shell find cpp cmake lammps_plugin -type f 2>/dev/null)

.PHONY: venv test demo clean check-cuda-build gpu-wheels

venv: $(STAMP)

$(STAMP): $(BUILD_INPUTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-build-isolation --no-deps -e .
	@touch $@

test: venv
	$(BIN)/python -m pytest -q -ra tests

demo: venv
	$(BIN)/python examples/run_demo.py

# opt-in, not part of `make test`: the whole project compiled and linked against torch
# 2.14.1's CUDA build (venv and build tree in ~/.cache/hienet-cuda-build, about 6 GB)
check-cuda-build:
	tests/cuda_build/check.sh

# the wheels tests/gpu/run.sh carries to a GPU machine (tests/gpu/README.md)
gpu-wheels:
	bash tests/gpu/prepare.sh

clean:
	rm -rf build $(VENV)
