"""What a Databricks workspace would refuse in a notebook, found by reading its code (no Spark).

Serverless compute runs notebooks through Spark Connect and refuses more than a classic
cluster does. Each rule below walks the syntax tree of every code cell:

- ``classic-only``: what only a classic session has (the SparkContext, RDDs, the JVM's objects);
  Spark Connect, Databricks Connect and serverless have none of them;
- ``cache``: ``.cache()``, ``.persist()``, ``.unpersist()``, ``.checkpoint()``,
  ``.localCheckpoint()``, ``spark.catalog.cacheTable`` / ``uncacheTable`` / ``clearCache``, and
  ``CACHE TABLE`` / ``UNCACHE TABLE`` / ``CLEAR CACHE`` / ``REFRESH TABLE`` in SQL;
- ``spark-conf``: ``spark.conf.set`` or SQL ``SET`` of a Spark property outside the few that
  serverless accepts (:data:`SERVERLESS_SPARK_CONFS`);
- ``trigger``: a streaming trigger other than ``availableNow`` or ``once``;
- ``local-path``: a hard-coded path on the local disk or DBFS (``/tmp/...``, ``dbfs:/...``,
  ``file:/...``) where a workspace wants a Unity Catalog volume (``/Volumes/<catalog>/<schema>/
  <volume>/...``); the course's path helpers (``settings().source_path()``,
  ``course.checkpoint_location``) build paths from settings and pass;
- ``widget``: ``dbutils.widgets.get("x")`` of a widget with no default that no job parameter
  feeds (a job run would stop there).

A lesson that needs classic compute on purpose lists the finding in :data:`CLASSIC_COMPUTE`
with the reason; the finding is then ``accepted`` (and the bundle check requires a cluster, not
serverless, for a job task running that lesson).

Sources, read when this was written: Databricks documentation, "Serverless compute
limitations" (https://docs.databricks.com/aws/en/compute/serverless/limitations: Spark Connect
APIs only, no RDDs or SparkContext, no caching APIs, only ``availableNow``/``once`` triggers,
DBFS limited, use volumes) and "Set Spark configuration properties on Databricks", section
"Configure Spark properties for serverless notebooks and jobs"
(https://docs.databricks.com/aws/en/spark/conf).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from nbformat import NotebookNode

from lakehouse.production import Finding

__all__ = [
    "CLASSIC_COMPUTE",
    "SERVERLESS_SPARK_CONFS",
    "SERVERLESS_TRIGGERS",
    "course_findings",
    "notebook_findings",
    "notebook_widgets",
    "parameter_literals",
    "stale_acceptances",
]

# The Spark properties serverless notebooks and jobs accept (Databricks documentation, "Configure
# Spark properties for serverless notebooks and jobs", https://docs.databricks.com/aws/en/spark/
# conf); setting any other raises CONFIG_NOT_AVAILABLE there.
SERVERLESS_SPARK_CONFS = frozenset(
    {
        "spark.databricks.execution.timeout",
        "spark.sql.ansi.enabled",
        "spark.sql.files.maxPartitionBytes",
        "spark.sql.legacy.timeParserPolicy",
        "spark.sql.session.timeZone",
        "spark.sql.shuffle.partitions",
    }
)
# "Only Trigger.AvailableNow and Trigger.Once": serverless compute limitations, Streaming.
SERVERLESS_TRIGGERS = frozenset({"availableNow", "once"})

# Lessons that do on purpose what serverless refuses, by lesson (path under solutions/) and the
# finding's subject, with the reason. A job task running one of them needs a cluster.
_TXN_REASON = (
    "the MERGE in foreachBatch is made idempotent with Delta's txnAppId/txnVersion session "
    "properties (DeltaTable.merge takes no writer options); on serverless, write with "
    ".option('txnAppId', ...) / .option('txnVersion', ...) instead, as 05_ml/06 does"
)
CLASSIC_COMPUTE: dict[str, dict[str, str]] = {
    "03_gold/06_table_maintenance.ipynb": {
        "spark.databricks.delta.retentionDurationCheck.enabled": (
            "VACUUM RETAIN 0 HOURS on the lesson's own copy shows what a short retention "
            "destroys; serverless keeps the retention check on, as production should"
        ),
    },
    "04_streaming/01_payment_event_stream.ipynb": {
        "trigger(processingTime)": "a live stream for a few seconds shows micro-batches arrive",
    },
    "04_streaming/04_foreachbatch_upserts.ipynb": {
        "spark.databricks.delta.write.txnAppId": _TXN_REASON,
        "spark.databricks.delta.write.txnVersion": _TXN_REASON,
    },
    "04_streaming/05_risk_and_compliance_alerts.ipynb": {
        "spark.databricks.delta.write.txnAppId": _TXN_REASON,
        "spark.databricks.delta.write.txnVersion": _TXN_REASON,
    },
    "04_streaming/06_operating_streams.ipynb": {
        "trigger(processingTime)": "the restart and lag drills need a query that keeps running",
    },
    "05_ml/06_batch_and_streaming_scoring.ipynb": {
        "trigger(processingTime)": "a promotion reaches a scoring query that keeps running",
    },
    "06_governance/05_retention.ipynb": {
        "spark.databricks.delta.retentionDurationCheck.enabled": (
            "VACUUM RETAIN 0 HOURS on the lesson's own copies shows a purge's rows leave the "
            "files; on Databricks predictive optimization vacuums with each class's retention"
        ),
    },
}

# What exists only in a classic session: Spark Connect (so Databricks Connect and serverless
# compute) has no SparkContext, no RDDs and no handles on the JVM's objects.
_CLASSIC_ONLY_ATTRIBUTES = frozenset(
    {"sparkContext", "rdd", "_jvm", "_jsc", "_jdf", "_jsparkSession", "_sc", "_jconf"}
)
_CLASSIC_ONLY_NAMES = frozenset({"SparkContext", "SQLContext", "sqlContext"})
_CACHE_METHODS = frozenset({"cache", "persist", "unpersist", "checkpoint", "localCheckpoint"})
_CATALOG_CACHE_METHODS = frozenset({"cacheTable", "uncacheTable", "clearCache"})
_CACHE_SQL = re.compile(
    r"^\s*(CACHE\s+(?:LAZY\s+)?TABLE|UNCACHE\s+TABLE|CLEAR\s+CACHE|REFRESH\s+TABLE)\b", re.I
)
_SET_SQL = re.compile(r"^\s*SET\s+([A-Za-z_][\w.]*)\s*=", re.I)
# A local or DBFS path: /name..., dbfs:..., file:..., ~/...; /Volumes/ and /Workspace/ are a
# workspace's own places. A lone "/" or "/ text" is not a path.
_LOCAL_PATH = re.compile(r"^(?:dbfs:|file:|~/|/(?!Volumes/|Workspace/)[\w.~-]+(?:/|$))")
_WIDGET_DECLARE = frozenset({"text", "dropdown", "combobox", "multiselect"})
_WIDGET_READ = frozenset({"get", "getArgument"})


def _cell_trees(nb: NotebookNode) -> Iterator[tuple[int, ast.Module]]:
    """(number, syntax tree) of each code cell that parses; magics and shell escapes blanked."""
    number = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        number += 1
        source = "\n".join(
            "" if line.lstrip().startswith(("%", "!")) else line
            for line in cell.source.splitlines()
        )
        try:
            yield number, ast.parse(source)
        except SyntaxError:
            continue  # the notebook checks report syntax where it matters


def _first_code_cell(nb: NotebookNode) -> NotebookNode | None:
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def parameter_literals(nb: NotebookNode) -> dict[str, object]:
    """The ``parameters`` cell's names and literal values (the first code cell, if tagged).

    >>> parameter_literals(nb)  # doctest: +SKIP
    {'scale': 'tiny', 'seed': 42, 'engine': 'auto', 'reset': False}
    """
    cell = _first_code_cell(nb)
    if cell is None or "parameters" not in cell.get("metadata", {}).get("tags", []):
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        return {}
    values: dict[str, object] = {}
    for stmt in tree.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else getattr(stmt, "target", None)
        value = getattr(stmt, "value", None)
        if isinstance(target, ast.Name) and value is not None:
            try:
                values[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                continue
    return values


def _as_widget_text(value: object) -> str:
    # A widget's value is a string; booleans read the way the local dbutils binds them.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def notebook_widgets(nb: NotebookNode) -> dict[str, str | None]:
    """Every widget a notebook reads, with its default (None: it has none).

    The ``parameters`` cell's names are widgets on Databricks (``workspace.install`` reads a
    job parameter of the same name into each), with the literal as default; widgets declared
    with ``dbutils.widgets.text/dropdown/combobox/multiselect`` have theirs (an empty default
    counts as none); a widget only read with ``dbutils.widgets.get`` has none.

    >>> notebook_widgets(nb)  # doctest: +SKIP
    {'scale': 'tiny', 'seed': '42', 'engine': 'auto', 'reset': 'false'}
    """
    widgets: dict[str, str | None] = {
        name: _as_widget_text(value) for name, value in parameter_literals(nb).items()
    }
    read: list[str] = []
    for _, tree in _cell_trees(nb):
        for node in ast.walk(tree):
            call = _widgets_call(node)
            if call is None:
                continue
            method, name, default = call
            if method in _WIDGET_DECLARE:
                widgets[name] = default or None
            else:
                read.append(name)
    for name in read:
        widgets.setdefault(name, None)
    return widgets


def _widgets_call(node: ast.AST) -> tuple[str, str, str | None] | None:
    """(method, name, default) of ``<x>.widgets.<method>("name", ...)`` with a literal name."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    owner = node.func.value
    if not (isinstance(owner, ast.Attribute) and owner.attr == "widgets"):
        return None
    method = node.func.attr
    if method not in _WIDGET_DECLARE | _WIDGET_READ:
        return None
    args = list(node.args)
    keywords = {k.arg: k.value for k in node.keywords}
    name_node = args[0] if args else keywords.get("name")
    if not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
        return None
    default_node = args[1] if len(args) > 1 else keywords.get("defaultValue")
    default = (
        default_node.value
        if isinstance(default_node, ast.Constant) and isinstance(default_node.value, str)
        else None
    )
    return method, name_node.value, default


def _string_constants(nb: NotebookNode) -> dict[str, str]:
    """Names bound to a string literal anywhere in the notebook (``KEY = "spark.x"``)."""
    constants: dict[str, str] = {}
    for _, tree in _cell_trees(nb):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                constants[node.targets[0].id] = node.value.value
    return constants


def _imported_names(nb: NotebookNode) -> set[str]:
    # A call on an imported module (``streaming.checkpoint(spark, name)``) is the course's own
    # function, not a DataFrame method of the same name.
    names: set[str] = set()
    for _, tree in _cell_trees(nb):
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    names.add((alias.asname or alias.name).split(".")[0])
    return names


def _fragments(tree: ast.AST) -> set[int]:
    """Ids of string constants that are pieces of a larger path: the parts of an f-string after
    the first, and the right-hand side of ``+``, ``/`` or ``%`` (``root + "/bronze"``)."""
    pieces: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            pieces.update(id(v) for v in node.values[1:])
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Div, ast.Mod)):
            pieces.add(id(node.right))
    return pieces


def _sql_text(call: ast.Call) -> str | None:
    # The literal start of the statement passed to spark.sql(...), f-strings included.
    if not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    if isinstance(first, ast.JoinedStr) and first.values:
        head = first.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return head.value
    return None


def notebook_findings(
    nb: NotebookNode,
    path: str,
    *,
    lesson: str | None = None,
    fed: Iterable[str] = (),
) -> list[Finding]:
    """Everything in ``nb`` that a Databricks workspace (serverless compute, a job) would refuse.

    ``path`` names the notebook in the findings; ``lesson`` (its path under ``solutions/``) looks
    up the lesson's accepted findings in :data:`CLASSIC_COMPUTE`; ``fed`` holds the widget names
    a bundle's job feeds it. Returns one :class:`Finding` per use, in cell order.

    >>> [f.rule for f in notebook_findings(nb, "bad.ipynb")]  # doctest: +SKIP
    ['cache', 'spark-conf', 'local-path']
    """
    accepted = CLASSIC_COMPUTE.get(lesson or "", {})
    constants = _string_constants(nb)
    imported = _imported_names(nb)
    fed = set(fed)
    found: list[Finding] = []

    def add(number: int, node: ast.AST, rule: str, subject: str, message: str) -> None:
        where = f"code cell {number}, line {getattr(node, 'lineno', 1)}"
        found.append(Finding(path, where, rule, subject, message, accepted.get(subject)))

    for number, tree in _cell_trees(nb):
        pieces = _fragments(tree)
        for node in ast.walk(tree):
            for rule, subject, message in _node_findings(node, constants, imported, pieces):
                add(number, node, rule, subject, message)
    found.extend(_widget_findings(nb, path, fed, accepted))
    return found


def _node_findings(
    node: ast.AST, constants: Mapping[str, str], imported: set[str], pieces: set[int]
) -> Iterator[tuple[str, str, str]]:
    if isinstance(node, ast.Attribute) and node.attr in _CLASSIC_ONLY_ATTRIBUTES:
        yield (
            "classic-only",
            f".{node.attr}",
            f"uses .{node.attr}, which Spark Connect (Databricks Connect, serverless) does not "
            "have; use the DataFrame or SQL API",
        )
    elif (isinstance(node, ast.Name) and node.id in _CLASSIC_ONLY_NAMES) or (
        isinstance(node, ast.alias) and node.name in _CLASSIC_ONLY_NAMES
    ):
        used = node.id if isinstance(node, ast.Name) else node.name
        yield (
            "classic-only",
            used,
            f"uses {used}, which Spark Connect (Databricks Connect, serverless) does not "
            "have; use the DataFrame or SQL API (on the SparkSession, spark)",
        )
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        yield from _call_findings(node, constants, imported)
    elif (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in pieces
        and _LOCAL_PATH.match(node.value)
    ):
        yield (
            "local-path",
            node.value,
            f"hard-codes the path {node.value!r}, which a workspace does not have (serverless "
            "limits DBFS and the local disk); build it from the course's settings "
            "(settings().source_path(), course.checkpoint_location) or use a Unity Catalog "
            "volume, /Volumes/<catalog>/<schema>/<volume>/...",
        )


def _call_findings(
    call: ast.Call, constants: Mapping[str, str], imported: set[str]
) -> Iterator[tuple[str, str, str]]:
    method = call.func.attr
    owner = call.func.value
    on_module = isinstance(owner, ast.Name) and owner.id in imported
    if method in _CACHE_METHODS and not on_module:
        yield (
            "cache",
            f".{method}()",
            f"calls .{method}(), which serverless compute refuses (no caching APIs); read the "
            "table again, or write the intermediate result to a table and read that",
        )
    elif method in _CATALOG_CACHE_METHODS and isinstance(owner, ast.Attribute):
        if owner.attr == "catalog":
            yield (
                "cache",
                f"catalog.{method}()",
                f"calls spark.catalog.{method}(), which serverless compute refuses (no caching "
                "APIs); read the table itself",
            )
    elif method == "set" and isinstance(owner, ast.Attribute) and owner.attr == "conf":
        yield from _conf_findings(call, constants)
    elif method == "trigger":
        for keyword in call.keywords:
            if keyword.arg and keyword.arg not in SERVERLESS_TRIGGERS:
                yield (
                    "trigger",
                    f"trigger({keyword.arg})",
                    f"starts a stream with trigger({keyword.arg}=...), which serverless "
                    "compute refuses (INFINITE_STREAMING_TRIGGER_NOT_SUPPORTED); use "
                    "trigger(availableNow=True) and schedule the job, or run it on a cluster",
                )
    elif method == "sql":
        text = _sql_text(call)
        if text is None:
            return
        if cache := _CACHE_SQL.match(text):
            statement = " ".join(cache.group(1).upper().split())
            yield (
                "cache",
                statement,
                f"runs {statement}, which serverless compute refuses (no caching); read the "
                "table itself",
            )
        elif setting := _SET_SQL.match(text):
            yield from _conf_key_findings(setting.group(1), "SET")


def _conf_findings(call: ast.Call, constants: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
    key_node = call.args[0] if call.args else None
    if isinstance(key_node, ast.Constant) and isinstance(key_node.value, str):
        key = key_node.value
    elif isinstance(key_node, ast.Name) and key_node.id in constants:
        key = constants[key_node.id]
    else:
        shown = ast.unparse(key_node) if key_node is not None else "?"
        yield (
            "spark-conf",
            shown,
            f"sets a Spark property whose name ({shown}) is not a literal, so it cannot be "
            f"checked; serverless accepts only {', '.join(sorted(SERVERLESS_SPARK_CONFS))}",
        )
        return
    yield from _conf_key_findings(key, "spark.conf.set")


def _conf_key_findings(key: str, how: str) -> Iterator[tuple[str, str, str]]:
    if key in SERVERLESS_SPARK_CONFS:
        return
    yield (
        "spark-conf",
        key,
        f"sets {key} ({how}), which serverless compute refuses (CONFIG_NOT_AVAILABLE: it "
        f"accepts only {', '.join(sorted(SERVERLESS_SPARK_CONFS))}); use a table property, "
        "a writer option or the default, or run the task on a cluster",
    )


def _widget_findings(
    nb: NotebookNode, path: str, fed: set[str], accepted: Mapping[str, str]
) -> list[Finding]:
    widgets = notebook_widgets(nb)
    found = []
    for number, tree in _cell_trees(nb):
        for node in ast.walk(tree):
            call = _widgets_call(node)
            if call is None or call[0] not in _WIDGET_READ:
                continue
            name = call[1]
            if widgets.get(name) is None and name not in fed:
                found.append(
                    Finding(
                        path,
                        f"code cell {number}, line {node.lineno}",
                        "widget",
                        name,
                        f"reads widget {name!r}, which has no default and no job parameter "
                        f"feeds: declare it first (dbutils.widgets.text({name!r}, "
                        "'<default>')) or add it to the job's parameters or the task's "
                        "base_parameters",
                        accepted.get(name),
                    )
                )
    return found


def stale_acceptances(findings: Iterable[Finding], lessons: Iterable[str]) -> list[str]:
    """Entries of :data:`CLASSIC_COMPUTE` for the given lessons that no finding matches any more
    (the lesson changed): each should be removed, so the list keeps meaning something."""
    seen = {(f.path, f.subject) for f in findings if f.accepted}
    stale = []
    for lesson in lessons:
        for subject in CLASSIC_COMPUTE.get(lesson, {}):
            if not any(path.endswith(lesson) and s == subject for path, s in seen):
                stale.append(
                    f"lakehouse.production.compat.CLASSIC_COMPUTE lists {subject!r} for {lesson}, "
                    "which the lesson no longer uses: remove the entry"
                )
    return stale


def course_findings(
    root: str | Path, fed: Mapping[str, Iterable[str]] | None = None
) -> list[Finding]:
    """:func:`notebook_findings` of every solution notebook under ``root/solutions`` (the
    exercises carry the same code), with the widget names ``fed`` per lesson by a bundle."""
    from lakehouse import notebooks

    root = Path(root)
    fed = fed or {}
    found: list[Finding] = []
    for solution in notebooks.solution_notebooks(root):
        lesson = solution.relative_to(root / notebooks.SOLUTIONS_DIR).as_posix()
        try:
            nb = notebooks.read(solution)
        except Exception:  # unreadable: the notebook checks report it
            continue
        found.extend(
            notebook_findings(
                nb, solution.relative_to(root).as_posix(), lesson=lesson, fed=fed.get(lesson, ())
            )
        )
    return found
