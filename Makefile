# The two commands the README opens with: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: demo serve test explore soak install clean shipped-calibration

# Runs the command after it with a PostgreSQL server for the shared-log suites, and stops the
# server afterwards if it started it (a server the user started is left running).
WITH_POSTGRES = .ci/with-postgres

install: $(VENV)/.installed

# Every extra, under constraints.txt: it pins torch to the CPU build that lies on this
# machine's disk (a looser pin pulls gigabytes of CUDA wheels).
EXTRAS := test,postgres,langchain,mcp,testing,server,plot,peers
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

demo: install
	$(BIN)/carma demo

# The HTTP service with its live dashboard, on the default model: http://127.0.0.1:8765/
# (the store at $(SERVE_HOME); after `make demo`, SERVE_HOME=.carma-demo serves the demo's).
SERVE_HOME ?= .carma
serve: install
	$(BIN)/carma serve --home $(SERVE_HOME)

# Lint and format checks, then the suites. The shared-log suites need a PostgreSQL server:
# $CARMA_TEST_DATABASE_URL, else a throwaway one on loopback (.ci/postgres), stopped again when
# the run ends if this run started it; without either they are skipped, and say so.
test: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(WITH_POSTGRES) $(BIN)/python -m pytest

# The property tests' random search with 25x CI's examples, new ones every run (CI draws the
# same ones each time, so it never meets a new counterexample): run it now and then. It is
# how the last healing bugs were found. About 45 minutes on two cores.
explore: install
	$(WITH_POSTGRES) $(BIN)/python -m pytest tests/property --hypothesis-profile=long

# The long reliability run, not in CI (hours on two cores): 334 SIGKILL trials of writers per
# mode (write, dream, rebuild: 1,002 kills a back end), 2,500 hostile inputs to each of four
# tests (the API's writes and reads, the CLI, import: 10,000 a back end), and the state
# machine's long profile (tests/property/test_model.py), on SQLite and PostgreSQL. The crash figures go to bench-results/soak.jsonl;
# docs/reliability.md has the last run's.
soak: install
	rm -f bench-results/soak.jsonl
	CARMA_SOAK_TRIALS=334 CARMA_SOAK_HOSTILE=2500 CARMA_SOAK_REPORT=bench-results/soak.jsonl \
	CARMA_REQUIRE_POSTGRES=1 $(WITH_POSTGRES) $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/reliability tests/property/test_model.py --hypothesis-profile=long --durations=10

# The calibration that ships with the package (carma/data/shipped-calibration.json): the
# default method measured on the "shipped" part of the standard library's docstrings, as
# docs/reconstruction.md says. SAMPLE fragments; at 40, about an hour on two busy cores.
SAMPLE ?= 40
shipped-calibration: install
	$(BIN)/carma bench reconstruct --setting shipped -n $(SAMPLE) \
		--out bench-results/reconstruct-shipped.json
	$(BIN)/python -c "import json; r = json.load(open('bench-results/reconstruct-shipped.json')); \
		open('carma/data/shipped-calibration.json', 'w').write( \
		json.dumps(r['shipped_calibration'], indent=1) + '\n')"

clean:
	rm -rf $(VENV) .carma-demo .pytest_cache .hypothesis
