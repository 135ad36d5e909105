"""The fraud model's features are known at the payment's arrival: computed from the same
customer's earlier arrivals only, so a later payment never changes an earlier row."""

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


T0 = datetime(2026, 6, 10, 12, 0)
# (id, customer, minutes after T0, amount USD, country, city)
PAYMENTS = [
    ("TX1", "C1", 0, 10.0, "US", "New York"),
    ("TX2", "C1", 30, 20.0, "US", "New York"),
    ("TX3", "C1", 120, 300.0, "FR", "Paris"),
    ("TX4", "C1", 2 * 24 * 60, 30.0, "US", "New York"),
    ("TX5", "C2", 30, 50.0, "GB", "London"),
]


def payments_df(spark, rows=PAYMENTS):
    return spark.createDataFrame(
        [
            (tx, c, T0 + timedelta(minutes=m), T0 + timedelta(minutes=m, seconds=2), a, co, ci)
            for tx, c, m, a, co, ci in rows
        ],
        "transaction_id string, customer_id string, event_ts timestamp, ingest_ts timestamp, "
        "amount_usd double, country string, city string",
    ).selectExpr(
        "*", "'online' AS channel", "'travel' AS merchant_category", "'visa' AS card_network"
    )


def features(spark, rows=PAYMENTS) -> dict:
    df = training.payment_features(payments_df(spark, rows))
    return {r.transaction_id: r.asDict() for r in df.collect()}


def test_features_count_only_the_customers_earlier_payments(spark):
    f = features(spark)
    assert [f[t]["customer_payments_1h"] for t in ("TX1", "TX2", "TX3", "TX4")] == [0, 1, 0, 0]
    assert [f[t]["customer_payments_24h"] for t in ("TX1", "TX2", "TX3", "TX4")] == [0, 1, 2, 0]
    assert [f[t]["customer_payments_7d"] for t in ("TX1", "TX2", "TX3", "TX4")] == [0, 1, 2, 3]
    assert f["TX5"]["customer_payments_7d"] == 0  # another customer's payments never count
    assert [f[t]["customer_has_history"] for t in ("TX1", "TX2", "TX5")] == [0.0, 1.0, 0.0]
    assert [f[t]["new_country"] for t in ("TX1", "TX2", "TX3", "TX4")] == [0.0, 0.0, 1.0, 0.0]
    assert f["TX1"]["log_amount_to_customer_mean"] == 0.0  # no history: no evidence
    assert f["TX3"]["customer_mean_usd"] == pytest.approx(15.0)
    assert f["TX3"]["log_amount_to_customer_mean"] == pytest.approx(math.log(300 / 15))
    assert f["TX1"]["log_amount_usd"] == pytest.approx(math.log1p(10.0))
    assert f["TX3"]["local_hour"] == 16.0  # 14:00 UTC is 16:00 in Paris in June
    assert set(training.FEATURE_COLUMNS) <= set(f["TX1"])
    assert not set(training.LEAKY_COLUMNS) & set(training.FEATURE_COLUMNS)


def test_a_later_payment_never_changes_an_earlier_row(spark):
    everything = features(spark)
    without_the_last = features(spark, PAYMENTS[:3] + PAYMENTS[4:])
    for tx, row in without_the_last.items():
        assert row == everything[tx], f"{tx} changed when a later payment was added"
