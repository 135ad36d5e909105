"""Benchmark the payment stream: sustained events/s and end-to-end latency from the producer to
Gold, from the landing folder's files and from a Kafka topic, beside the same query writing
plain parquet.

The query is the course's path to Gold in one streaming query: the stream read as Bronze rows
(``pipeline.read_landing`` for the files, ``pipeline.read_kafka`` for the topic), Silver's
transformation (``pipeline.silver_events``: validate, parse, deduplicate within the watermark,
enrich), then a ``foreachBatch`` sink that aggregates each micro-batch to the grain of
``gold.payment_risk_windows`` and either MERGEs it into that Delta table
(``upsert.upsert_risk_windows``: additive and idempotent) or appends it to a folder with
``write.format("parquet")``. Same plan, same trigger, the same seeded stream; only the source
or the sink differs. The file source is the baseline the Kafka row is read against.

Two loads per source and sink:

- live: the simulator produces ``--rate`` events/s for ``--seconds`` with ``clock="wall"``
  while the query runs with ``processingTime="1 second"``;
- max rate: the same events produced as fast as the simulator can.

For the Kafka source the simulator writes the same files and sends each file's lines to a
4-partition topic as it writes them (``simulator.stream_to_kafka``), on a broker this script
starts on a free port in a temporary folder and stops at the end. Throughput is the events
divided by the time from the first micro-batch's start to the last batch's commit.

Latency of an event = the time its micro-batch's sink call returned (the Gold commit) minus
its ``event_ts``, for the valid events delivered on time (late and out-of-order events are
stamped minutes in the past on purpose, so they are left out). Which micro-batch read which
event comes from the query's offset log (``offsets/<batch>``): for a file through the file
source's own log (``sources/0``), for a Kafka message through its partition and offset.

The embedded engine has no Kafka connector: when the Kafka row runs, every row runs on
delta-spark, so that both sources are measured on the same engine.

    python bench/bench_streaming.py --seconds 60 --rate 1000 --out /tmp/bench
    python bench/bench_streaming.py --sources files --engine embedded
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

TRIGGER = {"processingTime": "1 second"}
MAX_FILES_PER_TRIGGER = 10  # a backlog is drained in bounded micro-batches, as in production
KAFKA_PARTITIONS = 4  # as the course's topic (simulator.stream_to_kafka)
SOURCES = ("files", "kafka")
SINKS = ("delta", "parquet")
LOADS = ("live", "max rate")
# The figures come from the query's progress and checkpoint: keep every batch's, however long
# the run (Spark keeps the last 100 of each by default).
KEEP_BATCHES = "100000"


def _names(option: str, text: str, known: tuple[str, ...]) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{option} {text!r}: give a comma-separated list of {', '.join(known)}"
        )
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the live run")
    parser.add_argument("--rate", type=float, default=1000, help="events per second (live)")
    parser.add_argument("--out", help="working folder (lake, landing, results); default: temp")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--sinks",
        type=lambda text: _names("--sinks", text, SINKS),
        default=list(SINKS),
        help="comma-separated: delta, parquet (default both)",
    )
    parser.add_argument(
        "--sources",
        type=lambda text: _names("--sources", text, SOURCES),
        default=list(SOURCES),
        help="comma-separated: files, kafka (default both; files is the baseline)",
    )
    parser.add_argument(
        "--engine",
        choices=("delta-spark", "embedded"),
        help="default: delta-spark when the Kafka source runs (the embedded engine has no "
        "Kafka connector), else embedded",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0:
        parser.error("--seconds and --rate must be positive")
    if args.engine == "embedded" and "kafka" in args.sources:
        parser.error(
            "the embedded engine has no Kafka connector: use --engine delta-spark, or "
            "--sources files"
        )
    return args


# --------------------------------------------------------------------------- helpers


def _ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _local(path: str) -> str:
    parsed = urlparse(path)
    return unquote(parsed.path) if parsed.scheme == "file" else path


def offset_log(checkpoint: Path) -> list[tuple[int, dict]]:
    """(micro-batch, the offset its source read up to) for every batch the query planned, in
    batch order, from the checkpoint's offset log (``offsets/<batch>``: the log version, the
    batch's metadata, then the source's offset: ``{"logOffset": 3}`` for files, ``{"topic":
    {"0": 120, "1": 98}}`` for Kafka, where the end is exclusive)."""
    folder = checkpoint / "offsets"
    logs = [p for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return [
        (int(log.name), json.loads(log.read_text().splitlines()[2]))
        for log in sorted(logs, key=lambda p: int(p.name))
    ]


def batch_finder(
    ends: Iterable[tuple[int, dict[Hashable, int]]],
) -> Callable[[Hashable, int], int | None]:
    """A function (stream, position) -> the first micro-batch whose end passes the position,
    or None when no planned batch reached it. ``ends``: (batch, {stream: exclusive end}) in
    batch order; a stream is a Kafka partition, or the one log of the file source."""
    by_stream: dict[Hashable, list[tuple[int, int]]] = {}
    for batch, streams in ends:
        for stream, end in streams.items():
            by_stream.setdefault(stream, []).append((end, batch))

    def batch_of(stream: Hashable, position: int) -> int | None:
        batches = by_stream.get(stream, [])
        i = bisect.bisect_right(batches, (position, math.inf))
        return batches[i][1] if i < len(batches) else None

    return batch_of


def file_log_ids(checkpoint: Path) -> dict[str, int]:
    """File name -> the entry of the file source's own log that took it, from the checkpoint
    (``sources/0/<id>`` and ``<id>.compact``: one JSON entry per file). The id is the source's,
    not the micro-batch's: a batch that reads no file (one Spark runs when the watermark
    moves) takes no id, so the two drift apart; :func:`file_batches` maps one to the other."""
    found: dict[str, int] = {}
    folder = checkpoint / "sources" / "0"
    for log in sorted(folder.iterdir()) if folder.is_dir() else []:
        if log.name.startswith("."):
            continue
        for line in log.read_text().splitlines()[1:]:  # the first line is the log version
            if line.strip():
                entry = json.loads(line)
                found[Path(_local(entry["path"])).name] = int(entry["batchId"])
    return found


def file_batches(checkpoint: Path) -> Callable[[str], int | None]:
    """A function file name -> the micro-batch that read the file: the first batch whose
    ``logOffset`` reached the file's log id."""
    ids = file_log_ids(checkpoint)
    batch_of = batch_finder(
        (batch, {None: offset["logOffset"] + 1}) for batch, offset in offset_log(checkpoint)
    )
    return lambda name: batch_of(None, ids[name]) if name in ids else None


def offset_batches(checkpoint: Path, topic: str) -> Callable[[tuple[int, int]], int | None]:
    """A function (partition, offset) -> the micro-batch that read that Kafka message."""
    batch_of = batch_finder(
        (batch, {int(p): end for p, end in offset.get(topic, {}).items()})
        for batch, offset in offset_log(checkpoint)
    )
    return lambda message: batch_of(*message)


def file_lines(report) -> Iterator[tuple[str, str]]:
    """(file name, line) for every line the simulator wrote, in order."""
    for path in report.paths():
        for line in path.read_text().splitlines():
            yield path.name, line


def topic_messages(
    topic: str, servers: str, start: dict[int, int], timeout: float = 60
) -> Iterator[tuple[tuple[int, int], str]]:
    """((partition, offset), value) for every message of ``topic`` from the offsets ``start``
    to the topic's end, partition by partition in offset order."""
    import confluent_kafka

    from lakehouse.services import kafka

    end = kafka.end_offsets(topic, bootstrap_servers=servers)
    left = {p: e for p, e in end.items() if e > start.get(p, 0)}
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": servers, "group.id": "bench-latency", "enable.auto.commit": False}
    )
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, p, start.get(p, 0)) for p in left])
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic!r} back: partitions {sorted(left)} unfinished")
            for message in consumer.consume(10_000, timeout=1):
                if message.error():
                    raise RuntimeError(f"reading {topic!r} back: {message.error().str()}")
                partition, offset = message.partition(), message.offset()
                if offset < left.get(partition, -1):
                    yield (partition, offset), message.value().decode()
                if offset + 1 >= left.get(partition, 0):
                    left.pop(partition, None)
    finally:
        consumer.close()


def on_time_events(
    report, deliveries: Iterable[tuple[Hashable, str]]
) -> dict[str, tuple[Hashable, float]]:
    """transaction_id -> (where its first delivery was: a file name or a Kafka (partition,
    offset), event time in epoch seconds), for the valid events delivered on time.
    ``deliveries``: (where, line) in delivery order, from either source."""
    from lakehouse.streaming import simulator

    valid = {e["transaction_id"] for e in simulator.expected_events(report)}
    skewed = set(report.defects.get("late_events", [])) | set(
        report.defects.get("out_of_order", [])
    )
    events: dict[str, tuple[Hashable, float]] = {}
    for where, line in deliveries:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        tx = event.get("transaction_id")
        if tx in valid and tx not in skewed and tx not in events:
            events[tx] = (where, _ms(event["event_ts"]))
    return events


def latencies(
    events: dict[str, tuple[Hashable, float]],
    batch_of: Callable[[Hashable], int | None],
    commits: dict[int, float],
) -> list[float]:
    """Seconds from each event's time to the commit of the micro-batch that read it, for the
    events whose batch committed."""
    found = []
    for where, event_s in events.values():
        batch = batch_of(where)
        if batch is not None and batch in commits:
            found.append(commits[batch] - event_s)
    return found


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --------------------------------------------------------------------------- the sources


class FileSource:
    """The landing folder the query reads; the simulator writes its files there."""

    name = "files"

    def __init__(self, work: Path, run: str):
        self.landing = work / "landing" / run
        shutil.rmtree(self.landing, ignore_errors=True)
        self.landing.mkdir(parents=True)

    def admission(self, config) -> str:
        return f"maxFilesPerTrigger {MAX_FILES_PER_TRIGGER}"

    def read(self, spark, config):
        from lakehouse.streaming import pipeline

        return pipeline.read_landing(
            spark, str(self.landing), maxFilesPerTrigger=str(MAX_FILES_PER_TRIGGER)
        )

    def warm_up(self, warmup_file: Path) -> None:
        # its own name, so the simulator's files are new to the query
        staging = self.landing / ".warmup_0001.json.tmp"
        shutil.copyfile(warmup_file, staging)
        os.replace(staging, self.landing / "warmup_0001.json")

    def produce(self, config, rate: float | None):
        from lakehouse.streaming import simulator

        return simulator.write_files(self.landing, config, rate=rate, clock="wall")

    def delivered(self, report, checkpoint: Path):
        return file_lines(report), file_batches(checkpoint)


class KafkaSource:
    """A topic of the bench's broker; the simulator writes the files to a folder the query
    does not read and sends their lines to the topic as it writes them."""

    name = "kafka"

    def __init__(self, work: Path, run: str, servers: str):
        from lakehouse.services import kafka

        self.servers, self.topic = servers, f"bench_{run}"
        self.landing = work / "landing" / run  # the files: the truth the report describes
        shutil.rmtree(self.landing, ignore_errors=True)
        self.landing.mkdir(parents=True)
        kafka.delete_topic(self.topic, bootstrap_servers=servers)
        kafka.create_topic(self.topic, KAFKA_PARTITIONS, bootstrap_servers=servers)
        self.start: dict[int, int] = {}

    @staticmethod
    def max_offsets(config) -> int:
        """The file source's admission in messages: as many as its files per trigger hold."""
        return MAX_FILES_PER_TRIGGER * math.ceil(config.events / config.files)

    def admission(self, config) -> str:
        return f"maxOffsetsPerTrigger {self.max_offsets(config):,}"

    def read(self, spark, config):
        from lakehouse.streaming import pipeline

        return pipeline.read_kafka(
            spark,
            bootstrap_servers=self.servers,
            topic=self.topic,
            maxOffsetsPerTrigger=str(self.max_offsets(config)),
        )

    def warm_up(self, warmup_file: Path) -> None:
        from lakehouse.services import kafka
        from lakehouse.streaming import simulator

        simulator.KafkaPublisher(self.topic, self.servers)(warmup_file.read_text().splitlines())
        # the measured messages start here; the warm-up's reuse the stream's transaction ids
        self.start = kafka.end_offsets(self.topic, bootstrap_servers=self.servers)

    def produce(self, config, rate: float | None):
        from lakehouse.streaming import simulator

        return simulator.stream_to_kafka(
            self.landing,
            config,
            topic=self.topic,
            partitions=KAFKA_PARTITIONS,
            bootstrap_servers=self.servers,
            rate=rate,
            clock="wall",
        )

    def delivered(self, report, checkpoint: Path):
        messages = topic_messages(self.topic, self.servers, self.start)
        return messages, offset_batches(checkpoint, self.topic)


# --------------------------------------------------------------------------- the query


class Sink:
    """The foreachBatch function of one run: the Gold MERGE or a parquet append, recording
    when each batch's write returned."""

    def __init__(self, spark, kind: str, work: Path, name: str):
        from lakehouse.course import drop_table
        from lakehouse.streaming import upsert

        self.kind, self.commits, self.warm = kind, {}, set()
        self.checkpoint = work / "checkpoints" / name
        shutil.rmtree(self.checkpoint, ignore_errors=True)
        if kind == "delta":
            self.table = f"gold.bench_{name}"
            drop_table(spark, self.table)
            upsert.create_risk_windows_table(spark, self.table)
            self.write = upsert.upsert_risk_windows(
                upsert.writer_id(self.table, str(self.checkpoint)), self.table
            )
        elif kind == "parquet":
            self.folder = work / "parquet" / name
            shutil.rmtree(self.folder, ignore_errors=True)
            folder = str(self.folder)

            def write(batch_df, batch_id):
                (
                    upsert.batch_risk_windows(batch_df)
                    .write.format("parquet")
                    .mode("append")
                    .save(folder)
                )

            self.write = write
        else:
            raise SystemExit(f"unknown sink {kind!r}: use delta or parquet")

    def __call__(self, batch_df, batch_id: int) -> None:
        self.write(batch_df, batch_id)
        self.commits[batch_id] = time.time()


def start(spark, source, config, profiles_df, sink: Sink, warmup_file: Path):
    """Start the query on ``source`` and warm it up: the 200 events of ``warmup_file`` go
    through before the measured load; the batches they took are left out of the figures."""
    from lakehouse.streaming import pipeline

    query = (
        source.read(spark, config)
        .transform(pipeline.silver_events(profiles_df))
        .writeStream.queryName(f"bench_{source.name}_{sink.kind}")
        .foreachBatch(sink)
        .option("checkpointLocation", str(sink.checkpoint))
        .trigger(**TRIGGER)
        .start()
    )
    source.warm_up(warmup_file)
    # Kafka may commit an empty first batch before the warm-up arrives: wait for its rows
    warm_lines = len(warmup_file.read_text().splitlines())
    wait_until_read(query, warm_lines, timeout=300)
    # the warm-up moved the watermark, so Spark runs a batch without data next: let it pass
    settle(query)
    sink.warm = set(sink.commits)
    return query


def settle(query, quiet: float = 2.0, timeout: float = 120) -> None:
    """Wait until the query has started no batch for ``quiet`` seconds (a trigger found
    nothing to do)."""
    deadline, idle_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if query.exception() is not None:
            raise query.exception()
        now = time.monotonic()
        if query.status["isTriggerActive"]:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since >= quiet:
            return
        time.sleep(0.1)


def wait_until_read(query, lines: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query.exception() is not None:
            raise query.exception()
        if sum(p["numInputRows"] for p in query.recentProgress) >= lines:
            # the batch that read the last rows has committed once its progress exists
            return
        time.sleep(0.2)
    raise TimeoutError(f"the query read fewer than {lines} lines in {timeout:.0f} s")


def stream_config(args):
    from lakehouse.streaming import simulator

    events = int(args.rate * args.seconds)
    return simulator.SimulatorConfig(
        seed=args.seed,
        events=events,
        files=max(1, int(args.seconds)),  # one file per second of the live run
        span_minutes=max(60, events // 1000),
        scenarios=False,
    )


def warmup_file(work: Path, seed: int) -> Path:
    from lakehouse.streaming import simulator

    warmup = work / "warmup"
    if not (warmup / "events_0001.json").exists():
        config = simulator.SimulatorConfig(seed=seed + 1, events=200, files=1, scenarios=False)
        simulator.write_files(warmup, config, clock="wall")
    return warmup / "events_0001.json"


def run(spark, source_kind: str, kind: str, load: str, args, work: Path, profiles_df, servers):
    name = f"{source_kind}_{kind}_{load.replace(' ', '_')}"
    source = KafkaSource(work, name, servers) if source_kind == "kafka" else FileSource(work, name)
    config = stream_config(args)
    sink = Sink(spark, kind, work, name)
    warm = warmup_file(work, args.seed)
    warm_lines = len(warm.read_text().splitlines())
    rate = args.rate if load == "live" else None
    query = start(spark, source, config, profiles_df, sink, warm)
    result: dict = {}

    def produce():
        try:
            t0 = time.monotonic()
            result["report"] = source.produce(config, rate)
            result["seconds"] = time.monotonic() - t0
        except BaseException as exc:  # re-raised below, in the main thread
            result["error"] = exc

    try:
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        producer.join()
        if "error" in result:
            raise result["error"]
        report = result["report"]
        wait_until_read(query, report.lines + warm_lines, timeout=600 + args.seconds * 10)
    finally:
        query.stop()

    progress = [
        p for p in query.recentProgress if p["numInputRows"] and p["batchId"] not in sink.warm
    ]
    deliveries, batch_of = source.delivered(report, sink.checkpoint)
    delays = latencies(on_time_events(report, deliveries), batch_of, sink.commits)
    first_start = min(_ms(p["timestamp"]) for p in progress)
    last_commit = max(sink.commits.values())
    rows = sum(p["numInputRows"] for p in progress)
    return {
        "source": source_kind,
        "sink": kind,
        "load": f"live {args.rate:,.0f}/s" if load == "live" else load,
        "admission": source.admission(config),
        "events": rows,
        "produce_s": round(result["seconds"], 1),
        "batches": len(progress),
        "seconds": round(last_commit - first_start, 1),
        "events_per_s": round(rows / (last_commit - first_start)),
        "p50_latency_s": round(percentile(delays, 0.5), 2),
        "p95_latency_s": round(percentile(delays, 0.95), 2),
        "latency_events": len(delays),
        "mean_batch_s": round(
            statistics.mean(p["durationMs"]["triggerExecution"] for p in progress) / 1000, 2
        ),
    }


def table(results: list[dict]) -> str:
    columns = [
        ("source", "source"),
        ("sink", "sink"),
        ("load", "load"),
        ("events", "events"),
        ("produce_s", "produced in s"),
        ("batches", "batches"),
        ("seconds", "s"),
        ("events_per_s", "events/s"),
        ("p50_latency_s", "p50 latency s"),
        ("p95_latency_s", "p95 latency s"),
        ("mean_batch_s", "mean batch s"),
    ]
    cells = [[str(r[key]) for key, _ in columns] for r in results]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title) in enumerate(columns)]
    line = " | ".join(title.ljust(w) for (_, title), w in zip(columns, widths))
    rule = "-+-".join("-" * w for w in widths)
    body = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join([line, rule, *body])


# --------------------------------------------------------------------------- the broker


def kafka_unavailable() -> str | None:
    """Why this machine cannot run the Kafka row, in one sentence, or None."""
    from lakehouse.engines.delta_spark import jvm

    for use, what in (("kafka", "the Kafka broker's"), ("spark", "delta-spark's")):
        absent = jvm.missing(use)
        if absent:
            return (
                f"{what} jars are not in the JVM cache {jvm.cache_dir()} ({absent[0].coordinate}"
                f"{f' and {len(absent) - 1} more' if len(absent) > 1 else ''}); run "
                "scripts/bootstrap (python -m lakehouse.engines.delta_spark.jvm fetch)"
            )
    try:
        import confluent_kafka  # noqa: F401  (the simulator's producer)
    except ImportError:
        return "the Python Kafka client (confluent-kafka) is not installed; run scripts/bootstrap"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.out or tempfile.mkdtemp(prefix="bench-streaming-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["LAKEHOUSE_LAKE"] = str(work / "lake")
    os.environ["LAKEHOUSE_CATALOG"] = "bench"
    os.environ.pop("SPARK_REMOTE", None)
    from lakehouse import get_spark
    from lakehouse.course import prepare_datasets
    from lakehouse.services import ServiceError, free_port_pair, kafka
    from lakehouse.streaming import pipeline

    sources = list(args.sources)
    with ExitStack() as stack:
        servers = None
        if "kafka" in sources:
            why = kafka_unavailable()
            if why is None:
                home = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-kafka-"))
                try:
                    port = free_port_pair()
                    servers = stack.enter_context(kafka.running(port, home=home))
                except ServiceError as exc:
                    why = str(exc).splitlines()[0]
            if why is not None:
                print(f"Kafka source skipped: {why}", flush=True)
                sources.remove("kafka")
        if not sources:
            return 0  # nothing left to measure; the line above says why
        engine = args.engine or ("delta-spark" if "kafka" in sources else "embedded")
        prepare_datasets(scale="tiny", seed=args.seed)
        spark = get_spark(engine, scale="tiny", app_name="bench-streaming")
        spark.conf.set("spark.sql.streaming.numRecentProgressUpdates", KEEP_BATCHES)
        spark.conf.set("spark.sql.streaming.minBatchesToRetain", KEEP_BATCHES)
        profiles_df = pipeline.customer_profiles(spark).cache()
        profiles_df.count()
        results = []
        started = time.time()
        # source innermost: a file row and its Kafka row run one after the other, under the
        # same load from whatever else the machine is doing
        for load in LOADS:
            for kind in args.sinks:
                for source in sources:
                    print(f"running {source} -> {kind}, {load} ...", file=sys.stderr, flush=True)
                    results.append(run(spark, source, kind, load, args, work, profiles_df, servers))
        why_engine = (
            " (the embedded engine has no Kafka connector, so the file rows run on delta-spark too)"
            if "kafka" in sources and args.engine is None
            else ""
        )
        admission = "; ".join(sorted({f"{r['source']}: {r['admission']}" for r in results}))
        print(
            f"Payment stream, {' and '.join(sources)} -> Silver logic -> Gold aggregates, on "
            f"{engine}{why_engine} ({os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d}); "
            f"trigger {TRIGGER}; {admission}; {time.time() - started:.0f} s in all"
        )
        print(table(results))
        (work / "results.json").write_text(json.dumps(results, indent=1))
        print(f"results: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
