# Every target does its own set-up, so a newcomer on a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench accuracy clean

install: $(STAMP)

# Rebuilt only when the project's metadata changes, so `make install` is idempotent and cheap to repeat.
$(STAMP): pyproject.toml sdk/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Horus needs Python 3.11 or newer, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./sdk -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/python examples/demo/run_demo.py

lint: install
	$(BIN)/ruff check src sdk tests bench examples
	$(BIN)/ruff format --check src sdk tests bench examples
	$(BIN)/mypy

# One pytest worker per core; each test file runs whole on one worker (the root-cause corpus shares one fixture).
test: lint
	@sh tests/ensure_tools.sh
	$(BIN)/pytest -n auto --dist loadfile

bench: install
	@sh bench/ensure_monit.sh
	$(BIN)/python bench/run.py
	$(BIN)/python bench/rootcause_accuracy.py

# How often Sentinel names the right cause first, on the scenario corpus (tests/sentinel/corpus).
accuracy: install
	$(BIN)/python bench/rootcause_accuracy.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
