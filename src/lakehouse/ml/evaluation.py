"""Honest evaluation of a fraud model: a time split with a gap for label maturity, metrics for a
rare class (PR-AUC, recall at a fixed precision, expected cost in USD), calibration, the decision
threshold chosen by cost, the streaming rules as the baseline to beat, and the checks the
lesson's check cells call. Plain pandas, numpy and scikit-learn: no Spark session.

Example::

    from lakehouse.ml import evaluation as ev

    split = ev.TimeSplit(train_end="2026-06-15", gap="7 days")
    train_pdf, test_pdf = split.apply(examples_pdf)
    ev.check_time_split(train_pdf, test_pdf, split.gap)
    threshold = ev.choose_threshold(y_val, score_val, amount_val)
    ev.evaluate(test_pdf["label"], model_scores, test_pdf["amount_usd"], threshold=threshold)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics

from lakehouse.ml.training import AMOUNT, KEY, LABEL_TIME, TIME

LABEL = "label"


# --------------------------------------------------------------------------- labels and split


def labels_as_of(frame: pd.DataFrame, as_of, *, label_time: str = LABEL_TIME) -> np.ndarray:
    """1 where the payment's fraud notice had arrived by ``as_of``, else 0: the label as
    someone looking at ``as_of`` knows it (a payment without a notice yet may still be fraud)."""
    label_ts = pd.to_datetime(frame[label_time])
    return (label_ts.notna() & (label_ts <= pd.Timestamp(as_of))).to_numpy(dtype="int64")


@dataclass(frozen=True)
class TimeSplit:
    """Train on payments before ``train_end`` (T1), skip the ``gap`` in which their labels mature,
    test on payments from ``test_start`` = T1 + gap (T2) up to ``test_end`` (exclusive; None:
    all later payments).

    The model is trained at T2 with the labels known then, and is used from T2 on; the test
    labels are read ``labels_at`` (default: the latest labels, once the test payments' labels
    have matured too)."""

    train_end: pd.Timestamp
    gap: pd.Timedelta
    test_end: pd.Timestamp | None = None

    def __init__(self, train_end, gap, test_end=None):
        object.__setattr__(self, "train_end", pd.Timestamp(train_end))
        object.__setattr__(self, "gap", pd.Timedelta(gap))
        object.__setattr__(self, "test_end", None if test_end is None else pd.Timestamp(test_end))
        if self.gap < pd.Timedelta(0):
            raise ValueError(f"gap {gap!r} is negative: give the label maturity, e.g. '7 days'")

    @property
    def test_start(self) -> pd.Timestamp:
        return self.train_end + self.gap

    def apply(
        self, frame: pd.DataFrame, *, time: str = TIME, labels_at=None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(train, test)`` copies of ``frame`` with a ``label`` column: the training labels
        as known at T2, the test labels as known at ``labels_at`` (default: the latest)."""
        ts = pd.to_datetime(frame[time])
        train = frame[ts < self.train_end].copy()
        in_test = ts >= self.test_start
        if self.test_end is not None:
            in_test &= ts < self.test_end
        test = frame[in_test].copy()
        train[LABEL] = labels_as_of(train, self.test_start)
        latest = pd.Timestamp.max if labels_at is None else labels_at
        test[LABEL] = labels_as_of(test, latest)
        return train, test


# --------------------------------------------------------------------------- costs


@dataclass(frozen=True)
class CostModel:
    """What each decision on a payment costs, in USD (``amount`` is the payment's, in USD):

    ============================  ==========================================================
    fraud, not flagged (missed)   ``amount + chargeback_fee_usd``: the money is gone and the
                                  card scheme charges a fee
    fraud, flagged (caught)       ``review_usd``: an analyst confirms it; the loss is avoided
    genuine, flagged (false alarm) ``review_usd + friction_rate * amount``: the review, and
                                  the customer's friction (a blocked card, a call, a lost
                                  sale) grows with what they were buying
    genuine, not flagged          0
    ============================  ==========================================================

    The defaults are round, plausible figures for card-not-present payments; a team sets them
    with its fraud operations. Every figure the lesson prints depends on them.
    """

    review_usd: float = 5.0
    chargeback_fee_usd: float = 15.0
    friction_rate: float = 0.05

    def per_payment(self, y, flagged, amount) -> np.ndarray:
        """The cost of each decision (see the table above)."""
        y, flagged = np.asarray(y).astype(bool), np.asarray(flagged).astype(bool)
        amount = np.asarray(amount, dtype="float64")
        missed = y & ~flagged
        false_alarm = ~y & flagged
        return (
            missed * (amount + self.chargeback_fee_usd)
            + (y & flagged) * self.review_usd
            + false_alarm * (self.review_usd + self.friction_rate * amount)
        )


COSTS = CostModel()


def expected_cost(y, score, amount, threshold: float, cost: CostModel = COSTS) -> float:
    """Total cost in USD of flagging the payments with ``score >= threshold``."""
    return float(cost.per_payment(y, np.asarray(score) >= threshold, amount).sum())


def cost_curve(y, score, amount, cost: CostModel = COSTS) -> pd.DataFrame:
    """Expected cost, alerts, precision and recall at every threshold that changes a decision
    (each distinct score, and +inf: flag nothing), by increasing threshold."""
    y = np.asarray(y).astype(bool)
    score, amount = np.asarray(score, dtype="float64"), np.asarray(amount, dtype="float64")
    thresholds = np.append(np.unique(score), np.inf)
    rows = []
    for t in thresholds:
        flagged = score >= t
        tp = int((flagged & y).sum())
        rows.append(
            {
                "threshold": float(t),
                "expected_cost_usd": float(cost.per_payment(y, flagged, amount).sum()),
                "alerts": int(flagged.sum()),
                "precision": tp / flagged.sum() if flagged.any() else 1.0,
                "recall": tp / y.sum() if y.any() else 0.0,
            }
        )
    return pd.DataFrame(rows)


def choose_threshold(y, score, amount, cost: CostModel = COSTS) -> float:
    """The threshold of least expected cost (the highest one, on a tie: fewer alerts)."""
    curve = cost_curve(y, score, amount, cost)
    best = curve["expected_cost_usd"].min()
    return float(curve.loc[curve["expected_cost_usd"] <= best + 1e-9, "threshold"].max())


# --------------------------------------------------------------------------- metrics


def pr_auc(y, score) -> float:
    """Area under the precision-recall curve (average precision). A random scorer gets the fraud
    rate, not 0.5: on 1.5% fraud, 0.3 is far from random."""
    return float(metrics.average_precision_score(y, score)) if np.any(y) else float("nan")


def roc_auc(y, score) -> float:
    """ROC-AUC, for comparison only: the true negatives that dominate a rare class make it look
    good whatever the alerts cost."""
    y = np.asarray(y)
    return float(metrics.roc_auc_score(y, score)) if 0 < y.sum() < y.size else float("nan")


def recall_at_precision(y, score, min_precision: float) -> float:
    """The largest share of frauds caught at a threshold whose alerts are at least
    ``min_precision`` fraud (0 when no threshold reaches it)."""
    if not np.any(y):
        return float("nan")
    precision, recall, _ = metrics.precision_recall_curve(y, score)
    reached = precision >= min_precision
    return float(recall[reached].max()) if reached.any() else 0.0


def brier(y, probability) -> float:
    """Mean squared error of the probabilities: 0 is perfect; the fraud rate times one minus it
    is what always predicting the base rate gets."""
    return float(metrics.brier_score_loss(y, probability))


def reliability_table(y, probability, *, bins: int = 5) -> pd.DataFrame:
    """Predicted probability against the observed fraud rate, in ``bins`` bins of equal width
    over [0, 1] (empty bins left out): a calibrated model sits on the diagonal."""
    y = np.asarray(y, dtype="float64")
    p = np.asarray(probability, dtype="float64")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append(
                {
                    "bin": f"[{edges[b]:.1f}, {edges[b + 1]:.1f}" + (")" if b < bins - 1 else "]"),
                    "payments": int(inside.sum()),
                    "mean_predicted": float(p[inside].mean()),
                    "observed_fraud_rate": float(y[inside].mean()),
                }
            )
    return pd.DataFrame(rows)


def evaluate(
    y,
    score,
    amount,
    *,
    threshold: float,
    cost: CostModel = COSTS,
    min_precision: float = 0.5,
) -> dict[str, float]:
    """Every figure of the lesson for one scorer on one period: ``pr_auc``,
    ``recall_at_precision`` (at ``min_precision``), ``expected_cost_usd`` at ``threshold``,
    ``brier``, ``roc_auc``, and the alerts, frauds caught and missed at ``threshold``.
    ``score`` must be a probability for the Brier score to mean anything."""
    y = np.asarray(y).astype("int64")
    score = np.asarray(score, dtype="float64")
    flagged = score >= threshold
    return {
        "pr_auc": pr_auc(y, score),
        "recall_at_precision": recall_at_precision(y, score, min_precision),
        "expected_cost_usd": expected_cost(y, score, amount, threshold, cost),
        "brier": brier(y, np.clip(score, 0.0, 1.0)),
        "roc_auc": roc_auc(y, score),
        "alerts": int(flagged.sum()),
        "frauds_caught": int((flagged & (y == 1)).sum()),
        "frauds_missed": int((~flagged & (y == 1)).sum()),
    }


def no_alert_cost(y, amount, cost: CostModel = COSTS) -> float:
    """What doing nothing costs: every fraud missed."""
    return expected_cost(y, np.zeros(len(y)), amount, 1.0, cost)


# --------------------------------------------------------------------------- the baseline


class RulesBaseline:
    """The fraud rules of the streaming module (``lakehouse.streaming.pipeline.FRAUD_RULES``) as
    a scorer: the share of the three rules a payment hits (0, 1/3, 2/3 or 1), with the
    module's constants. The customer average is the mean of the customer's payments of the 30
    days before (``customer_mean_usd``, from ``ml.payment_features``' ``amount_to_mean_30d``)
    (the streaming profile uses the whole month, which a model could not know at the time),
    and the upstream ``fraud_score`` is left out, as from every model here (a leak in this
    data). It learns nothing: ``fit`` returns it unchanged.

    Reads ``amount_usd``, ``local_hour`` and ``customer_mean_usd``."""

    columns = (AMOUNT, "local_hour", "customer_mean_usd")

    def fit(self, X=None, y=None) -> RulesBaseline:
        return self

    def rules_hit(self, X: pd.DataFrame) -> pd.DataFrame:
        from lakehouse.streaming import pipeline as p

        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise ValueError(f"the rules read {missing}: pass the examples' columns")
        amount, hour = X[AMOUNT].astype(float), X["local_hour"]
        mean = X["customer_mean_usd"].astype(float)
        return pd.DataFrame(
            {
                "high_amount": amount >= p.HIGH_AMOUNT_USD,
                "night_time": (hour >= p.NIGHT_START_HOUR) & (hour < p.NIGHT_END_HOUR),
                "above_customer_average": (amount > p.CUSTOMER_AVERAGE_MULTIPLE * mean).fillna(
                    False
                ),
            },
            index=X.index,
        ).astype(bool)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        share = self.rules_hit(X).mean(axis=1).to_numpy(dtype="float64")
        return np.column_stack([1.0 - share, share])


# --------------------------------------------------------------------------- checks


def _timestamps(frame: pd.DataFrame, time: str) -> pd.Series:
    if time not in frame.columns:
        raise AssertionError(f"the frame lacks {time!r}: keep the payment's time in train and test")
    return pd.to_datetime(frame[time])


def check_time_split(
    train: pd.DataFrame,
    test: pd.DataFrame,
    gap,
    *,
    time: str = TIME,
    key: str = KEY,
    label: str = LABEL,
    label_time: str = LABEL_TIME,
) -> str:
    """Assert that ``test`` comes after ``train`` with at least ``gap`` between the last training
    payment and the first test payment, that no payment is in both, that the training labels
    are only those known when the model is trained (the first test payment's time), and that
    the test labels are complete. Returns a one-line summary."""
    gap = pd.Timedelta(gap)
    assert len(train) and len(test), (
        f"train has {len(train)} rows and test {len(test)}: both periods need payments"
    )
    shared = set(train[key]) & set(test[key])
    assert not shared, (
        f"{len(shared)} payments are in both train and test (e.g. {sorted(shared)[:2]}): "
        "the model is evaluated on the period it learned from; test on later payments only"
    )
    train_ts, test_ts = _timestamps(train, time), _timestamps(test, time)
    last_train, first_test = train_ts.max(), test_ts.min()
    assert last_train < first_test, (
        f"train reaches {last_train} but test starts at {first_test}: the periods interleave, "
        "as a random split does on time-ordered data. Split by time: train before T1, test "
        "from T1 + gap"
    )
    assert first_test - last_train >= gap, (
        f"only {first_test - last_train} between the last training payment ({last_train}) and "
        f"the first test payment ({first_test}), less than the gap of {gap}: skip the gap in "
        "which the training payments' labels are not yet known"
    )
    for name, frame in (("train", train), ("test", test)):
        assert label in frame.columns, f"{name} lacks the {label!r} column (0 or 1)"
    known_at_training = labels_as_of(train, first_test, label_time=label_time)
    future = int(((train[label].to_numpy() == 1) & (known_at_training == 0)).sum())
    assert future == 0, (
        f"{future} training payments are labelled fraud with notices that arrived after the "
        f"model was trained ({first_test}): use labels_as_of(train, T1 + gap), the labels "
        "known when the model is trained"
    )
    assert (train[label].to_numpy() == known_at_training).all(), (
        "the training labels differ from the notices known at T1 + gap: "
        "use labels_as_of(train, T1 + gap)"
    )
    complete = labels_as_of(test, pd.Timestamp.max, label_time=label_time)
    assert (test[label].to_numpy() == complete).all(), (
        f"{int((complete != test[label].to_numpy()).sum())} test labels differ from the "
        "latest notices: evaluate once the test payments' labels have matured (the latest "
        "labels), not with those known at T2"
    )
    return (
        f"train {len(train)} payments to {last_train:%Y-%m-%d %H:%M} "
        f"({int(train[label].sum())} fraud known at training), gap {first_test - last_train}, "
        f"test {len(test)} payments from {first_test:%Y-%m-%d %H:%M} "
        f"({int(test[label].sum())} fraud)"
    )


def best_threshold_by(y, score, how: str) -> float:
    """The threshold a cost-blind criterion (``"f1"`` or ``"accuracy"``) would choose, for the
    checks' messages; +inf means flagging nothing."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype="float64")
    thresholds = np.append(np.unique(score), np.inf)
    flagged = score[None, :] >= thresholds[:, None]
    tp = (flagged & y).sum(axis=1)
    if how == "f1":
        value = 2 * tp / np.maximum(flagged.sum(axis=1) + y.sum(), 1)
    else:
        value = tp + (~flagged & ~y).sum(axis=1)
    # the first best from the top: among equals, the fewest alerts
    return float(thresholds[::-1][np.argmax(value[::-1])])


def check_threshold(
    threshold: float, y, score, amount, *, cost: CostModel = COSTS, tolerance_usd: float = 0.01
) -> str:
    """Assert that ``threshold`` has the least expected cost on ``(y, score, amount)`` (within
    ``tolerance_usd``); the message names the usual wrong choices (0.5, the best F1, the best
    accuracy). Returns a one-line summary."""
    y, score = np.asarray(y), np.asarray(score, dtype="float64")
    assert np.isscalar(threshold) and np.isfinite(threshold) or threshold == np.inf, (
        f"threshold must be a number, got {threshold!r}"
    )
    best_t = choose_threshold(y, score, amount, cost)
    best, got = (expected_cost(y, score, amount, t, cost) for t in (best_t, threshold))
    if got <= best + tolerance_usd:
        return f"threshold {threshold:.4f}: expected cost {got:,.2f} USD, the least possible"
    if np.isclose(threshold, 0.5):
        why = "0.5 is the default of predict(), meaningless for a rare class and class weights"
    elif np.isclose(threshold, best_threshold_by(y, score, "f1")):
        why = "that threshold maximizes F1, which prices a missed fraud like a false alarm"
    elif threshold == best_threshold_by(y, score, "accuracy"):
        why = "that threshold maximizes accuracy, which on a rare class rewards flagging nothing"
    else:
        why = "it is not the cheapest"
    raise AssertionError(
        f"threshold {threshold:.4f} costs {got:,.2f} USD, but {best_t:.4f} costs {best:,.2f} USD: "
        f"{why}. Choose the threshold of least expected cost (evaluation.choose_threshold)"
    )


def check_models(
    models: Mapping[str, object],
    features: Sequence[str],
    X: pd.DataFrame,
    *,
    names: Sequence[str] = ("logistic_regression", "random_forest"),
    leaky: Sequence[str] = (),
    max_depth: int = 8,
    max_trees: int = 300,
) -> str:
    """Assert that ``models`` holds a fitted scikit-learn model per name of ``names``, each
    fitted on exactly the columns ``features`` (in any order; none of ``leaky``), weighting the
    classes (a ``class_weight`` parameter set anywhere in it) and giving probabilities in
    [0, 1] on ``X``; that any forest is bounded (``max_depth``, ``max_trees``). Returns a
    one-line summary."""
    missing = sorted(set(names) - set(models))
    extra = sorted(set(models) - set(names))
    assert not missing and not extra, (
        f"models has {sorted(models)}: build exactly {', '.join(map(repr, names))}"
    )
    wanted = set(features)
    for name in names:
        model = models[name]
        seen = getattr(model, "feature_names_in_", None)
        assert seen is not None, (
            f"{name} is not fitted on a DataFrame: fit it on fit_pdf[FEATURES] (a frame, so the "
            "model knows its columns by name)"
        )
        seen = set(seen)
        leaked = sorted(seen & set(leaky))
        assert not leaked, (
            f"{name} was fitted on {leaked}: outcomes of the decision or the label itself, "
            "unknown when the payment is scored. Fit on fit_pdf[FEATURES] only"
        )
        assert seen == wanted, (
            f"{name} was fitted on {len(seen)} columns; FEATURES has {len(wanted)}"
            + (f"; missing {sorted(wanted - seen)}" if wanted - seen else "")
            + (f"; not features {sorted(seen - wanted)}" if seen - wanted else "")
            + ": fit on fit_pdf[FEATURES]"
        )
        params = model.get_params() if hasattr(model, "get_params") else {}
        weights = [v for k, v in params.items() if k.endswith("class_weight")]
        assert any(w is not None for w in weights), (
            f"{name} has no class_weight: with about 1.5% fraud it learns that 'legitimate' is "
            "always right; set class_weight='balanced' (or 'balanced_subsample' for a forest)"
        )
        probability = np.asarray(model.predict_proba(X[list(features)]))[:, 1]
        assert np.isfinite(probability).all() and ((probability >= 0) & (probability <= 1)).all(), (
            f"{name} gives no probabilities in [0, 1]: use a classifier with predict_proba"
        )
        depth = [v for k, v in params.items() if k.endswith("max_depth")]
        trees = [v for k, v in params.items() if k.endswith("n_estimators")]
        if trees:  # an ensemble of trees: CI must train it in seconds
            assert all(d is not None and d <= max_depth for d in depth) and all(
                t <= max_trees for t in trees
            ), (
                f"{name} is unbounded (max_depth {depth}, n_estimators {trees}): bound it "
                f"(max_depth <= {max_depth}, n_estimators <= {max_trees}) so CI trains it in "
                "seconds"
            )
    return f"{len(names)} fitted models with class weights on {len(wanted)} features"


def check_metrics(
    table: pd.DataFrame, expected: Mapping[str, Mapping[str, float]], *, rel: float = 1e-6
) -> str:
    """Assert that ``table`` (one row per scorer, indexed by name) holds the figures of
    ``expected`` (scorer -> :func:`evaluate`'s dict); returns a one-line summary."""
    for scorer, figures in expected.items():
        assert scorer in table.index, f"the table lacks the scorer {scorer!r} (one row each)"
        for name, want in figures.items():
            assert name in table.columns, f"the table lacks the column {name!r}"
            got = float(table.loc[scorer, name])
            assert np.isclose(got, want, rtol=rel, atol=1e-9, equal_nan=True), (
                f"{scorer}: {name} is {got:.6g}, expected {want:.6g}: "
                + _METRIC_HINTS.get(name, "use evaluation.evaluate")
            )
    return f"{len(expected)} scorers x {len(next(iter(expected.values())))} figures match"


_METRIC_HINTS = {
    "pr_auc": "average precision of the probabilities on the test period (not ROC-AUC)",
    "recall_at_precision": "the largest recall at a threshold with precision >= min_precision",
    "expected_cost_usd": (
        "the cost at the threshold chosen on the validation period, not the test's best one"
    ),
    "brier": "the Brier score of the predicted probabilities on the test period",
}


def as_table(results: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Scorer -> figures, as a frame indexed by scorer (for display)."""
    return pd.DataFrame.from_dict(dict(results), orient="index")


__all__ = [
    "COSTS",
    "LABEL",
    "CostModel",
    "RulesBaseline",
    "TimeSplit",
    "as_table",
    "best_threshold_by",
    "brier",
    "check_metrics",
    "check_models",
    "check_threshold",
    "choose_threshold",
    "cost_curve",
    "evaluate",
    "expected_cost",
    "labels_as_of",
    "no_alert_cost",
    "pr_auc",
    "recall_at_precision",
    "reliability_table",
    "roc_auc",
    "check_time_split",
]
