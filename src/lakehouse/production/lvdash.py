"""The KPI dashboard as a Databricks AI/BI dashboard: the ``.lvdash.json`` file generated from
:data:`lakehouse.production.dashboards.SPEC`, and the checks that keep it deployable.

The file is what ``databricks bundle generate dashboard`` writes and ``databricks bundle deploy``
reads (``resources/kpi_dashboard.yml`` points at it): ``datasets`` (each a ``name``, a
``displayName`` and a ``query``) and ``pages`` whose ``layout`` places widgets on a grid six
columns wide. A widget reads a dataset through ``queries`` (``datasetName`` and the ``fields``
it selects, each a name and a SQL expression) and draws them as its ``spec`` says
(``widgetType``, its spec ``version`` and the ``encodings`` that map fields to the chart). The
forms used here are those of Databricks' own bundle examples (``databricks/bundle-examples``,
``knowledge_base/dashboard_nyc_taxi``): ``counter`` (version 2), ``bar``, ``line`` and ``pie``
(version 3), and a title in a ``textbox_spec``.

Each dataset's ``query`` is the KPI's SQL itself, so a deployed dashboard needs only the Gold
tables (the bundle's ``dataset_catalog`` names their catalog). :func:`check_lvdash` checks the
structure and, with the datasets' columns from local Spark (:func:`dataset_columns`), every
column a widget reads; :func:`check_committed_lvdash` fails when the committed file
(:data:`LVDASH_FILE`) is not the spec's.

    make dashboard                                  # rewrite dashboards/lakehouse_kpis.lvdash.json
    python -m lakehouse.production.lvdash           # the same
    python -m lakehouse.production.lvdash --check   # exit 1 when it is stale

>>> from lakehouse.production import lvdash
>>> lvdash.check_lvdash(lvdash.lvdash())
[]
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lakehouse.production import dashboards
from lakehouse.production.dashboards import DASHBOARD_TITLE, SPEC, Kpi, label

LVDASH_FILE = Path("dashboards") / "lakehouse_kpis.lvdash.json"
GRID_COLUMNS = 6  # an AI/BI dashboard page is six columns wide
WIDGET_VERSIONS = {"counter": 2, "bar": 3, "line": 3, "pie": 3}


def dataset(item: Kpi) -> dict:
    """A dashboard dataset: ``name`` (the KPI's), ``displayName`` (its title) and ``query``
    (its SQL, so the dashboard needs only the Gold tables)."""
    return {"name": item.name, "displayName": item.title, "query": item.sql}


def _field(column: str) -> dict:
    return {"name": column, "expression": f"`{column}`"}


def _query(dataset_name: str, columns: Iterable[str]) -> list[dict]:
    # The KPI rows are already aggregated: the widget reads them as they are (disaggregated).
    return [
        {
            "name": "main_query",
            "query": {
                "datasetName": dataset_name,
                "fields": [_field(c) for c in columns],
                "disaggregated": True,
            },
        }
    ]


def _encoding(column: str, scale: str | None = None) -> dict:
    found = {"fieldName": column, "displayName": label(column)}
    if scale:
        found["scale"] = {"type": scale}
    return found


def widgets(item: Kpi, position: Mapping[str, int]) -> list[dict]:
    """The layout items (``{"widget": ..., "position": ...}``) of a KPI at ``position``
    (``x``, ``y``, ``width``, ``height`` on the six-column grid): one chart widget, or one
    counter per measure side by side, splitting the width."""
    if item.chart == "counter":
        width = max(1, position["width"] // len(item.y))
        return [
            {
                "widget": {
                    "name": f"{item.name}_{column}",
                    "queries": _query(item.name, [column]),
                    "spec": {
                        "version": WIDGET_VERSIONS["counter"],
                        "widgetType": "counter",
                        "encodings": {"value": _encoding(column)},
                        "frame": {"showTitle": True, "title": label(column)},
                    },
                },
                "position": {
                    "x": position["x"] + i * width,
                    "y": position["y"],
                    "width": width,
                    "height": position["height"],
                },
            }
            for i, column in enumerate(item.y)
        ]
    if item.chart == "pie":
        encodings = {
            "angle": _encoding(item.y[0], "quantitative"),
            "color": _encoding(item.x, "categorical"),
        }
    else:
        x_scale = "temporal" if item.chart == "line" else "categorical"
        encodings = {
            "x": _encoding(item.x, x_scale),
            "y": _encoding(item.y[0], "quantitative"),
        }
    return [
        {
            "widget": {
                "name": item.name,
                "queries": _query(item.name, item.columns),
                "spec": {
                    "version": WIDGET_VERSIONS[item.chart],
                    "widgetType": item.chart,
                    "encodings": encodings,
                    "frame": {"showTitle": True, "title": item.title},
                },
            },
            "position": dict(position),
        }
    ]


def positions(spec: Sequence[Kpi] = SPEC) -> dict[str, dict[str, int]]:
    """Where each KPI goes on the page, below a title row, in the order of the spec: a KPI of
    ``dashboards.full_width`` (the counters, an odd last chart) takes a row of its own, the
    other charts go two per row, as on the HTML page."""
    wide, half = dashboards.full_width(spec), GRID_COLUMNS // 2
    found, y, column = {}, 1, 0
    for item in spec:
        height = 2 if item.chart == "counter" else 6
        if item.name in wide:
            y += 6 if column else 0
            found[item.name] = {"x": 0, "y": y, "width": GRID_COLUMNS, "height": height}
            y, column = y + height, 0
            continue
        found[item.name] = {"x": column * half, "y": y, "width": half, "height": height}
        y, column = (y + height, 0) if column else (y, 1)
    return found


def lvdash(spec: Sequence[Kpi] = SPEC, *, title: str = DASHBOARD_TITLE) -> dict:
    """The Databricks AI/BI dashboard of ``spec`` as the ``.lvdash.json`` document: one dataset
    per KPI and one page with a title and every KPI's widget(s)."""
    where = positions(spec)
    layout = [
        {
            "widget": {"name": "title", "textbox_spec": f"# {title}"},
            "position": {"x": 0, "y": 0, "width": GRID_COLUMNS, "height": 1},
        }
    ]
    for item in spec:
        layout.extend(widgets(item, where[item.name]))
    return {
        "datasets": [dataset(item) for item in spec],
        "pages": [{"name": "kpis", "displayName": "KPIs", "layout": layout}],
    }


def lvdash_json(doc: Mapping) -> str:
    """The document as the file holds it: JSON indented by 2, a newline at the end."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write_lvdash(path: str | os.PathLike, spec: Sequence[Kpi] = SPEC) -> Path:
    """Write :func:`lvdash` of ``spec`` to ``path`` (its folder created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lvdash_json(lvdash(spec)), encoding="utf-8")
    return path


def load_lvdash(path: str | os.PathLike) -> dict:
    """Read a ``.lvdash.json`` file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dataset_query(ds: Mapping) -> str:
    """A dataset's SQL: its ``query``, or its ``queryLines`` joined (the form newer exports
    write)."""
    if "query" in ds:
        return ds["query"]
    return "".join(ds.get("queryLines") or [])


def dataset_columns(spark, doc: Mapping) -> dict[str, list[str]]:
    """Each dataset's result columns, by dataset name, from Spark's analysis of its query (no
    rows are read). A query that does not analyze raises with the dataset's name."""
    found = {}
    for ds in doc.get("datasets") or []:
        try:
            found[ds["name"]] = list(spark.sql(dataset_query(ds)).columns)
        except Exception as error:  # noqa: BLE001 - any analysis error, reported with the name
            raise ValueError(f"dataset {ds.get('name')!r}: its query fails: {error}") from error
    return found


def run_datasets(spark, doc: Mapping) -> dict:
    """Each dataset's rows as a pandas frame, by dataset name: the SQL a dashboard sends to its
    warehouse, run on the local session."""
    return {ds["name"]: spark.sql(dataset_query(ds)).toPandas() for ds in doc["datasets"]}


_ENCODINGS_NEEDED = {
    "counter": ("value",),
    "bar": ("x", "y"),
    "line": ("x", "y"),
    "pie": ("angle", "color"),
}
_FIELD_REF = re.compile(r"`([^`]+)`")


def _overlaps(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def _check_position(where: str, position: Any) -> list[str]:
    if not isinstance(position, Mapping) or any(
        not isinstance(position.get(k), int) or position[k] < 0
        for k in ("x", "y", "width", "height")
    ):
        return [f"{where}: position needs whole numbers x, y, width and height, got {position}"]
    if position["width"] < 1 or position["height"] < 1:
        return [f"{where}: width and height must be at least 1, got {position}"]
    if position["x"] + position["width"] > GRID_COLUMNS:
        return [
            f"{where}: x + width = {position['x'] + position['width']} passes the page's "
            f"{GRID_COLUMNS} columns"
        ]
    return []


def _check_widget(
    where: str,
    widget: Mapping,
    datasets: Mapping[str, Mapping],
    columns: Mapping[str, Sequence[str]] | None,
) -> list[str]:
    if "textbox_spec" in widget:
        return []
    problems = []
    fields: set[str] = set()
    for query in widget.get("queries") or []:
        body = query.get("query") or {}
        name = body.get("datasetName")
        if name not in datasets:
            by_title = [n for n, d in datasets.items() if d.get("displayName") == name]
            hint = (
                f" ({name!r} is the displayName of {by_title[0]!r}: datasetName takes the "
                "dataset's name)"
                if by_title
                else ""
            )
            problems.append(
                f"{where}: its query names dataset {name!r}, which names no dataset "
                f"(datasets: {sorted(datasets)}){hint}"
            )
            continue
        known = columns.get(name) if columns is not None else None
        for field in body.get("fields") or []:
            if not {"name", "expression"} <= set(field):
                problems.append(f"{where}: field {field} needs a name and an expression")
                continue
            fields.add(field["name"])
            for column in _FIELD_REF.findall(field["expression"]):
                if known is not None and column not in known:
                    problems.append(
                        f"{where}: field {field['name']!r} reads column {column!r}, but dataset "
                        f"{name!r} has no column {column!r} (its columns: {list(known)})"
                    )
    if not widget.get("queries"):
        problems.append(f"{where}: no query (a chart reads a dataset through queries)")
    spec = widget.get("spec") or {}
    kind = spec.get("widgetType")
    if kind not in _ENCODINGS_NEEDED:
        return [
            *problems,
            f"{where}: widgetType {kind!r} is not one of {sorted(_ENCODINGS_NEEDED)}",
        ]
    if spec.get("version") != WIDGET_VERSIONS[kind]:
        problems.append(
            f"{where}: a {kind} widget is spec version {WIDGET_VERSIONS[kind]}, got "
            f"{spec.get('version')!r}"
        )
    encodings = spec.get("encodings") or {}
    for channel in _ENCODINGS_NEEDED[kind]:
        if channel not in encodings:
            problems.append(f"{where}: a {kind} widget needs the encoding {channel!r}")
    for channel, encoding in encodings.items():
        if isinstance(encoding, Mapping) and "fieldName" in encoding:
            if encoding["fieldName"] not in fields:
                problems.append(
                    f"{where}: encoding {channel!r} uses field {encoding['fieldName']!r}, which "
                    f"is not among the fields its query selects ({sorted(fields)})"
                )
    return problems


def check_lvdash(doc: Mapping, columns: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Problems of a ``.lvdash.json`` document, each naming the dataset, page or widget and
    the fix (empty when none): datasets with unique names and a query; pages with a name and
    a layout; every widget with a unique name, a position inside the six-column grid that
    overlaps no other widget of its page, queries that name a dataset by its ``name`` and
    select fields, a known ``widgetType`` with its spec version and the encodings it needs,
    each on a field its query selects. With ``columns`` (:func:`dataset_columns`), every
    column a field reads must be a column of its dataset."""
    problems = []
    if not isinstance(doc, Mapping) or not isinstance(doc.get("datasets"), list):
        return ["the document needs a list of datasets"]
    if not isinstance(doc.get("pages"), list) or not doc["pages"]:
        return ["the document needs a list of pages (at least one)"]
    datasets: dict[str, Mapping] = {}
    for i, ds in enumerate(doc["datasets"]):
        name = ds.get("name")
        if not name:
            problems.append(f"datasets[{i}]: no name")
            continue
        if name in datasets:
            problems.append(f"dataset {name!r} is declared twice: dataset names are unique")
        if not dataset_query(ds).strip():
            problems.append(f"dataset {name!r}: no query")
        datasets[name] = ds
    widget_names: set[str] = set()
    for p, page in enumerate(doc["pages"]):
        page_name = page.get("name") or f"pages[{p}]"
        if not page.get("name") or not page.get("displayName"):
            problems.append(f"page {page_name!r}: needs a name and a displayName")
        placed: list[tuple[str, Mapping]] = []
        for item in page.get("layout") or []:
            widget = item.get("widget") or {}
            name = widget.get("name")
            where = f"page {page_name!r}, widget {name!r}"
            if not name:
                problems.append(f"page {page_name!r}: a widget has no name")
            elif name in widget_names:
                problems.append(f"{where}: widget names are unique, {name!r} is used twice")
            widget_names.add(name)
            position_problems = _check_position(where, item.get("position"))
            problems.extend(position_problems)
            if not position_problems:
                for other, at in placed:
                    if _overlaps(item["position"], at):
                        problems.append(f"{where}: overlaps widget {other!r} on the page")
                placed.append((name, item["position"]))
            problems.extend(_check_widget(where, widget, datasets, columns))
    return problems


def check_widget(item: Mapping, kpi_item: Kpi, doc: Mapping | None = None, columns=None) -> str:
    """Assert ``item`` (a layout item: ``{"widget", "position"}``) is a correct widget for
    ``kpi_item`` in ``doc`` (default: :func:`lvdash` without that KPI's own widgets): it reads
    the KPI's dataset, draws its chart type with the x and y columns of the spec (for a pie:
    color and angle), and fits the page. ``columns`` as for :func:`check_lvdash`. Returns a
    one-line summary."""
    doc = doc or lvdash()
    ours = set(_widget_names(doc, kpi_item))
    page = dict(doc["pages"][0])
    page["layout"] = [i for i in page["layout"] if i["widget"].get("name") not in ours] + [item]
    problems = check_lvdash({**doc, "pages": [page]}, columns)
    widget = item.get("widget") or {}
    spec = widget.get("spec") or {}
    encodings = spec.get("encodings") or {}
    if spec.get("widgetType") != kpi_item.chart:
        problems.append(
            f"{kpi_item.name}: the spec draws it as a {kpi_item.chart!r} chart, the widget's "
            f"widgetType is {spec.get('widgetType')!r}"
        )
    wanted = (
        {"color": kpi_item.x, "angle": kpi_item.y[0]}
        if kpi_item.chart == "pie"
        else {"x": kpi_item.x, "y": kpi_item.y[0]}
    )
    for channel, column in wanted.items():
        got = (encodings.get(channel) or {}).get("fieldName")
        if got is not None and got != column:
            problems.append(
                f"{kpi_item.name}: encoding {channel!r} should draw {column!r}, it draws {got!r}"
            )
    read = {q.get("query", {}).get("datasetName") for q in widget.get("queries") or []}
    if read and read != {kpi_item.name} and not any("names no dataset" in p for p in problems):
        problems.append(f"{kpi_item.name}: the widget reads {sorted(read)}, not its dataset")
    if problems:
        raise AssertionError("The widget is wrong:\n- " + "\n- ".join(problems))
    return (
        f"widget {widget.get('name')!r}: a {kpi_item.chart} of dataset {kpi_item.name!r}, "
        f"{', '.join(f'{c}={f}' for c, f in wanted.items())}, at {item.get('position')}"
    )


def _widget_names(doc: Mapping, kpi_item: Kpi) -> list[str]:
    names = []
    for page in doc["pages"]:
        for item in page.get("layout") or []:
            queries = item.get("widget", {}).get("queries") or []
            if any(q.get("query", {}).get("datasetName") == kpi_item.name for q in queries):
                names.append(item["widget"]["name"])
    return names


def committed_lvdash(root: str | os.PathLike | None = None) -> Path:
    """The committed dashboard file, :data:`LVDASH_FILE` under the course's root."""
    from lakehouse.config import project_root

    return Path(root or project_root()) / LVDASH_FILE


def check_committed_lvdash(root: str | os.PathLike | None = None, spec=SPEC) -> str:
    """Assert the committed ``.lvdash.json`` is exactly :func:`lvdash` of ``spec`` (the file
    the bundle deploys must come from the spec). Returns a one-line summary."""
    path = committed_lvdash(root)
    want = lvdash_json(lvdash(spec))
    if not path.is_file():
        raise AssertionError(
            f"{path} is missing: write it with `make dashboard` (python -m "
            "lakehouse.production.lvdash)"
        )
    if path.read_text(encoding="utf-8") != want:
        raise AssertionError(
            f"{path} differs from the spec's dashboard: rewrite it with `make dashboard` "
            "(python -m lakehouse.production.lvdash) and commit it"
        )
    doc = json.loads(want)
    return (
        f"{LVDASH_FILE}: {len(doc['datasets'])} datasets, "
        f"{sum(len(p['layout']) for p in doc['pages'])} widgets, up to date with the spec"
    )


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lakehouse.production.lvdash [--check] [--root DIR]``: write the committed
    ``.lvdash.json`` from the spec, or check that it is up to date (exit 1 when stale)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.production.lvdash",
        description=f"Write {LVDASH_FILE} from the KPI spec (lakehouse.production.dashboards).",
    )
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    parser.add_argument("--root", default=None, help="the course's root (default: found)")
    args = parser.parse_args(argv)
    if args.check:
        try:
            print(check_committed_lvdash(args.root))
        except AssertionError as stale:
            print(stale)
            return 1
        return 0
    print(f"wrote {write_lvdash(committed_lvdash(args.root))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
