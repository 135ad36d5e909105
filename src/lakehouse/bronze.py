"""Bronze: every raw source landed as an append-only Delta table, full fidelity plus lineage.

Bronze keeps each source column exactly as the file holds it (CSV text stays text, JSON strings stay
strings), keeps rows that do not parse in ``_corrupt_record`` instead of dropping them, and adds the
lineage columns every later layer relies on. One batch is written by one idempotent Delta write
(``txnAppId`` = the table, ``txnVersion`` = the batch's number), so a re-run commits nothing.

Example::

    from lakehouse import bronze
    reports = bronze.ingest_source(spark, "crm.customers", raw_root)
    bronze.ensure_bronze(spark, ["ecommerce.orders"], raw_root)   # what a later lesson calls
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

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
    TimestampType,
)

from lakehouse.datagen import DATASETS
from lakehouse.datagen.schema import DatasetSpec

CORRUPT_RECORD = "_corrupt_record"
INGESTION_TIMESTAMP = "_ingestion_timestamp"
SOURCE_FILE = "_source_file"
SOURCE_SYSTEM = "_source_system"
BATCH_ID = "_batch_id"
INGESTION_DATE = "_ingestion_date"

METADATA_SCHEMA = StructType(
    [
        StructField(INGESTION_TIMESTAMP, TimestampType(), False),
        StructField(SOURCE_FILE, StringType(), False),
        StructField(SOURCE_SYSTEM, StringType(), False),
        StructField(BATCH_ID, StringType(), False),
        StructField(INGESTION_DATE, DateType(), False),
    ]
)
METADATA_COLUMNS = tuple(METADATA_SCHEMA.fieldNames())


@dataclass(frozen=True)
class BronzeSource:
    """One raw source and the Bronze table it lands in."""

    dataset: str  # the generator's dataset name, e.g. "crm.customers"
    table: str  # "bronze.crm_customers"
    spec: DatasetSpec

    @property
    def source_system(self) -> str:
        return self.spec.source

    @property
    def file_format(self) -> str:
        return self.spec.file_format

    @property
    def keeps_corrupt_records(self) -> bool:
        """Text formats can hold a row that does not parse; Parquet cannot."""
        return self.file_format in ("json", "csv")

    @property
    def raw_schema(self) -> StructType:
        """The explicit read schema: each column as the file stores it, plus ``_corrupt_record``
        for text formats (Spark's PERMISSIVE mode puts a row that does not parse there)."""
        fields = [
            StructField(name, _spark_type(type_name), True)
            for name, type_name in self.spec.raw_column_types.items()
        ]
        if self.keeps_corrupt_records:
            fields.append(StructField(CORRUPT_RECORD, StringType(), True))
        return StructType(fields)

    @property
    def table_schema(self) -> StructType:
        return StructType([*self.raw_schema.fields, *METADATA_SCHEMA.fields])

    @property
    def comment(self) -> str:
        return (
            f"Bronze: raw {self.dataset} ({self.file_format} files), append-only, columns exactly "
            f"as delivered plus lineage. {self.spec.description}"
        )


_SIMPLE_TYPES = {
    "string": StringType(),
    "int": IntegerType(),
    "bigint": LongType(),
    "double": DoubleType(),
    "boolean": BooleanType(),
    "date": DateType(),
    "timestamp": TimestampType(),
}
_DECIMAL = re.compile(r"decimal\((\d+),(\d+)\)")


def _spark_type(type_name: str) -> DataType:
    """The Spark type of a spec's type name, without a session (schemas are module constants)."""
    if type_name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[type_name]
    match = _DECIMAL.fullmatch(type_name)
    if match:
        return DecimalType(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"unknown column type {type_name!r}: use a type of lakehouse.datagen.schema")


def _table_name(dataset: str) -> str:
    return "bronze." + dataset.replace(".", "_")


SOURCES: dict[str, BronzeSource] = {
    name: BronzeSource(name, _table_name(name), spec) for name, spec in DATASETS.items()
}


def source(dataset: str | BronzeSource) -> BronzeSource:
    """The Bronze source for a dataset name such as ``"crm.customers"``."""
    if isinstance(dataset, BronzeSource):
        return dataset
    try:
        return SOURCES[dataset]
    except KeyError:
        raise KeyError(
            f"unknown source {dataset!r}: use one of {', '.join(sorted(SOURCES))}"
        ) from None


def bronze_table(dataset: str) -> str:
    """``"crm.customers"`` -> ``"bronze.crm_customers"``."""
    return source(dataset).table


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class SourceBatch:
    """A unit of delivery: a ``batch=NNN`` folder, a day folder, or a file.

    ``version`` is its position in delivery order (1, 2, ...): the ``txnVersion`` of its write.
    """

    batch_id: str
    version: int
    paths: tuple[str, ...]


def source_batches(dataset: str | BronzeSource, raw_root: str | Path) -> list[SourceBatch]:
    """The batches a source has delivered so far under ``raw_root``, in delivery order.

    Units are ``batch=NNN`` folders when the source has them (CRM), else sub-folders (payments,
    one per arrival day), else files (numbered in arrival order). Names sort in delivery order,
    so a batch keeps its number when later ones arrive.
    """
    src = source(dataset)
    location = Path(raw_root) / src.spec.path
    if location.is_file():
        units = [location]
    elif location.is_dir():
        units = sorted(p for p in location.iterdir() if not p.name.startswith((".", "_")))
    else:
        raise FileNotFoundError(
            f"no files for {src.dataset} at {location}: generate the sources first "
            "(lakehouse.course.prepare_datasets, or `python -m lakehouse.datagen`)"
        )
    batches = []
    for version, unit in enumerate(units, start=1):
        label = unit.name.split("=", 1)[1] if "=" in unit.name else unit.name
        if unit.is_file():
            label = unit.name.split(".")[0]
        batches.append(SourceBatch(label, version, (str(unit),)))
    return batches


# --------------------------------------------------------------------------- read and tag


def read_raw(spark: SparkSession, dataset: str | BronzeSource, paths: Iterable[str]) -> DataFrame:
    """Read raw files with the source's explicit schema; rows that do not parse are kept whole in
    ``_corrupt_record`` (PERMISSIVE mode), never dropped."""
    src = source(dataset)
    paths = [str(p) for p in paths]
    reader = spark.read.schema(src.raw_schema)
    if src.file_format == "json":
        return (
            reader.option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
            .json(paths)
        )
    if src.file_format == "csv":
        return (
            reader.option("header", True)
            # RFC 4180: a quote inside a quoted field is doubled ("15"" Laptop Sleeve");
            # Spark's default escape character is a backslash.
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
            .option("enforceSchema", False)
            .csv(paths)
        )
    return reader.parquet(*paths)


def with_ingestion_metadata(source_system: str, batch_id: str) -> Callable[[DataFrame], DataFrame]:
    """Add the lineage columns: when (``_ingestion_timestamp``, ``_ingestion_date``), from which
    file (``_source_file``, Spark's ``_metadata.file_path``), which system and which batch."""

    def transform(df: DataFrame) -> DataFrame:
        now: Column = F.current_timestamp()
        return df.select(
            "*",
            now.alias(INGESTION_TIMESTAMP),
            F.col("_metadata.file_path").alias(SOURCE_FILE),
            F.lit(source_system).alias(SOURCE_SYSTEM),
            F.lit(batch_id).alias(BATCH_ID),
            F.to_date(now).alias(INGESTION_DATE),
        )

    return transform


# --------------------------------------------------------------------------- write

# Sources whose Bronze table records a change data feed from creation: later layers read their
# changes incrementally (``readChangeFeed``), and the feed only covers commits made after the
# property is set, so it is set when the table is created.
CHANGE_DATA_FEED_SOURCES = frozenset({"support.tickets_cdc"})

# Sources that arrive as a stream of files and land through incremental file ingestion
# (lakehouse.autoloader) instead of one batch write per delivery.
STREAMING_SOURCES = frozenset({"payments.transactions"})


def table_properties(dataset: str | BronzeSource) -> dict[str, str]:
    """The properties a Bronze table is created with: append-only, its layer and source, and
    the change data feed for the sources in :data:`CHANGE_DATA_FEED_SOURCES`."""
    src = source(dataset)
    properties = {
        "delta.appendOnly": "true",
        "quality": "bronze",
        "source_system": src.source_system,
    }
    if src.dataset in CHANGE_DATA_FEED_SOURCES:
        properties["delta.enableChangeDataFeed"] = "true"
    return properties


def create_bronze_table(
    spark: SparkSession,
    dataset: str | BronzeSource,
    *,
    properties: dict[str, str] | None = None,
    schema: StructType | None = None,
):
    """Create the source's Bronze table if it does not exist: the raw schema plus lineage,
    partitioned by ingestion date, a comment, and ``delta.appendOnly`` (Bronze never changes
    a row it landed). ``schema`` replaces the raw columns (a stream whose schema evolves
    starts from the columns first delivered).

    Example::

        create_bronze_table(spark, "crm.customers").detail().select("properties").first()
    """
    from lakehouse.tables import DeltaTable

    src = source(dataset)
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {src.table.split('.')[0]}")
    columns = StructType([*(schema or src.raw_schema).fields, *METADATA_SCHEMA.fields])
    builder = (
        DeltaTable.createIfNotExists(spark)
        .tableName(src.table)
        .addColumns(columns)
        .partitionedBy(INGESTION_DATE)
        .comment(src.comment)
    )
    for key, value in {**table_properties(src), **(properties or {})}.items():
        builder = builder.property(key, value)
    return builder.execute()


@dataclass(frozen=True)
class IngestReport:
    table: str
    batch_id: str
    rows: int  # the batch's rows in the Bronze table after the call
    committed: bool  # False when the batch was already in the table (an idempotent re-run)


def write_batch(spark: SparkSession, src: BronzeSource, batch: SourceBatch) -> None:
    """Append one batch with the idempotent-write options: Delta records (``txnAppId``,
    ``txnVersion``) in the commit and skips any later write of a version it has committed."""
    batch_df = read_raw(spark, src, batch.paths).transform(
        with_ingestion_metadata(src.source_system, batch.batch_id)
    )
    (
        batch_df.write.format("delta")
        .mode("append")
        .option("txnAppId", src.table)
        .option("txnVersion", batch.version)
        .saveAsTable(src.table)
    )


def batch_counts(spark: SparkSession, dataset: str | BronzeSource) -> dict[str, int]:
    """Rows per ``_batch_id`` in the source's Bronze table (empty if there is no table):
    one aggregation that says both which batches landed and how many rows each holds."""
    src = source(dataset)
    if not spark.catalog.tableExists(src.table):
        return {}
    rows = spark.table(src.table).groupBy(BATCH_ID).count().collect()
    return {row[0]: row[1] for row in rows}


def _ingest(
    spark: SparkSession, src: BronzeSource, batches: list[SourceBatch]
) -> list[IngestReport]:
    if src.dataset in STREAMING_SOURCES:
        raise ValueError(
            f"{src.dataset!r} arrives as a stream of files: land it with "
            "lakehouse.autoloader.ingest_stream (or bronze.ensure_bronze), not a batch write"
        )
    before = batch_counts(spark, src)
    if not before:
        create_bronze_table(spark, src)
    # A batch already in the table is skipped without reading its files; the write itself is
    # still idempotent (txnVersion), so a concurrent or interrupted run cannot duplicate one.
    for batch in batches:
        if batch.batch_id not in before:
            write_batch(spark, src, batch)
    after = batch_counts(spark, src) if any(b.batch_id not in before for b in batches) else before
    return [
        IngestReport(src.table, b.batch_id, after.get(b.batch_id, 0), b.batch_id not in before)
        for b in batches
    ]


def ingest_batch(
    spark: SparkSession, dataset: str | BronzeSource, batch: SourceBatch
) -> IngestReport:
    """Append one batch to the source's Bronze table, exactly once.

    The write carries ``txnAppId`` (the table) and ``txnVersion`` (the batch number): Delta skips
    a write whose version it has already committed for that app id, so re-running a notebook or a
    job never duplicates a batch."""
    return _ingest(spark, source(dataset), [batch])[0]


def ingest_source(
    spark: SparkSession, dataset: str | BronzeSource, raw_root: str | Path
) -> list[IngestReport]:
    """Ingest every batch the source has delivered, in order; batches already landed are
    skipped (and Delta itself would skip them, see :func:`ingest_batch`).

    Example::

        [r.committed for r in ingest_source(spark, "ecommerce.orders", raw_root)]  # [True, True]
        [r.committed for r in ingest_source(spark, "ecommerce.orders", raw_root)]  # [False, False]
    """
    src = source(dataset)
    return _ingest(spark, src, source_batches(src, raw_root))


def landed_batches(spark: SparkSession, dataset: str | BronzeSource) -> set[str]:
    """The ``_batch_id`` values already in the source's Bronze table (empty if no table)."""
    return set(batch_counts(spark, dataset))


def ensure_bronze(
    spark: SparkSession, datasets: Iterable[str] | None, raw_root: str | Path
) -> dict[str, int]:
    """What a later lesson's setup calls: land the batches of these sources (default: all) that
    are not in Bronze yet, and return each Bronze table's row count.

    Payments land through the same incremental file ingestion as lesson 01_bronze/03
    (:func:`lakehouse.autoloader.ingest_stream`), the other sources with one batch write each.
    """
    from lakehouse import autoloader

    names = list(datasets) if datasets is not None else list(SOURCES)
    counts = {}
    for name in names:
        src = source(name)
        landed = batch_counts(spark, src)
        missing = [b for b in source_batches(src, raw_root) if b.batch_id not in landed]
        if missing and src.dataset in STREAMING_SOURCES:
            autoloader.ingest_stream(spark, src, raw_root=raw_root)
            landed = batch_counts(spark, src)
        elif missing:
            landed = {r.batch_id: r.rows for r in _ingest(spark, src, missing)} | landed
        counts[src.table] = sum(landed.values())
    return counts


# --------------------------------------------------------------------------- checks


def unparseable_records(dataset: str | BronzeSource, paths: Iterable[str]) -> int:
    """Records in these files that cannot be read as a row, counted without Spark: JSON lines
    that Python's ``json`` rejects (or that are not objects), CSV rows whose number of fields
    differs from the header's. An independent recount of what ``_corrupt_record`` must hold."""
    import csv
    import json

    src = source(dataset)
    if not src.keeps_corrupt_records:
        return 0
    bad = 0
    for path in paths:
        files = sorted(Path(path).rglob("*.*")) if Path(path).is_dir() else [Path(path)]
        for file in files:
            with open(file, newline="", encoding="utf-8") as handle:
                if src.file_format == "csv":
                    rows = csv.reader(handle)
                    width = len(next(rows))
                    bad += sum(len(row) != width for row in rows)
                    continue
                for line in handle:
                    if not line.strip():
                        continue
                    try:
                        bad += not isinstance(json.loads(line), dict)
                    except ValueError:
                        bad += 1
    return bad


def expected_batch_rows(manifest, dataset: str | BronzeSource, raw_root: str | Path) -> dict:
    """Rows per batch according to the generator's manifest (its per-file row counts)."""
    src = source(dataset)
    per_file = {f.path: f.rows for f in manifest.datasets[src.dataset].files}
    expected = {}
    for batch in source_batches(src, raw_root):
        total = 0
        for unit in map(Path, batch.paths):
            files = [unit] if unit.is_file() else [p for p in unit.rglob("*") if p.is_file()]
            total += sum(per_file.get(str(p.relative_to(raw_root)), 0) for p in files)
        expected[batch.batch_id] = total
    return expected


def check_bronze_table(spark: SparkSession, dataset: str | BronzeSource, manifest, raw_root):
    """Assert the source's Bronze table holds every delivered row exactly once, unparseable
    rows kept in ``_corrupt_record``, and exactly the raw columns plus lineage.

    Raises AssertionError saying what is wrong and how to fix it; returns the rows per batch."""
    src = source(dataset)
    assert spark.catalog.tableExists(src.table), (
        f"{src.table} does not exist: ingest {src.dataset!r} first"
    )
    table_df = spark.table(src.table)
    missing = [c for c in src.table_schema.fieldNames() if c not in table_df.columns]
    extra = [
        c
        for c in table_df.columns
        if c not in src.table_schema.fieldNames() and c not in src.spec.column_names
    ]
    assert not missing and not extra, (
        f"{src.table} should have the raw columns plus lineage exactly; missing {missing}, "
        f"unexpected {extra}. Read with bronze.SOURCES[{src.dataset!r}].raw_schema and add "
        "the lineage columns with with_ingestion_metadata."
    )
    rows = (
        table_df.groupBy(BATCH_ID).agg(
            F.count("*").alias("rows"), F.count(CORRUPT_RECORD).alias("corrupt")
        )
        if src.keeps_corrupt_records
        else table_df.groupBy(BATCH_ID).agg(F.count("*").alias("rows"), F.lit(0).alias("corrupt"))
    )
    landed = {r[BATCH_ID]: (r["rows"], r["corrupt"]) for r in rows.collect()}
    expected = expected_batch_rows(manifest, src, raw_root)
    for batch in source_batches(src, raw_root):
        got_rows, got_corrupt = landed.get(batch.batch_id, (0, 0))
        want = expected[batch.batch_id]
        assert got_rows == want, (
            f"{src.table} holds {got_rows} rows of batch {batch.batch_id!r}; its files hold "
            f"{want}. "
            + (
                "A batch landed twice: write with txnAppId/txnVersion so a re-run commits nothing."
                if got_rows > want
                else "Rows are missing: read in PERMISSIVE mode (never DROPMALFORMED) and land "
                "every batch (Delta skips a write whose txnVersion is not above the last one it "
                "recorded for that txnAppId: use each batch's own version)."
            )
        )
        want_corrupt = unparseable_records(src, batch.paths)
        assert got_corrupt == want_corrupt, (
            f"{src.table} keeps {got_corrupt} unparseable rows of batch {batch.batch_id!r} in "
            f"{CORRUPT_RECORD}; the files have {want_corrupt}. Read with the explicit raw schema "
            f"(it includes {CORRUPT_RECORD}) and option('columnNameOfCorruptRecord', "
            f"'{CORRUPT_RECORD}')."
        )
    return {batch_id: counts[0] for batch_id, counts in landed.items()}
