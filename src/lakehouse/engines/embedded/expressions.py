"""Conditions and assignments of the embedded DeltaTable, as Spark Columns.

Learners write Spark SQL: strings such as ``"t.id = s.id"`` and Columns such as
``F.col("v") + 1``. The embedded engine never translates them into another SQL dialect: both
become Spark Columns that Spark itself evaluates when it computes the rows a merge, update or
delete writes, so every function, cast and null rule is Spark's own. delta-rs only commits
the files.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column
from pyspark.sql import functions as F


def is_column(value) -> bool:
    """A Spark Column, classic or Spark Connect."""
    return isinstance(value, Column)


def condition_column(condition, argname: str = "'condition'") -> Column | None:
    """A condition (SQL string or Column) as a Column; None stays None."""
    if condition is None:
        return None
    if is_column(condition):
        return condition
    if type(condition) is str:
        if not condition.strip():
            raise ValueError(f'{argname} is an empty string: give a SQL condition, e.g. "id = 1".')
        return F.expr(condition)
    raise TypeError(
        f"{argname} must be a Spark SQL Column or a string (expression in SQL syntax), found to "
        f"be of type {type(condition)}"
    )


def assignment_columns(mapping: Mapping | None, argname: str) -> dict[str, Column]:
    """A ``set``/``values`` dict (column name -> SQL string or Column) as Columns."""
    if mapping is None:
        raise ValueError(f"{argname} cannot be None")
    if type(mapping) is not dict:
        raise TypeError(f"{argname} must be a dict, found to be {type(mapping)}")
    columns = {}
    for name, value in mapping.items():
        if type(name) is not str:
            raise TypeError(
                f"Keys of dict in {argname} must contain only strings with column names, found "
                f"'{name}' of type '{type(name)}'"
            )
        if is_column(value):
            columns[name] = value
        elif type(value) is str:
            columns[name] = F.expr(value)
        else:
            raise TypeError(
                f"Values of dict in {argname} must contain only Spark SQL Columns or strings "
                f"(expressions in SQL syntax) as values, found '{value}' of type '{type(value)}'. "
                'For a constant, pass F.lit(value) or its SQL text (e.g. "\'active\'" or "1").'
            )
    return columns


def describe(value) -> str:
    """The text of a condition or assignment for the table's history."""
    if value is None:
        return "true"
    if is_column(value):
        text = str(value)
        if text.startswith("Column<'") and text.endswith("'>"):
            return text[len("Column<'") : -2]
        return text
    return str(value)


__all__ = ["assignment_columns", "condition_column", "describe", "is_column"]
