"""The retraining job's control flow and its Databricks definition, without Spark or a
registry: a stopped loop records every later step as skipped (promote withdraws what was
registered), a step run alone needs its predecessors, verify rolls back when what serves is not
what was gated, and the Lakeflow Job definition stays in step with the code.

(lesson 05_ml/09 runs the real job end to end, classic and through Spark Connect.)"""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import yaml

from lakehouse.ml import retraining_job as rj
from lakehouse.ml.retraining_job import StepFailed, StepResult


class FakeJob(rj.RetrainingJob):
    """A job whose steps return canned results and whose evidence stays in memory."""

    def __init__(self, outcomes: dict[str, str]):  # noqa: D107 (no Spark, no registry)
        self.spark, self.config, self.table = None, rj.JobConfig(), "ml.retraining_runs"
        self.name, self.run_id = "fraud_detector", "run-1"
        self.results, self._cache, self.rows, self.outcomes = {}, {}, [], outcomes
        self.calls: list[str] = []

    def _write(self, rows):
        self.rows.extend(rows)

    def evidence(self):
        columns = [c for c, _ in rj.RUNS_COLUMNS]
        return pd.DataFrame(self.rows, columns=columns).sort_values("step_no", ignore_index=True)

    def _canned(self, step):
        self.calls.append(step)
        outcome = self.outcomes.get(step, rj.PASSED)
        if outcome == rj.FAILED:
            raise StepFailed(f"{step} found a problem")
        return StepResult(step, outcome, f"{step} {outcome}", model_version=7)

    def _decide(self):
        return self._canned("decide")

    def _retrain(self):
        return self._canned("retrain")

    def _register(self):
        return self._canned("register")

    def _gate(self):
        return self._canned("gate")

    def _shadow(self):
        return self._canned("shadow")

    def _ab_test(self):
        return self._canned("ab_test")

    def _promote(self):
        self.calls.append("promote")
        stop = self.stopped_at()
        if stop is not None:
            return StepResult("promote", rj.WITHDRAWN, f"withdrawn: {stop.step}", model_version=7)
        return StepResult("promote", rj.PROMOTED, "promoted", model_version=7)

    def _verify(self):
        return self._canned("verify")


@pytest.fixture(autouse=True)
def no_registry(monkeypatch):
    monkeypatch.setattr(rj.registry, "version_of", lambda name, alias: 3)


def outcomes_of(job: FakeJob) -> dict[str, str]:
    return dict(zip(job.evidence()["step"], job.evidence()["outcome"], strict=True))


def test_a_full_pass_runs_every_step_and_writes_once():
    job = FakeJob({"decide": rj.RETRAIN})
    job.run()
    assert job.calls == list(rj.STEPS)
    assert list(outcomes_of(job).values()) == [rj.RETRAIN] + [rj.PASSED] * 5 + [
        rj.PROMOTED,
        rj.PASSED,
    ]
    assert all(row[7] == 3 for row in job.rows)  # the champion when each step ended


def test_keep_stops_the_loop_and_skips_the_rest_promote_included():
    job = FakeJob({"decide": rj.KEEP})
    job.run()
    assert job.calls == ["decide"]
    assert outcomes_of(job) == {"decide": rj.KEEP, **{s: rj.SKIPPED for s in rj.STEPS[1:]}}


def test_a_refused_gate_skips_shadow_and_ab_and_withdraws():
    job = FakeJob({"decide": rj.RETRAIN, "gate": rj.FAILED})
    job.run()
    got = outcomes_of(job)
    assert got["gate"] == rj.FAILED and got["promote"] == rj.WITHDRAWN
    assert got["shadow"] == got["ab_test"] == got["verify"] == rj.SKIPPED
    assert "shadow" not in job.calls and "verify" not in job.calls
    assert job.evidence().set_index("step").loc["gate", "detail"] == "gate found a problem"


def test_a_step_alone_needs_its_predecessors():
    job = FakeJob({"decide": rj.RETRAIN})
    with pytest.raises(ValueError, match=r"needs \['decide', 'retrain', 'register'\] first"):
        job.run_step("gate")


def test_unknown_steps_are_named():
    with pytest.raises(ValueError, match=r"unknown step\(s\) \['deploy'\]"):
        FakeJob({}).run(["decide", "deploy"])


def test_rows_already_collected_are_written_when_a_step_raises():
    job = FakeJob({"decide": rj.RETRAIN})
    job._retrain = lambda: (_ for _ in ()).throw(RuntimeError("disk full"))
    with pytest.raises(RuntimeError, match="disk full"):
        job.run()
    assert [row[2] for row in job.rows] == ["decide"]


# --------------------------------------------------------------------------- verify


class VerifyJob(FakeJob):
    def __init__(self, resolved: int, served_pr_auc: float):
        super().__init__({})
        self.results = {
            "register": StepResult("register", rj.PASSED, "", model_version=9),
            "gate": StepResult(
                "gate",
                rj.PASSED,
                "",
                {"figures": {"v9": {"pr_auc": 0.2, "expected_cost_usd": 1000.0}}},
            ),
        }
        self.resolved, self.served_pr_auc = resolved, served_pr_auc

    def holdout(self):
        return None


@pytest.fixture
def serving(monkeypatch):
    calls = {}

    class Ref:
        def __init__(self, version):
            self.version, self.threshold = version, 0.5

    class Scores:
        def __init__(self, pr_auc):
            self.pr_auc = pr_auc

        def figures(self, cost):
            return {"pr_auc": self.pr_auc, "expected_cost_usd": 1000.0}

    def install(job: VerifyJob):
        monkeypatch.setattr(rj.scoring, "resolve", lambda name, alias: Ref(job.resolved))
        monkeypatch.setattr(rj.registry, "load", lambda name, alias: object())
        monkeypatch.setattr(rj.registry, "score_holdout", lambda *a, **k: Scores(job.served_pr_auc))

        def rollback(name, reason):
            calls["rollback"] = reason
            return 4

        monkeypatch.setattr(rj.registry, "rollback", rollback)
        return calls

    return install


def test_verify_passes_when_what_serves_is_what_was_gated(serving):
    job = VerifyJob(resolved=9, served_pr_auc=0.2)
    calls = serving(job)
    result = rj.RetrainingJob._verify(job)
    assert result.outcome == rj.PASSED and "rollback" not in calls


@pytest.mark.parametrize(
    ("resolved", "pr_auc", "reason"),
    [(8, 0.2, "@champion resolves to v8, not v9"), (9, 0.1, "pr_auc 0.100000 served vs")],
)
def test_verify_rolls_back_otherwise(serving, resolved, pr_auc, reason):
    job = VerifyJob(resolved=resolved, served_pr_auc=pr_auc)
    calls = serving(job)
    result = rj.RetrainingJob._verify(job)
    assert result.outcome == rj.ROLLED_BACK and "rolled back to v4" in result.detail
    assert reason in calls["rollback"]


# --------------------------------------------------------------------------- the job definition

DEFINITION = rj.job_definition_path()


def test_the_definition_matches_the_steps():
    assert "runs the 8 steps in order" in rj.check_job_definition(DEFINITION)


def test_the_entry_point_is_a_script_of_the_package():
    import tomllib

    scripts = tomllib.loads(
        (rj.Path(DEFINITION).parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    )["project"]["scripts"]
    assert scripts[rj.ENTRY_POINT] == "lakehouse.ml.retraining_job:main"


def broken(tmp_path, change) -> str:
    definition = yaml.safe_load(open(DEFINITION, encoding="utf-8"))
    job = definition["resources"]["jobs"]["fraud_retraining"]
    change({t["task_key"]: t for t in job["tasks"]}, job)
    (tmp_path / "src").symlink_to(rj.Path(DEFINITION).parents[1] / "src")  # ../src, as in the repo
    (tmp_path / "resources").mkdir()
    path = tmp_path / "resources" / "broken.job.yml"
    path.write_text(yaml.safe_dump(definition), encoding="utf-8")
    return str(path)


def drop_task(key):
    def change(tasks, job):
        job["tasks"] = [t for t in job["tasks"] if t["task_key"] != key]

    return change


def set_in(key, path, value):
    def change(tasks, job):
        target = tasks[key]
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = copy.deepcopy(value)

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (drop_task("verify"), r"no task runs the step\(s\) \['verify'\]"),
        (set_in("should_retrain", ["condition_task", "right"], "true"), "without it every run"),
        (set_in("retrain", ["depends_on"], [{"task_key": "decide"}]), "with outcome 'true'"),
        (set_in("promote", ["depends_on"], [{"task_key": "gate"}]), "must depend on ab_test"),
        (
            set_in("gate", ["spark_python_task", "parameters"], ["--step", "gate"]),
            "so every step continues the same run",
        ),
        (
            set_in("shadow", ["spark_python_task", "python_file"], "../scripts/retrain.py"),
            "point it at the job's module",
        ),
    ],
)
def test_a_broken_definition_is_caught(tmp_path, change, message):
    with pytest.raises(AssertionError, match=message):
        rj.check_job_definition(broken(tmp_path, change))
