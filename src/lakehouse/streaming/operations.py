"""Operating streams: one row of metrics per micro-batch in ``ops.stream_metrics``, a live
watch of a running query, and a graceful stop.

Every micro-batch a query runs ends with a ``StreamingQueryProgress`` (``query.lastProgress``,
``query.recentProgress``, or a ``StreamingQueryListener``'s ``onQueryProgress``): rows in,
rows per second, how long each phase took, state size, watermark. :func:`progress_row` flattens
one into a row of :data:`METRICS_SCHEMA`, and :func:`record_progress` appends rows to
``ops.stream_metrics`` idempotently (a run id and batch id already there is not inserted
again), so recording the same progress twice, or after a restart, never double counts.

Example::

    from lakehouse.streaming import operations

    listener = operations.MetricsListener()
    spark.streams.addListener(listener)           # production: every query of the session
    query = pipeline.start_bronze(spark, trigger={"processingTime": "2 seconds"})
    rows = operations.watch(query, seconds=10)    # a live look, one line per batch
    operations.stop_gracefully(query)
    spark.streams.removeListener(listener)
    operations.record_progress(spark, listener.progresses)
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQueryListener
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.streaming import METRICS

KEY = ("run_id", "batch_id")  # one row per micro-batch of one run of a query

# The phases a micro-batch reports in durationMs, in the order they happen.
DURATIONS = (
    "latestOffset",  # asking the source what is new
    "getBatch",
    "queryPlanning",
    "walCommit",  # the offsets written to the checkpoint (the write-ahead log)
    "addBatch",  # the sink's work: for Delta, writing files and committing
    "commitOffsets",  # the batch marked done in the checkpoint
    "triggerExecution",  # the whole trigger
)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def duration_column(phase: str) -> str:
    """The METRICS column of a ``durationMs`` phase: ``"addBatch"`` -> ``"add_batch_ms"``."""
    return f"{_snake(phase)}_ms"


METRICS_SCHEMA = StructType(
    [
        StructField("query_name", StringType(), True),
        StructField("query_id", StringType(), False),  # stable across restarts (checkpoint)
        StructField("run_id", StringType(), False),  # new at every start
        StructField("batch_id", LongType(), False),
        StructField("timestamp", TimestampType(), False),  # when the trigger started
        StructField("num_input_rows", LongType(), False),
        StructField("input_rows_per_second", DoubleType(), True),
        StructField("processed_rows_per_second", DoubleType(), True),
        StructField("batch_duration_ms", LongType(), True),
        *(StructField(duration_column(phase), LongType(), True) for phase in DURATIONS),
        StructField("state_rows_total", LongType(), True),
        StructField("state_rows_updated", LongType(), True),
        StructField("state_rows_dropped_by_watermark", LongType(), True),
        StructField("state_memory_bytes", LongType(), True),
        StructField("watermark", TimestampType(), True),
        StructField("event_time_max", TimestampType(), True),
        StructField("sink", StringType(), True),
        StructField("num_output_rows", LongType(), True),
        # Kafka sources: messages the broker had (latestOffset) beyond what the batch read
        # (endOffset), summed over partitions: the consumer lag. NULL for other sources.
        StructField("offsets_behind_latest", LongType(), True),
        StructField("progress_json", StringType(), False),  # everything, for what is not above
    ]
)
METRICS_COLUMNS = tuple(METRICS_SCHEMA.fieldNames())
METRICS_COMMENT = (
    "One row per micro-batch of every recorded streaming query: input rows and rates, phase "
    "durations, state size and watermark, flattened from StreamingQueryProgress (raw JSON in "
    "progress_json). Key: run_id + batch_id."
)


# --------------------------------------------------------------------------- progress rows


def progress_dict(progress: Any) -> dict:
    """A progress as a plain dict, whatever its form: a ``StreamingQueryProgress`` (classic or
    Spark Connect), its ``.json`` string, or a dict already (``lastProgress`` on older
    versions)."""
    # First .json: a StreamingQueryProgress is also a Mapping, but of Python objects (UUIDs).
    text = getattr(progress, "json", None)
    if isinstance(text, str):
        return json.loads(text)
    if isinstance(progress, Mapping):
        return dict(progress)
    if isinstance(progress, str):
        return json.loads(progress)
    raise TypeError(
        f"progress_row expects a StreamingQueryProgress, its JSON or a dict, not "
        f"{type(progress).__name__}: pass query.lastProgress or an item of query.recentProgress"
    )


_NO_WATERMARK = "1970-01-01T00:00:00.000Z"  # what Spark reports before the first watermark


def _timestamp(text: str | None) -> datetime | None:
    if not text or text == _NO_WATERMARK:
        return None
    # Spark writes "2026-07-01T00:00:05.123Z"; fromisoformat reads the Z from Python 3.11.
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def _number(value: Any, kind: type) -> Any:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number:  # NaN: a rate over an empty interval
        return None
    return int(number) if kind is int else number


def _total(p: dict, field: str) -> Any:
    # Spark Connect's progress JSON leaves out the query-level totals (the Python object
    # computes them from the sources): sum the sources' values when the total is absent.
    if p.get(field) is not None:
        return p[field]
    values = [s.get(field) for s in p.get("sources") or [] if s.get(field) is not None]
    numbers = [v for v in (_number(v, float) for v in values) if v is not None]
    return sum(numbers) if numbers else None


def _state_sum(operators: list[dict], field: str) -> int | None:
    values = [op.get(field) for op in operators if op.get(field) is not None]
    return int(sum(values)) if values else None


def progress_row(progress: Any) -> dict:
    """One micro-batch's progress as a row of :data:`METRICS_SCHEMA` (a dict keyed by column).

    Durations come from ``durationMs`` (a phase the batch did not run is None), state from
    ``stateOperators`` (summed over the query's stateful operators; None for a stateless
    query), the watermark and latest event time from ``eventTime``.

    >>> row = progress_row(query.lastProgress)      # doctest: +SKIP
    >>> row["batch_id"], row["num_input_rows"], row["add_batch_ms"]
    (3, 200, 812)
    """
    p = progress_dict(progress)
    missing = [k for k in ("id", "runId", "batchId", "timestamp") if k not in p]
    if missing:
        raise ValueError(
            f"progress_row: the progress has no {missing}: pass a StreamingQueryProgress "
            "(query.lastProgress), not a query status (query.status)"
        )
    durations = p.get("durationMs") or {}
    operators = p.get("stateOperators") or []
    event_time = p.get("eventTime") or {}
    sink = p.get("sink") or {}
    row = {
        "query_name": p.get("name"),
        "query_id": str(p["id"]),
        "run_id": str(p["runId"]),
        "batch_id": int(p["batchId"]),
        "timestamp": _timestamp(p["timestamp"]),
        "num_input_rows": int(_total(p, "numInputRows") or 0),
        "input_rows_per_second": _number(_total(p, "inputRowsPerSecond"), float),
        "processed_rows_per_second": _number(_total(p, "processedRowsPerSecond"), float),
        "batch_duration_ms": _number(p.get("batchDuration"), int),
        **{duration_column(phase): _number(durations.get(phase), int) for phase in DURATIONS},
        "state_rows_total": _state_sum(operators, "numRowsTotal"),
        "state_rows_updated": _state_sum(operators, "numRowsUpdated"),
        "state_rows_dropped_by_watermark": _state_sum(operators, "numRowsDroppedByWatermark"),
        "state_memory_bytes": _state_sum(operators, "memoryUsedBytes"),
        "watermark": _timestamp(event_time.get("watermark")),
        "event_time_max": _timestamp(event_time.get("max")),
        "sink": sink.get("description"),
        "num_output_rows": _number(sink.get("numOutputRows"), int),
        "offsets_behind_latest": _offsets_behind(p),
        "progress_json": json.dumps(p, sort_keys=True),
    }
    return row


def _offsets(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value.startswith("{") else value


def _lags(p: dict) -> dict[str, dict[int, int]]:
    """Topic -> partition -> latestOffset - endOffset, over a progress's Kafka sources (the
    offsets are JSON maps of topic to partition to offset; other sources have none)."""
    lags: dict[str, dict[int, int]] = {}
    for source in p.get("sources") or []:
        latest, end = _offsets(source.get("latestOffset")), _offsets(source.get("endOffset"))
        if not (isinstance(latest, dict) and isinstance(end, dict)):
            continue
        for topic, partitions in latest.items():
            if isinstance(partitions, dict):
                done = end.get(topic) or {}
                lags[topic] = {int(q): int(o) - int(done.get(q, 0)) for q, o in partitions.items()}
    return lags


def _offsets_behind(p: dict) -> int | None:
    """Sum over the Kafka sources' partitions of latestOffset - endOffset (None without one)."""
    lags = _lags(p)
    return sum(sum(per.values()) for per in lags.values()) if lags else None


def _progresses_of(item: Any) -> list:
    # A StreamingQuery gives all its recent progress; anything else is one progress.
    if hasattr(item, "recentProgress") and hasattr(item, "runId"):
        return list(item.recentProgress)
    return [item]


def progress_rows(queries_or_progresses: Any) -> list[dict]:
    """Rows for a query (its ``recentProgress``), a progress, or an iterable mixing both;
    one row per (run id, batch id), in batch order."""
    items = queries_or_progresses
    if hasattr(items, "recentProgress") or isinstance(items, str | Mapping):
        items = [items]
    elif not isinstance(items, Iterable):
        items = [items]
    rows: dict[tuple, dict] = {}
    for item in items:
        for progress in _progresses_of(item):
            row = progress_row(progress)
            rows.setdefault((row["run_id"], row["batch_id"]), row)
    return sorted(rows.values(), key=lambda r: (r["timestamp"], r["run_id"], r["batch_id"]))


def metrics_df(spark: SparkSession, rows: Iterable[Mapping]) -> DataFrame:
    """Rows of :func:`progress_row` as a DataFrame of :data:`METRICS_SCHEMA`."""
    return spark.createDataFrame(
        [tuple(row.get(c) for c in METRICS_COLUMNS) for row in rows], METRICS_SCHEMA
    )


# --------------------------------------------------------------------------- the metrics table


def create_metrics_table(spark: SparkSession, table: str = METRICS) -> None:
    """Create ``ops.stream_metrics`` (schema :data:`METRICS_SCHEMA`) unless it exists; a
    table kept from an earlier version of the course gains the columns it lacks (nullable,
    NULL in the rows it already has), so its history stays."""
    from lakehouse.tables import DeltaTable

    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    (
        DeltaTable.createIfNotExists(spark)
        .tableName(table)
        .addColumns(METRICS_SCHEMA)
        .comment(METRICS_COMMENT)
        .execute()
    )
    have = set(spark.table(table).columns)
    new = [f for f in METRICS_SCHEMA.fields if f.name not in have]
    if new:
        columns = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in new)
        spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({columns})")


def record_progress(spark: SparkSession, queries_or_progresses: Any, table: str = METRICS) -> int:
    """Append the progress of queries (their ``recentProgress``) or progress objects to
    ``ops.stream_metrics``; returns the number of micro-batches offered.

    Idempotent: an insert-only MERGE on (run_id, batch_id), so recording the same progress
    again (a notebook rerun, a listener flushed twice) adds nothing.

    >>> record_progress(spark, [bronze_query, silver_query])      # doctest: +SKIP
    6
    """
    from lakehouse.tables import DeltaTable

    rows = progress_rows(queries_or_progresses)
    create_metrics_table(spark, table)
    if not rows:
        return 0
    condition = " AND ".join(f"t.{k} = s.{k}" for k in KEY)
    (
        DeltaTable.forName(spark, table)
        .alias("t")
        .merge(metrics_df(spark, rows).alias("s"), condition)
        .whenNotMatchedInsertAll()
        .execute()
    )
    return len(rows)


# --------------------------------------------------------------------------- listener


class MetricsListener(StreamingQueryListener):
    """Collects every micro-batch's progress of every query of the session, as it happens.

    A listener is the production way to collect metrics: nothing polls, no batch is missed,
    and one registration covers every query. Its callbacks run on the listener bus (on the
    client under Spark Connect), so they must be quick: this one only keeps the progress;
    :meth:`flush` writes them to ``ops.stream_metrics`` with :func:`record_progress`.

    >>> listener = MetricsListener()                     # doctest: +SKIP
    >>> spark.streams.addListener(listener)
    >>> ...                                              # run queries
    >>> spark.streams.removeListener(listener)
    >>> listener.flush(spark)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.progresses: list[dict] = []
        self.started: list[str] = []
        self.terminated: list[dict] = []

    def onQueryStarted(self, event) -> None:  # noqa: N802 - Spark's callback name
        with self._lock:
            self.started.append(str(event.id))

    def onQueryProgress(self, event) -> None:  # noqa: N802
        progress = progress_dict(event.progress)
        with self._lock:
            self.progresses.append(progress)

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        with self._lock:
            self.terminated.append({"id": str(event.id), "exception": event.exception})

    def rows(self) -> list[dict]:
        """The collected progress as rows of :data:`METRICS_SCHEMA`."""
        with self._lock:
            progresses = list(self.progresses)
        return progress_rows(progresses)

    def wait_for(self, query, batches: int = 1, timeout: float = 30.0) -> bool:
        """Wait until the listener has seen ``batches`` progress of ``query`` (events arrive
        asynchronously, a little after the batch). True if it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        run_id = str(query.runId)
        while time.monotonic() < deadline:
            with self._lock:
                seen = sum(1 for p in self.progresses if str(p.get("runId")) == run_id)
            if seen >= batches:
                return True
            time.sleep(0.1)
        return False

    def flush(self, spark: SparkSession, table: str = METRICS) -> int:
        """Record what was collected (idempotent) and forget it; returns the rows offered."""
        with self._lock:
            progresses, self.progresses = self.progresses, []
        return record_progress(spark, progresses, table)


# --------------------------------------------------------------------------- live runs


def _line(row: Mapping) -> str:
    rate = row["processed_rows_per_second"]
    state = row["state_rows_total"]
    parts = [
        f"{row['query_name'] or row['query_id'][:8]} batch {row['batch_id']}:",
        f"{row['num_input_rows']:,} rows",
        f"{rate:,.0f} rows/s" if rate is not None else "",
        f"{(row['trigger_execution_ms'] or 0) / 1000:.1f} s",
        f"state {state:,} rows" if state is not None else "",
    ]
    return " ".join(p for p in parts if p)


def watch(query, *, seconds: float, every: float = 1.0, show: bool = True) -> list[dict]:
    """Follow a running query for ``seconds``: poll ``lastProgress`` every ``every`` seconds
    and print one line per new micro-batch (rows, rows/s, duration, state). Batches that ran
    between two polls are taken from ``recentProgress``. Returns the rows seen, in order.
    Stops early if the query ends; raises its exception if it failed.

    >>> rows = watch(query, seconds=10)        # doctest: +SKIP
    payments_bronze batch 3: 1,000 rows 812 rows/s 1.2 s
    """
    if seconds <= 0 or every <= 0:
        raise ValueError(f"watch: seconds ({seconds}) and every ({every}) must be positive")
    seen: dict[tuple, dict] = {}
    deadline = time.monotonic() + seconds
    while True:
        active = query.isActive
        latest = query.lastProgress
        if latest is not None and _key(latest) not in seen:
            # recentProgress ends with lastProgress and holds batches that ran between polls
            for progress in [*query.recentProgress, latest]:
                row = progress_row(progress)
                if (row["run_id"], row["batch_id"]) not in seen:
                    seen[(row["run_id"], row["batch_id"])] = row
                    if show:
                        print(_line(row), flush=True)
        if not active or time.monotonic() >= deadline:
            break
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
    if not query.isActive and query.exception() is not None:
        raise query.exception()
    return sorted(seen.values(), key=lambda r: (r["timestamp"], r["batch_id"]))


def _key(progress: Any) -> tuple:
    p = progress_dict(progress)
    return (str(p.get("runId")), int(p.get("batchId", -1)))


def stop_gracefully(query, timeout: float = 60.0, poll: float = 0.2) -> bool:
    """Stop ``query`` between two micro-batches: wait until no trigger is running (the current
    batch committed), then ``stop()``. After ``timeout`` seconds stop anyway: the interrupted
    batch is not marked done in the checkpoint and is redone, idempotently, at the next start.
    Returns True when the stop came between batches.

    ``query.stop()`` itself waits up to ``spark.sql.streaming.stopTimeout`` for the query's
    thread to end (0 = forever)."""
    deadline = time.monotonic() + timeout
    between = False
    while query.isActive and time.monotonic() < deadline:
        status = query.status
        if not status["isTriggerActive"] and status["message"] != "Initializing sources":
            between = True
            break
        time.sleep(poll)
    if query.isActive:
        query.stop()
    return between


# --------------------------------------------------------------------------- restarts and drills


def deliver_files(paths: Iterable[str | os.PathLike], landing: str | os.PathLike) -> list[str]:
    """Drop files into ``landing`` the way a producer does: each copied under a hidden name and
    renamed once complete (a stream never reads half a file), with increasing modification
    times in the order given (a file stream, ``maxFilesPerTrigger`` included, takes the oldest
    first). Files already there are left alone. Returns the files delivered by this call."""
    target_dir = Path(landing)
    target_dir.mkdir(parents=True, exist_ok=True)
    delivered = []
    stamp = time.time()
    for number, source in enumerate(map(Path, paths)):
        target = target_dir / source.name
        if target.exists():
            continue
        staging = target_dir / f".{source.name}.delivering"
        shutil.copyfile(source, staging)
        os.utime(staging, (stamp + number * 0.01, stamp + number * 0.01))
        os.replace(staging, target)
        delivered.append(str(target))
    return delivered


def checkpoint_batches(checkpoint: str | os.PathLike) -> dict[str, list[int]]:
    """What a query's checkpoint records: ``planned``, the batch ids in ``offsets/`` (the
    write-ahead log: written before a batch runs) and ``committed``, those in ``commits/``
    (written after the sink committed). A batch planned and not committed is redone, with the
    same id and the same data, at the next start."""
    root = Path(checkpoint)

    def ids(folder: str) -> list[int]:
        path = root / folder
        return (
            sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []
        )

    return {"planned": ids("offsets"), "committed": ids("commits")}


def committed_offsets(checkpoint: str | os.PathLike, topic: str) -> dict[int, int]:
    """Partition -> the offset a Kafka query's checkpoint will read ``topic`` from next: the
    end offsets of its last **committed** batch (``offsets/<id>`` of the newest id in
    ``commits/``), i.e. what the query has consumed for good. Empty before the first commit.
    With :func:`lakehouse.services.kafka.consumer_lag` it gives the lag of a stopped query."""
    root = Path(checkpoint)
    committed = checkpoint_batches(root)["committed"]
    if not committed:
        return {}
    # offsets/<id>: a version line, the batch's metadata, then one JSON line per source
    for line in (root / "offsets" / str(committed[-1])).read_text().splitlines()[2:]:
        source = json.loads(line) if line.strip().startswith("{") else {}
        if topic in source:
            return {int(p): int(o) for p, o in source[topic].items()}
    return {}


def kafka_lag(progress: Any, topic: str) -> dict[int, int] | None:
    """Partition -> messages behind the newest one, from a Kafka query's progress: the
    source's ``latestOffset`` (what the broker had when the batch was planned) minus its
    ``endOffset`` (what the batch read up to). None when the progress has no Kafka source
    for ``topic``."""
    return _lags(progress_dict(progress)).get(topic)


INJECTED_FAILURE = "Injected failure"


def fail_after(foreach_batch, batch_id: int):
    """Wrap a ``foreachBatch`` function so that it raises after it has done its work on
    ``batch_id``: the sink's commit landed, the checkpoint never records the batch. The worst
    moment for a stream to die, for a failure drill.

    >>> drill = fail_after(upsert.upsert_risk_windows(app_id), batch_id=1)   # doctest: +SKIP
    """

    def run(batch_df, current_batch_id: int) -> None:
        foreach_batch(batch_df, current_batch_id)
        if current_batch_id == batch_id:
            raise RuntimeError(
                f"{INJECTED_FAILURE} after batch {current_batch_id} was written, before the "
                "checkpoint recorded it"
            )

    return run


def check_failed_after_commit(
    versions_before: int, versions_after: int, checkpoint: str | os.PathLike, batch_id: int
) -> None:
    """Assert that a drill failed at the worst moment: the table gained a commit during the
    failed run (the batch's MERGE landed) and the checkpoint planned ``batch_id`` without
    committing it. ``versions_*`` are the table's latest version before and after the run."""
    batches = checkpoint_batches(checkpoint)
    assert batch_id in batches["planned"], (
        f"The checkpoint never planned batch {batch_id} (planned: {batches['planned']}): the "
        "stream failed before reaching it. Fail on the batch id the drill names."
    )
    assert batch_id not in batches["committed"], (
        f"The checkpoint committed batch {batch_id}: the stream did not fail in that batch. "
        "Raise from the foreachBatch function when batch_id is the drill's batch."
    )
    assert versions_after > versions_before, (
        f"The table is still at version {versions_before}: the failure came before the MERGE. "
        "Call the upsert first, then raise: the drill is a failure after the sink's commit."
    )


__all__ = [
    "DURATIONS",
    "INJECTED_FAILURE",
    "KEY",
    "METRICS",
    "METRICS_COLUMNS",
    "METRICS_SCHEMA",
    "MetricsListener",
    "check_failed_after_commit",
    "checkpoint_batches",
    "create_metrics_table",
    "deliver_files",
    "duration_column",
    "fail_after",
    "metrics_df",
    "progress_dict",
    "progress_row",
    "progress_rows",
    "record_progress",
    "stop_gracefully",
    "watch",
]
