"""lakehouse.governance.lineage: contracts parsed into column lineage (aliases, stars, joins,
CTEs), the kind of each edge, join keys, traversals, the erasure scope, and the checks of
lesson 06_governance/06 against the wrong answers its catalogue lists. No Spark session: the
parsing is sqlglot's, the traversals are Python; the notebook runs the Spark side."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlglot import exp

from lakehouse.governance import lineage as ln

SCHEMA = {
    "silver.customers": {"customer_id": "string", "email": "string", "country": "string"},
    "silver.orders": {"order_id": "string", "customer_id": "string", "amount": "double"},
    "gold.dim_geography": {"geography_sk": "bigint", "country": "string", "city": "string"},
    "silver.payments": {
        "transaction_id": "string",
        "customer_id": "string",
        "amount": "double",
        "event_ts": "timestamp",
        "country": "string",
        "city": "string",
    },
}


def test_aliases_stars_and_unqualified_join_columns_resolve_to_their_tables():
    sql = """
    SELECT c.*, o.order_id, amount * 2 AS doubled, lower(email) AS e
    FROM silver.customers AS c JOIN silver.orders o ON o.customer_id = c.customer_id"""
    assert ln.column_edges("gold.t", sql, SCHEMA) == [
        ("silver.customers", "country", "gold.t", "country"),
        ("silver.customers", "customer_id", "gold.t", "customer_id"),
        ("silver.customers", "email", "gold.t", "e"),
        ("silver.customers", "email", "gold.t", "email"),
        ("silver.orders", "amount", "gold.t", "doubled"),
        ("silver.orders", "order_id", "gold.t", "order_id"),
    ]


def test_lineage_goes_through_ctes_and_subqueries_and_skips_literals():
    sql = """
    WITH totals AS (SELECT customer_id, sum(amount) AS total FROM silver.orders GROUP BY 1)
    SELECT s.customer_id, s.total, 'x' AS tag, current_timestamp() AS at
    FROM (SELECT t.* FROM totals AS t) AS s"""
    assert ln.column_edges("gold.t", sql, SCHEMA) == [
        ("silver.orders", "amount", "gold.t", "total"),
        ("silver.orders", "customer_id", "gold.t", "customer_id"),
    ]
    assert ln.source_tables(sql) == ("silver.orders",)
    assert ln.output_columns(sql, SCHEMA) == ("customer_id", "total", "tag", "at")


def test_edge_kinds_tell_copies_and_hashes_from_aggregates():
    sql = """
    SELECT max(o.customer_id) AS picked, coalesce(o.customer_id, -1) AS kept,
      xxhash64(o.customer_id, o.order_id) AS sk, upper(o.customer_id) AS shouted,
      count(o.customer_id) AS n,
      CAST(lead(o.amount) OVER (PARTITION BY o.customer_id ORDER BY o.amount) AS INT) AS nxt
    FROM silver.orders AS o GROUP BY o.customer_id, o.order_id, o.amount"""
    kinds = {(e[1], e[3]): e[4] for e in ln.typed_edges("gold.t", sql, SCHEMA)}
    assert kinds[("customer_id", "picked")] == "copy"
    assert kinds[("customer_id", "kept")] == "copy"
    assert kinds[("customer_id", "sk")] == kinds[("order_id", "sk")] == "hash"
    assert kinds[("customer_id", "shouted")] == "derived"
    assert kinds[("customer_id", "n")] == "aggregate"
    assert kinds[("customer_id", "nxt")] == "aggregate"  # a window is never a key


def test_join_keys_are_followed_through_ctes_to_base_tables():
    sql = """
    WITH o AS (SELECT customer_id, sum(amount) AS total FROM silver.orders GROUP BY 1)
    SELECT c.customer_id, o.total FROM silver.customers AS c
    LEFT JOIN o ON o.customer_id = c.customer_id
    JOIN (SELECT x.customer_id AS cid FROM silver.payments AS x) AS p ON p.cid = c.customer_id"""
    assert ln.join_keys(sql, SCHEMA) == [
        ("silver.customers", "customer_id", "silver.orders", "customer_id"),
        ("silver.customers", "customer_id", "silver.payments", "customer_id"),
    ]


def test_a_contract_is_a_select_on_a_named_table():
    with pytest.raises(ValueError, match="schema.table"):
        ln.Contract("customers", "SELECT 1", "x", "y")
    with pytest.raises(ValueError, match="a contract is a SELECT"):
        ln.parse("DELETE FROM silver.customers WHERE customer_id = 'C1'")
    with pytest.raises(ValueError, match="cannot parse"):
        ln.parse("SELECT FROM WHERE (")
    with pytest.raises(KeyError, match="use one of"):
        ln.contract_for("gold.nothing")


def test_every_contract_parses_and_targets_a_table_once():
    targets = [c.target for c in ln.CONTRACTS]
    assert len(targets) == len(set(targets))
    schema = ln.contracts_schema(None, ln.CONTRACTS)  # no lake: chains through the contracts
    assert "silver.customers" not in schema  # a Bronze-fed table needs Bronze's columns
    for contract in ln.CONTRACTS:
        assert ln.source_tables(contract.sql), contract.target
        assert contract.target not in ln.source_tables(contract.sql)


# --------------------------------------------------------------------------- traversals

EDGES = pd.DataFrame(
    [
        ("bronze.crm", "email", "silver.customers", "email", "copy"),
        ("bronze.crm", "email", "silver.history", "email", "copy"),
        ("silver.history", "email", "gold.dim", "email", "copy"),
        ("gold.dim", "email", "gold.c360", "email", "copy"),
        ("bronze.crm", "customer_id", "silver.history", "customer_id", "copy"),
        ("silver.history", "customer_id", "gold.dim", "customer_sk", "hash"),
        ("silver.history", "customer_id", "gold.dim", "customer_id", "copy"),
        ("gold.dim", "customer_id", "gold.c360", "customer_id", "copy"),
        ("gold.dim", "customer_sk", "gold.fact", "customer_sk", "copy"),
        ("gold.fact", "amount", "gold.c360", "revenue", "aggregate"),
        ("gold.c360", "country", "gold.kpi", "customers", "aggregate"),
        ("gold.c360", "customer_id", "gold.kpi", "customers", "aggregate"),
        ("bronze.orders", "customer_id", "silver.orders", "customer_id", "copy"),
    ],
    columns=[*ln.EDGE_COLUMNS, "kind"],
)


def test_downstream_follows_columns_over_every_hop_with_the_fewest_hops():
    got = ln.downstream(EDGES, "bronze.crm", "email")
    assert list(got.itertuples(index=False, name=None)) == [
        ("silver.customers", "email", 1),
        ("silver.history", "email", 1),
        ("gold.dim", "email", 2),
        ("gold.c360", "email", 3),
    ]
    assert ln.downstream(EDGES, "silver.customers", "email").empty


def test_upstream_is_the_reverse_walk():
    got = ln.upstream(EDGES, "gold.c360", "email")
    assert set(got["table_full_name"]) == {"gold.dim", "silver.history", "bronze.crm"}
    with pytest.raises(ValueError, match="in no lineage edge"):
        ln.upstream(EDGES, "gold.c360", "nothing")


def test_erasure_scope_follows_copies_hashes_and_joins_never_aggregates():
    joins = [("gold.dim", "customer_id", "silver.orders", "customer_id")]
    scope = ln.erasure_scope(EDGES, joins, "silver.history.customer_id", vault="governance.keys")
    deletes = scope[scope["action"] == "delete"].set_index("table_full_name")["key_columns"]
    assert deletes.to_dict() == {
        "bronze.crm": "customer_id",
        "bronze.orders": "customer_id",
        "silver.history": "customer_id",
        "silver.orders": "customer_id",
        "gold.c360": "customer_id",
        "gold.dim": "customer_id, customer_sk",
        "gold.fact": "customer_sk",
        "governance.keys": "customer_id",
    }
    recompute = scope[scope["action"] == "recompute"]["table_full_name"].tolist()
    assert recompute == ["silver.customers", "gold.kpi"]  # fed by a table in scope, no key
    with pytest.raises(ValueError, match="schema.table.column"):
        ln.erasure_scope(EDGES, joins, "customer_id")


def test_downstream_sql_is_a_recursive_cte_over_the_lineage_table():
    sql = ln.downstream_sql("silver.customers", "email")
    assert "WITH RECURSIVE" in sql and ln.COLUMN_LINEAGE in sql
    parsed = ln.parse(sql)
    assert isinstance(parsed, exp.Select)
    assert set(ln.databricks_queries("main")) == {
        "downstream of silver.customers.email",
        "upstream of gold.customer_360.lifetime_value_usd",
        "who wrote gold.customer_360 this week",
    }
    assert all("system.access" in q for q in ln.databricks_queries().values())


def test_the_picture_places_layers_left_to_right():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    pairs = set(zip(EDGES["source_table"], EDGES["target_table"], strict=True))
    position = ln.draw_lineage(ax, pairs, highlight={"gold.dim"})
    plt.close(fig)
    assert position["bronze.crm"][0] < position["silver.history"][0] < position["gold.dim"][0]


# --------------------------------------------------------------------------- the tasks' checks


def _rows_solution(target, select_sql, schema):
    select = ln.qualified(select_sql, schema)
    tables = {t.alias_or_name: ln.table_name(t) for t in select.find_all(exp.Table)}
    rows = set()
    for projection in select.selects:
        for column in projection.find_all(exp.Column):
            rows.add((tables[column.table], column.name, target, projection.alias_or_name))
    return sorted(rows)


def _rows_alias_kept(target, select_sql, schema):
    select = ln.qualified(select_sql, schema)
    return sorted(
        {
            (column.table, column.name, target, projection.alias_or_name)
            for projection in select.selects
            for column in projection.find_all(exp.Column)
        }
    )


def _rows_star_kept(target, select_sql, schema):
    select = ln.parse(select_sql)
    tables = {t.alias_or_name: ln.table_name(t) for t in select.find_all(exp.Table)}
    first = ln.table_name(select.find(exp.From).this)
    rows = set()
    for projection in select.selects:
        for column in projection.find_all(exp.Column):
            table = tables.get(column.table, first)
            rows.add((table, column.name, target, projection.alias_or_name))
    return sorted(rows)


def _rows_from_table(target, select_sql, schema):
    select = ln.qualified(select_sql, schema)
    first = ln.table_name(select.find(exp.From).this)
    return sorted(
        {
            (first, column.name, target, projection.alias_or_name)
            for projection in select.selects
            for column in projection.find_all(exp.Column)
        }
    )


@pytest.fixture(scope="module")
def course_schema():
    """The columns of the tables the first task's SELECTs read, as the lake has them."""
    return {
        **SCHEMA,
        "silver.customers": dict.fromkeys(
            ["customer_id", "first_name", "email", "city", "country", "signup_date"], "string"
        ),
        "silver.customers_history": dict.fromkeys(
            "customer_id first_name last_name email phone date_of_birth street city state "
            "postal_code country segment signup_date marketing_opt_in effective_start_date "
            "effective_end_date is_current".split(),
            "string",
        ),
        "gold.dim_geography": dict.fromkeys(
            "geography_sk country city state country_name region currency".split(), "string"
        ),
        "silver.products": dict.fromkeys(
            "product_id name category subcategory brand unit_price unit_cost is_active".split(),
            "string",
        ),
        "silver.payments": dict.fromkeys(
            "transaction_id event_ts customer_id merchant_id merchant_category amount currency "
            "card_network channel country city status decline_reason fraud_score "
            "is_fraud".split(),
            "string",
        ),
        "gold.dim_customer": dict.fromkeys(
            "customer_sk customer_id effective_start_date effective_end_date".split(), "string"
        ),
    }


def test_the_column_lineage_check_passes_the_solution(course_schema):
    assert ln.check_column_lineage(_rows_solution, course_schema).startswith("column lineage ok")


@pytest.mark.parametrize(
    ("wrong", "named"),
    [
        (_rows_alias_kept, "is not a table but an alias"),
        (_rows_star_kept, "must be expanded"),
        (_rows_from_table, "belongs to the table its qualifier names"),
    ],
)
def test_the_column_lineage_check_names_each_mistake(course_schema, wrong, named):
    with pytest.raises(AssertionError, match=named):
        ln.check_column_lineage(wrong, course_schema)


class _Frame:
    """A stand-in for the Spark DataFrame the second task returns."""

    def __init__(self, pdf: pd.DataFrame):
        self._pdf = pdf
        self.columns = list(pdf.columns)

    def toPandas(self):  # noqa: N802 (Spark's name)
        return self._pdf


def _course_edges():
    return pd.DataFrame(
        [
            ("bronze.crm_customers", "email", "silver.customers", "email"),
            ("bronze.crm_customers", "email", "silver.customers_history", "email"),
            ("bronze.crm_customers", "city", "silver.customers_history", "city"),
            ("silver.customers_history", "email", "gold.dim_customer", "email"),
            ("silver.customers_history", "city", "gold.dim_customer", "city"),
            ("gold.dim_customer", "email", "gold.customer_360", "email"),
            ("gold.dim_customer", "city", "gold.customer_360", "city"),
        ],
        columns=list(ln.EDGE_COLUMNS),
    )


def _one_hop(edges):
    def downstream_of(table, column):
        hit = edges[(edges.source_table == table) & (edges.source_column == column)]
        return _Frame(
            pd.DataFrame(
                {
                    "table_full_name": hit.target_table,
                    "column_name": hit.target_column,
                    "hops": 1,
                }
            )
        )

    return downstream_of


def _tables_only(edges):
    def downstream_of(table, column):
        reached, frontier, rows = {table}, {table}, {}
        hops = 0
        while frontier:
            hops += 1
            hit = edges[edges.source_table.isin(frontier)]
            for t, c in zip(hit.target_table, hit.target_column, strict=True):
                rows.setdefault((t, c), hops)
            frontier = set(hit.target_table) - reached
            reached |= frontier
        return _Frame(
            pd.DataFrame(
                [(t, c, h) for (t, c), h in rows.items()],
                columns=["table_full_name", "column_name", "hops"],
            )
        )

    return downstream_of


def test_the_downstream_check_passes_the_solution_and_names_each_mistake():
    edges = _course_edges()
    right = lambda t, c: _Frame(ln.downstream(edges, t, c))  # noqa: E731
    assert ln.check_downstream(right, edges).startswith("downstream ok")
    upstream = lambda t, c: _Frame(ln.upstream(edges, t, c))  # noqa: E731
    for wrong, named in (
        (_one_hop(edges), "only one hop"),
        (_tables_only(edges), "follow columns, not tables"),
        (upstream, "is upstream"),
    ):
        with pytest.raises(AssertionError, match=named):
            ln.check_downstream(wrong, edges)


# --------------------------------------------------------------------------- on Spark (embedded)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "governance_lineage_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    session.sql("CREATE SCHEMA IF NOT EXISTS silver")
    session.sql("CREATE SCHEMA IF NOT EXISTS gold")
    session.createDataFrame(
        [("C1", "a@example.com", "US")], "customer_id string, email string, country string"
    ).write.format("delta").mode("overwrite").saveAsTable("silver.customers")
    session.createDataFrame(
        [("C1", "a@example.com")], "customer_id string, email_normalized string"
    ).write.format("delta").mode("overwrite").saveAsTable("gold.audience")
    yield session
    mp.undo()


AUDIENCE = "SELECT c.customer_id, lower(c.email) AS email_normalized FROM silver.customers AS c"


def test_check_contract_runs_the_select_through_spark_analyzer(spark):
    agrees = ln.Contract("gold.audience", AUDIENCE, "x", "y")
    assert ln.check_contract(spark, agrees) == ("agrees", "2 columns from 1 sources")
    extra = ln.Contract("gold.audience", AUDIENCE.replace(" FROM", ", c.country FROM"), "x", "y")
    status, detail = ln.check_contract(spark, extra)
    assert status == "drift" and "declares ['country'], which the table lacks" in detail
    gone = ln.Contract("gold.audience", AUDIENCE.replace("c.email", "c.mail"), "x", "y")
    status, detail = ln.check_contract(spark, gone)
    assert status == "drift" and detail.endswith("UNRESOLVED_COLUMN (c.mail)")
    missing = ln.Contract("gold.nowhere", AUDIENCE, "x", "y")
    assert ln.check_contract(spark, missing)[0] == "not built"
    results = ln.check_contracts(spark, [agrees, extra])
    with pytest.raises(AssertionError, match="gold.audience: declares"):
        ln.assert_contracts_agree(results)
    with pytest.raises(AssertionError, match="not checked"):
        ln.assert_contracts_agree(results.iloc[:0], required=["gold.audience"])


def test_lineage_frames_carry_databricks_columns_and_the_recursive_cte_walks_them(spark):
    table_df, column_df = ln.lineage_frames(spark, EDGES.assign(entity="lesson"), catalog="dev")
    assert [f.name for f in column_df.schema] == [f.name for f in ln.COLUMN_LINEAGE_SCHEMA]
    assert "source_column_name" not in table_df.columns
    assert table_df.count() == len(set(zip(EDGES.source_table, EDGES.target_table, strict=True)))
    column_df.createOrReplaceTempView("lineage_under_test")
    got = (
        spark.sql(ln.downstream_sql("bronze.crm", "email", "lineage_under_test"))
        .toPandas()
        .sort_values(["hops", "table_full_name"])
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(
        got, ln.downstream(EDGES, "bronze.crm", "email"), check_dtype=False
    )
