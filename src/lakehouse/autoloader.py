"""Incremental file ingestion: files dropped into a landing folder land in Bronze exactly once.

On Databricks this is Auto Loader (``format("cloudFiles")``): it remembers which files it has
read in the stream's checkpoint, tracks the schema at ``cloudFiles.schemaLocation`` and adds the
columns that new files bring. Everywhere else the same contract is kept with Spark's own file
streaming source: an explicit schema, ``trigger(availableNow=True)`` and a checkpoint (the list
of files already read), ``mergeSchema`` on the Delta sink, and the schema tracked from the
Bronze table itself (a new column is found in the files not ingested yet, and appended).

Example::

    from lakehouse import autoloader, bronze
    landing = autoloader.landing_location(spark, "payments")
    autoloader.land_batches(landing, bronze.source_batches("payments.transactions", raw_root)[:2])
    report = autoloader.ingest_stream(spark, "payments.transactions", landing=landing)
    report.rows          # rows appended by this run; 0 when no new file arrived
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from lakehouse import bronze
from lakehouse.bronze import (
    BATCH_ID,
    CORRUPT_RECORD,
    INGESTION_DATE,
    INGESTION_TIMESTAMP,
    METADATA_COLUMNS,
    SOURCE_FILE,
    SOURCE_SYSTEM,
    BronzeSource,
)

RESCUED_DATA = "_rescued_data"  # Auto Loader's column for values that do not fit the schema
# Auto Loader stops a stream when files bring a new column (after recording it at the schema
# location); the documented answer is to restart it, which a job's retries do.
_NEW_COLUMN_ERRORS = ("UNKNOWN_FIELD_EXCEPTION", "UnknownFieldException")
_MAX_SCHEMA_RESTARTS = 3


# --------------------------------------------------------------------------- locations


def landing_location(spark: SparkSession, name: str) -> str:
    """The folder where files for ``name`` arrive: ``<lake>/<catalog>/_landing/<name>``.

    On Databricks set ``LAKEHOUSE_LAKE`` to a Unity Catalog volume so it is
    ``/Volumes/<catalog>/<schema>/<volume>/<catalog>/_landing/<name>``."""
    from lakehouse.config import settings
    from lakehouse.session import settings_of

    s = settings_of(spark) or settings()
    return str(s.catalog_path / "_landing" / name)


def stream_checkpoint(spark: SparkSession, dataset: str | BronzeSource) -> str:
    """The checkpoint of the stream that fills the source's Bronze table."""
    from lakehouse.course import checkpoint_location

    return checkpoint_location(spark, bronze.source(dataset).table.replace(".", "/"))


def _cloudfiles_checkpoint(checkpoint: str) -> str:
    # A checkpoint belongs to one kind of source: Auto Loader cannot resume the plain file
    # stream's checkpoint (or the reverse), so each keeps its own.
    return checkpoint.rstrip("/") + "_cloudfiles"


def default_landing(spark: SparkSession, dataset: str | BronzeSource) -> str:
    """Where :func:`ingest_stream` lands a source's files: its source system's landing folder."""
    return landing_location(spark, bronze.source(dataset).source_system)


def land_batches(landing: str | Path, batches: Iterable[bronze.SourceBatch]) -> list[str]:
    """Deliver batches into the landing folder, the way an upstream system drops files.

    Each batch keeps its folder (``<landing>/2026-06-01/events_0001.json``). A file is copied
    under a hidden name and renamed once complete, so a stream listing the folder never reads
    a half-written file (Spark skips names starting with ``.`` or ``_``). Files already there are
    left alone. Returns the files delivered by this call."""
    delivered = []
    for batch in batches:
        for unit in map(Path, batch.paths):
            files = sorted(unit.rglob("*")) if unit.is_dir() else [unit]
            for file in (f for f in files if f.is_file() and not f.name.startswith((".", "_"))):
                relative = file.relative_to(unit.parent)
                target = Path(landing) / relative
                if target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                staging = target.with_name(f".{target.name}.landing")
                shutil.copyfile(file, staging)
                os.replace(staging, target)
                delivered.append(str(target))
    return delivered


def reset_stream(spark: SparkSession, dataset: str | BronzeSource, landing: str) -> None:
    """Drop the source's Bronze table, its stream checkpoint and the landing folder: the state
    before the first file arrived (a lesson replays the arrival from there)."""
    from lakehouse.course import drop_table

    drop_table(spark, bronze.source(dataset).table)
    checkpoint = stream_checkpoint(spark, dataset)
    shutil.rmtree(checkpoint, ignore_errors=True)
    shutil.rmtree(_cloudfiles_checkpoint(checkpoint), ignore_errors=True)
    shutil.rmtree(landing, ignore_errors=True)


# --------------------------------------------------------------------------- schema


def initial_schema(dataset: str | BronzeSource) -> StructType:
    """The explicit schema of the files as first delivered: the source's raw columns without
    those a later schema change added, plus ``_corrupt_record``."""
    src = bronze.source(dataset)
    added = {c.name for c in src.spec.columns if c.added_in_schema_change}
    return StructType([f for f in src.raw_schema.fields if f.name not in added])


def known_schema(spark: SparkSession, dataset: str | BronzeSource) -> StructType:
    """The schema tracked so far: the Bronze table's source columns (lineage left out) when the
    table exists, else :func:`initial_schema`. The table is where an evolved schema lives."""
    src = bronze.source(dataset)
    if not spark.catalog.tableExists(src.table):
        return initial_schema(src)
    table_schema = spark.table(src.table).schema
    return StructType([f for f in table_schema.fields if f.name not in METADATA_COLUMNS])


def _local(path: str) -> str:
    parsed = urlparse(path)
    return unquote(parsed.path) if parsed.scheme in ("file", "dbfs") else path


def landed_files(landing: str | Path) -> list[str]:
    """Every complete file in the landing folder (hidden and staging names skipped)."""
    root = Path(landing)
    if not root.is_dir():
        return []
    hidden = (".", "_")
    return sorted(
        str(p)
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(hidden) for part in p.relative_to(root).parts)
    )


def pending_files(spark: SparkSession, dataset: str | BronzeSource, landing: str) -> list[str]:
    """Files in the landing folder whose rows are not in the Bronze table yet."""
    src = bronze.source(dataset)
    files = landed_files(landing)
    if not files or not spark.catalog.tableExists(src.table):
        return files
    ingested = {
        _local(row[0]) for row in spark.table(src.table).select(SOURCE_FILE).distinct().collect()
    }
    return [f for f in files if f not in ingested]


def new_columns(spark: SparkSession, files: list[str], schema: StructType) -> list[StructField]:
    """Columns the files carry that ``schema`` lacks, as strings (what Auto Loader infers for
    JSON unless told to infer types): found by sampling the files' own schema."""
    if not files:
        return []
    known = {f.name.lower() for f in schema.fields} | {CORRUPT_RECORD}
    found = spark.read.option("samplingRatio", 1.0).json(files).schema
    return [StructField(f.name, StringType(), True) for f in found if f.name.lower() not in known]


def evolve(schema: StructType, columns: Iterable[StructField]) -> StructType:
    """``schema`` with ``columns`` appended (``addNewColumns``: existing columns never change)."""
    names = {f.name for f in schema.fields}
    return StructType([*schema.fields, *(c for c in columns if c.name not in names)])


# --------------------------------------------------------------------------- the stream


def with_file_lineage(source_system: str) -> Callable[[DataFrame], DataFrame]:
    """Bronze's lineage columns for a file stream: the same as a batch write, with the batch
    being the arrival folder a file came in (``.../2026-06-01/events_0001.json`` -> ``2026-06-01``),
    the label :func:`lakehouse.bronze.source_batches` gives it."""

    def transform(df: DataFrame) -> DataFrame:
        now = F.current_timestamp()
        file_path = F.col("_metadata.file_path")
        return df.select(
            "*",
            now.alias(INGESTION_TIMESTAMP),
            file_path.alias(SOURCE_FILE),
            F.lit(source_system).alias(SOURCE_SYSTEM),
            F.regexp_extract(file_path, r"([^/]+)/[^/]+$", 1).alias(BATCH_ID),
            F.to_date(now).alias(INGESTION_DATE),
        )

    return transform


def read_landing(
    spark: SparkSession, dataset: str | BronzeSource, landing: str, schema: StructType
) -> DataFrame:
    """The portable stream: JSON files under ``landing`` read with an explicit schema; a line
    that does not parse is kept whole in ``_corrupt_record`` (PERMISSIVE), never dropped."""
    src = bronze.source(dataset)
    if src.file_format != "json":
        raise ValueError(
            f"read_landing reads JSON files; {src.dataset!r} is {src.file_format}: "
            "use spark.readStream.format(...) with its schema"
        )
    return (
        spark.readStream.schema(schema)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .option("recursiveFileLookup", "true")  # one folder per arrival day
        .json(landing)
        .transform(with_file_lineage(src.source_system))
    )


def schema_hints(schema: StructType) -> str:
    """``cloudFiles.schemaHints`` pinning the types of the known columns (Auto Loader would
    otherwise infer every JSON field as a string)."""
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in schema.fields)


def read_landing_cloudfiles(
    spark: SparkSession, dataset: str | BronzeSource, landing: str, schema_location: str
) -> DataFrame:
    """The Databricks form: Auto Loader with schema tracking and evolution.

    No ``.schema(...)``: a fixed schema turns evolution off (``schemaEvolutionMode`` none); the
    known columns are pinned with schema hints instead, new columns are added to the schema
    at ``schemaLocation``, and values that do not fit land in ``_rescued_data``."""
    src = bronze.source(dataset)
    return (
        spark.readStream.format("cloudFiles")
        .option("cloudFiles.format", src.file_format)
        .option("cloudFiles.schemaLocation", schema_location)
        .option("cloudFiles.schemaEvolutionMode", "addNewColumns")
        .option("cloudFiles.schemaHints", schema_hints(initial_schema(src)))
        .option("rescuedDataColumn", RESCUED_DATA)
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .load(landing)
        .transform(with_file_lineage(src.source_system))
    )


def write_to_bronze(stream_df: DataFrame, table: str, checkpoint: str):
    """Start the sink: one available-now run into ``table`` (new columns merged into its
    schema), exactly once per file thanks to the checkpoint. Returns the query."""
    return (
        stream_df.writeStream.format("delta")
        .outputMode("append")
        .option("checkpointLocation", checkpoint)
        .option("mergeSchema", "true")
        .trigger(availableNow=True)
        .toTable(table)
    )


def _run_autoloader(spark: SparkSession, src: BronzeSource, landing: str, checkpoint: str) -> None:
    from pyspark.errors import StreamingQueryException

    for attempt in range(_MAX_SCHEMA_RESTARTS + 1):
        stream_df = read_landing_cloudfiles(spark, src, landing, schema_location=checkpoint)
        query = write_to_bronze(stream_df, src.table, checkpoint)
        try:
            query.awaitTermination()
            return
        except StreamingQueryException as exc:
            if attempt == _MAX_SCHEMA_RESTARTS or not any(
                marker in str(exc) for marker in _NEW_COLUMN_ERRORS
            ):
                raise


@dataclass(frozen=True)
class StreamReport:
    table: str
    files: tuple[str, ...]  # files this run ingested
    rows: int  # rows this run appended
    new_columns: tuple[str, ...]  # columns this run added to the table


def _file_counts(spark: SparkSession, table: str) -> dict[str, int]:
    if not spark.catalog.tableExists(table):
        return {}
    rows = spark.table(table).groupBy(SOURCE_FILE).count().collect()
    return {_local(row[0]): row[1] for row in rows}


def _refresh(spark: SparkSession, table: str) -> None:
    # The embedded engine's catalog keeps the schema a table had when a stream started, so a
    # column the stream merged in is invisible to spark.table() until the name is re-bound.
    from lakehouse.session import engine_of

    if engine_of(spark) == "embedded":
        from lakehouse.engines.embedded.catalog import catalog_for

        catalog = catalog_for(spark)
        if catalog is not None:
            catalog.register(table)


def ingest_stream(
    spark: SparkSession,
    dataset: str | BronzeSource,
    *,
    landing: str | None = None,
    checkpoint: str | None = None,
    raw_root: str | Path | None = None,
) -> StreamReport:
    """Run the source's incremental ingestion once (available now, then stop).

    With ``raw_root``, first deliver every batch the source has there into the landing folder.
    On Databricks this runs Auto Loader (restarting when it stops to add a column, as a job's
    retry would); elsewhere the portable stream, whose schema is the one tracked so far plus the
    columns the pending files bring. Files already ingested are never read again."""
    from lakehouse.session import engine_of

    src = bronze.source(dataset)
    landing = landing or default_landing(spark, src)
    checkpoint = checkpoint or stream_checkpoint(spark, src)
    if raw_root is not None:
        land_batches(landing, bronze.source_batches(src, raw_root))
    if not spark.catalog.tableExists(src.table):
        # A checkpoint outlives a dropped table: the files it lists went into a table that is
        # gone, so a new table must start from the first landed file.
        shutil.rmtree(checkpoint, ignore_errors=True)
        shutil.rmtree(_cloudfiles_checkpoint(checkpoint), ignore_errors=True)
    before_columns = set(known_schema(spark, src).fieldNames())
    before = _file_counts(spark, src.table)
    # The table exists before the first file so it carries Bronze's comment, properties and
    # partitioning, and so columns a later file adds are appended after the lineage columns.
    bronze.create_bronze_table(spark, src, schema=initial_schema(src))
    if engine_of(spark) == "databricks":
        _run_autoloader(spark, src, landing, _cloudfiles_checkpoint(checkpoint))
    else:
        schema = known_schema(spark, src)
        schema = evolve(schema, new_columns(spark, pending_files(spark, src, landing), schema))
        query = write_to_bronze(read_landing(spark, src, landing, schema), src.table, checkpoint)
        query.awaitTermination()  # raises if the run failed
    _refresh(spark, src.table)
    after = _file_counts(spark, src.table)
    files = tuple(sorted(f for f in after if f not in before))
    added = tuple(c for c in known_schema(spark, src).fieldNames() if c not in before_columns)
    return StreamReport(src.table, files, sum(after.values()) - sum(before.values()), added)
