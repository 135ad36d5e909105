"""Batch and streaming scoring: the features of a payment as training computed them, the
batch scores of spark_udf stamped and merged (a rerun adds nothing, a new version adds its
rows), a stream whose micro-batches follow a promotion and log each payment once, the checks
of the lesson against their plausible wrong answers (the sidecar catalogue), and a kill -9 of
the scoring query's process mid-stream that proves no payment is scored twice or missed."""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from lakehouse.config import settings
from lakehouse.ml import registry, scoring, tracking, training

pytest.importorskip("mlflow")

ROOT = Path(__file__).resolve().parents[1]
MISTAKES = ROOT / "solutions" / "05_ml" / "06_batch_and_streaming_scoring.mistakes.json"
NAME = "fraud_scoring_ci"
INPUTS = {1: ["channel"], 2: ["log_amount_usd", "channel"]}
T0 = datetime(2026, 6, 20, 9, 0)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "ml_scoring_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def payments_frame(n: int, start: int = 0, seed: int = 5) -> pd.DataFrame:
    """Payments with the model inputs of the test models and the keys scoring carries."""
    rng = np.random.default_rng(seed + start)
    ids = range(start, start + n)
    return pd.DataFrame(
        {
            training.KEY: [f"T{i:05d}" for i in ids],
            "customer_id": [f"C{i % 7:03d}" for i in ids],
            training.ARRIVAL: [T0 + timedelta(minutes=i) for i in ids],
            "log_amount_usd": rng.normal(4.0, 1.2, n),
            "channel": rng.choice(["online", "pos", "atm"], n),
        }
    )


@pytest.fixture(scope="module")
def store(spark):
    store = tracking.store_for(spark)
    tracking.configure(store=store)
    return store


def fitted(columns: list[str], frame: pd.DataFrame):
    y = ((frame["log_amount_usd"] + (frame["channel"] == "online")) > 4.8).astype(int)
    return _pipeline([c for c in columns if c != "channel"]).fit(frame[columns], y)


def _pipeline(numeric):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(numeric)),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    return Pipeline([("features", pre), ("model", LogisticRegression())])


@pytest.fixture(scope="module")
def registered(store):
    """Two versions: 1 reads the channel, 2 the amount too; @champion 1, @challenger 2."""
    registry.delete_model(NAME)
    train = payments_frame(300, start=10_000)
    models = {}
    for version, columns in INPUTS.items():
        model = fitted(columns, train)
        logged = tracking.log_training_run(
            model,
            f"v{version}",
            train[columns],
            np.zeros(len(train)),
            table="ml.t",
            table_version=0,
        )
        assert (
            registry.register(
                logged.model_uri, NAME, tags={registry.THRESHOLD_TAG: 0.4 + 0.1 * version}
            )
            == version
        )
        models[version] = model
    registry.set_alias(NAME, registry.CHAMPION, 1)
    registry.set_alias(NAME, registry.CHALLENGER, 2)
    return models


@pytest.fixture
def champion_is_1(registered):
    registry.set_alias(NAME, registry.CHAMPION, 1)
    yield
    registry.set_alias(NAME, registry.CHAMPION, 1)


def features_df(spark, n: int = 40, start: int = 0):
    return spark.createDataFrame(payments_frame(n, start))


# --------------------------------------------------------------------------- features


def test_payment_features_are_the_training_columns_as_of_arrival(spark):
    at = datetime(2026, 6, 10, 12, 0)
    payments = spark.createDataFrame(
        [("T1", "C1", at - timedelta(minutes=5), at, "visa", "London")],
        "transaction_id string, customer_id string, event_ts timestamp, ingest_ts timestamp, "
        "card_network string, city string",
    )
    payment_features = spark.createDataFrame(
        [("T1", 99.0, "online", "electronics", 1, 2, 3, 4.0, True)],
        "transaction_id string, amount_usd double, channel string, merchant_category string, "
        "payments_1h long, payments_24h long, payments_7d long, amount_to_mean_30d double, "
        "is_new_country boolean",
    )
    daily = spark.createDataFrame(
        [
            ("C1", datetime(2026, 6, 10), 2),  # the end of June 9: known at arrival
            ("C1", datetime(2026, 6, 11), 5),  # the end of June 10: after the arrival
            ("C2", datetime(2026, 6, 1), 9),
        ],
        "customer_id string, feature_ts timestamp, fraud_notices_to_date long",
    )
    row = scoring.payment_features(payments, payment_features, daily).first().asDict()
    assert training.LABEL_TIME not in row
    assert set(training.FEATURE_COLUMNS) <= set(row)
    assert row["fraud_notices_to_date"] == 2.0, "a daily row from after the arrival leaked"
    assert row[training.ARRIVAL] == at
    assert row["log_amount_to_mean_30d"] == pytest.approx(np.log(4.0))
    assert row["log_amount_usd"] == pytest.approx(np.log1p(99.0))


# --------------------------------------------------------------------------- resolving


def test_a_version_whose_pyfunc_gives_classes_is_refused(store, registered):
    import mlflow
    import mlflow.sklearn

    name = "fraud_scoring_classes_ci"
    registry.delete_model(name)
    frame = payments_frame(50)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            registered[1],
            name="model",
            signature=mlflow.models.infer_signature(frame[["channel"]], np.zeros(50)),
        )
    registry.register(info.model_uri, name, alias="champion", tags={registry.THRESHOLD_TAG: 0.5})
    with pytest.raises(ValueError, match="gives classes, not scores.*predict_proba"):
        scoring.resolve(name, "champion")
    with pytest.raises(ValueError, match="has no @nobody.*ensure_champion"):
        scoring.resolve(NAME, "nobody")


def test_the_resolver_loads_each_version_once_and_ships_no_model(champion_is_1, store):
    resolver = scoring.ChampionResolver(NAME, registry.CHAMPION, store)
    assert resolver()[0].version == 1 and resolver()[0].version == 1
    assert resolver.loads == 1
    registry.set_alias(NAME, registry.CHAMPION, 2)
    ref, model = resolver()
    assert (ref.version, ref.alias, ref.threshold) == (2, "champion", pytest.approx(0.6))
    assert ref.inputs == tuple(INPUTS[2]) and hasattr(model, "predict_proba")
    assert resolver.loads == 2
    shipped = pickle.loads(pickle.dumps(resolver))
    assert shipped._models == {} and shipped.store == store


def test_the_writer_id_is_stable_per_checkpoint_and_new_after_a_reset(tmp_path):
    checkpoint = str(tmp_path / "checkpoint")
    first = scoring.writer_id("ml.inference_log", checkpoint)
    assert scoring.writer_id("ml.inference_log", checkpoint) == first
    import shutil

    shutil.rmtree(checkpoint)
    assert scoring.writer_id("ml.inference_log", checkpoint) != first


def examples_frame(n: int = 600, seed: int = 3) -> pd.DataFrame:
    """Lesson 02's example columns over June, with fraud notices (label times) for a few."""
    rng = np.random.default_rng(seed)
    event = pd.Timestamp("2026-06-01") + pd.to_timedelta(rng.uniform(0, 29 * 86400, n), "s")
    channel = rng.choice(["online", "pos", "atm"], n)
    fraud = (channel == "online") & (rng.random(n) < 0.25) | (rng.random(n) < 0.02)
    frame = pd.DataFrame(
        {
            training.KEY: [f"T{i:05d}" for i in range(n)],
            "customer_id": [f"C{i % 40:03d}" for i in range(n)],
            training.TIME: event,
            training.ARRIVAL: event + pd.Timedelta(seconds=5),
            training.AMOUNT: rng.lognormal(4, 1, n),
            "customer_mean_usd": rng.lognormal(4, 0.5, n),
            **{c: rng.normal(0, 1, n) for c in training.NUMERIC_FEATURES},
            "channel": channel,
            "merchant_category": rng.choice(["grocery", "travel", "electronics"], n),
            "card_network": rng.choice(["visa", "mastercard"], n),
            training.LABEL_TIME: pd.Series(event + pd.Timedelta(days=2)).where(fraud),
        }
    )
    return frame[list(training.EXAMPLE_COLUMNS)]


def test_ensure_champion_trains_registers_and_tags_a_champion_only_when_missing(spark, store):
    from lakehouse.course import drop_table

    drop_table(spark, training.EXAMPLES_TABLE)
    spark.sql("CREATE SCHEMA IF NOT EXISTS ml")
    spark.createDataFrame(examples_frame()).write.format("delta").saveAsTable(
        training.EXAMPLES_TABLE
    )
    name = registry.registered_name(spark)
    registry.delete_model(name)
    version = registry.ensure_champion(spark)
    assert registry.aliases(name) == {registry.CHAMPION: version}
    tags = registry.version_tags(name, version)
    assert tags["lakehouse.model"] == "categories_only"
    assert 0 < float(tags[registry.THRESHOLD_TAG]) < 1
    ref = scoring.resolve(name, registry.CHAMPION)  # probabilities, the categories as inputs
    assert ref.inputs == training.CATEGORICAL_FEATURES
    assert registry.ensure_champion(spark) == version  # there is one: nothing trained
    assert len(registry._client().search_model_versions(f"name='{name}'")) == 1
    with pytest.raises(ValueError, match="ensure_alias builds champion or challenger"):
        registry.ensure_alias(spark, registry.PREVIOUS)
    drop_table(spark, training.EXAMPLES_TABLE)


# --------------------------------------------------------------------------- batch


@pytest.fixture(scope="module")
def scored_v1(spark, registered):
    """40 payments scored once through spark_udf by version 1, as @champion."""
    registry.set_alias(NAME, registry.CHAMPION, 1)
    ref = scoring.resolve(NAME, registry.CHAMPION)
    return scoring.batch_scores(features_df(spark), ref).localCheckpoint()


def test_batch_scores_are_the_models_probabilities_stamped(scored_v1, registered):
    scores = scored_v1.orderBy("payment_id").toPandas()
    want = registered[1].predict_proba(payments_frame(40)[INPUTS[1]])[:, 1]
    assert np.allclose(scores["score"], want)
    assert (scores["flagged"] == (scores["score"] >= 0.5)).all()
    assert set(scores["model_version"]) == {1} and set(scores["model_alias"]) == {"champion"}
    assert (scores["threshold"] == 0.5).all() and scores["scored_at"].notna().all()
    with pytest.raises(ValueError, match="lacks \\['channel'\\]"):
        scoring.batch_scores(scored_v1, scoring.resolve(NAME, registry.CHAMPION))


def test_a_rerun_adds_nothing_and_a_new_version_adds_its_rows(spark, scored_v1, champion_is_1):
    from lakehouse.course import drop_table

    table = "gold.fraud_scores_ci"
    drop_table(spark, table)
    assert scoring.write_scores(spark, scored_v1, table) == 40
    first_scored = spark.table(table).agg(F.max("scored_at")).first()[0]
    assert scoring.write_scores(spark, scored_v1, table) == 0
    assert spark.table(table).agg(F.count("*"), F.max("scored_at")).first() == (40, first_scored)
    assert "40 payments scored by fraud_scoring_ci v1 (@champion)" in scoring.check_scores(
        spark.table(table), NAME, registry.CHAMPION, 40
    )
    registry.set_alias(NAME, registry.CHAMPION, 2)  # a new champion adds its own rows
    by_v2 = scored_v1.withColumns({"model_version": F.lit(2), "threshold": F.lit(0.6)})
    assert (
        scoring.write_scores(spark, by_v2.withColumn("flagged", F.col("score") >= 0.6), table) == 40
    )
    versions = dict(spark.table(table).groupBy("model_version").count().collect())
    assert versions == {1: 40, 2: 40}
    assert "v2 (@champion)" in scoring.check_scores(spark.table(table), NAME, "champion", 40)


# --------------------------------------------------------------------------- the wrong answers


def wrong_batch_answers(good) -> dict:
    """The lesson's batch task, answered wrongly: what each leaves in gold.fraud_scores."""
    return {
        "rerun appends instead of merging": good.unionByName(good),
        "URI by alias, stamped with the latest version": good.withColumn("model_version", F.lit(2)),
        "stamped with the alias but not the version": good.withColumn(
            "model_version", F.lit(None).cast("int")
        ),
        "classes instead of probabilities": good.withColumn(
            "score", (F.col("score") >= 0.5).cast("double")
        ),
    }


def test_check_scores_names_the_fix_for_each_wrong_answer(scored_v1, champion_is_1):
    assert "40 payments" in scoring.check_scores(scored_v1, NAME, "champion", 40)
    messages = {}
    for name, df in wrong_batch_answers(scored_v1).items():
        with pytest.raises(AssertionError) as caught:
            scoring.check_scores(df, NAME, "champion", 40)
        messages[name] = str(caught.value)
    assert "more than once" in messages["rerun appends instead of merging"]
    assert "points at version 1" in messages["URI by alias, stamped with the latest version"]
    assert "no model_version" in messages["stamped with the alias but not the version"]
    assert "classes, not probabilities" in messages["classes instead of probabilities"]


# --------------------------------------------------------------------------- stream


def identity(df):
    return df


@pytest.fixture
def stream(spark, store, champion_is_1, tmp_path):
    """A source table of payments with their features, an empty log, a checkpoint."""
    from lakehouse.course import drop_table

    source, log = "ml.scoring_source_ci", "ml.inference_log_ci"
    for table in (source, log):
        drop_table(spark, table)
    features_df(spark, 1).limit(0).write.format("delta").saveAsTable(source)
    scoring.create_inference_log(spark, log)
    return {"source": source, "log": log, "checkpoint": str(tmp_path / "checkpoint")}


def append(spark, table, n, start):
    features_df(spark, n, start).write.format("delta").mode("append").saveAsTable(table)


def run_stream(spark, stream, writer_of, store):
    """Two arrivals: 12 payments before a promotion of version 2, 8 after; one query."""
    app_id = scoring.writer_id(stream["log"], stream["checkpoint"])
    writer = writer_of(scoring.ChampionResolver(NAME, "champion", store), app_id, stream)
    append(spark, stream["source"], 12, 0)
    query = scoring.start_scoring(
        spark,
        source=stream["source"],
        table=stream["log"],
        checkpoint_location=stream["checkpoint"],
        trigger={"processingTime": "1 second"},
        writer=writer,
    )
    try:
        query.processAllAvailable()
        registry.set_alias(NAME, registry.CHAMPION, 2)
        append(spark, stream["source"], 8, 12)
        query.processAllAvailable()
    finally:
        query.stop()
    return writer


def right_writer(resolver, app_id, stream):
    return scoring.inference_writer(resolver, app_id, table=stream["log"], features=identity)


def test_the_stream_follows_a_promotion_and_logs_each_payment_once(spark, stream, store):
    writer = run_stream(spark, stream, right_writer, store)
    log = spark.table(stream["log"])
    assert scoring.versions_by_batch(log) == {0: [1], 1: [2]}
    assert "[1] by the promoted version" in scoring.check_promotion_followed(
        log, before=1, after=2, first_batch_after=1
    )
    assert "20 payments logged exactly once" in scoring.check_exactly_once(
        log, spark.table(stream["source"])
    )
    row = log.where("request_id = 'T00013'").first()
    assert (row.source, row.role, row.model_alias, row.batch_id) == (
        "stream",
        "served",
        "champion",
        1,
    )
    source_row = spark.table(stream["source"]).where("transaction_id = 'T00013'").first()
    assert json.loads(row.features) == {
        "log_amount_usd": pytest.approx(source_row.log_amount_usd),
        "channel": source_row.channel,
    }
    assert row.flagged == (row.score >= 0.6) and row.latency_ms is None
    assert "nothing written twice" in scoring.check_replay(
        writer, spark, batch_id=1, source=stream["source"], table=stream["log"]
    )


def loaded_once_writer(resolver, app_id, stream):
    """WRONG: the model resolved when the query starts, not at each micro-batch."""
    from lakehouse.streaming import idempotent_writes

    ref, model = resolver()

    def write(batch_df, batch_id):
        rows = scoring.inference_rows(batch_df, ref, model, batch_id=batch_id)
        with idempotent_writes(batch_df.sparkSession, app_id, batch_id):
            scoring.append_once(rows, stream["log"], app_id, batch_id)

    return write


def plain_append_writer(resolver, app_id, stream):
    """WRONG: an append without the transaction ids: a replayed batch is appended again."""

    def write(batch_df, batch_id):
        ref, model = resolver()
        rows = scoring.inference_rows(batch_df, ref, model, batch_id=batch_id)
        rows.write.format("delta").mode("append").saveAsTable(stream["log"])

    return write


def test_a_model_loaded_once_at_start_misses_the_promotion(spark, stream, store):
    run_stream(spark, stream, loaded_once_writer, store)
    with pytest.raises(AssertionError, match="loaded the model once"):
        scoring.check_promotion_followed(
            spark.table(stream["log"]), before=1, after=2, first_batch_after=1
        )


def test_an_append_without_transaction_ids_duplicates_a_replayed_batch(spark, stream, store):
    writer = run_stream(spark, stream, plain_append_writer, store)
    with pytest.raises(AssertionError, match="appended 8 rows again.*txnAppId"):
        scoring.check_replay(
            writer, spark, batch_id=1, source=stream["source"], table=stream["log"]
        )
    with pytest.raises(AssertionError, match="8 payments are logged more than once"):
        scoring.check_exactly_once(spark.table(stream["log"]), spark.table(stream["source"]))


# --------------------------------------------------------------------------- the catalogue


def test_the_mistake_catalogue_names_real_cells_and_check_messages():
    """Each catalogued wrong answer replaces a solution cell and names a message that the
    tests above prove its check raises."""
    notebook = json.loads(
        MISTAKES.with_name(MISTAKES.name.replace(".mistakes.json", ".ipynb")).read_text()
    )
    cells = {c["id"]: "".join(c["source"]) for c in notebook["cells"]}
    mistakes = json.loads(MISTAKES.read_text())
    proven = {
        "more than once",
        "points at version",
        "no model_version",
        "classes, not probabilities",
        "loaded the model once",
        "appended",
        "txnAppId",
    }
    per_cell = {}
    for mistake in mistakes:
        assert mistake["task_cell"] in cells, mistake["name"]
        assert "BEGIN SOLUTION" in cells[mistake["task_cell"]], mistake["name"]
        assert mistake["source"].strip() and mistake["source"] != cells[mistake["task_cell"]]
        assert any(m in mistake["caught_by"] or mistake["caught_by"] in m for m in proven), (
            f"{mistake['name']}: no test proves {mistake['caught_by']!r}"
        )
        per_cell[mistake["task_cell"]] = per_cell.get(mistake["task_cell"], 0) + 1
    assert per_cell and all(n >= 2 for n in per_cell.values()), per_cell


# --------------------------------------------------------------------------- kill -9

KILL_CATALOG = "kill_scoring"
KILL_SOURCE, KILL_LOG = "ml.kill_source", "ml.inference_log"
KILL_APPENDS, KILL_ROWS = 5, 8  # five commits of eight payments: five micro-batches
HANG_AFTER = 2  # the first child hangs once batch 2 is committed to the log, not checkpointed


def child_run(phase: str) -> None:
    """The scoring query in a process of its own (``phase``: ``hang`` or ``finish``)."""
    from lakehouse import get_spark

    spark = get_spark("delta-spark", scale="tiny", app_name="scoring-kill-child")
    store = tracking.store_for(spark)
    tracking.configure(spark)
    if not spark.catalog.tableExists(KILL_SOURCE):
        spark.sql("CREATE SCHEMA IF NOT EXISTS ml")
        for i in range(KILL_APPENDS):
            part = spark.createDataFrame(payments_frame(KILL_ROWS, i * KILL_ROWS)).coalesce(1)
            part.write.format("delta").mode("append").saveAsTable(KILL_SOURCE)
    location = scoring.checkpoint(spark, "kill_scoring")
    writer = scoring.inference_writer(
        scoring.ChampionResolver(NAME, registry.CHAMPION, store),
        scoring.writer_id(KILL_LOG, location),
        table=KILL_LOG,
        features=identity,
    )
    flags = Path(os.environ["SCORING_FLAGS"])

    def hang_after_commit(batch_df, batch_id):
        writer(batch_df, batch_id)
        if batch_id == HANG_AFTER:  # committed to the log; the checkpoint's commit comes after
            (flags / f"committed-{batch_id}").touch()
            time.sleep(600)

    trigger = {"processingTime": "0.5 seconds"} if phase == "hang" else {"availableNow": True}
    query = scoring.start_scoring(
        spark,
        source=KILL_SOURCE,
        table=KILL_LOG,
        checkpoint_location=location,
        trigger=trigger,
        source_options={"maxFilesPerTrigger": "1"},
        writer=hang_after_commit if phase == "hang" else writer,
    )
    query.awaitTermination()
    print(json.dumps({"phase": phase, "done": True}), flush=True)


def _log_commits(table: Path) -> list[dict]:
    """Each commit of the log's Delta table that carries an application transaction."""
    found = []
    for path in sorted((table / "_delta_log").glob("*.json")):
        for line in path.read_text().splitlines():
            if '"txn"' in line:
                found.append(json.loads(line)["txn"])
    return found


@pytest.mark.reliability
def test_a_scoring_query_killed_after_a_commit_scores_no_payment_twice(tmp_path, registered, store):
    """kill -9 of the scoring query's process between the log's commit of a micro-batch and the
    checkpoint's, a promotion, a restart: every payment is in the log exactly once, the
    replayed batch kept its first scoring, the later ones use the new champion."""
    import deltalake
    from helpers.processes import errors_of, kill, spawn, wait_for

    started = time.monotonic()
    lake, flags = tmp_path / "lake", tmp_path / "flags"
    flags.mkdir()
    kill_store = tracking.store_for(settings=settings(lake=lake, catalog=KILL_CATALOG))
    tracking.configure(store=kill_store)
    try:
        _register_pair(registered)
        env = {
            **os.environ,
            "LAKEHOUSE_LAKE": str(lake),
            "LAKEHOUSE_CATALOG": KILL_CATALOG,
            "LAKEHOUSE_ENGINE": "delta-spark",
            "SCORING_FLAGS": str(flags),
        }
        env.pop("SPARK_REMOTE", None)
        command = [sys.executable, __file__]
        proc = spawn([*command, "hang"], env, tmp_path, "hang")
        wait_for(lambda: (flags / f"committed-{HANG_AFTER}").exists(), proc, "batch 2", 600)
        checkpoint = lake / KILL_CATALOG / "_checkpoints" / "streaming" / "kill_scoring"
        assert not (checkpoint / "commits" / str(HANG_AFTER)).exists()
        kill(proc)
        registry.set_alias(NAME, registry.CHAMPION, 2)  # promoted while the query is down
        proc = spawn([*command, "finish"], env, tmp_path, "finish")
        proc.wait(timeout=900)
        assert proc.returncode == 0, errors_of(proc)
    finally:
        tracking.configure(store=store)  # the module's store again

    table = lake / KILL_CATALOG / "_warehouse" / "ml.db" / "inference_log"
    log = deltalake.DeltaTable(str(table)).to_pandas(
        columns=["request_id", "model_version", "batch_id"]
    )
    expected = set(payments_frame(KILL_APPENDS * KILL_ROWS)[training.KEY])
    counts = log["request_id"].value_counts()
    assert not (counts > 1).any(), f"scored twice: {sorted(counts[counts > 1].index)}"
    assert set(log["request_id"]) == expected, "payments missing from the log"
    versions = log.groupby("batch_id")["model_version"].unique().map(sorted).to_dict()
    assert versions[HANG_AFTER] == [1], "the replayed batch was written again"
    assert all(v == [2] for b, v in versions.items() if b > HANG_AFTER), versions
    batches = [txn["version"] for txn in _log_commits(table)]
    assert batches == sorted(set(batches)), f"a batch id committed twice: {batches}"
    print(
        f"kill -9 drill: {len(log)} payments in {len(versions)} batches, "
        f"{time.monotonic() - started:.0f} s"
    )


def _register_pair(models) -> None:
    """Versions 1 and 2 of :data:`NAME` in the store in force, @champion 1."""
    train = payments_frame(300, start=10_000)
    for version, columns in INPUTS.items():
        logged = tracking.log_training_run(
            models[version],
            f"v{version}",
            train[columns],
            np.zeros(len(train)),
            table="ml.t",
            table_version=0,
        )
        registry.register(
            logged.model_uri, NAME, tags={registry.THRESHOLD_TAG: 0.4 + 0.1 * version}
        )
    registry.set_alias(NAME, registry.CHAMPION, 1)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    child_run(sys.argv[1])
