# Quick start: `make demo` and `make test` each work alone on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# exact pin: picks the local CPU wheel; a looser pin pulls GBs of CUDA wheels
TORCH  := torch==2.13.0

.PHONY: install test demo sim-demo pretrain-ablation bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[full,dev]" "$(TORCH)"
	touch $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --durations=15

# The paper's experiments on the CPU preset (~50 min on 2 cores); rerun to resume a killed run.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/tla reproduce --preset tiny --out outputs/reproduce-tiny

# The simulator alone (~30 s): preview sheets and oracle closed-loop episodes.
sim-demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/tla demo --out outputs/demo

# The pretraining thesis at CPU scale, one command: the tactile-language base (`tla pretrain`, ~25 min), then
# from scratch vs the paper's LoRA recipe vs full fine-tuning on it, in and out of distribution (SEEDS=0,1
# took ~110 min of wall time on 2 cores, two jobs at a time; one process takes longer). Rerun to resume.
SEEDS ?= 0
pretrain-ablation: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/tla pretrain --out outputs/pretrain-tiny
	HF_HUB_OFFLINE=1 $(VENV)/bin/tla ablate --variants pretrained --base outputs/pretrain-tiny/model \
		--ood round,hexagon --seeds $(SEEDS) --out outputs/pretrain-ablation-tiny

bench: $(STAMP)
	$(PY) benchmarks/sim_throughput.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
