"""gold.payment_risk_windows: the aggregation on small explicit events, the additive idempotent
foreachBatch merge (called by hand and as a real stream over three runs), and the wrong
implementations the lesson's checks must catch."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.streaming import upsert

EVENTS = (
    "transaction_id string, event_ts timestamp, ingest_ts timestamp, customer_id string, "
    "status string, amount_usd decimal(12,2), risk_tier string, fraud_rules array<string>"
)


def ts(hh_mm_ss: str) -> datetime:
    h, m, s = (int(x) for x in hh_mm_ss.split(":"))
    return datetime(2026, 7, 1, h, m, s)


def event(tx, event_at, customer="C1", status="approved", amount="10.00", tier="low", rules=(),
          ingest_at=None):  # fmt: skip
    """One Silver-like event; ingest_ts is 2 s after event_ts unless given."""
    at = ts(event_at)
    ingest = ts(ingest_at) if ingest_at else at + timedelta(seconds=2)
    amount_usd = None if amount is None else Decimal(amount)
    return (tx, at, ingest, customer, status, amount_usd, tier, list(rules))


# Three micro-batches in arrival order. The third brings a late event (00:01:30, 20 minutes
# behind the latest event so far) for a window the first batch created.
BATCH_0 = [
    event("T01", "00:00:00"),  # first instant of [00:00, 00:05)
    event("T02", "00:04:59", status="declined", amount="5.50", tier="high", rules=["night"]),
    event("T03", "00:05:00", amount="7.25"),  # exactly at the end: the next window
    event("T04", "00:02:00", customer="C2", amount=None),  # amount unknown: counted, not summed
]
BATCH_1 = [
    event("T05", "00:06:00", amount="100.00", rules=["high_amount", "night"], tier="medium"),
    event("T06", "00:21:00", customer="C2", amount="3.00"),
]
BATCH_2 = [
    event(
        "T07", "00:01:30", amount="20.00", rules=["night"], ingest_at="00:22:30"
    ),  # late: updates [00:00, 00:05)
    event("T08", "00:22:00", customer="C2", status="declined", amount="1.00"),
]
ALL_EVENTS = BATCH_0 + BATCH_1 + BATCH_2


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "streaming_upsert_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


@pytest.fixture
def table(spark, request):
    from lakehouse.course import drop_table

    name = f"gold.risk_windows_{request.node.name[:40].replace('[', '_').replace(']', '')}"
    drop_table(spark, name)
    upsert.create_risk_windows_table(spark, name)
    yield name
    drop_table(spark, name)


def frame(spark, rows):
    return spark.createDataFrame(rows, EVENTS)


def version(spark, name):
    from lakehouse import DeltaTable

    return DeltaTable.forName(spark, name).history(1).select("version").first()[0]


def window_row(start, end, customer, *measures):
    return (ts(start), ts(end), customer, *measures)


# ------------------------------------------------------------------------------ aggregation
def test_batch_risk_windows_counts_each_event_in_its_event_time_window(spark):
    actual = upsert.batch_risk_windows(frame(spark, ALL_EVENTS))
    expected = spark.createDataFrame(
        [
            # T01, T02, T07: the row at 00:04:59 stays, the one at 00:05:00 moves on
            window_row(
                "00:00:00",
                "00:05:00",
                "C1",
                3,
                2,
                1,
                Decimal("35.50"),
                Decimal("20.00"),
                1,
                2,
                ts("00:04:59"),
            ),
            window_row(
                "00:05:00",
                "00:10:00",
                "C1",
                2,
                2,
                0,
                Decimal("107.25"),
                Decimal("100.00"),
                0,
                1,
                ts("00:06:00"),
            ),
            window_row(
                "00:00:00", "00:05:00", "C2", 1, 1, 0, Decimal("0.00"), None, 0, 0, ts("00:02:00")
            ),
            window_row(
                "00:20:00",
                "00:25:00",
                "C2",
                2,
                1,
                1,
                Decimal("4.00"),
                Decimal("3.00"),
                0,
                0,
                ts("00:22:00"),
            ),
        ],  # fmt: skip
        upsert.RISK_WINDOWS_SCHEMA,
    )
    assertDataFrameEqual(actual, expected)
    types = [(f.name, f.dataType) for f in actual.schema]
    assert types == [(f.name, f.dataType) for f in upsert.RISK_WINDOWS_SCHEMA]


def test_batch_risk_windows_names_missing_columns(spark):
    with pytest.raises(ValueError, match=r"needs the columns \['fraud_rules', 'risk_tier'\]"):
        upsert.batch_risk_windows(frame(spark, BATCH_0).drop("risk_tier", "fraud_rules"))


def test_upsert_needs_an_app_id():
    with pytest.raises(ValueError, match="non-empty app_id"):
        upsert.upsert_risk_windows("")


# ------------------------------------------------------------------------------ the merge
def test_replayed_batch_id_is_a_no_op_and_a_new_id_is_applied(spark, table):
    write = upsert.upsert_risk_windows("writer-a", table)
    write(frame(spark, BATCH_0), 0)
    after_first = version(spark, table)
    rows = sorted(spark.table(table).collect())
    write(frame(spark, BATCH_0), 0)  # the replay after a failure before the checkpoint
    assert version(spark, table) == after_first
    assert sorted(spark.table(table).collect()) == rows
    write(frame(spark, BATCH_1), 1)
    assert version(spark, table) == after_first + 1
    upsert.check_risk_windows(
        spark.table(table), upsert.batch_risk_windows(frame(spark, BATCH_0 + BATCH_1))
    )
    # the confs are session-wide: nothing may leak out of the function
    assert spark.conf.get(upsert.TXN_APP_ID, None) is None
    assert spark.conf.get(upsert.TXN_VERSION, None) is None


def test_confs_are_unset_when_the_merge_fails(spark):
    write = upsert.upsert_risk_windows("writer-b", "gold.no_such_table")
    with pytest.raises(Exception, match="no_such_table"):
        write(frame(spark, BATCH_0), 0)
    assert spark.conf.get(upsert.TXN_APP_ID, None) is None


def test_stream_over_three_runs_equals_one_batch_aggregation(spark, table, tmp_path):
    """Three availableNow runs over appended data: three micro-batches, the last with a late
    event that updates the window the first one created."""
    source = "silver.upsert_test_events"
    from lakehouse.course import drop_table

    drop_table(spark, source)
    checkpoint = str(tmp_path / "checkpoint")
    batch_ids = []
    for rows in (BATCH_0, BATCH_1, BATCH_2):
        frame(spark, rows).write.format("delta").mode("append").saveAsTable(source)
        query = upsert.start_risk_windows(spark, checkpoint=checkpoint, source=source, table=table)
        query.awaitTermination()
        batch_ids.append(query.lastProgress["batchId"])
        query.stop()
    assert batch_ids == [0, 1, 2]
    upsert.check_risk_windows(
        spark.table(table), upsert.batch_risk_windows(frame(spark, ALL_EVENTS))
    )
    late_window = spark.table(table).where(
        (F.col("customer_id") == "C1") & (F.col("window_start") == ts("00:00:00"))
    )
    assert late_window.first().txn_count == 3  # T01, T02 and the late T07
    drop_table(spark, source)


# ------------------------------------------------------------------------------ wrong answers
def overwrite_merge(table):
    """WRONG: replaces the row with the batch's numbers instead of adding them."""

    def write(batch_df, batch_id):
        from lakehouse import DeltaTable

        (
            DeltaTable.forName(batch_df.sparkSession, table)
            .alias("t")
            .merge(upsert.batch_risk_windows(batch_df).alias("s"), upsert.MERGE_CONDITION)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )

    return write


def unguarded_merge(table):
    """WRONG: additive, but without txnAppId/txnVersion: a replayed batch counts twice."""

    def write(batch_df, batch_id):
        from lakehouse import DeltaTable

        (
            DeltaTable.forName(batch_df.sparkSession, table)
            .alias("t")
            .merge(upsert.batch_risk_windows(batch_df).alias("s"), upsert.MERGE_CONDITION)
            .whenMatchedUpdate(set=upsert.ADDITIVE_SET)
            .whenNotMatchedInsertAll()
            .execute()
        )

    return write


def test_check_catches_a_merge_that_overwrites(spark, table):
    write = overwrite_merge(table)
    write(frame(spark, BATCH_0), 0)
    write(frame(spark, BATCH_2), 1)  # the late T07 replaces C1's first window instead of adding
    with pytest.raises(AssertionError, match="must ADD the batch"):
        upsert.check_risk_windows(
            spark.table(table), upsert.batch_risk_windows(frame(spark, BATCH_0 + BATCH_2))
        )


def test_check_catches_a_replay_without_the_idempotency_guard(spark, table):
    write = unguarded_merge(table)
    write(frame(spark, BATCH_0), 0)
    write(frame(spark, BATCH_0), 0)  # replayed after a failure
    with pytest.raises(AssertionError, match=r"too large, 3 of them doubled.*txnAppId"):
        upsert.check_risk_windows(
            spark.table(table), upsert.batch_risk_windows(frame(spark, BATCH_0))
        )


def test_check_catches_windows_on_ingest_time(spark, table):
    # T02 (event 00:04:59) is ingested at 00:05:01: its window depends on the column
    upsert.upsert_risk_windows("writer-c", table)(
        frame(spark, ALL_EVENTS).withColumn("event_ts", F.col("ingest_ts")), 0
    )
    with pytest.raises(AssertionError, match="missing"):
        upsert.check_risk_windows(
            spark.table(table), upsert.batch_risk_windows(frame(spark, ALL_EVENTS))
        )
