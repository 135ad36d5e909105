"""lakehouse.governance.retention without Spark: the policies, the plan's rule (the most
sensitive class, a table's own rule, the cutoff from as_of), the statements and the messages of
its checks. The purge, VACUUM and history checks run on delta-spark in lesson 06_governance/05,
whose mistake catalogue the notebook test proves caught."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from lakehouse.governance import retention as rt
from lakehouse.governance.classification import CLASSES

CLASSES_PDF = pd.DataFrame(
    [
        # a tie of two confidential classes, both kept 365 days, and an internal one
        ("gov.contacts", "email", "EMAIL_ADDRESS", "confidential"),
        ("gov.contacts", "phone", "PHONE_NUMBER", "confidential"),
        ("gov.contacts", "postal_code", "POSTAL_CODE", "internal"),
        # internal card digits and a confidential device id: the device id wins
        ("gov.payments", "card_last4", "CARD_LAST4", "internal"),
        ("gov.payments", "device_fingerprint", "DEVICE_ID", "confidential"),
        # a tie between a 365-day class and a 90-day one: the shorter wins
        ("gov.visits", "email", "EMAIL_ADDRESS", "confidential"),
        ("gov.visits", "ip", "IP_ADDRESS", "confidential"),
    ],
    columns=["table_name", "column_name", "pii_class", "sensitivity"],
)
GOVERNED = pd.DataFrame(
    [
        ("gov.contacts", "updated_at"),
        ("gov.payments", "event_ts"),
        ("gov.visits", "visit_ts"),
        ("gov.daily", "day"),  # no classified column
        ("governance.retention_demo_customers", "updated_on"),  # has a table rule
    ],
    columns=["table_name", "time_column"],
)
AS_OF = "2026-06-30"


@pytest.fixture
def policies():
    return rt.policies_frame()


@pytest.fixture
def plan(policies):
    classes = pd.concat(
        [
            CLASSES_PDF,
            pd.DataFrame(
                [
                    (
                        "governance.retention_demo_customers",
                        "email",
                        "EMAIL_ADDRESS",
                        "confidential",
                    )
                ],
                columns=CLASSES_PDF.columns,
            ),
        ],
        ignore_index=True,
    )
    return rt.resolve_plan(classes, policies, GOVERNED, AS_OF).set_index("table_name")


def test_every_class_of_lesson_01_has_one_rule(policies):
    assert set(policies.loc[policies.scope == "class", "target"]) == {*CLASSES, rt.NO_PII}
    assert rt.check_policies(policies).startswith("policies ok: 15 class rules")


def test_a_missing_class_rule_is_named(policies):
    without = policies[policies.target != "CARD_LAST4"]
    with pytest.raises(AssertionError, match=r"no retention rule for the classes \['CARD_LAST4'\]"):
        rt.check_policies(without)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("log_retention", "30 days", "is not a Delta interval"),
        ("keep_days", -1, "a number >= 0"),
        ("reason", "", "has no reason"),
    ],
)
def test_a_bad_rule_is_refused_with_its_row(policies, column, value, message):
    broken = policies.copy()
    broken.loc[broken.target == "EMAIL_ADDRESS", column] = value
    with pytest.raises(AssertionError, match=f"EMAIL_ADDRESS.*{message}"):
        rt.check_policies(broken)


def test_a_table_takes_its_most_sensitive_class(plan):
    assert plan.loc["gov.payments", "pii_class"] == "DEVICE_ID"
    assert plan.loc["gov.payments", "keep_days"] == 90


def test_a_tie_goes_to_the_shortest_rule_then_the_name(plan):
    assert plan.loc["gov.visits", "pii_class"] == "IP_ADDRESS"  # 90 days before 365
    assert plan.loc["gov.contacts", "pii_class"] == "EMAIL_ADDRESS"  # 365 each: by name


def test_a_table_without_classified_columns_takes_no_pii(plan):
    row = plan.loc["gov.daily"]
    assert (row.pii_class, row.policy_scope, row.keep_days) == (rt.NO_PII, "class", 120)
    assert row.reason.startswith("business rule")


def test_a_table_rule_wins_over_its_class(plan):
    row = plan.loc["governance.retention_demo_customers"]
    assert (row.pii_class, row.policy_scope, row.keep_days) == ("EMAIL_ADDRESS", "table", 180)
    assert (row.time_column, row.cutoff) == ("updated_on", dt.date(2026, 1, 1))
    assert "data minimisation" in row.reason


def test_the_cutoff_counts_back_from_as_of_not_the_clock(plan):
    assert plan.loc["gov.payments", "cutoff"] == dt.date(2026, 4, 1)  # 90 days before
    assert plan.loc["gov.daily", "cutoff"] == dt.date(2026, 3, 2)
    assert plan.loc["gov.visits", "time_column"] == "visit_ts"


def test_as_of_must_be_a_date(policies):
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        rt.resolve_plan(CLASSES_PDF, policies, GOVERNED, "30/06/2026")


def test_check_plan_accepts_the_plan_and_names_each_mistake(plan, policies):
    expected = plan.reset_index()
    assert rt.check_plan(expected, expected).startswith("plan ok: 5 governed tables")

    least = expected.copy()
    least.loc[least.table_name == "gov.payments", "pii_class"] = "CARD_LAST4"
    with pytest.raises(AssertionError, match="order the classes by sensitivity"):
        rt.check_plan(least, expected)

    no_override = expected.copy()
    mask = no_override.table_name == "governance.retention_demo_customers"
    no_override.loc[mask, ["policy_scope", "keep_days"]] = ["class", 365]
    with pytest.raises(AssertionError, match="a per-table rule wins"):
        rt.check_plan(no_override, expected)

    clock = expected.copy()
    clock["cutoff"] = [dt.date(2026, 12, 7) - dt.timedelta(days=int(d)) for d in clock.keep_days]
    with pytest.raises(AssertionError, match="never current_date"):
        rt.check_plan(clock, expected)

    with pytest.raises(AssertionError, match="one row per governed table"):
        rt.check_plan(expected.iloc[1:], expected)


def test_the_purge_and_retention_statements():
    assert rt.delete_sql("gov.t", "event_ts", dt.date(2026, 6, 9)) == (
        "DELETE FROM gov.t WHERE event_ts < DATE '2026-06-09'"
    )
    assert rt.retention_sql("gov.t", "interval 14 days", "interval 2 days") == (
        "ALTER TABLE gov.t SET TBLPROPERTIES ('delta.logRetentionDuration' = "
        "'interval 14 days', 'delta.deletedFileRetentionDuration' = 'interval 2 days')"
    )
    assert "h.table_name = n.table_name AND h.version = n.version" in rt.copy_history_sql("v")


def test_the_plan_sql_takes_as_of_as_a_literal():
    sql = rt.plan_sql(dt.date(2026, 6, 30))
    assert "date_sub(DATE '2026-06-30'" in sql
    assert "current_date" not in sql


def test_the_databricks_form(plan):
    statements = rt.databricks_statements(plan.reset_index(), "prod")
    assert statements[0] == "ALTER SCHEMA prod.governance ENABLE PREDICTIVE OPTIMIZATION"
    assert "DELETE FROM prod.gov.payments WHERE event_ts < DATE '2026-04-01'" in statements


def test_the_counts_read_the_samples_for_the_expectation_and_the_copies_for_the_check(plan):
    frame = plan.reset_index()
    frame = frame[frame.table_name.str.startswith("governance.retention_demo_")]
    expected, actual = rt.count_sql(frame, sources=True), rt.count_sql(frame, sources=False)
    assert "FROM governance.retention_source_customers" in expected
    assert "FROM governance.retention_demo_customers" in actual
    assert "count_if(updated_on = DATE '2026-01-01') AS at_cutoff" in actual
    assert actual.count("UNION ALL") == len(frame) - 1


def test_the_samples_are_small_ordered_and_keep_the_cutoff_day():
    for table in rt.DEMO_TABLES:
        assert "ORDER BY" in table.pick and table.source.startswith("governance.retention_source")
        assert table.time_column in table.pick
    customers, payments = rt.DEMO_TABLES
    assert "LIMIT 48" in customers.pick
    assert "PARTITION BY to_date(event_ts)" in payments.pick and "n <= 2" in payments.pick
    assert "governance.column_classification" in rt.PRODUCTION_CLASSES_SQL
