"""Data-quality expectations with the semantics of Delta Live Tables (Lakeflow Declarative
Pipelines): named SQL constraints that warn, drop or fail, with pass/fail counts per rule and run
kept in a metrics table.

=================  ==============================  ====================================
action             what happens to failing rows    DLT form
=================  ==============================  ====================================
``warn``           kept; failures counted          ``@dlt.expect(name, constraint)``
``drop``           removed; failures counted       ``@dlt.expect_or_drop(name, ...)``
``fail``           nothing is written; raises      ``@dlt.expect_or_fail(name, ...)``
=================  ==============================  ====================================

A row *passes* an expectation only when its constraint is TRUE. A constraint that evaluates to
NULL (``amount > 0`` on a NULL amount) counts as a failure, as it would in a ``WHERE`` clause and
as a Delta ``CHECK`` constraint rejects it; write ``col IS NULL OR ...`` to let missing values
through on purpose.

Example::

    from lakehouse.silver import expectations as ex
    rules = [
        ex.expect("amount_under_10k", "amount < 10000"),
        ex.expect_or_drop("supported_currency", "currency IN ('USD', 'EUR')"),
        ex.expect_or_fail("has_id", "transaction_id IS NOT NULL"),
    ]
    checked = ex.apply_expectations(spark, payments_df, rules, table="silver.payments")
    checked.df.write.format("delta").mode("overwrite").saveAsTable("silver.payments")
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

ACTIONS = ("warn", "drop", "fail")
DQ_METRICS_TABLE = "silver.dq_metrics"
DQ_METRICS_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("table_name", StringType(), False),
        StructField("rule", StringType(), False),
        StructField("constraint", StringType(), False),
        StructField("action", StringType(), False),
        StructField("passed", LongType(), False),
        StructField("failed", LongType(), False),
        StructField("recorded_at", TimestampType(), False),
    ]
)
SAMPLE_KEYS = 5


@dataclass(frozen=True)
class Expectation:
    """A named SQL constraint and what to do with rows that fail it."""

    name: str
    constraint: str
    action: str = "warn"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"expectation name {self.name!r} must be a non-empty string")
        if not isinstance(self.constraint, str) or not self.constraint.strip():
            raise ValueError(
                f"expectation {self.name!r}: the constraint must be a SQL boolean expression "
                f"as a string, e.g. 'amount >= 0', not {self.constraint!r}"
            )
        if self.action not in ACTIONS:
            raise ValueError(
                f"expectation {self.name!r}: unknown action {self.action!r}: use one of {ACTIONS}"
            )

    @property
    def failed_condition(self):
        """TRUE when a row fails: the constraint is FALSE *or NULL*."""
        return ~F.coalesce(F.expr(self.constraint), F.lit(False))


def expect(name: str, constraint: str) -> Expectation:
    """Keep failing rows, count them (``@dlt.expect``)."""
    return Expectation(name, constraint, "warn")


def expect_or_drop(name: str, constraint: str) -> Expectation:
    """Drop failing rows, count them (``@dlt.expect_or_drop``)."""
    return Expectation(name, constraint, "drop")


def expect_or_fail(name: str, constraint: str) -> Expectation:
    """Stop before writing anything if a row fails (``@dlt.expect_or_fail``)."""
    return Expectation(name, constraint, "fail")


def expect_all(rules: Mapping[str, str]) -> list[Expectation]:
    """``{name: constraint}`` -> warn expectations (``@dlt.expect_all``)."""
    return [expect(n, c) for n, c in rules.items()]


def expect_all_or_drop(rules: Mapping[str, str]) -> list[Expectation]:
    """``{name: constraint}`` -> drop expectations (``@dlt.expect_all_or_drop``)."""
    return [expect_or_drop(n, c) for n, c in rules.items()]


def expect_all_or_fail(rules: Mapping[str, str]) -> list[Expectation]:
    """``{name: constraint}`` -> fail expectations (``@dlt.expect_all_or_fail``)."""
    return [expect_or_fail(n, c) for n, c in rules.items()]


class ExpectationViolation(Exception):
    """An ``expect_or_fail`` rule failed: nothing was written.

    Carries ``table``, ``rule``, ``constraint``, ``failed`` (row count) and ``sample_keys``.
    """

    def __init__(self, table: str, rule: str, constraint: str, failed: int, sample_keys: list):
        self.table, self.rule, self.constraint = table, rule, constraint
        self.failed, self.sample_keys = failed, sample_keys
        keys = f", e.g. keys {sample_keys}" if sample_keys else ""
        super().__init__(
            f"expectation {rule!r} ({constraint}) failed for {failed} row(s) of {table}{keys}: "
            "nothing was written. Fix the data or the rule, or make it expect/expect_or_drop."
        )


@dataclass(frozen=True)
class RuleResult:
    rule: str
    constraint: str
    action: str
    passed: int
    failed: int


@dataclass(frozen=True)
class ExpectationsRun:
    """What :func:`apply_expectations` measured, and the rows to write."""

    run_id: str
    table: str
    rows: int  # rows in
    results: tuple[RuleResult, ...]
    df: DataFrame = field(repr=False)  # rows out: the input without the rows a drop rule failed

    def result(self, rule: str) -> RuleResult:
        for r in self.results:
            if r.rule == rule:
                return r
        raise KeyError(
            f"no rule {rule!r} in this run: its rules are {[r.rule for r in self.results]}"
        )


def _check_rules(expectations: Sequence[Expectation]) -> list[Expectation]:
    rules = list(expectations)
    if not rules:
        raise ValueError(
            "no expectations given: pass a list such as [expect('id', 'id IS NOT NULL')]"
        )
    for rule in rules:
        if not isinstance(rule, Expectation):
            raise TypeError(
                f"{rule!r} is not an Expectation: build it with expect(), expect_or_drop() or "
                "expect_or_fail()"
            )
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"expectation names must be unique per table; repeated: {duplicates}")
    return rules


def count_failures(df: DataFrame, expectations: Sequence[Expectation]) -> tuple[int, list[int]]:
    """Rows in, and the failing rows per rule, in ONE aggregation pass over ``df`` (a job per
    rule would read the data once per rule)."""
    rules = _check_rules(expectations)
    row = df.agg(
        F.count(F.lit(1)).alias("rows"),
        *[F.count_if(r.failed_condition).alias(f"failed_{i}") for i, r in enumerate(rules)],
    ).first()
    return row["rows"], [row[f"failed_{i}"] for i in range(len(rules))]


def _sample_keys(df: DataFrame, rule: Expectation, key: Sequence[str]) -> list:
    if not key:
        return []
    rows = (
        df.where(rule.failed_condition)
        .select(F.concat_ws(":", *[F.col(k).cast("string") for k in key]).alias("k"))
        .orderBy("k")
        .limit(SAMPLE_KEYS)
        .collect()
    )
    return [r["k"] for r in rows]


def record_metrics(
    spark: SparkSession,
    run_id: str,
    table: str,
    results: Iterable[RuleResult],
    *,
    metrics_table: str = DQ_METRICS_TABLE,
) -> None:
    """Append one row per rule to the metrics table (one commit)."""
    rows = [(run_id, table, r.rule, r.constraint, r.action, r.passed, r.failed) for r in results]
    schema = StructType(DQ_METRICS_SCHEMA.fields[:-1])
    metrics_df = spark.createDataFrame(rows, schema).withColumn(
        "recorded_at", F.current_timestamp()
    )
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {metrics_table.split('.')[0]}")
    metrics_df.write.format("delta").mode("append").saveAsTable(metrics_table)


def apply_expectations(
    spark: SparkSession,
    df: DataFrame,
    expectations: Sequence[Expectation],
    *,
    table: str,
    key: Sequence[str] = (),
    run_id: str | None = None,
    metrics_table: str = DQ_METRICS_TABLE,
) -> ExpectationsRun:
    """Evaluate every expectation on ``df`` in one pass, record the counts in ``metrics_table``
    and return the run, whose ``df`` holds the rows to write to ``table`` (drop rules applied).

    If an ``expect_or_fail`` rule fails, its counts are recorded (so the failure is visible in
    the metrics, as in a pipeline's event log) and :class:`ExpectationViolation` is raised before
    anything reaches ``table``. ``key`` names the columns that identify a row in the error.
    """
    rules = _check_rules(expectations)
    missing = [k for k in key if k not in df.columns]
    if missing:
        raise ValueError(f"key columns {missing} are not in the DataFrame for {table!r}")
    run_id = run_id or str(uuid.uuid4())
    rows, failures = count_failures(df, rules)
    results = tuple(
        RuleResult(r.name, r.constraint, r.action, rows - failed, failed)
        for r, failed in zip(rules, failures)
    )
    record_metrics(spark, run_id, table, results, metrics_table=metrics_table)
    for rule, result in zip(rules, results):
        if rule.action == "fail" and result.failed:
            raise ExpectationViolation(
                table, rule.name, rule.constraint, result.failed, _sample_keys(df, rule, key)
            )
    kept = df
    for rule in rules:
        if rule.action == "drop":
            kept = kept.where(~rule.failed_condition)
    return ExpectationsRun(run_id, table, rows, results, kept)


def write_with_expectations(
    spark: SparkSession,
    df: DataFrame,
    expectations: Sequence[Expectation],
    *,
    table: str,
    key: Sequence[str] = (),
    run_id: str | None = None,
    metrics_table: str = DQ_METRICS_TABLE,
) -> ExpectationsRun:
    """:func:`apply_expectations`, then overwrite ``table`` with the rows kept. A failing
    ``expect_or_fail`` rule raises before the write, so ``table`` keeps its current version."""
    run = apply_expectations(
        spark, df, expectations, table=table, key=key, run_id=run_id, metrics_table=metrics_table
    )
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    (
        run.df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .saveAsTable(table)
    )
    return run


def metrics_of(spark: SparkSession, run_id: str, *, metrics_table: str = DQ_METRICS_TABLE):
    """The metrics rows of one run, ordered by rule."""
    return spark.table(metrics_table).where(F.col("run_id") == run_id).orderBy("rule")
