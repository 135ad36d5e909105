"""When to retrain the fraud model, written as code: a policy over what monitoring measured.

A model is retrained for a reason one can read back later, never "because it is Monday and
someone felt like it". :class:`RetrainingPolicy` holds the thresholds and :func:`decide` turns
monitoring's figures into a :class:`Decision` that lists every trigger with its outcome and its
evidence, the way the promotion gate lists its checks:

- **drift**: a monitored column's population stability index at or over ``drift_threshold`` in
  each of the last ``consecutive_windows`` windows (one window over the line is noise more often
  than not; two in a row is a pattern);
- **performance**: the champion's PR-AUC on labels that have matured, in the latest window
  that has at least ``min_matured_frauds`` frauds, below its PR-AUC at promotion by more than
  ``max_pr_auc_drop``;
- **schedule**: the champion is ``max_model_age_days`` old or older;

and a retraining goes ahead only if one trigger fired **and** there are at least
``min_new_rows`` labelled rows since the champion was trained (a refit on the same data learns
nothing new).

Example::

    policy = retraining.RetrainingPolicy()
    decision = retraining.decide(policy, drift, performance, new_rows=4_200, model_age_days=12,
                                 baseline_pr_auc=0.25)
    print(decision.table())
    if decision.retrain: ...

``drift`` has the columns of Lakehouse Monitoring's drift metrics table that matter here
(``window_start``, ``column_name``, ``population_stability_index``), ``performance`` one row
per window (``window_start``, ``frauds``, ``pr_auc``), both computed by
:mod:`lakehouse.ml.monitoring`. No Spark, no registry: the policy is a pure function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

DRIFT_COLUMNS = ("window_start", "column_name", "population_stability_index")
PERFORMANCE_COLUMNS = ("window_start", "frauds", "pr_auc")


@dataclass(frozen=True)
class RetrainingPolicy:
    """The thresholds of :func:`decide` (see the module's text for what each trigger means)."""

    drift_threshold: float = 0.25  # PSI: the usual "significant shift" band starts here
    drift_columns: tuple[str, ...] | None = None  # None: every monitored column counts
    consecutive_windows: int = 2
    max_pr_auc_drop: float = 0.05
    min_matured_frauds: int = 5
    max_model_age_days: int = 30
    min_new_rows: int = 500

    def __post_init__(self):
        if self.consecutive_windows < 1:
            raise ValueError(
                f"consecutive_windows={self.consecutive_windows}: it must be 1 or more"
            )
        if not 0 < self.drift_threshold:
            raise ValueError(f"drift_threshold={self.drift_threshold}: a PSI above 0, e.g. 0.25")


@dataclass(frozen=True)
class Trigger:
    name: str
    fired: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` concluded: every trigger, and whether there is data to learn from."""

    triggers: tuple[Trigger, ...]
    enough_data: bool
    data_detail: str

    @property
    def fired(self) -> list[str]:
        return [t.name for t in self.triggers if t.fired]

    @property
    def retrain(self) -> bool:
        return bool(self.fired) and self.enough_data

    def verdict(self) -> str:
        if self.retrain:
            return f"RETRAIN: {', '.join(self.fired)}"
        if self.fired:
            return f"WAIT: {', '.join(self.fired)} fired, but {self.data_detail}"
        return "KEEP the champion: no trigger fired"

    def table(self) -> pd.DataFrame:
        rows = [(t.name, "FIRED" if t.fired else "quiet", t.detail) for t in self.triggers]
        rows.append(("new data", "enough" if self.enough_data else "TOO LITTLE", self.data_detail))
        return pd.DataFrame(rows, columns=["trigger", "outcome", "detail"])


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} lacks {missing}: it needs {list(columns)} (monitoring's "
            f"{'drift metrics' if name == 'drift' else 'performance by window'})"
        )


def drift_trigger(policy: RetrainingPolicy, drift: pd.DataFrame) -> Trigger:
    """Fired when a column's PSI is at or over the threshold in each of the last
    ``consecutive_windows`` windows (windows in time order, the latest last)."""
    _require(drift, DRIFT_COLUMNS, "drift")
    frame = drift.dropna(subset=["population_stability_index"])
    if policy.drift_columns is not None:
        frame = frame[frame["column_name"].isin(policy.drift_columns)]
    windows = sorted(frame["window_start"].unique())
    n = policy.consecutive_windows
    if len(windows) < n:
        return Trigger("drift", False, f"{len(windows)} window(s) measured, {n} needed")
    last = windows[-n:]
    recent = frame[frame["window_start"].isin(last)]
    over = recent[recent["population_stability_index"] >= policy.drift_threshold]
    counts = over.groupby("column_name")["window_start"].nunique()
    columns = sorted(counts[counts == n].index)
    since = pd.Timestamp(last[0]).date()
    if columns:
        worst = (
            over[over["column_name"].isin(columns)]
            .groupby("column_name")["population_stability_index"]
            .min()
        )
        shown = ", ".join(f"{c} (PSI >= {worst[c]:.2f})" for c in columns)
        return Trigger(
            "drift",
            True,
            f"{shown} over {policy.drift_threshold} in each of the last {n} windows (from {since})",
        )
    top = recent.groupby("column_name")["population_stability_index"].min()
    highest = f"; highest in all of them: {top.idxmax()} {top.max():.2f}" if len(top) else ""
    return Trigger(
        "drift",
        False,
        f"no column over {policy.drift_threshold} in each of the last {n} windows "
        f"(from {since}){highest}",
    )


def performance_trigger(
    policy: RetrainingPolicy, performance: pd.DataFrame, baseline_pr_auc: float
) -> Trigger:
    """Fired when the latest window with enough matured frauds has a PR-AUC below the
    champion's at promotion by more than ``max_pr_auc_drop``. Windows whose labels are too few
    to say anything are skipped, not read as good news."""
    _require(performance, PERFORMANCE_COLUMNS, "performance")
    usable = performance[performance["frauds"] >= policy.min_matured_frauds].dropna(
        subset=["pr_auc"]
    )
    if usable.empty:
        return Trigger(
            "performance",
            False,
            f"no window has {policy.min_matured_frauds}+ matured frauds yet: nothing to judge",
        )
    latest = usable.sort_values("window_start").iloc[-1]
    drop = baseline_pr_auc - float(latest["pr_auc"])
    when = pd.Timestamp(latest["window_start"]).date()
    return Trigger(
        "performance",
        drop > policy.max_pr_auc_drop,
        f"PR-AUC {latest['pr_auc']:.3f} in the window from {when} ({int(latest['frauds'])} "
        f"matured frauds) vs {baseline_pr_auc:.3f} at promotion: "
        f"{'a drop of' if drop > 0 else 'a change of'} {abs(drop):.3f} "
        f"(allowed {policy.max_pr_auc_drop})",
    )


def schedule_trigger(policy: RetrainingPolicy, model_age_days: int) -> Trigger:
    return Trigger(
        "schedule",
        model_age_days >= policy.max_model_age_days,
        f"the champion is {model_age_days} day(s) old (retrain at {policy.max_model_age_days})",
    )


def decide(
    policy: RetrainingPolicy,
    drift: pd.DataFrame,
    performance: pd.DataFrame,
    *,
    new_rows: int,
    model_age_days: int,
    baseline_pr_auc: float,
) -> Decision:
    """Every trigger of ``policy`` on monitoring's figures, and whether ``new_rows`` (labelled
    rows since the champion's training data ends) are enough to learn from."""
    triggers = (
        drift_trigger(policy, drift),
        performance_trigger(policy, performance, baseline_pr_auc),
        schedule_trigger(policy, model_age_days),
    )
    enough = new_rows >= policy.min_new_rows
    return Decision(
        triggers,
        enough,
        f"{new_rows:,} labelled row(s) since the champion's training data "
        f"({'at least' if enough else 'fewer than'} {policy.min_new_rows:,})",
    )


# ---------------------------------------------------------------------- what a retrain learns from

TIME, LABEL_TIME = "event_ts", "fraud_label_ts"


def training_rows(
    examples: pd.DataFrame,
    *,
    holdout_start,
    as_of,
    maturity: pd.Timedelta | str,
    embargo: pd.Timedelta | str,
) -> pd.DataFrame:
    """The examples a retraining at ``as_of`` may learn from:

    - their **labels are complete**: a fraud notice can arrive up to ``maturity`` after the
      payment, so a payment younger than that at ``as_of`` may still turn out to be fraud
      (``event_ts + maturity <= as_of``); taking it as legitimate teaches the model that
      recent fraud is fine;
    - they **end an embargo before the frozen holdout** (``event_ts < holdout_start -
      embargo``): the holdout judges every version, so no version may learn from it, nor from
      the hours just before it, where the same fraud campaigns run on both sides of the line.

    The label is whether the notice arrived by ``as_of``; the rows keep their order."""
    as_of, holdout_start = pd.Timestamp(as_of), pd.Timestamp(holdout_start)
    maturity, embargo = pd.Timedelta(maturity), pd.Timedelta(embargo)
    missing = [c for c in (TIME, LABEL_TIME) if c not in examples.columns]
    if missing:
        raise ValueError(f"examples lack {missing}: they are lesson 02's ml.fraud_training_set")
    ts = pd.to_datetime(examples[TIME])
    keep = (ts + maturity <= as_of) & (ts < holdout_start - embargo)
    return examples[keep.to_numpy()]


def validation_start(rows: pd.DataFrame, min_frauds: int) -> pd.Timestamp:
    """Where the validation days of ``rows`` (:func:`training_rows`, labelled) start: the
    latest midnight such that the days from it to the end hold at least ``min_frauds``
    frauds. A threshold chosen on a handful of frauds is chosen by chance (on 6 frauds one
    more or less caught moves recall by 17 points), so the period is sized by frauds, not by
    days."""
    if "label" not in rows.columns:
        raise ValueError("rows lack 'label': give the labelled training rows")
    days = pd.to_datetime(rows[TIME]).dt.floor("D")
    per_day = rows.groupby(days)["label"].sum().sort_index(ascending=False)
    enough = per_day.cumsum() >= min_frauds
    if not enough.any():
        raise ValueError(
            f"the training rows hold {int(per_day.sum())} frauds, fewer than the "
            f"{min_frauds} the threshold's validation needs: wait for more labels or lower "
            "validation_frauds"
        )
    start = enough.idxmax()  # the latest day at which the count is reached
    if start == days.min():
        raise ValueError(
            f"{min_frauds} frauds take every training day: nothing is left to fit on "
            "(lower validation_frauds)"
        )
    return pd.Timestamp(start)


def _probe_examples() -> tuple[pd.DataFrame, list[dict]]:
    """Payments every 6 hours over 30 days, a fraud every fifth one (its notice 5 days
    later), and two retrainings: one whose as-of date leaves the last days' labels
    incomplete (the maturity binds), one long after, whose holdout starts early (the
    holdout and its embargo bind)."""
    start = pd.Timestamp("2026-03-01")
    ts = start + pd.to_timedelta(np.arange(120) * 6, unit="h")
    fraud = np.arange(120) % 5 == 0
    frame = pd.DataFrame(
        {
            "transaction_id": [f"p{i:03d}" for i in range(120)],
            TIME: ts,
            LABEL_TIME: pd.Series(ts + pd.Timedelta(days=5)).where(fraud),
        }
    )
    day = pd.Timedelta(days=1)
    settings = [
        {"holdout_start": start + 14 * day, "as_of": start + 20 * day, "maturity": 10 * day,
         "embargo": day},
        {"holdout_start": start + 8 * day, "as_of": start + 30 * day, "maturity": 10 * day,
         "embargo": day},
    ]  # fmt: skip
    return frame, settings


def check_training_rows(fn) -> str:
    """Check a learner's ``fn(examples, holdout_start=..., as_of=..., maturity=...,
    embargo=...)`` against :func:`training_rows` on probe payments, in a retraining where the
    label maturity binds and in one where the holdout does: the rows it keeps must be exactly
    those whose labels are complete and that end an embargo before the holdout."""
    examples, all_settings = _probe_examples()
    ts = examples.set_index("transaction_id")[TIME]
    for settings in all_settings:
        got = fn(examples.copy(), **settings)
        if not isinstance(got, pd.DataFrame) or "transaction_id" not in got.columns:
            raise AssertionError(
                "return the kept rows of `examples` as a DataFrame with its columns "
                f"(got {type(got).__name__})"
            )
        want = training_rows(examples, **settings)
        kept, wanted = set(got["transaction_id"]), set(want["transaction_id"])
        holdout, embargo = settings["holdout_start"], settings["embargo"]
        extra = kept - wanted
        in_holdout = sorted(k for k in extra if ts[k] >= holdout)
        if in_holdout:
            raise AssertionError(
                f"{len(in_holdout)} kept rows are in the frozen holdout (from "
                f"{holdout:%Y-%m-%d}, e.g. {in_holdout[0]} at {ts[in_holdout[0]]}): a version "
                "that learned from the holdout wins the gate by memory. Keep event_ts < "
                "holdout_start - embargo"
            )
        in_embargo = sorted(k for k in extra if ts[k] >= holdout - embargo)
        if in_embargo:
            raise AssertionError(
                f"{len(in_embargo)} kept rows are within the embargo before the holdout (e.g. "
                f"{in_embargo[0]} at {ts[in_embargo[0]]}): fraud campaigns run across the "
                "line, so the last hours before it leak into the gate. Keep event_ts < "
                "holdout_start - embargo (strictly)"
            )
        problems = []
        if extra:
            young = sorted(extra)
            problems.append(
                f"{len(young)} kept rows are younger than the label maturity at as_of (e.g. "
                f"{young[0]} at {ts[young[0]]}, as_of {settings['as_of']:%Y-%m-%d}): their "
                "fraud notices may still arrive, so they count as legitimate by mistake. Keep "
                "event_ts + maturity <= as_of"
            )
        lost = sorted(wanted - kept)
        if lost:
            problems.append(
                f"{len(lost)} rows that qualify were dropped (e.g. {lost[0]} at "
                f"{ts[lost[0]]}): the conditions are on event_ts only (a legitimate payment "
                "has no fraud_label_ts; it still teaches the model)"
            )
        if problems:
            raise AssertionError(" Also: ".join(problems))
    return (
        f"training rows OK on {len(all_settings)} probe retrainings: labels complete, an "
        "embargo before the holdout"
    )


def consecutive_over(drift: pd.DataFrame, threshold: float, n: int) -> list[str]:
    """The columns whose PSI is at or over ``threshold`` in **each** of the last ``n``
    windows, sorted: the drift trigger's rule (:func:`drift_trigger`)."""
    frame = drift.dropna(subset=["population_stability_index"])
    last = sorted(frame["window_start"].unique())[-n:]
    if len(last) < n:
        return []
    recent = frame[frame["window_start"].isin(last)]
    over = recent[recent["population_stability_index"] >= threshold]
    counts = over.groupby("column_name")["window_start"].nunique()
    return sorted(counts[counts == n].index)


def _probe_drift() -> pd.DataFrame:
    """Four daily windows, given out of time order: ``latency`` over 0.25 in the last two,
    ``amount`` over in two windows that are not the last two, ``hour`` over in the last
    window only, ``channel`` exactly at the threshold in the last two, ``score`` never."""
    days = pd.to_datetime(["2026-03-04", "2026-03-01", "2026-03-03", "2026-03-02"])
    psi = {  # column: PSI per day in days' order (03-04, 03-01, 03-03, 03-02)
        "latency": (0.40, 0.02, 0.31, 0.05),
        "amount": (0.03, 0.50, 0.04, 0.60),
        "hour": (0.70, 0.01, 0.02, 0.01),
        "channel": (0.25, 0.00, 0.25, 0.00),
        "score": (0.01, 0.02, 0.01, 0.03),
    }
    rows = [
        {"window_start": day, "column_name": column, "population_stability_index": value}
        for column, values in psi.items()
        for day, value in zip(days, values, strict=True)
    ]
    return pd.DataFrame(rows)


def check_consecutive_over(fn) -> str:
    """Check a learner's ``fn(drift, threshold, n)`` against :func:`consecutive_over` on probe
    windows given out of time order."""
    drift = _probe_drift()
    for n in (2, 1, 3):
        got = fn(drift.copy(), 0.25, n)
        want = consecutive_over(drift, 0.25, n)
        if sorted(got) != want:
            extra, lost = sorted(set(got) - set(want)), sorted(set(want) - set(got))
            hints = []
            if "amount" in extra:
                hints.append(
                    "amount is over in two windows, but not the last two: take the last n "
                    "windows by window_start (sorted), then ask each of them"
                )
            if "hour" in extra:
                hints.append(
                    "hour is over in the last window only: the column must be over in "
                    "each of the last n windows, not in any"
                )
            if "latency" in lost:
                hints.append(
                    "latency is over in each of the last two windows by time: sort the "
                    "windows by window_start (unique() keeps the order rows come in)"
                )
            elif "channel" in lost:
                hints.append("channel sits exactly on the threshold: at or over counts (>=)")
            if not hints:
                hints.append("compare your rule with the docstring of retraining.consecutive_over")
            raise AssertionError(f"n={n}: got {sorted(got)}, expected {want}. " + " ".join(hints))
    return "consecutive windows OK: only columns over the threshold in each of the last n windows"
