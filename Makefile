# Quick start: `make demo` and `make test` each set themselves up on a fresh machine.
PYTHON ?= python3
TORCH ?= torch==2.13.0
# extras beside dev, comma-separated: `make install EXTRAS=ray` (or ray,otel)
EXTRAS ?=
comma := ,
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-phoenix langgraph-env demo bench clean FORCE

install: $(STAMP)

# torch goes in first and pinned: an unpinned torch drags in gigabytes of CUDA wheels.
$(STAMP): pyproject.toml $(if $(EXTRAS),FORCE,)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev$(if $(EXTRAS),$(comma)$(EXTRAS))]"
	touch $(STAMP)

# `langgraph dev` for tests/test_langgraph_dev.py, in its own environment: langgraph-api pins
# protobuf below 7 and grpcio below 1.82, which the project's environment has newer. Built once
# per clone (about 1-4 minutes); robustft's own dependencies come from $(VENV), read after its own
# packages (the .pth file), so that it holds only langgraph-cli's.
LANGGRAPH_VENV := .venv-langgraph
LANGGRAPH_PINS := "langgraph-cli[inmem]==0.4.40" "langgraph-api==0.16.7"
LANGGRAPH_STAMP := $(LANGGRAPH_VENV)/.installed

langgraph-env: $(LANGGRAPH_STAMP)

$(LANGGRAPH_STAMP): $(STAMP)
	test -x $(LANGGRAPH_VENV)/bin/python || $(BIN)/python -m venv $(LANGGRAPH_VENV)
	$(LANGGRAPH_VENV)/bin/pip install -q $(LANGGRAPH_PINS)
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> "$$($(LANGGRAPH_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz_robustft_venv.pth"
	touch $(LANGGRAPH_STAMP)

# The layers and the no-cycles rule (pyproject.toml [tool.importlinter]) first: seconds, and a broken
# layer fails CI as surely as a failing test.
test: install $(LANGGRAPH_STAMP)
	$(BIN)/lint-imports
	ROBUSTFT_LANGGRAPH=$(CURDIR)/$(LANGGRAPH_VENV)/bin/langgraph $(BIN)/python -m pytest -q

# The optional Arize Phoenix test (tests/test_phoenix.py), with arize-phoenix in its own environment
# (a server with about a hundred dependencies of its own; several minutes to install).
PHOENIX_VENV := .venv-phoenix
PHOENIX_PIN := arize-phoenix==20.26.1

$(PHOENIX_VENV)/.installed: $(STAMP)
	test -x $(PHOENIX_VENV)/bin/python || $(BIN)/python -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/pip install -q "$(PHOENIX_PIN)"
	touch $@

test-phoenix: install $(PHOENIX_VENV)/.installed
	ROBUSTFT_PHOENIX=$(CURDIR)/$(PHOENIX_VENV)/bin/phoenix $(BIN)/python -m pytest -q tests/test_phoenix.py

demo: install
	$(BIN)/robustft demo --out runs/demo

bench: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf runs .pytest_cache
