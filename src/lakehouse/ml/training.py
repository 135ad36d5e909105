"""The fraud model's training examples, from lesson 05_ml/01's tables: one row per payment
with the features known at its arrival and the moment its fraud label became known, frozen in
a Delta table so every run can name the exact data (table and version) a model learned from.

A row is ``ml.fraud_labels`` (the label and ``prediction_ts``, the payment's arrival) with the
payment's row of ``ml.payment_features`` (computed as of that arrival), the customer's
``ml.customer_daily_features`` joined **as of** ``prediction_ts``
(:func:`lakehouse.ml.features.point_in_time_join`: the day's row only once the day is over),
and the payment's own context from ``silver.payments`` (when the card was used, the card
network, the local hour). :func:`fraud_examples` builds lesson 01's tables first if they do not
exist.

Example::

    from lakehouse.ml import training

    version = training.write_examples(spark, training.fraud_examples(spark))
    examples_pdf = training.to_pandas_bounded(spark.table(training.EXAMPLES_TABLE), 100_000)
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import lakehouse.ml as ml
from lakehouse.ml import features as ml_features
from lakehouse.streaming import pipeline

EXAMPLES_TABLE = "ml.fraud_training_set"

KEY = "transaction_id"
TIME = "event_ts"  # when the card was used: the split and the label delays are measured on it
ARRIVAL = "prediction_ts"  # when the payment reached us and is scored: features know only before
LABEL_TIME = "fraud_label_ts"  # when the fraud notice arrived; NULL: no fraud notice, ever
AMOUNT = "amount_usd"  # what a missed fraud costs (see evaluation.CostModel)

# From ml.payment_features, as known at the payment's arrival (lesson 01). Two of its columns
# stay out of this model, because their meaning moves between the training and the test period
# of a month of data that starts on June 1st: is_new_device (payments carry device_fingerprint
# only from the schema change in the middle of the month, so it is unknown for every training
# payment and true for most devices just after) and category_fraud_rate (it starts at its prior
# and moves as labels mature). Measured at CI scale on lesson 02's split, the logistic
# regression's test PR-AUC is 0.25 without them, 0.06 to 0.12 with any one of them (or with
# declines_30d, below) and 0.03 with all three: two dozen training frauds cannot tell such a
# shift from signal.
PAYMENT_FEATURE_COLUMNS = (
    "payments_1h",
    "payments_24h",
    "payments_7d",
    "log_amount_to_mean_30d",
    "has_30d_history",
    "is_new_country",
)
# From ml.customer_daily_features, the customer's last full day before the payment. Its
# declines_30d stays out for the same reason: a 30-day sum in data that starts on June 1st grows
# all month while its window fills.
DAILY_FEATURES = ("fraud_notices_to_date",)
NUMERIC_FEATURES = ("log_amount_usd", "local_hour", *PAYMENT_FEATURE_COLUMNS, *DAILY_FEATURES)
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


def examples_from(
    labels_df: DataFrame,
    payment_features_df: DataFrame,
    daily_df: DataFrame,
    payments_df: DataFrame,
) -> DataFrame:
    """:data:`EXAMPLE_COLUMNS` from lesson 01's three tables and ``silver.payments``: one row
    per label. The payment's features are its own row (computed at ``prediction_ts``); the
    customer's daily features are the latest row with ``feature_ts <= prediction_ts``; nothing
    else is read from a later moment. Numbers become doubles for scikit-learn: the amount and
    its ratio to the 30-day mean as logs (the ratio spans 1/400 to 400, a linear model needs it
    symmetric; 0 without history), flags as 0/1, a customer without a full day yet as 0."""
    payment_df = payment_features_df.select(
        KEY,
        F.col(AMOUNT).cast("double").alias(AMOUNT),
        "channel",
        "merchant_category",
        "payments_1h",
        "payments_24h",
        "payments_7d",
        "amount_to_mean_30d",
        F.col("is_new_country").cast("double").alias("is_new_country"),
    )
    context_df = payments_df.select(
        KEY,
        TIME,
        "card_network",
        F.hour(pipeline.local_time(TIME, "city")).cast("double").alias("local_hour"),
    )
    daily_values = daily_df.select("customer_id", "feature_ts", *DAILY_FEATURES)
    with_daily = ml_features.point_in_time_join(
        labels_df.select("transaction_id", "customer_id", ARRIVAL, LABEL_TIME),
        daily_values,
        keys="customer_id",
        label_ts=ARRIVAL,
    ).drop("feature_ts")
    ratio = F.col("amount_to_mean_30d")
    return (
        with_daily.join(payment_df, KEY)
        .join(context_df, KEY)
        .withColumns(
            {
                "customer_mean_usd": F.col(AMOUNT) / ratio,
                "log_amount_usd": F.log1p(F.col(AMOUNT)),
                "log_amount_to_mean_30d": F.coalesce(F.log(ratio), F.lit(0.0)),
                "has_30d_history": ratio.isNotNull().cast("double"),
                **{c: F.coalesce(F.col(c), F.lit(0)).cast("double") for c in DAILY_FEATURES},
                **{
                    c: F.col(c).cast("double")
                    for c in ("payments_1h", "payments_24h", "payments_7d")
                },
            }
        )
        .select(*EXAMPLE_COLUMNS)
    )


def fraud_examples(spark: SparkSession, *, raw_root=None) -> DataFrame:
    """The training examples (:func:`examples_from`) from the lake's tables: lesson 01's
    ``ml.fraud_labels``, ``ml.payment_features`` and ``ml.customer_daily_features`` (built
    first when they do not exist) and ``silver.payments``. The label is a time, not a
    boolean: whether a payment counts as fraud depends on when you look
    (``evaluation.labels_as_of``)."""
    ml_features.ensure_tables(spark, raw_root_of(spark, raw_root))
    return examples_from(
        spark.table(ml.FRAUD_LABELS),
        spark.table(ml.PAYMENT_FEATURES),
        spark.table(ml.CUSTOMER_DAILY_FEATURES),
        spark.table("silver.payments"),
    )


def raw_root_of(spark: SparkSession, raw_root=None) -> str:
    """``raw_root`` as a string, or else where the session's settings keep the generated
    sources (the lessons' ``settings(...).source_path()``)."""
    if raw_root is not None:
        return str(raw_root)
    from lakehouse.config import settings
    from lakehouse.session import settings_of

    return str((settings_of(spark) or settings()).source_path())


def write_examples(spark: SparkSession, examples_df: DataFrame, table: str = EXAMPLES_TABLE) -> int:
    """Overwrite ``table`` (Delta) with ``examples_df`` and return the Delta version written,
    which a training run records beside the table's name."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    examples_df.write.format("delta").mode("overwrite").option(
        "overwriteSchema", "true"
    ).saveAsTable(table)
    return table_version(spark, table)


def table_version(spark: SparkSession, table: str) -> int:
    """The latest version of a Delta table (its history, through the ``DeltaTable`` API:
    ``DESCRIBE HISTORY`` on every engine)."""
    from lakehouse import DeltaTable

    return int(DeltaTable.forName(spark, table).history(1).select("version").first()[0])


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
    "ARRIVAL",
    "CATEGORICAL_FEATURES",
    "DAILY_FEATURES",
    "EXAMPLES_TABLE",
    "EXAMPLE_COLUMNS",
    "FEATURE_COLUMNS",
    "KEY",
    "LABEL_TIME",
    "LEAKY_COLUMNS",
    "NUMERIC_FEATURES",
    "PAYMENT_FEATURE_COLUMNS",
    "RULE_INPUTS",
    "TIME",
    "examples_from",
    "fraud_examples",
    "raw_root_of",
    "table_version",
    "to_pandas_bounded",
    "write_examples",
]
