"""Business analytics on small explicit star-schema rows: revenue series in one currency with
every day and honest growth, RFM scores and segments, payment KPIs recomputed independently,
point-in-time churn features — and the checks that catch the classic wrong answers (revenue
summed in mixed currencies, recency scored the wrong way, declines counted as approvals, a
label computed over the feature period)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.gold import UNKNOWN_KEY, dates
from lakehouse.gold import analytics as A


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "gold_analytics_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def key(text: str) -> int:
    return int(text.replace("-", "")[:8])


def money(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


SALES = (
    "order_id string, line_number int, date_key int, customer_sk long, order_ts timestamp, "
    "status string, currency string, net_amount decimal(12,2), net_amount_usd decimal(12,2), "
    "total_usd decimal(12,2)"
)


def line(order, n, day, sk, status, currency, net, net_usd):
    when = ts(day) if day else None
    total_usd = None if net_usd is None else money(net_usd) * Decimal("1.10")
    return (
        order, n, key(day) if day else UNKNOWN_KEY, sk, when, status, currency,
        money(net), money(net_usd), total_usd,
    )  # fmt: skip


# Customers: sk 11 and 12 are two versions of C1; 20 is C2; 30 is C3; -1 unknown.
SALES_ROWS = [
    line("O1", 1, "2025-01-10 09:00", 11, "completed", "USD", 100, 100),
    line("O1", 2, "2025-01-10 09:00", 11, "completed", "USD", 50, 50),
    line("O2", 1, "2025-01-12 10:00", 20, "completed", "EUR", 92, 100),  # 92 EUR = 100 USD
    line("O3", 1, "2025-02-03 11:00", 20, "cancelled", "USD", 70, 70),  # not revenue
    line("O4", 1, "2026-01-15 12:00", 12, "shipped", "GBP", 79, 100),
    line("O5", 1, "2026-01-20 08:00", -1, "completed", "USD", 40, 40),  # unknown customer
    line("O6", 1, "2026-02-01 23:59", 30, "returned", "USD", 25, 25),  # not revenue
    line("O7", 1, None, -1, None, None, 10, None),  # line whose order is unknown
    line("O8", 1, "2026-03-05 07:00", 30, "processing", "JPY", 15500, 100),
]


@pytest.fixture(scope="module")
def sales_df(spark):
    return spark.createDataFrame(SALES_ROWS, SALES).cache()


@pytest.fixture(scope="module")
def dim_date_df(spark):
    return dates.date_dimension(spark, date(2025, 1, 1), date(2026, 12, 31)).cache()


# ------------------------------------------------------------------------------------------------
# Revenue
# ------------------------------------------------------------------------------------------------
def test_revenue_lines_keep_known_orders_neither_cancelled_nor_returned(sales_df):
    kept = {(r.order_id, r.line_number) for r in A.revenue_lines(sales_df).collect()}
    assert kept == {("O1", 1), ("O1", 2), ("O2", 1), ("O4", 1), ("O5", 1), ("O8", 1)}


def test_daily_revenue_has_every_day_and_reconciles(sales_df, dim_date_df):
    daily = A.daily_revenue(sales_df, dim_date_df).cache()
    rows = {r.date: r for r in daily.collect()}
    assert min(rows) == date(2025, 1, 10) and max(rows) == date(2026, 3, 5)
    assert len(rows) == (date(2026, 3, 5) - date(2025, 1, 10)).days + 1  # days without sales too
    assert (rows[date(2025, 1, 10)].orders, rows[date(2025, 1, 10)].net_revenue_usd) == (
        1,
        Decimal("150.00"),
    )
    assert (rows[date(2025, 1, 11)].orders, rows[date(2025, 1, 11)].net_revenue_usd) == (
        0,
        Decimal("0.00"),
    )
    assert A.check_revenue_reconciles(daily, sales_df) == Decimal("490.00")


def test_explicit_range_and_moving_average(sales_df, dim_date_df):
    daily = A.daily_revenue(sales_df, dim_date_df, start=date(2025, 1, 9), end=date(2025, 1, 12))
    averaged = daily.transform(A.with_moving_average(2)).orderBy("date").collect()
    assert [r.net_revenue_usd_2d_avg for r in averaged] == [
        Decimal("0.00"),
        Decimal("75.00"),
        Decimal("75.00"),
        Decimal("50.00"),
    ]


@pytest.mark.parametrize(
    ("wrong", "why"),
    [
        ("net_amount", "own currencies"),  # JPY and EUR amounts added to USD
        ("total_usd", "includes the tax"),
    ],
)
def test_reconciliation_catches_a_wrong_amount(spark, sales_df, dim_date_df, wrong, why):
    bad_sales = sales_df.withColumn("net_amount_usd", F.col(wrong).cast("decimal(12,2)"))
    wrong_daily = A.daily_revenue(bad_sales, dim_date_df)
    with pytest.raises(
        AssertionError, match=f"adds up to .* but gold.fact_sales holds 490.00.*{why}"
    ):
        A.check_revenue_reconciles(wrong_daily, sales_df)


def test_reconciliation_catches_cancelled_orders_counted(sales_df):
    every_status = sales_df.groupBy("date_key").agg(F.sum("net_amount_usd").alias("revenue"))
    with pytest.raises(AssertionError, match="adds up to 585.00.*counts cancelled and returned"):
        A.check_revenue_reconciles(every_status, sales_df, column="revenue")


def test_monthly_revenue_growth(sales_df, dim_date_df):
    monthly = A.monthly_revenue(A.daily_revenue(sales_df, dim_date_df)).collect()
    by_month = {(r.year, r.month): r for r in monthly}
    assert len(monthly) == 15  # 2025-01 .. 2026-03, months without sales included
    jan25, feb25, jan26 = by_month[(2025, 1)], by_month[(2025, 2)], by_month[(2026, 1)]
    assert (jan25.orders, jan25.net_revenue_usd, jan25.days) == (2, Decimal("250.00"), 22)
    assert jan25.avg_order_value_usd == Decimal("125.00")
    assert jan25.yoy_growth is None and jan25.mom_growth is None  # nothing earlier
    assert feb25.net_revenue_usd == Decimal("0.00") and feb25.avg_order_value_usd is None
    assert feb25.mom_growth == -1.0
    assert by_month[(2025, 3)].mom_growth is None  # growth from 0 is undefined
    # January 2026 against January 2025, twelve rows back only because every month is there
    assert jan26.prior_year_revenue_usd == Decimal("250.00")
    assert jan26.yoy_growth == round((140 - 250) / 250, 4)
    assert by_month[(2026, 3)].yoy_growth is None  # March 2025 had no sales


# ------------------------------------------------------------------------------------------------
# RFM
# ------------------------------------------------------------------------------------------------
RFM = "customer_id string, recency_days int, frequency long, monetary_usd decimal(18,2)"
# Ten customers: distinct recencies; frequency ties (three at 1); monetary in the same order.
RFM_ROWS = [
    (f"C{i:02d}", recency, frequency, money(amount))
    for i, (recency, frequency, amount) in enumerate(
        [
            (1, 9, 900),
            (2, 8, 800),
            (5, 7, 700),
            (9, 6, 600),
            (14, 5, 500),
            (20, 4, 400),
            (30, 3, 300),
            (45, 1, 200),
            (60, 1, 100),
            (90, 1, 50),
        ]
    )
]


@pytest.fixture(scope="module")
def rfm_df(spark):
    return spark.createDataFrame(RFM_ROWS, RFM).cache()


def test_rfm_scores_direction_ties_and_segments(rfm_df):
    scored = A.rfm_scores(rfm_df)
    A.check_rfm(scored)
    got = {r.customer_id: (r.r_score, r.f_score, r.m_score, r.segment) for r in scored.collect()}
    assert got["C00"] == (5, 5, 5, "Champions")  # most recent, most frequent, biggest
    assert got["C09"] == (1, 1, 1, "Hibernating")
    # the three customers with one order tie: all get the tie group's lowest tile (1)
    assert {got[c][1] for c in ("C07", "C08", "C09")} == {1}
    assert got["C07"][0] == 2 and got["C07"][3] == "Hibernating"


def test_rfm_values_from_orders(spark):
    orders = spark.createDataFrame(
        [
            ("C1", "O1", date(2026, 6, 1), True, money(10)),
            ("C1", "O2", date(2026, 6, 20), True, money(30)),
            ("C1", "O3", date(2026, 6, 25), False, None),  # cancelled: not a revenue order
            ("C1", "O4", date(2026, 7, 1), True, money(99)),  # on the as-of date: not yet
            ("C2", "O5", date(2026, 5, 1), False, None),  # never a revenue order
        ],
        "customer_id string, order_id string, order_date date, is_revenue boolean, "
        "net_revenue_usd decimal(18,2)",
    )
    rows = A.rfm_values(orders, date(2026, 7, 1)).collect()
    assert [(r.customer_id, r.recency_days, r.frequency, r.monetary_usd) for r in rows] == [
        ("C1", 11, 2, Decimal("40.00"))
    ]


def test_check_rfm_catches_recency_scored_the_wrong_way(rfm_df):
    wrong = A.score(rfm_df, "recency_days", "r_score", higher_is_better=True)  # many days = 5
    wrong = A.score(wrong, "frequency", "f_score", higher_is_better=True)
    wrong = A.score(wrong, "monetary_usd", "m_score", higher_is_better=True).withColumn(
        "segment", A.segment_column()
    )
    with pytest.raises(AssertionError, match="r_score is not ordered.*wrong way"):
        A.check_rfm(wrong)


def test_check_rfm_catches_ties_split_by_a_plain_ntile(rfm_df):
    plain = rfm_df.withColumn(
        "f_score", F.ntile(5).over(Window.orderBy("frequency", F.col("customer_id").desc()))
    )
    plain = A.score(plain, "recency_days", "r_score", higher_is_better=False)
    plain = A.score(plain, "monetary_usd", "m_score", higher_is_better=True).withColumn(
        "segment", A.segment_column()
    )
    with pytest.raises(AssertionError, match=r"same frequency \(1\) got different f_scores"):
        A.check_rfm(plain)


def test_check_rfm_catches_a_wrong_segment_and_a_score_out_of_range(rfm_df):
    scored = A.rfm_scores(rfm_df)
    relabeled = scored.withColumn(
        "segment", F.when(F.col("customer_id") == "C00", "Loyal").otherwise(F.col("segment"))
    )
    with pytest.raises(AssertionError, match="C00 with R=5 F=5 is in 'Loyal'"):
        A.check_rfm(relabeled)
    sixes = scored.withColumn("m_score", F.ntile(6).over(Window.orderBy("monetary_usd")))
    with pytest.raises(AssertionError, match="m_score must be 1..5"):
        A.check_rfm(sixes)


def test_segments_cover_every_score_pair_and_spark_agrees_with_python(spark):
    pairs = [(r, f) for r in range(1, 6) for f in range(1, 6)]
    assert all(A.segment_of(r, f) for r, f in pairs)
    by_spark = (
        spark.createDataFrame(pairs, "r_score int, f_score int")
        .withColumn("segment", A.segment_column())
        .collect()
    )
    assert {(r.r_score, r.f_score): r.segment for r in by_spark} == {
        p: A.segment_of(*p) for p in pairs
    }


# ------------------------------------------------------------------------------------------------
# Payment KPIs
# ------------------------------------------------------------------------------------------------
PAYMENTS = (
    "transaction_id string, customer_sk long, geography_sk long, event_ts timestamp, "
    "card_network string, status string, is_approved boolean, decline_reason string, "
    "amount_usd decimal(12,2)"
)
FUNDS = "insufficient_funds"
PAYMENT_ROWS = [
    ("T1", 11, 1, ts("2026-06-01 10:00"), "visa", "approved", True, None, money(10)),
    ("T2", 11, 1, ts("2026-06-02 10:00"), "visa", "declined", False, FUNDS, money(5)),
    ("T3", 20, 2, ts("2026-06-03 10:00"), "visa", "approved", True, None, money(20)),
    ("T4", 20, 2, ts("2026-06-20 10:00"), "amex", "declined", False, FUNDS, money(7)),
    ("T5", 30, -1, ts("2026-06-21 10:00"), "amex", "declined", False, "card_expired", money(8)),
    ("T6", -1, 1, ts("2026-06-22 10:00"), "mastercard", "approved", True, None, money(30)),
    ("T7", 30, 2, ts("2026-06-23 10:00"), "amex", "declined", False, None, money(9)),
]  # fmt: skip


@pytest.fixture(scope="module")
def payments_df(spark):
    return spark.createDataFrame(PAYMENT_ROWS, PAYMENTS).cache()


def payment_dicts():
    names = [f.split()[0] for f in PAYMENTS.split(", ")]
    return [dict(zip(names, row)) for row in PAYMENT_ROWS]


def test_approval_rates_overall_and_by_network(payments_df):
    overall = A.approval_rates(payments_df).first()
    assert (overall.attempts, overall.approved, overall.declined) == (7, 3, 4)
    assert overall.approval_rate == round(3 / 7, 4)
    assert overall.approved_amount_usd == Decimal("60.00")
    by_network = [
        (r.card_network, r.approval_rate)
        for r in A.approval_rates(payments_df, "card_network").collect()
    ]
    assert by_network == [("mastercard", 1.0), ("visa", round(2 / 3, 4)), ("amex", 0.0)]
    A.check_approval_rates(
        A.approval_rates(payments_df, "card_network"), payment_dicts(), "card_network"
    )
    A.check_approval_rates(A.approval_rates(payments_df), payment_dicts(), None)


def test_check_catches_declines_counted_as_approvals(payments_df):
    counted_all = payments_df.withColumn("is_approved", F.col("status").isNotNull())
    with pytest.raises(AssertionError, match="visa: expected 2 approved of 3 attempts"):
        A.check_approval_rates(
            A.approval_rates(counted_all, "card_network"), payment_dicts(), "card_network"
        )


def test_check_names_an_unrounded_rate(payments_df):
    unrounded = (
        payments_df.groupBy("card_network")
        .agg(F.count(F.lit(1)).alias("attempts"), F.count_if("is_approved").alias("approved"))
        .withColumn("approval_rate", F.col("approved") / F.col("attempts"))
    )
    with pytest.raises(AssertionError, match="visa.*rounded to 4 digits"):
        A.check_approval_rates(unrounded, payment_dicts(), "card_network")


def test_approval_rate_by_country_through_the_geography_dimension(spark, payments_df):
    geography = spark.createDataFrame(
        [(1, "US", "United States", "North America"), (2, "GB", "United Kingdom", "Europe"),
         (-1, None, "Unknown", "Unknown")],
        "geography_sk long, country string, country_name string, region string",
    )  # fmt: skip
    rates = A.approval_rates(A.payments_with_geography(payments_df, geography), "country")
    assert {r.country: (r.approved, r.attempts) for r in rates.collect()} == {
        "US": (2, 3),
        "GB": (1, 3),
        "Unknown": (0, 1),
    }


def test_decline_reasons(payments_df):
    reasons = [tuple(r) for r in A.decline_reasons(payments_df).collect()]
    assert reasons == [
        ("insufficient_funds", 2, 0.5),
        ("card_expired", 1, 0.25),
        ("unspecified", 1, 0.25),
    ]
    assert [r.decline_reason for r in A.decline_reasons(payments_df, top=1).collect()] == [
        "insufficient_funds"
    ]


# ------------------------------------------------------------------------------------------------
# Churn features
# ------------------------------------------------------------------------------------------------
AS_OF = date(2026, 7, 1)  # observation date with a 21-day horizon: 2026-06-10

CUSTOMERS = (
    "customer_sk long, customer_id string, effective_start_date timestamp, segment string, "
    "country string, signup_date date"
)
CUSTOMER_ROWS = [
    (11, "C1", ts("2024-01-01 00:00"), "consumer", "US", date(2024, 1, 1)),
    (12, "C1", ts("2026-06-15 00:00"), "vip", "GB", date(2024, 1, 1)),  # after the observation
    (20, "C2", ts("2025-06-01 00:00"), "corporate", "DE", date(2025, 6, 1)),
    (30, "C3", ts("2026-03-01 00:00"), "consumer", "FR", date(2026, 3, 1)),
    (40, "C4", ts("2025-01-01 00:00"), "consumer", "US", date(2025, 1, 1)),
    (-1, None, ts("1900-01-01 00:00"), "Unknown", None, None),
]
CHURN_SALES_ROWS = [
    line("A1", 1, "2026-05-01 10:00", 11, "completed", "USD", 100, 100),  # C1 before
    line("A2", 1, "2026-06-20 10:00", 12, "returned", "USD", 50, 50),  # C1 after: came back
    line("B1", 1, "2026-04-01 10:00", 20, "completed", "USD", 60, 60),  # C2 before
    line("B2", 1, "2026-06-09 23:00", 20, "cancelled", "USD", 60, 60),  # C2 before, cancelled
    line("D1", 1, "2026-02-20 10:00", 30, "completed", "USD", 30, 30),  # C3 ordered pre-signup
    line("D2", 1, "2026-02-21 10:00", 30, "completed", "EUR", 92, 100),
    line("E1", 1, "2026-06-11 10:00", 40, "completed", "USD", 80, 80),  # C4 only after
    line("X1", 1, "2026-05-05 10:00", -1, "completed", "USD", 70, 70),  # unknown customer
]
SESSIONS = "session_id string, customer_id string, session_start timestamp, session_end timestamp"
SESSION_ROWS = [
    ("S1", "C1", ts("2026-06-09 12:00"), ts("2026-06-09 12:10")),  # in the 30 days before
    ("S2", "C1", ts("2026-04-01 12:00"), ts("2026-04-01 12:10")),  # 70 days before: 90d only
    ("S3", "C1", ts("2026-06-10 00:00"), ts("2026-06-10 00:10")),  # on the observation date
    ("S4", None, ts("2026-06-01 12:00"), ts("2026-06-01 12:10")),  # anonymous
    ("S5", "C2", ts("2026-01-01 12:00"), ts("2026-01-01 12:10")),  # 160 days before: neither
]
TICKETS = (
    "ticket_id string, customer_id string, created_at timestamp, updated_at timestamp, "
    "is_deleted boolean, deleted_at timestamp"
)
TICKET_ROWS = [
    ("K1", "C1", ts("2026-05-01 09:00"), ts("2026-05-02 09:00"), False, None),
    ("K2", "C1", ts("2026-06-11 09:00"), ts("2026-06-11 09:00"), False, None),  # after
    ("K3", "C2", ts("2026-03-01 09:00"), ts("2026-03-02 09:00"), True, ts("2026-03-02 09:00")),
    ("K4", "C2", ts("2026-03-05 09:00"), ts("2026-06-20 09:00"), True, ts("2026-06-20 09:00")),
]


@pytest.fixture(scope="module")
def churn_inputs(spark):
    return {
        "fact_sales_df": spark.createDataFrame(CHURN_SALES_ROWS, SALES),
        "fact_payments_df": spark.createDataFrame(PAYMENT_ROWS, PAYMENTS),
        "dim_customer_df": spark.createDataFrame(CUSTOMER_ROWS, CUSTOMERS),
        "web_sessions_df": spark.createDataFrame(SESSION_ROWS, SESSIONS),
        "support_tickets_df": spark.createDataFrame(TICKET_ROWS, TICKETS),
    }


@pytest.fixture(scope="module")
def churn_df(churn_inputs):
    return A.churn_features(**churn_inputs, as_of=AS_OF).cache()


def test_churn_features_are_point_in_time(churn_df):
    rows = {r.customer_id: r.asDict() for r in churn_df.collect()}
    assert sorted(rows) == ["C1", "C2", "C3"]  # C4 first ordered after the observation date
    c1, c2, c3 = rows["C1"], rows["C2"], rows["C3"]
    assert c1["observation_date"] == date(2026, 6, 10) and c1["label_end_date"] == AS_OF
    # C1: the version in force on 2026-06-10 (consumer, US), not the later vip version
    assert (c1["segment"], c1["country"]) == ("consumer", "US")
    assert (c1["recency_days"], c1["frequency"], c1["monetary_usd"]) == (40, 1, Decimal("100.00"))
    assert (c1["payment_attempts"], c1["payment_decline_ratio"]) == (2, 0.5)
    assert (c1["web_sessions_30d"], c1["web_sessions_90d"]) == (1, 2)
    assert c1["support_tickets"] == 1 and c1["churned"] == 0  # a returned order still counts
    # C2: only the completed order counts for RFM; the cancelled one does not come back later
    assert (c2["recency_days"], c2["frequency"], c2["churned"]) == (70, 1, 1)
    assert (c2["payment_attempts"], c2["payment_decline_ratio"]) == (1, 0.0)
    assert c2["support_tickets"] == 1  # K4 was deleted after the observation date; K3 before
    assert (c2["web_sessions_30d"], c2["web_sessions_90d"]) == (0, 0)
    # C3 ordered before the CRM signup: tenure from the first order; no payments, no sessions
    assert c3["tenure_days"] == (date(2026, 6, 10) - date(2026, 2, 20)).days
    assert (c3["payment_attempts"], c3["payment_decline_ratio"]) == (0, None)
    assert (c3["avg_order_value_usd"], c3["churned"]) == (Decimal("65.00"), 1)
    assert [(f.name, f.dataType) for f in churn_df.schema] == [
        (f.name, f.dataType) for f in A.CHURN_FEATURES_SCHEMA
    ]


def test_check_churn_labels(churn_df, churn_inputs):
    orders = A.customer_orders(churn_inputs["fact_sales_df"], churn_inputs["dim_customer_df"])
    order_rows = orders.collect()
    A.check_churn_labels(churn_df, order_rows)
    inverted = churn_df.withColumn("churned", 1 - F.col("churned"))
    with pytest.raises(AssertionError, match="3 churn label"):
        A.check_churn_labels(inverted, order_rows)
    # recency from the last order of any date up to the as-of date: C1's order of 2026-06-20,
    # placed after the observation date, leaks into the feature
    last_any = (
        orders.where(F.col("order_date") < AS_OF)
        .groupBy("customer_id")
        .agg(F.max("order_date").alias("last_order_date"))
    )
    leaky = (
        churn_df.drop("recency_days")
        .join(last_any, "customer_id")
        .withColumn("recency_days", F.datediff("observation_date", "last_order_date"))
    )
    with pytest.raises(AssertionError, match="recency_days < 1, e.g. C1"):
        A.check_churn_labels(leaky, order_rows)


def test_observation_date_and_as_of(spark, churn_inputs):
    assert A.observation_date(AS_OF, 30) == date(2026, 6, 1)
    with pytest.raises(ValueError, match="horizon_days 0 must be a positive"):
        A.observation_date(AS_OF, 0)
    frames = {
        "sales": (churn_inputs["fact_sales_df"], ["order_ts"]),
        "sessions": (churn_inputs["web_sessions_df"], ["session_start", "session_end"]),
    }
    assert A.latest_event_date(frames) == date(2026, 6, 21)
    empty = churn_inputs["web_sessions_df"].limit(0)
    with pytest.raises(ValueError, match="no event in empty"):
        A.latest_event_date({"empty": (empty, ["session_end"])})
    with pytest.raises(ValueError, match="sales lacks the column"):
        A.latest_event_date({"sales": (churn_inputs["fact_sales_df"], ["event_ts"])})


def test_ensure_churn_features_builds_once_with_comments(spark, churn_inputs, tmp_path):
    from lakehouse import DeltaTable

    tables = {
        A.FACT_SALES: churn_inputs["fact_sales_df"],
        A.FACT_PAYMENTS: churn_inputs["fact_payments_df"],
        A.DIM_CUSTOMER: churn_inputs["dim_customer_df"],
        A.WEB_SESSIONS: churn_inputs["web_sessions_df"],
        A.SUPPORT_TICKETS: churn_inputs["support_tickets_df"],
    }
    for schema in ("gold", "silver"):
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for name, df in tables.items():
        df.write.format("delta").mode("overwrite").saveAsTable(name)

    assert A.ensure_churn_features(spark, tmp_path) == A.CHURN_FEATURES
    # the as-of date comes from the data: the day after the last payment (2026-06-23)
    expected = A.churn_features(**churn_inputs, as_of=date(2026, 6, 24))
    assertDataFrameEqual(spark.table(A.CHURN_FEATURES), expected)
    table = DeltaTable.forName(spark, A.CHURN_FEATURES)
    assert table.detail().first()["description"] == A.CHURN_COMMENT
    version = table.history(1).select("version").first()[0]
    assert A.ensure_churn_features(spark, tmp_path) == A.CHURN_FEATURES
    assert table.history(1).select("version").first()[0] == version
