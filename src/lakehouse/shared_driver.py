"""One Spark driver for a sequence of classic notebooks, the way the notebooks attached to a
Databricks cluster share its driver.

A classic PySpark kernel starts a driver JVM of its own: 10-20 s before its first cell runs, and
its first queries run on a cold JVM (class loading, the JIT, Spark's code generation). Running the
course's lessons one after another, that start-up is paid again by each lesson. :func:`running`
starts one host process that builds the course's session (``get_spark``) and keeps its driver up;
kernels started with the environment it returns attach to that driver through PySpark's own
``PYSPARK_GATEWAY_PORT``/``PYSPARK_GATEWAY_SECRET`` (the mechanism ``spark-submit`` uses to hand
its JVM to a Python program), and ``get_spark`` then gives each a session of its own
(``SparkSession.newSession``: own SQL settings, temporary views and current schema; shared
tables, cache and driver), as each notebook on a cluster has.

The host and every kernel attached to it must share one environment (lake, catalog, engine,
scale): the driver's static settings are the host's. Kernels attach one at a time in the course's
tests and runs; a kernel must not stop the session (``spark.stop()`` would stop the driver for
the next ones).

    python -m lakehouse.shared_driver    # prints "<port> <secret>", serves until stdin closes
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from lakehouse.services import tail

PORT_VARIABLE = "PYSPARK_GATEWAY_PORT"
SECRET_VARIABLE = "PYSPARK_GATEWAY_SECRET"
START_TIMEOUT_S = 300


class SharedDriverError(RuntimeError):
    """The shared driver did not start; the message carries the end of its log."""


@contextmanager
def running(env: Mapping[str, str | None], log: str | Path) -> Iterator[dict[str, str]]:
    """Start a host process with ``env`` (on top of this process's environment) and yield the
    variables that attach a kernel to its driver; stop it on exit. Its output goes to ``log``."""
    host_env = {**os.environ, **{k: v for k, v in env.items() if v is not None}}
    for key in (PORT_VARIABLE, SECRET_VARIABLE, "SPARK_REMOTE"):
        host_env.pop(key, None)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.shared_driver"],
            env=host_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,
        )
    try:
        port, secret = _read_address(process, log)
        yield {PORT_VARIABLE: port, SECRET_VARIABLE: secret}
    finally:
        _stop(process)


@contextmanager
def for_kernels(log: str | Path) -> Iterator[dict[str, str]]:
    """:func:`running` with this process's environment, yielding the variables that attach a
    kernel to it; through Spark Connect (``SPARK_REMOTE``) or on Databricks there is no local
    driver to share, and it yields no variables."""
    if os.environ.get("SPARK_REMOTE") or os.environ.get("LAKEHOUSE_ENGINE") == "databricks":
        yield {}
        return
    with running({}, log) as attach:
        yield attach


def _read_address(process: subprocess.Popen, log: str | Path) -> tuple[str, str]:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    ready = selector.select(timeout=START_TIMEOUT_S)
    line = process.stdout.readline().decode().split() if ready else []
    if len(line) != 2:
        _stop(process)
        raise SharedDriverError(
            f"the shared Spark driver did not start within {START_TIMEOUT_S} s "
            f"(exit code {process.poll()}); its log, {log}, ends with:\n{tail(Path(log), 40)}"
        )
    return line[0], line[1]


def _stop(process: subprocess.Popen) -> None:
    """Close the host's stdin (it then exits, and its JVM with it); kill the group if it hangs."""
    try:
        process.stdin.close()
    except OSError:
        pass
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    process.stdout.close()


def attach(runtime_conf: Mapping[str, str]):
    """A session of its own on the driver named by ``PYSPARK_GATEWAY_PORT``, or None when that
    driver has no session yet (a JVM that ``spark-submit`` started for this program: the usual
    ``getOrCreate`` then builds the first one) or this process already has one."""
    from py4j.protocol import Py4JError
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    if PORT_VARIABLE not in os.environ or SparkContext._active_spark_context is not None:
        return None
    try:
        gateway = launch_gateway()
        default = gateway.jvm.org.apache.spark.sql.SparkSession.getDefaultSession()
    except (OSError, Py4JError) as exc:
        raise SharedDriverError(
            f"no Spark driver answers at {PORT_VARIABLE}={os.environ[PORT_VARIABLE]} ({exc}): "
            f"the process that shared it has stopped. Unset {PORT_VARIABLE} and "
            f"{SECRET_VARIABLE} for a driver of this kernel's own."
        ) from None
    if default.isEmpty():
        gateway.close()
        return None
    host_session = default.get()
    jsc = gateway.jvm.org.apache.spark.api.java.JavaSparkContext(host_session.sparkContext())
    sc = SparkContext(gateway=gateway, jsc=jsc)
    spark = SparkSession(sc, jsparkSession=host_session.newSession())
    for key, value in runtime_conf.items():
        spark.conf.set(key, value)
    return spark


def _serve() -> None:
    from lakehouse.session import get_spark

    spark = get_spark(app_name="lakehouse-shared-driver")
    parameters = spark.sparkContext._gateway.java_parameters
    print(parameters.port, parameters.auth_token, flush=True)
    sys.stdin.read()  # until the parent closes the pipe


if __name__ == "__main__":
    _serve()
