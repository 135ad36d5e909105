"""Silver: web sessions from clickstream events. A visitor's session ends after more than
``gap`` (30 minutes) without an event; a gap of exactly ``gap`` keeps the session open.

Two ways, which agree: window functions (:func:`sessionize`: ``lag``, a new-session flag, a
running sum) and Spark's ``session_window`` in a ``groupBy`` (:func:`sessions_from_session_window`).

Example::

    from lakehouse.silver import sessions

    sessionized_df = events_df.transform(sessions.distinct_events).transform(sessions.sessionize())
    web_sessions_df = sessionized_df.transform(sessions.summarize_sessions)
    by_window_df = events_df.transform(sessions.sessions_from_session_window("30 minutes"))
    sessions.check_methods_agree(web_sessions_df, by_window_df)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

SESSION_GAP = "30 minutes"
WEB_SESSIONS = "silver.web_sessions"
WEB_EVENTS_SESSIONIZED = "silver.web_events_sessionized"
EVENTS_DATASET = "web.events"

VISITOR = "visitor_id"
EVENT_TS = "event_ts"
EVENT_ID = "event_id"
# the columns both methods produce: what "the same sessions" means
SESSION_SHAPE = (VISITOR, "session_start", "session_end", "event_count")

WEB_SESSIONS_SCHEMA = StructType(
    [
        StructField("session_id", StringType(), False),  # visitor_id and first event time
        StructField("visitor_id", StringType(), False),
        StructField("customer_id", StringType(), True),  # known once the visitor logs in
        StructField("session_start", TimestampType(), False),  # first event
        StructField("session_end", TimestampType(), False),  # last event (not last + gap)
        StructField("duration_seconds", LongType(), False),
        StructField("event_count", LongType(), False),
        StructField("page_views", LongType(), False),  # events of type page_view
        StructField("converted", BooleanType(), False),  # the session holds a purchase
        StructField("entry_page", StringType(), True),  # page_url of the first event
        StructField("exit_page", StringType(), True),  # page_url of the last event
    ]
)

_GAP = re.compile(r"^\s*(\d+)\s+(second|minute|hour)s?\s*$", re.IGNORECASE)


def gap_interval(gap: str) -> Column:
    """``"30 minutes"`` -> the Spark interval ``INTERVAL 30 minutes`` (seconds, minutes or
    hours). Checked here so a typo fails with a clear message, not deep inside Spark."""
    match = _GAP.match(gap) if isinstance(gap, str) else None
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"gap {gap!r} is not a positive duration: write it like '30 minutes', '45 seconds' "
            "or '1 hour'"
        )
    return F.expr(f"INTERVAL {int(match.group(1))} {match.group(2).upper()}")


def _require(df: DataFrame, names: tuple[str, ...], what: str) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise ValueError(
            f"{what} needs the column(s) {', '.join(map(repr, missing))}; the DataFrame has "
            f"{', '.join(df.columns)}. Pass web events (validation.validated(spark, "
            f"{EVENTS_DATASET!r}))."
        )


def distinct_events(events: DataFrame) -> DataFrame:
    """One row per ``event_id``: a re-delivered event is the same event, and counting it twice
    would inflate a session's event count (never its boundaries)."""
    _require(events, (EVENT_ID,), "distinct_events")
    return events.dropDuplicates([EVENT_ID])


def sessionize(gap: str = SESSION_GAP) -> Callable[[DataFrame], DataFrame]:
    """A transform tagging each event with its session, by window functions.

    Per visitor, in event-time order (``event_id`` breaks ties, so reruns agree): an event
    opens a new session when it is the visitor's first or comes more than ``gap`` after the
    previous event; the running sum of those flags numbers the sessions. Adds
    ``is_new_session``, ``session_number`` (1, 2, ... per visitor), ``session_start`` and
    ``session_id`` (``visitor_id`` + ``session_start``: the same on every run).

    Rows arrive in any order: only ``event_ts`` orders them, never the file.

    >>> events_df.transform(sessionize("30 minutes"))  # doctest: +SKIP
    """
    interval = gap_interval(gap)

    def transform(events: DataFrame) -> DataFrame:
        _require(events, (VISITOR, EVENT_TS, EVENT_ID), "sessionize")
        in_time = Window.partitionBy(VISITOR).orderBy(EVENT_TS, EVENT_ID)
        previous_ts = F.lag(EVENT_TS).over(in_time)
        so_far = in_time.rowsBetween(Window.unboundedPreceding, Window.currentRow)
        per_session = Window.partitionBy(VISITOR, "session_number")
        return (
            events.withColumn(
                "is_new_session",
                previous_ts.isNull() | (F.col(EVENT_TS) > previous_ts + interval),
            )
            .withColumn("session_number", F.sum(F.col("is_new_session").cast("long")).over(so_far))
            .withColumn("session_start", F.min(EVENT_TS).over(per_session))
            .withColumn(
                "session_id",
                F.concat_ws(
                    "-",
                    F.col(VISITOR),
                    F.date_format("session_start", "yyyyMMdd'T'HHmmss.SSSSSS"),
                ),
            )
        )

    return transform


def summarize_sessions(sessionized: DataFrame) -> DataFrame:
    """One row per session (:data:`WEB_SESSIONS_SCHEMA`) from :func:`sessionize`'s output.

    >>> sessionized_df.transform(summarize_sessions)  # doctest: +SKIP
    """
    _require(
        sessionized,
        ("session_id", "session_start", "customer_id", "event_type", "page_url"),
        "summarize_sessions",
    )
    in_order = F.struct(EVENT_TS, EVENT_ID)  # the first and last event, ties broken by id
    summary = sessionized.groupBy("session_id", VISITOR).agg(
        F.max("customer_id").alias("customer_id"),
        F.min(EVENT_TS).alias("session_start"),
        F.max(EVENT_TS).alias("session_end"),
        F.count(F.lit(1)).alias("event_count"),
        F.count(F.when(F.col("event_type") == "page_view", True)).alias("page_views"),
        F.coalesce(F.max(F.col("event_type") == "purchase"), F.lit(False)).alias("converted"),
        F.min_by("page_url", in_order).alias("entry_page"),
        F.max_by("page_url", in_order).alias("exit_page"),
    )
    duration = F.unix_seconds(F.col("session_end")) - F.unix_seconds(F.col("session_start"))
    return summary.withColumn("duration_seconds", duration).select(
        *(F.col(f.name).cast(f.dataType) for f in WEB_SESSIONS_SCHEMA)
    )


def sessions_from_session_window(gap: str = SESSION_GAP) -> Callable[[DataFrame], DataFrame]:
    """A transform: events -> one row per session (:data:`SESSION_SHAPE`), by ``groupBy``
    on Spark's ``session_window``.

    ``session_window(event_ts, gap)`` gives each event the window ``[event_ts, event_ts +
    gap)`` and merges windows that overlap or touch, so the window ends ``gap`` after the
    session's last event: ``session_end`` here is ``window.end - gap``, the last event.

    >>> events_df.transform(sessions_from_session_window("30 minutes"))  # doctest: +SKIP
    """
    interval = gap_interval(gap)

    def transform(events: DataFrame) -> DataFrame:
        _require(events, (VISITOR, EVENT_TS), "sessions_from_session_window")
        return (
            events.groupBy(VISITOR, F.session_window(EVENT_TS, gap).alias("window"))
            .agg(F.count(F.lit(1)).alias("event_count"))
            .select(
                VISITOR,
                F.col("window.start").alias("session_start"),
                (F.col("window.end") - interval).alias("session_end"),
                "event_count",
            )
        )

    return transform


def check_methods_agree(window_sessions: DataFrame, session_window_sessions: DataFrame) -> None:
    """Assert both methods found the same sessions: visitor, start, end and event count."""
    from pyspark.testing import assertDataFrameEqual

    try:
        assertDataFrameEqual(
            window_sessions.select(*SESSION_SHAPE), session_window_sessions.select(*SESSION_SHAPE)
        )
    except AssertionError as exc:
        raise AssertionError(
            "The window-function sessions differ from session_window's. Order each visitor's "
            "events by event_ts (not file order), compare each event with the PREVIOUS one "
            "(lag), start a session only when the gap is MORE than 30 minutes, and number "
            "sessions with a running sum of the new-session flags.\n" + str(exc)
        ) from None


@dataclass(frozen=True)
class SessionFacts:
    """Sessions beside the manifest's count (see :func:`reconcile_with_facts`)."""

    expected_sessions: int  # the manifest's facts["sessions"]
    all_row_sessions: int  # sessionizing every row in the window, quarantined rows included
    quarantined_only: int  # of those, sessions without one valid event
    silver_sessions: int


def reconcile_with_facts(
    validated_events: DataFrame,
    silver_sessions: DataFrame,
    facts: Mapping,
    *,
    gap: str = SESSION_GAP,
    window_end: date = date(2026, 6, 30),
) -> SessionFacts:
    """Compare ``silver_sessions`` (built from valid rows) with ``facts["sessions"]``.

    The generator counts sessions over every row dated up to ``window_end`` (its
    ``session_rule``), quarantined rows included, and a duplicate adds no session. So: the same
    rule over every distinct row in the window must give exactly the facts' count; and the
    Silver count must equal it minus the sessions whose every row was quarantined (a removed
    event inside a session cannot split it when events within a session are close).

    ``validated_events``: ``validation.validated(spark, "web.events")``, valid rows or not.
    """
    _require(validated_events, (VISITOR, EVENT_TS, EVENT_ID, "_is_valid"), "reconcile")
    first_day_after = (window_end + timedelta(days=1)).isoformat()
    in_window = validated_events.where(F.col(EVENT_TS) < F.to_timestamp(F.lit(first_day_after)))
    per_session = (
        in_window.transform(distinct_events)
        .transform(sessionize(gap))
        .groupBy("session_id")
        .agg(F.max(F.col("_is_valid").cast("int")).alias("has_valid"))
        .agg(F.count(F.lit(1)).alias("all"), F.sum(1 - F.col("has_valid")).alias("lost"))
        .first()
    )
    result = SessionFacts(
        expected_sessions=int(facts["sessions"]),
        all_row_sessions=int(per_session["all"]),
        quarantined_only=int(per_session["lost"] or 0),
        silver_sessions=silver_sessions.count(),
    )
    assert result.all_row_sessions == result.expected_sessions, (
        f"Sessionizing every distinct row dated up to {window_end} gives "
        f"{result.all_row_sessions} sessions; the manifest counts {result.expected_sessions} "
        f"({facts.get('session_rule', 'a new session after more than the gap')}). Check the gap "
        "rule: more than 30 minutes since the visitor's previous event, by event_ts."
    )
    kept = result.expected_sessions - result.quarantined_only
    assert result.silver_sessions == kept, (
        f"The sessions table has {result.silver_sessions} sessions; expected {kept}: the "
        f"manifest's {result.expected_sessions} minus {result.quarantined_only} whose every "
        "event was quarantined. Sessionize the valid rows, one row per event_id."
    )
    return result


def build_web_sessions(spark: SparkSession, table: str = WEB_SESSIONS) -> str:
    """The canonical ``silver.web_sessions`` from Bronze (``bronze.web_events`` must exist):
    valid, distinct events, sessionized and summarized, overwriting the table (a session's
    events can arrive in any batch, so sessions are recomputed, not appended). What a later
    lesson calls; the sessionization lesson builds the same table step by step."""
    from lakehouse.silver import validation

    events = (
        validation.validated(spark, EVENTS_DATASET)
        .where("_is_valid")
        .drop("_is_valid", "_validation_errors")
        .transform(distinct_events)
    )
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    (
        events.transform(sessionize())
        .transform(summarize_sessions)
        .write.format("delta")
        .mode("overwrite")
        .saveAsTable(table)
    )
    return table
