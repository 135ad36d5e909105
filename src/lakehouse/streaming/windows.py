"""Event-time windows over payment events: tumbling, sliding and session windows that run the
same on a streaming or a batch DataFrame, and helpers that show what a watermark drops.

A watermark of ``EVENT_WATERMARK`` behind the latest ``event_ts`` seen tells Spark when a window
is complete: in ``append`` mode its row is written once the watermark passes its end, its state
is freed, and events arriving for it afterwards are dropped (counted in the progress'
``stateOperators[].numRowsDroppedByWatermark``).

Example::

    from lakehouse.streaming import windows

    per_customer_df = (
        spark.readStream.table("silver.payment_events")
        .transform(windows.with_event_watermark())
        .transform(windows.tumbling_windows())          # 5-minute windows per customer
    )
    windows.tumbling_windows()(spark.table("silver.payment_events"))  # the same, in batch
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

EVENT_WATERMARK = "10 minutes"  # how far behind the latest event time an event may arrive
TUMBLING = "5 minutes"
SLIDE = "1 minute"  # sliding windows: 5 minutes long, one starting every minute
SESSION_GAP = "5 minutes"  # a session ends after 5 minutes without an event
EVENT_TIME = "event_ts"
DEFAULT_KEYS = ("customer_id",)

WINDOW_COLUMNS = ("window_start", "window_end")
MEASURES = ("txn_count", "amount_usd_sum", "max_amount_usd")


def _check_columns(df: DataFrame, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} needs the columns {missing}, which the frame lacks (it has "
            f"{', '.join(df.columns)}): pass events read from silver.payment_events, or choose "
            "keys among its columns (by=...)"
        )


def _keys(by: str | Sequence[str]) -> tuple[str, ...]:
    keys = (by,) if isinstance(by, str) else tuple(by)
    if not keys:
        raise ValueError("windows need at least one key column in by=, e.g. ('customer_id',)")
    return keys


def window_measures() -> list[Column]:
    """The measures of every window kind: ``txn_count``, ``amount_usd_sum`` (DECIMAL(18,2))
    and ``max_amount_usd``."""
    return [
        F.count(F.lit(1)).alias("txn_count"),
        F.sum("amount_usd").cast("decimal(18,2)").alias("amount_usd_sum"),
        F.max("amount_usd").alias("max_amount_usd"),
    ]


def _aggregate(window: Column, keys: tuple[str, ...]) -> Callable[[DataFrame], DataFrame]:
    def aggregate(df: DataFrame) -> DataFrame:
        return (
            df.groupBy(window.alias("window"), *keys)
            .agg(*window_measures())
            .select(
                F.col("window.start").alias("window_start"),
                F.col("window.end").alias("window_end"),
                *keys,
                *MEASURES,
            )
        )

    return aggregate


def tumbling_windows(
    duration: str = TUMBLING, *, by: str | Sequence[str] = DEFAULT_KEYS
) -> Callable[[DataFrame], DataFrame]:
    """Fixed, non-overlapping windows of ``event_ts``: each event in exactly one window,
    ``[start, end)`` (an event at 00:05:00 belongs to 00:05-00:10).

    >>> spark.table("silver.payment_events").transform(tumbling_windows())  # doctest: +SKIP
    """
    keys = _keys(by)

    def transform(df: DataFrame) -> DataFrame:
        _check_columns(df, [EVENT_TIME, "amount_usd", *keys], "tumbling_windows")
        return _aggregate(F.window(EVENT_TIME, duration), keys)(df)

    return transform


def sliding_windows(
    duration: str = TUMBLING, slide: str = SLIDE, *, by: str | Sequence[str] = DEFAULT_KEYS
) -> Callable[[DataFrame], DataFrame]:
    """Overlapping windows of ``duration`` starting every ``slide``: each event counts in
    ``duration / slide`` windows (5 with the defaults), a moving 5-minute total per minute.

    >>> spark.table("silver.payment_events").transform(sliding_windows())  # doctest: +SKIP
    """
    keys = _keys(by)

    def transform(df: DataFrame) -> DataFrame:
        _check_columns(df, [EVENT_TIME, "amount_usd", *keys], "sliding_windows")
        return _aggregate(F.window(EVENT_TIME, duration, slide), keys)(df)

    return transform


def session_windows(
    gap: str = SESSION_GAP, *, by: str | Sequence[str] = DEFAULT_KEYS
) -> Callable[[DataFrame], DataFrame]:
    """Activity sessions per key: a session starts with an event and is extended by each event
    at most ``gap`` after the previous one; it ends ``gap`` after its last event (an event
    exactly ``gap`` later still joins it, as Spark merges touching sessions).

    >>> spark.table("silver.payment_events").transform(session_windows(by="merchant_category"))
    ... # doctest: +SKIP
    """
    keys = _keys(by)

    def transform(df: DataFrame) -> DataFrame:
        _check_columns(df, [EVENT_TIME, "amount_usd", *keys], "session_windows")
        return _aggregate(F.session_window(EVENT_TIME, gap), keys)(df)

    return transform


def with_event_watermark(delay: str = EVENT_WATERMARK) -> Callable[[DataFrame], DataFrame]:
    """``withWatermark("event_ts", delay)``: state for a window is kept until the latest event
    time seen minus ``delay`` passes its end; later events for it are dropped."""

    def transform(df: DataFrame) -> DataFrame:
        _check_columns(df, [EVENT_TIME], "with_event_watermark")
        return df.withWatermark(EVENT_TIME, delay)

    return transform


def watermark_drops(
    run: str | Column,
    *,
    delay: str = EVENT_WATERMARK,
    duration: str = TUMBLING,
) -> Callable[[DataFrame], DataFrame]:
    """Predict, in batch, which events a streamed tumbling-window aggregation drops when the
    rows reach it in successive stream runs numbered by the column ``run`` (0, 1, 2, ...): one
    ``availableNow`` run per delivery, as a scheduled job reads a table that grows.

    Adds ``watermark`` (what late rows are checked against in that run) and ``dropped`` (the
    event's window ended at or before it). A run processes its new rows in a micro-batch, then
    Spark runs a no-data micro-batch that moves the watermark to ``max(event_ts) - delay`` and
    writes the windows it closed. So run ``n`` checks its rows against the largest event time of
    runs ``0 .. n-1``, minus ``delay``; run 0 has no watermark yet and drops nothing.

    (Within one run of several data micro-batches the watermark lags one batch more: since
    Spark 3.4, a micro-batch filters late rows with the watermark of the micro-batch before.)

    >>> arrivals_df.transform(watermark_drops("run")).where("dropped")  # doctest: +SKIP
    """
    run_col = F.col(run) if isinstance(run, str) else run

    def transform(df: DataFrame) -> DataFrame:
        _check_columns(df, [EVENT_TIME], "watermark_drops")
        numbered = df.withColumn("_run", run_col.cast("long"))
        per_run = numbered.groupBy("_run").agg(F.max(EVENT_TIME).alias("_run_max"))
        # the watermark of run n: the max event time over the runs before it, minus delay (a
        # join of the few runs with the earlier ones: no unpartitioned window function)
        earlier = per_run.select(F.col("_run").alias("_earlier"), "_run_max")
        marks = (
            per_run.select("_run")
            .join(earlier, F.col("_earlier") < F.col("_run"))
            .groupBy("_run")
            .agg((F.max("_run_max") - F.expr(f"INTERVAL {delay}")).alias("watermark"))
        )
        window_end = F.window(EVENT_TIME, duration).end
        return (
            numbered.join(marks, "_run", "left")
            .withColumn("dropped", F.coalesce(window_end <= F.col("watermark"), F.lit(False)))
            .drop("_run")
        )

    return transform


def closed_windows(watermark) -> Callable[[DataFrame], DataFrame]:
    """Keep the windows whose end is at or before ``watermark`` (a timestamp): the ones an
    append-mode stream has written by then."""

    def transform(df: DataFrame) -> DataFrame:
        _check_columns(df, ["window_end"], "closed_windows")
        return df.where(F.col("window_end") <= F.lit(watermark))

    return transform


def dropped_by_watermark(progress: Sequence) -> int:
    """Sum of ``numRowsDroppedByWatermark`` over the state operators of a query's progress
    reports (``query.recentProgress``): the late rows the watermark dropped. Progress objects
    and their dict/JSON forms both work."""
    total = 0
    for p in progress:
        report = p if isinstance(p, dict) else json.loads(p.json)
        for op in report.get("stateOperators") or []:
            total += int(op.get("numRowsDroppedByWatermark") or 0)
    return total


__all__ = [
    "DEFAULT_KEYS",
    "EVENT_TIME",
    "EVENT_WATERMARK",
    "MEASURES",
    "SESSION_GAP",
    "SLIDE",
    "TUMBLING",
    "WINDOW_COLUMNS",
    "closed_windows",
    "dropped_by_watermark",
    "session_windows",
    "sliding_windows",
    "tumbling_windows",
    "watermark_drops",
    "window_measures",
    "with_event_watermark",
]
