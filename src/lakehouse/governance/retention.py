"""Retention: how long each kind of data is kept, as data, and a purge job that proves it.

Lesson 06_governance/05::

    governance.retention_policies  one row per data class of lesson 01 (and NO_PII), or per
                                   table (an override): rows kept (keep_days), the Delta log's
                                   and deleted files' retention, and the reason (the rule)
    governance.retention_plan      per governed table: its class (its most sensitive column's),
                                   the policy in force, the age column and the cutoff, computed
                                   from an ``as_of`` date, never from the clock
    governance.retention_runs      per run date and table: rows before = rows kept + rows purged
    governance.table_history       DESCRIBE HISTORY of every governed table, MERGEd on
                                   (table_name, version): kept after the log itself expires
    governance.retention_evidence  what was proven, one row each

The purged tables are the lesson's own small copies (``governance.retention_demo_*``),
rebuilt on every run from a few dozen rows of Silver frozen once in ``governance.
retention_source_*``: a purge of the real Silver tables would rob the course's later lessons
of their data, and a rerun would have nothing left to purge.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.governance import GOVERNANCE_SCHEMA
from lakehouse.governance.classification import CLASSES, CLASSIFICATION_TABLE, sensitivity_rank

LESSON = "06_governance/05"
POLICIES_TABLE = f"{GOVERNANCE_SCHEMA}.retention_policies"
PLAN_TABLE = f"{GOVERNANCE_SCHEMA}.retention_plan"
RUNS_TABLE = f"{GOVERNANCE_SCHEMA}.retention_runs"
HISTORY_TABLE = f"{GOVERNANCE_SCHEMA}.table_history"
EVIDENCE_TABLE = f"{GOVERNANCE_SCHEMA}.retention_evidence"
CLASSES_VIEW = "retention_classes"  # (table_name, column_name, pii_class, sensitivity, rank)
GOVERNED_VIEW = "governed_tables"  # (table_name, time_column)
NO_PII = "NO_PII"  # the class of a table none of whose columns is classified
LOG_RETENTION = "delta.logRetentionDuration"
DELETED_FILE_RETENTION = "delta.deletedFileRetentionDuration"


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Policy:
    """One retention rule: for a data class (``scope`` 'class') or one table ('table')."""

    scope: str
    target: str
    keep_days: int
    log_retention: str
    deleted_file_retention: str
    reason: str
    time_column: str | None = None  # a table's rule may name its age column


_GDPR = "GDPR Art. 5(1)(e) storage limitation: contact data kept while the customer is active"
_ONLINE = "GDPR and ePrivacy: online identifiers kept for fraud and security only"
_PCI = "PCI DSS 3.2.1: card data kept no longer than the business need, purged quarterly"
_PCI_SAD = "PCI DSS 3.3.1: sensitive authentication data never stored after authorization"
_BUSINESS = "business rule: aggregates without PII feed four months of dashboards"
_AML = "EU AML Directive Art. 40: payment records kept 5 years after the relationship ends"
_SHORT = ("interval 30 days", "interval 7 days")  # log, deleted files: Delta's defaults
_CARD = ("interval 14 days", "interval 2 days")  # card data: the shortest time travel
_NONE = ("interval 90 days", "interval 30 days")  # no PII: a long time travel for audits

# The days are scaled to the generated data, which spans six months (payments: June only);
# the reasons are the rules that apply. A real policy's numbers come from legal counsel.
POLICIES: tuple[Policy, ...] = (
    Policy("class", "PERSON_NAME", 365, *_SHORT, _GDPR),
    Policy("class", "EMAIL_ADDRESS", 365, *_SHORT, _GDPR),
    Policy("class", "PHONE_NUMBER", 365, *_SHORT, _GDPR),
    Policy("class", "STREET_ADDRESS", 365, *_SHORT, _GDPR),
    Policy("class", "POSTAL_CODE", 365, *_SHORT, _GDPR),
    Policy("class", "DATE_OF_BIRTH", 365, *_SHORT, _GDPR),
    Policy("class", "IP_ADDRESS", 90, *_SHORT, _ONLINE),
    Policy("class", "DEVICE_ID", 90, *_SHORT, _ONLINE),
    Policy("class", "IBAN_CODE", 1825, *_SHORT, _AML),
    Policy("class", "CARD_LAST4", 21, *_CARD, _PCI),
    Policy("class", "CREDIT_CARD", 21, *_CARD, _PCI),
    Policy("class", "CVV", 0, *_CARD, _PCI_SAD),
    Policy("class", "TRACK_DATA", 0, *_CARD, _PCI_SAD),
    Policy("class", "PIN", 0, *_CARD, _PCI_SAD),
    Policy("class", NO_PII, 120, *_NONE, _BUSINESS),
    Policy(
        "table",
        f"{GOVERNANCE_SCHEMA}.retention_demo_customers",
        180,
        *_SHORT,
        "GDPR Art. 5(1)(c) data minimisation: the marketing copy of contacts kept 180 days "
        "after their last update",
        "updated_on",
    ),
)  # fmt: skip
POLICY_COLUMNS = (
    "scope target keep_days time_column log_retention deleted_file_retention reason".split()
)
POLICY_SCHEMA = (
    "scope string, target string, keep_days int, time_column string, log_retention string, "
    "deleted_file_retention string, reason string"
)


def policies_frame(policies: Iterable[Policy] = POLICIES) -> pd.DataFrame:
    """The policies as a table, one row each, in :data:`POLICY_COLUMNS` order."""
    return pd.DataFrame(
        [{c: getattr(p, c) for c in POLICY_COLUMNS} for p in policies], columns=POLICY_COLUMNS
    )


_INTERVAL = re.compile(r"^interval \d+ (hours?|days?|weeks?)$")


def check_policies(policies_pdf: pd.DataFrame) -> str:
    """Every class of lesson 01 (and :data:`NO_PII`) has exactly one rule, every duration is
    a Delta interval, every rule gives its reason; the message names the row to fix."""
    classes = policies_pdf[policies_pdf["scope"] == "class"]
    missing = sorted({*CLASSES, NO_PII} - set(classes["target"]))
    if missing:
        raise AssertionError(
            f"no retention rule for the classes {missing}: add one 'class' row each "
            "(a table holding such a column would have no rule)"
        )
    twice = sorted(policies_pdf[policies_pdf.duplicated(["scope", "target"])]["target"])
    if twice:
        raise AssertionError(f"{twice} have more than one rule: keep one row per scope and target")
    unknown = sorted(set(policies_pdf["scope"]) - {"class", "table"})
    if unknown:
        raise AssertionError(f"unknown scopes {unknown}: use 'class' or 'table'")
    for row in policies_pdf.itertuples(index=False):
        for name in ("log_retention", "deleted_file_retention"):
            value = getattr(row, name)
            if not isinstance(value, str) or not _INTERVAL.match(value):
                raise AssertionError(
                    f"{row.target}: {name} = {value!r} is not a Delta interval such as "
                    "'interval 30 days'"
                )
        if not isinstance(row.keep_days, int | float) or row.keep_days < 0:
            raise AssertionError(f"{row.target}: keep_days = {row.keep_days!r}: a number >= 0")
        if not str(row.reason or "").strip():
            raise AssertionError(f"{row.target} has no reason: name the rule it applies")
    return (
        f"policies ok: {len(classes)} class rules (every class of lesson 01 and {NO_PII}), "
        f"{len(policies_pdf) - len(classes)} table override(s), each with its reason"
    )


def write_policies(spark: SparkSession, policies: Iterable[Policy] = POLICIES) -> str:
    """Overwrite ``governance.retention_policies`` (a rerun leaves the same table)."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    rows = policies_frame(policies).astype(object).where(lambda f: f.notna(), None)
    (
        spark.createDataFrame(rows.to_dict("records"), POLICY_SCHEMA)
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .saveAsTable(POLICIES_TABLE)
    )
    return POLICIES_TABLE


# --------------------------------------------------------------------------- governed tables


@dataclass(frozen=True)
class DemoTable:
    """A lesson copy: the small frozen sample of Silver it is rebuilt from, how that sample
    is chosen (once), and which column measures a row's age (a date: a row exactly at the
    cutoff is kept)."""

    name: str
    source: str
    silver: str
    pick: str  # the SELECT over Silver that chooses the sample
    time_column: str


DEMO_TABLES: tuple[DemoTable, ...] = (
    DemoTable(
        f"{GOVERNANCE_SCHEMA}.retention_demo_customers",
        f"{GOVERNANCE_SCHEMA}.retention_source_customers",
        "silver.customers",
        "SELECT customer_id, email, phone, country, segment, to_date(updated_at) AS updated_on "
        "FROM silver.customers ORDER BY customer_id LIMIT 48",
        "updated_on",
    ),
    DemoTable(
        f"{GOVERNANCE_SCHEMA}.retention_demo_payments",
        f"{GOVERNANCE_SCHEMA}.retention_source_payments",
        "silver.payments",
        # two payments a day (the first by id): every day of June, the cutoff's included
        "SELECT transaction_id, customer_id, payment_date, merchant_category, amount, currency, "
        "card_network, card_last4, status FROM (SELECT *, to_date(event_ts) AS payment_date, "
        "row_number() OVER (PARTITION BY to_date(event_ts) ORDER BY transaction_id) AS n "
        "FROM silver.payments) WHERE n <= 2 ORDER BY transaction_id",
        "payment_date",
    ),
)


def ensure_sources(spark: SparkSession, raw_root) -> list[str]:
    """The copies' small samples of Silver, chosen once (``CREATE TABLE IF NOT EXISTS``):
    Silver is read, and built when missing, only when a sample does not exist yet. Returns
    the samples' names."""
    from lakehouse.gold import ensure_silver_inputs

    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    missing = [t for t in DEMO_TABLES if not spark.catalog.tableExists(t.source)]
    if missing:
        ensure_silver_inputs(spark, sorted({t.silver for t in missing}), raw_root)
    for table in missing:
        spark.sql(f"CREATE TABLE IF NOT EXISTS {table.source} USING delta AS {table.pick}")
    return [t.source for t in DEMO_TABLES]


def create_demo_tables(
    spark: SparkSession, tables: Sequence[DemoTable] = DEMO_TABLES
) -> dict[str, int]:
    """(Re)create the lesson's copies from their small samples, nothing purged, no retention
    properties set (``CREATE OR REPLACE`` drops the old ones); returns each copy's version.
    Deletion vectors off: a DELETE rewrites the files that held the purged rows, and VACUUM
    can then remove the old files."""
    for table in tables:
        spark.sql(
            f"CREATE OR REPLACE TABLE {table.name} USING delta "
            "TBLPROPERTIES ('delta.enableDeletionVectors' = 'false') "
            f"AS SELECT * FROM {table.source}"
        )
    return table_versions(spark, [t.name for t in tables])


def purged_copies(spark: SparkSession, plan_rows: Sequence) -> dict[str, int]:
    """The VACUUM task's starting state: the copies purged and given their rule's retention,
    no file removed since. A copy whose last commits are that DELETE and that ALTER TABLE (then
    only VACUUMs that deleted nothing) is in that state already; otherwise every copy is
    rebuilt and purged again. Returns each copy's version before the purge."""
    names = sorted({p.table_name for p in plan_rows})
    before = {}
    for name in names:
        ops = []
        for r in spark.sql(f"DESCRIBE HISTORY {name} LIMIT 8").collect():
            if r.operation == "VACUUM END" and int(r.operationMetrics["numDeletedFiles"]) == 0:
                continue
            if r.operation != "VACUUM START":
                ops.append((r.operation, int(r.version)))
        if [op for op, _ in ops[:2]] == ["SET TBLPROPERTIES", "DELETE"]:
            before[name] = ops[1][1] - 1
    if set(before) == set(names):
        return before
    before = create_demo_tables(spark, [t for t in DEMO_TABLES if t.name in names])
    for p in plan_rows:
        spark.sql(delete_sql(p.table_name, p.time_column, p.cutoff))
        spark.sql(retention_sql(p.table_name, p.log_retention, p.deleted_file_retention))
    return before


def governed_frame(tables: Sequence[DemoTable] = DEMO_TABLES) -> pd.DataFrame:
    return pd.DataFrame(
        [(t.name, t.time_column) for t in tables], columns=["table_name", "time_column"]
    )


# --------------------------------------------------------------------------- classes

CLASS_COLUMNS = ["table_name", "column_name", "pii_class", "sensitivity", "sensitivity_rank"]

# In production the classes are lesson 01's: the classification of the governed tables
# themselves, joined to the tables the job governs.
PRODUCTION_CLASSES_SQL = f"""SELECT g.table_name, c.column_name, c.pii_class, c.sensitivity
FROM {GOVERNED_VIEW} AS g
JOIN {CLASSIFICATION_TABLE} AS c ON c.table_name = g.table_name"""


def classify_copies(
    spark: SparkSession, tables: Sequence[DemoTable] = DEMO_TABLES, *, progress=None
) -> pd.DataFrame:
    """The classified columns of each copy (:data:`CLASS_COLUMNS`), found by lesson 01's
    scan (its sample, its detectors, its rule) over the copy's few dozen rows as its sample
    holds them (a copy is its sample before the purge): always the same way, whether lesson
    01 ran or not."""
    from lakehouse.governance import classification as gc

    columns = pd.DataFrame(
        [
            (t.source, name, kind)
            for t in tables
            for name, kind in spark.table(t.source).dtypes
            if kind in gc.SCANNED_TYPES
        ],
        columns=["table_name", "column_name", "data_type"],
    )
    found = gc.classify(gc.scan(spark, columns, progress=progress))
    found["table_name"] = found["table_name"].map({t.source: t.name for t in tables})
    found = found[["table_name", "column_name", "pii_class", "sensitivity"]].copy()
    found["sensitivity_rank"] = found["sensitivity"].map(sensitivity_rank).astype(int)
    return found.sort_values(["table_name", "column_name", "pii_class"], ignore_index=True)


def register_views(
    spark: SparkSession, classes_pdf: pd.DataFrame, tables: Sequence[DemoTable] = DEMO_TABLES
) -> None:
    """``retention_classes`` and ``governed_tables``: the plan's inputs as temporary views."""
    schema = (
        "table_name string, column_name string, pii_class string, sensitivity string, "
        "sensitivity_rank int"
    )
    spark.createDataFrame(
        classes_pdf[CLASS_COLUMNS].to_dict("records"), schema
    ).createOrReplaceTempView(CLASSES_VIEW)
    spark.createDataFrame(
        governed_frame(tables).to_dict("records"), "table_name string, time_column string"
    ).createOrReplaceTempView(GOVERNED_VIEW)


# --------------------------------------------------------------------------- the plan

PLAN_COLUMNS = (
    "table_name pii_class policy_scope time_column keep_days cutoff log_retention "
    "deleted_file_retention reason"
).split()


def as_of_date(as_of: str | dt.date) -> dt.date:
    """``as_of`` as a date; a bad value is an error naming the format."""
    if isinstance(as_of, dt.datetime):
        return as_of.date()
    if isinstance(as_of, dt.date):
        return as_of
    try:
        return dt.date.fromisoformat(str(as_of))
    except ValueError:
        raise ValueError(f"as_of {as_of!r}: give a date as 'YYYY-MM-DD'") from None


def resolve_plan(
    classes_pdf: pd.DataFrame,
    policies_pdf: pd.DataFrame,
    governed_pdf: pd.DataFrame,
    as_of: str | dt.date,
) -> pd.DataFrame:
    """The plan in pandas: each governed table takes its most sensitive column's class (on a
    tie, the class whose rule keeps rows the shortest, then by name; :data:`NO_PII` when no
    column is classified), that class's rule unless a 'table' rule names the table, and
    ``cutoff = as_of - keep_days``: rows older than the cutoff (``time_column < cutoff``) go.
    The reference :func:`plan_sql` is checked against."""
    day = as_of_date(as_of)
    rules = policies_pdf.set_index(["scope", "target"])
    rows = []
    for table in governed_pdf.itertuples(index=False):
        mine = classes_pdf[classes_pdf["table_name"] == table.table_name]
        if mine.empty:
            pii_class = NO_PII
        else:
            keep = [int(rules.loc[("class", c), "keep_days"]) for c in mine["pii_class"]]
            ranked = mine.assign(
                rank=mine["sensitivity"].map(sensitivity_rank), keep_days=keep
            ).sort_values(["rank", "keep_days", "pii_class"], ascending=[False, True, True])
            pii_class = ranked.iloc[0]["pii_class"]
        scope = "table" if ("table", table.table_name) in rules.index else "class"
        rule = rules.loc[(scope, table.table_name if scope == "table" else pii_class)]
        time_column = rule["time_column"] if isinstance(rule["time_column"], str) else None
        rows.append(
            {
                "table_name": table.table_name,
                "pii_class": pii_class,
                "policy_scope": scope,
                "time_column": time_column or table.time_column,
                "keep_days": int(rule["keep_days"]),
                "cutoff": day - dt.timedelta(days=int(rule["keep_days"])),
                "log_retention": rule["log_retention"],
                "deleted_file_retention": rule["deleted_file_retention"],
                "reason": rule["reason"],
            }
        )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS).sort_values("table_name", ignore_index=True)


def plan_sql(as_of: str | dt.date) -> str:
    """``governance.retention_plan`` in SQL, from ``retention_classes``, ``governed_tables``
    and ``governance.retention_policies``. Lesson 05 shows it; :func:`resolve_plan` is the
    same rule in pandas."""
    day = as_of_date(as_of).isoformat()
    return f"""CREATE OR REPLACE TABLE {PLAN_TABLE} USING delta AS
WITH candidates AS (
  SELECT g.table_name, g.time_column,
         coalesce(c.pii_class, '{NO_PII}') AS pii_class,
         row_number() OVER (
           PARTITION BY g.table_name
           ORDER BY coalesce(c.sensitivity_rank, -1) DESC, p.keep_days, c.pii_class
         ) AS pick
  FROM {GOVERNED_VIEW} AS g
  LEFT JOIN {CLASSES_VIEW} AS c ON c.table_name = g.table_name
  JOIN {POLICIES_TABLE} AS p
    ON p.scope = 'class' AND p.target = coalesce(c.pii_class, '{NO_PII}')
)
SELECT t.table_name, t.pii_class,
       CASE WHEN o.target IS NULL THEN 'class' ELSE 'table' END AS policy_scope,
       coalesce(o.time_column, t.time_column) AS time_column,
       coalesce(o.keep_days, p.keep_days) AS keep_days,
       date_sub(DATE '{day}', coalesce(o.keep_days, p.keep_days)) AS cutoff,
       coalesce(o.log_retention, p.log_retention) AS log_retention,
       coalesce(o.deleted_file_retention, p.deleted_file_retention) AS deleted_file_retention,
       coalesce(o.reason, p.reason) AS reason
FROM candidates AS t
JOIN {POLICIES_TABLE} AS p ON p.scope = 'class' AND p.target = t.pii_class
LEFT JOIN {POLICIES_TABLE} AS o ON o.scope = 'table' AND o.target = t.table_name
WHERE t.pick = 1"""


def read_plan(spark: SparkSession) -> pd.DataFrame:
    plan = spark.table(PLAN_TABLE).toPandas()
    return plan.sort_values("table_name", ignore_index=True)


def check_plan(plan_pdf: pd.DataFrame, expected_pdf: pd.DataFrame) -> str:
    """The plan as written against the expected one, column by column; the message names the
    table and the likely cause."""
    missing = [c for c in PLAN_COLUMNS if c not in plan_pdf.columns]
    if missing:
        raise AssertionError(f"{PLAN_TABLE} lacks the columns {missing}: {PLAN_COLUMNS}")
    got = plan_pdf.set_index("table_name")
    absent = sorted(set(expected_pdf["table_name"]) - set(got.index))
    if absent or len(got) != len(expected_pdf):
        raise AssertionError(
            f"{PLAN_TABLE} has {len(got)} rows for {len(expected_pdf)} governed tables "
            f"(missing: {absent}): one row per governed table"
        )
    for row in expected_pdf.itertuples(index=False):
        mine = got.loc[row.table_name]
        if mine["pii_class"] != row.pii_class:
            raise AssertionError(
                f"{row.table_name} is planned as {mine['pii_class']} but its most sensitive "
                f"class is {row.pii_class}: order the classes by sensitivity (descending)"
            )
        if mine["policy_scope"] != row.policy_scope or int(mine["keep_days"]) != row.keep_days:
            raise AssertionError(
                f"{row.table_name} keeps {mine['keep_days']} days ({mine['policy_scope']} rule) "
                f"but its rule in force keeps {row.keep_days} ({row.policy_scope} rule): a "
                "per-table rule wins over its class's rule"
            )
        if pd.Timestamp(mine["cutoff"]).date() != row.cutoff:
            raise AssertionError(
                f"{row.table_name}: cutoff {mine['cutoff']} instead of {row.cutoff}: compute it "
                "from as_of (date_sub(DATE 'as_of', keep_days)), never current_date()"
            )
    return f"plan ok: {len(expected_pdf)} governed tables, each with its rule and cutoff"


# --------------------------------------------------------------------------- the purge

RUNS_SCHEMA = (
    "run_date date, table_name string, cutoff date, rows_before bigint, rows_kept bigint, "
    "rows_purged bigint"
)


def table_versions(spark: SparkSession, tables: Iterable[str]) -> dict[str, int]:
    """Each table's latest version (``DESCRIBE HISTORY ... LIMIT 1``)."""
    return {t: int(spark.sql(f"DESCRIBE HISTORY {t} LIMIT 1").first()["version"]) for t in tables}


def delete_sql(table: str, time_column: str, cutoff) -> str:
    """The purge of one table: rows strictly older than the cutoff."""
    return f"DELETE FROM {table} WHERE {time_column} < DATE '{as_of_date(cutoff).isoformat()}'"


def retention_sql(table: str, log_retention: str, deleted_file_retention: str) -> str:
    return (
        f"ALTER TABLE {table} SET TBLPROPERTIES ("
        f"'{LOG_RETENTION}' = '{log_retention}', "
        f"'{DELETED_FILE_RETENTION}' = '{deleted_file_retention}')"
    )


def row_counts(spark: SparkSession, tables: Sequence[str]) -> dict[str, int]:
    """Each table's row count, in one query."""
    union = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in tables)
    return {r.t: int(r.n) for r in spark.sql(union).collect()}


def purge(spark: SparkSession, plan_rows: Sequence) -> list[tuple]:
    """The lesson's first task, complete: one DELETE per planned table and its rule's
    retention as table properties; per table (table, cutoff, rows before, kept, purged), the
    rows purged as the DELETE reports them (``num_affected_rows``)."""
    tables = [p.table_name for p in plan_rows]
    before = row_counts(spark, tables)
    purged = {}
    for p in plan_rows:
        deleted = spark.sql(delete_sql(p.table_name, p.time_column, p.cutoff))
        purged[p.table_name] = int(deleted.first()["num_affected_rows"])
        spark.sql(retention_sql(p.table_name, p.log_retention, p.deleted_file_retention))
    kept = row_counts(spark, tables)
    return [
        (p.table_name, p.cutoff, before[t], kept[t], purged[t]) for p, t in zip(plan_rows, tables)
    ]


def write_runs(spark: SparkSession, as_of, runs: Iterable[Sequence]) -> str:
    """Replace ``as_of``'s rows of ``governance.retention_runs`` with ``runs`` (table, cutoff,
    rows before, kept, purged): a rerun of the same day leaves the same rows."""
    day = as_of_date(as_of)
    spark.sql(f"CREATE TABLE IF NOT EXISTS {RUNS_TABLE} ({RUNS_SCHEMA}) USING delta")
    rows = [(day, str(t), as_of_date(c), int(b), int(k), int(p)) for t, c, b, k, p in runs]
    (
        spark.createDataFrame(rows, RUNS_SCHEMA)
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"run_date = DATE '{day.isoformat()}'")
        .saveAsTable(RUNS_TABLE)
    )
    return RUNS_TABLE


def count_sql(plan_pdf: pd.DataFrame, *, sources: bool) -> str:
    """Per planned table, in one query: its rows, those older than the cutoff, those at it and
    those at or after it; of the copies, or of their samples (what a purge starts from)."""
    source = {t.name: t.source for t in DEMO_TABLES}
    parts = []
    for p in plan_pdf.itertuples(index=False):
        day, column = as_of_date(p.cutoff).isoformat(), p.time_column
        parts.append(
            f"SELECT '{p.table_name}' AS table_name, count(*) AS rows_before, "
            f"count_if({column} < DATE '{day}') AS older, "
            f"count_if({column} = DATE '{day}') AS at_cutoff, "
            f"count_if({column} >= DATE '{day}') AS rows_kept "
            f"FROM {source[p.table_name] if sources else p.table_name}"
        )
    return " UNION ALL ".join(parts)


def expected_counts(spark: SparkSession, plan_pdf: pd.DataFrame) -> pd.DataFrame:
    """From the copies' samples, not the copies: what a correct purge keeps and purges."""
    frame = spark.sql(count_sql(plan_pdf, sources=True)).toPandas()
    frame["rows_purged"] = frame["older"]
    return frame.sort_values("table_name", ignore_index=True)


def check_purge(spark: SparkSession, plan_pdf: pd.DataFrame, as_of, expected: pd.DataFrame) -> str:
    """Every copy keeps exactly its rows at or after the cutoff, ``as_of``'s rows of
    ``governance.retention_runs`` reconcile (before = kept + purged) with what the purge did,
    and each copy carries its rule's retention. ``expected`` is :func:`expected_counts`."""
    expected = expected.set_index("table_name")
    actual = spark.sql(count_sql(plan_pdf, sources=False)).toPandas().set_index("table_name")
    cutoffs = plan_pdf.set_index("table_name")
    for table, row in actual.iterrows():
        want = expected.loc[table]
        cutoff, column = cutoffs.loc[table, "cutoff"], cutoffs.loc[table, "time_column"]
        lost = int(want["rows_kept"]) - int(row["rows_kept"])
        lost_at = int(want["at_cutoff"]) - int(row["at_cutoff"])
        if row["older"] and lost > 0:
            raise AssertionError(
                f"{table}: {lost} rows at or after the cutoff {cutoff} were deleted and "
                f"{row['older']} older ones kept: the predicate is reversed; delete "
                f"{column} < cutoff"
            )
        if lost > 0 and lost == lost_at:
            raise AssertionError(
                f"{table}: the {lost} rows exactly at the cutoff {cutoff} were deleted: a row "
                f"at the cutoff is kept, only older ones go; delete {column} < cutoff, not <="
            )
        if lost > 0:
            raise AssertionError(
                f"{table}: {lost} rows at or after the cutoff {cutoff} were deleted: the "
                f"cutoff must come from the plan (as_of - keep_days), not current_date(), "
                f"so the purge does not depend on the day it runs; delete {column} < cutoff"
            )
        if row["older"]:
            raise AssertionError(
                f"{table}: {row['older']} rows older than the cutoff {cutoff} are still there: "
                f"DELETE FROM {table} WHERE {column} < DATE '{cutoff}'"
            )
    day = as_of_date(as_of)
    if not spark.catalog.tableExists(RUNS_TABLE):
        raise AssertionError(f"{RUNS_TABLE} does not exist: write the runs (rt.write_runs)")
    runs = spark.table(RUNS_TABLE).where(F.col("run_date") == F.lit(day)).toPandas()
    runs = runs.set_index("table_name")
    missing = sorted(set(actual.index) - set(runs.index))
    if missing:
        raise AssertionError(f"{RUNS_TABLE} has no row of {day} for {missing}: one per table")
    for table, want in expected.iterrows():
        run = runs.loc[table]
        if int(run["rows_before"]) != int(run["rows_kept"]) + int(run["rows_purged"]):
            raise AssertionError(
                f"{RUNS_TABLE}: {table} does not reconcile: {run['rows_before']} before != "
                f"{run['rows_kept']} kept + {run['rows_purged']} purged"
            )
        if (int(run["rows_before"]), int(run["rows_purged"])) != (
            int(want["rows_before"]),
            int(want["rows_purged"]),
        ):
            raise AssertionError(
                f"{RUNS_TABLE}: {table} records {run['rows_before']} before and "
                f"{run['rows_purged']} purged; the purge removed {want['rows_purged']} of "
                f"{want['rows_before']}: count before the DELETE and take its num_affected_rows"
            )
    check_retention(spark, plan_pdf)
    return (
        f"purge ok: {int(expected['rows_purged'].sum())} rows older than their cutoff purged "
        f"from {len(expected)} tables, every newer row kept, each run reconciled "
        "(before = kept + purged), each table with its rule's retention"
    )


def check_retention(spark: SparkSession, plan_pdf: pd.DataFrame) -> None:
    """Each table carries its rule's log and deleted-file retention as TBLPROPERTIES."""
    for p in plan_pdf.itertuples(index=False):
        props = {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES {p.table_name}").collect()}
        for key, want in (
            (LOG_RETENTION, p.log_retention),
            (DELETED_FILE_RETENTION, p.deleted_file_retention),
        ):
            if props.get(key) != want:
                raise AssertionError(
                    f"{p.table_name}: {key} is {props.get(key)!r}, its rule says {want!r}: "
                    f"ALTER TABLE {p.table_name} SET TBLPROPERTIES ('{key}' = '{want}')"
                )


# --------------------------------------------------------------------------- vacuum


def time_travel(spark: SparkSession, table: str, version: int, time_column: str, cutoff):
    """The rows older than ``cutoff`` that ``table`` holds at ``version``, or None when that
    version can no longer be read. A filter, not a bare count: Delta answers ``count()`` from
    the log's statistics without opening a file."""
    day = as_of_date(cutoff).isoformat()
    try:
        return (
            spark.read.option("versionAsOf", version)
            .table(table)
            .where(f"{time_column} < DATE '{day}'")
            .count()
        )
    except Exception:  # noqa: BLE001 (a vacuumed version fails with the engine's own error)
        return None


def oldest_in_files(spark: SparkSession, table: str, column: str):
    """The oldest ``column`` value in any Parquet file of the table's folder, read with pyarrow
    (not Delta: files an earlier version still lists count too)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from lakehouse.governance.vault import table_location

    oldest = None
    folder = table_location(spark, table)
    files = [f for f in folder.glob("**/*.parquet") if "_delta_log" not in f.parts]
    for path in sorted(files):
        values = pq.read_table(path, columns=[column]).column(0)
        low = pc.min(values).as_py()
        if low is not None:
            low = low.date() if isinstance(low, dt.datetime) else low
            oldest = low if oldest is None else min(oldest, low)
    return oldest


def check_vacuum(spark: SparkSession, plan_pdf: pd.DataFrame, pre_purge: Mapping[str, int]) -> str:
    """Each copy carries its class's log and deleted-file retention, its pre-purge version no
    longer reads, and no file in its folder holds a row older than the cutoff."""
    check_retention(spark, plan_pdf)
    for p in plan_pdf.itertuples(index=False):
        version = pre_purge[p.table_name]
        readable = time_travel(spark, p.table_name, version, p.time_column, p.cutoff)
        if readable is not None:
            raise AssertionError(
                f"{p.table_name}: VERSION AS OF {version} (before the purge) still reads "
                f"the {readable} purged rows: their files are still there. VACUUM removes "
                "files older than the deleted-file retention; in the lesson, VACUUM "
                f"{p.table_name} RETAIN 0 HOURS"
            )
        oldest = oldest_in_files(spark, p.table_name, p.time_column)
        if oldest is not None and oldest < as_of_date(p.cutoff):
            raise AssertionError(
                f"{p.table_name}: a file in its folder still holds {p.time_column} = {oldest}, "
                f"older than the cutoff {p.cutoff}: VACUUM {p.table_name} RETAIN 0 HOURS"
            )
    return (
        f"vacuum ok: {len(plan_pdf)} tables carry their class's retention, no pre-purge "
        "version reads and no file holds a purged row"
    )


# --------------------------------------------------------------------------- history

HISTORY_SCHEMA = (
    "table_name string, version bigint, timestamp timestamp, operation string, "
    "operation_parameters map<string,string>, operation_metrics map<string,string>, "
    "user_name string"
)


def start_history(spark: SparkSession, tables: Sequence[str]) -> str:
    """The history task's starting state: ``governance.table_history`` as an earlier run of
    the job left it, holding the first table's history only (the other tables' versions are
    new, and so are the first table's later ones)."""
    spark.sql(f"CREATE OR REPLACE TABLE {HISTORY_TABLE} ({HISTORY_SCHEMA}) USING delta")
    first = history_of(spark, list(tables)[:1])
    first.write.format("delta").mode("append").saveAsTable(HISTORY_TABLE)
    return HISTORY_TABLE


def history_of(spark: SparkSession, tables: Iterable[str]) -> DataFrame:
    """``DESCRIBE HISTORY`` of every table, as rows of ``governance.table_history``."""
    frames = [
        spark.sql(f"DESCRIBE HISTORY {t}").select(
            F.lit(t).alias("table_name"),
            F.col("version").cast("bigint").alias("version"),
            "timestamp",
            "operation",
            F.col("operationParameters").alias("operation_parameters"),
            F.col("operationMetrics").alias("operation_metrics"),
            F.col("userName").alias("user_name"),
        )
        for t in tables
    ]
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union


def copy_history_sql(source_view: str) -> str:
    """The incremental copy: new (table_name, version) pairs only. The lesson's task asks for
    this; it is the complete answer."""
    return f"""MERGE INTO {HISTORY_TABLE} AS h
USING {source_view} AS n
ON h.table_name = n.table_name AND h.version = n.version
WHEN NOT MATCHED THEN INSERT *"""


def check_history(spark: SparkSession, tables: Iterable[str], added_again: int) -> str:
    """Every version of every table's history is in ``governance.table_history`` exactly once,
    and the second copy added nothing."""
    tables = list(tables)
    copied = spark.table(HISTORY_TABLE).where(F.col("table_name").isin(tables))
    doubled = copied.groupBy("table_name", "version").count().where("count > 1").count()
    if doubled:
        raise AssertionError(
            f"{doubled} (table_name, version) pairs are in {HISTORY_TABLE} more than once: a "
            "second run appended them again; MERGE on (table_name, version) and insert only "
            "the versions not yet copied"
        )
    source = history_of(spark, tables).select("table_name", "version")
    missing = source.join(copied, ["table_name", "version"], "left_anti").count()
    if missing:
        raise AssertionError(
            f"{missing} versions of the tables' DESCRIBE HISTORY are missing from "
            f"{HISTORY_TABLE}: versions restart at 0 in every table, so match on table_name "
            "AND version"
        )
    if added_again:
        raise AssertionError(
            f"the second copy added {added_again} rows: a rerun must add 0 (MERGE ... WHEN NOT "
            "MATCHED THEN INSERT)"
        )
    return (
        f"history ok: every version of {len(tables)} tables copied once, the second run "
        "added 0 rows"
    )


# --------------------------------------------------------------------------- evidence


def write_evidence(spark: SparkSession, checks: dict[str, tuple[bool, str]]) -> str:
    """Replace this lesson's rows of ``governance.retention_evidence``, one per proof."""
    from lakehouse.governance.classification import write_evidence as write

    return write(spark, EVIDENCE_TABLE, LESSON, checks)


def check_evidence(spark: SparkSession) -> str:
    from lakehouse.governance.classification import check_evidence as check

    return check(spark, EVIDENCE_TABLE, LESSON)


# --------------------------------------------------------------------------- Databricks


def databricks_statements(plan_pdf: pd.DataFrame, catalog: str = "main") -> list[str]:
    """The Unity Catalog form: predictive optimization (which runs VACUUM and OPTIMIZE on its
    own, honouring each table's retention), each table's retention, and its purge."""
    statements = [f"ALTER SCHEMA {catalog}.{GOVERNANCE_SCHEMA} ENABLE PREDICTIVE OPTIMIZATION"]
    for p in plan_pdf.itertuples(index=False):
        table = f"{catalog}.{p.table_name}"
        statements.append(retention_sql(table, p.log_retention, p.deleted_file_retention))
        statements.append(delete_sql(table, p.time_column, p.cutoff))
    return statements


def apply_on_databricks(spark: SparkSession, plan_pdf: pd.DataFrame, catalog: str = "main") -> int:
    """Run :func:`databricks_statements` when the engine is Databricks (0 elsewhere)."""
    from lakehouse.governance import run_on_databricks

    return run_on_databricks(spark, databricks_statements(plan_pdf, catalog))
