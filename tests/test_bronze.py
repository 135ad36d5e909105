"""Bronze ingestion: batches in delivery order, full-fidelity reads (unparseable rows kept),
lineage, idempotent appends, append-only tables, and the check the lessons rely on failing for
a wrong ingestion."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyspark.sql import functions as F

from lakehouse import bronze

CUSTOMERS = "crm.customers"
GOOD_1 = {"customer_id": "C1", "first_name": "Ann", "email": "ann@example.com"}
GOOD_2 = {"customer_id": "C2", "first_name": None, "email": None}  # nulls stay nulls
CUT_SHORT = '{"customer_id": "C3", "first_na'
GOOD_4 = {"customer_id": "C4", "segment": "retail"}


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "bronze_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def write_lines(path: Path, lines: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text)
    return path


def customers_root(root: Path) -> Path:
    """Two CRM batches: the first with an unparseable line, the second clean."""
    write_lines(root / "crm/customers/batch=001/customers.json", [GOOD_1, GOOD_2, CUT_SHORT])
    write_lines(root / "crm/customers/batch=002/customers.json", [GOOD_4, GOOD_1])
    return root


def fake_manifest(dataset: str, rows_per_file: dict[str, int]):
    files = [SimpleNamespace(path=p, rows=n) for p, n in rows_per_file.items()]
    return SimpleNamespace(datasets={dataset: SimpleNamespace(files=files)})


CUSTOMERS_MANIFEST = fake_manifest(
    CUSTOMERS,
    {"crm/customers/batch=001/customers.json": 3, "crm/customers/batch=002/customers.json": 2},
)


def drop(spark, dataset):
    from lakehouse.course import drop_table

    drop_table(spark, bronze.bronze_table(dataset))


def version(spark, table):
    from lakehouse import DeltaTable

    return DeltaTable.forName(spark, table).history(1).select("version").first()[0]


# ------------------------------------------------------------------------------------------------
# Sources and batches (no Spark)
# ------------------------------------------------------------------------------------------------
def test_table_names_and_unknown_source():
    assert bronze.bronze_table("crm.customers") == "bronze.crm_customers"
    assert bronze.bronze_table("payments.transactions") == "bronze.payments_transactions"
    with pytest.raises(KeyError, match="unknown source 'crm.clients'.*crm.customers"):
        bronze.source("crm.clients")


def test_raw_schema_keeps_file_types_and_a_corrupt_record_column():
    orders = bronze.SOURCES["ecommerce.orders"].raw_schema
    assert {f.dataType.simpleString() for f in orders.fields} == {"string"}  # CSV is text
    assert orders.fieldNames()[-1] == "_corrupt_record"
    payments = bronze.SOURCES["payments.transactions"].raw_schema
    types = {f.name: f.dataType.simpleString() for f in payments.fields}
    assert types["amount"] == "string" and types["lat"] == "double"  # JSON: decimals as text
    assert "_corrupt_record" not in bronze.SOURCES["web.events"].raw_schema.fieldNames()


def test_source_batches_in_delivery_order_with_stable_labels(tmp_path):
    for name in ("batch=002", "batch=001", ".staging", "_tmp"):
        write_lines(tmp_path / "crm/customers" / name / "customers.json", [GOOD_1])
    for name in ("orders_002.csv", "orders_001.csv"):
        (tmp_path / "ecommerce/orders").mkdir(parents=True, exist_ok=True)
        (tmp_path / "ecommerce/orders" / name).write_text("order_id\nO1\n")
    for day in ("2026-06-08", "2026-06-01"):
        write_lines(tmp_path / "payments/transactions" / day / "events.json", [{}])
    (tmp_path / "ecommerce/products.csv").write_text("product_id\nP1\n")

    crm = bronze.source_batches(CUSTOMERS, tmp_path)
    assert [(b.batch_id, b.version) for b in crm] == [("001", 1), ("002", 2)]
    assert crm[0].paths == (str(tmp_path / "crm/customers/batch=001"),)
    orders = bronze.source_batches("ecommerce.orders", tmp_path)
    assert [b.batch_id for b in orders] == ["orders_001", "orders_002"]
    payments = bronze.source_batches("payments.transactions", tmp_path)
    assert [b.batch_id for b in payments] == ["2026-06-01", "2026-06-08"]
    assert [b.batch_id for b in bronze.source_batches("ecommerce.products", tmp_path)] == [
        "products"
    ]


def test_source_batches_without_files_says_how_to_generate(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate the sources first"):
        bronze.source_batches("web.events", tmp_path)


def test_unparseable_records_recounts_without_spark(tmp_path):
    customers_root(tmp_path)
    assert bronze.unparseable_records(CUSTOMERS, [tmp_path / "crm/customers/batch=001"]) == 1
    csv_file = tmp_path / "orders.csv"
    csv_file.write_text('a,b,c\n1,2,3\n1,2\n1,2,3,4\n"x,y",2,3\n')
    assert bronze.unparseable_records("ecommerce.orders", [csv_file]) == 2
    assert bronze.unparseable_records("web.events", [csv_file]) == 0  # Parquet has none


def test_table_properties_append_only_and_change_feed_where_needed():
    assert bronze.table_properties(CUSTOMERS)["delta.appendOnly"] == "true"
    assert "delta.enableChangeDataFeed" not in bronze.table_properties(CUSTOMERS)
    cdc = bronze.table_properties("support.tickets_cdc")
    assert cdc["delta.enableChangeDataFeed"] == "true"


# ------------------------------------------------------------------------------------------------
# Reading and tagging
# ------------------------------------------------------------------------------------------------
def test_read_raw_keeps_unparseable_lines_whole(spark, tmp_path):
    customers_root(tmp_path)
    raw_df = bronze.read_raw(spark, CUSTOMERS, [str(tmp_path / "crm/customers/batch=001")])
    assert raw_df.schema == bronze.SOURCES[CUSTOMERS].raw_schema
    rows = {r.customer_id: r for r in raw_df.collect()}
    assert len(raw_df.collect()) == 3
    assert rows["C2"].first_name is None and rows["C2"]._corrupt_record is None
    corrupt = [r for r in raw_df.collect() if r._corrupt_record is not None]
    assert [r._corrupt_record for r in corrupt] == [CUT_SHORT]


def test_read_raw_parses_doubled_quotes_in_csv(spark, tmp_path):
    # RFC 4180 doubles a quote inside a quoted field; the generator writes product names such
    # as 15" Laptop Sleeve that way (seen at medium scale). They must parse, not be corrupt.
    header = "product_id,name,category,subcategory,brand,unit_price,unit_cost,is_active"
    products = tmp_path / "ecommerce" / "products.csv"
    write_lines(
        products,
        [
            header,
            'P1,"Lumen 15"" Laptop Sleeve, Set of 3",electronics,accessories,Lumen,46.99,16.4,true',
            "P2,Plain Bottle,sports,outdoor,Contoso,9.99,4.00,false",
        ],
    )
    raw_df = bronze.read_raw(spark, "ecommerce.products", [str(products)])
    rows = {r.product_id: r for r in raw_df.collect()}
    assert rows["P1"].name == 'Lumen 15" Laptop Sleeve, Set of 3'
    assert rows["P1"].unit_price == "46.99"
    assert all(r._corrupt_record is None for r in rows.values())
    assert bronze.unparseable_records(bronze.SOURCES["ecommerce.products"], [str(products)]) == 0


def test_with_ingestion_metadata_adds_lineage(spark, tmp_path):
    customers_root(tmp_path)
    batch_df = bronze.read_raw(spark, CUSTOMERS, [str(tmp_path / "crm/customers/batch=002")])
    tagged = batch_df.transform(bronze.with_ingestion_metadata("crm", "002"))
    assert tagged.columns == batch_df.columns + list(bronze.METADATA_COLUMNS)
    row = tagged.select(*bronze.METADATA_COLUMNS).first()
    assert row._source_file.endswith("batch=002/customers.json")
    assert (row._source_system, row._batch_id) == ("crm", "002")
    assert row._ingestion_date == row._ingestion_timestamp.date()


# ------------------------------------------------------------------------------------------------
# Writing: idempotent, append-only, checked
# ------------------------------------------------------------------------------------------------
def test_ingest_source_twice_commits_once(spark, tmp_path):
    raw_root = customers_root(tmp_path)
    drop(spark, CUSTOMERS)
    first = bronze.ingest_source(spark, CUSTOMERS, raw_root)
    assert [(r.batch_id, r.rows, r.committed) for r in first] == [
        ("001", 3, True),
        ("002", 2, True),
    ]
    table = bronze.bronze_table(CUSTOMERS)
    landed_version = version(spark, table)
    again = bronze.ingest_source(spark, CUSTOMERS, raw_root)
    assert [(r.rows, r.committed) for r in again] == [(3, False), (2, False)]
    assert version(spark, table) == landed_version
    assert bronze.check_bronze_table(spark, CUSTOMERS, CUSTOMERS_MANIFEST, raw_root) == {
        "001": 3,
        "002": 2,
    }
    assert bronze.ensure_bronze(spark, [CUSTOMERS], raw_root) == {table: 5}


def test_write_batch_is_skipped_by_delta_itself(spark, tmp_path):
    """Bypass the landed-batch shortcut: the txnAppId/txnVersion options alone keep it exactly
    once, and the same write without them duplicates the batch, which the check catches."""
    raw_root = customers_root(tmp_path)
    drop(spark, CUSTOMERS)
    bronze.ingest_source(spark, CUSTOMERS, raw_root)
    src = bronze.source(CUSTOMERS)
    table = src.table
    first_batch = bronze.source_batches(src, raw_root)[0]
    landed_version = version(spark, table)
    bronze.write_batch(spark, src, first_batch)
    assert version(spark, table) == landed_version
    assert spark.table(table).count() == 5

    (
        bronze.read_raw(spark, src, first_batch.paths)
        .transform(bronze.with_ingestion_metadata("crm", first_batch.batch_id))
        .write.format("delta")
        .mode("append")
        .saveAsTable(table)
    )
    assert version(spark, table) == landed_version + 1
    with pytest.raises(AssertionError, match="holds 6 rows of batch '001'.*txnAppId/txnVersion"):
        bronze.check_bronze_table(spark, CUSTOMERS, CUSTOMERS_MANIFEST, raw_root)


def test_a_txn_version_that_does_not_grow_skips_batches_and_the_check_says_so(spark, tmp_path):
    raw_root = customers_root(tmp_path)
    drop(spark, CUSTOMERS)
    bronze.create_bronze_table(spark, CUSTOMERS)
    table = bronze.bronze_table(CUSTOMERS)
    for batch in bronze.source_batches(CUSTOMERS, raw_root):
        (
            bronze.read_raw(spark, CUSTOMERS, batch.paths)
            .transform(bronze.with_ingestion_metadata("crm", batch.batch_id))
            .write.format("delta")
            .mode("append")
            .option("txnAppId", table)
            .option("txnVersion", 1)  # the same for every batch: Delta skips the second
            .saveAsTable(table)
        )
    with pytest.raises(AssertionError, match="holds 0 rows of batch '002'.*own version"):
        bronze.check_bronze_table(spark, CUSTOMERS, CUSTOMERS_MANIFEST, raw_root)


def test_dropmalformed_reader_fails_the_check(spark, tmp_path):
    raw_root = customers_root(tmp_path)
    drop(spark, CUSTOMERS)
    bronze.create_bronze_table(spark, CUSTOMERS)
    for batch in bronze.source_batches(CUSTOMERS, raw_root):
        (
            spark.read.schema(bronze.SOURCES[CUSTOMERS].raw_schema)
            .option("mode", "DROPMALFORMED")
            .json(list(batch.paths))
            .transform(bronze.with_ingestion_metadata("crm", batch.batch_id))
            .write.format("delta")
            .mode("append")
            .saveAsTable(bronze.bronze_table(CUSTOMERS))
        )
    with pytest.raises(AssertionError, match="holds 2 rows of batch '001'.*never DROPMALFORMED"):
        bronze.check_bronze_table(spark, CUSTOMERS, CUSTOMERS_MANIFEST, raw_root)


def test_check_names_missing_lineage_columns(spark, tmp_path):
    raw_root = customers_root(tmp_path)
    drop(spark, CUSTOMERS)
    (
        bronze.read_raw(spark, CUSTOMERS, [str(raw_root / "crm/customers")])
        .write.format("delta")
        .saveAsTable(bronze.bronze_table(CUSTOMERS))
    )
    with pytest.raises(AssertionError, match=r"missing \['_ingestion_timestamp'"):
        bronze.check_bronze_table(spark, CUSTOMERS, CUSTOMERS_MANIFEST, raw_root)


def test_bronze_table_is_append_only_with_comment_and_partitioning(spark, tmp_path):
    from lakehouse import DeltaTable

    raw_root = customers_root(tmp_path)
    drop(spark, CUSTOMERS)
    bronze.ingest_source(spark, CUSTOMERS, raw_root)
    table = DeltaTable.forName(spark, bronze.bronze_table(CUSTOMERS))
    detail = table.detail().first()
    assert detail.partitionColumns == ["_ingestion_date"]
    assert detail.properties["delta.appendOnly"] == "true"
    assert detail.description.startswith("Bronze: raw crm.customers")
    with pytest.raises(Exception, match="(?i)append"):
        table.update("customer_id = 'C1'", {"email": F.lit("x@example.com")})
    with pytest.raises(Exception, match="(?i)append"):
        table.delete("customer_id = 'C1'")
    assert spark.table(bronze.bronze_table(CUSTOMERS)).count() == 5


def test_payments_are_not_batch_written(spark, tmp_path):
    batch = bronze.SourceBatch("2026-06-01", 1, (str(tmp_path),))
    with pytest.raises(ValueError, match="autoloader.ingest_stream"):
        bronze.ingest_batch(spark, "payments.transactions", batch)
