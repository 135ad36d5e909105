"""Delta SQL the embedded engine cannot run fails early and names the portable call; the rest
of Spark SQL is untouched; set_table_properties is the portable ALTER TABLE SET TBLPROPERTIES."""

from __future__ import annotations

import pytest

from lakehouse.engines.embedded.errors import UnsupportedOperation
from lakehouse.engines.embedded.sql_guard import delta_only_statement


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(tmp_path_factory.mktemp("lake")))
    mp.setenv("LAKEHOUSE_CATALOG", "sql_guard_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    session.sql("CREATE SCHEMA IF NOT EXISTS guard")
    session.range(3).write.format("delta").mode("overwrite").saveAsTable("guard.numbers")
    yield session
    mp.undo()


@pytest.mark.parametrize(
    ("statement", "portable"),
    [
        ("ALTER TABLE guard.numbers SET TBLPROPERTIES ('a' = 'b')", "set_table_properties"),
        ("alter table guard.numbers unset tblproperties ('a')", "set_table_properties"),
        ("ALTER TABLE guard.numbers ADD CONSTRAINT c CHECK (id >= 0)", "add_check_constraint"),
        ("ALTER TABLE guard.numbers DROP CONSTRAINT c", "drop_check_constraint"),
        ("ALTER TABLE guard.numbers ADD COLUMNS (note STRING)", "mergeSchema"),
        ("COMMENT ON TABLE guard.numbers IS 'x'", "comment"),
        ("DESC DETAIL guard.numbers", "detail"),
        ("RESTORE TABLE guard.numbers TO VERSION AS OF 0", "restoreToVersion"),
        ("SELECT * FROM guard.numbers VERSION AS OF 0", "versionAsOf"),
        ("SELECT * FROM guard.numbers TIMESTAMP AS OF '2026-01-01'", "timestampAsOf"),
        ("SELECT * FROM table_changes('guard.numbers', 0)", "readChangeFeed"),
        ("-- keep history\n  OPTIMIZE guard.numbers ZORDER BY (id)", "executeZOrderBy"),
        ("CREATE TABLE guard.t (id BIGINT) CLUSTER BY (id)", "clusterBy"),
        ("create or replace table guard.t using delta as select 1 as id", "createIfNotExists"),
        (
            "CREATE TABLE guard.t (ts TIMESTAMP, d DATE GENERATED ALWAYS AS (CAST(ts AS DATE)))",
            "generatedAlwaysAs",
        ),
    ],
)
def test_delta_sql_fails_early_naming_the_portable_call(spark, statement, portable):
    with pytest.raises(UnsupportedOperation, match=rf"(?s)embedded engine.*{portable}"):
        spark.sql(statement)


def test_a_lesson_needing_delta_sql_is_told_the_statement_and_the_engine_to_use(spark):
    with pytest.raises(
        UnsupportedOperation,
        match=r"(?s)^VACUUM is Delta Lake SQL.*LAKEHOUSE_ENGINE=delta-spark.*scripts/bootstrap",
    ):
        spark.sql("VACUUM guard.numbers RETAIN 168 HOURS DRY RUN")


def test_the_table_is_untouched_by_a_refused_statement(spark):
    with pytest.raises(UnsupportedOperation):
        spark.sql("ALTER TABLE guard.numbers SET TBLPROPERTIES ('delta.appendOnly' = 'true')")
    from lakehouse import DeltaTable

    properties = DeltaTable.forName(spark, "guard.numbers").detail().first()["properties"]
    assert "delta.appendOnly" not in properties


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 'MERGE INTO' AS text",
        "SELECT version, comment FROM (SELECT 1 AS version, 'x' AS comment)",
        "CREATE SCHEMA IF NOT EXISTS guard",
        "SELECT count(*) FROM guard.numbers -- OPTIMIZE later",
        "/* DESCRIBE HISTORY */ SELECT 1",
    ],
)
def test_other_sql_reaches_spark(spark, statement):
    assert delta_only_statement(statement) is None
    spark.sql(statement).collect()


def test_set_table_properties_writes_the_delta_log(spark):
    from lakehouse import DeltaTable
    from lakehouse.tables import set_table_properties

    set_table_properties(spark, "guard.numbers", {"delta.enableChangeDataFeed": True})
    properties = DeltaTable.forName(spark, "guard.numbers").detail().first()["properties"]
    assert properties["delta.enableChangeDataFeed"] == "true"
    spark.range(3, 5).write.format("delta").mode("append").saveAsTable("guard.numbers")
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 2)
        .table("guard.numbers")
    )
    assert sorted(r.id for r in changes.collect()) == [3, 4]
    with pytest.raises(ValueError, match="non-empty dict"):
        set_table_properties(spark, "guard.numbers", {})


def test_a_session_moved_to_another_lake_stops_resolving_the_old_tables(
    spark, tmp_path, monkeypatch
):
    # Runs last in this module: it moves the shared session to another lake, as the next test
    # module's fixture does. Names of the old lake must not resolve there any more.
    assert spark.catalog.tableExists("guard.numbers")
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(tmp_path / "other-lake"))
    monkeypatch.setenv("LAKEHOUSE_CATALOG", "sql_guard_other")
    from lakehouse import get_spark

    moved = get_spark("embedded", scale="tiny")
    assert not moved.catalog.tableExists("guard.numbers")


def test_other_create_table_statements_are_left_to_spark():
    assert delta_only_statement("CREATE TABLE s.t USING delta_s__t__abc123 COMMENT 'x'") is None
    assert delta_only_statement("CREATE TABLE s.t USING parquet AS SELECT 1") is None
    assert delta_only_statement("CREATE TABLE s.t (id INT) USING DELTA") is not None


def test_delta_sql_inside_foreach_batch_fails_early_too(spark, tmp_path):
    spark.range(3).write.parquet(str(tmp_path / "source"))
    errors = []

    def merge_batch(batch_df, batch_id):
        try:
            batch_df.sparkSession.sql(
                "MERGE INTO guard.numbers AS t USING guard.numbers AS s ON t.id = s.id "
                "WHEN MATCHED THEN DELETE"
            )
        except Exception as error:  # recorded, so the stream itself ends normally
            errors.append(error)

    query = (
        spark.readStream.schema("id BIGINT")
        .parquet(str(tmp_path / "source"))
        .writeStream.foreachBatch(merge_batch)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    assert len(errors) == 1 and isinstance(errors[0], UnsupportedOperation), errors
    assert str(errors[0]).startswith("MERGE INTO is Delta Lake SQL")
