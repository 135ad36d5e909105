"""lakehouse.governance.access: the policy's forms and regions, the SQL row filter and masks
run as each persona on small tables, the access matrix against the policy, the Databricks
statements, and every wrong answer of lesson 06_governance/02's catalogue caught by its check
with its message."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers.lesson_files import LessonFiles

from lakehouse.governance import access as ac

ROOT = Path(__file__).resolve().parents[1]
LESSON = LessonFiles(ROOT / "solutions/06_governance/02_access_control.ipynb")


# --------------------------------------------------------------------------- the policy


def test_regions_the_eu_is_not_europe():
    assert ac.region_of("US") == "US"
    assert ac.region_of("DE") == "EU" and ac.region_of("IE") == "EU"
    assert ac.region_of("GB") == "other"  # left the EU in 2020
    assert ac.region_of("CA") == "other" and ac.region_of(None) == "other"
    assert len(ac.EU_COUNTRIES) == 27


@pytest.mark.parametrize(
    ("form", "value", "shown"),
    [
        ("first6_last4", "4111111111111111", "411111******1111"),
        ("first6_last4", "378282246310005", "378282*****0005"),
        ("first6_last4", "4242", "4242"),  # already truncated
        ("masked", "anna.smith3@example.com", "a***@example.com"),
        ("hashed", "Anna@Example.com", ac.apply_form("hashed", "anna@example.com")),
        ("hidden", "anything", None),
        ("clear", None, None),
    ],
)
def test_apply_form(form, value, shown):
    assert ac.apply_form(form, value) == shown


def test_apply_form_refuses_an_unknown_form():
    with pytest.raises(ValueError, match="unknown form 'blurred'"):
        ac.apply_form("blurred", "x")


def test_a_persona_in_two_groups_gets_the_union_and_the_most_revealing_form():
    both = ac.Persona("lead", "lee@corp.example", ("analysts_eu", "data_scientists"), "both")
    policy = ac.effective_policy(both)
    assert policy.regions == frozenset(ac.REGIONS)
    assert policy.email == "masked"  # masked reveals more than hashed
    assert policy.name == "clear"
    with pytest.raises(ValueError, match="unknown groups"):
        ac.effective_policy(ac.Persona("x", "x@corp.example", ("admins",), ""))


def test_act_as_refuses_what_is_not_a_principal():
    with pytest.raises(ValueError, match="principal"):
        ac.act_as(None, "x'; DROP TABLE y; --")


def test_databricks_statements_carry_the_same_bodies():
    statements = ac.databricks_statements("main")
    text = "\n".join(statements)
    local = ac.policy_functions_sql()["region_filter"].split("RETURN", 1)[1]
    assert local in text  # the body, unchanged
    assert "CREATE OR REPLACE FUNCTION main.governance.region_filter" in text
    assert "ALTER TABLE main.gold.customer_360 SET ROW FILTER main.governance.region_filter" in text
    assert "ALTER COLUMN card_last4 SET MASK main.governance.mask_card" in text
    assert "REVOKE SELECT ON TABLE main.gold.customer_360 FROM `partners`" in text
    assert "MATCH COLUMNS has_tag_value('pii_class', 'email_address')" in text
    assert "FROM main.gold.customer_360" in text and "TEMPORARY" not in text


def test_check_matrix_names_the_leak():
    ok = pd.DataFrame(
        [("eu_analyst", "customers_secured", "rows other", "0", "0", True)],
        columns=ac.MATRIX_COLUMNS,
    )
    assert ac.check_matrix(ok).startswith("access matrix ok")
    leak = pd.DataFrame(
        [("fraud_ops", "mask_card", "test card numbers", "first6_last4", "clear", False)],
        columns=ac.MATRIX_COLUMNS,
    )
    with pytest.raises(AssertionError, match="at most its first 6 and last 4"):
        ac.check_matrix(leak)


# --------------------------------------------------------------------------- on Spark

CUSTOMERS = [
    # customer_id, first_name, last_name, email, segment, city, country, lifetime_value_usd
    *[(f"C{i:03d}", "Ana", "Lee", f"ana.lee{i}@example.com", "consumer", "Austin", "US", 10.0)
      for i in range(6)],
    *[(f"C{i:03d}", "Lukas", "Müller", f"lukas{i}@example.de", "vip", "Berlin", "DE", 20.0)
      for i in range(6, 11)],
    ("C011", "Aoife", "Byrne", "aoife@example.ie", "consumer", "Dublin", "IE", 5.0),
    ("C012", "Harry", "Smith", "harry@example.co.uk", "consumer", "London", "GB", 7.0),
    ("C013", "Chloé", "Dubois", None, "consumer", "Toronto", "CA", 3.0),
]  # fmt: skip
PAYMENTS = [
    ("TX1", "C000", "2026-06-01 10:00:00", 12.5, "USD", "visa", "1111", "US"),
    ("TX2", "C006", "2026-06-01 11:00:00", 9.9, "EUR", "mastercard", "4444", "DE"),
    ("TX3", "C012", "2026-06-02 09:00:00", 30.0, "GBP", "amex", "0005", "GB"),
    ("TX4", "C013", "2026-06-02 10:00:00", 4.0, "CAD", "visa", None, "CA"),
]


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(tmp_path_factory.mktemp("lake")))
    mp.setenv("LAKEHOUSE_CATALOG", "access_tests")
    mp.setenv("LAKEHOUSE_METASTORE", "in-memory")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("delta-spark", scale="tiny")
    for schema in ("gold", "silver"):
        session.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    customers_ddl = (
        "customer_id string, first_name string, last_name string, email string, "
        "segment string, city string, country string, lifetime_value_usd double"
    )
    payments_ddl = (
        "transaction_id string, customer_id string, event_ts string, amount double, "
        "currency string, card_network string, card_last4 string, country string"
    )
    for table in (ac.CUSTOMERS_TABLE, ac.PAYMENTS_TABLE):  # another script's, in a shared session
        session.sql(f"DROP TABLE IF EXISTS {table}")
    session.createDataFrame(CUSTOMERS, customers_ddl).write.format("delta").mode(
        "overwrite"
    ).saveAsTable(ac.CUSTOMERS_TABLE)
    session.createDataFrame(PAYMENTS, payments_ddl).write.format("delta").mode(
        "overwrite"
    ).saveAsTable(ac.PAYMENTS_TABLE)
    ac.write_members(session)
    ac.define_session(session)
    yield session
    mp.undo()


@pytest.fixture
def policy(spark):
    """The package's functions and views, fresh for each test (a mistake's test replaces one)."""
    ac.create_policy_functions(spark)
    ac.create_secured_views(spark)
    return spark


def test_the_membership_function_follows_the_acting_principal(policy):
    ac.act_as(policy, ac.persona_named("eu_analyst"))
    row = policy.sql(
        "SELECT is_account_group_member('analysts_eu') AS eu, "
        "is_account_group_member('fraud_ops') AS fraud"
    ).collect()[0]
    assert (row.eu, row.fraud) == (True, False)
    ac.act_as(policy, "nobody")
    assert policy.sql("SELECT is_account_group_member('analysts_eu')").collect()[0][0] is False


def test_the_matrix_matches_the_policy(policy):
    matrix = ac.access_matrix(policy)
    assert ac.check_matrix(matrix).startswith("access matrix ok")
    cell = matrix.set_index(["persona", "object", "item"])["observed"]
    assert cell[("us_analyst", ac.CUSTOMERS_VIEW, "rows US")] == "6"
    assert cell[("eu_analyst", ac.CUSTOMERS_VIEW, "rows EU")] == "6"  # DE and IE, not GB
    assert cell[("eu_analyst", ac.CUSTOMERS_VIEW, "rows other")] == "0"
    assert cell[("fraud_ops", ac.CUSTOMERS_VIEW, "rows other")] == "2"
    assert cell[("fraud_ops", "mask_card", "test card numbers")] == "first6_last4"
    assert cell[("data_scientist", ac.CUSTOMERS_VIEW, "email")] == "hashed"
    assert cell[("partner", ac.CUSTOMERS_VIEW, "rows US")] == "0"
    assert cell[("partner", ac.SUMMARY_VIEW, "rows")] == "2"  # US and DE have >= 5 customers
    assert ac.check_row_filter(policy).startswith("row filter ok")
    assert ac.check_masks(policy).startswith("masks ok")
    ac.write_evidence(policy, matrix)
    assert policy.table(ac.EVIDENCE_TABLE).where("NOT ok").count() == 0


def test_the_matrix_sees_a_view_that_forgets_its_filter(policy):
    policy.sql(
        "CREATE OR REPLACE TEMPORARY VIEW customers_secured AS SELECT customer_id, "
        "mask_name(first_name) AS first_name, mask_email(email) AS email, country "
        f"FROM {ac.CUSTOMERS_TABLE}"
    )
    with pytest.raises(AssertionError, match="us_analyst sees 6 for customers_secured rows EU"):
        ac.check_matrix(ac.access_matrix(policy))


def run_cell(spark, source: str) -> None:
    exec(source, {"spark": spark, "ac": ac, "print": lambda *a, **k: None})  # noqa: S102


def test_the_solution_cells_pass(policy):
    run_cell(policy, LESSON.cell("t1rowflt"))
    assert ac.check_row_filter(policy).startswith("row filter ok")
    run_cell(policy, LESSON.cell("t2masks1"))
    assert ac.check_masks(policy).startswith("masks ok")


@pytest.mark.parametrize("mistake", LESSON.mistakes_of("t1rowflt"), ids=lambda m: m["name"])
def test_each_wrong_row_filter_is_caught(policy, mistake):
    run_cell(policy, mistake["source"])
    with pytest.raises(AssertionError, match=mistake["caught_by"]):
        ac.check_row_filter(policy)


@pytest.mark.parametrize("mistake", LESSON.mistakes_of("t2masks1"), ids=lambda m: m["name"])
def test_each_wrong_mask_is_caught(policy, mistake):
    run_cell(policy, mistake["source"])
    with pytest.raises(AssertionError, match=mistake["caught_by"]):
        ac.check_masks(policy)
