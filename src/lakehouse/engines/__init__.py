"""The engines the course runs on, side by side, and the contract they share.

===============  =================================================================================
engine           what it is, and where its code lives
===============  =================================================================================
``embedded``     local PySpark, Delta Lake provided by delta-rs: a Python data source for
                 ``format("delta")``, the lake folder as catalog, ``DeltaTable`` over Spark and
                 delta-rs; no JVM jars to fetch. ``lakehouse.engines.embedded``
``delta-spark``  local PySpark with Delta Lake's own jars, pinned and fetched once into ``.jvm/``,
                 a Derby metastore per catalog; through Spark Connect, ``DeltaTable`` runs as
                 Delta SQL. ``lakehouse.engines.delta_spark``
``databricks``   a Databricks runtime, or Databricks Connect from a laptop: Delta as Databricks
                 ships it. No package: ``lakehouse.session`` asks Databricks for the session
===============  =================================================================================

Every engine fills the same contract: ``lakehouse.get_spark`` builds its session
(``lakehouse.session``), :func:`engine_of` recognises it, ``lakehouse.DeltaTable`` hands each
call to the engine's table class (:func:`delta_table_class`), which has delta-spark's methods,
and an engine that cannot start raises :class:`EngineUnavailable` saying what is missing. The
``auto`` engine becomes one of the three through :func:`resolve_engine`.
"""

from __future__ import annotations

import os
from pathlib import Path

ENGINES = ("embedded", "delta-spark", "databricks")


class EngineUnavailable(RuntimeError):
    """The engine asked for cannot start on this machine; the message says what is missing."""


def on_databricks_runtime() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def databricks_connect_configured() -> bool:
    """Databricks Connect is installed and pointed at a workspace (no network call)."""
    try:
        import databricks.connect  # noqa: F401
    except ImportError:
        return False
    if os.environ.get("DATABRICKS_HOST") or os.environ.get("DATABRICKS_CONFIG_PROFILE"):
        return True
    return Path("~/.databrickscfg").expanduser().is_file()


def resolve_engine(engine: str) -> str:
    """``auto`` becomes databricks (running there or configured), delta-spark (its pinned jars
    are in the project's cache), else embedded. Never touches the network."""
    if engine != "auto":
        return engine
    if on_databricks_runtime() or databricks_connect_configured():
        return "databricks"
    # Imported here: conf.py imports this module (EngineUnavailable).
    from lakehouse.engines.delta_spark.conf import delta_spark_jars

    if delta_spark_jars():
        return "delta-spark"
    return "embedded"


def engine_of(spark) -> str:
    """The engine a session was built for. A session not built by :func:`get_spark` -- the
    one a ``foreachBatch`` function receives, say -- is recognised by its settings: Databricks
    by its runtime, delta-spark by Delta's SQL extension, else embedded."""
    engine = getattr(spark, "_lakehouse_engine", None)
    if engine:
        return engine
    if on_databricks_runtime():
        return "databricks"
    try:
        extensions = spark.conf.get("spark.sql.extensions", "") or ""
    except Exception:  # a stopped session, or a mock in a test
        extensions = ""
    engine = "delta-spark" if "DeltaSparkSessionExtension" in extensions else "embedded"
    try:
        spark._lakehouse_engine = engine
    except AttributeError:
        pass
    return engine


def runs_embedded(spark) -> bool:
    """Whether ``spark`` runs the embedded engine (its sessions carry the lake catalog)."""
    from lakehouse.engines.embedded.catalog import catalog_for

    return catalog_for(spark) is not None or getattr(spark, "_lakehouse_engine", None) == "embedded"


def is_connect(spark) -> bool:
    """Whether ``spark`` is a Spark Connect session (a remote one, or Databricks Connect)."""
    try:
        from pyspark.sql.connect.session import SparkSession as ConnectSession
    except ImportError:
        return False
    return isinstance(spark, ConnectSession)


def delta_table_class(spark):
    """The ``DeltaTable`` class of ``spark``'s engine, which ``lakehouse.DeltaTable`` hands the
    call to: ``EmbeddedDeltaTable`` on embedded, ``SqlDeltaTable`` through a Spark Connect
    server on delta-spark, else the real ``delta.tables.DeltaTable``."""
    if spark is not None and runs_embedded(spark):
        from lakehouse.engines.embedded.table import EmbeddedDeltaTable

        return EmbeddedDeltaTable
    if spark is not None and is_connect(spark):
        if engine_of(spark) == "delta-spark":
            # The local Spark Connect server runs Delta without Delta Connect's plugin (its
            # artifact is not served here): the same methods, as the Delta SQL they stand for.
            from lakehouse.engines.delta_spark.sql_table import SqlDeltaTable

            return SqlDeltaTable
    try:
        from delta.tables import DeltaTable as RealDeltaTable
    except ImportError:
        raise ImportError(
            "delta.tables is not importable: install delta-spark (pip install delta-spark), "
            "which Databricks runtimes ship, or build the session with "
            "lakehouse.get_spark('embedded')."
        ) from None
    return RealDeltaTable
