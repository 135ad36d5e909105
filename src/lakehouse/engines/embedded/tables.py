"""``DeltaTable`` on the embedded engine: delta-spark's Python API over delta-rs.

Merge, update and delete keep Spark SQL semantics because Spark computes their rows: it reads
the files they touch, evaluates the learner's conditions and assignments (strings or Columns)
itself, and Python tasks write the result as Parquet data files and change-data files. The
driver then commits the removes, adds and change files as one Delta transaction. delta-rs does
everything that needs no expression: optimize, vacuum, restore, constraints, protocol changes.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    CharType,
    DataType,
    StringType,
    StructField,
    StructType,
    VarcharType,
)

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.catalog import catalog_for
from lakehouse.engines.embedded.errors import (
    ConcurrentModification,
    DeltaError,
    UnsupportedOperation,
)
from lakehouse.engines.embedded.expressions import assignment_columns, condition_column, describe

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

_RESULT_DDL = (
    "kind string, path string, size long, partition_values string, stats string, "
    "op string, rows long"
)
_CHANGE_DATA = "_change_data"
_Z_ORDER_BY = "zOrderBy"  # OPTIMIZE's parameter naming the Z-order columns
_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
_DEFAULT_RETENTION = "interval 1 week"
_PROTOCOL_KEYS = ("delta.minReaderVersion", "delta.minWriterVersion")

# Table features this engine's merge/update/delete honour. Others (column mapping, row
# tracking, identity and generated columns, ...) need the writer to do work it cannot do.
_WRITABLE_FEATURES = {
    "appendOnly",
    "invariants",
    "checkConstraints",
    "changeDataFeed",
    "timestampNtz",
    "domainMetadata",
    "deletionVectors",
    "v2Checkpoint",
    "vacuumProtocolCheck",
    "typeWidening",
    "typeWidening-preview",
}
_FEATURE_NAMES = {
    "appendOnly": "AppendOnly",
    "invariants": "Invariants",
    "checkConstraints": "CheckConstraints",
    "changeDataFeed": "ChangeDataFeed",
    "generatedColumns": "GeneratedColumns",
    "columnMapping": "ColumnMapping",
    "identityColumns": "IdentityColumns",
    "deletionVectors": "DeletionVectors",
    "rowTracking": "RowTracking",
    "timestampNtz": "TimestampWithoutTimezone",
    "domainMetadata": "DomainMetadata",
    "v2Checkpoint": "V2Checkpoint",
    "icebergCompatV1": "IcebergCompatV1",
    "variantType": "VariantType",
    "variantType-preview": "VariantTypePreview",
}
# Features a legacy (readerVersion, writerVersion) protocol implies, as delta-spark lists them.
_LEGACY_FEATURES = [
    ((1, 2), ["appendOnly", "invariants"]),
    ((1, 3), ["checkConstraints"]),
    ((1, 4), ["changeDataFeed", "generatedColumns"]),
    ((2, 5), ["columnMapping"]),
    ((2, 6), ["identityColumns"]),
]

_HISTORY_DDL = (
    "version long, timestamp timestamp, userId string, userName string, operation string, "
    "operationParameters map<string,string>, "
    "job struct<jobId:string,jobName:string,jobRunId:string,runId:string,jobOwnerId:string,"
    "triggerType:string>, "
    "notebook struct<notebookId:string>, clusterId string, readVersion long, "
    "isolationLevel string, isBlindAppend boolean, operationMetrics map<string,string>, "
    "userMetadata string, engineInfo string"
)
_DETAIL_DDL = (
    "format string, id string, name string, description string, location string, "
    "createdAt timestamp, lastModified timestamp, partitionColumns array<string>, "
    "clusteringColumns array<string>, numFiles long, sizeInBytes long, "
    "properties map<string,string>, minReaderVersion int, minWriterVersion int, "
    "tableFeatures array<string>"
)
_MERGE_RESULT_DDL = (
    "num_affected_rows long, num_updated_rows long, num_deleted_rows long, num_inserted_rows long"
)
_RESTORE_DDL = (
    "table_size_after_restore long, num_of_files_after_restore long, num_removed_files long, "
    "num_restored_files long, removed_files_size long, restored_files_size long"
)
_FILE_STATS = "struct<min:long,max:long,avg:double,totalFiles:long,totalSize:long>"
_OPTIMIZE_DDL = (
    f"path string, metrics struct<numFilesAdded:long, numFilesRemoved:long, "
    f"filesAdded:{_FILE_STATS}, filesRemoved:{_FILE_STATS}, partitionsOptimized:long, "
    "zOrderStats:struct<strategyName:string,inputCubeFiles:long,outputCubeFiles:long>, "
    "numBatches:long, totalConsideredFiles:long, totalFilesSkipped:long, "
    "preserveInsertionOrder:boolean>"
)


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------
def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _spark_schema(schema: pa.Schema) -> StructType:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(pa.schema([f.remove_metadata() for f in schema]))


def _session(spark) -> SparkSession:
    if spark is not None:
        return spark
    active = SparkSession.getActiveSession()
    if active is None:
        raise DeltaError(
            "No active SparkSession: pass one, e.g. DeltaTable.create(spark), after "
            "spark = get_spark()."
        )
    return active


def _catalog(spark):
    catalog = catalog_for(spark)
    if catalog is None:
        raise DeltaError(
            "This SparkSession does not run the embedded engine: build it with "
            "lakehouse.get_spark('embedded'), or use delta.tables.DeltaTable on delta-spark."
        )
    return catalog


def _log_path(relative: str) -> str:
    """A file's relative path as the Delta log stores it: URI-encoded."""
    return quote(relative, safe="/=")


def _data_path(root: str, log_path: str) -> str:
    """Where a file named in the log (a URI-encoded relative path) lives on disk."""
    return os.path.join(root, unquote(log_path))


def _disk_key(root: str, log_path: str) -> str:
    return os.path.normcase(os.path.normpath(_data_path(root, log_path)))


def _uri_key(uri: str) -> str:
    """The local path of a ``file:`` URI as Spark reports it, comparable with _disk_key."""
    path = unquote(urlparse(uri).path)
    if re.match(r"^/[A-Za-z]:", path):  # file:/C:/... on Windows
        path = path[1:]
    return os.path.normcase(os.path.normpath(path))


def _empty_frame(spark) -> DataFrame:
    return spark.range(0).drop("id")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _unsupported(what: str, alternative: str) -> UnsupportedOperation:
    return UnsupportedOperation(f"{what} is not available on the embedded engine. {alternative}")


def _interval_hours(text: str) -> float:
    """Delta's ``interval 7 days`` style durations, in hours."""
    m = re.fullmatch(r"\s*(?:interval\s+)?(\d+(?:\.\d+)?)\s*([a-z]+)\s*", text.lower())
    units = {"week": 168, "day": 24, "hour": 1, "minute": 1 / 60, "second": 1 / 3600}
    if m:
        unit = m.group(2).rstrip("s")
        if unit in units:
            return float(m.group(1)) * units[unit]
    raise DeltaError(
        f"Cannot read the table's retention duration {text!r} (e.g. 'interval 7 days')."
    )


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------
class EmbeddedDeltaTable:
    """A Delta table on the embedded engine, with the methods of ``delta.tables.DeltaTable``.

    Example::

        deltaTable = DeltaTable.forName(spark, "silver.customers")
        deltaTable.update("status = 'old'", {"status": "'archived'"})
    """

    def __init__(
        self, spark, location: str, name: str | None = None, alias: str | None = None
    ) -> None:
        self._spark = spark
        self._location = location
        self._name = name
        self._alias = alias

    def __repr__(self) -> str:
        return f"DeltaTable({self._name or self._location!r})"

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def forPath(  # noqa: N802 (delta-spark's name)
        cls,
        sparkSession,
        path: str,
        hadoopConf: dict[str, str] | None = None,  # noqa: N803
    ) -> EmbeddedDeltaTable:
        """The Delta table at ``path``; raises when there is none."""
        assert sparkSession is not None
        if hadoopConf:
            raise _unsupported(
                "hadoopConf in DeltaTable.forPath",
                "The embedded engine reads local folders only; drop the hadoopConf argument.",
            )
        location = delta_log.local_path(path)
        delta_log.open_table(location)  # raises TableNotFound with the reason
        return cls(sparkSession, location)

    @classmethod
    def forName(cls, sparkSession, tableOrViewName: str) -> EmbeddedDeltaTable:  # noqa: N802,N803
        """The Delta table named ``tableOrViewName`` (``schema.table``, or ``delta.`/path```)."""
        assert sparkSession is not None
        if type(tableOrViewName) is not str:
            raise TypeError(f"tableOrViewName must be a string, not {type(tableOrViewName)}.")
        by_path = re.fullmatch(r"\s*delta\.`(.+)`\s*", tableOrViewName)
        if by_path:
            return cls.forPath(sparkSession, by_path.group(1))
        catalog = _catalog(sparkSession)
        ref = catalog.require(tableOrViewName)
        return cls(sparkSession, ref.location, ref.name)

    @classmethod
    def isDeltaTable(cls, sparkSession, identifier: str) -> bool:  # noqa: N802
        """Whether ``identifier``, a path, is the root of a Delta table."""
        assert sparkSession is not None
        return delta_log.is_delta_table(delta_log.local_path(identifier))

    @classmethod
    def convertToDelta(  # noqa: N802
        cls,
        sparkSession,  # noqa: N803
        identifier: str,
        partitionSchema: str | StructType | None = None,  # noqa: N803
    ) -> EmbeddedDeltaTable:
        """Turn a Parquet folder, ``parquet.`/path```, into a Delta table in place."""
        from deltalake import Schema as DeltaSchema
        from deltalake import convert_to_deltalake

        m = re.fullmatch(r"\s*parquet\.`(.+)`\s*", identifier or "")
        if not m:
            raise DeltaError(
                f'convertToDelta takes a Parquet folder as "parquet.`/path/to/folder`", not '
                f"{identifier!r}."
            )
        location = delta_log.local_path(m.group(1))
        if delta_log.is_delta_table(location):
            return cls(sparkSession, location)
        partition_by = None
        if partitionSchema is not None:
            struct = (
                partitionSchema
                if isinstance(partitionSchema, StructType)
                else _parse_struct(sparkSession, partitionSchema)
            )
            partition_by = DeltaSchema.from_json(struct.json())
        try:
            convert_to_deltalake(location, partition_by=partition_by, partition_strategy="hive")
        except Exception as exc:
            raise DeltaError(
                f"Cannot convert the Parquet folder {location!r} to Delta: {exc}"
            ) from None
        return cls(sparkSession, location)

    @classmethod
    def create(cls, sparkSession=None) -> EmbeddedTableBuilder:  # noqa: N803
        """A builder that creates a Delta table, failing if it exists (``CREATE TABLE``)."""
        return EmbeddedTableBuilder(_session(sparkSession), "create")

    @classmethod
    def createIfNotExists(cls, sparkSession=None) -> EmbeddedTableBuilder:  # noqa: N802,N803
        """A builder that creates a Delta table unless it exists (``CREATE TABLE IF NOT
        EXISTS``)."""
        return EmbeddedTableBuilder(_session(sparkSession), "createIfNotExists")

    @classmethod
    def replace(cls, sparkSession=None) -> EmbeddedTableBuilder:  # noqa: N803
        """A builder that replaces an existing Delta table (``REPLACE TABLE``)."""
        return EmbeddedTableBuilder(_session(sparkSession), "replace")

    @classmethod
    def createOrReplace(cls, sparkSession=None) -> EmbeddedTableBuilder:  # noqa: N802,N803
        """A builder that creates or replaces a Delta table (``CREATE OR REPLACE TABLE``)."""
        return EmbeddedTableBuilder(_session(sparkSession), "createOrReplace")

    # -- reading ------------------------------------------------------------------------------
    def toDF(self) -> DataFrame:  # noqa: N802
        """The table's current version as a DataFrame (read fresh on each call)."""
        if self._name:
            _catalog(self._spark).register(self._name)
            frame = self._spark.table(self._name)
        else:
            frame = self._spark.read.format("delta").load(self._location)
        return frame.alias(self._alias) if self._alias else frame

    def alias(self, aliasName: str) -> EmbeddedDeltaTable:  # noqa: N803
        """This table under an alias, for conditions such as ``"t.id = s.id"``."""
        if type(aliasName) is not str or not aliasName:
            raise TypeError(f"aliasName must be a non-empty string, not {aliasName!r}.")
        return EmbeddedDeltaTable(self._spark, self._location, self._name, aliasName)

    def history(self, limit: int | None = None) -> DataFrame:
        """The table's commits, newest first, with delta-spark's columns.

        Example::

            deltaTable.history(1).select("version", "operation").show()
        """
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ValueError(f"limit must be a non-negative int, not {limit!r}.")
        rows = [_history_row(v, commit) for v, commit in _commits(self._location, limit)]
        return self._spark.createDataFrame(rows, _HISTORY_DDL)

    def detail(self) -> DataFrame:
        """One row describing the table: format, id, location, size, properties, protocol."""
        table = delta_log.open_table(self._location)
        meta = table.metadata()
        protocol = table.protocol()
        snap = delta_log.snapshot(self._location)
        last = _commit_timestamp(self._location, table.version())
        properties = {
            k: v for k, v in (meta.configuration or {}).items() if k not in _PROTOCOL_KEYS
        }
        name = None
        if self._name:
            name = f"{_catalog(self._spark).catalog_name}.{self._name}"
        row = (
            "delta",
            str(meta.id),
            name,
            meta.description,
            "file:" + self._location,
            datetime.fromtimestamp(meta.created_time / 1000, UTC),
            last,
            list(meta.partition_columns),
            [],
            len(snap.files),
            sum(f.size for f in snap.files),
            properties,
            protocol.min_reader_version,
            protocol.min_writer_version,
            _table_features(protocol),
        )
        return self._spark.createDataFrame([row], _DETAIL_DDL)

    # -- changing rows ------------------------------------------------------------------------
    def delete(self, condition=None) -> None:
        """Delete the rows that match ``condition`` (all rows without one).

        Example::

            deltaTable.delete("date < '2017-01-01'")
            deltaTable.delete(F.col("date") < "2017-01-01")
        """
        _Rewrite(self, "DELETE", condition_column(condition), condition).run()

    def update(self, condition=None, set=None) -> None:  # noqa: A002 (delta-spark's name)
        """Update the rows that match ``condition`` (all rows without one) as ``set`` says.

        Example::

            deltaTable.update("eventType = 'clck'", {"eventType": "'click'"})
            deltaTable.update(F.col("eventType") == "clck", {"eventType": F.lit("click")})
        """
        columns = assignment_columns(set, "'set'")
        _Rewrite(self, "UPDATE", condition_column(condition), condition, columns).run()

    def merge(self, source: DataFrame, condition) -> EmbeddedMergeBuilder:
        """Merge ``source`` into this table on ``condition``; add ``when...`` clauses to the
        returned builder, then ``execute()``.

        Example::

            (deltaTable.alias("t")
                .merge(updates.alias("s"), "t.id = s.id")
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute())
        """
        if source is None:
            raise ValueError("'source' in merge cannot be None")
        if not isinstance(source, DataFrame):
            raise TypeError("Type of 'source' in merge must be DataFrame.")
        if condition is None:
            raise ValueError("'condition' in merge cannot be None")
        condition_column(condition)  # type check now, as delta-spark does
        return EmbeddedMergeBuilder(self, source, condition)

    # -- maintenance --------------------------------------------------------------------------
    def vacuum(self, retentionHours: float | None = None) -> DataFrame:  # noqa: N803
        """Delete files no longer needed by versions newer than ``retentionHours`` (default
        the table's ``delta.deletedFileRetentionDuration``, 7 days).

        As on delta-spark, a retention below the table's is refused unless
        ``spark.databricks.delta.retentionDurationCheck.enabled`` is ``false``.
        """
        table = delta_log.open_table(self._location)
        config = table.metadata().configuration or {}
        minimum = _interval_hours(
            config.get("delta.deletedFileRetentionDuration", _DEFAULT_RETENTION)
        )
        hours = minimum if retentionHours is None else float(retentionHours)
        if hours < 0:
            raise DeltaError(f"retentionHours must not be negative, got {retentionHours}.")
        check = self._spark.conf.get(_RETENTION_CHECK, "true")
        if str(check).strip().lower() != "false" and hours < minimum:
            raise DeltaError(
                "requirement failed: Are you sure you would like to vacuum files with such a low "
                "retention period? If you have writers that are currently writing to this table, "
                "there is a risk that you may corrupt the state of your Delta table.\n\nIf you are "
                "certain that there are no operations being performed on this table, such as "
                "insert/upsert/delete/optimize, then you may turn off this check by setting:\n"
                f"spark.conf.set('{_RETENTION_CHECK}', 'false')\n\nIf you are not sure, please "
                f'use a value not less than "{minimum:g} hours".'
            )
        table.vacuum(
            retention_hours=math.ceil(hours),
            dry_run=False,
            enforce_retention_duration=False,
        )
        return _empty_frame(self._spark)

    def optimize(self) -> EmbeddedOptimizeBuilder:
        """A builder to compact small files or Z-order them, optionally in some partitions.

        Example::

            deltaTable.optimize().where("date = '2021-11-18'").executeCompaction()
        """
        return EmbeddedOptimizeBuilder(self)

    def restoreToVersion(self, version: int) -> DataFrame:  # noqa: N802
        """Restore the table to an older ``version``; returns the restore metrics."""
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f"version needs to be an int but got '{type(version)}'.")
        return self._restore(version)

    def restoreToTimestamp(self, timestamp: str) -> DataFrame:  # noqa: N802
        """Restore the table to the version current at ``timestamp`` (``yyyy-MM-dd`` or
        ``yyyy-MM-dd HH:mm:ss``); returns the restore metrics."""
        if not isinstance(timestamp, str):
            raise ValueError(f"timestamp needs to be a string but got '{type(timestamp)}'.")
        when = delta_log.parse_timestamp(timestamp)
        versions = [(v, _commit_time(c)) for v, c in _commits(self._location, None)]
        before = [v for v, ts in versions if ts is not None and ts <= when]
        if not before:
            first = min(versions)[1] if versions else None
            raise DeltaError(
                f"The provided timestamp ({timestamp}) is before the earliest version available "
                f"to this table ({first}). Please use a timestamp after it; history() lists the "
                "versions and their timestamps."
            )
        latest_version, latest_ts = max(versions)
        if latest_ts is not None and when > latest_ts:
            raise DeltaError(
                f"The provided timestamp ({timestamp}) is after the latest version available to "
                f"this table ({latest_ts}). Please use a timestamp before or at {latest_ts}."
            )
        return self._restore(max(before))

    def _restore(self, version: int) -> DataFrame:
        current = delta_log.snapshot(self._location)
        if version < 0 or version > current.version:
            raise DeltaError(
                f"Cannot restore the Delta table at {self._location!r} to version {version}: "
                f"its versions run up to {current.version}. history() lists them."
            )
        target = delta_log.snapshot(self._location, version=version)
        before = {f.path: f.size for f in current.files}
        after = {f.path: f.size for f in target.files}
        removed = {p: s for p, s in before.items() if p not in after}
        restored = {p: s for p, s in after.items() if p not in before}
        missing = [p for p in restored if not os.path.exists(_data_path(self._location, p))]
        if missing:
            raise DeltaError(
                f"Cannot restore the Delta table at {self._location!r} to version {version}: "
                f"{len(missing)} of its data files were deleted (by vacuum), e.g. {missing[0]}. "
                "Restore to a version newer than the last vacuum's retention."
            )
        if version == current.version:
            # delta-rs refuses a no-op restore; delta-spark commits one.
            _commit(
                self._location,
                current.version,
                [],
                "RESTORE",
                {"version": str(version), "timestamp": None},
                {"numRestoredFiles": 0, "numRemovedFiles": 0},
            )
        else:
            delta_log.open_table(self._location).restore(version)
            self._refresh_catalog()
        row = (
            sum(after.values()),
            len(after),
            len(removed),
            len(restored),
            sum(removed.values()),
            sum(restored.values()),
        )
        return self._spark.createDataFrame([row], _RESTORE_DDL)

    def generate(self, mode: str) -> None:
        """Generate manifest files; the one mode is ``symlink_format_manifest``."""
        if str(mode).lower() != "symlink_format_manifest":
            raise DeltaError(
                f"Specified mode '{mode}' is not supported. Supported modes are: "
                "symlink_format_manifest"
            )
        delta_log.open_table(self._location).generate()

    def upgradeTableProtocol(self, readerVersion: int, writerVersion: int) -> None:  # noqa: N802,N803
        """Raise the table's protocol versions (they cannot go down)."""
        if not isinstance(readerVersion, int):
            raise ValueError(
                f"The readerVersion needs to be an integer but got '{type(readerVersion)}'."
            )
        if not isinstance(writerVersion, int):
            raise ValueError(
                f"The writerVersion needs to be an integer but got '{type(writerVersion)}'."
            )
        table = delta_log.open_table(self._location)
        protocol = table.protocol()
        if (
            (readerVersion, writerVersion)
            < (
                protocol.min_reader_version,
                protocol.min_writer_version,
            )
            or readerVersion < protocol.min_reader_version
            or (writerVersion < protocol.min_writer_version)
        ):
            raise DeltaError(
                "Protocol version cannot be downgraded from "
                f"({protocol.min_reader_version},{protocol.min_writer_version}) to "
                f"({readerVersion},{writerVersion})."
            )
        if (readerVersion, writerVersion) == (
            protocol.min_reader_version,
            protocol.min_writer_version,
        ):
            return
        try:
            table.alter.set_table_properties(
                {
                    "delta.minReaderVersion": str(readerVersion),
                    "delta.minWriterVersion": str(writerVersion),
                }
            )
        except Exception as exc:
            raise UnsupportedOperation(
                f"delta-rs cannot upgrade the protocol to ({readerVersion},{writerVersion}): "
                f"{exc}. Use addFeatureSupport(name) for a single table feature."
            ) from None

    def addFeatureSupport(self, featureName: str) -> None:  # noqa: N802,N803
        """Add a table feature to the protocol (e.g. ``changeDataFeed``, ``appendOnly``)."""
        from deltalake import TableFeatures

        if not isinstance(featureName, str):
            raise ValueError(f"featureName needs to be a string but got '{type(featureName)}'.")
        key = {k.lower(): v for k, v in _FEATURE_NAMES.items()}.get(featureName.lower())
        if key is None:
            raise UnsupportedOperation(
                f"The embedded engine cannot add table feature {featureName!r}; it can add "
                f"{', '.join(sorted(_FEATURE_NAMES))}."
            )
        try:
            delta_log.open_table(self._location).alter.add_feature(
                getattr(TableFeatures, key), allow_protocol_versions_increase=True
            )
        except Exception as exc:
            raise UnsupportedOperation(
                f"delta-rs cannot add table feature {featureName!r}: {exc}"
            ) from None

    def dropFeatureSupport(  # noqa: N802
        self,
        featureName: str,
        truncateHistory: bool | None = None,  # noqa: N803
    ) -> None:
        """Not available on the embedded engine: delta-rs cannot drop table features."""
        raise _unsupported(
            f"dropFeatureSupport({featureName!r})",
            "delta-rs cannot drop a table feature. Recreate the table without it (read it, then "
            "write it with df.write.format('delta').mode('overwrite').option('overwriteSchema', "
            "'true')), or run ALTER TABLE ... DROP FEATURE on Databricks.",
        )

    def clone(self, target, isShallow=False, replace=False, properties=None):  # noqa: N803
        """Not available on the embedded engine."""
        raise _unsupported(
            "DeltaTable.clone",
            "Copy the data instead: deltaTable.toDF().write.format('delta').save(target).",
        )

    def cloneAtVersion(self, version, target, isShallow=False, replace=False, properties=None):  # noqa: N802,N803
        """Not available on the embedded engine."""
        raise _unsupported(
            "DeltaTable.cloneAtVersion",
            "Copy the version instead: spark.read.format('delta').option('versionAsOf', v)"
            ".load(path).write.format('delta').save(target).",
        )

    def cloneAtTimestamp(self, timestamp, target, isShallow=False, replace=False, properties=None):  # noqa: N802,N803
        """Not available on the embedded engine."""
        raise _unsupported(
            "DeltaTable.cloneAtTimestamp",
            "Copy the version instead: spark.read.format('delta').option('timestampAsOf', ts)"
            ".load(path).write.format('delta').save(target).",
        )

    # -- properties (ALTER TABLE ... SET TBLPROPERTIES on the other engines) ------------------
    def set_properties(self, properties: dict[str, str]) -> None:
        """Set table properties in one commit, e.g. ``{"delta.enableChangeDataFeed": "true"}``."""
        if not isinstance(properties, dict) or not properties:
            raise ValueError(
                "properties must be a non-empty dict of property names to values, e.g. "
                "{'delta.enableChangeDataFeed': 'true'}"
            )
        values = {
            str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in properties.items()
        }
        try:
            delta_log.open_table(self._location).alter.set_table_properties(
                values, raise_if_not_exists=False
            )
        except Exception as exc:
            raise DeltaError(f"Could not set table properties {values}: {exc}") from None

    # -- constraints (ALTER TABLE ... ADD/DROP CONSTRAINT on the other engines) ---------------
    def add_check_constraint(self, name: str, expression: str) -> None:
        """Add CHECK constraint ``name``; existing rows must satisfy ``expression``.

        Spark checks the existing rows (Spark SQL semantics); delta-rs records the constraint,
        and the embedded writers then reject rows that violate it.
        """
        constraint = _constraint_name(name)
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError("The CHECK constraint expression must be a non-empty SQL string.")
        table = delta_log.open_table(self._location)
        config = table.metadata().configuration or {}
        key = f"delta.constraints.{constraint}"
        if key in config:
            raise DeltaError(
                f"[DELTA_CONSTRAINT_ALREADY_EXISTS] Constraint '{constraint}' already exists. "
                f"Please delete the old constraint first.\nOld constraint:\n{config[key]}"
            )
        frame = self.toDF()
        checked = frame.select(F.expr(expression).alias("ok"))
        if not isinstance(checked.schema["ok"].dataType, BooleanType):
            raise DeltaError(
                f"[DELTA_NON_BOOLEAN_CHECK_CONSTRAINT] CHECK constraint '{constraint}' "
                f"({expression}) should be a boolean expression."
            )
        # Delta counts a NULL result as a violation, as its writers do.
        violating = checked.filter(~F.coalesce(F.col("ok"), F.lit(False))).count()
        if violating:
            raise DeltaError(
                f"[DELTA_NEW_CHECK_CONSTRAINT_VIOLATION] {violating} rows in {self._label()} "
                f"violate the new CHECK constraint ({expression})"
            )
        try:
            table.alter.add_constraint({constraint: expression})
        except Exception as exc:
            raise UnsupportedOperation(
                f"CHECK constraint {constraint} ({expression}): the embedded engine enforces "
                "constraints on appends with delta-rs, which cannot evaluate this expression "
                f"({str(exc).splitlines()[0]}). Write it with comparisons, AND/OR/NOT, "
                "IS [NOT] NULL, IN and arithmetic on the table's columns."
            ) from None

    def drop_check_constraint(self, name: str, if_exists: bool = False) -> None:
        """Drop CHECK constraint ``name`` (no error for a missing one with ``if_exists``)."""
        constraint = _constraint_name(name)
        table = delta_log.open_table(self._location)
        if f"delta.constraints.{constraint}" not in (table.metadata().configuration or {}):
            if if_exists:
                return
            raise DeltaError(
                f"[DELTA_CONSTRAINT_DOES_NOT_EXIST] Cannot drop nonexistent constraint "
                f"{constraint} from table {self._label()}. To ignore this error, drop it with "
                "if_exists=True (SQL: DROP CONSTRAINT IF EXISTS)."
            )
        table.alter.drop_constraint(constraint)

    # -- internals ----------------------------------------------------------------------------
    def _label(self) -> str:
        return self._name or f"delta.`{self._location}`"

    def _refresh_catalog(self) -> None:
        catalog = catalog_for(self._spark)
        if catalog is None:
            return
        if self._name:
            catalog.register(self._name)
        else:
            catalog.refresh_location(self._location)


def _constraint_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(
            f"Constraint name {name!r} is not valid: use letters, digits and underscores, "
            "starting with a letter (e.g. 'amount_not_negative')."
        )
    return name.lower()


def _parse_struct(spark, ddl: str) -> StructType:
    parsed = DataType.fromDDL(ddl)
    return parsed if isinstance(parsed, StructType) else StructType([StructField("value", parsed)])


# ------------------------------------------------------------------------------------------------
# History and protocol
# ------------------------------------------------------------------------------------------------
def _commits(root: str, limit: int | None) -> Iterator[tuple[int, list[dict]]]:
    """(version, actions) of the commits still in the log, newest first."""
    folder = delta_log.log_dir(root)
    versions = sorted(
        (int(n[:20]) for n in os.listdir(folder) if re.fullmatch(r"\d{20}\.json", n)),
        reverse=True,
    )
    for version in versions[:limit] if limit is not None else versions:
        text = (folder / f"{version:020d}.json").read_text()
        yield version, [json.loads(line) for line in text.splitlines() if line.strip()]


def _commit_info(actions: list[dict]) -> dict:
    return next((a["commitInfo"] for a in actions if "commitInfo" in a), {})


def _commit_time(actions: list[dict]) -> datetime | None:
    info = _commit_info(actions)
    ts = info.get("inCommitTimestamp", info.get("timestamp"))
    return datetime.fromtimestamp(ts / 1000, UTC) if ts is not None else None


def _commit_timestamp(root: str, version: int) -> datetime | None:
    path = delta_log.log_dir(root) / f"{version:020d}.json"
    if not path.exists():
        return None
    actions = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return _commit_time(actions) or datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _operation(info: dict, actions: list[dict]) -> str:
    """The commit's operation in delta-spark's words.

    delta-rs records a write that creates or replaces a table as ``CREATE TABLE``/``CREATE OR
    REPLACE TABLE``; delta-spark calls a DataFrame write ``WRITE``, and a streaming sink's
    commit (it carries the query's application transaction) ``STREAMING UPDATE``."""
    operation = info.get("operation") or "UNKNOWN"
    adds_data = any("add" in a and a["add"].get("dataChange", True) for a in actions)
    mode = str((info.get("operationParameters") or {}).get("mode", "")).lower()
    # A builder's CREATE TABLE says ErrorIfExists/Ignore; a write says Append/Overwrite, and
    # a builder's replace adds no data.
    if mode in ("append", "overwrite") and (
        operation == "CREATE TABLE" or (operation == "CREATE OR REPLACE TABLE" and adds_data)
    ):
        operation = "WRITE"
    if operation == "WRITE" and any(
        "txn" in a and str(a["txn"].get("appId", "")).startswith("spark-streaming") for a in actions
    ):
        operation = "STREAMING UPDATE"
    return operation


def _strings(mapping: dict | None) -> dict[str, str] | None:
    if mapping is None:
        return None
    return {
        str(k): (v if isinstance(v, str) else json.dumps(v))
        for k, v in mapping.items()
        if v is not None
    }


def _history_row(version: int, actions: list[dict]) -> tuple:
    info = _commit_info(actions)
    parameters = _strings(info.get("operationParameters")) or {}
    if info.get("operation") == "OPTIMIZE" and isinstance(info.get(_Z_ORDER_BY), str):
        parameters.setdefault(_Z_ORDER_BY, info[_Z_ORDER_BY])
    return (
        version,
        _commit_time(actions),
        info.get("userId"),
        info.get("userName"),
        _operation(info, actions),
        parameters,
        None,
        None,
        info.get("clusterId"),
        info.get("readVersion"),
        info.get("isolationLevel"),
        info.get("isBlindAppend"),
        _strings(info.get("operationMetrics")),
        info.get("userMetadata"),
        info.get("engineInfo") or info.get("clientVersion"),
    )


def _table_features(protocol) -> list[str]:
    if protocol.min_writer_version >= 7 or protocol.min_reader_version >= 3:
        return sorted(set(protocol.writer_features or []) | set(protocol.reader_features or []))
    features: list[str] = []
    for (reader, writer), names in _LEGACY_FEATURES:
        if protocol.min_writer_version >= writer and protocol.min_reader_version >= reader:
            features += names
    return sorted(features)


# ------------------------------------------------------------------------------------------------
# Committing
# ------------------------------------------------------------------------------------------------
def _engine_info() -> str:
    import deltalake
    import pyspark

    return (
        f"Apache-Spark/{pyspark.__version__} delta-rs/{deltalake.__version__} (lakehouse embedded)"
    )


def _commit(
    root: str,
    read_version: int,
    actions: list[dict],
    operation: str,
    parameters: dict[str, Any],
    metrics: dict[str, Any],
    *,
    metadata: dict | None = None,
) -> int:
    """Write commit ``read_version + 1`` holding ``actions``; fails if another writer took
    that version first (the table then stays as that writer left it)."""
    version = read_version + 1
    folder = delta_log.log_dir(root)
    info = {
        "timestamp": _now_ms(),
        "operation": operation,
        "operationParameters": _strings(parameters) or {},
        "readVersion": read_version,
        "isolationLevel": "Serializable",
        "isBlindAppend": False,
        "operationMetrics": {k: str(v) for k, v in metrics.items()},
        "engineInfo": _engine_info(),
        "txnId": str(uuid.uuid4()),
    }
    lines = [{"commitInfo": info}]
    if metadata is not None:
        lines.append({"metaData": metadata})
    lines += actions
    staged = folder / f".{version:020d}.json.{uuid.uuid4().hex}.tmp"
    staged.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    target = folder / f"{version:020d}.json"
    try:
        # A hard link fails when the name exists: two writers cannot both commit a version.
        try:
            os.link(staged, target)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: create the name exclusively
            with open(target, "x") as out:
                out.write(staged.read_text())
    except FileExistsError:
        raise ConcurrentModification(
            f"Another writer committed version {version} of the Delta table at {root!r} while "
            f"this {operation} was running. This {operation} was not committed and the table is "
            "as the other writer left it; run it again."
        ) from None
    finally:
        staged.unlink(missing_ok=True)
    _maybe_checkpoint(root, version)
    return version


TXN_APP_ID_CONF = "spark.databricks.delta.write.txnAppId"
TXN_VERSION_CONF = "spark.databricks.delta.write.txnVersion"
_SKIP = "skip"


def _session_transaction(spark, handle) -> tuple[str, int] | str | None:
    """Delta's idempotent DML: with the session confs ``txnAppId`` and ``txnVersion`` set, a
    MERGE, UPDATE or DELETE whose (app id, version) the table already committed is skipped, and
    one that runs records it in the same commit (a ``txn`` action). Returns ``_SKIP``, the
    pair to record, or None when the confs are not set."""
    app_id = spark.conf.get(TXN_APP_ID_CONF, None) or None
    raw = spark.conf.get(TXN_VERSION_CONF, None) or None
    if app_id is None and raw is None:
        return None
    if app_id is None or raw is None:
        raise DeltaError(
            "[DELTA_INVALID_IDEMPOTENT_WRITES_OPTIONS] Invalid options for idempotent Delta "
            f"writes: both {TXN_APP_ID_CONF} and {TXN_VERSION_CONF} must be specified (set "
            "both, e.g. to the stream's id and the foreachBatch batch id, or unset both)."
        )
    try:
        version = int(raw)
    except ValueError:
        raise DeltaError(
            f"{TXN_VERSION_CONF} must be a whole number (e.g. the foreachBatch batch id), "
            f"not {raw!r}."
        ) from None
    done = handle.transaction_version(app_id)
    if done is not None and done >= version:
        return _SKIP
    return app_id, version


def _txn_action(txn: tuple[str, int] | None) -> list[dict]:
    if txn is None:
        return []
    return [{"txn": {"appId": txn[0], "version": txn[1], "lastUpdated": _now_ms()}}]


def _maybe_checkpoint(root: str, version: int) -> None:
    table = delta_log.open_table(root)
    interval = int((table.metadata().configuration or {}).get("delta.checkpointInterval", 100))
    if interval > 0 and version % interval == 0:
        table.create_checkpoint()


def _remove_action(f: delta_log.DataFile, now: int) -> dict:
    return {
        "remove": {
            "path": f.path,
            "deletionTimestamp": now,
            "dataChange": True,
            "extendedFileMetadata": True,
            "partitionValues": {
                k: delta_log.partition_string(v) for k, v in f.partition_values.items()
            },
            "size": f.size,
        }
    }


def _metadata_action(table, schema_json: str) -> dict:
    meta = table.metadata()
    return {
        "id": str(meta.id),
        "name": meta.name,
        "description": meta.description,
        "format": {"provider": "parquet", "options": {}},
        "schemaString": schema_json,
        "partitionColumns": list(meta.partition_columns),
        "configuration": dict(meta.configuration or {}),
        "createdTime": meta.created_time,
    }


@dataclass
class _Guard:
    """What a rewrite must honour: the table's constraints and unsupported features."""

    constraints: dict[str, str]
    not_null: list[str]
    change_data_feed: bool
    append_only: bool


def _guard(root: str, table, snap: delta_log.Snapshot, operation: str, removes: bool) -> _Guard:
    config = snap.configuration
    protocol = table.protocol()
    features = set(protocol.writer_features or []) if protocol.min_writer_version >= 7 else set()
    blocked = sorted(features - _WRITABLE_FEATURES)
    schema_json = json.loads(table.schema().to_json())
    if str(config.get("delta.columnMapping.mode", "none")).lower() != "none":
        blocked.append("columnMapping")
    if any(
        "delta.generationExpression" in (f.get("metadata") or {})
        or "delta.identity.start" in (f.get("metadata") or {})
        for f in schema_json["fields"]
    ):
        blocked.append("generated or identity columns")
    if str(config.get("delta.enableRowTracking", "false")).lower() == "true":
        blocked.append("rowTracking")
    if blocked:
        raise _unsupported(
            f"{operation} on a table using {', '.join(sorted(set(blocked)))}",
            "Rewrite the table without that feature, or run this on delta-spark or Databricks.",
        )
    append_only = str(config.get("delta.appendOnly", "false")).lower() == "true"
    if append_only and removes:
        raise DeltaError(
            "This table is configured to only allow appends. If you would like to permit "
            "updates or deletes, use 'ALTER TABLE <table_name> SET TBLPROPERTIES "
            "(delta.appendOnly=false)'."
        )
    return _Guard(
        constraints={
            k[len("delta.constraints.") :]: v
            for k, v in config.items()
            if k.startswith("delta.constraints.")
        },
        not_null=[f["name"] for f in schema_json["fields"] if not f.get("nullable", True)],
        change_data_feed=str(config.get("delta.enableChangeDataFeed", "false")).lower() == "true",
        append_only=append_only,
    )


def _enforce(frame: DataFrame, guard: _Guard, names: list[str]) -> DataFrame:
    """Fail the job on the first written row that breaks a NOT NULL column or CHECK
    constraint, evaluated by Spark as delta-spark does."""
    writes = F.col(OP).isin(INSERT, UPDATE, SOURCE_UPDATE)
    for column in guard.not_null:
        frame = frame.filter(
            F.when(
                writes & F.col(_quoted(column)).isNull(),
                F.raise_error(
                    F.lit(
                        "[DELTA_NOT_NULL_CONSTRAINT_VIOLATED] NOT NULL constraint violated for "
                        f"column: {column}."
                    )
                ),
            ).otherwise(F.lit(True))
        )
    values = F.concat_ws(
        "\n",
        *[
            F.concat(
                F.lit(f" - {n} : "), F.coalesce(F.col(_quoted(n)).cast("string"), F.lit("null"))
            )
            for n in names
        ],
    )
    for name, expression in guard.constraints.items():
        # As in Delta, a row violates a CHECK constraint when it is false or NULL.
        frame = frame.filter(
            F.when(
                writes & ~F.coalesce(F.expr(expression), F.lit(False)),
                F.raise_error(
                    F.concat(
                        F.lit(
                            f"[DELTA_VIOLATE_CONSTRAINT_WITH_VALUES] CHECK constraint {name} "
                            f"({expression}) violated by row with values:\n"
                        ),
                        values,
                    )
                ),
            ).otherwise(F.lit(True))
        )
    return frame


_OWN_ERRORS = (
    "[DELTA_NOT_NULL_CONSTRAINT_VIOLATED]",
    "[DELTA_VIOLATE_CONSTRAINT_WITH_VALUES]",
)


def _own_error(exc: Exception) -> DeltaError | None:
    """The DeltaError behind a Spark job failure that one of our checks raised."""
    text = str(exc)
    for tag in _OWN_ERRORS:
        start = text.find(tag)
        if start >= 0:
            message = text[start:]
            for end in (" SQLSTATE:", "\n\tat ", "\nJVM stacktrace"):
                if end in message:
                    message = message[: message.index(end)]
            return DeltaError(message.strip())
    return None


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


# ------------------------------------------------------------------------------------------------
# Merge
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Clause:
    kind: str  # matched | not_matched | not_matched_by_source
    action: str  # update | update_all | delete | insert | insert_all
    condition: Any = None  # as given (str or Column)
    assignments: dict | None = None  # as given

    @property
    def op(self) -> str:
        if self.kind == "not_matched":
            return INSERT
        if self.kind == "matched":
            return DELETE if self.action == "delete" else UPDATE
        return SOURCE_DELETE if self.action == "delete" else SOURCE_UPDATE

    def describe(self) -> dict:
        entry = {}
        if self.condition is not None:
            entry["predicate"] = describe(self.condition)
        entry["actionType"] = self.action.replace("_all", "")
        return entry


class EmbeddedMergeBuilder:
    """Clauses of a merge; each ``when...`` call returns a new builder, as delta-spark's do.

    Example::

        (deltaTable.alias("t").merge(updates.alias("s"), "t.id = s.id")
            .whenMatchedUpdate(set={"amount": "s.amount"})
            .whenNotMatchedInsertAll()
            .whenNotMatchedBySourceDelete()
            .execute())
    """

    def __init__(self, table, source, condition, clauses=(), schema_evolution=False):
        self._table = table
        self._source = source
        self._condition = condition
        self._clauses: tuple[_Clause, ...] = tuple(clauses)
        self._schema_evolution = schema_evolution

    def _with(self, clause: _Clause) -> EmbeddedMergeBuilder:
        condition_column(clause.condition)
        if clause.assignments is not None:
            assignment_columns(clause.assignments, f"'{_ARGNAME[clause.action]}'")
        return EmbeddedMergeBuilder(
            self._table,
            self._source,
            self._condition,
            self._clauses + (clause,),
            self._schema_evolution,
        )

    def whenMatchedUpdate(self, condition=None, set=None) -> EmbeddedMergeBuilder:  # noqa: A002,N802
        """Update a matched target row as ``set`` says (if ``condition`` holds)."""
        if set is None:
            raise ValueError("'set' in whenMatchedUpdate cannot be None")
        return self._with(_Clause("matched", "update", condition, set))

    def whenMatchedUpdateAll(self, condition=None) -> EmbeddedMergeBuilder:  # noqa: N802
        """Update every column of a matched target row from the source row."""
        return self._with(_Clause("matched", "update_all", condition))

    def whenMatchedDelete(self, condition=None) -> EmbeddedMergeBuilder:  # noqa: N802
        """Delete a matched target row (if ``condition`` holds)."""
        return self._with(_Clause("matched", "delete", condition))

    def whenNotMatchedInsert(self, condition=None, values=None) -> EmbeddedMergeBuilder:  # noqa: N802
        """Insert a source row with no match as ``values`` says (if ``condition`` holds)."""
        if values is None:
            raise ValueError("'values' in whenNotMatchedInsert cannot be None")
        return self._with(_Clause("not_matched", "insert", condition, values))

    def whenNotMatchedInsertAll(self, condition=None) -> EmbeddedMergeBuilder:  # noqa: N802
        """Insert a source row with no match, column for column."""
        return self._with(_Clause("not_matched", "insert_all", condition))

    def whenNotMatchedBySourceUpdate(self, condition=None, set=None) -> EmbeddedMergeBuilder:  # noqa: A002,N802
        """Update a target row no source row matches, as ``set`` says."""
        if set is None:
            raise ValueError("'set' in whenNotMatchedBySourceUpdate cannot be None")
        return self._with(_Clause("not_matched_by_source", "update", condition, set))

    def whenNotMatchedBySourceDelete(self, condition=None) -> EmbeddedMergeBuilder:  # noqa: N802
        """Delete a target row no source row matches (if ``condition`` holds)."""
        return self._with(_Clause("not_matched_by_source", "delete", condition))

    def withSchemaEvolution(self) -> EmbeddedMergeBuilder:  # noqa: N802
        """Let the merge add the source's new columns to the table."""
        return EmbeddedMergeBuilder(self._table, self._source, self._condition, self._clauses, True)

    def execute(self) -> DataFrame:
        """Run the merge; returns one row: num_affected_rows, num_updated_rows,
        num_deleted_rows, num_inserted_rows."""
        return _Merge(self).run()


_ARGNAME = {
    "update": "set",
    "insert": "values",
    "update_all": "set",
    "insert_all": "values",
    "delete": "condition",
}
_MULTIPLE_MATCHES = (
    "[DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_MERGE] Cannot perform Merge as multiple "
    "source rows matched and attempted to modify the same target row in the Delta table in "
    "possibly conflicting ways. By SQL semantics of Merge, when multiple source rows match on "
    "the same target row, the result may be ambiguous as it is unclear which source row should "
    "be used to update or delete the matching target row. You can preprocess the source table "
    "to eliminate the possibility of multiple matches."
)


class _Merge:
    def __init__(self, builder: EmbeddedMergeBuilder):
        self.table = builder._table
        self.source = builder._source
        self.condition_text = builder._condition
        self.condition = condition_column(builder._condition)
        self.clauses = builder._clauses
        self.evolve = builder._schema_evolution

    def _check_clauses(self) -> None:
        if not self.clauses:
            raise DeltaError(
                "There must be at least one WHEN clause in a MERGE statement: add "
                ".whenMatchedUpdateAll(), .whenNotMatchedInsertAll() or another when... clause "
                "before execute()."
            )
        for kind, label in (
            ("matched", "MATCHED"),
            ("not_matched", "NOT MATCHED"),
            ("not_matched_by_source", "NOT MATCHED BY SOURCE"),
        ):
            group = [c for c in self.clauses if c.kind == kind]
            if any(c.condition is None for c in group[:-1]):
                raise DeltaError(
                    f"When there are more than one {label} clauses in a MERGE statement, only "
                    f"the last {label} clause can omit the condition."
                )

    def run(self) -> DataFrame:
        with _foreign_columns_explained():
            return self._run()

    def _run(self) -> DataFrame:
        started = time.time()
        self._check_clauses()
        table = self.table
        spark, root = table._spark, table._location
        handle = delta_log.open_table(root)
        snap = delta_log.snapshot(root)
        txn = _session_transaction(spark, handle)
        if txn == _SKIP:
            return self._result(spark, 0, 0, 0)
        changes = any(c.kind != "not_matched" for c in self.clauses)
        guard = _guard(root, handle, snap, "MERGE", removes=changes)
        alias = table._alias
        names = snap.arrow_schema.names
        struct = _spark_schema(snap.arrow_schema)
        matched = [c for c in self.clauses if c.kind == "matched"]
        not_matched = [c for c in self.clauses if c.kind == "not_matched"]
        by_source = [c for c in self.clauses if c.kind == "not_matched_by_source"]
        source = self.source.withColumn(SOURCE, F.lit(True))

        def aliased(frame: DataFrame) -> DataFrame:
            return frame.alias(alias) if alias else frame

        self._check_scopes(self.source, aliased(_target_frame(spark, snap, [])))
        # 1. Which files hold target rows that some source row matches? A target row
        #    matched by two source rows is an error unless one unconditional delete is all
        #    the matched clauses do (delta-spark's rule).
        touched: list[delta_log.DataFile] = []
        if matched:
            target = aliased(_target_frame(spark, snap, snap.files))
            per_file = (
                source.join(target, self.condition, "inner")
                .groupBy(F.col(FILE), F.col(ROW))
                .count()
                .groupBy(FILE)
                .agg(F.max("count").alias("matches"))
                .collect()
            )
            only_delete = (
                len(matched) == 1 and matched[0].action == "delete" and matched[0].condition is None
            )
            if any(r["matches"] > 1 for r in per_file) and not only_delete:
                raise DeltaError(_MULTIPLE_MATCHES)
            touched = _files_of(snap, [r[FILE] for r in per_file])
        rewrite = snap.files if by_source else touched

        # 2. The rows the merge writes: rewritten target files joined with the source, or
        #    only the source rows that match nothing when no target file needs rewriting.
        if rewrite:
            target = aliased(_target_frame(spark, snap, rewrite).withColumn(TARGET, F.lit(True)))
            joined = target.join(source, self.condition, "full" if not_matched else "left")
        elif not_matched:
            target = aliased(_target_frame(spark, snap, snap.files))
            joined = source.join(target, self.condition, "left_anti").withColumn(
                TARGET, F.lit(None).cast("boolean")
            )
            target = None
        else:
            return self._result(spark, 0, 0, 0)

        columns, new_fields = self._columns(joined, target, source, names, struct)
        out_names = names + [f.name for f in new_fields]
        is_matched = F.col(TARGET).isNotNull() & F.col(SOURCE).isNotNull()
        guards = {
            "matched": is_matched,
            "not_matched": F.col(TARGET).isNull(),
            "not_matched_by_source": F.col(SOURCE).isNull(),
        }
        chosen = None
        for i, clause in enumerate(self.clauses):
            if target is None and clause.kind != "not_matched":
                continue  # only unmatched source rows are here; target columns do not exist
            when = guards[clause.kind]
            if clause.condition is not None:
                when = when & condition_column(clause.condition)
            chosen = F.when(when, F.lit(i)) if chosen is None else chosen.when(when, F.lit(i))
        frame = joined.withColumn(CLAUSE, chosen.otherwise(F.lit(-1)))
        clause_id = F.col(CLAUSE)

        op = None
        for i, clause in enumerate(self.clauses):
            op = (
                F.when(clause_id == i, F.lit(clause.op))
                if op is None
                else op.when(clause_id == i, F.lit(clause.op))
            )
        op = op.otherwise(F.when(F.col(TARGET).isNotNull(), F.lit(COPY)).otherwise(F.lit(DROP)))

        values = []
        for name in out_names:
            current, branches = columns[name]
            expression = None
            for i, value in branches:
                expression = (
                    F.when(clause_id == i, value)
                    if expression is None
                    else expression.when(clause_id == i, value)
                )
            values.append(
                (expression.otherwise(current) if expression is not None else current).alias(name)
            )
        old = (
            [columns[n][0].alias(f"{OLD}{i}") for i, n in enumerate(out_names)]
            if guard.change_data_feed
            else []
        )
        out = frame.select(*values, op.alias(OP), *old).filter(F.col(OP) != DROP)
        out = _enforce(out, guard, out_names)

        schema = snap.arrow_schema
        metadata = None
        if new_fields:
            schema = pa.schema(
                list(schema) + [f.with_nullable(True) for f in _arrow_fields(new_fields)]
            )
            schema_json = json.loads(handle.schema().to_json())
            schema_json["fields"] += [json.loads(f.json()) for f in new_fields]
            metadata = _metadata_action(handle, json.dumps(schema_json, separators=(",", ":")))
        written = _write_rows(out, root, schema, snap.partition_columns, guard.change_data_feed)
        inserted = written.count(INSERT)
        updated = written.count(UPDATE, SOURCE_UPDATE)
        deleted = written.count(DELETE, SOURCE_DELETE)
        if not (inserted or updated or deleted) and metadata is None:
            written.discard(root)
            return self._result(spark, 0, 0, 0)
        now = _now_ms()
        actions = [_remove_action(f, now) for f in rewrite] + written.actions(now)
        actions += _txn_action(txn)
        metrics = {
            "numSourceRows": None,
            "numTargetRowsInserted": inserted,
            "numTargetRowsUpdated": updated,
            "numTargetRowsMatchedUpdated": written.count(UPDATE),
            "numTargetRowsNotMatchedBySourceUpdated": written.count(SOURCE_UPDATE),
            "numTargetRowsDeleted": deleted,
            "numTargetRowsMatchedDeleted": written.count(DELETE),
            "numTargetRowsNotMatchedBySourceDeleted": written.count(SOURCE_DELETE),
            "numTargetRowsCopied": written.count(COPY),
            "numOutputRows": written.count(*DATA_OPS),
            "numTargetFilesAdded": len(written.adds),
            "numTargetFilesRemoved": len(rewrite),
            "numTargetChangeFilesAdded": len(written.cdcs),
            "executionTimeMs": int((time.time() - started) * 1000),
        }
        metrics = {k: v for k, v in metrics.items() if v is not None}
        parameters = {
            "predicate": json.dumps([describe(self.condition_text)]),
            "matchedPredicates": json.dumps([c.describe() for c in matched]),
            "notMatchedPredicates": json.dumps([c.describe() for c in not_matched]),
            "notMatchedBySourcePredicates": json.dumps([c.describe() for c in by_source]),
        }
        try:
            _commit(root, snap.version, actions, "MERGE", parameters, metrics, metadata=metadata)
        except BaseException:
            written.discard(root)
            raise
        if metadata is not None:
            table._refresh_catalog()
        return self._result(spark, updated, deleted, inserted)

    def _check_scopes(self, source: DataFrame, target: DataFrame) -> None:
        """As in Delta, NOT MATCHED clauses see only the source row and NOT MATCHED BY SOURCE
        clauses only the target row (Spark analyses them; nothing runs)."""
        for clause in self.clauses:
            if clause.kind == "matched":
                continue
            scope, side = (source, "source") if clause.kind == "not_matched" else (target, "target")
            expressions = (
                [condition_column(clause.condition)] if clause.condition is not None else []
            )
            if clause.assignments:
                expressions += list(
                    assignment_columns(clause.assignments, f"'{_ARGNAME[clause.action]}'").values()
                )
            if not expressions:
                continue
            try:
                _ = scope.select(*[e.alias(f"_{i}") for i, e in enumerate(expressions)]).schema
            except Exception as exc:
                label = "NOT MATCHED" if side == "source" else "NOT MATCHED BY SOURCE"
                raise DeltaError(
                    f"[DELTA_MERGE_UNRESOLVED_EXPRESSION] A {label} clause may only refer to the "
                    f"{side}'s columns: {str(exc).splitlines()[0]}"
                ) from None

    def _columns(self, joined, target, source, names, struct):
        """For each output column: its current value (the target's, or null) and, per clause
        that sets it, (clause index, value); plus the new columns schema evolution adds."""
        types = {f.name: f.dataType for f in struct.fields}
        source_columns = [c for c in self.source.columns]
        source_lower = {c.lower(): c for c in source_columns}
        alias = self.table._alias
        new_fields: list[StructField] = []

        def add_column(name: str, data_type: DataType) -> str:
            existing = {f.name.lower(): f.name for f in new_fields}
            if name.lower() in existing:
                return existing[name.lower()]
            new_fields.append(StructField(name, _storable(data_type), True))
            return name

        def source_ref(name: str):
            return source[_quoted(source_lower[name.lower()])]

        plans: list[tuple[int, dict]] = []
        for i, clause in enumerate(self.clauses):
            if clause.action == "delete":
                continue
            if target is None and clause.kind != "not_matched":
                continue  # no target row matched: only insert clauses can apply
            verb = "UPDATE" if clause.kind != "not_matched" else "INSERT"
            assigned = {}
            if clause.action in ("update_all", "insert_all"):
                missing = [n for n in names if n.lower() not in source_lower]
                if missing and not self.evolve:
                    raise DeltaError(
                        f"[DELTA_MERGE_UNRESOLVED_EXPRESSION] Cannot resolve "
                        f"{', '.join(missing)} in {verb} clause given columns "
                        f"{', '.join(source_columns)} of the source. Add the columns to the "
                        "source, list the columns to set with whenMatchedUpdate(set=...) / "
                        "whenNotMatchedInsert(values=...), or call withSchemaEvolution()."
                    )
                for n in names:
                    if n.lower() in source_lower:
                        assigned[n] = source_ref(n)
                if self.evolve:
                    for c in source_columns:
                        if c.lower() not in {n.lower() for n in names}:
                            assigned[add_column(c, self.source.schema[c].dataType)] = source_ref(c)
            else:
                for key, value in assignment_columns(
                    clause.assignments, f"'{_ARGNAME[clause.action]}'"
                ).items():
                    column = _resolve_column(key, names, alias)
                    if column is None:
                        if not self.evolve:
                            raise DeltaError(
                                f"[DELTA_MERGE_UNRESOLVED_EXPRESSION] Cannot resolve {key} in "
                                f"{verb} clause given columns {', '.join(names)} of the target. "
                                "Set only the table's columns, or call withSchemaEvolution() to "
                                "add new ones."
                            )
                        data_type = joined.select(value.alias("v")).schema["v"].dataType
                        column = add_column(key.split(".")[-1].strip("`"), data_type)
                    assigned[column] = value
            plans.append((i, assigned))

        for f in new_fields:
            types[f.name] = f.dataType
        columns = {}
        for name in names + [f.name for f in new_fields]:
            if target is not None and name in names:
                current = target[_quoted(name)]
            else:
                current = F.lit(None).cast(types[name])
            branches = []
            for i, assigned in plans:
                clause = self.clauses[i]
                if name in assigned:
                    branches.append((i, assigned[name].cast(types[name])))
                elif clause.kind == "not_matched":
                    branches.append((i, F.lit(None).cast(types[name])))
            columns[name] = (current, branches)
        return columns, new_fields

    @staticmethod
    def _result(spark, updated: int, deleted: int, inserted: int) -> DataFrame:
        return spark.createDataFrame(
            [(updated + deleted + inserted, updated, deleted, inserted)], _MERGE_RESULT_DDL
        )


def _storable(data_type: DataType) -> DataType:
    if isinstance(data_type, (CharType, VarcharType)):
        return StringType()
    return data_type


def _arrow_fields(fields: list[StructField]) -> list[pa.Field]:
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(StructType(fields))
    return list(delta_log.normalize_schema(arrow))


# ------------------------------------------------------------------------------------------------
# Optimize
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Creating and replacing tables
# ------------------------------------------------------------------------------------------------
class EmbeddedTableBuilder:
    """Creates or replaces a Delta table from columns, partitioning, comment and properties.

    Example::

        (DeltaTable.createIfNotExists(spark)
            .tableName("silver.customers")
            .addColumn("customer_id", "BIGINT", nullable=False)
            .addColumn("email", "STRING", comment="lower-cased")
            .partitionedBy("country")
            .property("delta.enableChangeDataFeed", "true")
            .execute())
    """

    def __init__(self, spark, mode: str):
        self._spark = spark
        self._mode = mode
        self._name: str | None = None
        self._location: str | None = None
        self._comment: str | None = None
        self._fields: list[StructField] = []
        self._partitions: list[str] = []
        self._properties: dict[str, str] = {}

    def _raise_type_error(self, msg: str, objs) -> None:
        for obj in objs:
            msg += f" Found {obj} with type {type(obj)}"
        raise TypeError(msg)

    def tableName(self, identifier: str) -> EmbeddedTableBuilder:  # noqa: N802
        """The table name, ``schema.table``."""
        if type(identifier) is not str:
            self._raise_type_error("Identifier must be str.", [identifier])
        self._name = identifier
        return self

    def location(self, location: str) -> EmbeddedTableBuilder:
        """The folder of the table's data."""
        if type(location) is not str:
            self._raise_type_error("Location must be str.", [location])
        self._location = location
        return self

    def comment(self, comment: str) -> EmbeddedTableBuilder:
        """The table comment (its description)."""
        if type(comment) is not str:
            self._raise_type_error("Table comment must be str.", [comment])
        self._comment = comment
        return self

    def addColumn(  # noqa: N802
        self,
        colName: str,  # noqa: N803
        dataType: str | DataType,  # noqa: N803
        nullable: bool = True,
        generatedAlwaysAs=None,  # noqa: N803
        generatedByDefaultAs=None,  # noqa: N803
        comment: str | None = None,
    ) -> EmbeddedTableBuilder:
        """A column: name, type (DDL string such as ``"DECIMAL(10,2)"`` or a DataType),
        nullability and comment."""
        if type(colName) is not str:
            self._raise_type_error("Column name must be str.", [colName])
        if type(dataType) is not str and not isinstance(dataType, DataType):
            self._raise_type_error("Column data type must be str or DataType.", [dataType])
        if type(nullable) is not bool:
            self._raise_type_error("Column nullable must be bool.", [nullable])
        if generatedAlwaysAs is not None or generatedByDefaultAs is not None:
            raise _unsupported(
                f"Generated or identity column {colName!r}",
                "Compute the column in the DataFrame before writing instead, e.g. "
                "df.withColumn('order_date', F.to_date('order_ts')), and declare it as a plain "
                "column.",
            )
        if comment is not None and type(comment) is not str:
            self._raise_type_error("Column comment must be str.", [comment])
        parsed = DataType.fromDDL(dataType) if isinstance(dataType, str) else dataType
        metadata = {"comment": comment} if comment is not None else {}
        self._fields.append(StructField(colName, _storable(parsed), nullable, metadata))
        return self

    def addColumns(self, cols) -> EmbeddedTableBuilder:  # noqa: N802
        """Columns from an existing schema (StructType or a list of StructFields)."""
        if isinstance(cols, list):
            for col in cols:
                if type(col) is not StructField:
                    self._raise_type_error("Column in existing schema must be StructField.", [col])
            cols = StructType(cols)
        if type(cols) is not StructType:
            self._raise_type_error("Schema must be StructType or a list of StructField.", [cols])
        for f in cols.fields:
            self._fields.append(StructField(f.name, _storable(f.dataType), f.nullable, f.metadata))
        return self

    def partitionedBy(self, *cols) -> EmbeddedTableBuilder:  # noqa: N802
        """Partition columns."""
        if len(cols) == 1 and isinstance(cols[0], (list, tuple)):
            cols = tuple(cols[0])
        for c in cols:
            if type(c) is not str:
                self._raise_type_error("Partitioning column must be str.", [c])
        self._partitions = list(cols)
        return self

    def clusterBy(self, *cols) -> EmbeddedTableBuilder:  # noqa: N802
        """Not available on the embedded engine (liquid clustering)."""
        raise _unsupported(
            "Liquid clustering (clusterBy)",
            "Use partitionedBy(...) for the layout, or optimize().executeZOrderBy(...) to "
            "cluster the files by columns.",
        )

    def property(self, key: str, value: str) -> EmbeddedTableBuilder:
        """A table property, e.g. ``("delta.enableChangeDataFeed", "true")``."""
        if type(key) is not str or type(value) is not str:
            self._raise_type_error("Key and value of property must be string.", [key, value])
        self._properties[key] = value
        return self

    def execute(self) -> EmbeddedDeltaTable:
        """Create or replace the table; returns it."""
        from deltalake import DeltaTable as RsDeltaTable
        from deltalake import Schema as DeltaSchema

        spark = self._spark
        catalog = catalog_for(spark)
        ref = None
        if self._name is not None:
            if catalog is None:
                raise DeltaError("Named tables need the embedded engine's catalog (get_spark()).")
            ref = catalog.resolve(self._name)
            location = ref.location
            if self._location is not None and delta_log.local_path(self._location) != location:
                raise _unsupported(
                    f"A table name with its own location ({self._location})",
                    f"The embedded engine keeps table {ref.name} at {location}. Drop "
                    ".location(...) to use that folder, or drop .tableName(...) to create a "
                    "table by path only.",
                )
        elif self._location is not None:
            location = delta_log.local_path(self._location)
        else:
            raise DeltaError("Table name or location has to be specified")
        label = ref.name if ref else f"delta.`{location}`"
        exists = delta_log.is_delta_table(location)
        if exists and self._mode == "create":
            raise DeltaError(
                f"[DELTA_TABLE_ALREADY_EXISTS] Table {label} already exists. Use "
                "DeltaTable.createIfNotExists(spark) to keep it, or DeltaTable.createOrReplace("
                "spark) to replace it."
            )
        if exists and self._mode == "createIfNotExists":
            return self._table(location, ref)
        if not exists and self._mode == "replace":
            raise DeltaError(
                f"[DELTA_TABLE_NOT_FOUND] Table {label} cannot be replaced as it does not "
                "exist. Use DeltaTable.createOrReplace(spark) to create it."
            )
        if not self._fields:
            raise DeltaError(
                f"Table schema is not set for {label}: add columns with addColumn(...) or "
                "addColumns(df.schema)."
            )
        names = [f.name for f in self._fields]
        for column in self._partitions:
            if column not in names:
                raise DeltaError(
                    f"Partition column {column!r} is not one of the table's columns {names}."
                )
        schema = DeltaSchema.from_json(StructType(self._fields).json())
        Path(location).mkdir(parents=True, exist_ok=True)
        try:
            RsDeltaTable.create(
                location,
                schema,
                mode="overwrite" if exists else "error",
                partition_by=self._partitions or None,
                description=self._comment,
                configuration=self._properties or None,
                raise_if_key_not_exists=False,
            )
        except Exception as exc:
            raise DeltaError(f"Cannot create table {label}: {exc}") from None
        if ref is not None:
            catalog.register(ref.name, force=True)
        elif catalog is not None:
            catalog.refresh_location(location)
        return self._table(location, ref)

    def _table(self, location: str, ref) -> EmbeddedDeltaTable:
        return EmbeddedDeltaTable(self._spark, location, ref.name if ref else None)


__all__ = [
    "EmbeddedDeltaTable",
    "EmbeddedMergeBuilder",
    "EmbeddedOptimizeBuilder",
    "EmbeddedTableBuilder",
]
