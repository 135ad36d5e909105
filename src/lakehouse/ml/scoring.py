"""Scoring payments with the registered fraud model, in batch and as a stream.

Batch: the payments' features (lesson 02's, computed by :func:`payment_features` from lesson
01's tables) go through ``mlflow.pyfunc.spark_udf`` of the version an alias points at, into
``gold.fraud_scores``: one row per (payment, model name, model version), stamped with the name,
the version, the alias it was resolved from and the time; a rerun changes nothing, a new
champion version adds its own rows.

Stream: a query on the payments (``silver.payments`` read as a Delta stream) whose
``foreachBatch`` function resolves ``@champion`` at **each micro-batch** (so a promotion reaches
the running query at its next batch, without a restart), scores the batch with that version
and appends one row per payment to ``ml.inference_log``, with the features it used, as the
Delta transaction (writer id, batch id): a batch replayed after a crash is skipped, so every
payment is logged exactly once.

Example::

    from lakehouse.ml import scoring

    ref = scoring.resolve(name, "champion")                   # name, version, alias, threshold
    scores_df = scoring.batch_scores(spark, features_df, ref)  # spark_udf of models:/name/version
    scoring.write_scores(spark, scores_df)                     # MERGE: rerun-safe
    query = scoring.start_scoring(spark, trigger={"processingTime": "5 seconds"})

Under Spark Connect the ``foreachBatch`` function runs in a Python process that the server
starts: it does not share the client's MLflow settings, so :class:`ChampionResolver` carries
the tracking and registry URIs with it. Where the server cannot reach the registry at all,
:class:`PinnedModel` resolves the alias on the client and ships the loaded model inside the
function (a promotion then takes effect when the query is restarted).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructType,
    TimestampType,
)

import lakehouse.ml as ml
from lakehouse.gold import commented_field as _field
from lakehouse.ml import registry, training
from lakehouse.ml.training import ARRIVAL, KEY, LABEL_TIME

SCORES = "gold.fraud_scores"
INFERENCE_LOG = "ml.inference_log"
PAYMENTS = "silver.payments"
# The lesson's stand-in for silver.payments as payments arrive: silver.payments' rows appended
# in arrival order by replay(). In production the scorer reads silver.payments itself.
ARRIVALS = "ml.payment_arrivals"
STREAM_NAME = "fraud_scoring"  # its checkpoint: <lake>/<catalog>/_checkpoints/streaming/<name>
WRITER_FILE = "_lakehouse_writer_id"  # in the checkpoint folder: see writer_id()

SOURCES = ("stream", "serving", "replay")  # replay: the retraining job's shadow
ROLES = ("served", "shadow")
SCORES_KEY = ("payment_id", "model_name", "model_version")
LOG_KEY = ("request_id", "model_version", "role")

SCORES_SCHEMA = StructType(
    [
        _field("payment_id", StringType(), "The payment (silver.payments.transaction_id)", False),
        _field("customer_id", StringType(), "The payment's customer"),
        _field("event_ts", TimestampType(), "The payment's arrival (ingest_ts): when it is scored"),
        _field("model_name", StringType(), "The registered model", nullable=False),
        _field("model_version", IntegerType(), "The version that scored it", nullable=False),
        _field("model_alias", StringType(), "The alias the version was resolved from"),
        _field("score", DoubleType(), "The fraud probability the version gives", nullable=False),
        _field("threshold", DoubleType(), "The version's decision threshold (its tag)", False),
        _field("flagged", BooleanType(), "score >= threshold", nullable=False),
        _field("scored_at", TimestampType(), "When the batch job scored it", nullable=False),
    ]
)
SCORES_COMMENT = (
    "Batch fraud scores: one row per (payment_id, model_name, model_version), stamped with the "
    "alias the version was resolved from and the scoring time (lakehouse.ml.scoring). A rerun "
    "with the same version changes nothing; a new version adds its rows."
)

INFERENCE_LOG_SCHEMA = StructType(
    [
        _field("request_id", StringType(), "The payment_id on the stream; the router's id (HTTP)"),
        _field("source", StringType(), "'stream', 'serving' or 'replay'", nullable=False),
        _field("payment_id", StringType(), "The payment scored"),
        _field("customer_id", StringType(), "The payment's customer"),
        _field("event_ts", TimestampType(), "The payment's arrival (ingest_ts)"),
        _field("model_name", StringType(), "The registered model", nullable=False),
        _field("model_version", IntegerType(), "The version that scored it", nullable=False),
        _field("model_alias", StringType(), "The alias it was resolved from"),
        _field("role", StringType(), "'served' (its decision counts) or 'shadow'", False),
        _field("features", StringType(), "JSON of the model inputs, as scored"),
        _field("score", DoubleType(), "The fraud probability", nullable=False),
        _field("threshold", DoubleType(), "The version's decision threshold", nullable=False),
        _field("flagged", BooleanType(), "score >= threshold", nullable=False),
        _field("latency_ms", DoubleType(), "Time to answer (serving); null on the stream"),
        _field("batch_id", LongType(), "The stream's micro-batch; null for serving"),
        _field("logged_at", TimestampType(), "When the row was written", nullable=False),
    ]
)
INFERENCE_LOG_COMMENT = (
    "Every scoring of one payment or request by one model version: from the stream (exactly "
    "once per request_id, model_version, role) and from serving. Features as scored, in JSON."
)


# --------------------------------------------------------------------------- tables


def _create(spark: SparkSession, table: str, schema: StructType, comment: str) -> str:
    from lakehouse import DeltaTable

    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    (
        DeltaTable.createIfNotExists(spark)
        .tableName(table)
        .addColumns(schema)
        .comment(comment)
        .execute()
    )
    return table


def create_scores_table(spark: SparkSession, table: str = SCORES) -> str:
    """Create ``table`` (default ``gold.fraud_scores``) with :data:`SCORES_SCHEMA` unless it
    exists. Returns the name."""
    return _create(spark, table, SCORES_SCHEMA, SCORES_COMMENT)


def create_inference_log(spark: SparkSession, table: str = INFERENCE_LOG) -> str:
    """Create ``table`` (default ``ml.inference_log``) with :data:`INFERENCE_LOG_SCHEMA`
    unless it exists. Returns the name."""
    return _create(spark, table, INFERENCE_LOG_SCHEMA, INFERENCE_LOG_COMMENT)


# --------------------------------------------------------------------------- features


def payment_features(
    payments_df: DataFrame, payment_features_df: DataFrame, daily_df: DataFrame
) -> DataFrame:
    """The model inputs of each payment of ``payments_df`` (rows of ``silver.payments``) as
    known at its arrival: lesson 02's :func:`training.examples_from` with no label, so a
    payment is scored on exactly the columns the model learned from -- its row of
    ``ml.payment_features``, the customer's ``ml.customer_daily_features`` **as of** the
    arrival (the point-in-time join), its own context. Columns: ``training.EXAMPLE_COLUMNS``
    without the label time; one row per payment that has its feature row."""
    requests_df = payments_df.select(
        KEY,
        "customer_id",
        F.col("ingest_ts").alias(ARRIVAL),
        F.lit(None).cast("timestamp").alias(LABEL_TIME),
    )
    # only the batch's customers: the as-of join sorts each customer's rows
    daily_df = daily_df.join(requests_df.select("customer_id").distinct(), "customer_id", "semi")
    return training.examples_from(requests_df, payment_features_df, daily_df, payments_df).drop(
        LABEL_TIME
    )


def lake_features(payments_df: DataFrame) -> DataFrame:
    """:func:`payment_features` with lesson 01's tables as they are in the lake: the
    transform a micro-batch of payments goes through."""
    spark = payments_df.sparkSession
    return payment_features(
        payments_df, spark.table(ml.PAYMENT_FEATURES), spark.table(ml.CUSTOMER_DAILY_FEATURES)
    )


# --------------------------------------------------------------------------- resolving a model


@dataclass(frozen=True)
class ModelRef:
    """One registered version, as resolved from an alias at one moment: what scores carry."""

    name: str
    version: int
    alias: str | None
    threshold: float
    inputs: tuple[str, ...]

    @property
    def uri(self) -> str:
        """``models:/<name>/<version>``: the version itself, so what is loaded is what the
        rows are stamped with even if the alias moves meanwhile."""
        return f"models:/{self.name}/{self.version}"


def _threshold(name: str, version: int) -> float:
    tags = registry.version_tags(name, version)
    if registry.THRESHOLD_TAG not in tags:
        raise ValueError(
            f"{name} version {version} has no {registry.THRESHOLD_TAG} tag: register it with "
            "its threshold (tags={registry.THRESHOLD_TAG: threshold})"
        )
    return float(tags[registry.THRESHOLD_TAG])


def model_ref(name: str, version: int, alias: str | None = None) -> ModelRef:
    """The :class:`ModelRef` of ``version`` of ``name``: its threshold tag and the input
    columns of its signature. Raises when the version's generic (pyfunc) form does not give
    probabilities."""
    from mlflow.models import get_model_info

    info = get_model_info(f"models:/{name}/{int(version)}")
    predict_fn = info.flavors.get("python_function", {}).get("predict_fn", "predict")
    if predict_fn != "predict_proba":
        raise ValueError(
            f"{name} version {version}'s pyfunc form calls {predict_fn!r}: it gives classes, "
            "not scores. Log the model with pyfunc_predict_fn='predict_proba' (as "
            "tracking.log_training_run does) and register it again"
        )
    if info.signature is None:
        raise ValueError(f"{name} version {version} has no signature: log it with one")
    inputs = tuple(info.signature.inputs.input_names())
    return ModelRef(name, int(version), alias, _threshold(name, int(version)), inputs)


def resolve(name: str, alias: str = registry.CHAMPION) -> ModelRef:
    """The version ``alias`` of ``name`` points at **now**, as a :class:`ModelRef`."""
    version = registry.version_of(name, alias)
    if version is None:
        raise ValueError(
            f"{name} has no @{alias}: register a version with that alias first "
            "(registry.ensure_champion builds a champion)"
        )
    return model_ref(name, version, alias)


def _configure(store) -> None:
    import logging

    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for logger in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.registry_uri)


class ChampionResolver:
    """Called at each micro-batch: resolves ``alias`` of ``name`` in the registry and returns
    ``(ModelRef, model)``, loading a version's model once and keeping it (a cache per
    version). It carries the MLflow store's URIs and sets them where it runs: under Spark
    Connect that is a Python process the server starts, which has none of the client's
    MLflow settings (its default store would be an empty ``mlflow.db`` in its working
    folder)."""

    def __init__(self, name: str, alias: str, store) -> None:
        self.name, self.alias, self.store = name, alias, store
        self._models: dict[int, object] = {}
        self.loads = 0  # how many versions this resolver has loaded

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_models": {}}  # pickled for the server: ship no model

    def __call__(self) -> tuple[ModelRef, object]:
        from lakehouse.ml import tracking

        _configure(self.store)
        ref = resolve(self.name, self.alias)
        if ref.version not in self._models:
            self._models[ref.version] = tracking.load_model(ref.uri)
            self.loads += 1
        return ref, self._models[ref.version]


@dataclass
class PinnedModel:
    """For a server that cannot reach the registry: ``alias`` resolved once, on the client,
    and the loaded model shipped inside the ``foreachBatch`` function. Every batch is scored
    by that version; a promotion takes effect when the query is restarted (same checkpoint:
    the log stays exactly once)."""

    ref: ModelRef
    model: object = field(repr=False)

    @classmethod
    def resolve(cls, name: str, alias: str = registry.CHAMPION) -> PinnedModel:
        ref = resolve(name, alias)
        from lakehouse.ml import tracking

        return cls(ref, tracking.load_model(ref.uri))

    def __call__(self) -> tuple[ModelRef, object]:
        return self.ref, self.model


# --------------------------------------------------------------------------- batch scoring


def pyfunc_udf(spark: SparkSession, ref: ModelRef):
    """``mlflow.pyfunc.spark_udf`` of ``ref``'s version: per row, the probabilities of the two
    classes (``array<double>``, fraud at index 1). Locally the model runs in the Python the
    Spark workers use (``env_manager="local"``); through Spark Connect MLflow downloads the
    model on the client and the server's workers read it from there (a server on the same
    machine; Databricks Connect uploads it as an artifact)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.spark_udf(spark, ref.uri, result_type="array<double>", env_manager="local")


def _stamp(ref: ModelRef) -> dict:
    return {
        "model_name": F.lit(ref.name),
        "model_version": F.lit(ref.version).cast("int"),
        "model_alias": F.lit(ref.alias).cast("string"),
        "threshold": F.lit(ref.threshold).cast("double"),
    }


def batch_scores(features_df: DataFrame, ref: ModelRef, udf=None) -> DataFrame:
    """``gold.fraud_scores``' rows for ``features_df`` (:func:`payment_features`' columns):
    the fraud probability from ``udf`` (default :func:`pyfunc_udf` of ``ref``) over the
    version's input columns, stamped with ``ref`` and the scoring time."""
    missing = [c for c in ref.inputs if c not in features_df.columns]
    if missing:
        raise ValueError(
            f"features_df lacks {missing}, inputs of {ref.name} version {ref.version}: build "
            "it with scoring.payment_features (lesson 02's feature columns)"
        )
    if udf is None:
        udf = pyfunc_udf(features_df.sparkSession, ref)
    score = udf(F.struct(*ref.inputs))[1]
    return (
        features_df.select(
            F.col(KEY).alias("payment_id"),
            "customer_id",
            F.col(ARRIVAL).alias("event_ts"),
            score.alias("score"),
        )
        .withColumns(_stamp(ref))
        .withColumns(
            {
                "flagged": F.col("score") >= F.col("threshold"),
                "scored_at": F.current_timestamp(),
            }
        )
        .select(*SCORES_SCHEMA.fieldNames())
    )


def write_scores(spark: SparkSession, scores_df: DataFrame, table: str = SCORES) -> int:
    """MERGE ``scores_df`` into ``table`` on (payment_id, model_name, model_version), inserting
    only the rows it lacks: a rerun with the same version inserts nothing and keeps the first
    ``scored_at``; a new version adds its rows beside the old ones. Returns the rows
    inserted."""
    from lakehouse import DeltaTable

    create_scores_table(spark, table)
    condition = " AND ".join(f"t.{c} = s.{c}" for c in SCORES_KEY)
    before = training.table_version(spark, table)
    (
        DeltaTable.forName(spark, table)
        .alias("t")
        .merge(scores_df.alias("s"), condition)
        .whenNotMatchedInsertAll()
        .execute()
    )
    last = DeltaTable.forName(spark, table).history(1).first()
    if last["version"] == before:  # a MERGE that changes nothing commits nothing
        return 0
    return int((last["operationMetrics"] or {}).get("numTargetRowsInserted", 0))


def score_payments(
    spark: SparkSession,
    payments_df: DataFrame | None = None,
    *,
    name: str | None = None,
    alias: str = registry.CHAMPION,
    table: str = SCORES,
) -> tuple[ModelRef, int]:
    """The batch job: resolve ``alias`` once, score ``payments_df`` (default all of
    ``silver.payments``) with that version through ``spark_udf``, MERGE into ``table``.
    Returns the version used and the rows inserted."""
    ref = resolve(name or registry.registered_name(spark), alias)
    if payments_df is None:
        payments_df = spark.table(PAYMENTS)
    scores_df = batch_scores(lake_features(payments_df), ref)
    return ref, write_scores(spark, scores_df, table)


# --------------------------------------------------------------------------- stream scoring


def _score_partitions(model, inputs: tuple[str, ...], columns: list[str]):
    """The mapInPandas function: each partition's rows with ``score``, the model's fraud
    probability on the ``inputs`` columns (which are then dropped)."""

    def score(frames):
        for frame in frames:
            probability = model.predict_proba(frame[list(inputs)])[:, 1] if len(frame) else []
            yield frame[columns].assign(score=probability)

    return score


def inference_rows(
    features_df: DataFrame, ref: ModelRef, model, *, batch_id: int | None, source: str = "stream"
) -> DataFrame:
    """``ml.inference_log``' rows for ``features_df``: each payment scored by ``model`` (the
    loaded version ``ref``) on ``ref.inputs``, the inputs kept as JSON, stamped with ``ref``,
    ``batch_id``, the role ``served`` and the time."""
    missing = [c for c in ref.inputs if c not in features_df.columns]
    if missing:
        raise ValueError(
            f"the micro-batch lacks {missing}, inputs of {ref.name} version {ref.version}: "
            "compute them with scoring.payment_features"
        )
    if source not in SOURCES:
        raise ValueError(f"source {source!r}: use one of {SOURCES}")
    keyed = [
        F.col(KEY).alias("payment_id"),
        "customer_id",
        F.col(ARRIVAL).alias("event_ts"),
        F.to_json(F.struct(*ref.inputs)).alias("features"),
    ]
    inputs_df = features_df.select(*keyed, *ref.inputs)
    columns = ["payment_id", "customer_id", "event_ts", "features"]
    schema = StructType(
        [*(inputs_df.schema[c] for c in columns), _field("score", DoubleType(), "score")]
    )
    scored = inputs_df.mapInPandas(_score_partitions(model, ref.inputs, columns), schema)
    return (
        scored.withColumns(_stamp(ref))
        .withColumns(
            {
                "request_id": F.col("payment_id"),
                "source": F.lit(source),
                "role": F.lit("served"),
                "flagged": F.col("score") >= F.col("threshold"),
                "latency_ms": F.lit(None).cast("double"),
                "batch_id": F.lit(batch_id).cast("long"),
                "logged_at": F.current_timestamp(),
            }
        )
        .select(*INFERENCE_LOG_SCHEMA.fieldNames())
    )


def writer_id(table: str, checkpoint: str) -> str:
    """The Delta application id of the stream writing ``table`` with ``checkpoint``: stable
    across restarts (a replayed batch id is recognised and skipped), new for a new checkpoint
    (whose batch ids start again at 0 and must not be taken for replays). The checkpoint
    keeps a random id in its folder for that; removing the folder makes a new writer."""
    folder = Path(checkpoint.removeprefix("file:"))
    marker = folder / WRITER_FILE
    if not marker.exists():
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(uuid.uuid4().hex)
    return f"{table}@{marker.read_text().strip()}"


def append_once(rows_df: DataFrame, table: str, app_id: str, batch_id: int) -> None:
    """Append ``rows_df`` to ``table`` as Delta transaction (``app_id``, ``batch_id``): Delta
    commits a given pair once and skips it afterwards. For an append the pair goes in the
    writer's options ``txnAppId`` / ``txnVersion`` (Delta's documented form, which every
    engine honours); a MERGE takes it from the session (``streaming.idempotent_writes``)."""
    (
        rows_df.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", int(batch_id))
        .saveAsTable(table)
    )


def inference_writer(
    resolver: Callable[[], tuple[ModelRef, object]],
    app_id: str,
    *,
    table: str = INFERENCE_LOG,
    features: Callable[[DataFrame], DataFrame] = lake_features,
) -> Callable[[DataFrame, int], None]:
    """The ``foreachBatch`` function: at each micro-batch, ask ``resolver`` which version
    scores now (:class:`ChampionResolver`: the alias as it is at this batch), compute the
    batch's ``features``, score and append to ``table`` as Delta transaction (``app_id``,
    batch_id): a batch replayed after a crash writes nothing twice."""
    from lakehouse.streaming import idempotent_writes

    def write(batch_df: DataFrame, batch_id: int) -> None:
        session = batch_df.sparkSession
        ref, model = resolver()
        rows = inference_rows(batch_df.transform(features), ref, model, batch_id=batch_id)
        with idempotent_writes(session, app_id, batch_id):
            append_once(rows, table, app_id, batch_id)

    return write


def checkpoint(spark: SparkSession, name: str = STREAM_NAME) -> str:
    from lakehouse.streaming import checkpoint as stream_checkpoint

    return stream_checkpoint(spark, name)


def start_scoring(
    spark: SparkSession,
    *,
    source: str = PAYMENTS,
    table: str = INFERENCE_LOG,
    name: str | None = None,
    alias: str = registry.CHAMPION,
    resolver: Callable[[], tuple[ModelRef, object]] | None = None,
    features: Callable[[DataFrame], DataFrame] = lake_features,
    checkpoint_location: str | None = None,
    trigger: Mapping[str, object] | None = None,
    source_options: Mapping[str, str] | None = None,
    writer: Callable[[DataFrame, int], None] | None = None,
):
    """Start the scoring stream: ``source`` read as a Delta stream, each micro-batch scored by
    the version ``alias`` points at when it runs and logged to ``table`` exactly once
    (:func:`inference_writer`). ``resolver`` defaults to a :class:`ChampionResolver` of the
    lake's MLflow store (a :class:`PinnedModel` for a server without registry access);
    ``writer`` replaces the whole ``foreachBatch`` function. Returns the StreamingQuery.

    >>> start_scoring(spark, trigger={"availableNow": True}).awaitTermination()  # doctest: +SKIP
    """
    from lakehouse.ml import tracking

    create_inference_log(spark, table)
    location = checkpoint_location or checkpoint(spark)
    if writer is None:
        if resolver is None:
            resolver = ChampionResolver(
                name or registry.registered_name(spark), alias, tracking.store_for(spark)
            )
        writer = inference_writer(
            resolver, writer_id(table, location), table=table, features=features
        )
    reader = spark.readStream.options(**dict(source_options or {}))
    return (
        reader.table(source)
        .writeStream.queryName(f"scoring_{table.replace('.', '_')}")
        .foreachBatch(writer)
        .option("checkpointLocation", location)
        .trigger(**dict(trigger or {"availableNow": True}))
        .start()
    )


# --------------------------------------------------------------------------- the lesson's replay


def replay(spark: SparkSession, until, *, source: str = PAYMENTS, table: str = ARRIVALS) -> int:
    """Append to ``table`` (created with ``source``'s schema when missing) the rows of
    ``source`` that arrived (``ingest_ts``) before ``until`` and are not in it yet: payments
    arriving, for a lesson whose Silver table was built once. One append, one Delta commit:
    one micro-batch for a stream on ``table``. Returns the rows appended."""
    arrived_df = spark.table(source).where(F.col("ingest_ts") < F.lit(until).cast("timestamp"))
    if spark.catalog.tableExists(table):
        arrived_df = arrived_df.join(spark.table(table).select(KEY), KEY, "anti")
    else:
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
        spark.table(source).limit(0).write.format("delta").saveAsTable(table)
    rows = arrived_df.count()
    if rows:
        arrived_df.orderBy("ingest_ts", KEY).write.format("delta").mode("append").saveAsTable(table)
    return rows


def reset_stream(
    spark: SparkSession,
    *,
    checkpoint_location: str | None = None,
    table: str = INFERENCE_LOG,
    arrivals: str | None = ARRIVALS,
) -> None:
    """Start the scoring stream afresh: stop its query if it runs, remove its checkpoint
    (so its writer id too: see :func:`writer_id`), delete the stream's rows of ``table``
    (serving's stay) and drop the ``arrivals`` table."""
    import shutil

    from lakehouse.course import drop_table

    for query in spark.streams.active:
        if query.name == f"scoring_{table.replace('.', '_')}":
            query.stop()
    shutil.rmtree(checkpoint_location or checkpoint(spark), ignore_errors=True)
    if spark.catalog.tableExists(table):
        spark.sql(f"DELETE FROM {table} WHERE source = 'stream'")
    if arrivals:
        drop_table(spark, arrivals)


# --------------------------------------------------------------------------- checks


def _require(df: DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise AssertionError(f"{what} lacks {missing}: create it with its declared schema")


def check_scores(scores_df: DataFrame, name: str, alias: str, payments: int, *, since=None) -> str:
    """Assert ``scores_df`` (``gold.fraud_scores``) holds, for the version ``alias`` of
    ``name`` points at, one row per payment -- ``payments`` of them, none twice -- stamped
    with that version and the alias, its threshold, ``flagged = score >= threshold``, and
    scores that are probabilities; and that no row stamped ``@alias`` since ``since`` (when
    the job under test started) carries another version. Returns one line."""
    _require(scores_df, SCORES_SCHEMA.fieldNames(), "the scores table")
    ref = resolve(name, alias)
    mine = scores_df.where((F.col("model_name") == name) & (F.col("model_alias") == alias))
    is_version = F.col("model_version") == ref.version
    stats = mine.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(F.col("model_version").isNull()).alias("no_version"),
        F.count_if(F.col("model_version") != ref.version).alias("other_version"),
        F.max(F.when(F.col("model_version") != ref.version, F.col("model_version"))).alias("wrong"),
        F.count_distinct(F.when(is_version, F.col("payment_id"))).alias("payments"),
        F.count_if(is_version).alias("version_rows"),
        F.count_if(
            is_version & ~F.col("flagged").eqNullSafe(F.col("score") >= F.col("threshold"))
        ).alias("bad_flag"),
        F.count_if(is_version & (F.abs(F.col("threshold") - F.lit(ref.threshold)) > 1e-12)).alias(
            "bad_threshold"
        ),
        F.count_if(is_version & (F.col("score") > 0) & (F.col("score") < 1)).alias("fractional"),
        F.count_if(is_version & F.col("flagged")).alias("flagged"),
    ).first()
    assert stats["rows"], (
        f"no rows of {name} stamped @{alias}: stamp each row with the alias it was resolved "
        "from (model_alias) and the version (model_version)"
    )
    assert not stats["no_version"], (
        f"{stats['no_version']} rows carry @{alias} but no model_version: an alias moves; "
        "stamp the version it pointed at when you scored (registry.version_of / scoring.resolve)"
    )
    if since is not None:
        recent = (
            mine.where(
                (F.col("scored_at") >= F.lit(since)) & (F.col("model_version") != ref.version)
            )
            .agg(F.count(F.lit(1)).alias("rows"), F.max("model_version").alias("wrong"))
            .first()
        )
        assert not recent["rows"], (
            f"{recent['rows']} rows stamped @{alias} by this run carry version "
            f"{recent['wrong']}, but @{alias} points at version {ref.version}: resolve the "
            "alias once, load that version (models:/<name>/<version>) and stamp the same version"
        )
    assert stats["version_rows"] or not stats["other_version"], (
        f"{stats['other_version']} rows stamped @{alias} carry version {stats['wrong']}, but "
        f"@{alias} points at version {ref.version}: resolve the alias once, load that version "
        "(models:/<name>/<version>) and stamp the same version"
    )
    twice = stats["version_rows"] - stats["payments"]
    assert twice == 0, (
        f"{twice} payments are in the scores table more than once for version {ref.version}: "
        "a rerun appended them again. MERGE on (payment_id, model_name, model_version) "
        "inserting only what is missing (scoring.write_scores), or replaceWhere the version"
    )
    assert stats["payments"] == payments, (
        f"version {ref.version} scored {stats['payments']} payments, not the {payments} of "
        "silver.payments: score every payment (features from scoring.payment_features)"
    )
    assert not stats["bad_threshold"], (
        f"{stats['bad_threshold']} rows do not carry version {ref.version}'s threshold "
        f"{ref.threshold:.4f} (its {registry.THRESHOLD_TAG} tag)"
    )
    assert not stats["bad_flag"], f"{stats['bad_flag']} rows have flagged != (score >= threshold)"
    assert stats["fractional"], (
        "every score is 0 or 1: those are classes, not probabilities. Take the fraud column "
        "(index 1) of spark_udf(..., result_type='array<double>')"
    )
    return (
        f"{SCORES}: {stats['payments']} payments scored by {name} v{ref.version} (@{alias}), "
        f"{stats['flagged']} flagged at threshold {ref.threshold:.3f}"
    )


def stream_rows(log_df: DataFrame) -> DataFrame:
    """The stream's rows of ``ml.inference_log``."""
    return log_df.where(F.col("source") == "stream")


def versions_by_batch(log_df: DataFrame) -> dict[int, list[int]]:
    """The versions that scored each micro-batch of the stream: ``{batch_id: [versions]}``."""
    rows = (
        stream_rows(log_df)
        .groupBy("batch_id")
        .agg(F.sort_array(F.collect_set("model_version")).alias("versions"))
        .orderBy("batch_id")
        .collect()
    )
    return {int(r["batch_id"]): [int(v) for v in r["versions"]] for r in rows}


def check_promotion_followed(
    log_df: DataFrame, *, before: int, after: int, first_batch_after: int
) -> str:
    """Assert that the stream's micro-batches before ``first_batch_after`` were scored by
    version ``before`` and the later ones by ``after``: the promotion reached the running
    query at its next micro-batch. Returns one line."""
    batches = versions_by_batch(log_df)
    assert batches, "the stream has logged nothing: start it and process the arrivals"
    later = {b: v for b, v in batches.items() if b >= first_batch_after}
    assert later, (
        f"no micro-batch from batch {first_batch_after} on: process the payments that "
        "arrived after the promotion"
    )
    for batch, versions in sorted(batches.items()):
        want = before if batch < first_batch_after else after
        if versions != [want]:
            stale = batch >= first_batch_after and versions == [before]
            raise AssertionError(
                f"micro-batch {batch} was scored by version(s) {versions}, not {want}"
                + (
                    ": the function loaded the model once, when the query started, and "
                    "misses the promotion. Resolve the alias inside the function, at each "
                    "micro-batch (a ChampionResolver called per batch)"
                    if stale
                    else ""
                )
            )
    return (
        f"batches {sorted(b for b in batches if b < first_batch_after)} scored by the champion "
        f"before the promotion, batches {sorted(later)} by the promoted version: the promotion "
        "reached the running query"
    )


def check_exactly_once(log_df: DataFrame, source_df: DataFrame) -> str:
    """Assert that every payment of ``source_df`` is in the stream's rows of ``log_df``
    exactly once (none twice, none missing, none that is not a payment of the source).
    Returns one line."""
    logged = stream_rows(log_df).groupBy("request_id").count()
    expected = source_df.select(F.col(KEY).alias("request_id")).distinct()
    stats = (
        expected.join(logged, "request_id", "full")
        .agg(
            F.count_if(F.col("count") > 1).alias("twice"),
            F.count_if(F.col("count").isNull()).alias("missing"),
            F.count_if(F.col("count").isNotNull()).alias("logged"),
            F.count(F.lit(1)).alias("all"),
        )
        .first()
    )
    twice, missing = stats["twice"], stats["missing"]
    assert not twice, (
        f"{twice} payments are logged more than once: a replayed micro-batch was appended "
        "again. Append as the Delta transaction (app_id, batch_id) -- .option('txnAppId', "
        "app_id).option('txnVersion', batch_id), or scoring.append_once -- with the writer's "
        "stable app id, so that Delta skips a batch it already committed"
    )
    assert not missing, f"{missing} payments of the source were never scored and logged"
    return f"{stats['logged']} payments logged exactly once"


def check_replay(
    writer: Callable[[DataFrame, int], None],
    spark: SparkSession,
    *,
    batch_id: int,
    source: str = ARRIVALS,
    table: str = INFERENCE_LOG,
) -> str:
    """Run ``writer`` again on micro-batch ``batch_id`` of the stream (its payments, read from
    ``source``), as a restart after a crash between the write and the checkpoint's commit
    does, and assert that ``table`` did not change. Returns one line."""
    logged = stream_rows(spark.table(table)).where(F.col("batch_id") == batch_id)
    batch_df = spark.table(source).join(
        logged.select(F.col("request_id").alias(KEY)).distinct(), KEY, "semi"
    )
    size = batch_df.count()
    assert size, f"micro-batch {batch_id} logged nothing: run the stream first"
    before = stream_rows(spark.table(table)).count()
    writer(batch_df, batch_id)
    added = stream_rows(spark.table(table)).count() - before
    assert added == 0, (
        f"replaying micro-batch {batch_id} ({size} payments), as a restart after a crash "
        f"does, appended {added} rows again: append as the Delta transaction (app_id, "
        "batch_id) -- .option('txnAppId', app_id).option('txnVersion', batch_id), or "
        "scoring.append_once -- so that Delta skips a batch it already committed"
    )
    return f"micro-batch {batch_id} replayed: {size} payments, nothing written twice"


__all__ = [
    "ARRIVALS",
    "INFERENCE_LOG",
    "INFERENCE_LOG_SCHEMA",
    "LOG_KEY",
    "PAYMENTS",
    "ROLES",
    "SCORES",
    "SCORES_KEY",
    "SCORES_SCHEMA",
    "SOURCES",
    "STREAM_NAME",
    "ChampionResolver",
    "ModelRef",
    "PinnedModel",
    "append_once",
    "batch_scores",
    "check_exactly_once",
    "check_promotion_followed",
    "check_replay",
    "check_scores",
    "checkpoint",
    "create_inference_log",
    "create_scores_table",
    "inference_rows",
    "inference_writer",
    "lake_features",
    "model_ref",
    "payment_features",
    "pyfunc_udf",
    "replay",
    "reset_stream",
    "resolve",
    "score_payments",
    "start_scoring",
    "stream_rows",
    "versions_by_batch",
    "write_scores",
    "writer_id",
]
