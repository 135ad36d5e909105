"""The real systems at the lakehouse's edges, started by the tests themselves: a Kafka broker
from the pinned jars and a PostgreSQL cluster from the machine's server programs.

Each service runs once per module on free loopback ports, in a folder of the test's own; Spark
reads them through the pinned connector jars in a child process (a classic Spark JVM keeps the
first session's jars), with nothing resolved from the network at session start.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from helpers.spark_child import run_spark_child

from lakehouse.engines.delta_spark import jvm
from lakehouse.services import free_port, free_port_pair, kafka, postgres

KAFKA_JARS = not jvm.missing("kafka")
TIMINGS: dict[str, float] = {}  # start-up times, printed with -s for the record
SPARK_JARS = not jvm.missing("spark")


# =============================================================================== Kafka

needs_kafka_jars = pytest.mark.skipif(
    not KAFKA_JARS, reason="the broker's jars are not in the JVM cache: run scripts/bootstrap"
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if not KAFKA_JARS:
        pytest.skip("the broker's jars are not in the JVM cache: run scripts/bootstrap")
    home = tmp_path_factory.mktemp("kafka")
    server = kafka.Broker(home=home, port=free_port_pair())
    started = time.monotonic()
    server.start()
    TIMINGS["broker start()"] = time.monotonic() - started
    yield server
    server.stop()


@needs_kafka_jars
def test_broker_listens_on_loopback_only_and_keeps_its_files_in_its_folder(broker):
    state = broker.status()
    assert state and state["bootstrap_servers"] == f"127.0.0.1:{broker.port}"
    properties = (broker.home / "server.properties").read_text()
    assert f"listeners=PLAINTEXT://127.0.0.1:{broker.port},CONTROLLER://127.0.0.1:" in properties
    assert "auto.create.topics.enable=false" in properties
    assert (broker.data_dir / "meta.properties").is_file()
    log = broker.log_file.read_text()
    assert kafka.STARTED in log
    chatty = [
        line for line in log.splitlines() if " INFO " in line and "KafkaRaftServer" not in line
    ]
    assert not chatty, f"the broker's log should be quiet: {chatty[:3]}"
    print(
        f"broker ready {state['ready_seconds']} s after launch; start() took "
        f"{TIMINGS['broker start()']:.1f} s, storage format included"
    )


@needs_kafka_jars
def test_starting_a_running_broker_reuses_it(broker):
    pid = broker.status()["pid"]
    assert broker.start() == broker.bootstrap_servers
    assert broker.status()["pid"] == pid
    with kafka.running(broker.port, home=broker.home) as servers:
        assert servers == broker.bootstrap_servers
    assert broker.status(), "running() must not stop a broker it did not start"


@needs_kafka_jars
def test_a_port_in_use_is_named_with_the_variable_that_moves_it(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(kafka.KafkaError, match=rf"Port {port} .*LAKEHOUSE_KAFKA_PORT"):
            kafka.Broker(home=tmp_path, port=port).start()


def test_missing_broker_jars_name_bootstrap(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_JVM_CACHE", str(tmp_path / "empty"))
    with pytest.raises(
        kafka.KafkaError, match=r"org\.apache\.kafka:kafka_2\.13.*scripts/bootstrap"
    ):
        kafka.Broker(home=tmp_path, port=free_port_pair()).start()


def test_missing_java_names_the_fix(tmp_path, monkeypatch):
    import lakehouse.connect_server as connect_server

    monkeypatch.setattr(connect_server, "find_java_home", lambda: None)
    with pytest.raises(kafka.KafkaError, match=r"Java 17.*scripts/bootstrap.*JAVA_HOME"):
        kafka.java_binary()


@needs_kafka_jars
def test_topics_are_created_with_their_partitions_and_never_by_accident(broker):
    servers = broker.bootstrap_servers
    kafka.create_topic("orders", partitions=3, bootstrap_servers=servers)
    kafka.create_topic("orders", partitions=3, bootstrap_servers=servers)  # idempotent
    assert kafka.list_topics(bootstrap_servers=servers)["orders"] == 3
    with pytest.raises(kafka.KafkaError, match="exists with 3 partitions, not 2"):
        kafka.create_topic("orders", partitions=2, bootstrap_servers=servers)
    with pytest.raises(kafka.KafkaError, match=r"'ordres' does not exist.*create_topic"):
        kafka.produce_json("ordres", [{"id": 1}], bootstrap_servers=servers)
    assert "ordres" not in kafka.list_topics(bootstrap_servers=servers)


def test_an_unreachable_broker_says_how_to_start_one():
    port = free_port()
    with pytest.raises(
        kafka.KafkaError, match=rf"No Kafka broker answered at 127.0.0.1:{port}.*make kafka-start"
    ):
        kafka.produce_json(
            "payments", [{"id": 1}], bootstrap_servers=f"127.0.0.1:{port}", timeout=3
        )


@needs_kafka_jars
def test_produce_json_sends_keyed_records_that_keep_their_order_per_key(broker):
    from confluent_kafka import Consumer

    servers = broker.bootstrap_servers
    kafka.create_topic("cards", partitions=2, bootstrap_servers=servers)
    records = [{"card_id": f"card-{i % 3}", "seq": i, "amount": i * 1.5} for i in range(12)]
    assert kafka.produce_json("cards", records, key="card_id", bootstrap_servers=servers) == 12

    consumer = Consumer(
        {"bootstrap.servers": servers, "group.id": "test-cards", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe(["cards"])
    received = []
    deadline = time.monotonic() + 60
    while len(received) < 12 and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is not None and message.error() is None:
            received.append(
                (message.key().decode(), message.partition(), json.loads(message.value()))
            )
    consumer.close()
    assert sorted(r[2]["seq"] for r in received) == list(range(12))
    partitions = {}
    for key, partition, value in received:
        assert value["card_id"] == key
        partitions.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions.values()), "one key, one partition"
    for key in partitions:
        seqs = [v["seq"] for k, _, v in received if k == key]
        assert seqs == sorted(seqs), f"records of {key} out of order: {seqs}"


@pytest.mark.skipif(
    not (KAFKA_JARS and SPARK_JARS), reason="JVM jars not cached: scripts/bootstrap"
)
def test_spark_reads_the_topic_with_the_pinned_connector(broker):
    servers = broker.bootstrap_servers
    kafka.create_topic("payments", partitions=3, bootstrap_servers=servers)
    before = time.time() - 1
    records = [{"card_id": f"card-{i % 4}", "amount": i} for i in range(10)]
    kafka.produce_json("payments", records, key="card_id", bootstrap_servers=servers)
    after = time.time() + 1
    out = run_spark_child(
        f"""
        frame = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", {servers!r})
            .option("subscribe", "payments")
            .option("startingOffsets", "earliest")
            .option("endingOffsets", "latest")
            .load()
        )
        rows = frame.selectExpr(
            "CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value", "topic",
            "partition", "offset", "CAST(timestamp AS DOUBLE) AS ts",
        ).collect()
        print(json.dumps({{
            "packages": packages,
            "schema": [(f.name, f.dataType.simpleString()) for f in frame.schema.fields],
            "rows": [r.asDict() for r in rows],
        }}))
        """,
        {"LAKEHOUSE_LAKE": str(broker.home.parent / "spark-lake")},
    )
    assert out["packages"] == "", "the connector must come from the JVM cache, not be resolved"
    assert [tuple(field) for field in out["schema"][:6]] == [
        ("key", "binary"),
        ("value", "binary"),
        ("topic", "string"),
        ("partition", "int"),
        ("offset", "bigint"),
        ("timestamp", "timestamp"),
    ]
    rows = out["rows"]
    assert sorted(json.loads(r["value"])["amount"] for r in rows) == list(range(10))
    assert all(json.loads(r["value"])["card_id"] == r["key"] for r in rows)
    assert {r["topic"] for r in rows} == {"payments"}
    assert {r["partition"] for r in rows} <= {0, 1, 2}
    by_key = {}
    for r in rows:
        by_key.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(p) == 1 for p in by_key.values()), "one key, one partition"
    for partition in {r["partition"] for r in rows}:
        offsets = sorted(r["offset"] for r in rows if r["partition"] == partition)
        assert offsets == list(range(len(offsets))), f"partition {partition}: {offsets}"
    assert all(before <= r["ts"] <= after for r in rows), "Kafka timestamps are send times"


# =============================================================================== PostgreSQL


def _postgres_missing() -> str | None:
    return postgres.unavailable()


needs_postgres = pytest.mark.skipif(
    _postgres_missing() is not None, reason=str(_postgres_missing())
)


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    if reason := _postgres_missing():
        pytest.skip(reason)
    server = postgres.Server(home=tmp_path_factory.mktemp("postgres"), port=free_port())
    started = time.monotonic()
    server.start()
    server_ready = time.monotonic() - started
    server.psql(
        "CREATE TABLE customers (customer_id int PRIMARY KEY, name text NOT NULL, "
        "updated_at timestamptz NOT NULL DEFAULT now());"
        "INSERT INTO customers (customer_id, name) VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger');"
    )
    print(f"postgres: first start (initdb included) {server_ready:.1f} s")
    yield server
    server.destroy()


@needs_postgres
def test_postgres_runs_on_loopback_with_the_course_user_and_database(pg):
    state = pg.status()
    assert state["jdbc_url"] == f"jdbc:postgresql://127.0.0.1:{pg.port}/lakehouse"
    settings = (pg.data_dir / "lakehouse.conf").read_text()
    assert "listen_addresses = '127.0.0.1'" in settings
    assert pg.psql("SELECT current_user, current_database()").strip() == "lakehouse|lakehouse"
    assert postgres.list_tables(pg.port, home=pg.home) == ["public.customers"]
    if os.geteuid() == 0:
        owner = pwd.getpwuid(pg.data_dir.stat().st_uid).pw_name
        assert owner == postgres.server_os_user(), "as root, the server runs as another user"


@needs_postgres
def test_restarting_postgres_is_quick_and_keeps_the_data(pg):
    assert pg.start() == pg.status()["jdbc_url"]  # running: reused
    pg.stop()
    assert pg.status() is None
    started = time.monotonic()
    pg.start()
    print(f"postgres: restart {time.monotonic() - started:.1f} s")
    assert pg.psql("SELECT count(*) FROM customers").strip() == "3"


@needs_postgres
def test_postgres_port_in_use_names_the_variable(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(postgres.PostgresError, match=rf"Port {port} .*LAKEHOUSE_PG_PORT"):
            postgres.Server(home=tmp_path, port=port).start()


@needs_postgres
def test_psql_errors_name_the_fix(pg):
    with pytest.raises(
        postgres.PostgresError, match=r"refused the password.*LAKEHOUSE_PG_PASSWORD"
    ):
        pg.psql("SELECT 1", password="not-the-password")
    with pytest.raises(postgres.PostgresError, match=r"'nowhere' does not exist.*list_tables"):
        pg.psql("SELECT * FROM nowhere")
    down = postgres.Server(home=pg.home, port=free_port())
    with pytest.raises(
        postgres.PostgresError, match=r"No PostgreSQL server answers.*make pg-start"
    ):
        down.psql("SELECT 1")


@pytest.mark.parametrize(
    ("driver_message", "fix"),
    [
        ('FATAL: password authentication failed for user "lakehouse"', "make pg-stop pg-start"),
        (
            "Connection to 127.0.0.1:54329 refused. Check that the hostname and port",
            "make pg-start",
        ),
        ('ERROR: relation "public.custmers" does not exist', "list_tables"),
        ('FATAL: database "lakehous" does not exist', "make pg-start creates"),
    ],
)
def test_driver_errors_are_explained(driver_message, fix):
    assert fix in str(postgres.explain(f"org.postgresql.util.PSQLException: {driver_message}"))


@pytest.mark.skipif(not SPARK_JARS, reason="JVM jars not cached: run scripts/bootstrap")
@needs_postgres
def test_spark_reads_a_table_through_jdbc_and_bad_input_names_the_fix(pg, tmp_path):
    stopped_port = free_port()
    out = run_spark_child(
        f"""
        from lakehouse.services import postgres
        customers = postgres.read_table(spark, "public.customers", port={pg.port})
        rows = sorted((r.customer_id, r.name) for r in customers.collect())
        plain = spark.read.jdbc(postgres.jdbc_url({pg.port}), "customers",
                                properties=postgres.jdbc_properties())
        errors = {{}}
        cases = {{
            "password": lambda: spark.read.jdbc(postgres.jdbc_url({pg.port}), "customers",
                properties=postgres.jdbc_properties(password="wrong")),
            "down": lambda: postgres.read_table(spark, "customers", port={stopped_port}),
            "table": lambda: postgres.read_table(spark, "public.custmers", port={pg.port}),
        }}
        for name, call in cases.items():
            try:
                call()
                errors[name] = "no error"
            except postgres.PostgresError as exc:
                errors[name] = str(exc)
            except Exception as exc:
                errors[name] = str(postgres.explain(str(exc), port={pg.port}))
        print(json.dumps({{"packages": packages, "rows": rows, "plain": plain.count(),
                          "columns": customers.columns, "errors": errors}}))
        """,
        {"LAKEHOUSE_LAKE": str(tmp_path / "lake")},
    )
    assert out["packages"] == ""
    assert out["rows"] == [[1, "Ada"], [2, "Grace"], [3, "Edsger"]]
    assert out["plain"] == 3
    assert out["columns"] == ["customer_id", "name", "updated_at"]
    errors = out["errors"]
    assert (
        "refused the password" in errors["password"]
        and "LAKEHOUSE_PG_PASSWORD" in errors["password"]
    )
    assert f"127.0.0.1:{stopped_port}" in errors["down"] and "make pg-start" in errors["down"]
    assert "'public.custmers' does not exist" in errors["table"]


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser"),
    reason="proves the non-root path from root (runuser to 'nobody'); as non-root the whole "
    "module already runs it",
)
@needs_postgres
def test_postgres_also_runs_for_a_user_that_is_not_root():
    # /var/tmp: a folder 'nobody' can reach (pytest's own temp folder is private to root)
    home = Path(tempfile.mkdtemp(prefix="lakehouse-pg-nonroot-", dir="/var/tmp"))
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    code = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from lakehouse.services import postgres
        assert postgres.server_os_user() is None  # not root: the server runs as this user
        server = postgres.Server(home=Path({str(home)!r}) / "pg", port={free_port()})
        try:
            server.start()
            print(server.psql("SELECT current_user").strip(), os.geteuid())
        finally:
            server.stop()
        """
    )
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(Path(postgres.__file__).parents[2]), site_packages]),
    }
    # This interpreter may live under /root, which 'nobody' cannot enter: then the system's
    # Python of the same minor version runs the course package and this environment's packages.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        probe = [
            "runuser",
            "-u",
            "nobody",
            "--",
            python,
            "-c",
            "import lakehouse.services.postgres",
        ]
        if (
            Path(python).exists()
            and subprocess.run(probe, env=env, capture_output=True, cwd=home).returncode == 0
        ):
            break
    else:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(
            f"'nobody' can run neither this interpreter nor a system {version} with the course "
            "package (the checkout or the environment is not readable by other users)"
        )
    try:
        result = subprocess.run(
            ["runuser", "-u", "nobody", "--", python, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=home,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.split() == ["lakehouse", str(nobody.pw_uid)]
    finally:
        shutil.rmtree(home, ignore_errors=True)
