"""MLflow on the course's local store: one SQLite store per catalog, runs that record their
parameters, metrics, input Delta table and version, and models that load back and score
exactly as they did when logged (every log -> load round trip, for each kind of model the
lessons train)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lakehouse.config import settings
from lakehouse.ml import tracking

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 400
    X = pd.DataFrame(
        {
            "log_amount_usd": rng.normal(3.5, 1.0, n),
            "new_country": (rng.random(n) < 0.1).astype("float64"),
            "channel": rng.choice(["pos", "online", "atm"], n),
        }
    )
    y = ((X["log_amount_usd"] + 2 * X["new_country"] + rng.normal(0, 1, n)) > 5).astype(int)
    return X, y.to_numpy()


def pipeline_of(estimator) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["log_amount_usd", "new_country"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    return Pipeline([("features", pre), ("model", estimator)])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tracking.Store:
    lake = tmp_path_factory.mktemp("lake")
    store = tracking.store_for(settings=settings(lake=lake, catalog="ci_tracking"))
    tracking.configure(store=store)
    return store


def test_the_local_store_is_sqlite_per_catalog_and_databricks_uses_the_workspace(tmp_path):
    one = tracking.store_for(settings=settings(lake=tmp_path, catalog="one"))
    two = tracking.store_for(settings=settings(lake=tmp_path, catalog="two"))
    assert one.tracking_uri == f"sqlite:///{tmp_path.resolve()}/one/_mlflow/mlflow.db"
    assert one.tracking_uri.startswith("sqlite:////")  # absolute: MLflow refuses a file store
    assert one.registry_uri == one.tracking_uri
    assert one.artifact_location == (tmp_path.resolve() / "one/_mlflow/artifacts").as_uri()
    assert two.tracking_uri != one.tracking_uri
    databricks = tracking.store_for(engine="databricks")
    assert (databricks.tracking_uri, databricks.registry_uri) == ("databricks", "databricks-uc")
    assert databricks.artifact_location is None


def test_configure_creates_the_store_and_reuses_the_experiment(store):
    import mlflow

    first = tracking.configure(store=store)
    assert tracking.configure(store=store) == first
    assert mlflow.get_tracking_uri() == store.tracking_uri
    assert mlflow.get_registry_uri() == store.registry_uri
    experiment = mlflow.get_experiment(first)
    assert experiment.name == tracking.EXPERIMENT
    assert experiment.artifact_location == store.artifact_location
    assert (tracking.Path(store.tracking_uri.removeprefix("sqlite:///"))).is_file()


def test_full_table_name_is_three_part():
    assert tracking.full_table_name(None, "ml.fraud_training_set") == (
        "spark_catalog.ml.fraud_training_set"
    )
    assert tracking.full_table_name(None, "main.ml.x") == "main.ml.x"


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(class_weight="balanced", max_iter=1_000),
        RandomForestClassifier(
            n_estimators=20, max_depth=4, class_weight="balanced_subsample", random_state=0
        ),
        HistGradientBoostingClassifier(max_iter=20, max_depth=3, class_weight="balanced"),
    ],
    ids=["logistic_regression", "random_forest", "hist_gradient_boosting"],
)
def test_every_model_logs_and_loads_back_scoring_identically(store, frame, estimator):
    X, y = frame
    model = pipeline_of(estimator).fit(X, y)
    logged = tracking.log_training_run(
        model,
        type(estimator).__name__,
        X,
        y,
        table="ml.fraud_training_set",
        table_version=0,
        params={"train_end": "2026-06-15"},
        metrics={"pr_auc": 0.5},
    )
    assert logged.model_uri.startswith("models:/")
    assert "scores 400 rows identically" in tracking.check_round_trip(model, logged.model_uri, X)
    loaded = tracking.load_model(logged.model_uri)
    assert type(loaded.named_steps["model"]) is type(estimator)


def test_a_run_records_params_metrics_and_the_delta_table_with_its_version(store, frame):
    X, y = frame
    model = pipeline_of(LogisticRegression(max_iter=1_000)).fit(X, y)
    logged = tracking.log_training_run(
        model,
        "recorded",
        X,
        y,
        table="ml.fraud_training_set",
        table_version=3,
        params={"gap": "7 days"},
        metrics={"pr_auc": 0.25, "expected_cost_usd": 1234.5},
        tags={"lesson": "05_ml/02"},
    )
    summary = tracking.run_summary(logged.run_id)
    assert summary["params"]["gap"] == "7 days"
    assert summary["params"]["model.model__max_iter"] == "1000"
    assert summary["metrics"] == {"pr_auc": 0.25, "expected_cost_usd": 1234.5}
    assert summary["tags"][tracking.TABLE_TAG] == "spark_catalog.ml.fraud_training_set"
    assert summary["tags"][tracking.VERSION_TAG] == "3"
    assert summary["tags"]["lesson"] == "05_ml/02"
    (dataset,) = summary["datasets"]
    assert dataset["name"] == "spark_catalog.ml.fraud_training_set@v3"
    assert json.loads(dataset["source"]) == {
        "delta_table_name": "spark_catalog.ml.fraud_training_set",
        "delta_table_version": 3,
    }


def test_version_zero_is_kept_in_the_tag(store, frame):
    # mlflow's DeltaDatasetSource drops a version of 0 from its record; the tag keeps it
    X, y = frame
    model = pipeline_of(LogisticRegression(max_iter=1_000)).fit(X, y)
    logged = tracking.log_training_run(model, "v0", X, y, table="ml.t", table_version=0)
    summary = tracking.run_summary(logged.run_id)
    assert summary["tags"][tracking.VERSION_TAG] == "0"
    assert summary["datasets"][0]["name"] == "spark_catalog.ml.t@v0"


def test_a_model_changed_after_logging_is_caught(store, frame):
    X, y = frame
    model = pipeline_of(LogisticRegression(max_iter=1_000)).fit(X, y)
    logged = tracking.log_training_run(model, "changed", X, y, table="ml.t", table_version=0)
    model.fit(X.iloc[:200], y[:200])  # refit after logging: the registry holds another model
    with pytest.raises(AssertionError, match="log the fitted model itself"):
        tracking.check_round_trip(model, logged.model_uri, X)


def test_only_classifiers_with_probabilities_are_logged(store, frame):
    X, y = frame
    with pytest.raises(ValueError, match="no predict_proba"):
        tracking.log_training_run(
            StandardScaler().fit(X[["log_amount_usd"]]), "x", X, y, table="ml.t", table_version=0
        )


def test_requirements_pin_the_installed_versions():
    from importlib import metadata

    assert f"scikit-learn=={metadata.version('scikit-learn')}" in tracking.requirements()
    assert all("==" in r for r in tracking.requirements())
