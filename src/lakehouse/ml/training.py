"""The fraud model's training examples: one row per payment with features known at its arrival
and the moment its fraud label became known, frozen in a Delta table so every run can name the
exact data (table and version) a model learned from.

Until the point-in-time feature tables of lesson 05_ml/01 are on main, :func:`payment_features`
computes a small set of features here, from the generated payments (``payments.transactions``)
and chargebacks (``payments.chargebacks``). NOTE for the merge with lesson 01: pass its
feature table to :func:`fraud_examples` (``features=spark.table(<lesson 01's table>)``); only the
columns of :data:`FEATURE_COLUMNS` and the keys are taken from it, so the lesson 02 code that
follows stays as it is.

Example::

    from lakehouse.ml import training

    version = training.write_examples(spark, training.fraud_examples(spark))
    examples_pdf = training.to_pandas_bounded(spark.table(training.EXAMPLES_TABLE), 100_000)
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.streaming import pipeline

EXAMPLES_TABLE = "ml.fraud_training_set"

KEY = "transaction_id"
TIME = "event_ts"  # when the card was used: the split and the label delays are measured on it
ARRIVAL = "ingest_ts"  # when the payment reached us: features know only what arrived before
LABEL_TIME = "fraud_label_ts"  # when the fraud notice arrived; NULL: no fraud notice, ever
AMOUNT = "amount_usd"  # what a missed fraud costs (see evaluation.CostModel)

NUMERIC_FEATURES = (
    "log_amount_usd",
    "log_amount_to_customer_mean",
    "customer_has_history",
    "customer_payments_1h",
    "customer_payments_24h",
    "customer_payments_7d",
    "new_country",
    "local_hour",
)
CATEGORICAL_FEATURES = ("channel", "merchant_category", "card_network")
FEATURE_COLUMNS = NUMERIC_FEATURES + CATEGORICAL_FEATURES
# What the rules baseline reads (evaluation.RulesBaseline), with the amount and local hour.
RULE_INPUTS = (AMOUNT, "local_hour", "customer_mean_usd")
# Outcomes of the decision on the payment, or labels delivered with it: never features. The
# upstream fraud_score is generated from the label itself in this course's data, status and
# decline_reason are what the fraud check decided, is_fraud is the label (lesson 01 measures
# how much each one inflates the metric).
LEAKY_COLUMNS = ("status", "decline_reason", "fraud_score", "is_fraud")

EXAMPLE_COLUMNS = (
    KEY,
    "customer_id",
    TIME,
    ARRIVAL,
    AMOUNT,
    "customer_mean_usd",
    *FEATURE_COLUMNS,
    LABEL_TIME,
)

_MICROS = {"1h": 3_600 * 10**6, "24h": 86_400 * 10**6, "7d": 7 * 86_400 * 10**6}
CHARGEBACK_DDL = (
    "chargeback_id string, transaction_id string, kind string, reason string, "
    "is_fraud boolean, amount decimal(12,2), currency string, dispute_ts timestamp, "
    "label_available_ts timestamp"
)


def _raw_root(spark: SparkSession, raw_root=None) -> str:
    if raw_root is not None:
        return str(raw_root)
    from lakehouse.config import settings
    from lakehouse.session import settings_of

    return str((settings_of(spark) or settings()).source_path())


def read_payments(spark: SparkSession, raw_root=None) -> DataFrame:
    """``payments.transactions`` as typed rows: the streaming pipeline's validation (invalid
    rows dropped), one row per ``transaction_id``, with ``amount_usd``."""
    root = _raw_root(spark, raw_root)
    raw_df = (
        spark.read.schema(pipeline.RAW_SCHEMA)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_corrupt_record")
        .json(f"{root}/payments/transactions/*/*.json")
    )
    return (
        raw_df.transform(pipeline.with_validation_errors)
        .transform(pipeline.valid)
        .transform(pipeline.parse_events)
        .dropDuplicates([KEY])
        .transform(pipeline.with_amount_usd)
    )


def fraud_label_times(spark: SparkSession, raw_root=None) -> DataFrame:
    """One row per payment found fraudulent: ``transaction_id`` and ``fraud_label_ts``, when
    its fraud notice (a chargeback or an issuer's fraud report, ``payments.chargebacks``)
    reached the merchant. Redelivered notices count once; non-fraud disputes are no label."""
    root = _raw_root(spark, raw_root)
    notices_df = (
        spark.read.schema(CHARGEBACK_DDL)
        .option("header", "true")
        .csv(f"{root}/payments/chargebacks/*.csv")
        .dropDuplicates(["chargeback_id"])
    )
    return (
        notices_df.where(F.col("is_fraud"))
        .groupBy(KEY)
        .agg(F.min("label_available_ts").alias(LABEL_TIME))
    )


def payment_features(payments_df: DataFrame) -> DataFrame:
    """Per payment, what was known when it arrived (``ingest_ts``), from the same customer's
    payments that arrived strictly before it: counts over 1 h / 24 h / 7 d, the mean amount,
    the log of the amount over that mean (0 without history), whether the country is new for the
    customer; plus the local hour (the city's time zone), the log amount and the categories.
    Nothing here reads a later row, a label or an outcome of the decision."""
    arrival = F.unix_micros(F.col(ARRIVAL))
    by_customer = Window.partitionBy("customer_id").orderBy(arrival)
    before = by_customer.rangeBetween(Window.unboundedPreceding, -1)
    counts = {
        f"customer_payments_{name}": F.count("*").over(by_customer.rangeBetween(-micros, -1))
        for name, micros in _MICROS.items()
    }
    mean = F.avg(F.col(AMOUNT).cast("double")).over(before)
    seen_countries = F.collect_set("country").over(before)
    prior = F.count("*").over(before)
    return payments_df.withColumns(
        {
            **counts,
            "customer_mean_usd": mean,
            "customer_has_history": (prior > 0).cast("double"),
            "new_country": ((prior > 0) & ~F.array_contains(seen_countries, F.col("country"))).cast(
                "double"
            ),
            "local_hour": F.hour(pipeline.local_time(TIME, "city")).cast("double"),
            AMOUNT: F.col(AMOUNT).cast("double"),
        }
    ).withColumns(
        {
            "log_amount_usd": F.log1p(F.col(AMOUNT)),
            # a log: the ratio spans 1/400 to 400, a linear model needs it symmetric
            "log_amount_to_customer_mean": F.coalesce(
                F.log(F.col(AMOUNT) / F.col("customer_mean_usd")), F.lit(0.0)
            ),
            **{name: F.col(name).cast("double") for name in counts},
        }
    )


def fraud_examples(
    spark: SparkSession, *, raw_root=None, features: DataFrame | None = None
) -> DataFrame:
    """The training examples: :data:`EXAMPLE_COLUMNS`, one row per valid payment, features as
    of its arrival and ``fraud_label_ts`` (NULL: never reported as fraud). The label is a time,
    not a boolean: whether a payment counts as fraud depends on when you look
    (``evaluation.labels_as_of``).

    ``features``: a point-in-time feature table with ``transaction_id`` and
    :data:`FEATURE_COLUMNS` (lesson 05_ml/01's) to use instead of :func:`payment_features`."""
    payments_df = read_payments(spark, raw_root)
    if features is None:
        featured_df = payment_features(payments_df)
    else:
        missing = [c for c in (KEY, *FEATURE_COLUMNS) if c not in features.columns]
        if missing:
            raise ValueError(
                f"the feature table lacks {missing}: it needs {KEY} and every FEATURE_COLUMNS"
            )
        featured_df = (
            payment_features(payments_df)
            .drop(*FEATURE_COLUMNS)
            .join(features.select(KEY, *FEATURE_COLUMNS), KEY)
        )
    return featured_df.join(fraud_label_times(spark, raw_root), KEY, "left").select(
        *EXAMPLE_COLUMNS
    )


def write_examples(spark: SparkSession, examples_df: DataFrame, table: str = EXAMPLES_TABLE) -> int:
    """Overwrite ``table`` (Delta) with ``examples_df`` and return the Delta version written,
    which a training run records beside the table's name."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    examples_df.write.format("delta").mode("overwrite").option(
        "overwriteSchema", "true"
    ).saveAsTable(table)
    return table_version(spark, table)


def table_version(spark: SparkSession, table: str) -> int:
    """The latest version of a Delta table (``DESCRIBE HISTORY``)."""
    return int(spark.sql(f"DESCRIBE HISTORY {table} LIMIT 1").first()["version"])


def to_pandas_bounded(df: DataFrame, max_rows: int, *, seed: int = 42):
    """``df.toPandas()`` of at most about ``max_rows`` rows: a seeded uniform sample when the
    frame is larger (class balance and time order kept in expectation), sorted by
    ``event_ts`` and ``transaction_id`` so a run is repeatable."""
    n = df.count()
    if n > max_rows:
        df = df.sample(fraction=max_rows / n, seed=seed)
    return df.orderBy(TIME, KEY).toPandas()


__all__ = [
    "AMOUNT",
    "CATEGORICAL_FEATURES",
    "EXAMPLES_TABLE",
    "EXAMPLE_COLUMNS",
    "FEATURE_COLUMNS",
    "KEY",
    "LABEL_TIME",
    "LEAKY_COLUMNS",
    "NUMERIC_FEATURES",
    "TIME",
    "fraud_examples",
    "fraud_label_times",
    "payment_features",
    "read_payments",
    "table_version",
    "to_pandas_bounded",
    "write_examples",
]
