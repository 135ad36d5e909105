"""Silver validation: snake_case names, typing with try_cast, each contract rule on explicit edge
rows, the quarantine table and the reconciliation that proves rows in = rows kept + quarantined."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

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


def test_required_values_blank_strings_count_as_missing(spark):
    df = bronze_rows(
        spark,
        "ecommerce.order_lines",
        {"order_id": "ok"},
        {"order_id": "null", "product_id": None},
        {"order_id": "empty", "product_id": ""},
        {"order_id": "spaces", "product_id": "   "},
    )
    result = errors_by_key(df, "ecommerce.order_lines")
    assert result["ok"] == (True, [])
    for key in ["null", "empty", "spaces"]:
        assert result[key] == (False, ["product_id: required but missing"]), key


def test_cast_failure_is_recorded_not_raised(spark):
    df = bronze_rows(
        spark,
        "ecommerce.order_lines",
        {"order_id": "comma", "unit_price": "7,99"},
        {"order_id": "na", "unit_price": "N/A"},
        {"order_id": "letter_o", "unit_price": "93.9O"},
        {"order_id": "bad_int", "quantity": "two"},
    )
    typed = df.transform(validation.validate("ecommerce.order_lines"))
    assert dict(typed.dtypes)["unit_price"] == "decimal(10,2)"
    assert dict(typed.dtypes)["quantity"] == "int"
    result = {r["order_id"]: r for r in typed.collect()}
    assert result["comma"]["unit_price"] is None
    assert list(result["comma"]["_validation_errors"]) == [
        "unit_price: '7,99' is not a decimal(10,2)"
    ]
    assert list(result["na"]["_validation_errors"]) == ["unit_price: 'N/A' is not a decimal(10,2)"]
    assert not result["letter_o"]["_is_valid"]
    assert list(result["bad_int"]["_validation_errors"]) == ["quantity: 'two' is not a int"]


def test_plain_cast_raises_under_ansi_which_is_why_validation_uses_try_cast(spark):
    df = spark.createDataFrame([("7,99",)], "unit_price string")
    with pytest.raises(Exception, match="CAST_INVALID_INPUT"):
        df.select(F.col("unit_price").cast("decimal(10,2)")).collect()
    assert df.select(F.col("unit_price").try_cast("decimal(10,2)")).first()[0] is None


def test_negative_amounts_and_negative_zero(spark):
    df = bronze_rows(
        spark,
        "ecommerce.order_lines",
        {"order_id": "neg", "unit_price": "-4.99"},
        {"order_id": "neg_zero", "unit_price": "-0.00"},
        {"order_id": "zero", "unit_price": "0"},
        {"order_id": "cent", "unit_price": "-0.01"},
    )
    result = errors_by_key(df, "ecommerce.order_lines")
    assert result["neg"] == (False, ["unit_price: negative amount -4.99"])
    assert result["neg_zero"] == (True, [])
    assert result["zero"] == (True, [])
    assert result["cent"] == (False, ["unit_price: negative amount -0.01"])


def test_dates_exactly_at_the_window_end_are_valid(spark):
    df = bronze_rows(
        spark,
        "crm.customers",
        {"customer_id": "last_day", "signup_date": "2026-06-30"},
        {"customer_id": "day_after", "signup_date": "2026-07-01"},
        {"customer_id": "dob_future", "date_of_birth": "2030-01-01"},
        {"customer_id": "dob_null", "date_of_birth": None},
    )
    result = errors_by_key(df, "crm.customers")
    assert result["last_day"] == (True, [])
    assert result["dob_null"] == (True, [])
    assert result["day_after"] == (
        False,
        ["signup_date: 2026-07-01 is after the data window end 2026-06-30"],
    )
    assert not result["dob_future"][0]


def test_timestamps_at_the_window_end_use_utc_instants(spark):
    df = bronze_rows(
        spark,
        "ecommerce.orders",
        {"order_id": "last_ms", "order_ts": "2026-06-30T23:59:59.999Z"},
        {"order_id": "midnight", "order_ts": "2026-07-01T00:00:00.000Z"},
        # the same instant written with an offset: still the last millisecond of June 30 UTC
        {"order_id": "offset", "order_ts": "2026-07-01T01:59:59.999+02:00"},
    )
    result = errors_by_key(df, "ecommerce.orders")
    assert result["last_ms"] == (True, [])
    assert result["offset"] == (True, [])
    assert not result["midnight"][0]


def test_several_reasons_are_all_listed_in_column_order(spark):
    df = bronze_rows(
        spark,
        "crm.customers",
        {"customer_id": "many", "email": "a b@c.com", "segment": None, "signup_date": "2027-01-01"},
    )
    valid, errors = errors_by_key(df, "crm.customers")["many"]
    assert not valid
    assert errors == [
        "email: 'a b@c.com' not local@domain.tld",
        "segment: required but missing",
        "signup_date: 2027-01-01 is after the data window end 2026-06-30",
    ]


def test_a_line_that_did_not_parse_has_one_reason_and_its_key_from_the_text(spark):
    schema = bronze.source("support.tickets_cdc").raw_schema
    line = '{"ticket_id":"TK0000045","_op":"UPDATE","_seq":2,"_commit_'
    row = tuple(line if f.name == "_corrupt_record" else None for f in schema.fields)
    df = spark.createDataFrame([row], schema)
    typed = df.transform(validation.validate("support.tickets_cdc")).first()
    assert list(typed["_validation_errors"]) == [
        "record: the JSON line did not parse (kept in raw_record)"
    ]
    quarantined = df.transform(validation.quarantine_records("support.tickets_cdc")).first()
    assert quarantined["business_key"] == "TK0000045:2"
    assert quarantined["raw_record"] == line
    assert quarantined["source_table"] == "bronze.support_tickets_cdc"


def test_csv_key_of_a_line_that_did_not_parse(spark):
    schema = bronze.source("ecommerce.order_lines").raw_schema
    line = "O00000098,2,P00036,1"
    row = tuple(line if f.name == "_corrupt_record" else None for f in schema.fields)
    quarantined = (
        spark.createDataFrame([row], schema)
        .transform(validation.quarantine_records("ecommerce.order_lines"))
        .first()
    )
    assert quarantined["business_key"] == "O00000098:2"


def test_validate_names_the_missing_columns(spark):
    df = spark.createDataFrame([("C1",)], "customer_id string")
    with pytest.raises(ValueError, match=r"lacks columns \['first_name'.*bronze.crm_customers"):
        df.transform(validation.validate("crm.customers"))
    with pytest.raises(KeyError, match="unknown dataset 'crm.customer'"):
        validation.validate("crm.customer")


# ------------------------------------------------------------------------------------------------
# Quarantine and reconciliation on generated data
# ------------------------------------------------------------------------------------------------
DATASETS_UNDER_TEST = ["crm.customers", "ecommerce.order_lines"]


@pytest.fixture(scope="module")
def landed(spark, tmp_path_factory):
    from lakehouse.datagen import generate

    raw_root = tmp_path_factory.mktemp("raw")
    manifest = generate(raw_root, scale="tiny", seed=42)
    bronze.ensure_bronze(spark, DATASETS_UNDER_TEST, raw_root)
    counts = validation.write_quarantine(spark, DATASETS_UNDER_TEST)
    return manifest, counts


def test_quarantine_reconciles_with_the_manifest(spark, landed):
    manifest, counts = landed
    for dataset in DATASETS_UNDER_TEST:
        check = validation.reconcile(spark, dataset, manifest).assert_ok()
        assert check.quarantined_rows == counts[bronze.bronze_table(dataset)] > 0
        assert check.bronze_rows == manifest.rows(dataset)


def test_quarantine_is_idempotent_and_per_source(spark, landed):
    manifest, counts = landed
    before = spark.table("silver.quarantine").groupBy("source_table").count().collect()
    again = validation.write_quarantine(spark, ["crm.customers"])
    after = spark.table("silver.quarantine").groupBy("source_table").count().collect()
    assert again == {"bronze.crm_customers": counts["bronze.crm_customers"]}
    assert sorted(before) == sorted(after)
    validation.reconcile(spark, "ecommerce.order_lines", manifest).assert_ok()


def _write(spark, df, table):
    df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").saveAsTable(table)


def test_reconcile_fails_when_a_rule_forgets_nulls(spark, landed):
    manifest, _ = landed
    forgot_nulls = F.exists("validation_errors", lambda e: e.endswith("required but missing"))
    wrong = (
        spark.table("bronze.ecommerce_order_lines")
        .transform(validation.quarantine_records("ecommerce.order_lines"))
        .where(~forgot_nulls)
    )
    _write(spark, wrong, "silver.quarantine_wrong_nulls")
    kept = validation.validated(spark, "ecommerce.order_lines").where(
        "_is_valid OR exists(_validation_errors, e -> e LIKE '%required but missing')"
    )
    check = validation.reconcile(
        spark,
        "ecommerce.order_lines",
        manifest,
        quarantine_table="silver.quarantine_wrong_nulls",
        valid=kept,
    )
    assert check.bronze_rows == check.valid_rows + check.quarantined_rows  # counts alone agree
    with pytest.raises(AssertionError, match=r"ecommerce.order_lines: 8 defective keys are not q"):
        check.assert_ok()


def test_reconcile_fails_when_invalid_rows_are_dropped_not_quarantined(spark, landed):
    manifest, _ = landed
    empty = spark.createDataFrame([], validation.QUARANTINE_SCHEMA)
    _write(spark, empty, "silver.quarantine_empty")
    check = validation.reconcile(
        spark, "crm.customers", manifest, quarantine_table="silver.quarantine_empty"
    )
    with pytest.raises(AssertionError, match=r"crm.customers: Bronze has 238 rows but valid \+ q"):
        check.assert_ok()


def test_reconcile_fails_when_a_rerun_appends_twice(spark, landed):
    manifest, _ = landed
    once = spark.table("silver.quarantine").where("source_table = 'bronze.crm_customers'")
    _write(spark, once.unionByName(once), "silver.quarantine_twice")
    check = validation.reconcile(
        spark, "crm.customers", manifest, quarantine_table="silver.quarantine_twice"
    )
    with pytest.raises(AssertionError, match="crm.customers: Bronze has 238 rows"):
        check.assert_ok()


def test_reconcile_fails_when_a_rule_is_too_strict(spark, landed):
    manifest, _ = landed
    strict = (
        validation.validated(spark, "crm.customers")
        .where("_is_valid AND customer_id = 'C000001'")
        .select(
            F.lit("bronze.crm_customers").alias("source_table"),
            F.col("customer_id").alias("business_key"),
        )
    )
    quarantine = spark.table("silver.quarantine").where("source_table = 'bronze.crm_customers'")
    _write(
        spark,
        quarantine.select("source_table", "business_key").unionByName(strict),
        "silver.quarantine_strict",
    )
    kept = validation.validated(spark, "crm.customers").where(
        "_is_valid AND customer_id != 'C000001'"
    )
    check = validation.reconcile(
        spark, "crm.customers", manifest, quarantine_table="silver.quarantine_strict", valid=kept
    )
    with pytest.raises(AssertionError, match=r"1 quarantined keys have no defect, e.g. \[.C000001"):
        check.assert_ok()


def test_defect_class_of_each_reason(spark):
    reasons = {
        "record: the JSON line did not parse (kept in raw_record)": "malformed_rows",
        "unit_price: 'N/A' is not a decimal(10,2)": "malformed_rows",
        "product_id: required but missing": "null_required",
        "amount: negative amount -4.99": "negative_amounts",
        "email: 'a@b' not local@domain.tld": "invalid_emails",
        "order_ts: 2027-01-01 00:00:00 is after the data window end 2026-06-30": "future_dates",
        "something else": "other",
    }
    df = spark.createDataFrame([(r,) for r in reasons], "reason string")
    result = {
        r["reason"]: r["c"]
        for r in df.select("reason", validation.defect_class("reason").alias("c")).collect()
    }
    assert result == reasons
