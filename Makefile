# The two commands: `make demo` and `make test`; and `make bench`, `make notebooks`. Each first installs
# what it needs into .venv (an editable install of gpuhybrid with the `dev` extra, and `mkl` on x86-64
# Linux), again only when pyproject.toml or the extras change.
#
# On a GPU machine add CuPy: `make demo EXTRAS=cuda` (CUDA 13) or `make demo EXTRAS=cuda12`.
# EXTRAS adds to `dev`; several are comma-separated: EXTRAS=cuda,peers (peers: PyTorch and JAX, which
# `make bench` then compares with).

PYTHON ?= python3
EXTRAS ?=
VENV := .venv
PY := $(VENV)/bin/python
comma := ,
# On x86-64 Linux the `mkl` extra joins by default: Intel MKL for the CPU GEMM engine (docs/threads.md;
# about 700 MB). Elsewhere, or with BASE_EXTRAS=dev, the engine uses NumPy's OpenBLAS.
BASE_EXTRAS ?= dev$(if $(filter Linux-x86_64,$(shell uname -s)-$(shell uname -m)),$(comma)mkl)
ALL_EXTRAS := $(BASE_EXTRAS)$(if $(strip $(EXTRAS)),$(comma)$(strip $(EXTRAS)))

# The full benchmark: every workload, sweeps over batch size and chain length, every installed peer.
BENCH_ARGS ?= all --peers --batch-size 1,16,64,256,1024 --chain-length 1,2,4,8,16,32

.PHONY: venv test demo bench notebooks clean FORCE

venv: $(VENV)/.stamp

# Rewritten only when the requested extras differ from the last install, so that the stamp
# (and the pip install) is redone for `make demo EXTRAS=cuda` after a plain `make test`.
$(VENV)/.extras: FORCE
	@mkdir -p $(VENV)
	@echo '$(ALL_EXTRAS)' | cmp -s - $@ || echo '$(ALL_EXTRAS)' > $@

$(VENV)/.stamp: pyproject.toml $(VENV)/.extras
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[$(ALL_EXTRAS)]'
	# NVIDIA's cuDNN frontend alone (12 MB; no cuDNN runtime, no GPU needed) so that the tests check the
	# cuDNN graphs gpuhybrid describes with the real graph API; a GPU still needs the `cudnn` extra to run them
	$(PY) -m pip install --no-deps 'nvidia-cudnn-frontend==1.32.0'
	touch $@

# The layer contracts first (import-linter, configured in pyproject.toml; docs/architecture.md), then the tests.
test: venv
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

# The lecture's MLP at batch 1: imperative vs hybridized (and with static_alloc/static_shape), speedup
# and launches per call, next to the same forward hand-written in NumPy. A few seconds.
demo: venv
	$(VENV)/bin/gpuhybrid-bench mlp --peers numpy

# Writes bench/results/<device>-<date>.json and .png (docs/bench.md says what is in them).
bench: venv
	$(VENV)/bin/gpuhybrid-bench $(BENCH_ARGS) --results-dir bench/results

# Executes notebooks/*.ipynb in place, keeping their outputs.
notebooks: venv
	$(PY) notebooks/execute.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

FORCE:
