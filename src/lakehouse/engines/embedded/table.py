"""``DeltaTable`` on the embedded engine: delta-spark's Python API over delta-rs.

Merge, update and delete keep Spark SQL semantics because Spark computes their rows: it reads
the files they touch, evaluates the learner's conditions and assignments (strings or Columns)
itself, and Python tasks write the result as Parquet data files and change-data files. The
driver then commits the removes, adds and change files as one Delta transaction. delta-rs does
everything that needs no expression: optimize, vacuum, restore, constraints, protocol changes.
This module holds ``EmbeddedDeltaTable``; the work behind its methods is in merge.py,
rewrite.py (update, delete), commit.py, optimize.py and builder.py."""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DataType, StructField, StructType

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.builder import EmbeddedTableBuilder
from lakehouse.engines.embedded.catalog import catalog_for
from lakehouse.engines.embedded.commit import (
    _FEATURE_NAMES,
    _HISTORY_DDL,
    _commit,
    _commit_time,
    _commit_timestamp,
    _commits,
    _history_row,
    _table_features,
)
from lakehouse.engines.embedded.common import _data_path, _unsupported
from lakehouse.engines.embedded.errors import DeltaError, UnsupportedOperation
from lakehouse.engines.embedded.expressions import assignment_columns, condition_column
from lakehouse.engines.embedded.merge import EmbeddedMergeBuilder
from lakehouse.engines.embedded.optimize import EmbeddedOptimizeBuilder
from lakehouse.engines.embedded.rewrite import _Rewrite

_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
_DEFAULT_RETENTION = "interval 1 week"
_PROTOCOL_KEYS = ("delta.minReaderVersion", "delta.minWriterVersion")

_DETAIL_DDL = (
    "format string, id string, name string, description string, location string, "
    "createdAt timestamp, lastModified timestamp, partitionColumns array<string>, "
    "clusteringColumns array<string>, numFiles long, sizeInBytes long, "
    "properties map<string,string>, minReaderVersion int, minWriterVersion int, "
    "tableFeatures array<string>"
)

_RESTORE_DDL = (
    "table_size_after_restore long, num_of_files_after_restore long, num_removed_files long, "
    "num_restored_files long, removed_files_size long, restored_files_size long"
)


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


def _empty_frame(spark) -> DataFrame:
    return spark.range(0).drop("id")


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


__all__ = ["EmbeddedDeltaTable"]
