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


# --------------------------------------------------------------------------- the lesson's tasks

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import nbformat  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "solutions/05_ml/09_closing_the_loop.ipynb"
MISTAKES = json.loads(LESSON.with_suffix(".mistakes.json").read_text(encoding="utf-8"))


def function_of(source: str, name: str):
    namespace = {"pd": pd, "np": np}
    exec(source, namespace)  # noqa: S102 (the lesson's own cells)
    return namespace[name]


def solution_of(cell_id: str) -> str:
    nb = nbformat.read(LESSON, as_version=4)
    (cell,) = [c for c in nb.cells if c.get("id") == cell_id]
    return cell.source


TASKS = {"t1drift1": ("consecutive_over", rt.check_consecutive_over),
         "t2rows01": ("training_rows", rt.check_training_rows)}  # fmt: skip


@pytest.mark.parametrize("cell", sorted(TASKS))
def test_the_solution_passes_its_check(cell):
    name, check = TASKS[cell]
    assert "OK" in check(function_of(solution_of(cell), name))


@pytest.mark.parametrize("cell", sorted(TASKS))
def test_every_task_catalogues_at_least_two_mistakes(cell):
    assert len([m for m in MISTAKES if m["task_cell"] == cell]) >= 2


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m["name"])
def test_each_mistake_is_caught_with_its_fix(mistake):
    name, check = TASKS[mistake["task_cell"]]
    with pytest.raises(AssertionError) as caught:
        check(function_of(mistake["source"], name))
    assert mistake["caught_by"] in str(caught.value)


def test_consecutive_over_is_the_drift_triggers_rule():
    rng = np.random.default_rng(3)
    for _ in range(50):
        frame = drift({c: list(rng.uniform(0, 0.5, 6)) for c in ("a", "b", "c")})
        fired = rt.drift_trigger(POLICY, frame)
        columns = rt.consecutive_over(frame, POLICY.drift_threshold, POLICY.consecutive_windows)
        assert fired.fired == bool(columns)
        assert all(c in fired.detail for c in columns)


def examples_every_hour(days: int, fraud_every: int = 7) -> pd.DataFrame:
    ts = pd.date_range("2026-05-01", periods=days * 24, freq="h")
    fraud = np.arange(len(ts)) % fraud_every == 0
    return pd.DataFrame(
        {"transaction_id": [f"t{i}" for i in range(len(ts))], "event_ts": ts,
         "fraud_label_ts": pd.Series(ts + pd.Timedelta(days=2)).where(fraud),
         "label": fraud.astype(int)}
    )  # fmt: skip


def test_training_rows_stop_at_the_embargo_and_at_label_maturity():
    rows = examples_every_hour(30)
    kept = rt.training_rows(
        rows, holdout_start="2026-05-20", as_of="2026-05-25", maturity="10 days", embargo="1 day"
    )
    assert kept["event_ts"].max() < pd.Timestamp("2026-05-15 00:00:01")  # maturity binds
    kept = rt.training_rows(
        rows, holdout_start="2026-05-20", as_of="2026-07-01", maturity="10 days", embargo="1 day"
    )
    assert kept["event_ts"].max() == pd.Timestamp("2026-05-18 23:00")  # the embargo binds


def test_validation_is_sized_by_frauds_not_days():
    rows = examples_every_hour(10, fraud_every=12)  # two frauds a day
    start = rt.validation_start(rows, 5)
    assert start == pd.Timestamp("2026-05-08")  # the last 3 days hold 6 >= 5; 2 days hold 4
    assert rows[rows["event_ts"] >= start]["label"].sum() >= 5
    with pytest.raises(ValueError, match="fewer than the 100 the threshold's validation needs"):
        rt.validation_start(rows, 100)
    with pytest.raises(ValueError, match="nothing is left to fit on"):
        rt.validation_start(rows, 20)
