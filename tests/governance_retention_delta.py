"""lakehouse.governance.retention on delta-spark: the plan in SQL against the plan in pandas,
the purge with its reconciled runs (and a rerun after VACUUM), VACUUM ending time travel, the
incremental history copy, on a few rows either side of each cutoff. The lesson's catalogue of
wrong answers is proven caught by the notebook test's harness."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers.lesson_files import LessonFiles
from pyspark.sql import functions as F

from lakehouse.governance import retention as rt
from lakehouse.governance.classification import CLASSIFICATION_TABLE

ROOT = Path(__file__).resolve().parents[1]
LESSON = LessonFiles(ROOT / "solutions/06_governance/05_retention.ipynb")
AS_OF = "2026-06-30"


def ts(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day + "T12:00:00")


CUSTOMERS = [  # cutoff 2025-06-30 (365 days)
    ("C1", "a@example.com", "+1 202 555 0101", "US", "vip", ts("2024-01-05")),
    ("C2", "b@example.com", None, "DE", "consumer", ts("2025-06-29")),
    ("C3", "c@example.com", "+44 20 7946 0000", "GB", "consumer", dt.datetime(2025, 6, 30)),
    ("C4", "d@example.com", None, "FR", "consumer", ts("2026-06-01")),
]
PAYMENTS = [  # cutoff 2026-06-09 (21 days)
    (f"T{i}", "C1", ts(day), "grocery", "10.00", "USD", "visa", "1111", "approved")
    for i, day in enumerate(["2026-06-01", "2026-06-08", "2026-06-09", "2026-06-20", "2026-06-30"])
]
WEB_EVENTS = [  # cutoff 2026-05-31 (30 days, the table's own rule)
    (f"E{i}", "V1", None, ts(day), "page_view", url, "US")
    for i, (day, url) in enumerate(
        [
            ("2026-04-02", "https://shop.example.com/search?q=a@example.com"),
            ("2026-05-30", "https://shop.example.com/"),
            ("2026-05-31", "https://shop.example.com/cart"),
            ("2026-06-15", "https://shop.example.com/"),
        ]
    )
]
CLASSIFIED = [
    ("silver.customers", "email", "EMAIL_ADDRESS", "confidential", 0.9, "test"),
    ("silver.customers", "phone", "PHONE_NUMBER", "confidential", 0.9, "test"),
    ("silver.customers", "first_name", "PERSON_NAME", "confidential", 0.9, "not copied"),
    ("silver.payments", "card_last4", "CARD_LAST4", "internal", 0.85, "test"),
    ("silver.web_events", "page_url", "EMAIL_ADDRESS", "confidential", 1.0, "test"),
]


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(tmp_path_factory.mktemp("lake")))
    mp.setenv("LAKEHOUSE_CATALOG", "retention_tests")
    mp.setenv("LAKEHOUSE_METASTORE", "in-memory")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("delta-spark", scale="tiny")
    session.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    for schema in ("silver", "governance"):
        session.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    sources = {
        "silver.customers": (
            CUSTOMERS,
            "customer_id string, email string, phone string, country string, segment string, "
            "updated_at timestamp",
        ),
        "silver.payments": (
            PAYMENTS,
            "transaction_id string, customer_id string, event_ts timestamp, "
            "merchant_category string, amount string, currency string, card_network string, "
            "card_last4 string, status string",
        ),
        "silver.web_events": (
            WEB_EVENTS,
            "event_id string, visitor_id string, customer_id string, event_ts timestamp, "
            "event_type string, page_url string, country string",
        ),
        CLASSIFICATION_TABLE: (
            CLASSIFIED,
            "table_name string, column_name string, pii_class string, sensitivity string, "
            "confidence double, evidence string",
        ),
    }
    for name, (rows, ddl) in sources.items():
        session.createDataFrame(rows, ddl).write.format("delta").saveAsTable(name)
    yield session
    mp.undo()


def run_cell(spark, source: str, namespace: dict) -> None:
    namespace.update({"spark": spark, "rt": rt, "F": F, "print": lambda *a, **k: None})
    exec(source, namespace)  # noqa: S102 (the lesson's cells)


@pytest.fixture(scope="module")
def lesson(spark):
    """The lesson's state after its plan: policies, copies, classes, plan, as the notebook."""
    rt.write_policies(spark)
    pre_purge = rt.create_demo_tables(spark)
    classes = rt.table_classes(spark)
    rt.register_views(spark, classes)
    spark.sql(rt.plan_sql(AS_OF))
    plan = rt.read_plan(spark)
    return {"pre_purge": pre_purge, "classes": classes, "plan": plan, "as_of": AS_OF}


def test_the_classes_come_from_lesson_01_for_the_copied_columns_only(lesson):
    classes = lesson["classes"]
    assert "first_name" not in set(classes["column_name"])
    assert sorted(classes["table_name"].unique()) == sorted(t.name for t in rt.DEMO_TABLES)


def test_the_sql_plan_equals_the_pandas_plan(lesson):
    expected = rt.resolve_plan(lesson["classes"], rt.policies_frame(), rt.governed_frame(), AS_OF)
    assert rt.check_plan(lesson["plan"], expected).startswith("plan ok: 3")
    cutoffs = dict(zip(expected.table_name, expected.cutoff, strict=True))
    assert cutoffs == {
        "governance.retention_demo_customers": dt.date(2025, 6, 30),
        "governance.retention_demo_payments": dt.date(2026, 6, 9),
        "governance.retention_demo_web_events": dt.date(2026, 5, 31),
    }


def purge_namespace(lesson) -> dict:
    return {"as_of": AS_OF, "pre_purge": dict(lesson["pre_purge"])}


def test_the_purge_vacuum_and_history_solutions_pass_and_rerun(spark, lesson):
    namespace = purge_namespace(lesson)
    for _ in range(2):  # a rerun starts from the pre-purge state again
        run_cell(spark, LESSON.cell("t1purge1"), namespace)
        message = rt.check_purge(spark, lesson["plan"], AS_OF)
        assert message.startswith("purge ok: 6 rows older than their cutoff purged")
    runs = spark.table(rt.RUNS_TABLE).orderBy("table_name").collect()
    assert [(r.rows_before, r.rows_kept, r.rows_purged) for r in runs] == [
        (4, 2, 2),
        (5, 3, 2),
        (4, 2, 2),
    ]
    plan_rows = namespace["plan_rows"]
    for p in plan_rows:  # before VACUUM, the pre-purge version reads the purged rows
        version = namespace["pre_purge"][p.table_name]
        assert rt.time_travel(spark, p.table_name, version, p.time_column, p.cutoff) == 2
    with pytest.raises(AssertionError, match="still reads the 2 purged rows"):
        rt.check_vacuum(spark, lesson["plan"], namespace["pre_purge"])
    run_cell(spark, LESSON.cell("t2vacuum"), namespace)
    assert rt.check_vacuum(spark, lesson["plan"], namespace["pre_purge"]).startswith("vacuum ok")
    for p in plan_rows:
        assert rt.oldest_in_files(spark, p.table_name, p.time_column) >= p.cutoff
        assert rt.removed_files(spark, p.table_name) == 0

    run_cell(spark, LESSON.cell("t3history"), namespace)
    tables = namespace["tables"]
    copied = spark.table(rt.HISTORY_TABLE).count()
    assert 0 < namespace["added_first"] < copied  # the first table's versions were there
    assert rt.check_history(spark, tables, namespace["added_again"]).startswith("history ok")


def test_a_purge_without_the_retention_properties_is_caught(spark, lesson):
    namespace = purge_namespace(lesson)
    run_cell(spark, LESSON.cell("t1purge1"), namespace)
    spark.sql(
        "ALTER TABLE governance.retention_demo_payments UNSET TBLPROPERTIES "
        f"('{rt.DELETED_FILE_RETENTION}')"
    )
    with pytest.raises(AssertionError, match="retention_demo_payments: delta.deletedFile.*SET"):
        rt.check_purge(spark, lesson["plan"], AS_OF)


def test_enforce_runs_the_whole_job(spark, lesson):
    rt.create_demo_tables(spark)
    runs = rt.enforce(spark, AS_OF, vacuum_hours=0)
    assert runs["rows_purged"].tolist() == [2, 2, 2]
    assert rt.check_purge(spark, lesson["plan"], AS_OF).startswith("purge ok")
    props = rt.properties(spark, "governance.retention_demo_payments")
    assert props[rt.LOG_RETENTION] == "interval 14 days"
