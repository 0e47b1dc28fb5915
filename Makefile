# Tongyuan: two commands on a fresh machine with Python >= 3.11 and the package registries.
#   make demo   create .venv, install, run the annual build of the embedded Shanghai demo
#   make test   run the test suite (same venv); make test-fast skips the end-to-end builds
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= out
CONFIG ?= config/shanghai.yaml
# per-project Prefect home and offline-safe settings: no analytics, no telemetry, a generous
# start-up time for Prefect's temporary server on a busy machine
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: venv demo test test-fast demo-data bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --only-binary=:all: -e '.[test]'
	# the tests read CMAQ files with PseudoNetCDF's I/O API reader; its metadata pins numpy<2,
	# which would break the project, but it runs with numpy 2 (installed without its deps)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps pseudonetcdf==3.5.0
	touch $@

demo: venv
	$(BIN)/tongyuan build --config $(CONFIG) --out $(OUT)

# test modules run on TEST_WORKERS processes (pytest-xdist), each module whole on one of them
# (module fixtures build a demo once); 2 = the CI machine's cores
TEST_WORKERS ?= 2
test: venv
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: venv
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

demo-data: venv
	$(BIN)/python data/generate_shanghai_demo.py --out data/shanghai-demo

bench: venv
	$(BIN)/python bench/full_year.py

clean:
	rm -rf $(VENV) .prefect .pytest_cache
