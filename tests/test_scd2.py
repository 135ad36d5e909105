"""SCD Type 2 history: the attribute hash, the staged-union merge (several changes in one batch,
null changes, late and re-sent records, re-runs) and the invariant check, on explicit data."""

from __future__ import annotations

from datetime import datetime

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.silver import scd2


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "scd2_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def ts(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 6, day, hour)


SCHEMA = "id string, city string, segment string, email string, updated_at timestamp"
TRACKED = ("city", "segment")
OPTIONS = dict(key="id", sequence_by="updated_at", tracked=TRACKED)

BATCH_1 = [
    ("a", "Paris", "vip", "a@x.io", ts(1)),
    ("b", "Oslo", "consumer", "b@x.io", ts(1)),
    ("b", "Oslo", "consumer", "b@x.io", ts(1)),  # an exact copy in the same batch
    ("c", None, "consumer", "c@x.io", ts(1)),  # unknown city
    ("d", "Rome", "corporate", "d@x.io", ts(1)),
]
BATCH_2 = [
    ("a", "Lyon", "vip", "a@x.io", ts(5)),  # moved...
    ("a", "Lyon", "corporate", "a@x.io", ts(7)),  # ...then changed segment, same batch
    ("b", "Oslo", "consumer", "b@y.io", ts(6)),  # re-sent: only an untracked column changed
    ("c", "Milan", "consumer", "c@x.io", ts(4)),  # null -> value
    ("d", "Turin", "corporate", "d@x.io", ts(6)),  # moved...
    ("d", "Rome", "corporate", "d@x.io", ts(8)),  # ...and back: a change too
    ("e", "Bern", "vip", "e@x.io", ts(3)),  # new
]
LATE = [("a", "Nice", "vip", "a@x.io", ts(2))]  # older than a's current version


def frame(spark, rows):
    return spark.createDataFrame(rows, SCHEMA)


def periods(spark, rows):
    """Expected (id, city, segment, start, end, is_current)."""
    return spark.createDataFrame(
        rows,
        "id string, city string, segment string, effective_start_date timestamp, "
        "effective_end_date timestamp, is_current boolean",
    )


EXPECTED = [
    ("a", "Paris", "vip", ts(1), ts(5), False),
    ("a", "Lyon", "vip", ts(5), ts(7), False),
    ("a", "Lyon", "corporate", ts(7), None, True),
    ("b", "Oslo", "consumer", ts(1), None, True),
    ("c", None, "consumer", ts(1), ts(4), False),
    ("c", "Milan", "consumer", ts(4), None, True),
    ("d", "Rome", "corporate", ts(1), ts(6), False),
    ("d", "Turin", "corporate", ts(6), ts(8), False),
    ("d", "Rome", "corporate", ts(8), None, True),
    ("e", "Bern", "vip", ts(3), None, True),
]
PERIOD = ["id", "city", "segment", scd2.START, scd2.END, scd2.CURRENT]


# --------------------------------------------------------------------------- the hash


def test_attribute_hash_is_null_safe_and_unambiguous(spark):
    rows = [
        ("a", None, "b"),
        ("a", "b", None),
        ("a|b", "c", None),
        ("a", "b|c", None),
        ("", None, None),
        (None, None, None),
        ("a", None, "b"),  # the same values: the same hash
    ]
    hashes = [
        r.h
        for r in spark.createDataFrame(rows, "x string, y string, z string")
        .select(scd2.attribute_hash(["x", "y", "z"]).alias("h"))
        .collect()
    ]
    assert len(set(hashes[:-1])) == len(rows) - 1
    assert hashes[0] == hashes[-1]
    # concat_ws alone would have merged the first two pairs
    joined = [
        r.j
        for r in spark.createDataFrame(rows[:4], "x string, y string, z string")
        .select(F.concat_ws("|", "x", "y", "z").alias("j"))
        .collect()
    ]
    assert joined[0] == joined[1] and joined[2] == joined[3]
    with pytest.raises(ValueError, match="at least one column"):
        scd2.attribute_hash([])


# --------------------------------------------------------------------------- the merge


def test_history_through_two_batches_late_data_and_reruns(spark):
    table = "scd2_tests.customers_history"
    scd2.apply_scd2(spark, frame(spark, BATCH_1), table, **OPTIONS)
    after_1 = spark.table(table)
    assert after_1.count() == 4 and after_1.where("is_current").count() == 4
    scd2.check_scd2(after_1, "id")

    scd2.apply_scd2(spark, frame(spark, BATCH_2), table, **OPTIONS)
    history = spark.table(table)
    assertDataFrameEqual(history.select(PERIOD), periods(spark, EXPECTED))
    scd2.check_scd2(history, "id")
    # b was re-sent with an untracked change only: no new version, its old row untouched
    assert history.where("id = 'b'").first().email == "b@x.io"

    # The independent rebuild from every version at once agrees.
    every_version = frame(spark, BATCH_1 + BATCH_2)
    rebuilt = scd2.history_from_versions(every_version, **OPTIONS)
    assertDataFrameEqual(history.select(PERIOD), rebuilt.select(PERIOD))

    # Both batches again, and a late older version: nothing changes.
    settled = history.collect()
    for rows in (BATCH_2, BATCH_1 + LATE):
        scd2.apply_scd2(spark, frame(spark, rows), table, **OPTIONS)
    assertDataFrameEqual(spark.table(table), settled)


def test_an_in_place_update_fails_the_comparison_with_the_rebuild(spark):
    """A wrong SCD2 (overwrite the row instead of adding a version) passes the structural check
    but not the independent recomputation that the notebook also runs."""
    from lakehouse import DeltaTable
    from lakehouse.silver.dedup import upsert_latest

    table = "scd2_tests.in_place"
    upsert_latest(spark, frame(spark, BATCH_1), table, keys="id", sequence_by="updated_at")
    upsert_latest(spark, frame(spark, BATCH_2), table, keys="id", sequence_by="updated_at")
    wrong = (
        DeltaTable.forName(spark, table)
        .toDF()
        .withColumn(scd2.START, F.col("updated_at"))
        .withColumn(scd2.END, F.lit(None).cast("timestamp"))
        .withColumn(scd2.CURRENT, F.lit(True))
    )
    scd2.check_scd2(wrong, "id")  # one row per key looks like a valid history...
    rebuilt = scd2.history_from_versions(frame(spark, BATCH_1 + BATCH_2), **OPTIONS)
    with pytest.raises(AssertionError):
        assertDataFrameEqual(wrong.select(PERIOD), rebuilt.select(PERIOD))


# --------------------------------------------------------------------------- a third delivery


def _merge_without_current_condition(spark, batch_df, table):
    """apply_scd2 with the classic bug: the merge condition lacks ``AND t.is_current``."""
    from lakehouse import DeltaTable

    history = DeltaTable.forName(spark, table)
    versions = scd2.versions_to_apply(history.toDF().where("is_current"), batch_df, **OPTIONS)
    columns = history.toDF().columns
    (
        history.alias("t")
        .merge(scd2.staged_updates(versions, key="id").alias("s"), "t.id = s._merge_key")
        .whenMatchedUpdate(set={scd2.END: f"s.{scd2.START}", scd2.CURRENT: "false"})
        .whenNotMatchedInsert(
            condition="s._merge_key IS NULL", values={c: f"s.`{c}`" for c in columns}
        )
        .execute()
    )


def test_the_next_delivery_changes_one_key_again_and_one_back_and_exposes_the_merge_bug(spark):
    from lakehouse import DeltaTable

    table = "scd2_tests.third_delivery"
    every_version = frame(spark, BATCH_1 + BATCH_2)
    for rows in (BATCH_1, BATCH_2):
        scd2.apply_scd2(spark, frame(spark, rows), table, **OPTIONS)
    delivery = scd2.next_delivery(spark.table(table), every_version, **OPTIONS)
    # c (two versions) moves to the first other current row's city; a (three) goes back
    assert [tuple(r) for r in delivery.select("id", "city", "segment", "updated_at").collect()] == [
        ("a", "Paris", "vip", ts(9)),
        ("c", "Lyon", "corporate", ts(9)),
    ]
    assert delivery.columns == every_version.columns

    before = DeltaTable.forName(spark, table).history(1).collect()[0].version

    def check():
        return scd2.check_next_delivery(
            spark.read.option("versionAsOf", before).table(table),
            spark.table(table),
            delivery,
            key="id",
            tracked=TRACKED,
            name=table,
        )

    scd2.apply_scd2(spark, delivery, table, **OPTIONS)
    assert check().startswith(f"{table}: the next delivery added one version to each of a, c")

    DeltaTable.forName(spark, table).restoreToVersion(before)
    _merge_without_current_condition(spark, delivery, table)
    with pytest.raises(AssertionError, match=r"already closed.*AND t.is_current"):
        check()
    # a delivery that was never applied: no customer gained its version
    DeltaTable.forName(spark, table).restoreToVersion(before)
    with pytest.raises(AssertionError, match="gain exactly one version"):
        check()
    with pytest.raises(ValueError, match="apply the first two deliveries"):
        scd2.next_delivery(
            frame(spark, BATCH_1).select(
                "*",
                F.col("updated_at").alias(scd2.START),
                F.lit(True).alias(scd2.CURRENT),
            ),
            every_version,
            **OPTIONS,
        )


def test_two_deliveries_hide_the_missing_current_condition(spark):
    """Why the lesson needs the third delivery: with the bug, two deliveries still build the
    right history."""
    table = "scd2_tests.two_deliveries_bug"
    scd2.create_history_table(spark, table, frame(spark, BATCH_1), sequence_by="updated_at")
    for rows in (BATCH_1, BATCH_2):
        _merge_without_current_condition(spark, frame(spark, rows), table)
    assertDataFrameEqual(spark.table(table).select(PERIOD), periods(spark, EXPECTED))


# --------------------------------------------------------------------------- the check


def test_check_scd2_names_each_broken_invariant(spark):
    good = periods(spark, EXPECTED)
    scd2.check_scd2(good, "id")
    two_current = good.withColumn(
        scd2.CURRENT, F.when(F.col(scd2.START) == ts(5), True).otherwise(F.col(scd2.CURRENT))
    )
    with pytest.raises(AssertionError, match=r"exactly one current row per id.*'a'"):
        scd2.check_scd2(two_current, "id")
    never_closed = good.withColumn(
        scd2.END, F.when(F.col(scd2.START) == ts(5), None).otherwise(F.col(scd2.END))
    )
    with pytest.raises(AssertionError, match="period does not fit"):
        scd2.check_scd2(never_closed, "id")
    overlap = good.withColumn(
        scd2.END, F.when(F.col(scd2.START) == ts(5), ts(9)).otherwise(F.col(scd2.END))
    )
    with pytest.raises(AssertionError, match=r"overlap or leave a gap.*'id': 'a'"):
        scd2.check_scd2(overlap, "id")
    with pytest.raises(ValueError, match=r"unknown the history column\(s\) 'valid_from'"):
        scd2.check_scd2(good, "id", start="valid_from")


def test_bad_arguments_are_refused_with_the_fix(spark):
    batch = frame(spark, BATCH_1)
    with pytest.raises(ValueError, match="key must be one column name"):
        scd2.apply_scd2(
            spark, batch, "scd2_tests.x", key=["id"], sequence_by="updated_at", tracked=TRACKED
        )
    with pytest.raises(ValueError, match="cannot be a tracked attribute"):
        scd2.apply_scd2(
            spark, batch, "scd2_tests.x", key="id", sequence_by="updated_at", tracked=("id", "city")
        )
    with pytest.raises(ValueError, match=r"unknown batch column\(s\) 'country'"):
        scd2.apply_scd2(
            spark, batch, "scd2_tests.x", key="id", sequence_by="updated_at", tracked=("country",)
        )
