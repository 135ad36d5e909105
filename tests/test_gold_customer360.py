"""Customer 360 on small explicit inputs shaped like gold.dim_customer, gold.fact_sales,
gold.fact_payments, silver.web_sessions and silver.support_tickets: one row per current
customer, zeros for no activity, recency from a fixed as-of date, and checks that catch a
fan-out join, a missing status filter, a wrong grain and null counts."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.gold import customer360 as c360

AS_OF = date(2026, 7, 1)
D = Decimal

DIM_CUSTOMER_DDL = (
    "customer_sk bigint, customer_id string, first_name string, last_name string, "
    "email string, segment string, city string, country string, signup_date date, "
    "marketing_opt_in boolean, effective_start_date timestamp, effective_end_date timestamp, "
    "is_current boolean"
)
DIM_CUSTOMER = [
    # C1 moved from Boston to Paris: two versions, the current one is sk 12
    (11, "C1", "Ana", "Lopez", "ana@x.com", "consumer", "Boston", "US", date(2026, 1, 10), True,
     datetime(2026, 1, 10), datetime(2026, 6, 10), False),
    (12, "C1", "Ana", "Lopez", "ana@x.com", "vip", "Paris", "FR", date(2026, 1, 10), True,
     datetime(2026, 6, 10), None, True),
    # C2: a customer with no activity at all, and no signup date
    (21, "C2", "Bo", "Chen", None, "corporate", "Tokyo", "JP", None, False,
     datetime(2026, 2, 1), None, True),
    (31, "C3", "Cy", "Diaz", "cy@x.com", "small_business", "Madrid", "ES", date(2025, 7, 1),
     None, datetime(2025, 7, 1), None, True),
    # the unknown member: what facts of ids absent from the CRM point to
    (-1, None, "Unknown", "Unknown", "Unknown", "Unknown", "Unknown", None, None, None,
     datetime(1900, 1, 1), None, True),
]  # fmt: skip

SALES_DDL = (
    "order_id string, line_number int, customer_sk bigint, date_key int, "
    "status string, total_usd decimal(12,2)"
)
SALES = [
    ("O1", 1, 11, 20260601, "completed", D("10.00")),  # C1's old version
    ("O1", 2, 11, 20260601, "completed", D("5.50")),
    ("O2", 1, 12, 20260615, "cancelled", D("20.00")),
    ("O3", 1, 12, 20260620, "processing", D("4.50")),
    ("O4", 1, 31, 20260301, "returned", D("100.00")),  # C3: an order, but no revenue
    ("O9", 1, -1, 20260610, "completed", D("7.00")),  # an id the CRM does not know
    ("O9", 2, -1, 20260610, "completed", D("1.00")),
    ("O8", 1, -1, 20260611, "returned", D("3.00")),
]

PAYMENTS_DDL = (
    "transaction_id string, customer_sk bigint, amount_usd decimal(12,2), "
    "is_approved boolean, is_fraud boolean"
)
PAYMENTS = [
    ("P1", 11, D("30.00"), True, False),
    ("P2", 12, D("12.00"), False, True),
    ("P3", 12, D("8.00"), True, False),
    ("P4", -1, D("50.00"), True, False),
    ("P5", -1, D("9.00"), False, False),
]

SESSIONS_DDL = "session_id string, customer_id string, session_start timestamp, converted boolean"
SESSIONS = [
    ("S1", "C1", datetime(2026, 6, 25, 10, 0), True),
    ("S2", "C1", datetime(2026, 5, 31, 23, 59), False),  # just outside the 30 days
    ("S3", "C1", datetime(2026, 6, 1, 0, 0), False),  # first day of the 30
    ("S4", None, datetime(2026, 6, 2, 8, 0), True),  # anonymous visitor
    ("S5", "C9", datetime(2026, 6, 3, 8, 0), False),  # not a CRM customer
    ("S6", "C3", datetime(2026, 6, 30, 23, 59), False),
]

TICKETS_DDL = (
    "ticket_id string, customer_id string, status string, created_at timestamp, is_deleted boolean"
)
TICKETS = [
    ("T1", "C1", "open", datetime(2026, 6, 10, 9, 0), False),
    ("T2", "C1", "closed", datetime(2026, 6, 20, 9, 0), True),  # soft-deleted: not counted
    ("T3", "C1", "resolved", datetime(2026, 5, 1, 9, 0), False),
    ("T4", "C3", "waiting_on_customer", datetime(2026, 4, 1, 9, 0), False),
    ("T5", "C9", "open", datetime(2026, 4, 2, 9, 0), False),
    ("T6", "C3", "in_progress", datetime(2026, 4, 3, 9, 0), None),  # unknown flag: kept
]


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "customer360_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


@pytest.fixture(scope="module")
def inputs(spark):
    return {
        "dim_customer": spark.createDataFrame(DIM_CUSTOMER, DIM_CUSTOMER_DDL),
        "fact_sales": spark.createDataFrame(SALES, SALES_DDL),
        "fact_payments": spark.createDataFrame(PAYMENTS, PAYMENTS_DDL),
        "web_sessions": spark.createDataFrame(SESSIONS, SESSIONS_DDL),
        "support_tickets": spark.createDataFrame(TICKETS, TICKETS_DDL),
    }


def build(inputs, as_of=AS_OF):
    return c360.customer_360(
        inputs["dim_customer"],
        inputs["fact_sales"],
        inputs["fact_payments"],
        inputs["web_sessions"],
        inputs["support_tickets"],
        as_of=as_of,
    )


@pytest.fixture(scope="module")
def c360_df(inputs):
    return build(inputs).cache()


@pytest.fixture(scope="module")
def crm_df(spark):
    return spark.createDataFrame([("C1",), ("C2",), ("C3",)], "customer_id string")


EXPECTED = [
    {
        "customer_id": "C1", "customer_sk": 12, "first_name": "Ana", "last_name": "Lopez",
        "email": "ana@x.com", "segment": "vip", "city": "Paris", "country": "FR",
        "signup_date": date(2026, 1, 10), "tenure_days": 172, "marketing_opt_in": True,
        # O1 (2 lines), O2 cancelled, O3 processing: revenue = 10.00 + 5.50 + 4.50 over 2 orders
        "orders_count": 3, "cancelled_returned_orders": 1, "lifetime_value_usd": D("20.00"),
        "avg_order_value_usd": D("10.00"), "first_order_date": date(2026, 6, 1),
        "last_order_date": date(2026, 6, 20), "days_since_last_order": 11,
        "payment_attempts": 3, "approved_amount_usd": D("38.00"), "approval_rate": 0.6667,
        "declined_payments": 1, "fraud_flagged_payments": 1,
        "web_sessions": 3, "web_sessions_last_30d": 2, "last_session_date": date(2026, 6, 25),
        "days_since_last_visit": 6, "web_conversion_rate": 0.3333,
        "support_tickets": 2, "open_support_tickets": 1, "last_ticket_date": date(2026, 6, 10),
        "as_of_date": AS_OF,
    },
    {
        "customer_id": "C2", "customer_sk": 21, "first_name": "Bo", "last_name": "Chen",
        "email": None, "segment": "corporate", "city": "Tokyo", "country": "JP",
        "signup_date": None, "tenure_days": None, "marketing_opt_in": False,
        "orders_count": 0, "cancelled_returned_orders": 0, "lifetime_value_usd": D("0.00"),
        "avg_order_value_usd": None, "first_order_date": None, "last_order_date": None,
        "days_since_last_order": None,
        "payment_attempts": 0, "approved_amount_usd": D("0.00"), "approval_rate": None,
        "declined_payments": 0, "fraud_flagged_payments": 0,
        "web_sessions": 0, "web_sessions_last_30d": 0, "last_session_date": None,
        "days_since_last_visit": None, "web_conversion_rate": None,
        "support_tickets": 0, "open_support_tickets": 0, "last_ticket_date": None,
        "as_of_date": AS_OF,
    },
    {
        "customer_id": "C3", "customer_sk": 31, "first_name": "Cy", "last_name": "Diaz",
        "email": "cy@x.com", "segment": "small_business", "city": "Madrid", "country": "ES",
        "signup_date": date(2025, 7, 1), "tenure_days": 365, "marketing_opt_in": None,
        "orders_count": 1, "cancelled_returned_orders": 1, "lifetime_value_usd": D("0.00"),
        "avg_order_value_usd": None, "first_order_date": date(2026, 3, 1),
        "last_order_date": date(2026, 3, 1), "days_since_last_order": 122,
        "payment_attempts": 0, "approved_amount_usd": D("0.00"), "approval_rate": None,
        "declined_payments": 0, "fraud_flagged_payments": 0,
        "web_sessions": 1, "web_sessions_last_30d": 1, "last_session_date": date(2026, 6, 30),
        "days_since_last_visit": 1, "web_conversion_rate": 0.0,
        "support_tickets": 2, "open_support_tickets": 2, "last_ticket_date": date(2026, 4, 3),
        "as_of_date": AS_OF,
    },
]  # fmt: skip


def test_one_row_per_current_customer_with_every_source(spark, c360_df):
    expected = spark.createDataFrame(
        [tuple(row[c] for c in c360.COLUMN_NAMES) for row in EXPECTED],
        c360.CUSTOMER_360_SCHEMA,
    )
    assert c360_df.columns == list(c360.COLUMN_NAMES)
    assertDataFrameEqual(c360_df, expected)


def test_schema_matches_the_documented_columns(c360_df):
    assert [(f.name, f.dataType) for f in c360_df.schema] == [
        (c.name, c.data_type) for c in c360.COLUMNS
    ]
    assert all(f.metadata["comment"] for f in c360.CUSTOMER_360_SCHEMA)
    # what the documentation promises for no activity is what the build does
    assert [c.name for c in c360.COLUMNS if c.description.endswith("0 when none")] == list(
        c360.ZERO_COLUMNS
    )
    markdown = c360.columns_markdown()
    for column in c360.COLUMNS:
        assert f"| `{column.name}` | {column.data_type.simpleString()} |" in markdown
        assert column.description in markdown


def test_the_same_inputs_give_the_same_rows(inputs, c360_df):
    assertDataFrameEqual(build(inputs), c360_df)


def test_as_of_moves_recency_and_windows_only(inputs, c360_df):
    later = build(inputs, as_of=date(2026, 7, 31)).where("customer_id = 'C1'").first()
    assert later.days_since_last_order == 41 and later.days_since_last_visit == 36
    assert later.web_sessions_last_30d == 0 and later.tenure_days == 202
    assert later.lifetime_value_usd == D("20.00") and later.web_sessions == 3


def test_checks_pass_on_the_right_answer(c360_df, inputs, crm_df):
    assert c360.check_one_row_per_customer(c360_df, crm_df) == 3
    c360.check_no_null_counts(c360_df)
    assert c360.check_lifetime_value(c360_df, inputs["fact_sales"]) == D("20.00")


def test_joining_facts_before_aggregating_inflates_lifetime_value(c360_df, inputs):
    """The classic mistake: join lines and payments to the customer, then aggregate. Each of
    C1's order lines is repeated once per payment attempt, so the sum triples."""
    ids = inputs["dim_customer"].select("customer_sk", "customer_id")
    lines = inputs["fact_sales"].join(ids, "customer_sk").drop("customer_sk")
    payments = inputs["fact_payments"].join(ids, "customer_sk").drop("customer_sk")
    fanned_out = (
        c360_df.select("customer_id")
        .join(lines, "customer_id", "left")
        .join(payments, "customer_id", "left")
        .groupBy("customer_id")
        .agg(
            F.coalesce(
                F.sum(F.when(~F.col("status").isin("cancelled", "returned"), F.col("total_usd"))),
                F.lit(0),
            ).alias("lifetime_value_usd")
        )
    )
    assert fanned_out.where("customer_id = 'C1'").first().lifetime_value_usd == D("60.00")
    with pytest.raises(AssertionError, match=r"60\.00 USD.*20\.00 USD.*3\.00x.*BEFORE joining"):
        c360.check_lifetime_value(fanned_out, inputs["fact_sales"])


def test_lifetime_value_check_catches_a_missing_status_filter(c360_df, inputs):
    every_line = (
        inputs["fact_sales"]
        .join(inputs["dim_customer"].select("customer_sk", "customer_id"), "customer_sk")
        .where("customer_sk != -1")
        .groupBy("customer_id")
        .agg(F.sum("total_usd").alias("lifetime_value_usd"))
    )
    with pytest.raises(
        AssertionError, match="140.00 USD.*counts the cancelled and returned orders"
    ):
        c360.check_lifetime_value(every_line, inputs["fact_sales"])


def test_lifetime_value_check_catches_orders_of_the_current_version_only(spark, inputs):
    """Resolving lines to customers through the CURRENT version only loses C1's order O1,
    which the fact attached to the version in force then (sk 11)."""
    current_only = (
        inputs["fact_sales"]
        .join(
            inputs["dim_customer"]
            .where("is_current AND customer_sk != -1")
            .select("customer_sk", "customer_id"),
            "customer_sk",
        )
        .where(~F.col("status").isin("cancelled", "returned"))
        .groupBy("customer_id")
        .agg(F.sum("total_usd").alias("lifetime_value_usd"))
    )
    with pytest.raises(AssertionError, match="4.50 USD.*20.00 USD.*EVERY version's customer_sk"):
        c360.check_lifetime_value(current_only, inputs["fact_sales"])


def test_grain_check_catches_every_version_and_inner_joins(inputs, c360_df, crm_df):
    every_version = inputs["dim_customer"].where("customer_sk != -1").select("customer_id")
    with pytest.raises(AssertionError, match="4 rows for 3 customers.*current version"):
        c360.check_one_row_per_customer(every_version, crm_df)
    inner = c360_df.join(
        inputs["fact_payments"].select("customer_sk").distinct(), "customer_sk"
    )  # only customers who paid
    with pytest.raises(AssertionError, match="3 customers of silver.customers: 2 are missing"):
        c360.check_one_row_per_customer(inner, crm_df)
    with_unknown = inputs["dim_customer"].where("is_current").select("customer_id")
    with pytest.raises(AssertionError, match="null customer_id"):
        c360.check_one_row_per_customer(with_unknown, crm_df)


def test_null_count_check_catches_left_joins_without_zeros(c360_df):
    not_filled = c360_df.withColumn(
        "web_sessions", F.when(F.col("web_sessions") > 0, F.col("web_sessions"))
    )
    with pytest.raises(AssertionError, match=r"\{'web_sessions': 1\}.*coalesce"):
        c360.check_no_null_counts(not_filled)


def test_summaries_leave_the_unknown_member_out(inputs):
    sales = c360.sales_summary(inputs["fact_sales"], inputs["dim_customer"])
    assert sorted(r.customer_id for r in sales.collect()) == ["C1", "C3"]
    payments = c360.payments_summary(inputs["fact_payments"], inputs["dim_customer"])
    assert [r.customer_id for r in payments.collect()] == ["C1"]


def test_activity_outside_crm_counts_what_the_360_leaves_out(spark, inputs, crm_df):
    outside = c360.activity_outside_crm(
        inputs["fact_sales"],
        inputs["fact_payments"],
        inputs["web_sessions"],
        inputs["support_tickets"],
        crm_df,
    )
    expected = spark.createDataFrame(
        [
            ("gold.fact_sales lines", 3, D("8.00")),
            ("gold.fact_payments attempts", 2, D("50.00")),
            ("silver.web_sessions", 1, None),
            ("silver.support_tickets", 1, None),
        ],
        "source string, rows long, amount_usd decimal(18,2)",
    )
    assertDataFrameEqual(outside, expected)


def test_latest_event_date_is_the_day_after_the_latest_event(spark):
    orders = spark.createDataFrame(
        [(datetime(2026, 6, 30, 23, 59, 59),), (None,)], "order_ts timestamp"
    )
    tickets = spark.createDataFrame(
        [(datetime(2026, 5, 1), datetime(2026, 6, 2))], "created_at timestamp, updated_at timestamp"
    )
    frames = {"orders": (orders, ["order_ts"]), "tickets": (tickets, ["created_at", "updated_at"])}
    assert c360.latest_event_date(frames) == date(2026, 7, 1)
    empty = spark.createDataFrame([], "order_ts timestamp")
    with pytest.raises(ValueError, match="no event in orders.*ensure_silver_inputs"):
        c360.latest_event_date({"orders": (empty, ["order_ts"])})
    with pytest.raises(ValueError, match="orders lacks the column.*'event_ts'"):
        c360.latest_event_date({"orders": (orders, ["event_ts"])})
    with pytest.raises(ValueError, match="at least one DataFrame"):
        c360.latest_event_date({})
    with pytest.raises(ValueError, match="orders: name at least one event timestamp column"):
        c360.latest_event_date({"orders": (orders, [])})


def test_inputs_without_the_contract_columns_are_rejected(inputs):
    with pytest.raises(ValueError, match="fact_sales_df lacks the column.*'status'"):
        c360.sales_summary(inputs["fact_sales"].drop("status"), inputs["dim_customer"])
    with pytest.raises(ValueError, match="dim_customer_df lacks.*'is_current'.*gold.dim_customer"):
        c360.current_profiles(inputs["dim_customer"].drop("is_current"))
    with pytest.raises(ValueError, match="web_sessions_df lacks.*'converted'"):
        c360.web_summary(inputs["web_sessions"].drop("converted"), AS_OF)
    with pytest.raises(ValueError, match="summaries lack 'last_ticket_date'.*support_summary"):
        c360.assemble(
            c360.current_profiles(inputs["dim_customer"]),
            [
                c360.sales_summary(inputs["fact_sales"], inputs["dim_customer"]),
                c360.payments_summary(inputs["fact_payments"], inputs["dim_customer"]),
                c360.web_summary(inputs["web_sessions"], AS_OF),
            ],
            as_of=AS_OF,
        )


def test_saved_table_carries_the_comments_and_ensure_keeps_it(spark, c360_df):
    from lakehouse import DeltaTable

    assert c360.save_customer_360(spark, c360_df) == c360.CUSTOMER_360
    assertDataFrameEqual(spark.table(c360.CUSTOMER_360), c360_df)
    assert c360.column_comments(spark) == {c.name: c.description for c in c360.COLUMNS}
    detail = DeltaTable.forName(spark, c360.CUSTOMER_360).detail().first()
    assert detail.description == c360.TABLE_COMMENT
    version = DeltaTable.forName(spark, c360.CUSTOMER_360).history(1).first().version
    # the table exists: ensure neither rebuilds it nor needs the raw sources
    assert c360.ensure_customer_360(spark, raw_root=None) == c360.CUSTOMER_360
    assert DeltaTable.forName(spark, c360.CUSTOMER_360).history(1).first().version == version


# C1's Silver rows, the same activity the facts above hold (O3 and P3 in EUR at 0.92 per USD).
SILVER_ORDERS = [
    ("O1", "C1", datetime(2026, 6, 1, 12, 0), "completed", "USD"),
    ("O2", "C1", datetime(2026, 6, 15, 12, 0), "cancelled", "USD"),
    ("O3", "C1", datetime(2026, 6, 20, 23, 59), "processing", "EUR"),
    ("O7", "C1", datetime(2026, 6, 28, 12, 0), "completed", "USD"),  # no lines: not a sale
    ("O4", "C3", datetime(2026, 3, 1, 12, 0), "returned", "USD"),
]
SILVER_LINES = [
    ("O1", 1, 1, D("10.00"), D("0.00"), D("0.00")),
    ("O1", 2, 2, D("3.00"), D("1.00"), D("0.50")),  # 2 * 3.00 - 1.00 + 0.50 = 5.50
    ("O2", 1, 2, D("10.00"), D("0.00"), D("0.00")),
    ("O3", 1, 1, D("4.14"), D("0.00"), D("0.00")),  # 4.14 EUR = 4.50 USD
    ("O4", 1, 1, D("100.00"), D("0.00"), D("0.00")),
]
SILVER_PAYMENTS = [
    ("C1", D("30.00"), "USD", "approved", False),
    ("C1", D("12.00"), "USD", "declined", True),
    ("C1", D("7.36"), "EUR", "approved", False),  # 8.00 USD
    ("C9", D("50.00"), "USD", "approved", False),
]
FX = {"USD": 1.0, "EUR": 0.92}


@pytest.fixture(scope="module")
def silver(spark, inputs):
    return {
        "orders_df": spark.createDataFrame(
            SILVER_ORDERS,
            "order_id string, customer_id string, order_ts timestamp, status string, "
            "currency string",
        ),
        "order_lines_df": spark.createDataFrame(
            SILVER_LINES,
            "order_id string, line_number int, quantity int, unit_price decimal(10,2), "
            "discount decimal(10,2), tax decimal(10,2)",
        ),
        "payments_df": spark.createDataFrame(
            SILVER_PAYMENTS,
            "customer_id string, amount decimal(12,2), currency string, status string, "
            "is_fraud boolean",
        ),
        "web_sessions_df": inputs["web_sessions"],
        "support_tickets_df": inputs["support_tickets"],
    }


def test_one_customer_recomputed_from_silver_matches(c360_df, silver):
    expected = c360.expected_from_silver("C1", **silver, as_of=AS_OF, fx_per_usd=FX)
    assert tuple(expected) == c360.SPOT_CHECK_COLUMNS
    assert expected == {c: EXPECTED[0][c] for c in c360.SPOT_CHECK_COLUMNS}
    c360.check_matches_silver(c360_df, "C1", expected)
    nothing = c360.expected_from_silver("C2", **silver, as_of=AS_OF, fx_per_usd=FX)
    c360.check_matches_silver(c360_df, "C2", nothing)
    with pytest.raises(ValueError, match="no exchange rate for 'EUR'"):
        c360.expected_from_silver("C1", **silver, as_of=AS_OF, fx_per_usd={"USD": 1.0})


def test_spot_check_catches_facts_reached_through_the_current_version_only(inputs, silver):
    """Bridging facts to customers with the current version only loses O1 and P1, which the
    facts attached to C1's earlier version."""
    current_only = inputs["dim_customer"].where("is_current")
    wrong_df = c360.assemble(
        c360.current_profiles(inputs["dim_customer"]),
        [
            c360.sales_summary(inputs["fact_sales"], current_only),
            c360.payments_summary(inputs["fact_payments"], current_only),
            c360.web_summary(inputs["web_sessions"], AS_OF),
            c360.support_summary(inputs["support_tickets"]),
        ],
        as_of=AS_OF,
    )
    expected = c360.expected_from_silver("C1", **silver, as_of=AS_OF, fx_per_usd=FX)
    with pytest.raises(
        AssertionError,
        match=r"orders_count: table 2, Silver 3.*lifetime_value_usd.*EVERY version",
    ):
        c360.check_matches_silver(wrong_df, "C1", expected)
    with pytest.raises(AssertionError, match="0 rows for 'C9'"):
        c360.check_matches_silver(wrong_df, "C9", expected)


def test_the_lesson_documents_the_columns_from_the_same_list():
    """The lesson's column table is rendered from customer360.COLUMNS, like the comments: a
    description changed in one place only fails here (regenerate the lesson)."""
    import json
    from pathlib import Path

    lesson = Path(__file__).parents[1] / "solutions" / "03_gold" / "04_customer_360.ipynb"
    markdown = "\n".join(
        "".join(cell["source"])
        for cell in json.loads(lesson.read_text())["cells"]
        if cell["cell_type"] == "markdown"
    )
    assert c360.columns_markdown() in markdown
