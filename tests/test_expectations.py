"""Expectations with DLT semantics: warn keeps and counts, drop removes and counts, fail raises
before anything is written; NULL counts as a failure; one aggregation pass; metrics per run."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.silver import expectations as ex


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "expectations_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


PAYMENTS = "id string, amount double, currency string"
ROWS = [
    ("t1", 10.0, "USD"),
    ("t2", -5.0, "USD"),
    ("t3", None, "EUR"),  # amount > 0 is NULL here: a failure
    ("t4", 20.0, "XXX"),
    ("t5", -0.0, None),  # negative zero is not below zero; currency IN (...) is NULL
]


@pytest.fixture(scope="module")
def payments(spark):
    return spark.createDataFrame(ROWS, PAYMENTS)


def test_warn_keeps_rows_and_counts_null_as_failure(spark, payments):
    run = ex.apply_expectations(
        spark, payments, [ex.expect("positive", "amount > 0")], table="silver.t_warn"
    )
    assert run.rows == 5
    assert run.result("positive") == ex.RuleResult("positive", "amount > 0", "warn", 2, 3)
    assertDataFrameEqual(run.df, payments)


def test_drop_removes_failing_rows_including_nulls(spark, payments):
    rules = [
        ex.expect_or_drop("known_currency", "currency IN ('USD', 'EUR')"),
        ex.expect("not_negative", "amount >= 0"),
    ]
    run = ex.apply_expectations(spark, payments, rules, table="silver.t_drop")
    assert [(r.rule, r.passed, r.failed) for r in run.results] == [
        ("known_currency", 3, 2),
        ("not_negative", 3, 2),  # t2 fails, t3 is NULL; -0.0 >= 0 passes
    ]
    assert sorted(r["id"] for r in run.df.collect()) == ["t1", "t2", "t3"]


def test_a_null_tolerant_constraint_passes_missing_values(spark, payments):
    rules = [ex.expect("not_negative_if_known", "amount IS NULL OR amount >= 0")]
    run = ex.apply_expectations(spark, payments, rules, table="silver.t_null_ok")
    assert run.result("not_negative_if_known").failed == 1


def test_fail_raises_with_rule_count_and_sample_keys_and_writes_nothing(spark, payments):
    spark.createDataFrame([("old", 1.0, "USD")], PAYMENTS).write.format("delta").mode(
        "overwrite"
    ).saveAsTable("silver.t_fail")
    rules = [ex.expect("positive", "amount > 0"), ex.expect_or_fail("has_amount", "amount > 0")]
    with pytest.raises(
        ex.ExpectationViolation, match=r"'has_amount' \(amount > 0\) failed for 3 "
    ) as err:
        ex.write_with_expectations(
            spark, payments, rules, table="silver.t_fail", key=["id"], run_id="fail-run"
        )
    assert err.value.sample_keys == ["t2", "t3", "t5"]
    assert err.value.failed == 3
    assert [r["id"] for r in spark.table("silver.t_fail").collect()] == ["old"]
    # the failed run is still visible in the metrics
    recorded = ex.metrics_of(spark, "fail-run").select("rule", "action", "failed").collect()
    assert [tuple(r) for r in recorded] == [("has_amount", "fail", 3), ("positive", "warn", 3)]


def test_fail_that_passes_writes_the_kept_rows_and_records_metrics(spark, payments):
    rules = [
        ex.expect_or_fail("has_id", "id IS NOT NULL"),
        ex.expect_or_drop("known_currency", "currency IN ('USD', 'EUR')"),
    ]
    run = ex.write_with_expectations(spark, payments, rules, table="silver.t_ok", run_id="ok-run")
    assert spark.table("silver.t_ok").count() == 3
    metrics = ex.metrics_of(spark, run.run_id).collect()
    assert [(m["table_name"], m["rule"], m["passed"], m["failed"]) for m in metrics] == [
        ("silver.t_ok", "has_id", 5, 0),
        ("silver.t_ok", "known_currency", 3, 2),
    ]
    assert all(m["recorded_at"] is not None for m in metrics)
    assert (
        spark.table(ex.DQ_METRICS_TABLE).schema == ex.DQ_METRICS_SCHEMA
        or [f.name for f in spark.table(ex.DQ_METRICS_TABLE).schema.fields]
        == ex.DQ_METRICS_SCHEMA.fieldNames()
    )


def test_counts_come_from_one_aggregation(spark, payments):
    rules = ex.expect_all({"a": "amount > 0", "b": "currency = 'USD'", "c": "id LIKE 't%'"})
    rows, failed = ex.count_failures(payments, rules)
    assert (rows, failed) == (5, [3, 3, 0])
    # independent recount, one job per rule, must agree
    for rule, n in zip(rules, failed):
        assert payments.where(F.expr(rule.constraint)).count() == rows - n


def test_expect_all_variants_set_the_action():
    rules = {"a": "x > 0"}
    assert ex.expect_all(rules)[0].action == "warn"
    assert ex.expect_all_or_drop(rules)[0].action == "drop"
    assert ex.expect_all_or_fail(rules)[0].action == "fail"


def test_bad_rules_are_refused_with_a_helpful_message(spark, payments):
    with pytest.raises(ValueError, match="unknown action 'quarantine'"):
        ex.Expectation("a", "x > 0", "quarantine")
    with pytest.raises(ValueError, match="SQL boolean expression as a string"):
        ex.expect("a", F.col("x") > 0)
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        ex.count_failures(payments, [ex.expect("a", "id > 0"), ex.expect_or_drop("a", "1 = 1")])
    with pytest.raises(ValueError, match="no expectations given"):
        ex.count_failures(payments, [])
    with pytest.raises(ValueError, match=r"key columns \['nope'\]"):
        ex.apply_expectations(spark, payments, [ex.expect("a", "1 = 1")], table="t", key=["nope"])


def test_a_check_that_ignores_nulls_would_be_caught(spark, payments):
    """The notebook's check recomputes failures as NOT coalesce(constraint, false); a rule
    evaluator that filters on NOT constraint (forgetting NULL) counts fewer failures."""
    rule = ex.expect("positive", "amount > 0")
    _, (failed,) = ex.count_failures(payments, [rule])
    forgets_nulls = payments.where(~F.expr(rule.constraint)).count()
    assert forgets_nulls == 2 != failed == 3
