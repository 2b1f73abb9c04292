# The two commands: `make demo` and `make test`. Each creates or refreshes .venv itself
# from constraints.txt, so every machine runs the same package versions.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.osds-installed
EXTRAS := dev,dbt,local,openlineage
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -q
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo up down test venv constraints astro-project clean bench bench-dbt bench-snowplow bench-singer bench-retl bench-superset

# With Superset (built into its own cached virtualenv on the first run). Quicker, without it:
# make demo DEMO_ARGS=--no-superset
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/osds demo $(DEMO_ARGS)

# The project on Airflow's real scheduler (api-server, scheduler, dag-processor, triggerer) until Ctrl-C
# or `make down` (from another shell); prints the UI's URL. Another port: make up UP_ARGS="--port 8081"
UP_ARGS ?=
up: $(STAMP)
	$(BIN)/osds up $(UP_ARGS)

down: $(STAMP)
	$(BIN)/osds down

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

# The UI test drives Debian's headless Chromium (tests/e2e/test_ui_plugin.py): installed from Debian's
# packages when it is missing (as root, else with sudo). Elsewhere, install a Chromium there yourself.
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "make test needs Chromium at $(CHROMIUM) (tests/e2e/test_ui_plugin.py)"; exit 1; }
	$(SUDO) apt-get install -y -q chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium >/dev/null; }

# Parse-time benchmark, every shape (A–D: ours vs dag-factory vs plain Python; E: dbt vs Cosmos 1.15),
# ≈ 15–20 min on 2 cores; writes bench/RESULTS.md and bench/results.json.
# Faster while developing: make bench BENCH_ARGS="--reps 1 --shapes C --import-reps 0" (--help: all flags).
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Only shape E (dbt rendering, ours vs Cosmos) and the dbt runtime part; replaces their sections and ids, keeps the rest.
# Only the runtime part: make bench-dbt BENCH_ARGS=--dbt-runtime-only
bench-dbt: $(STAMP)
	$(BIN)/python bench/run.py --shapes E $(BENCH_ARGS)

# Only the Snowplow part (our load vs a bare COPY and the SDK, peak RSS 200k vs 1M events), ≈ 6–8 min.
bench-snowplow: $(STAMP)
	$(BIN)/python bench/run.py --snowplow-only $(BENCH_ARGS)

# Only the Singer parts: the targets (osds-target-postgres vs meltanolabs and pipelinewise) and the
# SingerOperator in Airflow's task runner vs the same tap | target in a bare shell pipe, ≈ 8–12 min.
bench-singer: $(STAMP)
	$(BIN)/python bench/run.py --singer-only $(BENCH_ARGS)

# The reverse-ETL part only: a 1M-row sync with 1% changed vs a full send, and peak RSS (≈ 10 min).
bench-retl: $(STAMP)
	$(BIN)/python bench/run.py --retl-only $(BENCH_ARGS)

# The Superset part only: 40 charts warmed at concurrency 8 vs one by one (and 80 charts), a real
# Superset 6.1 under gunicorn over a warehouse taking ~200 ms a query (≈ 3–4 min).
bench-superset: $(STAMP)
	$(BIN)/python bench/run.py --superset-only $(BENCH_ARGS)

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' || \
		{ echo "airflow-osds needs Python 3.11+ (PYTHON=$(PYTHON))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

# Re-resolve the newest versions the ranges in setup.cfg allow and pin them.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --disable-pip-version-check -q -e '.[$(EXTRAS)]'
	{ echo "# Exact versions installed by make (regenerate with: make constraints)"; \
	  .venv-constraints/bin/python -m pip freeze --exclude-editable --exclude airflow-osds | sed '/^-e /d'; \
	} > constraints.txt
	rm -rf .venv-constraints

# Fill astro-project/ with what its Docker build needs (Astro builds from that folder only).
astro-project: $(STAMP)
	rm -rf astro-project/dags astro-project/include astro-project/wheels
	cp -r dags include astro-project/
	$(BIN)/python -m pip wheel --no-deps -q -w astro-project/wheels .
	# The build leaves these in the checkout, where they read as a second airflow-osds (tests/wheel.py says why that hurts).
	rm -rf build airflow_osds.egg-info

clean:
	rm -rf $(VENV) .osds
