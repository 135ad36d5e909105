"""Gold table maintenance: the small-file copy, data skipping counted from file statistics,
the checks of the maintenance lesson (each shown failing on a wrong answer), and the engine
features the lesson needs (maxRecordsPerFile, OPTIMIZE's zOrderBy in history, VACUUM DRY RUN)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.errors import DeltaError
from lakehouse.gold import maintenance as m

SALES_DDL = (
    "order_id string, line_number int, date_key int, customer_sk long, quantity int, "
    "total decimal(12,2)"
)
ROWS = 3000  # enough for Z-order to write several files at the small target size below
DAYS = 30
CUSTOMERS = 97  # prime: every day's lines spread over most customers
SMALL_TARGET = "16384"


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "gold_maintenance_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    session.sql("CREATE SCHEMA IF NOT EXISTS gold")
    yield session
    session.conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    mp.undo()


def sales_rows(n: int = ROWS) -> list[tuple]:
    """Order lines in a deterministic order; a day's lines belong to many customers."""
    rows = []
    for i in range(n):
        day = i * DAYS // n
        rows.append(
            (
                f"o{i // 3:05d}",
                i % 3 + 1,
                20260101 + day,
                (i * 37) % CUSTOMERS + 1,
                i % 5 + 1,
                None if i % 11 == 0 else round(i * 1.25, 2),
            )
        )
    return rows


@pytest.fixture(scope="module")
def source(spark):
    """A fact_sales-shaped source table (decimal measure, nulls included)."""
    from decimal import Decimal

    rows = [r[:5] + (None if r[5] is None else Decimal(str(r[5])),) for r in sales_rows()]
    spark.createDataFrame(rows, SALES_DDL).write.format("delta").mode("overwrite").saveAsTable(
        "gold.maint_source"
    )
    return "gold.maint_source"


@pytest.fixture
def copy(spark, source):
    """A fresh small-file copy of the source, with the lesson's small target file size."""
    from lakehouse.tables import set_table_properties

    table = m.build_small_file_copy(spark, source, "gold.maint_copy", rows_per_file=100)
    set_table_properties(spark, table, {"delta.targetFileSize": SMALL_TARGET})
    return table


def location(spark, table: str) -> str:
    from lakehouse import DeltaTable

    return DeltaTable.forName(spark, table).detail().first()["location"][len("file:") :]


# ------------------------------------------------------------------------------------------------
# Engine: maxRecordsPerFile, zOrderBy in history, VACUUM DRY RUN, per-file statistics
# ------------------------------------------------------------------------------------------------
def test_max_records_per_file_cuts_one_task_into_files(spark, tmp_path):
    path = str(tmp_path / "t")
    df = spark.range(250).selectExpr("id", "id % 3 AS part", "IF(id = 7, NULL, id * 2) AS v")
    df.coalesce(1).write.format("delta").option("maxRecordsPerFile", 100).save(path)
    snap = delta_log.snapshot(path)
    assert sorted(f.stats["numRecords"] for f in snap.files) == [50, 100, 100]
    assert sum(pq.read_metadata(Path(path, f.path)).num_rows for f in snap.files) == 250
    assertDataFrameEqual(spark.read.format("delta").load(path), df)

    # Partitioned: the limit applies per partition's files.
    part_path = str(tmp_path / "p")
    df.coalesce(1).write.format("delta").partitionBy("part").option("maxRecordsPerFile", "40").save(
        part_path
    )
    per_part: dict[str, list[int]] = {}
    for f in delta_log.snapshot(part_path).files:
        per_part.setdefault(str(f.partition_values["part"]), []).append(f.stats["numRecords"])
    assert {k: sorted(v) for k, v in per_part.items()} == {
        "0": [4, 40, 40],
        "1": [3, 40, 40],
        "2": [3, 40, 40],
    }
    assertDataFrameEqual(spark.read.format("delta").load(part_path), df)

    # No limit (the default, or 0): one file per task.
    one = str(tmp_path / "one")
    df.coalesce(1).write.format("delta").option("maxRecordsPerFile", 0).save(one)
    assert len(delta_log.snapshot(one).files) == 1
    with pytest.raises(Exception, match="maxRecordsPerFile must be a whole number"):
        df.write.format("delta").option("maxRecordsPerFile", "lots").save(str(tmp_path / "bad"))


def test_vacuum_dry_run_lists_what_vacuum_deletes(spark, copy):
    from lakehouse import DeltaTable
    from lakehouse.tables import vacuum_dry_run

    root = location(spark, copy)
    small_files = sorted(f.path for f in delta_log.snapshot(root).files)
    DeltaTable.forName(spark, copy).optimize().executeCompaction()
    assert vacuum_dry_run(spark, copy) == []  # every removed file is younger than 7 days
    with pytest.raises(DeltaError, match="retentionDurationCheck.enabled"):
        vacuum_dry_run(spark, copy, 0)
    with pytest.raises(ValueError, match="non-negative number of hours"):
        vacuum_dry_run(spark, copy, -1)
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        listed = vacuum_dry_run(spark, copy, 0)
        assert all(Path(root, p).exists() for p in listed)  # a dry run deletes nothing
        kept = {f.path for f in delta_log.snapshot(root).files}
        assert listed == sorted(set(small_files) - kept)
        DeltaTable.forName(spark, copy).vacuum(0)
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")
    assert not any(Path(root, p).exists() for p in listed)


def test_data_file_stats_are_the_files_min_and_max(spark, copy):
    from lakehouse import DeltaTable
    from lakehouse.tables import data_file_stats

    root = location(spark, copy)

    def from_parquet(names) -> dict[str, tuple]:
        """Independently: every data file's row count, min and max, read with pyarrow."""
        out = {}
        for name in names:
            data = pq.read_table(Path(root, name)).to_pandas()
            out[name] = (
                len(data),
                int(data.customer_sk.min()),
                int(data.customer_sk.max()),
                data.total.dropna().min(),
                data.total.dropna().max(),
                int(data.date_key.min()),
                int(data.date_key.max()),
            )
        return out

    def check(stats) -> None:
        rows = {r.file: tuple(r)[1:] for r in stats.collect()}
        expected = from_parquet(rows)
        assert len(rows) == m.file_count(spark, copy)
        for name, row in rows.items():
            assert row[:3] == expected[name][:3] and row[5:] == expected[name][5:], name
            # A bound the log does not hold is null: data skipping must read that file.
            assert row[3:5] in ((None, None), expected[name][3:5]), name

    stats = data_file_stats(spark, copy, ["customer_sk", "total", "DATE_KEY"])
    assert stats.columns == [
        "file",
        "num_records",
        "min_customer_sk",
        "max_customer_sk",
        "min_total",
        "max_total",
        "min_date_key",
        "max_date_key",
    ]
    assert dict(stats.dtypes)["min_total"] == "decimal(12,2)"
    check(stats)
    DeltaTable.forName(spark, copy).optimize().executeCompaction()
    compacted = data_file_stats(spark, copy, ["customer_sk", "total", "date_key"])
    check(compacted)
    assert compacted.where("min_total IS NULL").count() == 0  # delta-rs keeps decimal bounds
    with pytest.raises(ValueError, match="not in 'gold.maint_copy'"):
        data_file_stats(spark, copy, ["nope"])
    with pytest.raises(ValueError, match="non-empty list"):
        data_file_stats(spark, copy, "customer_sk")


# ------------------------------------------------------------------------------------------------
# The small-file copy and data skipping
# ------------------------------------------------------------------------------------------------
def test_small_file_copy_is_the_source_in_small_ingestion_ordered_files(spark, source, copy):
    from lakehouse import DeltaTable

    detail = DeltaTable.forName(spark, copy).detail().first()
    assert detail.numFiles == math.ceil(ROWS / 100)
    assert detail.description == m.MAINTENANCE_COMMENT
    assert m.SMALL_FILE_PROPERTIES.items() <= detail.properties.items()
    assert m.fingerprint(spark.table(copy)) == m.fingerprint(spark.table(source))
    ops = [r.operation for r in DeltaTable.forName(spark, copy).history().collect()]
    assert ops == ["SET TBLPROPERTIES", "WRITE", "CREATE TABLE"]
    # Files follow ingestion order: their date ranges do not overlap.
    ranges = sorted(
        (r.min_date_key, r.max_date_key) for r in m_stats(spark, copy, "date_key").collect()
    )
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))
    # A rebuild starts afresh: same files, history from version 0.
    m.build_small_file_copy(spark, source, copy, rows_per_file=100)
    assert m.latest_operation(spark, copy)[0] == 1
    assert m.file_count(spark, copy) == math.ceil(ROWS / 100)


def m_stats(spark, table, column):
    from lakehouse.tables import data_file_stats

    return data_file_stats(spark, table, [column])


def test_small_file_copy_rejects_bad_arguments(spark, source):
    with pytest.raises(ValueError, match="both 'gold.maint_source'"):
        m.build_small_file_copy(spark, source, source)
    with pytest.raises(ValueError, match="rows_per_file must be a positive int"):
        m.build_small_file_copy(spark, source, "gold.maint_x", rows_per_file=0)
    with pytest.raises(ValueError, match=r"order_by columns \['nope'\]"):
        m.build_small_file_copy(spark, source, "gold.maint_x", order_by=["nope"])


def test_files_for_predicate_counts_files_whose_range_may_match(spark, copy):
    stats = m_stats(spark, copy, "customer_sk").collect()
    expected = sum(1 for r in stats if r.min_customer_sk <= 5 <= r.max_customer_sk)
    assert m.files_for_predicate(spark, copy, "customer_sk", 5) == m.FileSkipping(
        len(stats), expected
    )
    between = sum(1 for r in stats if r.max_customer_sk >= 200 and r.min_customer_sk <= 300)
    assert m.files_for_predicate(spark, copy, "customer_sk", 200, 300).files_read == between == 0
    # Files in ingestion order: one day lives in one or two files.
    days = m_stats(spark, copy, "date_key").collect()
    one_day = sum(1 for r in days if r.min_date_key <= 20260105 <= r.max_date_key)
    skipping = m.files_for_predicate(spark, copy, "date_key", 20260105)
    assert skipping == m.FileSkipping(len(days), one_day) and 1 <= one_day <= 2
    assert skipping.files_skipped == len(days) - one_day
    with pytest.raises(ValueError, match="low must be a value"):
        m.files_for_predicate(spark, copy, "customer_sk", None)


def test_files_without_statistics_are_read(spark, tmp_path):
    from lakehouse.tables import set_table_properties

    spark.createDataFrame([(1, None), (2, None)], "id long, v long").coalesce(1).write.format(
        "delta"
    ).mode("overwrite").saveAsTable("gold.maint_nulls")
    set_table_properties(spark, "gold.maint_nulls", {"delta.targetFileSize": SMALL_TARGET})
    assert m.files_for_predicate(spark, "gold.maint_nulls", "v", 5) == m.FileSkipping(1, 1)


def test_z_order_makes_one_customer_skip_most_files_and_the_checks_agree(spark, copy):
    from lakehouse import DeltaTable

    table = DeltaTable.forName(spark, copy)
    customer = m.busiest_value(spark.table(copy), "customer_sk")
    data = m.fingerprint(spark.table(copy))
    files_small = m.file_count(spark, copy)
    before = m.files_for_predicate(spark, copy, "customer_sk", customer)
    assert before.files_read == before.files_total  # every small file spans every customer

    table.optimize().executeCompaction()
    # History names the Z-order columns as delta-spark does: none for a compaction.
    assert json.loads(table.history(1).first().operationParameters["zOrderBy"]) == []
    files_compacted = m.check_optimized(spark, copy, files_before=files_small, data_before=data)
    compacted = m.files_for_predicate(spark, copy, "customer_sk", customer)
    # Compaction alone does not cluster: the check for Z-order catches it.
    with pytest.raises(AssertionError, match="executeZOrderBy\\('customer_sk'\\)"):
        m.check_data_skipping(compacted, before, "customer_sk")
    with pytest.raises(AssertionError, match="Z-ordered by nothing"):
        m.check_optimized(
            spark, copy, files_before=files_small, data_before=data, z_order_by=["customer_sk"]
        )

    table.optimize().executeZOrderBy("customer_sk")
    row = table.history(1).first()
    assert row.operation == "OPTIMIZE"
    assert json.loads(row.operationParameters["zOrderBy"]) == ["customer_sk"]
    m.check_optimized(
        spark,
        copy,
        files_before=files_compacted,
        data_before=data,
        z_order_by=["customer_sk"],
    )
    after = m.files_for_predicate(spark, copy, "customer_sk", customer)
    assert 1 <= after.files_total < files_compacted
    m.check_data_skipping(after, before, "customer_sk")
    assert after.files_read < after.files_total
    with pytest.raises(AssertionError, match="a plain compaction"):
        m.check_optimized(spark, copy, files_before=files_small, data_before=data)


def test_z_order_by_the_wrong_column_fails_the_skipping_check(spark, copy):
    from lakehouse import DeltaTable

    customer = m.busiest_value(spark.table(copy), "customer_sk")
    before = m.files_for_predicate(spark, copy, "customer_sk", customer)
    DeltaTable.forName(spark, copy).optimize().executeZOrderBy("date_key")
    after = m.files_for_predicate(spark, copy, "customer_sk", customer)
    with pytest.raises(AssertionError, match="still reads"):
        m.check_data_skipping(after, before, "customer_sk")
    with pytest.raises(AssertionError, match=r"Z-ordered by \['date_key'\]"):
        m.check_optimized(
            spark,
            copy,
            files_before=100,
            data_before=m.fingerprint(spark.table(copy)),
            z_order_by=["customer_sk"],
        )


def test_check_optimized_catches_no_optimize_and_changed_data(spark, copy):
    from lakehouse import DeltaTable

    data = m.fingerprint(spark.table(copy))
    files = m.file_count(spark, copy)
    with pytest.raises(AssertionError, match="is SET TBLPROPERTIES, not OPTIMIZE"):
        m.check_optimized(spark, copy, files_before=files, data_before=data)
    DeltaTable.forName(spark, copy).optimize().executeCompaction()
    with pytest.raises(AssertionError, match="not fewer than"):
        m.check_optimized(spark, copy, files_before=1, data_before=data)
    # A "compaction" that lost a row, or changed a value, is caught by the fingerprint.
    with pytest.raises(AssertionError, match=f"has {ROWS} rows; expected {ROWS + 1}"):
        m.check_optimized(spark, copy, files_before=files, data_before=(ROWS + 1, data[1]))
    with pytest.raises(AssertionError, match="different values"):
        m.check_optimized(spark, copy, files_before=files, data_before=(ROWS, data[1] + 1))


# ------------------------------------------------------------------------------------------------
# Fingerprints, time travel, restore, vacuum, constraints
# ------------------------------------------------------------------------------------------------
def test_fingerprint_sees_any_changed_lost_or_duplicated_row(spark, source):
    df = spark.table(source)
    base = m.fingerprint(df)
    assert base == m.fingerprint(df.orderBy(F.desc("order_id")).repartition(3))
    changed = df.withColumn(
        "quantity",
        F.when(F.col("order_id") == "o00007", F.col("quantity") + 1).otherwise(F.col("quantity")),
    )
    assert m.fingerprint(changed)[0] == base[0] and m.fingerprint(changed) != base
    assert m.fingerprint(df.where("order_id <> 'o00007'")) != base
    assert m.fingerprint(df.unionByName(df.limit(1)))[0] == base[0] + 1
    assert m.fingerprint(df.where("false")) == (0, 0)
    nulls = df.withColumn("total", F.lit(None).cast("decimal(12,2)"))
    assert m.fingerprint(nulls) != base


def test_summary_and_busiest_value(spark, source):
    df = spark.table(source)
    row = m.sales_summary(df).first()
    assert (row.order_lines, row.orders, row.units, row.order_days) == (
        ROWS,
        ROWS // 3,
        sum(i % 5 + 1 for i in range(ROWS)),
        DAYS,
    )
    counts: dict[int, int] = {}
    for r in sales_rows():
        counts[r[3]] = counts.get(r[3], 0) + 1
    best = min(counts, key=lambda k: (-counts[k], k))
    assert m.busiest_value(df, "customer_sk") == best
    assert m.busiest_value(df, "customer_sk", exclude=[best]) != best
    with pytest.raises(ValueError, match="needs columns"):
        m.sales_summary(df.drop("quantity"))
    with pytest.raises(ValueError, match="'nope' is not a column"):
        m.busiest_value(df, "nope")


def test_restore_check_catches_the_wrong_version(spark, source, copy):
    from lakehouse import DeltaTable

    table = DeltaTable.forName(spark, copy)
    good_version = m.latest_operation(spark, copy)[0]
    good = m.fingerprint(spark.table(copy))
    # The bad write: one day's reload overwrites the whole table.
    spark.table(source).where("date_key = 20260103").write.format("delta").mode(
        "overwrite"
    ).saveAsTable(copy)
    bad_version = m.latest_operation(spark, copy)[0]
    with pytest.raises(AssertionError, match="is WRITE, not RESTORE"):
        m.check_restored(spark, copy, version=good_version, expected=good)
    m.check_same_data(spark.read.option("versionAsOf", good_version).table(copy), good, "v")

    table.restoreToVersion(bad_version - 2)  # one too early: before the properties were set
    with pytest.raises(AssertionError, match=f"restoreToVersion\\({good_version}\\)"):
        m.check_restored(spark, copy, version=good_version, expected=good)
    table.restoreToVersion(0)  # the empty table the builder created
    with pytest.raises(AssertionError, match=f"has 0 rows; expected {ROWS}"):
        m.check_same_data(spark.table(copy), good, "v0")
    table.restoreToVersion(good_version)
    m.check_restored(spark, copy, version=good_version, expected=good)


def test_vacuum_check_catches_a_vacuum_that_broke_time_travel(spark, copy):
    from lakehouse import DeltaTable

    table = DeltaTable.forName(spark, copy)
    data = m.fingerprint(spark.table(copy))
    table.optimize().executeCompaction()
    table.vacuum()
    m.check_time_travel_intact(spark, copy, 1, data)
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        table.vacuum(0)
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")
    with pytest.raises(AssertionError, match="can no longer be read"):
        m.check_time_travel_intact(spark, copy, 1, data)
    m.check_same_data(spark.table(copy), data, "current")  # the current version is intact


def test_check_constraint_rejects_a_bad_insert_and_the_check_proves_it(spark, copy):
    from lakehouse.tables import add_check_constraint, drop_check_constraint

    bad_rows = spark.table(copy).limit(1).withColumn("quantity", F.lit(0))
    bad_rows = spark.createDataFrame(bad_rows.collect(), bad_rows.schema)  # detach from copy

    def insert_bad_rows():
        try:
            bad_rows.write.format("delta").mode("append").saveAsTable(copy)
        except Exception as exc:
            return exc
        return None

    version = m.latest_operation(spark, copy)[0]
    data = m.fingerprint(spark.table(copy))
    # No constraint: the bad row lands; the check fails and puts the table back.
    error = insert_bad_rows()
    assert error is None
    with pytest.raises(AssertionError, match="no CHECK constraint quantity_positive"):
        m.check_bad_insert_rejected(
            spark, copy, "quantity_positive", error, version_before=version, data_before=data
        )
    m.check_same_data(spark.table(copy), data, "restored")

    # A constraint that lets 0 through is not enforced for this row.
    add_check_constraint(spark, copy, "quantity_positive", "quantity >= 0")
    version = m.latest_operation(spark, copy)[0]
    error = insert_bad_rows()
    with pytest.raises(AssertionError, match="was accepted"):
        m.check_bad_insert_rejected(
            spark, copy, "quantity_positive", error, version_before=version, data_before=data
        )
    drop_check_constraint(spark, copy, "quantity_positive")

    # The real constraint: rejected, nothing committed.
    add_check_constraint(spark, copy, "quantity_positive", "quantity > 0")
    version = m.latest_operation(spark, copy)[0]
    error = insert_bad_rows()
    assert error is not None
    line = m.check_bad_insert_rejected(
        spark, copy, "quantity_positive", error, version_before=version, data_before=data
    )
    assert "CHECK constraint quantity_positive (quantity > 0) violated" in line
    assert m.constraint_violation(None) is None
    with pytest.raises(AssertionError, match="not on constraint quantity_positive"):
        m.check_bad_insert_rejected(
            spark,
            copy,
            "quantity_positive",
            ValueError("disk full"),
            version_before=version,
            data_before=data,
        )


def test_target_file_size_is_the_session_setting_on_open_source_delta():
    """Open-source Delta refuses delta.targetFileSize; its OPTIMIZE reads a session setting."""
    from types import SimpleNamespace

    class Conf(dict):
        def set(self, key, value):
            self[key] = value

    session = SimpleNamespace(_lakehouse_engine="delta-spark", conf=Conf())
    m.set_target_file_size(session, "gold.any_table", 32 * 1024)
    assert session.conf == {m.OSS_MAX_FILE_SIZE: "32768"}
    with pytest.raises(ValueError, match="size_bytes must be a positive int, not 0"):
        m.set_target_file_size(session, "gold.any_table", 0)
