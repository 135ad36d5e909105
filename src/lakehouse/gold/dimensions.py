"""Conformed dimensions with surrogate keys: ``gold.dim_customer`` (SCD Type 2),
``gold.dim_product`` and ``gold.dim_geography``, each with an "unknown" member, and the key
lookups the fact tables use to resolve natural keys to surrogate keys.

**Surrogate keys are hashes of the natural key.** ``customer_sk = xxhash64(customer_id,
effective_start_date)`` (one key per version), ``product_sk = xxhash64(product_id)``,
``geography_sk = xxhash64(country, city)`` on the normalized natural key. A hash depends only on
the row it names, so the key is the same on every rerun, after a full rebuild from Silver and on
every Spark engine (``xxhash64`` is Spark's own function, seeded identically everywhere); any
table can compute it without a lookup. The price is a collision check
(:func:`check_surrogate_keys`): two natural keys with one 64-bit hash are astronomically
unlikely at course sizes, but the build proves it rather than trusts it, and keeps ``-1`` for
the unknown member. Databricks' alternative, ``customer_sk BIGINT GENERATED ALWAYS AS
IDENTITY``, gives small dense keys that survive a table maintained with ``MERGE``, but they are
handed out in write order, so a full rebuild renumbers them and every fact must be rebuilt too.

**The unknown member** (key ``-1`` = :data:`lakehouse.gold.UNKNOWN_KEY`) is what a fact row gets
when its natural key is null or missing from the dimension (an order of a customer the CRM has
not sent yet, a product deleted from the catalog): facts keep every row and an inner join to
the dimension never drops one. On it, identifiers and codes (``customer_id``, ``product_id``,
``country``) are null, descriptive text reads ``"Unknown"`` (so a report groups the rows under
a readable label) and other attributes are null; ``dim_customer``'s unknown row is current with
an open period starting 1900-01-01, so "exactly one current row per customer" still holds.

**Grains.** ``dim_customer``: one row per version of ``silver.customers_history``.
``dim_product``: one row per product (Type 1: latest attributes). ``dim_geography``: one row
per (country, city), the location every source shares: customers' addresses, orders' shipping
cities and payments' card-use cities; postal codes are finer than the grain and stay on the
customer. Country attributes (name, region, currency) come from a country reference table.

Every dimension is rebuilt from Silver with ``overwrite``: Silver keeps the history (the
customer versions), hash keys make a rebuild give the same keys, so Gold needs no MERGE.

Example::

    from lakehouse.gold import dimensions

    dimensions.ensure_dimensions(spark, raw_root)
    dim_customer = spark.table(dimensions.DIM_CUSTOMER)
    dim_geography = spark.table(dimensions.DIM_GEOGRAPHY)
    orders = (
        spark.table("silver.orders")
        .transform(dimensions.with_customer_key(dim_customer, at="order_ts"))
        .transform(dimensions.with_geography_key(dim_geography, city="shipping_city"))
    )
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DecimalType,
    LongType,
    StringType,
    StructType,
    TimestampType,
)

from lakehouse.datagen._reference import COUNTRIES
from lakehouse.gold import UNKNOWN_KEY
from lakehouse.gold import commented_field as _field

DIM_CUSTOMER = "gold.dim_customer"
DIM_PRODUCT = "gold.dim_product"
DIM_GEOGRAPHY = "gold.dim_geography"
DIMENSIONS = (DIM_GEOGRAPHY, DIM_PRODUCT, DIM_CUSTOMER)  # build order: customers need geography

UNKNOWN_LABEL = "Unknown"
UNKNOWN_START = datetime(1900, 1, 1)  # the unknown customer's period: open since "always"

SILVER_INPUTS = (
    "silver.customers_history",
    "silver.products",
    "silver.orders",
    "silver.payments",
)


DIM_GEOGRAPHY_SCHEMA = StructType(
    [
        _field(
            "geography_sk",
            LongType(),
            "Surrogate key: xxhash64 of the normalized (country, city); -1 is the unknown member",
        ),
        _field("country", StringType(), "ISO 3166-1 alpha-2 code (natural key, with city)"),
        _field("city", StringType(), "City name (natural key, with country)"),
        _field("state", StringType(), "State, province or region, from customer addresses"),
        _field("country_name", StringType(), "Country name"),
        _field("region", StringType(), "Sales region: North America, Europe, Asia Pacific"),
        _field("currency", StringType(), "ISO 4217 code of the country's currency"),
    ]
)

DIM_PRODUCT_SCHEMA = StructType(
    [
        _field(
            "product_sk",
            LongType(),
            "Surrogate key: xxhash64(product_id); -1 is the unknown member",
        ),
        _field("product_id", StringType(), "Natural key from the product catalog"),
        _field("name", StringType(), "Product name"),
        _field("category", StringType(), "Category"),
        _field("subcategory", StringType(), "Subcategory within the category"),
        _field("brand", StringType(), "Brand"),
        _field("unit_price", DecimalType(10, 2), "List price in USD"),
        _field("unit_cost", DecimalType(10, 2), "Cost in USD"),
        _field("is_active", BooleanType(), "false: discontinued, still on old orders"),
    ]
)

DIM_CUSTOMER_SCHEMA = StructType(
    [
        _field(
            "customer_sk",
            LongType(),
            "Surrogate key of the version: xxhash64(customer_id, effective_start_date); "
            "-1 is the unknown member",
        ),
        _field("customer_id", StringType(), "Natural key from the CRM"),
        _field("first_name", StringType(), "First name"),
        _field("last_name", StringType(), "Last name"),
        _field("email", StringType(), "Email address"),
        _field("phone", StringType(), "Phone number, international format"),
        _field("date_of_birth", DateType(), "Date of birth"),
        _field("street", StringType(), "Street address of this version"),
        _field("city", StringType(), "City of this version"),
        _field("state", StringType(), "State, province or region of this version"),
        _field("postal_code", StringType(), "Postal code of this version"),
        _field("country", StringType(), "ISO 3166-1 alpha-2 country code of this version"),
        _field("segment", StringType(), "consumer, small_business, corporate or vip"),
        _field("signup_date", DateType(), "When the customer signed up"),
        _field("marketing_opt_in", BooleanType(), "Whether the customer accepts marketing"),
        _field(
            "geography_sk", LongType(), "The address's location in gold.dim_geography (-1: none)"
        ),
        _field("effective_start_date", TimestampType(), "When this version became true (UTC)"),
        _field(
            "effective_end_date",
            TimestampType(),
            "When the next version replaced it; null while current",
        ),
        _field("is_current", BooleanType(), "Whether this is the customer's latest version"),
    ]
)

SCHEMAS = {
    DIM_CUSTOMER: DIM_CUSTOMER_SCHEMA,
    DIM_PRODUCT: DIM_PRODUCT_SCHEMA,
    DIM_GEOGRAPHY: DIM_GEOGRAPHY_SCHEMA,
}

COMMENTS = {
    DIM_CUSTOMER: (
        "Customer dimension, SCD Type 2: one row per version of silver.customers_history; "
        "customer_sk = xxhash64(customer_id, effective_start_date); -1 is the unknown member"
    ),
    DIM_PRODUCT: (
        "Product dimension, Type 1: one row per product of silver.products; "
        "product_sk = xxhash64(product_id); -1 is the unknown member"
    ),
    DIM_GEOGRAPHY: (
        "Geography dimension: one row per (country, city) of customers, orders and payments; "
        "geography_sk = xxhash64(country, city normalized); -1 is the unknown member"
    ),
}

# ISO code -> (name, sales region). Currency comes from the course's country table.
COUNTRY_NAMES: dict[str, tuple[str, str]] = {
    "US": ("United States", "North America"),
    "CA": ("Canada", "North America"),
    "MX": ("Mexico", "North America"),
    "GB": ("United Kingdom", "Europe"),
    "DE": ("Germany", "Europe"),
    "FR": ("France", "Europe"),
    "ES": ("Spain", "Europe"),
    "IT": ("Italy", "Europe"),
    "NL": ("Netherlands", "Europe"),
    "IE": ("Ireland", "Europe"),
    "JP": ("Japan", "Asia Pacific"),
    "SG": ("Singapore", "Asia Pacific"),
}


# ------------------------------------------------------------------------------------------------
# Surrogate keys
# ------------------------------------------------------------------------------------------------
def surrogate_key(*columns: str | Column) -> Column:
    """The surrogate key of a natural key: ``xxhash64`` of its columns, a ``BIGINT``.

    The columns must not be null (a row without a natural key is the unknown member, -1):
    Spark's hashes skip nulls, so ``(a, null)`` would hash like ``(a)``. Hash typed columns,
    not strings formatted from them: a timestamp hashes as its instant, independent of the
    session time zone.

    >>> df.withColumn("product_sk", surrogate_key("product_id"))  # doctest: +SKIP
    """
    if not columns:
        raise ValueError("surrogate_key needs the natural key's columns, e.g. 'product_id'")
    return F.xxhash64(*[F.col(c) if isinstance(c, str) else c for c in columns])


def normalize_country(column: str | Column) -> Column:
    """The country code as dimensions compare it: trimmed, upper case (``" us"`` -> ``"US"``)."""
    c = F.col(column) if isinstance(column, str) else column
    return F.upper(F.trim(c))


def normalize_city(column: str | Column) -> Column:
    """The city as dimensions compare it: trimmed, inner whitespace collapsed to one space,
    lower case (``" New  YORK"`` -> ``"new york"``)."""
    c = F.col(column) if isinstance(column, str) else column
    return F.lower(F.regexp_replace(F.trim(c), r"\s+", " "))


def geography_key(country: str | Column = "country", city: str | Column = "city") -> Column:
    """``geography_sk`` computed from a (country, city): the hash of the normalized pair, or
    -1 when either is null or blank."""
    country_norm, city_norm = normalize_country(country), normalize_city(city)
    return (
        F.when(
            country_norm.isNull() | city_norm.isNull() | (country_norm == "") | (city_norm == ""),
            F.lit(UNKNOWN_KEY).cast("bigint"),
        )
        .otherwise(surrogate_key(country_norm, city_norm))
        .alias("geography_sk")
    )


def _all_not_null(columns: Sequence[str]) -> Column:
    return functools.reduce(lambda a, b: a & b, [F.col(c).isNotNull() for c in columns])


def check_surrogate_keys(
    df: DataFrame, key: str, natural_key: str | Sequence[str], *, name: str = "the dimension"
) -> None:
    """Assert that ``key`` identifies the rows of a dimension: never null, exactly one unknown
    member (``key == -1``, its natural key incomplete: a null in one of its columns), and no
    two rows sharing a key. ``AssertionError``
    names the colliding natural keys.

    >>> check_surrogate_keys(spark.table(DIM_PRODUCT), "product_sk", "product_id")  # doctest: +SKIP
    """
    natural = [natural_key] if isinstance(natural_key, str) else list(natural_key)
    _require_columns(df, [key, *natural], name)
    reserved_by_a_member = (F.col(key) == UNKNOWN_KEY) & _all_not_null(natural)
    summary = df.agg(
        F.count(F.when(F.col(key).isNull(), 1)).alias("null_keys"),
        F.count(F.when(F.col(key) == UNKNOWN_KEY, 1)).alias("unknown_rows"),
        F.slice(
            F.sort_array(
                F.collect_list(F.when(reserved_by_a_member, F.to_json(F.struct(*natural))))
            ),
            1,
            3,
        ).alias("reserved"),
    ).first()
    if summary.null_keys:
        raise AssertionError(
            f"{name} has {summary.null_keys} rows with a null {key}: every row needs a key "
            f"(the unknown member's is {UNKNOWN_KEY})"
        )
    if summary.reserved:
        raise AssertionError(
            f"{name}: a row with a natural key has {key} = {UNKNOWN_KEY}, which is reserved "
            f"for the unknown member: {', '.join(summary.reserved)}"
        )
    if summary.unknown_rows != 1:
        raise AssertionError(
            f"{name} has {summary.unknown_rows} rows with {key} = {UNKNOWN_KEY}; it needs "
            "exactly one: the unknown member that facts with a missing or null natural key "
            "point to. Union the unknown member row onto the dimension once."
        )
    collisions = (
        df.groupBy(key)
        .agg(
            F.count("*").alias("rows"),
            F.sort_array(F.collect_list(F.to_json(F.struct(*natural)))).alias("natural_keys"),
        )
        .where("rows > 1")
        .orderBy(key)
        .limit(5)
        .collect()
    )
    if collisions:
        shown = "; ".join(f"{r[key]}: {', '.join(r.natural_keys)}" for r in collisions)
        raise AssertionError(
            f"{name} has rows sharing a {key}: {shown}. Equal natural keys mean a duplicated "
            f"member (deduplicate the input); different ones mean the hash collided (add a "
            f"column to the hashed natural key)."
        )


def check_keys_stable(
    before_df: DataFrame,
    after_df: DataFrame,
    key: str,
    natural_key: str | Sequence[str],
    *,
    name: str = "the dimension",
) -> None:
    """Assert that every member of ``before_df`` kept its surrogate key in ``after_df`` (a
    rerun or rebuild of the same dimension, which may add members but must not renumber
    them). ``AssertionError`` shows members whose key changed or that disappeared.

    >>> before = spark.read.option("versionAsOf", v).table(DIM_CUSTOMER)  # doctest: +SKIP
    >>> check_keys_stable(before, spark.table(DIM_CUSTOMER), "customer_sk",
    ...                   ["customer_id", "effective_start_date"])  # doctest: +SKIP
    """
    natural = [natural_key] if isinstance(natural_key, str) else list(natural_key)
    _require_columns(before_df, [key, *natural], "before_df")
    _require_columns(after_df, [key, *natural], "after_df")
    before = before_df.select(*natural, F.col(key).alias("key_before"))
    after = after_df.select(
        *[F.col(c).alias(f"_after_{c}") for c in natural], F.col(key).alias("key_after")
    )
    same_member = functools.reduce(
        lambda a, b: a & b, [F.col(c).eqNullSafe(F.col(f"_after_{c}")) for c in natural]
    )
    changed = (
        before.join(after, same_member, "left")
        .where(~F.col("key_before").eqNullSafe(F.col("key_after")))
        .select(*natural, "key_before", "key_after")
        .orderBy(*natural)
        .limit(5)
        .collect()
    )
    if changed:
        raise AssertionError(
            f"{name}: surrogate keys changed between builds (key_after null: the member is "
            f"gone), e.g. {[r.asDict() for r in changed]}. Derive {key} from the natural key "
            "(a hash), not from the row's position (row_number, monotonically_increasing_id)."
        )


def check_customer_keys(
    events_df: DataFrame,
    dim_customer_df: DataFrame,
    *,
    customer_id: str = "customer_id",
    at: str = "event_ts",
    name: str = "the events",
) -> None:
    """Assert that ``events_df.customer_sk`` is the version in force at ``at``, recomputed
    another way: the latest version that started at or before ``at`` (the first version for an
    earlier event, the current one for a null time), -1 for an unknown or null customer.
    ``AssertionError`` shows events resolved to the wrong version.

    >>> dim_customer = spark.table(DIM_CUSTOMER)  # doctest: +SKIP
    >>> check_customer_keys(orders_with_keys, dim_customer, at="order_ts")  # doctest: +SKIP
    """
    _require_columns(events_df, [customer_id, at, "customer_sk"], name)
    _require_columns(
        dim_customer_df,
        ["customer_sk", "customer_id", "effective_start_date", "is_current"],
        "dim_customer_df",
    )
    versions = dim_customer_df.where(F.col("customer_sk") != UNKNOWN_KEY).select(
        F.col("customer_id").alias("_v_id"),
        F.col("customer_sk").alias("_v_sk"),
        F.col("effective_start_date").alias("_v_start"),
        F.col("is_current").alias("_v_current"),
    )
    events = events_df.select(
        F.monotonically_increasing_id().alias("_event"),
        F.col(customer_id).alias("_e_id"),
        F.col(at).alias("_e_at"),
        F.col("customer_sk").alias("_e_sk"),
    )
    started = F.col("_v_start") <= F.col("_e_at")
    expected = (
        events.join(versions, F.col("_e_id") == F.col("_v_id"), "left")
        .groupBy("_event", "_e_id", "_e_at", "_e_sk")
        .agg(
            F.max_by(F.when(started, F.col("_v_sk")), F.when(started, F.col("_v_start"))).alias(
                "_started"
            ),
            F.min_by("_v_sk", "_v_start").alias("_first"),
            F.max_by("_v_sk", F.col("_v_current").cast("int")).alias("_current"),
        )
        .withColumn(
            "expected_sk",
            F.when(F.col("_e_at").isNull(), F.col("_current"))
            .otherwise(F.coalesce("_started", "_first"))
            .cast("bigint"),
        )
        .withColumn("expected_sk", F.coalesce("expected_sk", F.lit(UNKNOWN_KEY).cast("bigint")))
    )
    wrong = (
        expected.where(~F.col("_e_sk").eqNullSafe(F.col("expected_sk")))
        .select(
            F.col("_e_id").alias(customer_id),
            F.col("_e_at").alias(at),
            F.col("_e_sk").alias("customer_sk"),
            "expected_sk",
        )
        .orderBy(customer_id, at)
        .limit(5)
        .collect()
    )
    if wrong:
        raise AssertionError(
            f"{name} resolve customers to the wrong version, e.g. {[r.asDict() for r in wrong]}: "
            f"customer_sk must be the version in force at {at} (effective_start_date <= {at} < "
            "effective_end_date), the first version before it, -1 for an unknown customer; "
            "not simply the current version."
        )


# ------------------------------------------------------------------------------------------------
# Building the dimensions (pure transformations)
# ------------------------------------------------------------------------------------------------
def _require_columns(df: DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {', '.join(map(repr, missing))}; it has {df.columns}"
        )


def unknown_member(schema: StructType, key: str, *, identifiers: Sequence[str] = ()) -> dict:
    """The unknown member's values: the key -1; identifiers null; strings "Unknown"; others
    null."""
    row = {}
    for f in schema.fields:
        if f.name == key:
            row[f.name] = UNKNOWN_KEY
        elif f.name.endswith("_sk"):
            row[f.name] = UNKNOWN_KEY
        elif isinstance(f.dataType, StringType) and f.name not in identifiers:
            row[f.name] = UNKNOWN_LABEL
        else:
            row[f.name] = None
    return row


def _with_unknown_member(
    spark: SparkSession, df: DataFrame, schema: StructType, row: dict
) -> DataFrame:
    unknown = spark.createDataFrame([tuple(row[f.name] for f in schema.fields)], schema)
    return df.select(*[F.col(f.name).cast(f.dataType) for f in schema.fields]).unionByName(unknown)


def _most_frequent(value: Column, *, by: Sequence[str], name: str) -> Callable:
    """Per group ``by``, the most frequent non-null ``value`` (ties: the smallest)."""

    def transform(df: DataFrame) -> DataFrame:
        counts = (
            df.where(value.isNotNull())
            .groupBy(*by, value.alias(name))
            .agg(F.count("*").alias("_n"))
        )
        ranked = Window.partitionBy(*by).orderBy(F.desc("_n"), F.col(name))
        return (
            counts.withColumn("_rank", F.row_number().over(ranked))
            .where("_rank = 1")
            .select(*by, name)
        )

    return transform


def geography_dimension(
    customers_df: DataFrame, orders_df: DataFrame, payments_df: DataFrame
) -> DataFrame:
    """``gold.dim_geography`` without its unknown member: one row per normalized (country,
    city) found in customer addresses (``country, city, state``), order shipping cities
    (``country, shipping_city``) and payment locations (``country, city``). The city keeps its
    most frequent spelling, the state is the customers' most frequent one ("Unknown" where no
    customer lives), and country name, region and currency come from the country table."""
    _require_columns(customers_df, ["country", "city", "state"], "customers_df")
    _require_columns(orders_df, ["country", "shipping_city"], "orders_df")
    _require_columns(payments_df, ["country", "city"], "payments_df")
    spark = customers_df.sparkSession
    places = (
        customers_df.select("country", "city", "state")
        .unionByName(
            orders_df.select(
                "country", F.col("shipping_city").alias("city"), F.lit(None).cast("string")
            ).toDF("country", "city", "state")
        )
        .unionByName(
            payments_df.select("country", "city", F.lit(None).cast("string").alias("state"))
        )
        .withColumn("_country", normalize_country("country"))
        .withColumn("_city", normalize_city("city"))
        .where((F.col("_country") != "") & (F.col("_city") != ""))  # also drops nulls
        .withColumn("city", F.regexp_replace(F.trim("city"), r"\s+", " "))
        .withColumn("state", F.trim("state"))
    )
    by = ["_country", "_city"]
    cities = places.transform(_most_frequent(F.col("city"), by=by, name="city"))
    states = places.transform(_most_frequent(F.col("state"), by=by, name="state"))
    reference = spark.createDataFrame(
        [
            (code, name, region, COUNTRIES[code][0] if code in COUNTRIES else None)
            for code, (name, region) in sorted(COUNTRY_NAMES.items())
        ],
        "_country string, country_name string, region string, currency string",
    )
    return (
        cities.join(states, by, "left")
        .join(reference, "_country", "left")
        .select(
            surrogate_key("_country", "_city").alias("geography_sk"),
            F.col("_country").alias("country"),
            "city",
            F.coalesce("state", F.lit(UNKNOWN_LABEL)).alias("state"),
            F.coalesce("country_name", F.lit(UNKNOWN_LABEL)).alias("country_name"),
            F.coalesce("region", F.lit(UNKNOWN_LABEL)).alias("region"),
            "currency",
        )
    )


def product_dimension(products_df: DataFrame) -> DataFrame:
    """``gold.dim_product`` without its unknown member: Silver's one row per product with
    ``product_sk = xxhash64(product_id)``."""
    columns = [f.name for f in DIM_PRODUCT_SCHEMA.fields if f.name != "product_sk"]
    _require_columns(products_df, columns, "products_df")
    return products_df.where(F.col("product_id").isNotNull()).select(
        surrogate_key("product_id").alias("product_sk"), *columns
    )


def customer_dimension(history_df: DataFrame, geography_df: DataFrame) -> DataFrame:
    """``gold.dim_customer`` without its unknown member: one row per version of
    ``silver.customers_history``, ``customer_sk = xxhash64(customer_id, effective_start_date)``,
    and the version's address resolved to ``geography_sk`` through ``geography_df``."""
    columns = [
        f.name for f in DIM_CUSTOMER_SCHEMA.fields if f.name not in ("customer_sk", "geography_sk")
    ]
    _require_columns(history_df, columns, "history_df")
    return (
        history_df.where(F.col("customer_id").isNotNull())
        .select(surrogate_key("customer_id", "effective_start_date").alias("customer_sk"), *columns)
        .transform(with_geography_key(geography_df))
        .select(*[f.name for f in DIM_CUSTOMER_SCHEMA.fields])
    )


def with_unknown_member(spark: SparkSession, table: str) -> Callable[[DataFrame], DataFrame]:
    """Append ``table``'s unknown member (sk -1) to a dimension built without it, in the
    table's column order and types."""
    schema = SCHEMAS[table]
    key = schema.fields[0].name
    identifiers = {
        DIM_CUSTOMER: ("customer_id", "country"),
        DIM_PRODUCT: ("product_id",),
        DIM_GEOGRAPHY: ("country", "currency"),
    }[table]
    row = unknown_member(schema, key, identifiers=identifiers)
    if table == DIM_CUSTOMER:
        row.update(effective_start_date=UNKNOWN_START, effective_end_date=None, is_current=True)

    def transform(df: DataFrame) -> DataFrame:
        return _with_unknown_member(spark, df, schema, row)

    return transform


# ------------------------------------------------------------------------------------------------
# Key lookups (what fact tables use)
# ------------------------------------------------------------------------------------------------
def _check_target(df: DataFrame, columns: Sequence[str], new: str, what: str) -> None:
    _require_columns(df, columns, what)
    if new in df.columns:
        raise ValueError(
            f"{what} already has a column {new!r}: drop or rename it before looking the key up"
        )


def with_customer_key(
    dim_customer_df: DataFrame, *, customer_id: str = "customer_id", at: str = "event_ts"
) -> Callable[[DataFrame], DataFrame]:
    """Add ``customer_sk``: the key of the customer's version in force at time ``at``
    (``effective_start_date <= at < effective_end_date``, an open end while current).

    An event before the customer's first version resolves to the first version (the customer
    existed before the CRM recorded a change); a null ``at`` to the current version; a null
    ``customer_id`` or one absent from the dimension to -1, the unknown member.

    >>> dim_customer = spark.table(DIM_CUSTOMER)  # doctest: +SKIP
    >>> orders.transform(with_customer_key(dim_customer, at="order_ts"))  # doctest: +SKIP
    """
    _require_columns(
        dim_customer_df,
        ["customer_sk", "customer_id", "effective_start_date", "effective_end_date", "is_current"],
        "dim_customer_df",
    )
    first_first = Window.partitionBy("customer_id").orderBy("effective_start_date")
    versions = dim_customer_df.where(
        (F.col("customer_sk") != UNKNOWN_KEY) & F.col("customer_id").isNotNull()
    ).select(
        F.col("customer_id").alias("_dc_id"),
        F.col("customer_sk").alias("_dc_sk"),
        F.col("effective_start_date").alias("_dc_start"),
        F.col("effective_end_date").alias("_dc_end"),
        F.col("is_current").alias("_dc_current"),
        (F.row_number().over(first_first) == 1).alias("_dc_first"),
    )

    def transform(df: DataFrame) -> DataFrame:
        _check_target(df, [customer_id, at], "customer_sk", "the events")
        event_time = F.col(at)
        in_force = F.when(event_time.isNull(), F.col("_dc_current")).otherwise(
            (F.col("_dc_first") | (event_time >= F.col("_dc_start")))
            & (F.col("_dc_end").isNull() | (event_time < F.col("_dc_end")))
        )
        return (
            df.join(versions, (F.col(customer_id) == F.col("_dc_id")) & in_force, "left")
            .withColumn("customer_sk", F.coalesce("_dc_sk", F.lit(UNKNOWN_KEY).cast("bigint")))
            .drop("_dc_id", "_dc_sk", "_dc_start", "_dc_end", "_dc_current", "_dc_first")
        )

    return transform


def with_product_key(
    dim_product_df: DataFrame, *, product_id: str = "product_id"
) -> Callable[[DataFrame], DataFrame]:
    """Add ``product_sk``: the product's key, -1 when ``product_id`` is null or absent.

    >>> lines.transform(with_product_key(spark.table(DIM_PRODUCT)))  # doctest: +SKIP
    """
    _require_columns(dim_product_df, ["product_sk", "product_id"], "dim_product_df")
    products = dim_product_df.where(
        (F.col("product_sk") != UNKNOWN_KEY) & F.col("product_id").isNotNull()
    ).select(F.col("product_id").alias("_dp_id"), F.col("product_sk").alias("_dp_sk"))

    def transform(df: DataFrame) -> DataFrame:
        _check_target(df, [product_id], "product_sk", "the rows")
        return (
            df.join(products, F.col(product_id) == F.col("_dp_id"), "left")
            .withColumn("product_sk", F.coalesce("_dp_sk", F.lit(UNKNOWN_KEY).cast("bigint")))
            .drop("_dp_id", "_dp_sk")
        )

    return transform


def with_geography_key(
    dim_geography_df: DataFrame, *, country: str = "country", city: str = "city"
) -> Callable[[DataFrame], DataFrame]:
    """Add ``geography_sk``: the key of the (country, city), compared the way the dimension
    normalizes them (:func:`normalize_country`, :func:`normalize_city`); -1 when either is
    null or the place is absent from the dimension.

    >>> dim_geography = spark.table(DIM_GEOGRAPHY)  # doctest: +SKIP
    >>> orders.transform(with_geography_key(dim_geography, city="shipping_city"))  # doctest: +SKIP
    """
    _require_columns(dim_geography_df, ["geography_sk", "country", "city"], "dim_geography_df")
    places = dim_geography_df.where(F.col("geography_sk") != UNKNOWN_KEY).select(
        normalize_country("country").alias("_dg_country"),
        normalize_city("city").alias("_dg_city"),
        F.col("geography_sk").alias("_dg_sk"),
    )

    def transform(df: DataFrame) -> DataFrame:
        _check_target(df, [country, city], "geography_sk", "the rows")
        match = (normalize_country(country) == F.col("_dg_country")) & (
            normalize_city(city) == F.col("_dg_city")
        )
        return (
            df.join(places, match, "left")
            .withColumn("geography_sk", F.coalesce("_dg_sk", F.lit(UNKNOWN_KEY).cast("bigint")))
            .drop("_dg_country", "_dg_city", "_dg_sk")
        )

    return transform


# ------------------------------------------------------------------------------------------------
# Writing the tables
# ------------------------------------------------------------------------------------------------
def save_dimension(spark: SparkSession, df: DataFrame, table: str) -> str:
    """Check the surrogate keys of the complete dimension ``df`` (unknown member included),
    then replace ``table`` with it: the table and column comments from :data:`COMMENTS` and
    :data:`SCHEMAS`, the rows with ``overwrite``. Returns the table name."""
    from lakehouse.tables import DeltaTable

    schema = SCHEMAS[table]
    key = schema.fields[0].name
    natural = {
        DIM_CUSTOMER: ["customer_id", "effective_start_date"],
        DIM_PRODUCT: ["product_id"],
        DIM_GEOGRAPHY: ["country", "city"],
    }[table]
    check_surrogate_keys(df, key, natural, name=table)
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    (
        DeltaTable.createOrReplace(spark)
        .tableName(table)
        .comment(COMMENTS[table])
        .addColumns(schema)
        .execute()
    )
    (
        df.select(
            *[
                F.col(f.name).cast(f.dataType).alias(f.name, metadata=f.metadata)
                for f in schema.fields
            ]
        )
        .write.format("delta")
        .mode("overwrite")
        .saveAsTable(table)
    )
    return table


def build_dim_geography(spark: SparkSession) -> str:
    """(Re)build ``gold.dim_geography`` from the customer history, orders and payments."""
    df = geography_dimension(
        spark.table("silver.customers_history"),
        spark.table("silver.orders"),
        spark.table("silver.payments"),
    ).transform(with_unknown_member(spark, DIM_GEOGRAPHY))
    return save_dimension(spark, df, DIM_GEOGRAPHY)


def build_dim_product(spark: SparkSession) -> str:
    """(Re)build ``gold.dim_product`` from ``silver.products``."""
    df = product_dimension(spark.table("silver.products")).transform(
        with_unknown_member(spark, DIM_PRODUCT)
    )
    return save_dimension(spark, df, DIM_PRODUCT)


def build_dim_customer(spark: SparkSession) -> str:
    """(Re)build ``gold.dim_customer`` from ``silver.customers_history`` (``gold.dim_geography``
    must exist)."""
    df = customer_dimension(
        spark.table("silver.customers_history"), spark.table(DIM_GEOGRAPHY)
    ).transform(with_unknown_member(spark, DIM_CUSTOMER))
    return save_dimension(spark, df, DIM_CUSTOMER)


BUILDERS: dict[str, Callable[[SparkSession], str]] = {
    DIM_GEOGRAPHY: build_dim_geography,
    DIM_PRODUCT: build_dim_product,
    DIM_CUSTOMER: build_dim_customer,
}


def ensure_dimensions(spark: SparkSession, raw_root) -> list[str]:
    """Build each dimension that does not exist yet (and first the Silver tables it reads);
    existing ones are left as they are. Returns ``[DIM_CUSTOMER, DIM_PRODUCT, DIM_GEOGRAPHY]``.

    >>> ensure_dimensions(spark, raw_root)  # doctest: +SKIP
    ['gold.dim_customer', 'gold.dim_product', 'gold.dim_geography']
    """
    from lakehouse.gold import ensure_silver_inputs

    missing = [t for t in DIMENSIONS if not spark.catalog.tableExists(t)]
    if missing:
        ensure_silver_inputs(spark, SILVER_INPUTS, raw_root)
        for table in missing:
            BUILDERS[table](spark)
    return [DIM_CUSTOMER, DIM_PRODUCT, DIM_GEOGRAPHY]
