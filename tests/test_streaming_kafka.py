"""The payment stream through a real Kafka broker into Bronze and Silver, on delta-spark.

One child process (a classic JVM keeps its first session's jars, and this pytest process may
hold an embedded one) runs the whole story against a broker of this module's own and prints
what it saw as JSON; the tests judge it:

- the simulator publishes the stream once, keyed by customer, and a second publish adds nothing;
- Bronze lands every message once with its topic, partition and offset; Silver equals the
  simulator's truth; a rerun commits nothing;
- a message that is not JSON, and one without a value, reach the quarantine with their reason,
  and the counts still add up;
- a batch replayed after a crash (planned, written, not committed) lands once;
- consumer lag: the broker's end offsets minus what the checkpoint committed is zero once Bronze
  caught up, and counts the messages it has not read;
- bad input: an unknown topic, a broker that does not answer, a switch of source without a reset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from lakehouse.engines.delta_spark import jvm
from lakehouse.services import free_port, free_port_pair, kafka

pytestmark = pytest.mark.skipif(
    jvm.missing("spark") or jvm.missing("kafka"),
    reason="Delta's, the Kafka connector's or the broker's jars are not cached: run "
    "scripts/bootstrap",
)

STREAM = {"events": 300, "files": 3, "span_minutes": 20, "scenarios": False}
TOPIC = "payment_events"  # lakehouse.streaming.TOPIC, on this module's own broker

CHILD = """
import json, sys
from pathlib import Path

from lakehouse import DeltaTable, get_spark, streaming
from lakehouse.services import kafka
from lakehouse.streaming import operations, pipeline as p, simulator

from pyspark.sql import functions as F

work, servers, topic = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
assert kafka.bootstrap_servers() == servers  # LAKEHOUSE_KAFKA_PORT: the defaults find it
spark = get_spark("delta-spark", scale="tiny")
out = {}

def versions():
    return {
        t: DeltaTable.forName(spark, t).history(1).select("version").first()[0]
        for t in (streaming.BRONZE, streaming.SILVER, streaming.QUARANTINE)
    }

def error(call):
    try:
        call()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None

config = simulator.SimulatorConfig(**json.loads(sys.argv[4]))
report = simulator.write_files(work / "staging", config)
out["lines"] = report.lines
out["chosen"] = p.choose_source(spark, bootstrap_servers=servers)
out["published"] = [
    simulator.publish_once(report, topic=topic, bootstrap_servers=servers) for _ in range(2)
]
out["end_offsets"] = kafka.end_offsets(topic, bootstrap_servers=servers)
no_history = spark.createDataFrame([], p.PROFILE_SCHEMA)

def run():
    p.run_streams(spark, source="kafka", profiles_df=no_history)

run()
out["counts"] = p.reconcile(spark, report)
out["truth"] = p.check_against_truth(
    spark.table(streaming.SILVER), simulator.expected_events(report)
)
bronze = spark.table(streaming.BRONZE)
out["addresses"] = bronze.select("_kafka_partition", "_kafka_offset").distinct().count()
out["bronze_rows"] = bronze.count()
out["lineage_nulls"] = bronze.where(
    "_kafka_topic IS NULL OR _kafka_timestamp IS NULL OR _source_file IS NOT NULL"
).count()
keys = {
    r.customer_id: r.partitions
    for r in bronze.where("customer_id IS NOT NULL")
    .groupBy("customer_id").agg(F.count_distinct("_kafka_partition").alias("partitions"))
    .collect()
}
out["max_partitions_per_customer"] = max(keys.values())
checkpoint = streaming.checkpoint(spark, "bronze")
out["lag_caught_up"] = kafka.consumer_lag(
    operations.committed_offsets(checkpoint, topic), topic, bootstrap_servers=servers
)

before = versions()
run()
out["rerun_changed"] = versions() != before

# A crash after Bronze's last batch was planned and written, before the checkpoint recorded
# it: the restart replays that batch (its offsets are in offsets/, not in commits/). The Delta
# sink knows the batch id and writes nothing twice; the Kafka source must not fail reporting it.
last = max(int(f.name) for f in (Path(checkpoint) / "commits").iterdir() if f.name.isdigit())
for name in (str(last), f".{last}.crc"):  # the commit and its checksum never got written
    (Path(checkpoint) / "commits" / name).unlink(missing_ok=True)
out["replayed_error"] = error(run)
out["replayed_changed"] = versions() != before
out["replayed_rows"] = spark.table(streaming.BRONZE).count()

# A producer bug: a value that is not JSON, and a message without a value.
producer = kafka.producer(servers)
producer.produce(topic, value=b"<payment>not json</payment>", key=b"C000001")
producer.produce(topic, value=None, key=b"C000002")
producer.flush(30)
out["lag_behind"] = kafka.consumer_lag(
    operations.committed_offsets(checkpoint, topic), topic, bootstrap_servers=servers
)
run()
out["counts_after_bad"] = p.reconcile(spark, report.lines + 2)
out["bad_reasons"] = [
    (r._corrupt_record, list(r._validation_errors))
    for r in spark.table(streaming.QUARANTINE)
    .where("_corrupt_record IS NOT NULL AND _kafka_offset IS NOT NULL")
    .orderBy("_kafka_timestamp", "_kafka_offset").collect()
    if r._corrupt_record in ("<payment>not json</payment>", "")
]

out["unknown_topic"] = error(
    lambda: p.read_kafka(spark, bootstrap_servers=servers, topic="paymnts")
)
dead = f"127.0.0.1:{sys.argv[5]}"
out["no_broker"] = error(lambda: p.choose_source(spark, "kafka", bootstrap_servers=dead))
out["no_broker_auto"] = error(lambda: p.choose_source(spark, "auto", bootstrap_servers=dead))
out["switch"] = error(lambda: p.start_bronze(spark, source="files"))
print(json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    port = free_port_pair()
    with kafka.running(port, home=tmp_path_factory.mktemp("kafka")) as servers:
        yield port, servers


@pytest.fixture(scope="module")
def story(tmp_path_factory, broker):
    work = tmp_path_factory.mktemp("kafka_story")
    port, servers = broker
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    env.update(
        LAKEHOUSE_LAKE=str(work / "lake"),
        LAKEHOUSE_CATALOG="kafka_story",
        LAKEHOUSE_ENGINE="delta-spark",
        LAKEHOUSE_METASTORE="in-memory",
        LAKEHOUSE_KAFKA_PORT=str(port),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(CHILD),
            str(work),
            servers,
            TOPIC,
            json.dumps(STREAM),
            str(free_port()),
        ],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_stream_is_published_once_keyed_by_customer(story):
    assert story["chosen"][0] == "kafka"
    assert story["published"] == [story["lines"], story["lines"]]
    assert sum(story["end_offsets"].values()) == story["lines"]
    assert len(story["end_offsets"]) == 4
    # one customer's payments stay in one partition, in order
    assert story["max_partitions_per_customer"] == 1


def test_bronze_lands_every_message_once_with_its_address(story):
    assert story["bronze_rows"] == story["addresses"] == story["lines"]
    assert story["lineage_nulls"] == 0
    counts = story["counts"]
    assert counts["landed_lines"] == counts["bronze_rows"] == story["lines"]
    assert counts["quarantined_rows"] > 0 and counts["duplicates_removed"] > 0
    assert story["truth"] == counts["silver_rows"]
    assert not story["rerun_changed"], "a rerun without new messages committed a new version"


def test_a_batch_replayed_after_a_crash_lands_once_and_the_query_goes_on(story):
    # Spark's Kafka connector before 4.1.3 fails here (SPARK-57438): the replayed batch lands,
    # then the progress report throws a NullPointerException.
    assert story["replayed_error"] is None, story["replayed_error"]
    assert story["replayed_rows"] == story["lines"]
    assert not story["replayed_changed"], "the replayed batch was written to Bronze again"


def test_consumer_lag_is_what_the_checkpoint_has_not_committed(story):
    assert set(story["lag_caught_up"].values()) == {0}
    assert sum(story["lag_behind"].values()) == 2


def test_malformed_messages_are_quarantined_with_their_reason(story):
    from lakehouse.streaming import pipeline

    after = story["counts_after_bad"]
    assert after["bronze_rows"] == story["lines"] + 2
    assert after["quarantined_rows"] == story["counts"]["quarantined_rows"] + 2
    assert after["silver_rows"] == story["counts"]["silver_rows"]
    assert sorted(story["bad_reasons"]) == sorted(
        [
            ["<payment>not json</payment>", [pipeline.UNPARSED_REASON]],
            ["", [pipeline.UNPARSED_REASON]],
        ]
    )


def test_bad_input_names_the_fix(story):
    assert "Topic 'paymnts' does not exist" in story["unknown_topic"]
    assert "list_topics" in story["unknown_topic"]
    assert "no Kafka broker answers" in story["no_broker"]
    assert "make kafka-start" in story["no_broker"]
    # auto falls back to the files only for a new Bronze table: this one streams from Kafka,
    # and its checkpoint holds offsets, so the broker must come back (or Bronze be reset)
    assert "cannot stream from Kafka: no Kafka broker answers" in story["no_broker_auto"]
    assert "streams from kafka" in story["switch"] and "reset" in story["switch"]


def test_the_simulator_command_produces_a_live_stream_file_by_file(broker, tmp_path, capsys):
    from lakehouse.streaming import simulator

    _, servers = broker
    code = simulator.main(
        [
            "--landing", str(tmp_path / "landing"), "--events", "400", "--files", "4",
            "--rate", "2000", "--no-scenarios", "--kafka", servers, "--topic", "cli_stream",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = simulator.SimulationReport.load(tmp_path / "landing")
    offsets = kafka.end_offsets("cli_stream", bootstrap_servers=servers)
    assert sum(offsets.values()) == report.lines
    assert f"published {report.lines} messages" in capsys.readouterr().out


def test_the_simulator_command_without_a_broker_names_the_fix(tmp_path, capsys):
    from lakehouse.streaming import simulator

    dead = f"127.0.0.1:{free_port()}"
    code = simulator.main(["--landing", str(tmp_path), "--max-rate", "--kafka", dead])
    assert code == 1
    assert "make kafka-start" in capsys.readouterr().err
