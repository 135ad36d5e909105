"""What the modules of the embedded ``DeltaTable`` share: the hidden columns and row operations
of a rewrite, and small helpers for names, Spark schemas, data file paths, times and errors."""

from __future__ import annotations

import os
import time
from urllib.parse import unquote

import pyarrow as pa
from pyspark.sql.types import CharType, DataType, StringType, StructType, VarcharType

from lakehouse.engines.embedded.errors import UnsupportedOperation

# Hidden columns of a rewrite; the prefix keeps them clear of any learner's column names.
_P = "__lakehouse_"
FILE, ROW, OP, CLAUSE, HIT = f"{_P}file", f"{_P}row", f"{_P}op", f"{_P}clause", f"{_P}hit"
TARGET, SOURCE, OLD = f"{_P}target", f"{_P}source", f"{_P}old_"

# What a rewritten row becomes. Data files keep COPY, INSERT and the updates.
COPY, INSERT, DROP = "copy", "insert", "drop"
UPDATE, DELETE = "update", "delete"  # matched clauses
SOURCE_UPDATE, SOURCE_DELETE = "update_by_source", "delete_by_source"  # not matched by source
DATA_OPS = [COPY, INSERT, UPDATE, SOURCE_UPDATE]
UPDATE_OPS = [UPDATE, SOURCE_UPDATE]
DELETE_OPS = [DELETE, SOURCE_DELETE]


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _spark_schema(schema: pa.Schema) -> StructType:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(pa.schema([f.remove_metadata() for f in schema]))


def _data_path(root: str, log_path: str) -> str:
    """Where a file named in the log (a URI-encoded relative path) lives on disk."""
    return os.path.join(root, unquote(log_path))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _unsupported(what: str, alternative: str) -> UnsupportedOperation:
    return UnsupportedOperation(f"{what} is not available on the embedded engine. {alternative}")


def _storable(data_type: DataType) -> DataType:
    if isinstance(data_type, (CharType, VarcharType)):
        return StringType()
    return data_type
