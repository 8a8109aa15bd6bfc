# mobilebert-nas: the two commands of the quick start are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

# torch first, pinned, so nothing later can pull a CUDA build; every later install is constrained.
$(STAMP): pyproject.toml requirements/constraints.txt
	@bash scripts/check-disk.sh .
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements/constraints.txt -e ".[all,test]"
	$(PY) scripts/fit_torchao.py
	@bash scripts/install-system-deps.sh
	touch $(STAMP)

demo: install
	$(VENV)/bin/mbnas search --jobs 2

test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info
