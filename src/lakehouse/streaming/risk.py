"""Near-real-time risk scores and compliance alerts on the payment stream: per-customer sliding
windows over ``silver.payment_events`` feed ``gold.payment_alerts``, one row per episode.

The pipeline, each step a ``DataFrame -> DataFrame`` function that works on a stream and on a
batch alike::

    silver.payment_events
      .transform(with_amount_ratio(profiles_df))   # amount_usd / the customer's June average
      .transform(window_features)                  # 10-minute windows sliding every minute
      .transform(with_risk_score)                  # 0..100 from the window's features
      .transform(flag_patterns)                    # one boolean per compliance pattern
      .transform(detections)                       # one row per (window, pattern met)
    -> foreachBatch: episodes(...) merged into gold.payment_alerts on alert_id

Overlapping windows see the same transactions many times; :func:`episodes` collapses the
detections of one kind and customer whose transactions lie within ``WINDOW`` of each other into
one alert keyed by (kind, customer, first transaction time). Collapsing is associative, so the
stream (micro-batch after micro-batch, merging into the table) ends with exactly the alerts that
:func:`detect_batch` finds in one query over the same events.

Example::

    from lakehouse.streaming import risk
    query = risk.start_alerts(spark)          # availableNow by default
    query.awaitTermination()
    spark.table(risk.ALERTS).groupBy("kind").count().show()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    IntegerType,
    StringType,
    StructType,
    TimestampType,
)

from lakehouse.gold import commented_field
from lakehouse.session import engine_of
from lakehouse.streaming import ALERTS, SILVER, checkpoint, idempotent_writes
from lakehouse.streaming.windows import EVENT_WATERMARK  # one watermark for every window

# --------------------------------------------------------------------------- thresholds

WINDOW = "10 minutes"  # how far back each window looks
SLIDE = "1 minute"  # how often a new window starts: every event is in 10 windows
BURST = "1 minute"  # rapid_fire: transactions within one minute

STRUCTURING_MIN = 3  # near-threshold (9,000..9,999.99 USD) transactions within WINDOW
RAPID_FIRE_MIN = 6  # transactions within BURST
CASH_VELOCITY_MIN = 3  # ATM withdrawals within WINDOW
GEO_SPREAD_MIN = 3  # distinct countries within WINDOW
AMOUNT_ANOMALY_RATIO = 10.0  # amount_usd / the customer's June average

KINDS = ("structuring", "rapid_fire", "cash_velocity", "geo_spread", "amount_anomaly")

APP_ID = "lakehouse.streaming.risk.alerts"  # a default writer id for Delta's app transactions
CHECKPOINT_NAME = "alerts"  # <lake>/<catalog>/_checkpoints/streaming/alerts

# The columns the windows read from silver.payment_events.
EVENT_COLUMNS = (
    "transaction_id",
    "event_ts",
    "customer_id",
    "amount_usd",
    "country",
    "city",
    "is_near_threshold",
    "is_cash",
)

ALERT_COLUMNS = (
    "alert_id",
    "kind",
    "customer_id",
    "window_start",
    "window_end",
    "score",
    "measure",
    "transaction_ids",
    "details",
)

ALERTS_SCHEMA = StructType(
    [
        commented_field(
            "alert_id", StringType(), "sha2 of kind, customer_id and window_start", False
        ),
        commented_field("kind", StringType(), " | ".join(KINDS), False),
        commented_field("customer_id", StringType(), "The customer the pattern is about", False),
        commented_field("window_start", TimestampType(), "event_ts of the first transaction"),
        commented_field("window_end", TimestampType(), "event_ts of the last transaction"),
        commented_field(
            "score", IntegerType(), "Highest risk score (0..100) of the windows that met it"
        ),
        commented_field(
            "measure",
            DoubleType(),
            "Highest value of the pattern's measure in one window: a count, countries, or "
            "amount / June average",
        ),
        commented_field(
            "transaction_ids",
            ArrayType(StringType()),
            "The transactions that make the pattern, sorted",
        ),
        commented_field("details", StringType(), "The pattern in words"),
        commented_field(
            "detected_at", TimestampType(), "When the alert was first written (processing time)"
        ),
    ]
)

# A window's transactions, sorted by time (then id): what the patterns look into.
_EVENT = "struct<event_ts:timestamp,transaction_id:string,is_near_threshold:boolean," + (
    "is_cash:boolean,amount_ratio:double>"
)


def _require(df: DataFrame, names: Iterable[str], what: str) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {', '.join(map(repr, missing))}: pass "
            f"{SILVER} rows (see lakehouse.streaming.pipeline)"
        )


# --------------------------------------------------------------------------- windows


def with_amount_ratio(profiles_df: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Add ``amount_ratio`` = amount_usd / the customer's June average (``avg_amount_usd`` of
    ``profiles_df``, e.g. ``pipeline.customer_profiles(spark)``); null when the customer has no
    history. A stream-static join: the profiles are a small batch table, broadcast to the stream.

    >>> events_df.transform(with_amount_ratio(profiles_df))  # doctest: +SKIP
    """
    _require(profiles_df, ["customer_id", "avg_amount_usd"], "profiles_df")
    averages = F.broadcast(
        profiles_df.select("customer_id", F.col("avg_amount_usd").cast("double").alias("_avg"))
    )

    def transform(events_df: DataFrame) -> DataFrame:
        _require(events_df, EVENT_COLUMNS, "events_df")
        return (
            events_df.join(averages, "customer_id", "left")
            .withColumn(
                "amount_ratio",
                F.when(F.col("_avg") > 0, F.col("amount_usd").cast("double") / F.col("_avg")),
            )
            .drop("_avg")
        )

    return transform


def window_features(events_df: DataFrame) -> DataFrame:
    """Per customer and 10-minute window sliding every minute (event time, watermark
    :data:`EVENT_WATERMARK`): ``txn_count`` (velocity), ``max_amount_usd``, ``max_amount_ratio``,
    ``n_countries`` and ``n_cities`` (exact distinct counts), ``near_threshold_count``,
    ``cash_count``, ``max_in_one_minute`` (most transactions within one minute inside the
    window, exact) and ``events`` (the window's transactions, sorted). Expects
    :func:`with_amount_ratio` first.

    >>> ratios_df = silver_df.transform(with_amount_ratio(profiles_df))  # doctest: +SKIP
    >>> ratios_df.transform(window_features)  # doctest: +SKIP
    """
    _require(events_df, [*EVENT_COLUMNS, "amount_ratio"], "events_df")
    event = F.struct(
        "event_ts", "transaction_id", "is_near_threshold", "is_cash", "amount_ratio"
    ).cast(_EVENT)
    windows_df = (
        events_df.where(F.col("customer_id").isNotNull() & F.col("event_ts").isNotNull())
        .withWatermark("event_ts", EVENT_WATERMARK)
        .groupBy("customer_id", F.window("event_ts", WINDOW, SLIDE).alias("window"))
        .agg(
            F.count(F.lit(1)).alias("txn_count"),
            F.max("amount_usd").alias("max_amount_usd"),
            F.max("amount_ratio").alias("max_amount_ratio"),
            # collect_set + size: exact, where approx_count_distinct is an estimate
            F.size(F.collect_set("country")).alias("n_countries"),
            F.size(F.collect_set("city")).alias("n_cities"),
            F.count_if(F.coalesce("is_near_threshold", F.lit(False))).alias("near_threshold_count"),
            F.count_if(F.coalesce("is_cash", F.lit(False))).alias("cash_count"),
            F.array_sort(F.collect_list(event)).alias("events"),
        )
    )
    return windows_df.select(
        "customer_id",
        F.col("window.start").alias("window_start"),
        F.col("window.end").alias("window_end"),
        "txn_count",
        "max_amount_usd",
        "max_amount_ratio",
        "n_countries",
        "n_cities",
        "near_threshold_count",
        "cash_count",
        F.expr(f"array_max(transform(events, e -> {_in_burst('e')}))").alias("max_in_one_minute"),
        "events",
    )


def _in_burst(anchor: str) -> str:
    """SQL: how many of ``events`` fall in [anchor.event_ts, anchor.event_ts + BURST)."""
    return (
        f"size(filter(events, u -> u.event_ts >= {anchor}.event_ts "
        f"AND u.event_ts < {anchor}.event_ts + INTERVAL {BURST}))"
    )


def _clip(x: Column) -> Column:
    return F.greatest(F.lit(0.0), F.least(F.lit(1.0), x))


def risk_score() -> Column:
    """The window's risk score, 0..100: five capped parts, each 0 at a normal value and full at
    its pattern's threshold.

    ========================  =======  =============================================
    part                      points   full at
    ========================  =======  =============================================
    velocity                  25       (txn_count - 1) / 5: 6 transactions
    amount anomaly            25       (max_amount_ratio - 1) / 9: 10x June average
    geographic spread         20       (n_countries - 1) / 2: 3 countries
    near-threshold amounts    15       near_threshold_count / 3
    cash                      15       cash_count / 3
    ========================  =======  =============================================
    """
    score = (
        25 * _clip((F.col("txn_count") - 1) / 5)
        + 25 * _clip((F.coalesce("max_amount_ratio", F.lit(1.0)) - 1) / 9)
        + 20 * _clip((F.col("n_countries") - 1) / 2)
        + 15 * _clip(F.col("near_threshold_count") / STRUCTURING_MIN)
        + 15 * _clip(F.col("cash_count") / CASH_VELOCITY_MIN)
    )
    return F.round(score).cast("int")


def with_risk_score(windows_df: DataFrame) -> DataFrame:
    """Add ``risk_score`` (:func:`risk_score`) to :func:`window_features` rows."""
    return windows_df.withColumn("risk_score", risk_score())


# --------------------------------------------------------------------------- patterns


def flag_patterns(windows_df: DataFrame) -> DataFrame:
    """Add one boolean per compliance pattern of :data:`KINDS` to :func:`window_features` rows:
    the window meets the pattern's threshold."""
    return windows_df.select(
        "*",
        (F.col("near_threshold_count") >= STRUCTURING_MIN).alias("structuring"),
        (F.col("max_in_one_minute") >= RAPID_FIRE_MIN).alias("rapid_fire"),
        (F.col("cash_count") >= CASH_VELOCITY_MIN).alias("cash_velocity"),
        (F.col("n_countries") >= GEO_SPREAD_MIN).alias("geo_spread"),
        F.coalesce(F.col("max_amount_ratio") >= AMOUNT_ANOMALY_RATIO, F.lit(False)).alias(
            "amount_anomaly"
        ),
    )


# The windowed patterns: (the pattern's measure, a SQL predicate on an event `e` of the window:
# the transactions that make the pattern).
_WINDOW_PATTERNS = {
    "structuring": ("near_threshold_count", "e.is_near_threshold"),
    "rapid_fire": (
        "max_in_one_minute",
        "exists(events, a -> a.event_ts <= e.event_ts "
        f"AND e.event_ts < a.event_ts + INTERVAL {BURST} AND {_in_burst('a')} >= {RAPID_FIRE_MIN})",
    ),
    "cash_velocity": ("cash_count", "e.is_cash"),
    "geo_spread": ("n_countries", "true"),
}
_ANOMALOUS = f"coalesce(e.amount_ratio >= {AMOUNT_ANOMALY_RATIO}, false)"


def detections(flagged_df: DataFrame) -> DataFrame:
    """One row per window and pattern it meets (:func:`flag_patterns` rows with
    ``risk_score``): kind, customer_id, first_ts and last_ts (times of the pattern's first and
    last transaction), score, measure and the pattern's transaction_ids (sorted). An amount
    anomaly is one transaction: one row per anomalous transaction of the window.

    The patterns are one array exploded, not five filtered copies unioned: on a stream, each
    copy would be a query branch of its own over the same state."""
    _require(flagged_df, [*KINDS, "risk_score", "events"], "flagged_df")

    def candidate(kind: str, measure: str, events: str) -> str:
        return (
            f"named_struct('kind', '{kind}', 'measure', CAST({measure} AS double), "
            f"'pattern_events', {events})"
        )

    windowed = [
        f"IF({kind}, array({candidate(kind, measure, f'filter(events, e -> {predicate})')}), "
        "array())"
        for kind, (measure, predicate) in _WINDOW_PATTERNS.items()
    ]
    anomalies = (
        f"IF(amount_anomaly, transform(filter(events, e -> {_ANOMALOUS}), e -> "
        f"{candidate('amount_anomaly', 'round(e.amount_ratio, 2)', 'array(e)')}), array())"
    )
    candidates = F.expr(f"flatten(array({', '.join([*windowed, anomalies])}))")
    return flagged_df.select("customer_id", "risk_score", F.explode(candidates).alias("p")).select(
        F.col("p.kind").alias("kind"),
        "customer_id",
        F.expr("array_min(transform(p.pattern_events, e -> e.event_ts))").alias("first_ts"),
        F.expr("array_max(transform(p.pattern_events, e -> e.event_ts))").alias("last_ts"),
        F.col("risk_score").alias("score"),
        F.col("p.measure").alias("measure"),
        F.array_sort(F.expr("transform(p.pattern_events, e -> e.transaction_id)")).alias(
            "transaction_ids"
        ),
    )


def alert_detections(profiles_df: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Silver events -> :func:`detections`: the whole windowed part, for a stream or a batch."""

    def transform(events_df: DataFrame) -> DataFrame:
        return (
            events_df.transform(with_amount_ratio(profiles_df))
            .transform(window_features)
            .transform(with_risk_score)
            .transform(flag_patterns)
            .transform(detections)
        )

    return transform


# --------------------------------------------------------------------------- episodes


def alert_id(kind: str | Column, customer_id: str | Column, window_start: str | Column) -> Column:
    """The alert's key: sha2 of kind, customer and episode start (ms), 32 hex characters."""
    start = F.date_format(window_start, "yyyy-MM-dd'T'HH:mm:ss.SSS")
    return F.substring(F.sha2(F.concat_ws("|", kind, customer_id, start), 256), 1, 32)


def _details() -> Column:
    m = F.col("measure")
    count = m.cast("int").cast("string")
    return (
        F.when(
            F.col("kind") == "structuring",
            F.concat(count, F.lit(" transactions of 9,000 to 9,999.99 USD within 10 minutes")),
        )
        .when(
            F.col("kind") == "rapid_fire", F.concat(count, F.lit(" transactions within 1 minute"))
        )
        .when(
            F.col("kind") == "cash_velocity",
            F.concat(count, F.lit(" ATM withdrawals within 10 minutes")),
        )
        .when(F.col("kind") == "geo_spread", F.concat(count, F.lit(" countries within 10 minutes")))
        .otherwise(
            F.concat(F.format_number(m, 2), F.lit(" times the customer's June average amount"))
        )
    )


def episodes(detections_df: DataFrame) -> DataFrame:
    """Collapse detections into alerts: per kind and customer, detections sorted by first_ts
    whose first transaction is no later than the latest transaction seen so far belong to one
    episode (the "gaps and islands" pattern): overlapping windows share their transactions, so
    they chain into one episode, and an alert holds the union of their transactions. Each
    episode gives one row of :data:`ALERT_COLUMNS` plus ``previous_ids`` (the alert ids of
    its input rows that carry an ``alert_id``: alerts already in the table) and
    ``detected_at``.

    Merging is associative, so feeding it alerts already collapsed together with new
    detections gives the same episodes as all detections at once."""
    df = detections_df
    if "alert_id" not in df.columns:
        df = df.withColumn("alert_id", F.lit(None).cast("string"))
    if "detected_at" not in df.columns:
        df = df.withColumn("detected_at", F.lit(None).cast("timestamp"))
    by_pair = Window.partitionBy("kind", "customer_id").orderBy("first_ts", "last_ts")
    islands_df = (
        df.withColumn(
            "_latest", F.max("last_ts").over(by_pair.rowsBetween(Window.unboundedPreceding, -1))
        )
        .withColumn(
            "_new",
            F.when(F.col("_latest").isNull() | (F.col("first_ts") > F.col("_latest")), 1).otherwise(
                0
            ),
        )
        .withColumn(
            "_episode", F.sum("_new").over(by_pair.rowsBetween(Window.unboundedPreceding, 0))
        )
    )
    return (
        islands_df.groupBy("kind", "customer_id", "_episode")
        .agg(
            F.min("first_ts").alias("window_start"),
            F.max("last_ts").alias("window_end"),
            F.max("score").cast("int").alias("score"),
            F.max("measure").alias("measure"),
            F.array_sort(F.array_distinct(F.flatten(F.collect_list("transaction_ids")))).alias(
                "transaction_ids"
            ),
            F.array_sort(F.collect_set("alert_id")).alias("previous_ids"),
            F.min("detected_at").alias("detected_at"),
        )
        .withColumn("alert_id", alert_id("kind", "customer_id", "window_start"))
        .withColumn("details", _details())
        .select(*ALERT_COLUMNS, "previous_ids", "detected_at")
    )


def detect_batch(events_df: DataFrame, profiles_df: DataFrame | None = None) -> DataFrame:
    """The alerts the stream ends with, as one batch query over Silver events: every window,
    every pattern, collapsed into episodes. Columns :data:`ALERT_COLUMNS`.

    ``profiles_df`` defaults to ``pipeline.customer_profiles(spark)``.

    >>> detect_batch(spark.table("silver.payment_events"))  # doctest: +SKIP
    """
    if profiles_df is None:
        profiles_df = _profiles(events_df.sparkSession)
    return (
        events_df.transform(alert_detections(profiles_df))
        .transform(episodes)
        .select(*ALERT_COLUMNS)
    )


def _profiles(spark: SparkSession) -> DataFrame:
    from lakehouse.streaming import pipeline

    return pipeline.customer_profiles(spark)


# --------------------------------------------------------------------------- the alerts table


def create_alerts_table(spark: SparkSession, table: str = ALERTS) -> None:
    """Create ``table`` (default ``gold.payment_alerts``) with :data:`ALERTS_SCHEMA` unless it
    exists."""
    from lakehouse import DeltaTable

    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    (
        DeltaTable.createIfNotExists(spark)
        .tableName(table)
        .addColumns(ALERTS_SCHEMA)
        .comment(
            "Risk and compliance alerts from the payment stream: one row per pattern episode "
            "(lakehouse.streaming.risk)"
        )
        .execute()
    )


def alert_upserts(detections_df: DataFrame, alerts_df: DataFrame) -> DataFrame:
    """The MERGE source for one micro-batch: the batch's detections collapsed together with the
    alerts already in the table for the same kind and customer. Rows carry ``_action``:
    ``upsert`` (the episode's alert) or ``delete`` (an alert that a new detection joined to an
    earlier episode: its id, from its old start, is gone)."""
    pairs = detections_df.select("kind", "customer_id").distinct()
    existing = alerts_df.join(pairs, ["kind", "customer_id"], "left_semi").select(
        "kind",
        "customer_id",
        F.col("window_start").alias("first_ts"),
        F.col("window_end").alias("last_ts"),
        "score",
        "measure",
        "transaction_ids",
        "alert_id",
        "detected_at",
    )
    new = detections_df.select(
        "kind",
        "customer_id",
        "first_ts",
        "last_ts",
        "score",
        "measure",
        "transaction_ids",
        F.lit(None).cast("string").alias("alert_id"),
        F.lit(None).cast("timestamp").alias("detected_at"),
    )
    merged = episodes(existing.unionByName(new))
    upserts = merged.select(*ALERT_COLUMNS, "detected_at", F.lit("upsert").alias("_action"))
    deletes = (
        merged.select(F.explode("previous_ids").alias("old_id"), "alert_id")
        .where(F.col("old_id") != F.col("alert_id"))
        .select(F.col("old_id").alias("alert_id"))
    )
    empty = {c: F.lit(None).cast(ALERTS_SCHEMA[c].dataType) for c in ALERT_COLUMNS[1:]}
    deletes = deletes.select(
        "alert_id",
        *[v.alias(k) for k, v in empty.items()],
        F.lit(None).cast("timestamp").alias("detected_at"),
        F.lit("delete").alias("_action"),
    )
    return upserts.unionByName(deletes)


def merge_alerts(spark: SparkSession, detections_df: DataFrame, table: str = ALERTS) -> None:
    """MERGE a batch of detections into ``table`` on alert_id (no app transaction: the caller
    sets ``txnAppId``/``txnVersion`` when the merge must be idempotent per micro-batch)."""
    from lakehouse import DeltaTable

    target = DeltaTable.forName(spark, table)
    source = alert_upserts(detections_df, target.toDF())
    if engine_of(spark) == "embedded":
        # The local engine's MERGE reads its source more than once (matches, then inserts),
        # and this one joins the table itself: compute its few rows once. Delta on Databricks
        # plans the MERGE itself and needs no such step.
        source = source.localCheckpoint()
    values = {c: f"s.{c}" for c in ALERT_COLUMNS}
    (
        target.alias("t")
        .merge(source.alias("s"), "t.alert_id = s.alert_id")
        .whenMatchedDelete(condition="s._action = 'delete'")
        .whenMatchedUpdate(condition="s._action = 'upsert'", set=values)
        .whenNotMatchedInsert(
            condition="s._action = 'upsert'",
            values={**values, "detected_at": "coalesce(s.detected_at, current_timestamp())"},
        )
        .execute()
    )


def writer_id(table: str, checkpoint: str) -> str:
    """A stable id of one writer of ``table``: its target and checkpoint. The same stream
    restarted keeps it, so a replayed batch id is recognised; a new checkpoint is a new writer
    (its batch ids start again at 0). Reset a checkpoint and its table together."""
    return f"{table}@{checkpoint}"


def alert_writer(table: str = ALERTS, app_id: str = APP_ID) -> Callable[[DataFrame, int], None]:
    """The ``foreachBatch`` function: merge the micro-batch's detections into ``table`` as
    Delta app transaction (``app_id``, batch_id), so a replayed batch is a no-op.

    >>> detections_df.writeStream.foreachBatch(alert_writer())  # doctest: +SKIP
    """

    def write(batch_df: DataFrame, batch_id: int) -> None:
        session = batch_df.sparkSession
        with idempotent_writes(session, app_id, batch_id):
            merge_alerts(session, batch_df, table)

    return write


def start_alerts(
    spark: SparkSession,
    *,
    trigger: Mapping[str, object] | None = None,
    checkpoint: str | None = None,
    source: str = SILVER,
    table: str = ALERTS,
    profiles_df: DataFrame | None = None,
):
    """Start the alerting stream: ``source`` (Silver events) -> windows -> patterns ->
    foreachBatch MERGE into ``table``, update output mode (a window reports as soon as it
    meets a pattern, not when it closes). Returns the StreamingQuery.

    ``trigger`` is passed to ``DataStreamWriter.trigger`` (default ``{"availableNow": True}``;
    ``{"processingTime": "30 seconds"}`` for a continuous job); ``checkpoint`` defaults to the
    stream's own folder. A checkpoint belongs to one table: reset both together.

    >>> start_alerts(spark).awaitTermination()  # doctest: +SKIP
    """
    trigger = dict(trigger or {"availableNow": True})
    if checkpoint is None:
        checkpoint = _checkpoint(spark)
    if profiles_df is None:
        profiles_df = _profiles(spark)
    create_alerts_table(spark, table)
    detections_df = spark.readStream.table(source).transform(alert_detections(profiles_df))
    return (
        detections_df.writeStream.queryName(f"alerts_{table.replace('.', '_')}")
        .outputMode("update")
        .foreachBatch(alert_writer(table, writer_id(table, checkpoint)))
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )


def _checkpoint(spark: SparkSession) -> str:
    return checkpoint(spark, CHECKPOINT_NAME)


def ensure_alerts(spark: SparkSession, *, scale: str = "tiny", seed: int = 42) -> str:
    """Build Silver (landing + Bronze + Silver, idempotent) and run the alerting stream once
    with availableNow: new events only, thanks to its checkpoint. Returns ``gold.payment_alerts``.
    """
    from lakehouse.streaming import pipeline

    pipeline.ensure_silver(spark, scale=scale, seed=seed)
    query = start_alerts(spark)
    try:
        query.awaitTermination()
    finally:
        query.stop()
    return ALERTS


# --------------------------------------------------------------------------- checks


def match_scenarios(alerts: Iterable, scenarios: Iterable[Mapping]) -> tuple[list, list, list]:
    """Compare alert rows (kind, customer_id, transaction_ids) with the simulator's injected
    scenarios (kind, customer_id, transaction_ids). Returns (detected, missed, extra): the
    scenarios whose transactions all lie in one alert of their kind and customer, those that
    do not, and the alerts that match no scenario (organic data meeting a pattern)."""
    rows = [(a["kind"], a["customer_id"], set(a["transaction_ids"] or ())) for a in alerts]
    detected, missed, used = [], [], set()
    for scenario in scenarios:
        wanted = set(scenario["transaction_ids"])
        hits = [
            i
            for i, (kind, customer, txns) in enumerate(rows)
            if kind == scenario["kind"] and customer == scenario["customer_id"] and wanted <= txns
        ]
        (detected if hits else missed).append(scenario)
        used.update(hits)
    extra = [row for i, row in enumerate(rows) if i not in used]
    return detected, missed, extra


def check_scenarios_detected(alerts_df: DataFrame, scenarios: Iterable[Mapping]) -> list:
    """Assert every injected scenario has an alert of its kind and customer holding all its
    transactions; return the detected scenarios as sorted (kind, customer_id) pairs."""
    scenarios = list(scenarios)
    alerts = alerts_df.select("kind", "customer_id", "transaction_ids").collect()
    detected, missed, _ = match_scenarios(alerts, scenarios)
    assert not missed, (
        f"{len(missed)} injected scenario(s) raised no alert: "
        + "; ".join(f"{s['kind']} {s['customer_id']} {list(s['transaction_ids'])}" for s in missed)
        + ". Check the thresholds (>= not >), that windows slide every minute, and that the "
        "merge keeps every episode."
    )
    return sorted((s["kind"], s["customer_id"]) for s in detected)


__all__ = [
    "ALERTS",
    "ALERTS_SCHEMA",
    "ALERT_COLUMNS",
    "AMOUNT_ANOMALY_RATIO",
    "CASH_VELOCITY_MIN",
    "EVENT_WATERMARK",
    "GEO_SPREAD_MIN",
    "KINDS",
    "RAPID_FIRE_MIN",
    "STRUCTURING_MIN",
    "alert_detections",
    "alert_upserts",
    "alert_writer",
    "check_same_alerts",
    "check_scenarios_detected",
    "create_alerts_table",
    "detect_batch",
    "detections",
    "ensure_alerts",
    "episodes",
    "flag_patterns",
    "match_scenarios",
    "merge_alerts",
    "risk_score",
    "start_alerts",
    "window_features",
    "with_amount_ratio",
    "with_risk_score",
    "writer_id",
]


def _alert_rows(df: DataFrame) -> set[tuple]:
    return {
        (
            r.alert_id,
            r.kind,
            r.customer_id,
            r.window_start,
            r.window_end,
            r.score,
            r.measure,
            tuple(r.transaction_ids or ()),
        )
        for r in df.select(*ALERT_COLUMNS[:-1]).collect()
    }


def check_same_alerts(actual_df: DataFrame, expected_df: DataFrame, what: str = ALERTS) -> int:
    """Assert ``actual_df`` holds exactly the alerts of ``expected_df`` (every column but
    details and detected_at); return how many. The message names what is missing or extra."""
    actual, expected = _alert_rows(actual_df), _alert_rows(expected_df)
    missing, extra = sorted(expected - actual), sorted(actual - expected)
    assert not missing and not extra, (
        f"{what} holds {len(actual)} alerts, the batch detection {len(expected)}: "
        f"{len(missing)} missing (e.g. {[m[1:3] for m in missing[:3]]}), {len(extra)} extra "
        f"(e.g. {[e[1:3] for e in extra[:3]]}). One alert per episode: MERGE on alert_id the "
        "batch's detections collapsed with the alerts already there (risk.alert_upserts), "
        "with the delete, update and insert clauses."
    )
    return len(actual)
