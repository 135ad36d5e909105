"""Silver validation: Bronze text typed to each source's spec, every row checked against the data
contract, and the rows that break it kept aside in one quarantine table with their reasons.

A row is invalid when it has a defect of one of :data:`QUARANTINE_DEFECTS`: it did not parse or a
value does not cast (``malformed_rows``), a required value is missing (``null_required``), a money
amount is below zero (``negative_amounts``), an email is not ``local@domain.tld``
(``invalid_emails``) or a date lies after the data window (``future_dates``). Duplicates, late or
out-of-order events, orphan keys and PII are *valid* here: later Silver steps handle them.

Example::

    from lakehouse.silver import validation
    customers = validation.validated(spark, "crm.customers")     # typed + _is_valid + reasons
    validation.write_quarantine(spark)                           # every source, one commit
    validation.reconcile(spark, "crm.customers", manifest).assert_ok()
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType, TimestampType

from lakehouse import bronze
from lakehouse.datagen import DATASETS
from lakehouse.datagen.schema import DatasetSpec

# The defect classes that make a row invalid. Every other class the generator injects
# (duplicates, late_events, out_of_order, orphan_keys, pii_in_free_text, schema_change) describes
# a row that is still a correct record: dedup, watermarks, joins and masking deal with those.
QUARANTINE_DEFECTS = (
    "malformed_rows",
    "null_required",
    "negative_amounts",
    "invalid_emails",
    "future_dates",
)

IS_VALID = "_is_valid"
VALIDATION_ERRORS = "_validation_errors"

# The last day of the data window (inclusive): a date after it, or a timestamp at or after the
# next midnight UTC, cannot have happened yet when the sources were extracted.
DATA_WINDOW_END = date(2026, 6, 30)
_WINDOW_END_EXCLUSIVE = datetime.combine(DATA_WINDOW_END + timedelta(days=1), datetime.min.time())

# local@domain.tld: one @, no whitespace anywhere, and a dot with text on both sides after the @.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$"

QUARANTINE_TABLE = "silver.quarantine"
# Lineage copied from Bronze (NULL when validating a frame that lacks it, e.g. in a test).
_QUARANTINE_LINEAGE = {
    bronze.SOURCE_FILE: "string",
    bronze.BATCH_ID: "string",
    bronze.INGESTION_TIMESTAMP: "timestamp",
}
QUARANTINE_SCHEMA = StructType(
    [
        StructField("source_table", StringType(), False),  # "bronze.crm_customers"
        StructField("business_key", StringType(), True),  # "C000165", or "O00000098:2"
        StructField("raw_record", StringType(), True),  # the row as JSON, or the unparsed line
        StructField("validation_errors", ArrayType(StringType(), False), False),
        StructField(bronze.SOURCE_FILE, StringType(), True),
        StructField(bronze.BATCH_ID, StringType(), True),
        StructField(bronze.INGESTION_TIMESTAMP, TimestampType(), True),
        StructField("quarantined_at", TimestampType(), False),
    ]
)


@dataclass(frozen=True)
class Rules:
    """Which columns of a dataset the value rules apply to (the null rule uses the spec's
    ``required`` flags, the cast rule every typed column)."""

    amount_columns: tuple[str, ...] = ()  # money that must not be below zero
    email_columns: tuple[str, ...] = ()  # must be local@domain.tld when present
    window_columns: tuple[str, ...] = ()  # dates/timestamps that must not be after the window


# One entry per dataset, read off each DatasetSpec.defect_rules.
RULES: dict[str, Rules] = {
    "crm.customers": Rules(
        email_columns=("email",), window_columns=("date_of_birth", "signup_date")
    ),
    "ecommerce.products": Rules(),
    "ecommerce.orders": Rules(window_columns=("order_ts",)),
    "ecommerce.order_lines": Rules(amount_columns=("unit_price",)),
    "web.events": Rules(window_columns=("event_ts",)),
    "support.tickets_cdc": Rules(),
    "payments.transactions": Rules(amount_columns=("amount",)),
}


def _spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise KeyError(
            f"unknown dataset {dataset!r}: use one of {', '.join(sorted(DATASETS))}"
        ) from None


# --------------------------------------------------------------------------- column names


def to_snake_case(name: str) -> str:
    """A column name in snake_case: ``"Order ID"`` -> ``order_id``, ``"customerEmail"`` ->
    ``customer_email``, ``"HTTPStatus"`` -> ``http_status``, ``"Total (USD)"`` -> ``total_usd``.

    Leading underscores are kept, so metadata columns such as ``_corrupt_record`` stay as they are.

    >>> to_snake_case("unitPrice (EUR)")
    'unit_price_eur'
    """
    if not isinstance(name, str):
        raise TypeError(f"column name {name!r} is not a string")
    stripped = name.strip()
    prefix = "_" * (len(stripped) - len(stripped.lstrip("_")))
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", stripped)  # camelCase -> camel_Case
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)  # HTTPStatus -> HTTP_Status
    text = re.sub(r"[\W_]+", "_", text).strip("_").lower()
    if not text:
        raise ValueError(
            f"column name {name!r} has no letters or digits: rename it explicitly with "
            "withColumnRenamed before standardizing"
        )
    return prefix + text


def standardize_column_names(df: DataFrame) -> DataFrame:
    """Rename every column to snake_case (see :func:`to_snake_case`).

    Raises ``ValueError`` when two columns would get the same name, rather than silently keeping
    one of them.

    >>> standardize_column_names(df).columns    # doctest: +SKIP
    ['order_id', 'customer_email']
    """
    renamed: dict[str, str] = {}
    for column in df.columns:
        target = to_snake_case(column)
        if target in renamed.values():
            first = next(k for k, v in renamed.items() if v == target)
            raise ValueError(
                f"columns {first!r} and {column!r} both become {target!r}: rename one of them "
                "before standardizing"
            )
        renamed[column] = target
    return df.select(*[F.col(f"`{old}`").alias(new) for old, new in renamed.items()])


standardize = standardize_column_names


# --------------------------------------------------------------------------- rules as columns


def _blank(column: Column) -> Column:
    """True for an empty or whitespace-only string (an empty CSV field means "no value")."""
    return F.trim(column) == F.lit("")


def _missing(raw: Column, raw_type: str) -> Column:
    if raw_type == "string":
        return raw.isNull() | _blank(raw)
    return raw.isNull()


def _typed(raw: Column, raw_type: str, spec_type: str) -> Column:
    """The value in its spec type. ``try_cast`` gives NULL where the ANSI ``cast`` would raise
    (``CAST_INVALID_INPUT``), so one bad value cannot fail the whole job; the cast rule below
    turns that NULL into a reason."""
    if raw_type == spec_type:
        return raw
    return F.when(~_blank(raw), raw.try_cast(spec_type))


def _reason(failed: Column, message: Column | str) -> Column:
    """The message when ``failed`` is true; NULL when it is false *or NULL* (a rule on a missing
    value is the null rule's business, not this one's)."""
    return F.when(failed, message if isinstance(message, Column) else F.lit(message))


def _quoted(value: Column) -> Column:
    return F.concat(F.lit("'"), value.cast("string"), F.lit("'"))


def _row_reasons(spec: DatasetSpec, rules: Rules, has_corrupt: bool) -> Column:
    """``array<string>`` of every rule the row breaks, in column order; empty when valid."""
    raw_types = spec.raw_column_types
    checks: list[Column] = []
    for name, spec_type in spec.column_types.items():
        raw = F.col(name)
        typed = _typed(raw, raw_types[name], spec_type)
        missing = _missing(raw, raw_types[name])
        if name in spec.required:
            checks.append(_reason(missing, f"{name}: required but missing"))
        if raw_types[name] != spec_type:
            checks.append(
                _reason(
                    ~missing & typed.isNull(),
                    F.concat(F.lit(f"{name}: "), _quoted(raw), F.lit(f" is not a {spec_type}")),
                )
            )
        if name in rules.amount_columns:
            checks.append(
                _reason(
                    typed < 0, F.concat(F.lit(f"{name}: negative amount "), typed.cast("string"))
                )
            )
        if name in rules.email_columns:
            checks.append(
                _reason(
                    ~missing & ~raw.rlike(EMAIL_PATTERN),
                    F.concat(F.lit(f"{name}: "), _quoted(raw), F.lit(" not local@domain.tld")),
                )
            )
        if name in rules.window_columns:
            after_window = (
                typed > F.lit(DATA_WINDOW_END)
                if spec_type == "date"
                else typed >= F.lit(_WINDOW_END_EXCLUSIVE.replace(tzinfo=UTC))
            )
            checks.append(
                _reason(
                    after_window,
                    F.concat(
                        F.lit(f"{name}: "),
                        typed.cast("string"),
                        F.lit(f" is after the data window end {DATA_WINDOW_END.isoformat()}"),
                    ),
                )
            )
    reasons = F.filter(F.array(*checks), lambda r: r.isNotNull())
    if not has_corrupt:
        return reasons
    # A line that did not parse has no trustworthy fields: its one reason is that.
    unparsed = F.array(
        F.lit(f"record: the {spec.file_format.upper()} line did not parse (kept in raw_record)")
    )
    return F.when(F.col(bronze.CORRUPT_RECORD).isNotNull(), unparsed).otherwise(reasons)


# How each reason begins or ends, by defect class (the messages built in _row_reasons).
_REASON_CLASSES = (
    ("malformed_rows", r"(did not parse|' is not a )"),
    ("null_required", r": required but missing$"),
    ("negative_amounts", r": negative amount "),
    ("invalid_emails", r" not local@domain\.tld$"),
    ("future_dates", r" is after the data window end "),
)


def defect_class(reason: Column | str) -> Column:
    """The defect class (one of :data:`QUARANTINE_DEFECTS`) a ``_validation_errors`` reason
    belongs to, as a Column.

    >>> quarantine.select(F.explode("validation_errors").alias("r")).select(defect_class("r"))
    ...                                                                  # doctest: +SKIP
    """
    reason = F.col(reason) if isinstance(reason, str) else reason
    result = None
    for name, pattern in _REASON_CLASSES:
        result = (F.when if result is None else result.when)(reason.rlike(pattern), F.lit(name))
    return result.otherwise(F.lit("other"))


def _check_columns(df: DataFrame | Sequence[str], spec: DatasetSpec) -> None:
    present = df.columns if isinstance(df, DataFrame) else df
    missing = [c for c in spec.column_names if c not in present]
    if missing:
        raise ValueError(
            f"the DataFrame to validate as {spec.name!r} lacks columns {missing}: pass the Bronze "
            f"table {bronze.bronze_table(spec.name)!r} (raw columns plus lineage)"
        )


def validate(
    dataset: str, *, columns: Sequence[str] | None = None
) -> Callable[[DataFrame], DataFrame]:
    """Type a Bronze DataFrame of ``dataset`` and mark every row valid or not.

    Returns a ``DataFrame -> DataFrame`` transform whose output has the spec's columns in the
    spec's types (``try_cast``: a value that does not cast is NULL and its reason recorded), the
    lineage columns, ``_is_valid`` and ``_validation_errors`` (``array<string>`` such as
    ``"email: 'ann.example.com' not local@domain.tld"``; empty for a valid row).

    ``columns``, when given, are the input's columns, so the transform never asks Spark for
    the DataFrame's schema: a declarative pipeline's query function may not analyze its input.

    >>> typed = spark.table("bronze.crm_customers").transform(validate("crm.customers"))
    ...                                                                  # doctest: +SKIP
    """
    spec = _spec(dataset)
    rules = RULES.get(dataset, Rules())

    def transform(df: DataFrame) -> DataFrame:
        present = list(columns) if columns is not None else df.columns
        _check_columns(present, spec)
        raw_types = spec.raw_column_types
        reasons = _row_reasons(spec, rules, bronze.CORRUPT_RECORD in present)
        lineage = [c for c in bronze.METADATA_COLUMNS if c in present]
        return (
            df.select(
                *[
                    _typed(F.col(name), raw_types[name], spec_type).alias(name)
                    for name, spec_type in spec.column_types.items()
                ],
                *lineage,
                reasons.alias(VALIDATION_ERRORS),
            )
            # select, not withColumn: Spark Connect resolves withColumn against the catalog at
            # once, which in a declarative pipeline would bypass the upstream flow
            .select("*", (F.size(VALIDATION_ERRORS) == 0).alias(IS_VALID))
            .select(*spec.column_names, *lineage, IS_VALID, VALIDATION_ERRORS)
        )

    return transform


def validated(spark: SparkSession, dataset: str) -> DataFrame:
    """The Bronze table of ``dataset`` standardized, typed and checked (see :func:`validate`).

    >>> valid_orders = validated(spark, "ecommerce.orders").where("_is_valid")  # doctest: +SKIP
    """
    return (
        spark.table(bronze.bronze_table(dataset))
        .transform(standardize_column_names)
        .transform(validate(dataset))
    )


def valid_rows(spark: SparkSession, dataset: str) -> DataFrame:
    """The rows that pass every rule, without the two validation columns."""
    return validated(spark, dataset).where(F.col(IS_VALID)).drop(IS_VALID, VALIDATION_ERRORS)


# --------------------------------------------------------------------------- quarantine


def _key_from_text(spec: DatasetSpec) -> Column:
    """The business key of a line that did not parse, read from its text: generated keys come
    first in each record, and a cut-short line keeps them."""
    text = F.col(bronze.CORRUPT_RECORD)
    parts = []
    for name in spec.key:
        if spec.file_format == "csv":
            position = spec.column_names.index(name)
            parts.append(F.regexp_extract(text, rf"^(?:[^,]*,){{{position}}}([^,]*)", 1))
        else:
            parts.append(F.regexp_extract(text, rf'"{name}"\s*:\s*"?([^",}}]*)', 1))
    return F.concat_ws(":", *parts)


def business_key(spec: DatasetSpec, has_corrupt: bool) -> Column:
    """The row's business key as the manifest writes it: key columns joined with ``:``."""
    parsed = F.concat_ws(":", *[F.coalesce(F.col(k).cast("string"), F.lit("")) for k in spec.key])
    if not has_corrupt:
        return parsed
    return F.when(F.col(bronze.CORRUPT_RECORD).isNotNull(), _key_from_text(spec)).otherwise(parsed)


def quarantine_records(dataset: str) -> Callable[[DataFrame], DataFrame]:
    """Bronze rows of ``dataset`` -> its invalid rows in :data:`QUARANTINE_SCHEMA`: the source
    table, business key, the raw record (the row as JSON with nulls spelled out, or the line
    exactly as delivered when it did not parse), the reasons and the lineage."""
    spec = _spec(dataset)
    rules = RULES.get(dataset, Rules())

    def transform(df: DataFrame) -> DataFrame:
        _check_columns(df, spec)
        has_corrupt = bronze.CORRUPT_RECORD in df.columns
        as_json = F.to_json(F.struct(*spec.column_names), {"ignoreNullFields": "false"})
        raw = F.coalesce(F.col(bronze.CORRUPT_RECORD), as_json) if has_corrupt else as_json
        reasons = _row_reasons(spec, rules, has_corrupt)
        lineage = {
            name: F.col(name) if name in df.columns else F.lit(None).cast(type_name)
            for name, type_name in _QUARANTINE_LINEAGE.items()
        }
        return df.select(
            F.lit(bronze.bronze_table(dataset)).alias("source_table"),
            business_key(spec, has_corrupt).alias("business_key"),
            raw.alias("raw_record"),
            reasons.alias("validation_errors"),
            *[column.alias(name) for name, column in lineage.items()],
            F.current_timestamp().alias("quarantined_at"),
        ).where(F.size("validation_errors") > 0)

    return transform


def quarantine_frame(spark: SparkSession, datasets: Iterable[str] | None = None) -> DataFrame:
    """The invalid rows of several sources (default: all), unioned, ready to write."""
    names = list(datasets) if datasets is not None else list(bronze.SOURCES)
    frames = [
        spark.table(bronze.bronze_table(name))
        .transform(standardize_column_names)
        .transform(quarantine_records(name))
        for name in names
    ]
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def write_quarantine(
    spark: SparkSession,
    datasets: Iterable[str] | None = None,
    *,
    table: str = QUARANTINE_TABLE,
) -> dict[str, int]:
    """(Re)write the quarantined rows of these sources (default: all) into ``table``, in one
    commit, and return the row count per source table.

    The table is partitioned by ``source_table`` and each write replaces exactly the partitions
    of the sources it carries (``replaceWhere``), so a re-run leaves the same rows, and
    quarantining one source never touches another's.
    """
    names = list(datasets) if datasets is not None else list(bronze.SOURCES)
    if not names:
        raise ValueError("write_quarantine needs at least one dataset, e.g. ['crm.customers']")
    sources = [bronze.bronze_table(name) for name in names]
    quarantine_df = quarantine_frame(spark, names)
    create_quarantine_table(spark, table)
    in_list = ", ".join(f"'{s}'" for s in sources)
    (
        quarantine_df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"source_table IN ({in_list})")
        .saveAsTable(table)
    )
    counts = dict.fromkeys(sources, 0)
    rows = (
        spark.table(table)
        .where(F.col("source_table").isin(sources))
        .groupBy("source_table")
        .count()
        .collect()
    )
    counts.update({row["source_table"]: row["count"] for row in rows})
    return counts


def create_quarantine_table(spark: SparkSession, table: str = QUARANTINE_TABLE) -> None:
    """Create the quarantine table if it does not exist: :data:`QUARANTINE_SCHEMA`, partitioned
    by ``source_table`` so that each source can be replaced on its own (``replaceWhere``)."""
    from lakehouse.tables import DeltaTable

    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    (
        DeltaTable.createIfNotExists(spark)
        .tableName(table)
        .addColumns(QUARANTINE_SCHEMA)
        .partitionedBy("source_table")
        .comment(
            "Silver quarantine: rows of every source that break the data contract, with reasons"
        )
        .property("quality", "silver")
        .execute()
    )


def valid_table_name(dataset: str) -> str:
    """``"crm.customers"`` -> ``"silver.crm_customers_valid"``."""
    return "silver." + _spec(dataset).name.replace(".", "_") + "_valid"


def write_valid(spark: SparkSession, dataset: str, *, table: str | None = None) -> int:
    """Overwrite ``silver.<source>_valid`` with the rows of ``dataset`` that pass every rule;
    returns the row count."""
    name = table or valid_table_name(dataset)
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {name.split('.')[0]}")
    (
        valid_rows(spark, dataset)
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .saveAsTable(name)
    )
    return spark.table(name).count()


# --------------------------------------------------------------------------- reconciliation


def expected_quarantine_keys(manifest, dataset: str) -> set[str]:
    """Union of the manifest's defect keys over :data:`QUARANTINE_DEFECTS` for ``dataset``."""
    defects = manifest.datasets[dataset].defects
    return {key for d in QUARANTINE_DEFECTS if d in defects for key in defects[d].keys}


@dataclass(frozen=True)
class Reconciliation:
    """Rows in = rows kept + rows quarantined, and the quarantine holds exactly the keys the
    generator broke."""

    dataset: str
    bronze_rows: int
    valid_rows: int
    quarantined_rows: int
    expected_keys: frozenset[str]
    quarantined_keys: frozenset[str]

    @property
    def missing_keys(self) -> list[str]:
        """Broken by the generator, not quarantined."""
        return sorted(self.expected_keys - self.quarantined_keys)

    @property
    def unexpected_keys(self) -> list[str]:
        """Quarantined, yet the generator did not break them."""
        return sorted(self.quarantined_keys - self.expected_keys)

    @property
    def ok(self) -> bool:
        return (
            self.bronze_rows == self.valid_rows + self.quarantined_rows
            and self.quarantined_rows == len(self.expected_keys)
            and not self.missing_keys
            and not self.unexpected_keys
        )

    def assert_ok(self) -> Reconciliation:
        """Raise ``AssertionError`` saying what does not add up, with up to 5 keys."""
        problems = []
        if self.bronze_rows != self.valid_rows + self.quarantined_rows:
            problems.append(
                f"Bronze has {self.bronze_rows} rows but valid + quarantined = "
                f"{self.valid_rows} + {self.quarantined_rows} = "
                f"{self.valid_rows + self.quarantined_rows}: every row must land in exactly one "
                "of the two (an invalid row filtered out without being quarantined is lost)"
            )
        if self.missing_keys:
            problems.append(
                f"{len(self.missing_keys)} defective keys are not quarantined, e.g. "
                f"{self.missing_keys[:5]}: a rule is missing or too lenient (nulls? casts?)"
            )
        if self.unexpected_keys:
            problems.append(
                f"{len(self.unexpected_keys)} quarantined keys have no defect, e.g. "
                f"{self.unexpected_keys[:5]}: a rule is too strict"
            )
        if self.quarantined_rows != len(self.expected_keys) and not problems:
            problems.append(
                f"{self.quarantined_rows} rows quarantined for {len(self.expected_keys)} "
                "defective keys: a row was quarantined twice (re-run appended instead of "
                "replacing?)"
            )
        if problems:
            raise AssertionError(f"{self.dataset}: " + "; ".join(problems))
        return self


def reconcile(
    spark: SparkSession,
    dataset: str,
    manifest,
    *,
    quarantine_table: str = QUARANTINE_TABLE,
    valid: DataFrame | str | None = None,
) -> Reconciliation:
    """Count Bronze, valid and quarantined rows of ``dataset`` and compare the quarantined keys
    with the manifest. ``valid`` is a table name or DataFrame of the kept rows (default: the rows
    :func:`validated` marks valid).

    >>> reconcile(spark, "crm.customers", manifest).assert_ok()    # doctest: +SKIP
    """
    source_table = bronze.bronze_table(dataset)
    if valid is None:
        valid_df = validated(spark, dataset).where(F.col(IS_VALID))
    elif isinstance(valid, str):
        valid_df = spark.table(valid)
    else:
        valid_df = valid
    quarantined = [
        row[0]
        for row in spark.table(quarantine_table)
        .where(F.col("source_table") == source_table)
        .select("business_key")
        .collect()
    ]
    return Reconciliation(
        dataset=dataset,
        bronze_rows=spark.table(source_table).count(),
        valid_rows=valid_df.count(),
        quarantined_rows=len(quarantined),
        expected_keys=frozenset(expected_quarantine_keys(manifest, dataset)),
        quarantined_keys=frozenset(quarantined),
    )
