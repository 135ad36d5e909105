"""The course's payments flow as a Spark Declarative Pipeline (``pipelines/lakehouse/``): the
transforms its definition files call, the quarantine split that stands in for expectations, and
how the pipeline is run and read on a laptop.

The definition files hold no logic of their own: Bronze lands the payment files with the
lineage the course's Bronze tables carry, Silver types and checks them with
:mod:`lakehouse.silver.validation` and keeps the latest version per key with
:func:`lakehouse.silver.dedup.latest_per_key`, Gold adds the measures of
:mod:`lakehouse.gold.facts` and the KPIs run the SQL of the dashboard spec
(:data:`lakehouse.production.dashboards.SPEC`). So the pipeline's Gold is the notebooks' Gold,
computed another way.

A query function only describes its DataFrame, with ``select``, ``where``, joins and windows:
it may not analyze it (``df.columns``), and Spark Connect's planner resolves ``withColumn`` and
``drop`` against the catalog at once, so once the table exists such a flow would read its
current version instead of waiting for the flow that writes it. Hence the declared columns
below, passed to the package's transforms.

Locally a pipeline run is a Spark Connect client (``spark-pipelines`` is one) talking to a Spark
Connect server that holds Delta's jars. The server gets a catalog of its own
(``<lake>/<catalog>_pipeline``: its own metastore, warehouse and checkpoints), because embedded
Derby admits one process per catalog and a notebook's classic session holds the course's. A
notebook reads the pipeline's tables by path (:func:`read_table`), classic or through Connect.

Example::

    from lakehouse.production import pipeline

    with pipeline.Runner(spark) as runner:
        first = runner.run()                       # an update: only what is new
        again = runner.run(full_refresh=True)      # every table rebuilt from every file
    pipeline.read_table(spark, "fact_payments").count()
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import bronze

PIPELINE_FOLDER = Path("pipelines") / "lakehouse"
SPEC_FILE = "spark-pipeline.yml"
DATABASE = "pipeline"  # the schema of the pipeline's tables (the spec's `database`)
DATASET = "payments.transactions"
SOURCE_SYSTEM = "payments"

# Configuration keys the definition files read (the spec's `configuration`; on Databricks the
# pipeline's `configuration` in resources/lakehouse_pipeline.yml).
LANDING_CONF = "lakehouse.pipeline.landing"  # the folder where payment files arrive
READER_CONF = "lakehouse.pipeline.reader"  # "files" (Spark's file source) or "cloudFiles"

# The datasets the pipeline defines, in the order they are computed, and their kind.
BRONZE = "bronze_payments"
CHECKED = "payments_checked"
SILVER_VALID = "silver_payments_valid"
QUARANTINE = "payments_quarantine"
SILVER = "silver_payments"
FACT = "fact_payments"
KPIS = ("kpi_approval_by_network", "kpi_decline_reasons", "kpi_fraud_by_category")
STREAMING_TABLE = "streaming table"
MATERIALIZED_VIEW = "materialized view"
TEMPORARY_VIEW = "temporary view"
DATASET_KINDS: dict[str, str] = {
    BRONZE: STREAMING_TABLE,
    CHECKED: TEMPORARY_VIEW,
    SILVER_VALID: STREAMING_TABLE,
    QUARANTINE: STREAMING_TABLE,
    SILVER: MATERIALIZED_VIEW,
    FACT: MATERIALIZED_VIEW,
    **{name: MATERIALIZED_VIEW for name in KPIS},
}
TABLES = tuple(name for name, kind in DATASET_KINDS.items() if kind != TEMPORARY_VIEW)

KEY = "transaction_id"
SEQUENCE_BY = "ingest_ts"  # a redelivery's latest version wins, as in silver.payments


def _required_columns() -> tuple[str, ...]:
    from lakehouse.datagen import DATASETS

    return DATASETS[DATASET].required


# The data contract as named rules over the typed rows (a value that does not cast is NULL, so
# the first rule also catches a line that did not parse or an amount that is not a number).
# The Lakeflow form passes this very dict to @dp.expect_all_or_drop; locally kept_rows and
# quarantined_rows split on it. On the course's data a row breaks a rule exactly when
# lakehouse.silver.validation marks it invalid (tests/test_production_pipeline.py proves it).
EXPECTATIONS: dict[str, str] = {
    "required_values_present": " AND ".join(f"{c} IS NOT NULL" for c in _required_columns()),
    "amount_not_negative": "amount >= 0",
}


# --------------------------------------------------------------------------- the transforms


def every_rule_holds(rules: Mapping[str, str] = EXPECTATIONS) -> Column:
    """TRUE when a row meets every rule, FALSE otherwise, never NULL: a rule is SQL, and
    ``amount >= 0`` on a NULL amount is NULL (neither true nor false), so NULL counts as a
    failure here."""
    if not rules:
        raise ValueError("every_rule_holds needs at least one rule, e.g. EXPECTATIONS")
    conjunction = " AND ".join(f"({sql})" for sql in rules.values())
    return F.coalesce(F.expr(conjunction), F.lit(False))


def kept_rows(rules: Mapping[str, str] = EXPECTATIONS) -> Callable[[DataFrame], DataFrame]:
    """A transform keeping the rows that meet every rule (what ``expect_all_or_drop`` keeps)."""

    def transform(df: DataFrame) -> DataFrame:
        return df.where(every_rule_holds(rules))

    return transform


def quarantined_rows(rules: Mapping[str, str] = EXPECTATIONS) -> Callable[[DataFrame], DataFrame]:
    """A transform keeping the rows :func:`kept_rows` drops, and only those: its exact complement,
    so rows in = rows kept + rows quarantined."""

    def transform(df: DataFrame) -> DataFrame:
        return df.where(~every_rule_holds(rules))

    return transform


def with_file_lineage(df: DataFrame) -> DataFrame:
    """Bronze's lineage columns on a stream of files: when, from which file, which system, and
    the delivery (the file's folder, one per arrival day) as the batch."""
    now = F.current_timestamp()
    path = F.col("_metadata.file_path")
    return df.select(
        "*",
        now.alias(bronze.INGESTION_TIMESTAMP),
        path.alias(bronze.SOURCE_FILE),
        F.lit(SOURCE_SYSTEM).alias(bronze.SOURCE_SYSTEM),
        F.regexp_extract(path, r"([^/]+)/[^/]+$", 1).alias(bronze.BATCH_ID),
        F.to_date(now).alias(bronze.INGESTION_DATE),
    )


def read_landing(spark: SparkSession, landing: str, reader: str = "files") -> DataFrame:
    """The payment files arriving under ``landing`` as a stream, with the source's explicit
    schema; a line that does not parse is kept whole in ``_corrupt_record``. ``reader`` is
    ``"files"`` (Spark's file source: the checkpoint lists the files read) or ``"cloudFiles"``
    (Auto Loader, on Databricks)."""
    src = bronze.source(DATASET)
    if reader == "cloudFiles":
        stream = spark.readStream.format("cloudFiles").option("cloudFiles.format", "json")
    elif reader == "files":
        stream = spark.readStream.format("json").option("recursiveFileLookup", "true")
    else:
        raise ValueError(f"unknown reader {reader!r}: use 'files' or 'cloudFiles' ({READER_CONF})")
    return (
        stream.schema(src.raw_schema)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", bronze.CORRUPT_RECORD)
        .load(landing)
        .transform(with_file_lineage)
    )


# The columns of each step, declared rather than read from the DataFrames: a pipeline's query
# function may not ask Spark for a schema (it would analyze the plan before the graph exists).
BRONZE_COLUMNS = (*bronze.source(DATASET).raw_schema.fieldNames(), *bronze.METADATA_COLUMNS)


def _silver_columns() -> tuple[str, ...]:
    from lakehouse.silver import dedup

    return tuple(dedup.silver_table(DATASET).columns)


def checked(df: DataFrame) -> DataFrame:
    """Bronze rows -> typed, with ``_is_valid`` and ``_validation_errors``: Silver validation's
    own transform (:func:`lakehouse.silver.validation.validate`). The payment files' field
    names are already the course's snake_case, so no renaming is needed."""
    from lakehouse.silver import validation

    return df.transform(validation.validate(DATASET, columns=BRONZE_COLUMNS))


def silver_rows(df: DataFrame) -> DataFrame:
    """Kept rows -> Silver's columns (the typed source columns and the lineage), as
    :func:`lakehouse.silver.dedup.silver_rows` selects them."""
    return df.select(*_silver_columns())


def latest_payments(df: DataFrame) -> DataFrame:
    """One row per ``transaction_id``, its latest version: ``silver.payments``' rule
    (:func:`lakehouse.silver.dedup.latest_per_key`)."""
    from lakehouse.silver import dedup

    return df.transform(
        dedup.latest_per_key(
            KEY, SEQUENCE_BY, tie_breakers=dedup.DELIVERY_ORDER, columns=_silver_columns()
        )
    )


# gold.fact_payments' columns that come from the payment itself (its dimension keys need the
# customer and geography dimensions, which this pipeline does not build).
FACT_COLUMNS = tuple(
    name
    for name in (
        "transaction_id",
        "date_key",
        "event_ts",
        "merchant_id",
        "merchant_category",
        "card_network",
        "channel",
        "currency",
        "amount",
        "amount_usd",
        "status",
        "is_approved",
        "decline_reason",
        "fraud_score",
        "is_fraud",
    )
)


def fact_payments(df: DataFrame) -> DataFrame:
    """Silver payments -> ``fact_payments``' rows: one per payment attempt, with the date key,
    the USD amount and ``is_approved`` of :mod:`lakehouse.gold.facts`, in its types."""
    from lakehouse.gold import facts

    schema = facts.FACT_PAYMENTS_SCHEMA
    derived = {**facts.payment_measure_columns(), "date_key": facts.date_key("event_ts")}
    return df.select(
        *(derived.get(c, F.col(c)).cast(schema[c].dataType).alias(c) for c in FACT_COLUMNS)
    )


def kpi_sql(name: str, fact_table: str = FACT) -> str:
    """The SQL of a KPI of the dashboard spec, reading ``fact_table`` for ``gold.fact_payments``.

    >>> "FROM fact_payments" in kpi_sql("kpi_approval_by_network")
    True
    """
    from lakehouse.production import dashboards

    item = dashboards.kpi(name)
    sql = item.sql.replace("gold.fact_payments", fact_table)
    others = sorted(set(re.findall(r"\bgold\.[a-z_0-9]+", sql)))
    if others:
        raise ValueError(
            f"{name} reads {', '.join(others)} besides the payments fact: the pipeline only "
            f"builds {fact_table}; use one of {', '.join(KPIS)}"
        )
    return sql


# --------------------------------------------------------------------------- checks


def check_quarantine_split(
    checked_df: DataFrame, kept_df: DataFrame, quarantine_df: DataFrame
) -> str:
    """Every checked row is either kept or quarantined, never both, never neither, and the
    kept rows are the ones Silver validation marks valid. Returns one line; raises
    ``AssertionError`` naming what is wrong and the fix."""
    for name, df in (("kept_df", kept_df), ("quarantine_df", quarantine_df)):
        missing = [c for c in checked_df.columns if c not in df.columns]
        assert not missing, (
            f"{name} lacks column(s) {missing}: filter the checked rows, do not select from them"
        )
    columns = checked_df.columns
    # One pass: each distinct row with how often it came in, was kept and was quarantined.
    tagged = [
        df.select(*columns, *(F.lit(int(i == j)).alias(f"_n{j}") for j in range(3)))
        for i, df in enumerate((checked_df, kept_df, quarantine_df))
    ]
    per_row = (
        tagged[0]
        .unionByName(tagged[1])
        .unionByName(tagged[2])
        .groupBy(*columns)
        .agg(*(F.sum(f"_n{j}").alias(f"_n{j}") for j in range(3)))
    )
    totals = per_row.agg(
        F.sum("_n0").alias("rows_in"),
        F.sum("_n1").alias("kept"),
        F.sum("_n2").alias("quarantined"),
        F.sum(F.least("_n1", "_n2")).alias("both"),
        F.sum(F.greatest(F.col("_n0") - F.col("_n1") - F.col("_n2"), F.lit(0))).alias("lost"),
        F.sum(F.when(F.col("_is_valid"), F.col("_n0")).otherwise(0)).alias("valid"),
    ).first()
    rows_in, n_kept, n_quarantined = totals.rows_in, totals.kept, totals.quarantined
    both, lost, valid = totals.both, totals.lost, totals.valid
    assert both == 0, (
        f"{both} row(s) are both kept and quarantined: kept must require EVERY rule and the "
        "quarantine must be its exact complement (NOT of the same condition, not of one rule)"
    )
    assert lost == 0, (
        f"{lost} row(s) are neither kept nor quarantined (rows in {rows_in} = kept {n_kept} + "
        f"quarantined {n_quarantined} + lost {lost}): a rule on a NULL value is NULL, which "
        "WHERE treats as false on both sides; quarantine NOT coalesce(every rule, false) "
        "(every_rule_holds), not the failures of one rule"
    )
    assert n_kept == valid, (
        f"{n_kept} rows kept but Silver validation marks {valid} valid: keep the rows that "
        "meet every rule of EXPECTATIONS, no more, no fewer"
    )
    return f"quarantine split OK: rows in {rows_in} = kept {n_kept} + quarantined {n_quarantined}"


def check_grain(fact_df: DataFrame, silver_valid_df: DataFrame) -> str:
    """``fact_df`` has one row per ``transaction_id`` of the kept rows, no more, no fewer."""
    assert KEY in fact_df.columns, (
        f"the fact lacks {KEY}: keep the key, its grain is one row per payment attempt"
    )
    rows = fact_df.count()
    keys = fact_df.select(KEY).distinct().count()
    expected = silver_valid_df.select(KEY).distinct().count()
    assert rows == keys, (
        f"{rows - keys} extra row(s): some {KEY} appear more than once (a redelivered payment "
        "kept twice). The grain is one row per payment: keep each key's latest version "
        f"(latest_per_key on {SEQUENCE_BY}); distinct() keeps copies whose lineage differs"
    )
    assert keys == expected, (
        f"the fact has {keys} payments but the kept rows hold {expected}: keep every payment, "
        "only its older versions go"
    )
    return f"fact grain OK: {rows} rows, one per {KEY}"


def check_kinds(choice: Mapping[str, str]) -> str:
    """The learner's dataset -> kind choice against the pipeline's, with the reason."""
    reasons = {
        STREAMING_TABLE: "an append-only source read incrementally: each update reads only the "
        "files (rows) that arrived since the last, which a materialized view would recompute "
        "from everything every time",
        MATERIALIZED_VIEW: "its result depends on all rows at once (latest version per key, "
        "aggregates), so it is recomputed from its inputs: a streaming table would append "
        "partial results and never revise them",
    }
    wrong = [name for name, kind in DATASET_KINDS.items() if choice.get(name) != kind]
    assert not wrong, "; ".join(
        f"{name} should be a {DATASET_KINDS[name]}, not {choice.get(name)!r}: "
        f"{reasons.get(DATASET_KINDS[name], 'a step no one reads outside the pipeline')}"
        for name in wrong
    )
    return f"dataset kinds OK: {len(choice)} datasets"


# --------------------------------------------------------------------------- running it


def project_folder(root: str | Path | None = None) -> Path:
    """The pipeline's folder (``pipelines/lakehouse`` of the course checkout)."""
    from lakehouse.config import project_root

    return Path(root or project_root()) / PIPELINE_FOLDER


def pipeline_catalog(catalog: str) -> str:
    """The catalog folder the local pipeline keeps its metastore, tables and checkpoints in."""
    return f"{catalog}_pipeline"


def table_location(settings, name: str) -> Path:
    """Where the local pipeline's table ``name`` lives (a managed table of its catalog)."""
    from lakehouse.config import settings as make_settings

    s = make_settings(catalog=pipeline_catalog(settings.catalog), lake=settings.lake)
    return s.catalog_path / "_warehouse" / f"{DATABASE}.db" / name


def _settings(spark):
    from lakehouse.config import settings
    from lakehouse.session import settings_of

    return settings_of(spark) or settings()


def read_table(spark: SparkSession, name: str) -> DataFrame:
    """One of the pipeline's tables: by path from the local pipeline's catalog, or by name
    (``<catalog>.pipeline.<name>``) on Databricks."""
    from lakehouse.engines import engine_of

    if name not in TABLES:
        raise KeyError(f"the pipeline has no table {name!r}: use one of {', '.join(TABLES)}")
    if engine_of(spark) == "databricks":
        return spark.table(f"{DATABASE}.{name}")
    path = table_location(_settings(spark), name)
    if not (path / "_delta_log").is_dir():
        raise FileNotFoundError(
            f"{name} does not exist yet at {path}: run the pipeline first (Runner(spark).run())"
        )
    return spark.read.format("delta").load(str(path))


def landing_folder(spark: SparkSession) -> str:
    """Where the lesson and ``make pipeline`` drop payment files for the pipeline."""
    from lakehouse.autoloader import landing_location

    return landing_location(spark, "pipeline_payments")


def deliver(spark: SparkSession, raw_root: str | Path, files: int) -> list[str]:
    """Land the first ``files`` deliveries (day folders) of the payment source in the
    pipeline's landing folder, as the upstream system would; returns the files new this call."""
    from lakehouse.autoloader import land_batches

    batches = bronze.source_batches(DATASET, raw_root)
    if not 0 < files <= len(batches):
        raise ValueError(f"files must be between 1 and {len(batches)} (the source's deliveries)")
    return land_batches(landing_folder(spark), batches[:files])


@dataclass
class RunReport:
    """One pipeline run: how long it took, each table's rows after it and rows it added."""

    full_refresh: bool
    seconds: float
    rows: dict[str, int]
    added: dict[str, int]
    log: list[str] = field(default_factory=list)

    def table(self):
        """The report as a pandas frame, one row per table."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "table": name,
                    "kind": DATASET_KINDS[name],
                    "rows": self.rows[name],
                    "added_by_run": self.added[name],
                }
                for name in self.rows
            ]
        )


class PipelineError(RuntimeError):
    """A pipeline run failed; the message holds the end of its event log."""


class Runner:
    """Runs the pipeline on this machine: a Spark Connect server with Delta's jars and a
    catalog of the pipeline's own, kept up between runs, and one ``spark-pipelines``-style
    client process per run. Use it as a context manager, or call :meth:`stop`."""

    def __init__(self, spark: SparkSession, *, folder: str | Path | None = None):
        from lakehouse.engines import EngineUnavailable, engine_of

        engine = engine_of(spark)
        if engine == "embedded":
            raise EngineUnavailable(
                "the pipeline needs Delta's jars: use engine delta-spark or databricks"
            )
        self.spark = spark
        self.engine = engine
        self.settings = _settings(spark)
        self.folder = Path(folder) if folder else project_folder()
        self._server = None
        self._updated = False
        self.url: str | None = None

    # -- the server
    def start(self) -> str:
        if self.url:
            return self.url
        from lakehouse import connect_server

        s = self.settings
        env = {
            "LAKEHOUSE_ENGINE": "delta-spark",
            "LAKEHOUSE_CATALOG": pipeline_catalog(s.catalog),
            "LAKEHOUSE_LAKE": str(s.lake),
            "LAKEHOUSE_SCALE": s.scale,
            # The pipeline's tables must keep their names from one server to the next.
            "LAKEHOUSE_METASTORE": "hive",
        }
        self._server = connect_server.ConnectServer(
            0,
            env=env,
            log_dir=s.lake / pipeline_catalog(s.catalog) / "_server",
            conf={"spark.driver.memory": "1g"},
        )
        self.url = self._server.start()
        atexit.register(self.stop)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None
        self.url = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- a run
    def storage(self) -> Path:
        return self.settings.lake / pipeline_catalog(self.settings.catalog) / "_storage"

    def counts(self) -> dict[str, int]:
        """Rows per table now (0 for a table not created yet)."""
        from pyspark.errors import AnalysisException

        result = {}
        for name in TABLES:
            try:
                result[name] = read_table(self.spark, name).count()
            except (FileNotFoundError, AnalysisException):  # not created yet
                result[name] = 0
        return result

    def run(self, *, full_refresh: bool = False, timeout: float = 900) -> RunReport:
        """One pipeline update (``spark-pipelines run``): the streaming tables read what arrived
        since the last run, the materialized views are recomputed. ``full_refresh`` resets every
        table and checkpoint first (``--full-refresh-all``) and reads every file again.

        On Databricks it starts an update of the deployed pipeline; a Runner's first update
        there is a full refresh, since the workspace's pipeline keeps the tables of earlier
        runs and :func:`reset` only empties the landing folder."""
        databricks = self.engine == "databricks"
        full_refresh = full_refresh or (databricks and not self._updated)
        before = self.counts()
        if databricks:
            seconds, log = update_on_databricks(full_refresh=full_refresh, timeout=timeout)
        else:
            seconds, log = self._run_locally(full_refresh, timeout)
        self._updated = True
        after = self.counts()
        added = {name: after[name] - (0 if full_refresh else before[name]) for name in TABLES}
        return RunReport(full_refresh, round(seconds, 1), after, added, log)

    def _run_locally(self, full_refresh: bool, timeout: float) -> tuple[float, list[str]]:
        url = self.start()
        command = [
            sys.executable,
            "-m",
            "lakehouse.production.pipeline_cli",
            "--spec",
            str(self.folder / SPEC_FILE),
            "--remote",
            url,
            "--storage",
            self.storage().as_uri(),
            "--conf",
            f"{LANDING_CONF}={landing_folder(self.spark)}",
            "--conf",
            f"{READER_CONF}=files",
        ]
        if full_refresh:
            command.append("--full-refresh-all")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("SPARK_REMOTE", None)
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        seconds = time.monotonic() - started
        log = done.stdout.splitlines()
        if done.returncode != 0:
            tail = "\n".join([*log[-15:], *done.stderr.splitlines()[-25:]])
            raise PipelineError(f"the pipeline run failed (exit {done.returncode}):\n{tail}")
        return seconds, log


def update_on_databricks(
    *, full_refresh: bool = False, name: str | None = None, timeout: float = 3600
) -> tuple[float, list[str]]:
    """On Databricks: start an update of the pipeline the bundle deployed (what
    ``databricks bundle run lakehouse_pipeline`` does) with the Databricks SDK and wait for it;
    returns its seconds and its final state."""
    from databricks.sdk import WorkspaceClient

    w = WorkspaceClient()
    wanted = name or os.environ.get("LAKEHOUSE_PIPELINE_NAME", "lakehouse-pipeline")
    found = [p for p in w.pipelines.list_pipelines() if (p.name or "").endswith(wanted)]
    if not found:
        raise PipelineError(
            f"no pipeline named like {wanted!r} in this workspace: deploy it with "
            "`databricks bundle deploy` (resources/lakehouse_pipeline.yml)"
        )
    pipeline_id = found[0].pipeline_id
    started = time.monotonic()
    update = w.pipelines.start_update(pipeline_id, full_refresh=full_refresh)
    while time.monotonic() - started < timeout:
        state = w.pipelines.get_update(pipeline_id, update.update_id).update.state
        if state.value in ("COMPLETED", "FAILED", "CANCELED"):
            break
        time.sleep(10)
    else:
        raise PipelineError(f"the pipeline update did not end within {timeout:.0f} s")
    if state.value != "COMPLETED":
        raise PipelineError(f"the pipeline update ended {state.value}: see its event log")
    return time.monotonic() - started, [f"Run is {state.value}."]


def flows_completed(log: Iterable[str]) -> list[str]:
    """The flows a run's event log reports completed, in order."""
    pattern = re.compile(r"Flow [`'\"]?([^`'\" ]+)[`'\"]? has COMPLETED")
    return [m.group(1).split(".")[-1] for line in log if (m := pattern.search(line))]


def compare_kpis(actual: DataFrame, expected: DataFrame, name: str) -> list[str]:
    """Differences between a KPI's rows from the pipeline and from the notebooks' Gold (both
    ways, order ignored); empty when they agree."""
    columns = expected.columns
    missing = [c for c in columns if c not in actual.columns]
    if missing:
        return [f"{name}: the pipeline's rows lack {missing}"]
    a, e = actual.select(*columns), expected
    problems = []
    for label, rows in (("only in the pipeline", a.exceptAll(e)), ("only in Gold", e.exceptAll(a))):
        found = rows.limit(5).collect()
        if found:
            problems.append(f"{name}: {label}: {[tuple(r) for r in found]}")
    return problems


def compare_with_gold(spark: SparkSession) -> dict[str, list[str]]:
    """Each pipeline KPI against the same KPI's SQL over the notebooks' ``gold.fact_payments``
    (build it with ``lakehouse.gold.facts.ensure_facts`` first): KPI -> differences, empty
    lists when the pipeline's Gold matches."""
    from lakehouse.production import dashboards

    return {
        name: compare_kpis(read_table(spark, name), spark.sql(dashboards.kpi(name).sql), name)
        for name in KPIS
    }


def batch_fact(spark: SparkSession, raw_root: str | Path) -> DataFrame:
    """``fact_payments`` computed as one batch over every delivered file, the way the
    notebooks build ``gold.fact_payments`` from Bronze (validation, latest version per key,
    measures), without the pipeline."""
    files = [p for batch in bronze.source_batches(DATASET, raw_root) for p in batch.paths]
    return (
        bronze.read_raw(spark, DATASET, files)
        .transform(with_file_lineage)
        .transform(checked)
        .transform(kept_rows())
        .transform(silver_rows)
        .transform(latest_payments)
        .transform(fact_payments)
    )


def compare_with_batch(spark: SparkSession, raw_root: str | Path) -> dict[str, list[str]]:
    """Each pipeline KPI against the same KPI's SQL over :func:`batch_fact` (a temporary view
    ``fact_payments_batch``): KPI -> differences, empty lists when they agree."""
    batch_fact(spark, raw_root).createOrReplaceTempView("fact_payments_batch")
    return {
        name: compare_kpis(
            read_table(spark, name), spark.sql(kpi_sql(name, "fact_payments_batch")), name
        )
        for name in KPIS
    }


def reset(spark: SparkSession) -> None:
    """Forget every run: the landing folder and, locally, the pipeline's catalog (tables,
    metastore, checkpoints). Stop any Runner first."""
    import shutil

    from lakehouse.engines import engine_of

    s = _settings(spark)
    if engine_of(spark) != "databricks":  # there the first update is a full refresh (Runner)
        shutil.rmtree(s.lake / pipeline_catalog(s.catalog), ignore_errors=True)
    shutil.rmtree(landing_folder(spark), ignore_errors=True)


__all__: Sequence[str] = (
    "EXPECTATIONS",
    "Runner",
    "RunReport",
    "batch_fact",
    "compare_with_batch",
    "compare_with_gold",
    "check_grain",
    "check_kinds",
    "check_quarantine_split",
    "every_rule_holds",
    "fact_payments",
    "kept_rows",
    "kpi_sql",
    "latest_payments",
    "quarantined_rows",
    "read_table",
)
