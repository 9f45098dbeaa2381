# astroreco: the two README commands (make demo, make test) work on a fresh machine:
# they create .venv, install torch (pinned, CPU wheel here) and the package, then run.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c constraints.txt
STAMP  := $(VENV)/.astroreco-installed
DEMO_OUT ?= demo_output

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) "torch==2.13.0"
	$(PIP) -e ".[test,interop,sparse,sky]"
	touch $(STAMP)

## the main job: simulate, reconstruct, evaluate, plots and report, for every detector
demo: setup
	$(VENV)/bin/astroreco demo --out $(DEMO_OUT)

## the test suite (no slow tests): what CI runs
test: setup
	$(PY) -m pytest -m "not slow" -q

## everything, slow tests included
test-all: setup
	$(PY) -m pytest -q

## quality and speed benchmarks, each writes JSON (+ PNG) under benchmarks/results/
bench: setup
	$(PY) benchmarks/ixpe_classical.py --out benchmarks/results
	$(PY) benchmarks/ixpe_nn.py --out benchmarks/results
	$(PY) benchmarks/sparse3d.py --out benchmarks/results
	$(PY) benchmarks/tpc.py --out benchmarks/results
	$(PY) benchmarks/ecal_sim.py --out benchmarks/results
	$(PY) benchmarks/ecal.py --out benchmarks/results
	$(PY) benchmarks/sky.py --out benchmarks/results

clean:
	rm -rf $(VENV) $(DEMO_OUT) benchmarks/results .pytest_cache
