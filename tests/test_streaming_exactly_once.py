"""Exactly-once from the source to Gold: for a fixed simulated stream, the Gold aggregates equal a
batch computation over the same events, after any number of kill/restart cycles.

Two sources, one test each: the landing folder (embedded engine, the checkpoint lists the files
read) and a real Kafka topic (delta-spark with the Kafka connector and a broker of the test's
own; the checkpoint holds the offsets read per partition).

A child process runs the whole chain (source -> bronze.payment_events -> silver.payment_events
-> gold.payment_risk_windows, with processing-time triggers and small Bronze micro-batches: one
file, or 50 messages) while the simulator keeps producing. The test kills the child's process
group with SIGKILL three times, at three moments:

1. anywhere, once Gold has taken a few micro-batches;
2. while a Gold MERGE is in flight (its data files written, not yet committed), if the test
   catches one;
3. after a Gold MERGE committed but before the stream's checkpoint recorded the batch, the
   moment that makes a non-idempotent foreachBatch count a batch twice, if the test catches it.

Then a last child runs each stream with ``availableNow`` to completion, twice. The parent judges
with delta-rs and plain Python alone: Silver holds each valid event once, and Gold equals the
windows computed in Python from ``simulator.expected_events`` (not from Silver).

Run the child by hand: ``python tests/test_streaming_exactly_once.py run LANDING processing files``
(``kafka`` instead of ``files`` reads the broker at ``LAKEHOUSE_KAFKA_PORT``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import processes
from helpers.processes import commits, errors_of, kill, spawn

pytestmark = pytest.mark.reliability

CATALOG = "exactly_once"
START_TIMEOUT = 300  # Spark and the customer profiles, on a busy 2-core machine
WINDOW = timedelta(minutes=5)
# A smaller stream than the lessons' (4,000 events in 20 files): the same defects and
# scenarios, fewer micro-batches to wait for.
STREAM = {"events": 1_200, "files": 24, "span_minutes": 30}
RATE = 20  # events per second: a new file every 2.5 s, for a minute, through the kills


# ------------------------------------------------------------------------------------------------
# The child: the chain of streams in one Spark session
# ------------------------------------------------------------------------------------------------
SOURCES = ("files", "kafka")
ENGINES = {"files": "embedded", "kafka": "delta-spark"}
# Bronze micro-batches of one file, or of as many messages as a file has lines.
BRONZE_OPTIONS = {"files": {"maxFilesPerTrigger": "1"}, "kafka": {"maxOffsetsPerTrigger": "50"}}


def child_run(landing: str, mode: str, source: str) -> None:
    from lakehouse import get_spark
    from lakehouse.streaming import BRONZE, RISK_WINDOWS, SILVER, pipeline, upsert

    spark = get_spark(ENGINES[source], scale="tiny", app_name="exactly-once-child")

    def register(table: str) -> None:
        # The embedded engine's catalog binds a table's schema at first sight: a table a stream
        # created is registered again to be read by name. Delta's catalog needs nothing.
        if ENGINES[source] == "embedded":
            from lakehouse.engines.embedded.catalog import catalog_for

            catalog_for(spark).register(table)

    # No customer profiles: the batch history they come from is another lesson's data, and
    # what this test judges (ids, counts, sums, maxima) does not depend on them.
    profiles_df = spark.createDataFrame([], pipeline.PROFILE_SCHEMA)
    if mode == "processing":
        trigger = {"processingTime": "1 second"}
        bronze = pipeline.start_bronze(
            spark, source=source, landing=landing, trigger=trigger, **BRONZE_OPTIONS[source]
        )
        queries = [settled(bronze)]
        queries.append(settled(start_silver(spark, profiles_df, trigger)))
        # Gold reads Silver by name: wait for Silver's first micro-batch to create it.
        while not spark.catalog.tableExists(SILVER):
            time.sleep(0.2)
        register(SILVER)
        queries.append(settled(upsert.start_risk_windows(spark, trigger=trigger)))
        print(json.dumps({"started": [q.name for q in queries]}), flush=True)
        spark.streams.awaitAnyTermination()  # until killed; raises if a query failed
        stopped = [q.name for q in queries if not q.isActive]
        raise SystemExit(f"queries stopped by themselves: {stopped}")
    versions = []
    for _ in range(2):  # the second run must find nothing to do
        pipeline.await_all([pipeline.start_bronze(spark, source=source, landing=landing)])
        pipeline.await_all([start_silver(spark, profiles_df, {"availableNow": True})])
        register(SILVER)
        pipeline.await_all([upsert.start_risk_windows(spark)])
        versions.append({name: _version(spark, name) for name in (BRONZE, SILVER, RISK_WINDOWS)})
    print(json.dumps({"versions": versions}), flush=True)


def start_silver(spark, profiles_df, trigger):
    """Silver as ``pipeline.start_silver`` starts it (same transformation, checkpoint and
    name), without the quarantine query beside it: it does not feed Gold, and one query
    fewer starting at once matters on a busy machine."""
    from lakehouse.streaming import BRONZE, SILVER, checkpoint, pipeline

    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {SILVER.split('.')[0]}")
    return (
        spark.readStream.table(BRONZE)
        .transform(pipeline.silver_events(profiles_df))
        .writeStream.format("delta")
        .queryName("payments_silver")
        .outputMode("append")
        .option("checkpointLocation", checkpoint(spark, "silver"))
        .trigger(**trigger)
        .toTable(SILVER)
    )


def settled(query, timeout: float = 120):
    """Wait until ``query`` has initialised its sources: starting the queries one after the
    other keeps a busy machine from starting all their Python workers at once."""
    deadline = time.monotonic() + timeout
    while query.isActive and query.status["message"].startswith("Initializing"):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return query


def _version(spark, name: str) -> int:
    from lakehouse import DeltaTable

    return DeltaTable.forName(spark, name).history(1).select("version").first()[0]


# ------------------------------------------------------------------------------------------------
# The parent: processes, tables read with delta-rs
# ------------------------------------------------------------------------------------------------
def child(root: Path, *args: object, kafka_port: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "LAKEHOUSE_LAKE": str(root / "lake"), "LAKEHOUSE_CATALOG": CATALOG}
    env.pop("SPARK_REMOTE", None)
    env.pop("LAKEHOUSE_ENGINE", None)
    if kafka_port is not None:
        env["LAKEHOUSE_KAFKA_PORT"] = str(kafka_port)
    name = f"{args[0]}-{args[2]}-{time.monotonic_ns()}"
    return spawn([sys.executable, __file__, *map(str, args)], env, root, name)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = START_TIMEOUT):
    """Poll ``condition`` until it returns something truthy; fail if the child dies first."""
    return processes.wait_for(condition, proc, what, timeout, died=ChildDied, every=0.01)


class ChildDied(AssertionError):
    pass


class Job:
    """Runs the chain in a child like a job with retries: a child that dies by itself (on a
    busy machine a Python worker can time out while starting) is started again, at most
    ``retries`` times in all. Exactly-once must hold whatever ended a run, so a retried run is
    one more crash and restart, and the test reports it."""

    def __init__(
        self, root: Path, landing: Path, source: str, kafka_port: int | None, retries: int = 5
    ):
        self.root, self.landing, self.retries = root, landing, retries
        self.source, self.kafka_port = source, kafka_port
        self.retried: list[str] = []

    def _child(self, mode: str) -> subprocess.Popen:
        return child(self.root, "run", self.landing, mode, self.source, kafka_port=self.kafka_port)

    def run_until(self, condition, what: str) -> tuple[subprocess.Popen, object]:
        while True:
            proc = self._child("processing")
            try:
                return proc, wait_for(condition, proc, what)
            except ChildDied as died:
                self._retry(died)

    def run_to_completion(self) -> dict:
        while True:
            proc = self._child("available-now")
            try:
                proc.wait(timeout=START_TIMEOUT + 300)
            except subprocess.TimeoutExpired:
                kill(proc)
                raise
            if proc.returncode == 0:
                return json.loads(proc.out_path.read_text().strip().splitlines()[-1])
            self._retry(ChildDied(f"the availableNow run failed:\n{errors_of(proc)}"))

    def _retry(self, died: ChildDied) -> None:
        if len(self.retried) >= self.retries:
            raise died
        lines = [line for line in str(died).splitlines() if "Exception" in line or "Error" in line]
        self.retried.append(lines[-1][:200] if lines else str(died)[:200])


def proc_started(root: Path) -> bool:
    """The newest child printed that its streams started."""
    outs = sorted(root.glob("run-processing-*.out"), key=lambda p: p.stat().st_mtime)
    return bool(outs) and '"started"' in outs[-1].read_text()


def txn_versions(table: Path) -> list[int]:
    """The batch ids the table's log records as application transactions, commit by commit."""
    found = []
    for version in commits(table):
        try:
            text = (table / "_delta_log" / f"{version:020d}.json").read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            if line.strip() and '"txn"' in line:
                found.append(json.loads(line)["txn"]["version"])
    return found


def uncommitted_data_file(table: Path) -> set[str] | None:
    """Data files in the table that no commit references yet: a write mid-way."""
    import deltalake
    import pyarrow as pa

    if not commits(table):
        return None
    on_disk = {
        str(p.relative_to(table)) for p in table.rglob("*.parquet") if "_delta_log" not in p.parts
    }
    try:
        actions = pa.table(deltalake.DeltaTable(str(table)).get_add_actions(flatten=True))
        committed = set(actions["path"].to_pylist())
        # Files a commit removed are still on disk until vacuum: they are not mid-write.
        history = set()
        for version in commits(table):
            text = (table / "_delta_log" / f"{version:020d}.json").read_text()
            history |= {
                json.loads(line)["remove"]["path"]
                for line in text.splitlines()
                if '"remove"' in line
            }
    except Exception:  # the log is being written this very moment: look again
        return None
    return (on_disk - committed - history) or None


def committed_not_checkpointed(gold: Path, checkpoint: Path) -> int | None:
    """A batch id Gold's log holds whose commit the stream's checkpoint does not record yet."""
    done = checkpoint / "commits"
    batches = txn_versions(gold)
    if not batches:
        return None
    last = batches[-1]
    return last if not (done / str(last)).exists() else None


# ------------------------------------------------------------------------------------------------
# The truth, in plain Python
# ------------------------------------------------------------------------------------------------
def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def window_start(ts: datetime) -> datetime:
    midnight = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((ts - midnight) // WINDOW) * WINDOW


def expected_windows(events: list[dict]) -> dict[tuple, dict]:
    from lakehouse.streaming.simulator import amount_usd

    windows: dict[tuple, dict] = defaultdict(
        lambda: {
            "txn_count": 0,
            "approved_count": 0,
            "declined_count": 0,
            "amount_usd_sum": Decimal("0.00"),
            "max_amount_usd": None,
            "last_event_ts": None,
        }
    )
    for event in events:
        ts = parse_ts(event["event_ts"])
        w = windows[(window_start(ts), event["customer_id"])]
        usd = amount_usd(event["amount"], event["currency"])
        w["txn_count"] += 1
        w["approved_count"] += event["status"] == "approved"
        w["declined_count"] += event["status"] == "declined"
        w["amount_usd_sum"] += usd
        w["max_amount_usd"] = usd if w["max_amount_usd"] is None else max(w["max_amount_usd"], usd)
        w["last_event_ts"] = ts if w["last_event_ts"] is None else max(w["last_event_ts"], ts)
    return dict(windows)


def gold_windows(table: Path) -> tuple[dict[tuple, dict], int]:
    import deltalake

    rows = deltalake.DeltaTable(str(table)).to_pyarrow_table().to_pylist()
    measures = ("txn_count", "approved_count", "declined_count", "amount_usd_sum")
    measures += ("max_amount_usd", "last_event_ts")
    found = {
        (_naive(r["window_start"]), r["customer_id"]): {
            m: _naive(r[m]) if m == "last_event_ts" else r[m] for m in measures
        }
        for r in rows
    }
    return found, len(rows)


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


# ------------------------------------------------------------------------------------------------
# The test
# ------------------------------------------------------------------------------------------------
class Simulator(threading.Thread):
    """The producer: the stream written at RATE events per second into the landing folder, and
    into the broker's topic as well when there is one (each file's lines as it is written)."""

    def __init__(self, landing: Path, bootstrap_servers: str | None = None):
        super().__init__(daemon=True)
        self.landing, self.servers = landing, bootstrap_servers
        self.report = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from lakehouse.streaming import simulator

        try:
            config = simulator.SimulatorConfig(**STREAM)
            if self.servers:
                self.report = simulator.stream_to_kafka(
                    self.landing, config, rate=RATE, bootstrap_servers=self.servers
                )
            else:
                self.report = simulator.write_files(self.landing, config, rate=RATE)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self):
        self.join(timeout=600)
        if self.error:
            raise self.error
        return self.report


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A Kafka broker for the Kafka source's run, on a free port; skips without its jars."""
    from lakehouse.engines.delta_spark import jvm
    from lakehouse.services import free_port_pair, kafka

    if jvm.missing("spark") or jvm.missing("kafka"):
        pytest.skip("the Kafka connector's or the broker's jars are not cached: scripts/bootstrap")
    port = free_port_pair()
    with kafka.running(port, home=tmp_path_factory.mktemp("kafka")) as servers:
        yield port, servers


@pytest.fixture(scope="module", params=SOURCES)
def killed_and_restarted(request, tmp_path_factory):
    source = request.param
    kafka_port, servers = request.getfixturevalue("broker") if source == "kafka" else (None, None)
    root = tmp_path_factory.mktemp(f"exactly_once_{source}")
    landing = root / "landing"
    catalog = root / "lake" / CATALOG
    # managed tables: <catalog>/<schema>/<table> on the embedded engine, Spark's warehouse
    # layout <catalog>/_warehouse/<schema>.db/<table> on delta-spark
    if ENGINES[source] == "embedded":
        gold, silver = (
            catalog / "gold" / "payment_risk_windows",
            catalog / "silver" / "payment_events",
        )
    else:
        warehouse = catalog / "_warehouse"
        gold = warehouse / "gold.db" / "payment_risk_windows"
        silver = warehouse / "silver.db" / "payment_events"
    gold_checkpoint = catalog / "_checkpoints" / "streaming" / "risk_windows"
    started = time.monotonic()
    moments = []
    producer = Simulator(landing, servers)
    landing.mkdir()  # a file stream needs its folder
    if servers:  # and a Kafka stream its topic
        from lakehouse.services import kafka
        from lakehouse.streaming import TOPIC, TOPIC_PARTITIONS

        kafka.create_topic(TOPIC, TOPIC_PARTITIONS, bootstrap_servers=servers)
    job = Job(root, landing, source, kafka_port)
    try:
        # Kill 1: once Gold has taken a few micro-batches.
        def steady():
            if not producer.ident and proc_started(root):
                producer.start()  # files arrive from now on, while the chain runs and is killed
            return len(txn_versions(gold)) >= 3

        proc, _ = job.run_until(steady, "three Gold micro-batches")
        kill(proc)
        moments.append("steady")

        # Kill 2: while a Gold MERGE is in flight, if the test catches one.
        landed = len(commits(gold))
        proc, caught = job.run_until(
            lambda: (
                ("merge in flight" if uncommitted_data_file(gold) else None)
                or ("after more batches" if len(commits(gold)) >= landed + 4 else None)
            ),
            "a Gold MERGE in flight",
        )
        kill(proc)
        moments.append(caught)

        # Kill 3: after Gold's commit, before the checkpoint's, if the test catches it.
        landed = len(commits(gold))
        proc, caught = job.run_until(
            lambda: (
                (
                    "gold committed, checkpoint not"
                    if len(commits(gold)) > landed
                    and committed_not_checkpointed(gold, gold_checkpoint) is not None
                    else None
                )
                or ("after more batches" if len(commits(gold)) >= landed + 4 else None)
            ),
            "a Gold commit ahead of the checkpoint",
        )
        kill(proc)
        moments.append(caught)
        replayed = committed_not_checkpointed(gold, gold_checkpoint)
    finally:
        report = producer.finish() if producer.ident else None  # started: wait for it
    assert report is not None, "the simulator did not run"

    # The producer is done: availableNow to completion, then once more (nothing to do).
    result = job.run_to_completion()
    print(
        f"{source}: kills at: {moments}; replayed batch {replayed}; runs that died by "
        "themselves and "
        f"were retried: {job.retried}; {time.monotonic() - started:.0f} s in all"
    )
    return {
        "report": report,
        "gold": gold,
        "silver": silver,
        "moments": moments,
        "replayed": replayed,
        "versions": result["versions"],
    }


def test_the_chain_was_killed_three_times_mid_stream(killed_and_restarted):
    assert len(killed_and_restarted["moments"]) == 3
    # Every file was delivered while the chain was being killed and restarted.
    report = killed_and_restarted["report"]
    assert report.files == STREAM["files"] and report.events == STREAM["events"]


def test_silver_holds_each_valid_event_exactly_once(killed_and_restarted):
    import deltalake

    from lakehouse.streaming import simulator

    expected = sorted(
        e["transaction_id"] for e in simulator.expected_events(killed_and_restarted["report"])
    )
    silver = deltalake.DeltaTable(str(killed_and_restarted["silver"]))
    landed = sorted(
        silver.to_pyarrow_table(columns=["transaction_id"])["transaction_id"].to_pylist()
    )
    twice = len(landed) - len(set(landed))
    assert twice == 0, f"{twice} events are in Silver more than once after the kills"
    missing = set(expected) - set(landed)
    assert not missing, (
        f"{len(missing)} valid events never reached Silver, e.g. {sorted(missing)[:3]}"
    )
    assert landed == expected


def test_gold_equals_a_batch_computation_over_the_simulated_events(killed_and_restarted):
    from lakehouse.streaming import simulator

    expected = expected_windows(simulator.expected_events(killed_and_restarted["report"]))
    actual, rows = gold_windows(killed_and_restarted["gold"])
    assert rows == len(actual), "gold.payment_risk_windows has two rows for one window"
    assert set(actual) == set(expected), (
        f"{len(set(expected) - set(actual))} windows missing, "
        f"{len(set(actual) - set(expected))} extra"
    )
    wrong = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    doubled = sum(a["txn_count"] == 2 * e["txn_count"] for a, e in wrong.values())
    assert not wrong, (
        f"{len(wrong)} of {len(expected)} windows differ ({doubled} with doubled counts), e.g. "
        f"{next(iter(wrong.items()))}"
    )
    assert sum(w["txn_count"] for w in actual.values()) == len(
        simulator.expected_events(killed_and_restarted["report"])
    )


def test_no_gold_batch_was_applied_twice(killed_and_restarted):
    batches = txn_versions(killed_and_restarted["gold"])
    assert batches == sorted(set(batches)), f"Gold committed a batch id twice: {batches}"


def test_a_second_available_now_run_changes_nothing(killed_and_restarted):
    first, second = killed_and_restarted["versions"]
    assert first == second


# ------------------------------------------------------------------------------------------------
if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command != "run":
        raise SystemExit(f"unknown command {command!r}; see the module docstring")
    child_run(args[0], args[1], args[2] if len(args) > 2 else "files")
