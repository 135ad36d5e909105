"""``DeltaTable`` for every engine: notebooks import it from here.

On delta-spark (classic) and Databricks it hands back the real ``delta.tables.DeltaTable``;
through a local Spark Connect server on delta-spark,
``lakehouse.engines.delta_spark.sql_table.SqlDeltaTable``, which runs each method as its Delta
SQL; on the embedded engine, the delta-rs-backed table with the same methods. The helpers below
cover the Databricks SQL idioms the embedded engine cannot run as SQL (CHECK constraints).

>>> from lakehouse import DeltaTable                             # doctest: +SKIP
>>> DeltaTable.forName(spark, "silver.customers").history(1)     # doctest: +SKIP
"""

from __future__ import annotations

import re

from lakehouse.engines import delta_table_class, runs_embedded


def _active(spark):
    if spark is not None:
        return spark
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        from lakehouse.engines.embedded import catalog

        active = catalog._ACTIVE.spark if catalog._ACTIVE is not None else None
    return active


class DeltaTable:
    """Entry points of ``delta.tables.DeltaTable``, dispatched on the session's engine.

    Each returns the engine's own table object: ``delta.tables.DeltaTable`` on delta-spark and
    Databricks, ``EmbeddedDeltaTable`` on the embedded engine. Both have the same methods.

    Example::

        deltaTable = DeltaTable.forPath(spark, "/lake/silver/customers")
        deltaTable.alias("t").merge(updates.alias("s"), "t.id = s.id") \\
            .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
    """

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "Create a DeltaTable with DeltaTable.forPath(spark, path), DeltaTable.forName("
            "spark, name) or a builder such as DeltaTable.createIfNotExists(spark)."
        )

    @classmethod
    def forPath(cls, sparkSession, path: str, hadoopConf: dict[str, str] | None = None):  # noqa: N802,N803
        """The Delta table at ``path``; raises when there is none."""
        impl = delta_table_class(sparkSession)
        if hadoopConf is None:
            return impl.forPath(sparkSession, path)
        return impl.forPath(sparkSession, path, hadoopConf)

    @classmethod
    def forName(cls, sparkSession, tableOrViewName: str):  # noqa: N802,N803
        """The Delta table named ``tableOrViewName``."""
        return delta_table_class(sparkSession).forName(sparkSession, tableOrViewName)

    @classmethod
    def isDeltaTable(cls, sparkSession, identifier: str) -> bool:  # noqa: N802,N803
        """Whether the path ``identifier`` is the root of a Delta table."""
        return delta_table_class(sparkSession).isDeltaTable(sparkSession, identifier)

    @classmethod
    def convertToDelta(cls, sparkSession, identifier: str, partitionSchema=None):  # noqa: N802,N803
        """Turn a Parquet folder, ``parquet.`/path```, into a Delta table in place."""
        impl = delta_table_class(sparkSession)
        if partitionSchema is None:
            return impl.convertToDelta(sparkSession, identifier)
        return impl.convertToDelta(sparkSession, identifier, partitionSchema)

    @classmethod
    def create(cls, sparkSession=None):  # noqa: N803
        """A builder that creates a Delta table, failing if it exists."""
        spark = _active(sparkSession)
        return delta_table_class(spark).create(spark)

    @classmethod
    def createIfNotExists(cls, sparkSession=None):  # noqa: N802,N803
        """A builder that creates a Delta table unless it exists."""
        spark = _active(sparkSession)
        return delta_table_class(spark).createIfNotExists(spark)

    @classmethod
    def replace(cls, sparkSession=None):  # noqa: N803
        """A builder that replaces an existing Delta table."""
        spark = _active(sparkSession)
        return delta_table_class(spark).replace(spark)

    @classmethod
    def createOrReplace(cls, sparkSession=None):  # noqa: N802,N803
        """A builder that creates or replaces a Delta table."""
        spark = _active(sparkSession)
        return delta_table_class(spark).createOrReplace(spark)


# ------------------------------------------------------------------------------------------------
# CHECK constraints: SQL ALTER TABLE on Databricks and delta-spark, delta-rs on embedded
# ------------------------------------------------------------------------------------------------
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _sql_identifier(table: str) -> str:
    """A table name as SQL, or a path as ``delta.`path```."""
    if re.fullmatch(r"\s*delta\.`.+`\s*", table):
        return table.strip()
    if "/" in table or "\\" in table or table.startswith("file:"):
        return "delta.`" + table.replace("`", "``") + "`"
    return table


def _embedded_table(spark, table: str):
    from lakehouse.engines.embedded.table import EmbeddedDeltaTable

    if "/" in table or "\\" in table or table.startswith("file:"):
        return EmbeddedDeltaTable.forPath(spark, table)
    return EmbeddedDeltaTable.forName(spark, table)


def set_table_properties(spark, table: str, properties: dict[str, str]) -> None:
    """``ALTER TABLE table SET TBLPROPERTIES (...)`` on every engine.

    ``table`` is a table name or a path. Example (turn on the change data feed)::

        set_table_properties(spark, "bronze.support_tickets_cdc",
                             {"delta.enableChangeDataFeed": "true"})
    """
    if not isinstance(properties, dict) or not properties:
        raise ValueError(
            "properties must be a non-empty dict, e.g. {'delta.enableChangeDataFeed': 'true'}"
        )
    if runs_embedded(spark):
        _embedded_table(spark, table).set_properties(properties)
        return
    pairs = ", ".join(
        "'{}' = '{}'".format(
            str(k).replace("'", "\\'"),
            (str(v).lower() if isinstance(v, bool) else str(v)).replace("'", "\\'"),
        )
        for k, v in properties.items()
    )
    spark.sql(f"ALTER TABLE {_sql_identifier(table)} SET TBLPROPERTIES ({pairs})")


def add_check_constraint(spark, table: str, name: str, expression: str) -> None:
    """``ALTER TABLE table ADD CONSTRAINT name CHECK (expression)`` on every engine.

    ``table`` is a table name or a path. Existing rows must satisfy the constraint; later
    writes that break it fail and leave the table unchanged.

    Example::

        add_check_constraint(spark, "silver.orders", "amount_positive", "amount > 0")
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"Constraint name {name!r} is not valid: use letters, digits and underscores."
        )
    if runs_embedded(spark):
        _embedded_table(spark, table).add_check_constraint(name, expression)
        return
    spark.sql(f"ALTER TABLE {_sql_identifier(table)} ADD CONSTRAINT {name} CHECK ({expression})")


def drop_check_constraint(spark, table: str, name: str, *, if_exists: bool = False) -> None:
    """``ALTER TABLE table DROP CONSTRAINT [IF EXISTS] name`` on every engine."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"Constraint name {name!r} is not valid: use letters, digits and underscores."
        )
    if runs_embedded(spark):
        _embedded_table(spark, table).drop_check_constraint(name, if_exists=if_exists)
        return
    guard = "IF EXISTS " if if_exists else ""
    spark.sql(f"ALTER TABLE {_sql_identifier(table)} DROP CONSTRAINT {guard}{name}")


# ------------------------------------------------------------------------------------------------
# VACUUM ... DRY RUN and per-file statistics (what data skipping reads)
# ------------------------------------------------------------------------------------------------
_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


def vacuum_dry_run(spark, table: str, retention_hours: float | None = None) -> list[str]:
    """``VACUUM table [RETAIN n HOURS] DRY RUN`` on every engine: the data files a vacuum with
    this retention would delete, sorted, deleting nothing.

    Without ``retention_hours`` the table's ``delta.deletedFileRetentionDuration`` applies (7
    days by default). As for VACUUM itself, a shorter retention is refused unless
    ``spark.databricks.delta.retentionDurationCheck.enabled`` is ``false``.

    Example::

        vacuum_dry_run(spark, "gold.fact_sales")   # [] while every removed file is < 7 days old
    """
    if retention_hours is not None and (
        isinstance(retention_hours, bool)
        or not isinstance(retention_hours, (int, float))
        or retention_hours < 0
    ):
        raise ValueError(
            f"retention_hours must be a non-negative number of hours, not {retention_hours!r}."
        )
    if runs_embedded(spark):
        return _embedded_vacuum_dry_run(spark, table, retention_hours)
    retain = "" if retention_hours is None else f" RETAIN {retention_hours:g} HOURS"
    rows = spark.sql(f"VACUUM {_sql_identifier(table)}{retain} DRY RUN").collect()
    return sorted(str(row[0]) for row in rows)


def _embedded_vacuum_dry_run(spark, table: str, retention_hours: float | None) -> list[str]:
    import math

    from lakehouse.engines.embedded import log as delta_log
    from lakehouse.engines.embedded.errors import DeltaError
    from lakehouse.engines.embedded.table import _DEFAULT_RETENTION, _interval_hours

    location = _embedded_table(spark, table)._location
    rs_table = delta_log.open_table(location)
    config = rs_table.metadata().configuration or {}
    minimum = _interval_hours(config.get("delta.deletedFileRetentionDuration", _DEFAULT_RETENTION))
    hours = minimum if retention_hours is None else float(retention_hours)
    check = str(spark.conf.get(_RETENTION_CHECK, "true")).strip().lower() != "false"
    if check and hours < minimum:
        raise DeltaError(
            f"requirement failed: Are you sure you would like to vacuum files with such a low "
            f"retention period? A retention of {hours:g} hours is below the table's "
            f"{minimum:g} hours. If you are certain that no operation is running on this table, "
            f"turn off this check with spark.conf.set('{_RETENTION_CHECK}', 'false'); if you "
            f'are not sure, use a value not less than "{minimum:g} hours".'
        )
    files = rs_table.vacuum(
        retention_hours=math.ceil(hours), dry_run=True, enforce_retention_duration=False
    )
    return sorted(delta_log.data_file_path(location, f)[len(location) + 1 :] for f in files)


def data_file_stats(spark, table: str, columns: list[str]):
    """One row per data file of the table's current version: ``file``, ``num_records`` and, for
    each column ``c`` of ``columns``, ``min_c`` and ``max_c``: the statistics Delta keeps for
    each file in its log, which data skipping compares a query's filters with.

    The embedded engine reads them from the Delta log. Databricks and delta-spark expose no
    per-file statistics through the DataFrame API, so there they are computed from the rows
    of each file (``_metadata.file_path``): the same values, as Delta computes its statistics
    from the same rows.

    Example::

        data_file_stats(spark, "gold.fact_sales", ["customer_sk"]).show()
    """
    from pyspark.sql import functions as F

    if isinstance(columns, str) or not columns:
        raise ValueError("columns must be a non-empty list of column names, e.g. ['customer_sk'].")
    frame = spark.table(table) if not _is_path(table) else spark.read.format("delta").load(table)
    fields = {f.name.lower(): f for f in frame.schema.fields}
    unknown = [c for c in columns if c.lower() not in fields]
    if unknown:
        raise ValueError(
            f"{unknown} not in {table!r}: its columns are {[f.name for f in frame.schema.fields]}."
        )
    resolved = [fields[c.lower()] for c in columns]
    if not runs_embedded(spark):
        return (
            frame.groupBy(F.col("_metadata.file_path").alias("file"))
            .agg(
                F.count(F.lit(1)).alias("num_records"),
                *[
                    agg(F.col(f.name)).alias(f"{prefix}_{f.name}")
                    for f in resolved
                    for prefix, agg in (("min", F.min), ("max", F.max))
                ],
            )
            .orderBy("file")
        )
    from lakehouse.engines.embedded import log as delta_log

    snap = delta_log.snapshot(_embedded_table(spark, table)._location)
    rows = []
    for f in snap.files:
        stats = f.stats or {}
        row = [f.path, stats.get("numRecords")]
        for field in resolved:
            for bound in ("minValues", "maxValues"):
                if field.name in snap.partition_columns:
                    value = f.partition_values.get(field.name)
                else:
                    value = (stats.get(bound) or {}).get(field.name)
                row.append(None if value is None else str(value))
        rows.append(tuple(row))
    ddl = ", ".join(
        ["file string", "num_records long"]
        + [f"`{p}_{f.name}` string" for f in resolved for p in ("min", "max")]
    )
    raw = spark.createDataFrame(rows, ddl)
    return raw.select(
        "file",
        "num_records",
        *[
            F.col(f"`{p}_{f.name}`").cast(f.dataType).alias(f"{p}_{f.name}")
            for f in resolved
            for p in ("min", "max")
        ],
    ).orderBy("file")


def _is_path(table: str) -> bool:
    return "/" in table or "\\" in table or table.startswith("file:")


__all__ = [
    "DeltaTable",
    "add_check_constraint",
    "data_file_stats",
    "drop_check_constraint",
    "set_table_properties",
    "vacuum_dry_run",
]
