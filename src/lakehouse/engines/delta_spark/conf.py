"""How a delta-spark session is configured, classic or a Spark Connect server's: Delta's pinned
jars from the project's cache, Delta's SQL extension and catalog, and table names kept in a Hive
metastore on embedded Derby, one per catalog."""

from __future__ import annotations

from pathlib import Path

from lakehouse.config import SHUFFLE_PARTITIONS, Settings
from lakehouse.engines import EngineUnavailable


def delta_spark_jars() -> list[str]:
    """The pinned Delta jars in the project's JVM cache (``scripts/bootstrap`` fetches them),
    or ``[]`` when any is missing. Reads the disk only."""
    from lakehouse.engines.delta_spark import jvm

    return jvm.jars("spark") if jvm.cached("spark") else []


def metastore_dir(s: Settings) -> Path:
    """Where delta-spark keeps this catalog's Hive metastore (embedded Derby)."""
    return s.catalog_path / "_metastore"


def delta_spark_conf(s: Settings) -> dict[str, str]:
    """The static settings of a delta-spark session, classic or a Spark Connect server's.

    Delta's jars come from the project's cache (``spark.jars``: nothing is resolved, so the
    session starts offline), with Delta's SQL extension and catalog. Table names persist in a
    Hive metastore on embedded Derby under ``<lake>/<catalog>/_metastore``, one per catalog, so
    each learner or test run has its own; managed tables live in ``<lake>/<catalog>/_warehouse``
    and ``DROP TABLE`` deletes their data, as on Databricks."""
    from lakehouse.engines.delta_spark import jvm

    conf = {
        "spark.jars": ",".join(jvm.jars("spark")),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.catalogImplementation": s.metastore,
        # As on Databricks, CREATE TABLE and saveAsTable without USING/format make Delta tables.
        "spark.sql.sources.default": "delta",
        "spark.sql.warehouse.dir": str(s.catalog_path / "_warehouse"),
        # Delta rebuilds a table's state with this many tasks (50 by default): a laptop's
        # two cores spend more time scheduling them than reading a small log.
        "spark.databricks.delta.snapshotPartitions": str(SHUFFLE_PARTITIONS[s.scale]),
    }
    if uses_hive(s):
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
            f"jdbc:derby:;databaseName={metastore_dir(s) / 'metastore_db'};create=true"
        )
    return conf


def uses_hive(s: Settings) -> bool:
    """Whether table names live in the catalog's Hive metastore (``LAKEHOUSE_METASTORE``)."""
    return s.metastore == "hive"


def derby_java_options(s: Settings) -> str:
    """Derby writes its log beside the metastore, not into the notebook's folder."""
    return f"-Dderby.stream.error.file={metastore_dir(s) / 'derby.log'}"


def check_metastore(spark, s: Settings) -> None:
    """Open the catalog's metastore now, so a second Spark process on the same catalog gets a
    message that says what to do instead of Hive's 'Unable to instantiate ...' at its first
    table name."""
    if not uses_hive(s):
        return
    try:
        spark.catalog.listDatabases()
    except Exception as exc:
        if "SessionHiveMetaStoreClient" not in str(exc):
            raise
        spark.stop()
        raise EngineUnavailable(
            f"The metastore of catalog {s.catalog!r} ({metastore_dir(s)}) is in use by another "
            "Spark process: embedded Derby admits one at a time. Stop the other kernel or job, "
            "or give this one its own LAKEHOUSE_CATALOG, or run your notebooks through one Spark "
            "Connect server (make lab does; or make connect-start and "
            "SPARK_REMOTE=sc://localhost:15002)."
        ) from None
