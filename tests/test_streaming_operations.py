"""Operating streams: progress flattened into ops.stream_metrics rows from real queries, the
metrics table recorded idempotently, the listener, a live watch and a graceful stop."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakehouse.streaming import operations
from lakehouse.streaming.operations import METRICS_COLUMNS, progress_row, record_progress

EVENTS = "id long, customer string, event_ts timestamp, amount double"
START = datetime(2026, 7, 1)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "streaming_operations_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """12 events in two JSON files: two micro-batches with maxFilesPerTrigger 1."""
    folder = tmp_path_factory.mktemp("landing")
    for number, ids in enumerate((range(0, 6), range(6, 12)), start=1):
        lines = [
            json.dumps(
                {
                    "id": i,
                    "customer": f"C{i % 3}",
                    "event_ts": (START + timedelta(minutes=2 * i)).isoformat() + "Z",
                    "amount": float(i) if i != 5 else None,
                }
            )
            for i in ids
        ]
        path = folder / f"events_{number:04d}.json"
        path.write_text("\n".join(lines) + "\n")
        # The file source takes the oldest files first: make the order certain.
        os.utime(path, (1_700_000_000 + number, 1_700_000_000 + number))
    return str(folder)


def read_source(spark, source):
    return spark.readStream.schema(EVENTS).option("maxFilesPerTrigger", 1).json(source)


def run_available_now(spark, tmp_path, stream_df, name, mode="append"):
    query = (
        stream_df.writeStream.format("delta")
        .queryName(name)
        .outputMode(mode)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start(str(tmp_path / "sink"))
    )
    query.awaitTermination()
    return query


@pytest.fixture(scope="module")
def stateful_query(spark, source, tmp_path_factory):
    """A windowed count with a watermark: stateful, so its progress carries state and
    watermark."""
    tmp = tmp_path_factory.mktemp("stateful")
    stream_df = (
        read_source(spark, source)
        .withWatermark("event_ts", "5 minutes")
        .groupBy(F.window("event_ts", "10 minutes"), "customer")
        .count()
    )
    return run_available_now(spark, tmp, stream_df, "windows_test")


@pytest.fixture(scope="module")
def stateless_query(spark, source, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stateless")
    stream_df = (
        spark.readStream.schema(EVENTS).json(source).withColumn("cents", F.col("amount") * 100)
    )
    return run_available_now(spark, tmp, stream_df, "projection_test")


# ------------------------------------------------------------------------------------------------
# progress_row
# ------------------------------------------------------------------------------------------------
def test_progress_row_flattens_a_stateful_query_progress(stateful_query):
    progresses = stateful_query.recentProgress
    rows = [progress_row(p) for p in progresses]
    assert set(rows[0]) == set(METRICS_COLUMNS)
    # Two files, one per trigger: the 12 rows arrive in two batches of 6 (then, maybe, a
    # no-data batch that moves the watermark on).
    assert [r["num_input_rows"] for r in rows][:2] == [6, 6]
    assert sum(r["num_input_rows"] for r in rows) == 12
    assert [r["batch_id"] for r in rows] == list(range(len(rows)))
    first = rows[0]
    assert first["query_name"] == "windows_test"
    assert first["query_id"] == str(stateful_query.id)
    assert first["run_id"] == str(stateful_query.runId)
    assert isinstance(first["timestamp"], datetime)
    assert first["trigger_execution_ms"] > 0 and first["add_batch_ms"] is not None
    assert first["trigger_execution_ms"] >= first["add_batch_ms"]
    assert first["state_rows_total"] > 0 and first["state_memory_bytes"] > 0
    # Before the first batch there is no watermark (Spark reports the epoch): None. After it,
    # the watermark is the max event time seen minus 5 minutes.
    assert first["watermark"] is None
    assert first["event_time_max"] == START + timedelta(minutes=10)
    assert rows[1]["watermark"] == START + timedelta(minutes=10) - timedelta(minutes=5)
    assert json.loads(first["progress_json"])["batchId"] == 0


def test_progress_row_of_a_stateless_query_has_no_state(stateless_query):
    row = progress_row(stateless_query.lastProgress)
    assert row["state_rows_total"] is None and row["state_memory_bytes"] is None
    assert row["watermark"] is None
    assert row["num_input_rows"] == 12
    assert row["num_output_rows"] == 12 and row["sink"]
    assert row["sink"]


def test_progress_row_reads_the_json_and_dict_forms(stateless_query):
    progress = stateless_query.lastProgress
    as_object = progress_row(progress)
    assert progress_row(progress.json) == as_object
    assert progress_row(json.loads(progress.json)) == as_object


def test_progress_row_treats_missing_phases_and_nan_rates_as_null():
    row = progress_row(
        {
            "id": "q",
            "runId": "r",
            "batchId": 0,
            "timestamp": "2026-07-01T00:00:05.250Z",
            "numInputRows": 0,
            "inputRowsPerSecond": "NaN",
            "durationMs": {"triggerExecution": 12},
        }
    )
    assert row["timestamp"] == datetime(2026, 7, 1, 0, 0, 5, 250000)
    assert row["input_rows_per_second"] is None
    assert row["trigger_execution_ms"] == 12 and row["add_batch_ms"] is None
    assert row["sink"] is None and row["state_rows_total"] is None


def test_progress_row_sums_the_sources_when_the_totals_are_absent():
    # Spark Connect's progress JSON carries the rows and rates per source only.
    row = progress_row(
        {
            "id": "q",
            "runId": "r",
            "batchId": 3,
            "timestamp": "2026-07-01T00:00:00.000Z",
            "sources": [
                {"numInputRows": 100, "inputRowsPerSecond": 50.0, "processedRowsPerSecond": 80.0},
                {"numInputRows": 20, "inputRowsPerSecond": "NaN", "processedRowsPerSecond": 20.0},
            ],
        }
    )
    assert row["num_input_rows"] == 120
    assert row["input_rows_per_second"] == 50.0
    assert row["processed_rows_per_second"] == 100.0


def test_progress_row_names_what_to_pass_instead(stateless_query):
    with pytest.raises(ValueError, match=r"not a query status \(query.status\)"):
        progress_row(stateless_query.status)
    with pytest.raises(TypeError, match="pass query.lastProgress"):
        progress_row(42)


# ------------------------------------------------------------------------------------------------
# record_progress
# ------------------------------------------------------------------------------------------------
def metrics_keys(spark, table):
    return [
        (r.run_id, r.batch_id)
        for r in spark.table(table).select("run_id", "batch_id").orderBy("batch_id").collect()
    ]


def test_record_progress_is_idempotent(spark, stateful_query, stateless_query):
    table = "ops.metrics_idempotent"
    offered = record_progress(spark, [stateful_query, stateless_query], table)
    batches = len(stateful_query.recentProgress) + len(stateless_query.recentProgress)
    assert offered == batches
    first = metrics_keys(spark, table)
    assert len(first) == len(set(first)) == batches
    # Again, and again with the progress objects of one query: nothing new.
    record_progress(spark, [stateful_query, stateless_query], table)
    record_progress(spark, stateful_query.recentProgress, table)
    assert sorted(metrics_keys(spark, table)) == sorted(first)
    rows = spark.table(table).where(F.col("query_name") == "windows_test")
    assert rows.agg(F.sum("num_input_rows")).first()[0] == 12


def test_a_plain_append_would_count_a_rerun_twice(spark, stateful_query):
    # What record_progress guards against: appending the same progress on every rerun.
    table = "ops.metrics_appended"
    operations.create_metrics_table(spark, table)
    for _ in range(2):
        rows = operations.progress_rows(stateful_query)
        operations.metrics_df(spark, rows).write.format("delta").mode("append").saveAsTable(table)
    keys = metrics_keys(spark, table)
    assert len(keys) == 2 * len(set(keys)), "the naive append should have doubled every batch"


def test_record_progress_of_nothing_creates_the_table(spark):
    assert record_progress(spark, [], "ops.metrics_empty") == 0
    assert spark.table("ops.metrics_empty").columns == list(METRICS_COLUMNS)


# ------------------------------------------------------------------------------------------------
# The listener, watch, stop_gracefully
# ------------------------------------------------------------------------------------------------
def test_the_listener_collects_every_batch(spark, source, tmp_path):
    listener = operations.MetricsListener()
    spark.streams.addListener(listener)
    try:
        stream_df = read_source(spark, source)
        query = run_available_now(spark, tmp_path, stream_df, "listened")
        assert listener.wait_for(query, batches=2), "the listener saw no progress in 30 s"
    finally:
        spark.streams.removeListener(listener)
    assert str(query.id) in listener.started
    mine = [r for r in listener.rows() if r["run_id"] == str(query.runId)]
    polled = operations.progress_rows(query)
    assert [(r["batch_id"], r["num_input_rows"]) for r in mine] == [
        (r["batch_id"], r["num_input_rows"]) for r in polled
    ]
    table = "ops.metrics_listener"
    listener.flush(spark, table)
    assert listener.progresses == []
    assert sorted(b for _, b in metrics_keys(spark, table)) == [0, 1]


def test_watch_follows_a_live_query_and_stop_gracefully_stops_between_batches(
    spark, tmp_path, capsys
):
    query = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 20)
        .load()
        .writeStream.format("delta")
        .queryName("live_rate")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(processingTime="1 second")
        .start(str(tmp_path / "sink"))
    )
    try:
        rows = operations.watch(query, seconds=6, every=0.5)
    finally:
        stopped_between = operations.stop_gracefully(query, timeout=30)
    assert not query.isActive
    assert stopped_between
    assert len(rows) >= 2
    assert [r["batch_id"] for r in rows] == sorted({r["batch_id"] for r in rows})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(rows) and printed[0].startswith("live_rate batch ")


def test_watch_rejects_a_non_positive_duration(stateless_query):
    with pytest.raises(ValueError, match="must be positive"):
        operations.watch(stateless_query, seconds=0)


# ------------------------------------------------------------------------------------------------
# Restarts and the failure drill
# ------------------------------------------------------------------------------------------------
def test_deliver_files_copies_whole_files_oldest_first_and_once(source, tmp_path):
    files = sorted(Path(source).glob("events_*.json"))
    landing = tmp_path / "landing"
    delivered = operations.deliver_files(files, landing)
    assert [Path(p).name for p in delivered] == [f.name for f in files]
    assert [(landing / f.name).read_bytes() for f in files] == [f.read_bytes() for f in files]
    times = [(landing / f.name).stat().st_mtime for f in files]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert not list(landing.glob(".*")), "a staging file was left behind"
    assert operations.deliver_files(files, landing) == []  # already there: left alone


def test_checkpoint_batches_of_a_missing_checkpoint_is_empty(tmp_path):
    assert operations.checkpoint_batches(tmp_path / "none") == {"planned": [], "committed": []}


def idempotent_append(path):
    """A foreachBatch append made idempotent with Delta's txnAppId/txnVersion writer options."""

    def append(batch_df, batch_id):
        (
            batch_df.write.format("delta")
            .option("txnAppId", "operations-drill")
            .option("txnVersion", batch_id)
            .mode("append")
            .save(path)
        )

    return append


def raise_before(foreach_batch, batch_id):
    """The wrong drill: it fails before the write, so nothing is left to replay."""

    def run(batch_df, current):
        if current == batch_id:
            raise RuntimeError(f"{operations.INJECTED_FAILURE} before the write")
        foreach_batch(batch_df, current)

    return run


def latest_version(spark, path):
    from lakehouse import DeltaTable

    return DeltaTable.forPath(spark, path).history(1).select("version").first()[0]


def run_drill(spark, source, tmp_path, foreach_batch):
    query = (
        read_source(spark, source)
        .writeStream.foreachBatch(foreach_batch)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    with pytest.raises(Exception, match=operations.INJECTED_FAILURE):
        query.awaitTermination()
    return query


def test_a_failure_after_the_write_is_replayed_and_skipped(spark, source, tmp_path):
    sink = str(tmp_path / "sink")
    spark.createDataFrame([], EVENTS).write.format("delta").save(sink)
    append = idempotent_append(sink)
    before = latest_version(spark, sink)
    run_drill(spark, source, tmp_path, operations.fail_after(append, batch_id=1))
    failed = latest_version(spark, sink)
    checkpoint = tmp_path / "checkpoint"
    assert operations.checkpoint_batches(checkpoint) == {"planned": [0, 1], "committed": [0]}
    operations.check_failed_after_commit(before, failed, checkpoint, 1)

    # The restart replays batch 1; the sink already holds (app id, 1) and commits nothing.
    query = (
        read_source(spark, source)
        .writeStream.foreachBatch(append)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    assert latest_version(spark, sink) == failed
    assert operations.checkpoint_batches(checkpoint)["committed"] == [0, 1]
    ids = sorted(r.id for r in spark.read.format("delta").load(sink).select("id").collect())
    assert ids == list(range(12))


def test_the_drill_check_catches_a_failure_before_the_write(spark, source, tmp_path):
    sink = str(tmp_path / "sink")
    spark.createDataFrame([], EVENTS).write.format("delta").save(sink)
    before = latest_version(spark, sink)
    run_drill(spark, source, tmp_path, raise_before(idempotent_append(sink), batch_id=0))
    with pytest.raises(AssertionError, match="the failure came before the MERGE"):
        operations.check_failed_after_commit(
            before, latest_version(spark, sink), tmp_path / "checkpoint", 0
        )
    with pytest.raises(AssertionError, match="never planned batch 1"):
        operations.check_failed_after_commit(before, before + 1, tmp_path / "checkpoint", 1)


# --------------------------------------------------------------------------- Kafka lag

# A Kafka source's progress as Spark 4.1 reports it: offsets per topic and partition, as JSON
# strings (the form StreamingQueryProgress.json gives).
KAFKA_PROGRESS = {
    "id": "6f1e2a40-0000-4000-8000-000000000001",
    "runId": "6f1e2a40-0000-4000-8000-000000000002",
    "name": "bronze",
    "timestamp": "2026-07-01T00:00:00.000Z",
    "batchId": 3,
    "numInputRows": 500,
    "durationMs": {"triggerExecution": 900},
    "stateOperators": [],
    "sources": [
        {
            "description": "KafkaV2[Subscribe[payment_events]]",
            "startOffset": '{"payment_events":{"0":100,"1":100}}',
            "endOffset": '{"payment_events":{"0":350,"1":350}}',
            "latestOffset": '{"payment_events":{"0":400,"1":380}}',
            "numInputRows": 500,
            "metrics": {"maxOffsetsBehindLatest": "50"},
        }
    ],
    "sink": {"description": "DeltaSink[bronze]", "numOutputRows": 500},
}


def test_kafka_lag_is_latest_minus_end_per_partition():
    assert operations.kafka_lag(KAFKA_PROGRESS, "payment_events") == {0: 50, 1: 30}
    assert operations.kafka_lag(KAFKA_PROGRESS, "other_topic") is None
    assert progress_row(KAFKA_PROGRESS)["offsets_behind_latest"] == 80


def test_a_file_source_has_no_lag_column_value(stateless_query):
    assert progress_row(stateless_query.lastProgress)["offsets_behind_latest"] is None


def test_committed_offsets_come_from_the_last_committed_batch(tmp_path):
    (tmp_path / "offsets").mkdir()
    (tmp_path / "commits").mkdir()
    assert operations.committed_offsets(tmp_path, "payment_events") == {}
    meta = '{"batchWatermarkMs":0,"batchTimestampMs":0,"conf":{}}'
    for batch, offsets in ((0, '{"0":10,"1":5}'), (1, '{"0":20,"1":9}')):
        (tmp_path / "offsets" / str(batch)).write_text(
            f'v1\n{meta}\n{{"payment_events":{offsets}}}\n'
        )
    (tmp_path / "commits" / "0").write_text('v1\n{"nextBatchWatermarkMs":0}\n')
    # batch 1 is planned, not committed: the query will read it again
    assert operations.committed_offsets(tmp_path, "payment_events") == {0: 10, 1: 5}
