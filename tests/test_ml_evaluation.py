"""The fraud model's evaluation: the time split with a gap, the metrics of a rare class, the
cost model and the threshold it chooses, the rules baseline, and the checks that catch the
classic mistakes (a random split, no gap, evaluating on the training period, labels from the
future, threshold 0.5, F1 or accuracy instead of cost)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from lakehouse.ml import evaluation as ev
from lakehouse.streaming import pipeline

START = pd.Timestamp("2026-06-01")


@pytest.fixture(scope="module")
def payments() -> pd.DataFrame:
    """60 days of payments, 5% fraud; a fraud's notice arrives 1 to 20 days after it (now
    and then later than the gap), fraud is larger on average, and the score ranks fraud
    higher, imperfectly (a class-weighted model's probabilities: fraud in 0.3 to 0.95)."""
    rng = np.random.default_rng(7)
    n = 3_000
    event = START + pd.to_timedelta(np.sort(rng.uniform(0, 60, n)), unit="D")
    fraud = rng.random(n) < 0.05
    amount = np.round(rng.lognormal(3.5, 1.0, n) * np.where(fraud, 4, 1), 2)
    delay = pd.to_timedelta(rng.uniform(1, 20, n), unit="D")
    score = np.where(fraud, rng.uniform(0.3, 0.95, n), rng.beta(1.2, 6, n))
    return pd.DataFrame(
        {
            "transaction_id": [f"TX{i:06d}" for i in range(n)],
            "event_ts": event,
            "amount_usd": amount,
            "fraud_label_ts": pd.Series(event + delay).where(fraud),
            "score": score,
        }
    )


SPLIT = ev.TimeSplit(train_end=START + pd.Timedelta(days=30), gap="14 days")


# --------------------------------------------------------------------------- labels and split


def test_labels_as_of_counts_only_notices_already_arrived():
    frame = pd.DataFrame({"fraud_label_ts": pd.to_datetime(["2026-06-05", "2026-06-20", None])})
    assert ev.labels_as_of(frame, "2026-06-10").tolist() == [1, 0, 0]
    assert ev.labels_as_of(frame, "2026-06-20").tolist() == [1, 1, 0]


def test_time_split_trains_before_t1_skips_the_gap_and_labels_as_known_at_t2(payments):
    train, test = SPLIT.apply(payments)
    assert train["event_ts"].max() < SPLIT.train_end
    assert test["event_ts"].min() >= SPLIT.test_start == START + pd.Timedelta(days=44)
    in_gap = payments["event_ts"].between(SPLIT.train_end, SPLIT.test_start, inclusive="left")
    assert len(train) + len(test) + in_gap.sum() == len(payments)
    assert train["label"].tolist() == ev.labels_as_of(train, SPLIT.test_start).tolist()
    assert test["label"].tolist() == test["fraud_label_ts"].notna().astype(int).tolist()
    summary = ev.check_time_split(train, test, SPLIT.gap)
    assert summary.startswith(f"train {len(train)} payments")


def test_time_split_with_an_end_and_bad_gap():
    split = ev.TimeSplit("2026-06-10", "2 days", test_end="2026-06-13")
    frame = pd.DataFrame(
        {
            "transaction_id": ["a", "b", "c", "d"],
            "event_ts": pd.to_datetime(["2026-06-09", "2026-06-11", "2026-06-12", "2026-06-14"]),
            "fraud_label_ts": pd.NaT,
        }
    )
    train, test = split.apply(frame)
    assert train["transaction_id"].tolist() == ["a"]
    assert test["transaction_id"].tolist() == ["c"]
    with pytest.raises(ValueError, match="negative"):
        ev.TimeSplit("2026-06-10", "-1 days")


def test_a_random_split_on_time_ordered_data_is_caught(payments):
    train, test = train_test_split(payments, test_size=0.3, random_state=0)
    train, test = train.assign(label=0), test.assign(label=0)
    with pytest.raises(AssertionError, match="random split"):
        ev.check_time_split(train, test, SPLIT.gap)


def test_a_split_without_the_gap_is_caught(payments):
    train, test = ev.TimeSplit(SPLIT.train_end, "0 days").apply(payments)
    with pytest.raises(AssertionError, match="less than the gap of 14 days"):
        ev.check_time_split(train, test, SPLIT.gap)


def test_evaluating_on_the_training_period_is_caught(payments):
    train, _ = SPLIT.apply(payments)
    with pytest.raises(AssertionError, match="evaluated on the period it learned from"):
        ev.check_time_split(train, train.copy(), SPLIT.gap)
    late_train = train[train["event_ts"] >= START + pd.Timedelta(days=20)]
    with pytest.raises(AssertionError, match="evaluated on the period it learned from"):
        ev.check_time_split(train, late_train, SPLIT.gap)


def test_training_labels_from_the_future_are_caught(payments):
    train, test = SPLIT.apply(payments)
    latest = train.assign(label=train["fraud_label_ts"].notna().astype(int))
    assert (latest["label"] != train["label"]).any(), "the data must have immature labels"
    with pytest.raises(AssertionError, match="arrived after the model was trained"):
        ev.check_time_split(latest, test, SPLIT.gap)


def test_immature_test_labels_are_caught(payments):
    train, test = SPLIT.apply(payments)
    immature = test.assign(label=ev.labels_as_of(test, SPLIT.test_start))
    with pytest.raises(AssertionError, match="matured"):
        ev.check_time_split(train, immature, SPLIT.gap)


def test_empty_periods_are_caught(payments):
    train, test = SPLIT.apply(payments)
    with pytest.raises(AssertionError, match="both periods need payments"):
        ev.check_time_split(train, test.iloc[:0], SPLIT.gap)


# --------------------------------------------------------------------------- costs and metrics


def test_the_cost_model_prices_each_decision():
    costs = ev.CostModel(review_usd=5, chargeback_fee_usd=15, friction_rate=0.1)
    y, flagged = [1, 1, 0, 0], [False, True, True, False]
    amount = [100.0, 100.0, 200.0, 200.0]
    assert costs.per_payment(y, flagged, amount).tolist() == [115.0, 5.0, 25.0, 0.0]
    assert ev.expected_cost(y, [0.1, 0.9, 0.9, 0.1], amount, 0.5, costs) == 145.0
    assert ev.no_alert_cost(y, amount, costs) == 230.0


def test_cost_curve_and_the_cheapest_threshold():
    y = [1, 0, 1, 0, 0]
    score = [0.9, 0.8, 0.4, 0.3, 0.1]
    amount = [500.0, 50.0, 300.0, 20.0, 10.0]
    curve = ev.cost_curve(y, score, amount)
    assert curve["threshold"].tolist() == [0.1, 0.3, 0.4, 0.8, 0.9, np.inf]
    assert curve["alerts"].tolist() == [5, 4, 3, 2, 1, 0]
    # flag the three highest: both frauds caught (2 reviews), one false alarm of 50 USD
    assert ev.choose_threshold(y, score, amount) == 0.4
    assert curve.set_index("threshold").loc[0.4, "expected_cost_usd"] == pytest.approx(
        5 + 5 + 5 + 0.05 * 50
    )


def test_pr_auc_of_a_random_scorer_is_the_fraud_rate_and_roc_auc_half():
    rng = np.random.default_rng(1)
    y = (rng.random(20_000) < 0.02).astype(int)
    noise = rng.random(y.size)
    assert ev.pr_auc(y, noise) == pytest.approx(y.mean(), abs=0.01)
    assert ev.roc_auc(y, noise) == pytest.approx(0.5, abs=0.03)


def test_recall_at_precision():
    y = [1, 1, 0, 1, 0, 0]
    score = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    assert ev.recall_at_precision(y, score, 1.0) == pytest.approx(2 / 3)
    assert ev.recall_at_precision(y, score, 0.75) == pytest.approx(1.0)
    assert ev.recall_at_precision([0, 1], [0.9, 0.1], 0.9) == 0.0
    assert np.isnan(ev.recall_at_precision([0, 0], [0.9, 0.1], 0.5))


def test_brier_and_the_reliability_table():
    y = [0, 0, 1, 1, 0]
    p = [0.05, 0.15, 0.85, 0.95, 0.9]
    assert ev.brier(y, p) == pytest.approx(np.mean((np.array(p) - np.array(y)) ** 2))
    table = ev.reliability_table(y, p, bins=5)
    assert table["bin"].tolist() == ["[0.0, 0.2)", "[0.8, 1.0]"]
    assert table["payments"].tolist() == [2, 3]
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, 0.9])
    assert table["observed_fraud_rate"].tolist() == pytest.approx([0.0, 2 / 3])
    assert ev.reliability_table([1], [1.0])["bin"].tolist() == ["[0.8, 1.0]"]


def test_evaluate_reports_every_figure(payments):
    _, test = SPLIT.apply(payments)
    figures = ev.evaluate(test["label"], test["score"], test["amount_usd"], threshold=0.3)
    assert set(figures) == {
        "pr_auc",
        "recall_at_precision",
        "expected_cost_usd",
        "brier",
        "roc_auc",
        "alerts",
        "frauds_caught",
        "frauds_missed",
    }
    assert figures["frauds_caught"] + figures["frauds_missed"] == test["label"].sum()
    assert 0 < figures["pr_auc"] < 1 and figures["roc_auc"] > figures["pr_auc"]
    table = ev.as_table({"model": figures})
    assert ev.check_metrics(table, {"model": figures}).startswith("1 scorers")


def test_check_metrics_names_the_wrong_figure(payments):
    _, test = SPLIT.apply(payments)
    figures = ev.evaluate(test["label"], test["score"], test["amount_usd"], threshold=0.3)
    wrong = dict(figures, pr_auc=figures["roc_auc"])
    with pytest.raises(AssertionError, match="pr_auc is .*not ROC-AUC"):
        ev.check_metrics(ev.as_table({"model": wrong}), {"model": figures})
    with pytest.raises(AssertionError, match="lacks the scorer 'rules'"):
        ev.check_metrics(ev.as_table({"model": figures}), {"rules": figures})


# --------------------------------------------------------------------------- the threshold


def test_the_cost_threshold_passes(payments):
    _, test = SPLIT.apply(payments)
    y, s, a = test["label"], test["score"], test["amount_usd"]
    best = ev.choose_threshold(y, s, a)
    assert "the least possible" in ev.check_threshold(best, y, s, a)


def test_threshold_half_is_caught(payments):
    _, test = SPLIT.apply(payments)
    y, s, a = test["label"], test["score"], test["amount_usd"]
    with pytest.raises(AssertionError, match="0.5 is the default of predict"):
        ev.check_threshold(0.5, y, s, a)


def test_a_threshold_chosen_by_f1_or_accuracy_is_caught(payments):
    _, test = SPLIT.apply(payments)
    y, s, a = test["label"], test["score"], test["amount_usd"]
    by_f1, by_accuracy = ev.best_threshold_by(y, s, "f1"), ev.best_threshold_by(y, s, "accuracy")
    assert by_f1 != ev.choose_threshold(y, s, a)
    with pytest.raises(AssertionError, match="maximizes F1"):
        ev.check_threshold(by_f1, y, s, a)
    with pytest.raises(AssertionError, match="maximizes accuracy"):
        ev.check_threshold(by_accuracy, y, s, a)


def test_accuracy_prefers_flagging_nothing_on_a_rare_class():
    y = np.array([0] * 98 + [1] * 2)
    score = np.r_[np.linspace(0, 0.5, 98), [0.35, 0.45]]
    assert ev.best_threshold_by(y, score, "accuracy") == np.inf
    with pytest.raises(AssertionError, match="maximizes accuracy"):
        ev.check_threshold(np.inf, y, score, np.full(100, 1_000.0))


# --------------------------------------------------------------------------- the baseline


def test_rules_baseline_scores_the_share_of_streaming_rules_hit():
    X = pd.DataFrame(
        {
            "amount_usd": [pipeline.HIGH_AMOUNT_USD, 10.0, 600.0, 50.0],
            "local_hour": [
                12.0,
                float(pipeline.NIGHT_START_HOUR),
                2.0,
                float(pipeline.NIGHT_END_HOUR),
            ],
            "customer_mean_usd": [None, 100.0, 100.0, 1.0],
        }
    )
    hit = ev.RulesBaseline().fit().rules_hit(X)
    assert hit.to_numpy().tolist() == [
        [True, False, False],  # no history: never above the customer's average
        [False, True, False],
        [False, True, True],  # 600 > 5 x 100
        [False, False, True],  # 05:00 is morning
    ]
    assert ev.RulesBaseline().predict_proba(X)[:, 1].tolist() == pytest.approx(
        [1 / 3, 1 / 3, 2 / 3, 1 / 3]
    )
    with pytest.raises(ValueError, match="local_hour"):
        ev.RulesBaseline().predict_proba(X.drop(columns="local_hour"))


# --------------------------------------------------------------------------- the models task

FEATURES = ["amount", "hour", "channel"]


@pytest.fixture(scope="module")
def examples() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 400
    label = (rng.random(n) < 0.05).astype(int)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n) * (1 + 3 * label),
            "hour": rng.integers(0, 24, n).astype(float),
            "channel": rng.choice(["online", "pos"], n),
            "status": np.where(label == 1, "declined", "approved"),  # an outcome: a leak
            "label": label,
        }
    )


def fitted(examples, columns=FEATURES, *, forest=False, class_weight="balanced", **kw):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = [c for c in columns if examples[c].dtype == object]
    numeric = [c for c in columns if c not in categorical]
    if forest:
        kw = {"n_estimators": 20, "max_depth": 4, **kw}
        model = RandomForestClassifier(class_weight=class_weight, random_state=0, **kw)
    else:
        model = LogisticRegression(class_weight=class_weight, max_iter=500)
    prep = ColumnTransformer(
        [
            ("n", StandardScaler(), numeric),
            ("c", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    return Pipeline([("features", prep), ("model", model)]).fit(
        examples[list(columns)], examples["label"]
    )


def models(examples, **forest_kw):
    return {
        "logistic_regression": fitted(examples),
        "random_forest": fitted(examples, forest=True, **forest_kw),
    }


def check(examples, chosen):
    return ev.check_models(chosen, FEATURES, examples, leaky=["status"])


def test_check_models_accepts_both_models_in_any_column_order(examples):
    assert check(examples, models(examples)).startswith("2 fitted models with class weights")
    reordered = {**models(examples), "random_forest": fitted(examples, FEATURES[::-1], forest=True)}
    check(examples, reordered)


@pytest.mark.parametrize(
    "mistake, message",
    [
        ("only one model", "build exactly 'logistic_regression', 'random_forest'"),
        ("fitted on an array", "not fitted on a DataFrame"),
        ("the outcome as a feature", "fitted on ['status']: outcomes of the decision"),
        ("a feature left out", "missing ['hour']"),
        ("no class weights", "has no class_weight"),
        ("an unbounded forest", "is unbounded"),
    ],
)
def test_check_models_names_the_fix_for_each_classic_mistake(examples, mistake, message):
    from sklearn.linear_model import LogisticRegression

    chosen = models(examples)
    if mistake == "only one model":
        chosen.pop("random_forest")
    elif mistake == "fitted on an array":
        chosen["logistic_regression"] = LogisticRegression(class_weight="balanced").fit(
            examples[["amount", "hour"]].to_numpy(), examples["label"]
        )
    elif mistake == "the outcome as a feature":
        chosen["random_forest"] = fitted(examples, [*FEATURES, "status"], forest=True)
    elif mistake == "a feature left out":
        chosen["logistic_regression"] = fitted(examples, ["amount", "channel"])
    elif mistake == "no class weights":
        chosen["logistic_regression"] = fitted(examples, class_weight=None)
    elif mistake == "an unbounded forest":
        chosen["random_forest"] = fitted(examples, forest=True, max_depth=None)
    with pytest.raises(AssertionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check(examples, chosen)
