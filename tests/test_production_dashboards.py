"""The KPI dashboard of 07_production/03 on small explicit Gold tables: the spec's views against
the package's analytics and counts made in Python, the lesson's checks against the catalogued
wrong answers, the Databricks dashboard file (structure, drift from the spec, every dataset's
SQL run on local Spark) and the HTML page served on loopback and read back in headless Chromium
(Debian's chromium driven by Playwright), which saves a screenshot to reports/."""

from __future__ import annotations

import html
import json
import os
import stat
import urllib.error
import urllib.request
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import catalogue
from pyspark.sql import functions as F

from lakehouse.gold import analytics, attempts, customer360, dates, dimensions, facts
from lakehouse.production import bundle, dashboards, lvdash
from lakehouse.production.dashboards import SPEC, Kpi

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "solutions/07_production/03_kpi_dashboards.ipynb"
MISTAKES = catalogue.load(LESSON)
SCREENSHOT = ROOT / "reports" / "kpi_dashboard.png"


def mistakes_of(cell: str) -> list[dict]:
    return [m for m in MISTAKES if m["task_cell"] == cell]


# ------------------------------------------------------------------------------------------------
# Small Gold tables: every KPI has an edge row (a null network, an unknown place, a declined
# payment without a reason, a month without sales, a cancelled and an unknown order line...)
# ------------------------------------------------------------------------------------------------
GEOGRAPHY = [
    {"geography_sk": -1},  # the unknown member: no country
    {"geography_sk": 1, "country": "US", "city": "Austin"},
    {"geography_sk": 2, "country": "GB", "city": "London"},
    {"geography_sk": 3, "country": "DE", "city": "Berlin"},
]
CUSTOMERS = [  # the customers' home countries differ from where some of them pay
    {"customer_sk": -1},
    {"customer_sk": 10, "customer_id": "C10", "country": "US", "segment": "consumer"},
    {"customer_sk": 20, "customer_id": "C20", "country": "DE", "segment": "vip"},
]


def payment(tid, day, sk_geo, sk_cust, network, approved, reason=None, fraud=False,
            category="travel", usd="10.00", score=0.1):  # fmt: skip
    return {
        "transaction_id": tid,
        "date_key": int(day.replace("-", "")),
        "customer_sk": sk_cust,
        "geography_sk": sk_geo,
        "event_ts": datetime.fromisoformat(f"{day} 12:00:00"),
        "merchant_category": category,
        "card_network": network,
        "amount_usd": Decimal(usd),
        "is_approved": approved,
        "status": "approved" if approved else "declined",
        "decline_reason": reason,
        "is_fraud": fraud,
        "fraud_score": score,
    }


# US: day 1 three of three approved, day 2 none of one: pooled 0.75, mean of days 0.5.
PAYMENTS = [
    payment("P1", "2026-03-01", 1, 10, "visa", True, usd="100.00"),
    payment("P2", "2026-03-01", 1, 10, "visa", True, category="fuel", usd="20.50"),
    payment("P3", "2026-03-01", 1, 20, "mastercard", True, fraud=True, usd="300.00", score=0.9),
    payment("P4", "2026-03-02", 1, 10, "visa", False, "insufficient_funds", category="fuel"),
    payment("P5", "2026-03-01", 2, 10, "mastercard", False, "do_not_honor"),
    payment("P6", "2026-03-02", 2, 20, "amex", True, fraud=True, category=None, usd="55.25"),
    payment("P7", "2026-03-02", 3, 20, None, False, None, fraud=True, category="fuel"),
    payment("P8", "2026-03-02", -1, -1, "visa", False, "insufficient_funds"),
]


def attempt(aid, tid, no, processor, approved, day="2026-03-01"):
    return {
        "attempt_id": aid,
        "transaction_id": tid,
        "attempt_no": no,
        "retry_of": None,
        "attempt_ts": datetime.fromisoformat(f"{day} 11:0{no}:00"),
        "processor": processor,
        "routed_randomly": False,
        "response_code": "00" if approved else "05",
        "approved": approved,
        "latency_ms": 100 * no,
    }


# woodgrove: P1 first try; P2 declined, then approved on retry; P4 declined three times.
# relecloud: P3, P6 at once; P5 declined twice. lamna: P7, P8 declined once.
# The first attempts, every attempt and the final outcomes give three different rates.
RAW_ATTEMPTS = [
    attempt("A01", "P1", 1, "woodgrove", True),
    attempt("A02", "P2", 1, "woodgrove", False),
    attempt("A03", "P2", 2, "woodgrove", True),
    attempt("A04", "P4", 1, "woodgrove", False, "2026-03-02"),
    attempt("A05", "P4", 2, "woodgrove", False, "2026-03-02"),
    attempt("A06", "P4", 3, "woodgrove", False, "2026-03-02"),
    attempt("A07", "P3", 1, "relecloud", True),
    attempt("A08", "P6", 1, "relecloud", True, "2026-03-02"),
    attempt("A09", "P5", 1, "relecloud", False),
    attempt("A10", "P5", 2, "relecloud", False),
    attempt("A11", "P7", 1, "lamna", False, "2026-03-02"),
    attempt("A12", "P8", 1, "lamna", False, "2026-03-02"),
    attempt("A13", "PX", 1, "trey", True),  # a payment Gold does not hold (quarantined)
]


def line(order, n, day, status, usd):
    return {
        "order_id": order,
        "line_number": n,
        "date_key": int(day.replace("-", "")) if day else -1,
        "customer_sk": 10,
        "product_sk": 1,
        "geography_sk": 1,
        "status": status,
        "net_amount_usd": Decimal(usd),
    }


SALES = [  # January and March sell, February does not
    line("O1", 1, "2026-01-05", "completed", "100.00"),
    line("O1", 2, "2026-01-05", "completed", "50.00"),
    line("O2", 1, "2026-01-20", "shipped", "25.10"),
    line("O3", 1, "2026-02-10", "cancelled", "70.00"),  # not revenue
    line("O4", 1, "2026-03-03", "processing", "12.35"),
    line("O5", 1, None, None, "9.99"),  # a line whose order is unknown
]
C360 = [
    {"customer_id": "C10", "segment": "consumer", "lifetime_value_usd": Decimal("187.45")},
    {"customer_id": "C20", "segment": "vip", "lifetime_value_usd": Decimal("0.00")},
    {"customer_id": "C30", "segment": "consumer", "lifetime_value_usd": Decimal("10.00")},
    {"customer_id": "C40", "segment": None, "lifetime_value_usd": Decimal("5.00")},
]


def write(spark, table, schema, rows):
    tuples = [tuple(row.get(f.name) for f in schema.fields) for row in rows]
    spark.createDataFrame(tuples, schema).write.format("delta").mode("overwrite").saveAsTable(table)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "dashboard_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    session.sql("CREATE SCHEMA IF NOT EXISTS gold")
    write(session, "gold.dim_geography", dimensions.DIM_GEOGRAPHY_SCHEMA, GEOGRAPHY)
    write(session, "gold.dim_customer", dimensions.DIM_CUSTOMER_SCHEMA, CUSTOMERS)
    write(session, facts.FACT_PAYMENTS, facts.FACT_PAYMENTS_SCHEMA, PAYMENTS)
    write(session, facts.FACT_SALES, facts.FACT_SALES_SCHEMA, SALES)
    write(session, customer360.CUSTOMER_360, customer360.CUSTOMER_360_SCHEMA, C360)
    dates.date_dimension(session, date(2026, 1, 1), date(2026, 3, 31)).write.format(
        "delta"
    ).saveAsTable(dates.DIM_DATE)
    raw_root = tmp_path_factory.mktemp("raw")
    session.createDataFrame(
        [tuple(a.values()) for a in RAW_ATTEMPTS], attempts.source_ddl()
    ).write.parquet(str(raw_root / "payments" / "attempts"))
    attempts.ensure_payment_attempts(session, raw_root)
    dashboards.create_views(session)
    yield session
    mp.undo()


@pytest.fixture(scope="module")
def rows(spark):
    """Each KPI's rows, read from its view by Spark, in chart order."""
    return {k.name: dashboards.read_kpi(spark, k).collect() for k in SPEC}


def by(rows_list, key):
    return {r[key]: r for r in dashboards.records(rows_list)}


# ------------------------------------------------------------------------------------------------
# The spec
# ------------------------------------------------------------------------------------------------
def test_the_spec_names_one_view_per_kpi_over_gold_tables():
    names = [k.name for k in SPEC]
    assert len(names) == len(set(names))
    known = {
        facts.FACT_PAYMENTS,
        facts.FACT_SALES,
        attempts.FACT_PAYMENT_ATTEMPTS,
        dimensions.DIM_GEOGRAPHY,
        dates.DIM_DATE,
        customer360.CUSTOMER_360,
    }
    for item in SPEC:
        assert item.view == f"gold.{item.name}"
        assert item.inputs and set(item.inputs) <= known, item.inputs
    assert {k.chart for k in SPEC} == set(dashboards.CHARTS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "approval"}, "use kpi_ and lower-case words"),
        ({"chart": "donut"}, "chart 'donut' is not one of"),
        ({"chart": "counter"}, "a counter has no x"),
        ({"y": ("a", "b")}, "needs an x and exactly one y"),
        ({"x": None}, "needs an x and exactly one y"),
    ],
)
def test_a_kpi_refuses_a_bad_definition(fields, message):
    good = {"name": "kpi_x", "title": "X", "description": "", "sql": "SELECT 1", "chart": "bar",
            "x": "a", "y": ("b",)}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        Kpi(**{**good, **fields})


def test_kpi_lookup_by_name_or_view():
    assert dashboards.kpi("gold.kpi_decline_reasons") is dashboards.kpi("kpi_decline_reasons")
    with pytest.raises(KeyError, match="no KPI 'kpi_nope' in the spec: use one of kpi_headline"):
        dashboards.kpi("kpi_nope")


def test_labels_and_formats_follow_the_column_names():
    assert dashboards.label("approval_rate") == "approval rate"
    assert dashboards.label("net_revenue_usd") == "net revenue (USD)"
    assert dashboards.column_format("approval_rate") == "percent"
    assert dashboards.column_format("share_of_declines") == "percent"
    assert dashboards.column_format("fraud_amount_usd") == "usd"
    assert dashboards.column_format("declines") == "count"


def test_plain_values_are_what_a_page_holds():
    import numpy as np
    import pandas as pd

    assert dashboards.plain(Decimal("12.30")) == 12.3
    assert dashboards.plain(date(2026, 3, 1)) == "2026-03-01"
    assert dashboards.plain(pd.Timestamp("2026-03-01")) == "2026-03-01"
    assert dashboards.plain(datetime(2026, 3, 1, 8, 30)) == "2026-03-01T08:30:00"
    assert dashboards.plain(np.int64(7)) == 7 and type(dashboards.plain(np.int64(7))) is int
    assert dashboards.plain(np.datetime64("2026-03-01T00:00:00.000000000")) == "2026-03-01"
    assert dashboards.plain(np.float64(0.25)) == 0.25
    assert dashboards.plain(float("nan")) is None
    assert dashboards.plain(True) is True


def test_each_chart_draws_its_rows():
    bar = dashboards.kpi("kpi_approval_by_network")
    rows = [{"card_network": "visa", "approval_rate": 0.75}, {"card_network": "amex",
            "approval_rate": 1.0}]  # fmt: skip
    (trace,) = dashboards.figure(bar, rows).data
    assert (trace.type, list(trace.x), list(trace.y)) == ("bar", ["visa", "amex"], [0.75, 1.0])
    pie = dashboards.kpi("kpi_decline_reasons")
    (trace,) = dashboards.figure(pie, [{"decline_reason": "x", "declines": 3}]).data
    assert (trace.type, list(trace.labels), list(trace.values)) == ("pie", ["x"], [3])
    line_kpi = dashboards.kpi("kpi_revenue_monthly")
    monthly = [{"month": date(2026, 1, 1), "net_revenue_usd": Decimal("1.50")}]
    (trace,) = dashboards.figure(line_kpi, monthly).data
    assert (trace.type, list(trace.x), list(trace.y)) == ("scatter", ["2026-01-01"], [1.5])
    headline = dashboards.kpi("kpi_headline")
    values = dict.fromkeys(headline.y, 1) | {"approval_rate": 0.5}
    traces = dashboards.figure(headline, [values]).data
    assert [(t.type, t.name, t.value) for t in traces] == [
        ("indicator", c, values[c]) for c in headline.y
    ]
    with pytest.raises(ValueError, match="must have one row for its counters; it has 2"):
        dashboards.chart_values(headline, [values, values])


def fake_frames():
    import pandas as pd

    frames = {}
    for item in SPEC:
        if item.chart == "counter":
            frames[item.name] = pd.DataFrame([dict.fromkeys(item.y, 1)])
        else:
            frames[item.name] = pd.DataFrame({item.x: ["a<b", "c"], item.y[0]: [1, 2]})
    return frames


def test_the_page_is_self_contained_with_one_chart_per_kpi():
    page = dashboards.dashboard_html(fake_frames())
    assert "<script src=" not in page and len(page) > 3_000_000  # plotly.js is inlined
    for item in SPEC:
        assert f'id="{item.name}"' in page
        assert f'data-view="{item.view}"' in page
        assert html.escape(item.sql) in page  # each view's SQL, escaped, under its chart
    assert page.count('class="plotly-graph-div"') == len(SPEC)
    frames = fake_frames()
    del frames["kpi_decline_reasons"]
    with pytest.raises(KeyError, match=r"no rows for \['kpi_decline_reasons'\]"):
        dashboards.dashboard_html(frames)


def test_serve_serves_a_folder_on_loopback_for_the_block(tmp_path):
    (tmp_path / "page.html").write_text("<p>ok</p>")
    with dashboards.serve(tmp_path) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "page.html") as response:
            assert response.read() == b"<p>ok</p>"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + "missing.html")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "page.html", timeout=5)
    with pytest.raises(FileNotFoundError, match="is not a folder: write the page first"):
        with dashboards.serve(tmp_path / "nope"):
            pass


def test_find_chromium_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(dashboards.CHROMIUM_ENV, str(tmp_path / "no-browser"))
    with pytest.raises(dashboards.ChromiumNotFound, match="is not an executable"):
        dashboards.find_chromium()
    browser = tmp_path / "my-chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(dashboards.CHROMIUM_ENV, str(browser))
    assert dashboards.find_chromium() == str(browser)
    monkeypatch.delenv(dashboards.CHROMIUM_ENV)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(dashboards, "MAC_BROWSERS", ())
    reason = dashboards.chromium_unavailable()
    assert reason and "run scripts/bootstrap" in reason and "apt-get install chromium" in reason


def fake_page(rows_by_kpi):
    charts = {}
    for item in SPEC:
        shown = dashboards.chart_values(item, rows_by_kpi[item.name])
        if item.chart == "counter":
            traces = [{"name": c, "value": v} for c, v in shown["values"].items()]
            marks = len(traces)
        elif item.chart == "pie":
            traces = [{"labels": shown["labels"], "values": shown["values"]}]
            marks = len(shown["labels"])
        else:
            traces = [{"x": shown["x"], "y": shown["y"]}]
            marks = len(shown["x"])
        charts[item.name] = {"id": item.name, "rendered": True, "marks": marks, "traces": traces}
    return {"browser": "test", "charts": charts, "errors": [], "requests_refused": []}


def test_check_rendered_compares_every_value_and_mark():
    frames = fake_frames()
    page = fake_page(frames)
    assert dashboards.check_rendered(page, frames).startswith("8 charts rendered in Chromium test")
    wrong = json.loads(json.dumps(page))
    wrong["charts"]["kpi_approval_by_country"]["traces"][0]["y"] = [1, 3]
    with pytest.raises(AssertionError, match="kpi_approval_by_country: the page shows"):
        dashboards.check_rendered(wrong, frames)
    undrawn = json.loads(json.dumps(page))
    undrawn["charts"]["kpi_decline_reasons"]["marks"] = 0
    with pytest.raises(AssertionError, match="kpi_decline_reasons: 0 marks drawn for 2 values"):
        dashboards.check_rendered(undrawn, frames)
    leaking = {**page, "requests_refused": ["https://cdn.plot.ly/plotly.min.js"]}
    with pytest.raises(AssertionError, match="it is not self-contained"):
        dashboards.check_rendered(leaking, frames)
    missing = {**page, "charts": {k: v for k, v in page["charts"].items() if k != "kpi_headline"}}
    with pytest.raises(AssertionError, match="no chart with id 'kpi_headline'"):
        dashboards.check_rendered(missing, frames)
    broken = {**page, "errors": ["ReferenceError: Plotly is not defined"]}
    with pytest.raises(AssertionError, match="JavaScript errors"):
        dashboards.check_rendered(broken, frames)


# ------------------------------------------------------------------------------------------------
# The .lvdash.json
# ------------------------------------------------------------------------------------------------
def test_the_generated_dashboard_is_well_formed_and_committed():
    doc = lvdash.lvdash()
    assert lvdash.check_lvdash(doc) == []
    assert [d["name"] for d in doc["datasets"]] == [k.name for k in SPEC]
    assert all(d["query"] == k.sql for d, k in zip(doc["datasets"], SPEC))
    assert lvdash.check_committed_lvdash(ROOT).endswith("up to date with the spec")
    assert lvdash.lvdash_json(doc) == lvdash.lvdash_json(lvdash.lvdash())  # deterministic


def test_positions_share_the_pages_layout():
    where = lvdash.positions()
    wide = dashboards.full_width()
    for item in SPEC:
        width = where[item.name]["width"]
        assert width == (lvdash.GRID_COLUMNS if item.name in wide else lvdash.GRID_COLUMNS // 2)
    assert "kpi_headline" in wide and "kpi_revenue_monthly" in wide  # the odd chart out


def test_a_stale_committed_file_is_caught_and_rewritten(tmp_path):
    with pytest.raises(AssertionError, match="is missing: write it with"):
        lvdash.check_committed_lvdash(tmp_path)
    path = tmp_path / lvdash.LVDASH_FILE
    path.parent.mkdir(parents=True)
    doc = lvdash.lvdash()
    doc["datasets"][0]["query"] = "SELECT 1 AS payments"
    path.write_text(lvdash.lvdash_json(doc))
    with pytest.raises(AssertionError, match="differs from the spec's dashboard: rewrite it"):
        lvdash.check_committed_lvdash(tmp_path)
    assert lvdash.main(["--check", "--root", str(tmp_path)]) == 1
    assert lvdash.main(["--root", str(tmp_path)]) == 0
    assert lvdash.main(["--check", "--root", str(tmp_path)]) == 0


def broken(change):
    doc = json.loads(lvdash.lvdash_json(lvdash.lvdash()))
    change(doc)
    return doc


def layout_item(doc, name):
    return next(i for i in doc["pages"][0]["layout"] if i["widget"]["name"] == name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["datasets"].append(dict(d["datasets"][0])), "declared twice"),
        (lambda d: d["datasets"][1].pop("query"), "dataset 'kpi_approval_by_network': no query"),
        (
            lambda d: layout_item(d, "kpi_decline_reasons")["widget"]["queries"][0]["query"].update(
                datasetName="Decline reasons"
            ),
            "datasetName takes the dataset's name",
        ),
        (
            lambda d: layout_item(d, "kpi_approval_by_network")["widget"]["spec"]["encodings"][
                "y"
            ].update(fieldName="attempts"),
            "uses field 'attempts', which is not among the fields its query selects",
        ),
        (
            lambda d: layout_item(d, "kpi_approval_by_network")["position"].update(x=4),
            "passes the page's 6 columns",
        ),
        (
            lambda d: layout_item(d, "kpi_approval_by_network")["position"].update(x=3),
            "overlaps widget 'kpi_approval_by_network'",
        ),
        (
            lambda d: layout_item(d, "kpi_revenue_monthly")["widget"]["spec"].update(version=2),
            "a line widget is spec version 3",
        ),
        (
            lambda d: layout_item(d, "kpi_revenue_monthly")["widget"]["spec"].update(
                widgetType="area"
            ),
            "widgetType 'area' is not one of",
        ),
        (
            lambda d: layout_item(d, "kpi_decline_reasons")["widget"]["spec"]["encodings"].pop(
                "color"
            ),
            "a pie widget needs the encoding 'color'",
        ),
        (
            lambda d: layout_item(d, "title")["widget"].update(name="kpi_revenue_monthly"),
            "widget names are unique",
        ),
        (lambda d: d.update(pages=[]), "needs a list of pages"),
    ],
)
def test_check_lvdash_names_each_problem(change, message):
    problems = lvdash.check_lvdash(broken(change))
    assert any(message in p for p in problems), problems


def test_the_bundle_deploys_the_committed_dashboard():
    loaded = bundle.load_bundle(ROOT)
    dashboard = bundle.resolved_config(loaded, "prod")["resources"]["dashboards"]["lakehouse_kpis"]
    origin = loaded.origin("dashboards", "lakehouse_kpis")
    assert (origin.parent / dashboard["file_path"]).resolve() == lvdash.committed_lvdash(ROOT)
    assert dashboard["dataset_catalog"] == "lakehouse"
    assert "warehouse" in str(dashboard["warehouse_id"])  # looked up by name, no id committed
    assert not [f for f in bundle.check_bundle(ROOT) if "dashboard" in f.where]


# ------------------------------------------------------------------------------------------------
# The views, on Spark
# ------------------------------------------------------------------------------------------------
def rate(k, n):
    return round(k / n, 4)


def test_payment_attempts_keep_the_attempts_of_gold_payments(spark):
    fact = spark.table(attempts.FACT_PAYMENT_ATTEMPTS)
    payments = spark.table(facts.FACT_PAYMENTS)
    assert attempts.check_payment_attempts(fact, payments) == len(RAW_ATTEMPTS) - 1
    assert {r.transaction_id for r in fact.collect()} == {p["transaction_id"] for p in PAYMENTS}
    assert {r.date_key for r in fact.where("attempt_id = 'A04'").collect()} == {20260302}
    doubled = fact.unionByName(fact.where("attempt_id = 'A01'"))
    with pytest.raises(AssertionError, match="is not at its grain"):
        attempts.check_payment_attempts(doubled, payments)
    orphan = fact.unionByName(fact.where("attempt_id = 'A01'").withColumn("transaction_id",
                              F.lit("PZ")).withColumn("attempt_id", F.lit("A99")))  # fmt: skip
    with pytest.raises(AssertionError, match="attempt.s. of payments that gold.fact_payments"):
        attempts.check_payment_attempts(orphan, payments)
    with pytest.raises(AssertionError, match="do not have exactly one first attempt"):
        attempts.check_payment_attempts(fact.where("attempt_id <> 'A12'"), payments)


def test_the_views_agree_with_the_analytics_and_with_counts_in_python(spark, rows):
    network = by(rows["kpi_approval_by_network"], "card_network")
    expected = by(analytics.approval_rates(spark.table(facts.FACT_PAYMENTS), "card_network")
                  .fillna("unknown", ["card_network"]).collect(), "card_network")  # fmt: skip
    assert {k: (v["attempts"], v["approved"], v["approval_rate"]) for k, v in network.items()} == {
        k: (v["attempts"], v["approved"], v["approval_rate"]) for k, v in expected.items()
    }
    assert network["unknown"]["attempts"] == 1  # P7 has no network

    declines = by(rows["kpi_decline_reasons"], "decline_reason")
    reasons = by(analytics.decline_reasons(spark.table(facts.FACT_PAYMENTS)).collect(),
                 "decline_reason")  # fmt: skip
    assert {k: (v["declines"], v["share_of_declines"]) for k, v in declines.items()} == {
        k: (v["declines"], v["share_of_declines"]) for k, v in reasons.items()
    }
    assert declines["unspecified"]["declines"] == 1

    daily = analytics.daily_revenue(spark.table(facts.FACT_SALES), spark.table(dates.DIM_DATE))
    monthly = analytics.monthly_revenue(daily).collect()
    got = [(r["month"], r["orders"], r["net_revenue_usd"]) for r in rows["kpi_revenue_monthly"]]
    assert got == [(m["month_start"], m["orders"], m["net_revenue_usd"]) for m in monthly]
    assert got[1] == (date(2026, 2, 1), 0, Decimal("0.00"))  # a month without sales is 0

    (headline,) = dashboards.records(rows["kpi_headline"])
    revenue = sum(
        (s["net_amount_usd"] for s in SALES if s["status"] not in (None, "cancelled")), Decimal(0)
    )
    assert headline == {
        "payments": len(PAYMENTS),
        "approval_rate": rate(sum(p["is_approved"] for p in PAYMENTS), len(PAYMENTS)),
        "fraud_rate": rate(sum(p["is_fraud"] for p in PAYMENTS), len(PAYMENTS)),
        "approved_amount_usd": sum(p["amount_usd"] for p in PAYMENTS if p["is_approved"]),
        "net_revenue_usd": revenue,
        "customers": len(C360),
    }

    fraud = by(rows["kpi_fraud_by_category"], "merchant_category")
    for category in {p["merchant_category"] or "unknown" for p in PAYMENTS}:
        group = [p for p in PAYMENTS if (p["merchant_category"] or "unknown") == category]
        frauds = [p for p in group if p["is_fraud"]]
        assert (fraud[category]["payments"], fraud[category]["frauds"]) == (len(group), len(frauds))
        assert fraud[category]["fraud_rate"] == rate(len(frauds), len(group))
        assert fraud[category]["fraud_amount_usd"] == sum(
            (p["amount_usd"] for p in frauds), Decimal("0.00")
        )
    assert [r["merchant_category"] for r in rows["kpi_fraud_by_category"]][0] == "unknown"

    segments = by(rows["kpi_customer_segments"], "segment")
    assert (
        {k: (v["customers"], v["lifetime_value_usd"]) for k, v in segments.items()}
        == {
            "consumer": (2, Decimal("197.45")),
            "vip": (1, Decimal("0.00")),
            "unknown": (1, Decimal("5.00")),
        }
        == {
            s: (
                sum((c["segment"] or "unknown") == s for c in C360),
                sum(c["lifetime_value_usd"] for c in C360 if (c["segment"] or "unknown") == s),
            )
            for s in ("consumer", "vip", "unknown")
        }
    )


def test_the_processor_view_counts_first_attempts_only(spark, rows):
    got = by(rows["kpi_approval_by_processor"], "processor")
    firsts = [a for a in RAW_ATTEMPTS if a["attempt_no"] == 1 and a["transaction_id"] != "PX"]
    for processor in ("woodgrove", "relecloud", "lamna"):
        mine = [a for a in firsts if a["processor"] == processor]
        approved = sum(a["approved"] for a in mine)
        assert (got[processor]["first_attempts"], got[processor]["approved_first"]) == (
            len(mine),
            approved,
        )
        assert got[processor]["approval_rate"] == rate(approved, len(mine))
    assert "trey" not in got  # its only attempt belongs to a payment Gold does not hold


def test_create_views_is_idempotent(spark, rows):
    assert dashboards.create_views(spark) == [k.view for k in SPEC]
    again = {k.name: dashboards.read_kpi(spark, k).collect() for k in SPEC}
    assert again == rows


# ------------------------------------------------------------------------------------------------
# The lesson's checks and their catalogue of mistakes
# ------------------------------------------------------------------------------------------------
TASK_VIEWS = {
    "t1cntry1": ("approval_by_country_sql", "kpi_approval_by_country",
                 dashboards.check_approval_by_country),
    "t2proc01": ("approval_by_processor_sql", "kpi_approval_by_processor",
                 dashboards.check_first_attempt_approval),
}  # fmt: skip


def run_view_task(spark, cell, source):
    variable, name, check = TASK_VIEWS[cell]
    sql = catalogue.defined(source, variable)
    spark.sql(f"CREATE OR REPLACE VIEW gold.{name} AS {sql}")
    try:
        return check(spark)
    finally:
        dashboards.create_views(spark, [dashboards.kpi(name)])


def solution_block(cell: str) -> str:
    """A task cell's solution block (the cell also runs the view's DDL, which needs a kernel)."""
    source = catalogue.task_cell(LESSON, cell)
    return source.split("# BEGIN SOLUTION\n", 1)[1].split("# END SOLUTION", 1)[0]


@pytest.mark.parametrize("cell", sorted(TASK_VIEWS))
def test_the_view_tasks_solutions_pass(spark, cell):
    summary = run_view_task(spark, cell, solution_block(cell))
    assert summary.startswith(f"gold.{TASK_VIEWS[cell][1]}")


@pytest.mark.parametrize(
    "mistake",
    mistakes_of("t1cntry1") + mistakes_of("t2proc01"),
    ids=lambda m: m["name"],
)
def test_the_view_checks_catch_each_catalogued_mistake(spark, mistake):
    with pytest.raises(AssertionError) as caught:
        run_view_task(spark, mistake["task_cell"], mistake["source"])
    assert mistake["caught_by"] in str(caught.value)


def test_a_missing_view_is_named(spark):
    with pytest.raises(AssertionError, match="gold.kpi_nope does not exist: run your CREATE"):
        dashboards.check_approval_by_country(spark, "gold.kpi_nope")


@pytest.fixture(scope="module")
def dataset_cols(spark):
    return lvdash.dataset_columns(spark, lvdash.lvdash())


def test_the_widget_task_solution_passes(dataset_cols):
    item = catalogue.defined(catalogue.task_cell(LESSON, "t3widg01"), "decline_widget")
    summary = lvdash.check_widget(item, dashboards.kpi("kpi_decline_reasons"), columns=dataset_cols)
    assert "a pie of dataset 'kpi_decline_reasons'" in summary
    (package,) = lvdash.widgets(dashboards.kpi("kpi_decline_reasons"), item["position"])
    assert lvdash.check_widget(package, dashboards.kpi("kpi_decline_reasons"), columns=dataset_cols)


@pytest.mark.parametrize("mistake", mistakes_of("t3widg01"), ids=lambda m: m["name"])
def test_the_widget_check_catches_each_catalogued_mistake(dataset_cols, mistake):
    item = catalogue.defined(mistake["source"], "decline_widget")
    with pytest.raises(AssertionError) as caught:
        lvdash.check_widget(item, dashboards.kpi("kpi_decline_reasons"), columns=dataset_cols)
    assert mistake["caught_by"] in str(caught.value)


def test_the_catalogue_covers_every_task_with_two_mistakes():
    catalogue.assert_covers_every_task(LESSON, MISTAKES, {*TASK_VIEWS, "t3widg01"})


# ------------------------------------------------------------------------------------------------
# The committed dashboard's SQL on local Spark, and the page in a real browser
# ------------------------------------------------------------------------------------------------
def test_every_dataset_of_the_committed_dashboard_runs_on_local_spark(spark, rows, dataset_cols):
    doc = lvdash.load_lvdash(lvdash.committed_lvdash(ROOT))
    assert lvdash.check_lvdash(doc, lvdash.dataset_columns(spark, doc)) == []
    frames = lvdash.run_datasets(spark, doc)
    for item in SPEC:
        got = [tuple(map(dashboards.plain, r)) for r in frames[item.name].itertuples(index=False)]
        want = [tuple(map(dashboards.plain, r)) for r in rows[item.name]]
        assert sorted(got, key=repr) == sorted(want, key=repr), item.name
    unknown = {**dataset_cols, "kpi_decline_reasons": ["reason", "declines"]}
    problems = lvdash.check_lvdash(doc, unknown)
    assert any("has no column 'decline_reason'" in p for p in problems), problems


def test_the_page_renders_every_kpi_in_headless_chromium(spark, rows, tmp_path):
    missing = dashboards.chromium_unavailable()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {missing}")
        pytest.skip(missing)
    frames = dashboards.kpi_frames(spark)
    page_path = dashboards.write_html(tmp_path / dashboards.HTML_FILE, frames)
    SCREENSHOT.unlink(missing_ok=True)
    with dashboards.serve(tmp_path) as url:
        page = dashboards.rendered_charts(url + page_path.name, screenshot=SCREENSHOT)
    assert page["errors"] == [] and page["requests_refused"] == []
    # The numbers Spark computes from the views, not the frames the page was drawn from.
    summary = dashboards.check_rendered(page, rows)
    assert summary.startswith(f"{len(SPEC)} charts rendered in Chromium")
    assert (
        SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and SCREENSHOT.stat().st_size > 10_000
    )
    altered = dict(rows)
    altered["kpi_approval_by_processor"] = [
        {**r.asDict(), "approval_rate": r["approval_rate"] + 0.01}
        for r in rows["kpi_approval_by_processor"]
    ]
    with pytest.raises(AssertionError, match="kpi_approval_by_processor: the page shows"):
        dashboards.check_rendered(page, altered)
