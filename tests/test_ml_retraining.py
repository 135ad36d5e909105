"""The retraining policy as code: each trigger fires exactly when its rule says, and a retraining
needs both a trigger and new data."""

from __future__ import annotations

import pandas as pd
import pytest

from lakehouse.ml import retraining as rt

DAYS = pd.date_range("2026-06-01", periods=6, freq="5D")


def drift(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        (DAYS[i], column, psi) for column, series in values.items() for i, psi in enumerate(series)
    ]
    return pd.DataFrame(rows, columns=list(rt.DRIFT_COLUMNS))


def performance(pr_aucs, frauds) -> pd.DataFrame:
    return pd.DataFrame({"window_start": DAYS[: len(pr_aucs)], "frauds": frauds, "pr_auc": pr_aucs})


QUIET_PERF = performance([0.30, 0.29], [8, 9])
POLICY = rt.RetrainingPolicy()


def decide(drift_frame, perf=QUIET_PERF, *, new_rows=1_000, age=3, baseline=0.30, policy=POLICY):
    return rt.decide(
        policy, drift_frame, perf, new_rows=new_rows, model_age_days=age, baseline_pr_auc=baseline
    )


def test_drift_in_each_of_the_last_windows_fires():
    decision = decide(drift({"score": [0.02, 0.05, 0.31, 0.40], "amount": [0.01] * 4}))
    assert decision.retrain and decision.fired == ["drift"]
    assert "score (PSI >= 0.31)" in decision.triggers[0].detail


def test_one_window_over_the_line_is_not_a_pattern():
    decision = decide(drift({"score": [0.02, 0.05, 0.40, 0.08]}))
    assert not decision.retrain
    assert "highest in all of them: score 0.08" in decision.triggers[0].detail


def test_two_columns_each_over_once_do_not_add_up():
    decision = decide(drift({"score": [0.02, 0.30, 0.01], "amount": [0.01, 0.01, 0.30]}))
    assert "drift" not in decision.fired


def test_drift_columns_limit_what_counts():
    frame = drift({"score": [0.01, 0.01, 0.01], "amount": [0.01, 0.30, 0.30]})
    assert decide(frame).fired == ["drift"]
    only_score = rt.RetrainingPolicy(drift_columns=("score",))
    assert decide(frame, policy=only_score).fired == []


def test_too_few_windows_cannot_fire():
    trigger = rt.drift_trigger(POLICY, drift({"score": [0.9]}))
    assert not trigger.fired and "1 window(s) measured, 2 needed" in trigger.detail


def test_a_performance_drop_on_matured_labels_fires():
    perf = performance([0.31, 0.20], [8, 7])
    decision = decide(drift({"score": [0.0, 0.0]}), perf)
    assert decision.fired == ["performance"]
    assert "a drop of 0.100" in decision.triggers[1].detail


def test_windows_with_too_few_matured_frauds_are_skipped_not_read_as_good_news():
    # the latest window is bad but has 2 frauds: the judgement rests on the one before
    perf = performance([0.31, 0.29, 0.05], [8, 9, 2])
    assert "performance" not in decide(drift({"score": [0.0, 0.0]}), perf).fired
    nothing = rt.performance_trigger(POLICY, performance([0.05], [1]), 0.3)
    assert not nothing.fired and "nothing to judge" in nothing.detail


def test_schedule_fires_at_the_age_limit():
    assert decide(drift({"score": [0.0, 0.0]}), age=30).fired == ["schedule"]
    assert decide(drift({"score": [0.0, 0.0]}), age=29).fired == []


def test_a_trigger_without_new_data_waits():
    decision = decide(drift({"score": [0.3, 0.3]}), new_rows=10)
    assert decision.fired == ["drift"] and not decision.retrain
    assert decision.verdict().startswith("WAIT")
    assert decision.table().iloc[-1]["outcome"] == "TOO LITTLE"


def test_quiet_means_keep():
    decision = decide(drift({"score": [0.01, 0.02]}))
    assert decision.verdict() == "KEEP the champion: no trigger fired"
    assert list(decision.table()["outcome"][:3]) == ["quiet"] * 3


def test_inputs_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"drift lacks \['population_stability_index'\]"):
        rt.drift_trigger(POLICY, pd.DataFrame({"window_start": [], "column_name": []}))
    with pytest.raises(ValueError, match="consecutive_windows=0"):
        rt.RetrainingPolicy(consecutive_windows=0)
