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
