"""The fraud model's training examples come from lesson 01's tables: the payment's own feature
row, the customer's daily features as of the payment's arrival (never the day still running, never
a later day), and the payment's context; numbers shaped for scikit-learn, no outcome columns."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from lakehouse.ml import training


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "ml_training_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


DAY = datetime(2026, 6, 10)
T = DAY + timedelta(hours=14, minutes=1)  # used 2 s earlier: 16:00:58 in Paris in June
# (payment, customer, arrival, fraud notice, amount USD, ratio to the 30-day mean, new device, city)
PAYMENTS = [
    ("TX1", "C1", T, None, 300.0, 20.0, True, "Paris"),
    ("TX2", "C1", T + timedelta(days=1), T + timedelta(days=9), 40.0, None, None, "New York"),
    ("TX3", "C2", T, None, 10.0, 0.5, False, "London"),
]
# (customer, the day's end, declines in 30 days, fraud notices to date)
DAILY = [
    ("C1", DAY, 1, 1),  # the day before TX1: known when TX1 arrives
    ("C1", DAY + timedelta(days=1), 4, 2),  # TX1's own day: over only after TX1
    ("C1", DAY + timedelta(days=2), 9, 5),  # TX2's own day
]


def frames(spark, daily=DAILY):
    labels = spark.createDataFrame(
        [(tx, c, at, notice) for tx, c, at, notice, *_ in PAYMENTS],
        "transaction_id string, customer_id string, prediction_ts timestamp, "
        "fraud_label_ts timestamp",
    )
    payment_features = spark.createDataFrame(
        [
            (tx, amount, "online", "travel", 1, 2, 3, 0.02, ratio, True, device)
            for tx, _, _, _, amount, ratio, device, _ in PAYMENTS
        ],
        "transaction_id string, amount_usd double, channel string, "
        "merchant_category string, payments_1h long, payments_24h long, payments_7d long, "
        "category_fraud_rate double, amount_to_mean_30d double, is_new_country boolean, "
        "is_new_device boolean",
    )
    daily_df = spark.createDataFrame(
        daily, "customer_id string, feature_ts timestamp, declines_30d long, "
        "fraud_notices_to_date long",
    )  # fmt: skip
    payments = spark.createDataFrame(
        [(tx, at - timedelta(seconds=2), "visa", city) for tx, _, at, *_, city in PAYMENTS],
        "transaction_id string, event_ts timestamp, card_network string, city string",
    )
    return labels, payment_features, daily_df, payments


def examples(spark, daily=DAILY) -> dict:
    df = training.examples_from(*frames(spark, daily))
    assert tuple(df.columns) == training.EXAMPLE_COLUMNS
    return {r.transaction_id: r.asDict() for r in df.collect()}


def test_daily_features_are_those_of_the_last_day_over_before_the_payment(spark):
    e = examples(spark)
    notices = {tx: row["fraud_notices_to_date"] for tx, row in e.items()}
    assert notices == {"TX1": 1.0, "TX2": 2.0, "TX3": 0.0}  # TX3: no full day yet


def test_a_later_day_never_changes_an_earlier_example(spark):
    assert examples(spark, DAILY[:2]) == examples(spark)


def test_numbers_are_shaped_for_a_model_and_the_rules(spark):
    e = examples(spark)
    assert e["TX1"]["log_amount_to_mean_30d"] == pytest.approx(math.log(20.0))
    assert e["TX1"]["customer_mean_usd"] == pytest.approx(15.0)
    assert e["TX1"]["log_amount_usd"] == pytest.approx(math.log1p(300.0))
    assert e["TX1"]["local_hour"] == 16.0  # when the card was used, in Paris
    # No history: no evidence (ratio 0 on the log scale), and the flag says so.
    assert (e["TX2"]["log_amount_to_mean_30d"], e["TX2"]["has_30d_history"]) == (0.0, 0.0)
    assert e["TX2"]["customer_mean_usd"] is None
    assert e["TX2"]["fraud_label_ts"] == T + timedelta(days=9)
    assert all(isinstance(e["TX1"][c], float) for c in training.NUMERIC_FEATURES)


def test_no_outcome_of_the_decision_and_no_shifting_column_is_a_feature():
    assert not set(training.LEAKY_COLUMNS) & set(training.FEATURE_COLUMNS)
    shifting = {"is_new_device", "category_fraud_rate", "declines_30d"}  # see training.py
    assert not shifting & set(training.FEATURE_COLUMNS)
    assert set(training.RULE_INPUTS) <= set(training.EXAMPLE_COLUMNS)
