"""Point-in-time features on small explicit payments: velocity that never counts the current or a
later payment (two payments in one second, a late event), history flags, a category fraud rate
from matured labels only, labels from deduplicated notices, the as-of join (a label exactly at a
feature time, before any feature, without a key), the online table's parity, and the checks
catching each classic wrong answer with a message that names the fix."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.ml import features as f


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "ml_features_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


T = datetime(2026, 6, 10, 12, 0)
MS = timedelta(milliseconds=1)

PAYMENTS = (
    "transaction_id string, customer_id string, event_ts timestamp, ingest_ts timestamp, "
    "amount decimal(12,2), currency string, channel string, merchant_category string, "
    "country string, device_fingerprint string, status string"
)


def payment(tx, customer, ingest, amount, country="US", device=None, category="grocery", **kw):
    event = kw.get("event", ingest - timedelta(seconds=2))
    currency = kw.get("currency", "USD")
    channel = "online" if device else "pos"
    status = kw.get("status", "approved")
    return (tx, customer, event, ingest, Decimal(amount), currency, channel, category, country,
            device, status)  # fmt: skip


# C1 in arrival order: P2 and P3 arrive in the same second (500 ms apart); P5 is a late event
# (used 20 h before it arrived); P6 arrives 8 days later. C2 pays once, in euros.
PAYMENT_ROWS = [
    payment("P1", "C1", T, "10.00"),
    payment("P2", "C1", T + timedelta(minutes=10), "20.00", device="D1"),
    payment("P3", "C1", T + timedelta(minutes=10, milliseconds=500), "30.00", "FR", "D1"),
    payment("P4", "C1", T + timedelta(hours=2), "120.00", device="D2", category="digital_goods"),
    payment("P5", "C1", T + timedelta(hours=3), "40.00", event=T - timedelta(hours=20)),
    payment("P6", "C1", T + timedelta(days=8), "50.00", device="D1", status="declined"),
    payment("Q1", "C2", T + timedelta(minutes=5), "100.00", "DE", currency="EUR"),
]

CHARGEBACKS = (
    "chargeback_id string, transaction_id string, kind string, reason string, is_fraud boolean, "
    "amount decimal(12,2), currency string, dispute_ts timestamp, label_available_ts timestamp"
)
FRAUD_KNOWN = T + timedelta(hours=2, minutes=30)  # between P4 and P5
CHARGEBACK_ROWS = [
    ("CB1", "P2", "chargeback", "fraud_card_absent", True, Decimal("20.00"), "USD",
     T + timedelta(hours=1), FRAUD_KNOWN),
    ("CB1", "P2", "chargeback", "fraud_card_absent", True, Decimal("20.00"), "USD",
     T + timedelta(hours=1), FRAUD_KNOWN),  # the same notice delivered again
    ("CB2", "P4", "chargeback", "not_as_described", False, Decimal("120.00"), "USD",
     T + timedelta(days=5), T + timedelta(days=6)),
    ("CB3", "QX", "chargeback", "fraud_card_absent", True, Decimal("5.00"), "USD",
     T + timedelta(days=1), T + timedelta(days=2)),  # a payment Silver quarantined
]  # fmt: skip


@pytest.fixture(scope="module")
def payments(spark):
    return spark.createDataFrame(PAYMENT_ROWS, PAYMENTS)


@pytest.fixture(scope="module")
def chargebacks(spark):
    return spark.createDataFrame(CHARGEBACK_ROWS, CHARGEBACKS)


@pytest.fixture(scope="module")
def labels(payments, chargebacks):
    return f.fraud_labels(payments, chargebacks)


@pytest.fixture(scope="module")
def reference(payments, labels):
    return f.payment_features(payments, labels)


def by_id(df, column):
    return {r["transaction_id"]: r[column] for r in df.select("transaction_id", column).collect()}


# ------------------------------------------------------------------------------------------------
# Labels
# ------------------------------------------------------------------------------------------------
def test_labels_count_each_notice_once_and_wait_for_maturity(labels, payments, chargebacks):
    rows = {r.transaction_id: r for r in labels.collect()}
    assert set(rows) == {"P1", "P2", "P3", "P4", "P5", "P6", "Q1"}  # QX: not a Silver payment
    assert rows["P2"].is_fraud and rows["P2"].notices == 1
    assert rows["P2"].fraud_label_ts == rows["P2"].label_available_ts == FRAUD_KNOWN
    assert not rows["P4"].is_fraud and rows["P4"].notices == 1  # a dispute is not fraud
    matured = T + timedelta(hours=2) + timedelta(days=f.LABEL_MATURITY_DAYS)
    assert rows["P4"].label_available_ts == matured
    assert rows["P1"].notices == 0 and rows["P1"].fraud_label_ts is None
    assert labels.columns == f.FRAUD_LABELS_SCHEMA.fieldNames()
    assert f.check_labels(labels, payments, chargebacks) == {
        "payments": 7,
        "frauds": 1,
        "notices": 2,
    }


def test_check_labels_catches_duplicates_the_wrong_label_and_early_labels(
    labels, payments, chargebacks
):
    no_dedup = labels.withColumn(
        "notices", F.when(F.col("transaction_id") == "P2", 2).otherwise(F.col("notices"))
    )
    with pytest.raises(AssertionError, match="Deduplicate payments.chargebacks by chargeback_id"):
        f.check_labels(no_dedup, payments, chargebacks)
    # payments.transactions.is_fraud misses the new fraud pattern (here: P2)
    from_transactions = labels.withColumn("is_fraud", F.lit(False))
    with pytest.raises(AssertionError, match="not the is_fraud column of payments.transactions"):
        f.check_labels(from_transactions, payments, chargebacks)
    at_dispute = labels.withColumn(
        "label_available_ts",
        F.when(F.col("is_fraud"), F.col("prediction_ts") - F.expr("INTERVAL 1 HOUR")).otherwise(
            F.col("label_available_ts")
        ),
    )
    with pytest.raises(AssertionError, match="available before their payment arrived"):
        f.check_labels(at_dispute, payments, chargebacks)
    no_maturity = labels.withColumn("label_available_ts", F.col("prediction_ts"))
    with pytest.raises(AssertionError, match="labels_df differs from the expected rows"):
        f.check_labels(no_maturity, payments, chargebacks)


# ------------------------------------------------------------------------------------------------
# Per-payment features
# ------------------------------------------------------------------------------------------------
def test_velocity_counts_only_payments_that_arrived_before(reference):
    assert by_id(reference, "payments_1h") == {
        "P1": 0, "P2": 1, "P3": 2, "P4": 0, "P5": 1, "P6": 0, "Q1": 0
    }  # fmt: skip
    # P3 sees P2, 500 ms earlier (a frame in seconds would not); P5 sees P4 exactly 1 h before
    assert by_id(reference, "payments_24h") == {
        "P1": 0, "P2": 1, "P3": 2, "P4": 3, "P5": 4, "P6": 0, "Q1": 0
    }  # fmt: skip
    assert by_id(reference, "payments_7d")["P6"] == 0  # 8 days later
    ratio = by_id(reference, "amount_to_mean_30d")
    assert ratio["P1"] is None and ratio["Q1"] is None
    assert ratio["P2"] == pytest.approx(2.0) and ratio["P3"] == pytest.approx(2.0)
    assert ratio["P5"] == pytest.approx(40 / 45) and ratio["P6"] == pytest.approx(50 / 44)


def test_history_flags(reference):
    assert by_id(reference, "is_new_country") == {
        "P1": True, "P2": False, "P3": True, "P4": False, "P5": False, "P6": False, "Q1": True
    }  # fmt: skip
    assert by_id(reference, "is_new_device") == {
        "P1": None, "P2": True, "P3": False, "P4": True, "P5": None, "P6": False, "Q1": None
    }  # fmt: skip


def test_category_rate_uses_only_labels_available_before_the_payment(reference):
    rate = by_id(reference, "category_fraud_rate")
    prior, strength = f.CATEGORY_RATE_PRIOR, f.CATEGORY_RATE_STRENGTH
    assert rate["P1"] == pytest.approx(prior)  # nothing known yet
    # P3: grocery payments before it P1, Q1, P2; P2's fraud is not known until 14:30
    assert rate["P3"] == pytest.approx(strength * prior / (3 + strength))
    # P5 (15:00): the same three plus P3, and P2's fraud is known by now
    assert rate["P5"] == pytest.approx((1 + strength * prior) / (4 + strength))


def test_payment_features_table_has_no_outcome_columns(reference, payments, labels):
    assert reference.columns == f.PAYMENT_FEATURES_SCHEMA.fieldNames()
    assert not set(f.OUTCOME_COLUMNS) & set(reference.columns)
    assert f.check_payment_features(reference, payments, labels) == 7


def window_before(seconds, order="feature_ts", end=-1):
    return (
        Window.partitionBy("customer_id")
        .orderBy(F.unix_millis(order))
        .rangeBetween(-seconds * 1000, end)
    )


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        pytest.param(
            lambda df: df.withColumn(
                "payments_24h", F.count(F.lit(1)).over(window_before(86400, end=0))
            ),
            r"payments_24h is wrong on 7 row\(s\): it counts the current payment: end the frame "
            r"1 ms before it",
            id="frame-includes-the-current-row",
        ),
        pytest.param(
            lambda df: df.withColumn(
                "payments_24h",
                F.count(F.lit(1)).over(window_before(86400, order="event_ts")),
            ),
            r"counts payments outside the window before it: ones that arrived after the "
            r"current one \(order the window by the arrival time, unix_millis of ingest_ts, "
            r"not event_ts",
            id="ordered-by-event-time",
        ),
        pytest.param(
            lambda df: df.withColumn(
                "payments_24h",
                F.count(F.lit(1)).over(
                    Window.partitionBy("customer_id")
                    .orderBy(F.unix_seconds("feature_ts"))
                    .rangeBetween(-86400, -1)
                ),
            ),
            r"misses earlier payments: the frame reaches 86400 s back",
            id="seconds-miss-the-same-second",
        ),
        pytest.param(
            lambda df: df.withColumn(
                "payments_1h",
                F.count(F.lit(1)).over(
                    Window.partitionBy("customer_id").orderBy(F.unix_millis("feature_ts"))
                ),
            ),
            r"payments_1h is wrong .*give the frame both bounds: "
            r"rangeBetween\(-3600 \* 1000, -1\)",
            id="cumulative-count-without-a-frame",
        ),
        pytest.param(
            lambda df: df.withColumn(
                "amount_to_mean_30d",
                F.col("amount_usd")
                / F.avg("amount_usd").over(window_before(f.MEAN_WINDOW_SECONDS, end=0)),
            ),
            r"amount_to_mean_30d is wrong on 7 row\(s\): .*the payment itself excluded",
            id="mean-includes-the-payment",
        ),
        pytest.param(
            lambda df: df.withColumn(
                "is_new_country",
                F.count(F.lit(1)).over(
                    Window.partitionBy("customer_id", "country").orderBy("feature_ts")
                )
                == 1,
            ),
            None,  # ties aside, a cumulative count == 1 is right: accepted
            id="another-correct-new-country",
        ),
        pytest.param(
            lambda df: df.withColumn(
                "is_new_country",
                F.count(F.lit(1)).over(Window.partitionBy("customer_id", "country")) == 1,
            ),
            r"is_new_country is wrong on 1 row\(s\): it is true when no earlier payment",
            id="new-country-over-the-whole-period",
        ),
        pytest.param(
            lambda df: df.withColumn("is_new_device", F.coalesce("is_new_device", F.lit(False))),
            r"is_new_device is wrong on 3 row\(s\): .*null when the payment has no device",
            id="no-device-as-known-device",
        ),
    ],
)
def test_check_payment_features_names_the_mistake(reference, payments, labels, wrong, message):
    context = payments.select("transaction_id", "event_ts", "country")
    candidate = wrong(reference.join(context, "transaction_id")).drop("event_ts", "country")
    if message is None:
        f.check_payment_features(candidate, payments, labels)
        return
    with pytest.raises(AssertionError, match=message):
        f.check_payment_features(candidate, payments, labels)


def test_check_payment_features_catches_unmatured_and_duplicated_labels(
    reference, payments, labels
):
    base = f.payment_base(payments)
    unmatured = reference.drop("category_fraud_rate").join(
        f._category_rate(
            base, labels, matured=False, prior=f.CATEGORY_RATE_PRIOR, strength=50
        ).select("transaction_id", "category_fraud_rate"),
        "transaction_id",
    )
    with pytest.raises(AssertionError, match="uses fraud labels that were not available yet"):
        f.check_payment_features(unmatured, payments, labels)

    doubled = labels.unionByName(labels.where("is_fraud"))  # a notice counted twice
    twice = reference.drop("category_fraud_rate").join(
        base.transform(f.with_category_risk(doubled)).select(
            "transaction_id", "category_fraud_rate"
        ),
        "transaction_id",
    )
    with pytest.raises(AssertionError, match="a notice delivered twice counted twice"):
        f.check_payment_features(twice, payments, labels)

    with pytest.raises(AssertionError, match="carries status.*drop them"):
        f.check_payment_features(
            reference.join(payments.select("transaction_id", "status"), "transaction_id"),
            payments,
            labels,
        )


def test_check_feature_columns_rejects_outcomes_and_labels():
    assert f.check_feature_columns(["payments_1h"]) == ["payments_1h"]
    for leak in ("status", "decline_reason", "fraud_score", "is_fraud", "label_available_ts"):
        with pytest.raises(AssertionError, match=f"include {leak}: status, decline_reason"):
            f.check_feature_columns(["payments_1h", leak])
    with pytest.raises(AssertionError, match="is empty"):
        f.check_feature_columns([])


# ------------------------------------------------------------------------------------------------
# Daily features, the as-of join, the online table
# ------------------------------------------------------------------------------------------------
def test_daily_features_are_available_at_the_end_of_the_day(payments, labels):
    daily = f.customer_daily_features(payments, labels)
    rows = {(r.customer_id, str(r.feature_date)): r for r in daily.collect()}
    assert set(rows) == {("C1", "2026-06-10"), ("C1", "2026-06-18"), ("C2", "2026-06-10")}
    first = rows[("C1", "2026-06-10")]
    assert first.feature_ts == datetime(2026, 6, 11)
    assert (first.payments_day, first.fraud_notices_to_date) == (5, 1)
    assert first.amount_usd_day == Decimal("220.00")
    later = rows[("C1", "2026-06-18")]
    assert (later.payments_30d, later.declines_30d, later.fraud_notices_to_date) == (6, 1, 1)
    assert rows[("C2", "2026-06-10")].amount_usd_day == Decimal("108.70")  # 100 EUR


FEATURES = "customer_id string, feature_ts timestamp, value int"
FEATURE_ROWS = [
    ("K1", datetime(2026, 6, 1), 1),
    ("K1", datetime(2026, 6, 2), 2),
    ("K1", datetime(2026, 6, 3), 3),
    ("K2", datetime(2026, 6, 5), 5),
]
LABELS = "row_id string, customer_id string, prediction_ts timestamp"
LABEL_ROWS = [
    ("L1", "K1", datetime(2026, 6, 1, 12)),  # -> 1
    ("L2", "K1", datetime(2026, 6, 2)),  # exactly at a feature time -> 2
    ("L3", "K1", datetime(2026, 5, 31)),  # before any feature -> null
    ("L4", "K1", datetime(2026, 6, 10)),  # -> 3
    ("L5", "K2", datetime(2026, 6, 4, 23, 59)),  # K2's only row is later -> null
    ("L6", "K3", datetime(2026, 6, 4)),  # no features for K3 -> null
    ("L7", None, datetime(2026, 6, 4)),  # no key -> null
]


@pytest.fixture(scope="module")
def pit(spark):
    feature_df = spark.createDataFrame(FEATURE_ROWS, FEATURES)
    label_df = spark.createDataFrame(LABEL_ROWS, LABELS)
    return feature_df, label_df


def test_point_in_time_join_takes_the_latest_row_at_or_before(spark, pit):
    feature_df, label_df = pit
    joined = f.point_in_time_join(
        label_df, feature_df, keys="customer_id", label_ts="prediction_ts"
    )
    assert joined.columns == ["row_id", "customer_id", "prediction_ts", "feature_ts", "value"]
    assert by_row(joined) == {
        "L1": 1, "L2": 2, "L3": None, "L4": 3, "L5": None, "L6": None, "L7": None
    }  # fmt: skip
    assert (
        f.check_point_in_time(
            joined, feature_df, keys=["customer_id"], label_ts="prediction_ts", row_key="row_id"
        )
        == 7
    )
    with pytest.raises(ValueError, match="both have 'prediction_ts'"):
        f.point_in_time_join(
            label_df,
            feature_df.withColumn("prediction_ts", F.col("feature_ts")),
            keys="customer_id",
            label_ts="prediction_ts",
        )


def by_row(df):
    return {r["row_id"]: r["value"] for r in df.collect()}


def range_join(label_df, feature_df, condition, pick=F.max):
    renamed = feature_df.withColumnRenamed("customer_id", "_c")
    eligible = (
        label_df.join(renamed, F.col("_c") == F.col("customer_id"))
        .where(condition)
        .groupBy("row_id")
        .agg(pick("feature_ts").alias("feature_ts"))
    )
    return (
        label_df.join(eligible, "row_id", "left")
        .join(feature_df, ["customer_id", "feature_ts"], "left")
        .select("row_id", "customer_id", "prediction_ts", "feature_ts", "value")
    )


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        pytest.param(
            lambda labels, feats: labels.join(
                f.latest_per_key(feats, keys="customer_id"), "customer_id", "left"
            ),
            r"use features from after their prediction_ts.*not the latest snapshot",
            id="naive-latest-snapshot",
        ),
        pytest.param(
            lambda labels, feats: range_join(
                labels, feats, F.col("feature_ts") < F.col("prediction_ts")
            ),
            r"1 row\(s\) use an older feature row than the latest one",
            id="strictly-before",
        ),
        pytest.param(
            lambda labels, feats: range_join(
                labels, feats, F.col("feature_ts") <= F.col("prediction_ts"), pick=F.min
            ),
            r"use an older feature row .*not the first",
            id="first-row-instead-of-latest",
        ),
        pytest.param(
            lambda labels, feats: labels.join(
                feats.withColumnRenamed("customer_id", "_c"),
                (F.col("_c") == F.col("customer_id"))
                & (F.to_date("prediction_ts") == F.to_date("feature_ts")),
                "left",
            ).drop("_c"),
            r"have no features although a feature row at or before",
            id="same-day-equi-join",
        ),
        pytest.param(
            lambda labels, feats: range_join(
                labels,
                feats,
                F.col("feature_ts") <= F.col("prediction_ts") + F.expr("INTERVAL 1 DAY"),
            ),
            r"use features from after their prediction_ts",
            id="a-day-of-slack",
        ),
    ],
)
def test_check_point_in_time_names_the_mistake(pit, wrong, message):
    feature_df, label_df = pit
    joined = wrong(label_df.where(F.col("customer_id").isNotNull()), feature_df)
    with pytest.raises(AssertionError, match=message):
        f.check_point_in_time(
            joined, feature_df, keys=["customer_id"], label_ts="prediction_ts", row_key="row_id"
        )


def test_online_table_equals_the_offline_values_at_its_instant(payments, labels):
    daily = f.customer_daily_features(payments, labels)
    as_of = datetime(2026, 6, 12)  # after C1's first day, before its second
    online = f.online_features(daily, as_of)
    assert online.columns == f.ONLINE_SCHEMA.fieldNames()
    rows = {r.customer_id: r for r in online.collect()}
    assert rows["C1"].feature_ts == datetime(2026, 6, 11) and rows["C1"].payments_30d == 5
    assert f.check_online_parity(online, daily) == 2

    newest = f.latest_per_key(daily.drop("feature_date"), keys="customer_id").withColumn(
        "as_of_ts", F.lit(as_of)
    )
    with pytest.raises(AssertionError, match="newer than as_of_ts.*feature_ts <= as_of_ts"):
        f.check_online_parity(newest, daily)
    two_stamps = online.withColumn(
        "as_of_ts", F.when(F.col("customer_id") == "C2", F.lit(T)).otherwise(F.col("as_of_ts"))
    )
    with pytest.raises(AssertionError, match="2 distinct as_of_ts values"):
        f.check_online_parity(two_stamps, daily)
    missing = online.where(F.col("customer_id") == "C1")
    with pytest.raises(AssertionError, match="has 1 rows; its source has 2"):
        f.check_online_parity(missing, daily)
    stale = online.withColumn("payments_30d", F.col("payments_30d") - 1)
    with pytest.raises(AssertionError, match="differs from the expected rows"):
        f.check_online_parity(stale, daily)


def test_write_table_replaces_rows_and_keeps_the_comments(spark, labels):
    from lakehouse import DeltaTable
    from lakehouse.ml import FRAUD_LABELS

    f.write_table(spark, labels, FRAUD_LABELS)
    f.write_table(spark, labels, FRAUD_LABELS)  # a rerun replaces, never appends
    assertDataFrameEqual(spark.table(FRAUD_LABELS), labels)
    detail = DeltaTable.forName(spark, FRAUD_LABELS).detail().first()
    assert detail["description"] == f.COMMENTS[FRAUD_LABELS]
    with pytest.raises(ValueError, match="unknown ML table 'ml.nope'"):
        f.create_table(spark, "ml.nope")


def test_quick_fraud_metric_scores_a_leak_above_noise():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 400
    fraud = rng.random(n) < 0.1
    frame = pd.DataFrame(
        {
            "prediction_ts": pd.date_range("2026-06-01", periods=n, freq="h"),
            "is_fraud": fraud,
            "noise": rng.random(n),
            "outcome": np.where(fraud, "declined", "approved"),
            "flag": [None if i % 7 == 0 else bool(v) for i, v in enumerate(rng.random(n) < 0.5)],
        }
    )
    split = datetime(2026, 6, 10)
    honest = f.quick_fraud_metric(frame, ["noise", "flag"], split_ts=split)
    leaky = f.quick_fraud_metric(frame, ["noise", "outcome"], split_ts=split)
    assert honest["train_rows"] == 216 and honest["test_rows"] == 184
    assert leaky["pr_auc"] == pytest.approx(1.0) and honest["pr_auc"] < 0.5
