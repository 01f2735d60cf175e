# The two commands: `make demo` and `make test`. Each first installs what it needs into .venv
# (an editable install of gpuhybrid with the `dev` extra), again only when pyproject.toml or the
# extras change.
#
# On a GPU machine add CuPy: `make demo EXTRAS=cuda` (CUDA 13) or `make demo EXTRAS=cuda12`.
# EXTRAS adds to `dev`; several are comma-separated: EXTRAS=cuda,other.

PYTHON ?= python3
EXTRAS ?=
VENV := .venv
PY := $(VENV)/bin/python
comma := ,
ALL_EXTRAS := dev$(if $(strip $(EXTRAS)),$(comma)$(strip $(EXTRAS)))

.PHONY: venv test demo clean FORCE

venv: $(VENV)/.stamp

# Rewritten only when the requested extras differ from the last install, so that the stamp
# (and the pip install) is redone for `make demo EXTRAS=cuda` after a plain `make test`.
$(VENV)/.extras: FORCE
	@mkdir -p $(VENV)
	@echo '$(ALL_EXTRAS)' | cmp -s - $@ || echo '$(ALL_EXTRAS)' > $@

$(VENV)/.stamp: pyproject.toml $(VENV)/.extras
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[$(ALL_EXTRAS)]'
	touch $@

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) -m gpuhybrid.demo

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

FORCE:
