"""Local stand-ins for the Databricks notebook globals ``display`` and ``dbutils``.

A cell written for a Databricks workspace runs unchanged locally; on Databricks the real ones win.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "CloudPathError",
    "DirectoryNotEmptyError",
    "FileInfo",
    "FileSystem",
    "InputWidgetNotDefined",
    "LocalDBUtils",
    "NotebookExit",
    "Rendered",
    "StreamingDisplayError",
    "Widgets",
    "dbutils",
    "display",
    "displayHTML",
    "get_dbutils",
    "apply_job_parameters",
    "install",
    "parameter_from_widget",
    "render",
]

DEFAULT_DISPLAY_LIMIT = 1000
DISPLAY_LIMIT_ENV = "LAKEHOUSE_DISPLAY_LIMIT"
WIDGET_ENV_PREFIX = "LAKEHOUSE_WIDGET_"
DBFS_ROOT_ENV = "LAKEHOUSE_DBFS_ROOT"

# Show-like text rendering cuts long cells, as df.show() does by default, so a wide free-text
# column cannot push the whole table off screen; the HTML table keeps full values.
_TEXT_CELL_WIDTH = 20


# --------------------------------------------------------------------------------------------
# display
# --------------------------------------------------------------------------------------------


class StreamingDisplayError(NotImplementedError):
    """Raised by ``display`` for a streaming DataFrame, which only a workspace can render."""


class Rendered(NamedTuple):
    """A table rendered both ways: ``html`` for Jupyter, ``text`` for a terminal or a log."""

    html: str
    text: str
    truncated: bool


def display(obj: Any, *, limit: int | None = None) -> None:
    """Show a Spark or pandas DataFrame or an Arrow table as a table, anything else as IPython does.

    Spark frames are cut to ``limit`` rows (default 1000, like Databricks, or the value of
    ``LAKEHOUSE_DISPLAY_LIMIT``) before anything is collected, so displaying a large table is cheap.
    In Jupyter the output carries an HTML table and a plain-text twin; in a script the text is
    printed.

    >>> display(spark.range(3))  # doctest: +SKIP
    +---+
    | id|
    +---+
    |  0|
    |  1|
    |  2|
    +---+
    """
    rendered = render(obj, limit=limit)
    if rendered is None:
        _display_other(obj)
        return
    shell = _ipython_shell()
    if shell is None:
        print(rendered.text)
        return
    from IPython.display import display as ipython_display

    # One bundle with both types: Jupyter shows the HTML, a terminal IPython the text.
    ipython_display({"text/html": rendered.html, "text/plain": rendered.text}, raw=True)


def displayHTML(html_text: str) -> None:  # noqa: N802 - the Databricks global's name
    """Render an HTML string, like the Databricks ``displayHTML`` global.

    >>> displayHTML("<h3>Bronze is ready</h3>")  # doctest: +SKIP
    """
    if _ipython_shell() is None:
        print(html_text)
        return
    from IPython.display import HTML
    from IPython.display import display as ipython_display

    ipython_display(HTML(html_text))


def render(obj: Any, *, limit: int | None = None) -> Rendered | None:
    """Render a table-like object as HTML and text, or return None for anything else.

    >>> render(pandas.DataFrame({"id": [1]})).text.splitlines()[1]  # doctest: +SKIP
    '| id|'
    """
    if _is_spark_dataframe(obj):
        if obj.isStreaming:
            raise StreamingDisplayError(
                "display() of a streaming DataFrame only works in a Databricks workspace. "
                "Locally, write the stream to a table and display the table instead: "
                '(df.writeStream.format("delta").option("checkpointLocation", checkpoint)'
                '.trigger(availableNow=True).toTable("my_table")).awaitTermination(); '
                'display(spark.table("my_table"))'
            )
        n = _resolve_limit(limit)
        # collect() of limit(n + 1) fetches at most n + 1 rows, like toPandas() would, but keeps
        # Spark's values: nulls stay null and integer columns with nulls stay integers.
        rows = [tuple(row) for row in obj.limit(n + 1).collect()]
        return _render_rows(list(obj.columns), rows, n)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(obj, pandas.DataFrame):
        n = _resolve_limit(limit)
        head = obj.head(n + 1)
        rows = [tuple(_pandas_value(v) for v in row) for row in head.itertuples(index=False)]
        return _render_rows([str(c) for c in obj.columns], rows, n)
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None and isinstance(obj, pyarrow.Table):
        n = _resolve_limit(limit)
        head = obj.slice(0, n + 1)
        rows = list(zip(*(column.to_pylist() for column in head.columns), strict=True))
        return _render_rows(list(obj.column_names), rows, n)
    return None


def _is_spark_dataframe(obj: Any) -> bool:
    # Look the classes up in sys.modules instead of importing them: a Connect frame can only
    # exist once its module is loaded, and importing Connect eagerly needs grpc installed.
    # Both modules are checked because Connect frames do not subclass the classic one before
    # pyspark 4 (Databricks Connect 13-15 ships pyspark 3.4/3.5).
    for module_name in ("pyspark.sql.dataframe", "pyspark.sql.connect.dataframe"):
        module = sys.modules.get(module_name)
        if module is not None and isinstance(obj, module.DataFrame):
            return True
    return False


def _resolve_limit(limit: int | None) -> int:
    if limit is None:
        raw = os.environ.get(DISPLAY_LIMIT_ENV, "").strip()
        if not raw:
            return DEFAULT_DISPLAY_LIMIT
        try:
            limit = int(raw)
        except ValueError:
            raise ValueError(
                f"{DISPLAY_LIMIT_ENV}={raw!r} is not a whole number; set it to a row count "
                f"such as {DEFAULT_DISPLAY_LIMIT} or unset it."
            ) from None
        source = f"{DISPLAY_LIMIT_ENV}={raw!r}"
    else:
        source = f"limit={limit!r}"
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"display {source} must be a positive number of rows, e.g. limit=100.")
    return limit


def _render_rows(columns: list[str], rows: list[tuple], limit: int) -> Rendered:
    truncated = len(rows) > limit
    rows = rows[:limit]
    cells = [[_format_value(value) for value in row] for row in rows]
    if truncated:
        footer = f"Showing the first {limit:,} rows."
    elif not rows:
        footer = "Query returned no results."
    else:
        footer = ""
    return Rendered(
        _html_table(columns, cells, footer), _text_table(columns, cells, footer), truncated
    )


def _html_table(columns: list[str], cells: list[list[str]], footer: str) -> str:
    # Deterministic markup (no ids, no styles keyed on time) so nbval can compare outputs.
    head = "".join(f"<th>{html.escape(name)}</th>" for name in columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in cells
    )
    parts = [
        '<table class="lakehouse-display" border="1">',
        f"<thead><tr>{head}</tr></thead>",
        f"<tbody>\n{body}\n</tbody>" if body else "<tbody></tbody>",
        "</table>",
    ]
    if footer:
        parts.append(f"<p>{html.escape(footer)}</p>")
    return "\n".join(parts)


def _text_table(columns: list[str], cells: list[list[str]], footer: str) -> str:
    def cut(text: str) -> str:
        if len(text) > _TEXT_CELL_WIDTH:
            return text[: _TEXT_CELL_WIDTH - 3] + "..."
        return text

    header = [cut(name) for name in columns]
    body = [[cut(cell) for cell in row] for row in cells]
    widths = [max([3, len(name), *(len(row[i]) for row in body)]) for i, name in enumerate(header)]
    rule = "+" + "+".join("-" * w for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "|" + "|".join(v.rjust(w) for v, w in zip(values, widths, strict=True)) + "|"

    lines = [rule, line(header), rule, *(line(row) for row in body), rule]
    if footer:
        lines.append(footer)
    return "\n".join(lines)


def _format_value(value: Any) -> str:
    """Format one cell the way ``df.show()`` prints it: null, true/false, [list], {struct}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (date, Decimal)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "[" + " ".join(f"{b:02X}" for b in value) + "]"
    if isinstance(value, tuple):  # a Row, i.e. a struct
        return "{" + ", ".join(_format_value(v) for v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{_format_value(k)} -> {_format_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return str(value)


def _pandas_value(value: Any) -> Any:
    # pandas marks missing values as NaN, NaT or NA; show them as null, as Spark would.
    pandas = sys.modules["pandas"]
    try:
        missing = pandas.isna(value)
    except (TypeError, ValueError):
        return value
    if isinstance(missing, bool) or type(missing).__name__ == "bool_":
        return None if missing else value
    return value  # list-like cell: isna answered per element


def _display_other(obj: Any) -> None:
    try:
        from IPython.display import display as ipython_display
    except ImportError:
        print(obj)
        return
    ipython_display(obj)


def _ipython_shell() -> Any:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    return ipython.get_ipython()


# --------------------------------------------------------------------------------------------
# dbutils.widgets
# --------------------------------------------------------------------------------------------


class InputWidgetNotDefined(LookupError):
    """Raised for a widget that was never declared; Databricks raises an error of this name."""


@dataclass(frozen=True)
class _Widget:
    kind: str
    default: str
    choices: tuple[str, ...] | None
    label: str | None


class Widgets:
    """``dbutils.widgets``: locally, a widget's value is the notebook's parameter.

    ``get(name)`` returns, first found: a value bound from the notebook's parameters
    (``bind_parameters``, which papermill's ``parameters`` cell feeds), the environment variable
    ``LAKEHOUSE_WIDGET_<NAME>`` (name upper-cased, other characters than letters and digits
    replaced by ``_``), then the widget's default. Values are strings, as on Databricks.

    >>> dbutils.widgets.text("scale", "tiny", "Data scale")  # doctest: +SKIP
    >>> dbutils.widgets.get("scale")  # doctest: +SKIP
    'tiny'
    """

    def __init__(self) -> None:
        self._widgets: dict[str, _Widget] = {}
        self._bound: dict[str, str] = {}

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:  # noqa: N803
        """Declare a free-text widget.

        >>> dbutils.widgets.text("catalog", "main")  # doctest: +SKIP
        """
        self._declare("text", name, defaultValue, None, label)

    def dropdown(
        self,
        name: str,
        defaultValue: str,  # noqa: N803 - Databricks' keyword names
        choices: Iterable[str],
        label: str | None = None,
    ) -> None:
        """Declare a widget whose value is one of ``choices``.

        >>> dbutils.widgets.dropdown("scale", "tiny", ["tiny", "small"])  # doctest: +SKIP
        """
        self._declare("dropdown", name, defaultValue, choices, label)

    def combobox(
        self,
        name: str,
        defaultValue: str,  # noqa: N803
        choices: Iterable[str],
        label: str | None = None,
    ) -> None:
        """Declare a widget that suggests ``choices`` but accepts any text.

        >>> dbutils.widgets.combobox("region", "eu", ["eu", "us"])  # doctest: +SKIP
        """
        self._declare("combobox", name, defaultValue, choices, label)

    def multiselect(
        self,
        name: str,
        defaultValue: str,  # noqa: N803
        choices: Iterable[str],
        label: str | None = None,
    ) -> None:
        """Declare a widget whose value is a comma-separated subset of ``choices``.

        >>> dbutils.widgets.multiselect("layers", "bronze", ["bronze", "silver"])  # doctest: +SKIP
        """
        self._declare("multiselect", name, defaultValue, choices, label)

    def get(self, name: str) -> str:
        """Return the widget's current value, a string.

        >>> dbutils.widgets.get("scale")  # doctest: +SKIP
        'tiny'
        """
        widget = self._widgets.get(name)
        if widget is None:
            raise InputWidgetNotDefined(
                f"No input widget named {name!r} is defined. Declare it before reading it, "
                f'e.g. dbutils.widgets.text("{name}", "<default value>").'
            )
        if name in self._bound:
            value, source = self._bound[name], f"notebook parameter {name!r}"
        elif _widget_env_var(name) in os.environ:
            value, source = os.environ[_widget_env_var(name)], _widget_env_var(name)
        else:
            return widget.default
        _check_choices(widget, name, value, source)
        return value

    def getAll(self) -> dict[str, str]:  # noqa: N802 - Databricks' method name
        """Return every declared widget's value by name.

        >>> dbutils.widgets.getAll()  # doctest: +SKIP
        {'scale': 'tiny'}
        """
        return {name: self.get(name) for name in self._widgets}

    def getArgument(self, name: str, optional: str | None = None) -> str | None:  # noqa: N802
        """Deprecated Databricks form of ``get``: returns ``optional`` for an undeclared widget.

        >>> dbutils.widgets.getArgument("scale", "tiny")  # doctest: +SKIP
        'tiny'
        """
        if name not in self._widgets:
            return optional
        return self.get(name)

    def remove(self, name: str) -> None:
        """Remove one widget.

        >>> dbutils.widgets.remove("scale")  # doctest: +SKIP
        """
        if name not in self._widgets:
            raise InputWidgetNotDefined(
                f"Cannot remove input widget {name!r}: it is not defined. "
                f"Defined widgets: {sorted(self._widgets) or 'none'}."
            )
        del self._widgets[name]

    def removeAll(self) -> None:  # noqa: N802
        """Remove every widget; bound parameters stay, for widgets declared again.

        >>> dbutils.widgets.removeAll()  # doctest: +SKIP
        """
        self._widgets.clear()

    def bind_parameters(self, namespace: Mapping[str, Any]) -> None:
        """Take widget values from a notebook's parameters (its globals after the parameters cell).

        Scalar values (str, int, float, bool) under public names are kept and used by ``get``
        for widgets of the same name, whether declared before or after this call; other globals
        (modules, functions, frames) are ignored. Booleans become ``"true"``/``"false"``.

        >>> dbutils.widgets.bind_parameters({"scale": "small"})  # doctest: +SKIP
        """
        for key, value in namespace.items():
            if not isinstance(key, str) or key.startswith("_"):
                continue
            if isinstance(value, bool):
                self._bound[key] = "true" if value else "false"
            elif isinstance(value, (str, int, float)):
                self._bound[key] = str(value)

    def _declare(
        self,
        kind: str,
        name: str,
        default: str,
        choices: Iterable[str] | None,
        label: str | None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"A widget name must be a non-empty string, got {name!r}.")
        if not isinstance(default, str):
            raise TypeError(
                f"defaultValue of widget {name!r} must be a string, as on Databricks; "
                f"got {type(default).__name__} {default!r}. Write {str(default)!r} instead."
            )
        choice_tuple = None
        if choices is not None:
            if isinstance(choices, str):
                raise TypeError(
                    f"choices of widget {name!r} must be a list of strings, got the string "
                    f"{choices!r}; write [{choices!r}]."
                )
            choice_tuple = tuple(choices)
            if not choice_tuple or not all(isinstance(c, str) for c in choice_tuple):
                raise ValueError(
                    f"choices of widget {name!r} must be a non-empty list of strings, "
                    f"got {list(choice_tuple)!r}."
                )
        widget = _Widget(kind, default, choice_tuple, label)
        _check_choices(widget, name, default, "defaultValue")
        self._widgets[name] = widget


def _check_choices(widget: _Widget, name: str, value: str, source: str) -> None:
    if widget.kind == "dropdown":
        wanted = [value]
    elif widget.kind == "multiselect":
        wanted = [part.strip() for part in value.split(",") if part.strip()]
    else:
        return
    assert widget.choices is not None
    unknown = [v for v in wanted if v not in widget.choices]
    if unknown:
        raise ValueError(
            f"{source} {value!r} of {widget.kind} widget {name!r} is not among its choices "
            f"{list(widget.choices)!r}."
        )


def _widget_env_var(name: str) -> str:
    return WIDGET_ENV_PREFIX + re.sub(r"[^0-9A-Za-z]", "_", name).upper()


# --------------------------------------------------------------------------------------------
# dbutils.fs
# --------------------------------------------------------------------------------------------


class FileInfo(NamedTuple):
    """One entry of ``dbutils.fs.ls``; directories end with ``/`` in ``path`` and ``name``."""

    path: str
    name: str
    size: int
    modificationTime: int  # milliseconds since the epoch, as on Databricks


class CloudPathError(ValueError):
    """Raised for a cloud storage URI, which only a Databricks workspace can reach."""


class DirectoryNotEmptyError(OSError):
    """Raised by ``rm`` for a non-empty directory without ``recurse=True``."""


_CLOUD_SCHEMES = ("s3", "s3a", "s3n", "abfs", "abfss", "wasb", "wasbs", "adl", "gs")


@dataclass(frozen=True)
class _Location:
    local: Path  # where the bytes are on this machine
    uri: str  # how ls reports it: dbfs:/..., file:/...

    def child(self, name: str) -> _Location:
        return _Location(self.local / name, self.uri.rstrip("/") + "/" + name)


class FileSystem:
    """``dbutils.fs`` over the local disk.

    Paths may be local (``/tmp/x``, ``file:/tmp/x``, ``file:///tmp/x``) or ``dbfs:/...``,
    which maps to a local folder: ``dbfs_root`` if given, else ``$LAKEHOUSE_DBFS_ROOT``, else
    ``<cwd>/lake/dbfs`` (the last two looked up at each call). Cloud URIs (``s3://``,
    ``abfss://``, ``gs://``) are refused. On Databricks a path without a scheme means
    ``dbfs:/``; locally it is a local path, so portable notebooks spell ``dbfs:/`` out.

    >>> dbutils.fs.put("dbfs:/tmp/hello.txt", "hi", overwrite=True)  # doctest: +SKIP
    Wrote 2 bytes.
    True
    >>> [f.name for f in dbutils.fs.ls("dbfs:/tmp/")]  # doctest: +SKIP
    ['hello.txt']
    """

    def __init__(self, dbfs_root: str | os.PathLike[str] | None = None) -> None:
        self._dbfs_root = Path(dbfs_root) if dbfs_root is not None else None

    @property
    def dbfs_root(self) -> Path:
        """The local folder that ``dbfs:/`` maps to."""
        if self._dbfs_root is not None:
            return self._dbfs_root.absolute()
        configured = os.environ.get(DBFS_ROOT_ENV)
        if configured:
            return Path(configured).expanduser().absolute()
        return Path.cwd() / "lake" / "dbfs"

    def ls(self, path: str) -> list[FileInfo]:
        """List a directory (sorted by name), or return a one-item list for a file.

        >>> dbutils.fs.ls("dbfs:/tmp/")  # doctest: +SKIP
        [FileInfo(path='dbfs:/tmp/hello.txt', name='hello.txt', size=2, modificationTime=...)]
        """
        location = self._existing(path)
        if not location.local.is_dir():
            return [_file_info(location)]
        children = sorted(p.name for p in location.local.iterdir())
        return [_file_info(location.child(name)) for name in children]

    def mkdirs(self, path: str) -> bool:
        """Create a directory and its parents; fine if it exists.

        >>> dbutils.fs.mkdirs("dbfs:/tmp/landing")  # doctest: +SKIP
        True
        """
        location = self._locate(path)
        if location.local.exists() and not location.local.is_dir():
            raise FileExistsError(f"Cannot create directory {path!r}: a file is in the way.")
        location.local.mkdir(parents=True, exist_ok=True)
        return True

    def rm(self, path: str, recurse: bool = False) -> bool:
        """Delete a file or directory; False if it did not exist.

        >>> dbutils.fs.rm("dbfs:/tmp/landing", recurse=True)  # doctest: +SKIP
        True
        """
        local = self._locate(path).local
        if not local.exists() and not local.is_symlink():
            return False
        if local.is_symlink() or not local.is_dir():
            local.unlink()
            return True
        if local == Path(local.anchor):
            raise PermissionError(f"Refusing to delete the filesystem root {path!r}.")
        if any(local.iterdir()):
            if not recurse:
                raise DirectoryNotEmptyError(
                    f"{path!r} is a non-empty directory; "
                    f"use dbutils.fs.rm({path!r}, recurse=True) to delete it with its contents."
                )
            shutil.rmtree(local)
        else:
            local.rmdir()
        return True

    def cp(self, src: str, dst: str, recurse: bool = False) -> bool:
        """Copy a file, or with ``recurse=True`` a directory's contents; creates parents.

        >>> dbutils.fs.cp("dbfs:/tmp/hello.txt", "dbfs:/tmp/copy.txt")  # doctest: +SKIP
        True
        """
        source, target = self._existing(src).local, self._locate(dst).local
        if source.is_dir():
            self._check_directory_copy(src, dst, source, target, recurse, "cp")
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target = _into_directory(source, target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return True

    def mv(self, src: str, dst: str, recurse: bool = False) -> bool:
        """Move a file, or with ``recurse=True`` a directory; creates parents.

        >>> dbutils.fs.mv("dbfs:/tmp/copy.txt", "dbfs:/tmp/moved.txt")  # doctest: +SKIP
        True
        """
        source, target = self._existing(src).local, self._locate(dst).local
        if source.is_dir():
            self._check_directory_copy(src, dst, source, target, recurse, "mv")
            if target.exists():
                # Merge into an existing directory, the way cp does, then drop the source.
                shutil.copytree(source, target, dirs_exist_ok=True)
                shutil.rmtree(source)
                return True
        else:
            target = _into_directory(source, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
        return True

    def put(self, path: str, contents: str, overwrite: bool = False) -> bool:
        """Write a string to a file as UTF-8; creates parents.

        >>> dbutils.fs.put("dbfs:/tmp/hello.txt", "hi")  # doctest: +SKIP
        Wrote 2 bytes.
        True
        """
        local = self._locate(path).local
        if local.is_dir():
            raise IsADirectoryError(f"Cannot put {path!r}: it is a directory.")
        if local.exists() and not overwrite:
            raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it.")
        data = contents.encode("utf-8")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        # Databricks prints this line too; keeping it makes outputs match across engines.
        print(f"Wrote {len(data)} bytes.")
        return True

    def head(self, path: str, maxBytes: int = 65536) -> str:  # noqa: N803
        """Return the first ``maxBytes`` bytes of a file, decoded as UTF-8.

        >>> dbutils.fs.head("dbfs:/tmp/hello.txt")  # doctest: +SKIP
        'hi'
        """
        local = self._existing(path).local
        if local.is_dir():
            raise IsADirectoryError(f"Cannot head {path!r}: it is a directory; use ls.")
        if isinstance(maxBytes, bool) or not isinstance(maxBytes, int) or maxBytes < 1:
            raise ValueError(f"maxBytes must be a positive number of bytes, got {maxBytes!r}.")
        with local.open("rb") as handle:
            data = handle.read(maxBytes + 1)
        if len(data) > maxBytes:
            print(f"[Truncated to first {maxBytes} bytes]")
            data = data[:maxBytes]
        # A cut can split a multi-byte character; replace it rather than fail.
        return data.decode("utf-8", errors="replace")

    def _locate(self, path: str) -> _Location:
        if not isinstance(path, str) or not path:
            raise ValueError(f"A path must be a non-empty string, got {path!r}.")
        scheme_match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", path)
        scheme = scheme_match.group(1).lower() if scheme_match else ""
        # A one-letter "scheme" is a Windows drive (C:\...), i.e. a plain local path.
        if not scheme or len(scheme) == 1:
            local = Path(path).expanduser().absolute()
            return _Location(local, _file_uri(local))
        rest = path[len(scheme) + 1 :]
        if scheme in _CLOUD_SCHEMES:
            raise CloudPathError(
                f"Cannot reach {path!r} locally: cloud storage ({scheme}://) is only reachable "
                f"from a Databricks workspace. Use a dbfs:/ path (mapped to {self.dbfs_root}) "
                "or a local path instead."
            )
        if scheme == "dbfs":
            relative = rest.lstrip("/")
            if rest.startswith("//") or ".." in Path(relative).parts:
                raise ValueError(
                    f"Unsupported dbfs path {path!r}: write it as dbfs:/folder/file, "
                    "without a host or '..'."
                )
            return _Location(self.dbfs_root / relative, "dbfs:/" + relative)
        if scheme == "file":
            if rest.startswith("//"):
                host, _, rest = rest[2:].partition("/")
                if host not in ("", "localhost"):
                    raise ValueError(f"{path!r} names host {host!r}; only local files work.")
                rest = "/" + rest
            local = Path(rest).absolute()
            return _Location(local, _file_uri(local))
        raise ValueError(
            f"Unsupported path scheme {scheme!r} in {path!r}; "
            "use a local path, file:/..., or dbfs:/..."
        )

    def _existing(self, path: str) -> _Location:
        location = self._locate(path)
        if not location.local.exists():
            where = "" if location.uri.startswith("file:") else f" (local folder {location.local})"
            raise FileNotFoundError(f"{path!r}{where} does not exist.")
        return location

    @staticmethod
    def _check_directory_copy(
        src: str, dst: str, source: Path, target: Path, recurse: bool, verb: str
    ) -> None:
        if not recurse:
            raise IsADirectoryError(
                f"{src!r} is a directory; use dbutils.fs.{verb}({src!r}, {dst!r}, recurse=True)."
            )
        if target.exists() and not target.is_dir():
            raise FileExistsError(f"Cannot {verb} directory {src!r} onto the file {dst!r}.")
        if target.resolve().is_relative_to(source.resolve()):
            raise ValueError(f"Cannot {verb} {src!r} into itself ({dst!r}).")


def _into_directory(source: Path, target: Path) -> Path:
    # Like Hadoop's copy: a file copied onto an existing directory lands inside it.
    return target / source.name if target.is_dir() else target


def _file_uri(local: Path) -> str:
    return "file:" + local.as_posix()


def _file_info(location: _Location) -> FileInfo:
    stat = location.local.stat()
    modified = int(stat.st_mtime * 1000)
    if location.local.is_dir():
        uri = location.uri.rstrip("/") + "/"
        return FileInfo(uri, location.local.name + "/", 0, modified)
    return FileInfo(location.uri, location.local.name, stat.st_size, modified)


# --------------------------------------------------------------------------------------------
# dbutils.notebook and the dbutils object
# --------------------------------------------------------------------------------------------


class NotebookExit(Exception):  # noqa: N818 - named after the call that raises it
    """Raised by ``dbutils.notebook.exit``; ``value`` is the string a caller gets back."""

    def __init__(self, value: str) -> None:
        super().__init__(f"Notebook exited: {value}")
        self.value = value


class Notebook:
    """``dbutils.notebook``: only ``exit`` locally."""

    def exit(self, value: Any) -> None:
        """Stop the notebook with a result, which a runner can read from ``NotebookExit.value``.

        >>> dbutils.notebook.exit("ok")  # doctest: +SKIP
        Traceback (most recent call last):
        NotebookExit: Notebook exited: ok
        """
        raise NotebookExit(str(value))


class LocalDBUtils:
    """The subset of Databricks ``dbutils`` this course uses: ``widgets``, ``fs``, ``notebook``.

    >>> local = LocalDBUtils(dbfs_root="/tmp/lake/dbfs")  # doctest: +SKIP
    >>> local.fs.mkdirs("dbfs:/landing")  # doctest: +SKIP
    True
    """

    def __init__(self, dbfs_root: str | os.PathLike[str] | None = None) -> None:
        self.widgets = Widgets()
        self.fs = FileSystem(dbfs_root)
        self.notebook = Notebook()

    def __repr__(self) -> str:
        return "LocalDBUtils(widgets, fs, notebook)"


# The one a notebook gets from install(); its dbfs root follows the environment at each call.
dbutils = LocalDBUtils()


def get_dbutils(spark: Any = None) -> Any:
    """Return Databricks' own ``DBUtils(spark)`` where it exists, else the local ``dbutils``.

    ``pyspark.dbutils`` ships with the Databricks runtime and with Databricks Connect.

    >>> dbutils = get_dbutils(spark)  # doctest: +SKIP
    """
    try:
        from pyspark.dbutils import DBUtils  # type: ignore[import-not-found]
    except ImportError:
        return dbutils
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            # DBUtils needs a session to talk to; without one the local stand-in is all we have.
            return dbutils
    return DBUtils(spark)


def parameter_from_widget(name: str, literal: Any, text: str) -> Any:
    """A widget's string ``text`` as the type of the parameter's ``literal`` (its value in the
    ``parameters`` cell): ``"42"`` for ``seed = 42`` is 42, ``"false"`` for ``reset = True`` is
    False. Raises ValueError naming the parameter when the text does not parse.

    >>> parameter_from_widget("seed", 42, "7")
    7
    >>> parameter_from_widget("reset", False, "true")
    True
    """
    if isinstance(literal, bool):
        if text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
        raise ValueError(f"parameter {name!r} is a boolean: pass 'true' or 'false', not {text!r}")
    for kind, what in ((int, "a whole number"), (float, "a number")):
        if isinstance(literal, kind):
            try:
                return kind(text)
            except ValueError:
                raise ValueError(
                    f"parameter {name!r} is {what} (like {literal!r}), not {text!r}"
                ) from None
    if isinstance(literal, str):
        return text
    raise ValueError(
        f"parameter {name!r} is a {type(literal).__name__} in the notebook; a job parameter is "
        "a string, so only str, int, float and bool parameters can be fed"
    )


def apply_job_parameters(namespace: dict[str, Any], widgets: Any) -> dict[str, Any]:
    """Give each parameter of the notebook (a public str, int, float or bool global: what the
    ``parameters`` cell assigned) the value of the widget of the same name, if there is one.

    On Databricks a job's parameters (``base_parameters``, job-level ``parameters``) reach a
    notebook only as widgets; the ``parameters`` cell's literals are the defaults. Values are
    converted to the literal's type (:func:`parameter_from_widget`). Returns what changed.

    >>> apply_job_parameters(globals(), dbutils.widgets)  # doctest: +SKIP
    {'scale': 'small'}
    """
    changed: dict[str, Any] = {}
    for name, literal in list(namespace.items()):
        if name.startswith("_") or not isinstance(literal, (str, int, float, bool)):
            continue
        try:
            text = widgets.get(name)
        except Exception:  # noqa: BLE001 - Databricks raises a Py4J error: no such widget
            continue  # no widget of that name: the job did not pass it
        value = parameter_from_widget(name, literal, text)
        if value != literal or type(value) is not type(literal):
            namespace[name] = value
            changed[name] = value
    return changed


def install(namespace: dict[str, Any]) -> None:
    """Add ``display``, ``displayHTML`` and ``dbutils`` to a notebook's globals where missing.

    On Databricks they already exist and are never shadowed; there, each parameter the
    ``parameters`` cell assigned takes the value of the widget of its name when a job passed
    one (:func:`apply_job_parameters`), so call this right after the ``parameters`` cell
    (values read before, such as ``get_spark``'s ``scale``, keep their literal). When the local
    ``dbutils`` is installed, widget values are bound from ``namespace`` instead (see
    ``Widgets.bind_parameters``). It returns None, so a setup cell that ends with it shows the
    same (nothing) on every engine.

    >>> install(globals())  # doctest: +SKIP
    """
    for name, value in (("display", display), ("displayHTML", displayHTML)):
        namespace.setdefault(name, value)
    if "dbutils" not in namespace:
        chosen = get_dbutils(namespace.get("spark"))
        if chosen is dbutils:
            dbutils.widgets.bind_parameters(namespace)
        namespace["dbutils"] = chosen
    elif not isinstance(namespace["dbutils"], LocalDBUtils):
        # A Databricks notebook: the runtime's dbutils, and a job's parameters as its widgets.
        widgets = getattr(namespace["dbutils"], "widgets", None)
        if widgets is not None:
            apply_job_parameters(namespace, widgets)
