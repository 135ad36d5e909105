"""Extraction from an operational database into Bronze with ``spark.read.jdbc``: a full load,
incremental loads by high watermark kept in a Delta control table, and deletes found by
comparing keys (lesson 01_bronze/05).

A Bronze mirror holds one row per source key: the source's columns as last extracted, plus
lineage (``_source_table``, ``_extraction_id``, ``_extracted_at``) and ``_deleted_at``, set
when a later extraction found the key gone from the source (the row is kept, so Silver can
propagate the delete). Its rows with ``_deleted_at`` null equal the source table's rows after
every extraction; :func:`check_bronze_matches_source` proves it.

Example::

    from lakehouse import extract
    from lakehouse.services import postgres

    source = extract.JdbcSource(postgres.jdbc_url(), postgres.jdbc_properties())
    extract.full_load(spark, "shop.orders", read=source.table_reader(spark))
    report = extract.incremental_load(
        spark, "shop.orders",
        read_changes=source.changes_reader(spark),
        find_deleted=source.deleted_finder(spark),
    )
    print(report)   # shop.orders incremental: 31 read, 10 inserted, 21 updated, 3 deleted ...
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.datagen import system_of_record

WATERMARKS = "bronze.extract_watermarks"
SOURCE_TABLE = "_source_table"
EXTRACTION_ID = "_extraction_id"
EXTRACTED_AT = "_extracted_at"
DELETED_AT = "_deleted_at"
LINEAGE_COLUMNS = (SOURCE_TABLE, EXTRACTION_ID, EXTRACTED_AT, DELETED_AT)
# The session runs in UTC (get_spark sets it), so a formatted timestamp carries 'Z'.
ISO_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"


@dataclass(frozen=True)
class SourceTable:
    """A table of the source database: its name, primary key and watermark column."""

    name: str
    keys: tuple[str, ...]
    watermark_column: str = "updated_at"

    @property
    def bronze(self) -> str:
        """``"shop.orders"`` -> ``"bronze.shop_orders"``."""
        return "bronze." + self.name.replace(".", "_")


SHOP_TABLES: dict[str, SourceTable] = {
    system_of_record.qualified(t): SourceTable(system_of_record.qualified(t), keys)
    for t, keys in system_of_record.KEYS.items()
}


def source_table(table: str | SourceTable) -> SourceTable:
    if isinstance(table, SourceTable):
        return table
    try:
        return SHOP_TABLES[table]
    except KeyError:
        raise ValueError(
            f"unknown source table {table!r}: choose one of {', '.join(SHOP_TABLES)}, or pass a "
            "SourceTable(name, keys) for another table"
        ) from None


# ------------------------------------------------------------------------------ reading


def watermark_predicate(column: str, watermark: str) -> str:
    """The SQL of "changed at or after the watermark": ``>=``, not ``>``, because rows
    committed later can carry the watermark's very timestamp (a transaction's ``now()`` is
    when it began); re-reading the rows at the watermark is harmless with a MERGE by key."""
    return f"{column} >= TIMESTAMP WITH TIME ZONE '{watermark}'"


@dataclass(frozen=True)
class JdbcSource:
    """Where to read: a JDBC URL and the properties of ``spark.read.jdbc`` (user, password,
    driver). The password never shows in a repr."""

    url: str
    properties: Mapping[str, str] = field(repr=False)

    def read(self, spark: SparkSession, table: str, **options) -> DataFrame:
        """``spark.read.jdbc`` of a table, or of a parenthesised query with an alias."""
        properties = {**self.properties, **{k: str(v) for k, v in options.items()}}
        with explained(self.url, table):
            return spark.read.jdbc(self.url, table, properties=properties)

    def table_reader(self, spark: SparkSession) -> Callable[[str], DataFrame]:
        return lambda table: self.read(spark, table)

    def changes_reader(self, spark: SparkSession) -> Callable[[str, str], DataFrame]:
        def read_changes(table: str, watermark: str) -> DataFrame:
            column = source_table(table).watermark_column
            query = f"(SELECT * FROM {table} WHERE {watermark_predicate(column, watermark)}) AS c"
            return self.read(spark, query)

        return read_changes

    def deleted_finder(self, spark: SparkSession) -> Callable[[str, DataFrame], DataFrame]:
        def find_deleted(table: str, bronze_df: DataFrame) -> DataFrame:
            keys = list(source_table(table).keys)
            source_keys = self.read(spark, f"(SELECT {', '.join(keys)} FROM {table}) AS k")
            return bronze_df.select(*keys).join(source_keys, keys, "left_anti")

        return find_deleted


@contextmanager
def explained(url: str, table: str | None = None) -> Iterator[None]:
    """Turn the JDBC driver's errors (wrong password, server down, no such table) into a
    :class:`~lakehouse.services.postgres.PostgresError` that names the fix. Spark Connect
    reports them at the first action, so the loads below wrap their whole run in it."""
    from lakehouse.services import postgres

    try:
        yield
    except Exception as exc:
        text = str(exc)
        if "org.postgresql" in text or "PSQLException" in text:
            port = re.search(r"//[^:/]+:(\d+)/", url)
            raise postgres.explain(
                text, port=int(port.group(1)) if port else None, table=table
            ) from None
        raise


# ------------------------------------------------------------------------------ watermarks


def create_watermark_table(spark: SparkSession, name: str = WATERMARKS) -> None:
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {name.split('.')[0]}")
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {name} (source_table STRING NOT NULL, "
        "watermark_column STRING NOT NULL, watermark TIMESTAMP, extraction_id STRING, "
        "extracted_at TIMESTAMP, rows_read BIGINT) USING delta "
        "COMMENT 'The high watermark of each extracted source table: one row per table, "
        "moved only after the Bronze write succeeded'"
    )


def read_watermark(spark: SparkSession, table: str, name: str = WATERMARKS) -> str | None:
    """The watermark of ``table`` as ISO-8601 UTC with microseconds, or None before any load."""
    if not spark.catalog.tableExists(name):
        return None
    row = (
        spark.table(name)
        .where(F.col("source_table") == table)
        .select(F.date_format("watermark", ISO_FORMAT).alias("w"))
        .first()
    )
    return row.w if row else None


def _save_watermark(spark, report: ExtractReport, name: str) -> None:
    from lakehouse.tables import DeltaTable

    create_watermark_table(spark, name)
    row = spark.createDataFrame(
        [
            (
                report.source_table,
                report.watermark_column,
                report.watermark_after,
                report.extraction_id,
                report.extracted_at,
                report.rows_read,
            )
        ],  # fmt: skip
        "source_table string, watermark_column string, watermark_text string, "
        "extraction_id string, extracted_at timestamp, rows_read bigint",
    ).select(
        "source_table",
        "watermark_column",
        F.to_timestamp("watermark_text").alias("watermark"),
        "extraction_id",
        "extracted_at",
        "rows_read",
    )
    (
        DeltaTable.forName(spark, name)
        .alias("t")
        .merge(row.alias("s"), "t.source_table = s.source_table")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )


# ------------------------------------------------------------------------------ loads


@dataclass
class ExtractReport:
    """What one extraction did; ``versions`` are the Bronze table's before and after."""

    source_table: str
    kind: str
    extraction_id: str
    extracted_at: datetime
    watermark_column: str
    watermark_before: str | None
    watermark_after: str | None
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    versions: tuple[int | None, int | None] = (None, None)
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.deleted

    def __str__(self) -> str:
        return (
            f"{self.source_table} {self.kind}: {self.rows_read} read, {self.inserted} inserted, "
            f"{self.updated} updated, {self.deleted} deleted, {self.unchanged} unchanged; "
            f"watermark {self.watermark_before} -> {self.watermark_after}; Bronze version "
            f"{self.versions[0]} -> {self.versions[1]}"
        )


def _version(spark: SparkSession, name: str) -> int | None:
    from lakehouse.tables import DeltaTable

    if not spark.catalog.tableExists(name):
        return None
    return DeltaTable.forName(spark, name).history(1).first()["version"]


def _new_extraction(table: SourceTable, kind: str, watermark: str | None) -> ExtractReport:
    return ExtractReport(
        source_table=table.name,
        kind=kind,
        extraction_id=f"{table.name}:{kind}:{uuid.uuid4().hex[:12]}",
        extracted_at=datetime.now(UTC),
        watermark_column=table.watermark_column,
        watermark_before=watermark,
        watermark_after=watermark,
    )


def with_lineage(report: ExtractReport) -> Callable[[DataFrame], DataFrame]:
    """Add ``_source_table``, ``_extraction_id``, ``_extracted_at`` and a null ``_deleted_at``."""

    def add(df: DataFrame) -> DataFrame:
        return df.select(
            *[c for c in df.columns if c not in LINEAGE_COLUMNS],
            F.lit(report.source_table).alias(SOURCE_TABLE),
            F.lit(report.extraction_id).alias(EXTRACTION_ID),
            F.lit(report.extracted_at).cast("timestamp").alias(EXTRACTED_AT),
            F.lit(None).cast("timestamp").alias(DELETED_AT),
        )

    return add


def _max_watermark(df: DataFrame, column: str, floor: str | None) -> str | None:
    latest = df.select(F.date_format(F.max(column), ISO_FORMAT).alias("w")).first().w
    return max((w for w in (latest, floor) if w), default=None)


def full_load(
    spark: SparkSession,
    table: str | SourceTable,
    *,
    read: Callable[[str], DataFrame],
    bronze_table: str | None = None,
    watermarks: str | None = WATERMARKS,
) -> ExtractReport:
    """Read all of ``table`` with ``read(name)`` and replace its Bronze mirror; then, and
    only then, set its watermark to the latest ``updated_at`` read."""
    table = source_table(table)
    with explained("", table.name):
        return _full_load(spark, table, read, bronze_table or table.bronze, watermarks)


def _full_load(spark, table: SourceTable, read, target: str, watermarks) -> ExtractReport:
    started = time.monotonic()
    report = _new_extraction(table, "full", None)
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {target.split('.')[0]}")
    rows = read(table.name).transform(with_lineage(report))
    rows.write.format("delta").mode("overwrite").option("overwriteSchema", "true").saveAsTable(
        target
    )
    # Counted from what was written, not read again: the source may have moved on since.
    written = spark.read.table(target).where(F.col(EXTRACTION_ID) == report.extraction_id)
    totals = written.agg(
        F.count("*").alias("rows"),
        F.date_format(F.max(table.watermark_column), ISO_FORMAT).alias("latest"),
    ).first()
    report.rows_read = report.inserted = totals["rows"]
    report.watermark_after = totals["latest"]
    report.versions = (None, _version(spark, target))
    if watermarks:
        _save_watermark(spark, report, watermarks)
    report.seconds = time.monotonic() - started
    return report


def incremental_load(
    spark: SparkSession,
    table: str | SourceTable,
    *,
    read_changes: Callable[[str, str], DataFrame],
    find_deleted: Callable[[str, DataFrame], DataFrame] | None = None,
    bronze_table: str | None = None,
    watermarks: str | None = WATERMARKS,
    watermark: str | None = None,
    append: bool = False,
) -> ExtractReport:
    """Extract the rows of ``table`` changed since its watermark and bring the Bronze mirror
    up to date in one MERGE by primary key; then move the watermark.

    ``read_changes(name, watermark)`` returns the source rows changed since ``watermark``
    (ISO-8601 UTC). Rows Bronze already holds exactly as read are not written again, so a
    rerun writes nothing and leaves every version as it was. ``find_deleted(name,
    bronze_df)`` returns the keys of the live Bronze rows the source no longer has; they get
    ``_deleted_at``. The watermark moves only after the MERGE succeeded: a run that fails
    before leaves it, and the next run reads the same rows again.

    ``watermark`` overrides the control table's; ``append`` appends what was read instead of
    merging it (the mistake lesson 01_bronze/05 shows); ``watermarks=None`` records nothing.
    """
    table = source_table(table)
    with explained("", table.name):
        return _incremental_load(
            spark,
            table,
            read_changes,
            find_deleted,
            bronze_table or table.bronze,
            watermarks,
            watermark,
            append,
        )


def _incremental_load(
    spark, table: SourceTable, read_changes, find_deleted, target, watermarks, watermark, append
) -> ExtractReport:
    from lakehouse.tables import DeltaTable

    if not spark.catalog.tableExists(target):
        raise ValueError(f"{target} does not exist: run full_load for {table.name} first")
    before = watermark or (read_watermark(spark, table.name, watermarks) if watermarks else None)
    if before is None:
        raise ValueError(
            f"{table.name} has no watermark in {watermarks}: run full_load for it first"
        )
    started = time.monotonic()
    report = _new_extraction(table, "incremental", before)
    version_before = _version(spark, target)
    keys = list(table.keys)
    changed = read_changes(table.name, before).persist()  # one read of the source per run
    try:
        report.rows_read = changed.count()
        bronze = spark.read.table(target)
        live = bronze.where(F.col(DELETED_AT).isNull())
        columns = [c for c in bronze.columns if c not in LINEAGE_COLUMNS]
        missing = sorted(set(columns) - set(changed.columns))
        if missing:
            raise ValueError(f"the rows read for {table.name} lack the columns {missing}")
        if append:
            new = changed.select(*columns)
        else:
            # only what Bronze does not hold yet, exactly: a rerun finds nothing to write
            new = changed.select(*columns).exceptAll(live.select(*columns))
        new = new.transform(with_lineage(report)).persist()
        known = bronze.select(*keys)
        report.inserted = new.join(known, keys, "left_anti").count()
        report.updated = new.count() - report.inserted
        report.unchanged = report.rows_read - report.inserted - report.updated
        gone = find_deleted(table.name, live) if find_deleted else None
        deletes = None
        if gone is not None:
            deletes = (
                gone.select(*keys)
                .distinct()
                .join(bronze.select(*keys, *[c for c in columns if c not in keys]), keys)
                .transform(with_lineage(report))
                .withColumn(DELETED_AT, F.col(EXTRACTED_AT))
                .persist()
            )
            report.deleted = deletes.count()
        if append and report.inserted + report.updated:
            new.write.format("delta").mode("append").saveAsTable(target)
        elif report.written:
            batch = new.unionByName(deletes) if deletes is not None else new
            condition = " AND ".join(f"t.{k} = s.{k}" for k in keys)
            (
                DeltaTable.forName(spark, target)
                .alias("t")
                .merge(batch.alias("s"), condition)
                .whenMatchedUpdate(
                    condition=f"s.{DELETED_AT} IS NOT NULL",
                    set={c: f"s.{c}" for c in (EXTRACTION_ID, EXTRACTED_AT, DELETED_AT)},
                )
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll(condition=f"s.{DELETED_AT} IS NULL")
                .execute()
            )
        report.watermark_after = _max_watermark(changed, table.watermark_column, before)
    finally:
        changed.unpersist()
    report.versions = (version_before, _version(spark, target))
    if watermarks and (report.watermark_after != before or report.written):
        _save_watermark(spark, report, watermarks)
    report.seconds = time.monotonic() - started
    return report


# ------------------------------------------------------------------------------ checks


def live_rows(spark: SparkSession, bronze_table: str) -> DataFrame:
    """The Bronze mirror's rows that still exist at the source, without lineage."""
    bronze = spark.read.table(bronze_table)
    return bronze.where(F.col(DELETED_AT).isNull()).drop(*LINEAGE_COLUMNS)


def _rows_agreeing(
    spark: SparkSession,
    target: str,
    bronze: DataFrame,
    source: DataFrame,
    keys: list[str],
    deleted: Sequence[str],
) -> int | None:
    """The source's row count when Bronze's live rows equal the source's row for row and the
    rows marked deleted are exactly ``deleted`` (when given), else None. One Spark job and
    one read of the source: the live rows per key, full outer joined with the source's rows
    and the keys marked deleted, compared null-safely as whole rows."""
    if [f.dataType for f in bronze.schema] != [f.dataType for f in source.schema]:
        return None  # rows of other types: the checks below compare them value by value
    per_key = bronze.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("_copies"), F.first(F.struct(*bronze.columns)).alias("_bronze")
    )
    marked = (
        spark.read.table(target)
        .where(F.col(DELETED_AT).isNotNull())
        .select(*keys, F.lit(True).alias("_marked"))
    )
    joined = per_key.join(
        source.select(*keys, F.struct(*source.columns).alias("_source")), keys, "full"
    ).join(marked, keys, "full")
    in_source, in_bronze = F.col("_source").isNotNull(), F.col("_bronze").isNotNull()
    totals = joined.agg(
        F.count_if(in_source).alias("source_rows"),
        F.count_if(
            (F.col("_copies") > 1)  # appended twice
            | (in_bronze & ~in_source)  # deleted at the source, live in Bronze
            | (F.col("_marked") & in_source)  # marked deleted, still at the source
            | (in_source & ~F.col("_bronze").eqNullSafe(F.col("_source")))  # missing or stale
        ).alias("differing"),
        F.sort_array(
            F.collect_list(
                F.when(F.col("_marked"), F.concat_ws(":", *(F.col(k).cast("string") for k in keys)))
            )
        ).alias("marked"),
    ).first()
    if totals["differing"] or (deleted and totals["marked"] != sorted(deleted)):
        return None
    return int(totals["source_rows"])


def check_bronze_matches_source(
    spark: SparkSession,
    table: str | SourceTable,
    source_df: DataFrame,
    *,
    bronze_table: str | None = None,
    at_watermark: list[str] = (),
    deleted: list[str] = (),
) -> int:
    """Assert that the live rows of the Bronze mirror equal ``source_df`` (a fresh read of
    the source table), row for row; return the row count. A difference is explained with the
    likely mistake: keys twice (appended instead of merged), rows missing or stale at the
    watermark (``>`` instead of ``>=``), rows the source deleted (no key comparison)."""
    table = source_table(table)
    target = bronze_table or table.bronze
    keys = list(table.keys)
    bronze = live_rows(spark, target)
    columns = [c for c in source_df.columns]
    missing_columns = sorted(set(columns) - set(bronze.columns))
    assert not missing_columns, f"{target} lacks the source's columns {missing_columns}"
    bronze = bronze.select(*columns)
    agreed = _rows_agreeing(spark, target, bronze, source_df.select(*columns), keys, deleted)
    if agreed is not None:
        return agreed

    # Something differs: the checks below find what, one question each, to name the fix.
    def key_list(df: DataFrame, limit: int = 5) -> list[str]:
        rows = df.select(*keys).orderBy(*keys).limit(limit).collect()
        return [":".join(str(v) for v in r) for r in rows]

    doubled = bronze.groupBy(*keys).count().where("count > 1")
    assert doubled.isEmpty(), (
        f"{target} holds {doubled.count()} keys more than once (e.g. {key_list(doubled)}): "
        "extracted rows were appended beside the copies Bronze already held (the rows re-read "
        "at the watermark too). MERGE them by primary key instead."
    )
    stale = bronze.exceptAll(source_df.select(*columns))
    absent = source_df.select(*columns).exceptAll(bronze)
    gone = stale.join(source_df.select(*keys), keys, "left_anti")
    assert gone.isEmpty(), (
        f"{target} still holds {gone.count()} rows the source deleted (e.g. {key_list(gone)}): "
        "a watermark never sees a deleted row. Compare Bronze's keys with the source's and "
        f"set {DELETED_AT} on the missing ones."
    )
    resurrect = (
        spark.read.table(target)
        .where(F.col(DELETED_AT).isNotNull())
        .select(*keys)
        .join(source_df.select(*keys), keys)
    )
    assert resurrect.isEmpty(), (
        f"{target} marks {resurrect.count()} rows deleted that the source still has (e.g. "
        f"{key_list(resurrect)}): compare Bronze's keys with all of the source's keys, not "
        "only with the rows changed since the watermark."
    )
    if not absent.isEmpty():
        examples = key_list(absent)
        hint = (
            "Rows changed exactly at the watermark were skipped: read updated_at >= the "
            "watermark, not >."
            if set(examples) & set(at_watermark)
            else "Extract every row changed since the watermark (updated_at >= watermark)."
        )
        raise AssertionError(
            f"{target} lacks or has stale copies of {absent.count()} source rows (e.g. "
            f"{examples}). {hint}"
        )
    assert stale.isEmpty(), f"{target} has {stale.count()} rows the source does not have"
    deleted_now = spark.read.table(target).where(F.col(DELETED_AT).isNotNull())
    if deleted:
        marked = sorted(key_list(deleted_now, limit=1_000_000))
        assert marked == sorted(deleted), (
            f"{target} marks {marked[:5]} as deleted; the source deleted {sorted(deleted)[:5]}"
        )
    return source_df.count()


def check_rerun_wrote_nothing(report: ExtractReport) -> None:
    """Assert that an extraction run again with nothing new at the source wrote nothing."""
    assert report.written == 0, (
        f"A rerun wrote {report.inserted} inserts, {report.updated} updates and "
        f"{report.deleted} deletes into {report.source_table}'s Bronze table: write only the "
        "rows Bronze does not hold yet exactly as read (and mark a key deleted only once)."
    )
    assert report.versions[0] == report.versions[1], (
        f"A rerun moved the Bronze version {report.versions[0]} -> {report.versions[1]}: skip "
        "the MERGE when there is nothing to write."
    )


def check_incremental_report(report: ExtractReport, changes) -> None:
    """Assert that an incremental load of the system of record's day 2 wrote exactly day 2's
    inserts, updates and deletes (``changes``: :class:`lakehouse.datagen.system_of_record.
    Changes`) and read nothing but the changed rows and the rows at the watermark."""
    table = report.source_table
    expected = tuple(
        len(keys[table]) for keys in (changes.inserted, changes.updated, changes.deleted)
    )
    found = (report.inserted, report.updated, report.deleted)
    assert found == expected, (
        f"{table}: {found[0]} inserted, {found[1]} updated, {found[2]} deleted; day 2 made "
        f"{expected[0]}, {expected[1]} and {expected[2]}"
    )
    assert report.unchanged == changes.boundary[table], (
        f"{table}: {report.unchanged} rows were read again unchanged; only the "
        f"{changes.boundary[table]} at the watermark should be. Read only the rows with "
        "updated_at >= watermark (filter in the query), not the whole table."
    )
