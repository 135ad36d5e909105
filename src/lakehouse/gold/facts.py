"""Gold fact tables at an explicit grain: ``gold.fact_sales`` (one row per order line) and
``gold.fact_payments`` (one row per payment attempt), with their keys resolved to the dimension
version in force at the event time, exact decimal measures, and the checks that prove a fact is
right: grain, referential integrity, reconciliation with Silver, point-in-time keys.

Example::

    from lakehouse.gold import facts

    facts.ensure_facts(spark, raw_root)          # dim_date, the dimensions, then both facts
    sales_df = spark.table(facts.FACT_SALES)
    facts.check_grain(sales_df, facts.SALES_GRAIN, name=facts.FACT_SALES)
    facts.check_referential_integrity(sales_df, facts.sales_dimensions(), name=facts.FACT_SALES)

Measures (every amount is ``DECIMAL(12,2)``, in the order's currency unless named ``*_usd``)::

    net_amount = quantity * unit_price - discount       revenue before tax (discount is an amount)
    total      = net_amount + tax                       what the customer pays for the line
    cost       = quantity * round(unit_cost * rate, 2)  unit_cost is in USD (the catalog's)
    profit     = net_amount - cost                      tax is collected for the state, not earned
    x_usd      = round(x / rate, 2)                     rate: units of the currency per USD

Shipping is charged per order (``silver.orders.shipping_cost``), not per line: it does not belong
to the order-line grain and is left out of these measures rather than spread over lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
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

from lakehouse.gold import UNKNOWN_KEY
from lakehouse.gold import commented_field as _field

FACT_SALES = "gold.fact_sales"
FACT_PAYMENTS = "gold.fact_payments"
FACT_TABLES = (FACT_SALES, FACT_PAYMENTS)

SALES_GRAIN = ("order_id", "line_number")  # one row per Silver order line
PAYMENTS_GRAIN = ("transaction_id",)  # one row per payment attempt (approved or declined)

SILVER_ORDERS = "silver.orders"
SILVER_ORDER_LINES = "silver.order_lines"
SILVER_PAYMENTS = "silver.payments"
SILVER_INPUTS = (SILVER_ORDERS, SILVER_ORDER_LINES, SILVER_PAYMENTS)

AMOUNT = DecimalType(12, 2)
RATE = DecimalType(12, 6)

# The course's fixed exchange rates: units of each currency per US dollar. The generator priced
# every order with these same rates, so converting back is exact up to the cent. A production
# fact would join a dated rates table on (currency, date) instead.
FX_PER_USD: dict[str, Decimal] = {
    "USD": Decimal("1.0"),
    "EUR": Decimal("0.92"),
    "GBP": Decimal("0.79"),
    "CAD": Decimal("1.37"),
    "JPY": Decimal("155.0"),
    "MXN": Decimal("18.0"),
    "SGD": Decimal("1.35"),
}

SALES_MEASURES = ("net_amount", "total", "cost", "profit")
SALES_USD_MEASURES = tuple(f"{m}_usd" for m in SALES_MEASURES)

# The columns each fact reads from Silver (the rest of a Silver row is lineage).
ORDER_LINE_COLUMNS = (
    "order_id",
    "line_number",
    "product_id",
    "quantity",
    "unit_price",
    "discount",
    "tax",
)
ORDER_COLUMNS = (
    "order_id",
    "customer_id",
    "order_ts",
    "status",
    "channel",
    "currency",
    "shipping_city",
    "country",
)


def _key(name: str, comment: str, data_type=None) -> StructField:
    # A fact key is never null: an unresolved key is the dimension's unknown member (-1).
    return _field(name, data_type or LongType(), f"{comment}; -1: unknown", nullable=False)


FACT_SALES_SCHEMA = StructType(
    [
        _field("order_id", StringType(), "Order (degenerate dimension)", nullable=False),
        _field("line_number", IntegerType(), "Line within the order", nullable=False),
        _field(
            "date_key",
            IntegerType(),
            "gold.dim_date: order date YYYYMMDD; -1: unknown",
            nullable=False,
        ),
        _key("customer_sk", "gold.dim_customer: the customer version in force at order_ts"),
        _key("product_sk", "gold.dim_product"),
        _key("geography_sk", "gold.dim_geography: the shipping city and country"),
        _field("order_ts", TimestampType(), "When the order was placed (UTC); null: order unknown"),
        _field("status", StringType(), "Order status (degenerate)"),
        _field("channel", StringType(), "Sales channel (degenerate)"),
        _field("currency", StringType(), "The order's currency; null when the order is unknown"),
        _field("quantity", IntegerType(), "Units"),
        _field("unit_price", DecimalType(10, 2), "Price per unit, in currency"),
        _field("discount", DecimalType(10, 2), "Amount off the line, in currency"),
        _field("net_amount", AMOUNT, "quantity * unit_price - discount, in currency"),
        _field("tax", DecimalType(10, 2), "Tax on net_amount, in currency"),
        _field("total", AMOUNT, "net_amount + tax: what the customer pays, in currency"),
        _field("cost", AMOUNT, "quantity * unit cost converted to currency; null: product unknown"),
        _field("profit", AMOUNT, "net_amount - cost (tax excluded), in currency"),
        *(
            _field(f"{m}_usd", AMOUNT, f"{m} in USD at the course's fixed rate")
            for m in SALES_MEASURES
        ),
    ]
)

FACT_PAYMENTS_SCHEMA = StructType(
    [
        _field("transaction_id", StringType(), "Payment attempt (degenerate)", nullable=False),
        _field(
            "date_key",
            IntegerType(),
            "gold.dim_date: event date YYYYMMDD; -1: unknown",
            nullable=False,
        ),
        _key("customer_sk", "gold.dim_customer: the customer version in force at event_ts"),
        _key("geography_sk", "gold.dim_geography: where the card was used"),
        _field("event_ts", TimestampType(), "When the card was used (UTC)"),
        _field("merchant_id", StringType(), "Merchant (degenerate)"),
        _field("merchant_category", StringType(), "Merchant category"),
        _field("card_network", StringType(), "visa, mastercard, amex or discover"),
        _field("channel", StringType(), "online, pos or atm"),
        _field("currency", StringType(), "The payment's currency"),
        _field("amount", AMOUNT, "Amount attempted, in currency"),
        _field("amount_usd", AMOUNT, "amount in USD at the course's fixed rate"),
        _field("status", StringType(), "approved or declined"),
        _field("is_approved", BooleanType(), "status = 'approved'"),
        _field("decline_reason", StringType(), "Null when approved"),
        _field(
            "fraud_score", DoubleType(), "0..1 from the upstream risk engine (a score, not money)"
        ),
        _field("is_fraud", BooleanType(), "The fraud label (confirmed by chargebacks)"),
    ]
)

SCHEMAS = {FACT_SALES: FACT_SALES_SCHEMA, FACT_PAYMENTS: FACT_PAYMENTS_SCHEMA}
COMMENTS = {
    FACT_SALES: (
        "Sales: one row per Silver order line (order_id, line_number). Keys point at the "
        "dimension version in force at order_ts (-1: unknown member); amounts are exact "
        "decimals in the order's currency, *_usd at the course's fixed rates."
    ),
    FACT_PAYMENTS: (
        "Payments: one row per payment attempt (transaction_id), approved or declined. Keys "
        "point at the dimension version in force at event_ts (-1: unknown member)."
    ),
}


# --------------------------------------------------------------------------- columns


def _col(column: str | Column) -> Column:
    return F.col(column) if isinstance(column, str) else column


def date_key(ts: str | Column) -> Column:
    """The ``gold.dim_date`` key of a timestamp: ``YYYYMMDD`` as an int (in the session time
    zone, UTC in this course), or -1 (the unknown date) when the timestamp is null.

    >>> orders_df.withColumn("date_key", date_key("order_ts"))  # doctest: +SKIP
    """
    c = _col(ts)
    ymd = F.year(c) * 10000 + F.month(c) * 100 + F.dayofmonth(c)
    return F.coalesce(ymd.cast("int"), F.lit(UNKNOWN_KEY).cast("int"))


def fx_per_usd(currency: str | Column) -> Column:
    """Units of ``currency`` per US dollar from :data:`FX_PER_USD` as ``DECIMAL(12,6)``; null
    for a null or unlisted currency (a USD amount is then unknown, never guessed)."""
    c = _col(currency)
    cases = [(c == code, F.lit(rate).cast(RATE)) for code, rate in FX_PER_USD.items()]
    first_condition, first_value = cases[0]
    return reduce(
        lambda acc, case: acc.when(*case), cases[1:], F.when(first_condition, first_value)
    )


def to_usd(amount: str | Column, currency: str | Column) -> Column:
    """``amount`` converted to USD, rounded half-up to the cent, as ``DECIMAL(12,2)``.

    >>> payments_df.withColumn("amount_usd", to_usd("amount", "currency"))  # doctest: +SKIP
    """
    return F.round(_col(amount) / fx_per_usd(currency), 2).cast(AMOUNT)


# --------------------------------------------------------------------------- transforms


def require_columns(df: DataFrame, names: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` naming every column of ``names`` that ``df`` lacks."""
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {', '.join(map(repr, missing))}; it has "
            f"{', '.join(df.columns)}"
        )


def sales_lines(order_lines_df: DataFrame, orders_df: DataFrame) -> DataFrame:
    """Every order line with its order's context: the grain of ``fact_sales``.

    A LEFT join from the lines: a line whose order did not reach Silver (its row was
    quarantined) stays, with a null order context, and resolves to the unknown members. An
    inner join would drop it and the fact would no longer add up to Silver.
    """
    require_columns(order_lines_df, ORDER_LINE_COLUMNS, "order_lines_df")
    require_columns(orders_df, ORDER_COLUMNS, "orders_df")
    return order_lines_df.select(*ORDER_LINE_COLUMNS).join(
        orders_df.select(*ORDER_COLUMNS), "order_id", "left"
    )


def sales_keys(
    dim_customer_df: DataFrame, dim_product_df: DataFrame, dim_geography_df: DataFrame
) -> Callable[[DataFrame], DataFrame]:
    """A transform adding ``customer_sk`` (the version in force at ``order_ts``),
    ``product_sk``, ``geography_sk`` (the shipping city and country) and ``date_key`` to
    :func:`sales_lines`."""
    from lakehouse.gold import dimensions

    def transform(df: DataFrame) -> DataFrame:
        return (
            df.transform(dimensions.with_customer_key(dim_customer_df, at="order_ts"))
            .transform(dimensions.with_product_key(dim_product_df))
            .transform(dimensions.with_geography_key(dim_geography_df, city="shipping_city"))
            .withColumn("date_key", date_key("order_ts"))
        )

    return transform


def sales_measures(dim_product_df: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """A transform adding ``net_amount``, ``total``, ``cost`` and ``profit`` (exact decimals in
    the order's currency; see the module docstring for the formulas). The unit cost comes from
    ``dim_product`` by ``product_sk``; the unknown product has none, so its cost and profit are
    null (unknown, not zero)."""

    def transform(df: DataFrame) -> DataFrame:
        require_columns(
            df, ["product_sk", "currency", "quantity", "unit_price", "discount", "tax"], "sales"
        )
        require_columns(dim_product_df, ["product_sk", "unit_cost"], "dim_product_df")
        unit_cost = dim_product_df.select("product_sk", "unit_cost")
        # The catalog's cost is in USD: convert one unit and round it to the cent, the way the
        # order's unit_price was converted from the USD list price.
        local_unit_cost = F.round(F.col("unit_cost") * fx_per_usd("currency"), 2)
        return (
            df.join(unit_cost, "product_sk", "left")
            .withColumn("net_amount", F.col("quantity") * F.col("unit_price") - F.col("discount"))
            .withColumn("total", F.col("net_amount") + F.col("tax"))
            .withColumn("cost", F.col("quantity") * local_unit_cost)
            .withColumn("profit", F.col("net_amount") - F.col("cost"))
            .drop("unit_cost")
        )

    return transform


def usd_amounts(*amounts: str, currency: str = "currency") -> Callable[[DataFrame], DataFrame]:
    """A transform adding ``<amount>_usd`` for each of ``amounts`` (:func:`to_usd`)."""
    if not amounts:
        raise ValueError("usd_amounts needs at least one amount column, e.g. usd_amounts('total')")

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, [*amounts, currency], "the DataFrame")
        return df.withColumns({f"{a}_usd": to_usd(a, currency) for a in amounts})

    return transform


def conform(schema: StructType) -> Callable[[DataFrame], DataFrame]:
    """A transform selecting ``schema``'s columns in order, cast to its types, with its column
    comments: what a fact table accepts. An amount that does not fit its decimal fails."""

    def transform(df: DataFrame) -> DataFrame:
        require_columns(df, schema.fieldNames(), "the fact")
        return df.select(
            *(
                F.col(f.name).cast(f.dataType).alias(f.name, metadata=f.metadata)
                for f in schema.fields
            )
        )

    return transform


def payments_keys(
    dim_customer_df: DataFrame, dim_geography_df: DataFrame
) -> Callable[[DataFrame], DataFrame]:
    """A transform adding ``customer_sk`` (the version in force at ``event_ts``),
    ``geography_sk`` (where the card was used: ``country``, ``city``) and ``date_key``."""
    from lakehouse.gold import dimensions

    def transform(df: DataFrame) -> DataFrame:
        return (
            df.transform(dimensions.with_customer_key(dim_customer_df, at="event_ts"))
            .transform(dimensions.with_geography_key(dim_geography_df))
            .withColumn("date_key", date_key("event_ts"))
        )

    return transform


def payment_measure_columns() -> dict[str, Column]:
    """``amount_usd`` and ``is_approved`` as columns of ``amount``, ``currency`` and ``status``."""
    return {
        "amount_usd": to_usd("amount", "currency"),
        "is_approved": F.col("status") == "approved",
    }


def payment_measures(df: DataFrame) -> DataFrame:
    """Add ``amount_usd`` and ``is_approved`` to payments."""
    require_columns(df, ["amount", "currency", "status"], "payments")
    return df.withColumns(payment_measure_columns())


# --------------------------------------------------------------------------- builds


def sales_dimensions() -> dict[str, str]:
    """``fact_sales`` key -> the dimension table it points at."""
    from lakehouse.gold import dates, dimensions

    return {
        "date_key": dates.DIM_DATE,
        "customer_sk": dimensions.DIM_CUSTOMER,
        "product_sk": dimensions.DIM_PRODUCT,
        "geography_sk": dimensions.DIM_GEOGRAPHY,
    }


def payments_dimensions() -> dict[str, str]:
    """``fact_payments`` key -> the dimension table it points at."""
    from lakehouse.gold import dates, dimensions

    return {
        "date_key": dates.DIM_DATE,
        "customer_sk": dimensions.DIM_CUSTOMER,
        "geography_sk": dimensions.DIM_GEOGRAPHY,
    }


def fact_sales_df(
    order_lines_df: DataFrame,
    orders_df: DataFrame,
    *,
    dim_customer_df: DataFrame,
    dim_product_df: DataFrame,
    dim_geography_df: DataFrame,
) -> DataFrame:
    """``fact_sales`` rows from Silver order lines and orders and the three dimensions."""
    return (
        sales_lines(order_lines_df, orders_df)
        .transform(sales_keys(dim_customer_df, dim_product_df, dim_geography_df))
        .transform(sales_measures(dim_product_df))
        .transform(usd_amounts(*SALES_MEASURES))
        .transform(conform(FACT_SALES_SCHEMA))
    )


def fact_payments_df(
    payments_df: DataFrame, *, dim_customer_df: DataFrame, dim_geography_df: DataFrame
) -> DataFrame:
    """``fact_payments`` rows from Silver payments and the two dimensions."""
    return (
        payments_df.transform(payments_keys(dim_customer_df, dim_geography_df))
        .transform(payment_measures)
        .transform(conform(FACT_PAYMENTS_SCHEMA))
    )


def create_fact_table(spark: SparkSession, table: str) -> None:
    """Create (or replace) an empty fact table with its schema, column comments and table
    comment: the Databricks ``CREATE OR REPLACE TABLE gold.fact_x (... COMMENT ...)``. Load it
    with one append right after."""
    if table not in SCHEMAS:
        raise ValueError(f"unknown fact table {table!r}: use one of {', '.join(SCHEMAS)}")
    declare_table(spark, table, SCHEMAS[table], COMMENTS[table])


def declare_table(spark: SparkSession, table: str, schema: StructType, comment: str) -> None:
    """``CREATE OR REPLACE TABLE table (...) COMMENT comment``, empty, in its schema (created if
    missing), with the column comments ``schema`` carries: what a Gold or ML table is declared
    with before its one append."""
    from lakehouse.tables import DeltaTable

    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    DeltaTable.createOrReplace(spark).tableName(table).addColumns(schema).comment(comment).execute()


def write_fact(spark: SparkSession, df: DataFrame, table: str) -> str:
    """Replace ``table``'s rows with ``df`` (conformed to the table's schema); returns the name."""
    create_fact_table(spark, table)
    df.transform(conform(SCHEMAS[table])).write.format("delta").mode("append").saveAsTable(table)
    return table


def build_fact_sales(spark: SparkSession) -> str:
    """(Re)build ``gold.fact_sales`` from the Silver tables and the Gold dimensions."""
    from lakehouse.gold import dimensions

    df = fact_sales_df(
        spark.table(SILVER_ORDER_LINES),
        spark.table(SILVER_ORDERS),
        dim_customer_df=spark.table(dimensions.DIM_CUSTOMER),
        dim_product_df=spark.table(dimensions.DIM_PRODUCT),
        dim_geography_df=spark.table(dimensions.DIM_GEOGRAPHY),
    )
    return write_fact(spark, df, FACT_SALES)


def build_fact_payments(spark: SparkSession) -> str:
    """(Re)build ``gold.fact_payments`` from ``silver.payments`` and the Gold dimensions."""
    from lakehouse.gold import dimensions

    df = fact_payments_df(
        spark.table(SILVER_PAYMENTS),
        dim_customer_df=spark.table(dimensions.DIM_CUSTOMER),
        dim_geography_df=spark.table(dimensions.DIM_GEOGRAPHY),
    )
    return write_fact(spark, df, FACT_PAYMENTS)


def ensure_facts(spark: SparkSession, raw_root) -> list[str]:
    """Build each fact table that does not exist yet, after ensuring ``gold.dim_date``, the
    dimensions and the Silver inputs; a fact that exists is left as it is. Returns the names.

    >>> ensure_facts(spark, raw_root)  # doctest: +SKIP
    ['gold.fact_sales', 'gold.fact_payments']
    """
    from lakehouse import gold
    from lakehouse.gold import dates, dimensions

    missing = [t for t in FACT_TABLES if not spark.catalog.tableExists(t)]
    if missing:
        gold.ensure_silver_inputs(spark, SILVER_INPUTS, raw_root)
        dates.ensure_dim_date(spark, raw_root)
        dimensions.ensure_dimensions(spark, raw_root)
        builders = {FACT_SALES: build_fact_sales, FACT_PAYMENTS: build_fact_payments}
        for table in missing:
            builders[table](spark)
    return list(FACT_TABLES)


# --------------------------------------------------------------------------- checks


def _names(keys: str | Sequence[str]) -> list[str]:
    names = [keys] if isinstance(keys, str) else list(keys)
    if not names:
        raise ValueError("keys must name at least one column")
    return names


def _show(rows, columns: Sequence[str]) -> str:
    return "; ".join(", ".join(f"{c}={row[c]!r}" for c in columns) for row in rows)


def check_grain(
    df: DataFrame,
    keys: str | Sequence[str],
    *,
    name: str = "the fact",
    expected_rows: int | None = None,
) -> int:
    """Assert ``df`` has exactly one row per ``keys`` (no duplicate, no null key part) and,
    when given, ``expected_rows`` rows. Returns the row count.

    A join that fans out (to every version of an SCD2 dimension, say) duplicates grain keys and
    fails here, with sample keys and how many times each appears.

    >>> check_grain(spark.table("gold.fact_sales"), ["order_id", "line_number"])  # doctest: +SKIP
    2464
    """
    names = _names(keys)
    require_columns(df, names, name)
    any_null = reduce(lambda a, b: a | b, [F.col(k).isNull() for k in names])
    per_key = df.groupBy(*names).agg(F.count(F.lit(1)).alias("rows_per_key"))
    summary = per_key.agg(
        F.sum("rows_per_key").alias("rows"),
        F.count_if(F.col("rows_per_key") > 1).alias("duplicated_keys"),
        F.coalesce(F.sum(F.when(any_null, F.col("rows_per_key"))), F.lit(0)).alias("null_keys"),
    ).first()
    rows = int(summary["rows"] or 0)
    grain = ", ".join(names)
    if summary["duplicated_keys"]:
        sample = (
            per_key.where("rows_per_key > 1").orderBy(F.desc("rows_per_key"), *names).limit(5)
        ).collect()
        raise AssertionError(
            f"{name} is not at its grain ({grain}): {summary['duplicated_keys']} key(s) appear "
            f"more than once, e.g. {_show(sample, [*names, 'rows_per_key'])}. A join fanned "
            "out: join each dimension on its surrogate key, or on the natural key AND the "
            "version in force at the event time (not on the natural key alone)."
        )
    if summary["null_keys"]:
        raise AssertionError(
            f"{name} has {summary['null_keys']} row(s) with a null grain key ({grain}): every "
            "row must carry its full business key"
        )
    if expected_rows is not None and rows != expected_rows:
        raise AssertionError(
            f"{name} has {rows} rows; its source has {expected_rows} at the grain ({grain}). "
            "Rows were lost or invented: keep every source row with a LEFT join and resolve a "
            "missing dimension member to the unknown key -1 instead of dropping the row."
        )
    return rows


def _dimension_frame(spark: SparkSession, dimension: DataFrame | str) -> DataFrame:
    return spark.table(dimension) if isinstance(dimension, str) else dimension


def check_referential_integrity(
    fact_df: DataFrame,
    dimensions: Mapping[str, DataFrame | str],
    *,
    name: str = "the fact",
) -> dict[str, int]:
    """Assert every key of ``fact_df`` joins to its dimension: for each ``key -> dimension``
    (a table name or a DataFrame holding a column of the same name), no fact row has a null key
    or a key value absent from the dimension. Returns, per key, how many fact rows point at the
    unknown member (-1): allowed, and worth knowing.

    >>> check_referential_integrity(sales_df, {"product_sk": "gold.dim_product"})  # doctest: +SKIP
    {'product_sk': 5}
    """
    if not dimensions:
        raise ValueError("dimensions must map at least one fact key to its dimension")
    require_columns(fact_df, list(dimensions), name)
    spark = fact_df.sparkSession
    labels = {k: d if isinstance(d, str) else f"the {k} dimension" for k, d in dimensions.items()}
    joined = fact_df.select(*dimensions)
    for i, (key, dimension) in enumerate(dimensions.items()):
        dim = _dimension_frame(spark, dimension)
        require_columns(dim, [key], labels[key])
        members = dim.select(key).distinct().withColumn(f"_found_{i}", F.lit(True))
        joined = joined.join(members, key, "left")
    aggregates = []
    for i, key in enumerate(dimensions):
        missing = F.col(f"_found_{i}").isNull()
        aggregates += [
            F.count_if(missing).alias(f"missing_{i}"),
            F.count_if(F.col(key) == UNKNOWN_KEY).alias(f"unknown_{i}"),
            F.sort_array(F.collect_set(F.when(missing, F.col(key).cast("string")))).alias(
                f"sample_{i}"
            ),
        ]
    summary = joined.agg(*aggregates).first()
    problems = []
    for i, key in enumerate(dimensions):
        if summary[f"missing_{i}"]:
            values = list(summary[f"sample_{i}"])[:5]
            nulls = " (some are null)" if len(values) < summary[f"missing_{i}"] else ""
            problems.append(
                f"{summary[f'missing_{i}']} row(s) have a {key} absent from {labels[key]}, "
                f"e.g. {values}{nulls}"
            )
    if problems:
        raise AssertionError(
            f"{name} breaks referential integrity: {'; '.join(problems)}. Resolve keys with "
            "the dimension's lookup (a missing member becomes the unknown key -1) and build the "
            "fact from the current dimension tables."
        )
    return {key: int(summary[f"unknown_{i}"]) for i, key in enumerate(dimensions)}


def _amounts_are_exact(df: DataFrame, columns: Iterable[str], name: str) -> None:
    for c in columns:
        data_type = df.schema[c].dataType
        if not isinstance(data_type, DecimalType) or data_type.scale != 2:
            raise AssertionError(
                f"{name}.{c} is {data_type.simpleString()}: money must be an exact "
                "DECIMAL(p,2) (compute with the decimal columns, never cast to double or float)"
            )


def sales_reconciliation(
    fact_sales: DataFrame, order_lines_df: DataFrame, orders_df: DataFrame
) -> DataFrame:
    """Per currency: lines and the sum of ``total`` in the fact, beside the same numbers
    computed from Silver (``quantity * unit_price - discount + tax`` over every Silver line;
    ``currency`` is null for lines whose order is unknown)."""
    silver = (
        order_lines_df.join(orders_df.select("order_id", "currency"), "order_id", "left")
        .groupBy("currency")
        .agg(
            F.count(F.lit(1)).alias("silver_lines"),
            F.sum(F.col("quantity") * F.col("unit_price") - F.col("discount") + F.col("tax")).alias(
                "silver_total"
            ),
        )
    )
    fact = fact_sales.groupBy(F.col("currency").alias("fact_currency")).agg(
        F.count(F.lit(1)).alias("fact_lines"), F.sum("total").alias("fact_total")
    )
    return (
        silver.join(fact, silver["currency"].eqNullSafe(fact["fact_currency"]), "full")
        .select(
            F.coalesce("currency", "fact_currency").alias("currency"),
            F.coalesce("silver_lines", F.lit(0)).alias("silver_lines"),
            F.coalesce("fact_lines", F.lit(0)).alias("fact_lines"),
            F.col("silver_total").cast(DecimalType(18, 2)).alias("silver_total"),
            F.col("fact_total").cast(DecimalType(18, 2)).alias("fact_total"),
        )
        .orderBy(F.col("currency").asc_nulls_last())
    )


def check_sales_reconciliation(
    fact_sales: DataFrame, order_lines_df: DataFrame, orders_df: DataFrame
) -> list:
    """Assert ``fact_sales`` reconciles with Silver: per currency, the same number of lines and
    exactly the same sum of ``total``; the measures must be exact decimals. Returns the
    per-currency rows of :func:`sales_reconciliation`."""
    require_columns(fact_sales, ["currency", "total"], "fact_sales")
    _amounts_are_exact(fact_sales, ["total"], "fact_sales")
    rows = sales_reconciliation(fact_sales, order_lines_df, orders_df).collect()
    bad = [
        r
        for r in rows
        if r["silver_lines"] != r["fact_lines"] or r["silver_total"] != r["fact_total"]
    ]
    if bad:
        detail = "; ".join(
            f"{r['currency'] or 'no order'}: {r['fact_lines']} lines totalling "
            f"{r['fact_total']} in the fact vs {r['silver_lines']} totalling "
            f"{r['silver_total']} in Silver"
            for r in bad
        )
        raise AssertionError(
            f"fact_sales does not reconcile with Silver: {detail}. Fewer lines: a join dropped "
            "rows (keep every line with a LEFT join). More: a join fanned out. Same lines, "
            "another total: total must be quantity * unit_price - discount + tax, in decimals."
        )
    return rows


def payments_reconciliation(fact_payments: DataFrame, payments_df: DataFrame) -> DataFrame:
    """Per currency: payment attempts and the sum of ``amount`` in the fact and in Silver."""

    def totals(df: DataFrame, prefix: str) -> DataFrame:
        return df.groupBy(F.col("currency").alias(f"{prefix}_currency")).agg(
            F.count(F.lit(1)).alias(f"{prefix}_rows"),
            F.sum("amount").cast(DecimalType(18, 2)).alias(f"{prefix}_amount"),
        )

    silver, fact = totals(payments_df, "silver"), totals(fact_payments, "fact")
    return (
        silver.join(fact, silver["silver_currency"].eqNullSafe(fact["fact_currency"]), "full")
        .select(
            F.coalesce("silver_currency", "fact_currency").alias("currency"),
            F.coalesce("silver_rows", F.lit(0)).alias("silver_rows"),
            F.coalesce("fact_rows", F.lit(0)).alias("fact_rows"),
            "silver_amount",
            "fact_amount",
        )
        .orderBy(F.col("currency").asc_nulls_last())
    )


def check_payments_reconciliation(fact_payments: DataFrame, payments_df: DataFrame) -> list:
    """Assert ``fact_payments`` holds every Silver payment attempt once: per currency, the same
    count and exactly the same sum of ``amount``. Returns the per-currency rows."""
    require_columns(fact_payments, ["currency", "amount"], "fact_payments")
    _amounts_are_exact(fact_payments, ["amount"], "fact_payments")
    rows = payments_reconciliation(fact_payments, payments_df).collect()
    bad = [
        r
        for r in rows
        if r["silver_rows"] != r["fact_rows"] or r["silver_amount"] != r["fact_amount"]
    ]
    if bad:
        detail = "; ".join(
            f"{r['currency']}: {r['fact_rows']} attempts for {r['fact_amount']} in the fact vs "
            f"{r['silver_rows']} for {r['silver_amount']} in Silver"
            for r in bad
        )
        raise AssertionError(
            f"fact_payments does not reconcile with silver.payments: {detail}. Keep every "
            "attempt, approved or declined, and every customer, known or not (LEFT joins)."
        )
    return rows


def check_sales_measures(fact_sales: DataFrame) -> int:
    """Assert every ``fact_sales`` row's measures are exact and consistent:
    ``net_amount = quantity * unit_price - discount``, ``total = net_amount + tax``,
    ``profit = net_amount - cost`` (null with the cost), and the USD amounts follow from the
    fixed rates. Returns the number of rows checked."""
    require_columns(
        fact_sales,
        ["currency", "quantity", "unit_price", "discount", "tax", *SALES_MEASURES],
        "fact_sales",
    )
    _amounts_are_exact(fact_sales, SALES_MEASURES, "fact_sales")
    rules = {
        "net_amount = quantity * unit_price - discount": F.col("net_amount").eqNullSafe(
            F.col("quantity") * F.col("unit_price") - F.col("discount")
        ),
        "total = net_amount + tax": F.col("total").eqNullSafe(F.col("net_amount") + F.col("tax")),
        "profit = net_amount - cost": F.col("profit").eqNullSafe(
            F.col("net_amount") - F.col("cost")
        ),
    }
    for m in SALES_MEASURES:
        if f"{m}_usd" in fact_sales.columns:
            rules[f"{m}_usd = round({m} / rate, 2)"] = F.col(f"{m}_usd").eqNullSafe(
                to_usd(m, "currency")
            )
    counts = fact_sales.agg(
        F.count(F.lit(1)).alias("_rows"),
        *(F.count_if(~ok).alias(f"_broken_{i}") for i, ok in enumerate(rules.values())),
    ).first()
    broken = [
        f"{counts[f'_broken_{i}']} row(s) break {rule}"
        for i, rule in enumerate(rules)
        if counts[f"_broken_{i}"]
    ]
    if broken:
        raise AssertionError(f"fact_sales measures are wrong: {'; '.join(broken)}")
    return int(counts["_rows"])


def check_sales_cost(
    sales_df: DataFrame, dim_product_df: DataFrame, *, name: str = "fact_sales"
) -> int:
    """Assert every line's ``cost`` is ``quantity * round(unit_cost * rate, 2)``: the catalog's
    USD unit cost (from ``dim_product_df`` by ``product_sk``) converted to the order's currency
    and rounded to the cent **per unit**, then times the quantity; null for the unknown product.
    Returns the number of lines checked.

    >>> check_sales_cost(sales_measured_df, dim_product_df)  # doctest: +SKIP
    2464
    """
    require_columns(sales_df, ["product_sk", "currency", "quantity", "cost"], name)
    require_columns(dim_product_df, ["product_sk", "unit_cost"], "dim_product_df")
    _amounts_are_exact(sales_df, ["cost"], name)
    unit_cost = dim_product_df.select("product_sk", F.col("unit_cost").alias("_unit_cost"))
    joined = sales_df.select("product_sk", "currency", "quantity", "cost").join(
        unit_cost, "product_sk", "left"
    )
    local = F.round(F.col("_unit_cost") * fx_per_usd("currency"), 2)
    in_usd = F.col("quantity") * F.col("_unit_cost")
    summary = joined.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(~F.col("cost").eqNullSafe(F.col("quantity") * local)).alias("wrong"),
        F.count_if(
            ~F.col("cost").eqNullSafe(F.col("quantity") * local)
            & F.col("cost").eqNullSafe(in_usd)
            & ~F.col("currency").eqNullSafe(F.lit("USD"))
        ).alias("in_usd"),
        F.count_if(
            ~F.col("cost").eqNullSafe(F.col("quantity") * local)
            & F.col("cost").eqNullSafe(F.round(in_usd * fx_per_usd("currency"), 2))
        ).alias("rounded_late"),
    ).first()
    if summary["wrong"]:
        if summary["in_usd"]:
            why = (
                f"{summary['in_usd']} of them hold the USD cost in a non-USD order: unit_cost is "
                "in USD, convert it to the order's currency with facts.fx_per_usd('currency')"
            )
        elif summary["rounded_late"]:
            why = (
                f"{summary['rounded_late']} of them round the line, not the unit: round one "
                "unit's converted cost to the cent, then multiply by quantity"
            )
        else:
            why = "join unit_cost from dim_product by product_sk and follow the formula"
        raise AssertionError(
            f"{name}: {summary['wrong']} line(s) break cost = quantity * round(unit_cost * rate, "
            f"2); {why}"
        )
    return int(summary["rows"])


def check_point_in_time_keys(
    fact_df: DataFrame, dim_customer_df: DataFrame, *, at: str, name: str = "the fact"
) -> int:
    """Assert each known ``customer_sk`` is the customer version in force at ``at``: the
    version's ``[effective_start_date, effective_end_date)`` holds the event time (or, for an
    event before the customer's first version, it is the first version). Returns how many fact
    rows point at a customer version that is no longer current (history a join on the current
    row would have rewritten)."""
    require_columns(fact_df, ["customer_sk", at], name)
    columns = ["customer_sk", "customer_id", "effective_start_date", "effective_end_date"]
    require_columns(dim_customer_df, [*columns, "is_current"], "dim_customer_df")
    first = F.min("effective_start_date").over(Window.partitionBy("customer_id"))
    versions = (
        dim_customer_df.where(F.col("customer_sk") != UNKNOWN_KEY)
        .select(*columns, "is_current")
        .withColumn("_first_start", first)
    )
    t = F.col(at)
    in_force = (
        (t >= F.col("effective_start_date"))
        | (F.col("effective_start_date") == F.col("_first_start"))
    ) & (F.col("effective_end_date").isNull() | (t < F.col("effective_end_date")))
    summary = (
        fact_df.where(F.col("customer_sk") != UNKNOWN_KEY)
        .select("customer_sk", at)
        .join(versions, "customer_sk", "left")
        .agg(
            F.count_if(F.col("customer_id").isNull()).alias("no_version"),
            F.count_if(
                F.col("customer_id").isNotNull() & ~F.coalesce(in_force, F.lit(False))
            ).alias("wrong_version"),
            F.count_if(~F.col("is_current")).alias("historical"),
        )
        .first()
    )
    if summary["no_version"]:
        raise AssertionError(
            f"{name}: {summary['no_version']} row(s) have a customer_sk that is in no version "
            "of dim_customer"
        )
    if summary["wrong_version"]:
        raise AssertionError(
            f"{name}: {summary['wrong_version']} row(s) point at a customer version that was not "
            f"in force at {at}. Resolve customer_sk with the version whose effective period "
            f"holds {at} (dimensions.with_customer_key(dim_customer_df, at={at!r})), not the "
            "current version"
        )
    return int(summary["historical"] or 0)


def check_same_rows(
    actual_df: DataFrame,
    expected_df: DataFrame,
    columns: Sequence[str] | None = None,
    *,
    name: str = "the DataFrame",
) -> None:
    """Assert ``actual_df`` and ``expected_df`` hold the same rows (as multisets) on ``columns``
    (default: ``expected_df``'s), in one query; the message shows up to 5 rows on each side.

    >>> check_same_rows(sales_keyed_df, reference_df, ["order_id", "customer_sk"])  # doctest: +SKIP
    """
    names = list(columns) if columns is not None else list(expected_df.columns)
    require_columns(actual_df, names, name)
    actual, expected = actual_df.select(*names), expected_df.select(*names)
    differences = (
        actual.exceptAll(expected)
        .withColumn("_side", F.lit("unexpected"))
        .unionByName(expected.exceptAll(actual).withColumn("_side", F.lit("missing")))
        .withColumn("_n", F.row_number().over(Window.partitionBy("_side").orderBy(*names)))
        .where("_n <= 5")
        .collect()
    )
    if differences:
        unexpected = sorted((r for r in differences if r["_side"] == "unexpected"), key=str)
        missing = sorted((r for r in differences if r["_side"] == "missing"), key=str)
        raise AssertionError(
            f"{name} differs from the expected rows on {', '.join(names)}. "
            f"Rows it has that it should not: {_show(unexpected, names) or 'none'}. "
            f"Rows it lacks: {_show(missing, names) or 'none'}."
        )
