"""Silver validation: snake_case names, typing with try_cast, each contract rule on explicit edge
rows, the quarantine table and the reconciliation that proves rows in = rows kept + quarantined."""

from __future__ import annotations

import pytest

from lakehouse import bronze
from lakehouse.silver import validation
from lakehouse.silver.validation import to_snake_case


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "silver_validation_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


# ------------------------------------------------------------------------------------------------
# Column names
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Order ID", "order_id"),
        ("customerEmail", "customer_email"),
        ("OrderID", "order_id"),
        ("HTTPStatus", "http_status"),
        ("Total Amount (USD)", "total_amount_usd"),
        ("  padded--name__ ", "padded_name"),
        ("already_snake", "already_snake"),
        ("_corrupt_record", "_corrupt_record"),
        ("_ingestionTimestamp", "_ingestion_timestamp"),
        ("line2Total", "line2_total"),
        ("Café Name", "café_name"),
    ],
)
def test_to_snake_case(name, expected):
    assert to_snake_case(name) == expected


def test_to_snake_case_rejects_names_without_letters():
    with pytest.raises(ValueError, match="no letters or digits"):
        to_snake_case(" -- ")


def test_standardize_column_names_renames_and_refuses_collisions(spark):
    df = spark.createDataFrame(
        [(1, "a", 2.0)], "`Order ID` int, `customerEmail` string, `x` double"
    )
    assert validation.standardize_column_names(df).columns == ["order_id", "customer_email", "x"]
    clash = spark.createDataFrame([(1, 2)], "`Order ID` int, `orderId` int")
    with pytest.raises(ValueError, match="'Order ID' and 'orderId' both become 'order_id'"):
        validation.standardize_column_names(clash)


# ------------------------------------------------------------------------------------------------
# Rules on explicit rows
# ------------------------------------------------------------------------------------------------
CLEAN = {
    "crm.customers": {
        "customer_id": "C1",
        "first_name": "Ann",
        "last_name": "Lee",
        "email": "ann.lee@example.com",
        "country": "US",
        "segment": "retail",
        "signup_date": "2026-01-05",
        "date_of_birth": "1990-02-03",
        "updated_at": "2026-02-01T10:00:00.000Z",
    },
    "ecommerce.order_lines": {
        "order_id": "O1",
        "line_number": "1",
        "product_id": "P1",
        "quantity": "2",
        "unit_price": "9.99",
        "discount": "0.00",
        "tax": "1.00",
    },
    "ecommerce.orders": {
        "order_id": "O1",
        "customer_id": "C1",
        "order_ts": "2026-03-01T08:00:00.000Z",
        "status": "completed",
        "channel": "web",
        "currency": "USD",
        "country": "US",
    },
}


def bronze_rows(spark, dataset, *changes):
    """A Bronze-shaped DataFrame (raw schema, no lineage): one row per dict of changes to a clean
    row; the key column is numbered unless a change sets it."""
    schema = bronze.source(dataset).raw_schema
    key = bronze.source(dataset).spec.key[0]
    rows = []
    for i, change in enumerate(changes):
        row = {**CLEAN[dataset], key: f"K{i}", **change}
        rows.append(tuple(row.get(f.name) for f in schema.fields))
    return spark.createDataFrame(rows, schema)


def errors_by_key(df, dataset):
    out = df.transform(validation.validate(dataset)).collect()
    key = bronze.source(dataset).spec.key[0]
    return {r[key]: (r["_is_valid"], list(r["_validation_errors"])) for r in out}


def test_email_rule(spark):
    emails = {
        "ok": "a@b.co",
        "no_tld": "a@b",
        "double_at": "a@@b.com",
        "space": "a b@c.com",
        "no_at": "a.b.com",
        "trailing_dot": "a@b.",
    }
    df = bronze_rows(
        spark, "crm.customers", *[{"customer_id": k, "email": v} for k, v in emails.items()]
    )
    result = errors_by_key(df, "crm.customers")
    assert result["ok"] == (True, [])
    for key in ["no_tld", "double_at", "space", "no_at", "trailing_dot"]:
        valid, errors = result[key]
        assert not valid, key
        assert errors == [f"email: '{emails[key]}' not local@domain.tld"], key
