"""One suite, every engine: the course contract's Delta calls give the same results on the
embedded engine, on delta-spark and on Databricks.

Each test runs the calls through ``lakehouse.DeltaTable`` and ``format("delta")`` and compares
with the result computed independently with plain Spark DataFrame operations. An engine that
cannot start here is skipped with the reason.

Local classic Spark runs one engine per process (the JVM keeps the first session's jars), so
the embedded engine runs in this process and delta-spark, when its jars are on disk, in a
child pytest process of its own (``test_engine_in_its_own_process``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

# delta-spark-connect: delta-spark through a local Spark Connect server, as a notebook under
# SPARK_REMOTE sees it.
ENGINES = ["embedded", "delta-spark", "delta-spark-connect", "databricks"]
# Set in the child process that runs one engine's share of this suite.
CHILD_ENGINE = os.environ.get("LAKEHOUSE_CONFORMANCE_ENGINE")
OWN_PROCESS = {"delta-spark", "delta-spark-connect"}  # local engines other than embedded


def unavailable(engine: str) -> str | None:
    """Why ``engine`` cannot run on this machine, or None."""
    from lakehouse import session

    if engine.startswith("delta-spark") and not session.delta_spark_jars():
        return (
            "delta-spark jars not in the JVM cache (run scripts/bootstrap where Maven is reached)"
        )
    if engine == "databricks" and not (
        session.on_databricks_runtime() or session.databricks_connect_configured()
    ):
        return "not on a Databricks runtime and Databricks Connect not configured"
    return None


@dataclass
class Lake:
    """A session of one engine, and where its tests may put tables."""

    engine: str
    spark: object
    root: str
    schema: str

    def path(self, name: str) -> str:
        return f"{self.root}/{name}-{uuid.uuid4().hex[:8]}"

    def table(self, name: str) -> str:
        return f"{self.schema}.{name}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", params=ENGINES)
def lake(request, tmp_path_factory):
    engine = request.param
    reason = unavailable(engine)
    if reason:
        pytest.skip(reason)
    if CHILD_ENGINE and CHILD_ENGINE != engine:
        pytest.skip(f"this process runs the {CHILD_ENGINE} engine only")
    if not CHILD_ENGINE and engine in OWN_PROCESS:
        pytest.skip(f"{engine} runs in its own process: see test_engine_in_its_own_process")
    mp = pytest.MonkeyPatch()
    if engine == "databricks":
        root = os.environ.get("LAKEHOUSE_CONFORMANCE_ROOT", "/tmp/lakehouse-conformance")
        root = f"{root}/{uuid.uuid4().hex[:8]}"
    else:
        folder = tmp_path_factory.mktemp(f"conformance-{engine}")
        mp.setenv("LAKEHOUSE_LAKE", str(folder / "lake"))
        mp.setenv("LAKEHOUSE_CATALOG", "conformance")
        mp.delenv("SPARK_REMOTE", raising=False)
        root = str(folder / "paths")
    from lakehouse import connect_server, get_spark

    server = None
    if engine == "delta-spark-connect":
        server_env = {
            "LAKEHOUSE_ENGINE": "delta-spark",
            "LAKEHOUSE_LAKE": str(folder / "lake"),
            "LAKEHOUSE_CATALOG": "conformance",
        }
        server = connect_server.ConnectServer(0, log_dir=folder / "server", env=server_env)
        spark = get_spark("delta-spark", scale="tiny", remote=server.start())
    else:
        spark = get_spark(engine, scale="tiny")
    schema = f"conformance_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    yield Lake(engine, spark, root, schema)
    if engine != "embedded":
        spark.sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    if server is not None:
        spark.stop()
        server.stop()
    mp.undo()


@pytest.mark.parametrize("engine", sorted(OWN_PROCESS))
def test_engine_in_its_own_process(engine):
    """Run this suite for ``engine`` in a child process (its own JVM)."""
    reason = unavailable(engine)
    if reason:
        pytest.skip(reason)
    if CHILD_ENGINE:
        pytest.skip("already inside an engine's own process")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            __file__,
            "-k",
            f"[{engine}]",
        ],
        env={**os.environ, "LAKEHOUSE_CONFORMANCE_ENGINE": engine},
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
SCHEMA = "id long, v string"


def frame(spark, rows, schema=SCHEMA):
    return spark.createDataFrame(rows, schema)


def read(spark, path, **options):
    reader = spark.read.format("delta")
    for key, value in options.items():
        reader = reader.option(key, value)
    return reader.load(path)


def same(actual, expected):
    assertDataFrameEqual(actual, expected)
    assertDataFrameEqual(expected, actual)


def delta_table(spark):
    from lakehouse import DeltaTable

    return DeltaTable


def current(spark, path):
    """The table as it is now. A DataFrame from ``toDF()`` keeps the snapshot of its first
    action on real Delta (a materialized plan is immutable), so each check reads anew."""
    return delta_table(spark).forPath(spark, path).toDF()


def operations(spark, path):
    history = delta_table(spark).forPath(spark, path).history()
    return [r.operation for r in history.orderBy(F.desc("version")).collect()]


def commit_timestamp(spark, path, version):
    """A version's commit time as text in the session time zone."""
    history = delta_table(spark).forPath(spark, path).history()
    return (
        history.filter(F.col("version") == version)
        .select(F.date_format("timestamp", "yyyy-MM-dd HH:mm:ss.SSS"))
        .first()[0]
    )


# ------------------------------------------------------------------------------------------------
# format("delta")
# ------------------------------------------------------------------------------------------------
def test_write_modes(lake):
    spark, path = lake.spark, lake.path("modes")
    first = frame(spark, [(1, "a"), (2, None)])
    second = frame(spark, [(3, "c")])
    first.write.format("delta").save(path)
    with pytest.raises(Exception, match="already exist"):
        second.write.format("delta").save(path)
    second.write.format("delta").mode("ignore").save(path)
    same(read(spark, path), first)
    second.write.format("delta").mode("append").save(path)
    same(read(spark, path), first.unionByName(second))
    second.write.format("delta").mode("overwrite").save(path)
    same(read(spark, path), second)


def test_merge_schema_adds_columns(lake):
    spark, path = lake.spark, lake.path("merge-schema")
    narrow = frame(spark, [(1, "a"), (2, None)])
    wide = frame(spark, [(3, "c", 1.5)], "id long, v string, score double")
    narrow.write.format("delta").save(path)
    with pytest.raises(Exception, match="schema mismatch"):
        wide.write.format("delta").mode("append").save(path)
    wide.write.format("delta").mode("append").option("mergeSchema", "true").save(path)
    expected = narrow.withColumn("score", F.lit(None).cast("double")).unionByName(wide)
    same(read(spark, path), expected)


def test_partition_by_and_replace_where(lake):
    spark, path = lake.spark, lake.path("partitions")
    schema = "id long, v string, day date"
    data = frame(
        spark,
        [(1, "a", date(2024, 1, 1)), (2, "b", date(2024, 1, 2)), (3, None, date(2024, 1, 2))],
        schema,
    )
    data.write.format("delta").partitionBy("day").save(path)
    detail = delta_table(spark).forPath(spark, path).detail().first()
    assert detail.partitionColumns == ["day"]
    replacement = frame(spark, [(9, "z", date(2024, 1, 2))], schema)
    (
        replacement.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", "day = '2024-01-02'")
        .save(path)
    )
    expected = data.filter(F.col("day") != F.lit(date(2024, 1, 2))).unionByName(replacement)
    same(read(spark, path), expected)


def test_time_travel_by_version_and_timestamp(lake):
    spark, path = lake.spark, lake.path("time-travel")
    first = frame(spark, [(1, "a"), (2, None)])
    second = frame(spark, [(3, "c")])
    first.write.format("delta").save(path)
    second.write.format("delta").mode("append").save(path)
    frame(spark, [(4, "d")]).write.format("delta").mode("overwrite").save(path)
    same(read(spark, path, versionAsOf=0), first)
    same(read(spark, path, versionAsOf=1), first.unionByName(second))
    same(
        read(spark, path, timestampAsOf=commit_timestamp(spark, path, 1)), first.unionByName(second)
    )


def test_change_data_feed(lake):
    spark, path = lake.spark, lake.path("cdf")
    DeltaTable = delta_table(spark)
    (
        DeltaTable.create(spark)
        .location(path)
        .addColumn("id", "BIGINT")
        .addColumn("v", "STRING")
        .property("delta.enableChangeDataFeed", "true")
        .execute()
    )
    rows = frame(spark, [(1, "a"), (2, "b"), (3, None)])
    rows.write.format("delta").mode("append").save(path)
    table = DeltaTable.forPath(spark, path)
    table.update("id = 1", {"v": "'A'"})
    table.delete("id = 2")

    def change(df, kind, version):
        return df.select(
            "id",
            "v",
            F.lit(kind).alias("_change_type"),
            F.lit(version).cast("long").alias("_commit_version"),
        )

    expected = (
        change(rows, "insert", 1)
        .unionByName(change(rows.filter("id = 1"), "update_preimage", 2))
        .unionByName(
            change(rows.filter("id = 1").withColumn("v", F.lit("A")), "update_postimage", 2)
        )
        .unionByName(change(rows.filter("id = 2"), "delete", 3))
    )
    changes = read(spark, path, readChangeFeed="true", startingVersion=1)
    same(changes.select(*expected.columns), expected)


def test_named_tables_save_as_table_select_and_insert(lake):
    spark, name = lake.spark, lake.table("customers")
    rows = frame(spark, [(1, "a"), (2, None)])
    rows.write.format("delta").saveAsTable(name)
    spark.sql(f"INSERT INTO {name} VALUES (3, 'c')")
    expected = rows.unionByName(frame(spark, [(3, "c")]))
    same(spark.table(name), expected)
    same(spark.sql(f"SELECT * FROM {name} WHERE id > 1"), expected.filter("id > 1"))
    same(delta_table(spark).forName(spark, name).toDF(), expected)
    assert delta_table(spark).isDeltaTable(spark, lake.path("nothing")) is False


# ------------------------------------------------------------------------------------------------
# DeltaTable
# ------------------------------------------------------------------------------------------------
def test_merge_update_delete_and_history(lake):
    spark, path = lake.spark, lake.path("dml")
    DeltaTable = delta_table(spark)
    target = frame(spark, [(1, "a"), (2, None), (3, None), (4, "d")])
    source = frame(spark, [(1, "A"), (3, "C"), (5, "e")])
    target.write.format("delta").save(path)
    table = DeltaTable.forPath(spark, path)

    metrics = (
        table.alias("t")
        .merge(source.alias("s"), "t.id = s.id")
        .whenMatchedUpdate(set={"v": "s.v"})
        .whenNotMatchedInsertAll()
        .whenNotMatchedBySourceDelete(condition="t.id = 4")
        .execute()
    )
    updated = target.alias("t").join(source.alias("s"), "id").select("id", F.col("s.v"))
    kept = target.join(source, "id", "left_anti").filter("id <> 4")
    inserted = source.join(target, "id", "left_anti")
    merged = updated.unionByName(kept).unionByName(inserted)
    same(current(spark, path), merged)
    expected_metrics = spark.createDataFrame(
        [(updated.count() + inserted.count() + 1, updated.count(), 1, inserted.count())],
        "num_affected_rows long, num_updated_rows long, num_deleted_rows long, "
        "num_inserted_rows long",
    )
    same(metrics, expected_metrics)

    table.update(F.col("v").isNull(), {"v": F.lit("none")})
    after_update = merged.withColumn("v", F.coalesce("v", F.lit("none")))
    same(current(spark, path), after_update)
    table.delete("id >= 3")
    same(current(spark, path), after_update.filter("id < 3"))
    assert operations(spark, path) == ["DELETE", "UPDATE", "MERGE", "WRITE"]


def test_optimize_compacts_files(lake):
    spark, path = lake.spark, lake.path("optimize")
    DeltaTable = delta_table(spark)
    batches = [frame(spark, [(i, f"v{i}")]).coalesce(1) for i in range(4)]
    for batch in batches:
        batch.write.format("delta").mode("append").save(path)
    table = DeltaTable.forPath(spark, path)
    assert table.detail().first().numFiles == 4
    metrics = table.optimize().executeCompaction().first().metrics
    assert (metrics.numFilesRemoved, metrics.numFilesAdded) == (4, 1)
    assert table.detail().first().numFiles == 1
    expected = batches[0]
    for batch in batches[1:]:
        expected = expected.unionByName(batch)
    same(current(spark, path), expected)
    assert operations(spark, path)[0] == "OPTIMIZE"


def test_restore_to_version_and_timestamp(lake):
    spark, path = lake.spark, lake.path("restore")
    table_rows = frame(spark, [(1, "a"), (2, None)])
    more = frame(spark, [(3, "c")])
    table_rows.write.format("delta").save(path)
    more.write.format("delta").mode("append").save(path)
    table = delta_table(spark).forPath(spark, path)
    table.delete("id = 1")
    table.restoreToVersion(1)
    same(current(spark, path), table_rows.unionByName(more))
    table.restoreToTimestamp(commit_timestamp(spark, path, 0))
    same(current(spark, path), table_rows)
    assert operations(spark, path)[:2] == ["RESTORE", "RESTORE"]


def test_streaming_source_and_sink_with_available_now(lake, tmp_path):
    spark = lake.spark
    source, sink = lake.path("stream-source"), lake.path("stream-sink")
    checkpoint = lake.path("stream-checkpoint")
    first = frame(spark, [(1, "a"), (2, None)])
    second = frame(spark, [(3, "c")])
    first.write.format("delta").save(source)

    def run():
        query = (
            spark.readStream.format("delta")
            .load(source)
            .writeStream.format("delta")
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start(sink)
        )
        query.awaitTermination()

    run()
    same(read(spark, sink), first)
    second.write.format("delta").mode("append").save(source)
    run()
    same(read(spark, sink), first.unionByName(second))
    run()  # nothing new: no duplicates
    same(read(spark, sink), first.unionByName(second))
    assert set(operations(spark, sink)) == {"STREAMING UPDATE"}


# ------------------------------------------------------------------------------------------------
# Delta SQL table features (delta-spark and Databricks; the embedded engine has no Delta SQL)
# ------------------------------------------------------------------------------------------------
def test_table_features_behave_as_delta_documents_them(lake):
    if lake.engine == "embedded":
        pytest.skip("Delta SQL: the embedded engine runs the DeltaTable API only")
    spark, name = lake.spark, lake.table("features")
    spark.sql(f"""
        CREATE TABLE {name} (
          id BIGINT GENERATED ALWAYS AS IDENTITY (START WITH 1 INCREMENT BY 1),
          amount DECIMAL(10,2) NOT NULL COMMENT 'in the order currency',
          order_ts TIMESTAMP,
          order_date DATE GENERATED ALWAYS AS (CAST(order_ts AS DATE))
        ) USING delta
        CLUSTER BY (order_date)
        COMMENT 'features under test'
        TBLPROPERTIES (delta.enableChangeDataFeed = true, delta.enableDeletionVectors = true)
    """)
    spark.sql(f"ALTER TABLE {name} ADD CONSTRAINT positive CHECK (amount > 0)")
    (
        spark.range(1, 11)
        .selectExpr(
            "CAST(id AS DECIMAL(10,2)) AS amount",
            "TIMESTAMP'2026-01-01 12:00:00' + make_interval(0, 0, 0, CAST(id AS INT)) AS order_ts",
        )
        .coalesce(1)  # one file, so a one-row DELETE can mark it with a deletion vector
        .write.format("delta")
        .mode("append")
        .saveAsTable(name)
    )
    rows = spark.table(name).orderBy("order_ts").collect()
    assert sorted(r.id for r in rows) == list(range(1, 11)), "identity values 1..10"
    assert all(r.order_date == r.order_ts.date() for r in rows), "generated column"

    detail = spark.sql(f"DESCRIBE DETAIL {name}").first()
    assert (list(detail.clusteringColumns), detail.description) == (
        ["order_date"],
        "features under test",
    )
    properties = {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}
    assert properties["delta.constraints.positive"] == "amount > 0"
    assert properties["delta.enableChangeDataFeed"] == "true"
    columns = {r.col_name: r.comment for r in spark.sql(f"DESCRIBE TABLE {name}").collect()}
    assert columns["amount"] == "in the order currency"

    spark.sql(f"DELETE FROM {name} WHERE amount = 3")
    delete = spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()
    assert delete.operation == "DELETE"
    assert int(delete.operationMetrics["numDeletionVectorsAdded"]) == 1
    assert int(delete.operationMetrics.get("numRemovedFiles", "0")) == 0, "marked, not rewritten"
    changes = spark.sql(
        f"SELECT _change_type, count(*) AS n FROM table_changes('{name}', 0) GROUP BY 1"
    ).collect()
    assert {r._change_type: r.n for r in changes} == {"insert": 10, "delete": 1}
    with pytest.raises(Exception, match=r"DELTA_VIOLATE_CONSTRAINT|CHECK constraint positive"):
        spark.sql(f"INSERT INTO {name} (amount, order_ts) VALUES (-1, TIMESTAMP'2026-02-01')")
    assert spark.table(name).count() == 9, "the rejected insert committed nothing"


def test_a_selective_query_reads_only_the_files_its_range_can_match(lake):
    """Data skipping, counted the way each engine can: Spark's scan metric on delta-spark
    (classic and through Connect), the log's min/max statistics on the embedded engine."""
    from lakehouse.gold import maintenance

    name = lake.table("skipping")
    (lake.spark.range(400).repartitionByRange(4, "id").write.format("delta").saveAsTable(name))
    assert maintenance.files_for_predicate(lake.spark, name, "id", 5) == (4, 1)
    assert maintenance.files_for_predicate(lake.spark, name, "id", 5, 399) == (4, 4)
    assert maintenance.files_for_predicate(lake.spark, name, "id", 1000) == (4, 0)
