"""Gold: business analytics on the star schema — revenue series (daily, monthly, growth month
over month and year over year), RFM scores and segments, payment KPIs, and
``gold.churn_features``, the one-row-per-customer training table of the ML module.

**Revenue** is ``net_amount_usd`` of ``gold.fact_sales`` (quantity x price - discount, before
tax, in one reporting currency) on the lines of orders neither cancelled nor returned
(:data:`NON_REVENUE_STATUSES`, the same rule as the Customer 360). Tax is collected for the
state, not earned; summing ``net_amount`` instead adds euros to yen.

**As of.** "Now" is :func:`as_of_date`, the day after the latest event (orders, payments, web
sessions, support tickets), never the wall clock: every run gives the same numbers.

**RFM.** Recency (days since the last revenue order), frequency (revenue orders) and monetary
value (net revenue) each get a score 1-5 with ``ntile(5)``, 5 being best: the most recent, the
most frequent, the biggest spender. **Ties share a score**: ``ntile`` cuts a sorted list into
five equal parts and would split equal values over two scores in whatever order Spark sorted
them; here every customer of a tie group gets the lowest score any member of the group got,
which depends only on the values (see :func:`rfm_scores`). Segments come from the R and F
scores (:data:`SEGMENTS`); M ranks customers within a segment.

**Churn features** are point-in-time: a customer's features are computed from what was known
at the **observation date** (``as_of - horizon``), and the label is what happened after it:
``churned = 1`` when the customer placed no order from the observation date to the as-of date
(:data:`CHURN_HORIZON_DAYS`). Computing features and label over the same period would leak the
answer into the features (a customer with ``recency_days > horizon`` is churned by definition).

Example::

    from lakehouse.gold import analytics

    as_of = analytics.as_of_date(spark)
    daily_df = analytics.daily_revenue(spark.table("gold.fact_sales"), spark.table("gold.dim_date"))
    monthly_df = analytics.monthly_revenue(daily_df)
    analytics.ensure_churn_features(spark, raw_root)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructType,
)

from lakehouse.gold import UNKNOWN_KEY
from lakehouse.gold import commented_field as _field
from lakehouse.gold.customer360 import AS_OF_EVENTS, as_of_date
from lakehouse.gold.customer360 import latest_event_date as latest_event_date  # re-exported

CHURN_FEATURES = "gold.churn_features"

# Order statuses whose lines are not revenue: the sale was undone (as in the Customer 360).
NON_REVENUE_STATUSES = ("cancelled", "returned")
MONEY = DecimalType(18, 2)
RFM_BUCKETS = 5
# The churn label's horizon. The sources hold six months of orders but payments for June only;
# 21 days leaves payment history before the observation date and a label that is neither rare
# nor the rule (about half of the buyers churn at the course's scales).
CHURN_HORIZON_DAYS = 21
SESSION_WINDOWS = (30, 90)  # web_sessions_30d, web_sessions_90d

FACT_SALES = "gold.fact_sales"
FACT_PAYMENTS = "gold.fact_payments"
DIM_DATE = "gold.dim_date"
DIM_CUSTOMER = "gold.dim_customer"
DIM_GEOGRAPHY = "gold.dim_geography"
WEB_SESSIONS = "silver.web_sessions"
SUPPORT_TICKETS = "silver.support_tickets"

# The latest event of each source the analytics read sets the as-of date: the same events as
# the Customer 360's, so both agree on "today".
ACTIVITY_EVENTS = AS_OF_EVENTS


class Segment(NamedTuple):
    """An RFM segment: the customers whose R and F scores fall in both (inclusive) ranges."""

    name: str
    recency: tuple[int, int]
    frequency: tuple[int, int]
    meaning: str


# First match wins; together they cover every (R, F) pair of 1-5.
SEGMENTS: tuple[Segment, ...] = (
    Segment("Champions", (4, 5), (4, 5), "bought recently and buy often"),
    Segment("Loyal", (3, 5), (3, 5), "buy regularly"),
    Segment("Potential loyalists", (4, 5), (2, 2), "recent, a second order already"),
    Segment("New customers", (4, 5), (1, 1), "recent first order"),
    Segment("At risk", (1, 2), (3, 5), "used to buy often, not lately"),
    Segment("Hibernating", (1, 2), (1, 2), "bought rarely, long ago"),
    Segment("Need attention", (3, 3), (1, 2), "average recency, few orders"),
)


CHURN_FEATURES_SCHEMA = StructType(
    [
        _field("customer_id", StringType(), "CRM customer (one row each)", False),
        _field("observation_date", DateType(), "Features use only what happened before this day"),
        _field("label_end_date", DateType(), "The as-of date: the label window ends before it"),
        _field("segment", StringType(), "Customer segment of the CRM version in force then"),
        _field("country", StringType(), "Country of the CRM version in force then"),
        _field("tenure_days", IntegerType(), "Days from signup (or first order) to observation"),
        _field("recency_days", IntegerType(), "Days from the last revenue order to observation"),
        _field("frequency", LongType(), "Revenue orders before observation"),
        _field("monetary_usd", MONEY, "Net revenue (USD, before tax) before observation"),
        _field("avg_order_value_usd", MONEY, "monetary_usd / frequency"),
        _field("payment_attempts", LongType(), "Card payment attempts before observation"),
        _field("payment_decline_ratio", DoubleType(), "Declined / attempts; null without attempts"),
        _field("web_sessions_30d", LongType(), "Web sessions started in the 30 days before"),
        _field("web_sessions_90d", LongType(), "Web sessions started in the 90 days before"),
        _field("support_tickets", LongType(), "Support tickets open at some point before"),
        _field(
            "churned",
            IntegerType(),
            "Label: 1 = no order from observation_date to label_end_date (exclusive), else 0",
        ),
    ]
)
CHURN_COMMENT = (
    "Churn training table: one row per CRM customer with a revenue order before "
    "observation_date. Features use only data before observation_date; churned = 1 when the "
    "customer placed no order from observation_date until label_end_date (the as-of date)."
)


def _require(df: DataFrame, columns: Iterable[str], name: str, hint: str = "") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {', '.join(map(repr, missing))}; it has "
            f"{', '.join(df.columns)}. {hint}".rstrip()
        )


def _rate(numerator: Column, denominator: Column, digits: int = 4) -> Column:
    """numerator / denominator rounded; null when there is nothing to divide by."""
    return F.when(denominator != 0, F.round(numerator / denominator, digits))


# ------------------------------------------------------------------------------------------------
# As-of date
# ------------------------------------------------------------------------------------------------
# ------------------------------------------------------------------------------------------------
# Revenue
# ------------------------------------------------------------------------------------------------
REVENUE_COLUMNS = ("order_id", "date_key", "status", "net_amount_usd")


def revenue_lines(fact_sales_df: DataFrame) -> DataFrame:
    """The lines of ``gold.fact_sales`` that are revenue: a known order (status and date) that
    was neither cancelled nor returned."""
    _require(
        fact_sales_df, REVENUE_COLUMNS, "fact_sales_df", "Pass spark.table('gold.fact_sales')."
    )
    return fact_sales_df.where(
        F.col("status").isNotNull()
        & ~F.col("status").isin(*NON_REVENUE_STATUSES)
        & (F.col("date_key") != UNKNOWN_KEY)
    )


def daily_revenue(
    fact_sales_df: DataFrame,
    dim_date_df: DataFrame,
    *,
    start: date | None = None,
    end: date | None = None,
) -> DataFrame:
    """One row per day of ``dim_date_df`` from ``start`` to ``end`` (default: the first and the
    last day with a sale): ``date``, ``date_key``, ``year``, ``month``, ``day_name``,
    ``is_business_day``, ``orders`` and ``net_revenue_usd`` — 0 on a day without sales, so a
    chart or a moving average sees every day.

    The series is driven by the date dimension (a right join), not by the sales: grouping the
    sales alone leaves days without sales out of the series entirely.
    """
    _require(dim_date_df, ["date_key", "date", "year", "month"], "dim_date_df")
    per_day = (
        revenue_lines(fact_sales_df)
        .groupBy("date_key")
        .agg(
            F.count_distinct("order_id").alias("orders"),
            F.sum("net_amount_usd").cast(MONEY).alias("net_revenue_usd"),
        )
    )
    if start is None or end is None:
        bounds = per_day.agg(F.min("date_key").alias("lo"), F.max("date_key").alias("hi")).first()
        if bounds.lo is None:
            raise ValueError("fact_sales_df has no revenue line: there is no series to build")
        start = start or _key_date(bounds.lo)
        end = end or _key_date(bounds.hi)
    days = dim_date_df.where(F.col("date").between(F.lit(start), F.lit(end)))
    return days.join(per_day, "date_key", "left").select(
        "date",
        "date_key",
        "year",
        "month",
        *[c for c in ("day_name", "is_business_day") if c in dim_date_df.columns],
        F.coalesce("orders", F.lit(0)).alias("orders"),
        F.coalesce("net_revenue_usd", F.lit(0).cast(MONEY)).alias("net_revenue_usd"),
    )


def _key_date(date_key: int) -> date:
    return date(date_key // 10000, date_key // 100 % 100, date_key % 100)


def with_moving_average(days: int = 7) -> Callable[[DataFrame], DataFrame]:
    """Add ``net_revenue_usd_{days}d_avg``: the mean of the day and the ``days - 1`` days
    before it (fewer at the start of the series), in date order."""

    def transform(daily_df: DataFrame) -> DataFrame:
        window = Window.orderBy("date").rowsBetween(-(days - 1), Window.currentRow)
        return daily_df.withColumn(
            f"net_revenue_usd_{days}d_avg", F.round(F.avg("net_revenue_usd").over(window), 2)
        )

    return transform


def monthly_revenue(daily_df: DataFrame) -> DataFrame:
    """Months of ``daily_df`` (:func:`daily_revenue`): ``year``, ``month``, ``month_start``,
    ``days``, ``orders``, ``net_revenue_usd``, ``avg_order_value_usd``, then the growth:
    ``prior_month_revenue_usd`` and ``mom_growth`` (month over month), and
    ``prior_year_revenue_usd`` and ``yoy_growth`` (the same month a year earlier). A growth is
    a fraction (0.05 = +5 %), null when there is no earlier month to compare with.

    ``lag(1)`` and ``lag(12)`` count rows, so the series must hold every month: it does, being
    built from the date dimension's days (a month without sales has revenue 0).
    """
    _require(daily_df, ["year", "month", "orders", "net_revenue_usd"], "daily_df")
    in_order = Window.orderBy("year", "month")
    monthly = (
        daily_df.groupBy("year", "month")
        .agg(
            F.count(F.lit(1)).alias("days"),
            F.sum("orders").alias("orders"),
            F.sum("net_revenue_usd").cast(MONEY).alias("net_revenue_usd"),
        )
        .withColumn("month_start", F.make_date("year", "month", F.lit(1)))
        .withColumn(
            "avg_order_value_usd",
            F.when(
                F.col("orders") > 0, F.round(F.col("net_revenue_usd") / F.col("orders"), 2)
            ).cast(MONEY),
        )
    )
    return (
        monthly.withColumn("prior_month_revenue_usd", F.lag("net_revenue_usd", 1).over(in_order))
        .withColumn("prior_year_revenue_usd", F.lag("net_revenue_usd", 12).over(in_order))
        .withColumn("mom_growth", growth("net_revenue_usd", "prior_month_revenue_usd"))
        .withColumn("yoy_growth", growth("net_revenue_usd", "prior_year_revenue_usd"))
        .select(
            "year",
            "month",
            "month_start",
            "days",
            "orders",
            "net_revenue_usd",
            "avg_order_value_usd",
            "prior_month_revenue_usd",
            "mom_growth",
            "prior_year_revenue_usd",
            "yoy_growth",
        )
    )


def growth(current: str, prior: str) -> Column:
    """``(current - prior) / prior`` as a double rounded to 4 digits; null without a prior
    value (or a prior of 0, where growth is undefined)."""
    return _rate(F.col(current) - F.col(prior), F.col(prior)).cast("double")


def check_revenue_reconciles(
    revenue_df: DataFrame, fact_sales_df: DataFrame, *, column: str = "net_revenue_usd"
) -> Decimal:
    """Assert ``revenue_df``'s ``column`` adds up, to the cent, to the net revenue in USD of
    ``gold.fact_sales``'s revenue lines. Returns the total.

    Catches: amounts summed in their own currencies (``net_amount``), tax included
    (``total_usd``), cancelled or returned orders counted, days lost by a join."""
    _require(
        fact_sales_df, REVENUE_COLUMNS, "fact_sales_df", "Pass spark.table('gold.fact_sales')."
    )
    undone = F.col("status").isin(*NON_REVENUE_STATUSES)
    known_day = F.col("status").isNotNull() & (F.col("date_key") != UNKNOWN_KEY)
    # what the classic wrong sums would give, to name the cause (one pass over the fact)
    wrong_sums = {
        "with_tax": (known_day & ~undone, "total_usd"),
        "mixed": (known_day & ~undone, "net_amount"),
        "every_status": (known_day, "net_amount_usd"),
    }
    totals = fact_sales_df.agg(
        F.sum(F.when(known_day & ~undone, F.col("net_amount_usd"))).cast(MONEY).alias("tax_free"),
        *(
            F.sum(F.when(rows, F.col(amount))).cast(MONEY).alias(key)
            for key, (rows, amount) in wrong_sums.items()
            if amount in fact_sales_df.columns
        ),
    ).first()
    expected = totals["tax_free"] or Decimal("0.00")
    _require(revenue_df, [column], "revenue_df")
    actual = revenue_df.agg(F.sum(column).cast(MONEY)).first()[0] or Decimal("0.00")
    if actual != expected:
        causes = {
            "with_tax": "It includes the tax (total_usd): revenue is net_amount_usd, before tax.",
            "mixed": "It adds amounts in their own currencies (net_amount): sum net_amount_usd.",
            "every_status": (
                f"It counts cancelled and returned orders: keep lines whose status is not in "
                f"{list(NON_REVENUE_STATUSES)} (analytics.revenue_lines)."
            ),
        }
        why = next(
            (
                text
                for key, text in causes.items()
                if key in totals.asDict() and totals[key] == actual
            ),
            "Sum net_amount_usd (one currency, before tax), filter the statuses, and keep every "
            "day.",
        )
        raise AssertionError(
            f"{column} adds up to {actual}, but gold.fact_sales holds {expected} USD of net "
            "revenue (net_amount_usd of lines whose order is neither cancelled nor returned). "
            f"{why}"
        )
    return expected


# ------------------------------------------------------------------------------------------------
# RFM
# ------------------------------------------------------------------------------------------------
def customer_ids(dim_customer_df: DataFrame) -> DataFrame:
    """``customer_sk`` -> ``customer_id`` for every version of every known customer: the bridge
    from the facts' keys (the version in force at the event) to the customer."""
    _require(dim_customer_df, ["customer_sk", "customer_id"], "dim_customer_df")
    return dim_customer_df.where(
        (F.col("customer_sk") != UNKNOWN_KEY) & F.col("customer_id").isNotNull()
    ).select("customer_sk", "customer_id")


def customer_orders(fact_sales_df: DataFrame, dim_customer_df: DataFrame) -> DataFrame:
    """One row per order of a known customer: ``customer_id``, ``order_id``, ``order_date``,
    ``is_revenue`` (neither cancelled nor returned), ``net_revenue_usd`` (its revenue lines)."""
    _require(
        fact_sales_df,
        ["order_id", "customer_sk", "order_ts", "status", "net_amount_usd"],
        "fact_sales_df",
    )
    is_revenue = ~F.col("status").isin(*NON_REVENUE_STATUSES)
    return (
        fact_sales_df.where(F.col("order_ts").isNotNull() & F.col("status").isNotNull())
        .join(customer_ids(dim_customer_df), "customer_sk")
        .groupBy("customer_id", "order_id")
        .agg(
            F.to_date(F.min("order_ts")).alias("order_date"),
            F.bool_and(is_revenue).alias("is_revenue"),
            F.sum(F.when(is_revenue, F.col("net_amount_usd"))).cast(MONEY).alias("net_revenue_usd"),
        )
    )


def rfm_values(orders_df: DataFrame, as_of: date) -> DataFrame:
    """Per customer with a revenue order before ``as_of``: ``last_order_date``,
    ``recency_days`` (from it to ``as_of``), ``frequency`` (revenue orders) and
    ``monetary_usd`` (their net revenue). ``orders_df``: :func:`customer_orders`."""
    _require(orders_df, ["customer_id", "order_id", "order_date", "is_revenue"], "orders_df")
    return (
        orders_df.where(F.col("is_revenue") & (F.col("order_date") < F.lit(as_of)))
        .groupBy("customer_id")
        .agg(
            F.max("order_date").alias("last_order_date"),
            F.count_distinct("order_id").alias("frequency"),
            F.coalesce(F.sum("net_revenue_usd"), F.lit(0)).cast(MONEY).alias("monetary_usd"),
        )
        .withColumn("recency_days", F.datediff(F.lit(as_of), F.col("last_order_date")))
    )


def score(
    df: DataFrame, metric: str, name: str, *, higher_is_better: bool, buckets: int = RFM_BUCKETS
) -> DataFrame:
    """Add ``name``: ``ntile(buckets)`` of ``metric`` (``buckets`` = best), where every
    customer of a tie group gets the lowest tile any of them got — so equal values always get
    equal scores, whatever order Spark sorted the ties in."""
    order = F.col(metric).asc() if higher_is_better else F.col(metric).desc()
    tile = f"_{name}_tile"
    return (
        df.withColumn(tile, F.ntile(buckets).over(Window.orderBy(order)))
        .withColumn(name, F.min(tile).over(Window.partitionBy(metric)))
        .drop(tile)
    )


def rfm_scores(rfm_df: DataFrame, buckets: int = RFM_BUCKETS) -> DataFrame:
    """Add ``r_score`` (recent = 5: recency in **descending** days), ``f_score``, ``m_score``
    (more = 5), ``rfm_cell`` (``"545"``) and ``segment`` (:data:`SEGMENTS`)."""
    _require(rfm_df, ["recency_days", "frequency", "monetary_usd"], "rfm_df")
    scored = score(rfm_df, "recency_days", "r_score", higher_is_better=False, buckets=buckets)
    scored = score(scored, "frequency", "f_score", higher_is_better=True, buckets=buckets)
    scored = score(scored, "monetary_usd", "m_score", higher_is_better=True, buckets=buckets)
    return scored.withColumn(
        "rfm_cell", F.concat_ws("", "r_score", "f_score", "m_score")
    ).withColumn("segment", segment_column("r_score", "f_score"))


def segment_column(r_score: str = "r_score", f_score: str = "f_score") -> Column:
    """The :data:`SEGMENTS` rules as one ``CASE WHEN`` (first match wins)."""
    r, f = F.col(r_score), F.col(f_score)
    expr = None
    for seg in SEGMENTS:
        hit = r.between(*seg.recency) & f.between(*seg.frequency)
        expr = F.when(hit, seg.name) if expr is None else expr.when(hit, seg.name)
    return expr


def segment_of(r_score: int, f_score: int) -> str | None:
    """The segment of a pair of scores, in plain Python (what the checks compare with)."""
    for seg in SEGMENTS:
        if (
            seg.recency[0] <= r_score <= seg.recency[1]
            and seg.frequency[0] <= f_score <= seg.frequency[1]
        ):
            return seg.name
    return None


def check_rfm(rfm_df: DataFrame, buckets: int = RFM_BUCKETS) -> None:
    """Assert RFM scores are in 1..``buckets``, ordered the right way (more recent, more
    frequent, bigger spender never scores lower), equal for equal values, that the top score
    exists, and that each ``segment`` follows :data:`SEGMENTS`."""
    need = ["customer_id", "recency_days", "frequency", "monetary_usd", "r_score", "f_score"]
    _require(rfm_df, [*need, "m_score", "segment"], "rfm_df")
    rows = rfm_df.select(*need, "m_score", "segment").collect()
    if not rows:
        raise AssertionError("rfm_df is empty: every customer with a revenue order has a row")
    for metric, score_name, best_is_high in (
        ("recency_days", "r_score", False),
        ("frequency", "f_score", True),
        ("monetary_usd", "m_score", True),
    ):
        bad = [r for r in rows if r[score_name] is None or not 1 <= r[score_name] <= buckets]
        if bad:
            raise AssertionError(
                f"{score_name} must be 1..{buckets}; {len(bad)} customer(s) have another value, "
                f"e.g. {bad[0]['customer_id']}: {bad[0][score_name]!r}"
            )
        by_value: dict = {}
        for r in rows:
            by_value.setdefault(r[metric], set()).add(r[score_name])
        split = {v: s for v, s in by_value.items() if len(s) > 1}
        if split:
            value, scores = next(iter(split.items()))
            raise AssertionError(
                f"Customers with the same {metric} ({value}) got different {score_name}s "
                f"{sorted(scores)}: ties must share a score"
            )
        ordered = sorted(by_value.items(), key=lambda kv: kv[0], reverse=not best_is_high)
        scores = [next(iter(s)) for _, s in ordered]  # from worst to best value
        if any(a > b for a, b in zip(scores, scores[1:])):
            direction = (
                "fewer days since the last order" if not best_is_high else f"a higher {metric}"
            )
            raise AssertionError(
                f"{score_name} is not ordered: {direction} must never get a lower score "
                f"({buckets} = best). Did you sort {metric} the wrong way?"
            )
        if len(by_value) >= buckets and max(scores) != buckets:
            raise AssertionError(f"no customer has {score_name} {buckets}: use ntile({buckets})")
    wrong = [r for r in rows if r["segment"] != segment_of(r["r_score"], r["f_score"])]
    if wrong:
        r = wrong[0]
        raise AssertionError(
            f"{len(wrong)} customer(s) have a segment that does not follow the rules, e.g. "
            f"{r['customer_id']} with R={r['r_score']} F={r['f_score']} is in {r['segment']!r}, "
            f"expected {segment_of(r['r_score'], r['f_score'])!r}"
        )


# ------------------------------------------------------------------------------------------------
# Payment KPIs
# ------------------------------------------------------------------------------------------------
PAYMENT_COLUMNS = ("transaction_id", "is_approved", "decline_reason", "amount_usd")


def payments_with_geography(fact_payments_df: DataFrame, dim_geography_df: DataFrame) -> DataFrame:
    """``gold.fact_payments`` with ``country``, ``country_name`` and ``region`` of the place the
    card was used ("Unknown" for the unknown member)."""
    _require(fact_payments_df, ["geography_sk"], "fact_payments_df")
    places = dim_geography_df.select(
        "geography_sk",
        F.coalesce("country", F.lit("Unknown")).alias("country"),
        "country_name",
        "region",
    )
    return fact_payments_df.join(places, "geography_sk", "left")


def approval_rates(fact_payments_df: DataFrame, *by: str) -> DataFrame:
    """Per group of ``by`` (none: one overall row): ``attempts``, ``approved``, ``declined``,
    ``approval_rate`` (approved / attempts, 4 digits) and ``approved_amount_usd``, by rate
    descending.

    >>> approval_rates(spark.table("gold.fact_payments"), "card_network")  # doctest: +SKIP
    """
    _require(fact_payments_df, [*PAYMENT_COLUMNS, *by], "fact_payments_df")
    approved = F.coalesce(F.col("is_approved"), F.lit(False))
    grouped = fact_payments_df.groupBy(*by) if by else fact_payments_df.groupBy()
    return (
        grouped.agg(
            F.count(F.lit(1)).alias("attempts"),
            F.count_if(approved).alias("approved"),
            F.count_if(~approved).alias("declined"),
            F.sum(F.when(approved, F.col("amount_usd"))).cast(MONEY).alias("approved_amount_usd"),
        )
        .withColumn("approval_rate", _rate(F.col("approved"), F.col("attempts")).cast("double"))
        .orderBy(F.col("approval_rate").desc(), *[F.col(c).asc_nulls_last() for c in by])
    )


def decline_reasons(fact_payments_df: DataFrame, top: int | None = None) -> DataFrame:
    """Declined attempts per ``decline_reason`` (null reason: ``"unspecified"``), with
    ``share_of_declines``, most frequent first (then by reason); the ``top`` first if given."""
    _require(fact_payments_df, PAYMENT_COLUMNS, "fact_payments_df")
    declined = fact_payments_df.where(~F.coalesce(F.col("is_approved"), F.lit(False)))
    reasons = (
        declined.groupBy(F.coalesce("decline_reason", F.lit("unspecified")).alias("decline_reason"))
        .agg(F.count(F.lit(1)).alias("declines"))
        .withColumn(
            "share_of_declines",
            F.round(F.col("declines") / F.sum("declines").over(Window.partitionBy()), 4),
        )
        .orderBy(F.col("declines").desc(), "decline_reason")
    )
    return reasons.limit(top) if top else reasons


def expected_approval_rates(
    payments: Iterable[Mapping], by: str | None = None
) -> dict[object, tuple[int, int]]:
    """``(approved, attempts)`` per value of ``by`` (or under ``None``), from payment rows
    (``status`` strings, e.g. collected from ``silver.payments``), counted in plain Python."""
    counts: dict[object, list[int]] = {}
    for p in payments:
        key = p[by] if by else None
        approved, attempts = counts.setdefault(key, [0, 0])
        counts[key] = [approved + (p["status"] == "approved"), attempts + 1]
    return {k: (a, n) for k, (a, n) in counts.items()}


def check_approval_rates(rates_df: DataFrame, payments: Iterable[Mapping], by: str | None) -> None:
    """Assert ``rates_df`` (:func:`approval_rates` by ``by``) has the attempts, approvals and
    rate of each group counted independently from ``payments``' ``status``."""
    expected = expected_approval_rates(payments, by)
    got = {
        (r[by] if by else None): (r["approved"], r["attempts"], r["approval_rate"])
        for r in rates_df.collect()
    }
    if set(got) != set(expected):
        raise AssertionError(
            f"The groups differ: expected {sorted(map(str, expected))}, got {sorted(map(str, got))}"
        )
    for key, (approved, attempts) in expected.items():
        rate = round(approved / attempts, 4)
        if got[key] != (approved, attempts, rate):
            why = (
                "approval_rate must be approved / attempts as a double rounded to 4 digits."
                if got[key][:2] == (approved, attempts)
                else "A declined attempt counts in attempts, not in approved (count the rows "
                "where is_approved is true, not the non-null values)."
            )
            raise AssertionError(
                f"{by or 'overall'} = {key}: expected {approved} approved of {attempts} attempts "
                f"(approval_rate {rate}), got (approved, attempts, rate) = {got[key]}. {why}"
            )


# ------------------------------------------------------------------------------------------------
# Churn features
# ------------------------------------------------------------------------------------------------
def observation_date(as_of: date, horizon_days: int = CHURN_HORIZON_DAYS) -> date:
    """The day features stop and the label window starts: ``as_of - horizon_days``."""
    if type(horizon_days) is not int or horizon_days <= 0:
        raise ValueError(f"horizon_days {horizon_days!r} must be a positive number of days")
    return as_of - timedelta(days=horizon_days)


def profiles_at(dim_customer_df: DataFrame, at: date) -> DataFrame:
    """Each known customer's ``segment``, ``country`` and ``signup_date`` from the version of
    ``gold.dim_customer`` in force at the start of ``at`` (a customer whose first version
    starts later gets that first version, as the fact key lookups do)."""
    _require(
        dim_customer_df,
        ["customer_sk", "customer_id", "effective_start_date", "segment", "country", "signup_date"],
        "dim_customer_df",
    )
    start = F.col("effective_start_date")
    in_force = start <= F.lit(at).cast("timestamp")
    latest_first = Window.partitionBy("customer_id").orderBy(
        in_force.desc(), F.when(in_force, start).desc_nulls_last(), start.asc()
    )
    return (
        dim_customer_df.where(
            (F.col("customer_sk") != UNKNOWN_KEY) & F.col("customer_id").isNotNull()
        )
        .withColumn("_rank", F.row_number().over(latest_first))
        .where("_rank = 1")
        .select("customer_id", "segment", "country", "signup_date")
    )


def churn_features(
    fact_sales_df: DataFrame,
    fact_payments_df: DataFrame,
    dim_customer_df: DataFrame,
    web_sessions_df: DataFrame,
    support_tickets_df: DataFrame,
    *,
    as_of: date,
    horizon_days: int = CHURN_HORIZON_DAYS,
) -> DataFrame:
    """The rows of ``gold.churn_features`` (:data:`CHURN_FEATURES_SCHEMA`): one per customer
    with a revenue order before the observation date (``as_of - horizon_days``), features from
    before it, ``churned`` from the window after it. Each source is aggregated per customer
    first and then joined, so no join multiplies another source's rows."""
    observed = observation_date(as_of, horizon_days)
    cut = F.lit(observed)
    orders = customer_orders(fact_sales_df, dim_customer_df)
    rfm = rfm_values(orders, observed)
    first_orders = (
        orders.where(F.col("order_date") < cut)
        .groupBy("customer_id")
        .agg(F.min("order_date").alias("first_order_date"))
    )
    came_back = (
        orders.where((F.col("order_date") >= cut) & (F.col("order_date") < F.lit(as_of)))
        .select("customer_id")
        .distinct()
        .withColumn("_came_back", F.lit(True))
    )
    _require(fact_payments_df, ["customer_sk", "event_ts", "is_approved"], "fact_payments_df")
    payments = (
        fact_payments_df.where(F.col("event_ts") < cut.cast("timestamp"))
        .join(customer_ids(dim_customer_df), "customer_sk")
        .groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("payment_attempts"),
            F.count_if(~F.coalesce(F.col("is_approved"), F.lit(False))).alias("_declines"),
        )
    )
    _require(web_sessions_df, ["customer_id", "session_start"], "web_sessions_df")
    started = F.to_date("session_start")
    sessions = (
        web_sessions_df.where(F.col("customer_id").isNotNull() & (started < cut))
        .groupBy("customer_id")
        .agg(
            *[
                F.count_if(started >= F.date_sub(cut, days)).alias(f"web_sessions_{days}d")
                for days in SESSION_WINDOWS
            ]
        )
    )
    _require(
        support_tickets_df, ["customer_id", "created_at", "is_deleted", "deleted_at"], "tickets"
    )
    cut_ts = cut.cast("timestamp")
    existed = (F.col("created_at") < cut_ts) & (
        ~F.coalesce(F.col("is_deleted"), F.lit(False)) | (F.col("deleted_at") >= cut_ts)
    )
    tickets = (
        support_tickets_df.where(F.col("customer_id").isNotNull() & existed)
        .groupBy("customer_id")
        .agg(F.count(F.lit(1)).alias("support_tickets"))
    )
    since = F.least(F.col("signup_date"), F.col("first_order_date"))
    joined = functools.reduce(
        lambda left, right: left.join(right, "customer_id", "left"),
        [
            first_orders,
            profiles_at(dim_customer_df, observed),
            payments,
            sessions,
            tickets,
            came_back,
        ],
        rfm,
    )
    return joined.select(
        "customer_id",
        cut.alias("observation_date"),
        F.lit(as_of).alias("label_end_date"),
        "segment",
        "country",
        F.datediff(cut, since).alias("tenure_days"),
        "recency_days",
        "frequency",
        "monetary_usd",
        F.round(F.col("monetary_usd") / F.col("frequency"), 2)
        .cast(MONEY)
        .alias("avg_order_value_usd"),
        F.coalesce("payment_attempts", F.lit(0)).alias("payment_attempts"),
        _rate(F.col("_declines"), F.col("payment_attempts"))
        .cast("double")
        .alias("payment_decline_ratio"),
        *[
            F.coalesce(f"web_sessions_{d}d", F.lit(0)).alias(f"web_sessions_{d}d")
            for d in SESSION_WINDOWS
        ],
        F.coalesce("support_tickets", F.lit(0)).alias("support_tickets"),
        F.when(F.col("_came_back"), 0).otherwise(1).alias("churned"),
    ).select(*(F.col(f.name).cast(f.dataType) for f in CHURN_FEATURES_SCHEMA))


def save_churn_features(spark: SparkSession, churn_df: DataFrame) -> str:
    """Replace ``gold.churn_features`` with ``churn_df``: comments first (``CREATE OR REPLACE
    TABLE ... COMMENT``), then the rows with ``overwrite``. Returns the table name."""
    from lakehouse.tables import DeltaTable

    spark.sql("CREATE SCHEMA IF NOT EXISTS gold")
    (
        DeltaTable.createOrReplace(spark)
        .tableName(CHURN_FEATURES)
        .comment(CHURN_COMMENT)
        .addColumns(CHURN_FEATURES_SCHEMA)
        .execute()
    )
    (
        churn_df.select(*(F.col(f.name).cast(f.dataType) for f in CHURN_FEATURES_SCHEMA))
        .write.format("delta")
        .mode("overwrite")
        .saveAsTable(CHURN_FEATURES)
    )
    return CHURN_FEATURES


def build_churn_features(spark: SparkSession, *, horizon_days: int = CHURN_HORIZON_DAYS) -> str:
    """(Re)build ``gold.churn_features`` from the Gold facts, ``gold.dim_customer``, and the
    Silver web sessions and support tickets, as of :func:`as_of_date`."""
    churn_df = churn_features(
        spark.table(FACT_SALES),
        spark.table(FACT_PAYMENTS),
        spark.table(DIM_CUSTOMER),
        spark.table(WEB_SESSIONS),
        spark.table(SUPPORT_TICKETS),
        as_of=as_of_date(spark),
        horizon_days=horizon_days,
    )
    return save_churn_features(spark, churn_df)


def ensure_churn_features(spark: SparkSession, raw_root) -> str:
    """Build ``gold.churn_features`` unless it exists (the facts, dimensions and Silver inputs
    first, when missing); returns its name. What the ML module calls.

    >>> ensure_churn_features(spark, raw_root)  # doctest: +SKIP
    'gold.churn_features'
    """
    if spark.catalog.tableExists(CHURN_FEATURES):
        return CHURN_FEATURES
    from lakehouse import gold
    from lakehouse.gold import facts

    facts.ensure_facts(spark, raw_root)
    gold.ensure_silver_inputs(spark, [WEB_SESSIONS, SUPPORT_TICKETS], raw_root)
    return build_churn_features(spark)


def check_churn_labels(churn_df: DataFrame, orders: Iterable[Mapping]) -> None:
    """Assert each row's ``churned`` follows its definition, recomputed in plain Python from
    ``orders`` (rows with ``customer_id`` and ``order_date``, any status, e.g. collected from
    :func:`customer_orders`): 0 if the customer ordered on a day in
    [``observation_date``, ``label_end_date``), else 1; and, when ``churn_df`` has
    ``recency_days``, that no feature saw the label window (``recency_days`` >= 1)."""
    needed = ["customer_id", "observation_date", "label_end_date", "churned"]
    _require(churn_df, needed, "churn_df")
    has_recency = "recency_days" in churn_df.columns
    order_days: dict[str, list[date]] = {}
    for o in orders:
        order_days.setdefault(o["customer_id"], []).append(o["order_date"])
    wrong, leaked = [], []
    for r in churn_df.select(*needed, *(["recency_days"] if has_recency else [])).collect():
        came_back = any(
            r.observation_date <= d < r.label_end_date for d in order_days.get(r.customer_id, [])
        )
        if r.churned != (0 if came_back else 1):
            wrong.append(f"{r.customer_id}: churned={r.churned!r}, ordered again={came_back}")
        if has_recency and (r.recency_days is None or r.recency_days < 1):
            leaked.append(r.customer_id)
    if wrong:
        raise AssertionError(
            f"{len(wrong)} churn label(s) do not follow the definition (1 = no order from "
            f"observation_date until label_end_date), e.g. {'; '.join(wrong[:3])}"
        )
    if leaked:
        raise AssertionError(
            f"{len(leaked)} customer(s) have recency_days < 1, e.g. {leaked[0]}: features must use "
            "only orders placed before observation_date"
        )
