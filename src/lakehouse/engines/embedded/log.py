"""The Delta transaction log, through delta-rs: tables, snapshots, data file listings, the change
data feed, partition values and statistics. writes.py commits the files Spark tasks wrote."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.engines.embedded.errors import DeltaError, TableNotFound

PARTITION_OPTION = "__partition_columns"
_STATS_STRING_PREFIX = 32


# ------------------------------------------------------------------------------------------------
# Paths and tables
# ------------------------------------------------------------------------------------------------
def local_path(path: str | os.PathLike) -> str:
    """An absolute local path for ``path``; ``file:`` URIs accepted, cloud URIs refused."""
    text = os.fspath(path)
    parsed = urlparse(text)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # 1: a Windows drive letter
        raw = unquote(parsed.path) if parsed.scheme == "file" else text
        return str(Path(raw).expanduser().absolute())
    raise DeltaError(
        f"The embedded engine reads and writes local folders only, not {text!r}. Use a local "
        "path (the course keeps tables under its lake folder), or run on Databricks for cloud "
        "storage."
    )


def log_dir(path: str) -> Path:
    return Path(path) / "_delta_log"


def data_file_path(root: str, log_path: str) -> str:
    """Where a file named in the log (a URI-encoded relative path) lives on disk."""
    return os.path.join(root, unquote(log_path))


def is_delta_table(path: str) -> bool:
    folder = log_dir(local_path(path))
    return folder.is_dir() and any(
        name.endswith(".json") or name.endswith(".checkpoint.parquet")
        for name in os.listdir(folder)
    )


def open_table(path: str, version: int | None = None):
    """delta-rs's DeltaTable for ``path``, with errors that say what to do."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError as RsDeltaError
    from deltalake.exceptions import TableNotFoundError

    path = local_path(path)
    if not Path(path).exists():
        raise TableNotFound(
            f"No Delta table at {path!r}: the folder does not exist. Check the path, or write "
            "the table first (df.write.format('delta').save(path))."
        )
    if not is_delta_table(path):
        raise TableNotFound(
            f"{path!r} is not a Delta table: it has no _delta_log folder with commits. "
            "Check the path; to turn a Parquet folder into a Delta table, rewrite it with "
            "df.write.format('delta')."
        )
    try:
        return DeltaTable(path, version=version)
    except TableNotFoundError as exc:
        raise TableNotFound(f"No Delta table at {path!r}: {exc}") from None
    except RsDeltaError as exc:
        message = str(exc)
        if version is not None and ("version" in message.lower()):
            raise DeltaError(
                f"Cannot time travel the Delta table at {path!r} to version {version}: {message}. "
                "DeltaTable.forPath(spark, path).history() lists the versions that exist."
            ) from None
        raise DeltaError(
            f"The Delta table at {path!r} could not be read: {message}. Its _delta_log may be "
            "damaged or incomplete; restore the folder from a copy, or rewrite the table."
        ) from None
    except (OSError, ValueError) as exc:
        raise DeltaError(
            f"The Delta table at {path!r} could not be read: {exc}. Its _delta_log may be "
            "damaged; restore the folder from a copy, or rewrite the table."
        ) from None


def latest_version(path: str) -> int:
    """The newest committed version, from the names in ``_delta_log`` (no log replay)."""
    folder = log_dir(local_path(path))
    versions = [int(n[:20]) for n in os.listdir(folder) if re.fullmatch(r"\d{20}\.json", n)]
    if not versions:
        return open_table(path).version()
    return max(versions)


# ------------------------------------------------------------------------------------------------
# Snapshots
# ------------------------------------------------------------------------------------------------
@dataclass
class DataFile:
    path: str
    size: int
    partition_values: dict[str, str | None]
    stats: dict | None = None


@dataclass
class Snapshot:
    root: str
    version: int
    arrow_schema: pa.Schema
    partition_columns: list[str]
    files: list[DataFile]
    configuration: dict[str, str] = field(default_factory=dict)


def parse_timestamp(value: str | datetime | date) -> datetime:
    """A timestamp for ``timestampAsOf`` and friends: ISO text or a date, read as UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise DeltaError(
            f"Cannot read {value!r} as a timestamp: use ISO form, e.g. '2026-06-30 12:00:00' "
            "or '2026-06-30'."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def snapshot(path: str, version: Any = None, timestamp: Any = None) -> Snapshot:
    path = local_path(path)
    table = open_table(path)
    if version is not None:
        try:
            wanted = int(version)
        except ValueError:
            raise DeltaError(f"versionAsOf must be a whole number, not {version!r}.") from None
        if wanted < 0 or wanted > table.version():
            raise DeltaError(
                f"Cannot time travel the Delta table at {path!r} to version {wanted}: its "
                f"versions run from the oldest kept up to {table.version()}. "
                "history() lists them."
            )
        table = open_table(path, version=wanted)
    elif timestamp is not None:
        when = parse_timestamp(timestamp)
        first = _commit_time(path, 0)
        if first is not None and when < first:
            raise DeltaError(
                f"Cannot time travel the Delta table at {path!r} to {timestamp}: that is before "
                f"its first commit ({first.isoformat()}). history() lists the versions and their "
                "timestamps."
            )
        # The last version committed at or before ``when``, by the commit timestamps that
        # history() shows (delta-rs would go by the log files' modification times, which a
        # busy machine writes later than the commit's own timestamp).
        table = open_table(path, version=_version_at(path, when, after=False))
    return _snapshot_of(path, table)


def _commit_time(path: str, version: int) -> datetime | None:
    commit = log_dir(path) / f"{version:020d}.json"
    if not commit.exists():
        return None
    for line in commit.read_text().splitlines():
        action = json.loads(line)
        if "commitInfo" in action and "timestamp" in action["commitInfo"]:
            return datetime.fromtimestamp(action["commitInfo"]["timestamp"] / 1000, UTC)
    return datetime.fromtimestamp(commit.stat().st_mtime, UTC)


def _snapshot_of(path: str, table) -> Snapshot:
    meta = table.metadata()
    schema = normalize_schema(pa.schema(table.schema().to_arrow()))
    actions = pa.table(table.get_add_actions(flatten=True))
    files = _files_from_actions(actions, meta.partition_columns)
    return Snapshot(
        root=path,
        version=table.version(),
        arrow_schema=schema,
        partition_columns=list(meta.partition_columns),
        files=files,
        configuration=dict(meta.configuration or {}),
    )


def _files_from_actions(actions: pa.Table, partition_columns: list[str]) -> list[DataFile]:
    names = actions.column_names
    rows = actions.to_pylist()
    files = []
    for row in rows:
        stats = None
        if row.get("num_records") is not None:
            stats = {"numRecords": row["num_records"], "minValues": {}, "maxValues": {}}
            for name in names:
                if name.startswith("min.") and row[name] is not None:
                    stats["minValues"][name[4:]] = row[name]
                elif name.startswith("max.") and row[name] is not None:
                    stats["maxValues"][name[4:]] = row[name]
        files.append(
            DataFile(
                path=row["path"],
                size=row["size_bytes"],
                partition_values={c: row.get(f"partition.{c}") for c in partition_columns},
                stats=stats,
            )
        )
    return files


def added_files(path: str, first: int, last: int, *, skip_change_commits: bool) -> list[DataFile]:
    """The data files that commits ``first``..``last`` added, for a streaming read."""
    path = local_path(path)
    files: list[DataFile] = []
    for version in range(first, last + 1):
        commit = log_dir(path) / f"{version:020d}.json"
        if not commit.exists():
            raise DeltaError(
                f"The streaming source needs commit {version} of the Delta table at {path!r}, "
                "but the log no longer has it (log retention or a deleted folder). Restart the "
                "stream with a new checkpoint, or set a longer delta.logRetentionDuration."
            )
        actions = [json.loads(line) for line in commit.read_text().splitlines() if line.strip()]
        removes = [a["remove"] for a in actions if "remove" in a]
        adds = [a["add"] for a in actions if "add" in a and a["add"].get("dataChange", True)]
        if any(r.get("dataChange", True) for r in removes):
            if skip_change_commits:
                continue
            raise DeltaError(
                f"The Delta table at {path!r} changed existing data at version {version} (an "
                "UPDATE, DELETE, MERGE or overwrite); a streaming read takes appends only. Set "
                ".option('skipChangeCommits', 'true') to skip such commits, or read the change "
                "data feed with .option('readChangeFeed', 'true')."
            )
        for add in adds:
            stats = json.loads(add["stats"]) if add.get("stats") else None
            files.append(
                DataFile(add["path"], add["size"], add.get("partitionValues") or {}, stats)
            )
    return files


# ------------------------------------------------------------------------------------------------
# Change data feed
# ------------------------------------------------------------------------------------------------
def cdf_range(path: str, options: dict[str, str]) -> tuple[Any, Any]:
    opts = {k.lower(): v for k, v in options.items()}
    start = opts.get("startingversion")
    start_ts = opts.get("startingtimestamp")
    if start is None and start_ts is None:
        raise DeltaError(
            "readChangeFeed needs a starting point: add .option('startingVersion', 0) or "
            ".option('startingTimestamp', '2026-06-30 00:00:00')."
        )
    snap = snapshot(path)
    if snap.configuration.get("delta.enableChangeDataFeed", "false").lower() != "true":
        raise DeltaError(
            f"The change data feed is not enabled on the Delta table at {path!r}. Enable it "
            "with the table property delta.enableChangeDataFeed = true (for example "
            "DeltaTable.createIfNotExists(spark).property('delta.enableChangeDataFeed', 'true')"
            ") before the changes you want to read."
        )
    if start is None:
        start = _version_at(path, parse_timestamp(start_ts), after=True)
    end = opts.get("endingversion")
    if end is None and opts.get("endingtimestamp") is not None:
        end = _version_at(path, parse_timestamp(opts["endingtimestamp"]), after=False)
    return int(start), (int(end) if end is not None else None)


def _version_at(path: str, when: datetime, *, after: bool) -> int:
    """The first version committed at or after ``when`` (after=True), or the last one at or
    before it."""
    last = latest_version(path)
    chosen = None
    for version in range(0, last + 1):
        ts = _commit_time(path, version)
        if ts is None:
            continue
        if after and ts >= when:
            return version
        if not after and ts <= when:
            chosen = version
    if chosen is None:
        raise DeltaError(f"No version of the Delta table at {path!r} matches {when.isoformat()}.")
    return chosen if not after else last + 1


def read_cdf(path: str, start: int, end: int | None, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    table = open_table(path)
    if end is not None and end < start:
        return
    if start > table.version():
        return
    reader = pa.RecordBatchReader.from_stream(
        table.load_cdf(starting_version=start, ending_version=end)
    )
    for batch in reader:
        if batch.num_rows == 0:
            continue
        arrays = []
        for f in schema:
            idx = batch.schema.get_field_index(f.name)
            col = batch.column(idx) if idx >= 0 else pa.nulls(batch.num_rows, f.type)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


# ------------------------------------------------------------------------------------------------
# Types, partitions and statistics
# ------------------------------------------------------------------------------------------------
def normalize_schema(schema: pa.Schema) -> pa.Schema:
    """Delta's physical types: microsecond timestamps in UTC (or without a zone for
    timestamp_ntz), plain strings and binaries."""
    return pa.schema(
        [pa.field(f.name, _normalize_type(f.type), f.nullable, f.metadata) for f in schema]
    )


def _normalize_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _normalize_type(f.type), f.nullable) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(pa.field(t.value_field.name, _normalize_type(t.value_type), True))
    if pa.types.is_map(t):
        return pa.map_(_normalize_type(t.key_type), _normalize_type(t.item_type))
    return t


def nullable(schema: pa.Schema) -> pa.Schema:
    """Delta writes every column of a DataFrame as nullable, whatever Spark inferred."""
    return pa.schema([f.with_nullable(True) for f in schema])


def partition_string(value: Any) -> str | None:
    """A partition value as Delta writes it in ``partitionValues``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def partition_dir_value(value: Any) -> str:
    """A partition value as a folder name: percent-encoded, as delta-rs writes it. (The log
    stores the file's relative path URI-encoded once more; readers decode it.)"""
    text = partition_string(value)
    if text is None:
        return "__HIVE_DEFAULT_PARTITION__"
    return quote(text, safe="")


def partition_array(raw: Any, type_: pa.DataType, n: int) -> pa.Array:
    if raw is None:
        return pa.nulls(n, type_)
    if not isinstance(raw, str):
        # Snapshots carry typed values (delta-rs parses them, e.g. a date for a date column).
        return pa.array([raw] * n).cast(type_)
    if pa.types.is_timestamp(type_):
        value: Any = datetime.fromisoformat(raw)
        if type_.tz and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
    elif pa.types.is_date(type_):
        value = date.fromisoformat(raw)
    elif pa.types.is_boolean(type_):
        value = raw.lower() == "true"
    elif pa.types.is_integer(type_):
        value = int(raw)
    elif pa.types.is_floating(type_):
        value = float(raw)
    elif pa.types.is_decimal(type_):
        value = Decimal(raw)
    else:
        value = raw
    return pa.array([value] * n, type=type_)


class StatsBuilder:
    """Per-file statistics for Delta's data skipping: row count, and per top-level column the
    null count, minimum and maximum (only where they are safe to compare)."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.rows = 0
        self.nulls: dict[str, int] = {}
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}

    def update(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for f in self.schema:
            col = table[f.name]
            if _nested(f.type):
                continue
            self.nulls[f.name] = self.nulls.get(f.name, 0) + col.null_count
            if not _has_order(f.type) or col.null_count == len(col):
                continue
            mm = pc.min_max(col)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if isinstance(lo, float) and (math.isnan(lo) or math.isnan(hi)):
                continue
            if f.name not in self.mins or lo < self.mins[f.name]:
                self.mins[f.name] = lo
            if f.name not in self.maxs or hi > self.maxs[f.name]:
                self.maxs[f.name] = hi

    def to_json(self) -> str:
        mins = {k: _stat_value(v, upper=False) for k, v in self.mins.items()}
        maxs = {k: _stat_value(v, upper=True) for k, v in self.maxs.items()}
        return json.dumps(
            {
                "numRecords": self.rows,
                "minValues": {k: v for k, v in mins.items() if v is not None},
                "maxValues": {k: v for k, v in maxs.items() if v is not None},
                "nullCount": self.nulls,
            }
        )


def _nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t)


def _has_order(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_string(t)
        or pa.types.is_date(t)
        or pa.types.is_timestamp(t)
    )


def _stat_value(value: Any, *, upper: bool) -> Any:
    if isinstance(value, str):
        if len(value) <= _STATS_STRING_PREFIX:
            return value
        # A truncated prefix is a valid lower bound but not an upper one.
        return None if upper else value[:_STATS_STRING_PREFIX]
    if isinstance(value, datetime):
        # Delta keeps milliseconds: round the bounds outwards so they stay bounds.
        micro = value.microsecond % 1000
        if micro:
            value = value - timedelta(microseconds=micro)
            if upper:
                value += timedelta(milliseconds=1)
        text = value.replace(tzinfo=None).isoformat(timespec="milliseconds")
        return text + ("Z" if value.tzinfo else "")
    if isinstance(value, date):
        return value.isoformat()
    return value
