"""Rewriting rows with Spark: UPDATE and DELETE, and what MERGE shares with them: reading the
target files with each row's file and position, and writing the new rows from Spark's Python
workers as data and change-data files, removed again when the job or the commit fails."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.commit import (
    _SKIP,
    _commit,
    _enforce,
    _guard,
    _own_error,
    _remove_action,
    _session_transaction,
    _txn_action,
)
from lakehouse.engines.embedded.common import (
    COPY,
    DATA_OPS,
    DELETE,
    DELETE_OPS,
    FILE,
    HIT,
    INSERT,
    OLD,
    OP,
    ROW,
    UPDATE,
    UPDATE_OPS,
    _data_path,
    _now_ms,
    _quoted,
    _spark_schema,
)
from lakehouse.engines.embedded.errors import DeltaError
from lakehouse.engines.embedded.expressions import describe

if TYPE_CHECKING:
    from lakehouse.engines.embedded.table import EmbeddedDeltaTable


_RESULT_DDL = (
    "kind string, path string, size long, partition_values string, stats string, "
    "op string, rows long"
)
_CHANGE_DATA = "_change_data"


def _log_path(relative: str) -> str:
    """A file's relative path as the Delta log stores it: URI-encoded."""
    return quote(relative, safe="/=")


def _disk_key(root: str, log_path: str) -> str:
    return os.path.normcase(os.path.normpath(_data_path(root, log_path)))


def _uri_key(uri: str) -> str:
    """The local path of a ``file:`` URI as Spark reports it, comparable with _disk_key."""
    path = unquote(urlparse(uri).path)
    if re.match(r"^/[A-Za-z]:", path):  # file:/C:/... on Windows
        path = path[1:]
    return os.path.normcase(os.path.normpath(path))


# ------------------------------------------------------------------------------------------------
# Writing the rows of a rewrite (runs in Spark's Python workers)
# ------------------------------------------------------------------------------------------------
class _PartitionedFiles:
    """Parquet files under ``root/folder``, one per partition value, with Delta's
    ``add``/``cdc`` bookkeeping."""

    def __init__(
        self,
        root: str,
        folder: str,
        schema: pa.Schema,
        partition_columns: list[str],
        prefix: str,
        stats: bool,
    ):
        self.root = root
        self.folder = folder
        self.partition_columns = partition_columns
        self.file_schema = pa.schema([f for f in schema if f.name not in partition_columns])
        self.prefix = prefix
        self.stats = stats
        self.open: dict[tuple, tuple[pq.ParquetWriter, str, delta_log.StatsBuilder | None]] = {}

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if not self.partition_columns:
            self._append((), table)
            return
        keys = table.select(self.partition_columns).group_by(self.partition_columns).aggregate([])
        for key in keys.to_pylist():
            mask = None
            for column, value in key.items():
                cond = (
                    pc.is_null(table[column])
                    if value is None
                    else pc.equal(table[column], pa.scalar(value, table[column].type))
                )
                mask = cond if mask is None else pc.and_(mask, cond)
            self._append(tuple(key[c] for c in self.partition_columns), table.filter(mask))

    def _append(self, key: tuple, table: pa.Table) -> None:
        if key not in self.open:
            parts = [
                f"{c}={delta_log.partition_dir_value(v)}"
                for c, v in zip(self.partition_columns, key)
            ]
            name = f"{self.prefix}-{uuid.uuid4()}.c000.snappy.parquet"
            relative = "/".join(([self.folder] if self.folder else []) + parts + [name])
            full = os.path.join(self.root, relative)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            writer = pq.ParquetWriter(full, self.file_schema, compression="snappy")
            stats = delta_log.StatsBuilder(self.file_schema) if self.stats else None
            self.open[key] = (writer, relative, stats)
        writer, _, stats = self.open[key]
        data = table.select(self.file_schema.names)
        writer.write_table(data)
        if stats is not None:
            stats.update(data)

    def close(self) -> list[dict]:
        written = []
        for key, (writer, relative, stats) in self.open.items():
            writer.close()
            written.append(
                {
                    "path": relative,
                    "size": os.path.getsize(os.path.join(self.root, relative)),
                    "partition_values": json.dumps(
                        {
                            c: delta_log.partition_string(v)
                            for c, v in zip(self.partition_columns, key)
                        }
                    ),
                    "stats": stats.to_json() if stats is not None else None,
                }
            )
        self.open = {}
        return written

    def discard(self) -> None:
        for writer, relative, _ in self.open.values():
            try:
                writer.close()
            finally:
                Path(self.root, relative).unlink(missing_ok=True)
        self.open = {}


@dataclass
class _RewriteTask:
    """``mapInArrow`` function: writes one Spark partition's rows into data files (and, with
    the change data feed on, change-data files) and yields what it wrote and row counts."""

    root: str
    schema: pa.Schema  # the table's columns, nullable, Delta's physical types
    partition_columns: list[str]
    change_data_feed: bool
    prefix: str

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        names = self.schema.names
        old_names = [f"{OLD}{i}" for i in range(len(names))]
        cdc_schema = pa.schema(list(self.schema) + [pa.field("_change_type", pa.string())])
        data = _PartitionedFiles(
            self.root, "", self.schema, self.partition_columns, f"part-{self.prefix}", True
        )
        cdc = _PartitionedFiles(
            self.root, _CHANGE_DATA, cdc_schema, self.partition_columns, f"cdc-{self.prefix}", False
        )
        counts: dict[str, int] = {}
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                table = pa.Table.from_batches([batch])
                op = table[OP]
                for item in pc.value_counts(op).to_pylist():
                    counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
                new = table.select(names).cast(self.schema)
                data.write(new.filter(pc.is_in(op, pa.array(DATA_OPS))))
                if not self.change_data_feed:
                    continue
                is_update = pc.is_in(op, pa.array(UPDATE_OPS))
                old = table.select(old_names).rename_columns(names).cast(self.schema)
                for rows, kind in (
                    (new.filter(pc.equal(op, INSERT)), "insert"),
                    (old.filter(is_update), "update_preimage"),
                    (new.filter(is_update), "update_postimage"),
                    (new.filter(pc.is_in(op, pa.array(DELETE_OPS))), "delete"),
                ):
                    if rows.num_rows:
                        cdc.write(
                            rows.append_column(
                                "_change_type", pa.array([kind] * rows.num_rows, pa.string())
                            )
                        )
            files = [("add", f) for f in data.close()] + [("cdc", f) for f in cdc.close()]
        except BaseException:
            data.discard()
            cdc.discard()
            raise
        rows = [{"kind": kind, **f, "op": None, "rows": None} for kind, f in files] + [
            {
                "kind": "count",
                "path": None,
                "size": None,
                "partition_values": None,
                "stats": None,
                "op": op,
                "rows": n,
            }
            for op, n in counts.items()
        ]
        yield pa.RecordBatch.from_pylist(rows, schema=_RESULT_SCHEMA)


_RESULT_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("partition_values", pa.string()),
        ("stats", pa.string()),
        ("op", pa.string()),
        ("rows", pa.int64()),
    ]
)


@dataclass
class _Written:
    adds: list[dict] = field(default_factory=list)
    cdcs: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, *ops: str) -> int:
        return sum(self.counts.get(op, 0) for op in ops)

    def actions(self, now: int) -> list[dict]:
        adds = [
            {
                "add": {
                    "path": _log_path(f["path"]),
                    "partitionValues": json.loads(f["partition_values"]),
                    "size": f["size"],
                    "modificationTime": now,
                    "dataChange": True,
                    "stats": f["stats"],
                }
            }
            for f in self.adds
        ]
        cdcs = [
            {
                "cdc": {
                    "path": _log_path(f["path"]),
                    "partitionValues": json.loads(f["partition_values"]),
                    "size": f["size"],
                    "dataChange": False,
                }
            }
            for f in self.cdcs
        ]
        return adds + cdcs

    def discard(self, root: str) -> None:
        for f in self.adds + self.cdcs:
            Path(root, f["path"]).unlink(missing_ok=True)


def _write_rows(
    frame: DataFrame, root: str, schema: pa.Schema, partition_columns: list[str], cdf: bool
) -> _Written:
    """Run ``frame`` (table columns, OP, and OLD columns when ``cdf``) through the writer
    tasks; on failure remove whatever the tasks wrote."""
    prefix = uuid.uuid4().hex[:12]
    task = _RewriteTask(root, delta_log.nullable(schema), partition_columns, cdf, prefix)
    try:
        rows = frame.mapInArrow(task, _RESULT_DDL).collect()
    except Exception as exc:
        _discard_prefix(root, prefix)
        own = _own_error(exc)
        if own is not None:
            raise own from None
        raise
    written = _Written()
    for row in rows:
        if row["kind"] == "count":
            written.counts[row["op"]] = written.counts.get(row["op"], 0) + row["rows"]
        else:
            (written.adds if row["kind"] == "add" else written.cdcs).append(row.asDict())
    return written


def _discard_prefix(root: str, prefix: str) -> None:
    """Remove files a failed rewrite left behind (their names carry its prefix)."""
    for folder, _, names in os.walk(root):
        if "_delta_log" in folder:
            continue
        for name in names:
            if prefix in name:
                Path(folder, name).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# Reading the target
# ------------------------------------------------------------------------------------------------
def _target_frame(spark, snap: delta_log.Snapshot, files: list[delta_log.DataFile]) -> DataFrame:
    """The rows of ``files`` through Spark's own Parquet reader, with each row's file and its
    position in the file (to find the files a change touches and rows matched twice)."""
    struct = _spark_schema(snap.arrow_schema)
    names = [f.name for f in struct.fields]
    hidden = [F.col("_metadata.file_path").alias(FILE), F.col("_metadata.row_index").alias(ROW)]
    if not files:
        return spark.createDataFrame([], struct).select(
            *[F.col(_quoted(n)) for n in names],
            F.lit(None).cast("string").alias(FILE),
            F.lit(None).cast("long").alias(ROW),
        )
    partitions = snap.partition_columns
    if not partitions or all(_folders_say(snap.root, f, partitions) for f in files):
        # Spark reads the partition values from the folder names, which hold them exactly.
        paths = [_data_path(snap.root, f.path) for f in files]
        frame = spark.read.schema(struct).option("basePath", snap.root).parquet(*paths)
        return frame.select(*[F.col(_quoted(n)) for n in names], *hidden)
    # Otherwise the log's partition values are the truth: one scan per partition value.
    data = StructType([f for f in struct.fields if f.name not in partitions])
    groups: dict[tuple, list[delta_log.DataFile]] = {}
    for f in files:
        key = tuple(delta_log.partition_string(f.partition_values.get(c)) for c in partitions)
        groups.setdefault(key, []).append(f)
    frames = []
    for key, group in groups.items():
        values = dict(zip(partitions, key))
        scan = spark.read.schema(data).parquet(*[_data_path(snap.root, f.path) for f in group])
        frames.append(
            scan.select(
                *[
                    F.lit(values[f.name]).cast(f.dataType).alias(f.name)
                    if f.name in values
                    else F.col(_quoted(f.name))
                    for f in struct.fields
                ],
                *hidden,
            )
        )
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.unionByName(other)
    return frame


def _folders_say(root: str, f: delta_log.DataFile, partitions: list[str]) -> bool:
    """Whether Spark, decoding ``f``'s folder names, reads exactly the log's partition values."""
    segments = unquote(f.path).split("/")[:-1]
    if len(segments) != len(partitions):
        return False
    for column, segment in zip(partitions, segments):
        name, _, raw = segment.partition("=")
        if name != column:
            return False
        value = delta_log.partition_string(f.partition_values.get(column))
        decoded = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), raw)
        if (value is None) != (raw == "__HIVE_DEFAULT_PARTITION__"):
            return False
        if value is not None and decoded != value:
            return False
    return True


def _files_of(snap: delta_log.Snapshot, uris: list[str]) -> list[delta_log.DataFile]:
    wanted = {_uri_key(u) for u in uris if u}
    found = [f for f in snap.files if _disk_key(snap.root, f.path) in wanted]
    if len(found) != len(wanted):
        # Never let a change silently skip rows because a file name did not map back.
        raise DeltaError(
            f"Internal error: {len(wanted) - len(found)} of the {len(wanted)} files Spark read "
            f"from the Delta table at {snap.root!r} do not match the log's file list. The "
            "table is unchanged; please report this with the table's folder layout."
        )
    return found


def _resolve_column(name: str, columns: list[str], alias: str | None) -> str | None:
    """A ``set``/``values`` key as a table column (Spark resolves names case-insensitively)."""
    key = name.strip()
    if key.startswith("`") and key.endswith("`"):
        key = key[1:-1].replace("``", "`")
    lowered = {c.lower(): c for c in columns}
    if key.lower() in lowered:
        return lowered[key.lower()]
    if alias and key.lower().startswith(alias.lower() + "."):
        rest = key[len(alias) + 1 :].strip("`")
        return lowered.get(rest.lower())
    return None


@contextmanager
def _foreign_columns_explained():
    """Spark cannot resolve a Column taken from another DataFrame (``deltaTable.toDF()["id"]``)
    against the fresh read of the table a change runs on; say what to write instead."""
    try:
        yield
    except Exception as exc:
        text = str(exc)
        if "MISSING_ATTRIBUTES" in text or "CANNOT_RESOLVE_DATAFRAME_COLUMN" in text:
            raise DeltaError(
                "A condition or assignment uses a column taken from another DataFrame (such as "
                "deltaTable.toDF()['id']); the embedded engine reads the table afresh for each "
                "change, so name the columns instead: alias the table and the source "
                "(deltaTable.alias('t'), updates.alias('s')) and write \"t.id = s.id\" or "
                f"F.col('t.id') == F.col('s.id'). Spark said: {text.splitlines()[0]}"
            ) from None
        raise


# ------------------------------------------------------------------------------------------------
# Update and delete
# ------------------------------------------------------------------------------------------------
class _Rewrite:
    """UPDATE or DELETE: find the files with matching rows, rewrite them, commit."""

    def __init__(
        self, table: EmbeddedDeltaTable, operation: str, condition, text, assignments=None
    ):
        self.table = table
        self.operation = operation
        self.condition = condition
        self.text = text
        self.assignments = assignments or {}

    def run(self) -> None:
        with _foreign_columns_explained():
            self._run()

    def _run(self) -> None:
        table = self.table
        spark, root = table._spark, table._location
        started = time.time()
        handle = delta_log.open_table(root)
        snap = delta_log.snapshot(root)
        txn = _session_transaction(spark, handle)
        if txn == _SKIP:
            return
        guard = _guard(root, handle, snap, self.operation, removes=True)
        names = snap.arrow_schema.names
        struct = _spark_schema(snap.arrow_schema)
        types = {f.name: f.dataType for f in struct.fields}
        sets = {}
        for key, value in self.assignments.items():
            column = _resolve_column(key, names, table._alias)
            if column is None:
                raise DeltaError(
                    f"Cannot resolve {key!r} in UPDATE's set: the table's columns are {names}. "
                    "(Nested fields cannot be set one by one on the embedded engine; set the "
                    "whole struct column.)"
                )
            sets[column] = value
        parameters = {
            "predicate": json.dumps([describe(self.text)]) if self.text is not None else "[]"
        }

        if self.operation == "DELETE" and self.condition is None:
            self._delete_all(snap, handle, parameters, started, txn)
            return
        touched = snap.files
        if self.condition is not None:
            frame = self._aliased(_target_frame(spark, snap, snap.files))
            hits = frame.filter(self.condition).select(FILE).distinct().collect()
            touched = _files_of(snap, [r[0] for r in hits])
        if not touched:
            return  # nothing matches: delta-spark commits nothing either
        frame = self._aliased(_target_frame(spark, snap, touched))
        hit = (
            F.coalesce(self.condition, F.lit(False)) if self.condition is not None else F.lit(True)
        )
        frame = frame.withColumn(HIT, hit)
        is_hit = F.col(HIT)
        if self.operation == "UPDATE":
            values = [
                (
                    F.when(is_hit, sets[n].cast(types[n])).otherwise(F.col(_quoted(n)))
                    if n in sets
                    else F.col(_quoted(n))
                ).alias(n)
                for n in names
            ]
            op = F.when(is_hit, F.lit(UPDATE)).otherwise(F.lit(COPY))
        else:
            values = [F.col(_quoted(n)).alias(n) for n in names]
            op = F.when(is_hit, F.lit(DELETE)).otherwise(F.lit(COPY))
        old = (
            [F.col(_quoted(n)).alias(f"{OLD}{i}") for i, n in enumerate(names)]
            if guard.change_data_feed
            else []
        )
        out = _enforce(frame.select(*values, op.alias(OP), *old), guard, names)
        written = _write_rows(
            out, root, snap.arrow_schema, snap.partition_columns, guard.change_data_feed
        )
        changed = written.count(UPDATE, DELETE)
        if not changed:
            written.discard(root)
            return
        now = _now_ms()
        actions = [_remove_action(f, now) for f in touched] + written.actions(now)
        actions += _txn_action(txn)
        metrics = {
            "numRemovedFiles": len(touched),
            "numAddedFiles": len(written.adds),
            "numAddedChangeFiles": len(written.cdcs),
            "numCopiedRows": written.count(COPY),
            "executionTimeMs": int((time.time() - started) * 1000),
        }
        if self.operation == "UPDATE":
            metrics["numUpdatedRows"] = written.count(UPDATE)
        else:
            metrics["numDeletedRows"] = written.count(DELETE)
            metrics["numRemovedBytes"] = sum(f.size for f in touched)
            metrics["numAddedBytes"] = sum(f["size"] for f in written.adds)
        try:
            _commit(root, snap.version, actions, self.operation, parameters, metrics)
        except BaseException:
            written.discard(root)
            raise

    def _delete_all(self, snap, handle, parameters, started, txn=None) -> None:
        if not snap.files:
            return
        rows = 0
        for f in snap.files:
            if f.stats is None or f.stats.get("numRecords") is None:
                rows = None
                break
            rows += f.stats["numRecords"]
        if rows is None:
            rows = self.table._spark.read.format("delta").load(snap.root).count()
        now = _now_ms()
        # No change-data files: readers of the feed take a removed file's rows as deletes.
        _commit(
            snap.root,
            snap.version,
            [_remove_action(f, now) for f in snap.files] + _txn_action(txn),
            "DELETE",
            parameters,
            {
                "numRemovedFiles": len(snap.files),
                "numDeletedRows": rows,
                "numAddedFiles": 0,
                "numAddedChangeFiles": 0,
                "numCopiedRows": 0,
                "numRemovedBytes": sum(f.size for f in snap.files),
                "numAddedBytes": 0,
                "executionTimeMs": int((time.time() - started) * 1000),
            },
        )

    def _aliased(self, frame: DataFrame) -> DataFrame:
        return frame.alias(self.table._alias) if self.table._alias else frame
