# Quick start: `make demo` and `make test` each work alone on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# exact pin: picks the local CPU wheel; a looser pin pulls GBs of CUDA wheels
TORCH  := torch==2.13.0

.PHONY: install test demo sim-demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[full,dev]" "$(TORCH)"
	touch $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --durations=15

# The paper's experiments on the CPU preset (~65 min on 2 cores); rerun to resume a killed run.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/tla reproduce --preset tiny --out outputs/reproduce-tiny

# The simulator alone (~30 s): preview sheets and oracle closed-loop episodes.
sim-demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/tla demo --out outputs/demo

bench: $(STAMP)
	$(PY) benchmarks/sim_throughput.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
