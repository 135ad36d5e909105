"""Silver deduplication: keep the latest record per business key, then upsert it into a Silver
table with an idempotent Delta ``MERGE`` (the same batch twice changes nothing; an older record
never overwrites a newer one).

Example::

    from lakehouse.silver import dedup

    latest_df = orders_df.transform(dedup.latest_per_key("order_id", "_ingestion_timestamp"))
    dedup.upsert_latest(spark, orders_df, "silver.orders", keys=["order_id"],
                        sequence_by="_ingestion_timestamp")
    dedup.build_silver_table(spark, "ecommerce.orders")    # the canonical table, from Bronze
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from lakehouse.bronze import BATCH_ID, CORRUPT_RECORD, INGESTION_TIMESTAMP, SOURCE_FILE
from lakehouse.datagen import DATASETS

# Validation's bookkeeping: needed to split valid from quarantined rows, not in a Silver table.
VALIDATION_COLUMNS = (CORRUPT_RECORD, "_is_valid", "_validation_errors")
# Lineage a Silver row keeps, so any value can be traced back to its Bronze file and batch.
LINEAGE_COLUMNS = (INGESTION_TIMESTAMP, SOURCE_FILE, BATCH_ID)
# When two deliveries of a key tie on the sequence column, the later delivery wins.
DELIVERY_ORDER = (INGESTION_TIMESTAMP, SOURCE_FILE)

_ROW_NUMBER = "_row_number"


def _names(value: str | Iterable[str], what: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} must be a column name or a non-empty list of names: {value!r}")
    return names


def require_columns(df: DataFrame, names: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` naming every column of ``names`` that ``df`` lacks."""
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise ValueError(
            f"unknown {what} column(s) {', '.join(map(repr, missing))}: the DataFrame has "
            f"{', '.join(df.columns)}. Pass names of existing columns."
        )


def latest_per_key(
    keys: str | Sequence[str],
    order_by: str | Sequence[str],
    *,
    tie_breakers: str | Sequence[str] = (),
    columns: Sequence[str] | None = None,
) -> Callable[[DataFrame], DataFrame]:
    """A transform keeping one row per ``keys``: the one with the highest ``order_by``.

    Rows are ranked with ``row_number()`` over a window partitioned by the keys, ordered by
    ``order_by`` descending (a null sorts lowest: a row without a version never wins over one
    that has it), then ``tie_breakers`` descending, then every other column: the same input keeps
    the same row whatever the partitioning, and exact copies collapse into one. A null key is a
    key value like any other (as in ``GROUP BY``). ``columns``, when given, are the input's
    columns (none of them a map), so the transform never asks Spark for the DataFrame's schema:
    a declarative pipeline's query function may not analyze its input.

    >>> latest = orders_df.transform(latest_per_key("order_id", "updated_at"))  # doctest: +SKIP
    """
    key_names = _names(keys, "keys")
    order_names = _names(order_by, "order_by")
    tie_names = [] if not tie_breakers else _names(tie_breakers, "tie_breakers")

    def transform(df: DataFrame) -> DataFrame:
        ranked = [*order_names, *tie_names]
        if columns is not None:
            missing = [c for c in [*key_names, *ranked] if c not in columns]
            if missing:
                raise ValueError(f"columns lacks {missing}: list every column of the input")
            orderable = list(columns)
        else:
            require_columns(df, key_names, "key")
            require_columns(df, order_names, "order_by")
            require_columns(df, tie_names, "tie_breakers")
            # map columns cannot be ordered and are skipped
            orderable = [f.name for f in df.schema.fields if not isinstance(f.dataType, MapType)]
        # Last resort so that ties are broken by content, never by arrival in a partition.
        rest = [c for c in orderable if c not in key_names and c not in ranked]
        window = Window.partitionBy(*key_names).orderBy(
            *[F.col(c).desc_nulls_last() for c in [*ranked, *rest]]
        )
        if columns is None:
            return (
                df.withColumn(_ROW_NUMBER, F.row_number().over(window))
                .where(F.col(_ROW_NUMBER) == 1)
                .drop(_ROW_NUMBER)
            )
        # Spark Connect resolves withColumn and drop against the catalog at once; in a
        # declarative pipeline that reads a table's current version instead of waiting for
        # the flow that writes it. select and where wait.
        return (
            df.select("*", F.row_number().over(window).alias(_ROW_NUMBER))
            .where(F.col(_ROW_NUMBER) == 1)
            .select(*columns)
        )

    return transform


def merge_condition(keys: Sequence[str], target: str = "t", source: str = "s") -> str:
    """``"t.`a` = s.`a` AND t.`b` = s.`b`"``: the ON clause of a merge on business keys."""
    return " AND ".join(f"{target}.`{k}` = {source}.`{k}`" for k in keys)


def upsert_latest(
    spark: SparkSession,
    source_df: DataFrame,
    table: str,
    *,
    keys: str | Sequence[str],
    sequence_by: str,
    tie_breakers: str | Sequence[str] = (),
) -> None:
    """Upsert the latest row per key of ``source_df`` into the Delta table ``table``.

    Deduplicates the source with :func:`latest_per_key`. If the table does not exist yet, the
    batch is its initial load (a plain write: there is nothing to merge into). Otherwise it is
    merged: a matched row is replaced only when the source row is newer
    (``s.sequence_by > t.sequence_by``), a new key is inserted. Running the same batch twice
    therefore changes nothing, and a late, older record never overwrites a newer one.

    In Databricks SQL the merge is::

        MERGE INTO table t USING batch s ON t.key = s.key
        WHEN MATCHED AND s.sequence_by > t.sequence_by THEN UPDATE SET *
        WHEN NOT MATCHED THEN INSERT *

    Rows whose key is null are refused: ``t.key = s.key`` never matches null, so they would be
    inserted again on every run.
    """
    from lakehouse.tables import DeltaTable

    key_names = _names(keys, "keys")
    require_columns(source_df, [*key_names, sequence_by], f"{table} merge")
    null_key = " OR ".join(f"`{k}` IS NULL" for k in key_names)
    if source_df.where(null_key).limit(1).count():
        raise ValueError(
            f"the batch for {table!r} has rows whose key ({', '.join(key_names)}) is null: "
            "quarantine them during validation (the key is required) before the merge"
        )
    batch = source_df.transform(latest_per_key(key_names, sequence_by, tie_breakers=tie_breakers))
    if not spark.catalog.tableExists(table):
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
        batch.write.format("delta").saveAsTable(table)
        return
    (
        DeltaTable.forName(spark, table)
        .alias("t")
        .merge(batch.alias("s"), merge_condition(key_names))
        .whenMatchedUpdateAll(condition=f"s.`{sequence_by}` > t.`{sequence_by}`")
        .whenNotMatchedInsertAll()
        .execute()
    )


def create_table_like(
    spark: SparkSession, table: str, df: DataFrame, *, comment: str | None = None
) -> None:
    """``CREATE TABLE IF NOT EXISTS table`` (Delta) with ``df``'s columns."""
    from lakehouse.tables import DeltaTable

    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    builder = DeltaTable.createIfNotExists(spark).tableName(table).addColumns(df.schema)
    if comment:
        builder = builder.comment(comment)
    builder.execute()


@dataclass(frozen=True)
class MergeChanges:
    """What a table's MERGE commits after some version did, from ``history()``."""

    commits: int
    updated: int
    inserted: int
    deleted: int


def table_version(spark: SparkSession, table: str) -> int:
    """The table's latest version (``DESCRIBE HISTORY table LIMIT 1``)."""
    from lakehouse.tables import DeltaTable

    return DeltaTable.forName(spark, table).history(1).select("version").first()[0]


def merge_changes_since(spark: SparkSession, table: str, version: int) -> MergeChanges:
    """Sum the ``operationMetrics`` of the MERGE commits after ``version``.

    A merge that changes nothing may commit a version with zero counts (Databricks) or no
    version at all (an engine that skips empty commits): both give zeros here.
    """
    from lakehouse.tables import DeltaTable

    merges = (
        DeltaTable.forName(spark, table)
        .history()
        .where((F.col("version") > version) & (F.col("operation") == "MERGE"))
        .select("operationMetrics")
        .collect()
    )

    def total(metric: str) -> int:
        return sum(int((m.operationMetrics or {}).get(metric, 0)) for m in merges)

    return MergeChanges(
        len(merges),
        total("numTargetRowsUpdated"),
        total("numTargetRowsInserted"),
        total("numTargetRowsDeleted"),
    )


# --------------------------------------------------------------------------- canonical tables


@dataclass(frozen=True)
class SilverTable:
    """A canonical Silver table: one row per business key, the latest version of it.

    ``sequence_by`` orders the versions of a key: the source's own version column where it has
    one, else the Bronze arrival time (the later delivery wins).
    """

    dataset: str
    table: str
    sequence_by: str

    @property
    def keys(self) -> tuple[str, ...]:
        return DATASETS[self.dataset].key

    @property
    def columns(self) -> list[str]:
        """The typed source columns, then the lineage columns."""
        return [*DATASETS[self.dataset].column_names, *LINEAGE_COLUMNS]


SILVER_TABLES: dict[str, SilverTable] = {
    t.dataset: t
    for t in (
        SilverTable("crm.customers", "silver.customers", "updated_at"),
        SilverTable("ecommerce.orders", "silver.orders", INGESTION_TIMESTAMP),
        SilverTable("ecommerce.order_lines", "silver.order_lines", INGESTION_TIMESTAMP),
        SilverTable("ecommerce.products", "silver.products", INGESTION_TIMESTAMP),
        SilverTable("payments.transactions", "silver.payments", "ingest_ts"),
        SilverTable("web.events", "silver.web_events", INGESTION_TIMESTAMP),
    )
}


def silver_table(dataset: str) -> SilverTable:
    """The canonical Silver table of a dataset such as ``"ecommerce.orders"``."""
    try:
        return SILVER_TABLES[dataset]
    except KeyError:
        raise KeyError(
            f"no canonical Silver table for {dataset!r}: use one of {', '.join(SILVER_TABLES)}"
        ) from None


def silver_rows(dataset: str) -> Callable[[DataFrame], DataFrame]:
    """A transform selecting a dataset's Silver columns (typed columns plus lineage) from its
    validated rows: validation's bookkeeping columns are dropped."""
    columns = silver_table(dataset).columns

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, columns, f"{dataset} Silver")
        return df.select(*columns)

    return transform


def silver_source(spark: SparkSession, dataset: str) -> DataFrame:
    """What a dataset's Silver table is built from: the rows that passed validation, with
    their Silver columns. A new DataFrame (a fresh read of Bronze) on each call."""
    from lakehouse.silver.validation import validated

    return validated(spark, dataset).where("_is_valid").transform(silver_rows(dataset))


def build_silver_table(spark: SparkSession, dataset: str) -> str:
    """Upsert every valid row of ``dataset`` (its Bronze table must exist) into its canonical
    Silver table, latest version per key; idempotent. Returns the table name."""
    spec = silver_table(dataset)
    upsert_latest(
        spark,
        silver_source(spark, dataset),
        spec.table,
        keys=spec.keys,
        sequence_by=spec.sequence_by,
        tie_breakers=DELIVERY_ORDER,
    )
    return spec.table


def ensure_silver(spark: SparkSession, datasets: Iterable[str] | None, raw_root) -> list[str]:
    """What a later lesson's setup calls: land the sources' Bronze batches, then build their
    canonical Silver tables (default: all). Idempotent; returns the table names."""
    from lakehouse import bronze

    names = list(datasets) if datasets is not None else list(SILVER_TABLES)
    bronze.ensure_bronze(spark, names, raw_root)
    return [build_silver_table(spark, name) for name in names]


# --------------------------------------------------------------------------- checks


def check_latest_per_key(
    actual: DataFrame,
    source: DataFrame,
    keys: str | Sequence[str],
    order_by: str,
    *,
    name: str = "the result",
) -> None:
    """Assert that ``actual`` holds exactly one row per key of ``source``, and that each row is
    the key's latest version (its ``order_by`` is the key's maximum in ``source``).

    Computed independently of :func:`latest_per_key` (``groupBy`` and a full outer join, in one
    Spark job), so a check cell can use it on a learner's result. Raises ``AssertionError``
    saying what is wrong and how to fix it.
    """
    key_names = _names(keys, "keys")
    require_columns(actual, [*key_names, order_by], name)
    require_columns(source, [*key_names, order_by], "source")
    kept = actual.groupBy(*key_names).agg(
        F.count(F.lit(1)).alias("rows"), F.max(order_by).alias("kept")
    )
    latest = source.groupBy(*key_names).agg(
        F.max(order_by).alias("latest"), F.lit(True).alias("in_source")
    )
    problem = (
        F.when(F.col("in_source").isNull(), "extra")
        .when(F.col("rows").isNull(), "missing")
        .when(F.col("rows") > 1, "repeated")
        .when(~F.col("kept").eqNullSafe(F.col("latest")), "stale")
    )
    found: dict[str, list] = {}
    for row in (
        kept.join(latest, key_names, "full")
        .withColumn("problem", problem)
        .where(F.col("problem").isNotNull())
        .groupBy("problem")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.slice(
                F.sort_array(F.collect_list(F.struct(*key_names, "kept", "latest"))), 1, 3
            ).alias("examples"),
        )
        .collect()
    ):
        found[row.problem] = [row.n, [e.asDict() for e in row.examples]]
    keys_text = ", ".join(key_names)
    if "repeated" in found:
        n, examples = found["repeated"]
        raise AssertionError(
            f"{name} has more than one row for {n} key(s), e.g. {examples}: keep one row per "
            f"{keys_text} (row_number() over a window partitioned by the key, keep row 1)"
        )
    if "missing" in found or "extra" in found:
        missing, extra = found.get("missing", [0, []]), found.get("extra", [0, []])
        raise AssertionError(
            f"{name} lacks {missing[0]} of the source's keys (e.g. {missing[1]}) and has "
            f"{extra[0]} key(s) not in the source (e.g. {extra[1]}): every key of the source "
            "must be there exactly once"
        )
    if "stale" in found:
        n, examples = found["stale"]
        raise AssertionError(
            f"{name} keeps an older version for {n} key(s), e.g. {examples}: order the window "
            f"by {order_by} descending so that row 1 is the latest"
        )
