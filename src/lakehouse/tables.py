"""``DeltaTable`` for every engine: notebooks import it from here.

On delta-spark and Databricks it hands back the real ``delta.tables.DeltaTable``; on the
embedded engine, the delta-rs-backed table with the same methods. The helpers below cover the
Databricks SQL idioms the embedded engine cannot run as SQL (CHECK constraints).

>>> from lakehouse import DeltaTable                             # doctest: +SKIP
>>> DeltaTable.forName(spark, "silver.customers").history(1)     # doctest: +SKIP
"""

from __future__ import annotations

import re


def _embedded(spark) -> bool:
    """Whether ``spark`` runs the embedded engine (its sessions carry the lake catalog)."""
    from lakehouse.embedded.catalog import catalog_for

    return catalog_for(spark) is not None or getattr(spark, "_lakehouse_engine", None) == "embedded"


def _active(spark):
    if spark is not None:
        return spark
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        from lakehouse.embedded import catalog

        active = catalog._ACTIVE.spark if catalog._ACTIVE is not None else None
    return active


def _implementation(spark):
    if spark is not None and _embedded(spark):
        from lakehouse.embedded.tables import EmbeddedDeltaTable

        return EmbeddedDeltaTable
    try:
        from delta.tables import DeltaTable as RealDeltaTable
    except ImportError:
        raise ImportError(
            "delta.tables is not importable: install delta-spark (pip install delta-spark), "
            "which Databricks runtimes ship, or build the session with "
            "lakehouse.get_spark('embedded')."
        ) from None
    return RealDeltaTable


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
        impl = _implementation(sparkSession)
        if hadoopConf is None:
            return impl.forPath(sparkSession, path)
        return impl.forPath(sparkSession, path, hadoopConf)

    @classmethod
    def forName(cls, sparkSession, tableOrViewName: str):  # noqa: N802,N803
        """The Delta table named ``tableOrViewName``."""
        return _implementation(sparkSession).forName(sparkSession, tableOrViewName)

    @classmethod
    def isDeltaTable(cls, sparkSession, identifier: str) -> bool:  # noqa: N802,N803
        """Whether the path ``identifier`` is the root of a Delta table."""
        return _implementation(sparkSession).isDeltaTable(sparkSession, identifier)

    @classmethod
    def convertToDelta(cls, sparkSession, identifier: str, partitionSchema=None):  # noqa: N802,N803
        """Turn a Parquet folder, ``parquet.`/path```, into a Delta table in place."""
        impl = _implementation(sparkSession)
        if partitionSchema is None:
            return impl.convertToDelta(sparkSession, identifier)
        return impl.convertToDelta(sparkSession, identifier, partitionSchema)

    @classmethod
    def create(cls, sparkSession=None):  # noqa: N803
        """A builder that creates a Delta table, failing if it exists."""
        spark = _active(sparkSession)
        return _implementation(spark).create(spark)

    @classmethod
    def createIfNotExists(cls, sparkSession=None):  # noqa: N802,N803
        """A builder that creates a Delta table unless it exists."""
        spark = _active(sparkSession)
        return _implementation(spark).createIfNotExists(spark)

    @classmethod
    def replace(cls, sparkSession=None):  # noqa: N803
        """A builder that replaces an existing Delta table."""
        spark = _active(sparkSession)
        return _implementation(spark).replace(spark)

    @classmethod
    def createOrReplace(cls, sparkSession=None):  # noqa: N802,N803
        """A builder that creates or replaces a Delta table."""
        spark = _active(sparkSession)
        return _implementation(spark).createOrReplace(spark)


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
    from lakehouse.embedded.tables import EmbeddedDeltaTable

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
    if _embedded(spark):
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
    if _embedded(spark):
        _embedded_table(spark, table).add_check_constraint(name, expression)
        return
    spark.sql(f"ALTER TABLE {_sql_identifier(table)} ADD CONSTRAINT {name} CHECK ({expression})")


def drop_check_constraint(spark, table: str, name: str, *, if_exists: bool = False) -> None:
    """``ALTER TABLE table DROP CONSTRAINT [IF EXISTS] name`` on every engine."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"Constraint name {name!r} is not valid: use letters, digits and underscores."
        )
    if _embedded(spark):
        _embedded_table(spark, table).drop_check_constraint(name, if_exists=if_exists)
        return
    guard = "IF EXISTS " if if_exists else ""
    spark.sql(f"ALTER TABLE {_sql_identifier(table)} DROP CONSTRAINT {guard}{name}")


__all__ = ["DeltaTable", "add_check_constraint", "drop_check_constraint", "set_table_properties"]
