"""Access control: who sees which rows and which columns, masked how; and the proof.

Lesson 06_governance/02::

    governance.group_members        one row per principal and group: the personas
    region_filter(country)          row filter: the regions a principal's groups may see
    mask_email, mask_card,          column masks: the form of a column a principal sees
    mask_name
    customers_secured,              secured views over gold.customer_360 and silver.payments,
    payments_secured,               and the only view a partner reads: an aggregate with no
    regional_summary                group under K_ANONYMITY customers
    governance.access_evidence      the matrix: per persona and object, what was seen against
                                    what the policy says, one row each

The functions are SQL with the bodies Unity Catalog uses: ``is_account_group_member(group)``
is a Databricks built-in; locally it is a temporary SQL function over the membership table
and a session variable, ``acting_principal`` (``SET VAR acting_principal = '...'`` switches
persona). Locally the functions and views are **temporary** (Spark refuses a persistent object
that reads a session variable), and nothing stops a session from reading the base tables: the
local form teaches the policy and proves its logic, it does not enforce it. On Databricks the
same functions are persistent, attached to the tables with ``SET ROW FILTER`` / ``SET MASK``
or by tag-based policies, and every query goes through them (:func:`databricks_statements`).

The policy is data (:data:`GROUP_POLICY`): the expected matrix is computed from it and the base
tables, never typed by hand, and compared with what each persona's queries return.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import SparkSession

from lakehouse.governance import GOVERNANCE_SCHEMA

MEMBERS_TABLE = f"{GOVERNANCE_SCHEMA}.group_members"
EVIDENCE_TABLE = f"{GOVERNANCE_SCHEMA}.access_evidence"
PRINCIPAL_VARIABLE = "acting_principal"
CUSTOMERS_TABLE = "gold.customer_360"
PAYMENTS_TABLE = "silver.payments"
CUSTOMERS_VIEW = "customers_secured"
PAYMENTS_VIEW = "payments_secured"
SUMMARY_VIEW = "regional_summary"
K_ANONYMITY = 5  # the summary hides a country with fewer customers

# The European Union's 27 member states (ISO 3166-1 alpha-2). The United Kingdom left on
# 31 January 2020: "Europe" is not the EU, and GDPR data residency is about the EU/EEA.
EU_COUNTRIES = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()
)
REGIONS = ("US", "EU", "other")


def region_of(country: str | None) -> str:
    """The data-residency region of a country code: ``US``, ``EU`` or ``other``."""
    if country == "US":
        return "US"
    return "EU" if country in EU_COUNTRIES else "other"


# --------------------------------------------------------------------------- the policy

# The forms a column can take, most revealing first. "first6_last4" is PCI DSS's ceiling for a
# card number on screen (3.4.1); "masked" shows an e-mail's first letter and its domain.
FORMS = ("clear", "first6_last4", "masked", "hashed", "hidden")


@dataclass(frozen=True)
class GroupPolicy:
    """What a group may see: the regions of its rows and the form of each protected column."""

    regions: frozenset[str]
    email: str = "hidden"
    card: str = "hidden"
    name: str = "hidden"
    summary: bool = True  # the aggregate view, with no personal data


GROUP_POLICY: dict[str, GroupPolicy] = {
    "analysts_us": GroupPolicy(frozenset({"US"}), email="masked", name="clear"),
    "analysts_eu": GroupPolicy(frozenset({"EU"}), email="masked", name="clear"),
    "fraud_ops": GroupPolicy(frozenset(REGIONS), email="clear", card="first6_last4", name="clear"),
    "data_scientists": GroupPolicy(frozenset(REGIONS), email="hashed"),
    "partners": GroupPolicy(frozenset()),
}


@dataclass(frozen=True)
class Persona:
    """Someone who queries the lakehouse: a principal (a user name) in some groups."""

    name: str
    principal: str
    groups: tuple[str, ...]
    role: str


PERSONAS: tuple[Persona, ...] = (
    Persona("us_analyst", "ana@corp.example", ("analysts_us",), "US market analytics"),
    Persona("eu_analyst", "eric@corp.example", ("analysts_eu",), "EU market analytics"),
    Persona("fraud_ops", "fatima@corp.example", ("fraud_ops",), "investigates disputed payments"),
    Persona("data_scientist", "dana@corp.example", ("data_scientists",), "trains models"),
    Persona("partner", "pat@partner.example", ("partners",), "a reseller: aggregates only"),
)
PROTECTED_COLUMNS = {"email": "email", "card_last4": "card", "first_name": "name"}


def effective_policy(persona: Persona) -> GroupPolicy:
    """A persona's policy: the union of its groups' regions and, per column, the most
    revealing form any of its groups has (which is what the SQL's CASE order gives)."""
    unknown = [g for g in persona.groups if g not in GROUP_POLICY]
    if unknown:
        raise ValueError(f"{persona.name}: unknown groups {unknown}; use {sorted(GROUP_POLICY)}")
    policies = [GROUP_POLICY[g] for g in persona.groups]

    def most_revealing(kind: str) -> str:
        return min((getattr(p, kind) for p in policies), key=FORMS.index, default="hidden")

    return GroupPolicy(
        regions=frozenset().union(*(p.regions for p in policies)),
        email=most_revealing("email"),
        card=most_revealing("card"),
        name=most_revealing("name"),
        summary=any(p.summary for p in policies),
    )


def apply_form(form: str, value: str | None) -> str | None:
    """What a value looks like in a form, computed in Python: the yardstick the SQL masks are
    held to. ``first6_last4`` keeps at most the first 6 and last 4 digits of a card number (a
    value of 10 digits or fewer is already truncated and shows as it is)."""
    if value is None or form == "hidden":
        return None
    if form == "clear":
        return value
    if form == "first6_last4":
        return value if len(value) <= 10 else value[:6] + "*" * (len(value) - 10) + value[-4:]
    if form == "masked":
        return re.sub(r"^(.)[^@]*", r"\1***", value)
    if form == "hashed":
        return hashlib.sha256(value.lower().encode("utf-8")).hexdigest()
    raise ValueError(f"unknown form {form!r}: use one of {FORMS}")


# --------------------------------------------------------------------------- the SQL


def eu_list_sql() -> str:
    """The EU's member states as a SQL list: ``'AT', 'BE', ...``."""
    return ", ".join(f"'{c}'" for c in sorted(EU_COUNTRIES))


def membership_function_sql() -> str:
    """The local stand-in for Databricks' built-in ``is_account_group_member``: true when the
    acting principal is in the group, by the membership table."""
    return f"""
CREATE OR REPLACE TEMPORARY FUNCTION is_account_group_member(group_name STRING)
RETURNS BOOLEAN
RETURN EXISTS (
  SELECT 1 FROM {MEMBERS_TABLE} m
  WHERE m.group_name = is_account_group_member.group_name
    AND m.principal = {PRINCIPAL_VARIABLE}
)"""


def policy_functions_sql(
    *, temporary: bool = True, schema: str = GOVERNANCE_SCHEMA
) -> dict[str, str]:
    """The row filter and the masks as ``CREATE FUNCTION`` statements, by function name:
    temporary locally, persistent in ``schema`` on Databricks; the bodies are the same.
    The lesson's tasks ask for ``region_filter``, ``mask_email`` and ``mask_card``; these are
    the complete answers."""
    kind = "TEMPORARY FUNCTION" if temporary else "FUNCTION"

    def name(fn: str) -> str:
        return fn if temporary else f"{schema}.{fn}"

    return {
        "region_filter": f"""
CREATE OR REPLACE {kind} {name("region_filter")}(country STRING)
RETURNS BOOLEAN
RETURN is_account_group_member('fraud_ops')
    OR is_account_group_member('data_scientists')
    OR (is_account_group_member('analysts_us') AND country = 'US')
    OR (is_account_group_member('analysts_eu') AND country IN ({eu_list_sql()}))""",
        "mask_email": f"""
CREATE OR REPLACE {kind} {name("mask_email")}(email STRING)
RETURNS STRING
RETURN CASE
  WHEN is_account_group_member('fraud_ops') THEN email
  WHEN is_account_group_member('analysts_us') OR is_account_group_member('analysts_eu')
    THEN regexp_replace(email, '^(.)[^@]*', '$1***')
  WHEN is_account_group_member('data_scientists') THEN sha2(lower(email), 256)
  ELSE NULL
END""",
        "mask_card": f"""
CREATE OR REPLACE {kind} {name("mask_card")}(pan STRING)
RETURNS STRING
RETURN CASE
  WHEN is_account_group_member('fraud_ops') THEN
    CASE WHEN length(pan) <= 10 THEN pan
         ELSE concat(left(pan, 6), repeat('*', length(pan) - 10), right(pan, 4)) END
  ELSE NULL
END""",
        "mask_name": f"""
CREATE OR REPLACE {kind} {name("mask_name")}(person_name STRING)
RETURNS STRING
RETURN CASE
  WHEN is_account_group_member('fraud_ops') OR is_account_group_member('analysts_us')
    OR is_account_group_member('analysts_eu') THEN person_name
  ELSE NULL
END""",
    }


def secured_views_sql(*, temporary: bool = True, schema: str = GOVERNANCE_SCHEMA) -> dict[str, str]:
    """The secured views by name: the filter in the WHERE clause, the masks in the SELECT."""
    kind = "TEMPORARY VIEW" if temporary else "VIEW"

    def name(obj: str) -> str:
        return obj if temporary else f"{schema}.{obj}"

    return {
        CUSTOMERS_VIEW: f"""
CREATE OR REPLACE {kind} {name(CUSTOMERS_VIEW)} AS
SELECT customer_id, {name("mask_name")}(first_name) AS first_name,
       {name("mask_name")}(last_name) AS last_name, {name("mask_email")}(email) AS email,
       segment, city, country, lifetime_value_usd
FROM {CUSTOMERS_TABLE}
WHERE {name("region_filter")}(country)""",
        PAYMENTS_VIEW: f"""
CREATE OR REPLACE {kind} {name(PAYMENTS_VIEW)} AS
SELECT transaction_id, customer_id, event_ts, amount, currency, card_network,
       {name("mask_card")}(card_last4) AS card_last4, country
FROM {PAYMENTS_TABLE}
WHERE {name("region_filter")}(country)""",
        SUMMARY_VIEW: f"""
CREATE OR REPLACE {kind} {name(SUMMARY_VIEW)} AS
SELECT country, count(*) AS customers, round(sum(lifetime_value_usd), 0) AS lifetime_value_usd
FROM {CUSTOMERS_TABLE}
GROUP BY country
HAVING count(*) >= {K_ANONYMITY}""",
    }


# --------------------------------------------------------------------------- local set-up


def write_members(spark: SparkSession, personas: Sequence[Persona] = PERSONAS) -> str:
    """Overwrite ``governance.group_members`` with one row per principal and group."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    rows = [(p.principal, g, p.name) for p in personas for g in p.groups]
    (
        spark.createDataFrame(rows, "principal string, group_name string, persona string")
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .saveAsTable(MEMBERS_TABLE)
    )
    return MEMBERS_TABLE


def define_session(spark: SparkSession) -> None:
    """Declare the session variable ``acting_principal`` (nobody at first) and the local
    ``is_account_group_member``; temporary, so each session has its own."""
    spark.sql(f"DECLARE OR REPLACE VARIABLE {PRINCIPAL_VARIABLE} STRING DEFAULT 'nobody'")
    spark.sql(membership_function_sql())


def act_as(spark: SparkSession, persona: Persona | str) -> None:
    """Switch the session's acting principal (``SET VAR``): a persona or a principal's name."""
    principal = persona.principal if isinstance(persona, Persona) else persona
    if not re.fullmatch(r"[\w.@+-]+", principal):
        raise ValueError(f"principal {principal!r}: use letters, digits, '.', '@', '+', '-'")
    spark.sql(f"SET VAR {PRINCIPAL_VARIABLE} = '{principal}'")


def persona_named(name: str) -> Persona:
    for p in PERSONAS:
        if p.name == name:
            return p
    raise ValueError(f"no persona {name!r}: use one of {[p.name for p in PERSONAS]}")


def create_policy_functions(spark: SparkSession, names: Sequence[str] | None = None) -> None:
    """Create the package's row filter and masks (all, or ``names``) in this session."""
    for fn, sql in policy_functions_sql().items():
        if names is None or fn in names:
            spark.sql(sql)


def create_secured_views(spark: SparkSession) -> tuple[str, ...]:
    """Create the three secured views in this session (after the functions)."""
    for sql in secured_views_sql().values():
        spark.sql(sql)
    return (CUSTOMERS_VIEW, PAYMENTS_VIEW, SUMMARY_VIEW)


# --------------------------------------------------------------------------- the matrix

MATRIX_COLUMNS = ["persona", "object", "item", "expected", "observed", "ok"]
TEST_PANS = ("4111111111111111", "5555555555554444", "378282246310005", "6011000990139424")


def _region_counts(countries: Sequence[str | None]) -> dict[str, int]:
    regions = [region_of(c) for c in countries]
    return {r: regions.count(r) for r in REGIONS}


def _form_observed(got: list, base: list, expected_form: str) -> str:
    """Name what was seen: the expected form when every value is what that form gives, else
    the form the values match, else ``other``."""
    for form in (expected_form, *FORMS):
        if all(apply_form(form, b) == g for g, b in zip(got, base)):
            return form
    return "other"


@dataclass(frozen=True)
class BaseData:
    """The base tables' rows the matrix is judged against, read once."""

    customers: pd.DataFrame  # customer_id, country, email, first_name
    payments: pd.DataFrame  # transaction_id, country, card_last4
    summary_rows: int  # countries with at least K_ANONYMITY customers

    @classmethod
    def read(cls, spark: SparkSession) -> BaseData:
        customers = (
            spark.table(CUSTOMERS_TABLE).select("customer_id", "country", "email", "first_name")
        ).toPandas()
        payments = (
            spark.table(PAYMENTS_TABLE).select("transaction_id", "country", "card_last4")
        ).toPandas()
        per_country = customers.groupby("country").size()
        return cls(customers, payments, int((per_country >= K_ANONYMITY).sum()))


_VIEWS = (
    (CUSTOMERS_VIEW, "customers", "customer_id", ("email", "first_name")),
    (PAYMENTS_VIEW, "payments", "transaction_id", ("card_last4",)),
)


def expected_rows(base: BaseData, persona: Persona) -> dict[tuple[str, str], object]:
    """What the policy says ``persona`` sees, from :data:`GROUP_POLICY` and the base rows."""
    policy = effective_policy(persona)
    expected: dict[tuple[str, str], object] = {}
    for view, attr, _, columns in _VIEWS:
        counts = _region_counts(getattr(base, attr)["country"].tolist())
        allowed = {r: (n if r in policy.regions else 0) for r, n in counts.items()}
        for region, n in allowed.items():
            expected[(view, f"rows {region}")] = n
        for column in columns:
            form = getattr(policy, PROTECTED_COLUMNS[column])
            expected[(view, column)] = form if sum(allowed.values()) else "no rows"
    expected[("mask_card", "test card numbers")] = policy.card
    expected[(SUMMARY_VIEW, "rows")] = base.summary_rows if policy.summary else 0
    return expected


def observe(spark: SparkSession, base: BaseData, persona: Persona) -> list[dict]:
    """What ``persona`` sees through the secured views and the card mask: rows per region,
    the form of each protected column (judged against the base rows), the summary's rows."""
    act_as(spark, persona)
    policy = effective_policy(persona)
    rows: list[dict] = []

    def add(obj: str, item: str, observed) -> None:
        rows.append({"persona": persona.name, "object": obj, "item": item, "observed": observed})

    for view, attr, key, columns in _VIEWS:
        seen = spark.table(view).select(key, "country", *columns).toPandas()
        for region, n in _region_counts(seen["country"].tolist()).items():
            add(view, f"rows {region}", n)
        joined = getattr(base, attr).merge(seen, on=key, suffixes=("_base", ""))
        for column in columns:
            form = getattr(policy, PROTECTED_COLUMNS[column])
            got, want = joined[column].tolist(), joined[f"{column}_base"].tolist()
            add(view, column, _form_observed(got, want, form) if len(joined) else "no rows")
    probe = spark.sql(
        f"SELECT (SELECT count(*) FROM {SUMMARY_VIEW}) AS summary_rows, "
        "collect_list(struct(pan, mask_card(pan) AS shown)) AS cards FROM VALUES "
        + ", ".join(f"('{p}')" for p in TEST_PANS)
        + " AS t(pan)"
    ).collect()[0]
    cards = sorted(probe["cards"], key=lambda c: c["pan"])
    shown = _form_observed([c["shown"] for c in cards], [c["pan"] for c in cards], policy.card)
    add("mask_card", "test card numbers", shown)
    add(SUMMARY_VIEW, "rows", int(probe["summary_rows"]))
    return rows


def access_matrix(spark: SparkSession, personas: Sequence[Persona] = PERSONAS) -> pd.DataFrame:
    """Query the secured views as each persona and hold what they saw against the policy:
    one row per persona, object and item (``MATRIX_COLUMNS``). Leaves the session acting as
    nobody."""
    base = BaseData.read(spark)
    rows = []
    try:
        for persona in personas:
            expected = expected_rows(base, persona)
            for r in observe(spark, base, persona):
                want = expected[(r["object"], r["item"])]
                rows.append(
                    {
                        **r,
                        "expected": str(want),
                        "observed": str(r["observed"]),
                        "ok": str(want) == str(r["observed"]),
                    }
                )
    finally:
        act_as(spark, "nobody")
    return pd.DataFrame(rows, columns=MATRIX_COLUMNS)


def _hint(
    persona: str, item: str, observed: str, expected: str, countries: Sequence[str] = ()
) -> str:
    if item.startswith("rows"):
        if persona == "eu_analyst" and "GB" in countries:
            return (
                "the EU is not Europe: the United Kingdom (GB) left in 2020; list the member "
                "states (access.EU_COUNTRIES) instead of a 'Europe' region"
            )
        if observed == "0":
            return (
                "the row filter returns false for this persona's group: every group with "
                "regions needs its clause (fraud_ops and data_scientists see every region)"
            )
        return "the row filter lets through rows outside this persona's regions"
    if item in ("test card numbers", "card_last4"):
        if observed == "clear":
            return (
                "PCI DSS 3.4.1: a card number is shown with at most its first 6 and last 4 "
                "digits, to fraud_ops too"
            )
        return "mask_card gives the first 6 and last 4 digits to fraud_ops, NULL to everyone else"
    if item == "email":
        if expected == "masked":
            return (
                "the masked e-mail keeps only the first letter of the local part and the "
                "domain (regexp_replace(email, '^(.)[^@]*', '$1***')): the local part is a name"
            )
        if expected == "hashed":
            return (
                "data_scientists get sha2(lower(email), 256): a pseudonym they can join on, "
                "not the address"
            )
        return "mask_email: fraud_ops clear, analysts masked, data_scientists sha2, else NULL"
    return "compare the mask functions with access.GROUP_POLICY"


def check_matrix(matrix: pd.DataFrame) -> str:
    """Fail on the first cell of the matrix where a persona saw something else than the
    policy says, with a message that names the likely mistake."""
    wrong = matrix[~matrix["ok"]]
    if wrong.empty:
        return (
            f"access matrix ok: {len(matrix)} cells, {matrix['persona'].nunique()} personas, "
            "each sees what the policy says and nothing more"
        )
    r = wrong.iloc[0].to_dict()  # a row's "item" would be Series.item as an attribute
    raise AssertionError(
        f"{r['persona']} sees {r['observed']} for {r['object']} {r['item']}, the policy says "
        f"{r['expected']}: {_hint(r['persona'], r['item'], r['observed'], r['expected'])}"
    )


def check_row_filter(spark: SparkSession, personas: Sequence[Persona] = PERSONAS) -> str:
    """Run ``region_filter(country)`` over the base tables as each persona and compare the
    rows it keeps, per region, with the policy; the message names the country that leaks."""
    base = BaseData.read(spark)
    try:
        for persona in personas:
            act_as(spark, persona)
            kept = (
                spark.sql(
                    f"SELECT country FROM {CUSTOMERS_TABLE} WHERE region_filter(country) "
                    f"UNION ALL SELECT country FROM {PAYMENTS_TABLE} WHERE region_filter(country)"
                )
                .toPandas()["country"]
                .tolist()
            )
            expected = expected_rows(base, persona)
            for region in REGIONS:
                want = sum(expected[(view, f"rows {region}")] for view, *_ in _VIEWS)
                countries = sorted({c for c in kept if region_of(c) == region})
                got = sum(1 for c in kept if region_of(c) == region)
                if got != want:
                    raise AssertionError(
                        f"{persona.name} keeps {got} rows of region {region} "
                        f"({', '.join(countries) or 'none'}), the policy says {want}: "
                        + _hint(persona.name, f"rows {region}", str(got), str(want), countries)
                    )
    finally:
        act_as(spark, "nobody")
    return f"row filter ok: {len(personas)} personas keep exactly their regions' rows"


# Values for the masks' check: test card numbers, a truncated one, e-mails and a name.
MASK_SAMPLES = {
    "card": (*TEST_PANS, "4242"),
    "email": ("anna.smith3@example.com", "Seán.Byrne@mail.example.org"),
    "name": ("Søren",),
}


def check_masks(spark: SparkSession, personas: Sequence[Persona] = PERSONAS) -> str:
    """Call ``mask_email``, ``mask_card`` and ``mask_name`` on sample values as each persona
    and compare with the forms the policy gives (:func:`apply_form`)."""
    functions = {"card": "mask_card", "email": "mask_email", "name": "mask_name"}
    samples = [(kind, v) for kind, values in MASK_SAMPLES.items() for v in values]
    shown_sql = "CASE kind " + " ".join(f"WHEN '{k}' THEN {fn}(v)" for k, fn in functions.items())
    query = (
        f"SELECT kind, v, {shown_sql} END AS shown FROM VALUES "
        + ", ".join("('" + k + "', '" + v.replace("'", "''") + "')" for k, v in samples)
        + " AS t(kind, v)"
    )
    try:
        for persona in personas:
            act_as(spark, persona)
            policy = effective_policy(persona)
            got = {(r["kind"], r["v"]): r["shown"] for r in spark.sql(query).collect()}
            for kind, value in samples:
                form = getattr(policy, kind)
                if got[(kind, value)] != apply_form(form, value):
                    observed = _form_observed([got[(kind, value)]], [value], form)
                    item = {"card": "test card numbers"}.get(kind, kind)
                    raise AssertionError(
                        f"{persona.name}: {functions[kind]}('{value}') is "
                        f"{got[(kind, value)]!r}, the policy says {form} "
                        f"({apply_form(form, value)!r}): "
                        + _hint(persona.name, item, observed, form)
                    )
    finally:
        act_as(spark, "nobody")
    return f"masks ok: {len(personas)} personas see each column in the form the policy gives"


def matrix_table(matrix: pd.DataFrame) -> pd.DataFrame:
    """The matrix as a grid to read: one row per persona, one column per object and item."""
    grid = matrix.assign(cell=matrix["object"] + " " + matrix["item"]).pivot(
        index="persona", columns="cell", values="observed"
    )
    order = [p.name for p in PERSONAS if p.name in grid.index]
    return grid.loc[
        order,
        sorted(
            grid.columns, key=list(dict.fromkeys(matrix["object"] + " " + matrix["item"])).index
        ),
    ]


def write_evidence(spark: SparkSession, matrix: pd.DataFrame) -> str:
    """Overwrite ``governance.access_evidence`` with the matrix, one row per cell."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    schema = (
        "persona string, object string, item string, expected string, observed string, ok boolean"
    )
    (
        spark.createDataFrame(matrix[MATRIX_COLUMNS].to_dict("records"), schema)
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .saveAsTable(EVIDENCE_TABLE)
    )
    return EVIDENCE_TABLE


# --------------------------------------------------------------------------- Databricks


def databricks_statements(catalog: str = "main") -> list[str]:
    """The Unity Catalog form of the same policy, in the order to run it: persistent functions,
    the row filter and masks attached to the tables, the summary view, grants and revokes,
    and a tag-based policy that masks every column tagged ``pii_class = email_address``
    (lesson 01's tags) wherever it appears in the schema."""
    schema = f"{catalog}.{GOVERNANCE_SCHEMA}"
    customers, payments = f"{catalog}.{CUSTOMERS_TABLE}", f"{catalog}.{PAYMENTS_TABLE}"
    statements = [
        sql.strip() for sql in policy_functions_sql(temporary=False, schema=schema).values()
    ]
    statements += [
        f"ALTER TABLE {customers} SET ROW FILTER {schema}.region_filter ON (country)",
        f"ALTER TABLE {customers} ALTER COLUMN email SET MASK {schema}.mask_email",
        f"ALTER TABLE {customers} ALTER COLUMN first_name SET MASK {schema}.mask_name",
        f"ALTER TABLE {customers} ALTER COLUMN last_name SET MASK {schema}.mask_name",
        f"ALTER TABLE {payments} SET ROW FILTER {schema}.region_filter ON (country)",
        f"ALTER TABLE {payments} ALTER COLUMN card_last4 SET MASK {schema}.mask_card",
        secured_views_sql(temporary=False, schema=schema)[SUMMARY_VIEW]
        .strip()
        .replace(f"FROM {CUSTOMERS_TABLE}", f"FROM {customers}"),
    ]
    readers = ("analysts_us", "analysts_eu", "fraud_ops", "data_scientists")
    for group in readers:
        statements += [
            f"GRANT USE CATALOG ON CATALOG {catalog} TO `{group}`",
            f"GRANT USE SCHEMA ON SCHEMA {catalog}.gold TO `{group}`",
            f"GRANT SELECT ON TABLE {customers} TO `{group}`",
        ]
    statements += [
        f"GRANT SELECT ON TABLE {payments} TO `fraud_ops`",
        f"GRANT SELECT ON TABLE {payments} TO `data_scientists`",
        f"GRANT USE CATALOG ON CATALOG {catalog} TO `partners`",
        f"GRANT USE SCHEMA ON SCHEMA {schema} TO `partners`",
        f"GRANT SELECT ON VIEW {schema}.{SUMMARY_VIEW} TO `partners`",
        f"REVOKE SELECT ON TABLE {customers} FROM `partners`",
        f"""CREATE OR REPLACE POLICY mask_tagged_emails ON SCHEMA {catalog}.silver
COMMENT 'Mask every column tagged as an e-mail address'
COLUMN MASK {schema}.mask_email
TO `account users` EXCEPT `fraud_ops`
FOR TABLES
MATCH COLUMNS has_tag_value('pii_class', 'email_address') AS email
ON COLUMN email""",
    ]
    return statements


def apply_on_databricks(spark: SparkSession, catalog: str = "main") -> int:
    """Run :func:`databricks_statements` when the engine is Databricks; returns how many ran
    (0 elsewhere: the statements need Unity Catalog)."""
    from lakehouse.governance import run_on_databricks

    return run_on_databricks(spark, databricks_statements(catalog))


def describe_policy() -> pd.DataFrame:
    """The policy as a table: per persona, its groups, regions and each column's form."""
    rows = []
    for p in PERSONAS:
        pol = effective_policy(p)
        rows.append(
            {
                "persona": p.name,
                "groups": ", ".join(p.groups),
                "regions": ", ".join(r for r in REGIONS if r in pol.regions) or "none",
                "email": pol.email,
                "name": pol.name,
                "card": pol.card,
                "summary": pol.summary,
            }
        )
    return pd.DataFrame(rows)
