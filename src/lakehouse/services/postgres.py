"""A local PostgreSQL server, the e-commerce system of record that the course extracts from
with ``spark.read.jdbc``: a cluster of its own under ``<lake>/_services/postgres``, on
127.0.0.1 port 54329 (``LAKEHOUSE_PG_PORT``), run with the server programs of the machine's
PostgreSQL (Debian's ``postgresql`` package, which ``scripts/bootstrap`` installs).

The course connects as user ``lakehouse`` to database ``lakehouse``; the password comes from
``LAKEHOUSE_PG_PASSWORD`` (local default ``lakehouse``) and is set on the server at every start,
so the value in force is the one the server was started with. Never write it in a notebook.

PostgreSQL refuses to run as root: when the course runs as root, the server runs as the
``postgres`` OS user (``LAKEHOUSE_PG_OS_USER``) through ``runuser``, and when that user cannot
reach the lake folder (a parent folder such as /root is private), the cluster lives in
``/var/tmp/lakehouse-postgres-<hash>`` instead, noted in ``<lake>/_services/postgres/WHERE``.

Example::

    from lakehouse.services import postgres

    with postgres.running():                  # reuses a running server
        customers = postgres.read_table(spark, "public.customers")
        # the same as spark.read.jdbc(postgres.jdbc_url(), "public.customers",
        #                             properties=postgres.jdbc_properties())

Command line: ``python -m lakehouse.services.postgres start|stop|status|psql``
(``make pg-start``, ``make pg-stop``).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lakehouse.services import (
    ServiceError,
    alive,
    env_port,
    port_open,
    port_taken,
    services_dir,
    tail,
)

DEFAULT_PORT = 54329
PORT_VARIABLE = "LAKEHOUSE_PG_PORT"
PASSWORD_VARIABLE = "LAKEHOUSE_PG_PASSWORD"
DEFAULT_PASSWORD = "lakehouse"  # local only: the server listens on loopback
DEFAULT_USER = "lakehouse"
DEFAULT_DATABASE = "lakehouse"
ADMIN = "postgres"  # the cluster's superuser, used only to create the course's user and database
DRIVER = "org.postgresql.Driver"


class PostgresError(ServiceError):
    """The server could not be started or reached, or refused a request; names the fix."""


# ------------------------------------------------------------------------------ settings


def course_user() -> str:
    return os.environ.get("LAKEHOUSE_PG_USER") or DEFAULT_USER


def course_database() -> str:
    return os.environ.get("LAKEHOUSE_PG_DATABASE") or DEFAULT_DATABASE


def course_password() -> str:
    return os.environ.get(PASSWORD_VARIABLE) or DEFAULT_PASSWORD


def default_port() -> int:
    return env_port(PORT_VARIABLE, DEFAULT_PORT)


def jdbc_url(port: int | None = None, database: str | None = None) -> str:
    """``jdbc:postgresql://127.0.0.1:<port>/<database>`` for ``spark.read.jdbc``."""
    return f"jdbc:postgresql://127.0.0.1:{port or default_port()}/{database or course_database()}"


def jdbc_properties(user: str | None = None, password: str | None = None) -> dict[str, str]:
    """The ``properties`` of ``spark.read.jdbc``: the course user, the password from the
    environment, and the driver class (its jar is in the pinned JVM list)."""
    return {
        "user": user or course_user(),
        "password": password if password is not None else course_password(),
        "driver": DRIVER,
    }


# ------------------------------------------------------------------------------ programs


def bin_dir() -> Path:
    """The folder of ``initdb``, ``pg_ctl`` and ``psql``: ``LAKEHOUSE_PG_BIN``, else the
    newest Debian install (``/usr/lib/postgresql/<version>/bin``), else ``pg_ctl`` on PATH,
    else Homebrew's."""
    if given := os.environ.get("LAKEHOUSE_PG_BIN"):
        folder = Path(given).expanduser()
        if not (folder / "initdb").is_file():
            raise PostgresError(
                f"LAKEHOUSE_PG_BIN={given} has no initdb: point it at the bin folder"
            )
        return folder

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.split("postgresql")[-1])[:2])

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if debian:
        return Path(debian[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).parent / "initdb").exists():
        return Path(os.path.realpath(on_path)).parent
    brew = sorted(
        glob.glob("/opt/homebrew/opt/postgresql*/bin/initdb")
        + glob.glob("/usr/local/opt/postgresql*/bin/initdb"),
        key=version,
    )
    if brew:
        return Path(brew[-1]).parent
    raise PostgresError(
        "PostgreSQL's server programs (initdb, pg_ctl) were not found. Run scripts/bootstrap, "
        "which installs Debian's postgresql package (apt-get install postgresql), or install "
        "PostgreSQL yourself and set LAKEHOUSE_PG_BIN to the folder holding initdb and pg_ctl."
    )


def unavailable() -> str | None:
    """Why this machine cannot run the course's server (its programs are missing), or None."""
    try:
        bin_dir()
    except PostgresError:
        return "PostgreSQL's server programs are not installed: run scripts/bootstrap"
    return None


def server_version() -> str:
    out = subprocess.run(
        [str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True, timeout=30
    ).stdout
    match = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)*)", out)
    return match.group(1) if match else out.strip()


def server_os_user() -> str | None:
    """The OS user the server runs as: None (this one) unless this process is root, which
    PostgreSQL refuses; then ``LAKEHOUSE_PG_OS_USER`` or ``postgres``."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("LAKEHOUSE_PG_OS_USER") or "postgres"
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise PostgresError(
            f"PostgreSQL refuses to run as root, and there is no OS user {name!r} to run it as: "
            "install Debian's postgresql package (it creates the postgres user), create one "
            "(useradd --system postgres), set LAKEHOUSE_PG_OS_USER to another, or run the course "
            "as a normal user."
        ) from None
    if not shutil.which("runuser"):
        raise PostgresError("running the server as another user needs runuser (util-linux)")
    return name


# ------------------------------------------------------------------------------ the server


@dataclass(frozen=True)
class Server:
    """One cluster: the folder it was asked for (``<lake>/_services/postgres``) and its port."""

    home: Path
    port: int

    @classmethod
    def default(cls, port: int | None = None, home: str | os.PathLike | None = None) -> Server:
        return cls(
            home=Path(home).resolve() if home else services_dir() / "postgres",
            port=port or default_port(),
        )

    # ------------------------------------------------------------ where

    @property
    def fallback(self) -> Path:
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"lakehouse-postgres-{digest}"

    @property
    def cluster(self) -> Path:
        """Where the cluster lives: ``home``, or its /var/tmp fallback once one was needed."""
        pointer = self.home / "WHERE"
        if pointer.is_file():
            return Path(pointer.read_text(encoding="utf-8").strip())
        return self.home

    @property
    def data_dir(self) -> Path:
        return self.cluster / "data"

    @property
    def log_file(self) -> Path:
        return self.cluster / "postgres.log"

    @property
    def admin_password_file(self) -> Path:
        return self.cluster / "admin-password"

    # ------------------------------------------------------------ running programs

    def _as_server(self, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        user = server_os_user()
        if user:
            command = ["runuser", "-u", user, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, cwd=self.cluster, timeout=180, **kwargs
        )

    def _own(self, *paths: Path) -> None:
        user = server_os_user()
        if user:
            entry = pwd.getpwnam(user)
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _reachable_by_server(self, folder: Path) -> bool:
        user = server_os_user()
        if not user:
            return True
        probe = subprocess.run(
            ["runuser", "-u", user, "--", "test", "-w", str(folder), "-a", "-x", str(folder)],
            capture_output=True,
        )
        return probe.returncode == 0

    def _prepare_cluster_folder(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if (self.home / "WHERE").is_file():
            self.cluster.mkdir(parents=True, exist_ok=True)
            return
        self._own(self.home)
        if not self._reachable_by_server(self.home):
            # e.g. a lake under /root (mode 700) as root: the postgres user cannot get there
            self.fallback.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.home / "WHERE").write_text(f"{self.fallback}\n", encoding="utf-8")
            self._own(self.fallback)

    def _initdb(self) -> None:
        self._prepare_cluster_folder()
        self.admin_password_file.write_text(secrets.token_urlsafe(24) + "\n", encoding="utf-8")
        self.admin_password_file.chmod(0o600)
        self._own(self.admin_password_file)
        result = self._as_server(
            [
                str(bin_dir() / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                ADMIN,
                "--pwfile",
                str(self.admin_password_file),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
            ]
        )
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise PostgresError(
                f"initdb failed in {self.data_dir} (exit {result.returncode}): "
                f"{(result.stdout + result.stderr).strip()[-1500:]}"
            )
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# The course's settings (port, loopback only): lakehouse.conf\n")
            conf.write("include_if_exists = 'lakehouse.conf'\n")

    def _write_settings(self) -> None:
        settings = self.data_dir / "lakehouse.conf"
        settings.write_text(
            "# Written by lakehouse.services.postgres at every start; edits are overwritten.\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            "unix_socket_directories = ''   # TCP on loopback only: no socket files to place\n"
            "max_connections = 30\n"
            "shared_buffers = 64MB\n"
            "log_min_messages = warning\n"
            "log_line_prefix = '%m [%p] %q%u@%d '\n",
            encoding="utf-8",
        )
        self._own(settings)

    def status(self) -> dict | None:
        """The running server of this cluster and port (pid, port, JDBC URL, log), or None."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if port != self.port or not alive(pid) or not port_open(self.port):
            return None
        return {
            "pid": pid,
            "port": port,
            "jdbc_url": jdbc_url(port),
            "data": str(self.data_dir),
            "log": str(self.log_file),
        }

    def start(self, timeout: float = 60) -> str:
        """Start the server (initialising the cluster the first time), or reuse it when it
        already runs; make sure the course's user and database exist; return the JDBC URL."""
        if self.status():
            return jdbc_url(self.port)
        pg_ctl = str(bin_dir() / "pg_ctl")  # no PostgreSQL: say so before anything else
        if port_taken(self.port):
            raise PostgresError(
                f"Port {self.port} is already in use by another program: stop it, or choose "
                f"another port with {PORT_VARIABLE}=<port>."
            )
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb()
        self._write_settings()
        result = self._as_server(
            [
                pg_ctl,
                "--pgdata",
                str(self.data_dir),
                "--log",
                str(self.log_file),
                "--wait",
                "--timeout",
                str(int(timeout)),
                "start",
            ],
            start_new_session=True,  # the server outlives `make pg-start`
        )
        if result.returncode != 0 or not self.status():
            raise PostgresError(
                f"PostgreSQL did not start on port {self.port} (pg_ctl exit {result.returncode}); "
                f"see {self.log_file}:\n{tail(self.log_file)}"
            )
        self._ensure_course_database()
        return jdbc_url(self.port)

    def stop(self, timeout: float = 60) -> bool:
        """Stop the server (fast shutdown: open sessions are ended); True if it ran."""
        if not self.status():
            return False
        result = self._as_server(
            [
                str(bin_dir() / "pg_ctl"),
                "--pgdata",
                str(self.data_dir),
                "--mode",
                "fast",
                "--wait",
                "--timeout",
                str(int(timeout)),
                "stop",
            ]
        )
        if result.returncode != 0:
            raise PostgresError(f"pg_ctl stop failed: {(result.stdout + result.stderr).strip()}")
        return True

    def destroy(self) -> None:
        """Stop the server and delete its cluster, data and all (``start`` makes a new one)."""
        self.stop()
        shutil.rmtree(self.cluster, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)

    # ------------------------------------------------------------ SQL

    def psql(
        self,
        script: str,
        *,
        admin: bool = False,
        database: str | None = None,
        password: str | None = None,
        timeout: float = 120,
    ) -> str:
        """Run ``script`` with psql over TCP, as the course user (or the cluster's superuser
        with ``admin``); return what it printed (unaligned, tuples only). Stops at the first
        error, raising :class:`PostgresError` with PostgreSQL's message."""
        if admin:
            user = ADMIN
            password = self.admin_password_file.read_text(encoding="utf-8").strip()
            database = database or "postgres"
        else:
            user = course_user()
            password = password if password is not None else course_password()
            database = database or course_database()
        env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
        env.pop("PGSERVICE", None)
        command = [
            str(bin_dir() / "psql"),
            "--no-psqlrc",
            "--quiet",
            "--tuples-only",
            "--no-align",
            "--set=ON_ERROR_STOP=1",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--username={user}",
            f"--dbname={database}",
        ]
        result = subprocess.run(
            command, input=script, capture_output=True, text=True, env=env, timeout=timeout
        )
        if result.returncode != 0:
            raise explain(result.stderr.strip(), port=self.port, user=user, database=database)
        return result.stdout

    def _ensure_course_database(self) -> None:
        user, database = course_user(), course_database()
        script = (
            f"\\set user {_psql_literal(user)}\n"
            f"\\set password {_psql_literal(course_password())}\n"
            f"\\set database {_psql_literal(database)}\n"
            "SELECT format('CREATE ROLE %I LOGIN', :'user') "
            "WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \\gexec\n"
            "SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'user', :'password') \\gexec\n"
            "SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'user') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \\gexec\n"
        )
        self.psql(script, admin=True)


def _psql_literal(value: str) -> str:
    # psql's \set: single-quoted, a quote doubled, a backslash escaped
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


# ------------------------------------------------------------------------------ errors


def explain(
    message: str,
    *,
    port: int | None = None,
    user: str | None = None,
    database: str | None = None,
    table: str | None = None,
) -> PostgresError:
    """A :class:`PostgresError` that says what to fix, from a driver's or psql's message."""
    port = port or default_port()
    user = user or course_user()
    database = database or course_database()
    first = next((line.strip() for line in message.splitlines() if line.strip()), message)
    if "password authentication failed" in message:
        return PostgresError(
            f"PostgreSQL refused the password of user {user!r} at 127.0.0.1:{port}. The server "
            f"takes the {PASSWORD_VARIABLE} it was started with (local default "
            f"{DEFAULT_PASSWORD!r}): set the same value in this process, or restart the server "
            f"with yours (make pg-stop pg-start)."
        )
    if re.search(
        r"refused|Connection refused|could not connect|Connection to \S+ refused", message
    ):
        return PostgresError(
            f"No PostgreSQL server answers at 127.0.0.1:{port}: start it with make pg-start "
            f"(or lakehouse.services.postgres.running()), or check {PORT_VARIABLE}."
        )
    if match := re.search(r'relation "([^"]+)" does not exist', message):
        missing = table or match.group(1)
        return PostgresError(
            f"Table {missing!r} does not exist in database {database!r}: check its name and "
            "schema (e.g. public.customers); list_tables() shows the tables there. Load the "
            "system of record first if it is empty."
        )
    if match := re.search(r'database "([^"]+)" does not exist', message):
        return PostgresError(
            f"Database {match.group(1)!r} does not exist: make pg-start creates the course's "
            f"database ({DEFAULT_DATABASE!r}, or LAKEHOUSE_PG_DATABASE)."
        )
    return PostgresError(f"PostgreSQL error: {first}")


def connect(port: int | None = None, *, password: str | None = None, **kwargs):
    """A psycopg connection to the course database as the course user (``with connect() as
    conn:`` commits at the end of the block); a wrong password or a server that is down raise
    :class:`PostgresError` saying what to fix."""
    import psycopg

    port = port or default_port()
    try:
        return psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=course_user(),
            password=password if password is not None else course_password(),
            dbname=course_database(),
            connect_timeout=10,
            **kwargs,
        )
    except psycopg.OperationalError as exc:
        raise explain(str(exc), port=port) from None


def read_table(spark, table: str, *, port: int | None = None, **options):
    """``spark.read.jdbc`` of ``table`` from the course database, with the course's
    credentials; options (``partitionColumn``, ``numPartitions``, ``fetchsize`` ...) pass
    through. A wrong password, a server that is down or a missing table raise
    :class:`PostgresError` saying what to fix."""
    properties = {**jdbc_properties(), **{k: str(v) for k, v in options.items()}}
    try:
        return spark.read.jdbc(jdbc_url(port), table, properties=properties)
    except Exception as exc:
        text = str(exc)
        if "org.postgresql" in text or "PSQLException" in text or "Connection" in text:
            raise explain(text, port=port, table=table) from None
        raise


# ------------------------------------------------------------------------------ module API


def start(port: int | None = None, *, home: str | os.PathLike | None = None, timeout=60) -> str:
    """Start the course's server (or reuse it) and return its JDBC URL."""
    return Server.default(port, home).start(timeout)


def answering(port: int | None = None) -> bool:
    """Whether a server listens at 127.0.0.1:``port`` (default ``LAKEHOUSE_PG_PORT`` or 54329),
    wherever its cluster lives: ``make pg-start``'s, or one a test suite started elsewhere."""
    return port_open(port or default_port())


def stop(port: int | None = None, *, home: str | os.PathLike | None = None) -> bool:
    """Stop the course's server; True if one was running."""
    return Server.default(port, home).stop()


def status(port: int | None = None, *, home: str | os.PathLike | None = None) -> dict | None:
    """The running server's pid, port, JDBC URL, data folder and log, or None."""
    return Server.default(port, home).status()


def list_tables(port: int | None = None, *, home: str | os.PathLike | None = None) -> list[str]:
    """``schema.table`` of every table in the course database."""
    out = Server.default(port, home).psql(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
    )
    return [line for line in out.splitlines() if line]


@contextmanager
def running(
    port: int | None = None, *, home: str | os.PathLike | None = None, timeout: float = 60
) -> Iterator[Server]:
    """A server for the block; yields it (``.port``, ``.psql()``). A server that was
    already running is reused and left running; one started here is stopped at the end."""
    server = Server.default(port, home)
    was_running = server.status() is not None
    server.start(timeout)
    try:
        yield server
    finally:
        if not was_running:
            server.stop()


def _environment_summary(server: Server) -> Mapping[str, str]:
    return {
        "JDBC URL": jdbc_url(server.port),
        "user": course_user(),
        "password": f"${PASSWORD_VARIABLE}"
        + ("" if os.environ.get(PASSWORD_VARIABLE) else f" (unset: {DEFAULT_PASSWORD!r})"),
        "data": str(server.data_dir),
        "log": str(server.log_file),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.services.postgres", description="The course's PostgreSQL."
    )
    parser.add_argument("command", choices=["start", "stop", "status", "psql"])
    parser.add_argument("--port", type=int, default=None, help=f"default ${PORT_VARIABLE} or 54329")
    parser.add_argument("sql", nargs="?", help="for psql: the SQL to run")
    args = parser.parse_args(argv)
    server = Server.default(args.port)
    try:
        if args.command == "start":
            was_running = server.status() is not None
            started = time.monotonic()
            server.start()
            how = (
                "already running"
                if was_running
                else f"ready in {time.monotonic() - started:.1f} s (PostgreSQL {server_version()})"
            )
            print(f"PostgreSQL {how}")
            for name, value in _environment_summary(server).items():
                print(f"{name}: {value}")
        elif args.command == "stop":
            print("stopped" if server.stop() else f"no server of ours on port {server.port}")
        elif args.command == "status":
            state = server.status()
            if not state:
                print(f"not running on port {server.port}")
                return 3
            print(f"running: {state['jdbc_url']} (pid {state['pid']}, log {state['log']})")
        else:
            print(server.psql(args.sql or sys.stdin.read()), end="")
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
