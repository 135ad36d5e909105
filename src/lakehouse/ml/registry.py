"""The model registry and a promotion gate: versions of the fraud model under one registered
name, the aliases ``@champion`` (what serves), ``@challenger`` (what asks to replace it) and
``@previous`` (the champion it replaced, for a rollback), a holdout frozen in a Delta table so
every comparison reads the same rows, and the gate that compares two models on it and promotes
the challenger or refuses with its reasons.

Example::

    from lakehouse.ml import registry

    name = registry.registered_name(spark)            # fraud_detector; main.ml.fraud_detector on UC
    version = registry.register(logged.model_uri, name, alias=registry.CHALLENGER)
    holdout = registry.read_holdout(spark, registry.HOLDOUT_TABLE, holdout_version)
    champion = registry.score_holdout(registry.load(name, registry.CHAMPION), holdout, ...)
    challenger = registry.score_holdout(registry.load(name, registry.CHALLENGER), holdout, ...)
    result = registry.gate(champion, challenger, signature=..., features=..., latency_ms=...)
    if result.passed:
        registry.promote(name, version, result)       # @previous <- old champion, @champion <- it
    registry.rollback(name)                           # @champion <- @previous

The gate's logic works on pandas frames and numpy arrays (plus the model's MLflow signature):
no Spark session, no registry. Costs are :class:`lakehouse.ml.evaluation.CostModel`'s.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lakehouse.ml import FRAUD_HOLDOUT
from lakehouse.ml import evaluation as ev
from lakehouse.ml.training import AMOUNT, FEATURE_COLUMNS, KEY, NUMERIC_FEATURES

REGISTERED_MODEL = "fraud_detector"
HOLDOUT_TABLE = FRAUD_HOLDOUT
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
# Tags a model version carries: its decision threshold (chosen on the validation period, it is
# part of the model: a score means nothing without it), the gate's verdict, and its history.
THRESHOLD_TAG = "lakehouse.threshold"
GATE_TAG = "lakehouse.gate"
REPLACED_TAG = "lakehouse.replaced_version"
ROLLED_BACK_TAG = "lakehouse.rolled_back"
HOLDOUT_TAG = "lakehouse.holdout"
MODEL_TAG = "lakehouse.model"  # the recipe a version was trained with (e.g. all_features)

AMOUNT_BAND = "amount_band"
# Upper bounds of the amount bands in USD (the last band is open).
AMOUNT_BAND_EDGES = (50.0, 200.0, 1_000.0)
SLICE_COLUMNS = ("card_network", "channel", AMOUNT_BAND)


# --------------------------------------------------------------------------- names and aliases


def registered_name(spark=None, name: str = REGISTERED_MODEL, *, engine: str | None = None) -> str:
    """The registered model's name: ``name`` in the local registry (one per catalog, see
    :func:`lakehouse.ml.tracking.store_for`), ``<catalog>.ml.<name>`` in Unity Catalog, whose
    models live in a schema like tables."""
    if engine is None and spark is not None:
        from lakehouse import engine_of

        engine = engine_of(spark)
    if engine == "databricks":
        catalog = spark.catalog.currentCatalog() if spark is not None else "main"
        return f"{catalog}.ml.{name}"
    return name


def model_uri(name: str, alias: str) -> str:
    """``models:/<name>@<alias>``: what a batch job or an endpoint loads. The alias moves, the
    URI stays: promotion and rollback need no change to the consumer."""
    if not alias or alias.isdigit():
        raise ValueError(f"alias {alias!r}: give an alias such as {CHAMPION!r}, not a version")
    return f"models:/{name}@{alias}"


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def register(
    model_uri: str, name: str, *, alias: str | None = None, tags: dict | None = None
) -> int:
    """Register the logged model at ``model_uri`` as a new version of ``name`` (created if
    missing), with ``tags``, and point ``alias`` at it. Returns the version number."""
    import contextlib
    import io

    import mlflow

    # MLflow prints "Registered model ... already exists. Creating a new version" and
    # "Created version ..." to stderr: the returned version says it
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(
            model_uri, name, tags={k: str(v) for k, v in (tags or {}).items()}
        )
    if alias is not None:
        set_alias(name, alias, int(version.version))
    return int(version.version)


def set_alias(name: str, alias: str, version: int) -> None:
    """Point ``alias`` of ``name`` at ``version`` (an alias names one version at a time)."""
    _client().set_registered_model_alias(name, alias, str(int(version)))


def version_of(name: str, alias: str) -> int | None:
    """The version ``alias`` points at, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return int(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def aliases(name: str) -> dict[str, int]:
    """Every alias of ``name`` and its version, by alias name."""
    model = _client().get_registered_model(name)
    return {alias: int(version) for alias, version in sorted(model.aliases.items())}


def restore_aliases(name: str, saved: dict[str, int]) -> dict[str, int]:
    """Point the aliases of ``name`` back where ``saved`` (an earlier :func:`aliases`) says,
    and remove those it did not have: how a lesson that promotes leaves the registry as it
    found it, so it can run again. Returns the aliases now."""
    client = _client()
    for alias in set(aliases(name)) - set(saved):
        client.delete_registered_model_alias(name, alias)
    for alias, version in saved.items():
        set_alias(name, alias, version)
    return aliases(name)


def version_tags(name: str, version: int) -> dict[str, str]:
    """The tags of one version of ``name``."""
    return dict(_client().get_model_version(name, str(int(version))).tags)


def delete_model(name: str) -> bool:
    """Delete the registered model ``name`` with its versions and aliases, if it exists (the
    runs and their logged models stay). Returns whether there was one."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    client.delete_registered_model(name)
    return True


def load(name: str, alias: str):
    """The scikit-learn model ``alias`` of ``name`` points at (``models:/<name>@<alias>``)."""
    from lakehouse.ml import tracking

    return tracking.load_model(model_uri(name, alias))


def signature_of(name: str, alias: str):
    """The MLflow signature (inputs and outputs) of the model ``alias`` points at."""
    from mlflow.models import get_model_info

    return get_model_info(model_uri(name, alias)).signature


def threshold_of(name: str, alias: str) -> float:
    """The decision threshold recorded with the version ``alias`` points at
    (:data:`THRESHOLD_TAG`)."""
    version = version_of(name, alias)
    if version is None:
        raise ValueError(f"{name} has no @{alias}: register a version with that alias first")
    tags = version_tags(name, version)
    if THRESHOLD_TAG not in tags:
        raise ValueError(
            f"{name} version {version} has no {THRESHOLD_TAG} tag: register it with its "
            "threshold (tags={registry.THRESHOLD_TAG: threshold})"
        )
    return float(tags[THRESHOLD_TAG])


# --------------------------------------------------------------------------- the frozen holdout


def amount_band(amount) -> np.ndarray:
    """The amount band of each payment in USD: ``<50``, ``50-200``, ``200-1000``, ``>=1000``."""
    edges = AMOUNT_BAND_EDGES
    labels = np.array(
        [f"<{edges[0]:.0f}"]
        + [f"{lo:.0f}-{hi:.0f}" for lo, hi in zip(edges, edges[1:], strict=False)]
        + [f">={edges[-1]:.0f}"]
    )
    return labels[np.digitize(np.asarray(amount, dtype="float64"), edges, right=False)]


def table_exists(spark, table: str) -> bool:
    return bool(spark.catalog.tableExists(table))


def freeze_holdout(spark, holdout_df, table: str = HOLDOUT_TABLE) -> int:
    """Write ``holdout_df`` (with its ``label`` column: the labels are frozen too) to the Delta
    ``table`` unless it exists, and return the version to read it at: the one just written, or
    the existing table's first version. A holdout is written once; every later comparison reads
    that version, so a rerun, a new challenger or a late label never changes its rows."""
    if not table_exists(spark, table):
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
        holdout_df.write.format("delta").mode("error").saveAsTable(table)
    history = spark.sql(f"DESCRIBE HISTORY {table}").select("version").collect()
    return int(min(row["version"] for row in history))


def holdout_digest(keys, labels) -> str:
    """A fingerprint of a set of rows: their keys in order and their labels."""
    digest = hashlib.sha256()
    digest.update("\n".join(map(str, keys)).encode())
    digest.update(np.asarray(labels, dtype="int64").tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Holdout:
    """The holdout's rows as read from ``table`` at ``version``, sorted by key."""

    table: str
    version: int
    frame: pd.DataFrame = field(repr=False)

    @property
    def source(self) -> str:
        return f"{self.table}@v{self.version}"

    @property
    def digest(self) -> str:
        return holdout_digest(self.frame[KEY], self.frame[ev.LABEL])


def read_holdout(spark, table: str, version: int) -> Holdout:
    """The holdout ``table`` at ``version`` (``VERSION AS OF``), in pandas, sorted by key."""
    frame = spark.sql(f"SELECT * FROM {table} VERSION AS OF {int(version)}").orderBy(KEY).toPandas()
    if ev.LABEL not in frame.columns:
        raise ValueError(f"{table} has no {ev.LABEL!r} column: freeze the labels with the rows")
    return Holdout(table, int(version), frame)


# --------------------------------------------------------------------------- scores on a holdout


@dataclass(frozen=True)
class HoldoutScores:
    """One model's scores on a set of rows, with what a comparison needs: the rows' keys,
    labels, amounts and slice columns, where they came from (``source``: ``table@vN`` for a
    frozen holdout, None for any other frame) and the model's threshold."""

    model: str
    source: str | None
    keys: np.ndarray = field(repr=False)
    label: np.ndarray = field(repr=False)
    amount: np.ndarray = field(repr=False)
    score: np.ndarray = field(repr=False)
    threshold: float
    slices: pd.DataFrame = field(repr=False)

    @property
    def digest(self) -> str:
        return holdout_digest(self.keys, self.label)

    def costs(self, cost: ev.CostModel = ev.COSTS) -> np.ndarray:
        """The cost of each decision at the threshold, per row (USD)."""
        return cost.per_payment(self.label, self.score >= self.threshold, self.amount)

    def figures(self, cost: ev.CostModel = ev.COSTS) -> dict[str, float]:
        """:func:`lakehouse.ml.evaluation.evaluate`'s figures on these rows."""
        return ev.evaluate(self.label, self.score, self.amount, threshold=self.threshold, cost=cost)


def score_holdout(
    model,
    holdout: Holdout | pd.DataFrame,
    *,
    threshold: float,
    name: str,
    features: Sequence[str] | None = None,
) -> HoldoutScores:
    """Score ``holdout``'s rows with ``model`` (its ``predict_proba``) on ``features`` (default:
    the columns the model was fitted on, else :data:`training.FEATURE_COLUMNS`). A
    :class:`Holdout` gives the scores its ``source``; any other frame has none, and the gate
    refuses to compare it."""
    from lakehouse.ml import tracking

    source = holdout.source if isinstance(holdout, Holdout) else None
    frame = holdout.frame if isinstance(holdout, Holdout) else holdout
    missing = [c for c in (KEY, ev.LABEL, AMOUNT) if c not in frame.columns]
    if missing:
        raise ValueError(f"the holdout lacks {missing}: it needs {KEY}, {ev.LABEL} and {AMOUNT}")
    if features is None:
        features = list(getattr(model, "feature_names_in_", FEATURE_COLUMNS))
    slices = pd.DataFrame(index=frame.index)
    for column in SLICE_COLUMNS:
        if column == AMOUNT_BAND:
            slices[column] = amount_band(frame[AMOUNT])
        elif column in frame.columns:
            slices[column] = frame[column].astype("string").fillna("(null)")
    return HoldoutScores(
        model=name,
        source=source,
        keys=frame[KEY].to_numpy(),
        label=frame[ev.LABEL].to_numpy(dtype="int64"),
        amount=frame[AMOUNT].to_numpy(dtype="float64"),
        score=tracking.scores(model, frame[list(features)]),
        threshold=float(threshold),
        slices=slices.reset_index(drop=True),
    )


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    confidence: float


def bootstrap_totals(
    champion_cost,
    challenger_cost,
    *,
    n_resamples: int = 1_000,
    seed: int = 0,
    chunk: int = 100,
) -> np.ndarray:
    """``n_resamples`` totals of ``challenger_cost - champion_cost`` over rows drawn with
    replacement: each resample takes **both** models' costs on the **same** rows (paired), so
    what the rows share (a costly fraud both miss) cancels out. Seeded."""
    a = np.asarray(champion_cost, dtype="float64")
    b = np.asarray(challenger_cost, dtype="float64")
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(
            f"paired costs need two equal, non-empty 1-d arrays (got {a.shape} and {b.shape}): "
            "score both models on the same rows"
        )
    if n_resamples < 1:
        raise ValueError(f"n_resamples {n_resamples}: draw at least one resample (e.g. 1000)")
    difference = b - a
    n = len(difference)
    rng = np.random.default_rng(seed)
    totals = []
    for start in range(0, n_resamples, chunk):  # chunks bound the memory: chunk x n indices
        rows = rng.integers(0, n, size=(min(chunk, n_resamples - start), n))
        totals.append(difference[rows].sum(axis=1))
    return np.concatenate(totals)


def paired_bootstrap(
    champion_cost,
    challenger_cost,
    *,
    n_resamples: int = 1_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The total cost difference ``challenger - champion`` over the rows and its percentile
    interval from :func:`bootstrap_totals` at ``confidence``. Seeded: the same inputs give
    the same interval."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence}: give a level in (0, 1), e.g. 0.95")
    totals = bootstrap_totals(champion_cost, challenger_cost, n_resamples=n_resamples, seed=seed)
    tail = (1 - confidence) / 2
    low, high = np.quantile(totals, [tail, 1 - tail])
    estimate = float((np.asarray(challenger_cost, float) - np.asarray(champion_cost, float)).sum())
    return Interval(estimate, float(low), float(high), confidence)


def measure_latency(model, frame: pd.DataFrame, *, batch_rows: int = 500, batches: int = 20):
    """Time ``model.predict_proba`` on ``batches`` batches of ``batch_rows`` rows of ``frame``
    (cycled) and return the 95th percentile of the time per row, in milliseconds. The first
    batch warms up and is not counted."""
    if frame.empty:
        raise ValueError("the latency frame is empty: time the model on the holdout's features")
    rows = np.resize(np.arange(len(frame)), batch_rows * (batches + 1))
    per_row = []
    for i in range(batches + 1):
        batch = frame.iloc[rows[i * batch_rows : (i + 1) * batch_rows]]
        start = time.perf_counter()
        model.predict_proba(batch)
        elapsed = time.perf_counter() - start
        if i:
            per_row.append(elapsed * 1_000 / batch_rows)
    return float(np.quantile(per_row, 0.95))


# --------------------------------------------------------------------------- the gate


@dataclass(frozen=True)
class GatePolicy:
    """What a challenger must show to replace the champion, on the same frozen holdout.

    - ``min_pr_auc``: an absolute floor for the challenger's PR-AUC;
    - ``pr_auc_tolerance``: its PR-AUC may be at most this much below the champion's;
    - ``min_cost_saving``: its expected cost must be lower by at least this share of the
      champion's (0.0: lower at all);
    - ``confidence``, ``n_resamples``, ``seed``: the paired bootstrap of the cost difference;
      the challenger passes only if the interval's upper bound is below 0 (surely cheaper);
    - ``slice_tolerance``, ``slice_slack_usd``: in no slice (one value of a column of
      :data:`SLICE_COLUMNS`) may its cost exceed the champion's by more than this share **and**
      this amount (a slice of a few payments moves by one fraud: the slack absorbs that noise);
    - ``latency_budget_ms``: the 95th percentile of its scoring time per row, in batches.
    """

    min_pr_auc: float = 0.05
    pr_auc_tolerance: float = 0.02
    min_cost_saving: float = 0.0
    confidence: float = 0.95
    n_resamples: int = 1_000
    seed: int = 0
    slice_columns: tuple[str, ...] = SLICE_COLUMNS
    slice_tolerance: float = 0.10
    slice_slack_usd: float = 250.0
    latency_budget_ms: float = 1.0
    cost: ev.CostModel = ev.COSTS


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: every check with its outcome and the reason, and the figures."""

    champion: str
    challenger: str
    checks: tuple[Check, ...]
    figures: dict = field(default_factory=dict, repr=False)
    interval: Interval | None = None
    holdout: str | None = None  # the frozen holdout both were scored on (``table@vN``)
    slices: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        """Why the gate refuses: each failed check's detail (empty when it passes)."""
        return [f"{check.name}: {check.detail}" for check in self.checks if not check.passed]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(c.name, "pass" if c.passed else "FAIL", c.detail) for c in self.checks],
            columns=["check", "outcome", "detail"],
        )

    def verdict(self) -> str:
        """One line: PROMOTE, or REFUSE with the names of the failed checks."""
        if self.passed:
            return f"PROMOTE {self.challenger} over {self.champion}: {len(self.checks)} checks pass"
        failed = [c.name for c in self.checks if not c.passed]
        return f"REFUSE {self.challenger} (champion {self.champion} stays): failed {failed}"


_TYPE_ACCEPTS = {
    # signature type: holdout types MLflow converts to it without loss
    "double": {"double", "float", "integer", "long"},
    "float": {"float", "integer"},
    "long": {"long", "integer"},
    "integer": {"integer"},
}


def signature_mismatches(signature, frame: pd.DataFrame) -> list[str]:
    """What stops ``frame`` from feeding a model with MLflow ``signature``: each required input
    column missing from it, or of a type the signature does not accept. Empty: it fits."""
    from mlflow.models import infer_signature

    if signature is None or signature.inputs is None:
        return ["the model has no signature: log it with infer_signature(X_train, ...)"]
    with warnings.catch_warnings():
        # MLflow's hint about integer columns and missing values: types are all we compare
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        inferred = infer_signature(frame).inputs.inputs
    got = {spec.name: spec.type.name for spec in inferred}
    problems = []
    for spec in signature.inputs.inputs:
        want = spec.type.name if hasattr(spec.type, "name") else str(spec.type)
        if spec.name not in got:
            if getattr(spec, "required", True):
                problems.append(f"{spec.name!r} ({want}) is missing")
        elif got[spec.name] not in _TYPE_ACCEPTS.get(want, {want}):
            problems.append(f"{spec.name!r} is {got[spec.name]}, the model takes {want}")
    return problems


def _same_rows(champion: HoldoutScores, challenger: HoldoutScores) -> str | None:
    """Why the two sets of scores are not on the same frozen rows, or None."""
    for scores in (champion, challenger):
        if scores.source is None:
            return (
                f"{scores.model} was scored on a frame that is not the frozen holdout: "
                "score both with score_holdout(model, read_holdout(spark, table, version))"
            )
    if champion.source != challenger.source:
        return (
            f"{champion.model} was scored on {champion.source} and {challenger.model} on "
            f"{challenger.source}: compare both on the same table version"
        )
    if len(champion.keys) != len(challenger.keys) or not np.array_equal(
        champion.keys, challenger.keys
    ):
        only = len(set(champion.keys) ^ set(challenger.keys))
        return (
            f"the rows differ ({len(champion.keys)} vs {len(challenger.keys)} rows, {only} "
            "in only one; or another order): score both models on all the holdout's rows"
        )
    if not np.array_equal(champion.label, challenger.label):
        return (
            f"{int((champion.label != challenger.label).sum())} rows have different labels: "
            "use the labels frozen in the holdout, not labels recomputed later"
        )
    return None


def slice_costs(
    champion: HoldoutScores,
    challenger: HoldoutScores,
    columns: Sequence[str] = SLICE_COLUMNS,
    cost: ev.CostModel = ev.COSTS,
) -> pd.DataFrame:
    """Per slice (one value of one of ``columns``): rows, frauds, each model's cost and the
    challenger's change in percent of the champion's."""
    costs = pd.DataFrame(
        {
            "champion_usd": champion.costs(cost),
            "challenger_usd": challenger.costs(cost),
            "frauds": champion.label,
        }
    )
    parts = []
    for column in columns:
        if column not in champion.slices.columns:
            raise ValueError(
                f"the holdout has no slice column {column!r}: keep it in the holdout, or drop "
                "it from GatePolicy.slice_columns"
            )
        grouped = costs.groupby(champion.slices[column].to_numpy(), sort=True).agg(
            rows=("frauds", "size"),
            frauds=("frauds", "sum"),
            champion_usd=("champion_usd", "sum"),
            challenger_usd=("challenger_usd", "sum"),
        )
        parts.append(grouped.rename_axis("value").reset_index().assign(slice=column))
    table = pd.concat(parts, ignore_index=True)
    champion_usd, challenger_usd = table["champion_usd"], table["challenger_usd"]
    with np.errstate(divide="ignore", invalid="ignore"):
        change = 100 * (challenger_usd / champion_usd - 1)
    # a slice the champion got for free: any cost is an infinite change, none is no change
    table["change_pct"] = np.where(
        champion_usd > 0, change, np.where(challenger_usd > 0, np.inf, 0)
    )
    columns = ["slice", "value", "rows", "frauds", "champion_usd", "challenger_usd", "change_pct"]
    return table[columns]


def gate(
    champion: HoldoutScores,
    challenger: HoldoutScores,
    *,
    signature,
    features: pd.DataFrame,
    latency_ms: float,
    policy: GatePolicy = GatePolicy(),
) -> GateResult:
    """Compare ``challenger`` with ``champion`` on the same frozen holdout and list every check
    (see :class:`GatePolicy`): same rows, PR-AUC floor and tolerance, expected cost, the paired
    bootstrap interval of the cost difference, the slices, the challenger's ``signature``
    against the holdout's ``features`` (columns and types), and its measured ``latency_ms``
    (95th percentile per row). When the two were not scored on the same rows the figures are
    not comparable: the gate refuses on that alone."""
    names = (f"{champion.model}", f"{challenger.model}")
    different = _same_rows(champion, challenger)
    if different is not None:
        return GateResult(*names, (Check("same frozen holdout", False, different),))
    checks = [
        Check(
            "same frozen holdout",
            True,
            f"both scored on {champion.source}: {len(champion.keys)} rows, "
            f"{int(champion.label.sum())} frauds",
        )
    ]
    old, new = champion.figures(policy.cost), challenger.figures(policy.cost)
    checks.append(
        Check(
            "PR-AUC floor",
            new["pr_auc"] >= policy.min_pr_auc,
            f"{new['pr_auc']:.3f} (floor {policy.min_pr_auc:.3f})",
        )
    )
    checks.append(
        Check(
            "PR-AUC vs champion",
            new["pr_auc"] >= old["pr_auc"] - policy.pr_auc_tolerance,
            f"{new['pr_auc']:.3f} vs {old['pr_auc']:.3f} (tolerance {policy.pr_auc_tolerance})",
        )
    )
    ceiling = old["expected_cost_usd"] * (1 - policy.min_cost_saving)
    checks.append(
        Check(
            "expected cost",
            new["expected_cost_usd"] < ceiling,
            f"{new['expected_cost_usd']:,.0f} vs {old['expected_cost_usd']:,.0f} USD "
            f"(must be below {ceiling:,.0f})",
        )
    )
    interval = paired_bootstrap(
        champion.costs(policy.cost),
        challenger.costs(policy.cost),
        n_resamples=policy.n_resamples,
        confidence=policy.confidence,
        seed=policy.seed,
    )
    checks.append(
        Check(
            "cost difference CI",
            interval.high < 0,
            f"{interval.estimate:+,.0f} USD, {interval.confidence:.0%} CI "
            f"[{interval.low:+,.0f}, {interval.high:+,.0f}]"
            + (" (surely cheaper)" if interval.high < 0 else ": not surely cheaper"),
        )
    )
    slices = slice_costs(champion, challenger, policy.slice_columns, policy.cost)
    allowed = slices["champion_usd"] * (1 + policy.slice_tolerance) + policy.slice_slack_usd
    worse = slices[slices["challenger_usd"] > allowed]
    checks.append(
        Check(
            "slices",
            worse.empty,
            (
                f"none of {len(slices)} slices costs more than the champion's "
                f"+{policy.slice_tolerance:.0%} +{policy.slice_slack_usd:,.0f} USD"
                if worse.empty
                else "worse in "
                + ", ".join(
                    f"{r.slice}={r.value} ({r.champion_usd:,.0f} -> {r.challenger_usd:,.0f} USD)"
                    for r in worse.itertuples()
                )
            ),
        )
    )
    problems = signature_mismatches(signature, features)
    checks.append(
        Check(
            "signature",
            not problems,
            "accepts the holdout's "
            f"{len(signature.inputs.inputs) if not problems else 0} feature columns"
            if not problems
            else "; ".join(problems),
        )
    )
    checks.append(
        Check(
            "latency p95",
            latency_ms <= policy.latency_budget_ms,
            f"{latency_ms:.4f} ms per row (budget {policy.latency_budget_ms} ms)",
        )
    )
    return GateResult(
        *names,
        tuple(checks),
        holdout=champion.source,
        figures={champion.model: old, challenger.model: new},
        interval=interval,
        slices=slices,
    )


def compare(
    name: str,
    holdout: Holdout,
    *,
    policy: GatePolicy = GatePolicy(),
    features: Sequence[str] = FEATURE_COLUMNS,
) -> GateResult:
    """:func:`gate` on what the registry holds: ``@champion`` and ``@challenger`` of ``name``,
    each loaded by its alias and scored on ``holdout`` with its own threshold
    (:data:`THRESHOLD_TAG`), the challenger's signature against the holdout's ``features`` and
    its latency measured on them."""
    scored = {}
    for alias in (CHAMPION, CHALLENGER):
        version = version_of(name, alias)
        if version is None:
            raise ValueError(f"{name} has no @{alias}: register a version with that alias first")
        model = load(name, alias)
        scored[alias] = (
            score_holdout(model, holdout, threshold=threshold_of(name, alias), name=f"v{version}"),
            model,
        )
    (champion, _), (challenger, model) = scored[CHAMPION], scored[CHALLENGER]
    frame = holdout.frame[list(features)]
    inputs = list(getattr(model, "feature_names_in_", features))
    return gate(
        champion,
        challenger,
        signature=signature_of(name, CHALLENGER),
        features=frame,
        latency_ms=measure_latency(model, holdout.frame[inputs]),
        policy=policy,
    )


# --------------------------------------------------------------------------- promotion


class PromotionRefused(Exception):
    """The gate refused the challenger: its reasons are the message."""


def _gate_tag(result: GateResult) -> str:
    text = result.verdict() + ("" if result.passed else " | " + " | ".join(result.reasons))
    return text[:4_000]  # a tag value's size limit is 5,000 characters


def promote(name: str, version: int, result: GateResult) -> int | None:
    """Make ``version`` the champion of ``name`` if ``result`` passed: the current champion
    (if any) gets ``@previous`` and is recorded on the new one (:data:`REPLACED_TAG`), the
    verdict and the holdout it was reached on are tagged (:data:`GATE_TAG`,
    :data:`HOLDOUT_TAG`), ``@challenger`` is removed if it pointed at
    ``version``. Raises :class:`PromotionRefused` with the gate's reasons otherwise (the
    verdict is still tagged on the version). Returns the replaced champion's version."""
    client = _client()
    client.set_model_version_tag(name, str(version), GATE_TAG, _gate_tag(result))
    if result.holdout is not None:
        client.set_model_version_tag(name, str(version), HOLDOUT_TAG, result.holdout)
    if not result.passed:
        raise PromotionRefused(
            f"{name} version {version} stays a challenger: " + "; ".join(result.reasons)
        )
    current = version_of(name, CHAMPION)
    if current == int(version):
        return None
    if current is not None:
        set_alias(name, PREVIOUS, current)
        client.set_model_version_tag(name, str(version), REPLACED_TAG, str(current))
    set_alias(name, CHAMPION, version)
    if version_of(name, CHALLENGER) == int(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    return current


def rollback(name: str, *, reason: str = "rolled back") -> int:
    """Point ``@champion`` of ``name`` back at ``@previous`` (which is then removed) and tag
    the version rolled back from (:data:`ROLLED_BACK_TAG`). Returns the champion's version."""
    previous = version_of(name, PREVIOUS)
    if previous is None:
        raise ValueError(
            f"{name} has no @{PREVIOUS}: nothing to roll back to (promote() records it)"
        )
    current = version_of(name, CHAMPION)
    client = _client()
    if current is not None:
        client.set_model_version_tag(name, str(current), ROLLED_BACK_TAG, reason)
    set_alias(name, CHAMPION, previous)
    client.delete_registered_model_alias(name, PREVIOUS)
    return previous


# --------------------------------------------------------------------------- a starting champion

# What ensure_champion trains when the registry has no champion: lesson 04's version 1 (the
# payment's categories only) as champion, its version 4 (every feature) as challenger, on
# lesson 04's split (T1, the label gap, the validation days that choose the threshold).
LESSON_04_MODELS = {CHAMPION: "categories_only", CHALLENGER: "all_features"}
LESSON_04_SPLIT = {"train_end": "2026-06-15", "label_gap_days": 7, "validation_days": 5}


def starter_model(numeric: Sequence[str] = ()):
    """Lesson 04's logistic regression: ``numeric`` features standardised, the categorical
    ones one-hot encoded (unseen categories ignored), class weights balanced."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from lakehouse.ml.training import CATEGORICAL_FEATURES

    preparation = ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(numeric)),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
        ]
    )
    model = LogisticRegression(class_weight="balanced", max_iter=1000)
    return Pipeline([("features", preparation), ("model", model)])


# Lesson 04's recipes by name: the numeric features each one uses (the categorical ones always)
RECIPES = {
    "categories_only": (),
    "without_ratio": tuple(c for c in NUMERIC_FEATURES if c != "log_amount_to_mean_30d"),
    "all_features": NUMERIC_FEATURES,
}


def recipe_inputs(recipe: str) -> list[str]:
    """The input columns of a recipe of :data:`RECIPES`: its numeric features and the
    categorical ones."""
    from lakehouse.ml import training

    if recipe not in RECIPES:
        raise ValueError(f"recipe {recipe!r}: use one of {sorted(RECIPES)}")
    return [*RECIPES[recipe], *training.CATEGORICAL_FEATURES]


def fit_recipe(recipe: str, fit: pd.DataFrame, validation: pd.DataFrame):
    """Fit :func:`starter_model` with ``recipe``'s inputs on ``fit`` and choose its threshold
    by expected cost on ``validation`` (later days than ``fit``: the threshold is chosen on
    rows the model did not learn from). Returns ``(model, threshold, inputs)``."""
    from lakehouse.ml import tracking, training

    inputs = recipe_inputs(recipe)
    numeric = [c for c in inputs if c not in training.CATEGORICAL_FEATURES]
    for frame, what in ((fit, "fit"), (validation, "validation")):
        if frame.empty or frame[ev.LABEL].nunique() < 2:
            raise ValueError(
                f"the {what} rows hold {len(frame)} payments and "
                f"{int(frame[ev.LABEL].sum()) if len(frame) else 0} frauds: a model needs "
                "both classes there (widen the training period)"
            )
    model = starter_model(numeric).fit(fit[inputs], fit[ev.LABEL])
    threshold = ev.choose_threshold(
        validation[ev.LABEL], tracking.scores(model, validation[inputs]), validation[AMOUNT]
    )
    return model, float(threshold), inputs


def holdout_start() -> pd.Timestamp:
    """Where lesson 04's frozen holdout starts: T1 plus the label gap (:data:`LESSON_04_SPLIT`)."""
    return pd.Timestamp(LESSON_04_SPLIT["train_end"]) + pd.Timedelta(
        days=LESSON_04_SPLIT["label_gap_days"]
    )


def ensure_holdout(spark, table: str = HOLDOUT_TABLE) -> Holdout:
    """Lesson 04's frozen holdout, frozen first when the lake has none: the examples of
    lesson 02 (built when missing) from :func:`holdout_start` on, with their labels as the
    ``label`` column. Returns it as read at its first version."""
    from pyspark.sql import functions as F

    from lakehouse.ml import training

    if not table_exists(spark, table):
        if not spark.catalog.tableExists(training.EXAMPLES_TABLE):
            training.write_examples(spark, training.fraud_examples(spark))
        holdout_df = (
            spark.table(training.EXAMPLES_TABLE)
            .where(F.col(training.TIME) >= F.lit(holdout_start()))
            .withColumn(ev.LABEL, F.col(training.LABEL_TIME).isNotNull().cast("int"))
        )
        freeze_holdout(spark, holdout_df, table)
    history = spark.sql(f"DESCRIBE HISTORY {table}").select("version").collect()
    return read_holdout(spark, table, min(int(row["version"]) for row in history))


def ensure_alias(
    spark,
    alias: str = CHAMPION,
    name: str | None = None,
    *,
    max_rows: int = 200_000,
    seed: int = 42,
) -> int:
    """The version ``alias`` of the fraud model points at; when it points nowhere, train
    :data:`LESSON_04_MODELS`' model for it on lesson 04's split (the examples of lesson 02,
    built when missing), log it, register it with its threshold tag and point ``alias`` at
    it. Returns the version. A lesson that needs a champion calls this instead of requiring
    lesson 04's run."""
    from lakehouse.ml import tracking, training

    if alias not in LESSON_04_MODELS:
        raise ValueError(f"alias {alias!r}: ensure_alias builds {' or '.join(LESSON_04_MODELS)}")
    tracking.configure(spark)
    name = name or registered_name(spark)
    found = version_of(name, alias)
    if found is not None:
        return found
    if not spark.catalog.tableExists(training.EXAMPLES_TABLE):
        training.write_examples(spark, training.fraud_examples(spark))
    examples_version = training.table_version(spark, training.EXAMPLES_TABLE)
    examples = training.to_pandas_bounded(spark.table(training.EXAMPLES_TABLE), max_rows, seed=seed)
    split = ev.TimeSplit(
        LESSON_04_SPLIT["train_end"], pd.Timedelta(days=LESSON_04_SPLIT["label_gap_days"])
    )
    train, _ = split.apply(examples)
    validation_start = split.train_end - pd.Timedelta(days=LESSON_04_SPLIT["validation_days"])
    fit = train[train[training.TIME] < validation_start]
    validation = train[train[training.TIME] >= validation_start]
    model_name = LESSON_04_MODELS[alias]
    model, threshold, inputs = fit_recipe(model_name, fit, validation)
    logged = tracking.log_training_run(
        model,
        model_name,
        fit[inputs],
        fit[ev.LABEL],
        table=training.EXAMPLES_TABLE,
        table_version=examples_version,
        params={"train_end": LESSON_04_SPLIT["train_end"], "built_by": "ensure_alias"},
        metrics={"threshold": threshold},
        spark=spark,
    )
    return register(
        logged.model_uri,
        name,
        alias=alias,
        tags={THRESHOLD_TAG: threshold, MODEL_TAG: model_name},
    )


def ensure_champion(spark, name: str | None = None, **kwargs) -> int:
    """The champion's version, trained and registered first when there is none
    (:func:`ensure_alias`)."""
    return ensure_alias(spark, CHAMPION, name, **kwargs)


def ensure_challenger(spark, name: str | None = None, **kwargs) -> int:
    """The challenger's version, trained and registered first when there is none: lesson
    04's every-feature model (:func:`ensure_alias`)."""
    return ensure_alias(spark, CHALLENGER, name, **kwargs)


# --------------------------------------------------------------------------- checks


def check_same_holdout(champion: HoldoutScores, challenger: HoldoutScores, holdout: Holdout) -> str:
    """Assert that both models were scored on every row of the frozen ``holdout``, in its
    order, with its frozen labels. Returns one line."""
    for scores in (champion, challenger):
        assert isinstance(scores, HoldoutScores), (
            f"got {type(scores).__name__}: build each with registry.score_holdout(...)"
        )
        assert scores.source == holdout.source, (
            f"{scores.model} was scored on {scores.source or 'a frame that is not the holdout'}"
            f", not {holdout.source}: pass the Holdout read by read_holdout (the frozen version)"
            ", not a fresh split or a sample of the examples"
        )
        assert scores.digest == holdout.digest, (
            f"{scores.model}'s {len(scores.keys)} rows or their labels differ from the "
            f"{len(holdout.frame)} rows of {holdout.source}: score all the holdout's rows, "
            "unfiltered and in its order, with its frozen labels"
        )
    return (
        f"both models scored on {holdout.source}: {len(holdout.frame)} rows, "
        f"{int(holdout.frame[ev.LABEL].sum())} frauds, digest {holdout.digest}"
    )


def check_promotion(
    name: str, result: GateResult, challenger_version: int, champion_before: int
) -> str:
    """Assert that the aliases of ``name`` follow ``result``: refused, ``@champion`` still
    points at ``champion_before``; passed, ``@champion`` points at ``challenger_version`` and
    ``@previous`` at ``champion_before``. Returns one line."""
    champion = version_of(name, CHAMPION)
    if not result.passed:
        assert champion == champion_before, (
            f"@champion moved to version {champion} although the gate refused it "
            f"({'; '.join(result.reasons)}): promote only when result.passed (a lower point "
            "estimate of the cost is not enough), i.e. through registry.promote"
        )
        return f"{name}: refused, @champion stays version {champion}"
    assert champion == challenger_version, (
        f"@champion points at version {champion}, not {challenger_version}, although the gate "
        "passed: promote it (registry.promote(name, version, result))"
    )
    previous = version_of(name, PREVIOUS)
    assert previous == champion_before, (
        f"@previous is {previous}, not the replaced champion {champion_before}: record it "
        "before moving @champion, or there is nothing to roll back to"
    )
    return f"{name}: version {challenger_version} is @champion, version {previous} is @previous"


def check_serving_uri(uri: str, name: str) -> str:
    """Assert that ``uri`` loads whatever ``@champion`` of ``name`` points at, through the
    alias (never a version number, a run or a stage). Returns one line."""
    want = f"models:/{name}@{CHAMPION}"
    assert isinstance(uri, str) and uri.startswith("models:/"), (
        f"{uri!r} is not a registry URI: serve {want!r}"
    )
    rest = uri.removeprefix("models:/")
    if rest.startswith(f"{name}/"):
        raise AssertionError(
            f"{uri!r} pins a version (or a stage, deprecated): a promotion or a rollback would "
            f"not reach the consumer; serve the alias, {want!r}"
        )
    assert uri == want, f"{uri!r} is not the champion's alias URI: serve {want!r}"
    return f"serving {uri}: follows every promotion and rollback"


def check_rollback(name: str, uri: str, version: int, X: pd.DataFrame) -> str:
    """Assert that ``@champion`` of ``name`` points back at ``version`` and that the model
    loaded from the serving ``uri`` scores ``X`` exactly as that version does. Returns one
    line."""
    from lakehouse.ml import tracking

    champion = version_of(name, CHAMPION)
    assert champion == version, (
        f"@champion points at version {champion}, not {version}: roll back by moving the "
        f"alias to @{PREVIOUS}'s version (registry.rollback), not by registering a new version"
    )
    check_serving_uri(uri, name)
    served = tracking.scores(tracking.load_model(uri), X)
    pinned = tracking.scores(tracking.load_model(f"models:/{name}/{int(version)}"), X)
    assert np.array_equal(served, pinned), (
        f"{uri} does not score like version {version}: load the model again after the rollback"
    )
    return f"{uri} is version {version} again: {len(X)} rows scored identically"


__all__ = [
    "AMOUNT_BAND",
    "CHALLENGER",
    "CHAMPION",
    "GATE_TAG",
    "HOLDOUT_TABLE",
    "HOLDOUT_TAG",
    "LESSON_04_MODELS",
    "LESSON_04_SPLIT",
    "PREVIOUS",
    "REGISTERED_MODEL",
    "REPLACED_TAG",
    "ROLLED_BACK_TAG",
    "SLICE_COLUMNS",
    "LESSON_04_MODELS",
    "LESSON_04_SPLIT",
    "THRESHOLD_TAG",
    "Check",
    "GatePolicy",
    "GateResult",
    "Holdout",
    "HoldoutScores",
    "Interval",
    "PromotionRefused",
    "aliases",
    "amount_band",
    "bootstrap_totals",
    "check_promotion",
    "check_same_holdout",
    "check_rollback",
    "check_serving_uri",
    "compare",
    "delete_model",
    "ensure_alias",
    "ensure_challenger",
    "ensure_champion",
    "freeze_holdout",
    "gate",
    "holdout_digest",
    "load",
    "measure_latency",
    "model_uri",
    "paired_bootstrap",
    "promote",
    "read_holdout",
    "register",
    "rollback",
    "score_holdout",
    "set_alias",
    "signature_mismatches",
    "signature_of",
    "starter_model",
    "slice_costs",
    "threshold_of",
    "version_of",
    "version_tags",
]
