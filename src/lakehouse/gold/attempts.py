"""Gold: ``gold.fact_payment_attempts``, one row per authorization attempt of a payment that
``gold.fact_payments`` holds: which processor it went to, its ISO 8583 response code, whether
it was approved and how long the processor took. Payment operations read approval by
processor here, on **first attempts**: a retry stays on its payment's processor, so counting
retries would charge a processor twice for one declined payment.

The generator writes the attempts as a clean feed (``payments.attempts``, Parquet, no injected
defects), so no Bronze or Silver lesson cleans them; the fact keeps only the attempts of
payments that reached Gold (a payment quarantined in Silver has attempts but no fact row).

Example::

    from lakehouse.gold import attempts

    attempts.ensure_payment_attempts(spark, raw_root)
    spark.table(attempts.FACT_PAYMENT_ATTEMPTS).where("attempt_no = 1").groupBy("processor").count()
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, IntegerType, StringType, StructType, TimestampType

from lakehouse.gold import commented_field as _field
from lakehouse.gold import facts

FACT_PAYMENT_ATTEMPTS = "gold.fact_payment_attempts"
GRAIN = ("attempt_id",)
SOURCE = "payments.attempts"  # the generator's dataset (lakehouse.datagen.payment_ops.ATTEMPTS)
SOURCE_FILES = "payments/attempts/*.parquet"  # under the raw root

FACT_PAYMENT_ATTEMPTS_SCHEMA = StructType(
    [
        _field("attempt_id", StringType(), "Authorization attempt (degenerate)", nullable=False),
        _field(
            "transaction_id",
            StringType(),
            "gold.fact_payments: the payment this attempt authorizes",
            nullable=False,
        ),
        _field("attempt_no", IntegerType(), "1 for the payment's first attempt, 2-4 for retries"),
        _field(
            "date_key",
            IntegerType(),
            "gold.dim_date: attempt date YYYYMMDD; -1: unknown",
            nullable=False,
        ),
        _field("attempt_ts", TimestampType(), "When the authorization request went out (UTC)"),
        _field("processor", StringType(), "woodgrove, relecloud, lamna or trey"),
        _field("routed_randomly", BooleanType(), "True: the processor was drawn at random"),
        _field("response_code", StringType(), "ISO 8583 response code (00: approved)"),
        _field("approved", BooleanType(), "response_code = '00'"),
        _field("latency_ms", IntegerType(), "How long the processor took to answer"),
    ]
)
COMMENT = (
    "Payment authorization attempts: one row per attempt (attempt_id) of a payment in "
    "gold.fact_payments, first attempts (attempt_no = 1) and retries, with the processor, "
    "the ISO 8583 response code and the latency."
)


def source_ddl() -> str:
    """The raw attempts' schema as DDL, from the generator's spec of ``payments.attempts``."""
    from lakehouse.datagen import SCHEMAS

    return ", ".join(f"{name} {kind}" for name, kind in SCHEMAS[SOURCE].items())


def read_source(spark: SparkSession, raw_root) -> DataFrame:
    """The generator's ``payments.attempts`` Parquet files under ``raw_root``."""
    return spark.read.schema(source_ddl()).parquet(f"{raw_root}/{SOURCE_FILES}")


def fact_payment_attempts_df(attempts_df: DataFrame, fact_payments_df: DataFrame) -> DataFrame:
    """The fact's rows: the attempts of payments ``fact_payments_df`` holds (a left semi join
    on ``transaction_id``), with their ``date_key``, conformed to the fact's schema."""
    facts.require_columns(fact_payments_df, ["transaction_id"], "fact_payments_df")
    return (
        attempts_df.join(fact_payments_df.select("transaction_id"), "transaction_id", "left_semi")
        .withColumn("date_key", facts.date_key("attempt_ts"))
        .transform(facts.conform(FACT_PAYMENT_ATTEMPTS_SCHEMA))
    )


def build_payment_attempts(spark: SparkSession, raw_root) -> str:
    """(Re)build ``gold.fact_payment_attempts`` from the raw attempts and ``gold.fact_payments``:
    the table is declared with its comments, then loaded with one append."""
    df = fact_payment_attempts_df(read_source(spark, raw_root), spark.table(facts.FACT_PAYMENTS))
    facts.declare_table(spark, FACT_PAYMENT_ATTEMPTS, FACT_PAYMENT_ATTEMPTS_SCHEMA, COMMENT)
    df.write.format("delta").mode("append").saveAsTable(FACT_PAYMENT_ATTEMPTS)
    return FACT_PAYMENT_ATTEMPTS


def ensure_payment_attempts(spark: SparkSession, raw_root) -> str:
    """Build ``gold.fact_payment_attempts`` (and ``gold.fact_payments`` before it) when it does
    not exist yet; an existing table is left as it is. Returns the name."""
    if not spark.catalog.tableExists(FACT_PAYMENT_ATTEMPTS):
        facts.ensure_facts(spark, raw_root)
        build_payment_attempts(spark, raw_root)
    return FACT_PAYMENT_ATTEMPTS


def check_payment_attempts(attempts_df: DataFrame, fact_payments_df: DataFrame) -> int:
    """Assert the fact is at its grain (one row per ``attempt_id``), that every attempt points
    at a payment of ``fact_payments_df`` and that every payment has exactly one first attempt.
    Returns the row count."""
    rows = facts.check_grain(attempts_df, GRAIN, name=FACT_PAYMENT_ATTEMPTS)
    orphans = attempts_df.join(
        fact_payments_df.select("transaction_id"), "transaction_id", "left_anti"
    ).count()
    if orphans:
        raise AssertionError(
            f"{FACT_PAYMENT_ATTEMPTS} has {orphans} attempt(s) of payments that "
            f"{facts.FACT_PAYMENTS} does not hold: keep only the attempts of Gold's payments "
            "(a left semi join on transaction_id)"
        )
    firsts = attempts_df.where(F.col("attempt_no") == 1).groupBy("transaction_id").count()
    payments = fact_payments_df.select("transaction_id").distinct()
    wrong = payments.join(firsts, "transaction_id", "left").where(
        F.coalesce(F.col("count"), F.lit(0)) != 1
    )
    if wrong_count := wrong.count():
        raise AssertionError(
            f"{wrong_count} payment(s) of {facts.FACT_PAYMENTS} do not have exactly one first "
            f"attempt in {FACT_PAYMENT_ATTEMPTS}: rebuild it from the complete attempts feed"
        )
    return rows
