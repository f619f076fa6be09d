# slowburn: `make demo` runs the nightly pipeline through Airflow on the embedded default;
# `make test` runs the whole suite. Both set up everything they need on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR := $(CURDIR)/.slowburn
DEMO_LEADS ?= 5000
DEMO_DATE ?= $(shell date -u +%Y-%m-%d)

export AIRFLOW_HOME := $(HOME_DIR)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False
export GX_ANALYTICS_ENABLED := false
export SLOWBURN_HOME := $(HOME_DIR)
export SLOWBURN_SOURCES := $(HOME_DIR)/sample/sources.yaml
export SLOWBURN_INCLUDE_DIR := $(CURDIR)/include

.PHONY: install demo test bench bench-first-night bench-quick bench-score clean

$(BIN)/slowburn: requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/slowburn

install: $(BIN)/slowburn

demo: install
	mkdir -p $(HOME_DIR)
	$(BIN)/airflow db migrate > $(HOME_DIR)/airflow-migrate.log 2>&1 || (tail -20 $(HOME_DIR)/airflow-migrate.log; exit 1)
	$(BIN)/slowburn sample --out $(HOME_DIR)/sample --leads $(DEMO_LEADS) --seed 7 --now $(DEMO_DATE)
	@echo "running slowburn_nightly through Airflow for $(DEMO_DATE) (log: $(HOME_DIR)/dags-test.log)"
	AIRFLOW_CONN_SLOWBURN_WAREHOUSE='{"conn_type": "sqlite", "host": "$(HOME_DIR)/warehouse.db"}' \
	SLOWBURN_RETRIES=0 $(BIN)/airflow dags test slowburn_nightly $(DEMO_DATE) > $(HOME_DIR)/dags-test.log 2>&1 \
		|| (grep -a -A30 "Task failed" $(HOME_DIR)/dags-test.log | head -60; exit 1)
	$(BIN)/slowburn status --logical-date $(DEMO_DATE)

# Stoplight Prism (pinned in tests/contract/package-lock.json) serves the vendors' specs to the contract tests;
# without npm those tests skip and say so.
PRISM := tests/contract/node_modules/.bin/prism
$(PRISM): tests/contract/package-lock.json
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/contract --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the contract tests (tests/contract) will be skipped" >&2; fi

test: install $(PRISM)
	$(BIN)/python -m pytest

# Two nights on one warehouse (issue 13, "a night costs what changed"): the first night, then the
# next night's sources (1% of the leads changed, 0.3% new) at the next logical date; per night and
# step, night 2 / night 1, and the rows written per warehouse table.
bench: install
	$(BIN)/python bench/bench_pipeline.py --sizes 100000 1000000 --nights 2 --repeats 3

# One (first) night per size, fresh warehouse each repeat.
bench-first-night: install
	$(BIN)/python bench/bench_pipeline.py --sizes 100000 1000000 --repeats 3

bench-quick: install
	$(BIN)/python bench/bench_pipeline.py --sizes 20000 --repeats 1

.PHONY: bench-dedupe
bench-dedupe: install
	$(BIN)/python bench/bench_dedupe.py --sizes 100000 1000000

# Ripeness quality (rules vs predictive backtest, capacity simulation) at 100k leads and
# score + route time at 1M leads; results in bench/results/score-*.md and .json.
bench-score: install
	$(BIN)/python bench/bench_score.py --leads 100000 --scale-leads 1000000

clean:
	rm -rf $(HOME_DIR)

.PHONY: bench-connectors
bench-connectors: install
	$(BIN)/python bench/bench_connectors.py --contacts 100000 --members 100000 --json $(HOME_DIR)/bench/connectors.json

# The fault matrix: bad input, SIGKILL in every step, re-runs and concurrent runs on SQLite and
# PostgreSQL (127.0.0.1:5432); prints survived/total, rows lost and rows duplicated.
# Results in bench/results/faults.md and .json.
.PHONY: faults
faults: install
	$(BIN)/python bench/faults.py --backends sqlite postgresql
