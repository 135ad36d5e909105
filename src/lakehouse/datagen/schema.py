"""Column declarations for every generated dataset, free of Spark.

Each source module declares its datasets once, as a :class:`DatasetSpec`; the pyarrow schema, the
simple ``{column: type}`` mapping and the DDL string are all derived from that one declaration, so a
later Spark module can build its ``StructType`` from :attr:`DatasetSpec.column_types` without a
second copy of the schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

# Spark SQL type names used in column declarations.
SIMPLE_TYPES = ("string", "int", "bigint", "double", "boolean", "date", "timestamp")
_DECIMAL = re.compile(r"decimal\((\d+),(\d+)\)")


def arrow_type(type_name: str) -> pa.DataType:
    """The pyarrow type for a Spark SQL type name such as ``"decimal(12,2)"``."""
    simple = {
        "string": pa.string(),
        "int": pa.int32(),
        "bigint": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    if type_name in simple:
        return simple[type_name]
    match = _DECIMAL.fullmatch(type_name)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    raise ValueError(
        f"unknown column type {type_name!r}: use one of {', '.join(SIMPLE_TYPES)} or decimal(p,s)"
    )


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = False
    description: str = ""
    added_in_schema_change: bool = False

    def __post_init__(self) -> None:
        arrow_type(self.type)  # fail at import time on a typo


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset the generator writes: where, in which format, with which columns.

    ``key`` is the business key of a row (composite keys are joined with ``:`` in the manifest).
    ``defect_rules`` says, for each defect class injected into this dataset, how it shows in the
    files: the rule the manifest's counts were made by, and the one a test recounts with.
    """

    name: str
    source: str
    path: str
    file_format: str  # "json" (JSON lines), "csv" (with header) or "parquet"
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    description: str
    defect_rules: dict[str, str] = field(default_factory=dict)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def column_types(self) -> dict[str, str]:
        """Logical types: what each value means (``decimal(12,2)``, ``timestamp``...)."""
        return {c.name: c.type for c in self.columns}

    @property
    def raw_column_types(self) -> dict[str, str]:
        """Types as literally stored in the files, for a Bronze read with an explicit schema.

        CSV holds only text; JSON holds decimals, dates and timestamps as strings (numbers and
        booleans natively); Parquet stores the logical types.
        """
        if self.file_format == "csv":
            return {c.name: "string" for c in self.columns}
        if self.file_format == "json":
            textual = ("date", "timestamp")
            return {
                c.name: "string" if c.type in textual or c.type.startswith("decimal") else c.type
                for c in self.columns
            }
        return self.column_types

    def ddl(self, *, raw: bool = False) -> str:
        """A Spark DDL schema string: ``"order_id string, order_ts timestamp, ..."``."""
        types = self.raw_column_types if raw else self.column_types
        return ", ".join(f"{name} {type_name}" for name, type_name in types.items())

    @property
    def arrow_schema(self) -> pa.Schema:
        """Every field nullable: "required" is the data contract that the injected defects
        break, so the files must be able to hold the nulls."""
        return pa.schema(
            [pa.field(c.name, arrow_type(c.type), nullable=True) for c in self.columns],
            metadata={"dataset": self.name},
        )
