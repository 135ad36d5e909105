"""Lineage and impact: which table and column each table's columns come from, and what depends
on a column. Lesson 06_governance/06::

    CONTRACTS                       per target table, the SELECT its pipeline computes: the
                                    pipeline's lineage, declared beside its code
      -> parsed with sqlglot        aliases resolved, ``*`` expanded, columns qualified
      -> governance.table_lineage   one row per (source table, target table)
      -> governance.column_lineage  one row per (source column, target column)
                                    (the column names of Databricks' system.access tables)
    check_contracts                 each contract against Spark's analyzed plan of the real
                                    tables: its sources exist, its output is the table's columns
    downstream / upstream           everything derived from a column, everything a column
                                    comes from (a recursive CTE in SQL, or Python here)
    erasure_scope                   the tables and key columns holding a customer: lesson 04's
                                    runbook
    governance.lineage_evidence     the lesson's checks, one row each

A contract is Spark SQL that runs: Spark analyzes it against the real source tables, so a
renamed or dropped source column, a missing table, or a target that gained a column makes
:func:`check_contracts` name the table. The SELECT states where each column comes from; it
need not repeat every rule of the pipeline (deduplication, quarantine, SCD2 windows), only its
columns' sources. On Databricks, Unity Catalog captures the same lineage from every query it
runs (``system.access.table_lineage`` / ``column_lineage``): :func:`databricks_queries`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import sqlglot
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DateType, StringType, StructField, StructType, TimestampType
from sqlglot import exp
from sqlglot.lineage import lineage as sqlglot_lineage
from sqlglot.optimizer.qualify import qualify

from lakehouse.governance import GOVERNANCE_SCHEMA

TABLE_LINEAGE = f"{GOVERNANCE_SCHEMA}.table_lineage"
COLUMN_LINEAGE = f"{GOVERNANCE_SCHEMA}.column_lineage"
EVIDENCE_TABLE = f"{GOVERNANCE_SCHEMA}.lineage_evidence"
CUSTOMER_KEYS = f"{GOVERNANCE_SCHEMA}.customer_keys"  # lesson 03's vault: optional here
DIALECT = "databricks"
LAYERS = ("bronze", "silver", "gold", "ml")

# The columns of Databricks' system.access.table_lineage that a local capture can fill (the
# account, metastore, workspace and run ids have no local meaning). Locally a full name is
# schema.table; on Databricks it is catalog.schema.table.
_COMMON_HEAD = (
    ("entity_type", StringType()),
    ("entity_id", StringType()),
    ("source_table_full_name", StringType()),
    ("source_table_catalog", StringType()),
    ("source_table_schema", StringType()),
    ("source_table_name", StringType()),
    ("source_type", StringType()),
)
_TARGET = (
    ("target_table_full_name", StringType()),
    ("target_table_catalog", StringType()),
    ("target_table_schema", StringType()),
    ("target_table_name", StringType()),
    ("target_type", StringType()),
)
_COMMON_TAIL = (
    ("created_by", StringType()),
    ("event_time", TimestampType()),
    ("event_date", DateType()),
)
TABLE_LINEAGE_SCHEMA = StructType(
    [StructField(n, t, True) for n, t in (*_COMMON_HEAD, *_TARGET, *_COMMON_TAIL)]
)
COLUMN_LINEAGE_SCHEMA = StructType(
    [
        StructField(n, t, True)
        for n, t in (
            *_COMMON_HEAD,
            ("source_column_name", StringType()),
            *_TARGET,
            ("target_column_name", StringType()),
            *_COMMON_TAIL,
        )
    ]
)
EDGE_COLUMNS = ("source_table", "source_column", "target_table", "target_column")


@dataclass(frozen=True)
class Contract:
    """A pipeline's lineage: the table it writes and the SELECT it computes, in Spark SQL.

    ``entity`` is the lesson whose notebook runs the pipeline (Databricks' ``entity_id`` of a
    notebook run); ``builder`` the package function that holds the code."""

    target: str
    sql: str
    entity: str
    builder: str

    def __post_init__(self) -> None:
        if self.target.count(".") != 1:
            raise ValueError(f"contract target {self.target!r}: use schema.table")


# --------------------------------------------------------------------------- the contracts

# Bronze's own columns: where a row came from, kept in Bronze, not carried further.
_BRONZE_ONLY = "_corrupt_record, _source_system, _ingestion_date"
_NOT_REVENUE = "('cancelled', 'returned')"
_AS_OF = "DATE'2026-07-01'"  # gold.customer_360's as_of_date: a literal, so no lineage


def _fx(currency: str) -> str:
    """Units of ``currency`` per USD at the course's fixed rates (lakehouse.gold.facts), as SQL."""
    from lakehouse.gold.facts import FX_PER_USD

    cases = " ".join(f"WHEN '{code}' THEN {rate}" for code, rate in FX_PER_USD.items())
    return f"CASE {currency} {cases} END"


def _usd(amount: str, currency: str) -> str:
    return f"round({amount} / {_fx(currency)}, 2)"


def _canonical(bronze: str, *, corrupt: bool = True) -> str:
    except_ = _BRONZE_ONLY if corrupt else _BRONZE_ONLY.replace("_corrupt_record, ", "")
    where = "\nWHERE _corrupt_record IS NULL" if corrupt else ""
    return f"SELECT * EXCEPT ({except_})\nFROM {bronze}{where}"


def _velocity(name: str, seconds: int) -> str:
    return (
        f"count(*) OVER (PARTITION BY p.customer_id ORDER BY unix_timestamp(p.ingest_ts) "
        f"RANGE BETWEEN {seconds} PRECEDING AND 1 PRECEDING) AS {name}"
    )


_DEDUP = "lakehouse.silver.dedup.build_silver_table"
_FACTS = "lakehouse.gold.facts.build_facts"

CONTRACTS: tuple[Contract, ...] = (
    # ---- Silver: typed, valid, deduplicated Bronze rows (02_silver/01, 03)
    Contract("silver.customers", _canonical("bronze.crm_customers"), "02_silver/03", _DEDUP),
    Contract("silver.products", _canonical("bronze.ecommerce_products"), "02_silver/03", _DEDUP),
    Contract("silver.orders", _canonical("bronze.ecommerce_orders"), "02_silver/03", _DEDUP),
    Contract(
        "silver.order_lines", _canonical("bronze.ecommerce_order_lines"), "02_silver/03", _DEDUP
    ),
    Contract("silver.payments", _canonical("bronze.payments_transactions"), "02_silver/03", _DEDUP),
    Contract(
        "silver.web_events", _canonical("bronze.web_events", corrupt=False), "02_silver/03", _DEDUP
    ),
    Contract(
        "silver.customers_history",
        f"""
SELECT c.* EXCEPT ({_BRONZE_ONLY}),
  sha2(concat_ws('|', c.street, c.city, c.state, c.postal_code, c.country, c.segment), 256)
    AS attribute_hash,
  CAST(c.updated_at AS DATE) AS effective_start_date,
  CAST(lead(c.updated_at) OVER (PARTITION BY c.customer_id ORDER BY c.updated_at) AS DATE)
    AS effective_end_date,
  lead(c.updated_at) OVER (PARTITION BY c.customer_id ORDER BY c.updated_at) IS NULL
    AS is_current
FROM bronze.crm_customers AS c
WHERE c._corrupt_record IS NULL""",
        "02_silver/04",
        "lakehouse.silver.scd2.build_customers_history",
    ),
    Contract(
        "silver.support_tickets",
        """
SELECT t.ticket_id, t.customer_id, t.subject, t.status, t.priority, t.channel, t.created_at,
  t.updated_at, t._op = 'delete' AS is_deleted,
  CASE WHEN t._op = 'delete' THEN t._commit_ts END AS deleted_at, t._seq, t._commit_ts
FROM bronze.support_tickets_cdc AS t
WHERE t._corrupt_record IS NULL""",
        "02_silver/05",
        "lakehouse.silver.cdc.build_support_tickets",
    ),
    Contract(
        "silver.web_sessions",
        """
WITH marked AS (
  SELECT e.visitor_id, e.customer_id, e.event_ts, e.event_type, e.page_url,
    CASE WHEN lag(e.event_ts) OVER (PARTITION BY e.visitor_id ORDER BY e.event_ts)
              >= e.event_ts - INTERVAL 30 MINUTES THEN 0 ELSE 1 END AS starts_session
  FROM silver.web_events AS e
), numbered AS (
  SELECT m.*,
    sum(m.starts_session) OVER (PARTITION BY m.visitor_id ORDER BY m.event_ts) AS session_number
  FROM marked AS m
)
SELECT sha2(concat(n.visitor_id, '#', CAST(min(n.event_ts) AS STRING)), 256) AS session_id,
  n.visitor_id, max(n.customer_id) AS customer_id,
  min(n.event_ts) AS session_start, max(n.event_ts) AS session_end,
  unix_timestamp(max(n.event_ts)) - unix_timestamp(min(n.event_ts)) AS duration_seconds,
  count(*) AS event_count, count_if(n.event_type = 'page_view') AS page_views,
  max(n.event_type = 'purchase') AS converted,
  min_by(n.page_url, n.event_ts) AS entry_page, max_by(n.page_url, n.event_ts) AS exit_page
FROM numbered AS n
GROUP BY n.visitor_id, n.session_number""",
        "02_silver/06",
        "lakehouse.silver.sessions.build_web_sessions",
    ),
    # ---- Gold: conformed dimensions with hashed surrogate keys (03_gold/02)
    Contract(
        "gold.dim_geography",
        """
WITH places AS (
  SELECT c.country, c.city, c.state FROM silver.customers_history AS c
  UNION SELECT o.country, o.shipping_city, CAST(NULL AS STRING) FROM silver.orders AS o
  UNION SELECT p.country, p.city, CAST(NULL AS STRING) FROM silver.payments AS p
)
SELECT xxhash64(upper(g.country), lower(g.city)) AS geography_sk, g.country, g.city,
  max(g.state) AS state,
  g.country AS country_name,  -- looked up by country in the course's reference data
  g.country AS region,        -- idem
  g.country AS currency       -- idem
FROM places AS g
GROUP BY g.country, g.city""",
        "03_gold/02",
        "lakehouse.gold.dimensions.build_dim_geography",
    ),
    Contract(
        "gold.dim_product",
        """
SELECT xxhash64(p.product_id) AS product_sk, p.product_id, p.name, p.category, p.subcategory,
  p.brand, p.unit_price, p.unit_cost, p.is_active
FROM silver.products AS p""",
        "03_gold/02",
        "lakehouse.gold.dimensions.build_dim_product",
    ),
    Contract(
        "gold.dim_customer",
        """
SELECT xxhash64(h.customer_id, h.effective_start_date) AS customer_sk, h.customer_id,
  h.first_name, h.last_name, h.email, h.phone, h.date_of_birth, h.street, h.city, h.state,
  h.postal_code, h.country, h.segment, h.signup_date, h.marketing_opt_in,
  coalesce(g.geography_sk, -1) AS geography_sk,
  h.effective_start_date, h.effective_end_date, h.is_current
FROM silver.customers_history AS h
LEFT JOIN gold.dim_geography AS g ON g.country = h.country AND g.city = h.city""",
        "03_gold/02",
        "lakehouse.gold.dimensions.build_dim_customer",
    ),
    # ---- Gold: facts at their grain, keys in force at the event time (03_gold/03)
    Contract(
        "gold.fact_sales",
        f"""
WITH lines AS (
  SELECT l.order_id, l.line_number, o.customer_id, o.order_ts, o.status, o.channel,
    o.currency, o.country, o.shipping_city, l.product_id, l.quantity, l.unit_price,
    l.discount, l.tax,
    round(l.quantity * l.unit_price - l.discount, 2) AS net_amount
  FROM silver.order_lines AS l
  JOIN silver.orders AS o ON o.order_id = l.order_id
)
SELECT s.order_id, s.line_number, CAST(date_format(s.order_ts, 'yyyyMMdd') AS INT) AS date_key,
  coalesce(c.customer_sk, -1) AS customer_sk, coalesce(p.product_sk, -1) AS product_sk,
  coalesce(g.geography_sk, -1) AS geography_sk, s.order_ts, s.status, s.channel, s.currency,
  s.quantity, s.unit_price, s.discount, s.net_amount, s.tax, s.net_amount + s.tax AS total,
  round(s.quantity * p.unit_cost * {_fx("s.currency")}, 2) AS cost,
  s.net_amount - round(s.quantity * p.unit_cost * {_fx("s.currency")}, 2) AS profit,
  {_usd("s.net_amount", "s.currency")} AS net_amount_usd,
  {_usd("s.net_amount + s.tax", "s.currency")} AS total_usd,
  round(s.quantity * p.unit_cost, 2) AS cost_usd,
  {_usd("s.net_amount", "s.currency")} - round(s.quantity * p.unit_cost, 2) AS profit_usd
FROM lines AS s
LEFT JOIN gold.dim_customer AS c
  ON c.customer_id = s.customer_id AND s.order_ts >= c.effective_start_date
  AND (c.effective_end_date IS NULL OR s.order_ts < c.effective_end_date)
LEFT JOIN gold.dim_product AS p ON p.product_id = s.product_id
LEFT JOIN gold.dim_geography AS g ON g.country = s.country AND g.city = s.shipping_city""",
        "03_gold/03",
        _FACTS,
    ),
    Contract(
        "gold.fact_payments",
        f"""
SELECT p.transaction_id, CAST(date_format(p.event_ts, 'yyyyMMdd') AS INT) AS date_key,
  coalesce(c.customer_sk, -1) AS customer_sk, coalesce(g.geography_sk, -1) AS geography_sk,
  p.event_ts, p.merchant_id, p.merchant_category, p.card_network, p.channel, p.currency,
  p.amount, {_usd("p.amount", "p.currency")} AS amount_usd, p.status,
  p.status = 'approved' AS is_approved, p.decline_reason, p.fraud_score, p.is_fraud
FROM silver.payments AS p
LEFT JOIN gold.dim_customer AS c
  ON c.customer_id = p.customer_id AND p.event_ts >= c.effective_start_date
  AND (c.effective_end_date IS NULL OR p.event_ts < c.effective_end_date)
LEFT JOIN gold.dim_geography AS g ON g.country = p.country AND g.city = p.city""",
        "03_gold/03",
        _FACTS,
    ),
    # ---- Gold: one row per customer (03_gold/04)
    Contract(
        "gold.customer_360",
        f"""
WITH sales AS (
  SELECT d.customer_id,
    count(DISTINCT s.order_id) AS orders_count,
    count(DISTINCT CASE WHEN s.status IN {_NOT_REVENUE} THEN s.order_id END)
      AS cancelled_returned_orders,
    count(DISTINCT CASE WHEN s.status NOT IN {_NOT_REVENUE} THEN s.order_id END)
      AS revenue_orders,
    coalesce(sum(CASE WHEN s.status NOT IN {_NOT_REVENUE} THEN s.total_usd END), 0)
      AS lifetime_value_usd,
    min(to_date(CAST(s.date_key AS STRING), 'yyyyMMdd')) AS first_order_date,
    max(to_date(CAST(s.date_key AS STRING), 'yyyyMMdd')) AS last_order_date
  FROM gold.fact_sales AS s
  JOIN gold.dim_customer AS d ON d.customer_sk = s.customer_sk
  GROUP BY d.customer_id
), payments AS (
  SELECT d.customer_id, count(*) AS payment_attempts,
    count_if(f.is_approved) AS approved_payments,
    coalesce(sum(CASE WHEN f.is_approved THEN f.amount_usd END), 0) AS approved_amount_usd,
    count_if(NOT coalesce(f.is_approved, false)) AS declined_payments,
    count_if(f.is_fraud) AS fraud_flagged_payments
  FROM gold.fact_payments AS f
  JOIN gold.dim_customer AS d ON d.customer_sk = f.customer_sk
  GROUP BY d.customer_id
), web AS (
  SELECT w.customer_id, count(*) AS web_sessions,
    count_if(to_date(w.session_start) >= date_sub({_AS_OF}, 30)) AS web_sessions_last_30d,
    count_if(w.converted) AS converted_sessions,
    max(to_date(w.session_start)) AS last_session_date
  FROM silver.web_sessions AS w
  GROUP BY w.customer_id
), tickets AS (
  SELECT t.customer_id, count(*) AS support_tickets,
    count_if(t.status IN ('open', 'pending')) AS open_support_tickets,
    max(to_date(t.created_at)) AS last_ticket_date
  FROM silver.support_tickets AS t
  WHERE NOT t.is_deleted
  GROUP BY t.customer_id
)
SELECT c.customer_id, c.customer_sk, c.first_name, c.last_name, c.email, c.segment, c.city,
  c.country, c.signup_date, datediff({_AS_OF}, c.signup_date) AS tenure_days,
  c.marketing_opt_in, coalesce(s.orders_count, 0) AS orders_count,
  coalesce(s.cancelled_returned_orders, 0) AS cancelled_returned_orders,
  coalesce(s.lifetime_value_usd, 0) AS lifetime_value_usd,
  s.lifetime_value_usd / s.revenue_orders AS avg_order_value_usd,
  s.first_order_date, s.last_order_date,
  datediff({_AS_OF}, s.last_order_date) AS days_since_last_order,
  coalesce(p.payment_attempts, 0) AS payment_attempts,
  coalesce(p.approved_amount_usd, 0) AS approved_amount_usd,
  p.approved_payments / p.payment_attempts AS approval_rate,
  coalesce(p.declined_payments, 0) AS declined_payments,
  coalesce(p.fraud_flagged_payments, 0) AS fraud_flagged_payments,
  coalesce(w.web_sessions, 0) AS web_sessions,
  coalesce(w.web_sessions_last_30d, 0) AS web_sessions_last_30d,
  w.last_session_date, datediff({_AS_OF}, w.last_session_date) AS days_since_last_visit,
  w.converted_sessions / w.web_sessions AS web_conversion_rate,
  coalesce(t.support_tickets, 0) AS support_tickets,
  coalesce(t.open_support_tickets, 0) AS open_support_tickets,
  t.last_ticket_date, {_AS_OF} AS as_of_date
FROM gold.dim_customer AS c
LEFT JOIN sales AS s ON s.customer_id = c.customer_id
LEFT JOIN payments AS p ON p.customer_id = c.customer_id
LEFT JOIN web AS w ON w.customer_id = c.customer_id
LEFT JOIN tickets AS t ON t.customer_id = c.customer_id
WHERE c.is_current""",
        "03_gold/04",
        "lakehouse.gold.customer360.build_customer_360",
    ),
    # ---- ML: features as known at each payment's arrival (05_ml/01)
    Contract(
        "ml.payment_features",
        f"""
SELECT p.transaction_id, p.customer_id, p.ingest_ts AS feature_ts,
  {_usd("p.amount", "p.currency")} AS amount_usd, p.channel, p.merchant_category,
  {_velocity("payments_1h", 3600)},
  {_velocity("payments_24h", 24 * 3600)},
  {_velocity("payments_7d", 7 * 24 * 3600)},
  {_usd("p.amount", "p.currency")} / avg({_usd("p.amount", "p.currency")}) OVER (
    PARTITION BY p.customer_id ORDER BY unix_timestamp(p.ingest_ts)
    RANGE BETWEEN 2592000 PRECEDING AND 1 PRECEDING) AS amount_to_mean_30d,
  count(*) OVER (PARTITION BY p.customer_id, p.country ORDER BY p.ingest_ts
    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) = 0 AS is_new_country,
  count(*) OVER (PARTITION BY p.customer_id, p.device_fingerprint ORDER BY p.ingest_ts
    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) = 0 AS is_new_device,
  coalesce(r.fraud_rate, 0.0) AS category_fraud_rate
FROM silver.payments AS p
LEFT JOIN (
  SELECT q.merchant_category, avg(CAST(l.is_fraud AS DOUBLE)) AS fraud_rate
  FROM ml.fraud_labels AS l
  JOIN silver.payments AS q ON q.transaction_id = l.transaction_id
  GROUP BY q.merchant_category
) AS r ON r.merchant_category = p.merchant_category""",
        "05_ml/01",
        "lakehouse.ml.features.payment_features",
    ),
    Contract(
        "ml.customer_daily_features",
        f"""
WITH days AS (
  SELECT p.customer_id, to_date(p.ingest_ts) AS feature_date, count(*) AS payments_day,
    sum({_usd("p.amount", "p.currency")}) AS amount_usd_day,
    count_if(p.status = 'declined') AS declines_day,
    sum(CAST(l.is_fraud AS INT)) AS fraud_notices_day
  FROM silver.payments AS p
  LEFT JOIN ml.fraud_labels AS l ON l.transaction_id = p.transaction_id
  GROUP BY p.customer_id, to_date(p.ingest_ts)
)
SELECT d.customer_id, d.feature_date,
  CAST(date_add(d.feature_date, 1) AS TIMESTAMP) AS feature_ts,
  d.payments_day, d.amount_usd_day, d.declines_day,
  sum(d.payments_day) OVER last_30_days AS payments_30d,
  sum(d.amount_usd_day) OVER last_30_days AS amount_usd_30d,
  sum(d.declines_day) OVER last_30_days AS declines_30d,
  sum(d.fraud_notices_day) OVER (PARTITION BY d.customer_id ORDER BY d.feature_date)
    AS fraud_notices_to_date
FROM days AS d
WINDOW last_30_days AS (PARTITION BY d.customer_id ORDER BY unix_date(d.feature_date)
  RANGE BETWEEN 29 PRECEDING AND CURRENT ROW)""",
        "05_ml/01",
        "lakehouse.ml.features.customer_daily_features",
    ),
    Contract(
        "ml.customer_features_online",
        """
SELECT latest.* EXCEPT (feature_date, newest), current_timestamp() AS as_of_ts
FROM (
  SELECT d.*, row_number() OVER (PARTITION BY d.customer_id ORDER BY d.feature_ts DESC)
    AS newest
  FROM ml.customer_daily_features AS d
) AS latest
WHERE latest.newest = 1""",
        "05_ml/01",
        "lakehouse.ml.features.online_features",
    ),
    # ---- ML: scoring, batch and streaming (05_ml/06); the model is a function of the features
    Contract(
        "gold.fraud_scores",
        """
WITH scored AS (
  SELECT p.transaction_id, p.customer_id, p.ingest_ts,
    -- stands for the model @champion: its score is computed from these inputs
    1 / (1 + exp(-(f.payments_1h + f.payments_24h + f.payments_7d + f.amount_to_mean_30d
      + CAST(f.is_new_country AS INT) + CAST(f.is_new_device AS INT)
      + f.category_fraud_rate + d.fraud_notices_to_date))) AS score
  FROM silver.payments AS p
  JOIN ml.payment_features AS f ON f.transaction_id = p.transaction_id
  LEFT JOIN ml.customer_daily_features AS d
    ON d.customer_id = p.customer_id AND d.feature_ts <= p.ingest_ts
)
SELECT s.transaction_id AS payment_id, s.customer_id, s.ingest_ts AS event_ts,
  'fraud_detector' AS model_name, 1 AS model_version, 'champion' AS model_alias,
  s.score, 0.5 AS threshold, s.score >= 0.5 AS flagged, current_timestamp() AS scored_at
FROM scored AS s""",
        "05_ml/06",
        "lakehouse.ml.scoring.score_payments",
    ),
    Contract(
        "ml.inference_log",
        """
WITH scored AS (
  SELECT p.transaction_id, p.customer_id, p.ingest_ts,
    to_json(struct(f.payments_1h, f.payments_24h, f.payments_7d, f.amount_to_mean_30d,
      f.is_new_country, f.is_new_device, f.category_fraud_rate, p.channel,
      p.merchant_category, p.card_network)) AS features,
    -- stands for the model @champion: its score is computed from these inputs
    1 / (1 + exp(-(f.payments_1h + f.payments_24h + f.payments_7d + f.amount_to_mean_30d
      + CAST(f.is_new_country AS INT) + CAST(f.is_new_device AS INT)
      + f.category_fraud_rate))) AS score
  FROM silver.payments AS p
  JOIN ml.payment_features AS f ON f.transaction_id = p.transaction_id
)
SELECT s.transaction_id AS request_id, 'stream' AS source, s.transaction_id AS payment_id,
  s.customer_id, s.ingest_ts AS event_ts, 'fraud_detector' AS model_name,
  1 AS model_version, 'champion' AS model_alias, 'served' AS role, s.features, s.score,
  0.5 AS threshold, s.score >= 0.5 AS flagged, CAST(NULL AS DOUBLE) AS latency_ms,
  CAST(0 AS BIGINT) AS batch_id, current_timestamp() AS logged_at
FROM scored AS s""",
        "05_ml/06",
        "lakehouse.ml.scoring.inference_writer",
    ),
)
CORE_TARGETS = tuple(c.target for c in CONTRACTS if not c.target.startswith(("ml.", "gold.fraud")))


def contract_for(target: str, contracts: Sequence[Contract] = CONTRACTS) -> Contract:
    """The contract whose target is ``target``; an unknown name lists the known ones."""
    for contract in contracts:
        if contract.target == target:
            return contract
    raise KeyError(f"no contract for {target!r}: use one of {[c.target for c in contracts]}")


# --------------------------------------------------------------------------- parsing

Schema = Mapping[str, Mapping[str, str]]  # "schema.table" -> {column: type}


def parse(sql: str) -> exp.Expression:
    """The SELECT as sqlglot's syntax tree (Databricks' dialect, which is Spark SQL's); a
    statement that is not a query is refused with its text."""
    try:
        expression = sqlglot.parse_one(sql, dialect=DIALECT)
    except sqlglot.errors.ParseError as error:
        raise ValueError(f"cannot parse the contract's SQL: {error}") from None
    if not isinstance(expression, exp.Query):
        raise ValueError(f"a contract is a SELECT, got {type(expression).__name__}: {sql[:80]!r}")
    return expression


def _nested(schema: Schema) -> dict[str, dict[str, dict[str, str]]]:
    """``{"silver.customers": {...}}`` -> ``{"silver": {"customers": {...}}}``, sqlglot's form."""
    nested: dict[str, dict[str, dict[str, str]]] = {}
    for full_name, columns in schema.items():
        db, _, name = full_name.partition(".")
        nested.setdefault(db, {})[name] = dict(columns)
    return nested


def table_name(table: exp.Table) -> str:
    """``schema.table`` of a table reference (its alias dropped)."""
    return f"{table.db}.{table.name}" if table.db else table.name


def source_tables(sql: str) -> tuple[str, ...]:
    """The tables a SELECT reads (its CTEs' names excluded), sorted."""
    expression = parse(sql)
    ctes = {cte.alias_or_name for cte in expression.find_all(exp.CTE)}
    return tuple(
        sorted({table_name(t) for t in expression.find_all(exp.Table) if table_name(t) not in ctes})
    )


def qualified(sql: str, schema: Schema | None = None) -> exp.Expression:
    """The SELECT with every column qualified by its table's alias and every ``*`` expanded,
    from the source tables' columns in ``schema`` (sqlglot's ``qualify``)."""
    return qualify(
        parse(sql),
        schema=_nested(schema or {}),
        dialect=DIALECT,
        validate_qualify_columns=False,
        identify=False,
    )


def output_columns(sql: str, schema: Schema | None = None) -> tuple[str, ...]:
    """The names of the columns a SELECT returns, ``*`` expanded."""
    return tuple(select.alias_or_name for select in qualified(sql, schema).selects)


def typed_edges(target: str, sql: str, schema: Schema | None = None) -> list[tuple[str, ...]]:
    """:func:`column_edges` with a fifth field, how the target is computed from the source:
    one of :data:`KINDS` (what an erasure needs to know: a copied or hashed key identifies a
    customer's rows, an aggregate or a derived value does not)."""
    expression = qualified(sql, schema)
    nested = _nested(schema or {})
    edges: dict[tuple[str, ...], str] = {}
    nodes = sqlglot_lineage(None, expression, schema=nested, dialect=DIALECT)
    for output, node in nodes.items():
        for leaf, path in _leaves(node, ()):
            column = leaf.name.rsplit(".", 1)[-1]
            if column == "*":
                continue
            key = (table_name(leaf.source), column, target, output)
            kind = _kind_of_path(path)
            if key not in edges or KINDS.index(kind) > KINDS.index(edges[key]):
                edges[key] = kind
    return sorted((*key, kind) for key, kind in edges.items())


def _leaves(node, path):
    path = (*path, node)
    if not node.downstream:
        if isinstance(node.source, exp.Table):
            yield node, path
        return
    for child in node.downstream:
        yield from _leaves(child, path)


KINDS = ("copy", "hash", "derived", "aggregate")  # from the most to the least identifying
_VALUE_PICKS = (exp.Max, exp.Min, exp.First, exp.Last, exp.AnyValue, exp.ArgMax, exp.ArgMin)
_WRAPPERS = (exp.Cast, exp.TryCast, exp.Coalesce, exp.Paren)
_HASHES = (exp.SHA2, exp.SHA, exp.MD5, exp.StandardHash)
_HASH_NAMES = {"xxhash64", "hash", "sha1", "sha256"}


def _expression_kind(expression: exp.Expression) -> str:
    """How a projection computes its value: ``copy`` (a column's value: the column, a cast, a
    coalesce with literals, or an aggregate that picks one of its values such as ``max`` or
    ``min_by``), ``hash`` (a hash of copies: a pseudonymous key), ``aggregate`` (a count, sum
    or window over rows), else ``derived``."""
    inner = expression.this if isinstance(expression, exp.Alias) else expression
    if isinstance(inner, (exp.Column, exp.Table, exp.Star)):
        return "copy"
    if inner.find(exp.Window):
        return "aggregate"
    is_hash = isinstance(inner, _HASHES) or (
        isinstance(inner, exp.Anonymous) and inner.name.lower() in _HASH_NAMES
    )
    if is_hash or isinstance(inner, _WRAPPERS + _VALUE_PICKS):
        args = [a for a in inner.iter_expressions() if a.find(exp.Column)]
        kinds = [_expression_kind(a) for a in args] or ["derived"]
        worst = max(kinds, key=KINDS.index)
        if is_hash and worst == "copy":
            return "hash"
        return worst
    if inner.find(exp.AggFunc):
        return "aggregate"
    return "derived"


def _kind_of_path(path) -> str:
    """The least identifying kind along a lineage path (a hash of a copy is a hash)."""
    kinds = [_expression_kind(step.expression) for step in path]
    return max(kinds, key=KINDS.index)


def column_edges(target: str, sql: str, schema: Schema | None = None) -> list[tuple[str, ...]]:
    """Column lineage of one contract: ``(source_table, source_column, target_table,
    target_column)`` for every source column each output column is computed from, through
    aliases, ``*``, joins, subqueries and CTEs (sqlglot's ``lineage``). An output computed from
    no column (a literal, ``current_timestamp()``) has no row, as on Databricks.

    Example::

        >>> column_edges("gold.t", "SELECT c.id, lower(c.email) AS e FROM silver.c AS c")
        [('silver.c', 'email', 'gold.t', 'e'), ('silver.c', 'id', 'gold.t', 'id')]
    """
    return [edge[:4] for edge in typed_edges(target, sql, schema)]


def _resolve(select: exp.Select, alias: str, column: str, depth: int = 0) -> tuple | None:
    """The base table and column that ``alias.column`` in ``select`` passes through unchanged
    (through CTEs and subqueries); None when it is computed."""
    if depth > 20:
        return None
    for source in [select.args.get("from_"), *(select.args.get("joins") or [])]:
        if source is None:
            continue
        this = source.this
        if this.alias_or_name != alias:
            continue
        if isinstance(this, exp.Table):
            ctes = {cte.alias_or_name: cte.this for cte in select.root().find_all(exp.CTE)}
            if this.name in ctes and not this.db:
                return _through(ctes[this.name], column, depth)
            return (table_name(this), column)
        if isinstance(this, exp.Subquery):
            return _through(this.this, column, depth)
    return None


def _through(query: exp.Expression, column: str, depth: int) -> tuple | None:
    if not isinstance(query, exp.Select):
        return None
    for projection in query.selects:
        if projection.alias_or_name != column:
            continue
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(inner, exp.Column):
            return _resolve(query, inner.table, inner.name, depth + 1)
    return None


def join_keys(sql: str, schema: Schema | None = None) -> list[tuple[str, str, str, str]]:
    """The column equalities a contract joins on, each as ``(table, column, table, column)``
    (sorted within the pair), followed through CTEs and subqueries to the base tables: the
    columns that hold the same identifier in two tables, which an erasure must follow although
    no value flows from one to the other."""
    expression = qualified(sql, schema)
    pairs = set()
    for select in expression.find_all(exp.Select):
        for join in select.args.get("joins") or []:
            condition = join.args.get("on")
            if condition is None:
                continue
            for eq in condition.find_all(exp.EQ):
                left, right = eq.left, eq.right
                if not (isinstance(left, exp.Column) and isinstance(right, exp.Column)):
                    continue
                a = _resolve(select, left.table, left.name)
                b = _resolve(select, right.table, right.name)
                if a and b and a != b:
                    pairs.add((*min(a, b), *max(a, b)))
    return sorted(pairs)


# --------------------------------------------------------------------------- the lake's schemas


def lake_schema(spark: SparkSession, tables: Iterable[str]) -> dict[str, dict[str, str]]:
    """The columns of each table that exists, from Spark's analyzed plan of ``spark.table``
    (no data read): what ``*`` expands to and which table of a join holds a column."""
    schema = {}
    for table in sorted(set(tables)):
        if spark.catalog.tableExists(table):
            schema[table] = {f.name: f.dataType.simpleString() for f in spark.table(table).schema}
    return schema


def contracts_schema(
    spark: SparkSession | None, contracts: Sequence[Contract]
) -> dict[str, dict[str, str]]:
    """The schema the contracts are parsed with: every source and target table's columns from
    the lake when it exists, else from the contract that computes it (so a chain parses
    before its tables are built)."""
    tables = {s for c in contracts for s in source_tables(c.sql)} | {c.target for c in contracts}
    schema: dict[str, dict[str, str]] = lake_schema(spark, tables) if spark is not None else {}
    by_target = {c.target: c for c in contracts}
    pending = [t for t in sorted(tables) if t not in schema and t in by_target]
    for _ in range(len(pending) + 1):
        for table in list(pending):
            needed = set(source_tables(by_target[table].sql))
            if needed <= schema.keys():
                columns = output_columns(by_target[table].sql, schema)
                schema[table] = {column: "unknown" for column in columns}
                pending.remove(table)
    return schema


# --------------------------------------------------------------------------- lineage tables


def lineage_edges(contracts: Sequence[Contract], schema: Schema | None = None) -> pd.DataFrame:
    """Column lineage of every contract as one frame: ``EDGE_COLUMNS``, ``kind`` (see
    :func:`typed_edges`) and ``entity``."""
    rows = []
    for contract in contracts:
        for edge in typed_edges(contract.target, contract.sql, schema):
            rows.append((*edge, contract.entity))
    return pd.DataFrame(rows, columns=[*EDGE_COLUMNS, "kind", "entity"])


def _split(full_name: str, catalog: str | None) -> dict[str, str | None]:
    schema, _, name = full_name.partition(".")
    return {"full_name": full_name, "catalog": catalog, "schema": schema, "name": name}


def lineage_frames(
    spark: SparkSession,
    edges: pd.DataFrame,
    *,
    catalog: str | None = None,
    created_by: str = "lakehouse",
    event_time: dt.datetime | None = None,
) -> tuple[DataFrame, DataFrame]:
    """``(table_lineage, column_lineage)`` as Spark DataFrames with the columns of Databricks'
    ``system.access`` tables, one row per distinct table pair and column pair."""
    event_time = (event_time or dt.datetime.now(dt.UTC)).replace(tzinfo=None, microsecond=0)
    column_rows, table_rows = [], {}
    for edge in edges.itertuples(index=False):
        source, target = _split(edge.source_table, catalog), _split(edge.target_table, catalog)
        head = ("NOTEBOOK", edge.entity, *source.values(), "TABLE")
        tail = (created_by, event_time, event_time.date())
        column_rows.append(
            (*head, edge.source_column, *target.values(), "TABLE", edge.target_column, *tail)
        )
        table_rows[(edge.source_table, edge.target_table)] = (
            *head,
            *target.values(),
            "TABLE",
            *tail,
        )
    return (
        spark.createDataFrame(sorted(table_rows.values(), key=str), TABLE_LINEAGE_SCHEMA),
        spark.createDataFrame(sorted(set(column_rows), key=str), COLUMN_LINEAGE_SCHEMA),
    )


def write_lineage(
    spark: SparkSession, table_df: DataFrame, column_df: DataFrame
) -> tuple[str, str]:
    """Overwrite ``governance.table_lineage`` and ``governance.column_lineage``: each run
    captures the contracts as they are (Delta's history keeps the earlier captures)."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    for df, table in ((table_df, TABLE_LINEAGE), (column_df, COLUMN_LINEAGE)):
        (
            df.write.format("delta")
            .mode("overwrite")
            .option("overwriteSchema", "true")
            .saveAsTable(table)
        )
    return TABLE_LINEAGE, COLUMN_LINEAGE


def edges_of(column_lineage: pd.DataFrame) -> pd.DataFrame:
    """The four columns that matter for a traversal, from a ``column_lineage`` frame."""
    return column_lineage.rename(
        columns={
            "source_table_full_name": "source_table",
            "source_column_name": "source_column",
            "target_table_full_name": "target_table",
            "target_column_name": "target_column",
        }
    )[list(EDGE_COLUMNS)].drop_duplicates()


# --------------------------------------------------------------------------- traversal


def _walk(edges: pd.DataFrame, table: str, column: str, *, down: bool) -> pd.DataFrame:
    edges = edges_of(edges) if "source_table" not in edges.columns else edges
    step = {}
    for e in edges.itertuples(index=False):
        a, b = (e.source_table, e.source_column), (e.target_table, e.target_column)
        if not down:
            a, b = b, a
        step.setdefault(a, set()).add(b)
    start = (table, column)
    known = {a for a in step} | {b for bs in step.values() for b in bs}
    if start not in known:
        raise ValueError(
            f"{table}.{column} is in no lineage edge: check the name (schema.table, column) "
            "or capture the lineage first"
        )
    hops = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(step.get(node, ())):
            if nxt not in hops:
                hops[nxt] = hops[node] + 1
                queue.append(nxt)
    rows = [(t, c, h) for (t, c), h in hops.items() if h > 0]
    return (
        pd.DataFrame(rows, columns=["table_full_name", "column_name", "hops"])
        .sort_values(["hops", "table_full_name", "column_name"])
        .reset_index(drop=True)
    )


def downstream(edges: pd.DataFrame, table: str, column: str) -> pd.DataFrame:
    """Every column computed, directly or not, from ``table.column``, with the fewest hops
    that reach it: what a change to the column (or its erasure) touches."""
    return _walk(edges, table, column, down=True)


def upstream(edges: pd.DataFrame, table: str, column: str) -> pd.DataFrame:
    """Every column ``table.column`` is computed from, directly or not: where a number in a
    report comes from."""
    return _walk(edges, table, column, down=False)


def downstream_sql(table: str, column: str, lineage_table: str = COLUMN_LINEAGE) -> str:
    """The downstream query as a recursive CTE, for Spark 4.1+ and Databricks (Runtime 17+,
    SQL warehouses) alike: the lesson's task asks for it; this is the complete answer."""
    return f"""
WITH RECURSIVE downstream (table_full_name, column_name, hops) AS (
  SELECT target_table_full_name, target_column_name, 1
  FROM {lineage_table}
  WHERE source_table_full_name = '{table}' AND source_column_name = '{column}'
  UNION ALL
  SELECT l.target_table_full_name, l.target_column_name, d.hops + 1
  FROM {lineage_table} AS l
  JOIN downstream AS d
    ON l.source_table_full_name = d.table_full_name AND l.source_column_name = d.column_name
)
SELECT table_full_name, column_name, min(hops) AS hops
FROM downstream
GROUP BY table_full_name, column_name"""


# --------------------------------------------------------------------------- the cross-check

CHECK_COLUMNS = ("target", "status", "detail")


def check_contract(spark: SparkSession, contract: Contract) -> tuple[str, str]:
    """One contract against the lake: ``(status, detail)``, status ``agrees``, ``drift`` or
    ``not built`` (its table or a source is not in this lake). Spark analyzes the contract's
    SELECT against the real sources (a missing table or column fails there) and its output
    columns are compared with the target table's, both from analyzed plans (nothing runs)."""
    missing = [
        t
        for t in (contract.target, *source_tables(contract.sql))
        if not spark.catalog.tableExists(t)
    ]
    if missing:
        return "not built", f"not in this lake: {', '.join(missing)}"
    try:
        declared = spark.sql(contract.sql).columns
    except Exception as error:  # an AnalysisException, classic or through Spark Connect
        return "drift", f"Spark cannot analyze the contract: {_analysis_error(error)}"
    actual = spark.table(contract.target).columns
    problems = []
    if len(set(declared)) != len(declared):
        twice = sorted({c for c in declared if declared.count(c) > 1})
        problems.append(f"declares {twice} twice")
    if extra := sorted(set(declared) - set(actual)):
        problems.append(f"declares {extra}, which the table lacks")
    if lacking := sorted(set(actual) - set(declared)):
        problems.append(f"the table has {lacking}, which the contract does not declare")
    if problems:
        return "drift", "; ".join(problems)
    return "agrees", f"{len(actual)} columns from {len(source_tables(contract.sql))} sources"


def _analysis_error(error: Exception) -> str:
    """An analysis error as its condition and the first name it quotes (``UNRESOLVED_COLUMN
    (customer_ref)``): the same words classic and through Spark Connect, whose messages
    differ in their details."""
    text = str(error)
    condition = re.search(r"\[([A-Z][A-Z_]+)(?:\.[A-Z_]+)?\]", text)
    name = re.search(r"`[^`]+`(?:\.`[^`]+`)*", text)
    if condition is None:
        return text.strip().splitlines()[0][:160] if text.strip() else type(error).__name__
    return condition.group(1) + (f" ({name.group(0).replace('`', '')})" if name else "")


def check_contracts(spark: SparkSession, contracts: Sequence[Contract]) -> pd.DataFrame:
    """Every contract through :func:`check_contract`: one row per target table."""
    rows = [(c.target, *check_contract(spark, c)) for c in contracts]
    return pd.DataFrame(rows, columns=list(CHECK_COLUMNS))


def assert_contracts_agree(results: pd.DataFrame, required: Iterable[str] = ()) -> str:
    """Fail naming every table whose contract drifted from its table, or a ``required`` table
    that could not be checked; else one line."""
    drift = results[results["status"] == "drift"]
    if len(drift):
        lines = "; ".join(f"{r.target}: {r.detail}" for r in drift.itertuples())
        raise AssertionError(
            f"{len(drift)} contracts disagree with their tables ({lines}): change the contract "
            "in lakehouse.governance.lineage.CONTRACTS together with the pipeline, so the "
            "lineage says what the code does"
        )
    unchecked = sorted(set(required) - set(results.loc[results["status"] == "agrees", "target"]))
    if unchecked:
        raise AssertionError(
            f"contracts not checked: {unchecked}; build their tables first (the setup cell)"
        )
    agree = int((results["status"] == "agrees").sum())
    return f"{agree} contracts agree with Spark's analyzed plans of their tables"


# --------------------------------------------------------------------------- erasure scope

SCOPE_COLUMNS = ("table_full_name", "key_columns", "action", "reached_by")


def all_join_keys(
    contracts: Sequence[Contract], schema: Schema | None = None
) -> list[tuple[str, str, str, str]]:
    """:func:`join_keys` of every contract, without repeats."""
    return sorted({pair for c in contracts for pair in join_keys(c.sql, schema)})


def erasure_scope(
    edges: pd.DataFrame,
    joins: Iterable[tuple[str, str, str, str]],
    subject: str = "silver.customers.customer_id",
    *,
    vault: str | None = None,
) -> pd.DataFrame:
    """The tables holding a data subject's rows, and the key column(s) to delete them by,
    starting from the subject's identifier column (``schema.table.column``):

    - downstream, every column that **copies** or **hashes** a key column (a surrogate key
      such as ``xxhash64(customer_id, ...)`` identifies the customer as well);
    - upstream, every column a key column is a **copy** of (Bronze keeps the raw rows);
    - across joins, every column a contract joins a key column with (``silver.orders``'
      customer_id is the same identifier, though no value flows between the two);
    - ``vault`` (lesson 03's ``governance.customer_keys``, when it exists), by customer_id.

    A table built from a table in scope but holding none of these keys (an aggregate, a KPI,
    a dimension of places) cannot be deleted from by key: it is listed with action
    ``recompute`` (rebuild it once the deletes are done).
    Returns one row per table: :data:`SCOPE_COLUMNS`, deletes first, by layer and name."""
    table, _, column = subject.rpartition(".")
    if not table or "." not in table:
        raise ValueError(f"subject {subject!r}: use schema.table.column")
    edges = edges_of(edges) if "source_table" not in edges.columns else edges
    if "kind" not in edges.columns:
        raise ValueError("erasure_scope needs the edges' kind: pass lineage_edges(...)")
    start = (table, column)
    nodes = {(e.source_table, e.source_column) for e in edges.itertuples()}
    nodes |= {(e.target_table, e.target_column) for e in edges.itertuples()}
    if start not in nodes:
        raise ValueError(f"{subject} is in no lineage edge: check the name")
    down, up = {}, {}
    for e in edges.itertuples(index=False):
        source, target = (e.source_table, e.source_column), (e.target_table, e.target_column)
        if e.kind in ("copy", "hash"):
            down.setdefault(source, []).append((target, f"{e.kind} of {source[0]}.{source[1]}"))
        if e.kind == "copy":
            up.setdefault(target, []).append((source, f"copied into {target[0]}.{target[1]}"))
    same = {}
    for t1, c1, t2, c2 in joins:
        same.setdefault((t1, c1), []).append(((t2, c2), f"joined with {t1}.{c1}"))
        same.setdefault((t2, c2), []).append(((t1, c1), f"joined with {t2}.{c2}"))
    keys = {start: "the subject"}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for step in (down, up, same):
            for nxt, why in step.get(node, ()):
                if nxt not in keys:
                    keys[nxt] = why
                    queue.append(nxt)
    rows = {}
    for (t, c), why in keys.items():
        row = rows.setdefault(t, {"key_columns": [], "reached_by": why})
        row["key_columns"].append(c)
    if vault:
        rows.setdefault(vault, {"key_columns": ["customer_id"], "reached_by": "the key vault"})
    touched = {t for t, _ in keys}
    recompute = set()
    for e in edges.itertuples(index=False):
        if e.source_table in touched and e.target_table not in rows:
            recompute.add(e.target_table)
    records = [
        (t, ", ".join(sorted(r["key_columns"])), "delete", r["reached_by"]) for t, r in rows.items()
    ]
    records += [(t, "", "recompute", "built from a table in scope, no key") for t in recompute]
    frame = pd.DataFrame(records, columns=list(SCOPE_COLUMNS))
    order = frame.assign(
        _a=frame["action"] != "delete",
        _l=frame["table_full_name"].map(layer_rank),
    )
    return (
        order.sort_values(["_a", "_l", "table_full_name"])
        .drop(columns=["_a", "_l"])
        .reset_index(drop=True)
    )


def layer_rank(table: str) -> int:
    """The medallion order of a table's schema: bronze 0, silver 1, gold 2, ml 3, others 4."""
    schema = table.split(".")[0]
    return LAYERS.index(schema) if schema in LAYERS else len(LAYERS)


# --------------------------------------------------------------------------- the picture


def draw_lineage(
    ax,
    table_edges: Iterable[tuple[str, str]],
    *,
    highlight: Iterable[str] = (),
    title: str = "",
) -> dict[str, tuple[float, float]]:
    """Draw the table lineage graph on a matplotlib ``ax``: one column per layer (bronze,
    silver, gold, ml), tables stacked in each, an arrow per (source, target); tables in
    ``highlight`` in red. Returns each table's position."""
    table_edges = sorted(set(table_edges))
    tables = sorted({t for e in table_edges for t in e}, key=lambda t: (layer_rank(t), t))
    columns: dict[int, list[str]] = {}
    for t in tables:
        columns.setdefault(layer_rank(t), []).append(t)
    tallest = max((len(v) for v in columns.values()), default=1)
    position = {}
    for x, (_, names) in enumerate(sorted(columns.items())):
        for i, name in enumerate(names):
            position[name] = (float(x), tallest - 1 - i * (tallest - 1) / max(len(names) - 1, 1))
    marked = set(highlight)
    for source, target in table_edges:
        (x1, y1), (x2, y2) = position[source], position[target]
        red = source in marked and target in marked
        ax.annotate(
            "",
            xy=(x2 - 0.08, y2),
            xytext=(x1 + 0.08, y1),
            arrowprops={
                "arrowstyle": "->",
                "color": "tab:red" if red else "0.75",
                "lw": 1.2 if red else 0.6,
                "connectionstyle": "arc3,rad=0.08",
            },
        )
    for name, (x, y) in position.items():
        ax.text(
            x,
            y,
            name.split(".", 1)[1],
            ha="center",
            va="center",
            fontsize=7,
            bbox={
                "boxstyle": "round,pad=0.25",
                "fc": "mistyrose" if name in marked else "white",
                "ec": "tab:red" if name in marked else "0.5",
            },
        )
    layers = [LAYERS[i] if i < len(LAYERS) else "other" for i in sorted(columns)]
    ax.set_xticks(range(len(layers)), layers)
    ax.set_yticks([])
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_ylim(-1, tallest)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)
    return position


# --------------------------------------------------------------------------- Databricks


def databricks_queries(catalog: str = "main") -> dict[str, str]:
    """The lesson's questions asked of Unity Catalog's own lineage (``system.access``), which
    records every read and write of a table by any notebook, job or dashboard: full names
    carry the catalog there."""
    email = f"{catalog}.silver.customers"
    kpi = f"{catalog}.gold.customer_360"
    return {
        "downstream of silver.customers.email": downstream_sql(
            email, "email", "system.access.column_lineage"
        ).strip(),
        "upstream of gold.customer_360.lifetime_value_usd": f"""
WITH RECURSIVE upstream (table_full_name, column_name, hops) AS (
  SELECT source_table_full_name, source_column_name, 1
  FROM system.access.column_lineage
  WHERE target_table_full_name = '{kpi}' AND target_column_name = 'lifetime_value_usd'
  UNION ALL
  SELECT l.source_table_full_name, l.source_column_name, u.hops + 1
  FROM system.access.column_lineage AS l
  JOIN upstream AS u
    ON l.target_table_full_name = u.table_full_name AND l.target_column_name = u.column_name
)
SELECT table_full_name, column_name, min(hops) AS hops
FROM upstream
GROUP BY table_full_name, column_name""".strip(),
        "who wrote gold.customer_360 this week": f"""
SELECT entity_type, entity_id, created_by, max(event_time) AS last_write,
  collect_set(source_table_full_name) AS sources
FROM system.access.table_lineage
WHERE target_table_full_name = '{kpi}' AND event_date >= current_date() - INTERVAL 7 DAYS
GROUP BY entity_type, entity_id, created_by""".strip(),
    }


def run_on_databricks(spark: SparkSession, catalog: str = "main") -> dict[str, pd.DataFrame]:
    """Run :func:`databricks_queries` when the engine is Databricks (system tables enabled,
    ``SELECT`` on ``system.access``); an empty dict elsewhere."""
    from lakehouse.session import engine_of

    if engine_of(spark) != "databricks":
        return {}
    return {name: spark.sql(sql).toPandas() for name, sql in databricks_queries(catalog).items()}


# --------------------------------------------------------------------------- the tasks' checks

# The lesson's first task parses this SELECT: aliases, an unqualified column of each side of a
# join, an expression, a rename and a star, the traps of column lineage in one statement.
TEACHING_TARGET = "gold.payments_by_place"
TEACHING_SQL = """
SELECT c.customer_id, lower(email) AS email_normalized, p.transaction_id, amount,
  p.event_ts AS paid_at, g.*
FROM silver.customers AS c
JOIN silver.payments AS p ON p.customer_id = c.customer_id
JOIN gold.dim_geography AS g ON g.country = p.country AND g.city = p.city""".strip()
FLAT_CONTRACTS = ("gold.dim_customer", "gold.dim_product", "gold.fact_payments")


def check_column_lineage(column_lineage_rows, schema: Schema) -> str:
    """The first task's check: ``column_lineage_rows(target, sql, schema)`` gives the same
    rows as :func:`column_edges` on the teaching SELECT and on the flat contracts; a mismatch
    is named by its likely cause."""
    cases = [(TEACHING_TARGET, TEACHING_SQL)]
    cases += [(t, contract_for(t).sql) for t in FLAT_CONTRACTS]
    for target, sql in cases:
        try:
            got = {tuple(row) for row in column_lineage_rows(target, sql, schema)}
        except Exception as error:  # noqa: BLE001 (the learner's code, reported as it failed)
            raise AssertionError(
                f"column_lineage_rows({target!r}, ...) raised {type(error).__name__}: {error}"
            ) from error
        expected = set(column_edges(target, sql, schema))
        if got == expected:
            continue
        bad_width = [row for row in got if len(row) != 4]
        if bad_width:
            raise AssertionError(
                f"rows must be (source_table, source_column, target_table, target_column), "
                f"got {bad_width[0]}"
            )
        aliases = sorted({row[0] for row in got if row[0] not in schema})
        if aliases:
            raise AssertionError(
                f"{target}: source table {aliases} is not a table but an alias: map each alias "
                "to its table (FROM silver.customers AS c -> c is silver.customers) before "
                "writing a row"
            )
        lineless = sorted({r[3] for r in expected} - {r[3] for r in got})
        if lineless:
            raise AssertionError(
                f"{target}: output columns {lineless} have no lineage: a * (or g.*) must be "
                "expanded to the table's columns first; ln.qualified(sql, schema) expands it "
                "with the schema"
            )
        misplaced = sorted((row[0], row[1]) for row in got if row[1] not in schema.get(row[0], {}))
        if misplaced:
            table, column = misplaced[0]
            raise AssertionError(
                f"{target}: {column} attributed to {table}, which has no column {column}: in a "
                "join, a column belongs to the table its qualifier names (qualify the columns "
                "with the schema, then read column.table)"
            )
        missing, extra = sorted(expected - got), sorted(got - expected)
        raise AssertionError(
            f"{target}: rows differ from the parsed lineage; missing {missing[:3]}, "
            f"extra {extra[:3]}: one row per source column of each output column"
        )
    return (
        f"column lineage ok: the teaching SELECT and {len(FLAT_CONTRACTS)} contracts give "
        "the parsed rows"
    )


DOWNSTREAM_STARTS = (("silver.customers_history", "email"), ("bronze.crm_customers", "email"))


def check_downstream(downstream_of, edges: pd.DataFrame) -> str:
    """The second task's check: ``downstream_of(table, column)`` (a Spark DataFrame of
    ``table_full_name``, ``column_name``, ``hops``) returns :func:`downstream` for the e-mail's
    starting points; a mismatch is named by its likely cause."""
    for table, column in DOWNSTREAM_STARTS:
        expected = downstream(edges, table, column)
        got_df = downstream_of(table, column)
        wanted = ["table_full_name", "column_name", "hops"]
        if sorted(got_df.columns) != sorted(wanted):
            raise AssertionError(
                f"downstream_of returns columns {got_df.columns}: return exactly {wanted}"
            )
        got = got_df.toPandas()
        got_pairs = set(zip(got["table_full_name"], got["column_name"], strict=True))
        want_pairs = set(zip(expected["table_full_name"], expected["column_name"], strict=True))
        above = upstream(edges, table, column)
        upstream_pairs = set(zip(above["table_full_name"], above["column_name"], strict=True))
        if got_pairs & upstream_pairs:
            found = sorted(got_pairs & upstream_pairs)[0]
            raise AssertionError(
                f"from {table}.{column}, {'.'.join(found)} is upstream (the column comes from "
                "it): join the CTE's column to source_table_full_name/source_column_name and "
                "return target_*, to follow lineage downstream"
            )
        if extra := sorted(got_pairs - want_pairs):
            raise AssertionError(
                f"from {table}.{column}, {len(extra)} columns are not derived from it, e.g. "
                f"{'.'.join(extra[0])}: follow columns, not tables (join on the table AND the "
                "column)"
            )
        if missing := sorted(want_pairs - got_pairs, key=str):
            deep = expected[expected["hops"] > 1]
            hint = (
                "only one hop was followed: recurse (WITH RECURSIVE ... UNION ALL) until no "
                "new column appears"
                if set(zip(deep["table_full_name"], deep["column_name"], strict=True))
                >= set(missing)
                else "every column the lineage derives from it must be returned"
            )
            raise AssertionError(
                f"from {table}.{column}, {len(missing)} downstream columns are missing, e.g. "
                f"{'.'.join(missing[0])}: {hint}"
            )
        merged = got.merge(expected, on=["table_full_name", "column_name"], suffixes=("", "_x"))
        wrong = merged[merged["hops"] != merged["hops_x"]]
        if len(wrong):
            row = wrong.iloc[0]
            raise AssertionError(
                f"{row.table_full_name}.{row.column_name} is {int(row.hops_x)} hops from "
                f"{table}.{column}, got {row.hops}: keep the fewest hops per column (min)"
            )
    counts = ", ".join(f"{t}.{c}: {len(downstream(edges, t, c))}" for t, c in DOWNSTREAM_STARTS)
    return f"downstream ok: every derived column, with the fewest hops ({counts})"


def check_lineage_tables(spark: SparkSession, edges: pd.DataFrame) -> str:
    """The captured tables hold Databricks' column names, one row per parsed edge, and every
    contract's target."""
    for table, schema in (
        (TABLE_LINEAGE, TABLE_LINEAGE_SCHEMA),
        (COLUMN_LINEAGE, COLUMN_LINEAGE_SCHEMA),
    ):
        columns = spark.table(table).columns
        missing = [f.name for f in schema if f.name not in columns]
        assert not missing, f"{table} lacks {missing}: write it with ln.write_lineage"
    column_rows = spark.table(COLUMN_LINEAGE).count()
    distinct_edges = len(edges[list(EDGE_COLUMNS)].drop_duplicates())
    assert column_rows == distinct_edges, (
        f"{COLUMN_LINEAGE} has {column_rows} rows for {distinct_edges} parsed edges: capture "
        "it again (ln.lineage_frames, then ln.write_lineage), which overwrites both tables"
    )
    targets = {r[0] for r in spark.table(TABLE_LINEAGE).select("target_table_full_name").collect()}
    lacking = sorted({c.target for c in CONTRACTS} - targets)
    assert not lacking, f"{TABLE_LINEAGE} lacks the targets {lacking}: capture every contract"
    return (
        f"lineage captured: {column_rows} column edges into {len(targets)} tables, "
        "with Databricks' system.access column names"
    )


# Where a customer's rows must be deleted from, whatever the lake holds beside: the core tables.
ERASURE_MUST_REACH = {
    "bronze.crm_customers": "customer_id",
    "bronze.ecommerce_orders": "customer_id",
    "bronze.payments_transactions": "customer_id",
    "silver.customers": "customer_id",
    "silver.customers_history": "customer_id",
    "silver.orders": "customer_id",
    "silver.payments": "customer_id",
    "gold.dim_customer": "customer_id",
    "gold.fact_sales": "customer_sk",
    "gold.fact_payments": "customer_sk",
    "gold.customer_360": "customer_id",
}


def check_erasure_scope(scope: pd.DataFrame) -> str:
    """The scope reaches every core table with its key, by join and surrogate key too, and
    asks no delete of a table without a key column."""
    deletes = scope[scope["action"] == "delete"].set_index("table_full_name")["key_columns"]
    for table, key in ERASURE_MUST_REACH.items():
        assert table in deletes.index, (
            f"the erasure scope misses {table}: follow copies upstream, hashes downstream and "
            "join keys (ln.erasure_scope with ln.all_join_keys)"
        )
        assert key in deletes[table].split(", "), (
            f"{table} is deleted by {deletes[table]!r}, it holds the customer in {key}"
        )
    keyless = [t for t, k in deletes.items() if not k]
    assert not keyless, f"{keyless}: a delete needs a key column; recompute them instead"
    recompute = int((scope["action"] == "recompute").sum())
    return f"erasure scope ok: {len(deletes)} tables to delete from by key, {recompute} to rebuild"


def write_evidence(spark: SparkSession, checks: Mapping[str, tuple[bool, str]]) -> str:
    """Overwrite ``governance.lineage_evidence`` with one row per check of the lesson: its
    name, whether it passed, what it measured (the columns of the module's other evidence
    tables). A DataFrame write, so it runs on every engine; Delta's history keeps earlier runs."""
    from lakehouse.governance.classification import EVIDENCE_SCHEMA

    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    rows = [("06_governance/06", name, bool(ok), detail) for name, (ok, detail) in checks.items()]
    (
        spark.createDataFrame(rows, EVIDENCE_SCHEMA)
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .saveAsTable(EVIDENCE_TABLE)
    )
    return EVIDENCE_TABLE
