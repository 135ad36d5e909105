"""The embedded engine's format("delta"): what Spark's Python data source layer has to get right
on its own (modes, partitions, schema evolution, statistics, named tables, streams)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date
from pathlib import Path

import deltalake
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse import DeltaTable
from lakehouse.engines.embedded import log as delta_log


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "engine_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "table")


def rows(spark, n):
    return spark.range(n).select(
        "id",
        (F.col("id") % 3).cast("string").alias("part"),
        (F.col("id") * 1.25).cast("decimal(10,2)").alias("amount"),
    )


def test_round_trip_keeps_types_and_rows(spark, path):
    source = rows(spark, 20).select(
        "*",
        F.date_add(F.lit(date(2026, 1, 1)), F.col("id").cast("int")).alias("day"),
        F.timestamp_seconds(F.col("id") * 3600).alias("ts"),
        F.when(F.col("id") % 4 == 0, None).otherwise(F.col("id") % 2 == 0).alias("flag"),
    )
    source.write.format("delta").save(path)
    result = spark.read.format("delta").load(path)
    assert result.dtypes == source.dtypes
    assert all(field.nullable for field in result.schema)  # Delta stores columns as nullable
    assertDataFrameEqual(result, source)


def test_default_mode_refuses_an_existing_table_and_ignore_skips_it(spark, path):
    rows(spark, 5).write.format("delta").save(path)
    with pytest.raises(Exception, match="already exists.*mode\\('append'\\)"):
        rows(spark, 5).write.format("delta").save(path)
    rows(spark, 50).write.format("delta").mode("ignore").save(path)
    assert spark.read.format("delta").load(path).count() == 5
    assert delta_log.latest_version(path) == 0


def test_each_write_is_one_commit_and_overwrite_replaces(spark, path):
    rows(spark, 10).repartition(4).write.format("delta").mode("append").save(path)
    rows(spark, 10).write.format("delta").mode("append").save(path)
    assert delta_log.latest_version(path) == 1
    rows(spark, 3).write.format("delta").mode("overwrite").save(path)
    assert spark.read.format("delta").load(path).count() == 3
    assert spark.read.format("delta").option("versionAsOf", 1).load(path).count() == 20


def test_partition_by_writes_hive_folders_and_prunes_files(spark, path):
    rows(spark, 30).write.format("delta").partitionBy("part").save(path)
    assert sorted(p.name for p in Path(path).iterdir() if p.name != "_delta_log") == [
        "part=0",
        "part=1",
        "part=2",
    ]
    assert deltalake.DeltaTable(path).metadata().partition_columns == ["part"]
    filtered = spark.read.format("delta").load(path).where("part = '1'")
    assert filtered.count() == 10
    # Appends keep the table's partitioning; a different one is refused with the fix.
    rows(spark, 3).write.format("delta").mode("append").save(path)
    with pytest.raises(Exception, match="Partition columns do not match.*overwriteSchema"):
        rows(spark, 3).write.format("delta").mode("append").partitionBy("id").save(path)


def test_partition_values_that_need_escaping_round_trip(spark, path):
    odd = spark.createDataFrame(
        [(1, "a/b"), (2, "x:y"), (3, None), (4, "50% off"), (5, "plain")], "id long, tag string"
    )
    odd.write.format("delta").partitionBy("tag").save(path)
    assertDataFrameEqual(spark.read.format("delta").load(path), odd)
    assert spark.read.format("delta").load(path).where("tag = 'a/b'").count() == 1


def test_statistics_let_a_filter_skip_files(spark, path):
    for start in (0, 100, 200):
        spark.range(start, start + 100).coalesce(1).write.format("delta").mode("append").save(path)
    snap = delta_log.snapshot(path)
    bounds = sorted((f.stats["minValues"]["id"], f.stats["maxValues"]["id"]) for f in snap.files)
    assert bounds == [(0, 99), (100, 199), (200, 299)]
    from pyspark.sql.datasource import EqualTo, GreaterThan

    from lakehouse.engines.embedded.delta_source import prune_files

    assert len(prune_files(snap.files, [EqualTo(("id",), 150)], [])) == 1
    assert len(prune_files(snap.files, [GreaterThan(("id",), 99)], [])) == 2
    assert spark.read.format("delta").load(path).where("id = 150").count() == 1


def test_a_filtered_query_does_not_change_what_the_same_dataframe_reads_next(spark, path):
    # Spark 4.1 kept pushed-down reader state on the DataFrame's data source instance, so a
    # filtered count made a later unfiltered count of the same DataFrame read too few files.
    rows(spark, 30).write.format("delta").partitionBy("part").save(path)
    table = spark.read.format("delta").load(path)
    assert table.where("part = '1'").count() == 10
    assert table.where("id >= 25").count() == 5
    assert table.count() == 30


def test_merge_with_a_conditional_update_when_no_source_row_matches(spark, path):
    spark.createDataFrame([(1, 1)], "id long, v long").write.format("delta").save(path)
    source = spark.createDataFrame([(2, 5)], "id long, v long")  # matches no target row
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(source.alias("s"), "t.id = s.id")
        .whenMatchedUpdate(condition="s.v > t.v", set={"v": "t.v + s.v"})
        .whenNotMatchedInsertAll()
        .execute()
    )
    assert sorted(tuple(r) for r in spark.read.format("delta").load(path).collect()) == [
        (1, 1),
        (2, 5),
    ]


def test_new_columns_need_merge_schema(spark, path):
    rows(spark, 4).write.format("delta").save(path)
    wider = rows(spark, 2).withColumn("note", F.lit("n"))
    with pytest.raises(Exception, match=r"new columns \['note'\].*mergeSchema"):
        wider.write.format("delta").mode("append").save(path)
    assert delta_log.latest_version(path) == 0
    wider.write.format("delta").mode("append").option("mergeSchema", "true").save(path)
    result = spark.read.format("delta").load(path)
    assert result.columns == ["id", "part", "amount", "note"]
    assert result.where("note IS NULL").count() == 4


def test_incompatible_types_are_refused_and_overwrite_schema_replaces(spark, path):
    rows(spark, 4).write.format("delta").save(path)
    as_text = rows(spark, 2).withColumn("amount", F.col("amount").cast("string"))
    with pytest.raises(Exception, match="Column types do not match.*amount"):
        as_text.write.format("delta").mode("append").save(path)
    (as_text.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path))
    assert dict(spark.read.format("delta").load(path).dtypes)["amount"] == "string"


def test_replace_where_replaces_only_matching_partitions(spark, path):
    rows(spark, 30).write.format("delta").partitionBy("part").save(path)
    replacement = spark.range(1000, 1002).select(
        "id", F.lit("1").alias("part"), F.lit(0).cast("decimal(10,2)").alias("amount")
    )
    (
        replacement.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", "part = '1'")
        .save(path)
    )
    result = spark.read.format("delta").load(path)
    assert result.where("part = '1'").count() == 2
    assert result.where("part <> '1'").count() == 20
    with pytest.raises(Exception, match="must match the condition"):
        (
            replacement.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", "part = '2'")
            .save(path)
        )
    with pytest.raises(Exception, match="each condition must compare a partition column"):
        (
            replacement.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", "amount > 3")
            .save(path)
        )


def test_timestamp_as_of_reads_the_version_in_force(spark, path):
    rows(spark, 2).write.format("delta").save(path)
    rows(spark, 5).write.format("delta").mode("append").save(path)
    history = deltalake.DeltaTable(path).history()
    first_commit_ms = min(h["timestamp"] for h in history)
    from datetime import datetime

    at_first = datetime.fromtimestamp(first_commit_ms / 1000, UTC).isoformat()
    assert spark.read.format("delta").option("timestampAsOf", at_first).load(path).count() == 2
    with pytest.raises(Exception, match="before its first commit"):
        spark.read.format("delta").option("timestampAsOf", "2001-01-01").load(path).count()


def test_change_data_feed_needs_the_property_and_then_reads_changes(spark, path):
    rows(spark, 3).write.format("delta").save(path)
    with pytest.raises(Exception, match="change data feed is not enabled"):
        spark.read.format("delta").option("readChangeFeed", "true").option(
            "startingVersion", 0
        ).load(path).count()
    deltalake.DeltaTable(path).alter.set_table_properties({"delta.enableChangeDataFeed": "true"})
    rows(spark, 2).write.format("delta").mode("append").save(path)
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 2)
        .load(path)
    )
    assert [
        tuple(r) for r in changes.select("_change_type", "_commit_version").distinct().collect()
    ] == [("insert", 2)]
    assert changes.count() == 2


def test_idempotent_writes_with_transaction_ids(spark, path):
    batch = rows(spark, 4)
    for _ in range(2):  # a replayed batch is skipped
        (
            batch.write.format("delta")
            .mode("append")
            .option("txnAppId", "job-1")
            .option("txnVersion", 7)
            .save(path)
        )
    assert spark.read.format("delta").load(path).count() == 4
    (
        batch.write.format("delta")
        .mode("append")
        .option("txnAppId", "job-1")
        .option("txnVersion", 8)
        .save(path)
    )
    assert spark.read.format("delta").load(path).count() == 8
    with pytest.raises(Exception, match="txnAppId.*txnVersion"):
        batch.write.format("delta").mode("append").option("txnAppId", "job-1").save(path)


def test_stream_from_delta_to_delta_is_incremental_and_rejects_updates(spark, tmp_path):
    source, sink, checkpoint = (str(tmp_path / n) for n in ("src", "sink", "ck"))
    spark.range(10).write.format("delta").save(source)

    def run(**options):
        query = (
            spark.readStream.format("delta")
            .options(**options)
            .load(source)
            .writeStream.format("delta")
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start(sink)
        )
        query.awaitTermination()
        return query

    run()
    spark.range(10, 15).write.format("delta").mode("append").save(source)
    run()
    assert sorted(r.id for r in spark.read.format("delta").load(sink).collect()) == list(range(15))
    log_text = "".join(p.read_text() for p in (Path(sink) / "_delta_log").glob("*.json"))
    assert '"txn"' in log_text  # each micro-batch commits with an application transaction
    spark.range(3).write.format("delta").mode("overwrite").save(source)
    with pytest.raises(Exception, match="skipChangeCommits"):
        run()


def test_named_tables_survive_a_new_session(spark, tmp_path):
    spark.sql("CREATE SCHEMA IF NOT EXISTS silver")
    rows(spark, 6).write.mode("overwrite").saveAsTable("silver.persisted")
    spark.sql("INSERT INTO silver.persisted VALUES (100, 'x', 1.00)")
    assert spark.table("silver.persisted").count() == 7
    # A fresh process with the same lake and catalog sees the table by name.
    lake = spark._lakehouse_settings.lake
    script = (
        "from lakehouse import get_spark\n"
        "spark = get_spark('embedded')\n"
        "print(spark.sql('SELECT count(*) FROM silver.persisted').first()[0])\n"
    )
    env = {
        **__import__("os").environ,
        "LAKEHOUSE_LAKE": str(lake),
        "LAKEHOUSE_CATALOG": "engine_tests",
    }
    env.pop("SPARK_REMOTE", None)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "7"
    # Another catalog name is another, empty set of tables.
    env["LAKEHOUSE_CATALOG"] = "someone_else"
    script = (
        "from lakehouse import get_spark\nspark = get_spark('embedded')\n"
        "print(spark.catalog.tableExists('silver.persisted'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]


def test_save_as_table_modes_and_schema_refresh(spark):
    spark.sql("CREATE SCHEMA IF NOT EXISTS gold")
    rows(spark, 3).write.mode("overwrite").saveAsTable("gold.modes")
    with pytest.raises(Exception, match="gold.modes: it already exists"):
        rows(spark, 3).write.saveAsTable("gold.modes")
    (
        rows(spark, 1)
        .withColumn("extra", F.lit(1))
        .write.mode("append")
        .option("mergeSchema", "true")
        .saveAsTable("gold.modes")
    )
    assert spark.table("gold.modes").columns == ["id", "part", "amount", "extra"]
    assert spark.sql("SELECT count(*) FROM gold.modes WHERE extra IS NULL").first()[0] == 3


def test_missing_and_non_delta_paths_say_what_to_do(spark, tmp_path):
    with pytest.raises(Exception, match="No Delta table at .*does not exist"):
        spark.read.format("delta").load(str(tmp_path / "nowhere")).count()
    (tmp_path / "plain").mkdir()
    with pytest.raises(Exception, match="is not a Delta table: it has no _delta_log"):
        spark.read.format("delta").load(str(tmp_path / "plain")).count()
    with pytest.raises(Exception, match="local folders only"):
        spark.read.format("delta").load("s3://bucket/table").count()


def test_a_name_shows_the_columns_a_stream_added(spark, tmp_path):
    spark.sql("CREATE SCHEMA IF NOT EXISTS streams")
    narrow = spark.createDataFrame([(1,)], "id long")
    narrow.write.format("delta").mode("overwrite").saveAsTable("streams.events")
    assert spark.table("streams.events").columns == ["id"]
    source = str(tmp_path / "source")
    spark.createDataFrame([(2, "x")], "id long, note string").write.format("delta").save(source)
    (
        spark.readStream.format("delta")
        .load(source)
        .writeStream.format("delta")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .option("mergeSchema", "true")
        .trigger(availableNow=True)
        .toTable("streams.events")
        .awaitTermination()
    )
    assert spark.table("streams.events").columns == ["id", "note"]
    assert spark.read.table("streams.events").count() == 2
