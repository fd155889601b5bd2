# Quick start: `make demo` and `make test` each set themselves up on a fresh machine.
PYTHON ?= python3
TORCH ?= torch==2.13.0
# extras beside dev, comma-separated: `make install EXTRAS=ray` (or ray,otel)
EXTRAS ?=
comma := ,
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench clean FORCE

install: $(STAMP)

# torch goes in first and pinned: an unpinned torch drags in gigabytes of CUDA wheels.
$(STAMP): pyproject.toml $(if $(EXTRAS),FORCE,)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev$(if $(EXTRAS),$(comma)$(EXTRAS))]"
	touch $(STAMP)

# The layers and the no-cycles rule (pyproject.toml [tool.importlinter]) first: seconds, and a broken
# layer fails CI as surely as a failing test.
test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/robustft demo --out runs/demo

bench: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf runs .pytest_cache
