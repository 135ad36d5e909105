"""Churn on the Customer 360: a training set of one row per (customer, weekly observation date),
a time split with a gap of the label horizon, a retention offer priced per customer, the
targeting threshold chosen by expected profit, and a model card. Spark builds the weekly frame;
everything after it is pandas, numpy and scikit-learn.

**Observation dates.** Every ``cadence_days`` (a week) back from the latest date whose label is
known, down to ``min_history_days`` after the first order: a customer is seen again each week,
with the features known that day (:func:`observation_dates`).

**Features** use only what happened before the observation date: orders (revenue orders only,
as in ``gold.churn_features``), web sessions, support tickets open then, and the CRM version in
force then. The Customer 360 holds the same facts summarized **as of today**: right for a
dashboard, a leak for any past observation date.

**Label.** ``churned = 1`` when the customer placed no order (of any status) in the
``horizon_days`` from the observation date on: the window [``observation_date``,
``label_end_date``). Only **mature** observation dates are used: ``label_end_date <= as_of``, the
day after the latest data. A later date would call everyone who has not ordered *yet* a churner.

**Eligibility.** A customer is eligible at an observation date when they placed a revenue order
in the ``active_days`` before it: an active customer, whom an offer can still keep. Customers
gone for longer are not a churn question any more (they would be churners by construction and
make any model look good), and customers who never ordered have nothing to churn from.

Example::

    from lakehouse.ml import churn

    dates = churn.observation_dates(first_order_date, as_of)
    examples_df = churn.churn_examples(fact_sales_df, dim_customer_df, sessions_df, tickets_df,
                                       dates, as_of=as_of)
    train_pdf, test_pdf = churn.time_split(examples_pdf, test_dates=2)
    threshold = churn.choose_offer_threshold(y, score, examples_pdf["revenue_90d_usd"])
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.gold import analytics
from lakehouse.ml import CHURN_TRAINING_SET
from lakehouse.ml import evaluation as ev

EXAMPLES_TABLE = CHURN_TRAINING_SET
MODEL_CARDS_FOLDER = "_model_cards"  # in the catalog's folder of the lake, beside _mlflow
EXPERIMENT = "churn"

HORIZON_DAYS = analytics.CHURN_HORIZON_DAYS  # 21: the label window, as in gold.churn_features
CADENCE_DAYS = 7  # one observation date a week
ACTIVE_DAYS = 90  # eligible: a revenue order in the 90 days before the observation date
MIN_HISTORY_DAYS = 28  # the first observation date leaves four weeks of orders behind it

CUSTOMER = "customer_id"
DATE = "observation_date"
LABEL_END = "label_end_date"
LABEL = "churned"
VALUE = "revenue_90d_usd"  # what the customer brought in the last 90 days: what an offer saves
SEGMENT = "segment"

NUMERIC_FEATURES = (
    "tenure_days",
    "recency_days",
    "frequency",
    "orders_30d",
    "orders_90d",
    "monetary_usd",
    VALUE,
    "avg_order_value_usd",
    "web_sessions_30d",
    "web_sessions_90d",
    "support_tickets",
)
CATEGORICAL_FEATURES = (SEGMENT, "country")
FEATURE_COLUMNS = NUMERIC_FEATURES + CATEGORICAL_FEATURES
EXAMPLE_COLUMNS = (CUSTOMER, DATE, LABEL_END, *FEATURE_COLUMNS, LABEL)


# --------------------------------------------------------------------------- observation dates


def _day(value) -> date:
    return pd.Timestamp(value).date()


def latest_mature_date(as_of, horizon_days: int = HORIZON_DAYS) -> date:
    """The latest observation date whose label window [date, date + horizon) ends by ``as_of``
    (the day after the latest data): ``as_of - horizon_days``."""
    if type(horizon_days) is not int or horizon_days <= 0:
        raise ValueError(f"horizon_days {horizon_days!r} must be a positive number of days")
    return _day(as_of) - timedelta(days=horizon_days)


def observation_dates(
    first_day,
    as_of,
    *,
    horizon_days: int = HORIZON_DAYS,
    cadence_days: int = CADENCE_DAYS,
    min_history_days: int = MIN_HISTORY_DAYS,
) -> list[date]:
    """Every ``cadence_days`` back from :func:`latest_mature_date` while at least
    ``min_history_days`` after ``first_day`` (the first order), oldest first."""
    if type(cadence_days) is not int or cadence_days <= 0:
        raise ValueError(f"cadence_days {cadence_days!r} must be a positive number of days")
    latest = latest_mature_date(as_of, horizon_days)
    earliest = _day(first_day) + timedelta(days=min_history_days)
    if latest < earliest:
        raise ValueError(
            f"no observation date is both {min_history_days} days after the first order "
            f"({_day(first_day)}) and mature ({latest} + {horizon_days} days <= as_of {as_of}): "
            "generate a longer history or shorten min_history_days"
        )
    count = (latest - earliest).days // cadence_days + 1
    return [latest - timedelta(days=cadence_days * k) for k in reversed(range(count))]


def check_observation_dates(
    dates,
    *,
    first_day,
    as_of,
    horizon_days: int = HORIZON_DAYS,
    cadence_days: int = CADENCE_DAYS,
    min_history_days: int = MIN_HISTORY_DAYS,
) -> str:
    """Assert that ``dates`` are several observation dates, ``cadence_days`` apart, all mature
    (label window over by ``as_of``), none less than ``min_history_days`` after ``first_day``,
    and none left out: the latest within a cadence of :func:`latest_mature_date`, the earliest
    within a cadence of the first allowed day. Any weekday works as the anchor. Returns one
    line."""
    if isinstance(dates, str | date | pd.Timestamp):
        dates = [dates]
    try:
        days = sorted({_day(d) for d in dates})
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"dates must be a list of dates, got {dates!r} ({exc})") from None
    assert len(days) > 1, (
        f"{len(days)} observation date: one date teaches the model one day (its season, its "
        f"promotions) from few rows. Observe every {cadence_days} days"
    )
    latest = latest_mature_date(as_of, horizon_days)
    immature = [d for d in days if d > latest]
    assert not immature, (
        f"{len(immature)} dates (from {immature[0]}) have label windows that end after as_of "
        f"{_day(as_of)}: a customer observed then has not had {horizon_days} days to order yet. "
        f"Keep dates <= {latest} (as_of - horizon)"
    )
    earliest = _day(first_day) + timedelta(days=min_history_days)
    early = [d for d in days if d < earliest]
    assert not early, (
        f"{len(early)} dates come less than {min_history_days} days after the first order "
        f"({_day(first_day)}): start on or after {earliest}, so every date has history behind it"
    )
    steps = {(b - a).days for a, b in zip(days, days[1:], strict=False)}
    assert steps == {cadence_days}, (
        f"the dates are {sorted(steps)} days apart: space them exactly {cadence_days} days "
        "apart, so every week weighs the same"
    )
    cadence = timedelta(days=cadence_days)
    assert latest - days[-1] < cadence, (
        f"the latest date is {days[-1]}, but {latest} is mature too: the latest dates are the "
        "closest to today, start from as_of - horizon"
    )
    assert days[0] - earliest < cadence, (
        f"the earliest date is {days[0]}, but dates from {earliest} have enough history: use "
        "every mature week"
    )
    return (
        f"{len(days)} weekly observation dates from {days[0]} to {days[-1]}, each label "
        f"window over by {_day(as_of)}"
    )


# --------------------------------------------------------------------------- the weekly frame


def _observations(spark, dates: Sequence[date]) -> DataFrame:
    rows = sorted({_day(d) for d in dates})
    return spark.createDataFrame([(d,) for d in rows], f"{DATE} date")


def churn_examples(
    fact_sales_df: DataFrame,
    dim_customer_df: DataFrame,
    web_sessions_df: DataFrame,
    support_tickets_df: DataFrame,
    dates: Sequence[date],
    *,
    as_of,
    horizon_days: int = HORIZON_DAYS,
    active_days: int = ACTIVE_DAYS,
) -> DataFrame:
    """:data:`EXAMPLE_COLUMNS`, one row per eligible (customer, observation date of ``dates``):
    features from before the date, ``churned`` from [date, date + ``horizon_days``). Each
    source is paired with the (few) dates and aggregated per (customer, date) once, then the
    aggregates are joined: no join multiplies another source's rows.

    Raises ``ValueError`` for a date whose label window is not over by ``as_of``."""
    if not dates:
        raise ValueError("dates is empty: pass the observation dates (observation_dates(...))")
    latest = latest_mature_date(as_of, horizon_days)
    immature = sorted(_day(d) for d in dates if _day(d) > latest)
    if immature:
        raise ValueError(
            f"observation dates {[str(d) for d in immature]} have label windows that end after "
            f"as_of {_day(as_of)}: keep dates <= {latest} (latest_mature_date)"
        )
    spark = fact_sales_df.sparkSession
    when = F.broadcast(_observations(spark, dates))
    obs = F.col(DATE)
    orders = analytics.customer_orders(fact_sales_df, dim_customer_df)
    day = F.col("order_date")
    before = day < obs
    revenue_before = F.col("is_revenue") & before

    def within(days: int):
        return revenue_before & (day >= F.date_sub(obs, days))

    order_stats = (
        orders.join(when, day < F.date_add(obs, horizon_days))
        .groupBy(CUSTOMER, DATE)
        .agg(
            F.max(F.when(revenue_before, day)).alias("_last_order"),
            F.min(F.when(before, day)).alias("_first_order"),
            F.count_distinct(F.when(revenue_before, F.col("order_id"))).alias("frequency"),
            F.sum(F.when(revenue_before, F.col("net_revenue_usd"))).alias("monetary_usd"),
            F.count_distinct(F.when(within(30), F.col("order_id"))).alias("orders_30d"),
            F.count_distinct(F.when(within(active_days), F.col("order_id"))).alias("_active"),
            F.count_distinct(F.when(within(90), F.col("order_id"))).alias("orders_90d"),
            F.sum(F.when(within(90), F.col("net_revenue_usd"))).alias(VALUE),
            F.count_if(~before).alias("_orders_in_window"),
        )
        .where(F.col("_active") > 0)
    )
    started = F.to_date("session_start")
    sessions = (
        web_sessions_df.where(F.col(CUSTOMER).isNotNull())
        .join(when, (started < obs) & (started >= F.date_sub(obs, 90)))
        .groupBy(CUSTOMER, DATE)
        .agg(
            *[
                F.count_if(started >= F.date_sub(obs, days)).alias(f"web_sessions_{days}d")
                for days in analytics.SESSION_WINDOWS
            ]
        )
    )
    obs_ts = obs.cast("timestamp")
    open_then = (F.col("created_at") < obs_ts) & (
        ~F.coalesce(F.col("is_deleted"), F.lit(False)) | (F.col("deleted_at") >= obs_ts)
    )
    tickets = (
        support_tickets_df.where(F.col(CUSTOMER).isNotNull())
        .join(when, open_then)
        .groupBy(CUSTOMER, DATE)
        .agg(F.count(F.lit(1)).alias("support_tickets"))
    )
    # the CRM version in force at the start of the observation date (a customer whose first
    # version starts later gets that first version, as analytics.profiles_at does)
    start = F.col("effective_start_date")
    in_force = start <= obs_ts
    latest_first = Window.partitionBy(CUSTOMER, DATE).orderBy(
        in_force.desc(), F.when(in_force, start).desc_nulls_last(), start.asc()
    )
    # paired with the dates directly (not with order_stats' keys): the orders are aggregated once
    profiles = (
        dim_customer_df.where(F.col(CUSTOMER).isNotNull())
        .select(CUSTOMER, "effective_start_date", SEGMENT, "country", "signup_date")
        .crossJoin(when)
        .withColumn("_rank", F.row_number().over(latest_first))
        .where("_rank = 1")
        .drop("_rank", "effective_start_date")
    )
    joined = functools.reduce(
        lambda left, right: left.join(right, [CUSTOMER, DATE], "left"),
        [profiles, sessions, tickets],
        order_stats,
    )
    money = analytics.MONEY
    return joined.select(
        CUSTOMER,
        DATE,
        F.date_add(obs, horizon_days).alias(LABEL_END),
        F.datediff(obs, F.least("signup_date", "_first_order")).cast("double").alias("tenure_days"),
        F.datediff(obs, "_last_order").cast("double").alias("recency_days"),
        F.col("frequency").cast("double"),
        F.col("orders_30d").cast("double"),
        F.col("orders_90d").cast("double"),
        F.coalesce("monetary_usd", F.lit(0)).cast(money).cast("double").alias("monetary_usd"),
        F.coalesce(VALUE, F.lit(0)).cast(money).cast("double").alias(VALUE),
        F.round(F.col("monetary_usd") / F.col("frequency"), 2)
        .cast("double")
        .alias("avg_order_value_usd"),
        *[
            F.coalesce(f"web_sessions_{d}d", F.lit(0)).cast("double").alias(f"web_sessions_{d}d")
            for d in analytics.SESSION_WINDOWS
        ],
        F.coalesce("support_tickets", F.lit(0)).cast("double").alias("support_tickets"),
        F.coalesce(SEGMENT, F.lit("unknown")).alias(SEGMENT),
        F.coalesce("country", F.lit("unknown")).alias("country"),
        F.when(F.col("_orders_in_window") > 0, 0).otherwise(1).alias(LABEL),
    )


def to_pandas_bounded(df: DataFrame, max_rows: int, *, seed: int = 42) -> pd.DataFrame:
    """``df.toPandas()`` of at most about ``max_rows`` rows (a seeded sample of whole customers
    when larger, so a customer's weeks stay together), sorted by date and customer."""
    n = df.count()
    if n > max_rows:
        keep = F.abs(F.xxhash64(CUSTOMER, F.lit(seed))) % 1_000_000 < int(1_000_000 * max_rows / n)
        df = df.where(keep)
    return df.orderBy(DATE, CUSTOMER).toPandas()


# --------------------------------------------------------------------------- the same in pandas


def expected_examples(
    orders: pd.DataFrame,
    dates: Sequence[date],
    *,
    horizon_days: int = HORIZON_DAYS,
    active_days: int = ACTIVE_DAYS,
) -> pd.DataFrame:
    """The keys, ``frequency``, ``recency_days`` and ``churned`` of the eligible rows,
    recomputed in pandas from ``orders`` (``customer_id``, ``order_id``, ``order_date``,
    ``is_revenue``; e.g. :func:`lakehouse.gold.analytics.customer_orders` collected): what
    :func:`check_examples` compares with."""
    need = [CUSTOMER, "order_id", "order_date", "is_revenue"]
    missing = [c for c in need if c not in orders.columns]
    if missing:
        raise ValueError(f"orders lacks {missing}: pass analytics.customer_orders(...).toPandas()")
    o = orders[need].assign(order_date=pd.to_datetime(orders["order_date"]))
    rows = []
    for d in sorted({pd.Timestamp(x) for x in dates}):
        before = o[o["order_date"] < d]
        revenue = before[before["is_revenue"].astype(bool)]
        active = revenue[revenue["order_date"] >= d - pd.Timedelta(days=active_days)]
        stats = revenue.groupby(CUSTOMER).agg(
            frequency=("order_id", "nunique"), last=("order_date", "max")
        )
        stats = stats.loc[stats.index.isin(active[CUSTOMER])]
        window = o[(o["order_date"] >= d) & (o["order_date"] < d + pd.Timedelta(days=horizon_days))]
        rows.append(
            pd.DataFrame(
                {
                    CUSTOMER: stats.index,
                    DATE: d,
                    "frequency": stats["frequency"].to_numpy(dtype="float64"),
                    "recency_days": (d - stats["last"]).dt.days.to_numpy(dtype="float64"),
                    LABEL: (~stats.index.isin(window[CUSTOMER])).astype("int64"),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


# --------------------------------------------------------------------------- the split


def time_split(
    frame: pd.DataFrame, *, test_dates: int, horizon_days: int = HORIZON_DAYS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, test)``: test on the latest ``test_dates`` observation dates of ``frame``,
    train on the dates at least ``horizon_days`` before the first of them, so no training
    label window [date, date + horizon) reaches into the test period. The dates in between
    are in neither."""
    days = sorted(pd.to_datetime(frame[DATE]).unique())
    if type(test_dates) is not int or not 0 < test_dates < len(days):
        raise ValueError(
            f"test_dates {test_dates!r} must be between 1 and {len(days) - 1} "
            f"(frame has {len(days)} observation dates)"
        )
    when = pd.to_datetime(frame[DATE])
    first_test = days[-test_dates]
    train = frame[when <= first_test - pd.Timedelta(days=horizon_days)].copy()
    test = frame[when >= first_test].copy()
    if train.empty:
        raise ValueError(
            f"no observation date is {horizon_days} days before {first_test:%Y-%m-%d}: "
            "fewer test_dates, or more history"
        )
    return train, test


def check_time_split(
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    horizon_days: int = HORIZON_DAYS,
    all_dates: Sequence | None = None,
) -> str:
    """Assert that ``test`` holds the latest observation dates (of ``all_dates`` when given),
    that ``train`` holds only earlier ones, none shared, and that every training label window
    ends by the first test date (a gap of ``horizon_days``). Returns a one-line summary."""
    for name, frame in (("train", train), ("test", test)):
        assert DATE in frame.columns, f"{name} lacks {DATE!r}: keep it in both frames"
        assert len(frame), f"{name} is empty: both sides need observation dates"
    train_days = pd.to_datetime(train[DATE])
    test_days = pd.to_datetime(test[DATE])
    shared = sorted(set(train_days) & set(test_days))
    assert not shared, (
        f"{len(shared)} observation dates are on both sides (e.g. {shared[0]:%Y-%m-%d}): a "
        "random split puts the same customers, with overlapping label windows, in train and "
        "test. Split by observation date: test on the latest dates, train on earlier ones"
    )
    first_test, last_train = test_days.min(), train_days.max()
    assert last_train < first_test, (
        f"train has observation dates after the first test date ({last_train:%Y-%m-%d} > "
        f"{first_test:%Y-%m-%d}): train on earlier dates, test on the latest ones"
    )
    horizon = pd.Timedelta(days=horizon_days)
    late = sorted(d for d in set(train_days) if d + horizon > first_test)
    assert not late, (
        f"the label windows of {len(late)} training dates (from {late[0]:%Y-%m-%d}) end after "
        f"the first test date {first_test:%Y-%m-%d}: their labels are the test period's "
        f"orders. Leave a gap of the horizon: train on dates <= "
        f"{first_test - horizon:%Y-%m-%d}"
    )
    if all_dates is not None:
        everything = sorted({pd.Timestamp(d) for d in all_dates})
        later = [d for d in everything if d > test_days.max()]
        skipped = [d for d in everything if d >= first_test and d not in set(test_days)]
        assert not later and not skipped, (
            f"the test does not hold the latest observation dates (left out: "
            f"{[f'{d:%Y-%m-%d}' for d in later + skipped]}): test on the latest mature dates"
        )
    return (
        f"train {len(train)} rows on {train_days.nunique()} dates to {last_train:%Y-%m-%d}, "
        f"gap {(first_test - last_train).days} days, test {len(test)} rows on "
        f"{test_days.nunique()} dates from {first_test:%Y-%m-%d}"
    )


# --------------------------------------------------------------------------- the offer


@dataclass(frozen=True)
class OfferCosts:
    """What a retention offer is worth, per customer, in USD:

    ==========================  =================================================================
    targeted, would churn       ``acceptance_rate * margin_rate * value - offer_cost_usd``: the
                                offer keeps some of them, and their margin on ``value`` (the
                                revenue of the last 90 days: the next 90 if they stay)
    targeted, would stay        ``- offer_cost_usd``: the offer is paid for nothing
    not targeted                0
    ==========================  =================================================================

    The defaults are round, plausible figures; a team sets them with its marketing. Every
    profit the lesson prints depends on them."""

    offer_cost_usd: float = 30.0
    acceptance_rate: float = 0.3
    margin_rate: float = 0.2

    def per_customer(self, y, targeted, value) -> np.ndarray:
        y, targeted = np.asarray(y).astype(bool), np.asarray(targeted).astype(bool)
        value = np.asarray(value, dtype="float64")
        saved = self.acceptance_rate * self.margin_rate * value
        return targeted * (y * saved - self.offer_cost_usd)


OFFER = OfferCosts()


def value_at_risk(score, value) -> np.ndarray:
    """What the customers are ranked by for an offer: the churn score times the value an offer
    can save (``revenue_90d_usd``), in USD. A likely churner worth little ranks below a less
    likely one worth much: the offer's profit depends on both. Only the order matters, so a
    class-weighted (uncalibrated) score works, with a threshold chosen on the same scores."""
    return np.asarray(score, dtype="float64") * np.asarray(value, dtype="float64")


def expected_profit(y, priority, value, threshold: float, costs: OfferCosts = OFFER) -> float:
    """Total profit in USD of an offer to the customers with ``priority >= threshold``
    (``priority``: :func:`value_at_risk`, or any score customers are ranked by)."""
    return float(costs.per_customer(y, np.asarray(priority) >= threshold, value).sum())


def profit_curve(y, priority, value, costs: OfferCosts = OFFER) -> pd.DataFrame:
    """Expected profit, customers targeted, precision and recall at every threshold on
    ``priority`` that changes a decision (each distinct value, and +inf: target nobody), by
    decreasing threshold, so ``targeted`` grows: the top-k view of the same curve."""
    y = np.asarray(y).astype(bool)
    score, value = np.asarray(priority, dtype="float64"), np.asarray(value, dtype="float64")
    order = np.argsort(-score, kind="stable")
    s, gain = score[order], costs.per_customer(y[order], np.ones(len(y)), value[order])
    hits = np.cumsum(y[order])
    profit = np.cumsum(gain)
    last_of_score = np.append(s[1:] != s[:-1], True) if len(s) else np.array([], bool)
    k = np.flatnonzero(last_of_score)
    churners = max(int(y.sum()), 1)
    return pd.DataFrame(
        {
            "threshold": np.append(np.inf, s[k]),
            "targeted": np.append(0, k + 1),
            "expected_profit_usd": np.append(0.0, profit[k]),
            "precision": np.append(1.0, hits[k] / (k + 1)),
            "recall": np.append(0.0, hits[k] / churners),
        }
    )


def choose_offer_threshold(y, priority, value, costs: OfferCosts = OFFER) -> float:
    """The threshold on ``priority`` of the largest expected profit (the highest one on a tie:
    fewer offers); +inf when no offer pays."""
    curve = profit_curve(y, priority, value, costs)
    best = curve["expected_profit_usd"].max()
    return float(curve.loc[curve["expected_profit_usd"] >= best - 1e-9, "threshold"].max())


def check_offer_threshold(
    threshold: float, y, priority, value, *, costs: OfferCosts = OFFER, tolerance_usd: float = 0.01
) -> str:
    """Assert that ``threshold`` has the largest expected profit on ``(y, priority, value)``
    (within ``tolerance_usd``); the message names the usual wrong choices (0.5, the best F1,
    the best accuracy, everyone). Returns a one-line summary."""
    y, score = np.asarray(y), np.asarray(priority, dtype="float64")
    assert isinstance(threshold, int | float | np.number) and not np.isnan(threshold), (
        f"threshold must be a number, got {threshold!r}"
    )
    best_t = choose_offer_threshold(y, score, value, costs)
    best, got = (expected_profit(y, score, value, t, costs) for t in (best_t, threshold))
    targeted = int((score >= threshold).sum())
    if got >= best - tolerance_usd:
        return (
            f"threshold {threshold:.4f}: {targeted} offers, expected profit {got:,.2f} USD, "
            "the largest possible"
        )
    if np.isclose(threshold, 0.5):
        why = "0.5 is predict()'s default; class weights moved every probability"
    elif np.isclose(threshold, ev.best_threshold_by(y, score, "f1")):
        why = "that threshold maximizes F1, which prices a wasted offer like a lost customer"
    elif np.isclose(threshold, ev.best_threshold_by(y, score, "accuracy")):
        why = "that threshold maximizes accuracy, which knows neither offers nor customer values"
    elif targeted == len(score) and len(score):
        why = "an offer to everyone pays for every customer who would have stayed anyway"
    else:
        why = "it is not the most profitable"
    raise AssertionError(
        f"threshold {threshold:.4f} ({targeted} offers) earns {got:,.2f} USD, but "
        f"{best_t:.4f} ({int((score >= best_t).sum())} offers) earns {best:,.2f} USD: {why}. "
        "Choose the threshold of the largest expected profit (churn.choose_offer_threshold)"
    )


# --------------------------------------------------------------------------- scorers and metrics


class RecencyRule:
    """The baseline: "churned if no order in the last ``days`` days", as a scorer.
    ``recency / (recency + days)`` ranks customers by days since their last revenue order and
    is 0.5 exactly at ``days``, so ``predict`` is the rule as stated. It learns nothing."""

    def __init__(self, days: int = HORIZON_DAYS):
        if days <= 0:
            raise ValueError(f"days {days!r} must be positive")
        self.days = days

    def fit(self, X=None, y=None) -> RecencyRule:
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if "recency_days" not in X.columns:
            raise ValueError("the rule reads 'recency_days': pass the examples' columns")
        r = X["recency_days"].astype("float64").to_numpy()
        p = r / (r + self.days)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype("int64")


def evaluate(y, score, value, *, threshold: float, costs: OfferCosts = OFFER) -> dict[str, float]:
    """The figures of one scorer on one period: ``pr_auc`` and ``roc_auc`` of its churn
    ``score``, and with offers to the customers whose :func:`value_at_risk` reaches
    ``threshold``: the ``expected_profit_usd``, ``offers``, their ``precision`` and
    ``recall``, and the profit of an offer to everyone (``profit_all_usd``), to compare with."""
    y = np.asarray(y).astype("int64")
    score = np.asarray(score, dtype="float64")
    priority = value_at_risk(score, value)
    targeted = priority >= threshold
    hits = int((targeted & (y == 1)).sum())
    return {
        "pr_auc": ev.pr_auc(y, score),
        "roc_auc": ev.roc_auc(y, score),
        "expected_profit_usd": expected_profit(y, priority, value, threshold, costs),
        "offers": int(targeted.sum()),
        "precision": hits / targeted.sum() if targeted.any() else float("nan"),
        "recall": hits / y.sum() if y.any() else float("nan"),
        "profit_all_usd": expected_profit(y, np.ones(len(y)), value, 0.0, costs),
    }


def segment_metrics(
    frame: pd.DataFrame,
    score,
    *,
    threshold: float,
    by: str = SEGMENT,
    costs: OfferCosts = OFFER,
) -> pd.DataFrame:
    """:func:`evaluate` per value of ``by`` (the CRM segment), with ``customers`` and
    ``churn_rate``: where the model is weaker, and who gets the offers."""
    score = np.asarray(score, dtype="float64")
    rows = {}
    for name, part in frame.groupby(by, sort=True):
        where = frame.index.get_indexer(part.index)
        figures = evaluate(part[LABEL], score[where], part[VALUE], threshold=threshold, costs=costs)
        rows[name] = {"rows": len(part), "churn_rate": float(part[LABEL].mean()), **figures}
    return pd.DataFrame.from_dict(rows, orient="index").drop(columns="profit_all_usd")


# --------------------------------------------------------------------------- the checks


def check_examples(
    examples: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    as_of,
    horizon_days: int = HORIZON_DAYS,
    active_days: int = ACTIVE_DAYS,
) -> str:
    """Assert that ``examples`` (one row per customer and observation date) has several
    observation dates, all mature by ``as_of``; one row per (customer, date) exactly for the
    eligible customers; features from before the date only (``frequency``, ``recency_days``);
    and ``churned`` from [date, date + horizon). Everything is recomputed from ``orders``
    (:func:`expected_examples`). Returns a one-line summary."""
    need = [CUSTOMER, DATE, LABEL, "frequency", "recency_days"]
    missing = [c for c in need if c not in examples.columns]
    assert not missing, f"the examples lack {missing}: build them with churn_examples"
    days = sorted(pd.to_datetime(examples[DATE]).unique())
    assert len(days) > 1, (
        f"the examples have {len(days)} observation date: one date teaches the model one day "
        "(its season, its promotions) from few rows; observe every week (observation_dates)"
    )
    latest = pd.Timestamp(latest_mature_date(as_of, horizon_days))
    immature = [d for d in days if d > latest]
    assert not immature, (
        f"{len(immature)} observation dates (from {immature[0]:%Y-%m-%d}) have label windows "
        f"that end after as_of {_day(as_of)}: their customers have not had {horizon_days} days "
        f"to order yet. Keep only mature dates, <= {latest:%Y-%m-%d}"
    )
    keys = examples[[CUSTOMER, DATE]].assign(**{DATE: pd.to_datetime(examples[DATE])})
    dupes = int(keys.duplicated().sum())
    assert dupes == 0, f"{dupes} (customer, observation date) pairs repeat: one row each"
    want = expected_examples(orders, days, horizon_days=horizon_days, active_days=active_days)
    got = examples.assign(**{DATE: pd.to_datetime(examples[DATE])})
    both = want.merge(got, on=[CUSTOMER, DATE], how="outer", suffixes=("", "_got"), indicator=True)
    extra, absent = (both[both["_merge"] == side] for side in ("right_only", "left_only"))
    assert extra.empty, (
        f"{len(extra)} rows are customers not eligible at their date (e.g. "
        f"{extra.iloc[0][CUSTOMER]} on {extra.iloc[0][DATE]:%Y-%m-%d}): keep customers "
        "with a revenue order in the "
        f"{active_days} days before the observation date"
    )
    assert absent.empty, (
        f"{len(absent)} eligible (customer, date) rows are missing (e.g. "
        f"{absent.iloc[0][CUSTOMER]} on {absent.iloc[0][DATE]:%Y-%m-%d}): every customer with a "
        f"revenue order in the {active_days} days before a date gets a row for it"
    )
    leaked = both[
        (both["frequency_got"] != both["frequency"])
        | (both["recency_days_got"] != both["recency_days"])
    ]
    assert leaked.empty, (
        f"{len(leaked)} rows have features that do not match the orders placed before their "
        f"observation date (e.g. {leaked.iloc[0][CUSTOMER]} on {leaked.iloc[0][DATE]:%Y-%m-%d}: "
        f"recency_days {leaked.iloc[0]['recency_days_got']} instead of "
        f"{leaked.iloc[0]['recency_days']}). Features use only orders with "
        "order_date < observation_date"
    )
    wrong = both[both[f"{LABEL}_got"] != both[LABEL]]
    assert wrong.empty, (
        f"{len(wrong)} labels differ from 'no order in the {horizon_days} days from the "
        f"observation date' (e.g. {wrong.iloc[0][CUSTOMER]} on {wrong.iloc[0][DATE]:%Y-%m-%d}): "
        f"churned = 1 when no order falls in [observation_date, observation_date + "
        f"{horizon_days} days)"
    )
    return (
        f"{len(examples)} rows: {examples[CUSTOMER].nunique()} customers on {len(days)} weekly "
        f"dates from {days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}, churn rate "
        f"{examples[LABEL].mean():.3f}; features before each date, labels mature"
    )


# --------------------------------------------------------------------------- the model card


CARD_SECTIONS = (
    "Intended use",
    "Data and period",
    "Features",
    "Label",
    "Metrics on the test period",
    "Metrics per segment",
    "Limitations and ethical considerations",
    "Owner",
)


@dataclass
class ModelCard:
    """What a reader needs before trusting the champion: one Markdown section each of
    :data:`CARD_SECTIONS`. ``metrics`` and ``segments`` are tables (the model beside the
    baseline; the model per segment)."""

    model_name: str
    intended_use: str
    data: str
    features: Sequence[str]
    label: str
    metrics: pd.DataFrame
    segments: pd.DataFrame
    limitations: Sequence[str]
    owner: str
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_markdown(self) -> str:
        def table(frame: pd.DataFrame) -> str:
            shown = frame.copy()
            header = "| " + " | ".join(["", *map(str, shown.columns)]) + " |"
            rule = "|" + "---|" * (len(shown.columns) + 1)
            body = [
                "| " + " | ".join([str(i), *(_cell(v) for v in row)]) + " |"
                for i, row in zip(shown.index, shown.itertuples(index=False), strict=True)
            ]
            return "\n".join([header, rule, *body])

        sections = {
            "Intended use": self.intended_use,
            "Data and period": self.data,
            "Features": "\n".join(f"- `{f}`" for f in self.features),
            "Label": self.label,
            "Metrics on the test period": table(self.metrics),
            "Metrics per segment": table(self.segments),
            "Limitations and ethical considerations": "\n".join(
                f"- {line}" for line in self.limitations
            ),
            "Owner": self.owner,
        }
        parts = [f"# Model card: {self.model_name}"]
        parts += [f"## {name}\n\n{sections[name]}" for name in CARD_SECTIONS]
        parts += [f"## {name}\n\n{text}" for name, text in self.extra.items()]
        return "\n\n".join(parts) + "\n"


def _cell(value) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def check_model_card(text: str, *, model: str, baseline: str, segments: Sequence[str]) -> str:
    """Assert that the card has every section of :data:`CARD_SECTIONS` with content, shows the
    ``model`` beside the ``baseline`` in its metrics, and every segment. Returns one line."""
    assert isinstance(text, str) and text.strip(), "the model card is empty: render to_markdown()"
    bodies = {}
    for chunk in text.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        bodies[title.strip()] = body.strip()
    for name in CARD_SECTIONS:
        assert name in bodies, f"the model card lacks the section '## {name}'"
        assert bodies[name], f"the model card's section '{name}' is empty: fill it in"
    metrics = bodies["Metrics on the test period"]
    for scorer in (model, baseline):
        assert f"| {scorer} |" in metrics, (
            f"the card's test metrics lack a row for {scorer!r}: show the model beside the "
            "baseline it must beat"
        )
    absent = [s for s in segments if f"| {s} |" not in bodies["Metrics per segment"]]
    assert not absent, f"the card's per-segment metrics lack {absent}: one row per segment"
    return f"model card: {len(CARD_SECTIONS)} sections, {model} beside {baseline}"


def model_card_path(spark, model_name: str) -> Path:
    """``<lake>/<catalog>/_model_cards/<model_name>.md``: beside the tables and the MLflow
    store (on Databricks, a Unity Catalog volume when the lake is one)."""
    from lakehouse.config import settings
    from lakehouse.session import settings_of

    s = settings_of(spark) or settings()
    return Path(s.catalog_path) / MODEL_CARDS_FOLDER / f"{model_name}.md"


def write_model_card(spark, card: ModelCard) -> Path:
    """Write the card's Markdown to :func:`model_card_path`; returns the path."""
    path = model_card_path(spark, card.model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(card.to_markdown(), encoding="utf-8")
    return path


def log_model_card(run_id: str, path: Path) -> str:
    """Attach the card at ``path`` to the MLflow run ``run_id`` (configured with
    ``tracking.configure``) as the artifact ``model_card/<file name>``; returns its path."""
    import mlflow

    mlflow.MlflowClient().log_artifact(run_id, str(path), artifact_path="model_card")
    return f"model_card/{Path(path).name}"


def check_model_card_logged(run_id: str, path: Path) -> str:
    """Assert that run ``run_id`` holds the card at ``path`` as an artifact, byte for byte."""
    import os

    import mlflow

    # the download's progress bar is a widget: noise in a notebook's output
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    artifact = f"model_card/{Path(path).name}"
    names = [f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "model_card")]
    assert artifact in names, (
        f"run {run_id} has no artifact {artifact} (it has {names}): log the card with "
        "churn.log_model_card(run_id, path)"
    )
    logged = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact))
    assert logged.read_bytes() == Path(path).read_bytes(), (
        f"the card logged in run {run_id} differs from {path}: write the card, then log it"
    )
    return f"run {run_id[:8]} holds {artifact}, identical to {path.name} in the lake"


def as_dict(costs: OfferCosts = OFFER) -> dict[str, float]:
    """The offer's figures as run parameters (``offer.<name>``)."""
    return {f"offer.{k}": v for k, v in asdict(costs).items()}


__all__ = [
    "ACTIVE_DAYS",
    "CADENCE_DAYS",
    "CARD_SECTIONS",
    "CATEGORICAL_FEATURES",
    "EXAMPLES_TABLE",
    "EXAMPLE_COLUMNS",
    "FEATURE_COLUMNS",
    "HORIZON_DAYS",
    "LABEL",
    "MIN_HISTORY_DAYS",
    "NUMERIC_FEATURES",
    "OFFER",
    "VALUE",
    "ModelCard",
    "OfferCosts",
    "RecencyRule",
    "as_dict",
    "check_examples",
    "check_model_card",
    "check_model_card_logged",
    "check_observation_dates",
    "check_offer_threshold",
    "check_time_split",
    "choose_offer_threshold",
    "churn_examples",
    "evaluate",
    "expected_examples",
    "expected_profit",
    "latest_mature_date",
    "log_model_card",
    "model_card_path",
    "observation_dates",
    "profit_curve",
    "segment_metrics",
    "time_split",
    "to_pandas_bounded",
    "value_at_risk",
    "write_model_card",
]
