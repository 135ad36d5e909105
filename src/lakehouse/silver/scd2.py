"""Slowly changing dimension, Type 2: a history table with one row per version of a record
(``effective_start_date``, ``effective_end_date``, ``is_current``), maintained by one Delta
``MERGE`` per batch with the staged-union pattern.

Example::

    from lakehouse.silver import scd2

    scd2.apply_scd2(spark, customers_batch_df, "silver.customers_history",
                    key="customer_id", sequence_by="updated_at",
                    tracked=scd2.CUSTOMER_TRACKED_ATTRIBUTES)
    scd2.check_scd2(spark.table("silver.customers_history"), "customer_id")
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.silver.dedup import (
    DELIVERY_ORDER,
    create_table_like,
    latest_per_key,
    require_columns,
)

START = "effective_start_date"  # a timestamp: when this version became true (the source's time)
END = "effective_end_date"  # when the next version replaced it; null while current
CURRENT = "is_current"
HASH = "attribute_hash"  # sha2 of the tracked attributes: what a change is compared on
MERGE_KEY = "_merge_key"
HISTORY_COLUMNS = (HASH, START, END, CURRENT)

# Changes to these open a new version; every other column is carried along with the version.
# Address and segment are what analyses need "as of the order": sales by region and by segment.
CUSTOMER_TRACKED_ATTRIBUTES = ("street", "city", "state", "postal_code", "country", "segment")

# ASCII "unit separator" between values and "null" character for a null: neither is ever typed
# into a CRM field, so different value lists cannot produce the same string.
SEPARATOR = "\u001f"
NULL_MARKER = "\u0000"


def _tracked(columns: str | Sequence[str]) -> list[str]:
    names = [columns] if isinstance(columns, str) else list(columns)
    if not names:
        raise ValueError("tracked attributes must name at least one column")
    return names


def attribute_hash(columns: str | Sequence[str]) -> Column:
    """``sha2`` over the values of ``columns``, null-safe and unambiguous.

    ``concat_ws`` alone is ambiguous twice over: it skips nulls, so ``("a", null, "b")`` and
    ``("a", "b", null)`` both give ``"a|b"``; and a separator inside a value moves the
    boundary, so ``("a|b", "c")`` and ``("a", "b|c")`` both give ``"a|b|c"``. A null becomes
    :data:`NULL_MARKER` (so null differs from ``""``) and values are joined with
    :data:`SEPARATOR`, characters no CRM field holds.

    >>> df.withColumn("attribute_hash", attribute_hash(["city", "segment"]))  # doctest: +SKIP
    """
    values = [F.coalesce(F.col(c).cast("string"), F.lit(NULL_MARKER)) for c in _tracked(columns)]
    return F.sha2(F.concat_ws(SEPARATOR, *values), 256)


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be one column name, not {key!r}")
    return key


def versions_to_apply(
    current_df: DataFrame,
    batch_df: DataFrame,
    *,
    key: str,
    sequence_by: str,
    tracked: Sequence[str],
) -> DataFrame:
    """The versions a batch adds to a history whose current rows are ``current_df``.

    Builds the chain within the batch, so a key that changes several times in one batch gets
    every version: one row per key and ``sequence_by`` value (the later delivery wins a tie);
    only versions newer than the key's current row (a late, older record is ignored: it must not
    become current); a version is kept only if its tracked attributes differ from the version
    before it (the current row, or the batch's previous one), so a record re-sent unchanged adds
    nothing. Each kept version gets ``effective_start_date`` = its ``sequence_by``,
    ``effective_end_date`` = the next kept version's start (null for the last one) and
    ``is_current``; ``_has_current`` says whether the key already has a current row.
    """
    key = _check_key(key)
    tracked = _tracked(tracked)
    require_columns(batch_df, [key, sequence_by, *tracked], "batch")
    require_columns(current_df, [key, HASH, START], "history")
    ties = [c for c in DELIVERY_ORDER if c in batch_df.columns]
    versions = (
        batch_df.transform(latest_per_key([key, sequence_by], sequence_by, tie_breakers=ties))
        .withColumn(HASH, attribute_hash(tracked))
        .withColumn(START, F.col(sequence_by))
    )
    current = current_df.select(key, F.col(START).alias("_current_start"), F.col(HASH))
    newer = (
        versions.join(current.drop(HASH), key, "left")
        .where(F.col("_current_start").isNull() | (F.col(START) > F.col("_current_start")))
        .withColumn("_has_current", F.col("_current_start").isNotNull())
        .drop("_current_start")
    )
    # The current row anchors the chain: the first new version is compared with it.
    anchors = current.select(
        key, F.col("_current_start").alias(START), HASH, F.lit(True).alias("_anchor")
    )
    by_time = Window.partitionBy(key).orderBy(START)
    changed = (
        newer.withColumn("_anchor", F.lit(False))
        .unionByName(anchors, allowMissingColumns=True)
        .withColumn("_previous_hash", F.lag(HASH).over(by_time))
        .where(~F.col("_anchor") & ~F.col(HASH).eqNullSafe(F.col("_previous_hash")))
        .drop("_anchor", "_previous_hash")
    )
    return (
        changed.withColumn(END, F.lead(START).over(by_time))
        .withColumn(CURRENT, F.col(END).isNull())
        .withColumn("_first", F.row_number().over(by_time) == 1)
    )


def staged_updates(versions: DataFrame, *, key: str) -> DataFrame:
    """The merge source of the staged-union pattern.

    Each key that has a current row and new versions appears once with ``_merge_key`` = its key
    (it matches the current row, which the merge closes at the first new version's start), and
    every new version appears with a null ``_merge_key`` (it matches nothing, so it is inserted).
    """
    key = _check_key(key)
    history_columns = [c for c in versions.columns if c not in ("_has_current", "_first")]
    closing = versions.where("_has_current AND _first").select(
        F.col(key).alias(MERGE_KEY), *history_columns
    )
    no_key = F.lit(None).cast(versions.schema[key].dataType)
    inserts = versions.select(no_key.alias(MERGE_KEY), *history_columns)
    return closing.unionByName(inserts)


def history_schema_df(batch_df: DataFrame, sequence_by: str) -> DataFrame:
    """An empty frame with the history table's columns: the batch's, then the SCD2 columns
    (the period columns have ``sequence_by``'s type)."""
    require_columns(batch_df, [sequence_by], "batch")
    period_type = batch_df.schema[sequence_by].dataType
    return batch_df.limit(0).select(
        "*",
        F.lit(None).cast("string").alias(HASH),
        F.lit(None).cast(period_type).alias(START),
        F.lit(None).cast(period_type).alias(END),
        F.lit(None).cast("boolean").alias(CURRENT),
    )


def create_history_table(
    spark: SparkSession, table: str, batch_df: DataFrame, *, sequence_by: str
) -> None:
    """``CREATE TABLE IF NOT EXISTS`` the history table: ``batch_df``'s columns, then
    ``attribute_hash``, ``effective_start_date``, ``effective_end_date``, ``is_current``."""
    create_table_like(
        spark,
        table,
        history_schema_df(batch_df, sequence_by),
        comment="SCD Type 2: one row per version; is_current marks the latest",
    )


def apply_scd2(
    spark: SparkSession,
    batch_df: DataFrame,
    table: str,
    *,
    key: str,
    sequence_by: str,
    tracked: Sequence[str],
) -> None:
    """Apply one batch of records to the SCD Type 2 table ``table`` (created if missing).

    One merge: close each changed key's current row (``effective_end_date`` = the start of its
    first new version, ``is_current`` = false) and insert every new version (see
    :func:`versions_to_apply` and :func:`staged_updates`). Idempotent: a batch applied twice,
    or an older batch applied after a newer one, changes nothing.
    """
    from lakehouse.tables import DeltaTable

    key = _check_key(key)
    if key in tracked:
        raise ValueError(f"the key {key!r} cannot be a tracked attribute: remove it from tracked")
    create_history_table(spark, table, batch_df, sequence_by=sequence_by)
    history = DeltaTable.forName(spark, table)
    current_df = history.toDF().where(F.col(CURRENT))
    versions = versions_to_apply(
        current_df, batch_df, key=key, sequence_by=sequence_by, tracked=tracked
    )
    staged = staged_updates(versions, key=key)
    columns = history.toDF().columns
    (
        history.alias("t")
        .merge(staged.alias("s"), f"t.`{key}` = s.{MERGE_KEY} AND t.{CURRENT}")
        .whenMatchedUpdate(set={END: f"s.{START}", CURRENT: "false"})
        .whenNotMatchedInsert(
            condition=f"s.{MERGE_KEY} IS NULL", values={c: f"s.`{c}`" for c in columns}
        )
        .execute()
    )


CUSTOMERS_HISTORY = "silver.customers_history"


def build_customers_history(spark: SparkSession) -> str:
    """Apply every valid CRM row to ``silver.customers_history`` (the CRM Bronze table must
    exist): what a later lesson calls for the customer dimension's history. One merge handles
    any number of versions per customer; idempotent. Returns the table name."""
    from lakehouse.silver.dedup import silver_source

    apply_scd2(
        spark,
        silver_source(spark, "crm.customers"),
        CUSTOMERS_HISTORY,
        key="customer_id",
        sequence_by="updated_at",
        tracked=CUSTOMER_TRACKED_ATTRIBUTES,
    )
    return CUSTOMERS_HISTORY


def history_from_versions(
    versions_df: DataFrame, *, key: str, sequence_by: str, tracked: Sequence[str]
) -> DataFrame:
    """Rebuild a whole SCD2 history from every version of every record at once, comparing the
    tracked columns themselves (no hash, no merge): an independent recomputation to check an
    incrementally merged history against. Returns the key, the tracked columns,
    ``sequence_by`` and the SCD2 period columns."""
    key = _check_key(key)
    tracked = _tracked(tracked)
    require_columns(versions_df, [key, sequence_by, *tracked], "versions")
    by_time = Window.partitionBy(key).orderBy(sequence_by)
    one_per_instant = versions_df.transform(
        latest_per_key(
            [key, sequence_by],
            sequence_by,
            tie_breakers=[c for c in DELIVERY_ORDER if c in versions_df.columns],
        )
    )
    same_as_previous = F.lit(True)
    for c in tracked:
        same_as_previous = same_as_previous & F.col(c).eqNullSafe(F.lag(c).over(by_time))
    return (
        one_per_instant.withColumn("_n", F.row_number().over(by_time))
        .withColumn("_same", same_as_previous)
        .where((F.col("_n") == 1) | ~F.col("_same"))
        .select(key, *tracked, sequence_by)
        .withColumn(START, F.col(sequence_by))
        .withColumn(END, F.lead(sequence_by).over(by_time))
        .withColumn(CURRENT, F.col(END).isNull())
    )


def check_scd2(
    df: DataFrame,
    key: str,
    *,
    start: str = START,
    end: str = END,
    current: str = CURRENT,
    name: str = "the history",
) -> None:
    """Assert the SCD Type 2 invariants; ``AssertionError`` says which one fails and how to fix.

    Per key: exactly one current row, whose end is null; every other row closed (end not
    null, after its start); periods chained with no gap and no overlap: ordered by start, each
    row ends exactly where the next one starts, and only the last row is current.
    """
    key = _check_key(key)
    require_columns(df, [key, start, end, current], name)

    def examples(frame: DataFrame) -> list:
        return [r.asDict() for r in frame.limit(3).collect()]

    currents = (
        df.groupBy(key)
        .agg(F.count(F.when(F.col(current), 1)).alias("current_rows"))
        .where("current_rows != 1")
    )
    bad = examples(currents)
    assert not bad, (
        f"{name} must hold exactly one current row per {key}; these do not: {bad}. "
        f"Close the old row ({current} = false, {end} set) when you insert a new version."
    )
    open_or_closed = df.where(
        (F.col(current) & F.col(end).isNotNull())
        | (~F.col(current) & (F.col(end).isNull() | (F.col(end) <= F.col(start))))
    )
    bad = examples(open_or_closed.select(key, start, end, current))
    assert not bad, (
        f"{name} has rows whose period does not fit their {current} flag, e.g. {bad}: a current "
        f"row has a null {end}; a closed row has an {end} after its {start}."
    )
    by_start = Window.partitionBy(key).orderBy(start, end)
    chain = (
        df.select(key, start, end, current)
        .withColumn("next_start", F.lead(start).over(by_start))
        .where(
            (F.col("next_start").isNotNull() & ~F.col(end).eqNullSafe(F.col("next_start")))
            | (F.col("next_start").isNull() & ~F.col(current))
        )
    )
    bad = examples(chain)
    assert not bad, (
        f"{name} has periods that overlap or leave a gap, e.g. {bad}: ordered by {start}, each "
        f"row must end exactly when the next one starts ({end} = next {start}), and the last "
        "row must be the current one."
    )


def next_delivery(
    history_df: DataFrame,
    source_df: DataFrame,
    *,
    key: str,
    sequence_by: str,
    tracked: Sequence[str],
    batch_id: str = "003",
) -> DataFrame:
    """A further delivery, a day after the latest record of ``source_df``, built to expose the
    SCD2 bugs two deliveries hide. Two keys of ``history_df`` change:

    - the first key with exactly two versions **changes again**, to the tracked values of
      another key's current row (a merge whose condition does not keep to the current row,
      ``AND t.is_current``, closes its old closed row a second time);
    - the first key with three or more versions **changes back** to its first version's values
      (a comparison with any version but the current one sees no change).

    Returns one record per key with ``source_df``'s columns (its latest record, the tracked
    columns replaced, ``sequence_by`` one day after the source's latest and ``_batch_id`` =
    ``batch_id`` when the source has one), in key order. Raises ``ValueError`` when the history
    has no key of either kind (apply at least two deliveries first).
    """
    key = _check_key(key)
    tracked = _tracked(tracked)
    require_columns(history_df, [key, START, CURRENT, *tracked], "history")
    require_columns(source_df, [key, sequence_by, *tracked], "source")
    counts = history_df.groupBy(key).count()
    again = counts.where("count = 2").agg(F.min(key)).first()[0]
    back = counts.where("count >= 3").agg(F.min(key)).first()[0]
    if again is None or back is None:
        raise ValueError(
            "next_delivery needs a key with two versions and one with three or more: apply the "
            "first two deliveries to the history before the drill"
        )
    current = history_df.where(F.col(CURRENT))
    mine = current.where(F.col(key) == again).select(*tracked).first()
    differs = [
        ~F.col(c).eqNullSafe(F.lit(mine[c])) for c in tracked if c in ("street", "city")
    ] or [~F.col(tracked[0]).eqNullSafe(F.lit(mine[tracked[0]]))]
    moved_to = (
        current.where((F.col(key) != again) & reduce(lambda a, b: a | b, differs))
        .orderBy(key)
        .select(*tracked)
    ).first()
    first_version = history_df.where(F.col(key) == back).orderBy(START).select(*tracked).first()
    new_values = {again: moved_to.asDict(), back: first_version.asDict()}
    latest = source_df.where(F.col(key).isin(again, back)).transform(
        latest_per_key(
            key, sequence_by, tie_breakers=[c for c in DELIVERY_ORDER if c in source_df.columns]
        )
    )
    next_time = source_df.agg(F.max(sequence_by)).first()[0] + timedelta(days=1)
    replaced = {
        c: F.when(F.col(key) == again, F.lit(new_values[again][c]))
        .otherwise(F.lit(new_values[back][c]))
        .cast(source_df.schema[c].dataType)
        for c in tracked
    }
    replaced[sequence_by] = F.lit(next_time).cast(source_df.schema[sequence_by].dataType)
    if "_batch_id" in source_df.columns:
        replaced["_batch_id"] = F.lit(batch_id).cast(source_df.schema["_batch_id"].dataType)
    return latest.withColumns(replaced).select(*source_df.columns).orderBy(key)


def check_next_delivery(
    before_df: DataFrame,
    after_df: DataFrame,
    delivery_df: DataFrame,
    *,
    key: str,
    tracked: Sequence[str],
    name: str = "the history",
) -> str:
    """Assert that ``delivery_df`` (see :func:`next_delivery`) was applied to the history
    ``before_df`` as SCD Type 2 must, giving ``after_df``: no version already closed was
    touched, each delivered key gained exactly one version, current with the delivered values,
    and the invariants of :func:`check_scd2` hold. Returns a one-line summary."""
    key = _check_key(key)
    tracked = _tracked(tracked)
    period = [key, *tracked, START, END, CURRENT]
    rewritten = before_df.where(~F.col(CURRENT)).select(period).exceptAll(after_df.select(period))
    bad = [r.asDict() for r in rewritten.limit(2).collect()]
    assert not bad, (
        f"The delivery changed {rewritten.count()} version(s) of {name} that were already "
        f"closed, e.g. {bad}: the merge must match only a customer's current row, so keep "
        f"`AND t.{CURRENT}` in the merge condition (a closed version never changes again)."
    )
    keys = [r[key] for r in delivery_df.select(key).collect()]
    before = dict(before_df.where(F.col(key).isin(keys)).groupBy(key).count().collect())
    after = dict(after_df.where(F.col(key).isin(keys)).groupBy(key).count().collect())
    wrong = {
        k: (before.get(k, 0), after.get(k, 0))
        for k in keys
        if after.get(k, 0) != before.get(k, 0) + 1
    }
    assert not wrong, (
        f"Each customer of the delivery should gain exactly one version; (before, after): "
        f"{wrong}. Changing back to an earlier address is a change too: compare the new "
        "version's hash with the current row's, not with any earlier version."
    )
    delivered = delivery_df.select(key, *tracked)
    stale = delivered.exceptAll(after_df.where(F.col(CURRENT)).select(key, *tracked))
    assert stale.isEmpty(), (
        f"The current rows of {keys} should hold the delivered values: {stale.collect()[:2]}. "
        "Insert every new version with is_current = true and close the old one."
    )
    check_scd2(after_df, key, name=name)
    return (
        f"{name}: the next delivery added one version to each of {', '.join(map(str, keys))}, "
        "and no closed version changed"
    )
