# tollmon: every target installs what it needs (pip, apt, mvn) and starts the
# services it uses, so a fresh machine needs nothing but these commands.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install native stack-up stack-down stack-status lint test test-unit test-integration faults demo validate dashboards bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,validation]'
	touch $(STAMP)

install: $(STAMP)

# The hot path compiled with mypyc (tollmon/native.py): built once per source state into
# .cache/native/, used only while it matches the source. TOLLMON_NATIVE=0 skips it.
native: install
ifneq ($(TOLLMON_NATIVE),0)
	$(BIN)/python tools/native.py build
endif

stack-up: install
	tools/stack.sh up

stack-down:
	tools/stack.sh down

stack-status:
	tools/stack.sh status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# promtool and amtool (rule and routing tests) come with the stack's Debian packages.
test-unit: native stack-up
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: native stack-up
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

# The whole suite: lint, types, unit, validation (short) and integration tests.
test: lint native stack-up
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# The fault suite (tests/faults) with its long cases (marked slow); the short ones also
# run in `make test`. Prints the fault table at the end (docs/operations.md).
faults: native stack-up
	$(BIN)/pytest -m faults $(PYTEST_ARGS)

validate: native
	$(BIN)/pytest -m slow tests/validation $(PYTEST_ARGS)

demo: native stack-up
	tools/demo.sh

# The plaza rating against the local broker (about 15 minutes); rewrites docs/benchmarks.md.
# BENCH_ARGS=--quick for a short run; --help for the knobs.
bench: native stack-up
	$(BIN)/python -m benchmarks.plaza_rating $(BENCH_ARGS)

# Regenerate the Grafana dashboards' JSON from dashboards/generate.py.
dashboards: install
	$(BIN)/python dashboards/generate.py

clean:
	tools/stack.sh down --purge
	rm -rf $(VENV)
