"""Upserting streamed aggregates into Gold with ``foreachBatch``: ``gold.payment_risk_windows``.

One row per customer and 5-minute tumbling window of event time. Each micro-batch of
``silver.payment_events`` is aggregated on its own (no state, no watermark) and MERGEd into the
table *additively*: counts and sums are added, maxima combined with ``greatest``. A late event
therefore updates its old window whenever it arrives; nothing is ever dropped.

``foreachBatch`` by itself is at-least-once: after a failure between the table's commit and the
checkpoint's, the stream replays the same batch id. An additive merge replayed would count twice,
so the merge runs with Delta's idempotent-write confs (``txnAppId`` = a stable id of this writer,
``txnVersion`` = the batch id): a (writer, batch) the table already committed is skipped.

Example::

    from lakehouse.streaming import upsert

    query = upsert.start_risk_windows(spark)       # availableNow by default
    query.awaitTermination()
    upsert.check_risk_windows(spark.table(upsert.RISK_WINDOWS),
                              upsert.batch_risk_windows(spark.table("silver.payment_events")))
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType, LongType, StringType, StructType, TimestampType

from lakehouse.gold import commented_field as _field
from lakehouse.streaming import RISK_WINDOWS, SILVER, TXN_APP_ID, TXN_VERSION, idempotent_writes
from lakehouse.streaming import checkpoint as _checkpoint
from lakehouse.tables import DeltaTable

WINDOW_DURATION = "5 minutes"  # tumbling windows of event time
GRAIN = ("window_start", "window_end", "customer_id")
STREAM_NAME = "risk_windows"  # its checkpoint: <lake>/<catalog>/_checkpoints/streaming/risk_windows

RISK_WINDOWS_COMMENT = (
    "Payment activity per customer and 5-minute tumbling window of event time (UTC), from "
    "silver.payment_events. Upserted by a foreachBatch stream with an additive, idempotent "
    "MERGE: late events update their own window, replayed micro-batches are skipped."
)
RISK_WINDOWS_SCHEMA = StructType(
    [
        _field("window_start", TimestampType(), "Start of the 5-minute window (inclusive)", False),
        _field("window_end", TimestampType(), "End of the 5-minute window (exclusive)", False),
        _field("customer_id", StringType(), "CRM customer id (silver.customers)", False),
        _field("txn_count", LongType(), "Payment attempts in the window", False),
        _field("approved_count", LongType(), "Attempts with status approved", False),
        _field("declined_count", LongType(), "Attempts with status declined", False),
        _field("amount_usd_sum", DecimalType(18, 2), "Sum of amount_usd over all attempts", False),
        _field("max_amount_usd", DecimalType(12, 2), "Largest single amount_usd"),
        _field("high_risk_count", LongType(), "Attempts with risk_tier = high", False),
        _field("flagged_count", LongType(), "Attempts that hit at least one fraud rule", False),
        _field("last_event_ts", TimestampType(), "Latest event_ts seen in the window"),
    ]
)
MEASURES = tuple(f.name for f in RISK_WINDOWS_SCHEMA.fields if f.name not in GRAIN)

# The MERGE: the grain's key (window_end follows from window_start), then additive measures.
MERGE_CONDITION = "t.window_start = s.window_start AND t.customer_id = s.customer_id"
ADDITIVE_SET = {
    "txn_count": "t.txn_count + s.txn_count",
    "approved_count": "t.approved_count + s.approved_count",
    "declined_count": "t.declined_count + s.declined_count",
    "amount_usd_sum": "t.amount_usd_sum + s.amount_usd_sum",
    # greatest() skips nulls, so a window whose maximum is unknown so far takes the new one
    "max_amount_usd": "greatest(t.max_amount_usd, s.max_amount_usd)",
    "high_risk_count": "t.high_risk_count + s.high_risk_count",
    "flagged_count": "t.flagged_count + s.flagged_count",
    "last_event_ts": "greatest(t.last_event_ts, s.last_event_ts)",
}


def _count_if(condition) -> F.Column:
    return F.count(F.when(condition, True))


def batch_risk_windows(df: DataFrame) -> DataFrame:
    """Aggregate payment events to the table's grain: one row per (5-minute tumbling window of
    ``event_ts``, ``customer_id``) with the table's measures and types.

    The same function aggregates a micro-batch inside ``foreachBatch`` and the whole of Silver
    in one batch query; additive merges of the first must add up to the second.

    >>> upsert.batch_risk_windows(spark.table("silver.payment_events"))  # doctest: +SKIP
    """
    missing = {"event_ts", "customer_id", "status", "amount_usd", "risk_tier", "fraud_rules"}
    missing -= set(df.columns)
    if missing:
        raise ValueError(
            f"batch_risk_windows needs the columns {sorted(missing)} of silver.payment_events; "
            "pass a frame read from the Silver table (spark.table or readStream.table)"
        )
    return (
        df.groupBy(F.window("event_ts", WINDOW_DURATION).alias("window"), "customer_id")
        .agg(
            F.count(F.lit(1)).alias("txn_count"),
            _count_if(F.col("status") == "approved").alias("approved_count"),
            _count_if(F.col("status") == "declined").alias("declined_count"),
            F.coalesce(F.sum("amount_usd"), F.lit(0)).cast("decimal(18,2)").alias("amount_usd_sum"),
            F.max("amount_usd").cast("decimal(12,2)").alias("max_amount_usd"),
            _count_if(F.col("risk_tier") == "high").alias("high_risk_count"),
            _count_if(F.size("fraud_rules") > 0).alias("flagged_count"),
            F.max("event_ts").alias("last_event_ts"),
        )
        .select(
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            "customer_id",
            *MEASURES,
        )
    )


def create_risk_windows_table(spark: SparkSession, table: str = RISK_WINDOWS) -> str:
    """Create ``table`` (default ``gold.payment_risk_windows``) if it does not exist, with its
    column comments and table comment: the Databricks ``CREATE TABLE IF NOT EXISTS ... COMMENT``.
    A merge needs its target to exist before the first micro-batch. Returns the name."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    (
        DeltaTable.createIfNotExists(spark)
        .tableName(table)
        .addColumns(RISK_WINDOWS_SCHEMA)
        .comment(RISK_WINDOWS_COMMENT)
        .execute()
    )
    return table


def writer_id(table: str, checkpoint: str) -> str:
    """A stable id of one writer: its target and its checkpoint. The same stream restarted keeps
    it (so a replayed batch id is recognised); a new checkpoint is a new writer (its batch ids
    start again at 0)."""
    return f"{table}@{checkpoint}"


def upsert_risk_windows(app_id: str, table: str = RISK_WINDOWS) -> Callable[[DataFrame, int], None]:
    """The ``foreachBatch`` function of the risk-windows stream: aggregate the micro-batch with
    :func:`batch_risk_windows` and MERGE it into ``table`` additively, idempotent per
    (``app_id``, ``batch_id``) through Delta's ``txnAppId``/``txnVersion`` session confs.

    It uses only ``batch_df.sparkSession`` (never a notebook's ``spark``): under Spark Connect
    the function is pickled and runs in a Python process next to the server.

    >>> query = (spark.readStream.table("silver.payment_events").writeStream
    ...          .foreachBatch(upsert_risk_windows(writer_id(RISK_WINDOWS, checkpoint)))
    ...          .option("checkpointLocation", checkpoint)
    ...          .trigger(availableNow=True).start())  # doctest: +SKIP
    """
    if not app_id:
        raise ValueError(
            "upsert_risk_windows needs a non-empty app_id: a stable id of the writer, "
            "e.g. writer_id(RISK_WINDOWS, checkpoint)"
        )

    def upsert(batch_df: DataFrame, batch_id: int) -> None:
        session = batch_df.sparkSession
        updates_df = batch_risk_windows(batch_df)
        with idempotent_writes(session, app_id, batch_id):
            (
                DeltaTable.forName(session, table)
                .alias("t")
                .merge(updates_df.alias("s"), MERGE_CONDITION)
                .whenMatchedUpdate(set=ADDITIVE_SET)
                .whenNotMatchedInsertAll()
                .execute()
            )

    return upsert


def start_risk_windows(
    spark: SparkSession,
    *,
    trigger: dict | None = None,
    checkpoint: str | None = None,
    source: str = SILVER,
    table: str = RISK_WINDOWS,
):
    """Start the stream ``source`` -> ``table`` with :func:`upsert_risk_windows`; returns the
    StreamingQuery (call ``awaitTermination()``; ``stop()`` a live one).

    ``trigger`` is passed to ``DataStreamWriter.trigger`` (default ``{"availableNow": True}``, the
    recommended job trigger; ``{"processingTime": "10 seconds"}`` for a live run)."""
    checkpoint = checkpoint or _checkpoint(spark, STREAM_NAME)
    create_risk_windows_table(spark, table)
    return (
        spark.readStream.table(source)
        .writeStream.queryName(STREAM_NAME)
        .foreachBatch(upsert_risk_windows(writer_id(table, checkpoint), table))
        .option("checkpointLocation", checkpoint)
        .trigger(**(trigger or {"availableNow": True}))
        .start()
    )


def ensure_risk_windows(spark: SparkSession, *, scale: str = "tiny", seed: int = 42) -> str:
    """Silver (via the streaming pipeline), then one availableNow run of the risk-windows stream:
    the table holds every Silver event. Idempotent (the checkpoint skips what was read). Returns
    the table name."""
    from lakehouse.streaming import pipeline

    pipeline.ensure_silver(spark, scale=scale, seed=seed)
    query = start_risk_windows(spark)
    try:
        query.awaitTermination()
    finally:
        query.stop()
    return RISK_WINDOWS


def check_risk_windows(actual_df: DataFrame, expected_df: DataFrame) -> int:
    """Assert that ``actual_df`` (the table) equals ``expected_df`` (one batch aggregation of the
    same events), row for row; returns the number of windows. The message says what differs:
    windows missing or extra, and whether counts are doubled (a replay applied twice) or smaller
    (a merge that overwrote instead of adding)."""
    key = list(GRAIN)
    actual = {tuple(r[k] for k in key): r for r in actual_df.select(*key, *MEASURES).collect()}
    expected = {tuple(r[k] for k in key): r for r in expected_df.select(*key, *MEASURES).collect()}
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    assert not missing and not extra, (
        f"The table has {len(actual)} windows, the batch aggregation {len(expected)}: "
        f"{len(missing)} missing (e.g. {missing[:2]}), {len(extra)} extra (e.g. {extra[:2]}). "
        "Group by window(event_ts, '5 minutes') and customer_id, and insert unmatched rows."
    )
    wrong = [k for k in expected if tuple(actual[k]) != tuple(expected[k])]
    if wrong:
        doubled = sum(actual[k].txn_count == 2 * expected[k].txn_count for k in wrong)
        larger = sum(actual[k].txn_count > expected[k].txn_count for k in wrong)
        smaller = sum(actual[k].txn_count < expected[k].txn_count for k in wrong)
        sample = wrong[0]
        hints = []
        if smaller:
            hints.append(
                "Counts too small: the merge must ADD the batch to the row (t.x + s.x), not "
                "overwrite it (whenMatchedUpdateAll)."
            )
        if larger:
            hints.append(
                "Counts too large: a batch was applied twice; set txnAppId/txnVersion on "
                "batch_df.sparkSession before the merge so a replayed batch id is skipped."
            )
        if not smaller and not larger:
            hints.append(
                "Counts agree but other measures differ: check each measure (sums added, "
                "max_amount_usd and last_event_ts with greatest)."
            )
        raise AssertionError(
            f"{len(wrong)} of {len(expected)} windows differ from the batch aggregation "
            f"({smaller} with txn_count too small, {larger} too large, {doubled} of them "
            f"doubled); e.g. {sample}: table {actual[sample].asDict()} vs expected "
            f"{expected[sample].asDict()}. " + " ".join(hints)
        )
    return len(expected)


__all__ = [
    "ADDITIVE_SET",
    "GRAIN",
    "MEASURES",
    "MERGE_CONDITION",
    "RISK_WINDOWS",
    "RISK_WINDOWS_COMMENT",
    "RISK_WINDOWS_SCHEMA",
    "TXN_APP_ID",
    "TXN_VERSION",
    "WINDOW_DURATION",
    "batch_risk_windows",
    "check_risk_windows",
    "create_risk_windows_table",
    "ensure_risk_windows",
    "start_risk_windows",
    "upsert_risk_windows",
    "writer_id",
]
