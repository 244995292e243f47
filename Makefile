# seedline: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: demo deps bytecode test checks quick lint typecheck layers unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml Makefile
	$(BIN)/python -m pip install --quiet -e '.[test,dl,keras-tf,keras-jax,tpe,ecosystem]'
	rm -f $(VENV)/.installed-*; touch $@

# Install the project and its test extras into $(VENV) (CI runs this before starting the test servers).
deps: $(STAMP)

# seedline's own sources compiled to bytecode (0.1 s when current). An editable install
# leaves them uncompiled, and where PYTHONDONTWRITEBYTECODE is set (some sandboxes and CI
# images set it) every fresh seedline process would compile them again: 0.3 s a process on
# 2 cores, in every test that starts one and in every benchmark of a fresh `seedline run`.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q src

# Fresh venv, install, run the penguins example twice, show both runs have identical fingerprints.
demo: bytecode
	@$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# two workers, one per core: most tests wait on fresh interpreters and servers; a test
# module stays on one worker, so its module-scoped projects, servers and clusters are built once;
# modules are handed out in collection order, longest first (tests/conftest.py LONGEST_MODULES),
# not xdist's default of most tests first, so that the two workers finish together
unit: bytecode
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25

# ruff, mypy and import-linter share nothing: run side by side (72 s one after another with
# cold caches, mypy alone sets the pace), each one's output kept together; any failure stops
# `make test` before pytest starts
checks: $(STAMP)
	@$(MAKE) --no-print-directory -j3 --output-sync=target lint typecheck layers

test: $(STAMP)
	@$(MAKE) --no-print-directory checks
	@$(MAKE) --no-print-directory unit

# The inner loop, under 3 minutes on 2 cores: lint, then every test that starts no fresh
# interpreter, server or cluster (tests/conftest.py marks those slow at collection).
quick: lint bytecode
	$(BIN)/python -m pytest -q -x -n 2 -m "not slow"

bench: bytecode
	$(BIN)/python benchmarks/foundation.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
