"""The embedded engine's DeltaTable: every call of the course contract, with small explicit data
(nulls included), against results computed independently of the code under test."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.errors import DeltaError, TableNotFound, UnsupportedOperation


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "delta_table_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    session.conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    mp.undo()


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "table")


@pytest.fixture
def DeltaTable():  # noqa: N802 (the name notebooks use)
    from lakehouse import DeltaTable

    return DeltaTable


PEOPLE = "id long, name string, amount double, status string"
PEOPLE_ROWS = [
    (1, "ann", 10.0, "active"),
    (2, "bob", None, "active"),
    (3, None, 30.0, "closed"),
    (4, "dan", 40.0, None),
    (5, "eve", 50.0, "active"),
]


def people(spark, path, rows=PEOPLE_ROWS, **write_options):
    writer = spark.createDataFrame(rows, PEOPLE).write.format("delta")
    for key, value in write_options.items():
        writer = writer.option(key, value)
    writer.save(path)


def same(actual, expected):
    """Compare both ways, as delta-spark's own tests do."""
    assertDataFrameEqual(actual, expected)
    assertDataFrameEqual(expected, actual)


def version(path):
    return delta_log.latest_version(path)


# ------------------------------------------------------------------------------------------------
# Finding tables
# ------------------------------------------------------------------------------------------------
def test_for_path_for_name_and_is_delta_table(spark, path, tmp_path, DeltaTable):
    people(spark, path)
    spark.createDataFrame(PEOPLE_ROWS, PEOPLE).write.mode("overwrite").saveAsTable("crm.people")

    by_path = DeltaTable.forPath(spark, path)
    by_name = DeltaTable.forName(spark, "crm.people")
    expected = spark.createDataFrame(PEOPLE_ROWS, PEOPLE)
    same(by_path.toDF(), expected)
    same(by_name.toDF(), expected)
    same(DeltaTable.forName(spark, f"delta.`{path}`").toDF(), expected)
    assert by_path.alias("t").toDF().select("t.id").count() == len(PEOPLE_ROWS)

    assert DeltaTable.isDeltaTable(spark, path)
    assert not DeltaTable.isDeltaTable(spark, str(tmp_path / "nothing"))
    with pytest.raises(TableNotFound, match="does not exist"):
        DeltaTable.forPath(spark, str(tmp_path / "nothing"))
    with pytest.raises(TableNotFound, match="crm.nobody does not exist"):
        DeltaTable.forName(spark, "crm.nobody")


# ------------------------------------------------------------------------------------------------
# Merge
# ------------------------------------------------------------------------------------------------
SOURCE = "id long, name string, amount double, status string"  # status: what to do
SOURCE_ROWS = [
    (1, "ANN", 11.0, "upsert"),  # matched, updated from the source
    (2, "BOB", None, "delete"),  # matched, deleted
    (3, "cy", 33.0, "bump"),  # matched, amount bumped
    (6, "fay", 60.0, "upsert"),  # not matched, inserted with values
    (7, None, None, "upsert"),  # not matched, inserted by insertAll (the condition skips it)
    (8, "gus", -1.0, "skip"),  # not matched, no insert condition holds
]


def expected_merge(target_rows, source_rows):
    """The merge of test_merge_runs_every_clause_kind, computed in plain Python."""
    source = {s[0]: s for s in source_rows}
    result = []
    for tid, name, amount, status in target_rows:
        s = source.get(tid)
        if s is None:  # not matched by source
            if status == "closed":
                result.append((tid, name, amount, "gone"))
            elif status is None:
                continue  # deleted
            else:
                result.append((tid, name, amount, status))
        elif s[3] == "delete":
            continue
        elif s[3] == "bump":
            result.append((tid, name, (amount or 0) + 100, status))
        else:
            result.append((tid, s[1], s[2], status))
    target_ids = {t[0] for t in target_rows}
    for sid, name, amount, op in source_rows:
        if sid in target_ids:
            continue
        if op == "upsert" and name is not None:
            result.append((sid, name, amount, "new"))
        elif op != "skip":
            result.append((sid, name, amount, op))
    return result


def test_merge_runs_every_clause_kind(spark, path, DeltaTable):
    # Target ids 1..5; id 3 has status closed and a null name, id 4 a null status.
    people(spark, path, rows=[(1, "ann", 10.0, "active"), (2, "bob", None, "active"),
                              (3, None, 30.0, "active"), (4, "dan", 40.0, None),
                              (5, "eve", 50.0, "closed")])  # fmt: skip
    target_rows = [r[:] for r in spark.read.format("delta").load(path).collect()]
    source = spark.createDataFrame(SOURCE_ROWS, SOURCE)

    metrics = (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(source.alias("s"), "t.id = s.id")
        .whenMatchedDelete(condition="s.status = 'delete'")
        .whenMatchedUpdate(
            condition=F.col("s.status") == "bump", set={"amount": "coalesce(t.amount, 0) + 100"}
        )
        .whenMatchedUpdate(set={"name": "s.name", "amount": F.col("s.amount")})
        .whenNotMatchedInsert(
            condition="s.status = 'upsert' AND s.name IS NOT NULL",
            values={"id": "s.id", "name": "s.name", "amount": "s.amount", "status": "'new'"},
        )
        .whenNotMatchedInsertAll(condition="s.status <> 'skip'")
        .whenNotMatchedBySourceUpdate(condition="t.status = 'closed'", set={"status": "'gone'"})
        .whenNotMatchedBySourceDelete(condition=F.col("t.status").isNull())
        .execute()
    )

    expected = expected_merge(target_rows, SOURCE_ROWS)
    same(spark.read.format("delta").load(path), spark.createDataFrame(expected, PEOPLE))
    # 2 updated by matched clauses + 1 by source; 1 matched delete + 1 by source; 2 inserts
    same(metrics, spark.createDataFrame([(7, 3, 2, 2)], metrics.schema))
    last = DeltaTable.forPath(spark, path).history(1).first()
    assert last.operation == "MERGE"
    assert last.operationMetrics["numTargetRowsInserted"] == "2"
    assert last.operationMetrics["numTargetRowsNotMatchedBySourceDeleted"] == "1"


def test_merge_keeps_spark_sql_semantics_in_assignments(spark, path, DeltaTable):
    """Functions, casts and nulls behave as in Spark: the rows come from Spark itself."""
    spark.createDataFrame(
        [(1, " Ab ", 7, 2, date(2024, 1, 1)), (2, None, 5, 0, None)],
        "id long, s string, a int, b int, d date",
    ).write.format("delta").save(path)
    source = spark.createDataFrame([(1,), (2,)], "id long")
    assignments = {
        "concat_null": "concat(t.s, 'z')",  # NULL when an argument is NULL
        "ratio": "t.a / nullif(t.b, 0)",  # / is fractional division
        "sub": "substring(t.s, 0, 2)",  # position 0 reads as 1
        "hash": "sha2(coalesce(t.s, ''), 256)",
        "next_day": "date_add(t.d, 1)",
        "null_safe": "t.s <=> NULL",
        "kind": "CASE WHEN t.a > 5 THEN 'big' ELSE 'small' END",
        "trimmed": "upper(trim(t.s))",
        "joined": "concat_ws('|', t.s, 'x')",
        "as_text": "CAST(t.a AS STRING)",
        "newer": F.col("t.d") > F.lit("2023-12-31").cast("date"),
    }
    # Expected: Spark evaluating the same expressions on a plain DataFrame.
    base = spark.read.format("delta").load(path)
    evaluated = base.alias("t").select(
        "t.*", *[(F.expr(v) if isinstance(v, str) else v).alias(k) for k, v in assignments.items()]
    )
    expected = evaluated.collect()
    # The target starts with every assigned column NULL, typed as Spark types the expression.
    evaluated.select(
        *base.columns,
        *[F.lit(None).cast(evaluated.schema[k].dataType).alias(k) for k in assignments],
    ).write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)

    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(source.alias("src"), "t.id = src.id")
        .whenMatchedUpdate(set=assignments)
        .execute()
    )
    same(spark.read.format("delta").load(path), spark.createDataFrame(expected, evaluated.schema))


def test_merge_with_several_source_rows_for_one_target_row_fails(spark, path, DeltaTable):
    people(spark, path)
    before = version(path)
    source = spark.createDataFrame([(1, "x", 1.0, "a"), (1, "y", 2.0, "b")], SOURCE)
    table = DeltaTable.forPath(spark, path).alias("t")
    with pytest.raises(DeltaError, match="DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_MERGE"):
        table.merge(source.alias("s"), "t.id = s.id").whenMatchedUpdateAll().execute()
    assert version(path) == before
    # One unconditional delete is unambiguous, as in Delta.
    table.merge(source.alias("s"), "t.id = s.id").whenMatchedDelete().execute()
    assert sorted(r.id for r in table.toDF().collect()) == [2, 3, 4, 5]


def test_insert_only_merge_adds_files_without_rewriting(spark, path, DeltaTable):
    people(spark, path)
    source = spark.createDataFrame([(1, "dup", 0.0, "x"), (9, "ivy", 90.0, "x")], SOURCE)
    result = (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(source.alias("s"), "t.id = s.id")
        .whenNotMatchedInsert(values={"id": "s.id", "name": "s.name", "amount": "s.amount"})
        .execute()
    )
    assert result.first().asDict() == {
        "num_affected_rows": 1,
        "num_updated_rows": 0,
        "num_deleted_rows": 0,
        "num_inserted_rows": 1,
    }
    expected = PEOPLE_ROWS + [(9, "ivy", 90.0, None)]
    same(spark.read.format("delta").load(path), spark.createDataFrame(expected, PEOPLE))
    metrics = DeltaTable.forPath(spark, path).history(1).first().operationMetrics
    assert metrics["numTargetFilesRemoved"] == "0"


TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"


def idempotent(spark, app_id, txn_version, action):
    """Run ``action`` the way a foreachBatch function does: with Delta's idempotent-DML confs
    set for the call only."""
    spark.conf.set(TXN_APP_ID, app_id)
    spark.conf.set(TXN_VERSION, str(txn_version))
    try:
        return action()
    finally:
        spark.conf.unset(TXN_APP_ID)
        spark.conf.unset(TXN_VERSION)


def test_dml_with_an_already_committed_transaction_version_changes_nothing(spark, path, DeltaTable):
    people(spark, path)
    source = spark.createDataFrame([(1, "ann", 5.0, "x"), (9, "ivy", 90.0, "x")], SOURCE)

    def add_amounts():
        return (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(source.alias("s"), "t.id = s.id")
            .whenMatchedUpdate(set={"amount": "t.amount + s.amount"})
            .whenNotMatchedInsertAll()
            .execute()
        )

    idempotent(spark, "job-1", 0, add_amounts)
    once = sorted(spark.read.format("delta").load(path).collect())
    after_first = version(path)
    replay = idempotent(spark, "job-1", 0, add_amounts)  # the same batch again: skipped
    assert replay.first().num_affected_rows == 0
    assert version(path) == after_first
    assert sorted(spark.read.format("delta").load(path).collect()) == once
    idempotent(spark, "job-2", 0, add_amounts)  # another writer's batch 0 is new
    idempotent(spark, "job-1", 1, lambda: DeltaTable.forPath(spark, path).delete("id = 9"))
    idempotent(spark, "job-1", 1, lambda: DeltaTable.forPath(spark, path).delete("id = 1"))
    rows = {r.id: r.amount for r in spark.read.format("delta").load(path).collect()}
    assert rows[1] == 20.0  # 10 + 5 (job-1 batch 0) + 5 (job-2 batch 0); the replay added none
    assert 9 not in rows  # job-1 batch 1 ran; its replay (delete id 1) was skipped
    txns = delta_log.open_table(path).transaction_version("job-1")
    assert txns == 1


def test_idempotent_dml_needs_both_confs(spark, path, DeltaTable):
    people(spark, path)
    spark.conf.set(TXN_APP_ID, "job-1")
    try:
        with pytest.raises(DeltaError, match="txnVersion must be specified"):
            DeltaTable.forPath(spark, path).delete("id = 1")
    finally:
        spark.conf.unset(TXN_APP_ID)
    assert spark.read.format("delta").load(path).count() == len(PEOPLE_ROWS)


def test_scd2_merge_closes_the_current_row_and_inserts_the_new_one(spark, DeltaTable):
    dims = "customer_id long, city string, is_current boolean, valid_from date, valid_to date"
    spark.createDataFrame(
        [
            (1, "Oslo", True, date(2024, 1, 1), None),
            (2, "Rome", True, date(2024, 1, 1), None),
            (3, "Lima", False, date(2023, 1, 1), date(2024, 1, 1)),
            (3, "Kyiv", True, date(2024, 1, 1), None),
        ],
        dims,
    ).write.mode("overwrite").saveAsTable("gold.dim_customer")
    updates = spark.createDataFrame(
        [(1, "Bergen"), (2, "Rome"), (4, "Pune")], "customer_id long, city string"
    )
    table = DeltaTable.forName(spark, "gold.dim_customer")
    current = table.toDF().filter("is_current")
    changed = (
        updates.alias("u")
        .join(current.alias("c"), "customer_id")
        .where("u.city <> c.city")
        .select("u.*")
    )
    staged = changed.select(F.lit(None).cast("long").alias("merge_key"), "*").unionByName(
        updates.select(F.col("customer_id").alias("merge_key"), "*")
    )
    (
        table.alias("t")
        .merge(staged.alias("s"), "t.customer_id = s.merge_key AND t.is_current")
        .whenMatchedUpdate(
            condition="t.city <> s.city",
            set={"is_current": "false", "valid_to": "DATE'2024-06-30'"},
        )
        .whenNotMatchedInsert(
            values={
                "customer_id": "s.customer_id",
                "city": "s.city",
                "is_current": "true",
                "valid_from": "DATE'2024-06-30'",
                "valid_to": "NULL",
            }
        )
        .execute()
    )
    expected = [
        (1, "Oslo", False, date(2024, 1, 1), date(2024, 6, 30)),
        (1, "Bergen", True, date(2024, 6, 30), None),
        (2, "Rome", True, date(2024, 1, 1), None),
        (3, "Lima", False, date(2023, 1, 1), date(2024, 1, 1)),
        (3, "Kyiv", True, date(2024, 1, 1), None),
        (4, "Pune", True, date(2024, 6, 30), None),
    ]
    same(spark.table("gold.dim_customer"), spark.createDataFrame(expected, dims))


def test_merge_schema_evolution_adds_source_columns(spark, DeltaTable):
    spark.createDataFrame([(1, "a"), (2, "b")], "id long, v string").write.mode(
        "overwrite"
    ).saveAsTable("crm.evolving")
    source = spark.createDataFrame([(2, "B", 20), (3, "C", 30)], "id long, v string, score int")
    table = DeltaTable.forName(spark, "crm.evolving").alias("t")
    narrow = spark.createDataFrame([(2,)], "id long")
    with pytest.raises(DeltaError, match="Cannot resolve v in UPDATE clause"):
        table.merge(narrow.alias("s"), "t.id = s.id").whenMatchedUpdateAll().execute()
    (
        table.merge(source.alias("s"), "t.id = s.id")
        .withSchemaEvolution()
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )
    expected = spark.createDataFrame(
        [(1, "a", None), (2, "B", 20), (3, "C", 30)], "id long, v string, score int"
    )
    same(spark.table("crm.evolving"), expected)


def test_merge_update_and_delete_write_the_change_data_feed(spark, path, DeltaTable):
    (
        DeltaTable.create(spark)
        .location(path)
        .addColumn("id", "BIGINT")
        .addColumn("v", "STRING")
        .property("delta.enableChangeDataFeed", "true")
        .execute()
    )
    spark.createDataFrame([(1, "a"), (2, "b"), (3, None)], "id long, v string").write.format(
        "delta"
    ).mode("append").save(path)
    table = DeltaTable.forPath(spark, path)
    source = spark.createDataFrame([(1, "A"), (4, "d")], "id long, v string")
    (
        table.alias("t")
        .merge(source.alias("s"), "t.id = s.id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .whenNotMatchedBySourceDelete("t.v IS NULL")
        .execute()
    )
    table.update("id = 2", {"v": "'bb'"})
    table.delete("id = 4")

    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 2)
        .load(path)
        .select("id", "v", "_change_type", "_commit_version")
    )
    expected = [
        (1, "a", "update_preimage", 2),
        (1, "A", "update_postimage", 2),
        (4, "d", "insert", 2),
        (3, None, "delete", 2),
        (2, "b", "update_preimage", 3),
        (2, "bb", "update_postimage", 3),
        (4, "d", "delete", 4),
    ]
    same(
        changes,
        spark.createDataFrame(
            expected, "id long, v string, _change_type string, _commit_version long"
        ),
    )


# ------------------------------------------------------------------------------------------------
# Update and delete
# ------------------------------------------------------------------------------------------------
def test_update_with_string_and_column_conditions(spark, path, DeltaTable):
    people(spark, path)
    table = DeltaTable.forPath(spark, path)
    table.update("status = 'active' AND amount > 20", {"amount": "amount * 2"})
    table.update(F.col("name").isNull(), {"name": F.lit("unknown"), "status": F.upper("status")})
    table.update(set={"amount": F.coalesce("amount", F.lit(0.0))})  # every row
    expected = [
        (1, "ann", 10.0, "active"),
        (2, "bob", 0.0, "active"),  # null amount: not > 20 (the condition is NULL)
        (3, "unknown", 30.0, "CLOSED"),
        (4, "dan", 40.0, None),  # null status: not 'active'
        (5, "eve", 100.0, "active"),
    ]
    same(table.toDF(), spark.createDataFrame(expected, PEOPLE))
    before = version(path)
    table.update("id = 99", {"amount": "0"})  # nothing matches: no new version
    assert version(path) == before
    assert [r.operation for r in table.history(3).collect()] == ["UPDATE"] * 3


def test_delete_with_string_column_and_no_condition(spark, path, DeltaTable):
    people(spark, path)
    table = DeltaTable.forPath(spark, path)
    table.delete("amount < 20 OR amount IS NULL")
    table.delete(F.col("status") == "closed")
    same(table.toDF(), spark.createDataFrame([PEOPLE_ROWS[3], PEOPLE_ROWS[4]], PEOPLE))
    table.delete()
    assert table.toDF().count() == 0
    history = table.history(3).collect()
    assert [r.operation for r in history] == ["DELETE"] * 3
    assert history[0].operationMetrics["numDeletedRows"] == "2"


def test_append_only_table_refuses_deletes(spark, path, DeltaTable):
    (
        DeltaTable.create(spark)
        .location(path)
        .addColumns(spark.createDataFrame([], PEOPLE).schema)
        .property("delta.appendOnly", "true")
        .execute()
    )
    spark.createDataFrame(PEOPLE_ROWS, PEOPLE).write.format("delta").mode("append").save(path)
    with pytest.raises(DeltaError, match="only allow appends"):
        DeltaTable.forPath(spark, path).delete("id = 1")


# ------------------------------------------------------------------------------------------------
# History, detail, maintenance
# ------------------------------------------------------------------------------------------------
HISTORY_COLUMNS = [
    "version", "timestamp", "userId", "userName", "operation", "operationParameters", "job",
    "notebook", "clusterId", "readVersion", "isolationLevel", "isBlindAppend",
    "operationMetrics", "userMetadata", "engineInfo",
]  # fmt: skip


def test_history_lists_commits_newest_first(spark, path, DeltaTable):
    people(spark, path)
    spark.createDataFrame([PEOPLE_ROWS[0]], PEOPLE).write.format("delta").mode("append").option(
        "userMetadata", "second load"
    ).save(path)
    table = DeltaTable.forPath(spark, path)
    table.delete("id = 1")
    history = table.history()
    assert history.columns == HISTORY_COLUMNS
    rows = history.collect()
    assert [(r.version, r.operation) for r in rows] == [(2, "DELETE"), (1, "WRITE"), (0, "WRITE")]
    assert rows[1].userMetadata == "second load"
    assert rows[0].timestamp >= rows[2].timestamp
    assert rows[0].operationParameters["predicate"] == '["id = 1"]'
    assert [r.version for r in table.history(1).collect()] == [2]


def test_detail_describes_the_table(spark, DeltaTable):
    (
        DeltaTable.createOrReplace(spark)
        .tableName("crm.detailed")
        .addColumn("id", "BIGINT", nullable=False)
        .addColumn("country", "STRING")
        .partitionedBy("country")
        .comment("customers by country")
        .property("delta.enableChangeDataFeed", "true")
        .execute()
    )
    spark.createDataFrame([(1, "NO"), (2, "IT")], "id long, country string").write.mode(
        "append"
    ).saveAsTable("crm.detailed")
    detail = DeltaTable.forName(spark, "crm.detailed").detail().first()
    assert detail.format == "delta"
    assert detail.name == "delta_table_tests.crm.detailed"
    assert detail.description == "customers by country"
    assert detail.location.endswith("/crm/detailed")
    assert detail.partitionColumns == ["country"]
    assert detail.numFiles == 2
    assert detail.sizeInBytes > 0
    assert detail.properties == {"delta.enableChangeDataFeed": "true"}
    assert (detail.minReaderVersion, detail.minWriterVersion) == (1, 4)
    assert "changeDataFeed" in detail.tableFeatures


def test_optimize_compacts_small_files_and_z_orders(spark, path, DeltaTable):
    for i in range(4):
        spark.createDataFrame(
            [(i, f"p{i % 2}", float(i))], "id long, part string, x double"
        ).write.format("delta").mode("append").partitionBy("part").save(path)
    table = DeltaTable.forPath(spark, path)
    before = spark.read.format("delta").load(path).collect()

    metrics = table.optimize().where("part = 'p0'").executeCompaction().first().metrics
    assert (metrics.numFilesRemoved, metrics.numFilesAdded) == (2, 1)
    assert len(delta_log.snapshot(path).files) == 3
    metrics = table.optimize().executeZOrderBy("id", "x").first().metrics
    assert metrics.numFilesRemoved >= 2
    assert len(delta_log.snapshot(path).files) == 2
    same(
        spark.read.format("delta").load(path),
        spark.createDataFrame(before, "id long, part string, x double"),
    )
    assert table.history(1).first().operation == "OPTIMIZE"
    with pytest.raises(DeltaError, match="only partition columns"):
        table.optimize().where("id > 1")


def test_vacuum_checks_retention_then_deletes_unreferenced_files(spark, path, DeltaTable):
    people(spark, path)
    first_files = {f.path for f in delta_log.snapshot(path).files}
    spark.createDataFrame([PEOPLE_ROWS[0]], PEOPLE).write.format("delta").mode("overwrite").save(
        path
    )
    table = DeltaTable.forPath(spark, path)
    with pytest.raises(DeltaError, match="retentionDurationCheck.enabled"):
        table.vacuum(0)
    assert all(Path(path, p).exists() for p in first_files)
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        assert table.vacuum(0).count() == 0
    finally:
        spark.conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    assert not any(Path(path, p).exists() for p in first_files)
    same(table.toDF(), spark.createDataFrame([PEOPLE_ROWS[0]], PEOPLE))
    table.vacuum()  # the default 7 days: nothing else to delete


def test_restore_to_version_and_timestamp(spark, path, DeltaTable):
    people(spark, path)
    table = DeltaTable.forPath(spark, path)
    time.sleep(0.01)
    table.delete("id > 2")
    after_delete = table.history(1).first().timestamp
    table.update(set={"name": "'x'"})

    current = {f.path for f in delta_log.snapshot(path).files}
    restored = {f.path for f in delta_log.snapshot(path, version=0).files}
    metrics = table.restoreToVersion(0).first()
    same(table.toDF(), spark.createDataFrame(PEOPLE_ROWS, PEOPLE))
    assert metrics.num_of_files_after_restore == len(restored)
    assert metrics.num_restored_files == len(restored - current)
    assert metrics.num_removed_files == len(current - restored)

    table.restoreToTimestamp(after_delete.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))
    same(table.toDF(), spark.createDataFrame(PEOPLE_ROWS[:2], PEOPLE))
    assert table.history(1).first().operation == "RESTORE"
    with pytest.raises(DeltaError, match="before the earliest version"):
        table.restoreToTimestamp("2000-01-01")
    with pytest.raises(ValueError, match="version needs to be an int"):
        table.restoreToVersion("1")


# ------------------------------------------------------------------------------------------------
# Builders
# ------------------------------------------------------------------------------------------------
def test_builders_create_replace_and_refuse_what_they_should(spark, DeltaTable):
    def builder(kind):
        return (
            getattr(DeltaTable, kind)(spark)
            .tableName("sales.orders")
            .addColumn("order_id", "BIGINT", nullable=False, comment="the key")
            .addColumn("amount", "DECIMAL(10,2)")
            .addColumn("order_date", "DATE")
            .partitionedBy("order_date")
            .comment("orders")
            .property("delta.appendOnly", "false")
        )

    table = builder("createOrReplace").execute()
    schema = spark.table("sales.orders").schema
    assert schema.simpleString() == "struct<order_id:bigint,amount:decimal(10,2),order_date:date>"
    stored = json.loads(delta_log.open_table(table.detail().first().location).schema().to_json())
    assert stored["fields"][0] == {
        "name": "order_id",
        "type": "long",
        "nullable": False,
        "metadata": {"comment": "the key"},
    }
    assert table.detail().first().partitionColumns == ["order_date"]
    with pytest.raises(DeltaError, match="DELTA_TABLE_ALREADY_EXISTS"):
        builder("create").execute()

    spark.sql("INSERT INTO sales.orders VALUES (1, 9.99, DATE'2024-01-01')")
    DeltaTable.createIfNotExists(spark).tableName("sales.orders").addColumn("x", "INT").execute()
    assert spark.table("sales.orders").count() == 1  # untouched

    (
        DeltaTable.replace(spark)
        .tableName("sales.orders")
        .addColumns(spark.createDataFrame([], "order_id long, note string").schema)
        .execute()
    )
    assert spark.table("sales.orders").columns == ["order_id", "note"]
    assert spark.table("sales.orders").count() == 0
    assert DeltaTable.forName(spark, "sales.orders").history(1).first().operation in (
        "CREATE OR REPLACE TABLE",
        "REPLACE TABLE",
    )
    with pytest.raises(DeltaError, match="cannot be replaced as it does not exist"):
        DeltaTable.replace(spark).tableName("sales.missing").addColumn("a", "INT").execute()
    with pytest.raises(DeltaError, match="Table schema is not set"):
        DeltaTable.create(spark).tableName("sales.empty").execute()


def test_not_null_columns_reject_null_appends(spark, path, DeltaTable):
    DeltaTable.create(spark).location(path).addColumn("id", "BIGINT", nullable=False).addColumn(
        "v", "STRING"
    ).execute()
    spark.createDataFrame([(1, None)], "id long, v string").write.format("delta").mode(
        "append"
    ).save(path)
    before = version(path)
    with pytest.raises(Exception, match="NOT NULL constraint violated for column: id"):
        spark.createDataFrame([(None, "x")], "id long, v string").write.format("delta").mode(
            "append"
        ).save(path)
    with pytest.raises(DeltaError, match="NOT NULL constraint violated for column: id"):
        DeltaTable.forPath(spark, path).update(set={"id": "NULL"})
    assert version(path) == before


# ------------------------------------------------------------------------------------------------
# CHECK constraints
# ------------------------------------------------------------------------------------------------
def test_check_constraints_reject_violating_writes(spark, path, DeltaTable):
    from lakehouse.tables import add_check_constraint, drop_check_constraint

    rows = [r for r in PEOPLE_ROWS if r[2] is not None]
    people(spark, path, rows=rows)
    with pytest.raises(DeltaError, match="1 rows in .* violate the new CHECK constraint"):
        add_check_constraint(spark, path, "named", "name IS NOT NULL")
    add_check_constraint(spark, path, "amount_positive", "amount > 0")
    before = version(path)

    bad = spark.createDataFrame([(9, "zed", -5.0, "active")], PEOPLE)
    with pytest.raises(
        Exception, match=r"CHECK constraint amount_positive \(amount > 0\) violated"
    ):
        bad.write.format("delta").mode("append").save(path)
    table = DeltaTable.forPath(spark, path)
    with pytest.raises(
        DeltaError, match=r"CHECK constraint amount_positive \(amount > 0\) violated"
    ):
        table.update("id = 1", {"amount": "-1"})
    with pytest.raises(DeltaError, match="amount_positive"):
        table.alias("t").merge(bad.alias("s"), "t.id = s.id").whenNotMatchedInsertAll().execute()
    assert version(path) == before
    same(table.toDF(), spark.createDataFrame(rows, PEOPLE))
    committed = {f.path for f in delta_log.snapshot(path).files}
    on_disk = {p for p in os.listdir(path) if p.endswith(".parquet")}
    assert on_disk == committed  # the refused writes left no files behind

    # As in Delta, a NULL result violates the constraint too.
    with pytest.raises(Exception, match="amount_positive"):
        spark.createDataFrame([(10, "nul", None, None)], PEOPLE).write.format("delta").mode(
            "append"
        ).save(path)
    assert version(path) == before
    drop_check_constraint(spark, path, "amount_positive")
    drop_check_constraint(spark, path, "amount_positive", if_exists=True)
    with pytest.raises(DeltaError, match="DELTA_CONSTRAINT_DOES_NOT_EXIST"):
        drop_check_constraint(spark, path, "amount_positive")
    bad.write.format("delta").mode("append").save(path)
    assert table.toDF().count() == len(rows) + 1


# ------------------------------------------------------------------------------------------------
# What the embedded engine cannot do, and argument checks
# ------------------------------------------------------------------------------------------------
def test_unsupported_calls_name_the_alternative(spark, path, DeltaTable):
    people(spark, path)
    table = DeltaTable.forPath(spark, path)
    with pytest.raises(UnsupportedOperation, match="Recreate the table"):
        table.dropFeatureSupport("changeDataFeed")
    with pytest.raises(UnsupportedOperation, match="toDF\\(\\).write"):
        table.clone(path + "_copy")
    with pytest.raises(UnsupportedOperation, match="partitionedBy"):
        DeltaTable.create(spark).location(path + "_c").clusterBy("id")
    with pytest.raises(UnsupportedOperation, match="withColumn"):
        DeltaTable.create(spark).location(path + "_g").addColumn(
            "d", "DATE", generatedAlwaysAs="CAST(ts AS DATE)"
        )
    with pytest.raises(UnsupportedOperation, match="local folders only|hadoopConf"):
        DeltaTable.forPath(spark, path, {"fs.s3a.access.key": "k"})


def test_arguments_are_checked_like_delta_spark(spark, path, DeltaTable):
    people(spark, path)
    table = DeltaTable.forPath(spark, path)
    with pytest.raises(ValueError, match="'source' in merge cannot be None"):
        table.merge(None, "id = id")
    with pytest.raises(TypeError, match="must be a Spark SQL Column or a string"):
        table.delete(42)
    with pytest.raises(ValueError, match="'set' cannot be None"):
        table.update("id = 1")
    with pytest.raises(TypeError, match="Values of dict in 'set'"):
        table.update("id = 1", {"amount": 1})
    builder = table.alias("t").merge(table.toDF().alias("s"), "t.id = s.id")
    with pytest.raises(DeltaError, match="only the last MATCHED clause can omit the condition"):
        builder.whenMatchedDelete().whenMatchedUpdateAll().execute()
    with pytest.raises(Exception, match="no_such_column"):  # Spark's own analysis error
        table.delete("no_such_column = 1")
    with pytest.raises(DeltaError, match="alias the table"):
        table.update(table.toDF()["id"] == 1, {"name": "'x'"})
    with pytest.raises(DeltaError, match="NOT MATCHED clause may only refer to the source"):
        builder.whenNotMatchedInsert(values={"id": "t.id"}).execute()


def test_protocol_features_manifest_and_conversion(spark, path, tmp_path, DeltaTable):
    people(spark, path)
    table = DeltaTable.forPath(spark, path)
    table.upgradeTableProtocol(1, 3)
    assert (table.detail().first().minReaderVersion, table.detail().first().minWriterVersion) == (
        1,
        3,
    )
    with pytest.raises(DeltaError, match="cannot be downgraded"):
        table.upgradeTableProtocol(1, 2)
    table.addFeatureSupport("changeDataFeed")
    assert "changeDataFeed" in table.detail().first().tableFeatures
    table.generate("symlink_format_manifest")
    assert (Path(path) / "_symlink_format_manifest").is_dir()

    folder = tmp_path / "parquet"
    spark.createDataFrame(PEOPLE_ROWS, PEOPLE).write.parquet(str(folder))
    converted = DeltaTable.convertToDelta(spark, f"parquet.`{folder}`")
    same(converted.toDF(), spark.createDataFrame(PEOPLE_ROWS, PEOPLE))


def test_timestamps_and_dates_compare_as_in_spark(spark, path, DeltaTable):
    spark.createDataFrame(
        [
            (1, datetime(2024, 1, 1, 12, tzinfo=UTC), date(2024, 1, 1)),
            (2, datetime(2023, 12, 31, 23, 59, tzinfo=UTC), date(2023, 12, 31)),
            (3, None, None),
        ],
        "id long, ts timestamp, d date",
    ).write.format("delta").save(path)
    table = DeltaTable.forPath(spark, path)
    table.delete("ts >= '2024-01-01' OR d < DATE'2023-12-31'")
    table.update("ts < current_timestamp() AND d = '2023-12-31'", {"d": "current_date()"})
    rows = sorted(table.toDF().collect())
    assert [r.id for r in rows] == [2, 3]
    assert rows[0].d == spark.sql("SELECT current_date() AS d").first().d
    assert rows[1].ts is None


def test_changes_on_a_partitioned_table_move_rows_between_partitions(spark, path, DeltaTable):
    # Values whose folder names Spark would not decode back exactly ("é", ":") included.
    schema = "id long, city string, amount double"
    rows = [(1, "Zürich", 1.0), (2, "a b:c", 2.0), (3, None, 3.0), (4, "Oslo", 4.0)]
    (spark.createDataFrame(rows, schema).write.format("delta").partitionBy("city").save(path))
    table = DeltaTable.forPath(spark, path)
    table.update("city = 'Zürich'", {"city": "'Oslo'"})
    source = spark.createDataFrame([(2, "a b:c", 20.0), (5, "Zürich", 5.0)], schema)
    (
        table.alias("t")
        .merge(source.alias("s"), "t.id = s.id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .whenNotMatchedBySourceDelete("t.city IS NULL")
        .execute()
    )
    expected = [(1, "Oslo", 1.0), (2, "a b:c", 20.0), (4, "Oslo", 4.0), (5, "Zürich", 5.0)]
    same(table.toDF(), spark.createDataFrame(expected, schema))
    assert sorted({f.partition_values["city"] for f in delta_log.snapshot(path).files}) == [
        "Oslo",
        "Zürich",
        "a b:c",
    ]
