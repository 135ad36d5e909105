"""Benchmark the payment stream on the local engine: sustained events/s and end-to-end latency
from the producer to Gold, beside the same query writing plain parquet.

The query is the course's path from files to Gold in one streaming query: the landing folder
read as Bronze rows (``pipeline.read_landing``), Silver's transformation
(``pipeline.silver_events``: validate, parse, deduplicate within the watermark, enrich), then a
``foreachBatch`` sink that aggregates each micro-batch to the grain of
``gold.payment_risk_windows`` and either MERGEs it into that Delta table
(``upsert.upsert_risk_windows``: additive and idempotent) or appends it to a folder with
``write.format("parquet")``. Same source, same plan, same trigger; only the sink differs.

Two loads per sink:

- live: the simulator writes ``--rate`` events/s for ``--seconds`` with ``clock="wall"`` while
  the query runs with ``processingTime="1 second"``;
- backlog: the same number of events written first, as fast as possible; throughput is the
  events divided by the time from the first micro-batch's start to the last batch's commit.

Latency of an event = the time its micro-batch's sink call returned (the Gold commit) minus
its ``event_ts``, for the valid events delivered on time (late and out-of-order events are
stamped minutes in the past on purpose, so they are left out). Which micro-batch read which
file comes from the query's checkpoint (``sources/0``).

    python bench/bench_streaming.py --seconds 60 --rate 1000 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

TRIGGER = {"processingTime": "1 second"}
MAX_FILES_PER_TRIGGER = "10"  # a backlog is drained in bounded micro-batches, as in production


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the live run")
    parser.add_argument("--rate", type=float, default=1000, help="events per second (live)")
    parser.add_argument("--out", help="working folder (lake, landing, results); default: temp")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--sinks", default="delta,parquet", help="comma-separated: delta, parquet (default both)"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0:
        parser.error("--seconds and --rate must be positive")
    return args


# --------------------------------------------------------------------------- helpers


def _ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _local(path: str) -> str:
    parsed = urlparse(path)
    return unquote(parsed.path) if parsed.scheme == "file" else path


def file_batches(checkpoint: Path) -> dict[str, int]:
    """File name -> the micro-batch that read it, from the file source's log in the
    checkpoint (``sources/0/<batch>`` and ``<batch>.compact``: one JSON entry per file)."""
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


def on_time_events(report) -> dict[str, tuple[str, float]]:
    """transaction_id -> (file of its first delivery, event time in epoch seconds), for the
    valid events delivered on time."""
    from lakehouse.streaming import simulator

    valid = {e["transaction_id"] for e in simulator.expected_events(report)}
    skewed = set(report.defects.get("late_events", [])) | set(
        report.defects.get("out_of_order", [])
    )
    events: dict[str, tuple[str, float]] = {}
    for path in report.paths():
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            tx = event.get("transaction_id")
            if tx in valid and tx not in skewed and tx not in events:
                events[tx] = (path.name, _ms(event["event_ts"]))
    return events


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


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


def start(spark, landing: Path, profiles_df, sink: Sink, warmup: Path):
    """Start the query on ``landing`` and warm it up: a first file of 200 events (its own name,
    so the simulator's files are new) goes through before the measured load; the batches it
    took are left out of the figures."""
    from lakehouse.streaming import pipeline

    staging = warmup / "events_0001.json"
    query = (
        pipeline.read_landing(spark, str(landing), maxFilesPerTrigger=MAX_FILES_PER_TRIGGER)
        .transform(pipeline.silver_events(profiles_df))
        .writeStream.queryName(f"bench_{sink.kind}")
        .foreachBatch(sink)
        .option("checkpointLocation", str(sink.checkpoint))
        .trigger(**TRIGGER)
        .start()
    )
    shutil.copyfile(staging, landing / ".warmup_0001.json.tmp")
    os.replace(landing / ".warmup_0001.json.tmp", landing / "warmup_0001.json")
    deadline = time.monotonic() + 300
    while not sink.commits and time.monotonic() < deadline:
        if query.exception() is not None:
            raise query.exception()
        time.sleep(0.1)
    sink.warm = set(sink.commits)
    return query


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


def run(spark, kind: str, mode: str, args, work: Path, profiles_df) -> dict:
    from lakehouse.streaming import simulator

    name = f"{kind}_{mode}"
    landing = work / "landing" / name
    shutil.rmtree(landing, ignore_errors=True)
    landing.mkdir(parents=True)
    events = int(args.rate * args.seconds)
    files = max(1, int(args.seconds))  # one file per second of the live run
    config = simulator.SimulatorConfig(
        seed=args.seed,
        events=events,
        files=files,
        span_minutes=max(60, events // 1000),
        scenarios=False,
    )
    sink = Sink(spark, kind, work, name)
    warmup = work / "warmup"
    if not (warmup / "events_0001.json").exists():
        warm_config = simulator.SimulatorConfig(
            seed=args.seed + 1, events=200, files=1, scenarios=False
        )
        simulator.write_files(warmup, warm_config, clock="wall")
    if mode == "backlog":
        query = start(spark, landing, profiles_df, sink, warmup)
        report = simulator.write_files(landing, config, clock="wall")
        try:
            wait_until_read(query, report.lines + 200, timeout=600 + args.seconds * 10)
        finally:
            query.stop()
    else:
        query = start(spark, landing, profiles_df, sink, warmup)
        result: dict = {}

        def produce():
            result["report"] = simulator.write_files(landing, config, rate=args.rate, clock="wall")

        try:
            producer = threading.Thread(target=produce, daemon=True)
            producer.start()
            producer.join()
            report = result["report"]
            wait_until_read(query, report.lines + 200, timeout=300 + args.seconds * 5)
        finally:
            query.stop()

    progress = [
        p for p in query.recentProgress if p["numInputRows"] and p["batchId"] not in sink.warm
    ]
    batch_of_file = file_batches(sink.checkpoint)
    latencies = []
    for file_name, event_s in on_time_events(report).values():
        batch = batch_of_file.get(file_name)
        if batch is not None and batch in sink.commits:
            latencies.append(sink.commits[batch] - event_s)
    first_start = min(_ms(p["timestamp"]) for p in progress)
    last_commit = max(sink.commits.values())
    rows = sum(p["numInputRows"] for p in progress)
    live = mode == "live"
    return {
        "sink": kind,
        "load": f"live {args.rate:,.0f}/s" if live else "backlog",
        "events": rows,
        "batches": len(progress),
        "seconds": round(last_commit - first_start, 1),
        "events_per_s": round(rows / (last_commit - first_start)),
        # A backlog's events were stamped before the query saw them: no latency to speak of.
        "p50_latency_s": round(percentile(latencies, 0.5), 2) if live else "-",
        "p95_latency_s": round(percentile(latencies, 0.95), 2) if live else "-",
        "latency_events": len(latencies) if live else 0,
        "mean_batch_s": round(
            statistics.mean(p["durationMs"]["triggerExecution"] for p in progress) / 1000, 2
        ),
    }


def table(results: list[dict]) -> str:
    columns = [
        ("sink", "sink"),
        ("load", "load"),
        ("events", "events"),
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.out or tempfile.mkdtemp(prefix="bench-streaming-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["LAKEHOUSE_LAKE"] = str(work / "lake")
    os.environ["LAKEHOUSE_CATALOG"] = "bench"
    os.environ.pop("SPARK_REMOTE", None)
    from lakehouse import get_spark
    from lakehouse.course import prepare_datasets
    from lakehouse.streaming import pipeline

    prepare_datasets(scale="tiny", seed=args.seed)
    spark = get_spark("embedded", scale="tiny", app_name="bench-streaming")
    profiles_df = pipeline.customer_profiles(spark).cache()
    profiles_df.count()
    sinks = [s.strip() for s in args.sinks.split(",") if s.strip()]
    results = []
    started = time.time()
    for mode in ("live", "backlog"):
        for kind in sinks:
            print(f"running {kind} {mode} ...", file=sys.stderr, flush=True)
            results.append(run(spark, kind, mode, args, work, profiles_df))
    print(
        f"Payment stream, files -> Silver logic -> Gold aggregates, on the embedded engine "
        f"({os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d}); trigger {TRIGGER}, "
        f"maxFilesPerTrigger {MAX_FILES_PER_TRIGGER}; {time.time() - started:.0f} s in all"
    )
    print(table(results))
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
