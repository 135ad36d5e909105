"""The payment platform's KPI dashboard, from one spec: Gold SQL views, a self-contained Plotly
page served on loopback and checked in a real browser, and (in :mod:`lakehouse.production.lvdash`)
a Databricks AI/BI dashboard.

:data:`SPEC` lists the KPIs, each a :class:`Kpi`: the view's name, its SQL over the course's Gold
tables, its chart and the columns the chart draws. Everything else is generated from it, so the
forms cannot disagree:

- :func:`create_views` runs ``CREATE OR REPLACE VIEW gold.kpi_...`` for each KPI (one governed
  definition that SQL users, notebooks and dashboards share);
- :func:`figure` draws a KPI's rows with Plotly; :func:`dashboard_html` puts every chart on one
  page with plotly.js inlined (it opens offline, from a file or a server); :func:`serve` serves
  a folder on loopback, and :func:`rendered_charts` opens the page in headless Chromium (Debian's
  ``chromium``, driven by Playwright, never a browser Playwright downloads) and reads each
  chart's data back from the page, which :func:`check_rendered` compares with the views' rows;
- ``lvdash.lvdash()`` builds the ``.lvdash.json`` file that ``resources/kpi_dashboard.yml``
  deploys with ``databricks bundle deploy``.

Example::

    from lakehouse.production import dashboards

    dashboards.create_views(spark)
    frames = dashboards.kpi_frames(spark)
    path = dashboards.write_html(dashboards.output_folder(spark) / dashboards.HTML_FILE, frames)
    with dashboards.serve(path.parent) as url:
        page = dashboards.rendered_charts(url + path.name)
    print(dashboards.check_rendered(page, frames))
"""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import math
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

SCHEMA = "gold"
HTML_FILE = "lakehouse_kpis.html"
OUTPUT_FOLDER = "_dashboards"  # in the catalog's folder of the lake, beside _model_cards
DASHBOARD_TITLE = "Payments & customers: KPIs"
CHARTS = ("counter", "bar", "line", "pie")
CHROMIUM_ENV = "LAKEHOUSE_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAC_BROWSERS = (
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
_TABLE = re.compile(r"\b(gold\.[a-z_][a-z0-9_]*)\b")


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Kpi:
    """One KPI: the view ``gold.<name>`` defined by ``sql``, drawn as ``chart``.

    ``x`` is the column along the axis (the categories of a bar chart or the slices of a pie,
    the months of a line chart; none for a counter) and ``y`` the measure(s) drawn: one for a
    bar, line or pie chart, one counter each for a counter. ``order_by`` orders the rows a
    chart reads. A column's name says its format: ``*_rate`` and ``share_*`` are fractions
    shown as percentages, ``*_usd`` are dollars, the rest are counts.
    """

    name: str
    title: str
    description: str
    sql: str
    chart: str
    x: str | None
    y: tuple[str, ...]
    order_by: tuple[str, ...] = ()

    def __post_init__(self):
        if not re.fullmatch(r"kpi_[a-z0-9_]+", self.name):
            raise ValueError(f"KPI name {self.name!r}: use kpi_ and lower-case words")
        if self.chart not in CHARTS:
            raise ValueError(f"{self.name}: chart {self.chart!r} is not one of {CHARTS}")
        if self.chart == "counter" and (self.x is not None or not self.y):
            raise ValueError(f"{self.name}: a counter has no x and at least one y column")
        if self.chart != "counter" and (self.x is None or len(self.y) != 1):
            raise ValueError(f"{self.name}: a {self.chart} chart needs an x and exactly one y")

    @property
    def view(self) -> str:
        """The view's qualified name, ``gold.<name>``."""
        return f"{SCHEMA}.{self.name}"

    @property
    def inputs(self) -> tuple[str, ...]:
        """The Gold tables the SQL reads, in order of first mention."""
        return tuple(dict.fromkeys(_TABLE.findall(self.sql)))

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the chart draws: ``x`` (if any), then ``y``."""
        return (*([self.x] if self.x else []), *self.y)


_REVENUE_LINES = "status IS NOT NULL AND status NOT IN ('cancelled', 'returned') AND date_key <> -1"

SPEC: tuple[Kpi, ...] = (
    Kpi(
        name="kpi_headline",
        title="Headline",
        description=(
            "The whole period in six numbers: payment attempts, the share approved and the "
            "share confirmed fraudulent, the approved amount, net revenue (orders neither "
            "cancelled nor returned) and the customers of the Customer 360."
        ),
        sql=f"""SELECT p.payments, p.approval_rate, p.fraud_rate, p.approved_amount_usd,
       s.net_revenue_usd, c.customers
FROM (
  SELECT COUNT(*) AS payments,
         ROUND(COUNT_IF(is_approved) / NULLIF(COUNT(*), 0), 4) AS approval_rate,
         ROUND(COUNT_IF(is_fraud) / NULLIF(COUNT(*), 0), 4) AS fraud_rate,
         CAST(COALESCE(SUM(CASE WHEN is_approved THEN amount_usd END), 0) AS DECIMAL(18, 2))
           AS approved_amount_usd
  FROM gold.fact_payments
) AS p
CROSS JOIN (
  SELECT CAST(COALESCE(SUM(net_amount_usd), 0) AS DECIMAL(18, 2)) AS net_revenue_usd
  FROM gold.fact_sales
  WHERE {_REVENUE_LINES}
) AS s
CROSS JOIN (SELECT COUNT(*) AS customers FROM gold.customer_360) AS c""",
        chart="counter",
        x=None,
        y=(
            "payments",
            "approval_rate",
            "fraud_rate",
            "approved_amount_usd",
            "net_revenue_usd",
            "customers",
        ),
    ),
    Kpi(
        name="kpi_approval_by_network",
        title="Approval rate by card network",
        description="Approved attempts / attempts, per card network (every attempt counts).",
        sql="""SELECT COALESCE(card_network, 'unknown') AS card_network,
       COUNT(*) AS attempts,
       COUNT_IF(is_approved) AS approved,
       ROUND(COUNT_IF(is_approved) / COUNT(*), 4) AS approval_rate
FROM gold.fact_payments
GROUP BY COALESCE(card_network, 'unknown')""",
        chart="bar",
        x="card_network",
        y=("approval_rate",),
        order_by=("attempts DESC", "card_network"),
    ),
    Kpi(
        name="kpi_approval_by_country",
        title="Approval rate by country",
        description=(
            "Approved attempts / attempts, per country where the card was used "
            "(gold.dim_geography of the payment; 'Unknown' for the unknown member)."
        ),
        sql="""SELECT COALESCE(g.country, 'Unknown') AS country,
       COUNT(*) AS attempts,
       COUNT_IF(p.is_approved) AS approved,
       ROUND(COUNT_IF(p.is_approved) / COUNT(*), 4) AS approval_rate
FROM gold.fact_payments AS p
LEFT JOIN gold.dim_geography AS g ON p.geography_sk = g.geography_sk
GROUP BY COALESCE(g.country, 'Unknown')""",
        chart="bar",
        x="country",
        y=("approval_rate",),
        order_by=("attempts DESC", "country"),
    ),
    Kpi(
        name="kpi_approval_by_processor",
        title="First-attempt approval rate by processor",
        description=(
            "Approved first attempts / first attempts, per processor: a retry stays on its "
            "payment's processor and is not a new payment."
        ),
        sql="""SELECT processor,
       COUNT(*) AS first_attempts,
       COUNT_IF(approved) AS approved_first,
       ROUND(COUNT_IF(approved) / COUNT(*), 4) AS approval_rate
FROM gold.fact_payment_attempts
WHERE attempt_no = 1
GROUP BY processor""",
        chart="bar",
        x="processor",
        y=("approval_rate",),
        order_by=("first_attempts DESC", "processor"),
    ),
    Kpi(
        name="kpi_decline_reasons",
        title="Decline reasons",
        description="Declined attempts per reason, with each reason's share of the declines.",
        sql="""SELECT COALESCE(decline_reason, 'unspecified') AS decline_reason,
       COUNT(*) AS declines,
       ROUND(COUNT(*) / SUM(COUNT(*)) OVER (), 4) AS share_of_declines
FROM gold.fact_payments
WHERE NOT COALESCE(is_approved, FALSE)
GROUP BY COALESCE(decline_reason, 'unspecified')""",
        chart="pie",
        x="decline_reason",
        y=("declines",),
        order_by=("declines DESC", "decline_reason"),
    ),
    Kpi(
        name="kpi_fraud_by_category",
        title="Fraud rate by merchant category",
        description=(
            "Confirmed fraudulent payments / payments per merchant category, with the amount "
            "they carried and the upstream risk engine's mean score."
        ),
        sql="""SELECT COALESCE(merchant_category, 'unknown') AS merchant_category,
       COUNT(*) AS payments,
       COUNT_IF(is_fraud) AS frauds,
       ROUND(COUNT_IF(is_fraud) / COUNT(*), 4) AS fraud_rate,
       CAST(COALESCE(SUM(CASE WHEN is_fraud THEN amount_usd END), 0) AS DECIMAL(18, 2))
         AS fraud_amount_usd,
       ROUND(AVG(fraud_score), 4) AS mean_fraud_score
FROM gold.fact_payments
GROUP BY COALESCE(merchant_category, 'unknown')""",
        chart="bar",
        x="merchant_category",
        y=("fraud_rate",),
        order_by=("fraud_rate DESC", "merchant_category"),
    ),
    Kpi(
        name="kpi_customer_segments",
        title="Lifetime value by customer segment",
        description=(
            "Customers of the Customer 360 per CRM segment, their total and mean lifetime "
            "value (net revenue in USD)."
        ),
        sql="""SELECT COALESCE(segment, 'unknown') AS segment,
       COUNT(*) AS customers,
       CAST(COALESCE(SUM(lifetime_value_usd), 0) AS DECIMAL(18, 2)) AS lifetime_value_usd,
       CAST(AVG(lifetime_value_usd) AS DECIMAL(18, 2)) AS avg_lifetime_value_usd
FROM gold.customer_360
GROUP BY COALESCE(segment, 'unknown')""",
        chart="bar",
        x="segment",
        y=("lifetime_value_usd",),
        order_by=("lifetime_value_usd DESC", "segment"),
    ),
    Kpi(
        name="kpi_revenue_monthly",
        title="Net revenue by month",
        description=(
            "Net revenue in USD (before tax, orders neither cancelled nor returned) per month "
            "of gold.dim_date, every month from the first sale to the last (0 when none)."
        ),
        sql=f"""WITH revenue AS (
  SELECT date_key, order_id, net_amount_usd
  FROM gold.fact_sales
  WHERE {_REVENUE_LINES}
), span AS (
  SELECT MIN(date_key) AS first_key, MAX(date_key) AS last_key FROM revenue
)
SELECT TRUNC(d.date, 'MM') AS month,
       COUNT(DISTINCT r.order_id) AS orders,
       CAST(COALESCE(SUM(r.net_amount_usd), 0) AS DECIMAL(18, 2)) AS net_revenue_usd
FROM gold.dim_date AS d
JOIN span ON d.date_key BETWEEN span.first_key AND span.last_key
LEFT JOIN revenue AS r ON r.date_key = d.date_key
GROUP BY TRUNC(d.date, 'MM')""",
        chart="line",
        x="month",
        y=("net_revenue_usd",),
        order_by=("month",),
    ),
)


def kpi(name: str, spec: Sequence[Kpi] = SPEC) -> Kpi:
    """The KPI named ``name`` (``"kpi_decline_reasons"`` or its view ``"gold.kpi_..."``)."""
    short = name.removeprefix(f"{SCHEMA}.")
    for item in spec:
        if item.name == short:
            return item
    raise KeyError(f"no KPI {name!r} in the spec: use one of {', '.join(k.name for k in spec)}")


def spec_table(spec: Sequence[Kpi] = SPEC):
    """The spec as a pandas frame: one row per KPI with its view, chart, columns and inputs."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "view": k.view,
                "chart": k.chart,
                "x": k.x or "",
                "y": ", ".join(k.y),
                "reads": ", ".join(k.inputs),
            }
            for k in spec
        ]
    )


def full_width(spec: Sequence[Kpi] = SPEC) -> set[str]:
    """The KPIs drawn across the whole width of a page: the counters, and the last chart
    when the charts (two per row) are odd in number. The page and the AI/BI dashboard share
    this layout."""
    charts = [k.name for k in spec if k.chart != "counter"]
    return {k.name for k in spec if k.chart == "counter"} | (
        {charts[-1]} if len(charts) % 2 else set()
    )


def label(column: str) -> str:
    """A column's display name: ``approval_rate`` -> ``approval rate``, ``*_usd`` -> ``(USD)``."""
    words = column.removesuffix("_usd").replace("_", " ")
    return f"{words} (USD)" if column.endswith("_usd") else words


def column_format(column: str) -> str:
    """``percent`` for ``*_rate`` and ``share_*``, ``usd`` for ``*_usd``, ``count`` for counts
    (a plural name, ``approved_*``), else ``number``."""
    if column.endswith("_rate") or column.startswith("share_"):
        return "percent"
    if column.endswith("_usd"):
        return "usd"
    return "count" if column.endswith("s") or column.startswith("approved") else "number"


# --------------------------------------------------------------------------- views


def create_view_sql(item: Kpi) -> str:
    """``CREATE OR REPLACE VIEW gold.<name> COMMENT '...' AS <sql>``."""
    comment = item.description.replace("'", "\\'")
    return f"CREATE OR REPLACE VIEW {item.view}\nCOMMENT '{comment}'\nAS\n{item.sql}"


def create_views(spark, spec: Sequence[Kpi] = SPEC) -> list[str]:
    """Create or replace every KPI's view (the Gold schema first, if missing). A view stores
    its query, not rows: it always reads the tables' current version. Returns the names."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for item in spec:
        spark.sql(create_view_sql(item))
    return [item.view for item in spec]


def drop_views(spark, spec: Sequence[Kpi] = SPEC) -> None:
    """``DROP VIEW IF EXISTS`` every KPI's view."""
    for item in spec:
        spark.sql(f"DROP VIEW IF EXISTS {item.view}")


def read_kpi(spark, item: Kpi | str):
    """A KPI's rows in the order its chart reads them: ``SELECT * FROM gold.<name> ORDER BY``."""
    item = kpi(item) if isinstance(item, str) else item
    order = f" ORDER BY {', '.join(item.order_by)}" if item.order_by else ""
    return spark.sql(f"SELECT * FROM {item.view}{order}")


def kpi_frames(spark, spec: Sequence[Kpi] = SPEC, *, progress: bool = False) -> dict:
    """Each KPI's rows as a pandas frame (they are a few rows each), by KPI name."""
    items: Iterable[Kpi] = spec
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(spec, desc="KPI views", unit="view")
    return {item.name: read_kpi(spark, item).toPandas() for item in items}


def records(rows) -> list[dict]:
    """Rows as plain dicts: a pandas frame, Spark ``Row`` objects or dicts."""
    if hasattr(rows, "to_dict"):
        return rows.to_dict("records")
    return [r.asDict() if hasattr(r, "asDict") else dict(r) for r in rows]


def plain(value: Any) -> Any:
    """A value as the page holds it: decimals and numpy numbers as floats or ints, dates as
    ``YYYY-MM-DD``, missing values as None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):  # a date column read through pandas comes back as one
        midnight = value.time() == datetime.min.time() and value.tzinfo is None
        return value.date().isoformat() if midnight else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if getattr(getattr(value, "dtype", None), "kind", "") == "M":  # a numpy datetime64
        import pandas as pd

        return plain(pd.Timestamp(value).to_pydatetime())
    if hasattr(value, "item"):  # numpy and pandas scalars
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def chart_values(item: Kpi, rows) -> dict:
    """What a KPI's chart must show, from its rows in chart order: ``x`` and ``y`` for a bar
    or line chart, ``labels`` and ``values`` for a pie, ``values`` (one per counter) for a
    counter, every value :func:`plain`."""
    rows = records(rows)
    if item.chart == "counter":
        if len(rows) != 1:
            raise ValueError(f"{item.view} must have one row for its counters; it has {len(rows)}")
        return {"values": {c: plain(rows[0][c]) for c in item.y}}
    x = [plain(r[item.x]) for r in rows]
    y = [plain(r[item.y[0]]) for r in rows]
    return {"labels": x, "values": y} if item.chart == "pie" else {"x": x, "y": y}


# --------------------------------------------------------------------------- Plotly


# d3 formats: what a reader sees (hover texts keep the cents); the data keeps every digit.
_PLOTLY_FORMATS = {"percent": ".1%", "usd": "$,.0f", "count": ",d", "number": ",.4f"}
_HOVER_FORMATS = {**_PLOTLY_FORMATS, "usd": "$,.2f", "percent": ".2%"}


def figure(item: Kpi, rows, *, height: int = 360):
    """The KPI's chart as a Plotly figure, from its rows in chart order (a pandas frame, Spark
    rows or dicts)."""
    import plotly.graph_objects as go

    shown = chart_values(item, rows)
    if item.chart == "counter":
        values = shown["values"]
        fig = go.Figure(
            [
                go.Indicator(
                    mode="number",
                    value=values[column],
                    title={"text": label(column), "font": {"size": 14}},
                    number={
                        "valueformat": _PLOTLY_FORMATS[column_format(column)],
                        "font": {"size": 34},
                    },
                    domain={"row": 0, "column": i},
                    name=column,
                )
                for i, column in enumerate(item.y)
            ]
        )
        fig.update_layout(grid={"rows": 1, "columns": len(item.y)}, height=height // 2)
        title = None  # the counters' own titles say what each number is
    elif item.chart == "pie":
        title = item.title
        fig = go.Figure(
            go.Pie(
                labels=shown["labels"],
                values=shown["values"],
                name=item.y[0],
                sort=False,
                hovertemplate="%{label}: %{value:,d} (%{percent})<extra></extra>",
            )
        )
    else:
        title = item.title
        y_format = _PLOTLY_FORMATS[column_format(item.y[0])]
        hover = _HOVER_FORMATS[column_format(item.y[0])]
        trace = go.Bar if item.chart == "bar" else go.Scatter
        options = {"mode": "lines+markers"} if item.chart == "line" else {}
        fig = go.Figure(
            trace(
                x=shown["x"],
                y=shown["y"],
                name=item.y[0],
                hovertemplate=f"%{{x}}: %{{y:{hover}}}<extra></extra>",
                **options,
            )
        )
        # A line chart is a time series of months (the lvdash draws its x as temporal too).
        months = {"dtick": "M1", "tickformat": "%b %Y"} if item.chart == "line" else {}
        fig.update_layout(
            xaxis={"title": label(item.x), **months},
            yaxis={"title": label(item.y[0]), "tickformat": y_format, "rangemode": "tozero"},
        )
    fig.update_layout(
        title={"text": title} if title else None,
        height=fig.layout.height or height,
        margin={"l": 60, "r": 20, "t": 60 if title else 30, "b": 50},
        template="plotly_white",
    )
    return fig


def dashboard_html(
    frames: Mapping[str, Any], spec: Sequence[Kpi] = SPEC, *, title: str = ""
) -> str:
    """One self-contained HTML page with every KPI's chart: plotly.js is inlined once in the
    head, so the page needs no network, from a file or from a server. Each chart is a
    ``div.plotly-graph-div`` whose id is the KPI's name; under it, the view's SQL."""
    from plotly.offline import get_plotlyjs

    missing = [item.name for item in spec if item.name not in frames]
    if missing:
        raise KeyError(f"no rows for {missing}: pass kpi_frames(spark) (one frame per KPI)")
    title = title or DASHBOARD_TITLE
    sections = []
    for item in spec:
        chart = figure(item, frames[item.name]).to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=item.name,
            config={"displaylogo": False, "responsive": True},
        )
        wide = " wide" if item.name in full_width(spec) else ""
        sections.append(
            f'<section class="kpi{wide}" data-view="{item.view}">\n{chart}\n'
            f"<p>{html.escape(item.description)}</p>\n"
            f"<details><summary>{item.view}</summary><pre>{html.escape(item.sql)}</pre>"
            "</details>\n</section>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:system-ui,sans-serif;margin:24px;color:#1b1f24}"
        "main{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:20px}"
        ".kpi{border:1px solid #d0d7de;border-radius:6px;padding:8px}.wide{grid-column:1/-1}"
        "p{font-size:13px;color:#57606a}pre{font-size:12px;white-space:pre-wrap}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
        f"<h1>{html.escape(title)}</h1>\n<p>{len(spec)} views of the Gold layer "
        f"({', '.join(item.view for item in spec)}), drawn with Plotly.</p>\n<main>\n"
        + "\n".join(sections)
        + "\n</main>\n</body>\n</html>\n"
    )


def output_folder(spark=None) -> Path:
    """``<lake>/<catalog>/_dashboards``: where the lessons write the page and the dashboard
    file (on Databricks, a Unity Catalog volume when the lake is one)."""
    from lakehouse.config import settings
    from lakehouse.session import settings_of

    s = (settings_of(spark) if spark is not None else None) or settings()
    return Path(s.catalog_path) / OUTPUT_FOLDER


def write_html(path: str | os.PathLike, frames: Mapping[str, Any], spec=SPEC) -> Path:
    """Write :func:`dashboard_html` to ``path`` (its folder created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dashboard_html(frames, spec), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- serving


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@contextlib.contextmanager
def serve(folder: str | os.PathLike, *, port: int = 0) -> Iterator[str]:
    """Serve ``folder`` over HTTP on loopback (127.0.0.1) from a background thread, for the
    duration of a ``with`` block; yields the base URL (``http://127.0.0.1:<port>/``). Port 0
    takes a free one.

    >>> with serve(output_folder(spark)) as url:  # doctest: +SKIP
    ...     print(url + HTML_FILE)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: write the page first (write_html)")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------- the browser


class ChromiumNotFound(RuntimeError):
    """No Chromium on this machine: the message says how to install one."""


def find_chromium() -> str:
    """The Chromium the browser checks run: ``LAKEHOUSE_CHROMIUM``, else ``chromium`` (Debian's
    package, which ``scripts/bootstrap`` installs), ``chromium-browser`` or Google Chrome on
    PATH, else the macOS applications. Never a browser Playwright downloads itself."""
    if given := os.environ.get(CHROMIUM_ENV):
        path = shutil.which(given) or (given if Path(given).is_file() else None)
        if path is None:
            raise ChromiumNotFound(
                f"{CHROMIUM_ENV}={given} is not an executable: point it at a Chromium or "
                "Chrome binary, or unset it"
            )
        return path
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    for app in MAC_BROWSERS:
        if Path(app).is_file():
            return app
    raise ChromiumNotFound(
        "Chromium was not found: run scripts/bootstrap, which installs Debian's chromium "
        "package (apt-get install chromium), or install Chromium or Chrome and set "
        f"{CHROMIUM_ENV} to its executable"
    )


def chromium_unavailable() -> str | None:
    """Why this machine cannot run the browser checks (no Chromium), or None."""
    try:
        find_chromium()
    except ChromiumNotFound as missing:
        return str(missing)
    return None


# Read back every chart of the page: its traces' data as Plotly holds them, and how many marks
# (bars, slices, points, numbers) it drew in the SVG.
_READ_CHARTS_JS = """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(div => ({
  id: div.id,
  rendered: Boolean(div._fullLayout),
  marks: div.querySelectorAll(
    '.barlayer .point, .pielayer .slice, .scatterlayer .point, .indicatorlayer .numbers'
  ).length,
  traces: (div.data || []).map(t => ({
    type: t.type,
    name: t.name === undefined ? null : t.name,
    x: t.x ? Array.from(t.x) : null,
    y: t.y ? Array.from(t.y) : null,
    labels: t.labels ? Array.from(t.labels) : null,
    values: t.values ? Array.from(t.values) : null,
    value: t.value === undefined ? null : t.value,
  })),
}))"""

_ALL_RENDERED_JS = """n => {
  const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
  return divs.length >= n && divs.every(d => d._fullLayout && d.querySelector('.main-svg'));
}"""


def rendered_charts(
    url: str,
    *,
    expected: int = len(SPEC),
    chromium: str | None = None,
    screenshot: str | os.PathLike | None = None,
    timeout_s: float = 60,
) -> dict:
    """Open ``url`` in headless Chromium (Playwright driving ``chromium``, default
    :func:`find_chromium`), wait until ``expected`` Plotly charts have rendered, and return
    what the page holds: ``{"browser": version, "charts": {id: {"rendered", "marks",
    "traces"}}, "errors": [...], "requests_refused": [...]}``. Every request that leaves the
    page's own server is refused and listed (a self-contained page makes none); JavaScript
    errors are listed too. With ``screenshot``, a full-page PNG is saved there.

    Playwright's synchronous API refuses to run in a thread with a running event loop (a
    Jupyter kernel's), so the browser is driven from a thread of its own."""
    from concurrent.futures import ThreadPoolExecutor

    executable = chromium or find_chromium()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser") as pool:
        return pool.submit(_render, url, expected, executable, screenshot, timeout_s).result()


def _render(url, expected, executable, screenshot, timeout_s) -> dict:
    from playwright.sync_api import sync_playwright

    origin = "/".join(url.split("/", 3)[:3])
    errors: list[str] = []
    refused: list[str] = []

    def route(request_route):
        if request_route.request.url.startswith(origin):
            request_route.continue_()
        else:
            refused.append(request_route.request.url)
            request_route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.route("**/*", route)
            page.goto(url, wait_until="load", timeout=timeout_s * 1000)
            page.wait_for_function(_ALL_RENDERED_JS, arg=expected, timeout=timeout_s * 1000)
            charts = {chart["id"]: chart for chart in page.evaluate(_READ_CHARTS_JS)}
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            version = browser.version
        finally:
            browser.close()
    return {"browser": version, "charts": charts, "errors": errors, "requests_refused": refused}


def page_values(item: Kpi, chart: Mapping) -> dict:
    """What a rendered chart holds, in the shape of :func:`chart_values`."""
    traces = chart["traces"]
    if item.chart == "counter":
        return {"values": {t["name"]: t["value"] for t in traces}}
    (trace,) = traces
    if item.chart == "pie":
        return {"labels": trace["labels"], "values": trace["values"]}
    return {"x": trace["x"], "y": trace["y"]}


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, Mapping):
        return (
            isinstance(got, Mapping)
            and set(expected) == set(got)
            and all(_same(expected[k], got[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(_same(e, g) for e, g in zip(expected, got))
        )
    if isinstance(expected, float) and isinstance(got, int | float):
        return math.isclose(expected, got, rel_tol=1e-12, abs_tol=1e-12)
    return expected == got


def _marks_expected(item: Kpi, shown: Mapping) -> int:
    if item.chart == "counter":
        return len(shown["values"])
    return len(shown.get("x") or shown.get("labels") or [])


def check_rendered(page: Mapping, rows_by_kpi: Mapping[str, Any], spec=SPEC) -> str:
    """Assert the page (:func:`rendered_charts`) drew every KPI of ``spec`` with exactly the
    numbers of its rows (``rows_by_kpi``: a frame or Spark rows per KPI name, in chart order),
    one SVG mark per value, no script error and no request leaving the page's server.
    Returns a one-line summary."""
    charts = page["charts"]
    problems = []
    if page.get("errors"):
        problems.append(f"the page raised JavaScript errors: {page['errors'][:3]}")
    if page.get("requests_refused"):
        problems.append(
            f"the page asked for {page['requests_refused'][:3]}: it is not self-contained "
            "(inline plotly.js: include_plotlyjs / get_plotlyjs)"
        )
    for item in spec:
        chart = charts.get(item.name)
        if chart is None:
            problems.append(f"no chart with id {item.name!r} on the page (found {sorted(charts)})")
            continue
        expected = chart_values(item, rows_by_kpi[item.name])
        got = page_values(item, chart)
        if not chart["rendered"]:
            problems.append(f"{item.name}: Plotly did not render it")
        if not _same(expected, got):
            problems.append(f"{item.name}: the page shows {got}, the view holds {expected}")
        if chart["marks"] != _marks_expected(item, expected):
            problems.append(
                f"{item.name}: {chart['marks']} marks drawn for "
                f"{_marks_expected(item, expected)} values"
            )
    if problems:
        raise AssertionError("The dashboard page is wrong:\n- " + "\n- ".join(problems))
    values = sum(_marks_expected(i, chart_values(i, rows_by_kpi[i.name])) for i in spec)
    return (
        f"{len(spec)} charts rendered in Chromium {page['browser']}, {values} values, each "
        "equal to its view's"
    )


# --------------------------------------------------------------------------- lesson checks


def _rates(rows: Iterable[Mapping], key: str, n: str, k: str) -> dict:
    return {r[key]: (int(r[n]), int(r[k])) for r in rows}


def _view_rows(spark, view: str) -> list[dict]:
    if not spark.catalog.tableExists(view):
        raise AssertionError(f"{view} does not exist: run your CREATE OR REPLACE VIEW {view} ...")
    return records(spark.table(view).collect())


def _check_rate_view(
    view_rows: list[dict],
    expected: Mapping[str, tuple[int, int]],
    *,
    view: str,
    key: str,
    n: str,
    k: str,
    hints: Callable[[dict, dict], str],
) -> None:
    need = [key, n, k, "approval_rate"]
    missing = [c for c in need if view_rows and c not in view_rows[0]]
    if missing or not view_rows:
        raise AssertionError(
            f"{view} should have the columns {need}"
            + (f"; it lacks {missing}" if missing else "; it has no rows")
        )
    got = _rates(view_rows, key, n, k)
    if len(got) != len(view_rows):
        raise AssertionError(
            f"{view} has several rows for one {key}: GROUP BY {key} (one row per {key})"
        )
    if got != expected:
        raise AssertionError(
            f"{view} ({n}, {k}) per {key} differ from the facts: expected "
            f"{dict(sorted(expected.items()))}, got {dict(sorted(got.items()))}. "
            + hints(expected, got)
        )
    for r in view_rows:
        rate = round(r[k] / r[n], 4)
        if r["approval_rate"] is None or not math.isclose(r["approval_rate"], rate, abs_tol=1e-9):
            raise AssertionError(
                f"{view}: {key} {r[key]!r} has approval_rate {r['approval_rate']}, expected "
                f"{k} / {n} rounded to 4 digits = {rate}: the pooled rate of the group, not an "
                "average of rates"
            )


def check_approval_by_country(spark, view: str = "gold.kpi_approval_by_country") -> str:
    """Check the view of approval rates by country: one row per country where the card was
    used (``gold.dim_geography`` of the payment's ``geography_sk``), ``attempts``,
    ``approved`` and ``approval_rate`` (approved / attempts, 4 digits), every payment
    counted. The expected counts come from the facts through the DataFrame API."""
    from pyspark.sql import functions as F

    payments = spark.table("gold.fact_payments")
    places = spark.table("gold.dim_geography").select("geography_sk", "country")
    expected_rows = (
        payments.join(places, "geography_sk", "left")
        .groupBy(F.coalesce("country", F.lit("Unknown")).alias("country"))
        .agg(
            F.count(F.lit(1)).alias("attempts"),
            F.count_if(F.coalesce("is_approved", F.lit(False))).alias("approved"),
        )
        .collect()
    )
    expected = _rates(records(expected_rows), "country", "attempts", "approved")

    def hints(expected: dict, got: dict) -> str:
        if sum(n for n, _ in got.values()) != sum(n for n, _ in expected.values()):
            return (
                "Every payment counts once: join gold.dim_geography on the payment's "
                "geography_sk with a LEFT join (an inner join or a join on another key drops "
                "or multiplies payments)."
            )
        if all(k == n for n, k in got.values()):
            return (
                "Every attempt is counted as approved: COUNT(is_approved) counts non-null "
                "values, declines included; count the approved ones with "
                "COUNT_IF(is_approved)."
            )
        return (
            "The payments are grouped by another country: group by the country of the "
            "payment's own geography_sk (where the card was used), not the customer's home "
            "country."
        )

    _check_rate_view(
        _view_rows(spark, view),
        expected,
        view=view,
        key="country",
        n="attempts",
        k="approved",
        hints=hints,
    )
    total = sum(n for n, _ in expected.values())
    return f"{view}: {len(expected)} countries, {total} attempts, rates pooled per country"


def check_first_attempt_approval(spark, view: str = "gold.kpi_approval_by_processor") -> str:
    """Check the view of first-attempt approval rates by processor: one row per processor,
    ``first_attempts``, ``approved_first`` and ``approval_rate`` (4 digits), from the first
    attempts (``attempt_no = 1``) of ``gold.fact_payment_attempts`` only. The expected
    counts come from the fact through the DataFrame API."""
    from pyspark.sql import functions as F

    attempts = spark.table("gold.fact_payment_attempts")

    def counted(df) -> dict:
        rows = df.groupBy("processor").agg(
            F.count(F.lit(1)).alias("n"),
            F.count_if(F.coalesce("approved", F.lit(False))).alias("k"),
        )
        return _rates(records(rows.collect()), "processor", "n", "k")

    expected = counted(attempts.where(F.col("attempt_no") == 1))
    every = counted(attempts)
    last = counted(
        attempts.withColumn(
            "last_no", F.max("attempt_no").over(_window_by("transaction_id"))
        ).where(F.col("attempt_no") == F.col("last_no"))
    )

    def hints(expected_counts: dict, got: dict) -> str:
        if got == every:
            return (
                "Retries are counted: a declined payment retried three times counts four "
                "times against its processor. Keep the first attempts only "
                "(WHERE attempt_no = 1)."
            )
        if got == last:
            return (
                "These are the payments' final outcomes (the last attempt, after retries): "
                "the processor's approval rate is measured on first attempts "
                "(WHERE attempt_no = 1)."
            )
        return "Count the first attempts (attempt_no = 1) and the approved ones among them."

    _check_rate_view(
        _view_rows(spark, view),
        expected,
        view=view,
        key="processor",
        n="first_attempts",
        k="approved_first",
        hints=hints,
    )
    firsts = sum(n for n, _ in expected.values())
    retries = sum(n for n, _ in every.values()) - firsts
    return (
        f"{view}: {len(expected)} processors, {firsts} first attempts ({retries} retries left out)"
    )


def _window_by(column: str):
    from pyspark.sql import Window

    return Window.partitionBy(column)
