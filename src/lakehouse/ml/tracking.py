"""MLflow for the course: a local tracking store and model registry per catalog (SQLite in the
lake, artifacts beside it; no server), or the workspace's on Databricks; and one helper that
logs a training run with everything needed to trust it later: parameters, metrics, the input
Delta table and its version, the model with its signature and an input example.

Example::

    from lakehouse.ml import tracking

    tracking.configure(spark)                       # sqlite:////<lake>/<catalog>/_mlflow/mlflow.db
    logged = tracking.log_training_run(model, "logistic_regression", X_train, y_train,
                                       table="ml.fraud_training_set", table_version=0,
                                       params={...}, metrics={...}, spark=spark)
    tracking.check_round_trip(model, logged.model_uri, X_test)
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

EXPERIMENT = "fraud_detection"
# On Databricks an experiment is a workspace path.
DATABRICKS_EXPERIMENT_FOLDER = "/Shared/lakehouse_course"
MODEL_NAME = "model"  # the logged model's name inside its run
# Tags a run carries beside mlflow.data's dataset record: the table and the exact Delta version
# the model learned from (mlflow's DeltaDatasetSource leaves version 0 out of its record).
TABLE_TAG = "lakehouse.input_table"
VERSION_TAG = "lakehouse.input_table_version"
# scikit-learn models are logged in skops format (no pickle: loading runs no code). skops refuses
# types it cannot vet; the tree ensembles' node arrays are such a type. Trusting them is safe for
# models this course trains and logs itself, and for no file of unknown origin.
TRUSTED_TYPES = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
# What a logged model needs to load elsewhere, pinned to the versions in use. Listing them
# saves MLflow from inferring them (a subprocess that loads the model: seconds per model).
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")
# What the model's pyfunc flavor calls: a served or batch-scored fraud model answers with the
# probability of each class (``[[p_legit, p_fraud], ...]``); the decision is the threshold's.
PYFUNC_PREDICT_FN = "predict_proba"


@dataclass(frozen=True)
class Store:
    """Where runs and models go: MLflow's tracking and registry URIs, and the artifact folder
    of new experiments (None on Databricks, where the workspace decides)."""

    tracking_uri: str
    registry_uri: str
    artifact_location: str | None


def store_for(spark=None, *, settings=None, engine: str | None = None) -> Store:
    """The store of the catalog in force: ``sqlite:////<lake>/<catalog>/_mlflow/mlflow.db`` with
    artifacts in ``<lake>/<catalog>/_mlflow/artifacts`` (one per catalog, so test runs never
    share one), or ``databricks`` / ``databricks-uc`` on the Databricks engine."""
    from lakehouse.config import settings as current_settings

    if engine is None and spark is not None:
        from lakehouse import engine_of

        engine = engine_of(spark)
    if engine == "databricks":
        return Store("databricks", "databricks-uc", None)
    if settings is None and spark is not None:
        from lakehouse.session import settings_of

        settings = settings_of(spark)
    settings = settings or current_settings()
    folder = Path(settings.catalog_path).resolve() / "_mlflow"
    # MLflow 3.13+ refuses a file store: a SQLite database (four slashes: an absolute path).
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return Store(uri, uri, (folder / "artifacts").as_uri())


class _LocalEnvNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return 'env_manager="local"' not in record.getMessage()


def configure(spark=None, *, experiment: str = EXPERIMENT, store: Store | None = None) -> str:
    """Point MLflow at the store (:func:`store_for`) and make ``experiment`` the active one,
    created with its artifacts in the store's folder. Returns the experiment id."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # a progress bar per model download (spark_udf, load_model): noise in a lesson
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # creating the SQLite store logs each schema migration: noise in a lesson
    for name in ("mlflow.store.db.utils", "alembic", "mlflow.models.flavor_backend_registry"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # spark_udf warns that env_manager="local" does not rebuild the training environment: the
    # course pins one environment, and MODEL_REQUIREMENTS are its versions
    pyfunc_logger = logging.getLogger("mlflow.pyfunc")
    if not any(isinstance(f, _LocalEnvNotice) for f in pyfunc_logger.filters):
        pyfunc_logger.addFilter(_LocalEnvNotice())
    store = store or store_for(spark)
    if store.artifact_location is not None:
        Path(store.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.registry_uri)
    if store.tracking_uri == "databricks":
        experiment = f"{DATABRICKS_EXPERIMENT_FOLDER}/{experiment}"
    found = mlflow.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id
        if found is not None
        else mlflow.create_experiment(experiment, artifact_location=store.artifact_location)
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def requirements() -> list[str]:
    """:data:`MODEL_REQUIREMENTS` pinned to the installed versions."""
    return [f"{name}=={metadata.version(name)}" for name in MODEL_REQUIREMENTS]


def full_table_name(spark, table: str) -> str:
    """``catalog.schema.table``: a two-part name gets the session's current catalog
    (``spark_catalog`` locally, the Unity Catalog catalog on Databricks; ``spark_catalog``
    without a session). MLflow looks a table of any other catalog up in Unity Catalog."""
    if table.count(".") >= 2:
        return table
    catalog = spark.catalog.currentCatalog() if spark is not None else "spark_catalog"
    return f"{catalog}.{table}"


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    model_uri: str


def scores(model, X: pd.DataFrame) -> np.ndarray:
    """The model's fraud probability per row (``predict_proba``'s second column)."""
    return np.asarray(model.predict_proba(X))[:, 1]


def log_training_run(
    model,
    run_name: str,
    X_train: pd.DataFrame,
    y_train,
    *,
    table: str,
    table_version: int,
    params: dict | None = None,
    metrics: dict | None = None,
    spark=None,
    tags: dict | None = None,
    registered_model_name: str | None = None,
) -> LoggedModel:
    """One MLflow run for a fitted scikit-learn ``model``: ``params`` (plus the estimator's own),
    ``metrics``, the training frame as an ``mlflow.data`` dataset whose source is the Delta
    ``table`` at ``table_version`` (also in the tags :data:`TABLE_TAG` and
    :data:`VERSION_TAG`), and the model (skops format) with a signature inferred from
    ``X_train`` and its probabilities and five rows as input example. Returns the run id and
    the model's URI (``models:/<model id>``).

    The model's generic ``pyfunc`` form predicts with ``predict_proba`` (:data:`PYFUNC_PREDICT_FN`):
    whatever loads it through MLflow -- ``mlflow.pyfunc.spark_udf`` in a batch job, a serving
    endpoint -- gets the probability of each class, not a class decided at 0.5."""
    import mlflow
    import mlflow.sklearn
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.models import infer_signature

    if not hasattr(model, "predict_proba"):
        raise ValueError(f"{type(model).__name__} has no predict_proba: log a fitted classifier")
    name = full_table_name(spark, table)
    training = X_train.assign(label=np.asarray(y_train))
    with warnings.catch_warnings():
        # MLflow's hint about integer columns and missing values: the label has none
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        dataset = mlflow.data.from_pandas(
            training,
            source=DeltaDatasetSource(
                delta_table_name=name, delta_table_version=int(table_version)
            ),
            targets="label",
            name=f"{name}@v{int(table_version)}",
        )
    estimator_params = {
        f"model.{k}": v
        for k, v in model.get_params(deep=True).items()
        if isinstance(v, str | int | float | bool) or v is None
    }
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({TABLE_TAG: name, VERSION_TAG: str(int(table_version)), **(tags or {})})
        mlflow.log_params({**estimator_params, **(params or {})})
        mlflow.log_input(dataset, context="training")
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        info = mlflow.sklearn.log_model(
            model,
            name=MODEL_NAME,
            signature=infer_signature(X_train, model.predict_proba(X_train)),
            # what pyfunc (a serving endpoint, spark_udf) returns: the probabilities, not the
            # class at 0.5, which ignores the threshold chosen for the model
            pyfunc_predict_fn=PYFUNC_PREDICT_FN,
            input_example=X_train.head(5),
            pip_requirements=requirements(),
            skops_trusted_types=list(TRUSTED_TYPES),
            registered_model_name=registered_model_name,
        )
    return LoggedModel(run.info.run_id, info.model_uri)


def load_model(model_uri: str):
    """The scikit-learn model logged at ``model_uri`` (``models:/...`` or ``runs:/...``)."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(model_uri)


def check_round_trip(model, model_uri: str, X: pd.DataFrame) -> str:
    """Assert that the model logged at ``model_uri`` loads back and gives exactly the
    probabilities ``model`` gives on ``X``, through scikit-learn and through MLflow's generic
    ``pyfunc`` interface (what a batch job or a serving endpoint calls). Returns one line."""
    import mlflow.pyfunc

    loaded = load_model(model_uri)
    want, got = scores(model, X), scores(loaded, X)
    assert np.array_equal(want, got), (
        f"the model at {model_uri} scores {int((want != got).sum())} of {len(X)} rows "
        "differently: log the fitted model itself, after fit and before any change"
    )
    served = np.asarray(mlflow.pyfunc.load_model(model_uri).predict(X))
    assert served.ndim == 2 and np.array_equal(served[:, 1], want), (
        f"the pyfunc model at {model_uri} does not return the probabilities (got shape "
        f"{served.shape}): log it with pyfunc_predict_fn={PYFUNC_PREDICT_FN!r} and the "
        "signature of the training frame (infer_signature(X_train, ...))"
    )
    return f"{model_uri} loads back and scores {len(X)} rows identically"


def run_summary(run_id: str) -> dict:
    """What a run recorded: params, metrics, tags and its input datasets (name and source)."""
    import mlflow

    run = mlflow.get_run(run_id)
    return {
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        "datasets": [
            {"name": d.dataset.name, "source": d.dataset.source, "digest": d.dataset.digest}
            for d in run.inputs.dataset_inputs
        ],
    }


__all__ = [
    "EXPERIMENT",
    "MODEL_REQUIREMENTS",
    "PYFUNC_PREDICT_FN",
    "TABLE_TAG",
    "TRUSTED_TYPES",
    "VERSION_TAG",
    "LoggedModel",
    "Store",
    "check_round_trip",
    "configure",
    "full_table_name",
    "load_model",
    "log_training_run",
    "requirements",
    "run_summary",
    "scores",
    "store_for",
]
