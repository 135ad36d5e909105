"""The streaming Bronze -> Silver pipeline of the real-time payments: raw event files land in
``bronze.payment_events`` exactly once, then every row either becomes a typed, deduplicated,
enriched ``silver.payment_events`` row or a ``silver.payment_events_quarantine`` row with its
reasons.

Three streams, each with its own checkpoint::

    landing folder (JSON lines)  --bronze-->      bronze.payment_events            (raw, lineage)
    bronze.payment_events        --silver-->      silver.payment_events            (valid, deduped)
    bronze.payment_events        --quarantine-->  silver.payment_events_quarantine (invalid)

Every transformation is a ``DataFrame -> DataFrame`` function of plain columns, so it runs on a
streaming frame and on a batch frame alike (the unit tests use small batch frames).

Example::

    from lakehouse.streaming import pipeline

    counts = pipeline.ensure_silver(spark, scale="tiny", seed=42)   # landing + the three streams
    pipeline.reconcile(spark)          # bronze rows = silver + quarantined + duplicates removed
    spark.table("silver.payment_events").groupBy("risk_tier").count().show()

Every row is accounted for: a Bronze row is either quarantined (it breaks a rule), or a
redelivery of a transaction already in Silver (removed by the dedup), or in Silver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse import streaming
from lakehouse.bronze import CORRUPT_RECORD, INGESTION_TIMESTAMP, SOURCE_FILE
from lakehouse.datagen._reference import LOCATIONS
from lakehouse.gold.facts import FX_PER_USD, to_usd

# --------------------------------------------------------------------------- schemas

# The files' JSON exactly as it is written: amounts and timestamps are JSON strings (typed in
# Silver, where a value that does not cast becomes a reason, never a failed job); numbers and
# booleans are JSON numbers and booleans. device_fingerprint is declared from the start so
# the files before and after the producer's schema change read with one schema (it is null in
# the older files). A line that does not parse is kept whole in _corrupt_record (PERMISSIVE).
RAW_SCHEMA = StructType(
    [
        StructField("transaction_id", StringType()),
        StructField("event_ts", StringType()),
        StructField("ingest_ts", StringType()),
        StructField("customer_id", StringType()),
        StructField("merchant_id", StringType()),
        StructField("merchant_category", StringType()),
        StructField("amount", StringType()),
        StructField("currency", StringType()),
        StructField("card_network", StringType()),
        StructField("card_last4", StringType()),
        StructField("channel", StringType()),
        StructField("country", StringType()),
        StructField("city", StringType()),
        StructField("lat", DoubleType()),
        StructField("lon", DoubleType()),
        StructField("status", StringType()),
        StructField("decline_reason", StringType()),
        StructField("fraud_score", DoubleType()),
        StructField("is_fraud", BooleanType()),
        StructField("device_fingerprint", StringType()),
        StructField(CORRUPT_RECORD, StringType()),
    ]
)
RAW_COLUMNS = tuple(f.name for f in RAW_SCHEMA.fields if f.name != CORRUPT_RECORD)
LINEAGE_COLUMNS = (SOURCE_FILE, INGESTION_TIMESTAMP)

# Where a Bronze row came from when the source is Kafka: the message's topic, partition and
# offset (together its unique address) and the broker's timestamp. NULL on rows read from
# files, whose address is _source_file.
KAFKA_TOPIC = "_kafka_topic"
KAFKA_PARTITION = "_kafka_partition"
KAFKA_OFFSET = "_kafka_offset"
KAFKA_TIMESTAMP = "_kafka_timestamp"
KAFKA_LINEAGE = StructType(
    [
        StructField(KAFKA_TOPIC, StringType()),
        StructField(KAFKA_PARTITION, IntegerType()),
        StructField(KAFKA_OFFSET, LongType()),
        StructField(KAFKA_TIMESTAMP, TimestampType()),
    ]
)
KAFKA_LINEAGE_COLUMNS = tuple(KAFKA_LINEAGE.fieldNames())

BRONZE_SCHEMA = StructType(
    [
        *RAW_SCHEMA.fields,
        StructField(SOURCE_FILE, StringType()),
        StructField(INGESTION_TIMESTAMP, TimestampType()),
        *KAFKA_LINEAGE.fields,
    ]
)
# The two sources Bronze can stream from, recorded on the table (TBLPROPERTIES) when it is
# created: its checkpoint holds one source's positions (files read, or offsets), so a Bronze
# table keeps its source until it is reset.
SOURCES = ("kafka", "files")
SOURCE_PROPERTY = "lakehouse.source"

VALIDATION_ERRORS = "_validation_errors"
# The one reason of a line (or Kafka message) that is not JSON: its other fields mean nothing.
UNPARSED_REASON = "record: the JSON line did not parse (kept in _corrupt_record)"
# The simulator's defect classes that make a row invalid (the rest, duplicates, late and
# out-of-order events, are valid rows that dedup and watermarks deal with).
QUARANTINE_DEFECT_CLASSES = ("malformed_rows", "null_required", "negative_amounts")
QUARANTINE_SCHEMA = StructType(
    [*BRONZE_SCHEMA.fields, StructField(VALIDATION_ERRORS, ArrayType(StringType(), False))]
)

AMOUNT = DecimalType(12, 2)
# The columns the typed parse turns from JSON strings into their types.
TYPED_COLUMNS: dict[str, str] = {
    "event_ts": "timestamp",
    "ingest_ts": "timestamp",
    "amount": "decimal(12,2)",
}
# Values every payment must carry (the source's data contract; decline_reason, lat/lon and
# device_fingerprint may be null).
REQUIRED_COLUMNS = (
    "transaction_id",
    "event_ts",
    "ingest_ts",
    "customer_id",
    "merchant_id",
    "merchant_category",
    "amount",
    "currency",
    "card_network",
    "card_last4",
    "channel",
    "country",
    "city",
    "status",
    "fraud_score",
    "is_fraud",
)

# silver.payment_events, column by column (the module's contract with lessons 03-06).
SILVER_SCHEMA = StructType(
    [
        StructField("transaction_id", StringType()),
        StructField("event_ts", TimestampType()),
        StructField("ingest_ts", TimestampType()),
        StructField("customer_id", StringType()),
        StructField("merchant_id", StringType()),
        StructField("merchant_category", StringType()),
        StructField("amount", AMOUNT),
        StructField("currency", StringType()),
        StructField("amount_usd", AMOUNT),
        StructField("card_network", StringType()),
        StructField("card_last4", StringType()),
        StructField("channel", StringType()),
        StructField("country", StringType()),
        StructField("city", StringType()),
        StructField("lat", DoubleType()),
        StructField("lon", DoubleType()),
        StructField("status", StringType()),
        StructField("decline_reason", StringType()),
        StructField("fraud_score", DoubleType()),
        StructField("is_fraud", BooleanType()),
        StructField("device_fingerprint", StringType()),
        StructField("rule_high_amount", BooleanType()),
        StructField("rule_night_time", BooleanType()),
        StructField("rule_above_customer_average", BooleanType()),
        StructField("fraud_rules", ArrayType(StringType())),
        StructField("risk_tier", StringType()),
        StructField("is_reportable", BooleanType()),
        StructField("is_near_threshold", BooleanType()),
        StructField("is_cash", BooleanType()),
        StructField("is_cross_border", BooleanType()),
        StructField(SOURCE_FILE, StringType()),
        StructField(INGESTION_TIMESTAMP, TimestampType()),
    ]
)
SILVER_COLUMNS = tuple(SILVER_SCHEMA.fieldNames())

PROFILE_SCHEMA = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("home_country", StringType()),
        StructField("avg_amount_usd", DecimalType(16, 6)),
        StructField("txn_count", LongType()),
    ]
)

# --------------------------------------------------------------------------- rules

# Redeliveries arrive within minutes of the first delivery; the watermark is on ingest_ts, the
# producer's arrival time, so an event whose event_ts is late is never dropped here (windows in
# lesson 03 decide what is too late for them).
DEDUP_WATERMARK = "15 minutes"
DEDUP_KEY = ("transaction_id",)

# Compliance: a payment of 10,000 USD or more is reported to the regulator (a currency
# transaction report); one just below it (9,000 up to 9,999.99) is what structuring looks like.
REPORTING_THRESHOLD_USD = 10000
NEAR_THRESHOLD_USD = 9000
CASH_CHANNEL = "atm"

# Fraud rules: each is one boolean column named rule_<name>, and fraud_rules lists the names hit.
# rule_high_amount: a single payment this large is rare for a card and worth a look on its own.
HIGH_AMOUNT_USD = 5000
# rule_night_time: card fraud clusters in the hours the cardholder sleeps, in the local time of
# the place the card was used (00:00 to 04:59).
NIGHT_START_HOUR = 0
NIGHT_END_HOUR = 5  # exclusive: 05:00 is morning
# rule_above_customer_average: far above what this customer usually spends (their average
# payment in the June history, approved or declined: every attempt shows the card's habits).
# A customer without history never hits it: no baseline means no evidence, and the other
# rules still apply.
CUSTOMER_AVERAGE_MULTIPLE = 5

FRAUD_RULES: dict[str, str] = {
    "high_amount": f"amount_usd >= {HIGH_AMOUNT_USD:,}",
    "night_time": (
        f"local hour of event_ts in the city's time zone in [{NIGHT_START_HOUR:02d}:00, "
        f"{NIGHT_END_HOUR:02d}:00)"
    ),
    "above_customer_average": (
        f"amount_usd > {CUSTOMER_AVERAGE_MULTIPLE} x the customer's average payment "
        "(June history); false without history"
    ),
}

# risk_tier: the upstream risk engine's fraud_score and the rules hit, combined.
#   high:   fraud_score >= 0.8, or two rules or more (independent signals agreeing)
#   medium: one rule, or fraud_score >= 0.5
#   low:    everything else
HIGH_RISK_SCORE = 0.8
MEDIUM_RISK_SCORE = 0.5
RISK_TIERS = ("low", "medium", "high")

# The IANA time zone of every city the payments happen in (lakehouse.datagen._reference).
CITY_TIME_ZONES: dict[str, str] = {
    "New York": "America/New_York",
    "Los Angeles": "America/Los_Angeles",
    "Chicago": "America/Chicago",
    "Houston": "America/Chicago",
    "Seattle": "America/Los_Angeles",
    "Boston": "America/New_York",
    "Austin": "America/Chicago",
    "Denver": "America/Denver",
    "Miami": "America/New_York",
    "Atlanta": "America/New_York",
    "London": "Europe/London",
    "Manchester": "Europe/London",
    "Edinburgh": "Europe/London",
    "Bristol": "Europe/London",
    "Berlin": "Europe/Berlin",
    "München": "Europe/Berlin",
    "Hamburg": "Europe/Berlin",
    "Paris": "Europe/Paris",
    "Lyon": "Europe/Paris",
    "Madrid": "Europe/Madrid",
    "Barcelona": "Europe/Madrid",
    "Milan": "Europe/Rome",
    "Rome": "Europe/Rome",
    "Amsterdam": "Europe/Amsterdam",
    "Dublin": "Europe/Dublin",
    "Toronto": "America/Toronto",
    "Vancouver": "America/Vancouver",
    "Tokyo": "Asia/Tokyo",
    "Mexico City": "America/Mexico_City",
    "Singapore": "Asia/Singapore",
}
_missing_zones = {loc.city for loc in LOCATIONS} - set(CITY_TIME_ZONES)
assert not _missing_zones, f"CITY_TIME_ZONES lacks {sorted(_missing_zones)}"


# --------------------------------------------------------------------------- helpers


def _require(df: DataFrame, columns: Iterable[str], what: str, hint: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(map(repr, missing))}: {hint}")


def _case(mapping: Mapping[str, object], key: Column) -> Column:
    """``CASE key WHEN k1 THEN v1 ...`` from a Python mapping (NULL for a key not in it)."""
    result = None
    for k, v in mapping.items():
        result = (F.when if result is None else result.when)(key == F.lit(k), F.lit(v))
    return result


def _blank(c: Column) -> Column:
    return c.isNull() | (F.trim(c.cast("string")) == "")


# --------------------------------------------------------------------------- Bronze


def read_landing(spark: SparkSession, landing: str | None = None, **options: str) -> DataFrame:
    """The landing folder as a stream of raw rows with lineage: :data:`RAW_SCHEMA` (explicit,
    so nothing is inferred and a new file never changes the columns), PERMISSIVE with the
    unparsed line in ``_corrupt_record``, ``_source_file`` from the file metadata and
    ``_ingestion_timestamp`` (when the micro-batch ran). Extra ``options`` go to the reader,
    e.g. ``maxFilesPerTrigger="1"``.

    >>> bronze_df = read_landing(spark)            # doctest: +SKIP
    """
    return with_bronze_lineage(
        spark.readStream.schema(RAW_SCHEMA)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .options(**options)
        .json(landing or streaming.landing(spark))
    )


def with_bronze_lineage(df: DataFrame) -> DataFrame:
    """Add ``_source_file`` (the file a row came from) and ``_ingestion_timestamp`` to a frame
    read from files: :data:`BRONZE_SCHEMA`'s columns, the Kafka lineage NULL."""
    return df.select(
        *RAW_SCHEMA.fieldNames(),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
        F.current_timestamp().alias(INGESTION_TIMESTAMP),
        *[F.lit(None).cast(f.dataType).alias(f.name) for f in KAFKA_LINEAGE.fields],
    )


def read_kafka(
    spark: SparkSession,
    *,
    bootstrap_servers: str | None = None,
    topic: str | None = None,
    **options: str,
) -> DataFrame:
    """The Kafka topic (default ``streaming.TOPIC`` on the course's broker) as a stream of
    Bronze rows (:func:`parse_kafka_messages`), from the earliest offset the topic keeps.
    Extra ``options`` go to the reader, e.g. ``maxOffsetsPerTrigger="500"``. The checkpoint
    records the offsets read per partition, so each message lands once. An unknown topic or a
    broker that does not answer raises ``KafkaError`` naming it.

    >>> bronze_df = read_kafka(spark)              # doctest: +SKIP
    """
    from lakehouse.services import kafka

    servers, topic = bootstrap_servers or kafka.bootstrap_servers(), topic or streaming.TOPIC
    # Spark's source finds no partitions for a topic that does not exist and reads nothing,
    # without an error: look first, so a misspelt topic or a stopped broker is named.
    kafka.end_offsets(topic, bootstrap_servers=servers)
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .options(**options)
        .load()
        .transform(parse_kafka_messages)
    )


def parse_kafka_messages(df: DataFrame) -> DataFrame:
    """Kafka records (the connector's ``key``, ``value``, ``topic``, ``partition``, ``offset``,
    ``timestamp``) -> :data:`BRONZE_SCHEMA` rows, on a stream or a batch read alike.

    The value is parsed with ``from_json`` and :data:`RAW_SCHEMA` in PERMISSIVE mode, exactly
    as the file reader parses a line: a value that is not JSON keeps its text in
    ``_corrupt_record`` (a message without a value keeps ``""``), so it reaches the quarantine
    with its reason instead of failing the stream or vanishing."""
    _require(
        df,
        ["value", "topic", "partition", "offset", "timestamp"],
        "the frame of Kafka records",
        'read it with spark.readStream.format("kafka")',
    )
    value = F.col("value").cast("string")
    event = F.from_json(
        value, RAW_SCHEMA, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_RECORD}
    )
    return df.select(
        event.alias("event"), value.alias("value"), "topic", "partition", "offset", "timestamp"
    ).select(
        *[F.col(f"event.{name}").alias(name) for name in RAW_COLUMNS],
        F.coalesce(
            F.col(f"event.{CORRUPT_RECORD}"), F.when(F.col("value").isNull(), F.lit(""))
        ).alias(CORRUPT_RECORD),
        F.lit(None).cast("string").alias(SOURCE_FILE),
        F.current_timestamp().alias(INGESTION_TIMESTAMP),
        F.col("topic").alias(KAFKA_TOPIC),
        F.col("partition").alias(KAFKA_PARTITION),
        F.col("offset").alias(KAFKA_OFFSET),
        F.col("timestamp").alias(KAFKA_TIMESTAMP),
    )


def to_bronze_columns(df: DataFrame) -> DataFrame:
    """Rows of either source -> exactly :data:`BRONZE_SCHEMA`'s columns, in order: the raw
    fields, then the lineage, the other source's lineage columns as typed NULLs (a file has
    no offset, a message no file)."""
    _require(
        df,
        [*RAW_COLUMNS, CORRUPT_RECORD, INGESTION_TIMESTAMP],
        "the Bronze frame",
        "parse the JSON with RAW_SCHEMA and add _ingestion_timestamp",
    )
    return df.select(
        *[
            F.col(f.name) if f.name in df.columns else F.lit(None).cast(f.dataType).alias(f.name)
            for f in BRONZE_SCHEMA.fields
        ]
    )


def kafka_unavailable(spark: SparkSession, bootstrap_servers: str | None = None) -> str | None:
    """Why this session cannot stream from the course's Kafka broker, in one sentence, or None
    when it can: the embedded engine has no Kafka connector, and a broker must answer."""
    from lakehouse.services import kafka
    from lakehouse.session import engine_of

    servers = bootstrap_servers or kafka.bootstrap_servers()
    if engine_of(spark) == "embedded":
        return "the embedded engine has no Kafka connector (LAKEHOUSE_ENGINE=delta-spark has it)"
    if not kafka.reachable(servers):
        return f"no Kafka broker answers at {servers} (make kafka-start starts the course's)"
    return None


def bronze_source(spark: SparkSession) -> str | None:
    """The source ``bronze.payment_events`` streams from (``"kafka"`` or ``"files"``, as
    recorded when it was created), or None when the table does not exist."""
    if not spark.catalog.tableExists(streaming.BRONZE):
        return None
    properties = {
        r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {streaming.BRONZE}").collect()
    }
    return properties.get(SOURCE_PROPERTY, "files")


def choose_source(
    spark: SparkSession, source: str = "auto", *, bootstrap_servers: str | None = None
) -> tuple[str, str]:
    """Decide where Bronze streams from; returns ``(source, why)``.

    ``"auto"``: the source an existing ``bronze.payment_events`` was created with (its
    checkpoint holds that source's positions), else Kafka when :func:`kafka_unavailable` has
    no objection, else the files. ``"kafka"`` or ``"files"``: that source, or a ValueError
    when Kafka cannot be reached or Bronze was created from the other source (reset first)."""
    if source not in ("auto", *SOURCES):
        raise ValueError(f"source={source!r}: use 'auto', 'kafka' or 'files'")
    existing = bronze_source(spark)
    if existing and source not in ("auto", existing):
        raise ValueError(
            f"{streaming.BRONZE} streams from {existing} (its checkpoint holds that source's "
            f"positions); to switch it to {source}, reset it first (pipeline.reset(spark), or "
            "the lesson's reset=True)"
        )
    wanted = existing or source
    if wanted in ("auto", "kafka"):
        reason = kafka_unavailable(spark, bootstrap_servers)
        if reason is None:
            why = "an existing Bronze table fed from Kafka" if existing else "a broker answers"
            return "kafka", f"Bronze streams from the Kafka topic {streaming.TOPIC} ({why})."
        if wanted == "kafka":
            raise ValueError(f"Bronze cannot stream from Kafka: {reason}")
        return "files", f"Bronze streams from the landing folder's files: {reason}."
    why = "an existing Bronze table fed from files" if existing else "as asked"
    return "files", f"Bronze streams from the landing folder's files ({why})."


def create_bronze_table(spark: SparkSession, source: str = "files") -> None:
    """Create ``bronze.payment_events`` if missing: raw columns, both lineages,
    ``delta.appendOnly`` (Bronze never changes a row it landed) and the ``source`` it streams
    from (``lakehouse.source``)."""
    from lakehouse.tables import DeltaTable

    if source not in SOURCES:
        raise ValueError(f"source={source!r}: use 'kafka' or 'files'")
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {streaming.BRONZE.split('.')[0]}")
    (
        DeltaTable.createIfNotExists(spark)
        .tableName(streaming.BRONZE)
        .addColumns(BRONZE_SCHEMA)
        .comment("Payment events as the stream delivered them: raw JSON fields and lineage.")
        .property("delta.appendOnly", "true")
        .property("quality", "bronze")
        .property(SOURCE_PROPERTY, source)
        .execute()
    )


def _start(df: DataFrame, table: str, checkpoint: str, trigger: Mapping | None, name: str):
    return (
        df.writeStream.format("delta")
        .queryName(name)
        .outputMode("append")
        .option("checkpointLocation", checkpoint)
        .trigger(**(trigger or {"availableNow": True}))
        .toTable(table)
    )


def start_bronze(
    spark: SparkSession,
    *,
    source: str = "files",
    landing: str | None = None,
    bootstrap_servers: str | None = None,
    topic: str | None = None,
    trigger: Mapping | None = None,
    **options: str,
):
    """Start the Bronze stream into ``bronze.payment_events`` with the checkpoint
    ``streaming.checkpoint(spark, "bronze")``: from the landing folder (``source="files"``,
    the checkpoint lists the files read) or from the Kafka topic (``source="kafka"``, the
    checkpoint holds the offsets read). Either way each line or message lands once.
    ``trigger`` defaults to ``{"availableNow": True}``; a live run passes e.g.
    ``{"processingTime": "5 seconds"}``. Extra ``options`` go to the reader. Returns the
    StreamingQuery.

    >>> start_bronze(spark, source="kafka").awaitTermination()     # doctest: +SKIP
    """
    existing = bronze_source(spark)
    if existing and existing != source:
        choose_source(spark, source)  # raises, naming the reset
    create_bronze_table(spark, source)
    if source == "kafka":
        df = read_kafka(spark, bootstrap_servers=bootstrap_servers, topic=topic, **options)
    else:
        df = read_landing(spark, landing, **options)
    return _start(
        df, streaming.BRONZE, streaming.checkpoint(spark, "bronze"), trigger, "payments_bronze"
    )


# --------------------------------------------------------------------------- validation


def validation_errors() -> Column:
    """``array<string>`` of every rule a raw row breaks; empty for a valid row.

    Rules: the line parsed (``_corrupt_record`` is null); required values are present;
    ``event_ts``/``ingest_ts`` are timestamps and ``amount`` a decimal; ``amount`` is not
    negative; ``currency`` is one of the FX table's. The messages read like
    ``"amount: 'abc' is not a decimal(12,2)"`` (the same wording as
    ``lakehouse.silver.validation``, so ``validation.defect_class`` classifies them)."""
    if_unparsed = F.array(F.lit(UNPARSED_REASON))
    checks: list[Column] = []
    for name in REQUIRED_COLUMNS:
        checks.append(F.when(_blank(F.col(name)), F.lit(f"{name}: required but missing")))
    for name, type_name in TYPED_COLUMNS.items():
        raw = F.col(name)
        checks.append(
            F.when(
                ~_blank(raw) & raw.try_cast(type_name).isNull(),
                F.concat(F.lit(f"{name}: '"), raw, F.lit(f"' is not a {type_name}")),
            )
        )
    amount = F.col("amount").try_cast(AMOUNT)
    checks.append(
        F.when(amount < 0, F.concat(F.lit("amount: negative amount "), amount.cast("string")))
    )
    currency = F.col("currency")
    checks.append(
        F.when(
            ~_blank(currency) & ~currency.isin(*FX_PER_USD),
            F.concat(
                F.lit("currency: '"),
                currency,
                F.lit(f"' is not a known currency ({', '.join(FX_PER_USD)})"),
            ),
        )
    )
    reasons = F.filter(F.array(*checks), lambda r: r.isNotNull())
    # A line that did not parse has no trustworthy fields: its one reason is that.
    return F.when(F.col(CORRUPT_RECORD).isNotNull(), if_unparsed).otherwise(reasons)


def with_validation_errors(df: DataFrame) -> DataFrame:
    """Bronze rows -> the same rows plus ``_validation_errors`` (see :func:`validation_errors`).

    >>> bronze_df.transform(with_validation_errors)      # doctest: +SKIP
    """
    _require(
        df,
        [*RAW_COLUMNS, CORRUPT_RECORD],
        "the frame to validate",
        f"pass rows read with RAW_SCHEMA (e.g. {streaming.BRONZE})",
    )
    return df.withColumn(VALIDATION_ERRORS, validation_errors())


def quarantined(df: DataFrame) -> DataFrame:
    """Validated rows -> the invalid ones: raw columns, lineage and ``_validation_errors``."""
    return df.where(F.size(VALIDATION_ERRORS) > 0).select(*QUARANTINE_SCHEMA.fieldNames())


def valid(df: DataFrame) -> DataFrame:
    """Validated rows -> the valid ones (``_validation_errors`` dropped: it is empty)."""
    return df.where(F.size(VALIDATION_ERRORS) == 0).drop(VALIDATION_ERRORS)


def parse_events(df: DataFrame) -> DataFrame:
    """Valid raw rows -> typed rows: timestamps and the decimal amount parsed, raw columns in
    the source's order, lineage kept (``_corrupt_record`` dropped: it is null on a valid row)."""
    _require(df, RAW_COLUMNS, "the frame to parse", "pass valid Bronze rows")
    typed = {name: F.col(name).try_cast(t).alias(name) for name, t in TYPED_COLUMNS.items()}
    lineage = [c for c in LINEAGE_COLUMNS if c in df.columns]
    return df.select(*[typed.get(c, F.col(c)) for c in RAW_COLUMNS], *lineage)


def deduplicate(df: DataFrame) -> DataFrame:
    """Drop redeliveries: one row per ``transaction_id`` within the watermark on ``ingest_ts``.

    On a stream the ids seen are kept in state until the watermark (max ingest_ts seen minus
    :data:`DEDUP_WATERMARK`) passes them, so state stays bounded; a redelivery arriving in a
    later micro-batch within that time is still removed. On a batch frame (a test, a backfill)
    it is ``dropDuplicates`` on the key: Spark accepts ``dropDuplicatesWithinWatermark`` on
    streams only, and a batch sees every row at once anyway."""
    _require(df, [*DEDUP_KEY, "ingest_ts"], "the frame to deduplicate", "parse it first")
    if not df.isStreaming:
        return df.dropDuplicates(list(DEDUP_KEY))
    return df.withWatermark("ingest_ts", DEDUP_WATERMARK).dropDuplicatesWithinWatermark(
        list(DEDUP_KEY)
    )


def logical_plan(df: DataFrame) -> str:
    """The parsed logical plan of ``df`` as Spark prints it (``explain(mode="extended")``),
    classic or Spark Connect alike."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        df.explain(mode="extended")
    text = out.getvalue()
    return text.split("== Analyzed Logical Plan ==")[0]


def check_deduplicate(deduplicated_df: DataFrame) -> None:
    """Assert a streaming frame drops redeliveries the bounded way: a watermark of
    :data:`DEDUP_WATERMARK` on ``ingest_ts`` and ``dropDuplicatesWithinWatermark`` keyed on
    ``transaction_id`` alone. Raises ``AssertionError`` saying what to change."""
    import re

    assert deduplicated_df.isStreaming, (
        "Pass the deduplicated *streaming* frame (built on spark.readStream...): "
        "dropDuplicatesWithinWatermark is a streaming operator"
    )
    plan = logical_plan(deduplicated_df)
    dedup = re.search(r"(Deduplicate\w*) \[([^\]]*)\]", plan)
    assert dedup is not None, "No deduplication in the plan: call dropDuplicatesWithinWatermark"
    operator, keys = dedup.group(1), re.sub(r"#\d+", "", dedup.group(2)).split(", ")
    assert operator == "DeduplicateWithinWatermark", (
        f"The plan deduplicates with {operator}: dropDuplicates keeps every id seen in state "
        "forever; use dropDuplicatesWithinWatermark, whose state the watermark bounds"
    )
    assert keys == list(DEDUP_KEY), (
        f"Deduplication is keyed on {keys}: key it on {list(DEDUP_KEY)} only (a redelivery "
        "differs from the first delivery in its lineage columns)"
    )
    mark = re.search(r"EventTimeWatermark [^,]+, (\w+)#\d+: timestamp, ([^\n]+)", plan)
    assert mark is not None, (
        f'No watermark: call withWatermark("ingest_ts", "{DEDUP_WATERMARK}") before '
        "dropDuplicatesWithinWatermark"
    )
    assert (mark.group(1), mark.group(2).strip()) == ("ingest_ts", DEDUP_WATERMARK), (
        f"The watermark is {mark.group(2).strip()!r} on {mark.group(1)!r}: use "
        f'withWatermark("ingest_ts", "{DEDUP_WATERMARK}") (arrival time: a late event_ts must '
        "not make an event look too old to keep)"
    )


# --------------------------------------------------------------------------- enrichment


def with_amount_usd(df: DataFrame) -> DataFrame:
    """``amount_usd``: ``amount / units per USD``, rounded half-up to the cent, DECIMAL(12,2)
    (``lakehouse.gold.facts.to_usd``: the same fixed FX table and rounding as Gold)."""
    return df.withColumn("amount_usd", to_usd("amount", "currency"))


def local_time(ts: str | Column, city: str | Column) -> Column:
    """``ts`` (UTC) as the wall-clock time in ``city``'s time zone (NULL for an unknown city)."""
    ts = F.col(ts) if isinstance(ts, str) else ts
    city = F.col(city) if isinstance(city, str) else city
    return F.from_utc_timestamp(ts, _case(CITY_TIME_ZONES, city))


def customer_profiles(spark: SparkSession) -> DataFrame:
    """One row per CRM customer: ``customer_id``, ``home_country`` (silver.customers'
    ``country``), ``avg_amount_usd`` (average payment in USD, approved or declined, in the batch
    history ``silver.payments``, June 2026; NULL without one) and ``txn_count`` (its payments).

    Builds the two Silver tables if missing (``lakehouse.gold.ensure_silver_inputs``)."""
    from lakehouse.config import settings
    from lakehouse.gold import ensure_silver_inputs
    from lakehouse.session import settings_of

    raw_root = (settings_of(spark) or settings()).source_path()
    ensure_silver_inputs(spark, ["silver.customers", "silver.payments"], raw_root)
    return profiles_from(spark.table("silver.customers"), spark.table("silver.payments"))


def profiles_from(customers_df: DataFrame, payments_df: DataFrame) -> DataFrame:
    """:func:`customer_profiles` from the two frames (the testable part)."""
    history = (
        payments_df.transform(with_amount_usd)
        .groupBy("customer_id")
        .agg(F.avg("amount_usd").alias("avg_amount_usd"), F.count("*").alias("txn_count"))
    )
    return (
        customers_df.select("customer_id", F.col("country").alias("home_country"))
        .join(history, "customer_id", "left")
        .select(
            "customer_id",
            "home_country",
            F.col("avg_amount_usd").cast(PROFILE_SCHEMA["avg_amount_usd"].dataType),
            F.coalesce("txn_count", F.lit(0)).cast("long").alias("txn_count"),
        )
    )


def with_customer_profile(profiles_df: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Join each payment to its customer's profile (``home_country``, ``avg_amount_usd``): a
    stream-static left join whose static side is broadcast (a few hundred rows; on a stream
    Spark re-reads it each micro-batch, so a refreshed profile table is picked up)."""
    _require(
        profiles_df,
        ["customer_id", "home_country", "avg_amount_usd"],
        "the profiles frame",
        "use customer_profiles(spark)",
    )
    profile = F.broadcast(profiles_df.select("customer_id", "home_country", "avg_amount_usd"))

    def transform(df: DataFrame) -> DataFrame:
        return df.join(profile, "customer_id", "left")

    return transform


def with_fraud_rules(df: DataFrame) -> DataFrame:
    """The rule columns of :data:`FRAUD_RULES`, ``fraud_rules`` (names hit, in that order) and
    ``risk_tier``. Needs ``amount_usd``, ``event_ts``, ``city``, ``fraud_score`` and the
    profile's ``avg_amount_usd``. Every rule is false (never NULL) when its input is missing."""
    _require(
        df,
        ["amount_usd", "event_ts", "city", "fraud_score", "avg_amount_usd"],
        "the frame for the fraud rules",
        "apply with_amount_usd and with_customer_profile first",
    )
    hour = F.hour(local_time("event_ts", "city"))
    rules = {
        "high_amount": F.col("amount_usd") >= F.lit(HIGH_AMOUNT_USD),
        "night_time": (hour >= NIGHT_START_HOUR) & (hour < NIGHT_END_HOUR),
        "above_customer_average": (
            F.col("amount_usd") > F.col("avg_amount_usd") * F.lit(CUSTOMER_AVERAGE_MULTIPLE)
        ),
    }
    df = df.withColumns({f"rule_{n}": F.coalesce(c, F.lit(False)) for n, c in rules.items()})
    hits = F.filter(
        F.array(*[F.when(F.col(f"rule_{n}"), F.lit(n)) for n in rules]), lambda r: r.isNotNull()
    )
    df = df.withColumn("fraud_rules", hits)
    n_rules, score = F.size("fraud_rules"), F.col("fraud_score")
    return df.withColumn(
        "risk_tier",
        F.when((score >= HIGH_RISK_SCORE) | (n_rules >= 2), "high")
        .when((n_rules == 1) | (score >= MEDIUM_RISK_SCORE), "medium")
        .otherwise("low"),
    )


def with_compliance_flags(df: DataFrame) -> DataFrame:
    """``is_reportable`` (amount_usd >= 10,000), ``is_near_threshold`` (9,000 <= amount_usd <
    10,000), ``is_cash`` (an ATM withdrawal) and ``is_cross_border`` (country differs from the
    customer's home country; false when the home country is unknown)."""
    _require(
        df,
        ["amount_usd", "channel", "country", "home_country"],
        "the frame for the compliance flags",
        "apply with_amount_usd and with_customer_profile first",
    )
    usd = F.col("amount_usd")
    return df.withColumns(
        {
            "is_reportable": F.coalesce(usd >= REPORTING_THRESHOLD_USD, F.lit(False)),
            "is_near_threshold": F.coalesce(
                (usd >= NEAR_THRESHOLD_USD) & (usd < REPORTING_THRESHOLD_USD), F.lit(False)
            ),
            "is_cash": F.coalesce(F.col("channel") == CASH_CHANNEL, F.lit(False)),
            "is_cross_border": F.coalesce(F.col("country") != F.col("home_country"), F.lit(False)),
        }
    )


def to_silver_columns(df: DataFrame) -> DataFrame:
    """Exactly the columns of ``silver.payment_events``, in :data:`SILVER_SCHEMA`'s order."""
    _require(df, SILVER_COLUMNS, "the enriched frame", "run enrich() on parsed rows")
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in SILVER_SCHEMA])


def enrich(profiles_df: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Parsed (deduplicated) rows -> ``silver.payment_events`` rows: USD amount, the customer's
    profile, fraud rules, risk tier and compliance flags."""

    def transform(df: DataFrame) -> DataFrame:
        return (
            df.transform(with_amount_usd)
            .transform(with_customer_profile(profiles_df))
            .transform(with_fraud_rules)
            .transform(with_compliance_flags)
            .transform(to_silver_columns)
        )

    return transform


def silver_events(profiles_df: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Bronze rows -> Silver rows: validate, keep the valid, parse, deduplicate, enrich.

    >>> spark.readStream.table(BRONZE).transform(silver_events(profiles))  # doctest: +SKIP
    """

    def transform(df: DataFrame) -> DataFrame:
        return (
            df.transform(with_validation_errors)
            .transform(valid)
            .transform(parse_events)
            .transform(deduplicate)
            .transform(enrich(profiles_df))
        )

    return transform


def quarantine_events(df: DataFrame) -> DataFrame:
    """Bronze rows -> quarantine rows (raw columns, lineage, ``_validation_errors``)."""
    return df.transform(with_validation_errors).transform(quarantined)


# --------------------------------------------------------------------------- Silver streams


def start_silver_events(
    spark: SparkSession,
    *,
    trigger: Mapping | None = None,
    profiles_df: DataFrame | None = None,
):
    """Start the Silver query: ``bronze.payment_events`` (``readStream.table``) through
    :func:`silver_events` into ``silver.payment_events``, checkpoint
    ``streaming.checkpoint(spark, "silver")``. Returns the StreamingQuery."""
    if not spark.catalog.tableExists(streaming.BRONZE):
        raise ValueError(f"{streaming.BRONZE} does not exist: run start_bronze(spark) first")
    profiles_df = profiles_df if profiles_df is not None else customer_profiles(spark)
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {streaming.SILVER.split('.')[0]}")
    return _start(
        spark.readStream.table(streaming.BRONZE).transform(silver_events(profiles_df)),
        streaming.SILVER,
        streaming.checkpoint(spark, "silver"),
        trigger,
        "payments_silver",
    )


def start_quarantine(spark: SparkSession, *, trigger: Mapping | None = None):
    """Start the quarantine query: ``bronze.payment_events`` through
    :func:`quarantine_events` into ``silver.payment_events_quarantine``, checkpoint
    ``streaming.checkpoint(spark, "quarantine")``. Returns the StreamingQuery."""
    if not spark.catalog.tableExists(streaming.BRONZE):
        raise ValueError(f"{streaming.BRONZE} does not exist: run start_bronze(spark) first")
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {streaming.QUARANTINE.split('.')[0]}")
    return _start(
        spark.readStream.table(streaming.BRONZE).transform(quarantine_events),
        streaming.QUARANTINE,
        streaming.checkpoint(spark, "quarantine"),
        trigger,
        "payments_quarantine",
    )


def start_silver(
    spark: SparkSession,
    *,
    trigger: Mapping | None = None,
    profiles_df: DataFrame | None = None,
):
    """Start the two queries reading ``bronze.payment_events`` (``readStream.table``): Silver
    (checkpoint ``streaming.checkpoint(spark, "silver")``) and the quarantine (checkpoint
    ``"quarantine"``). Two queries, two checkpoints: each sink commits its own progress, and
    the quarantine never waits for Silver's state. Returns ``(silver_query,
    quarantine_query)`` (for a live run; :func:`run_streams` runs them one after the other).

    >>> for q in start_silver(spark): q.awaitTermination()     # doctest: +SKIP
    """
    silver_query = start_silver_events(spark, trigger=trigger, profiles_df=profiles_df)
    try:
        quarantine_query = start_quarantine(spark, trigger=trigger)
    except Exception:
        silver_query.stop()
        raise
    return silver_query, quarantine_query


def await_all(queries: Iterable) -> None:
    """Wait for every query to finish (availableNow); stop them all if one fails."""
    queries = list(queries)
    try:
        for query in queries:
            query.awaitTermination()
    finally:
        for query in queries:
            if query.isActive:
                query.stop()


def reset(spark: SparkSession) -> None:
    """Drop the three tables and their checkpoints: the state before the first file landed
    (the landing folder stays)."""
    from lakehouse.course import drop_table

    for table, stream in (
        (streaming.SILVER, "silver"),
        (streaming.QUARANTINE, "quarantine"),
        (streaming.BRONZE, "bronze"),
    ):
        drop_table(spark, table)
        streaming.reset_checkpoint(spark, stream)


def _forget_orphan_checkpoints(spark: SparkSession) -> None:
    # A checkpoint outlives a dropped table: the files (or versions) it lists went into a table
    # that is gone. Without Bronze, Silver's checkpoints point at a table that is gone too.
    from lakehouse.course import drop_table

    if not spark.catalog.tableExists(streaming.BRONZE):
        reset(spark)
        return
    for table, stream in ((streaming.SILVER, "silver"), (streaming.QUARANTINE, "quarantine")):
        if not spark.catalog.tableExists(table):
            drop_table(spark, table)
            streaming.reset_checkpoint(spark, stream)


def run_streams(
    spark: SparkSession,
    *,
    source: str = "files",
    landing: str | None = None,
    profiles_df: DataFrame | None = None,
    bronze: bool = True,
) -> None:
    """One available-now run of the three streams: Bronze from ``source`` (``"files"`` or
    ``"kafka"``), then Silver and the quarantine. What a checkpoint records as read is not read
    again, so a rerun without new files or messages changes nothing. ``profiles_df`` defaults
    to :func:`customer_profiles`; ``bronze=False`` runs Silver and the quarantine only."""
    _forget_orphan_checkpoints(spark)
    # One query at a time: each start launches Python processes for the Delta source, and on a
    # busy 2-core machine two launching at once can miss Spark's connect-back timeout.
    if bronze:
        await_all([start_bronze(spark, source=source, landing=landing)])
    await_all([start_silver_events(spark, profiles_df=profiles_df)])
    await_all([start_quarantine(spark)])
    _refresh(spark)


def _refresh(spark: SparkSession) -> None:
    # The embedded engine's catalog binds a table's schema at first sight; a table a stream
    # created must be re-bound to be readable by name with its columns.
    from lakehouse.session import engine_of

    if engine_of(spark) == "embedded":
        from lakehouse.engines.embedded.catalog import catalog_for

        catalog = catalog_for(spark)
        if catalog is not None:
            for table in (streaming.BRONZE, streaming.SILVER, streaming.QUARANTINE):
                if spark.catalog.tableExists(table):
                    catalog.register(table)


def ensure_silver(
    spark: SparkSession, *, scale: str = "tiny", seed: int = 42, source: str = "auto"
) -> dict[str, int]:
    """Land the simulated stream (``simulator.ensure_landing``), publish it to the Kafka topic
    when Bronze streams from Kafka (:func:`choose_source`; ``simulator.publish_once``), and
    run Bronze, Silver and the quarantine once with ``availableNow``. Idempotent: a second call
    reads nothing new. A Bronze table fed from Kafka that already holds every line is used as
    it is when the broker is down. Returns :func:`stream_counts`.

    >>> ensure_silver(spark)          # doctest: +SKIP
    {'landed_lines': ..., 'bronze_rows': ..., 'silver_rows': ..., 'quarantined_rows': ...,
     'duplicates_removed': ...}
    """
    from lakehouse.course import prepare_datasets
    from lakehouse.streaming import simulator

    prepare_datasets(scale=scale, seed=seed)  # the batch history behind the customer profiles
    report = simulator.ensure_landing(spark, scale=scale, seed=seed)
    if (
        bronze_source(spark) == "kafka"
        and kafka_unavailable(spark) is not None
        and spark.table(streaming.BRONZE).count() == report.lines
    ):
        run_streams(spark, bronze=False)  # Bronze is complete: no broker needed
        return stream_counts(spark, report)
    chosen, _ = choose_source(spark, source)
    if chosen == "kafka":
        simulator.publish_once(report)
    run_streams(spark, source=chosen)
    return stream_counts(spark, report)


# --------------------------------------------------------------------------- accounting


def _landed_lines(report) -> int:
    if report is None:
        return -1
    if isinstance(report, int):
        return report
    return int(report.lines)


def stream_counts(spark: SparkSession, report=None) -> dict[str, int]:
    """Where every landed line went: ``landed_lines`` (the simulator's report, or -1 without
    one), ``bronze_rows``, ``silver_rows``, ``quarantined_rows`` and ``duplicates_removed``
    (valid Bronze rows minus their distinct transaction ids, counted on Bronze in one batch
    query, independently of the Silver stream)."""
    bronze_df = spark.table(streaming.BRONZE)
    bronze_counts = (
        bronze_df.transform(with_validation_errors)
        .agg(
            F.count("*").alias("rows"),
            F.count_if(F.size(VALIDATION_ERRORS) == 0).alias("valid"),
            F.count_distinct(F.when(F.size(VALIDATION_ERRORS) == 0, F.col("transaction_id"))).alias(
                "valid_ids"
            ),
        )
        .first()
    )
    return {
        "landed_lines": _landed_lines(report),
        "bronze_rows": bronze_counts["rows"],
        "silver_rows": spark.table(streaming.SILVER).count(),
        "quarantined_rows": spark.table(streaming.QUARANTINE).count(),
        "duplicates_removed": bronze_counts["valid"] - bronze_counts["valid_ids"],
    }


def reconcile(spark: SparkSession, report=None) -> dict[str, int]:
    """Assert that every row is accounted for and return :func:`stream_counts`:
    landed lines = Bronze rows (when a report is given) and Bronze rows = Silver rows +
    quarantined rows + duplicate deliveries removed. Raises ``AssertionError`` naming the
    mismatch.

    >>> reconcile(spark, simulator.ensure_landing(spark))  # doctest: +SKIP
    """
    counts = stream_counts(spark, report)
    check_counts(counts)
    return counts


def check_counts(counts: Mapping[str, int]) -> None:
    """The accounting of :func:`reconcile` on counts already taken."""
    landed, bronze_rows = counts["landed_lines"], counts["bronze_rows"]
    if landed >= 0:
        assert bronze_rows == landed, (
            f"bronze.payment_events holds {bronze_rows} rows but {landed} lines landed: Bronze "
            "must keep every line (PERMISSIVE with _corrupt_record, one checkpoint, every file)"
        )
    accounted = counts["silver_rows"] + counts["quarantined_rows"] + counts["duplicates_removed"]
    assert bronze_rows == accounted, (
        f"bronze rows {bronze_rows} != silver {counts['silver_rows']} + quarantined "
        f"{counts['quarantined_rows']} + duplicates removed {counts['duplicates_removed']} "
        f"(= {accounted}); "
        + (
            "rows are missing: a valid row dropped by the watermark, or invalid rows not "
            "written to the quarantine"
            if accounted < bronze_rows
            else "Silver has extra rows: dedup on transaction_id (not the whole row), and "
            "quarantine only rows with _validation_errors"
        )
    )


def expected_amount_usd(amount: str | Decimal, currency: str) -> Decimal:
    """The USD amount in plain Python (the independent truth for checks): amount divided by the
    units per USD, rounded half-up to the cent."""
    usd = Decimal(str(amount)) / FX_PER_USD[currency]
    return usd.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def check_against_truth(silver_df: DataFrame, expected: Iterable[Mapping]) -> int:
    """Compare Silver with the simulator's truth (``simulator.expected_events``): the same
    transaction ids, each once, and every ``amount_usd`` equal to the plain-Python conversion.
    Returns the number of events. Raises ``AssertionError`` naming what differs."""
    truth = {e["transaction_id"]: e for e in expected}
    rows = silver_df.select("transaction_id", "amount_usd").collect()
    ids = [r.transaction_id for r in rows]
    assert len(ids) == len(set(ids)), (
        f"Silver holds {len(ids) - len(set(ids))} repeated transaction ids: deduplicate on "
        "transaction_id with dropDuplicatesWithinWatermark"
    )
    missing, extra = sorted(set(truth) - set(ids)), sorted(set(ids) - set(truth))
    assert not missing and not extra, (
        f"Silver's transaction ids differ from the expected events: {len(missing)} missing "
        f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]}); valid events must "
        "all reach Silver once, invalid ones go to the quarantine"
    )
    wrong = [
        (r.transaction_id, r.amount_usd, want)
        for r in rows
        if r.amount_usd
        != (
            want := expected_amount_usd(
                truth[r.transaction_id]["amount"], truth[r.transaction_id]["currency"]
            )
        )
    ]
    assert not wrong, (
        f"{len(wrong)} amount_usd values are wrong, e.g. {wrong[:3]} (id, got, expected): "
        "divide the amount by FX_PER_USD[currency] (units per USD) and round half-up to cents"
    )
    return len(ids)


__all__ = [
    "BRONZE_SCHEMA",
    "CITY_TIME_ZONES",
    "KAFKA_LINEAGE_COLUMNS",
    "SOURCES",
    "UNPARSED_REASON",
    "DEDUP_WATERMARK",
    "FRAUD_RULES",
    "NEAR_THRESHOLD_USD",
    "QUARANTINE_DEFECT_CLASSES",
    "QUARANTINE_SCHEMA",
    "RAW_SCHEMA",
    "REPORTING_THRESHOLD_USD",
    "SILVER_SCHEMA",
    "check_against_truth",
    "check_counts",
    "check_deduplicate",
    "choose_source",
    "bronze_source",
    "customer_profiles",
    "deduplicate",
    "ensure_silver",
    "enrich",
    "kafka_unavailable",
    "parse_events",
    "parse_kafka_messages",
    "quarantine_events",
    "read_kafka",
    "read_landing",
    "reconcile",
    "silver_events",
    "start_bronze",
    "start_quarantine",
    "start_silver",
    "start_silver_events",
    "stream_counts",
    "to_bronze_columns",
    "with_amount_usd",
    "with_compliance_flags",
    "with_customer_profile",
    "with_fraud_rules",
    "with_validation_errors",
]
