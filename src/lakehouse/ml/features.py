"""Point-in-time features for the fraud models: labels from the chargebacks, per-payment features
as known at the payment's arrival, per-customer daily features, the as-of join that builds a
training set without looking into the future, an online latest-value table, and the checks
that prove each of them right.

Example::

    from lakehouse.ml import features

    chargebacks_df = features.read_chargebacks(spark, raw_root)
    labels_df = features.fraud_labels(payments_df, chargebacks_df)
    payment_features_df = features.payment_features(payments_df, labels_df)
    daily_df = features.customer_daily_features(payments_df, labels_df)
    training_df = features.point_in_time_join(
        labels_df, daily_df, keys=["customer_id"], label_ts="prediction_ts"
    )
    features.check_point_in_time(training_df, daily_df, keys=["customer_id"],
                                 label_ts="prediction_ts", row_key="transaction_id")

**Time.** A payment is scored when it reaches the platform: its ``ingest_ts``. Every window is
ordered by ``ingest_ts`` in epoch milliseconds and ends 1 ms before the current payment, so it
holds exactly the payments that had arrived before it. ``event_ts`` would not do: a late event
(delivered hours after the card was used) would count in the windows of payments scored before
it arrived. Seconds would not do either: two payments of one card in the same second (card
testing) would not see each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import reduce
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructType,
    TimestampType,
)

from lakehouse.datagen import ML_DATASETS
from lakehouse.datagen.payment_ops import MAX_DISPUTE_DAYS
from lakehouse.gold import commented_field as _field
from lakehouse.gold.facts import (
    _names,
    _show,
    check_grain,
    check_same_rows,
    conform,
    declare_table,
    require_columns,
    to_usd,
)
from lakehouse.ml import (
    CHARGEBACKS_DATASET,
    CUSTOMER_DAILY_FEATURES,
    CUSTOMER_FEATURES_ONLINE,
    FRAUD_LABELS,
    PAYMENT_FEATURES,
)

# --------------------------------------------------------------------------- parameters

# Velocity windows: output column -> length in seconds.
VELOCITY_WINDOWS: dict[str, int] = {
    "payments_1h": 3600,
    "payments_24h": 24 * 3600,
    "payments_7d": 7 * 24 * 3600,
}
MEAN_WINDOW_SECONDS = 30 * 24 * 3600  # amount_to_mean_30d: the mean over the 30 days before

# Merchant-category fraud rate with additive smoothing:
#   (frauds known + STRENGTH * PRIOR) / (payments seen + STRENGTH)
# A category seen a few times keeps close to the prior; one with thousands of payments speaks for
# itself. The prior is fixed in advance (about the card industry's fraud rate in this data),
# not measured on the data: a prior measured over the whole period would itself leak.
CATEGORY_RATE_PRIOR = 0.015
CATEGORY_RATE_STRENGTH = 50

# A notice arrives at most MAX_DISPUTE_DAYS after the payment plus 3 days of processing: a
# payment older than this without a fraud notice is legitimate for good.
LABEL_MATURITY_DAYS = MAX_DISPUTE_DAYS + 3

# Columns that are outcomes of the payment's own decision, or its label: known only after the
# moment the model scores the payment, so never features.
OUTCOME_COLUMNS = ("status", "decline_reason", "fraud_score", "is_approved", "is_fraud")
LABEL_COLUMNS = ("is_fraud", "fraud_label_ts", "label_available_ts", "notices")

PAYMENT_FEATURE_COLUMNS = (
    *VELOCITY_WINDOWS,
    "amount_to_mean_30d",
    "is_new_country",
    "is_new_device",
    "category_fraud_rate",
)
DAILY_FEATURE_COLUMNS = (
    "payments_day",
    "amount_usd_day",
    "declines_day",
    "payments_30d",
    "amount_usd_30d",
    "declines_30d",
    "fraud_notices_to_date",
)

# --------------------------------------------------------------------------- schemas

FRAUD_LABELS_SCHEMA = StructType(
    [
        _field("transaction_id", StringType(), "The payment (silver.payments)", nullable=False),
        _field("customer_id", StringType(), "The payment's customer"),
        _field(
            "prediction_ts",
            TimestampType(),
            "When a model scores the payment: its ingest_ts (arrival)",
            nullable=False,
        ),
        _field(
            "is_fraud",
            BooleanType(),
            "True when a fraud notice (payments.chargebacks, is_fraud) names the payment",
            nullable=False,
        ),
        _field("fraud_label_ts", TimestampType(), "label_available_ts of its fraud notice; null"),
        _field(
            "label_available_ts",
            TimestampType(),
            "When the label is final: the fraud notice's arrival, else prediction_ts + "
            f"{LABEL_MATURITY_DAYS} days (no notice can come later)",
            nullable=False,
        ),
        _field(
            "notices", IntegerType(), "Distinct notices on the payment, disputes included", False
        ),
    ]
)

PAYMENT_FEATURES_SCHEMA = StructType(
    [
        _field("transaction_id", StringType(), "The payment", nullable=False),
        _field("customer_id", StringType(), "The payment's customer"),
        _field("feature_ts", TimestampType(), "ingest_ts: the values are as known then", False),
        _field("amount_usd", DecimalType(12, 2), "The amount in USD (fixed course rates)"),
        _field("channel", StringType(), "online, pos or atm"),
        _field("merchant_category", StringType(), "Merchant category"),
        *(
            _field(
                name,
                LongType(),
                f"The customer's payments that arrived in the {name.split('_')[1]} before it "
                "(itself excluded)",
                nullable=False,
            )
            for name in VELOCITY_WINDOWS
        ),
        _field(
            "amount_to_mean_30d",
            DoubleType(),
            "amount_usd / the customer's mean amount_usd over the 30 days before; null: no history",
        ),
        _field(
            "is_new_country",
            BooleanType(),
            "No earlier payment of the customer in this country",
            nullable=False,
        ),
        _field(
            "is_new_device",
            BooleanType(),
            "No earlier payment of the customer from this device_fingerprint; null: no device",
        ),
        _field(
            "category_fraud_rate",
            DoubleType(),
            "Smoothed fraud rate of the merchant category from the labels available before it",
            nullable=False,
        ),
    ]
)

CUSTOMER_DAILY_SCHEMA = StructType(
    [
        _field("customer_id", StringType(), "The customer", nullable=False),
        _field("feature_date", DateType(), "The day (UTC) the values summarize", nullable=False),
        _field(
            "feature_ts",
            TimestampType(),
            "feature_date + 1 day, 00:00 UTC: when the day's values become available",
            nullable=False,
        ),
        _field("payments_day", LongType(), "Payments that arrived that day", nullable=False),
        _field("amount_usd_day", DecimalType(18, 2), "Their amount in USD", nullable=False),
        _field("declines_day", LongType(), "Of them, declined", nullable=False),
        _field("payments_30d", LongType(), "Payments in the 30 days ending that day", False),
        _field("amount_usd_30d", DecimalType(18, 2), "Their amount in USD", nullable=False),
        _field("declines_30d", LongType(), "Of them, declined", nullable=False),
        _field(
            "fraud_notices_to_date",
            LongType(),
            "Fraud notices on the customer's payments that arrived by the end of the day",
            nullable=False,
        ),
    ]
)

ONLINE_SCHEMA = StructType(
    [
        *(f for f in CUSTOMER_DAILY_SCHEMA.fields if f.name != "feature_date"),
        _field(
            "as_of_ts",
            TimestampType(),
            "When the table was refreshed: every row is the latest with feature_ts <= as_of_ts",
            nullable=False,
        ),
    ]
)

SCHEMAS = {
    FRAUD_LABELS: FRAUD_LABELS_SCHEMA,
    PAYMENT_FEATURES: PAYMENT_FEATURES_SCHEMA,
    CUSTOMER_DAILY_FEATURES: CUSTOMER_DAILY_SCHEMA,
    CUSTOMER_FEATURES_ONLINE: ONLINE_SCHEMA,
}
COMMENTS = {
    FRAUD_LABELS: (
        "Fraud labels: one row per silver.payments payment (transaction_id). is_fraud from "
        "payments.chargebacks (notices deduplicated by chargeback_id); usable for training "
        "only from label_available_ts."
    ),
    PAYMENT_FEATURES: (
        "Per-payment fraud features (transaction_id) as known at the payment's arrival "
        "(feature_ts = ingest_ts): velocity, amount vs the 30-day mean, new country and device, "
        "merchant-category fraud rate from matured labels. No outcome columns."
    ),
    CUSTOMER_DAILY_FEATURES: (
        "Per customer per day (customer_id, feature_date), available at feature_ts (the day's "
        "end): activity of the day and of 30 days, fraud notices known. A time series feature "
        "table: join it as of a prediction time, never on the latest row."
    ),
    CUSTOMER_FEATURES_ONLINE: (
        "Online features: per customer the latest row of ml.customer_daily_features with "
        "feature_ts <= as_of_ts, what a model looks up when it scores a payment."
    ),
}

# --------------------------------------------------------------------------- reading


def chargebacks_schema() -> StructType:
    """The read schema of ``payments.chargebacks``, from the generator's declaration."""
    from lakehouse.bronze import _spark_type

    spec = ML_DATASETS[CHARGEBACKS_DATASET]
    return StructType(
        [_field(c.name, _spark_type(c.type), c.description or c.name) for c in spec.columns]
    )


def read_chargebacks(spark: SparkSession, raw_root: str | Path) -> DataFrame:
    """The chargeback and fraud notices as delivered (a notice delivered twice is there twice),
    typed with :func:`chargebacks_schema`. ``raw_root``: the generated datasets' folder."""
    spec = ML_DATASETS[CHARGEBACKS_DATASET]
    location = Path(raw_root) / spec.path
    if not location.exists():
        raise FileNotFoundError(
            f"no {CHARGEBACKS_DATASET} at {location}: generate the datasets first "
            "(lakehouse.course.prepare_datasets)"
        )
    return (
        spark.read.schema(chargebacks_schema())
        .option("header", True)
        .option("mode", "FAILFAST")
        .csv(str(location))
    )


# --------------------------------------------------------------------------- labels


def fraud_labels(
    payments_df: DataFrame, chargebacks_df: DataFrame, *, maturity_days: int = LABEL_MATURITY_DAYS
) -> DataFrame:
    """One label row per payment of ``payments_df`` (``FRAUD_LABELS_SCHEMA``'s columns).

    Notices are deduplicated by ``chargeback_id`` first (the feed delivers some twice). A
    payment is fraud when a notice with ``is_fraud`` names it; the label is known from that
    notice's ``label_available_ts``. A payment without one is legitimate only once no notice
    can come any more: ``prediction_ts + maturity_days``. Notices on payments that are not in
    ``payments_df`` (quarantined in Silver) have no row to label.
    """
    require_columns(payments_df, ["transaction_id", "customer_id", "ingest_ts"], "payments_df")
    require_columns(
        chargebacks_df,
        ["chargeback_id", "transaction_id", "is_fraud", "label_available_ts"],
        "chargebacks_df",
    )
    per_payment = (
        chargebacks_df.dropDuplicates(["chargeback_id"])
        .groupBy("transaction_id")
        .agg(
            F.count(F.lit(1)).cast("int").alias("notices"),
            F.min(F.when(F.col("is_fraud"), F.col("label_available_ts"))).alias("fraud_label_ts"),
        )
    )
    maturity = F.make_dt_interval(F.lit(maturity_days))
    return (
        payments_df.select(
            "transaction_id", "customer_id", F.col("ingest_ts").alias("prediction_ts")
        )
        .join(per_payment, "transaction_id", "left")
        .select(
            "transaction_id",
            "customer_id",
            "prediction_ts",
            F.col("fraud_label_ts").isNotNull().alias("is_fraud"),
            "fraud_label_ts",
            F.coalesce("fraud_label_ts", F.col("prediction_ts") + maturity).alias(
                "label_available_ts"
            ),
            F.coalesce("notices", F.lit(0)).alias("notices"),
        )
    )


# --------------------------------------------------------------------------- payment features


def _ms(column: str | Column) -> Column:
    return F.unix_millis(F.col(column) if isinstance(column, str) else column)


def _before(*partition: str, seconds: int | None = None, order: str = "feature_ts") -> Window:
    """Per ``partition``, ordered by ``order`` in epoch ms: the rows of the ``seconds`` before
    the current one (all earlier rows when None), never the current row or a later one."""
    start = Window.unboundedPreceding if seconds is None else -seconds * 1000
    return Window.partitionBy(*partition).orderBy(_ms(order)).rangeBetween(start, -1)


def payment_base(payments_df: DataFrame) -> DataFrame:
    """The columns the features start from: the payment, its customer, ``feature_ts`` (=
    ``ingest_ts``), ``amount_usd`` and the context columns. Outcome columns are left out."""
    require_columns(
        payments_df,
        [
            "transaction_id",
            "customer_id",
            "ingest_ts",
            "amount",
            "currency",
            "channel",
            "merchant_category",
            "country",
            "device_fingerprint",
        ],
        "payments_df",
    )
    return payments_df.select(
        "transaction_id",
        "customer_id",
        F.col("ingest_ts").alias("feature_ts"),
        to_usd("amount", "currency").alias("amount_usd"),
        "channel",
        "merchant_category",
        "country",
        "device_fingerprint",
    )


def with_velocity(df: DataFrame) -> DataFrame:
    """Add ``payments_1h`` / ``_24h`` / ``_7d`` (the customer's payments that arrived in the
    window before this one) and ``amount_to_mean_30d`` (null without earlier payments)."""
    require_columns(df, ["customer_id", "feature_ts", "amount_usd"], "the payments")
    counts = {
        name: F.count(F.lit(1)).over(_before("customer_id", seconds=seconds))
        for name, seconds in VELOCITY_WINDOWS.items()
    }
    mean_30d = F.avg(F.col("amount_usd").cast("double")).over(
        _before("customer_id", seconds=MEAN_WINDOW_SECONDS)
    )
    return df.withColumns(
        {**counts, "amount_to_mean_30d": F.col("amount_usd").cast("double") / mean_30d}
    )


def with_history_flags(df: DataFrame) -> DataFrame:
    """Add ``is_new_country`` (no earlier payment of the customer in this country) and
    ``is_new_device`` (none from this ``device_fingerprint``; null for a payment without one:
    only online payments carry a device, and only in the files after the schema change)."""
    require_columns(df, ["customer_id", "feature_ts", "country", "device_fingerprint"], "df")
    earlier = F.count(F.lit(1))
    return df.withColumns(
        {
            "is_new_country": earlier.over(_before("customer_id", "country")) == 0,
            "is_new_device": F.when(
                F.col("device_fingerprint").isNotNull(),
                earlier.over(_before("customer_id", "device_fingerprint")) == 0,
            ),
        }
    )


def _category_rate(
    df: DataFrame, labels_df: DataFrame, *, matured: bool, prior: float, strength: float
) -> DataFrame:
    """``df`` (transaction_id, merchant_category, feature_ts) with ``category_fraud_rate``.
    ``matured=False`` is the leak the checks recognise: a fraud counts from its payment's
    arrival, as if its label were known at once, instead of from its ``fraud_label_ts``."""
    frauds = (
        labels_df.where(F.col("is_fraud"))
        .select("transaction_id", "fraud_label_ts")
        .join(df.select("transaction_id", "merchant_category", "feature_ts"), "transaction_id")
    )
    payments = df.select(
        "transaction_id",
        "merchant_category",
        F.col("feature_ts").alias("_t"),
        F.lit(1).alias("_payment"),
        F.lit(0).alias("_fraud"),
    )
    notices = frauds.select(
        F.lit(None).cast("string").alias("transaction_id"),
        "merchant_category",
        F.col("fraud_label_ts" if matured else "feature_ts").alias("_t"),
        F.lit(0).alias("_payment"),
        F.lit(1).alias("_fraud"),
    )
    seen = _before("merchant_category", order="_t")
    rate = (F.sum("_fraud").over(seen) + F.lit(strength * prior)) / (
        F.sum("_payment").over(seen) + F.lit(strength)
    )
    rated = (
        payments.unionByName(notices)
        # an empty frame sums to null: nothing known yet, the prior alone
        .withColumn("category_fraud_rate", F.coalesce(rate, F.lit(prior)))
        .where(F.col("_payment") == 1)
        .select("transaction_id", "category_fraud_rate")
    )
    return df.join(rated, "transaction_id", "left")


def with_category_risk(
    labels_df: DataFrame,
    *,
    prior: float = CATEGORY_RATE_PRIOR,
    strength: float = CATEGORY_RATE_STRENGTH,
):
    """A transform adding ``category_fraud_rate``: for each payment, its merchant category's
    ``(frauds known + strength * prior) / (payments seen + strength)``, where a fraud is known
    when its label arrived (``fraud_label_ts``) strictly before the payment's ``feature_ts``,
    and the payments seen are the category's payments that arrived before it. ``labels_df`` is
    :func:`fraud_labels`' table: one row per payment, so a notice delivered twice counts once.
    """
    require_columns(labels_df, ["transaction_id", "is_fraud", "fraud_label_ts"], "labels_df")

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, ["transaction_id", "merchant_category", "feature_ts"], "df")
        return _category_rate(df, labels_df, matured=True, prior=prior, strength=strength)

    return transform


def payment_features(payments_df: DataFrame, labels_df: DataFrame) -> DataFrame:
    """``ml.payment_features``' rows: :func:`payment_base` with velocity, history flags and the
    category risk, in ``PAYMENT_FEATURES_SCHEMA``'s columns."""
    return (
        payment_base(payments_df)
        .transform(with_velocity)
        .transform(with_history_flags)
        .transform(with_category_risk(labels_df))
        .transform(conform(PAYMENT_FEATURES_SCHEMA))
    )


# --------------------------------------------------------------------------- daily features


def customer_daily_features(payments_df: DataFrame, labels_df: DataFrame) -> DataFrame:
    """``ml.customer_daily_features``: a row per customer and day with payments arriving or a
    fraud notice arriving; the day's values are available at its end (``feature_ts`` = the
    next midnight, UTC). 30-day sums cover the day and the 29 before it."""
    require_columns(
        payments_df, ["customer_id", "ingest_ts", "amount", "currency", "status"], "payments_df"
    )
    require_columns(labels_df, ["customer_id", "is_fraud", "fraud_label_ts"], "labels_df")
    days = payments_df.groupBy("customer_id", F.to_date("ingest_ts").alias("feature_date")).agg(
        F.count(F.lit(1)).alias("payments_day"),
        F.sum(to_usd("amount", "currency")).cast(DecimalType(18, 2)).alias("amount_usd_day"),
        F.count_if(F.col("status") == "declined").alias("declines_day"),
    )
    notices = (
        labels_df.where(F.col("is_fraud"))
        .groupBy("customer_id", F.to_date("fraud_label_ts").alias("feature_date"))
        .agg(F.count(F.lit(1)).alias("_fraud_notices"))
    )
    day = F.unix_date("feature_date")
    last_30 = Window.partitionBy("customer_id").orderBy(day).rangeBetween(-29, 0)
    to_date = (
        Window.partitionBy("customer_id").orderBy(day).rangeBetween(Window.unboundedPreceding, 0)
    )
    zero = {
        "payments_day": 0,
        "declines_day": 0,
        "_fraud_notices": 0,
    }
    return (
        days.join(notices, ["customer_id", "feature_date"], "full")
        .where(F.col("customer_id").isNotNull())
        .fillna(zero)
        .withColumn("amount_usd_day", F.coalesce("amount_usd_day", F.lit(0).cast("decimal(18,2)")))
        .withColumns(
            {
                "feature_ts": F.to_timestamp(F.date_add("feature_date", 1)),
                "payments_30d": F.sum("payments_day").over(last_30),
                "amount_usd_30d": F.sum("amount_usd_day").over(last_30),
                "declines_30d": F.sum("declines_day").over(last_30),
                "fraud_notices_to_date": F.sum("_fraud_notices").over(to_date),
            }
        )
        .transform(conform(CUSTOMER_DAILY_SCHEMA))
    )


# --------------------------------------------------------------------------- joins


def point_in_time_join(
    labels_df: DataFrame,
    features_df: DataFrame,
    *,
    keys: str | Sequence[str],
    label_ts: str,
    feature_ts: str = "feature_ts",
) -> DataFrame:
    """A left as-of join: every row of ``labels_df`` with the feature columns of the latest
    ``features_df`` row of the same ``keys`` whose ``feature_ts <= label_ts`` (null when there
    is none), and that row's ``feature_ts``. Never a newer row.

    DataFrame operations only, so it runs through Spark Connect: labels and feature rows in one
    frame, sorted per key by time (a feature row before a label at the same instant), and each
    label takes the last feature row before it (``last(..., ignorenulls=True)``) -- one sort,
    no range join. The features must be unique per (``keys``, ``feature_ts``).

    >>> point_in_time_join(  # doctest: +SKIP
    ...     labels_df, daily_df, keys="customer_id", label_ts="prediction_ts"
    ... )
    """
    keys = _names(keys)
    require_columns(labels_df, [*keys, label_ts], "labels_df")
    require_columns(features_df, [*keys, feature_ts], "features_df")
    values = [c for c in features_df.columns if c not in keys]
    clash = sorted(set(values) & set(labels_df.columns))
    if clash:
        raise ValueError(
            f"labels_df and features_df both have {', '.join(map(repr, clash))}: rename or drop "
            "them on one side before the join"
        )
    known = [F.col(c).isNotNull() for c in (*keys, feature_ts)]
    feature_rows = features_df.where(reduce(lambda a, b: a & b, known)).select(
        *keys,
        F.col(feature_ts).alias("_t"),
        F.lit(0).alias("_side"),
        F.struct(*values).alias("_features"),
    )
    label_rows = labels_df.select("*", F.col(label_ts).alias("_t"), F.lit(1).alias("_side"))
    latest = F.last("_features", ignorenulls=True).over(
        Window.partitionBy(*keys)
        .orderBy("_t", "_side")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    return (
        label_rows.unionByName(feature_rows, allowMissingColumns=True)
        .withColumn("_features", latest)
        .where(F.col("_side") == 1)
        .select(*labels_df.columns, *(F.col(f"_features.{c}").alias(c) for c in values))
    )


def latest_per_key(
    features_df: DataFrame,
    *,
    keys: str | Sequence[str],
    feature_ts: str = "feature_ts",
    as_of: datetime | None = None,
) -> DataFrame:
    """Per key, the feature row with the greatest ``feature_ts`` (at or before ``as_of`` when
    given): the online store's view. Joined to training labels without ``as_of`` it is the
    naive latest-snapshot join, which hands every label the features of the end of the period.
    """
    keys = _names(keys)
    require_columns(features_df, [*keys, feature_ts], "features_df")
    values = [c for c in features_df.columns if c not in keys]
    eligible = features_df if as_of is None else features_df.where(F.col(feature_ts) <= as_of)
    return (
        eligible.groupBy(*keys)
        .agg(F.max_by(F.struct(*values), F.col(feature_ts)).alias("_latest"))
        .select(*keys, "_latest.*")
    )


def online_features(daily_df: DataFrame, as_of: datetime) -> DataFrame:
    """``ml.customer_features_online``: per customer, the latest daily row available at
    ``as_of`` (``feature_ts <= as_of``), stamped ``as_of_ts``."""
    return (
        latest_per_key(daily_df.drop("feature_date"), keys="customer_id", as_of=as_of)
        .withColumn("as_of_ts", F.lit(as_of).cast("timestamp"))
        .transform(conform(ONLINE_SCHEMA))
    )


# --------------------------------------------------------------------------- tables


def create_table(spark: SparkSession, table: str) -> None:
    """Create (or replace) ``table``, empty, with its column comments and table comment."""
    if table not in SCHEMAS:
        raise ValueError(f"unknown ML table {table!r}: use one of {', '.join(SCHEMAS)}")
    declare_table(spark, table, SCHEMAS[table], COMMENTS[table])


def write_table(spark: SparkSession, df: DataFrame, table: str) -> str:
    """Replace ``table``'s rows with ``df`` conformed to its schema: declared afresh, then one
    append, so a rerun gives the same table and never duplicates. Returns the name."""
    create_table(spark, table)
    df.transform(conform(SCHEMAS[table])).write.format("delta").mode("append").saveAsTable(table)
    return table


def ensure_tables(spark: SparkSession, raw_root: str | Path) -> list[str]:
    """Build each of lesson 01's tables that does not exist yet -- ``ml.fraud_labels``,
    ``ml.payment_features``, ``ml.customer_daily_features`` -- from ``silver.payments`` (built
    first when missing) and the chargebacks under ``raw_root``, as the lesson's solution does.
    Tables that exist are left as they are. Returns the names built."""
    from lakehouse import gold

    wanted = (FRAUD_LABELS, PAYMENT_FEATURES, CUSTOMER_DAILY_FEATURES)
    missing = [t for t in wanted if not spark.catalog.tableExists(t)]
    if not missing:
        return []
    gold.ensure_silver_inputs(spark, ["silver.payments"], raw_root)
    payments_df = spark.table("silver.payments")
    if FRAUD_LABELS in missing:
        write_table(
            spark, fraud_labels(payments_df, read_chargebacks(spark, raw_root)), FRAUD_LABELS
        )
    labels_df = spark.table(FRAUD_LABELS)
    if PAYMENT_FEATURES in missing:
        write_table(spark, payment_features(payments_df, labels_df), PAYMENT_FEATURES)
    if CUSTOMER_DAILY_FEATURES in missing:
        daily_df = customer_daily_features(payments_df, labels_df)
        write_table(spark, daily_df, CUSTOMER_DAILY_FEATURES)
    return missing


# --------------------------------------------------------------------------- checks


def _rows_differing(actual: Column, expected: Column, tolerance: float | None) -> Column:
    if tolerance is None:
        return ~actual.eqNullSafe(expected)
    both_null = actual.isNull() & expected.isNull()
    close = F.abs(actual - expected) <= F.lit(tolerance)
    return ~(both_null | F.coalesce(close, F.lit(False)))


def check_labels(labels_df: DataFrame, payments_df: DataFrame, chargebacks_df: DataFrame) -> dict:
    """Assert ``labels_df`` is the labels table: one row per payment, ``is_fraud`` from the
    fraud notices (each notice once), ``label_available_ts`` never before the payment.
    Returns ``{"payments": n, "frauds": n, "notices": n}``."""
    columns = [f.name for f in FRAUD_LABELS_SCHEMA.fields]
    require_columns(labels_df, columns, "labels_df")
    expected_df = fraud_labels(payments_df, chargebacks_df)
    expected = expected_df.agg(
        F.count(F.lit(1)).alias("payments"),
        F.count_if("is_fraud").alias("frauds"),
        F.sum("notices").alias("notices"),
    ).first()
    check_grain(labels_df, "transaction_id", name="labels_df", expected_rows=expected["payments"])
    actual = labels_df.agg(
        F.count_if("is_fraud").alias("frauds"),
        F.coalesce(F.sum("notices"), F.lit(0)).alias("notices"),
        F.count_if(F.col("label_available_ts") < F.col("prediction_ts")).alias("early"),
    ).first()
    if actual["notices"] > expected["notices"]:
        raise AssertionError(
            f"labels_df counts {actual['notices']} notices; there are {expected['notices']} "
            "distinct ones: the feed delivers some notices twice. Deduplicate payments.chargebacks "
            "by chargeback_id before counting"
        )
    if actual["frauds"] != expected["frauds"]:
        raise AssertionError(
            f"labels_df flags {actual['frauds']} payments as fraud; the chargebacks name "
            f"{expected['frauds']}. is_fraud is true when a notice with is_fraud true names the "
            "payment (payments.chargebacks), not the is_fraud column of payments.transactions, "
            "which misses the fraud pattern that starts on 2026-06-20"
        )
    if actual["early"]:
        raise AssertionError(
            f"{actual['early']} label(s) are available before their payment arrived: "
            "label_available_ts is the fraud notice's label_available_ts (not its dispute_ts), "
            f"else prediction_ts + {LABEL_MATURITY_DAYS} days"
        )
    check_same_rows(labels_df, expected_df, columns, name="labels_df")
    return {k: int(expected[k]) for k in ("payments", "frauds", "notices")}


def check_payment_features(
    features_df: DataFrame,
    payments_df: DataFrame,
    labels_df: DataFrame,
    *,
    columns: Iterable[str] = PAYMENT_FEATURE_COLUMNS,
    name: str = "payment_features_df",
) -> int:
    """Assert the feature ``columns`` of ``features_df`` (one row per ``transaction_id``) are
    the values known at each payment's arrival, and say which mistake a difference comes from:
    a window that counts the current payment or later ones, a mean that includes the payment,
    labels used before they were available, a notice counted twice. Returns the row count."""
    columns = list(columns)
    unknown = [c for c in columns if c not in PAYMENT_FEATURE_COLUMNS]
    if unknown:
        raise ValueError(f"unknown feature column(s) {unknown}: use {PAYMENT_FEATURE_COLUMNS}")
    require_columns(features_df, ["transaction_id", *columns], name)
    leaks = [c for c in OUTCOME_COLUMNS if c in features_df.columns]
    if leaks:
        raise AssertionError(
            f"{name} carries {', '.join(leaks)}: outcomes of the payment's own decision (or its "
            "label) are not known when the payment is scored; drop them"
        )
    base = payment_base(payments_df)
    expected_df = (
        base.transform(with_velocity)
        .transform(with_history_flags)
        .transform(with_category_risk(labels_df))
    )
    rows = check_grain(features_df, "transaction_id", name=name, expected_rows=expected_df.count())
    leaky_rate = _category_rate(
        base, labels_df, matured=False, prior=CATEGORY_RATE_PRIOR, strength=CATEGORY_RATE_STRENGTH
    ).select("transaction_id", F.col("category_fraud_rate").alias("_leaky_rate"))
    joined = (
        features_df.select("transaction_id", *(F.col(c).alias(f"_a_{c}") for c in columns))
        .join(expected_df.select("transaction_id", *columns), "transaction_id", "left")
        .join(leaky_rate, "transaction_id", "left")
    )
    tolerance = {"amount_to_mean_30d": 1e-9, "category_fraud_rate": 1e-9}
    aggregates = []
    for c in columns:
        a, e = F.col(f"_a_{c}"), F.col(c)
        wrong = _rows_differing(a, e, tolerance.get(c))
        aggregates += [F.count_if(wrong).alias(f"{c}:wrong")]
        if c in VELOCITY_WINDOWS:
            aggregates += [
                F.count_if(wrong & (a == e + 1)).alias(f"{c}:plus_one"),
                F.count_if(wrong & (a > e)).alias(f"{c}:higher"),
            ]
        if c == "category_fraud_rate":
            leak = _rows_differing(a, F.col("_leaky_rate"), 1e-9)
            aggregates += [
                F.count_if(wrong & ~leak).alias(f"{c}:unmatured"),
                F.count_if(wrong & (a > e)).alias(f"{c}:higher"),
            ]
    counts = joined.agg(*aggregates).first()
    problems = []
    for c in columns:
        wrong = counts[f"{c}:wrong"]
        if not wrong:
            continue
        if c in VELOCITY_WINDOWS:
            seconds = VELOCITY_WINDOWS[c]
            if counts[f"{c}:plus_one"] == wrong:
                why = (
                    "counts the current payment: end the frame 1 ms before it, "
                    f"rangeBetween(-{seconds} * 1000, -1) over unix_millis(ingest_ts)"
                )
            elif counts[f"{c}:higher"]:
                why = (
                    "counts payments outside the window before it: ones that arrived after the "
                    "current one (order the window by the arrival time, unix_millis of "
                    "ingest_ts, not event_ts: a late event arrives long after its event_ts), or "
                    "earlier than the window (give the frame both bounds: "
                    f"rangeBetween(-{seconds} * 1000, -1))"
                )
            else:
                why = (
                    f"misses earlier payments: the frame reaches {seconds} s back, i.e. "
                    f"{seconds * 1000} in epoch milliseconds, per customer"
                )
        elif c == "amount_to_mean_30d":
            why = (
                "is amount_usd / the mean amount_usd of the customer's payments that arrived in "
                "the 30 days before it, the payment itself excluded (null without any)"
            )
        elif c == "is_new_country":
            why = "is true when no earlier payment of the customer was in this country"
        elif c == "is_new_device":
            why = (
                "is true when no earlier payment of the customer came from this "
                "device_fingerprint, and null when the payment has no device"
            )
        elif counts[f"{c}:unmatured"] == wrong:
            why = (
                "uses fraud labels that were not available yet: count a fraud only when its "
                "fraud_label_ts (the notice's label_available_ts) is before the payment's "
                "feature_ts"
            )
        elif counts[f"{c}:higher"]:
            why = (
                "counts more frauds than were known: a notice delivered twice counted twice? "
                "Count the labels table's rows (one per payment), not raw payments.chargebacks"
            )
        else:
            why = (
                f"is (frauds known + {CATEGORY_RATE_STRENGTH} * {CATEGORY_RATE_PRIOR}) / "
                f"(payments seen + {CATEGORY_RATE_STRENGTH}), both before the payment"
            )
        problems.append(f"{c} is wrong on {wrong} row(s): it {why}")
    if problems:
        raise AssertionError(f"{name}: " + "; ".join(problems))
    return rows


def check_feature_columns(columns: Iterable[str], *, name: str = "the feature columns") -> list:
    """Assert no column of ``columns`` is an outcome of the payment's decision or a label
    column. Returns the columns."""
    columns = list(columns)
    if not columns:
        raise AssertionError(f"{name} is empty: choose the features the model may use")
    leaks = [c for c in columns if c in OUTCOME_COLUMNS or c in LABEL_COLUMNS]
    if leaks:
        raise AssertionError(
            f"{name} include {', '.join(leaks)}: "
            "status, decline_reason and fraud_score are decided with or after the payment (the "
            "risk engine's score and the approval are outcomes), and the label columns are the "
            "answer. Keep only values known before the payment is scored"
        )
    return columns


def expected_point_in_time(
    labels_df: DataFrame,
    features_df: DataFrame,
    *,
    keys: Sequence[str],
    label_ts: str,
    row_key: str,
    feature_ts: str = "feature_ts",
) -> DataFrame:
    """The as-of join computed another way (a range join, then the greatest eligible
    ``feature_ts`` per label row): ``row_key``, ``feature_ts`` and the feature columns."""
    values = [c for c in features_df.columns if c not in keys]
    f = features_df.select(*keys, *(F.col(c).alias(f"_f_{c}") for c in values))
    eligible = (
        labels_df.select(row_key, *keys, label_ts)
        .join(f, keys, "left")
        .where(F.col(f"_f_{feature_ts}") <= F.col(label_ts))
        .groupBy(row_key)
        .agg(F.max(f"_f_{feature_ts}").alias(feature_ts))
    )
    chosen = labels_df.select(row_key, *keys).join(eligible, row_key, "left")
    return chosen.join(
        f.withColumnRenamed(f"_f_{feature_ts}", feature_ts), [*keys, feature_ts], "left"
    ).select(row_key, feature_ts, *(F.col(f"_f_{c}").alias(c) for c in values if c != feature_ts))


def check_point_in_time(
    joined_df: DataFrame,
    features_df: DataFrame,
    *,
    keys: str | Sequence[str],
    label_ts: str,
    row_key: str,
    feature_ts: str = "feature_ts",
    labels_df: DataFrame | None = None,
    name: str = "the training set",
) -> int:
    """Assert ``joined_df`` is the as-of join of its labels with ``features_df``: one row per
    ``row_key``, each with the features of the latest row of its ``keys`` whose ``feature_ts``
    is at or before ``label_ts`` -- never a newer one, never an older one, none missing.
    ``labels_df`` (default: ``joined_df``'s own label columns) sets the expected rows.
    Returns the number of rows."""
    keys = _names(keys)
    values = [c for c in features_df.columns if c not in keys]
    require_columns(joined_df, [row_key, *keys, label_ts, *values], name)
    labels = labels_df if labels_df is not None else joined_df.select(row_key, *keys, label_ts)
    rows = check_grain(joined_df, row_key, name=name, expected_rows=labels.count())
    future = joined_df.where(F.col(feature_ts) > F.col(label_ts))
    n_future = future.count()
    if n_future:
        sample = future.orderBy(row_key).limit(3).collect()
        raise AssertionError(
            f"{name}: {n_future} row(s) use features from after their {label_ts}, e.g. "
            f"{_show(sample, [row_key, label_ts, feature_ts])}. That is the future leaking into "
            f"training: take, per label, the latest feature row with {feature_ts} <= {label_ts} "
            "(features.point_in_time_join), not the latest snapshot"
        )
    expected = expected_point_in_time(
        labels, features_df, keys=keys, label_ts=label_ts, row_key=row_key, feature_ts=feature_ts
    )
    compared = joined_df.select(row_key, F.col(feature_ts).alias("_actual")).join(
        expected.select(row_key, feature_ts), row_key, "left"
    )
    summary = compared.agg(
        F.count_if(F.col("_actual").isNull() & F.col(feature_ts).isNotNull()).alias("missing"),
        F.count_if(F.col("_actual") < F.col(feature_ts)).alias("stale"),
    ).first()
    if summary["missing"]:
        raise AssertionError(
            f"{name}: {summary['missing']} row(s) have no features although a feature row at or "
            f"before their {label_ts} exists: an exact match on the time, or a strict <, finds "
            f"none; the as-of join takes the latest row with {feature_ts} <= {label_ts}"
        )
    if summary["stale"]:
        raise AssertionError(
            f"{name}: {summary['stale']} row(s) use an older feature row than the latest one "
            f"available at their {label_ts}: take the greatest {feature_ts} <= {label_ts} per "
            "label, not the first"
        )
    check_same_rows(
        joined_df, expected, list(dict.fromkeys([row_key, feature_ts, *values])), name=name
    )
    return rows


def check_online_parity(
    online_df: DataFrame, daily_df: DataFrame, *, name: str = "the online table"
) -> int:
    """Assert the online table equals the offline features at its ``as_of_ts``: per customer
    the latest ``daily_df`` row with ``feature_ts <= as_of_ts`` (computed with
    :func:`point_in_time_join`), every such customer present. Returns the number of rows."""
    values = [f.name for f in ONLINE_SCHEMA.fields if f.name not in ("customer_id", "as_of_ts")]
    require_columns(online_df, ["customer_id", "as_of_ts", *values], name)
    stamps = [r["as_of_ts"] for r in online_df.select("as_of_ts").distinct().collect()]
    if len(stamps) != 1:
        raise AssertionError(
            f"{name} has {len(stamps)} distinct as_of_ts values: refresh every row as of one "
            "instant, so the table is a consistent snapshot"
        )
    (as_of,) = stamps
    newer = online_df.where(F.col("feature_ts") > F.col("as_of_ts")).count()
    if newer:
        raise AssertionError(
            f"{name}: {newer} row(s) are newer than as_of_ts {as_of}: the online table serves "
            "what was known then, the latest row with feature_ts <= as_of_ts"
        )
    spine = (
        daily_df.where(F.col("feature_ts") <= F.lit(as_of))
        .select("customer_id")
        .distinct()
        .withColumn("as_of_ts", F.lit(as_of).cast("timestamp"))
    )
    offline = point_in_time_join(
        spine, daily_df.drop("feature_date"), keys="customer_id", label_ts="as_of_ts"
    )
    rows = check_grain(online_df, "customer_id", name=name, expected_rows=spine.count())
    check_same_rows(online_df, offline, ["customer_id", *values], name=name)
    return rows


# --------------------------------------------------------------------------- quick model


def quick_fraud_metric(
    training_pdf,
    columns: Sequence[str],
    *,
    split_ts: datetime,
    label: str = "is_fraud",
    time_column: str = "prediction_ts",
) -> dict[str, float]:
    """Fit a small logistic regression (scikit-learn, balanced class weights) on the rows of
    the pandas frame ``training_pdf`` before ``split_ts`` and score the rows from it on:
    ``{"pr_auc": average precision, "roc_auc": ..., "train_rows", "test_rows", "test_frauds"}``.
    Missing values become 0 and each column gets an ``_is_null`` twin; booleans are 0/1, other
    text columns are one-hot encoded. A quick gauge for comparing feature sets, not a model."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = training_pdf[list(columns)]
    parts = []
    for c in columns:
        series = frame[c]
        if series.map(lambda v: isinstance(v, str)).any():
            parts.append(pd.get_dummies(series.fillna("(none)"), prefix=c, dtype=float))
            continue
        # booleans with nulls and decimals arrive as Python objects
        numeric = series.map(lambda v: np.nan if v is None else float(v)).astype("float64")
        parts.append(pd.DataFrame({c: numeric.fillna(0.0), f"{c}_is_null": numeric.isna() * 1.0}))
    x = pd.concat(parts, axis=1).to_numpy(dtype="float64")
    y = training_pdf[label].astype(bool).to_numpy()
    train = (pd.to_datetime(training_pdf[time_column]) < pd.Timestamp(split_ts)).to_numpy()
    model = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000, C=1.0)
    )
    model.fit(x[train], y[train])
    scores = model.predict_proba(x[~train])[:, 1]
    return {
        "pr_auc": float(average_precision_score(y[~train], scores)),
        "roc_auc": float(roc_auc_score(y[~train], scores)),
        "train_rows": int(train.sum()),
        "test_rows": int((~train).sum()),
        "test_frauds": int(np.sum(y[~train])),
    }


__all__ = [
    "CATEGORY_RATE_PRIOR",
    "CATEGORY_RATE_STRENGTH",
    "CUSTOMER_DAILY_SCHEMA",
    "DAILY_FEATURE_COLUMNS",
    "FRAUD_LABELS_SCHEMA",
    "LABEL_MATURITY_DAYS",
    "MEAN_WINDOW_SECONDS",
    "ONLINE_SCHEMA",
    "OUTCOME_COLUMNS",
    "PAYMENT_FEATURES_SCHEMA",
    "PAYMENT_FEATURE_COLUMNS",
    "VELOCITY_WINDOWS",
    "check_feature_columns",
    "check_labels",
    "check_online_parity",
    "check_payment_features",
    "check_point_in_time",
    "chargebacks_schema",
    "create_table",
    "customer_daily_features",
    "ensure_tables",
    "expected_point_in_time",
    "fraud_labels",
    "latest_per_key",
    "online_features",
    "payment_base",
    "payment_features",
    "point_in_time_join",
    "quick_fraud_metric",
    "read_chargebacks",
    "with_category_risk",
    "with_history_flags",
    "with_velocity",
    "write_table",
]
