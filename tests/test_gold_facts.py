"""Gold fact tables: grain, point-in-time keys, exact measures and the checks that catch a wrong
join, a wrong grain, a lost row, a dangling key or inexact money, on small explicit dimensions."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.gold import UNKNOWN_KEY, facts


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "gold_facts_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def d(text: str) -> Decimal:
    return Decimal(text)


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def ts(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour)


# ------------------------------------------------------------------------------------------------
# Small explicit dimensions and Silver inputs
# ------------------------------------------------------------------------------------------------
# C1 moved from Paris to Lyon on 1 March; C2's first version starts after its first order.
DIM_CUSTOMER = (
    "customer_sk long, customer_id string, city string, effective_start_date timestamp, "
    "effective_end_date timestamp, is_current boolean"
)
DIM_CUSTOMER_ROWS = [
    (11, "C1", "Paris", ts(1, 1, 0), ts(3, 1, 0), False),
    (12, "C1", "Lyon", ts(3, 1, 0), None, True),
    (21, "C2", "Boston", ts(2, 1, 0), None, True),
    (UNKNOWN_KEY, None, "Unknown", datetime(1900, 1, 1), None, True),
]
DIM_PRODUCT = "product_sk long, product_id string, unit_cost decimal(10,2)"
DIM_PRODUCT_ROWS = [
    (101, "P1", d("10.00")),
    (102, "P2", d("2.25")),
    (UNKNOWN_KEY, None, None),
]
DIM_GEOGRAPHY = "geography_sk long, country string, city string"
DIM_GEOGRAPHY_ROWS = [
    (201, "FR", "Paris"),
    (202, "FR", "Lyon"),
    (203, "US", "Boston"),
    (UNKNOWN_KEY, None, None),
]
DIM_DATE = "date_key int"
DIM_DATE_ROWS = [(k,) for k in (20260115, 20260210, 20260401, 20260505, UNKNOWN_KEY)]

ORDERS = (
    "order_id string, customer_id string, order_ts timestamp, status string, channel string, "
    "currency string, shipping_city string, country string, _ingestion_timestamp timestamp"
)
ORDERS_ROWS = [
    ("O1", "C1", ts(2, 10), "completed", "web", "EUR", "Paris", "FR", ts(7, 1)),
    ("O2", "C1", ts(4, 1), "shipped", "web", "EUR", " lyon ", "FR", ts(7, 1)),
    ("O3", "C2", ts(1, 15), "completed", "phone", "USD", "Boston", "US", ts(7, 1)),
    ("O4", "C9", ts(5, 5), "cancelled", "web", "USD", "Boston", "US", ts(7, 1)),  # orphan customer
]
ORDER_LINES = (
    "order_id string, line_number int, product_id string, quantity int, "
    "unit_price decimal(10,2), discount decimal(10,2), tax decimal(10,2), "
    "_ingestion_timestamp timestamp"
)
ORDER_LINES_ROWS = [
    ("O1", 1, "P1", 2, d("9.19"), d("0.00"), d("3.68"), ts(7, 1)),
    ("O1", 2, "P2", 1, d("2.06"), d("0.10"), d("0.39"), ts(7, 1)),
    ("O2", 1, "P1", 3, d("9.19"), d("2.75"), d("4.96"), ts(7, 1)),
    ("O3", 1, "P2", 3, d("2.25"), d("0.00"), d("0.54"), ts(7, 1)),
    ("O4", 1, "P9", 1, d("5.00"), d("0.00"), d("0.40"), ts(7, 1)),  # orphan product
    ("O5", 1, "P1", 1, d("9.99"), d("0.00"), d("0.80"), ts(7, 1)),  # its order is unknown
]


@pytest.fixture(scope="module")
def dims(spark):
    return {
        "customer": spark.createDataFrame(DIM_CUSTOMER_ROWS, DIM_CUSTOMER),
        "product": spark.createDataFrame(DIM_PRODUCT_ROWS, DIM_PRODUCT),
        "geography": spark.createDataFrame(DIM_GEOGRAPHY_ROWS, DIM_GEOGRAPHY),
        "date": spark.createDataFrame(DIM_DATE_ROWS, DIM_DATE),
    }


@pytest.fixture(scope="module")
def silver(spark):
    return {
        "orders": spark.createDataFrame(ORDERS_ROWS, ORDERS),
        "order_lines": spark.createDataFrame(ORDER_LINES_ROWS, ORDER_LINES),
    }


def ri_dimensions(dims, keys=("date_key", "customer_sk", "product_sk", "geography_sk")):
    by_key = {
        "date_key": dims["date"],
        "customer_sk": dims["customer"],
        "product_sk": dims["product"],
        "geography_sk": dims["geography"],
    }
    return {k: by_key[k] for k in keys}


@pytest.fixture(scope="module")
def fact_sales(silver, dims):
    return facts.fact_sales_df(
        silver["order_lines"],
        silver["orders"],
        dim_customer_df=dims["customer"],
        dim_product_df=dims["product"],
        dim_geography_df=dims["geography"],
    ).cache()


# ------------------------------------------------------------------------------------------------
# Columns: date key, exchange rates
# ------------------------------------------------------------------------------------------------
def test_date_key_is_yyyymmdd_and_unknown_when_null(spark):
    df = spark.createDataFrame(
        [(datetime(2026, 1, 1, 0, 0),), (datetime(2026, 12, 31, 23, 59, 59),), (None,)],
        "ts timestamp",
    )
    keys = [r.k for r in df.select(facts.date_key("ts").alias("k")).collect()]
    assert keys == [20260101, 20261231, UNKNOWN_KEY]
    assert df.select(facts.date_key("ts")).schema[0].dataType.simpleString() == "int"


def test_fixed_rates_are_the_generators():
    from lakehouse.datagen._reference import FX_PER_USD

    assert facts.FX_PER_USD == {code: Decimal(str(rate)) for code, rate in FX_PER_USD.items()}


def test_to_usd_rounds_half_up_and_leaves_unknown_currencies_null(spark):
    df = spark.createDataFrame(
        [
            (d("0.92"), "EUR"),
            (d("1.00"), "GBP"),  # 1.2658... -> 1.27
            (d("155"), "JPY"),
            (d("0.05"), "CAD"),  # 0.0364... -> 0.04
            (d("10.00"), "XXX"),
            (d("10.00"), None),
        ],
        "amount decimal(12,2), currency string",
    )
    result = [r.usd for r in df.select(facts.to_usd("amount", "currency").alias("usd")).collect()]
    assert result == [d("1.00"), d("1.27"), d("1.00"), d("0.04"), None, None]


# ------------------------------------------------------------------------------------------------
# fact_sales: the right rows
# ------------------------------------------------------------------------------------------------
def expected_sales_row(line, order, customer_sk, product_sk, geography_sk, unit_cost):
    """One fact_sales row computed by hand with Python's Decimal."""
    order_id, line_number, _, quantity, unit_price, discount, tax, _ = line
    currency = order[5] if order else None
    rate = facts.FX_PER_USD.get(currency)
    net = quantity * unit_price - discount
    total = net + tax
    cost = quantity * cents(unit_cost * rate) if unit_cost is not None and rate else None
    profit = net - cost if cost is not None else None

    def usd(x):
        return cents(x / rate) if x is not None and rate else None

    order_ts = order[2] if order else None
    date_key = int(order_ts.strftime("%Y%m%d")) if order_ts else UNKNOWN_KEY
    return (
        order_id,
        line_number,
        date_key,
        customer_sk,
        product_sk,
        geography_sk,
        order_ts,
        order[3] if order else None,
        order[4] if order else None,
        currency,
        quantity,
        unit_price,
        discount,
        net,
        tax,
        total,
        cost,
        profit,
        usd(net),
        usd(total),
        usd(cost),
        usd(profit),
    )


def test_fact_sales_has_one_row_per_line_with_keys_in_force_and_exact_measures(spark, fact_sales):
    orders = {o[0]: o for o in ORDERS_ROWS}
    lines = {(r[0], r[1]): r for r in ORDER_LINES_ROWS}
    unknown = UNKNOWN_KEY
    expected = [
        # C1 before the move: version 11, shipped to Paris
        expected_sales_row(lines["O1", 1], orders["O1"], 11, 101, 201, d("10.00")),
        expected_sales_row(lines["O1", 2], orders["O1"], 11, 102, 201, d("2.25")),
        # C1 after the move: version 12; " lyon " is normalized like the dimension
        expected_sales_row(lines["O2", 1], orders["O2"], 12, 101, 202, d("10.00")),
        # before C2's first version: the first version
        expected_sales_row(lines["O3", 1], orders["O3"], 21, 102, 203, d("2.25")),
        # unknown customer and product: -1, cost unknown
        expected_sales_row(lines["O4", 1], orders["O4"], unknown, unknown, 203, None),
        # the order never reached Silver: every order key unknown, no currency
        expected_sales_row(lines["O5", 1], None, unknown, 101, unknown, d("10.00")),
    ]
    assert fact_sales.columns == facts.FACT_SALES_SCHEMA.fieldNames()
    assertDataFrameEqual(fact_sales, spark.createDataFrame(expected, facts.FACT_SALES_SCHEMA))
    # spot values worked out by hand: EUR cost of P1 = 2 * round(10.00 * 0.92, 2)
    o1 = fact_sales.where("order_id = 'O1' AND line_number = 1").first()
    assert (o1.net_amount, o1.total, o1.cost, o1.profit) == (
        d("18.38"),
        d("22.06"),
        d("18.40"),
        d("-0.02"),
    )
    assert o1.total_usd == d("23.98")  # 22.06 / 0.92 = 23.978...


def test_fact_sales_passes_every_check(fact_sales, silver, dims):
    rows = facts.check_grain(
        fact_sales, facts.SALES_GRAIN, expected_rows=len(ORDER_LINES_ROWS), name="fact_sales"
    )
    assert rows == len(ORDER_LINES_ROWS)
    unknown = facts.check_referential_integrity(fact_sales, ri_dimensions(dims), name="fs")
    assert unknown == {"date_key": 1, "customer_sk": 2, "product_sk": 1, "geography_sk": 1}
    reconciled = facts.check_sales_reconciliation(
        fact_sales, silver["order_lines"], silver["orders"]
    )
    assert [(r.currency, r.fact_lines, r.fact_total) for r in reconciled] == [
        ("EUR", 3, d("22.06") + d("2.35") + d("29.78")),
        ("USD", 2, d("7.29") + d("5.40")),
        (None, 1, d("10.79")),
    ]
    assert facts.check_sales_measures(fact_sales) == len(ORDER_LINES_ROWS)
    # two lines of C1 point at the version that is no longer current
    assert facts.check_point_in_time_keys(fact_sales, dims["customer"], at="order_ts") == 2


# ------------------------------------------------------------------------------------------------
# Wrong answers the checks catch
# ------------------------------------------------------------------------------------------------
def test_join_on_customer_id_alone_fans_out_and_fails_the_grain(silver, dims):
    fanned_out = facts.sales_lines(silver["order_lines"], silver["orders"]).join(
        dims["customer"].select("customer_id", "customer_sk"), "customer_id", "left"
    )
    with pytest.raises(AssertionError, match=r"not at its grain.*order_id='O1'.*rows_per_key=2"):
        facts.check_grain(fanned_out, facts.SALES_GRAIN, name="fact_sales")


def test_join_on_the_current_version_fails_the_point_in_time_check(fact_sales, dims):
    current = dims["customer"].where("is_current AND customer_id = 'C1'").first().customer_sk
    rewritten = fact_sales.withColumn(
        "customer_sk", F.when(F.col("customer_sk") == 11, current).otherwise(F.col("customer_sk"))
    )
    facts.check_grain(rewritten, facts.SALES_GRAIN)  # the grain is fine: only the version is wrong
    with pytest.raises(AssertionError, match="2 row.* not in force at order_ts"):
        facts.check_point_in_time_keys(rewritten, dims["customer"], at="order_ts")


def test_inner_join_drops_orphan_lines_and_fails_the_reconciliation(silver, dims):
    inner = (
        silver["order_lines"]
        .select(*facts.ORDER_LINE_COLUMNS)
        .join(silver["orders"].select(*facts.ORDER_COLUMNS), "order_id", "inner")
        .transform(facts.sales_keys(dims["customer"], dims["product"], dims["geography"]))
        .transform(facts.sales_measures(dims["product"]))
        .transform(facts.usd_amounts(*facts.SALES_MEASURES))
        .transform(facts.conform(facts.FACT_SALES_SCHEMA))
    )
    with pytest.raises(AssertionError, match=r"no order: 0 lines .* vs 1 totalling 10.79"):
        facts.check_sales_reconciliation(inner, silver["order_lines"], silver["orders"])
    with pytest.raises(AssertionError, match="has 5 rows; its source has 6"):
        facts.check_grain(inner, facts.SALES_GRAIN, expected_rows=len(ORDER_LINES_ROWS))


def test_a_key_absent_from_its_dimension_fails_referential_integrity(fact_sales, dims):
    dangling = fact_sales.withColumn(
        "product_sk", F.when(F.col("product_sk") == 102, 999).otherwise(F.col("product_sk"))
    )
    with pytest.raises(
        AssertionError,
        match=r"2 row\(s\) have a product_sk absent from the product_sk dimension.*999",
    ):
        facts.check_referential_integrity(dangling, {"product_sk": dims["product"]})


def test_referential_integrity_names_the_dimension_table(fact_sales, dims):
    dims["product"].where("product_sk <> 102").createOrReplaceTempView("ri_products")
    absent = r"product_sk absent from ri_products, e.g. \['102'\]"
    with pytest.raises(AssertionError, match=absent):
        facts.check_referential_integrity(
            fact_sales, {"product_sk": "ri_products"}, name="fact_sales"
        )


def test_a_null_key_fails_referential_integrity(fact_sales, dims):
    nulled = fact_sales.withColumn(
        "date_key", F.when(F.col("date_key") == -1, None).otherwise(F.col("date_key"))
    )
    with pytest.raises(AssertionError, match=r"1 row\(s\) have a date_key absent.*some are null"):
        facts.check_referential_integrity(nulled, ri_dimensions(dims, ["date_key"]))


def test_float_measures_fail_the_exact_checks(fact_sales, silver):
    as_double = fact_sales.withColumn("total", F.col("total").cast("double"))
    with pytest.raises(AssertionError, match=r"total is double: money must be an exact DECIMAL"):
        facts.check_sales_reconciliation(as_double, silver["order_lines"], silver["orders"])
    measured_in_double = fact_sales.withColumn(
        "profit", (F.col("net_amount").cast("double") - F.col("cost").cast("double"))
    )
    with pytest.raises(AssertionError, match="profit is double"):
        facts.check_sales_measures(measured_in_double)


def test_a_wrong_formula_fails_the_exact_totals(fact_sales, silver):
    no_tax = fact_sales.withColumn("total", F.col("net_amount"))
    with pytest.raises(AssertionError, match=r"EUR: 3 lines totalling 45.16 in the fact vs 3"):
        facts.check_sales_reconciliation(no_tax, silver["order_lines"], silver["orders"])
    with pytest.raises(AssertionError, match=r"6 row\(s\) break total = net_amount \+ tax"):
        facts.check_sales_measures(no_tax)
    profit_with_tax = fact_sales.withColumn("profit", F.col("total") - F.col("cost"))
    with pytest.raises(AssertionError, match=r"4 row\(s\) break profit = net_amount - cost"):
        facts.check_sales_measures(profit_with_tax)


def test_cost_is_converted_then_rounded_per_unit(spark, fact_sales, dims):
    assert facts.check_sales_cost(fact_sales, dims["product"]) == len(ORDER_LINES_ROWS)
    lines = "product_sk long, currency string, quantity int, cost decimal(12,2)"

    def cost_of(*rows):
        return spark.createDataFrame(list(rows), lines)

    # P2 costs 2.25 USD; in GBP one unit is round(2.25 * 0.79, 2) = 1.78, so 3 units 5.34
    facts.check_sales_cost(
        cost_of((102, "GBP", 3, d("5.34")), (-1, "GBP", 1, None)), dims["product"]
    )
    with pytest.raises(AssertionError, match="convert it to the order's currency"):
        facts.check_sales_cost(cost_of((102, "GBP", 3, d("6.75"))), dims["product"])
    with pytest.raises(AssertionError, match="round the line, not the unit"):  # 5.3325
        facts.check_sales_cost(cost_of((102, "GBP", 3, d("5.33"))), dims["product"])
    with pytest.raises(AssertionError, match=r"1 line\(s\) break cost"):
        facts.check_sales_cost(cost_of((-1, "GBP", 1, d("0.00"))), dims["product"])
    as_double = fact_sales.withColumn("cost", F.col("cost").cast("double"))
    with pytest.raises(AssertionError, match="cost is double"):
        facts.check_sales_cost(as_double, dims["product"])


# ------------------------------------------------------------------------------------------------
# fact_payments
# ------------------------------------------------------------------------------------------------
PAYMENTS = (
    "transaction_id string, event_ts timestamp, customer_id string, merchant_id string, "
    "merchant_category string, amount decimal(12,2), currency string, card_network string, "
    "channel string, country string, city string, status string, decline_reason string, "
    "fraud_score double, is_fraud boolean"
)
PAYMENTS_ROWS = [
    ("T1", ts(2, 1), "C1", "M1", "grocery", d("9.20"), "EUR", "visa", "pos", "FR", "Paris",
     "approved", None, 0.01, False),
    ("T2", ts(3, 2), "C1", "M2", "travel", d("100.00"), "EUR", "amex", "online", "US", "Boston",
     "declined", "suspected_fraud", 0.97, True),
    ("T3", ts(5, 5), "C9", "M1", "grocery", d("1.00"), "GBP", "visa", "pos", "GB", "London",
     "approved", None, 0.2, False),
]  # fmt: skip


@pytest.fixture(scope="module")
def payments(spark):
    return spark.createDataFrame(PAYMENTS_ROWS, PAYMENTS)


def test_fact_payments_keeps_every_attempt_with_keys_in_force(spark, payments, dims):
    fact = facts.fact_payments_df(
        payments, dim_customer_df=dims["customer"], dim_geography_df=dims["geography"]
    )
    got = fact.select(
        "transaction_id", "date_key", "customer_sk", "geography_sk", "amount_usd", "is_approved"
    )
    expected = [
        ("T1", 20260201, 11, 201, d("10.00"), True),
        ("T2", 20260302, 12, 203, d("108.70"), False),  # 100 / 0.92 = 108.695...
        ("T3", 20260505, UNKNOWN_KEY, UNKNOWN_KEY, d("1.27"), True),  # London is not in the dim
    ]
    assertDataFrameEqual(
        got,
        spark.createDataFrame(
            expected,
            "transaction_id string, date_key int, customer_sk long, geography_sk long, "
            "amount_usd decimal(12,2), is_approved boolean",
        ),
    )
    assert fact.columns == facts.FACT_PAYMENTS_SCHEMA.fieldNames()
    assert facts.check_grain(fact, facts.PAYMENTS_GRAIN, expected_rows=3) == 3
    rows = facts.check_payments_reconciliation(fact, payments)
    assert [(r.currency, r.fact_rows, r.fact_amount) for r in rows] == [
        ("EUR", 2, d("109.20")),
        ("GBP", 1, d("1.00")),
    ]
    assert facts.check_point_in_time_keys(fact, dims["customer"], at="event_ts") == 1


def test_declined_payments_dropped_fail_the_payments_reconciliation(payments, dims):
    approved_only = facts.fact_payments_df(
        payments.where("status = 'approved'"),
        dim_customer_df=dims["customer"],
        dim_geography_df=dims["geography"],
    )
    with pytest.raises(AssertionError, match=r"EUR: 1 attempts for 9.20 in the fact vs 2"):
        facts.check_payments_reconciliation(approved_only, payments)


# ------------------------------------------------------------------------------------------------
# Errors, and the table itself
# ------------------------------------------------------------------------------------------------
def test_helpful_errors(spark, silver, dims):
    with pytest.raises(ValueError, match="the fact lacks column.*'total'"):
        silver["orders"].transform(facts.conform(facts.FACT_SALES_SCHEMA))
    with pytest.raises(ValueError, match="at least one amount column"):
        facts.usd_amounts()
    with pytest.raises(ValueError, match="unknown fact table 'gold.fact_x'"):
        facts.create_fact_table(spark, "gold.fact_x")
    with pytest.raises(ValueError, match="orders_df lacks column.*'currency'"):
        facts.sales_lines(silver["order_lines"], silver["orders"].drop("currency"))
    with pytest.raises(ValueError, match="map at least one fact key"):
        facts.check_referential_integrity(silver["orders"], {})


def test_write_fact_replaces_rows_and_keeps_the_comments(spark, fact_sales):
    from lakehouse import DeltaTable

    facts.write_fact(spark, fact_sales, facts.FACT_SALES)
    facts.write_fact(spark, fact_sales, facts.FACT_SALES)  # a rerun replaces, never appends
    table = spark.table(facts.FACT_SALES)
    assertDataFrameEqual(table, fact_sales)
    detail = DeltaTable.forName(spark, facts.FACT_SALES).detail().first()
    assert detail["description"] == facts.COMMENTS[facts.FACT_SALES]


def test_check_same_rows_shows_both_sides(spark, fact_sales):
    facts.check_same_rows(fact_sales, fact_sales, ["order_id", "customer_sk"], name="same")
    shifted = fact_sales.withColumn(
        "customer_sk", F.when(F.col("customer_sk") == 12, 11).otherwise(F.col("customer_sk"))
    )
    with pytest.raises(
        AssertionError,
        match=r"it should not: order_id='O2', customer_sk=11\. Rows it lacks: order_id='O2', "
        r"customer_sk=12\.",
    ):
        facts.check_same_rows(shifted, fact_sales, ["order_id", "customer_sk"], name="shifted")
