"""Gold: ``gold.customer_360``, one row per CRM customer unifying the profile, lifetime value,
order and payment behaviour, web engagement and support history, documented column by column.

**Grain.** One row per ``customer_id`` of the CRM: the current version of ``gold.dim_customer``
(the same customers as ``silver.customers``), with that version's ``customer_sk``. Activity the
facts resolved to the unknown member (an order or a payment of an id the CRM never sent) and
sessions or tickets of such ids belong to no customer here: :func:`activity_outside_crm`
counts them, so nothing disappears silently.

**Aggregate, then join.** Each source is summarized to one row per ``customer_id`` first, then
the summaries are left-joined to the profile. Joining the raw facts first (order lines x
payments x sessions of a customer) multiplies every line by the customer's payments and
sessions, and the sums come out inflated: :func:`check_lifetime_value` catches it.

**No activity is a zero, not a null.** A customer without orders has ``orders_count = 0`` and
``lifetime_value_usd = 0``; dates of things that never happened (``last_order_date``) and
rates with nothing to divide by (``approval_rate`` without a payment) are null.

**As of.** Every "days since" and "last 30 days" is measured from :func:`as_of_date`, the day
after the latest activity (order, payment, web session, support ticket), never from the wall
clock: a rebuild gives the same table. The analytics of ``lakehouse.gold.analytics`` take "today"
from the same events, so the Customer 360 and the churn features agree on it.

The column descriptions live once, in :data:`COLUMNS`: they become the table's column comments
and the Markdown table of the lesson (:func:`columns_markdown`).

Example::

    from lakehouse.gold import customer360

    customer360.ensure_customer_360(spark, raw_root)
    spark.table(customer360.CUSTOMER_360).orderBy("lifetime_value_usd", ascending=False).show()
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from lakehouse.gold import UNKNOWN_KEY

CUSTOMER_360 = "gold.customer_360"

# Order statuses whose lines are not revenue: the sale was undone. processing and shipped
# orders are paid and count (they are simply recent); see the lesson for the reasoning.
NON_REVENUE_STATUSES = ("cancelled", "returned")
# Ticket statuses that still need someone's attention.
OPEN_TICKET_STATUSES = ("open", "in_progress", "waiting_on_customer")
RECENT_DAYS = 30  # the window of web_sessions_last_30d

# The activity whose latest event sets the as-of date: table -> its event timestamps.
AS_OF_EVENTS: dict[str, tuple[str, ...]] = {
    "gold.fact_sales": ("order_ts",),
    "gold.fact_payments": ("event_ts",),
    "silver.web_sessions": ("session_end",),
    "silver.support_tickets": ("created_at", "updated_at"),
}

# Columns of the inputs (the Gold facts' contract and the Silver tables).
SALES_COLUMNS = ("order_id", "customer_sk", "date_key", "status", "total_usd")
PAYMENTS_COLUMNS = ("transaction_id", "customer_sk", "amount_usd", "is_approved", "is_fraud")
SESSIONS_COLUMNS = ("session_id", "customer_id", "session_start", "converted")
TICKETS_COLUMNS = ("ticket_id", "customer_id", "status", "created_at", "is_deleted")
PROFILE_COLUMNS = (
    "customer_sk",
    "customer_id",
    "first_name",
    "last_name",
    "email",
    "segment",
    "city",
    "country",
    "signup_date",
    "marketing_opt_in",
    "is_current",
)

MONEY = DecimalType(18, 2)


class Column360(NamedTuple):
    name: str
    data_type: DataType
    group: str  # the source a reader looks at to understand it
    description: str
    zero_when_none: bool = False  # a count or sum: 0 (not null) for a customer without activity


# The one source of truth for the table's columns: order, type, and the description that becomes
# both the column comment and the lesson's documentation.
COLUMNS: tuple[Column360, ...] = (
    Column360(
        "customer_id", StringType(), "profile", "CRM customer id: the table's key, one row each"
    ),
    Column360(
        "customer_sk",
        LongType(),
        "profile",
        "Surrogate key of the customer's current version in gold.dim_customer",
    ),
    Column360("first_name", StringType(), "profile", "First name (current CRM profile)"),
    Column360("last_name", StringType(), "profile", "Last name (current CRM profile)"),
    Column360("email", StringType(), "profile", "Email address (current CRM profile)"),
    Column360(
        "segment", StringType(), "profile", "consumer, small_business, corporate or vip (current)"
    ),
    Column360("city", StringType(), "profile", "City of the current address"),
    Column360(
        "country", StringType(), "profile", "ISO 3166-1 alpha-2 country of the current address"
    ),
    Column360("signup_date", DateType(), "profile", "When the customer signed up"),
    Column360(
        "tenure_days",
        IntegerType(),
        "profile",
        "Days from signup_date to as_of_date; null without a signup date",
    ),
    Column360(
        "marketing_opt_in", BooleanType(), "profile", "Whether the customer accepts marketing"
    ),
    Column360(
        "orders_count",
        LongType(),
        "orders",
        "Orders in gold.fact_sales (any status, at least one line); 0 when none",
        zero_when_none=True,
    ),
    Column360(
        "cancelled_returned_orders",
        LongType(),
        "orders",
        "Of orders_count, the cancelled or returned ones (no revenue); 0 when none",
        zero_when_none=True,
    ),
    Column360(
        "lifetime_value_usd",
        MONEY,
        "orders",
        "Sum of total_usd (after discount, with tax) of the lines of orders neither cancelled "
        "nor returned; 0 when none",
        zero_when_none=True,
    ),
    Column360(
        "avg_order_value_usd",
        MONEY,
        "orders",
        "lifetime_value_usd / orders that count toward it; null when there is none",
    ),
    Column360(
        "first_order_date",
        DateType(),
        "orders",
        "Date of the first order (any status); null if none",
    ),
    Column360(
        "last_order_date",
        DateType(),
        "orders",
        "Date of the latest order (any status); null if none",
    ),
    Column360(
        "days_since_last_order",
        IntegerType(),
        "orders",
        "Days from last_order_date to as_of_date; null if the customer never ordered",
    ),
    Column360(
        "payment_attempts",
        LongType(),
        "payments",
        "Payment attempts in gold.fact_payments, approved or declined; 0 when none",
        zero_when_none=True,
    ),
    Column360(
        "approved_amount_usd",
        MONEY,
        "payments",
        "Sum of amount_usd of the approved attempts; 0 when none",
        zero_when_none=True,
    ),
    Column360(
        "approval_rate",
        DoubleType(),
        "payments",
        "Approved attempts / payment_attempts (0 to 1, 4 decimals); null without attempts",
    ),
    Column360(
        "declined_payments",
        LongType(),
        "payments",
        "Declined attempts; 0 when none",
        zero_when_none=True,
    ),
    Column360(
        "fraud_flagged_payments",
        LongType(),
        "payments",
        "Attempts labelled is_fraud; 0 when none",
        zero_when_none=True,
    ),
    Column360(
        "web_sessions",
        LongType(),
        "web",
        "Sessions in silver.web_sessions where the visitor was logged in as this customer; "
        "0 when none",
        zero_when_none=True,
    ),
    Column360(
        "web_sessions_last_30d",
        LongType(),
        "web",
        "Sessions started in the 30 days before as_of_date; 0 when none",
        zero_when_none=True,
    ),
    Column360(
        "last_session_date", DateType(), "web", "Date the latest session started; null if none"
    ),
    Column360(
        "days_since_last_visit",
        IntegerType(),
        "web",
        "Days from last_session_date to as_of_date; null if the customer never visited",
    ),
    Column360(
        "web_conversion_rate",
        DoubleType(),
        "web",
        "Sessions with a purchase / web_sessions (0 to 1, 4 decimals); null without sessions",
    ),
    Column360(
        "support_tickets",
        LongType(),
        "support",
        "Tickets in silver.support_tickets, soft-deleted ones excluded; 0 when none",
        zero_when_none=True,
    ),
    Column360(
        "open_support_tickets",
        LongType(),
        "support",
        "Of support_tickets, those open, in_progress or waiting_on_customer; 0 when none",
        zero_when_none=True,
    ),
    Column360(
        "last_ticket_date",
        DateType(),
        "support",
        "Date the latest (not deleted) ticket was created; null if none",
    ),
    Column360(
        "as_of_date",
        DateType(),
        "as of",
        "The reference date of every 'days since' and 'last 30 days': the day after the latest "
        "order, payment, web session or ticket event",
    ),
)

CUSTOMER_360_SCHEMA = StructType(
    [StructField(c.name, c.data_type, True, {"comment": c.description}) for c in COLUMNS]
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
# Counts and sums that are 0, never null, for a customer without that activity.
ZERO_COLUMNS = tuple(c.name for c in COLUMNS if c.zero_when_none)
TABLE_COMMENT = (
    "Customer 360: one row per CRM customer (current profile from gold.dim_customer) with "
    "lifetime value and order behaviour (gold.fact_sales), payments (gold.fact_payments), web "
    "engagement (silver.web_sessions) and support history (silver.support_tickets), as of the "
    "day after the latest activity"
)


def columns_markdown(columns: Sequence[Column360] = COLUMNS) -> str:
    """The columns as a Markdown table (column, type, source, description): what the lesson
    shows, generated from the same :data:`COLUMNS` as the table's comments."""
    lines = ["| column | type | from | description |", "|---|---|---|---|"]
    lines += [
        f"| `{c.name}` | {c.data_type.simpleString()} | {c.group} | {c.description} |"
        for c in columns
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def _require(df: DataFrame, columns: Sequence[str], name: str, hint: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name} lacks the column(s) {', '.join(map(repr, missing))}; it has "
            f"{', '.join(df.columns)}. {hint}"
        )


def date_from_key(date_key: str | Column) -> Column:
    """``date_key`` (``YYYYMMDD``, -1 unknown) -> a date (null for the unknown date)."""
    key = F.col(date_key) if isinstance(date_key, str) else date_key
    return F.when(key == UNKNOWN_KEY, F.lit(None).cast("date")).otherwise(
        F.to_date(key.cast("string"), "yyyyMMdd")
    )


def _rate(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator rounded to 4 decimals; null when there is nothing to divide."""
    return F.when(denominator > 0, F.round(numerator / denominator, 4))


def _customer_ids(dim_customer_df: DataFrame) -> DataFrame:
    """Every known version's key -> its customer id (the unknown member left out): the bridge
    from the facts' ``customer_sk`` (the version in force at the event) to ``customer_id``."""
    _require(
        dim_customer_df,
        ["customer_sk", "customer_id"],
        "dim_customer_df",
        "Pass spark.table('gold.dim_customer').",
    )
    return dim_customer_df.where(
        (F.col("customer_sk") != UNKNOWN_KEY) & F.col("customer_id").isNotNull()
    ).select("customer_sk", "customer_id")


# ------------------------------------------------------------------------------------------------
# As-of date
# ------------------------------------------------------------------------------------------------
def latest_event_date(frames: Mapping[str, tuple[DataFrame, Sequence[str]]]) -> date:
    """The day after the latest value of the given timestamp columns.

    ``frames`` maps a label (for messages) to a DataFrame and its event columns. One small
    aggregate per DataFrame (a union of them all plans slower); the day is taken in Spark, in
    the session's time zone (UTC), not from Python datetimes in the machine's local time.

    >>> latest_event_date({"orders": (orders_df, ["order_ts"])})  # doctest: +SKIP
    datetime.date(2026, 7, 1)
    """
    if not frames:
        raise ValueError("latest_event_date needs at least one DataFrame and its event columns")
    for label, (df, columns) in frames.items():
        if not columns:
            raise ValueError(f"{label}: name at least one event timestamp column")
        _require(df, list(columns), label, "Name the event timestamp columns it holds.")

    def latest(columns: Sequence[str]) -> Column:
        maxima = [F.max(c).cast("timestamp") for c in columns]
        return F.to_date(maxima[0] if len(maxima) == 1 else F.greatest(*maxima))

    days = [df.agg(latest(columns)).first()[0] for df, columns in frames.values()]
    days = [d for d in days if d is not None]
    if not days:
        raise ValueError(
            f"no event in {', '.join(frames)}: the as-of date is the day after the latest "
            "event, so build the Silver tables first (gold.ensure_silver_inputs)"
        )
    return max(days) + timedelta(days=1)


def as_of_date(spark: SparkSession, events: Mapping[str, Sequence[str]] = AS_OF_EVENTS) -> date:
    """The Customer 360's "today": the day after the latest event of ``events`` (table ->
    timestamp columns: orders, payments, web sessions, tickets). Derived from the data, so
    every run agrees.

    >>> as_of_date(spark)  # doctest: +SKIP
    datetime.date(2026, 7, 1)
    """
    return latest_event_date({t: (spark.table(t), cols) for t, cols in events.items()})


# ------------------------------------------------------------------------------------------------
# One summary per source, one row per customer_id
# ------------------------------------------------------------------------------------------------
def current_profiles(dim_customer_df: DataFrame) -> DataFrame:
    """The grain: each customer's current version in ``gold.dim_customer`` (unknown member
    excluded), with its ``customer_sk`` and profile attributes."""
    _require(
        dim_customer_df,
        PROFILE_COLUMNS,
        "dim_customer_df",
        "Pass spark.table('gold.dim_customer').",
    )
    return dim_customer_df.where(
        F.col("is_current")
        & (F.col("customer_sk") != UNKNOWN_KEY)
        & F.col("customer_id").isNotNull()
    ).select(*[c for c in PROFILE_COLUMNS if c != "is_current"])


def sales_summary(fact_sales_df: DataFrame, dim_customer_df: DataFrame) -> DataFrame:
    """Per customer_id: ``orders_count``, ``cancelled_returned_orders``, ``revenue_orders``,
    ``lifetime_value_usd``, ``first_order_date``, ``last_order_date`` from ``gold.fact_sales``
    (one row per order line). Lines of the unknown customer are left out.

    >>> dim_customer = spark.table("gold.dim_customer")  # doctest: +SKIP
    >>> sales_summary(spark.table("gold.fact_sales"), dim_customer)  # doctest: +SKIP
    """
    _require(fact_sales_df, SALES_COLUMNS, "fact_sales_df", "Pass spark.table('gold.fact_sales').")
    undone = F.col("status").isin(*NON_REVENUE_STATUSES)
    order_date = date_from_key("date_key")
    return (
        fact_sales_df.join(_customer_ids(dim_customer_df), "customer_sk")
        .groupBy("customer_id")
        .agg(
            F.count_distinct("order_id").alias("orders_count"),
            F.count_distinct(F.when(undone, F.col("order_id"))).alias("cancelled_returned_orders"),
            F.count_distinct(F.when(~undone, F.col("order_id"))).alias("revenue_orders"),
            F.coalesce(F.sum(F.when(~undone, F.col("total_usd"))), F.lit(0))
            .cast(MONEY)
            .alias("lifetime_value_usd"),
            F.min(order_date).alias("first_order_date"),
            F.max(order_date).alias("last_order_date"),
        )
    )


def payments_summary(fact_payments_df: DataFrame, dim_customer_df: DataFrame) -> DataFrame:
    """Per customer_id: ``payment_attempts``, ``approved_payments``, ``approved_amount_usd``,
    ``declined_payments``, ``fraud_flagged_payments`` from ``gold.fact_payments`` (one row per
    attempt). Attempts of the unknown customer are left out."""
    _require(
        fact_payments_df,
        PAYMENTS_COLUMNS,
        "fact_payments_df",
        "Pass spark.table('gold.fact_payments').",
    )
    approved = F.coalesce(F.col("is_approved"), F.lit(False))
    return (
        fact_payments_df.join(_customer_ids(dim_customer_df), "customer_sk")
        .groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("payment_attempts"),
            F.count_if(approved).alias("approved_payments"),
            F.coalesce(F.sum(F.when(approved, F.col("amount_usd"))), F.lit(0))
            .cast(MONEY)
            .alias("approved_amount_usd"),
            F.count_if(~approved).alias("declined_payments"),
            F.count_if(F.coalesce(F.col("is_fraud"), F.lit(False))).alias("fraud_flagged_payments"),
        )
    )


def web_summary(web_sessions_df: DataFrame, as_of: date) -> DataFrame:
    """Per customer_id: ``web_sessions``, ``web_sessions_last_30d`` (started in the 30 days
    before ``as_of``), ``converted_sessions``, ``last_session_date`` from
    ``silver.web_sessions``. Anonymous sessions (no customer_id) belong to nobody."""
    _require(
        web_sessions_df,
        SESSIONS_COLUMNS,
        "web_sessions_df",
        "Pass spark.table('silver.web_sessions').",
    )
    started = F.to_date("session_start")
    recent = (started >= F.date_sub(F.lit(as_of), RECENT_DAYS)) & (started < F.lit(as_of))
    return (
        web_sessions_df.where(F.col("customer_id").isNotNull())
        .groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("web_sessions"),
            F.count_if(recent).alias("web_sessions_last_30d"),
            F.count_if(F.coalesce(F.col("converted"), F.lit(False))).alias("converted_sessions"),
            F.max(started).alias("last_session_date"),
        )
    )


def support_summary(support_tickets_df: DataFrame) -> DataFrame:
    """Per customer_id: ``support_tickets``, ``open_support_tickets``, ``last_ticket_date``
    from ``silver.support_tickets``; soft-deleted tickets (``is_deleted``) do not count."""
    _require(
        support_tickets_df,
        TICKETS_COLUMNS,
        "support_tickets_df",
        "Pass spark.table('silver.support_tickets').",
    )
    return (
        support_tickets_df.where(
            F.col("customer_id").isNotNull() & ~F.coalesce(F.col("is_deleted"), F.lit(False))
        )
        .groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("support_tickets"),
            F.count_if(F.col("status").isin(*OPEN_TICKET_STATUSES)).alias("open_support_tickets"),
            F.max(F.to_date("created_at")).alias("last_ticket_date"),
        )
    )


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------
def assemble(
    profiles_df: DataFrame,
    summaries: Sequence[DataFrame],
    *,
    as_of: date,
) -> DataFrame:
    """Left-join the per-customer ``summaries`` to ``profiles_df`` on ``customer_id``, fill the
    counts and sums with 0, derive the rates and recencies, and conform to
    :data:`CUSTOMER_360_SCHEMA`. Each summary must hold one row per customer_id (a check
    raises otherwise: a duplicated key would duplicate customers)."""
    joined = profiles_df
    for summary in summaries:
        _require(summary, ["customer_id"], "a summary", "Aggregate per customer_id first.")
        joined = joined.join(summary, "customer_id", "left")
    as_of_lit = F.lit(as_of).cast("date")
    zero = {name: F.coalesce(F.col(name), F.lit(0)) for name in ZERO_COLUMNS}
    derived = {
        **zero,
        "tenure_days": F.datediff(as_of_lit, F.col("signup_date")),
        "avg_order_value_usd": F.when(
            F.col("revenue_orders") > 0,
            F.col("lifetime_value_usd") / F.col("revenue_orders"),
        ),
        "days_since_last_order": F.datediff(as_of_lit, F.col("last_order_date")),
        "approval_rate": _rate(F.col("approved_payments"), F.col("payment_attempts")),
        "days_since_last_visit": F.datediff(as_of_lit, F.col("last_session_date")),
        "web_conversion_rate": _rate(F.col("converted_sessions"), F.col("web_sessions")),
        "as_of_date": as_of_lit,
    }
    missing = [c for c in COLUMN_NAMES if c not in derived and c not in joined.columns]
    if missing:
        raise ValueError(
            f"the summaries lack {', '.join(map(repr, missing))}: pass sales_summary, "
            "payments_summary, web_summary and support_summary"
        )
    return joined.select(
        *[derived.get(c.name, F.col(c.name)).cast(c.data_type).alias(c.name) for c in COLUMNS]
    )


def customer_360(
    dim_customer_df: DataFrame,
    fact_sales_df: DataFrame,
    fact_payments_df: DataFrame,
    web_sessions_df: DataFrame,
    support_tickets_df: DataFrame,
    *,
    as_of: date,
) -> DataFrame:
    """The Customer 360 rows: one summary per source, then left joins from the profile.

    >>> c360_df = customer_360(
    ...     spark.table("gold.dim_customer"), spark.table("gold.fact_sales"),
    ...     spark.table("gold.fact_payments"), spark.table("silver.web_sessions"),
    ...     spark.table("silver.support_tickets"), as_of=as_of_date(spark),
    ... )  # doctest: +SKIP
    """
    return assemble(
        current_profiles(dim_customer_df),
        [
            sales_summary(fact_sales_df, dim_customer_df),
            payments_summary(fact_payments_df, dim_customer_df),
            web_summary(web_sessions_df, as_of),
            support_summary(support_tickets_df),
        ],
        as_of=as_of,
    )


def save_customer_360(spark: SparkSession, c360_df: DataFrame) -> str:
    """Replace ``gold.customer_360`` with ``c360_df``: the table and column comments from
    :data:`TABLE_COMMENT` and :data:`COLUMNS`, the rows with ``overwrite``."""
    from lakehouse.tables import DeltaTable

    _require(c360_df, COLUMN_NAMES, "c360_df", "Build it with customer360.customer_360(...).")
    spark.sql("CREATE SCHEMA IF NOT EXISTS gold")
    (
        DeltaTable.createOrReplace(spark)
        .tableName(CUSTOMER_360)
        .comment(TABLE_COMMENT)
        .addColumns(CUSTOMER_360_SCHEMA)
        .execute()
    )
    (
        c360_df.select(*[F.col(c.name).cast(c.data_type) for c in COLUMNS])
        .write.format("delta")
        .mode("overwrite")
        .saveAsTable(CUSTOMER_360)
    )
    return CUSTOMER_360


def column_comments(spark: SparkSession, table: str = CUSTOMER_360) -> dict[str, str | None]:
    """``table``'s column comments as stored with the table: ``{column: comment}``.

    On Databricks (and delta-spark) this is the catalog's view, ``spark.catalog.listColumns``,
    which is what ``DESCRIBE TABLE`` shows; the embedded engine's Spark catalog does not carry
    column comments, so there they are read from the Delta log's schema, where both engines
    keep them.

    >>> column_comments(spark)["lifetime_value_usd"]  # doctest: +SKIP
    'Sum of total_usd ...'
    """
    from lakehouse.session import engine_of

    if engine_of(spark) == "embedded":
        from lakehouse.engines.embedded import log
        from lakehouse.engines.embedded.catalog import catalog_for

        catalog = catalog_for(spark)
        if catalog is not None:
            location = catalog.resolve(table).location
            fields = log.open_table(location).schema().fields
            return {f.name: (f.metadata or {}).get("comment") for f in fields}
    return {c.name: c.description for c in spark.catalog.listColumns(table)}


GOLD_INPUTS = ("gold.dim_customer", "gold.fact_sales", "gold.fact_payments")
SILVER_INPUTS = (
    "silver.customers",
    "silver.orders",
    "silver.payments",
    "silver.web_sessions",
    "silver.support_tickets",
)


def build_customer_360(spark: SparkSession) -> str:
    """(Re)build ``gold.customer_360`` from the Gold facts and dimension and the Silver web
    sessions and tickets (they must exist)."""
    df = customer_360(
        spark.table("gold.dim_customer"),
        spark.table("gold.fact_sales"),
        spark.table("gold.fact_payments"),
        spark.table("silver.web_sessions"),
        spark.table("silver.support_tickets"),
        as_of=as_of_date(spark),
    )
    return save_customer_360(spark, df)


def ensure_customer_360(spark: SparkSession, raw_root) -> str:
    """Build ``gold.customer_360`` unless it exists, ensuring its inputs first (the facts and
    dimensions, and the Silver tables). Returns the table name.

    >>> ensure_customer_360(spark, raw_root)  # doctest: +SKIP
    'gold.customer_360'
    """
    if not spark.catalog.tableExists(CUSTOMER_360):
        from lakehouse.gold import ensure_silver_inputs, facts

        ensure_silver_inputs(spark, SILVER_INPUTS, raw_root)
        facts.ensure_facts(spark, raw_root)
        build_customer_360(spark)
    return CUSTOMER_360


# ------------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------------
def check_one_row_per_customer(c360_df: DataFrame, customers_df: DataFrame) -> int:
    """Assert the grain: exactly one row per ``customer_id`` of ``customers_df``
    (``silver.customers``), none missing and none extra. Returns the number of customers."""
    summary = (
        c360_df.select("customer_id", F.lit(1).alias("_in_360"))
        .join(
            customers_df.select("customer_id").distinct().withColumn("_in_crm", F.lit(1)),
            "customer_id",
            "full",
        )
        .agg(
            F.count_if(F.col("_in_crm").isNotNull()).alias("crm"),
            F.count_if(F.col("_in_360").isNotNull()).alias("rows"),
            F.count_distinct(F.when(F.col("_in_360").isNotNull(), F.col("customer_id"))).alias(
                "distinct_rows"
            ),
            F.count_if(F.col("_in_360").isNull()).alias("missing"),
            F.count_if(F.col("_in_crm").isNull()).alias("extra"),
            F.count_if(F.col("customer_id").isNull()).alias("null_ids"),
        )
        .first()
    )
    if summary.null_ids:
        raise AssertionError(
            f"{summary.null_ids} Customer 360 rows have a null customer_id: keep only known "
            "customers (the unknown member, customer_sk = -1, is not a customer)"
        )
    if summary.rows != summary.distinct_rows:
        raise AssertionError(
            f"The Customer 360 has {summary.rows} rows for {summary.distinct_rows} customers: a "
            "customer appears more than once. Take only the current version of gold.dim_customer "
            "and join summaries that hold one row per customer_id (aggregate before joining)."
        )
    if summary.missing or summary.extra:
        raise AssertionError(
            f"The Customer 360 should hold the {summary.crm} customers of silver.customers: "
            f"{summary.missing} are missing and {summary.extra} are not CRM customers. Start from "
            "the profiles and LEFT join each summary to them."
        )
    return summary.crm


def revenue_lines(fact_sales_df: DataFrame) -> DataFrame:
    """The lines of ``gold.fact_sales`` that are revenue: orders neither cancelled nor returned."""
    return fact_sales_df.where(~F.col("status").isin(*NON_REVENUE_STATUSES))


def check_lifetime_value(c360_df: DataFrame, fact_sales_df: DataFrame) -> Decimal:
    """Assert that the lifetime values add up to the revenue of ``gold.fact_sales`` of known
    customers (lines not of the unknown member, orders neither cancelled nor returned), to the
    cent. Returns that total.

    Joining raw facts before aggregating (lines x payments x sessions) inflates it; dropping
    customers or forgetting the status filter changes it: all fail here."""
    known = fact_sales_df.where(F.col("customer_sk") != UNKNOWN_KEY)
    revenue = ~F.col("status").isin(*NON_REVENUE_STATUSES)
    totals = known.agg(
        F.coalesce(F.sum(F.when(revenue, F.col("total_usd"))), F.lit(0)).cast(MONEY).alias("rev"),
        F.coalesce(F.sum("total_usd"), F.lit(0)).cast(MONEY).alias("every_line"),
    ).first()
    expected, every_line = totals["rev"], totals["every_line"]
    actual = c360_df.agg(F.coalesce(F.sum("lifetime_value_usd"), F.lit(0)).cast(MONEY)).first()[0]
    if actual != expected:
        ratio = f" ({actual / expected:.2f}x)" if expected else ""
        if actual == every_line:
            why = (
                "It counts the cancelled and returned orders: sum total_usd only of lines whose "
                f"status is not in {list(NON_REVENUE_STATUSES)}."
            )
        elif actual > expected:
            why = (
                "More: a join multiplied rows (aggregate each fact per customer BEFORE joining), "
                f"or lines whose status is in {list(NON_REVENUE_STATUSES)} were counted."
            )
        else:
            why = (
                "Less: customers or lines are missing. Reach the facts through EVERY version's "
                "customer_sk (an order placed before a move points at the old version), not the "
                "current one only; count lines whose status is not in "
                f"{list(NON_REVENUE_STATUSES)}."
            )
        raise AssertionError(
            f"The lifetime values add up to {actual} USD, but gold.fact_sales holds {expected} "
            f"USD of revenue from known customers{ratio}. {why}"
        )
    return expected


def check_no_null_counts(c360_df: DataFrame) -> None:
    """Assert that no count or sum column is null: a customer without activity has 0."""
    nulls = c360_df.agg(*[F.count_if(F.col(c).isNull()).alias(c) for c in ZERO_COLUMNS]).first()
    bad = {c: n for c, n in nulls.asDict().items() if n}
    if bad:
        raise AssertionError(
            f"Null counts or sums in the Customer 360 (column: rows) {bad}: after the LEFT "
            "joins, a customer without that activity has null; coalesce it to 0."
        )


def activity_outside_crm(
    fact_sales_df: DataFrame,
    fact_payments_df: DataFrame,
    web_sessions_df: DataFrame,
    support_tickets_df: DataFrame,
    customers_df: DataFrame,
) -> DataFrame:
    """What the Customer 360 leaves out, per source: rows of customers the CRM does not know
    (facts: the unknown member; sessions and tickets: a customer_id absent from
    ``customers_df``), with their USD amount where there is one. Columns ``source``, ``rows``,
    ``amount_usd``. Anonymous sessions (no customer_id) are not counted: nobody logged in."""
    crm = customers_df.select("customer_id").distinct()
    revenue = ~F.col("status").isin(*NON_REVENUE_STATUSES)
    approved = F.coalesce(F.col("is_approved"), F.lit(False))
    parts = [
        fact_sales_df.where(F.col("customer_sk") == UNKNOWN_KEY).agg(
            F.lit("gold.fact_sales lines").alias("source"),
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.when(revenue, F.col("total_usd"))).cast(MONEY).alias("amount_usd"),
        ),
        fact_payments_df.where(F.col("customer_sk") == UNKNOWN_KEY).agg(
            F.lit("gold.fact_payments attempts").alias("source"),
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.when(approved, F.col("amount_usd"))).cast(MONEY).alias("amount_usd"),
        ),
        web_sessions_df.where(F.col("customer_id").isNotNull())
        .join(crm, "customer_id", "left_anti")
        .agg(
            F.lit("silver.web_sessions").alias("source"),
            F.count(F.lit(1)).alias("rows"),
            F.lit(None).cast(MONEY).alias("amount_usd"),
        ),
        support_tickets_df.where(~F.coalesce(F.col("is_deleted"), F.lit(False)))
        .join(crm, "customer_id", "left_anti")
        .agg(
            F.lit("silver.support_tickets").alias("source"),
            F.count(F.lit(1)).alias("rows"),
            F.lit(None).cast(MONEY).alias("amount_usd"),
        ),
    ]
    return functools.reduce(DataFrame.unionByName, parts)


# One customer recomputed from Silver, for a spot check that shares no code with the build.
SPOT_CHECK_COLUMNS = (
    "orders_count",
    "cancelled_returned_orders",
    "lifetime_value_usd",
    "first_order_date",
    "last_order_date",
    "payment_attempts",
    "approved_amount_usd",
    "declined_payments",
    "fraud_flagged_payments",
    "web_sessions",
    "web_sessions_last_30d",
    "last_session_date",
    "support_tickets",
    "open_support_tickets",
    "last_ticket_date",
)


def _usd(amount: Decimal, currency: str, fx_per_usd: Mapping[str, float]) -> Decimal:
    if currency not in fx_per_usd:
        raise ValueError(f"no exchange rate for {currency!r}: add it to fx_per_usd")
    rate = Decimal(str(fx_per_usd[currency]))
    return (amount / rate).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")


def expected_from_silver(
    customer_id: str,
    *,
    orders_df: DataFrame,
    order_lines_df: DataFrame,
    payments_df: DataFrame,
    web_sessions_df: DataFrame,
    support_tickets_df: DataFrame,
    as_of: date,
    fx_per_usd: Mapping[str, float] | None = None,
) -> dict:
    """One customer's activity columns recomputed in plain Python from the Silver rows that
    carry its ``customer_id``: no dimension, no fact, no Spark aggregate, so it shares no code
    with the build. Amounts convert each line (``quantity * unit_price - discount + tax``) and
    each payment to USD at the generator's fixed rates, rounded half-up to the cent.

    >>> silver = {f"{t}_df": spark.table(f"silver.{t}") for t in ("orders", "order_lines",
    ...           "payments", "web_sessions", "support_tickets")}  # doctest: +SKIP
    >>> expected_from_silver("C000042", **silver, as_of=as_of_date(spark))  # doctest: +SKIP
    {'orders_count': 7, 'cancelled_returned_orders': 1, 'lifetime_value_usd': Decimal(...), ...}
    """
    if fx_per_usd is None:
        from lakehouse.datagen._reference import FX_PER_USD as fx_per_usd
    mine = F.col("customer_id") == F.lit(customer_id)
    # Dates are taken in Spark (the session's UTC); Python's datetimes would be local time.
    orders = {
        r.order_id: r
        for r in orders_df.where(mine)
        .select("order_id", "status", "currency", F.to_date("order_ts").alias("day"))
        .collect()
    }
    lines = (
        order_lines_df.join(orders_df.where(mine).select("order_id"), "order_id", "left_semi")
        .select("order_id", "quantity", "unit_price", "discount", "tax")
        .collect()
    )
    ordered = {line.order_id for line in lines}  # an order without lines is not in fact_sales
    undone = {o for o in ordered if orders[o].status in NON_REVENUE_STATUSES}
    revenue = [
        _usd(
            line.quantity * line.unit_price - line.discount + line.tax,
            orders[line.order_id].currency,
            fx_per_usd,
        )
        for line in lines
        if line.order_id not in undone
    ]
    days = [orders[o].day for o in ordered if orders[o].day is not None]
    payments = payments_df.where(mine).select("amount", "currency", "status", "is_fraud").collect()
    approved = [p for p in payments if p.status == "approved"]
    sessions = [
        r.day
        for r in web_sessions_df.where(mine)
        .select(F.to_date("session_start").alias("day"))
        .collect()
    ]
    tickets = (
        support_tickets_df.where(mine & ~F.coalesce(F.col("is_deleted"), F.lit(False)))
        .select("status", F.to_date("created_at").alias("day"))
        .collect()
    )
    return {
        "orders_count": len(ordered),
        "cancelled_returned_orders": len(undone),
        "lifetime_value_usd": sum(revenue, Decimal("0.00")),
        "first_order_date": min(days, default=None),
        "last_order_date": max(days, default=None),
        "payment_attempts": len(payments),
        "approved_amount_usd": sum(
            (_usd(p.amount, p.currency, fx_per_usd) for p in approved), Decimal("0.00")
        ),
        "declined_payments": len(payments) - len(approved),
        "fraud_flagged_payments": sum(1 for p in payments if p.is_fraud),
        "web_sessions": len(sessions),
        "web_sessions_last_30d": sum(
            1 for d in sessions if as_of - timedelta(days=RECENT_DAYS) <= d < as_of
        ),
        "last_session_date": max(sessions, default=None),
        "support_tickets": len(tickets),
        "open_support_tickets": sum(1 for t in tickets if t.status in OPEN_TICKET_STATUSES),
        "last_ticket_date": max((t.day for t in tickets), default=None),
    }


def check_matches_silver(c360_df: DataFrame, customer_id: str, expected: Mapping) -> None:
    """Assert that ``customer_id``'s row holds the ``expected`` values (from
    :func:`expected_from_silver`); the message lists every column that differs."""
    rows = c360_df.where(F.col("customer_id") == F.lit(customer_id)).collect()
    if len(rows) != 1:
        raise AssertionError(
            f"The Customer 360 has {len(rows)} rows for {customer_id!r}; it needs exactly one"
        )
    row = rows[0].asDict()
    wrong = {c: (row.get(c), v) for c, v in expected.items() if row.get(c) != v}
    if wrong:
        shown = "; ".join(
            f"{c}: table {got!r}, Silver {want!r}" for c, (got, want) in wrong.items()
        )
        raise AssertionError(
            f"{customer_id} does not match its Silver rows: {shown}. Facts reach a customer "
            "through EVERY version's customer_sk, not only the current one; counts exclude "
            "soft-deleted tickets; lifetime value excludes cancelled and returned orders."
        )
