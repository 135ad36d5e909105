"""lakehouse.extract against a real PostgreSQL holding the system of record, in one delta-spark
child process (the JDBC driver must be on its classpath): full and incremental loads keep
Bronze equal to the database, a rerun writes nothing, a run that dies before moving the
watermark loses nothing; the wrong answers of lesson 01_bronze/05 are each caught by its
checks with the fix in the message; a wrong password, a stopped server and a missing table
are each named with their fix."""

from __future__ import annotations

import re

import pytest
from helpers.spark_child import run_spark_child

from lakehouse.engines.delta_spark import jvm
from lakehouse.services import free_port, postgres

pytestmark = pytest.mark.skipif(
    jvm.missing("spark") != [], reason="JVM jars not cached: run scripts/bootstrap"
)

SCENARIO = """
from lakehouse import extract
from lakehouse.datagen import system_of_record as sor
from lakehouse.services import postgres
from lakehouse.tables import DeltaTable

port = {port}
url = postgres.jdbc_url(port)
src = extract.JdbcSource(url, postgres.jdbc_properties())
ORDERS, LINES = "shop.orders", "shop.order_lines"
with postgres.connect(port) as conn:
    day1 = sor.load(conn, scale="tiny", seed=42, day=1)
out = {{"full": {{}}, "caught": {{}}, "errors": {{}}}}
full = {{}}
for t in (ORDERS, LINES):
    full[t] = extract.full_load(spark, t, read=src.table_reader(spark))
    out["full"][t] = [
        full[t].rows_read,
        extract.check_bronze_matches_source(spark, t, src.read(spark, t)),
        extract.read_watermark(spark, t),
    ]
with postgres.connect(port) as conn:
    changes = sor.load(conn, scale="tiny", seed=42, day=2)
late = changes.pitfalls["at_watermark"]["keys"]


def verdict(check):
    try:
        check()
    except AssertionError as caught:
        return str(caught)
    return "passed"


def after(table, watermark):
    return src.read(spark, f"(SELECT * FROM {{table}} WHERE updated_at > '{{watermark}}') AS c")


def whole_table(table, watermark):
    return src.read(spark, table)


def deleted_among_changed(table, bronze_df):
    changed = src.changes_reader(spark)(table, full[table].watermark_after).select("order_id")
    return bronze_df.select("order_id").join(changed, "order_id", "left_anti")


wrong = {{
    "after": dict(read_changes=after, find_deleted=src.deleted_finder(spark)),
    "appended": dict(read_changes=src.changes_reader(spark), append=True),
    "no_deletes": dict(read_changes=src.changes_reader(spark)),
    "deleted_among_changed": dict(
        read_changes=src.changes_reader(spark), find_deleted=deleted_among_changed
    ),
    "whole_table": dict(read_changes=whole_table, find_deleted=src.deleted_finder(spark)),
}}
source_orders = src.read(spark, ORDERS)
for name, options in wrong.items():
    scratch = f"bronze.wrong_{{name}}"
    (spark.read.option("versionAsOf", full[ORDERS].versions[1]).table("bronze.shop_orders")
        .write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        .saveAsTable(scratch))
    report = extract.incremental_load(
        spark, ORDERS, bronze_table=scratch, watermarks=None,
        watermark=full[ORDERS].watermark_after, **options,
    )
    out["caught"][name] = [
        verdict(lambda: extract.check_bronze_matches_source(
            spark, ORDERS, source_orders, bronze_table=scratch, at_watermark=late)),
        verdict(lambda: extract.check_incremental_report(report, changes)),
    ]

# A run that fails before the write, then one that fails after it, before the watermark.
version = full[ORDERS].versions[1]
def broken(table, watermark):
    raise RuntimeError("the database went away mid-read")
try:
    extract.incremental_load(spark, ORDERS, read_changes=broken)
except RuntimeError:
    pass
out["failed_read"] = [extract.read_watermark(spark, ORDERS),
                      DeltaTable.forName(spark, "bronze.shop_orders").history(1).first().version]
save = extract._save_watermark
def crash(*args, **kwargs):
    raise RuntimeError("the job died before moving the watermark")
extract._save_watermark = crash
try:
    extract.incremental_load(spark, ORDERS, read_changes=src.changes_reader(spark),
                             find_deleted=src.deleted_finder(spark))
except RuntimeError:
    pass
extract._save_watermark = save
out["failed_watermark"] = extract.read_watermark(spark, ORDERS)
retry = extract.incremental_load(spark, ORDERS, read_changes=src.changes_reader(spark),
                                 find_deleted=src.deleted_finder(spark))
out["retry"] = [retry.rows_read, retry.written, retry.watermark_after]
out["retry_check"] = extract.check_bronze_matches_source(
    spark, ORDERS, src.read(spark, ORDERS), at_watermark=late, deleted=changes.deleted[ORDERS])

lines = extract.incremental_load(spark, LINES, read_changes=src.changes_reader(spark),
                                 find_deleted=src.deleted_finder(spark))
extract.check_incremental_report(lines, changes)
out["lines"] = extract.check_bronze_matches_source(
    spark, LINES, src.read(spark, LINES), deleted=changes.deleted[LINES])
out["rerun"] = {{}}
for t in (ORDERS, LINES):
    rerun = extract.incremental_load(spark, t, read_changes=src.changes_reader(spark),
                                     find_deleted=src.deleted_finder(spark))
    out["rerun"][t] = [rerun.rows_read, rerun.written, list(rerun.versions),
                       verdict(lambda: extract.check_rerun_wrote_nothing(rerun))]
lineage = spark.table("bronze.shop_orders").where("_deleted_at IS NOT NULL").first()
out["lineage"] = [lineage._source_table, lineage._extraction_id.split(":")[1]]

bad = {{
    "password": extract.JdbcSource(url, postgres.jdbc_properties(password="wrong")),
    "down": extract.JdbcSource(postgres.jdbc_url({down}), postgres.jdbc_properties()),
    "table": src,
}}
for name, source in bad.items():
    table = "shop.ordrs" if name == "table" else ORDERS
    try:
        extract.full_load(spark, extract.SourceTable(table, ("order_id",)),
                          read=source.table_reader(spark), bronze_table="bronze.bad_input")
        out["errors"][name] = "no error"
    except postgres.PostgresError as exc:
        out["errors"][name] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    if reason := postgres.unavailable():
        pytest.skip(reason)
    server = postgres.Server(home=tmp_path_factory.mktemp("postgres"), port=free_port())
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def run(pg, tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    code = SCENARIO.format(port=pg.port, down=free_port())
    return run_spark_child(code, {"LAKEHOUSE_LAKE": str(lake), "LAKEHOUSE_PG_PORT": str(pg.port)})


def test_a_full_load_mirrors_each_table_and_records_its_watermark(run):
    from lakehouse.datagen import system_of_record as sor

    day1 = sor.SystemOfRecord(scale="tiny", seed=42).changes(1)
    for table in ("shop.orders", "shop.order_lines"):
        read, checked, watermark = run["full"][table]
        assert read == checked == day1.rows[table]
        assert watermark.replace("000Z", "Z") == day1.watermarks[table]


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("after", r"Rows changed exactly at the watermark were skipped.*>= the watermark"),
        ("appended", r"more than once.*MERGE them by primary key"),
        ("no_deletes", r"rows the source deleted.*Compare Bronze's keys"),
        ("deleted_among_changed", r"deleted that the source still has.*all of the source's keys"),
    ],
)
def test_each_wrong_incremental_load_fails_the_check_with_its_fix(run, mistake, message):
    verdict = run["caught"][mistake][0]
    assert re.search(message, verdict), verdict


def test_reading_the_whole_table_each_time_is_caught_by_the_report_check(run):
    bronze_verdict, report_verdict = run["caught"]["whole_table"]
    assert bronze_verdict == "passed", "the rows are right, only too many were read"
    assert "filter in the query" in report_verdict


def test_a_failed_run_moves_nothing_and_the_retry_loses_nothing(run):
    watermark = run["full"]["shop.orders"][2]
    assert run["failed_read"] == [watermark, 0], "a read that fails writes nothing"
    assert run["failed_watermark"] == watermark, "the watermark waits for a successful run"
    read, written, moved_to = run["retry"]
    assert written == 0, "the MERGE had landed: the retry finds every row in Bronze already"
    assert read > 0 and moved_to > watermark
    assert run["retry_check"] == 1007


def test_a_rerun_writes_nothing_and_lineage_names_the_run(run):
    assert run["lines"] == 2496
    for table, (read, written, versions, verdict) in run["rerun"].items():
        assert read >= 1 and written == 0, table
        assert versions[0] == versions[1], table
        assert verdict == "passed"
    assert run["lineage"] == ["shop.orders", "incremental"]


def test_bad_input_names_the_fix(run):
    errors = run["errors"]
    assert "refused the password" in errors["password"]
    assert "LAKEHOUSE_PG_PASSWORD" in errors["password"]
    assert "No PostgreSQL server answers" in errors["down"]
    assert "make pg-start" in errors["down"]
    assert "'shop.ordrs' does not exist" in errors["table"]
