"""Spark's ``format("delta")`` on the embedded engine: a Python data source over delta-rs.

Spark tasks read and write the Parquet data files themselves (Arrow batches end to end); delta-rs
only lists the files of a snapshot and commits the files the tasks wrote, as one transaction.
"""

from __future__ import annotations

import math
import os
import uuid
import zipimport
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    DataSourceStreamArrowWriter,
    DataSourceStreamReader,
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    InputPartition,
    LessThan,
    LessThanOrEqual,
    WriterCommitMessage,
)
from pyspark.sql.types import StructType

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded import writes
from lakehouse.engines.embedded.errors import DeltaError


def _keep_static_archive_listings() -> None:
    """pyspark's Python worker calls ``importlib.invalidate_caches()`` for every task and every
    planning call, which makes each zip archive on ``sys.path`` (pyspark.zip, py4j, jars)
    re-read its directory: about 0.1 s per call, most of a small read's time. Those archives
    never change while Spark runs, so their listings are kept; other archives still refresh."""
    original = zipimport.zipimporter.invalidate_caches
    if getattr(original, "_lakehouse", False):
        return

    def invalidate_caches(self):
        name = os.path.basename(getattr(self, "archive", ""))
        if name.startswith(("pyspark", "py4j")) or name.endswith(".jar"):
            return
        original(self)

    invalidate_caches._lakehouse = True
    zipimport.zipimporter.invalidate_caches = invalidate_caches


_keep_static_archive_listings()


CDF_COLUMNS = [
    pa.field("_change_type", pa.string()),
    pa.field("_commit_version", pa.int64()),
    pa.field("_commit_timestamp", pa.timestamp("us", tz="UTC")),
]
_TARGET_SPLIT_BYTES = 128 * 1024 * 1024
_BATCH_ROWS = 65_536
_ROW_GROUP_ROWS = 262_144


def _truthy(value: str | None) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


class DeltaDataSource(DataSource):
    """``spark.read.format("delta")`` and friends, for the embedded engine.

    A subclass bound to a catalog table sets ``location``: Spark gives a data source no options
    for a table it looks up by name, so the class itself carries where the table lives.
    """

    location: str | None = None
    table_name: str | None = None

    @classmethod
    def name(cls) -> str:
        return "delta"

    # -- resolution ---------------------------------------------------------------------------
    @property
    def path(self) -> str:
        if self.location:
            return self.location
        path = self.options.get("path")
        if not path:
            raise DeltaError(
                "format('delta') needs a location: pass it to .load(path) / .save(path) / "
                ".start(path), or use a table name with spark.table(name) / .saveAsTable(name)."
            )
        return delta_log.local_path(path)

    def _snapshot(self) -> delta_log.Snapshot:
        opts = self.options
        version = opts.get("versionAsOf")
        timestamp = opts.get("timestampAsOf")
        if version is not None and timestamp is not None:
            raise DeltaError(
                f"Table {self._label()}: give either versionAsOf or timestampAsOf, not both."
            )
        return delta_log.snapshot(self.path, version=version, timestamp=timestamp)

    def _label(self) -> str:
        return self.table_name or f"at {self.path!r}"

    # -- schema -------------------------------------------------------------------------------
    def schema(self) -> StructType:
        from pyspark.sql.pandas.types import from_arrow_schema

        snap = self._snapshot() if not _truthy(self.options.get("readChangeFeed")) else None
        if snap is None:
            snap = delta_log.snapshot(self.path)
            arrow = pa.schema(list(snap.arrow_schema) + CDF_COLUMNS)
        else:
            arrow = snap.arrow_schema
        return from_arrow_schema(arrow)

    # -- batch --------------------------------------------------------------------------------
    def reader(self, schema: StructType) -> DataSourceReader:
        if _truthy(self.options.get("readChangeFeed")):
            return ChangeFeedReader(self.path, dict(self.options), schema)
        return SnapshotReader(self._snapshot(), schema)

    def writer(self, schema: StructType, overwrite: bool) -> DeltaWriter:
        return DeltaWriter(self.path, dict(self.options), schema, overwrite)

    # -- streaming ----------------------------------------------------------------------------
    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return DeltaStreamReader(self.path, dict(self.options), schema)

    def streamWriter(self, schema: StructType, overwrite: bool) -> DeltaStreamWriter:
        return DeltaStreamWriter(self.path, dict(self.options), schema, overwrite)


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
@dataclass
class FilesPartition(InputPartition):
    files: list[delta_log.DataFile]


def _split(files: list[delta_log.DataFile]) -> list[FilesPartition]:
    """Bin-pack files into read tasks of about 128 MB, at least one per core when there are
    enough files, so a table of many small files does not pay one task per file."""
    if not files:
        return [FilesPartition([])]
    cores = os.cpu_count() or 2
    total = sum(f.size for f in files)
    target = max(min(_TARGET_SPLIT_BYTES, math.ceil(total / cores)), 1)
    parts: list[FilesPartition] = []
    current: list[delta_log.DataFile] = []
    size = 0
    for f in sorted(files, key=lambda f: f.path):
        if current and size + f.size > target:
            parts.append(FilesPartition(current))
            current, size = [], 0
        current.append(f)
        size += f.size
    parts.append(FilesPartition(current))
    return parts


def _read_files(
    root: str, files: list[delta_log.DataFile], schema: pa.Schema, partition_columns: list[str]
) -> Iterator[pa.RecordBatch]:
    data_columns = [f.name for f in schema if f.name not in partition_columns]
    for data_file in files:
        parquet = pq.ParquetFile(delta_log.data_file_path(root, data_file.path))
        present = set(parquet.schema_arrow.names)
        wanted = [c for c in data_columns if c in present]
        for batch in parquet.iter_batches(
            batch_size=_BATCH_ROWS, columns=wanted, use_threads=False
        ):
            yield _conform(batch, schema, data_file.partition_values)


def _conform(
    batch: pa.RecordBatch, schema: pa.Schema, partition_values: dict[str, str | None]
) -> pa.RecordBatch:
    """Give a batch read from one file the table's columns, in order and with the table's
    types: columns added later by schema evolution read as nulls, partition values as constants."""
    n = batch.num_rows
    arrays = []
    for f in schema:
        if f.name in partition_values:
            arrays.append(delta_log.partition_array(partition_values[f.name], f.type, n))
        else:
            idx = batch.schema.get_field_index(f.name)
            if idx < 0:
                arrays.append(pa.nulls(n, f.type))
            else:
                col = batch.column(idx)
                arrays.append(col if col.type == f.type else col.cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _spark_to_arrow(schema: StructType) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = (
        to_arrow_schema(schema, timestamp_utc=True)
        if _accepts_utc_flag()
        else to_arrow_schema(schema)
    )
    return delta_log.normalize_schema(arrow)


def _accepts_utc_flag() -> bool:
    import inspect

    from pyspark.sql.pandas.types import to_arrow_schema

    return "timestamp_utc" in inspect.signature(to_arrow_schema).parameters


class SnapshotReader(DataSourceReader):
    """Reads the data files of one snapshot.

    It does not implement ``pushFilters``: Spark 4.1 keeps the reader planned during filter
    pushdown on the data source instance that every query of a DataFrame shares, so after
    ``df.where(f).count()`` a later ``df.count()`` would read only the files ``f`` kept (silently
    wrong). Upstream Spark scopes that state to the scan; until the pinned Spark does, every read
    scans the whole snapshot and Spark filters the rows. :func:`prune_files` is the pruning a
    ``pushFilters`` would apply then.
    """

    def __init__(self, snap: delta_log.Snapshot, schema: StructType):
        self.root = snap.root
        self.files = snap.files
        self.partition_columns = snap.partition_columns
        self.arrow_schema = _spark_to_arrow(schema)

    def partitions(self):
        return _split(self.files)

    def read(self, partition: FilesPartition):
        yield from _read_files(
            self.root, partition.files, self.arrow_schema, self.partition_columns
        )


_PRUNABLE = (EqualTo, In, GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual)


def prune_files(
    files: list[delta_log.DataFile], filters, partition_columns: list[str]
) -> list[delta_log.DataFile]:
    """The files that may hold rows passing every filter (partition values, min/max stats)."""
    for flt in filters:
        files = [f for f in files if _may_match(f, flt, partition_columns)]
    return files


def _may_match(f: delta_log.DataFile, flt, partition_columns: list[str]) -> bool:
    """False only when the file's partition value or min/max statistics prove that no row of
    the file can satisfy the filter."""
    attribute = getattr(flt, "attribute", None)  # Not/And/Or carry no single column
    if not isinstance(flt, _PRUNABLE) or attribute is None or len(attribute) != 1:
        return True
    column = attribute[0]
    values = [v for v in flt.value if v is not None] if isinstance(flt, In) else [flt.value]
    if not values:
        return not isinstance(flt, In)
    sample = values[0]
    if sample is None or isinstance(sample, (datetime, bool)):
        # Timestamp literals arrive without a reliable zone: never prune on them.
        return True
    try:
        if column in partition_columns:
            raw = f.partition_values.get(column)
            if raw is None:
                return False  # a null partition value satisfies no comparison
            lo = hi = _coerce(raw, sample)
        else:
            stats = f.stats or {}
            if column not in stats.get("minValues", {}) or column not in stats.get("maxValues", {}):
                return True
            lo = _coerce(stats["minValues"][column], sample)
            hi = _coerce(stats["maxValues"][column], sample)
            if isinstance(hi, str) and len(hi) >= 32:
                hi = "\U0010ffff"  # a truncated maximum is no upper bound
        if isinstance(flt, (EqualTo, In)):
            return any(lo <= v <= hi for v in values)
        if isinstance(flt, GreaterThan):
            return hi > sample
        if isinstance(flt, GreaterThanOrEqual):
            return hi >= sample
        if isinstance(flt, LessThan):
            return lo < sample
        return lo <= sample
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return True


def _coerce(raw: Any, like: Any) -> Any:
    """Turn a stats or partition value into the Python type of the filter's literal."""
    if like is None or isinstance(raw, type(like)) and not isinstance(like, datetime):
        return raw
    if isinstance(like, bool):
        return str(raw).lower() == "true"
    if isinstance(like, int):
        return int(raw)
    if isinstance(like, float):
        return float(raw)
    if isinstance(like, Decimal):
        return Decimal(str(raw))
    if isinstance(like, datetime):
        value = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value if like.tzinfo else value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(like, date):
        return date.fromisoformat(str(raw)[:10])
    if isinstance(like, str):
        return str(raw)
    raise TypeError(type(like))


@dataclass
class CdfPartition(InputPartition):
    starting_version: int
    ending_version: int | None


class ChangeFeedReader(DataSourceReader):
    """``option("readChangeFeed", "true")``: rows with ``_change_type``, ``_commit_version`` and
    ``_commit_timestamp`` from delta-rs's change data feed."""

    def __init__(self, path: str, options: dict[str, str], schema: StructType):
        self.path = path
        self.arrow_schema = _spark_to_arrow(schema)
        self.start, self.end = delta_log.cdf_range(path, options)

    def partitions(self):
        return [CdfPartition(self.start, self.end)]

    def read(self, partition: CdfPartition):
        yield from delta_log.read_cdf(
            self.path, partition.starting_version, partition.ending_version, self.arrow_schema
        )


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------
@dataclass
class FilesWritten(WriterCommitMessage):
    files: list[dict] = field(default_factory=list)


class _FileWriter:
    """Writes the Arrow batches one task receives into Parquet files under the table root,
    one file per partition value, and records what Delta's ``add`` actions need."""

    def __init__(
        self,
        root: str,
        schema: pa.Schema,
        partition_columns: list[str],
        max_records_per_file: int = 0,
    ):
        self.root = root
        self.schema = schema
        self.partition_columns = partition_columns
        self.data_schema = pa.schema([f for f in schema if f.name not in partition_columns])
        self.open: dict[tuple, tuple[pq.ParquetWriter, str, delta_log.StatsBuilder]] = {}
        # Spark's maxRecordsPerFile: a file that reaches it is closed and the next one begun.
        self.max_records = max_records_per_file
        self.records: dict[tuple, int] = {}
        self.finished: list[dict] = []
        # Spark hands over batches of 10,000 rows; written one by one they become tiny row
        # groups that make every later read slower. Buffer them into row groups of this size.
        self.pending: dict[tuple, list[pa.Table]] = {}

    def write(self, batches: Iterator[pa.RecordBatch]) -> FilesWritten:
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                batch = pa.Table.from_batches([batch]).cast(self.schema, safe=False)
                if not self.partition_columns:
                    self._append((), batch)
                    continue
                keys = (
                    batch.select(self.partition_columns)
                    .group_by(self.partition_columns)
                    .aggregate([])
                )
                for key in keys.to_pylist():
                    mask = None
                    for col, value in key.items():
                        cond = (
                            pc.is_null(batch[col])
                            if value is None
                            else pc.equal(batch[col], pa.scalar(value, batch[col].type))
                        )
                        mask = cond if mask is None else pc.and_(mask, cond)
                    self._append(tuple(key[c] for c in self.partition_columns), batch.filter(mask))
            return FilesWritten(self._close())
        except BaseException:
            self._close(discard=True)
            raise

    def _append(self, key: tuple, table: pa.Table) -> None:
        if self.max_records <= 0:
            self._append_to_file(key, table)
            return
        while table.num_rows:
            room = self.max_records - self.records.get(key, 0)
            if room <= 0:
                self._finish(key)
                continue
            self._append_to_file(key, table.slice(0, room))
            self.records[key] = self.records.get(key, 0) + min(room, table.num_rows)
            table = table.slice(room)

    def _append_to_file(self, key: tuple, table: pa.Table) -> None:
        if key not in self.open:
            parts = [
                f"{c}={delta_log.partition_dir_value(v)}"
                for c, v in zip(self.partition_columns, key)
            ]
            rel = "/".join(parts + [f"part-{uuid.uuid4()}.c000.snappy.parquet"])
            full = os.path.join(self.root, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            writer = pq.ParquetWriter(full, self.data_schema, compression="snappy")
            self.open[key] = (writer, rel, delta_log.StatsBuilder(self.data_schema))
        writer, _, stats = self.open[key]
        data = table.select(self.data_schema.names)
        stats.update(data)
        pending = self.pending.setdefault(key, [])
        pending.append(data)
        if sum(t.num_rows for t in pending) >= _ROW_GROUP_ROWS:
            self._flush(key)

    def _flush(self, key: tuple) -> None:
        pending = self.pending.pop(key, [])
        if pending:
            self.open[key][0].write_table(pa.concat_tables(pending))

    def _finish(self, key: tuple) -> None:
        """Close the open file of ``key`` (it reached maxRecordsPerFile)."""
        self._flush(key)
        writer, rel, stats = self.open.pop(key)
        writer.close()
        self.finished.append(self._added(key, rel, stats))
        self.records[key] = 0

    def _added(self, key: tuple, rel: str, stats: delta_log.StatsBuilder) -> dict:
        return {
            "path": rel,
            "size": os.path.getsize(os.path.join(self.root, rel)),
            "partition_values": {
                c: delta_log.partition_string(v) for c, v in zip(self.partition_columns, key)
            },
            "stats": stats.to_json(),
        }

    def _close(self, discard: bool = False) -> list[dict]:
        written = self.finished
        for key, (writer, rel, stats) in self.open.items():
            if not discard:
                self._flush(key)
            writer.close()
            if discard:
                Path(os.path.join(self.root, rel)).unlink(missing_ok=True)
                continue
            written.append(self._added(key, rel, stats))
        if discard:
            for f in written:
                Path(os.path.join(self.root, f["path"])).unlink(missing_ok=True)
            written = []
        self.open, self.pending, self.records, self.finished = {}, {}, {}, []
        return written


class DeltaWriter(DataSourceArrowWriter):
    """Batch writes: tasks write files, the driver commits them in one Delta transaction."""

    def __init__(self, path: str, options: dict[str, str], schema: StructType, overwrite: bool):
        self.path = path
        self.options = {k.lower(): v for k, v in options.items()}
        self.overwrite = overwrite
        self.arrow_schema = delta_log.nullable(_spark_to_arrow(schema))
        self.plan = writes.plan_write(path, self.arrow_schema, self.options, overwrite)

    def write(self, iterator):
        return _FileWriter(
            self.path,
            self.plan.file_schema,
            self.plan.partition_columns,
            _max_records_per_file(self.options),
        ).write(iterator)

    def commit(self, messages):
        files = [f for m in messages if m is not None for f in m.files]
        app_id = self.options.get("txnappid")
        txn_version = self.options.get("txnversion")
        if (app_id is None) != (txn_version is None):
            _discard(self.path, files)
            raise DeltaError(
                "Idempotent writes need both options: .option('txnAppId', <stable id>) and "
                ".option('txnVersion', <increasing number, e.g. the foreachBatch batch id>)."
            )
        writes.commit_files(
            self.path,
            files,
            self.plan,
            overwrite=self.overwrite,
            app_id=app_id,
            app_version=int(txn_version) if txn_version is not None else None,
            user_metadata=self.options.get("usermetadata"),
        )

    def abort(self, messages):
        _discard(self.path, [f for m in messages if m is not None for f in m.files])


def _max_records_per_file(options: dict[str, str]) -> int:
    """The ``maxRecordsPerFile`` write option (options already lower-cased); 0 means no limit."""
    raw = options.get("maxrecordsperfile")
    if raw is None:
        return 0
    try:
        return max(int(str(raw).strip()), 0)
    except ValueError:
        raise DeltaError(
            f"maxRecordsPerFile must be a whole number of rows, not {raw!r}: e.g. "
            ".option('maxRecordsPerFile', 100000)."
        ) from None


def _discard(root: str, files: list[dict]) -> None:
    for f in files:
        Path(os.path.join(root, f["path"])).unlink(missing_ok=True)


class DeltaStreamWriter(DataSourceStreamArrowWriter):
    """A streaming sink that is exactly-once across restarts: each micro-batch commits with a
    Delta application transaction (query id, batch id); a batch already committed is skipped."""

    def __init__(self, path: str, options: dict[str, str], schema: StructType, overwrite: bool):
        self.path = path
        self.options = {k.lower(): v for k, v in options.items()}
        self.overwrite = overwrite
        checkpoint = self.options.get("checkpointlocation")
        if not checkpoint:
            raise DeltaError(
                f"Streaming into the Delta table at {path!r} needs a checkpoint: add "
                ".option('checkpointLocation', <a folder of its own>) to the writeStream."
            )
        self.app_id = writes.query_id(delta_log.local_path(checkpoint))
        self.arrow_schema = delta_log.nullable(_spark_to_arrow(schema))
        self.plan = writes.plan_write(path, self.arrow_schema, self.options, overwrite)

    def write(self, iterator):
        return _FileWriter(
            self.path,
            self.plan.file_schema,
            self.plan.partition_columns,
            _max_records_per_file(self.options),
        ).write(iterator)

    def commit(self, messages, batchId):  # noqa: N803 (Spark's name)
        files = [f for m in messages if m is not None for f in m.files]
        writes.commit_files(
            self.path,
            files,
            self.plan,
            overwrite=self.overwrite,
            app_id=self.app_id,
            app_version=batchId,
        )

    def abort(self, messages, batchId):  # noqa: N803
        _discard(self.path, [f for m in messages if m is not None for f in m.files])


# ------------------------------------------------------------------------------------------------
# Streaming source
# ------------------------------------------------------------------------------------------------
@dataclass
class StreamPartition(InputPartition):
    files: list[delta_log.DataFile]
    cdf: tuple[int, int] | None = None


class DeltaStreamReader(DataSourceStreamReader):
    """A Delta table as a streaming source.

    The offset is the last table version whose data was emitted. Without ``startingVersion``
    the first batch is the table's snapshot; after it, each commit's added files. A commit that
    removes data (update, delete, overwrite) stops the stream unless ``skipChangeCommits``.
    """

    def __init__(self, path: str, options: dict[str, str], schema: StructType):
        self.path = path
        self.options = {k.lower(): v for k, v in options.items()}
        self.arrow_schema = _spark_to_arrow(schema)
        self.cdf = _truthy(self.options.get("readchangefeed"))
        self.skip_changes = _truthy(self.options.get("skipchangecommits")) or _truthy(
            self.options.get("ignorechanges")
        )
        self.max_files = self.options.get("maxfilespertrigger")
        start = self.options.get("startingversion")
        self.starting_version = None if start in (None, "latest") else int(start)
        self.from_latest = start == "latest"

    def initialOffset(self):  # noqa: N802
        if self.from_latest:
            return {"version": delta_log.latest_version(self.path), "snapshot": False}
        if self.starting_version is not None:
            return {"version": self.starting_version - 1, "snapshot": False}
        # Not yet read anything: the first batch takes the snapshot.
        return {"version": -1, "snapshot": not self.cdf}

    def latestOffset(self):  # noqa: N802
        return {"version": delta_log.latest_version(self.path), "snapshot": False}

    def partitions(self, start, end):
        first, last = start["version"], end["version"]
        if last <= first:
            return []
        if self.cdf:
            return [StreamPartition([], (first + 1, last))]
        if start.get("snapshot"):
            snap = delta_log.snapshot(self.path, version=last)
            return _stream_split(snap.files)
        files = delta_log.added_files(
            self.path, first + 1, last, skip_change_commits=self.skip_changes
        )
        return _stream_split(files)

    def read(self, partition: StreamPartition):
        if partition.cdf:
            yield from delta_log.read_cdf(
                self.path, partition.cdf[0], partition.cdf[1], self.arrow_schema
            )
            return
        partition_columns = delta_log.snapshot(self.path).partition_columns
        yield from _read_files(self.path, partition.files, self.arrow_schema, partition_columns)

    def commit(self, end):
        pass


def _stream_split(files: list[delta_log.DataFile]) -> list[StreamPartition]:
    return [StreamPartition(p.files) for p in _split(files)] if files else []


def bind(name: str, location: str, table_name: str) -> type[DeltaDataSource]:
    """A data source class that always reads and writes the table at ``location``.

    Spark passes a catalog table's data source no options, so the class is the only place
    its location can travel; it is registered under ``name`` (``USING <name>``)."""
    return type(
        f"DeltaTable_{name}",
        (DeltaDataSource,),
        {
            "location": location,
            "table_name": table_name,
            "name": classmethod(lambda cls: name),
            "__module__": __name__,
        },
    )


__all__ = ["DeltaDataSource", "bind"]
