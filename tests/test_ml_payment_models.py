"""lakehouse.ml.payment_models: time folds, capacity cut-offs, replay, the frames' checks (each
wrong answer of lesson 05_ml/03 caught with a message naming the fix), and the Spark frames on
a few hand-made rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from lakehouse.ml import payment_models as pm

H = pd.Timestamp("2026-06-22")


# --------------------------------------------------------------------------- time folds


def test_expanding_folds_train_before_they_validate_and_grow():
    folds = pm.expanding_folds("2026-06-01", "2026-06-22", n_folds=3)
    assert len(folds) == 3
    assert {f.start for f in folds} == {pd.Timestamp("2026-06-01")}
    assert [f.train_end for f in folds] == [f.valid_start for f in folds]
    assert folds[-1].valid_end == pd.Timestamp("2026-06-22")
    for before, after in zip(folds, folds[1:]):
        assert after.train_end == before.valid_end
    assert folds[0].train_end - folds[0].start == folds[0].valid_end - folds[0].valid_start


def test_expanding_folds_leave_a_gap():
    fold = pm.expanding_folds("2026-06-01", "2026-06-09", n_folds=1, gap="1 day")[0]
    assert fold.valid_start == fold.train_end + pd.Timedelta(days=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_folds": 0}, "at least 1 fold"),
        ({"end": "2026-05-01"}, "not after start"),
        ({"gap": "-1 day"}, "negative"),
        ({"gap": "10 days"}, "fewer folds"),
    ],
)
def test_expanding_folds_refuse_bad_input(kwargs, message):
    args = {"start": "2026-06-01", "end": "2026-06-22", "n_folds": 3} | kwargs
    with pytest.raises(ValueError, match=message):
        pm.expanding_folds(args.pop("start"), args.pop("end"), **args)


def _summary(folds):
    """folds: [((train first, last, n), (valid first, last, n)), ...], days of June."""
    rows = []
    for k, sides in enumerate(folds):
        for side, (first, last, n) in zip(("train", "valid"), sides):
            rows.append(
                {
                    "fold": k,
                    "side": side,
                    "first": pd.Timestamp(2026, 6, first),
                    "last": pd.Timestamp(2026, 6, last),
                    "n": n,
                }
            )
    return pd.DataFrame(rows).set_index(["fold", "side"]).sort_index()


EXPANDING = [((1, 5, 50), (6, 10, 50)), ((1, 10, 100), (11, 15, 50)), ((1, 15, 150), (16, 21, 60))]


def test_fold_check_accepts_expanding_and_sliding_windows():
    assert "3 time folds" in pm._check_fold_summary(_summary(EXPANDING))
    sliding = [((1, 5, 50), (6, 10, 50)), ((6, 10, 50), (11, 15, 50)), ((11, 15, 50), (16, 21, 60))]
    assert "50->50" in pm._check_fold_summary(_summary(sliding))


@pytest.mark.parametrize(
    ("folds", "message"),
    [
        # randomSplit folds: every side spans the whole history
        (
            [((1, 21, 140), (1, 21, 70)), ((1, 21, 140), (1, 21, 70))],
            "trains on the future",
        ),
        # CrossValidator(foldCol=week): fold 0 validates week 1 and trains on weeks 2 and 3
        (
            [((8, 21, 140), (1, 7, 70)), ((1, 21, 140), (8, 14, 70)), ((1, 14, 140), (15, 21, 70))],
            "trains on the future",
        ),
        (
            [((1, 5, 50), (6, 12, 50)), ((1, 10, 100), (11, 15, 50))],
            "overlapping",
        ),
        (
            [((1, 10, 100), (11, 15, 50)), ((1, 10, 100), (16, 21, 50))],
            "window must move",
        ),
        ([((1, 5, 0), (6, 10, 50))], "empty training"),
        ([((1, 5, 50), (6, 10, 0))], "empty validation"),
    ],
    ids=["random_split", "fold_col", "overlapping", "frozen_window", "no_train", "no_valid"],
)
def test_fold_check_catches_each_wrong_answer(folds, message):
    with pytest.raises(AssertionError, match=message):
        pm._check_fold_summary(_summary(folds))


def test_fold_check_refuses_no_splits():
    with pytest.raises(AssertionError, match="one \\(train_df, valid_df\\) pair per fold"):
        pm.check_time_folds([])


def test_best_params_takes_the_best_mean():
    cv = pd.DataFrame(
        {
            "grid_index": [0, 0, 1, 1],
            "params": [{"d": 3}, {"d": 3}, {"d": 5}, {"d": 5}],
            "fold": [0, 1, 0, 1],
            "metric": [0.6, 0.7, 0.9, 0.5],
        }
    )
    assert pm.best_params(cv) == {"d": 5}
    assert pm.best_params(cv, larger_is_better=False) == {"d": 3}


# --------------------------------------------------------------------------- risk tiers

SCORES = np.linspace(0.0, 0.3, 1001)  # a rare class: nothing near 0.5


def test_capacity_cutoffs_hold_the_capacity():
    cutoffs = pm.capacity_cutoffs(SCORES, high_share=0.05, medium_share=0.15)
    tiers = pm.tiers(SCORES, cutoffs)
    assert abs(np.mean(tiers == "HIGH") - 0.05) < 0.002
    assert abs(np.mean(tiers == "MEDIUM") - 0.15) < 0.002
    message = pm.check_risk_cutoffs(cutoffs, SCORES, high_share=0.05, medium_share=0.15)
    assert message.startswith("cut-offs HIGH >= 0.2850, MEDIUM >= 0.2400")


def test_risk_check_accepts_a_pandas_quantile():
    scores = pd.Series(SCORES)
    cutoffs = {"HIGH": scores.quantile(0.95), "MEDIUM": scores.quantile(0.80)}
    pm.check_risk_cutoffs(cutoffs, scores, high_share=0.05, medium_share=0.15)


@pytest.mark.parametrize(
    ("cutoffs", "message"),
    [
        ({"HIGH": 0.5, "MEDIUM": 0.2}, "fixed probability"),  # probabilities, not capacity
        ({"HIGH": 0.285, "MEDIUM": 0.0}, "MEDIUM holds"),  # MEDIUM swallows everything
        ({"HIGH": 0.24, "MEDIUM": 0.285}, "below MEDIUM"),  # swapped
        ({"high": 0.285, "medium": 0.24}, "keys 'HIGH' and 'MEDIUM'"),
        ({"HIGH": float(np.quantile(SCORES, 0.85)), "MEDIUM": 0.1}, "HIGH holds 15"),
    ],
    ids=["fixed_probability", "medium_everything", "swapped", "keys", "shares_swapped"],
)
def test_risk_check_catches_each_wrong_answer(cutoffs, message):
    with pytest.raises(AssertionError, match=message):
        pm.check_risk_cutoffs(cutoffs, SCORES, high_share=0.05, medium_share=0.15)


def test_capacity_shares_are_validated():
    with pytest.raises(ValueError, match="between 0 and 1"):
        pm.capacity_cutoffs(SCORES, high_share=0.6, medium_share=0.5)
    with pytest.raises(ValueError, match="score the reference period"):
        pm.capacity_cutoffs([], high_share=0.05, medium_share=0.15)


def test_capacity_recall_counts_the_positives_in_the_top_share():
    y = [1, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    score = [0.9, 0.8, 0.1, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert pm.capacity_recall(y, score, 0.2) == pytest.approx(1 / 3)
    assert pm.capacity_recall(y, score, 0.4) == pytest.approx(2 / 3)
    # the fifth place is a tie at 0.0: by position row 4 (a negative), by the tie-break column
    # the last row (a positive)
    assert pm.capacity_recall(y, score, 0.5) == pytest.approx(2 / 3)
    tie = [0, 0, 0, 0, 0, 0, 0, 0, 0, 5]
    assert pm.capacity_recall(y, score, 0.5, tie) == pytest.approx(1.0)
    assert np.isnan(pm.capacity_recall([0, 0], [0.1, 0.2], 0.5))


# --------------------------------------------------------------------------- routing


def test_replay_keeps_the_attempts_where_the_policy_agrees():
    logged = ["trey", "lamna", "trey", "woodgrove"]
    approved = [True, False, False, True]
    assert pm.replay_value(logged, approved, ["trey"] * 4) == (0.5, 2)
    assert pm.replay_value(logged, approved, ["trey", "trey", "lamna", "woodgrove"]) == (1.0, 2)
    value, matched = pm.replay_value(logged, approved, ["relecloud"] * 4)
    assert np.isnan(value) and matched == 0
    with pytest.raises(ValueError, match="one row per attempt"):
        pm.replay_value(logged, approved, ["trey"])


GOOD_ROUTING = {
    "n": 400,
    "rule_routed": 0,
    "declined": 80,
    "retries": 0,
    "last": "2026-06-21 23:00",
    "wrong_label": 0,
}


def test_routing_check_accepts_the_random_slice():
    assert "400 randomly routed" in pm._check_routing_summary(GOOD_ROUTING, H)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n": 2000, "rule_routed": 1600}, "routed_randomly = true only"),  # all traffic
        ({"retries": 30}, "attempt_no = 1"),
        ({"last": "2026-06-30 12:00"}, "held-out period must stay unseen"),
        ({"wrong_label": 400}, "label = approved"),
        ({"declined": 0}, "approved and declined"),  # approved rows only
        ({"n": 0}, "empty"),
    ],
    ids=["all_traffic", "retries", "future", "label", "approved_only", "empty"],
)
def test_routing_check_catches_each_wrong_answer(change, message):
    with pytest.raises(AssertionError, match=message):
        pm._check_routing_summary(GOOD_ROUTING | change, H)


# --------------------------------------------------------------------------- retry

GOOD_WAIT = {"n": 270, "hard": 0, "failed": 0, "last": "2026-06-21 20:00"}


def test_wait_check_accepts_successful_soft_retries():
    assert "270 successful retries" in pm._check_wait_summary(GOOD_WAIT, H)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hard": 6}, "decline_type = 'soft'"),
        ({"failed": 260}, "label = 1"),
        ({"last": "2026-06-28 00:00"}, "held-out period"),
        ({"n": 0}, "empty"),
    ],
    ids=["hard_declines", "failed_retries", "future", "empty"],
)
def test_wait_check_catches_each_wrong_answer(change, message):
    with pytest.raises(AssertionError, match=message):
        pm._check_wait_summary(GOOD_WAIT | change, H)


def test_policy_wait_is_the_middle_of_the_policy_range():
    waits = pm.policy_wait_s(["pos", "online"])
    assert waits[0] == pytest.approx((5 * 180) ** 0.5)
    assert waits[1] == pytest.approx((10 * 259_200) ** 0.5)


# --------------------------------------------------------------------------- features, baselines


@pytest.mark.parametrize("leak", ["response_code", "approved", "latency_ms", "status", "is_fraud"])
def test_outcomes_are_refused_as_features(leak):
    with pytest.raises(AssertionError, match=leak):
        pm.check_features(["processor", "card_network", leak])


def test_context_features_are_accepted():
    assert pm.check_features(pm.RETRY_CATEGORICAL) == list(pm.RETRY_CATEGORICAL)


def test_rate_baseline_uses_the_training_rate_and_the_prior_for_new_values():
    train = pd.DataFrame({"processor": ["a", "a", "b", "b"], pm.LABEL: [1.0, 0.0, 1.0, 1.0]})
    test = pd.DataFrame({"processor": ["b", "a", "c"]})
    assert list(pm.rate_baseline(train, test, "processor")) == [1.0, 0.5, 0.75]


def test_binary_figures_of_a_perfect_and_a_constant_score():
    y = np.array([0, 0, 1, 1])
    perfect = pm.binary_figures(y, [0.0, 0.0, 1.0, 1.0])
    assert perfect["roc_auc"] == 1.0 and perfect["brier"] == 0.0
    constant = pm.binary_figures(y, [0.5] * 4)
    assert constant["roc_auc"] == 0.5 and constant["brier"] == 0.25


# --------------------------------------------------------------------------- Spark


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "ml_payment_models_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


T = datetime(2026, 6, 10, 12, 0)


def _attempts(spark):
    rows = [
        # a: approved at once; b: soft decline, retried after 60 s, approved; c: hard decline,
        # retried in vain; d: a declined attempt never retried
        ("A1", "a", 1, None, T, "trey", True, "00", True, 100),
        ("B1", "b", 1, None, T, "lamna", False, "91", False, 3000),
        ("B2", "b", 2, "B1", T + timedelta(seconds=60), "lamna", False, "00", True, 200),
        ("C1", "c", 1, None, T, "woodgrove", False, "54", False, 150),
        ("C2", "c", 2, "C1", T + timedelta(hours=1), "woodgrove", False, "54", False, 160),
        ("D1", "d", 1, None, T, "relecloud", True, "05", False, 300),
    ]
    return spark.createDataFrame(rows, pm.ATTEMPTS_DDL)


def _context(spark):
    rows = [
        ("a", "amex", "rest_of_world", "grocery", "pos", 20.0, 3.04, 12.0),
        ("b", "visa", "europe", "travel", "online", 700.0, 6.55, 9.0),
        ("c", "visa", "north_america", "digital_goods", "online", 5.0, 1.79, None),
        ("d", "mastercard", "north_america", "fuel", "pos", 600.0, 6.4, 2.0),
    ]
    ddl = (
        "transaction_id string, card_network string, region string, merchant_category string, "
        "channel string, amount_usd double, log_amount_usd double, local_hour double"
    )
    return spark.createDataFrame(rows, ddl)


def test_frames_rule_and_checks_on_spark(spark):
    from pyspark.sql import functions as F

    attempts_df, context_df = _attempts(spark), _context(spark)
    approval_df = pm.first_attempts(attempts_df, context_df).withColumn("rule", pm.rule_processor())
    approval = approval_df.orderBy("transaction_id").toPandas()
    assert list(approval["label"]) == [1.0, 0.0, 0.0, 0.0]
    # amex first, then Europe, then >= 500 USD, then digital goods, else woodgrove
    assert list(approval["rule"]) == ["lamna", "relecloud", "trey", "lamna"]

    retries = pm.retry_examples(attempts_df, context_df).orderBy("attempt_id").toPandas()
    assert list(retries["attempt_id"]) == ["B1", "C1"]  # D1 was never retried: no outcome
    assert list(retries["decline_type"]) == ["soft", "hard"]
    assert list(retries["wait_s"]) == [60.0, 3600.0]
    assert list(retries["label"]) == [1.0, 0.0]

    # the wrong wait frame (every retry) and the right one (successful soft retries)
    retry_df = pm.retry_examples(attempts_df, context_df)
    with pytest.raises(AssertionError, match="decline_type = 'soft'"):
        pm.check_wait_examples(retry_df, history_end="2026-06-22")
    assert "1 successful" in pm.check_wait_examples(
        retry_df.where((F.col("decline_type") == "soft") & (F.col("label") == 1)),
        history_end="2026-06-22",
    )
    with pytest.raises(AssertionError, match="routed_randomly = true only"):
        pm.check_routing_examples(approval_df, history_end="2026-06-22")
    assert "2 randomly routed" in pm.check_routing_examples(
        pm.routing_examples(approval_df), history_end="2026-06-22"
    )


def test_time_fold_cv_and_recommendations_on_spark(spark):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    rng = np.random.default_rng(3)
    n = 240
    processor = rng.choice(pm.PROCESSORS, n)
    network = rng.choice(["visa", "amex"], n)
    # trey approves visa, lamna approves amex; the others rarely approve
    good = ((processor == "trey") & (network == "visa")) | (
        (processor == "lamna") & (network == "amex")
    )
    approved = rng.random(n) < np.where(good, 0.95, 0.2)
    pdf = pd.DataFrame(
        {
            "attempt_id": [f"A{i:04d}" for i in range(n)],
            "attempt_ts": [T + timedelta(hours=2 * i) for i in range(n)],
            "processor": processor,
            "card_network": network,
            "log_amount_usd": rng.normal(3, 1, n),
            "label": approved.astype(float),
        }
    )
    df = spark.createDataFrame(pdf)
    folds = pm.expanding_folds(T, T + timedelta(hours=2 * n), n_folds=2)
    splits = [fold.frames(df) for fold in folds]
    assert "2 time folds" in pm.check_time_folds(splits)
    shuffled = df.randomSplit([0.5, 0.5], seed=1)
    with pytest.raises(AssertionError, match="trains on the future"):
        pm.check_time_folds([(shuffled[0], shuffled[1])])

    def build(regParam=0.0):
        return pm.build_pipeline(
            LogisticRegression(maxIter=10, regParam=regParam),
            ["processor", "card_network"],
            ["log_amount_usd"],
        )

    cv = pm.time_fold_cv(splits, build, BinaryClassificationEvaluator(), grid=[{"regParam": 0.0}])
    assert list(cv["fold"]) == [0, 1] and (cv["metric"] > 0.5).all()

    # a linear model cannot express the interaction; a forest can
    from pyspark.ml.classification import RandomForestClassifier

    forest = pm.build_pipeline(
        RandomForestClassifier(numTrees=10, maxDepth=4, seed=1), ["processor", "card_network"]
    ).fit(df)
    recs = pm.recommendations(forest, df.limit(40), ["processor", "card_network"])
    assert len(recs) == 40 and "logged_processor" in recs.columns
    expected = np.where(recs["card_network"] == "visa", "trey", "lamna")
    assert (recs["recommended"] == expected).mean() >= 0.9


def test_reproducible_gives_a_seeded_forest_the_same_rows_whatever_the_layout(spark):
    """The same rows in two different layouts (another partitioning, another order): a seeded
    forest fitted on each differs unless both pass through ``reproducible`` first, which puts
    every row in the same partition at the same place."""
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.sql import functions as F

    rng = np.random.default_rng(5)
    n = 400
    pdf = pd.DataFrame(
        {
            "attempt_id": [f"A{i:04d}" for i in range(n)],
            "processor": rng.choice(pm.PROCESSORS, n),
            "log_amount_usd": rng.normal(3, 1, n),
            "label": (rng.random(n) < 0.6).astype(float),
        }
    )
    base = spark.createDataFrame(pdf)
    layouts = [base.repartition(3), base.orderBy(F.rand(seed=7)).repartition(5)]

    def layout(df):
        return [
            tuple(r) for r in df.select(F.spark_partition_id().alias("p"), "attempt_id").collect()
        ]

    fixed = [pm.reproducible(df, "attempt_id", partitions=4) for df in layouts]
    assert layout(fixed[0]) == layout(fixed[1])
    assert layout(layouts[0]) != layout(layouts[1])

    def fitted_probabilities(df):
        model = pm.build_pipeline(
            RandomForestClassifier(numTrees=5, maxDepth=4, seed=1),
            ["processor"],
            ["log_amount_usd"],
        ).fit(df)
        return pm.scored(model, base.orderBy("attempt_id"))[pm.SCORE].round(12).tolist()

    assert fitted_probabilities(fixed[0]) == fitted_probabilities(fixed[1])
    assert fitted_probabilities(layouts[0]) != fitted_probabilities(layouts[1])
