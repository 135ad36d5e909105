"""OPTIMIZE on the embedded engine: compaction or Z-order through delta-rs, optionally in the
partitions a ``where`` filter names, returning delta-spark's metrics row."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.commit import _Z_ORDER_BY
from lakehouse.engines.embedded.errors import DeltaError

if TYPE_CHECKING:
    from lakehouse.engines.embedded.table import EmbeddedDeltaTable


_FILE_STATS = "struct<min:long,max:long,avg:double,totalFiles:long,totalSize:long>"
_OPTIMIZE_DDL = (
    f"path string, metrics struct<numFilesAdded:long, numFilesRemoved:long, "
    f"filesAdded:{_FILE_STATS}, filesRemoved:{_FILE_STATS}, partitionsOptimized:long, "
    "zOrderStats:struct<strategyName:string,inputCubeFiles:long,outputCubeFiles:long>, "
    "numBatches:long, totalConsideredFiles:long, totalFilesSkipped:long, "
    "preserveInsertionOrder:boolean>"
)

_CONJUNCT = re.compile(r"\s+and\s+", re.IGNORECASE)
_COMPARISON = re.compile(r"^\s*`?(\w+)`?\s*(=|==|!=|<>|>=|<=|>|<)\s*(.+?)\s*$")
_MEMBERSHIP = re.compile(r"^\s*`?(\w+)`?\s+(not\s+in|in)\s*\((.*)\)\s*$", re.IGNORECASE)


def _literal(text: str) -> str:
    text = text.strip()
    m = re.fullmatch(r"(?:date|timestamp)?\s*'((?:[^']|'')*)'", text, re.IGNORECASE)
    return m.group(1).replace("''", "'") if m else text


def _partition_filters(predicate: str, partitions: list[str]) -> list[tuple[str, str, Any]]:
    filters: list[tuple[str, str, Any]] = []
    lowered = {p.lower(): p for p in partitions}
    for conjunct in _CONJUNCT.split(predicate.strip()):
        m = _MEMBERSHIP.match(conjunct)
        if m and m.group(1).lower() in lowered:
            values = [_literal(v) for v in re.findall(r"'(?:[^']|'')*'|[^,\s][^,]*", m.group(3))]
            op = "not in" if "not" in m.group(2).lower() else "in"
            filters.append((lowered[m.group(1).lower()], op, values))
            continue
        m = _COMPARISON.match(conjunct)
        if m and m.group(1).lower() in lowered:
            op = {"==": "=", "<>": "!="}.get(m.group(2), m.group(2))
            filters.append((lowered[m.group(1).lower()], op, _literal(m.group(3))))
            continue
        raise DeltaError(
            f"optimize().where({predicate!r}): only partition columns may be referenced "
            f"({partitions or 'none: the table is not partitioned'}), each compared with a "
            "literal and joined by AND, e.g. \"date = '2021-11-18'\"."
        )
    return filters


def _z_order_by(columns: list[str]):
    """Commit properties that record OPTIMIZE's Z-order columns, which delta-spark lists in the
    commit's ``operationParameters`` as ``zOrderBy`` (``[]`` for a compaction); delta-rs keeps
    them beside the parameters and :func:`_history_row` folds them in."""
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata={_Z_ORDER_BY: json.dumps(columns)})


class EmbeddedOptimizeBuilder:
    """OPTIMIZE through delta-rs: compaction or Z-order, optionally in some partitions."""

    def __init__(self, table: EmbeddedDeltaTable):
        self._table = table
        self._filters: list[tuple[str, str, Any]] = []

    def where(self, partitionFilter: str) -> EmbeddedOptimizeBuilder:  # noqa: N803
        """Limit the optimize to partitions matching ``partitionFilter``."""
        if not isinstance(partitionFilter, str):
            raise TypeError(f"partitionFilter must be a string, not {type(partitionFilter)}.")
        partitions = delta_log.snapshot(self._table._location).partition_columns
        self._filters = self._filters + _partition_filters(partitionFilter, partitions)
        return self

    def executeCompaction(self) -> DataFrame:  # noqa: N802
        """Compact small files; returns the OPTIMIZE metrics."""
        table = delta_log.open_table(self._table._location)
        metrics = table.optimize.compact(
            partition_filters=self._filters or None, commit_properties=_z_order_by([])
        )
        return self._metrics(metrics, None)

    def executeZOrderBy(self, *cols) -> DataFrame:  # noqa: N802
        """Rewrite the files Z-ordered by ``cols``; returns the OPTIMIZE metrics."""
        if len(cols) == 1 and isinstance(cols[0], (list, tuple)):
            cols = tuple(cols[0])
        for c in cols:
            if type(c) is not str:
                raise TypeError(f"Z-order column must be str. Found {c} with type {type(c)}")
        if not cols:
            raise DeltaError("executeZOrderBy needs at least one column.")
        snap = delta_log.snapshot(self._table._location)
        lowered = {n.lower(): n for n in snap.arrow_schema.names}
        resolved = []
        for c in cols:
            if c.lower() not in lowered:
                raise DeltaError(
                    f"Z-order column {c!r} is not a column of the table: {snap.arrow_schema.names}."
                )
            if lowered[c.lower()] in snap.partition_columns:
                raise DeltaError(
                    f"{c} is a partition column. Z-Ordering can only be performed on data columns"
                )
            resolved.append(lowered[c.lower()])
        table = delta_log.open_table(self._table._location)
        metrics = table.optimize.z_order(
            resolved,
            partition_filters=self._filters or None,
            commit_properties=_z_order_by(resolved),
        )
        return self._metrics(metrics, resolved)

    def _metrics(self, metrics: dict, zorder: list[str] | None) -> DataFrame:
        def files(value) -> tuple:
            stats = json.loads(value) if isinstance(value, str) else (value or {})
            return (
                stats.get("min"),
                stats.get("max"),
                float(stats["avg"]) if stats.get("avg") is not None else None,
                stats.get("totalFiles"),
                stats.get("totalSize"),
            )

        row = (
            "file:" + self._table._location,
            (
                metrics.get("numFilesAdded", 0),
                metrics.get("numFilesRemoved", 0),
                files(metrics.get("filesAdded")),
                files(metrics.get("filesRemoved")),
                metrics.get("partitionsOptimized", 0),
                ("all", metrics.get("numFilesRemoved", 0), metrics.get("numFilesAdded", 0))
                if zorder
                else None,
                metrics.get("numBatches", 0),
                metrics.get("totalConsideredFiles", 0),
                metrics.get("totalFilesSkipped", 0),
                bool(metrics.get("preserveInsertionOrder", True)),
            ),
        )
        self._table._refresh_catalog()
        return self._table._spark.createDataFrame([row], _OPTIMIZE_DDL)


__all__ = ["EmbeddedOptimizeBuilder"]
