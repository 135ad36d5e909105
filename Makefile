# One target per thing a person does. Every target that needs Python first runs
# scripts/bootstrap, which installs whatever is missing and is quick when nothing is.
#
#   make course [SCALE=tiny|small|medium|large] [ENGINE=embedded|delta-spark|databricks|auto]
#   make test   [PYTEST_ARGS='-m "not notebooks"'] [PYTEST_WORKERS=2|0]
#   make reconcile [SCALE=...]          # rows in = rows kept + rows quarantined, every source
#   make retrain [RECIPE=...] [AS_OF=...] # the fraud model's retraining loop, evidence in ml.retraining_runs
#   make pipeline [SCALE=...]           # the declarative pipeline twice (the second incremental) vs Gold
#   make lab | exercises | strip | expected | dashboard | lint | bench | bench-streaming | bench-serving
#   make reset | clean
#   make connect-start | connect-stop   # a local Spark Connect server on port 15002
#   make kafka-start | kafka-stop       # a local Kafka broker on 127.0.0.1:19092
#   make pg-start | pg-stop             # a local PostgreSQL on 127.0.0.1:54329
#   make pg-load [DAY=1|2] [SCALE=...]  # the e-commerce system of record into it (schema shop)

SHELL := /bin/bash
.DEFAULT_GOAL := help

SCALE ?= tiny
ENGINE ?=
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist), one test file at a time each: the classic notebooks on one,
# the Connect notebooks on the other, the other files on whichever is free. Much of a Spark test
# is waiting (JVM start, job scheduling, kernels, stream triggers), so two workers finish sooner
# even on two cores. 0: one process.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)
VENV ?= $(or $(LAKEHOUSE_VENV),.venv)
PY := $(VENV)/bin/python
BOOTSTRAP := LAKEHOUSE_VENV=$(VENV) scripts/bootstrap

ifneq ($(strip $(ENGINE)),)
export LAKEHOUSE_ENGINE := $(ENGINE)
endif

.PHONY: help bootstrap course test reconcile retrain pipeline lab exercises strip expected dashboard check-notebooks lint bench bench-streaming bench-serving \
	connect-start connect-stop kafka-start kafka-stop pg-start pg-stop pg-load reset clean

help:
	@echo "make course     run every solution notebook (SCALE=$(SCALE)); summary in reports/run-<scale>/"
	@echo "make test       the whole test suite (library, engines, notebooks)"
	@echo "make reconcile  prove rows in = kept + quarantined for every source (SCALE=$(SCALE))"
	@echo "make retrain    the fraud model's retraining loop as one job (RECIPE=, AS_OF=); evidence in ml.retraining_runs"
	@echo "make pipeline   the declarative pipeline (pipelines/lakehouse) twice, the second run incremental; its Gold KPIs vs the notebooks'"
	@echo "make lab        open the course in Jupyter Lab (notebooks share a local Spark Connect server)"
	@echo "make exercises  regenerate the exercise notebooks from solutions/"
	@echo "make strip      strip outputs from the course notebooks"
	@echo "make expected   refresh nbval expected outputs in tests/expected/"
	@echo "make dashboard  rewrite dashboards/lakehouse_kpis.lvdash.json from the KPI spec"
	@echo "make lint       ruff check and format check"
	@echo "make bench      delta-spark, embedded and plain parquet doing the same work (BENCH_ARGS=--rows N)"
	@echo "make bench-streaming  events/s and latency of the payment stream from files and Kafka, Delta vs parquet"
	@echo "make bench-serving    latency and requests/s of the model endpoint, direct and through the router"
	@echo "make kafka-start / kafka-stop   a local Kafka broker (127.0.0.1:19092, LAKEHOUSE_KAFKA_PORT)"
	@echo "make pg-start / pg-stop         a local PostgreSQL (127.0.0.1:54329, LAKEHOUSE_PG_PORT)"
	@echo "make pg-load    the shop's system of record into it (DAY=1, or 2 for the next day's changes)"
	@echo "make reset      delete generated data, tables and reports"
	@echo "make clean      reset, and delete the virtual environment"

bootstrap:
	@$(BOOTSTRAP)

course: bootstrap
	@$(PY) scripts/run_course.py --scale $(SCALE)

# pytest exits 5 when no test was collected (or all were deselected, e.g. by a PYTEST_ARGS
# filter). That counts as failure-free only if its closing line confirms it: nothing passed,
# failed or errored.
test: bootstrap
	@mkdir -p reports; rm -f reports/test-times.txt; \
	PYTHONUNBUFFERED=1 $(PY) -m pytest $(XDIST) $(PYTEST_ARGS) 2>&1 | tee reports/pytest.log; \
	status=$${PIPESTATUS[0]}; last=$$(tail -n 1 reports/pytest.log); \
	if [ -f reports/test-times.txt ]; then cat reports/test-times.txt; fi; \
	if [ $$status -eq 5 ] && [[ $$last =~ (no\ tests\ ran|deselected) ]] \
		&& ! [[ $$last =~ (passed|failed|error) ]]; then \
		echo "make test: pytest ran no test (exit 5); nothing failed"; status=0; \
	fi; \
	exit $$status

reconcile: bootstrap
	@$(PY) scripts/reconcile.py --scale $(SCALE)

# decide -> retrain -> register -> gate -> shadow -> A/B -> promote -> verify, each step's
# outcome and evidence appended to ml.retraining_runs (lakehouse.ml.retraining_job). It builds
# what it needs when the lake lacks it (examples, the frozen holdout, a champion, its scores).
retrain: bootstrap
	@MLFLOW_DISABLE_TELEMETRY=true $(PY) -m lakehouse.ml.retraining_job --scale $(SCALE) \
		$(if $(RECIPE),--recipe $(RECIPE)) $(if $(AS_OF),--as-of $(AS_OF))

# The payments flow as a Spark Declarative Pipeline (pipelines/lakehouse, lesson 07_production/01):
# from an empty pipeline, half the payment files then the rest, one run each (the second reads only
# the new files), then each payment KPI compared with the notebooks' Gold (built when missing).
# Prints each run's time and rows per table; exits 1 on a mismatch.
pipeline: bootstrap
	@$(PY) scripts/pipeline.py --scale $(SCALE)

# Every notebook of the lab shares one local Spark Connect server (started here, left running
# for the next `make lab`; `make connect-stop` ends it): several notebooks open at once then share
# the catalog, which a classic session per kernel cannot (Derby admits one process per catalog).
# LAB_CLASSIC=1 gives each kernel its own classic session instead.
lab: bootstrap
	@root=$$( [ "$$(id -u)" = 0 ] && echo --allow-root ); \
	if [ -n "$(LAB_CLASSIC)" ]; then \
		exec $(VENV)/bin/jupyter lab --notebook-dir=. $$root $(LAB_ARGS); fi; \
	remote=$$($(PY) -m lakehouse.connect_server start | sed -n 's/^Spark Connect server running: \(sc:[^ ]*\).*/\1/p'); \
	[ -n "$$remote" ] || exit 1; \
	echo "make lab: notebooks run through the Spark Connect server at $$remote"; \
	SPARK_REMOTE=$$remote exec $(VENV)/bin/jupyter lab --notebook-dir=. $$root $(LAB_ARGS)

exercises: bootstrap
	@$(VENV)/bin/lakehouse-notebooks generate

strip: bootstrap
	@$(VENV)/bin/lakehouse-notebooks strip

expected: bootstrap
	@$(VENV)/bin/lakehouse-notebooks expected

# The Databricks dashboard file the bundle deploys, generated from lakehouse.production.dashboards
# .SPEC; tests/test_production_dashboards.py fails when the committed file is stale.
dashboard: bootstrap
	@$(PY) -m lakehouse.production.lvdash

check-notebooks: bootstrap
	@$(VENV)/bin/lakehouse-notebooks check

lint: bootstrap
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: bootstrap
	@$(PY) bench/bench_engines.py $(BENCH_ARGS)

bench-streaming: bootstrap
	@$(PY) bench/bench_streaming.py $(BENCH_ARGS)

bench-serving: bootstrap
	@$(PY) bench/serving.py $(BENCH_ARGS)

connect-start: bootstrap
	@$(PY) -m lakehouse.connect_server start

connect-stop: bootstrap
	@$(PY) -m lakehouse.connect_server stop

kafka-start: bootstrap
	@$(PY) -m lakehouse.services.kafka start

kafka-stop:
	@$(PY) -m lakehouse.services.kafka stop

pg-start: bootstrap
	@$(PY) -m lakehouse.services.postgres start

pg-stop:
	@$(PY) -m lakehouse.services.postgres stop

DAY ?= 1
pg-load: pg-start
	@$(PY) -m lakehouse.datagen --postgres --day $(DAY) --scale $(SCALE)

# The broker and the database keep their data under lake/: stop them before deleting it.
reset:
	@if [ -x $(PY) ]; then $(PY) -m lakehouse.services.kafka stop >/dev/null 2>&1; \
		$(PY) -m lakehouse.services.postgres stop >/dev/null 2>&1; fi; true
	rm -rf lake reports spark-warehouse metastore_db derby.log mlruns
	find datasets -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

clean: reset
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info
	find . -name __pycache__ -type d -not -path "./.git/*" -prune -exec rm -rf {} +
