"""``DataFrameWriter`` on the embedded engine: the Delta behaviours Spark's Python data source
API cannot express by itself.

Spark lets a Python data source be written in append or overwrite mode only, without
``partitionBy``, and it passes no location for ``saveAsTable``. For ``format("delta")`` this
wrapper remembers the writer's settings and turns them into what the source understands: the
default ``errorifexists`` and ``ignore`` modes, partition columns as an option, and a table
name as its folder in the lake. Every other format is left to Spark untouched.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from lakehouse.embedded import log as delta_log
from lakehouse.embedded.catalog import catalog_for
from lakehouse.embedded.errors import DeltaError

_STATE = "_lakehouse_writer_state"
_PATCHED = "_lakehouse_patched"


def _state(writer) -> dict[str, Any]:
    state = writer.__dict__.get(_STATE)
    if state is None:
        state = {"format": None, "mode": None, "partition_by": None, "options": {}}
        writer.__dict__[_STATE] = state
    return state


def _is_delta(state: dict[str, Any]) -> bool:
    return (state["format"] or "").lower() == "delta"


def install() -> None:
    """Wrap the classic and the Spark Connect DataFrameWriter (once per process)."""
    from pyspark.sql.readwriter import DataFrameWriter

    _patch(DataFrameWriter)
    try:
        from pyspark.sql.connect.readwriter import DataFrameWriter as ConnectWriter
    except ImportError:  # Spark Connect's client dependencies are not installed
        return
    _patch(ConnectWriter)


def _patch(cls) -> None:
    if getattr(cls, _PATCHED, False):
        return
    original = {
        name: getattr(cls, name)
        for name in ("format", "mode", "option", "options", "partitionBy", "save", "saveAsTable")
    }

    @functools.wraps(original["format"])
    def format_(self, source):
        _state(self)["format"] = source
        return original["format"](self, source)

    @functools.wraps(original["mode"])
    def mode(self, saveMode):  # noqa: N803 (Spark's name)
        if saveMode is not None:
            _state(self)["mode"] = saveMode
            if saveMode.lower() in ("error", "errorifexists", "default", "ignore"):
                return self  # checked at save time for Delta; applied then for other formats
        return original["mode"](self, saveMode)

    @functools.wraps(original["option"])
    def option(self, key, value):
        _state(self)["options"][key] = value
        return original["option"](self, key, value)

    @functools.wraps(original["options"])
    def options(self, **opts):
        _state(self)["options"].update(opts)
        return original["options"](self, **opts)

    @functools.wraps(original["partitionBy"])
    def partitionBy(self, *cols):  # noqa: N802
        if len(cols) == 1 and isinstance(cols[0], (list, tuple)):
            cols = tuple(cols[0])
        _state(self)["partition_by"] = list(cols)
        return self  # forwarded at save time for formats other than Delta

    def _prepare(self, fmt, mode_, partition_by, opts) -> dict[str, Any]:
        state = _state(self)
        if fmt is not None:
            format_(self, fmt)
        if mode_ is not None:
            mode(self, mode_)
        if partition_by is not None:
            partitionBy(self, *([partition_by] if isinstance(partition_by, str) else partition_by))
        if opts:
            options(self, **opts)
        return state

    def _forward_non_delta(self, state) -> None:
        if state["partition_by"]:
            original["partitionBy"](self, *state["partition_by"])
        if state["mode"] and state["mode"].lower() in (
            "error",
            "errorifexists",
            "default",
            "ignore",
        ):
            original["mode"](self, state["mode"])

    @functools.wraps(original["save"])
    def save(self, path=None, format=None, mode=None, partitionBy=None, **opts):  # noqa: A002,N803
        state = _prepare(self, format, mode, partitionBy, opts)
        if not _is_delta(state) or catalog_for(self._spark) is None:
            _forward_non_delta(self, state)
            return original["save"](self, path)
        location = path or state["options"].get("path")
        if location is None:
            raise DeltaError("df.write.format('delta').save() needs a path: .save('/a/folder').")
        location = delta_log.local_path(location)
        if not _resolve_mode(self, state, location, f"the Delta table at {location!r}"):
            return None
        result = original["save"](self, location)
        catalog_for(self._spark).refresh_location(location)
        return result

    @functools.wraps(original["saveAsTable"])
    def saveAsTable(self, name, format=None, mode=None, partitionBy=None, **opts):  # noqa: A002,N802,N803
        state = _prepare(self, format, mode, partitionBy, opts)
        catalog = catalog_for(self._spark)
        # As on Databricks, a table written without a format is a Delta table.
        if catalog is None or not (_is_delta(state) or state["format"] is None):
            _forward_non_delta(self, state)
            return original["saveAsTable"](self, name)
        if state["format"] is None:
            format_(self, "delta")
        ref = catalog.resolve(name)
        if not _resolve_mode(self, state, ref.location, f"table {ref.name}"):
            return None
        result = original["save"](self, ref.location)
        catalog.register(ref.name)
        return result

    for name, fn in (
        ("format", format_),
        ("mode", mode),
        ("option", option),
        ("options", options),
        ("partitionBy", partitionBy),
        ("save", save),
        ("saveAsTable", saveAsTable),
    ):
        setattr(cls, name, fn)
    setattr(cls, _PATCHED, True)


def _resolve_mode(writer, state: dict[str, Any], location: str, label: str) -> bool:
    """Apply Delta's save modes; False means there is nothing to write (``ignore``)."""
    mode = (state["mode"] or "errorifexists").lower()
    exists = delta_log.is_delta_table(location)
    if mode in ("error", "errorifexists", "default"):
        if exists:
            raise DeltaError(
                f"Cannot write to {label}: it already exists and the save mode is "
                "'errorifexists' (the default). Use .mode('append') to add rows or "
                ".mode('overwrite') to replace them."
            )
        mode = "append"
    elif mode == "ignore":
        if exists:
            return False
        mode = "append"
    elif mode not in ("append", "overwrite"):
        raise DeltaError(
            f"Unknown save mode {state['mode']!r} for {label}: use append, overwrite, "
            "errorifexists or ignore."
        )
    _raw_mode(writer, mode)
    if state["partition_by"]:
        _raw_option(writer, delta_log.PARTITION_OPTION, json.dumps(state["partition_by"]))
    return True


def _raw_mode(writer, mode: str) -> None:
    # Bypass the wrapper: it would record the mode again.
    for klass in type(writer).__mro__:
        fn = klass.__dict__.get("mode")
        if fn is not None and getattr(fn, "__wrapped__", None) is not None:
            fn.__wrapped__(writer, mode)
            return
    writer.mode(mode)


def _raw_option(writer, key: str, value: str) -> None:
    for klass in type(writer).__mro__:
        fn = klass.__dict__.get("option")
        if fn is not None and getattr(fn, "__wrapped__", None) is not None:
            fn.__wrapped__(writer, key, value)
            return
    writer.option(key, value)
