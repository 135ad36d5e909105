"""Readers and writers on the embedded engine: the Delta behaviours Spark's Python data source
API cannot express by itself.

Spark lets a Python data source be written in append or overwrite mode only, without
``partitionBy``; it passes no location for a table named in ``saveAsTable``, ``toTable`` or
``readStream.table``, and it refuses time travel options on a table read by name. For Delta
these wrappers remember the reader's or writer's settings and turn them into what the source
understands: the default ``errorifexists`` and ``ignore`` modes, partition columns as an option,
and a table name as its folder in the lake. Every other format is left to Spark untouched, and
nothing changes on the delta-spark and Databricks engines (``catalog_for`` is None there).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.catalog import catalog_for
from lakehouse.engines.embedded.errors import DeltaError

_STATE = "_lakehouse_state"
_PATCHED = "_lakehouse_patched"
_NAMED_READ_OPTIONS = {"versionasof", "timestampasof", "readchangefeed"}
_DEFERRED_MODES = ("error", "errorifexists", "default", "ignore")


def _session_of(obj):
    for attr in ("_spark", "_session", "_client"):
        value = obj.__dict__.get(attr)
        if value is not None:
            return value
    return None


def _state(obj) -> dict[str, Any]:
    state = obj.__dict__.get(_STATE)
    if state is None:
        state = {"format": None, "mode": None, "partition_by": None, "options": {}}
        obj.__dict__[_STATE] = state
    return state


def _is_delta(state: dict[str, Any], default_delta: bool = False) -> bool:
    fmt = state["format"]
    return (fmt is None and default_delta) or (fmt or "").lower() == "delta"


def install() -> None:
    """Wrap the classic and the Spark Connect readers and writers (once per process)."""
    from pyspark.sql.readwriter import DataFrameReader, DataFrameWriter
    from pyspark.sql.streaming.readwriter import DataStreamReader, DataStreamWriter

    classes = [(DataFrameReader, DataFrameWriter, DataStreamReader, DataStreamWriter)]
    try:
        from pyspark.sql.connect.readwriter import DataFrameReader as ConnectReader
        from pyspark.sql.connect.readwriter import DataFrameWriter as ConnectWriter
        from pyspark.sql.connect.streaming.readwriter import DataStreamReader as ConnectSReader
        from pyspark.sql.connect.streaming.readwriter import DataStreamWriter as ConnectSWriter

        classes.append((ConnectReader, ConnectWriter, ConnectSReader, ConnectSWriter))
    except ImportError:  # Spark Connect's client dependencies are not installed
        pass
    _patch_session_table()
    for reader, writer, stream_reader, stream_writer in classes:
        _patch_reader(reader, streaming=False)
        _patch_reader(stream_reader, streaming=True)
        _patch_writer(writer)
        _patch_stream_writer(stream_writer)


def session_classes() -> list[type]:
    """The SparkSession classes to patch: classic, and Spark Connect's when it is installed."""
    from pyspark.sql.session import SparkSession

    classes = [SparkSession]
    try:
        from pyspark.sql.connect.session import SparkSession as ConnectSession

        classes.append(ConnectSession)
    except ImportError:  # Spark Connect's client dependencies are not installed
        pass
    return classes


def _patch_session_table() -> None:
    """``spark.table(name)`` re-registers a table whose Delta schema changed since the session
    registered it (e.g. a stream added a column with mergeSchema)."""
    for cls in session_classes():
        if cls.__dict__.get(_PATCHED):
            continue
        original = cls.table

        @functools.wraps(original)
        def table(self, tableName, __original=original):  # noqa: N803 (Spark's name)
            catalog = catalog_for(self)
            if catalog is not None and isinstance(tableName, str):
                catalog.refresh(tableName)
            return __original(self, tableName)

        cls.table = table
        setattr(cls, _PATCHED, True)


def _record_settings(cls, original: dict[str, Any]) -> None:
    """Wrap format/option/options so the object remembers them (and still applies them)."""

    @functools.wraps(original["format"])
    def format_(self, source):
        _state(self)["format"] = source
        return original["format"](self, source)

    @functools.wraps(original["option"])
    def option(self, key, value):
        _state(self)["options"][key] = value
        return original["option"](self, key, value)

    @functools.wraps(original["options"])
    def options(self, **opts):
        _state(self)["options"].update(opts)
        return original["options"](self, **opts)

    cls.format, cls.option, cls.options = format_, option, options


def _originals(cls, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(cls, name) for name in names}


# ------------------------------------------------------------------------------------------------
# Readers
# ------------------------------------------------------------------------------------------------
def _patch_reader(cls, *, streaming: bool) -> None:
    if cls.__dict__.get(_PATCHED):
        return
    original = _originals(cls, ("format", "option", "options", "table"))
    _record_settings(cls, original)

    @functools.wraps(original["table"])
    def table(self, tableName):  # noqa: N803 (Spark's name)
        catalog = catalog_for(_session_of(self))
        if catalog is None:
            return original["table"](self, tableName)
        keys = {k.lower() for k in _state(self)["options"]}
        if not streaming and not keys & _NAMED_READ_OPTIONS:
            catalog.refresh(tableName)
            return original["table"](self, tableName)
        # A stream over a named table, or time travel / the change feed of one: read its
        # folder, as Spark does for a Delta table it can resolve itself.
        ref = catalog.require(tableName)
        original["format"](self, "delta")
        return self.load(ref.location)

    cls.table = table
    setattr(cls, _PATCHED, True)


# ------------------------------------------------------------------------------------------------
# Batch writer
# ------------------------------------------------------------------------------------------------
def _patch_writer(cls) -> None:
    if cls.__dict__.get(_PATCHED):
        return
    original = _originals(
        cls, ("format", "mode", "option", "options", "partitionBy", "save", "saveAsTable")
    )
    _record_settings(cls, original)

    @functools.wraps(original["mode"])
    def mode(self, saveMode):  # noqa: N803
        if saveMode is not None:
            _state(self)["mode"] = saveMode
            if saveMode.lower() in _DEFERRED_MODES:
                return self  # applied at save time: Delta checks it itself
        return original["mode"](self, saveMode)

    @functools.wraps(original["partitionBy"])
    def partitionBy(self, *cols):  # noqa: N802
        _state(self)["partition_by"] = _columns(cols)
        return self  # applied at save time

    def prepare(self, fmt, mode_, partition_by, opts) -> dict[str, Any]:
        if fmt is not None:
            self.format(fmt)
        if mode_ is not None:
            self.mode(mode_)
        if partition_by is not None:
            self.partitionBy(partition_by)
        if opts:
            self.options(**opts)
        return _state(self)

    def forward(self, state) -> None:
        """Hand the deferred settings to Spark for a format other than Delta."""
        if state["partition_by"]:
            original["partitionBy"](self, *state["partition_by"])
        if state["mode"] and state["mode"].lower() in _DEFERRED_MODES:
            original["mode"](self, state["mode"])

    def delta_settings(self, state, location: str, label: str) -> bool:
        effective = _resolve_mode(state["mode"], location, label)
        if effective is None:
            return False
        original["mode"](self, effective)
        if state["partition_by"]:
            original["option"](self, delta_log.PARTITION_OPTION, json.dumps(state["partition_by"]))
        return True

    @functools.wraps(original["save"])
    def save(self, path=None, format=None, mode=None, partitionBy=None, **opts):  # noqa: A002,N803
        state = prepare(self, format, mode, partitionBy, opts)
        catalog = catalog_for(_session_of(self))
        if catalog is None or not _is_delta(state):
            forward(self, state)
            return original["save"](self, path)
        location = path or state["options"].get("path")
        if location is None:
            raise DeltaError("df.write.format('delta').save() needs a path: .save('/a/folder').")
        location = delta_log.local_path(location)
        if not delta_settings(self, state, location, f"the Delta table at {location!r}"):
            return None
        result = original["save"](self, location)
        catalog.refresh_location(location)
        return result

    @functools.wraps(original["saveAsTable"])
    def saveAsTable(self, name, format=None, mode=None, partitionBy=None, **opts):  # noqa: A002,N802,N803
        state = prepare(self, format, mode, partitionBy, opts)
        catalog = catalog_for(_session_of(self))
        # As on Databricks, a table written without a format is a Delta table.
        if catalog is None or not _is_delta(state, default_delta=True):
            forward(self, state)
            return original["saveAsTable"](self, name)
        original["format"](self, "delta")
        ref = catalog.resolve(name)
        if not delta_settings(self, state, ref.location, f"table {ref.name}"):
            return None
        result = original["save"](self, ref.location)
        catalog.register(ref.name)
        return result

    cls.mode, cls.partitionBy, cls.save, cls.saveAsTable = mode, partitionBy, save, saveAsTable
    setattr(cls, _PATCHED, True)


def _columns(cols: tuple) -> list[str]:
    if len(cols) == 1 and isinstance(cols[0], (list, tuple)):
        return list(cols[0])
    return list(cols)


def _resolve_mode(mode: str | None, location: str, label: str) -> str | None:
    """Delta's save modes as append/overwrite; None means nothing to write (``ignore``)."""
    mode = (mode or "errorifexists").lower()
    exists = delta_log.is_delta_table(location)
    if mode in ("error", "errorifexists", "default"):
        if exists:
            raise DeltaError(
                f"Cannot write to {label}: it already exists and the save mode is "
                "'errorifexists' (the default). Use .mode('append') to add rows or "
                ".mode('overwrite') to replace them."
            )
        return "append"
    if mode == "ignore":
        return None if exists else "append"
    if mode in ("append", "overwrite"):
        return mode
    raise DeltaError(
        f"Unknown save mode {mode!r} for {label}: use append, overwrite, errorifexists or ignore."
    )


# ------------------------------------------------------------------------------------------------
# Streaming writer
# ------------------------------------------------------------------------------------------------
def _patch_stream_writer(cls) -> None:
    if cls.__dict__.get(_PATCHED):
        return
    original = _originals(
        cls,
        (
            "format",
            "option",
            "options",
            "partitionBy",
            "start",
            "toTable",
            "outputMode",
            "queryName",
        ),
    )
    _record_settings(cls, original)

    @functools.wraps(original["partitionBy"])
    def partitionBy(self, *cols):  # noqa: N802
        _state(self)["partition_by"] = _columns(cols)
        return self

    def forward(self, state) -> None:
        if state["partition_by"]:
            original["partitionBy"](self, *state["partition_by"])

    def delta_options(self, state) -> None:
        if state["partition_by"]:
            original["option"](self, delta_log.PARTITION_OPTION, json.dumps(state["partition_by"]))

    @functools.wraps(original["start"])
    def start(
        self,
        path=None,
        format=None,
        outputMode=None,
        partitionBy=None,
        queryName=None,  # noqa: A002,N803
        **opts,
    ):
        if format is not None:
            self.format(format)
        if partitionBy is not None:
            self.partitionBy(partitionBy)
        if opts:
            self.options(**opts)
        state = _state(self)
        catalog = catalog_for(_session_of(self))
        if catalog is None or not _is_delta(state):
            forward(self, state)
            return original["start"](self, path, outputMode=outputMode, queryName=queryName)
        delta_options(self, state)
        location = delta_log.local_path(path) if path else None
        return original["start"](self, location, outputMode=outputMode, queryName=queryName)

    @functools.wraps(original["toTable"])
    def toTable(
        self,
        tableName,
        format=None,
        outputMode=None,
        partitionBy=None,  # noqa: A002,N802,N803
        queryName=None,
        **opts,
    ):
        if format is not None:
            self.format(format)
        if partitionBy is not None:
            self.partitionBy(partitionBy)
        if opts:
            self.options(**opts)
        state = _state(self)
        session = _session_of(self)
        catalog = catalog_for(session)
        if catalog is None or not _is_delta(state, default_delta=True):
            forward(self, state)
            return original["toTable"](self, tableName, outputMode=outputMode, queryName=queryName)
        original["format"](self, "delta")
        ref = catalog.resolve(tableName)
        if not delta_log.is_delta_table(ref.location):
            # Create the table before the first micro-batch, so the name resolves at once.
            empty = session.createDataFrame([], _stream_schema(self, session))
            writer = empty.write.format("delta").mode("append")
            if state["partition_by"]:
                writer = writer.partitionBy(*state["partition_by"])
            writer.save(ref.location)
        catalog.register(ref.name)
        delta_options(self, state)
        return original["start"](self, ref.location, outputMode=outputMode, queryName=queryName)

    cls.partitionBy, cls.start, cls.toTable = partitionBy, start, toTable
    setattr(cls, _PATCHED, True)


def _stream_schema(writer, session):
    df = writer.__dict__.get("_df")
    if df is not None and hasattr(df, "schema"):
        return df.schema
    from pyspark.sql.connect.dataframe import DataFrame

    return DataFrame(writer._write_stream._child, session).schema
