# The whole set-up is these two targets: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo demo-quick test test-stress install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Re-install only when the package metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/imgclf demo

demo-quick: $(VENV)/.installed
	$(BIN)/imgclf demo --quick

test: $(VENV)/.installed-dev
	$(BIN)/ruff check imgclf tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Flake check for developers (and CI when crash/distributed tests change): the crash, resume,
# distributed and concurrent-sweep tests 5 times in a row under two CPU-burning processes.
test-stress: $(VENV)/.installed-dev
	PY=$(BIN)/python bash scripts/test_stress.sh

clean:
	rm -rf $(VENV) runs demo-data .pytest_cache
