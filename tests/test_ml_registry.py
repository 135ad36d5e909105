"""The registry and the promotion gate: the gate's checks on pandas frames and small fake
models (each failing criterion refuses, all passing promotes), the seeded paired bootstrap
(its interval covers the true difference), the checks of the lesson's tasks against their
plausible wrong answers, and aliases, promotion and rollback in a temporary SQLite registry."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lakehouse.config import settings
from lakehouse.ml import evaluation as ev
from lakehouse.ml import registry, tracking

pytest.importorskip("mlflow")

SOURCE = "ml.fraud_holdout@v0"


# --------------------------------------------------------------------------- synthetic holdout


def holdout_frame(n: int = 2_000, seed: int = 1) -> pd.DataFrame:
    """Payments with a label that depends on the amount and the channel, and the slice columns."""
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(4.0, 1.2, n), 2)
    channel = rng.choice(["online", "pos", "atm"], n, p=[0.5, 0.4, 0.1])
    network = rng.choice(["visa", "mastercard"], n)
    signal = 0.8 * (np.log(amount) - 4) + 1.2 * (channel == "online") + rng.normal(0, 1, n)
    label = (signal > 2.6).astype("int64")
    return pd.DataFrame(
        {
            "transaction_id": [f"T{i:05d}" for i in range(n)],
            "amount_usd": amount,
            "log_amount_usd": np.log1p(amount),
            "channel": channel,
            "card_network": network,
            ev.LABEL: label,
            "signal": signal,
        }
    )


class ScoreColumn:
    """A fake model: its fraud probability is a column of the frame (``predict_proba``)."""

    def __init__(self, column: str, delay_s: float = 0.0):
        self.column, self.delay_s = column, delay_s

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        p = 1 / (1 + np.exp(-X[self.column].to_numpy(dtype="float64")))
        return np.column_stack([1 - p, p])


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    f = holdout_frame()
    # the champion sees a noisy signal, the challenger a sharper one
    return f.assign(
        weak=f["signal"] + rng.normal(0, 2.0, len(f)) - 2.6,
        strong=f["signal"] + rng.normal(0, 0.3, len(f)) - 2.6,
    )


@pytest.fixture(scope="module")
def holdout(frame) -> registry.Holdout:
    return registry.Holdout("ml.fraud_holdout", 0, frame)


def scores_of(holdout, column: str, name: str, threshold: float | None = None, frame=None):
    """Scores of the fake model reading ``column``, at its cheapest threshold on the rows."""
    target = holdout if frame is None else frame
    rows = target.frame if isinstance(target, registry.Holdout) else target
    if threshold is None:
        p = ScoreColumn(column).predict_proba(rows)[:, 1]
        threshold = ev.choose_threshold(rows[ev.LABEL], p, rows["amount_usd"])
    return registry.score_holdout(
        ScoreColumn(column), target, threshold=threshold, name=name, features=[column]
    )


def signature_for(frame: pd.DataFrame, columns=("log_amount_usd", "channel")):
    from mlflow.models import infer_signature

    return infer_signature(frame[list(columns)], np.zeros(len(frame)))


def run_gate(champion, challenger, frame, policy=None, **overrides):
    arguments = {
        "signature": signature_for(frame),
        "features": frame[["log_amount_usd", "channel", "card_network"]],
        "latency_ms": 0.05,
        "policy": policy or registry.GatePolicy(),
        **overrides,
    }
    return registry.gate(champion, challenger, **arguments)


def failed(result: registry.GateResult) -> list[str]:
    return [check.name for check in result.checks if not check.passed]


# --------------------------------------------------------------------------- bands and scores


def test_amount_bands_are_half_open_with_an_open_last_band():
    bands = registry.amount_band([0.0, 49.99, 50.0, 199.99, 200.0, 999.0, 1_000.0, 25_000.0])
    assert list(bands) == [
        "<50",
        "<50",
        "50-200",
        "50-200",
        "200-1000",
        "200-1000",
        ">=1000",
        ">=1000",
    ]


def test_scores_on_a_holdout_carry_its_source_and_other_frames_none(holdout, frame):
    on_holdout = scores_of(holdout, "weak", "v1")
    assert on_holdout.source == SOURCE and on_holdout.digest == holdout.digest
    assert list(on_holdout.slices.columns) == list(registry.SLICE_COLUMNS)
    assert set(on_holdout.slices[registry.AMOUNT_BAND]) <= {"<50", "50-200", "200-1000", ">=1000"}
    on_frame = scores_of(None, "weak", "v1", frame=frame)
    assert on_frame.source is None
    assert np.array_equal(on_frame.score, on_holdout.score)


def test_scoring_a_frame_without_labels_or_amounts_is_refused(frame):
    with pytest.raises(ValueError, match="lacks \\['label'\\]"):
        registry.score_holdout(
            ScoreColumn("weak"), frame.drop(columns=[ev.LABEL]), threshold=0.5, name="v1"
        )


# --------------------------------------------------------------------------- the bootstrap


def test_the_paired_bootstrap_is_seeded_and_checks_its_inputs():
    rng = np.random.default_rng(0)
    a, b = rng.exponential(10, 300), rng.exponential(9, 300)
    first = registry.paired_bootstrap(a, b, seed=3)
    assert registry.paired_bootstrap(a, b, seed=3) == first
    assert registry.paired_bootstrap(a, b, seed=4) != first
    assert first.low < first.estimate < first.high
    assert first.estimate == pytest.approx((b - a).sum())
    with pytest.raises(ValueError, match="same rows"):
        registry.paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="confidence"):
        registry.paired_bootstrap(a, b, confidence=95)
    with pytest.raises(ValueError, match="at least one resample"):
        registry.bootstrap_totals(a, b, n_resamples=0)


def test_the_interval_covers_the_true_difference_about_as_often_as_it_claims():
    # Costs whose true mean difference per row is known: the interval of the total over n rows
    # must cover n x that mean in about 90% of samples (a 90% interval).
    rng = np.random.default_rng(11)
    n, true_mean, trials = 400, -0.8, 60
    covered = 0
    for trial in range(trials):
        base = rng.exponential(10, n)  # what both models pay: shared luck
        challenger = base + rng.normal(true_mean, 3.0, n)
        interval = registry.paired_bootstrap(
            base, challenger, confidence=0.9, n_resamples=400, seed=trial
        )
        covered += interval.low <= n * true_mean <= interval.high
    assert 0.78 <= covered / trials <= 0.99, f"covered {covered} of {trials}"


def test_pairing_cancels_the_rows_shared_luck():
    rng = np.random.default_rng(5)
    base = rng.exponential(100, 500)  # large costs both models pay
    challenger = base - 1.0 + rng.normal(0, 0.5, 500)
    paired = registry.paired_bootstrap(base, challenger, seed=0)
    assert paired.high < 0  # surely cheaper, by ~1 USD a row
    unpaired = registry.bootstrap_totals(
        base[rng.permutation(500)], challenger, seed=0
    )  # the same costs, rows no longer matched
    assert np.quantile(unpaired, 0.975) - np.quantile(unpaired, 0.025) > 10 * (
        paired.high - paired.low
    )


# --------------------------------------------------------------------------- the gate


def test_a_better_challenger_passes_every_check(holdout, frame):
    result = run_gate(scores_of(holdout, "weak", "v1"), scores_of(holdout, "strong", "v2"), frame)
    assert result.passed, result.reasons
    assert result.reasons == []
    assert [c.name for c in result.checks] == [
        "same frozen holdout",
        "PR-AUC floor",
        "PR-AUC vs champion",
        "expected cost",
        "cost difference CI",
        "slices",
        "signature",
        "latency p95",
    ]
    assert result.verdict().startswith("PROMOTE v2 over v1")
    assert result.interval.high < 0
    assert set(result.figures) == {"v1", "v2"}
    table = result.table()
    assert list(table.columns) == ["check", "outcome", "detail"]
    assert set(table["outcome"]) == {"pass"}
    assert set(result.slices["slice"]) == set(registry.SLICE_COLUMNS)


def test_a_worse_challenger_is_refused_on_the_metrics(holdout, frame):
    result = run_gate(scores_of(holdout, "strong", "v1"), scores_of(holdout, "weak", "v2"), frame)
    assert not result.passed
    assert {"PR-AUC vs champion", "expected cost", "cost difference CI"} <= set(failed(result))
    assert result.verdict().startswith("REFUSE v2 (champion v1 stays)")
    assert any(reason.startswith("expected cost:") for reason in result.reasons)


@pytest.mark.parametrize(
    "policy, check",
    [
        (registry.GatePolicy(min_pr_auc=0.999), "PR-AUC floor"),
        (registry.GatePolicy(pr_auc_tolerance=-1.0), "PR-AUC vs champion"),
        (registry.GatePolicy(min_cost_saving=0.99), "expected cost"),
        (registry.GatePolicy(latency_budget_ms=0.01), "latency p95"),
    ],
    ids=["pr_auc_floor", "pr_auc_relative", "cost_saving", "latency"],
)
def test_each_threshold_of_the_policy_refuses_on_its_own(holdout, frame, policy, check):
    result = run_gate(
        scores_of(holdout, "weak", "v1"), scores_of(holdout, "strong", "v2"), frame, policy
    )
    assert failed(result) == [check]
    assert result.reasons[0].startswith(f"{check}: ")


def test_cheaper_on_the_point_estimate_alone_is_refused(holdout, frame):
    # The challenger is the champion plus one more fraud caught: cheaper, but the resamples
    # without that payment see no difference at all.
    champion = scores_of(holdout, "weak", "v1")
    fraud = int(np.flatnonzero((champion.label == 1) & (champion.score < champion.threshold))[0])
    score = champion.score.copy()
    score[fraud] = 1.0
    challenger = dataclasses.replace(champion, model="v2", score=score)
    result = run_gate(champion, challenger, frame)
    assert result.interval.estimate < 0
    assert failed(result) == ["cost difference CI"]
    assert "not surely cheaper" in result.reasons[0]


def test_a_challenger_worse_in_one_slice_is_refused(holdout, frame):
    champion = scores_of(holdout, "weak", "v1")
    better = scores_of(holdout, "strong", "v2")
    # the same challenger, blind on visa: it flags nothing there
    visa = (champion.slices["card_network"] == "visa").to_numpy()
    blind = dataclasses.replace(better, score=np.where(visa, 0.0, better.score))
    result = run_gate(champion, blind, frame, registry.GatePolicy(pr_auc_tolerance=1.0))
    assert "slices" in failed(result)
    reason = next(r for r in result.reasons if r.startswith("slices"))
    assert "card_network=visa" in reason and "mastercard" not in reason


def test_the_signature_must_accept_the_holdouts_columns_and_types(holdout, frame):
    champion, challenger = scores_of(holdout, "weak", "v1"), scores_of(holdout, "strong", "v2")
    features = frame[["log_amount_usd", "channel"]]
    extra = signature_for(frame.assign(device="x"), ("log_amount_usd", "channel", "device"))
    result = run_gate(champion, challenger, frame, signature=extra, features=features)
    assert failed(result) == ["signature"]
    assert "'device' (string) is missing" in result.reasons[0]
    as_number = signature_for(frame.assign(channel=1.0))
    result = run_gate(champion, challenger, frame, signature=as_number, features=features)
    assert "'channel' is string, the model takes double" in result.reasons[0]
    result = run_gate(champion, challenger, frame, signature=None, features=features)
    assert "has no signature" in result.reasons[0]
    # an integer column feeds a double input (MLflow converts it without loss)
    ints = frame.assign(log_amount_usd=frame["log_amount_usd"].round().astype("int64"))
    assert registry.signature_mismatches(signature_for(frame), ints[features.columns]) == []


def test_the_latency_is_measured_per_row_in_batches(frame):
    fast = registry.measure_latency(ScoreColumn("weak"), frame, batch_rows=200, batches=5)
    slow = registry.measure_latency(
        ScoreColumn("weak", delay_s=0.02), frame, batch_rows=200, batches=5
    )
    assert slow >= 0.1 > fast  # a 20 ms pause per batch of 200 rows: at least 0.1 ms a row
    with pytest.raises(ValueError, match="empty"):
        registry.measure_latency(ScoreColumn("weak"), frame.iloc[:0])


# --------------------------------------------------------------------------- different data


def test_models_scored_on_different_data_are_not_compared(holdout, frame):
    champion = scores_of(holdout, "weak", "v1")
    fresh = frame.sample(frac=0.5, random_state=0).sort_values("transaction_id")
    cases = {
        "a fresh split": scores_of(None, "strong", "v2", frame=fresh),
        "the same rows, as a plain frame": scores_of(None, "strong", "v2", frame=frame),
        "another version": scores_of(
            registry.Holdout("ml.fraud_holdout", 3, frame), "strong", "v2"
        ),
        "a sample of the holdout": scores_of(
            registry.Holdout("ml.fraud_holdout", 0, fresh), "strong", "v2"
        ),
        "another order": scores_of(
            registry.Holdout("ml.fraud_holdout", 0, frame.iloc[::-1]), "strong", "v2"
        ),
        "labels recomputed": scores_of(
            registry.Holdout("ml.fraud_holdout", 0, frame.assign(label=0)), "strong", "v2"
        ),
    }
    for case, challenger in cases.items():
        result = run_gate(champion, challenger, frame)
        assert not result.passed, case
        assert failed(result) == ["same frozen holdout"], case
        assert len(result.checks) == 1, f"{case}: no figure is compared on different rows"


def test_check_same_holdout_names_the_fix_for_each_wrong_answer(holdout, frame):
    champion = scores_of(holdout, "weak", "v1")
    challenger = scores_of(holdout, "strong", "v2")
    assert "both models scored on ml.fraud_holdout@v0: 2000 rows" in (
        registry.check_same_holdout(champion, challenger, holdout)
    )
    # correct alternative: the model's own feature list, another threshold
    alternative = registry.score_holdout(
        ScoreColumn("strong"), holdout, threshold=0.3, name="v2", features=["strong", "weak"]
    )
    registry.check_same_holdout(champion, alternative, holdout)
    wrong = {
        "fresh split": (
            scores_of(None, "strong", "v2", frame=frame.iloc[: len(frame) // 2]),
            "not a fresh split",
        ),
        "another version": (
            scores_of(registry.Holdout("ml.fraud_holdout", 1, frame), "strong", "v2"),
            "not ml.fraud_holdout@v0",
        ),
        "a sample": (
            scores_of(registry.Holdout("ml.fraud_holdout", 0, frame.iloc[::2]), "strong", "v2"),
            "score all the holdout's rows",
        ),
        "labels recomputed": (
            scores_of(
                registry.Holdout("ml.fraud_holdout", 0, frame.assign(label=0)), "strong", "v2"
            ),
            "frozen labels",
        ),
    }
    for scores, fix in wrong.values():
        with pytest.raises(AssertionError, match=fix):
            registry.check_same_holdout(champion, scores, holdout)
        with pytest.raises(AssertionError, match=fix):
            registry.check_same_holdout(scores, champion, holdout)
    with pytest.raises(AssertionError, match="score_holdout"):
        registry.check_same_holdout(champion, challenger.score, holdout)


def test_serving_uri_check_wants_the_alias():
    assert "follows every promotion" in registry.check_serving_uri(
        "models:/fraud_detector@champion", "fraud_detector"
    )
    wrong = {
        "models:/fraud_detector/3": "pins a version",
        "models:/fraud_detector/latest": "pins a version",
        "models:/fraud_detector/Production": "pins a version",
        "runs:/0a1b/model": "not a registry URI",
        "models:/m-0123456789": "not the champion's alias",
        "models:/fraud_detector@challenger": "not the champion's alias",
        "models:/other@champion": "not the champion's alias",
    }
    for uri, message in wrong.items():
        with pytest.raises(AssertionError, match=message):
            registry.check_serving_uri(uri, "fraud_detector")
    assert registry.model_uri("m", "champion") == "models:/m@champion"
    with pytest.raises(ValueError, match="not a version"):
        registry.model_uri("m", "3")


def test_the_registered_name_is_three_level_in_unity_catalog():
    assert registry.registered_name(engine="delta-spark") == "fraud_detector"
    assert registry.registered_name(engine="databricks") == "main.ml.fraud_detector"


# --------------------------------------------------------------------------- the registry


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tracking.Store:
    lake = tmp_path_factory.mktemp("lake")
    store = tracking.store_for(settings=settings(lake=lake, catalog="ci_registry"))
    tracking.configure(store=store)
    return store


@pytest.fixture(scope="module")
def examples(frame):
    return frame.assign(log_amount_usd=np.log1p(frame["amount_usd"]))


def fitted(examples, columns, class_weight="balanced"):
    numeric = [c for c in columns if c != "channel"]
    pre = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    model = Pipeline([("features", pre), ("model", LogisticRegression(class_weight=class_weight))])
    return model.fit(examples[list(columns)], examples[ev.LABEL])


@pytest.fixture(scope="module")
def registered(store, examples):
    """Three versions: 1 knows the channel only, 2 the amount too, 3 the amount without weights."""
    name = "fraud_detector_ci"
    registry.delete_model(name)
    specs = [
        (["channel"], "balanced"),
        (["log_amount_usd", "channel"], "balanced"),
        (["log_amount_usd", "channel"], None),
    ]
    versions = []
    for columns, class_weight in specs:
        model = fitted(examples, columns, class_weight)
        threshold = ev.choose_threshold(
            examples[ev.LABEL], tracking.scores(model, examples[columns]), examples["amount_usd"]
        )
        logged = tracking.log_training_run(
            model,
            "registry_test",
            examples[columns],
            examples[ev.LABEL],
            table="ml.fraud_training_set",
            table_version=0,
        )
        versions.append(
            registry.register(logged.model_uri, name, tags={registry.THRESHOLD_TAG: threshold})
        )
    return name, versions


def test_register_aliases_and_a_missing_alias(registered):
    name, versions = registered
    assert versions == [1, 2, 3]
    registry.set_alias(name, registry.CHAMPION, 1)
    assert registry.version_of(name, registry.CHAMPION) == 1
    assert registry.version_of(name, "nobody") is None
    assert registry.aliases(name)[registry.CHAMPION] == 1
    assert registry.threshold_of(name, registry.CHAMPION) == pytest.approx(
        float(registry.version_tags(name, 1)[registry.THRESHOLD_TAG])
    )
    with pytest.raises(ValueError, match="has no @nobody"):
        registry.threshold_of(name, "nobody")
    assert registry.delete_model("no_such_model") is False


def test_gate_promote_refuse_and_roll_back_through_the_registry(registered, examples):
    name, (v1, v2, v3) = registered
    holdout = registry.Holdout("ml.fraud_holdout", 0, examples)
    features = ["log_amount_usd", "channel"]
    registry.set_alias(name, registry.CHAMPION, v1)

    registry.set_alias(name, registry.CHALLENGER, v2)
    better = registry.compare(name, holdout, features=features)
    assert better.passed, better.reasons
    assert better.champion == f"v{v1}" and better.challenger == f"v{v2}"
    assert registry.promote(name, v2, better) == v1
    assert registry.aliases(name) == {registry.CHAMPION: v2, registry.PREVIOUS: v1}
    tags = registry.version_tags(name, v2)
    assert tags[registry.REPLACED_TAG] == str(v1)
    assert tags[registry.GATE_TAG].startswith("PROMOTE")
    assert tags[registry.HOLDOUT_TAG] == "ml.fraud_holdout@v0"
    assert "follows" in registry.check_serving_uri(registry.model_uri(name, "champion"), name)
    assert "version 2 is @champion, version 1 is @previous" in registry.check_promotion(
        name, better, v2, v1
    )

    registry.set_alias(name, registry.CHALLENGER, v3)
    worse = registry.compare(name, holdout, features=features)
    assert not worse.passed
    with pytest.raises(registry.PromotionRefused, match="stays a challenger: .*expected cost"):
        registry.promote(name, v3, worse)
    assert registry.version_of(name, registry.CHAMPION) == v2
    assert registry.version_tags(name, v3)[registry.GATE_TAG].startswith("REFUSE")
    assert "refused, @champion stays version 2" in registry.check_promotion(name, worse, v3, v2)

    uri = registry.model_uri(name, registry.CHAMPION)
    assert registry.rollback(name, reason="incident") == v1
    assert registry.aliases(name) == {registry.CHALLENGER: v3, registry.CHAMPION: v1}
    assert registry.version_tags(name, v2)[registry.ROLLED_BACK_TAG] == "incident"
    assert "is version 1 again" in registry.check_rollback(name, uri, v1, examples[features])
    with pytest.raises(ValueError, match="no @previous"):
        registry.rollback(name)


def test_check_promotion_and_rollback_catch_the_wrong_moves(registered, examples):
    name, (v1, v2, v3) = registered
    holdout = registry.Holdout("ml.fraud_holdout", 0, examples)
    features = ["log_amount_usd", "channel"]
    for alias in (registry.PREVIOUS, registry.CHALLENGER):
        if registry.version_of(name, alias) is not None:
            registry._client().delete_registered_model_alias(name, alias)
    registry.set_alias(name, registry.CHAMPION, v2)
    registry.set_alias(name, registry.CHALLENGER, v3)
    refused = registry.compare(name, holdout, features=features)  # v3 against v2
    registry.set_alias(name, registry.CHAMPION, v1)
    registry.set_alias(name, registry.CHALLENGER, v2)
    passed = registry.compare(name, holdout, features=features)  # v2 against v1
    assert passed.passed and not refused.passed

    # not promoted although the gate passed
    with pytest.raises(AssertionError, match="promote it"):
        registry.check_promotion(name, passed, v2, v1)
    # @champion moved without recording the previous champion
    registry.set_alias(name, registry.CHAMPION, v2)
    with pytest.raises(AssertionError, match="nothing to roll back to"):
        registry.check_promotion(name, passed, v2, v1)
    # a refused challenger promoted (e.g. on its point estimate)
    registry.set_alias(name, registry.CHAMPION, v3)
    with pytest.raises(AssertionError, match="promote only when result.passed"):
        registry.check_promotion(name, refused, v3, v2)
    # a rollback that did not happen, or went to the wrong version
    uri = registry.model_uri(name, registry.CHAMPION)
    with pytest.raises(AssertionError, match="roll back by moving the alias"):
        registry.check_rollback(name, uri, v1, examples[features])
    registry.set_alias(name, registry.CHAMPION, v1)
    with pytest.raises(AssertionError, match="pins a version"):
        registry.check_rollback(name, f"models:/{name}/{v1}", v1, examples[features])
    assert "version 1 again" in registry.check_rollback(name, uri, v1, examples[features])
