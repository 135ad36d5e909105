"""Event-time windows on small explicit events: window boundaries, sliding overlap, session gap
edges, and a late event dropped by the watermark in a stream of two runs, as predicted."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.streaming import windows

EVENTS = "transaction_id string, event_ts timestamp, customer_id string, amount_usd decimal(12,2)"


def ts(hh_mm_ss: str) -> datetime:
    h, m, s = (int(x) for x in hh_mm_ss.split(":"))
    return datetime(2026, 7, 1, h, m, s)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "streaming_windows_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def frame(spark, rows):
    return spark.createDataFrame(
        [(tx, ts(at), c, None if a is None else Decimal(a)) for tx, at, c, a in rows], EVENTS
    )


ROWS = [
    ("T1", "00:00:00", "C1", "10.00"),  # the first instant of [00:00, 00:05)
    ("T2", "00:04:59", "C1", "5.00"),
    ("T3", "00:05:00", "C1", "1.00"),  # exactly at the end of the first window: the next one
    ("T4", "00:03:00", "C2", None),  # amount unknown: counted, not summed
]


def test_tumbling_windows_put_a_row_at_the_end_into_the_next_window(spark):
    actual = frame(spark, ROWS).transform(windows.tumbling_windows())
    expected = spark.createDataFrame(
        [
            (ts("00:00:00"), ts("00:05:00"), "C1", 2, Decimal("15.00"), Decimal("10.00")),
            (ts("00:05:00"), ts("00:10:00"), "C1", 1, Decimal("1.00"), Decimal("1.00")),
            (ts("00:00:00"), ts("00:05:00"), "C2", 1, None, None),
        ],
        "window_start timestamp, window_end timestamp, customer_id string, txn_count long, "
        "amount_usd_sum decimal(18,2), max_amount_usd decimal(12,2)",
    )
    assertDataFrameEqual(actual, expected)


def test_sliding_windows_count_each_event_once_per_overlapping_window(spark):
    actual = frame(spark, ROWS[:1]).transform(windows.sliding_windows())
    starts = sorted(r.window_start for r in actual.collect())
    # 00:00:00 is in the five windows starting 23:56 .. 00:00
    assert starts == [ts("00:00:00") - timedelta(minutes=m) for m in (4, 3, 2, 1, 0)]
    totals = frame(spark, ROWS).transform(windows.sliding_windows()).agg(F.sum("txn_count"))
    assert totals.first()[0] == 5 * len(ROWS)


def test_session_windows_extend_up_to_the_gap_and_split_beyond_it(spark):
    rows = [
        ("S1", "00:00:00", "C1", "1.00"),
        ("S2", "00:05:00", "C1", "1.00"),  # exactly the gap after S1: the session goes on
        ("S3", "00:10:01", "C1", "1.00"),  # 5:01 after S2: a new session
        ("S4", "00:00:30", "C2", "2.00"),  # another customer: its own session
    ]
    actual = frame(spark, rows).transform(windows.session_windows())
    got = sorted(
        (r.customer_id, r.window_start, r.window_end, r.txn_count) for r in actual.collect()
    )
    assert got == [
        ("C1", ts("00:00:00"), ts("00:10:00"), 2),  # ends one gap after its last event
        ("C1", ts("00:10:01"), ts("00:15:01"), 1),
        ("C2", ts("00:00:30"), ts("00:05:30"), 1),
    ]


def test_sessions_per_merchant_category(spark):
    rows = frame(spark, ROWS).withColumn("merchant_category", F.lit("fuel"))
    actual = rows.transform(windows.session_windows(by="merchant_category"))
    assert [(r.merchant_category, r.txn_count) for r in actual.collect()] == [("fuel", 4)]


def test_windows_name_the_missing_column(spark):
    with pytest.raises(ValueError, match=r"needs the columns \['merchant_category'\]"):
        frame(spark, ROWS).transform(windows.tumbling_windows(by="merchant_category"))
    with pytest.raises(ValueError, match="at least one key"):
        windows.session_windows(by=())


def test_watermark_drops_predicts_from_earlier_runs_only(spark):
    rows = frame(spark, ROWS + [("L1", "00:01:00", "C1", "9.00")]).withColumn(
        "run", F.when(F.col("transaction_id") == "L1", 1).otherwise(0)
    )
    predicted = rows.transform(windows.watermark_drops("run", delay="1 minute"))
    dropped = {r.transaction_id for r in predicted.where("dropped").collect()}
    # run 1's watermark: 00:05:00 - 1 minute = 00:04:00; L1's window ends 00:05:00: kept
    assert dropped == set()
    later = rows.withColumn(
        "event_ts",
        F.when(F.col("transaction_id") == "T3", F.lit(ts("00:11:00"))).otherwise(F.col("event_ts")),
    ).transform(windows.watermark_drops("run", delay="1 minute"))
    # now the watermark is 00:10:00: L1's window [00:00, 00:05) is closed
    assert {r.transaction_id for r in later.where("dropped").collect()} == {"L1"}


def test_a_late_row_is_dropped_by_the_watermark_in_a_stream_of_two_runs(spark, tmp_path):
    from lakehouse.course import drop_table

    source, sink = "silver.windows_test_events", "gold.windows_test_5m"
    for name in (source, sink):
        drop_table(spark, name)
    checkpoint = str(tmp_path / "checkpoint")
    first = [*ROWS, ("T5", "00:21:00", "C1", "2.00")]  # moves the watermark to 00:11:00
    late = [("L1", "00:02:00", "C1", "100.00"), ("T6", "00:22:00", "C1", "3.00")]

    def run():
        query = (
            spark.readStream.table(source)
            .transform(windows.with_event_watermark())
            .transform(windows.tumbling_windows())
            .writeStream.format("delta")
            .outputMode("append")
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .toTable(sink)
        )
        query.awaitTermination()
        query.stop()
        return query

    frame(spark, first).write.format("delta").mode("append").saveAsTable(source)
    assert windows.dropped_by_watermark(run().recentProgress) == 0  # no watermark yet
    closed = {(r.customer_id, r.window_start): r.txn_count for r in spark.table(sink).collect()}
    # windows ending at or before 00:11:00 are final and written; [00:20, 00:25) stays open
    assert closed == {
        ("C1", ts("00:00:00")): 2,
        ("C1", ts("00:05:00")): 1,
        ("C2", ts("00:00:00")): 1,
    }
    frame(spark, late).write.format("delta").mode("append").saveAsTable(source)
    assert windows.dropped_by_watermark(run().recentProgress) == 1
    c1_first = spark.table(sink).where(
        (F.col("customer_id") == "C1") & (F.col("window_start") == ts("00:00:00"))
    )
    assert [r.txn_count for r in c1_first.collect()] == [2]  # L1 is not in it
    predicted = (
        frame(spark, first)
        .withColumn("run", F.lit(0))
        .unionByName(frame(spark, late).withColumn("run", F.lit(1)))
        .transform(windows.watermark_drops("run"))
    )
    assert [r.transaction_id for r in predicted.where("dropped").collect()] == ["L1"]
    for name in (source, sink):
        drop_table(spark, name)


def test_dropped_by_watermark_reads_progress_dicts():
    progress = [
        {"stateOperators": [{"numRowsDroppedByWatermark": 2}]},
        {"stateOperators": []},
        {"stateOperators": [{"numRowsDroppedByWatermark": 1}, {}]},
    ]
    assert windows.dropped_by_watermark(progress) == 3
