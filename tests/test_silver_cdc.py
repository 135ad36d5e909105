"""Applying the support-ticket CDC feed: newest change per ticket, the sequence guard, soft
deletes, idempotent re-runs, and checks that catch a merge without the guard or in file order."""

from __future__ import annotations

from datetime import datetime

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.silver import cdc

CHANGES_DDL = (
    "ticket_id string, _op string, _seq long, _commit_ts timestamp, customer_id string, "
    "subject string, status string, priority string, channel string, created_at timestamp, "
    "updated_at timestamp, _batch_id string, _pos int"
)
CREATED = datetime(2026, 5, 1, 9, 0)


def change(ticket, op, seq, status, batch, pos, *, day=1, customer="C1", priority="low"):
    when = datetime(2026, 5, day, 10, seq)
    return (
        ticket,
        op,
        seq,
        when,
        customer,
        f"subject of {ticket}",
        status,
        priority,
        "email",
        CREATED,
        when,
        batch,
        pos,
    )


# _pos is the delivery order across both files. Ticket by ticket:
# T1: seq 3 arrives in cdc_001 before seq 2; seq 2 is re-delivered in cdc_002 (late, older).
# T2: inserted in cdc_001, deleted in cdc_002 (the DELETE carries the last image).
# T3: its INSERT was quarantined: it first appears through an UPDATE, with a null customer_id.
# T4: one change only, delivered twice in the same batch.
# T5: deleted and re-created later (a newer INSERT after a DELETE).
FEED = [
    change("T1", "INSERT", 1, "open", "cdc_001", 1),
    change("T1", "UPDATE", 3, "resolved", "cdc_001", 2),
    change("T1", "UPDATE", 2, "in_progress", "cdc_001", 3),
    change("T2", "INSERT", 1, "open", "cdc_001", 4),
    change("T4", "INSERT", 1, "open", "cdc_001", 5),
    change("T4", "INSERT", 1, "open", "cdc_001", 6),
    change("T5", "INSERT", 1, "open", "cdc_001", 7),
    change("T5", "DELETE", 2, "open", "cdc_001", 8),
    change("T1", "UPDATE", 2, "in_progress", "cdc_002", 9),
    change("T2", "DELETE", 2, "open", "cdc_002", 10, priority="high"),
    change("T3", "UPDATE", 2, "in_progress", "cdc_002", 11, customer=None),
    change("T5", "INSERT", 3, "open", "cdc_002", 12, priority="urgent"),
]


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "silver_cdc_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


@pytest.fixture(scope="module")
def feed(spark):
    return spark.createDataFrame(FEED, CHANGES_DDL)


@pytest.fixture(scope="module")
def applied(spark, feed):
    """silver.tickets after the feed was applied batch by batch, with the guard."""
    cdc.apply_feed(spark, feed, "silver.tickets")
    return spark.table("silver.tickets")


def expected_rows(spark, rows):
    state = cdc.replay(dict(zip(CHANGES_DDL_NAMES, r)) for r in rows)
    return spark.createDataFrame(
        [tuple(s[c] for c in cdc.SUPPORT_TICKETS_COLUMNS) for s in state.values()],
        cdc.SUPPORT_TICKETS_SCHEMA,
    )


CHANGES_DDL_NAMES = [part.strip().split(" ")[0] for part in CHANGES_DDL.split(",")]


# ------------------------------------------------------------------------------------------------
# Transformations
# ------------------------------------------------------------------------------------------------
def test_latest_changes_keeps_the_highest_seq_per_ticket(feed):
    latest = feed.where("_batch_id = 'cdc_001'").transform(cdc.latest_changes)
    got = {r.ticket_id: (r._seq, r.status) for r in latest.collect()}
    # T1's seq 3 wins although seq 2 was delivered after it; T4's duplicate collapses to one row
    assert got == {"T1": (3, "resolved"), "T2": (1, "open"), "T4": (1, "open"), "T5": (2, "open")}


def test_to_ticket_rows_soft_deletes_with_the_commit_time(feed):
    rows = feed.where("ticket_id = 'T2'").transform(cdc.to_ticket_rows).orderBy("_seq").collect()
    assert [(r.is_deleted, r.deleted_at) for r in rows] == [
        (False, None),
        (True, datetime(2026, 5, 1, 10, 2)),
    ]
    # the DELETE keeps the ticket's last image
    assert rows[1].priority == "high" and rows[1].status == "open"


def test_missing_change_columns_are_named(spark):
    df = spark.createDataFrame([("T1", 1)], "ticket_id string, _seq long")
    with pytest.raises(ValueError, match=r"'_op'.*validation\.validated"):
        df.transform(cdc.latest_changes)
    with pytest.raises(ValueError, match="'_batch_id'"):
        cdc.batch_ids(df)


def test_replay_rejects_an_unknown_operation():
    row = dict(zip(CHANGES_DDL_NAMES, FEED[0]), _op="UPSERT")
    with pytest.raises(ValueError, match="unknown _op 'UPSERT'"):
        cdc.replay([row])


# ------------------------------------------------------------------------------------------------
# Applying the feed
# ------------------------------------------------------------------------------------------------
def test_feed_applied_batch_by_batch_equals_a_replay_in_seq_order(spark, feed, applied):
    assertDataFrameEqual(applied, expected_rows(spark, FEED))
    assertDataFrameEqual(applied, cdc.final_state(feed))
    cdc.check_matches_replay(applied, feed)
    by_ticket = {r.ticket_id: r for r in applied.collect()}
    assert (by_ticket["T1"]._seq, by_ticket["T1"].status) == (3, "resolved")
    assert by_ticket["T2"].is_deleted and by_ticket["T2"].priority == "high"
    assert by_ticket["T3"].customer_id is None and not by_ticket["T3"].is_deleted
    assert not by_ticket["T5"].is_deleted and by_ticket["T5"].deleted_at is None


def test_re_running_the_feed_changes_nothing(spark, feed, applied):
    before = applied.collect()
    cdc.apply_feed(spark, feed, "silver.tickets")
    # an old batch delivered again after a newer one is ignored too
    cdc.apply_changes(spark, feed.where("_batch_id = 'cdc_001'"), "silver.tickets")
    assertDataFrameEqual(spark.table("silver.tickets"), before)


def test_merge_without_the_sequence_guard_is_caught(spark, feed):
    cdc.apply_feed(spark, feed, "silver.tickets_unguarded", sequence_guard=False)
    wrong = spark.table("silver.tickets_unguarded")
    # cdc_002's late seq 2 overwrote T1's seq 3
    assert wrong.where("ticket_id = 'T1'").first()._seq == 2
    with pytest.raises(AssertionError, match=r"s\._seq > t\._seq"):
        cdc.check_matches_replay(wrong, feed)


def test_changes_applied_in_file_order_are_caught(spark, feed):
    # the last delivered change per ticket, instead of the highest _seq
    last_delivered = F.max_by(F.struct(*cdc.CHANGE_COLUMNS), F.col("_pos"))
    wrong = (
        feed.groupBy("ticket_id")
        .agg(last_delivered.alias("c"))
        .select("c.*")
        .transform(cdc.to_ticket_rows)
    )
    with pytest.raises(AssertionError, match="newest change per ticket"):
        cdc.check_matches_replay(wrong, feed)


# ------------------------------------------------------------------------------------------------
# The manifest's facts, with quarantined changes accounted for
# ------------------------------------------------------------------------------------------------
# The feed above without defects: T1 resolved, T2 deleted, T3 in_progress, T4 open, T5 open, and
# T6, whose only change (an INSERT) was quarantined.
FACTS = {
    "tickets": 6,
    "deleted_tickets": 1,
    "final_status": {"in_progress": 1, "open": 3, "resolved": 1},
}


def test_facts_match_when_quarantine_is_accounted_for(applied):
    result = cdc.check_against_facts(applied, FACTS, ["T3:1", "T6:1"])
    assert result.tickets == 5 and result.deleted_tickets == 1
    assert result.final_status == {"in_progress": 1, "open": 2, "resolved": 1}
    assert result.stale_tickets == [] and result.missing_tickets == 1


def test_a_quarantined_newest_change_is_a_stale_ticket(applied):
    # had T1's seq 4 (closed) not been quarantined, the feed would end with T1 closed
    facts = {**FACTS, "final_status": {"closed": 1, "in_progress": 1, "open": 3}}
    result = cdc.check_against_facts(applied, facts, ["T3:1", "T6:1", "T1:4"])
    assert result.stale_tickets == ["T1"]


def test_facts_catch_a_wrong_state(spark, feed):
    # T2's DELETE lost: no quarantined change explains it
    facts = {**FACTS, "tickets": 5, "final_status": {"in_progress": 1, "open": 2, "resolved": 1}}
    wrong = cdc.final_state(feed).withColumn("is_deleted", F.lit(False))
    with pytest.raises(AssertionError, match="'deleted'"):
        cdc.check_against_facts(wrong, facts, ["T3:1"])
    cdc.check_against_facts(cdc.final_state(feed), facts, ["T3:1"])


def test_facts_catch_an_unexplained_missing_ticket(applied):
    with pytest.raises(AssertionError, match="only 0 ticket"):
        cdc.check_against_facts(applied, FACTS, [])


def test_a_malformed_manifest_key_is_named():
    with pytest.raises(ValueError, match="'T1-1'"):
        cdc.quarantined_changes(["T1-1"])
