# Every target builds/refreshes the local virtualenv it needs, so a fresh clone needs only
# Python >= 3.11 and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Serving needs only octo's own dependencies (and the example's framework), not the test
# and lint toolchain: `make serve` on a fresh machine installs just that.
SERVE_STAMP := $(VENV)/.installed-serve
EXAMPLES_STAMP := $(VENV)/.installed-examples
PORT ?= 8000
# The compiled HTTP core (setup.py) is rebuilt in place when it is older than its sources
# (`make core`, which serve, test and bench run first). Without a C compiler the build
# leaves the pure-Python core, which `make serve` then runs (`make test` refuses: it tests
# both cores).

.PHONY: core serve serve-starlette serve-django test test-fast lint typecheck check bench \
	bench-quick bench-instructions autobahn dist-check fuzz clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The dev install leaves the compiled core to `make core` (OCTO_CORE_BUILD=0), which builds it
# once, in place, with the mypyc this install brings: pip's editable install ran mypyc in
# each of its three build steps (requirements, metadata, wheel; ~10 s each here) before
# the compile, in a build environment of its own.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	OCTO_CORE_BUILD=0 $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(SERVE_STAMP) $(EXAMPLES_STAMP)

$(SERVE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(SERVE_STAMP)

$(EXAMPLES_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[examples]'
	touch $(EXAMPLES_STAMP) $(SERVE_STAMP)

# Checked on every use (one interpreter start): whether the core in place was built from
# the current sources is what octo itself checks (their digest), so make asks octo rather
# than trusting file times. With mypyc in the venv (the dev install has it) the core is
# rebuilt in place; without it, pip's editable install rebuilds it in an isolated build
# environment.
core: | $(SERVE_STAMP)  ## build the compiled HTTP core in place (when its sources changed)
	@if ! OCTO_CORE=compiled $(BIN)/python -c "from octo.http import core; core.load()" \
	        2>/dev/null; then \
	    if $(BIN)/python -c "import mypyc" 2>/dev/null; then \
	        $(BIN)/python setup.py --quiet build_ext --inplace; \
	    else $(BIN)/python -m pip install --quiet --no-deps -e .; fi; \
	fi

serve: $(SERVE_STAMP) core  ## serve examples/hello on http://127.0.0.1:$(PORT)
	$(BIN)/octo serve examples.hello.app:app --port $(PORT)

serve-starlette: $(EXAMPLES_STAMP) core  ## serve examples/starlette_app on port $(PORT)
	$(BIN)/octo serve examples.starlette_app.app:app --port $(PORT)

serve-django: $(EXAMPLES_STAMP) core  ## migrate, add the demo users, serve the Django example
	$(BIN)/python -m examples.django_project --port $(PORT)

# Three pytest processes on this project's 2-core machines: much of an integration test is
# waiting (for a worker to boot, a timeout to pass), which a third process fills. Each takes
# whole files (a module's shared server stays one server), the request corpus in parts
# (tests/conftest.py shares them out). Both HTTP cores run the same unit and corpus tests:
# a compiled core that did not build is a failure here, not a skip.
TEST_PROCESSES ?= 3
test: $(STAMP) core  ## the whole suite (both HTTP cores): unit, corpus and integration tests; the 15 slowest listed
	bash scripts/install-test-tools
	OCTO_REQUIRE_COMPILED=1 bash scripts/run-tests $(BIN)/python -n $(TEST_PROCESSES) \
	    --dist loadfile --durations=15

test-fast: $(STAMP) core
	OCTO_REQUIRE_COMPILED=1 $(BIN)/python -m pytest -q -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check octo tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP) core
	$(BIN)/python benchmarks/run.py

bench-quick: $(STAMP) core
	$(BIN)/python benchmarks/run.py --quick

bench-instructions: $(STAMP) core  ## instructions/request under callgrind beside req/s (~15 min)
	$(BIN)/python benchmarks/callgrind.py

# The simple-head scanner (octo/http/quickhead.py, headscan.c) against llhttp, from the
# request corpus as seeds; the suite runs a short burst of the same target, and the C
# scanner under AddressSanitizer (tests/corpus/test_quickhead.py).
FUZZ_SECONDS ?= 60
fuzz: $(STAMP) core  ## fuzz the simple-head scanner against llhttp for FUZZ_SECONDS (atheris)
	mkdir -p build/fuzz-corpus
	$(BIN)/python tests/fuzz/fuzz_headscan.py --write-seeds build/fuzz-corpus
	$(BIN)/python tests/fuzz/fuzz_headscan.py build/fuzz-corpus -max_len=512 \
	    -max_total_time=$(FUZZ_SECONDS)

AUTOBAHN_PORT ?= 9001

WS ?= auto

autobahn: $(STAMP)  ## Autobahn|Testsuite against octo --ws $(WS) (QUICK=1 skips 9.*, 12.*, 13.*)
	@mkdir -p .autobahn
	@$(BIN)/octo serve apps.ws_echo:app --app-dir tests --ws $(WS) --no-access-log \
	    --port $(AUTOBAHN_PORT) > .autobahn/octo-$(WS).log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid' EXIT; \
	bash scripts/autobahn.sh $(if $(QUICK),--quick) --agent octo-$(WS) \
	    --outdir .autobahn/reports/octo-$(WS) $(AUTOBAHN_ARGS) ws://127.0.0.1:$(AUTOBAHN_PORT)/

dist-check: $(STAMP)  ## build sdist + wheel, install each in a clean venv, run octo --version
	bash scripts/check-dist $(BIN)/python

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build octo/_ccore/*.so octo/*.so
