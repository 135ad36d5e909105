"""Sessionization: window functions and session_window agree on explicit edge rows (a single
event, a gap of exactly 30 minutes and of 30 minutes + 1 s, out-of-order input, duplicates,
null customer ids), and the agreement check catches two classic mistakes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.silver import sessions

EVENTS_DDL = (
    "event_id string, visitor_id string, customer_id string, event_ts timestamp, "
    "event_type string, page_url string, _file_position int, _is_valid boolean"
)
T0 = datetime(2026, 5, 4, 10, 0, 0)


def at(minutes=0, seconds=0):
    return T0 + timedelta(minutes=minutes, seconds=seconds)


# _file_position: the order the rows sit in the file (not the event-time order).
EVENTS = [
    # A: 0, +30 min exactly (same session), then +30 min 1 s (a new session)
    ("E01", "A", None, at(0), "page_view", "/home", 1, True),
    ("E02", "A", None, at(30), "product_view", "/p/1", 2, True),
    ("E03", "A", "C7", at(60, 1), "page_view", "/c/shoes", 3, True),
    # B: a single event, no customer id
    ("E04", "B", None, at(5), "page_view", "/home", 4, True),
    # C: rows delivered out of order; logs in mid-session; buys; E07 delivered twice
    ("E07", "C", "C9", at(20), "purchase", "/checkout/confirmation", 5, True),
    ("E05", "C", None, at(0), "page_view", "/home", 6, True),
    ("E06", "C", "C9", at(10), "checkout", "/checkout", 7, True),
    ("E07", "C", "C9", at(20), "purchase", "/checkout/confirmation", 8, True),
    # D: events 20 minutes apart, 60 minutes from first to last: one session
    ("E08", "D", None, at(0), "page_view", "/home", 9, True),
    ("E09", "D", None, at(20), "page_view", "/c/bags", 10, True),
    ("E10", "D", None, at(40), "page_view", "/c/hats", 11, True),
    ("E11", "D", None, at(60), "search", "/search?q=hat", 12, True),
    # G: 25 minutes apart, delivered 0, 50, 25: in file order the 50-minute jump looks like a gap
    ("E15", "G", None, at(0), "page_view", "/home", 16, True),
    ("E17", "G", None, at(50), "page_view", "/c/bags", 17, True),
    ("E16", "G", None, at(25), "page_view", "/c/hats", 18, True),
]


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "sessions_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


@pytest.fixture(scope="module")
def events(spark):
    return spark.createDataFrame(EVENTS, EVENTS_DDL).transform(sessions.distinct_events)


@pytest.fixture(scope="module")
def web_sessions(events):
    return events.transform(sessions.sessionize()).transform(sessions.summarize_sessions).cache()


def test_sessions_by_window_functions(spark, web_sessions):
    start = "20260504T100000.000000"
    rows = [
        # session_id, visitor, customer, start, end, seconds, events, page views, converted,
        # entry page, exit page
        (f"A-{start}", "A", None, at(0), at(30), 1800, 2, 1, False, "/home", "/p/1"),
        ("A-20260504T110001.000000", "A", "C7", at(60, 1), at(60, 1), 0, 1, 1, False)
        + ("/c/shoes", "/c/shoes"),
        ("B-20260504T100500.000000", "B", None, at(5), at(5), 0, 1, 1, False, "/home", "/home"),
        (f"C-{start}", "C", "C9", at(0), at(20), 1200, 3, 1, True)
        + ("/home", "/checkout/confirmation"),
        (f"D-{start}", "D", None, at(0), at(60), 3600, 4, 3, False, "/home", "/search?q=hat"),
        (f"G-{start}", "G", None, at(0), at(50), 3000, 3, 3, False, "/home", "/c/bags"),
    ]
    expected = spark.createDataFrame(rows, sessions.WEB_SESSIONS_SCHEMA)
    assertDataFrameEqual(web_sessions, expected)


def test_session_window_agrees_at_the_boundaries(spark, events, web_sessions):
    by_window = events.transform(sessions.sessions_from_session_window("30 minutes"))
    sessions.check_methods_agree(web_sessions, by_window)
    a = by_window.where("visitor_id = 'A'").orderBy("session_start").collect()
    # exactly 30 minutes: one session; 30 minutes and 1 second: a second one
    assert [(r.session_start, r.session_end, r.event_count) for r in a] == [
        (at(0), at(30), 2),
        (at(60, 1), at(60, 1), 1),
    ]


def test_sessionize_numbers_sessions_per_visitor(events):
    tagged = events.transform(sessions.sessionize()).where("visitor_id = 'A'")
    got = {r.event_id: (r.is_new_session, r.session_number) for r in tagged.collect()}
    assert got == {"E01": (True, 1), "E02": (False, 1), "E03": (True, 2)}


def test_duplicates_inflate_counts_unless_removed(spark):
    raw = spark.createDataFrame(EVENTS, EVENTS_DDL).where("visitor_id = 'C'")
    kept = raw.transform(sessions.distinct_events).transform(sessions.sessionize())
    assert kept.transform(sessions.summarize_sessions).first().event_count == 3
    doubled = raw.transform(sessions.sessionize()).transform(sessions.summarize_sessions)
    assert doubled.first().event_count == 4


def test_a_shorter_gap_splits_sessions(events):
    ten_minutes = events.transform(sessions.sessionize("10 minutes"))
    per_visitor = {
        r.visitor_id: r.n
        for r in ten_minutes.groupBy("visitor_id")
        .agg(F.countDistinct("session_id").alias("n"))
        .collect()
    }
    assert per_visitor == {"A": 3, "B": 1, "C": 1, "D": 4, "G": 3}


@pytest.mark.parametrize("gap", ["30", "thirty minutes", "0 minutes", "30 min", None])
def test_a_bad_gap_is_named(gap):
    with pytest.raises(ValueError, match="is not a positive duration"):
        sessions.sessionize(gap)


def test_missing_columns_are_named(spark):
    df = spark.createDataFrame([("V1",)], "visitor_id string")
    with pytest.raises(ValueError, match=r"'event_ts'.*validation\.validated"):
        df.transform(sessions.sessions_from_session_window())


# ------------------------------------------------------------------------------------------------
# Wrong implementations the agreement check must catch
# ------------------------------------------------------------------------------------------------
def _summary(tagged):
    return tagged.groupBy("visitor_id", "session_number").agg(
        F.min("event_ts").alias("session_start"),
        F.max("event_ts").alias("session_end"),
        F.count(F.lit(1)).alias("event_count"),
    )


def test_gap_measured_from_the_session_start_is_caught(events):
    # wrong: a new session once 30 minutes have passed since the visitor's FIRST event
    first = F.min("event_ts").over(Window.partitionBy("visitor_id"))
    wrong = events.withColumn(
        "session_number",
        F.floor((F.unix_seconds("event_ts") - F.unix_seconds(first)) / 1801).cast("long"),
    ).transform(_summary)
    by_window = events.transform(sessions.sessions_from_session_window())
    with pytest.raises(AssertionError, match="PREVIOUS one"):
        sessions.check_methods_agree(wrong, by_window)


def test_events_ordered_by_file_position_are_caught(events):
    # wrong: the previous event in FILE order, so G's 0, 50, 25 looks like a 50-minute gap
    in_file = Window.partitionBy("visitor_id").orderBy("_file_position")
    previous_ts = F.lag("event_ts").over(in_file)
    too_late = F.col("event_ts") > previous_ts + F.expr("INTERVAL 30 MINUTES")
    wrong = (
        events.withColumn("is_new_session", previous_ts.isNull() | too_late)
        .withColumn("session_number", F.sum(F.col("is_new_session").cast("long")).over(in_file))
        .transform(_summary)
    )
    by_window = events.transform(sessions.sessions_from_session_window())
    with pytest.raises(AssertionError, match="not file order"):
        sessions.check_methods_agree(wrong, by_window)


# ------------------------------------------------------------------------------------------------
# The manifest's count, with quarantined rows accounted for
# ------------------------------------------------------------------------------------------------
def test_reconcile_with_facts_counts_quarantined_only_sessions(spark, events, web_sessions):
    rows = EVENTS + [
        # E: its only event was quarantined (a null page_url): a session lost to quarantine
        ("E12", "E", None, at(0), "page_view", None, 13, False),
        # F: a future-dated event (a wrong device clock) is no session at all
        ("E13", "F", None, datetime(2027, 3, 1), "page_view", "/home", 14, False),
        # a quarantined event inside A's first session changes no count
        ("E14", "A", None, at(15), None, "/p/2", 19, False),
    ]
    validated = spark.createDataFrame(rows, EVENTS_DDL)
    result = sessions.reconcile_with_facts(validated, web_sessions, {"sessions": 7})
    assert (result.all_row_sessions, result.quarantined_only, result.silver_sessions) == (7, 1, 6)
    with pytest.raises(AssertionError, match="the manifest counts 8"):
        sessions.reconcile_with_facts(validated, web_sessions, {"sessions": 8})
    too_many = web_sessions.unionByName(web_sessions.limit(1))
    with pytest.raises(AssertionError, match="expected 6"):
        sessions.reconcile_with_facts(validated, too_many, {"sessions": 7})
