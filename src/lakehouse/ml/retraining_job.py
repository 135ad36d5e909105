"""The retraining loop as one job: decide, retrain, register, gate, shadow, A/B, promote and
verify, each step's outcome and evidence appended to a Delta table, ``ml.retraining_runs``.

::

    decide --retrain--> retrain -> register (@challenger) -> gate -> shadow -> ab_test
                                                                                 |
              verify (what serves is what was gated; else roll back) <- promote -+
                                                  (or withdraw the challenger)

- **decide** reads the champion's monitoring figures (drift of its score and inputs against
  the baseline week, PR-AUC per week on matured labels; computed from ``gold.fraud_scores``
  and the examples' labels as known at ``as_of``) and applies
  :class:`lakehouse.ml.retraining.RetrainingPolicy`;
- **retrain** fits the recipe on :func:`lakehouse.ml.retraining.training_rows` (labels
  complete, an embargo before the frozen holdout) and chooses its threshold on the last days;
- **register** logs the run and registers the version as ``@challenger``; a version trained
  on the same rows with the same recipe (its fingerprint tag) is reused, never trained twice;
- **gate** is lesson 04's :func:`lakehouse.ml.registry.compare` on the frozen holdout;
- **shadow** scores the last days' payments with the challenger beside the champion's served
  decisions, logs them to ``ml.inference_log`` with the role ``shadow`` (a rerun adds
  nothing) and checks coverage, valid scores and the share it would flag;
- **ab_test** splits those payments by customer (lesson 07's hash, 90/10) and compares the
  arms' false-positive rates (good customers' payments flagged) with lesson 07's
  two-proportion test: a challenger that flags more good customers is stopped;
- **promote** makes it ``@champion`` when every step passed (``@previous`` keeps the old one),
  or withdraws it (``@challenger`` removed, the reason tagged);
- **verify** loads ``@champion`` as a server would and checks it is the version gated,
  scoring the holdout as it did at the gate; if not, it **rolls back** to ``@previous``.

Run it with ``make retrain`` (``python -m lakehouse.ml.retraining_job``). Each step is also
callable on its own with the run's id (``--step gate --run-id ...``), reading what earlier
steps recorded: that is how a Databricks Lakeflow Job runs it, one task per step with
condition tasks between them (``resources/fraud_retraining.job.yml``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from lakehouse.ml import evaluation as ev
from lakehouse.ml import monitoring as mon
from lakehouse.ml import registry, retraining, router, scoring, training
from lakehouse.ml.retraining import Decision, RetrainingPolicy

RUNS_TABLE = "ml.retraining_runs"
STEPS = ("decide", "retrain", "register", "gate", "shadow", "ab_test", "promote", "verify")
FINGERPRINT_TAG = "lakehouse.training_fingerprint"
REJECTED_TAG = "lakehouse.rejected"
RUN_TAG = "lakehouse.retraining_run"

# outcomes: decide says retrain, keep or wait; promote says promoted or withdrawn; verify
# says passed or rolled back; a step after a stop is skipped
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
RETRAIN, KEEP, WAIT = "retrain", "keep", "wait"
PROMOTED, WITHDRAWN, ROLLED_BACK = "promoted", "withdrawn", "rolled back"
GOING_ON = {PASSED, RETRAIN, PROMOTED}

RUNS_COLUMNS = (
    ("run_id", "string"),
    ("step_no", "int"),
    ("step", "string"),
    ("outcome", "string"),
    ("detail", "string"),
    ("evidence", "string"),  # JSON
    ("model_version", "int"),  # the candidate (or the champion, for decide)
    ("champion_version", "int"),  # @champion when the step ended
    ("as_of", "timestamp"),
    ("started_at", "timestamp"),
    ("ended_at", "timestamp"),
)


@dataclass(frozen=True)
class JobConfig:
    """The job's settings. ``as_of`` is the job's "today": labels are known as of then. The
    defaults fit the course's month of payments: a baseline week, daily drift windows and
    weekly performance windows to ``monitor_end``, the chargeback feed's last day as
    ``as_of``."""

    as_of: str = "2026-07-31"
    recipe: str | None = None  # a recipe of registry.RECIPES; None: the champion's
    maturity_days: int = 28  # a fraud notice arrives at most 25 days after the payment, +3
    embargo_days: int = 1  # the hours before the frozen holdout no version learns from
    validation_frauds: int = 15  # the threshold is chosen on the last days holding this many
    baseline_start: str = "2026-06-01"
    baseline_end: str = "2026-06-08"
    monitor_end: str = "2026-07-01"
    drift_granularity: str = "1 day"
    performance_granularity: str = "1 week"
    shadow_days: int = 7  # the shadow and the A/B read the last days before monitor_end
    challenger_share: float = router.CHALLENGER_SHARE
    max_flag_rate: float = 0.10  # the review team's capacity: at most this share flagged
    confidence: float = 0.95
    seed: int = 42
    max_rows: int = 200_000
    policy: RetrainingPolicy = field(default_factory=RetrainingPolicy)
    gate: registry.GatePolicy = field(default_factory=registry.GatePolicy)


@dataclass
class StepResult:
    step: str
    outcome: str
    detail: str
    evidence: dict = field(default_factory=dict)
    model_version: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    champion_version: int | None = None


class StepFailed(Exception):
    """A step found its check failed: the job stops there and says why."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _records(frame: pd.DataFrame) -> list[dict]:
    return _jsonable(frame.to_dict("records"))


def task_value(key: str, value) -> None:
    """On Databricks, publish ``value`` as this job task's value ``key`` (what the job's
    condition tasks read as ``{{tasks.<task>.values.<key>}}``); elsewhere nothing."""
    if "DATABRICKS_RUNTIME_VERSION" not in os.environ:
        return
    from databricks.sdk.runtime import dbutils  # noqa: PLC0415 (Databricks only)

    dbutils.jobs.taskValues.set(key=key, value=value)


class RetrainingJob:
    """One run of the loop (``run_id``) on ``spark``'s lake, for the registered fraud model.

    Example::

        job = RetrainingJob(spark, JobConfig(recipe="without_ratio"))
        job.run()        # every step, each one's row appended to ml.retraining_runs
        job.evidence()   # this run's rows, as a pandas frame
    """

    _batch: list | None = None  # rows held by run() for one commit

    def __init__(
        self,
        spark,
        config: JobConfig | None = None,
        *,
        name: str | None = None,
        run_id: str | None = None,
        table: str = RUNS_TABLE,
    ) -> None:
        from lakehouse.ml import tracking

        self.spark, self.config, self.table = spark, config or JobConfig(), table
        tracking.configure(spark)
        self.name = name or registry.registered_name(spark)
        self.run_id = run_id or f"retrain-{uuid.uuid4().hex[:12]}"
        self.results: dict[str, StepResult] = {}
        self._cache: dict[str, object] = {}
        if run_id is not None:
            self._load_results()

    # ------------------------------------------------------------------ running

    def run(
        self,
        steps: Sequence[str] = STEPS,
        *,
        progress: Callable | None = None,
    ) -> pd.DataFrame:
        """Run ``steps`` in order; once a step stops the loop, the remaining ones are recorded
        as skipped (``promote`` still runs to withdraw a registered challenger). Their rows
        are appended to the evidence table in one commit at the end, or as far as the run
        got if a step raises. Returns this run's evidence."""
        unknown = [s for s in steps if s not in STEPS]
        if unknown:
            raise ValueError(f"unknown step(s) {unknown}: the steps are {list(STEPS)}")
        ordered = [s for s in STEPS if s in steps]
        bar = progress(total=len(ordered), desc="retraining") if progress else None
        self._batch = []
        try:
            for step in ordered:
                if bar is not None:
                    bar.set_postfix_str(step)
                self.run_step(step)
                if bar is not None:
                    bar.update(1)
        finally:
            rows, self._batch = self._batch, None
            self._write(rows)
            if bar is not None:
                bar.close()
        return self.evidence()

    def stopped_at(self) -> StepResult | None:
        """The first step of this run whose outcome stopped the loop, if any."""
        for step in STEPS:
            result = self.results.get(step)
            if result is not None and result.outcome not in GOING_ON:
                return result
        return None

    def _registered(self) -> bool:
        result = self.results.get("register")
        return result is not None and result.outcome == PASSED

    def run_step(self, step: str) -> StepResult:
        started = _now()
        stop = self.stopped_at()
        if stop is not None and step not in ("promote",):
            result = StepResult(step, SKIPPED, f"the loop stopped at {stop.step}: {stop.outcome}")
        elif step == "promote" and stop is not None and not self._registered():
            result = StepResult(step, SKIPPED, f"nothing registered: stopped at {stop.step}")
        else:
            missing = [s for s in STEPS[: STEPS.index(step)] if s not in self.results]
            if missing:
                raise ValueError(
                    f"step {step} of run {self.run_id} needs {missing} first: run them (or the "
                    "whole job) with this run id"
                )
            try:
                result = getattr(self, f"_{step}")()
            except StepFailed as failure:
                result = StepResult(step, FAILED, str(failure), self._cache.pop("evidence", {}))
        result.started_at, result.ended_at = started, _now()
        result.champion_version = registry.version_of(self.name, registry.CHAMPION)
        self.results[step] = result
        self._append(step, result)
        task_value(step, result.outcome)
        return result

    # ------------------------------------------------------------------ evidence

    def _append(self, step: str, result: StepResult) -> None:
        row = (
            self.run_id,
            STEPS.index(step) + 1,
            step,
            result.outcome,
            result.detail,
            json.dumps(_jsonable(result.evidence), sort_keys=True),
            result.model_version,
            result.champion_version,
            pd.Timestamp(self.config.as_of).to_pydatetime(),
            result.started_at,
            result.ended_at,
        )
        if self._batch is not None:
            self._batch.append(row)
        else:
            self._write([row])

    def _write(self, rows: list[tuple]) -> None:
        if not rows:
            return
        schema = ", ".join(f"{c} {t}" for c, t in RUNS_COLUMNS)
        self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {self.table.split('.')[0]}")
        self.spark.createDataFrame(rows, schema).write.format("delta").mode("append").saveAsTable(
            self.table
        )

    def evidence(self) -> pd.DataFrame:
        """This run's rows of the evidence table, in step order."""
        from pyspark.sql import functions as F

        return (
            self.spark.table(self.table)
            .where(F.col("run_id") == self.run_id)
            .orderBy("step_no", "ended_at")
            .toPandas()
        )

    def _load_results(self) -> None:
        """What earlier steps of this run recorded (none for a new run id: a Databricks job
        passes its own run id to every task, the first one included)."""
        if not self.spark.catalog.tableExists(self.table):
            return
        for row in self.evidence().itertuples():
            self.results[row.step] = StepResult(
                row.step,
                row.outcome,
                row.detail,
                json.loads(row.evidence),
                None if pd.isna(row.model_version) else int(row.model_version),
            )

    # ------------------------------------------------------------------ inputs

    def _memo(self, key: str, build: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.config.as_of)

    def examples(self) -> pd.DataFrame:
        """Lesson 02's examples (built when missing), labels as known at ``as_of``."""

        def build():
            if not self.spark.catalog.tableExists(training.EXAMPLES_TABLE):
                training.write_examples(self.spark, training.fraud_examples(self.spark))
            frame = training.to_pandas_bounded(
                self.spark.table(training.EXAMPLES_TABLE),
                self.config.max_rows,
                seed=self.config.seed,
            )
            label_ts = pd.to_datetime(frame[training.LABEL_TIME])
            return frame.assign(
                **{ev.LABEL: (label_ts.notna() & (label_ts <= self.as_of)).astype(int)}
            )

        return self._memo("examples", build)

    def holdout(self) -> registry.Holdout:
        return self._memo("holdout", lambda: registry.ensure_holdout(self.spark))

    def champion(self) -> int:
        return self._memo("champion", lambda: registry.ensure_champion(self.spark, self.name))

    def _run_params(self, version: int) -> dict:
        from mlflow import MlflowClient

        client = MlflowClient()
        run_id = client.get_model_version(self.name, str(version)).run_id
        return client.get_run(run_id).data.params if run_id else {}

    def served_scores(self, version: int) -> pd.DataFrame:
        """``gold.fraud_scores`` of ``version`` (lesson 06's batch scoring, run here when that
        version has no scores yet), with the examples' features and labels."""
        from pyspark.sql import functions as F

        def build():
            def rows():
                if not self.spark.catalog.tableExists(scoring.SCORES):
                    return None
                return self.spark.table(scoring.SCORES).where(
                    (F.col("model_name") == self.name) & (F.col("model_version") == version)
                )

            found = rows()
            if found is None or found.limit(1).count() == 0:
                scoring.score_payments(
                    self.spark,
                    self.spark.table(scoring.PAYMENTS),
                    name=self.name,
                    alias=registry.CHAMPION,
                )
                found = rows()
            scores = found.select("payment_id", "score", "threshold", "flagged").toPandas()
            examples = self.examples().rename(columns={training.KEY: "payment_id"})
            return scores.merge(examples, on="payment_id").sort_values(
                [training.TIME, "payment_id"], ignore_index=True
            )

        return self._memo(f"served_{version}", build)

    # ------------------------------------------------------------------ monitoring figures

    def monitor_figures(self, version: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The champion's drift (score and numeric inputs against the baseline week, per
        day: Lakehouse Monitoring's drift metrics, BASELINE rows) and performance per week on
        labels matured at ``as_of``, from its served scores."""
        c = self.config
        frame = self.served_scores(version)
        inputs = list(registry.load(self.name, registry.CHAMPION).feature_names_in_)
        numeric = [x for x in inputs if x not in training.CATEGORICAL_FEATURES]
        columns = ["score", *numeric, *[x for x in inputs if x not in numeric]]
        time = training.TIME
        baseline = frame[(frame[time] >= c.baseline_start) & (frame[time] < c.baseline_end)]
        drift = mon.drift_metrics(
            frame,
            baseline,
            time=time,
            columns=columns,
            windows=mon.windows(c.baseline_end, c.monitor_end, c.drift_granularity),
            granularity=c.drift_granularity,
            model_version=version,
            drift_types=(mon.BASELINE,),
        )
        drift = drift[drift["slice_key"].isna()][list(retraining.DRIFT_COLUMNS)]
        performance = mon.performance_by_window(
            frame,
            windows=mon.windows(c.baseline_start, c.monitor_end, c.performance_granularity),
            as_of=self.as_of,
            maturity=pd.Timedelta(days=c.maturity_days),
            time=time,
            label_time=training.LABEL_TIME,
        ).rename(columns={"frauds_known": "frauds"})
        return drift, performance

    # ------------------------------------------------------------------ the steps

    def _decide(self) -> StepResult:
        c = self.config
        version = self.champion()
        params = self._run_params(version)
        if "train_end" not in params:
            raise StepFailed(
                f"{self.name} v{version} has no train_end parameter on its run: the policy "
                "cannot tell its age or its new rows (log train_end with every training run)"
            )
        train_end = pd.Timestamp(params["train_end"])
        drift, performance = self.monitor_figures(version)
        # in production only: the weeks it learned from say nothing of how it does
        performance = performance[performance["window_start"] >= train_end]
        after = performance[performance["frauds"] >= c.policy.min_matured_frauds].dropna(
            subset=["pr_auc"]
        )
        baseline_pr_auc = float(after["pr_auc"].iloc[0]) if len(after) else float("nan")
        rows = self.training_rows()
        new_rows = int((pd.to_datetime(rows[training.TIME]) >= train_end).sum())
        decision: Decision = retraining.decide(
            c.policy,
            drift,
            performance,
            new_rows=new_rows,
            model_age_days=int((self.as_of - train_end).days),
            baseline_pr_auc=baseline_pr_auc,
        )
        outcome = RETRAIN if decision.retrain else (WAIT if decision.fired else KEEP)
        worst = drift.groupby("column_name")["population_stability_index"].max()
        return StepResult(
            "decide",
            outcome,
            decision.verdict(),
            {
                "triggers": _records(decision.table()),
                "champion": version,
                "champion_train_end": train_end,
                "baseline_pr_auc": baseline_pr_auc,
                "performance": _records(performance[["window_start", "frauds", "pr_auc"]]),
                "max_psi_by_column": _jsonable(worst.round(4).to_dict()),
                "drift_windows": int(drift["window_start"].nunique()),
            },
            model_version=version,
        )

    def training_rows(self) -> pd.DataFrame:
        c = self.config
        return self._memo(
            "training_rows",
            lambda: retraining.training_rows(
                self.examples(),
                holdout_start=self.holdout_start(),
                as_of=self.as_of,
                maturity=pd.Timedelta(days=c.maturity_days),
                embargo=pd.Timedelta(days=c.embargo_days),
            ),
        )

    def holdout_start(self) -> pd.Timestamp:
        return pd.Timestamp(self.holdout().frame[training.TIME].min()).floor("D")

    def recipe(self) -> str:
        recipe = self.config.recipe or registry.version_tags(self.name, self.champion()).get(
            registry.MODEL_TAG
        )
        if recipe not in registry.RECIPES:
            raise StepFailed(
                f"recipe {recipe!r} (the champion's {registry.MODEL_TAG} tag unless given): "
                f"the job trains one of {sorted(registry.RECIPES)}; pass recipe=..."
            )
        return recipe

    def candidate(self):
        """The retrained model: ``(model, threshold, inputs, fit, validation, fingerprint)``."""

        def build():
            rows = self.training_rows()
            ts = pd.to_datetime(rows[training.TIME])
            cut = retraining.validation_start(rows, self.config.validation_frauds)
            fit, validation = rows[ts < cut], rows[ts >= cut]
            recipe = self.recipe()
            model, threshold, inputs = registry.fit_recipe(recipe, fit, validation)
            digest = registry.holdout_digest(rows[training.KEY], rows[ev.LABEL])
            fingerprint = hashlib.sha256(f"{recipe}|{cut}|{digest}".encode()).hexdigest()[:16]
            return model, threshold, inputs, fit, validation, fingerprint

        return self._memo("candidate", build)

    def _retrain(self) -> StepResult:
        model, threshold, inputs, fit, validation, fingerprint = self.candidate()
        rows = self.training_rows()
        cut = pd.to_datetime(validation[training.TIME]).min().floor("D")
        figures = ev.evaluate(
            validation[ev.LABEL],
            _scores(model, validation[inputs]),
            validation[training.AMOUNT],
            threshold=threshold,
        )
        ts = pd.to_datetime(rows[training.TIME])
        return StepResult(
            "retrain",
            PASSED,
            f"{self.recipe()} on {len(rows):,} payments ({int(rows[ev.LABEL].sum())} frauds) "
            f"from {ts.min():%Y-%m-%d} to {ts.max():%Y-%m-%d %H:%M}; threshold {threshold:.3f} "
            f"chosen on {len(validation):,} payments from {cut:%Y-%m-%d} "
            f"({int(validation[ev.LABEL].sum())} frauds; PR-AUC {figures['pr_auc']:.3f})",
            {
                "recipe": self.recipe(),
                "rows": len(rows),
                "frauds": int(rows[ev.LABEL].sum()),
                "first": ts.min(),
                "last": ts.max(),
                "holdout_start": self.holdout_start(),
                "embargo_days": self.config.embargo_days,
                "fit_rows": len(fit),
                "validation_rows": len(validation),
                "validation_start": cut,
                "validation_frauds": int(validation[ev.LABEL].sum()),
                "threshold": threshold,
                "validation": figures,
                "fingerprint": fingerprint,
            },
        )

    def _find_version(self, fingerprint: str) -> int | None:
        from mlflow import MlflowClient

        versions = MlflowClient().search_model_versions(f"name = '{self.name}'")
        found = [int(v.version) for v in versions if v.tags.get(FINGERPRINT_TAG) == fingerprint]
        return min(found) if found else None

    def _register(self) -> StepResult:
        from lakehouse.ml import tracking

        model, threshold, inputs, fit, _, fingerprint = self.candidate()
        champion = self.champion()
        version = self._find_version(fingerprint)
        if version == champion:
            raise StepFailed(
                f"the champion v{champion} was trained on these very rows with this recipe: "
                "nothing new to compare (wait for new labelled rows)"
            )
        previous_challenger = registry.version_of(self.name, registry.CHALLENGER)
        if version is None:
            cut = self.holdout_start() - pd.Timedelta(days=self.config.embargo_days)
            logged = tracking.log_training_run(
                model,
                f"retrain_{self.recipe()}",
                fit[inputs],
                fit[ev.LABEL],
                table=training.EXAMPLES_TABLE,
                table_version=training.table_version(self.spark, training.EXAMPLES_TABLE),
                params={
                    "train_end": f"{cut:%Y-%m-%d}",
                    "built_by": "retraining_job",
                    "as_of": self.config.as_of,
                },
                metrics={"threshold": threshold},
                spark=self.spark,
                tags={RUN_TAG: self.run_id},
            )
            version = registry.register(
                logged.model_uri,
                self.name,
                alias=registry.CHALLENGER,
                tags={
                    registry.THRESHOLD_TAG: threshold,
                    registry.MODEL_TAG: self.recipe(),
                    FINGERPRINT_TAG: fingerprint,
                    RUN_TAG: self.run_id,
                },
            )
            detail = f"v{version} registered as @challenger"
        else:
            registry.set_alias(self.name, registry.CHALLENGER, version)
            detail = (
                f"v{version} was trained on these rows with this recipe by an earlier run: "
                "reused as @challenger, not trained twice"
            )
        if previous_challenger not in (None, version):
            detail += f" (it replaces v{previous_challenger})"
        return StepResult(
            "register",
            PASSED,
            detail,
            {"fingerprint": fingerprint, "previous_challenger": previous_challenger},
            model_version=version,
        )

    def candidate_version(self) -> int:
        return int(self.results["register"].model_version)

    def gate_result(self) -> registry.GateResult:
        return self._memo(
            "gate",
            lambda: registry.compare(self.name, self.holdout(), policy=self.config.gate),
        )

    def _gate(self) -> StepResult:
        result = self.gate_result()
        evidence = {"checks": _records(result.table()), "figures": result.figures}
        if not result.passed:
            self._cache["evidence"] = evidence
            raise StepFailed(result.verdict() + ": " + "; ".join(result.reasons))
        return StepResult(
            "gate", PASSED, result.verdict(), evidence, model_version=self.candidate_version()
        )

    def shadow_period(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        end = pd.Timestamp(self.config.monitor_end)
        return end - pd.Timedelta(days=self.config.shadow_days), end

    def shadow_frame(self) -> pd.DataFrame:
        """The shadow period's payments: the champion's served decision and the challenger's
        shadow decision on each."""

        def build():
            start, end = self.shadow_period()
            served = self.served_scores(self.champion())
            period = served[(served[training.TIME] >= start) & (served[training.TIME] < end)]
            version = self.candidate_version()
            model = registry.load(self.name, registry.CHALLENGER)
            if registry.version_of(self.name, registry.CHALLENGER) != version:
                raise StepFailed(f"@challenger no longer points at v{version}: rerun register")
            inputs = list(model.feature_names_in_)
            threshold = registry.threshold_of(self.name, registry.CHALLENGER)
            shadow = _scores(model, period[inputs])
            return period.assign(
                shadow_score=shadow,
                shadow_threshold=threshold,
                shadow_flagged=shadow >= threshold,
                features=period[inputs].to_json(orient="records", lines=True).splitlines(),
            )

        return self._memo("shadow", build)

    def _log_shadow(self, frame: pd.DataFrame) -> int:
        from pyspark.sql import functions as F
        from pyspark.sql.types import StructType

        from lakehouse import DeltaTable

        version = self.candidate_version()
        scoring.create_inference_log(self.spark)
        rows = pd.DataFrame(
            {
                "request_id": frame["payment_id"],
                "source": "replay",
                "payment_id": frame["payment_id"],
                "customer_id": frame["customer_id"],
                "event_ts": pd.to_datetime(frame[training.ARRIVAL]),
                "model_name": self.name,
                "model_version": version,
                "model_alias": registry.CHALLENGER,
                "role": "shadow",
                "features": frame["features"],
                "score": frame["shadow_score"].astype(float),
                "threshold": frame["shadow_threshold"].astype(float),
                "flagged": frame["shadow_flagged"].astype(bool),
                "latency_ms": np.nan,  # a null: no request, a replay
                "batch_id": pd.Series(pd.NA, index=frame.index, dtype="Int64"),
            }
        )
        fields = [f for f in scoring.INFERENCE_LOG_SCHEMA.fields if f.name != "logged_at"]
        rows_df = self.spark.createDataFrame(
            rows[[f.name for f in fields]], StructType(fields)
        ).withColumn("logged_at", F.current_timestamp())
        condition = " AND ".join(f"t.{k} = s.{k}" for k in scoring.LOG_KEY)
        before = training.table_version(self.spark, scoring.INFERENCE_LOG)
        (
            DeltaTable.forName(self.spark, scoring.INFERENCE_LOG)
            .alias("t")
            .merge(rows_df.alias("s"), condition)
            .whenNotMatchedInsertAll()
            .execute()
        )
        last = DeltaTable.forName(self.spark, scoring.INFERENCE_LOG).history(1).first()
        if last["version"] == before:
            return 0
        return int((last["operationMetrics"] or {}).get("numTargetRowsInserted", 0))

    def _shadow(self) -> StepResult:
        frame = self.shadow_frame()
        start, end = self.shadow_period()
        logged = self._log_shadow(frame)
        scores = frame["shadow_score"].to_numpy()
        valid = bool(np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all())
        rate, served_rate = float(frame["shadow_flagged"].mean()), float(frame["flagged"].mean())
        agreement = float((frame["shadow_flagged"] == frame["flagged"]).mean())
        rank = float(pd.Series(scores).corr(frame["score"].reset_index(drop=True), "spearman"))
        evidence = {
            "period": [start, end],
            "payments": len(frame),
            "logged_now": logged,
            "valid_scores": valid,
            "flag_rate": {"champion": served_rate, "challenger": rate},
            "agreement": agreement,
            "rank_correlation": rank,
        }
        problems = []
        if not len(frame):
            problems.append(f"no payment between {start:%Y-%m-%d} and {end:%Y-%m-%d}")
        if not valid:
            problems.append("scores outside [0, 1] or not finite")
        if rate > self.config.max_flag_rate:
            problems.append(
                f"it would flag {rate:.1%} of payments, over the review capacity "
                f"{self.config.max_flag_rate:.0%}"
            )
        if problems:
            self._cache["evidence"] = evidence
            raise StepFailed("shadow: " + "; ".join(problems))
        return StepResult(
            "shadow",
            PASSED,
            f"{len(frame):,} payments {start:%m-%d}..{end - pd.Timedelta(days=1):%m-%d} scored "
            f"in shadow ({logged} logged now): flags {rate:.1%} vs the champion's "
            f"{served_rate:.1%}, same decision on {agreement:.1%}",
            evidence,
            model_version=self.candidate_version(),
        )

    def _ab_test(self) -> StepResult:
        from lakehouse.ml import abtest

        c = self.config
        frame = self.shadow_frame()
        arm = frame["customer_id"].map(
            lambda customer: router.arm_of(customer, challenger_share=c.challenger_share)
        )
        decided = np.where(arm == router.CHALLENGER, frame["shadow_flagged"], frame["flagged"])
        legit, fraud = frame[ev.LABEL].to_numpy() == 0, frame[ev.LABEL].to_numpy() == 1
        counts = {}
        for name in (router.CHAMPION, router.CHALLENGER):
            inside = (arm == name).to_numpy()
            counts[name] = {
                "payments": int(inside.sum()),
                "legitimate": int((inside & legit).sum()),
                "false_positives": int((inside & legit & decided.astype(bool)).sum()),
                "frauds": int((inside & fraud).sum()),
                "frauds_caught": int((inside & fraud & decided.astype(bool)).sum()),
            }
        a, b = counts[router.CHAMPION], counts[router.CHALLENGER]
        if not a["legitimate"] or not b["legitimate"]:
            self._cache["evidence"] = {"arms": counts}
            raise StepFailed(f"an arm has no legitimate payment to compare: {counts}")
        result = abtest.two_proportion_test(
            a["false_positives"],
            a["legitimate"],
            b["false_positives"],
            b["legitimate"],
            confidence=c.confidence,
        )
        p_a = max(result.p_a, 1 / a["legitimate"])
        detectable = min(0.999, 2 * p_a)  # power to see the false-positive rate double
        power = abtest.power(
            p_a, detectable, a["legitimate"], b["legitimate"], alpha=1 - c.confidence
        )
        evidence = {
            "arms": counts,
            "metric": "false-positive rate: legitimate payments flagged",
            "summary": result.summary(),
            "decision": result.decision(),
            "power_to_detect_doubling": power,
        }
        detail = (
            f"false positives: {result.summary()} -> {result.decision()} "
            f"(power to see it double: {power:.0%}); frauds caught {a['frauds_caught']}/"
            f"{a['frauds']} vs {b['frauds_caught']}/{b['frauds']}"
        )
        if result.decision() == abtest.DECISIONS[0]:
            self._cache["evidence"] = evidence
            raise StepFailed("A/B: the challenger flags more good customers: " + detail)
        return StepResult("ab_test", PASSED, detail, evidence, self.candidate_version())

    def _promote(self) -> StepResult:
        version = self.candidate_version()
        stop = self.stopped_at()
        if stop is not None:  # withdraw the challenger this run registered
            from mlflow import MlflowClient

            client = MlflowClient()
            reason = f"{stop.step}: {stop.detail}"[:4_000]
            client.set_model_version_tag(self.name, str(version), REJECTED_TAG, reason)
            if registry.version_of(self.name, registry.CHALLENGER) == version:
                client.delete_registered_model_alias(self.name, registry.CHALLENGER)
            champion = registry.version_of(self.name, registry.CHAMPION)
            return StepResult(
                "promote",
                WITHDRAWN,
                f"v{version} withdrawn ({stop.step} {stop.outcome}); @champion stays v{champion}",
                {"reason": reason},
                version,
            )
        replaced = registry.promote(self.name, version, self.gate_result())
        return StepResult(
            "promote",
            PROMOTED,
            f"v{version} is @champion" + (f", v{replaced} is @previous" if replaced else ""),
            {"replaced": replaced},
            version,
        )

    def _verify(self) -> StepResult:
        """What serves is what was gated: ``@champion`` loaded as a server loads it, and its
        holdout figures equal to the gate's for the candidate; otherwise roll back."""
        version = self.candidate_version()
        ref = scoring.resolve(self.name, registry.CHAMPION)
        model = registry.load(self.name, registry.CHAMPION)
        served = registry.score_holdout(
            model, self.holdout(), threshold=ref.threshold, name=f"v{ref.version}"
        ).figures(self.config.gate.cost)
        gated = self.results["gate"].evidence.get("figures", {}).get(f"v{version}")
        problems = []
        if ref.version != version:
            problems.append(f"@champion resolves to v{ref.version}, not v{version}")
        if gated is None:
            problems.append(f"the gate recorded no figures for v{version}")
        else:
            for key in ("pr_auc", "expected_cost_usd"):
                if not np.isclose(served[key], gated[key], rtol=1e-9, atol=1e-9):
                    problems.append(f"{key} {served[key]:.6f} served vs {gated[key]:.6f} gated")
        evidence = {"served": served, "gated": gated, "resolved_version": ref.version}
        if problems:
            back = registry.rollback(self.name, reason="verify: " + "; ".join(problems))
            return StepResult(
                "verify",
                ROLLED_BACK,
                f"rolled back to v{back}: " + "; ".join(problems),
                evidence,
                version,
            )
        return StepResult(
            "verify",
            PASSED,
            f"@champion serves v{version}: holdout PR-AUC {served['pr_auc']:.3f} and expected "
            f"cost {served['expected_cost_usd']:,.0f} USD, as gated",
            evidence,
            version,
        )


def _scores(model, frame: pd.DataFrame) -> np.ndarray:
    from lakehouse.ml import tracking

    return tracking.scores(model, frame)


def summary(evidence: pd.DataFrame) -> str:
    """One line per step of a run's evidence: the step, its outcome and its detail."""
    width = max((len(s) for s in STEPS), default=8)
    return "\n".join(
        f"{row.step_no}. {row.step:<{width}} {row.outcome:<11} {row.detail}"
        for row in evidence.itertuples()
    )


JOB_DEFINITION = "resources/fraud_retraining.job.yml"
ENTRY_POINT = "lakehouse-retrain"


def _step_parameters(path, key: str, task: dict, entry_points: Sequence[str]) -> list | None:
    """A task's parameters if it runs this module: a Python file task on this very file
    (relative to the definition's folder, as a bundle resolves it) or a wheel task on one of
    ``entry_points``; None for other tasks (a condition task)."""
    if "spark_python_task" in task:
        spec = task["spark_python_task"]
        target = (Path(path).parent / spec.get("python_file", "")).resolve()
        assert target == Path(__file__).resolve(), (
            f"task {key}: python_file {spec.get('python_file')!r} is not "
            f"{Path(__file__).name} (resolved: {target}); point it at the job's module"
        )
        return list(spec.get("parameters", []))
    if "python_wheel_task" in task:
        spec = task["python_wheel_task"]
        assert spec.get("entry_point") in entry_points, (
            f"task {key}: entry_point {spec.get('entry_point')!r} is not one of "
            f"{list(entry_points)} (pyproject.toml's [project.scripts])"
        )
        return list(spec.get("parameters", []))
    return None


def check_job_definition(path, *, entry_points: Sequence[str] = (ENTRY_POINT,)) -> str:
    """Check the Lakeflow Job definition at ``path`` against this module: one task per step
    of :data:`STEPS`, each running ``--step <step>`` with the job's run id (this file as a
    Python task, or an entry point of the package), each after the step before it, and a
    condition task that lets ``retrain`` run only when ``decide`` published the value
    ``retrain``. Raises an AssertionError naming the task and the fix."""
    import yaml

    definition = yaml.safe_load(open(path, encoding="utf-8").read())
    jobs = (definition or {}).get("resources", {}).get("jobs", {})
    assert len(jobs) == 1, f"{path}: expected one job under resources.jobs, found {list(jobs)}"
    ((job_key, job),) = jobs.items()
    tasks = {t["task_key"]: t for t in job.get("tasks", [])}
    steps = {}
    for key, task in tasks.items():
        params = _step_parameters(path, key, task, entry_points)
        if params is None:
            continue
        assert "--step" in params, f"task {key}: no --step parameter: which step does it run?"
        step = params[params.index("--step") + 1]
        assert step in STEPS, f"task {key}: --step {step!r} is not a step of {list(STEPS)}"
        assert "--run-id" in params and params[params.index("--run-id") + 1] == "{{job.run_id}}", (
            f"task {key}: pass --run-id {{{{job.run_id}}}} so every step continues the same run"
        )
        steps[step] = key
    missing = [s for s in STEPS if s not in steps]
    assert not missing, f"{path}: no task runs the step(s) {missing}"
    conditions = {k: t for k, t in tasks.items() if "condition_task" in t}
    gate = [
        k
        for k, t in conditions.items()
        if t["condition_task"].get("left") == f"{{{{tasks.{steps['decide']}.values.decide}}}}"
        and t["condition_task"].get("op") == "EQUAL_TO"
        and str(t["condition_task"].get("right")) == RETRAIN
    ]
    assert gate, (
        f"{path}: no condition task compares {{{{tasks.{steps['decide']}.values.decide}}}} "
        f"EQUAL_TO {RETRAIN!r}: without it every run retrains"
    )

    def upstream(key: str) -> list[dict]:
        return tasks[key].get("depends_on", [])

    for before, step in zip(STEPS, STEPS[1:], strict=False):
        deps = upstream(steps[step])
        names = [d["task_key"] for d in deps]
        if step == "retrain":
            ok = any(d["task_key"] in gate and str(d.get("outcome")) == "true" for d in deps)
            assert ok, (
                f"task {steps[step]} must depend on the condition task {gate[0]} with outcome "
                f"'true' (it depends on {names})"
            )
            continue
        assert steps[before] in names, (
            f"task {steps[step]} ({step}) must depend on {steps[before]} ({before}); it "
            f"depends on {names}"
        )
    return (
        f"{path}: job {job_key!r} runs the {len(STEPS)} steps in order, retrain only when "
        f"decide says {RETRAIN!r}"
    )


def job_definition_path() -> str:
    """Where :data:`JOB_DEFINITION` is: under the working folder or one of its parents (a
    notebook runs in its own folder), else beside the installed package's checkout."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents, *Path(__file__).resolve().parents):
        candidate = folder / JOB_DEFINITION
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(f"{JOB_DEFINITION} not found above {here}: run from the course")


def check_run(name: str, evidence: pd.DataFrame, *, expect: str) -> str:
    """Check one run's ``evidence`` (:meth:`RetrainingJob.evidence`) against the registry:
    every step once and in order, and the registry where the run says it left it --
    ``expect`` :data:`PROMOTED` (the candidate is ``@champion``, the old champion
    ``@previous``) or :data:`WITHDRAWN` (a step failed, the ones after it skipped, the
    champion unchanged, the candidate without ``@challenger`` and tagged rejected)."""
    steps = list(evidence["step"])
    assert steps == list(STEPS), (
        f"the run recorded {steps}, not each of {list(STEPS)} once in order: run the whole "
        "job (RetrainingJob(...).run()) with a new run id"
    )
    by = evidence.set_index("step")
    outcome = by["outcome"]
    decided_champion = int(by.loc["decide", "model_version"])
    candidate = by.loc["register", "model_version"]
    assert outcome["decide"] == RETRAIN, f"decide said {outcome['decide']!r}: no retraining ran"
    assert not pd.isna(candidate), "register recorded no version"
    candidate, now = int(candidate), registry.aliases(name)
    if expect == PROMOTED:
        failed = [s for s in STEPS[1:] if outcome[s] not in (PASSED, PROMOTED)]
        assert not failed, (
            f"the run did not promote: {', '.join(f'{s} {outcome[s]}' for s in failed)} "
            f"({by.loc[failed[0], 'detail']})"
        )
        assert now.get(registry.CHAMPION) == candidate, (
            f"the run promoted v{candidate} but @champion is v{now.get(registry.CHAMPION)}: "
            "something moved the alias after the run"
        )
        assert now.get(registry.PREVIOUS) == decided_champion, (
            f"@previous should keep the replaced champion v{decided_champion} for a rollback; "
            f"it is {now.get(registry.PREVIOUS)}"
        )
        return (
            "promoted: every step passed, the candidate is @champion and the champion it "
            "replaced is @previous"
        )
    if expect == WITHDRAWN:
        stop = next((s for s in STEPS[1:] if outcome[s] == FAILED), None)
        assert stop is not None, "no step failed: the run should have promoted"
        after = list(STEPS[STEPS.index(stop) + 1 :])
        wrong = [s for s in after if outcome[s] != (WITHDRAWN if s == "promote" else SKIPPED)]
        assert not wrong, (
            f"after {stop} failed, {wrong} should be skipped (promote: withdrawn), not "
            f"{[outcome[s] for s in wrong]}"
        )
        assert now.get(registry.CHAMPION) == decided_champion, (
            f"the champion changed from v{decided_champion} to v{now.get(registry.CHAMPION)} "
            "in a run that failed its checks"
        )
        assert now.get(registry.CHALLENGER) != candidate, (
            f"v{candidate} is still @challenger after being withdrawn"
        )
        assert REJECTED_TAG in registry.version_tags(name, candidate), (
            f"v{candidate} carries no {REJECTED_TAG} tag: the reason is lost"
        )
        return (
            f"withdrawn at {stop}: the steps after it skipped, the champion unchanged, the "
            "candidate's reason tagged"
        )
    raise ValueError(f"expect={expect!r}: use {PROMOTED!r} or {WITHDRAWN!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.ml.retraining_job",
        description=f"Run the fraud model's retraining loop, each step's evidence in {RUNS_TABLE}.",
    )
    parser.add_argument(
        "--as-of", default=JobConfig.as_of, help="the job's today (labels known then)"
    )
    parser.add_argument("--recipe", default=None, help=f"one of {sorted(registry.RECIPES)}")
    parser.add_argument("--step", action="append", choices=STEPS, help="run only this step")
    parser.add_argument("--run-id", default=None, help="continue this run (with --step)")
    parser.add_argument("--scale", default=os.environ.get("LAKEHOUSE_SCALE", "tiny"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.run_id is None and args.step and args.step[0] != "decide":
        parser.error("--step after decide needs the --run-id of the run to continue")

    import warnings

    from tqdm.auto import tqdm

    from lakehouse import get_spark
    from lakehouse.course import prepare_datasets
    from lakehouse.ml import tracking

    warnings.filterwarnings("ignore", module="mlflow")  # its notices about its own future
    spark = get_spark(scale=args.scale)
    prepare_datasets(scale=args.scale, seed=args.seed)
    tracking.configure(spark)
    job = RetrainingJob(
        spark, JobConfig(as_of=args.as_of, recipe=args.recipe, seed=args.seed), run_id=args.run_id
    )
    evidence = job.run(args.step or STEPS, progress=tqdm)
    print(f"run {job.run_id} ({RUNS_TABLE}):")
    print(summary(evidence))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "JOB_DEFINITION",
    "JobConfig",
    "PROMOTED",
    "WITHDRAWN",
    "check_job_definition",
    "check_run",
    "job_definition_path",
    "RUNS_TABLE",
    "RetrainingJob",
    "STEPS",
    "StepResult",
    "main",
    "summary",
    "task_value",
]
