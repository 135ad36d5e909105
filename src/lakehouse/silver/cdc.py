"""Silver: apply a change-data-capture feed to a Delta table, batch by batch, in sequence order.

The support system sends every INSERT, UPDATE and DELETE of a ticket with a per-ticket sequence
number ``_seq``; changes arrive re-delivered and out of order. ``silver.support_tickets`` holds the
latest state of every ticket (soft-deleted ones included) and the ``_seq`` that produced it, so a
change is applied only when it is newer than the one already applied.

Example::

    from lakehouse.silver import cdc

    for batch_id in ["cdc_001", "cdc_002"]:
        cdc.apply_changes(spark, cdc.read_valid_changes(spark, batch_id))
    cdc.check_matches_replay(spark.table("silver.support_tickets"), cdc.read_valid_changes(spark))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

CDC_DATASET = "support.tickets_cdc"
SUPPORT_TICKETS = "silver.support_tickets"
KEY = "ticket_id"
SEQUENCE = "_seq"
OPERATION = "_op"
OPERATIONS = ("INSERT", "UPDATE", "DELETE")
DELETED = "deleted"  # the state a soft-deleted ticket counts under in check_against_facts

# The ticket's image as every change row carries it (a DELETE row carries the last image).
IMAGE_COLUMNS = (
    "customer_id",
    "subject",
    "status",
    "priority",
    "channel",
    "created_at",
    "updated_at",
)

SUPPORT_TICKETS_SCHEMA = StructType(
    [
        StructField("ticket_id", StringType(), False),
        StructField("customer_id", StringType(), True),
        StructField("subject", StringType(), True),
        StructField("status", StringType(), True),
        StructField("priority", StringType(), True),
        StructField("channel", StringType(), True),
        StructField("created_at", TimestampType(), True),
        StructField("updated_at", TimestampType(), True),
        StructField("is_deleted", BooleanType(), False),
        StructField("deleted_at", TimestampType(), True),
        # the change the row reflects: a change is applied only when its _seq is higher
        StructField("_seq", LongType(), False),
        StructField("_commit_ts", TimestampType(), True),
    ]
)
SUPPORT_TICKETS_COLUMNS = tuple(SUPPORT_TICKETS_SCHEMA.fieldNames())
CHANGE_COLUMNS = (KEY, OPERATION, SEQUENCE, "_commit_ts", *IMAGE_COLUMNS)


def _require_change_columns(changes: DataFrame, what: str = "changes") -> None:
    missing = [c for c in CHANGE_COLUMNS if c not in changes.columns]
    if missing:
        raise ValueError(
            f"{what} lacks the change-feed column(s) {', '.join(map(repr, missing))}: pass rows "
            f"of validation.validated(spark, {CDC_DATASET!r}) (columns {', '.join(CHANGE_COLUMNS)})"
        )


def latest_changes(changes: DataFrame) -> DataFrame:
    """Keep one change per ticket: the one with the highest ``_seq``.

    A MERGE source must hold at most one row per key (Delta rejects a target row matched by
    several source rows), and only a ticket's newest change of a batch matters. Re-delivered
    duplicates are the same change, so which copy survives makes no difference.

    >>> batch_df.transform(latest_changes)  # doctest: +SKIP
    """
    _require_change_columns(changes)
    newest_first = Window.partitionBy(KEY).orderBy(
        F.col(SEQUENCE).desc(), F.col("_commit_ts").desc()
    )
    return (
        changes.withColumn("_change_rank", F.row_number().over(newest_first))
        .where(F.col("_change_rank") == 1)
        .drop("_change_rank")
    )


def to_ticket_rows(changes: DataFrame) -> DataFrame:
    """Shape change rows as rows of ``silver.support_tickets``: the image, a soft-delete flag,
    the deletion time (the DELETE's commit time) and the change's ``_seq`` and ``_commit_ts``.

    >>> latest_df.transform(to_ticket_rows)  # doctest: +SKIP
    """
    _require_change_columns(changes)
    is_delete = F.col(OPERATION) == F.lit("DELETE")
    return changes.select(
        KEY,
        *IMAGE_COLUMNS,
        is_delete.alias("is_deleted"),
        F.when(is_delete, F.col("_commit_ts")).alias("deleted_at"),
        SEQUENCE,
        "_commit_ts",
    )


def apply_changes(
    spark: SparkSession,
    changes: DataFrame,
    table: str = SUPPORT_TICKETS,
    *,
    sequence_guard: bool = True,
) -> None:
    """Apply one batch of changes to ``table``: the newest change per ticket updates the ticket
    when its ``_seq`` is higher than the applied one, or inserts a ticket not seen yet. The
    first batch ever is the table's initial load: a plain write, as there is nothing to merge
    into. In Databricks SQL the merge is::

        MERGE INTO silver.support_tickets t USING updates s ON t.ticket_id = s.ticket_id
        WHEN MATCHED AND s._seq > t._seq THEN UPDATE SET *
        WHEN NOT MATCHED THEN INSERT *

    ``sequence_guard=False`` drops the ``s._seq > t._seq`` condition: a late, older change
    then overwrites a newer state. It exists to show that failure (tests and the lesson).

    >>> apply_changes(spark, valid_df.where("_batch_id = 'cdc_001'"))  # doctest: +SKIP
    """
    from lakehouse import DeltaTable

    updates = changes.transform(latest_changes).transform(to_ticket_rows)
    if not spark.catalog.tableExists(table):
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.rsplit('.', 1)[0]}")
        typed = updates.select(
            *(F.col(f.name).cast(f.dataType).alias(f.name) for f in SUPPORT_TICKETS_SCHEMA)
        )
        typed.write.format("delta").saveAsTable(table)
        return
    guard = f"s.{SEQUENCE} > t.{SEQUENCE}" if sequence_guard else None
    (
        DeltaTable.forName(spark, table)
        .alias("t")
        .merge(updates.alias("s"), f"t.{KEY} = s.{KEY}")
        .whenMatchedUpdateAll(condition=guard)
        .whenNotMatchedInsertAll()
        .execute()
    )


def batch_ids(changes: DataFrame, batch_column: str = "_batch_id") -> list[str]:
    """The batches of ``changes`` in the order they were delivered (batch ids sort that way)."""
    if batch_column not in changes.columns:
        raise ValueError(
            f"changes has no {batch_column!r} column: pass Bronze-lineage rows or name the column"
        )
    return [r[0] for r in changes.select(batch_column).distinct().orderBy(batch_column).collect()]


def final_state(changes: DataFrame) -> DataFrame:
    """The state a replay of the whole feed in ``_seq`` order ends in: per ticket, the change
    with the highest ``_seq`` over every batch. An aggregate (``max_by``), computed apart from
    the batch-by-batch MERGE it checks.

    >>> final_state(valid_changes_df)  # doctest: +SKIP
    """
    _require_change_columns(changes)
    last = F.max_by(F.struct(*CHANGE_COLUMNS), F.col(SEQUENCE))
    return changes.groupBy(KEY).agg(last.alias("_last")).select("_last.*").transform(to_ticket_rows)


def replay(rows: Iterable[Mapping]) -> dict[str, dict]:
    """A pure-Python replay: apply every change in ``_seq`` order, one at a time.

    Returns ticket_id -> the ticket's row of ``silver.support_tickets`` (as a dict).

    >>> replay([{"ticket_id": "T1", "_op": "INSERT", "_seq": 1, ...}])  # doctest: +SKIP
    """
    state: dict[str, dict] = {}
    for change in sorted(rows, key=lambda r: (r[KEY], r[SEQUENCE])):
        if change[OPERATION] not in OPERATIONS:
            raise ValueError(f"unknown _op {change[OPERATION]!r}: expected one of {OPERATIONS}")
        is_delete = change[OPERATION] == "DELETE"
        state[change[KEY]] = {
            KEY: change[KEY],
            **{c: change[c] for c in IMAGE_COLUMNS},
            "is_deleted": is_delete,
            "deleted_at": change["_commit_ts"] if is_delete else None,
            SEQUENCE: change[SEQUENCE],
            "_commit_ts": change["_commit_ts"],
        }
    return state


def check_matches_replay(tickets: DataFrame, changes: DataFrame) -> None:
    """Assert that ``tickets`` equals :func:`final_state` of ``changes``, row for row."""
    from pyspark.testing import assertDataFrameEqual

    expected = final_state(changes)
    try:
        assertDataFrameEqual(tickets.select(*SUPPORT_TICKETS_COLUMNS), expected)
    except AssertionError as exc:
        raise AssertionError(
            "silver.support_tickets differs from a replay of the whole feed in _seq order. "
            "Keep the newest change per ticket within each batch (highest _seq), apply the "
            "batches in order, and update a ticket only when s._seq > t._seq.\n" + str(exc)
        ) from None


@dataclass(frozen=True)
class FactsComparison:
    """What ``silver.support_tickets`` says beside the manifest's facts (see
    :func:`check_against_facts`)."""

    tickets: int
    deleted_tickets: int
    final_status: dict[str, int]
    stale_tickets: list[str]  # tickets whose newest change was quarantined
    missing_tickets: int  # tickets with every change quarantined


def quarantined_changes(keys: Iterable[str]) -> dict[str, int]:
    """``"TK0000045:2"`` manifest keys -> ticket_id: its highest quarantined ``_seq``."""
    newest: dict[str, int] = {}
    for key in keys:
        ticket, _, seq = key.rpartition(":")
        if not ticket or not seq.isdigit():
            raise ValueError(f"manifest key {key!r} is not 'ticket_id:_seq'")
        newest[ticket] = max(newest.get(ticket, 0), int(seq))
    return newest


def check_against_facts(
    tickets: DataFrame, facts: Mapping, quarantined_keys: Iterable[str]
) -> FactsComparison:
    """Compare ``tickets`` with the manifest's facts for the feed, honest about quarantine.

    The facts describe the feed with no change quarantined. A ticket whose newest change was
    quarantined (a "stale" ticket) shows an older state; a ticket with every change quarantined
    is missing. So: every ticket is either present or missing; per state (each status, plus
    ``deleted``) the facts count at least the tickets that are not stale and at most that plus
    the stale and missing ones; and across states the difference adds up to exactly those.
    """
    rows = tickets.select(KEY, "status", "is_deleted", SEQUENCE).collect()
    newest_quarantined = quarantined_changes(quarantined_keys)
    stale = sorted(r[KEY] for r in rows if newest_quarantined.get(r[KEY], 0) > r[SEQUENCE])
    present = {r[KEY] for r in rows}
    missing = int(facts["tickets"]) - len(rows)
    unexplained = len(set(newest_quarantined) - present)
    assert 0 <= missing <= unexplained, (
        f"silver.support_tickets has {len(rows)} tickets; the feed has {facts['tickets']}, and "
        f"only {unexplained} ticket(s) could be missing because all their changes were "
        "quarantined. Insert a ticket the first time any of its changes arrives "
        "(whenNotMatchedInsert), and never drop a ticket on DELETE (soft-delete it)."
    )
    up_to_date = [r for r in rows if r[KEY] not in stale]
    state = Counter(DELETED if r["is_deleted"] else r["status"] for r in up_to_date)
    expected = Counter({**facts["final_status"], DELETED: facts["deleted_tickets"]})
    leeway = len(stale) + missing
    for name in sorted(set(state) | set(expected)):
        assert state[name] <= expected[name] <= state[name] + leeway, (
            f"{state[name]} up-to-date ticket(s) end as {name!r}; the feed ends with "
            f"{expected[name]} and at most {leeway} ticket(s) can differ (a quarantined newest "
            "change). Apply the newest change per ticket (highest _seq), never an older one."
        )
    assert sum(expected.values()) - sum(state.values()) == leeway, (
        "The states of the tickets do not add up to the feed's ticket count: each ticket "
        "must be exactly one row, deleted or in one status."
    )
    all_states = Counter(DELETED if r["is_deleted"] else r["status"] for r in rows)
    return FactsComparison(
        tickets=len(rows),
        deleted_tickets=all_states.pop(DELETED, 0),
        final_status=dict(sorted(all_states.items())),
        stale_tickets=stale,
        missing_tickets=missing,
    )


def apply_feed(
    spark: SparkSession,
    changes: DataFrame,
    table: str = SUPPORT_TICKETS,
    *,
    batch_column: str = "_batch_id",
    sequence_guard: bool = True,
) -> list[str]:
    """Apply every batch of ``changes`` to ``table`` in delivery order (one MERGE per batch);
    returns the batch ids applied."""
    applied = batch_ids(changes, batch_column)
    for batch_id in applied:
        batch = changes.where(F.col(batch_column) == batch_id)
        apply_changes(spark, batch, table, sequence_guard=sequence_guard)
    return applied


def read_valid_changes(spark: SparkSession, batch_id: str | None = None) -> DataFrame:
    """The feed's valid change rows (``validation.validated``), every batch or one batch: a
    fresh read of Bronze each call, as each pipeline run reads its own batch.

    >>> apply_changes(spark, read_valid_changes(spark, "cdc_002"))  # doctest: +SKIP
    """
    from lakehouse.silver import validation

    changes = validation.validated(spark, CDC_DATASET).where(F.col("_is_valid"))
    return changes if batch_id is None else changes.where(F.col("_batch_id") == batch_id)


def build_support_tickets(spark: SparkSession, table: str = SUPPORT_TICKETS) -> DataFrame:
    """The canonical table, from Bronze: apply every batch of valid changes in delivery
    order. Idempotent: a second call changes no row. Needs ``bronze.support_tickets_cdc``."""
    for batch_id in batch_ids(read_valid_changes(spark)):
        apply_changes(spark, read_valid_changes(spark, batch_id), table)
    return spark.table(table)
