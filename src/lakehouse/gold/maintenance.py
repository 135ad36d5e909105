"""Gold table maintenance: small files, compaction, Z-order and data skipping, time travel,
restore and the checks that prove none of them changed the data.

The maintenance lesson works on a copy of ``gold.fact_sales`` that it owns
(:data:`MAINTENANCE_TABLE`), laid out as frequent small appends leave a table, so its
compaction, bad-write and vacuum drills never touch the fact table other lessons read.

Example::

    from lakehouse.gold import facts, maintenance

    maintenance.build_small_file_copy(spark, facts.FACT_SALES, maintenance.MAINTENANCE_TABLE)
    maintenance.files_for_predicate(spark, maintenance.MAINTENANCE_TABLE, "customer_sk", 42)
    # FileSkipping(files_total=25, files_read=24)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

MAINTENANCE_TABLE = "gold.fact_sales_maintenance"
MAINTENANCE_COMMENT = (
    "Working copy of gold.fact_sales for the table-maintenance lesson: written as many small "
    "files, then compacted, Z-ordered, damaged, restored and vacuumed. Not a reporting table."
)
# Databricks' optimized writes and auto compaction would fix the small files as they are
# written; the copy turns them off so the lesson sees (and fixes) the layout itself.
SMALL_FILE_PROPERTIES = {
    "delta.autoOptimize.optimizeWrite": "false",
    "delta.autoOptimize.autoCompact": "false",
}
ROWS_PER_SMALL_FILE = 100  # what one small append of a frequent ingestion job holds here
INGESTION_ORDER = ("date_key", "order_id", "line_number")  # the order daily loads arrive in


# Open-source Delta's OPTIMIZE aims for this session setting; it refuses the table property.
OSS_MAX_FILE_SIZE = "spark.databricks.delta.optimize.maxFileSize"


def set_target_file_size(spark: SparkSession, table: str, size_bytes: int) -> None:
    """The file size ``OPTIMIZE`` aims for on ``table``.

    On Databricks it is the table property ``delta.targetFileSize``, stored in the log, so every
    job obeys it: ``ALTER TABLE t SET TBLPROPERTIES ('delta.targetFileSize' = '<bytes>')``.
    Open-source Delta Lake refuses that property (``DELTA_UNKNOWN_CONFIGURATION``): its OPTIMIZE
    reads the session setting ``spark.databricks.delta.optimize.maxFileSize`` instead, so that is
    what this sets there, for this session only."""
    from lakehouse.session import engine_of
    from lakehouse.tables import set_table_properties

    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 1:
        raise ValueError(f"size_bytes must be a positive int, not {size_bytes!r}.")
    if engine_of(spark) == "delta-spark":
        spark.conf.set(OSS_MAX_FILE_SIZE, str(size_bytes))
    else:
        set_table_properties(spark, table, {"delta.targetFileSize": str(size_bytes)})


class FileSkipping(NamedTuple):
    """How many data files a query must read after data skipping, out of the table's files."""

    files_total: int
    files_read: int

    @property
    def files_skipped(self) -> int:
        return self.files_total - self.files_read


def build_small_file_copy(
    spark: SparkSession,
    source: str,
    target: str = MAINTENANCE_TABLE,
    *,
    rows_per_file: int = ROWS_PER_SMALL_FILE,
    order_by: Sequence[str] = INGESTION_ORDER,
) -> str:
    """(Re)create ``target`` as a copy of ``source`` laid out the way frequent small appends
    leave a table: rows in ingestion order (``order_by``), cut into files of ``rows_per_file``
    rows. The copy starts afresh at version 0 (created with a comment, and with Databricks'
    optimized writes and auto compaction off) and version 1 (the data, one write). Returns
    ``target``.

    One write with ``maxRecordsPerFile`` gives the same layout as one append per batch, in a
    fraction of the time, and the same file count on every run and every engine.

    >>> build_small_file_copy(spark, "gold.fact_sales")   # doctest: +SKIP
    'gold.fact_sales_maintenance'
    """
    from lakehouse import DeltaTable
    from lakehouse.course import drop_table

    if isinstance(rows_per_file, bool) or not isinstance(rows_per_file, int) or rows_per_file < 1:
        raise ValueError(f"rows_per_file must be a positive int, not {rows_per_file!r}.")
    if source == target:
        raise ValueError(
            f"source and target are both {source!r}: the copy must be a table of its own, so "
            "the maintenance drills never damage the source."
        )
    source_df = spark.table(source)
    missing = [c for c in order_by if c not in source_df.columns]
    if missing:
        raise ValueError(
            f"order_by columns {missing} are not in {source!r}: its columns are "
            f"{source_df.columns}."
        )
    drop_table(spark, target)
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {target.split('.')[0]}")
    builder = (
        DeltaTable.create(spark)
        .tableName(target)
        .addColumns(source_df.schema)
        .comment(MAINTENANCE_COMMENT)
    )
    for key, value in SMALL_FILE_PROPERTIES.items():
        builder = builder.property(key, value)
    builder.execute()
    (
        source_df.coalesce(1)  # one task writes the files in order, cutting every N rows
        .sortWithinPartitions(*order_by)
        .write.format("delta")
        .mode("append")
        .option("maxRecordsPerFile", rows_per_file)
        .saveAsTable(target)
    )
    return target


def file_count(spark: SparkSession, table: str) -> int:
    """The number of data files in the table's current version (``DESCRIBE DETAIL``'s
    ``numFiles``)."""
    from lakehouse import DeltaTable

    return int(DeltaTable.forName(spark, table).detail().first()["numFiles"])


def files_for_predicate(
    spark: SparkSession, table: str, column: str, low: Any, high: Any = None
) -> FileSkipping:
    """How many of ``table``'s data files a query filtering ``column BETWEEN low AND high``
    (``column = low`` without ``high``) reads, out of the files in the table.

    On delta-spark and Databricks the query runs and the count is Spark's own: the ``numFiles``
    metric of the file scan ("number of files read" in the Spark UI and the query profile),
    which counts the files left after Delta's data skipping; through Spark Connect it comes
    back with the result (``DataFrame.executionInfo``). The embedded engine's reader has no
    such metric and does not skip files, so there the count is what skipping would read: the
    files whose min/max statistics for ``column`` include the range.

    >>> files_for_predicate(spark, "gold.fact_sales", "customer_sk", 42)   # doctest: +SKIP
    FileSkipping(files_total=3, files_read=1)
    """
    from lakehouse.engines import engine_of
    from lakehouse.tables import DeltaTable

    if low is None:
        raise ValueError("low must be a value to compare with, not None.")
    high = low if high is None else high
    if engine_of(spark) == "embedded":
        return _files_by_statistics(spark, table, column, low, high)
    total = int(DeltaTable.forName(spark, table).detail().first()["numFiles"])
    query = spark.table(table).where(F.col(column).between(low, high))
    query.collect()
    read = files_read(query)
    if read is None:
        raise RuntimeError(
            f"The query on {table} ran without a file scan metric to read: is {table} a Delta "
            "table? (files_for_predicate reads the numFiles metric of its scan)"
        )
    return FileSkipping(total, read)


_FILES_READ_METRICS = ("numFiles", "number of files read")


def files_read(query: DataFrame) -> int | None:
    """Files read by the file scans of ``query``'s last execution (call after an action), from
    Spark's SQL metrics: the executed plan classic, ``executionInfo`` through Spark Connect.
    ``None`` when the plan had no file scan."""
    from lakehouse.engines import is_connect

    if is_connect(query.sparkSession):
        info = query.executionInfo
        if info is None or info.metrics is None:
            return None
        counts = [
            int(metric.value)
            for plan in info.metrics._metrics
            for metric in plan.metrics
            if metric.name in _FILES_READ_METRICS
        ]
        return sum(counts) if counts else None
    todo = [query._jdf.queryExecution().executedPlan()]
    total, found = 0, False
    while todo:
        node = todo.pop()
        name = node.getClass().getSimpleName()
        if name == "AdaptiveSparkPlanExec":
            todo.append(node.executedPlan())
            continue
        if name.endswith("QueryStageExec"):
            todo.append(node.plan())
            continue
        if name == "FileSourceScanExec":
            total += int(node.metrics().apply("numFiles").value())
            found = True
        children = node.children().iterator()
        while children.hasNext():
            todo.append(children.next())
    return total if found else None


def _files_by_statistics(
    spark: SparkSession, table: str, column: str, low: Any, high: Any
) -> FileSkipping:
    from lakehouse.tables import data_file_stats

    stats = data_file_stats(spark, table, [column])
    name = next(c for c in stats.columns if c.startswith("min_"))[len("min_") :]
    lo, hi = F.col(f"min_{name}"), F.col(f"max_{name}")
    # NOT (max < low OR min > high); an unknown (null) bound keeps the file.
    may_match = F.coalesce(~((hi < F.lit(low)) | (lo > F.lit(high))), F.lit(True))
    row = stats.agg(
        F.count(F.lit(1)).alias("total"),
        F.coalesce(F.sum(may_match.cast("int")), F.lit(0)).alias("read"),
    ).first()
    return FileSkipping(int(row["total"]), int(row["read"]))


def fingerprint(df: DataFrame) -> tuple[int, int]:
    """(rows, checksum): the row count and an order-independent checksum over every column of
    every row. Equal fingerprints mean the same rows, however the files are laid out.

    >>> fingerprint(spark.table("gold.fact_sales"))   # doctest: +SKIP
    (2464, 1234567890123456789)
    """
    if not df.columns:
        raise ValueError("fingerprint needs a DataFrame with at least one column.")
    row = df.select(
        F.count(F.lit(1)).alias("rows"),
        # Summed as decimal: 64-bit hashes would overflow a long sum.
        F.coalesce(
            F.sum(F.xxhash64(*[F.col(f"`{c}`") for c in df.columns]).cast("decimal(38,0)")),
            F.lit(0).cast("decimal(38,0)"),
        ).alias("checksum"),
    ).first()
    return int(row["rows"]), int(row["checksum"])


def sales_summary(df: DataFrame) -> DataFrame:
    """One row a person can compare between versions: order lines, orders, units sold and
    order days of a ``fact_sales``-shaped DataFrame.

    >>> sales_summary(spark.table("gold.fact_sales")).show()   # doctest: +SKIP
    """
    missing = [c for c in ("order_id", "quantity", "date_key") if c not in df.columns]
    if missing:
        raise ValueError(f"sales_summary needs columns {missing}: pass a fact_sales DataFrame.")
    return df.agg(
        F.count(F.lit(1)).alias("order_lines"),
        F.countDistinct("order_id").alias("orders"),
        F.coalesce(F.sum("quantity"), F.lit(0)).cast("long").alias("units"),
        F.countDistinct("date_key").alias("order_days"),
    )


def busiest_value(df: DataFrame, column: str, *, exclude: Sequence[Any] = ()) -> Any:
    """The value of ``column`` with the most rows (ties: the smallest value), ignoring nulls
    and ``exclude`` (e.g. the unknown member -1): a deterministic pick for a selective query.

    >>> busiest_value(spark.table("gold.fact_sales"), "customer_sk", exclude=[-1])  # doctest: +SKIP
    """
    if column not in df.columns:
        raise ValueError(f"{column!r} is not a column: the DataFrame has {df.columns}.")
    candidates = df.where(F.col(column).isNotNull())
    if exclude:
        candidates = candidates.where(~F.col(column).isin(list(exclude)))
    row = (
        candidates.groupBy(column)
        .count()
        .orderBy(F.desc("count"), F.asc(column))
        .limit(1)
        .collect()
    )
    if not row:
        raise ValueError(f"No value of {column!r} to pick: the DataFrame has no such rows.")
    return row[0][column]


def latest_operation(spark: SparkSession, table: str) -> tuple[int, str, dict[str, str]]:
    """(version, operation, operationParameters) of the table's newest commit."""
    from lakehouse import DeltaTable

    row = DeltaTable.forName(spark, table).history(1).first()
    return int(row["version"]), str(row["operation"]), dict(row["operationParameters"] or {})


def constraint_violation(error: BaseException | None) -> str | None:
    """The line of a rejected write's error that names the broken CHECK constraint (the
    engines wrap it differently: a Spark job failure, a commit failure, a Delta error)."""
    if error is None:
        return None
    found = re.search(r"(\[DELTA_[A-Z_]+\]\s*)?CHECK constraint [^\n]*", str(error))
    return found.group(0).strip() if found else None


# ------------------------------------------------------------------------------------------------
# Checks the lesson runs (each raises AssertionError saying what is wrong and how to fix it)
# ------------------------------------------------------------------------------------------------
def check_same_data(actual: DataFrame, expected: tuple[int, int], what: str) -> None:
    """``actual`` holds exactly the rows whose :func:`fingerprint` is ``expected``."""
    rows, checksum = fingerprint(actual)
    if rows != expected[0]:
        raise AssertionError(
            f"{what} has {rows} rows; expected {expected[0]}. Maintenance must never add or "
            "lose rows: check which version you read or restored."
        )
    if checksum != expected[1]:
        raise AssertionError(
            f"{what} has the right number of rows ({rows}) but different values (checksum "
            f"{checksum} instead of {expected[1]}): check which version you read or restored."
        )


def check_optimized(
    spark: SparkSession,
    table: str,
    *,
    files_before: int,
    data_before: tuple[int, int],
    z_order_by: Sequence[str] = (),
) -> int:
    """The newest commit of ``table`` is an OPTIMIZE (Z-ordered by ``z_order_by`` when given,
    a plain compaction otherwise) that left fewer files and the same rows. Returns the file
    count."""
    import json

    _version, operation, parameters = latest_operation(spark, table)
    call = (
        f"executeZOrderBy({', '.join(map(repr, z_order_by))})"
        if z_order_by
        else "executeCompaction()"
    )
    if operation != "OPTIMIZE":
        raise AssertionError(
            f"The newest commit of {table} is {operation}, not OPTIMIZE: run "
            f"DeltaTable.forName(spark, {table!r}).optimize().{call}"
        )
    ordered = [str(c).lower() for c in json.loads(parameters.get("zOrderBy") or "[]")]
    wanted = [str(c).lower() for c in z_order_by]
    if ordered != wanted:
        raise AssertionError(
            f"The OPTIMIZE commit was Z-ordered by {ordered or 'nothing'}; this step asks for "
            f"{wanted or 'a plain compaction'}: use .optimize().{call}"
        )
    files_after = file_count(spark, table)
    if files_after >= files_before:
        raise AssertionError(
            f"{table} has {files_after} files after OPTIMIZE, not fewer than the {files_before} "
            "before: was the target file size set (section 2, set_target_file_size) first?"
        )
    check_same_data(spark.table(table), data_before, f"{table} after OPTIMIZE")
    return files_after


def check_data_skipping(after: FileSkipping, before: FileSkipping, column: str) -> None:
    """Z-ordering by ``column`` lets a query on one value of it skip most files: it now reads
    fewer files than before, and at most half of the table's files."""
    if after.files_read >= before.files_read or 2 * after.files_read > after.files_total:
        raise AssertionError(
            f"A query on one {column} still reads {after.files_read} of {after.files_total} "
            f"files (before: {before.files_read} of {before.files_total}). Z-order by the "
            f"column the query filters on: .optimize().executeZOrderBy({column!r})"
        )


def check_restored(
    spark: SparkSession, table: str, *, version: int, expected: tuple[int, int]
) -> None:
    """The newest commit of ``table`` restores ``version``, and the table holds the rows it
    held then (``expected``, their fingerprint taken before the bad write)."""
    _v, operation, parameters = latest_operation(spark, table)
    if operation != "RESTORE":
        raise AssertionError(
            f"The newest commit of {table} is {operation}, not RESTORE: run "
            f"DeltaTable.forName(spark, {table!r}).restoreToVersion({version})"
        )
    restored = parameters.get("version")
    if restored is not None and str(restored) != str(version):
        raise AssertionError(
            f"{table} was restored to version {restored}, but the last good version (the one "
            f"before the bad write) is {version}: restoreToVersion({version})"
        )
    check_same_data(spark.table(table), expected, f"{table} after RESTORE")


def check_time_travel_intact(
    spark: SparkSession, table: str, version: int, expected: tuple[int, int]
) -> None:
    """Version ``version`` of ``table`` can still be read and holds ``expected`` rows: a vacuum
    within the retention period kept the files it needs."""
    try:
        frame = spark.read.option("versionAsOf", version).table(table)
        fingerprint_ = fingerprint(frame)
    except Exception as exc:  # the files behind the version are gone
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AssertionError(
            f"Version {version} of {table} can no longer be read ({first}): the vacuum deleted "
            "files that time travel needs. Vacuum with the default retention: .vacuum()"
        ) from None
    if fingerprint_ != expected:
        raise AssertionError(
            f"Version {version} of {table} reads {fingerprint_[0]} rows with checksum "
            f"{fingerprint_[1]}, expected {expected}: it was changed."
        )


def check_bad_insert_rejected(
    spark: SparkSession,
    table: str,
    constraint: str,
    error: BaseException | None,
    *,
    version_before: int,
    data_before: tuple[int, int],
) -> str:
    """The bad insert into ``table`` failed on CHECK constraint ``constraint`` and committed
    nothing. When it was accepted instead, the table is restored to ``version_before`` (so the
    step can be rerun) before the check fails. Returns the violation line."""
    from lakehouse import DeltaTable

    delta_table = DeltaTable.forName(spark, table)
    properties = delta_table.detail().first()["properties"] or {}
    key = f"delta.constraints.{constraint.lower()}"
    if key not in {k.lower() for k in properties}:
        if error is None:
            delta_table.restoreToVersion(version_before)
        raise AssertionError(
            f"{table} has no CHECK constraint {constraint} (its properties: "
            f"{sorted(properties)}). Add it: add_check_constraint(spark, {table!r}, "
            f"{constraint!r}, 'quantity > 0'). The bad rows were removed; rerun the step."
        )
    if error is None:
        delta_table.restoreToVersion(version_before)
        raise AssertionError(
            f"The bad insert into {table} was accepted, so constraint {constraint} does not "
            "reject it (a quantity of 0 must fail 'quantity > 0'). The table was restored to "
            f"version {version_before}; fix the constraint and rerun the step."
        )
    violation = constraint_violation(error)
    if violation is None or constraint.lower() not in violation.lower():
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise AssertionError(f"The insert failed, but not on constraint {constraint}: {first}")
    version_now, operation, _ = latest_operation(spark, table)
    if version_now != version_before:
        raise AssertionError(
            f"{table} moved from version {version_before} to {version_now} ({operation}): a "
            "rejected write must commit nothing."
        )
    check_same_data(spark.table(table), data_before, f"{table} after the rejected insert")
    return violation


__all__ = [
    "INGESTION_ORDER",
    "MAINTENANCE_TABLE",
    "ROWS_PER_SMALL_FILE",
    "SMALL_FILE_PROPERTIES",
    "set_target_file_size",
    "FileSkipping",
    "build_small_file_copy",
    "busiest_value",
    "check_bad_insert_rejected",
    "check_data_skipping",
    "check_optimized",
    "check_restored",
    "check_same_data",
    "check_time_travel_intact",
    "constraint_violation",
    "file_count",
    "files_for_predicate",
    "files_read",
    "fingerprint",
    "latest_operation",
    "sales_summary",
]
