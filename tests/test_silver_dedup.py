"""Silver deduplication and upserts: latest record per key, idempotent merges, the checks the
notebooks rely on (and that they catch a wrong implementation), on small explicit data."""

from __future__ import annotations

from datetime import datetime

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.datagen import DATASETS
from lakehouse.silver import dedup


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "silver_dedup_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def ts(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 6, day, hour)


SCHEMA = "id string, city string, updated_at timestamp, _ingestion_timestamp timestamp"
ROWS = [
    ("a", "Paris", ts(1), ts(20)),
    ("a", "Lyon", ts(3), ts(20)),  # the latest "a"
    ("a", "Nice", ts(2), ts(20)),
    ("b", "Oslo", ts(1), ts(20)),
    ("b", "Oslo", ts(1), ts(20)),  # an exact copy
    ("c", "Rome", None, ts(20)),  # no version: loses to any row that has one
    ("c", "Milan", ts(1), ts(20)),
    (None, "Bern", ts(1), ts(20)),  # null keys form one group, as in GROUP BY
    (None, "Zug", ts(2), ts(20)),
]


def frame(spark, rows, schema=SCHEMA):
    return spark.createDataFrame(rows, schema)


def earliest_per_key(keys, order_by):
    """A deliberately wrong dedup: keeps the first version instead of the last."""

    def transform(df):
        window = Window.partitionBy(*keys).orderBy(F.col(order_by).asc_nulls_last())
        return df.withColumn("_n", F.row_number().over(window)).where("_n = 1").drop("_n")

    return transform


# --------------------------------------------------------------------------- latest_per_key


def test_latest_per_key_keeps_the_latest_row_of_each_key(spark):
    latest = frame(spark, ROWS).transform(dedup.latest_per_key("id", "updated_at"))
    expected = frame(
        spark,
        [
            ("a", "Lyon", ts(3), ts(20)),
            ("b", "Oslo", ts(1), ts(20)),
            ("c", "Milan", ts(1), ts(20)),
            (None, "Zug", ts(2), ts(20)),
        ],
    )
    assertDataFrameEqual(latest, expected)


def test_ties_are_broken_by_content_whatever_the_input_order(spark):
    tied = [("k", city, ts(1), ts(20)) for city in ("Paris", "Berlin", "Athens", "Madrid")]
    results = {
        frame(spark, rows)
        .repartition(n)
        .transform(dedup.latest_per_key(["id"], ["updated_at"]))
        .first()
        .city
        for rows in (tied, tied[::-1])
        for n in (1, 3)
    }
    assert results == {"Paris"}  # the highest value of the next column, descending


def test_tie_breakers_make_the_later_delivery_win(spark):
    rows = [
        ("k", "first delivery", ts(1), ts(20)),
        ("k", "redelivery", ts(1), ts(21)),
    ]
    latest = frame(spark, rows).transform(
        dedup.latest_per_key("id", "updated_at", tie_breakers="_ingestion_timestamp")
    )
    assert [r.city for r in latest.collect()] == ["redelivery"]


def test_unknown_columns_are_named_in_the_error(spark):
    df = frame(spark, ROWS)
    with pytest.raises(ValueError, match=r"unknown key column\(s\) 'customer_id'.*has id, city"):
        df.transform(dedup.latest_per_key("customer_id", "updated_at"))
    with pytest.raises(ValueError, match=r"unknown order_by column\(s\) 'ts'"):
        df.transform(dedup.latest_per_key("id", "ts"))
    with pytest.raises(ValueError, match=r"unknown tie_breakers column\(s\) '_source_file'"):
        df.transform(dedup.latest_per_key("id", "updated_at", tie_breakers="_source_file"))
    with pytest.raises(ValueError, match="keys must be a column name or a non-empty list"):
        dedup.latest_per_key([], "updated_at")


# --------------------------------------------------------------------------- the check


def test_check_latest_per_key_accepts_the_right_answer(spark):
    source = frame(spark, ROWS).where("id IS NOT NULL")
    latest = source.transform(dedup.latest_per_key("id", "updated_at"))
    dedup.check_latest_per_key(latest, source, "id", "updated_at")


def test_check_latest_per_key_rejects_a_dedup_keeping_the_earliest_row(spark):
    source = frame(spark, ROWS).where("id IS NOT NULL")
    wrong = source.transform(earliest_per_key(["id"], "updated_at"))
    with pytest.raises(AssertionError, match="keeps an older version.*'kept'.*descending"):
        dedup.check_latest_per_key(wrong, source, "id", "updated_at")


def test_check_latest_per_key_rejects_repeated_and_missing_keys(spark):
    source = frame(spark, ROWS).where("id IS NOT NULL")
    with pytest.raises(
        AssertionError, match=r"more than one row for 1 key\(s\), e\.g\. \[\{'id': 'a'"
    ):
        dedup.check_latest_per_key(source.where("id = 'a'"), source, "id", "updated_at")
    latest = source.transform(dedup.latest_per_key("id", "updated_at"))
    with pytest.raises(AssertionError, match="lacks 1 of the source's keys"):
        dedup.check_latest_per_key(latest.where("id != 'b'"), source, "id", "updated_at")


# --------------------------------------------------------------------------- upserts


def merge_commits(spark, table):
    from lakehouse import DeltaTable

    history = DeltaTable.forName(spark, table).history()
    return history.where("operation = 'MERGE'").orderBy("version").collect()


def test_upsert_is_idempotent_and_never_lets_an_older_record_win(spark):
    table = "silver_tests.customers"
    upsert = dict(keys="id", sequence_by="updated_at")
    batch_1 = frame(spark, [r for r in ROWS if r[0] is not None])
    dedup.upsert_latest(spark, batch_1, table, **upsert)
    after_1 = spark.table(table).collect()
    assertDataFrameEqual(after_1, batch_1.transform(dedup.latest_per_key("id", "updated_at")))
    merges = len(merge_commits(spark, table))

    # The same batch again: same content, and no merge that updated or inserted anything.
    dedup.upsert_latest(spark, batch_1, table, **upsert)
    assertDataFrameEqual(spark.table(table), after_1)
    later = merge_commits(spark, table)[merges:]
    assert all(c.operationMetrics["numTargetRowsUpdated"] == "0" for c in later)
    assert all(c.operationMetrics["numTargetRowsInserted"] == "0" for c in later)

    batch_2 = frame(
        spark,
        [
            ("a", "Lille", ts(2, 12), ts(21)),  # late: older than "a"'s Lyon of day 3
            ("b", "Bergen", ts(5), ts(21)),  # changed
            ("c", "Milan", ts(6), ts(21)),  # re-sent unchanged, newer time
            ("d", None, ts(5), ts(21)),  # new, with a null attribute
        ],
    )
    dedup.upsert_latest(spark, batch_2, table, **upsert)
    expected = frame(
        spark,
        [
            ("a", "Lyon", ts(3), ts(20)),
            ("b", "Bergen", ts(5), ts(21)),
            ("c", "Milan", ts(6), ts(21)),
            ("d", None, ts(5), ts(21)),
        ],
    )
    assertDataFrameEqual(spark.table(table), expected)
    dedup.check_latest_per_key(spark.table(table), batch_1.unionByName(batch_2), "id", "updated_at")


def test_a_merge_without_the_sequence_guard_fails_the_check(spark):
    from lakehouse import DeltaTable

    table = "silver_tests.unguarded"
    newer = frame(spark, [("a", "Lyon", ts(3), ts(20))])
    older = frame(spark, [("a", "Paris", ts(1), ts(21))])  # arrives late
    dedup.upsert_latest(spark, newer, table, keys="id", sequence_by="updated_at")
    (
        DeltaTable.forName(spark, table)
        .alias("t")
        .merge(older.alias("s"), "t.id = s.id")
        .whenMatchedUpdateAll()  # wrong: no "s.updated_at > t.updated_at"
        .whenNotMatchedInsertAll()
        .execute()
    )
    with pytest.raises(AssertionError, match="keeps an older version"):
        dedup.check_latest_per_key(spark.table(table), newer.unionByName(older), "id", "updated_at")


def test_upsert_refuses_null_keys_and_unknown_columns(spark):
    with_null = frame(spark, [(None, "Bern", ts(1), ts(20))])
    with pytest.raises(ValueError, match=r"key \(id\) is null: quarantine them"):
        dedup.upsert_latest(
            spark, with_null, "silver_tests.nulls", keys="id", sequence_by="updated_at"
        )
    with pytest.raises(ValueError, match=r"unknown silver_tests.x merge column\(s\) 'version'"):
        dedup.upsert_latest(spark, with_null, "silver_tests.x", keys="id", sequence_by="version")


# --------------------------------------------------------------------------- canonical tables


def test_every_canonical_table_is_keyed_and_sequenced_by_real_columns():
    assert set(dedup.SILVER_TABLES) == {
        "crm.customers",
        "ecommerce.orders",
        "ecommerce.order_lines",
        "ecommerce.products",
        "payments.transactions",
        "web.events",
    }
    for dataset, spec in dedup.SILVER_TABLES.items():
        assert spec.keys == DATASETS[dataset].key
        assert spec.sequence_by in spec.columns
        assert spec.table.startswith("silver.")
        assert not set(dedup.VALIDATION_COLUMNS) & set(spec.columns)
    with pytest.raises(KeyError, match="no canonical Silver table for 'crm.orders'"):
        dedup.silver_table("crm.orders")


def test_silver_rows_drops_validation_columns_and_names_missing_ones(spark):
    spec = dedup.silver_table("ecommerce.products")
    columns = ", ".join(f"{c} string" for c in spec.columns)
    validated = spark.createDataFrame(
        [tuple("x" for _ in spec.columns) + ("", True)],
        f"{columns}, _corrupt_record string, _is_valid boolean",
    )
    assert validated.transform(dedup.silver_rows("ecommerce.products")).columns == spec.columns
    with pytest.raises(ValueError, match=r"unknown ecommerce.products Silver column\(s\) 'brand'"):
        validated.drop("brand").transform(dedup.silver_rows("ecommerce.products"))
