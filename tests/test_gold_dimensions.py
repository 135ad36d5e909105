"""Conformed dimensions: surrogate keys that survive a rebuild, the unknown member, and the key
lookups facts use (the SCD2 version in force, absent and null keys), with small explicit data."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest
from deltalake import DeltaTable as RsDeltaTable
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.engines.embedded import log as delta_log
from lakehouse.gold import UNKNOWN_KEY
from lakehouse.gold import dimensions as dims
from lakehouse.silver.scd2 import check_scd2


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "gold_dimensions_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


HISTORY = (
    "customer_id string, first_name string, last_name string, email string, phone string, "
    "date_of_birth date, street string, city string, state string, postal_code string, "
    "country string, segment string, signup_date date, marketing_opt_in boolean, "
    "updated_at timestamp, notes string, attribute_hash string, "
    "effective_start_date timestamp, effective_end_date timestamp, is_current boolean"
)


def version(cid, city, state, country, segment, start, end):
    return (
        cid, "Ann", "Lee", f"{cid.lower()}@example.com", None, None, "1 Oak Street", city, state,
        "10001", country, segment, None, True, ts(start), None, "h",
        ts(start), ts(end) if end else None, end is None,
    )  # fmt: skip


# C1 has three versions: New York, then Boston, then Boston as a vip; C2 has one.
HISTORY_ROWS = [
    version("C1", "New York", "NY", "US", "consumer", "2024-01-01", "2024-03-01"),
    version("C1", "Boston", "MA", "US", "consumer", "2024-03-01", "2024-06-01"),
    version("C1", "Boston", "MA", "US", "vip", "2024-06-01", None),
    version("C2", "London", "England", "GB", "corporate", "2024-02-01", None),
]

ORDERS = (
    "order_id string, customer_id string, order_ts timestamp, country string, shipping_city string"
)
PAYMENTS = (
    "transaction_id string, customer_id string, event_ts timestamp, country string, city string"
)


def materialized(df):
    """The rows of ``df`` as a local DataFrame: later tests do not recompute its plan."""
    return df.sparkSession.createDataFrame(df.collect(), df.schema)


@pytest.fixture(scope="module")
def history(spark):
    return spark.createDataFrame(HISTORY_ROWS, HISTORY)


@pytest.fixture(scope="module")
def geography(spark, history):
    orders = spark.createDataFrame(
        [("O1", "C1", ts("2024-01-05"), " us", "new  YORK "), ("O2", "C2", None, None, None)],
        ORDERS,
    )
    payments = spark.createDataFrame(
        [("T1", "C1", ts("2024-07-01"), "JP", "Tokyo"), ("T2", "C1", None, "US", "")], PAYMENTS
    )
    return materialized(
        dims.geography_dimension(history, orders, payments).transform(
            dims.with_unknown_member(spark, dims.DIM_GEOGRAPHY)
        )
    )


@pytest.fixture(scope="module")
def dim_customer(spark, history, geography):
    return materialized(
        dims.customer_dimension(history, geography).transform(
            dims.with_unknown_member(spark, dims.DIM_CUSTOMER)
        )
    )


def sk_of(dim_customer, cid, start):
    return (
        dim_customer.where(
            (F.col("customer_id") == cid) & (F.col("effective_start_date") == ts(start))
        )
        .select("customer_sk")
        .first()[0]
    )


# ------------------------------------------------------------------------------------------------
# Surrogate keys
# ------------------------------------------------------------------------------------------------
def test_surrogate_key_is_xxhash64_of_the_natural_key_and_ignores_row_order(spark):
    products = spark.createDataFrame([("P1",), ("P2",), ("P3",)], "product_id string")
    keys = products.select("product_id", dims.surrogate_key("product_id").alias("sk"))
    reversed_keys = (
        products.orderBy(F.desc("product_id"))
        .repartition(3)
        .select("product_id", dims.surrogate_key("product_id").alias("sk"))
    )
    assertDataFrameEqual(keys, reversed_keys)
    expected = spark.sql("SELECT 'P2' AS product_id, xxhash64('P2') AS sk")
    assertDataFrameEqual(keys.where("product_id = 'P2'"), expected)
    assert dict(keys.dtypes)["sk"] == "bigint"
    with pytest.raises(ValueError, match="natural key"):
        dims.surrogate_key()


def test_customer_dimension_has_one_row_and_key_per_version(spark, dim_customer):
    rows = dim_customer.where(F.col("customer_sk") != UNKNOWN_KEY)
    assert rows.count() == len(HISTORY_ROWS)
    dims.check_surrogate_keys(
        dim_customer, "customer_sk", ["customer_id", "effective_start_date"], name="dim_customer"
    )
    expected = spark.sql(
        "SELECT xxhash64('C1', timestamp'2024-03-01 00:00:00') AS customer_sk"
    ).first()[0]
    assert sk_of(dim_customer, "C1", "2024-03-01") == expected
    # The unknown member keeps "exactly one current row per customer" true (its id is null).
    check_scd2(dim_customer, "customer_id", name="dim_customer")
    unknown = dim_customer.where(F.col("customer_sk") == UNKNOWN_KEY).first()
    assert unknown.customer_id is None and unknown.is_current and unknown.geography_sk == -1
    assert unknown.first_name == "Unknown" and unknown.effective_end_date is None
    assert [f.name for f in dim_customer.schema.fields] == dims.DIM_CUSTOMER_SCHEMA.names


def test_customer_versions_point_at_their_address_in_the_geography(dim_customer, geography):
    places = {
        (r.country, r.city): r.geography_sk for r in geography.collect() if r.geography_sk != -1
    }
    got = {
        (r.customer_id, r.city): r.geography_sk
        for r in dim_customer.where("customer_sk != -1").collect()
    }
    assert got == {
        ("C1", "New York"): places[("US", "New York")],
        ("C1", "Boston"): places[("US", "Boston")],
        ("C2", "London"): places[("GB", "London")],
    }


def test_geography_merges_spellings_and_takes_attributes_from_reference(spark, geography):
    got = geography.orderBy("country", "city").collect()
    assert [(r.country, r.city, r.state, r.country_name, r.region, r.currency) for r in got] == [
        (None, "Unknown", "Unknown", "Unknown", "Unknown", None),
        ("GB", "London", "England", "United Kingdom", "Europe", "GBP"),
        ("JP", "Tokyo", "Unknown", "Japan", "Asia Pacific", "JPY"),
        ("US", "Boston", "MA", "United States", "North America", "USD"),
        ("US", "New York", "NY", "United States", "North America", "USD"),
    ]
    dims.check_surrogate_keys(geography, "geography_sk", ["country", "city"])
    ny = [r.geography_sk for r in got if r.city == "New York"][0]
    assert ny == spark.sql("SELECT xxhash64('US', 'new york')").first()[0]


def test_product_dimension_and_its_unknown_member(spark):
    products = spark.createDataFrame(
        [("P1", "Mug", "home", "kitchen", "Acme", Decimal("9.50"), Decimal("3.00"), True)],
        "product_id string, name string, category string, subcategory string, brand string, "
        "unit_price decimal(10,2), unit_cost decimal(10,2), is_active boolean",
    )
    dim = dims.product_dimension(products).transform(
        dims.with_unknown_member(spark, dims.DIM_PRODUCT)
    )
    dims.check_surrogate_keys(dim, "product_sk", "product_id")
    unknown = dim.where("product_sk = -1").first()
    assert (unknown.product_id, unknown.name, unknown.category, unknown.unit_price) == (
        None,
        "Unknown",
        "Unknown",
        None,
    )


# ------------------------------------------------------------------------------------------------
# The checks catch wrong dimensions
# ------------------------------------------------------------------------------------------------
def test_check_surrogate_keys_rejects_a_dimension_without_or_with_two_unknown_members(
    dim_customer,
):
    natural = ["customer_id", "effective_start_date"]
    without = dim_customer.where("customer_sk != -1")
    with pytest.raises(AssertionError, match="exactly one: the unknown member"):
        dims.check_surrogate_keys(without, "customer_sk", natural)
    twice = dim_customer.unionByName(dim_customer.where("customer_sk = -1"))
    with pytest.raises(AssertionError, match="2 rows with customer_sk = -1"):
        dims.check_surrogate_keys(twice, "customer_sk", natural)


def test_check_surrogate_keys_names_the_colliding_natural_keys(dim_customer):
    natural = ["customer_id", "effective_start_date"]
    # A key of the customer alone (not of the version) gives C1's three versions one key.
    per_customer = dim_customer.withColumn(
        "customer_sk",
        F.when(F.col("customer_sk") == -1, F.lit(-1)).otherwise(F.xxhash64("customer_id")),
    )
    with pytest.raises(AssertionError, match=r"sharing a customer_sk: .*C1.*2024-01-01.*C1"):
        dims.check_surrogate_keys(per_customer, "customer_sk", natural)
    null_key = dim_customer.withColumn("customer_sk", F.lit(None).cast("bigint"))
    with pytest.raises(AssertionError, match="null customer_sk"):
        dims.check_surrogate_keys(null_key, "customer_sk", natural)
    stolen = dim_customer.withColumn(
        "customer_sk",
        F.when(F.col("customer_id") == "C2", F.lit(-1)).otherwise(F.col("customer_sk")),
    ).where("customer_id IS NOT NULL")
    with pytest.raises(AssertionError, match="reserved for the unknown member.*C2"):
        dims.check_surrogate_keys(stolen, "customer_sk", natural)


def _row_number_keys(history):
    """A wrong key: the row's position in customer order, which moves when Silver grows."""
    return history.select(
        (F.row_number().over(Window.orderBy("customer_id", "effective_start_date"))).alias(
            "customer_sk"
        ),
        "customer_id",
        "effective_start_date",
    )


def test_hash_keys_survive_a_rebuild_position_keys_do_not(spark, history, geography):
    natural = ["customer_id", "effective_start_date"]
    newcomer = spark.createDataFrame(
        [version("C0", "Boston", "MA", "US", "consumer", "2024-05-01", None)], HISTORY
    )
    grown = history.unionByName(newcomer)
    before = dims.customer_dimension(history, geography)
    after = dims.customer_dimension(grown.repartition(3), geography)
    dims.check_keys_stable(before, after, "customer_sk", natural)

    with pytest.raises(AssertionError, match="surrogate keys changed between builds"):
        dims.check_keys_stable(
            _row_number_keys(history), _row_number_keys(grown), "customer_sk", natural
        )

    def increasing_ids(df):
        return df.select(
            F.monotonically_increasing_id().alias("customer_sk"), "customer_id", *natural[1:]
        )

    with pytest.raises(AssertionError, match="key_after"):
        dims.check_keys_stable(
            increasing_ids(history.coalesce(1)),
            increasing_ids(history.repartition(4, "customer_id")),
            "customer_sk",
            natural,
        )
    with pytest.raises(AssertionError, match="member is gone"):
        dims.check_keys_stable(before, before.where("customer_id != 'C2'"), "customer_sk", natural)


# ------------------------------------------------------------------------------------------------
# Key lookups
# ------------------------------------------------------------------------------------------------
EVENTS = "event_id string, customer_id string, event_ts timestamp"
EVENT_ROWS = [
    ("before_first", "C1", ts("2023-12-01")),
    ("at_first_start", "C1", ts("2024-01-01")),
    ("inside_v1", "C1", ts("2024-02-15")),
    ("at_v2_start", "C1", ts("2024-03-01")),
    ("inside_v2", "C1", ts("2024-04-30 23:59:59")),
    ("at_v3_start", "C1", ts("2024-06-01")),
    ("after_v3", "C1", ts("2025-01-01")),
    ("no_time", "C1", None),
    ("single_version_before", "C2", ts("2020-01-01")),
    ("absent_id", "C9", ts("2024-04-01")),
    ("null_id", None, ts("2024-04-01")),
]


def test_with_customer_key_resolves_the_version_in_force(spark, dim_customer):
    events = spark.createDataFrame(EVENT_ROWS, EVENTS)
    got = events.transform(dims.with_customer_key(dim_customer))
    v1 = sk_of(dim_customer, "C1", "2024-01-01")
    v2 = sk_of(dim_customer, "C1", "2024-03-01")
    v3 = sk_of(dim_customer, "C1", "2024-06-01")
    c2 = sk_of(dim_customer, "C2", "2024-02-01")
    expected = {
        "before_first": v1,
        "at_first_start": v1,
        "inside_v1": v1,
        "at_v2_start": v2,
        "inside_v2": v2,
        "at_v3_start": v3,
        "after_v3": v3,
        "no_time": v3,
        "single_version_before": c2,
        "absent_id": -1,
        "null_id": -1,
    }
    assert {r.event_id: r.customer_sk for r in got.collect()} == expected
    assert got.columns == [*events.columns, "customer_sk"]
    dims.check_customer_keys(got, dim_customer)


def test_check_customer_keys_rejects_a_lookup_of_the_current_version(spark, dim_customer):
    events = spark.createDataFrame(EVENT_ROWS, EVENTS)
    current = dim_customer.where("is_current AND customer_sk != -1").select(
        "customer_id", F.col("customer_sk").alias("_sk")
    )
    wrong = (
        events.join(current, "customer_id", "left")
        .withColumn("customer_sk", F.coalesce("_sk", F.lit(-1)))
        .drop("_sk")
    )
    with pytest.raises(AssertionError, match="wrong version.*inside|wrong version.*C1"):
        dims.check_customer_keys(wrong, dim_customer)


def test_lookups_refuse_missing_columns_and_an_existing_key(spark, dim_customer):
    events = spark.createDataFrame(EVENT_ROWS, EVENTS)
    with pytest.raises(ValueError, match="'order_ts'"):
        events.transform(dims.with_customer_key(dim_customer, at="order_ts"))
    with pytest.raises(ValueError, match="already has a column 'customer_sk'"):
        events.withColumn("customer_sk", F.lit(1)).transform(dims.with_customer_key(dim_customer))
    with pytest.raises(ValueError, match="dim_customer_df lacks column.*'is_current'"):
        dims.with_customer_key(dim_customer.drop("is_current"))


def test_with_product_key_gives_unknown_for_absent_and_null_ids(spark):
    dim = spark.createDataFrame(
        [(-1, None), (11, "P1"), (12, "P2")], "product_sk bigint, product_id string"
    )
    lines = spark.createDataFrame(
        [("L1", "P1"), ("L2", "P2"), ("L3", "P404"), ("L4", None), ("L5", "P1")],
        "line string, product_id string",
    )
    got = lines.transform(dims.with_product_key(dim))
    expected = spark.createDataFrame(
        [
            ("L1", "P1", 11),
            ("L2", "P2", 12),
            ("L3", "P404", -1),
            ("L4", None, -1),
            ("L5", "P1", 11),
        ],
        "line string, product_id string, product_sk bigint",
    )
    assertDataFrameEqual(got, expected)


def test_with_geography_key_normalizes_like_the_dimension(spark, geography):
    payments = spark.createDataFrame(
        [
            ("T1", "US", "New York"),
            ("T2", " us ", "  new   york"),
            ("T3", "GB", "LONDON"),
            ("T4", "FR", "Paris"),
            ("T5", None, "London"),
            ("T6", "GB", None),
        ],
        "transaction_id string, country string, town string",
    )
    got = {
        r.transaction_id: r.geography_sk
        for r in payments.transform(dims.with_geography_key(geography, city="town")).collect()
    }
    places = {(r.country, r.city): r.geography_sk for r in geography.collect()}
    ny, london = places[("US", "New York")], places[("GB", "London")]
    assert got == {"T1": ny, "T2": ny, "T3": london, "T4": -1, "T5": -1, "T6": -1}
    computed = payments.select(
        "transaction_id", dims.geography_key("country", "town").alias("geography_sk")
    )
    assert {r.transaction_id: r.geography_sk for r in computed.collect()} == {
        **got,
        "T4": spark.sql("SELECT xxhash64('FR', 'paris')").first()[0],
    }


# ------------------------------------------------------------------------------------------------
# Writing a dimension
# ------------------------------------------------------------------------------------------------
def test_save_dimension_writes_comments_and_refuses_duplicate_keys(spark, dim_customer):
    from lakehouse import DeltaTable

    dims.save_dimension(spark, dim_customer, dims.DIM_CUSTOMER)
    table = spark.table(dims.DIM_CUSTOMER)
    assertDataFrameEqual(table, dim_customer)
    detail = DeltaTable.forName(spark, dims.DIM_CUSTOMER).detail().first()
    assert detail["description"].startswith("Customer dimension, SCD Type 2")
    # The column comments are in the table's Delta log (the embedded reader does not surface
    # schema metadata through spark.table, so read the log's schema directly).
    log_schema = RsDeltaTable(delta_log.local_path(detail["location"])).schema().to_json()
    comments = {f["name"]: f["metadata"].get("comment") for f in json.loads(log_schema)["fields"]}
    assert comments["customer_sk"].startswith("Surrogate key of the version")
    assert all(comments.values()), comments

    doubled = dim_customer.unionByName(dim_customer.where("customer_id = 'C2'"))
    with pytest.raises(AssertionError, match="sharing a customer_sk.*C2"):
        dims.save_dimension(spark, doubled, dims.DIM_CUSTOMER)
    assert spark.table(dims.DIM_CUSTOMER).count() == dim_customer.count()  # left as it was
