"""Benchmark one local Delta engine against plain Spark Parquet doing the same work.

    python bench/bench_embedded.py --rows 1000000                       # embedded (default)
    python bench/bench_embedded.py --engine delta-spark --rows 100000   # delta-spark, quick
    python bench/bench_embedded.py --rows 1000000 --out results.json

One Spark session on the chosen engine (``--engine embedded|delta-spark``), one temporary
folder. Every operation runs once to warm up (JVM, Python workers, imports), then ``--repeats``
times (median reported), first on a Delta table through ``format("delta")`` and then on a
Parquet folder through Spark's own Parquet source, in the same process. The breakdown of where
the time goes and the profile of the Python workers look inside the embedded engine, so they run
on it only. ``bench_engines.py`` runs this script once per engine and compares them;
bench/README.md explains each figure.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ENGINES, OPERATIONS, Bench, full_scan, mb, merge_into, orders, run_operations


# ------------------------------------------------------------------------------------------------
# Where the time goes
# ------------------------------------------------------------------------------------------------
def _discarding_classes():
    from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage

    class DiscardingWriter(DataSourceArrowWriter):
        def write(self, iterator):
            for _ in iterator:
                pass
            return WriterCommitMessage()

        def commit(self, messages):
            pass

    class DiscardingSource(DataSource):
        """A Python sink that drops what it gets: the cost of reaching Python at all."""

        @classmethod
        def name(cls):
            return "bench_discard"

        def writer(self, schema, overwrite):
            return DiscardingWriter()

    return DiscardingSource


def breakdown(b: Bench, base) -> None:
    """Split the embedded engine's cost into its parts, by timing the parts on their own."""
    import pyarrow.parquet as pq

    from lakehouse.engines.embedded import delta_source, writes
    from lakehouse.engines.embedded import log as delta_log

    spark, n, out = b.spark, b.rows, b.breakdown
    table = b.path("overwrite.delta")
    median = statistics.median

    def clock(fn, rounds=3):
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return median(times)

    # The commit alone: the files the table's last commit added, committed again by delta-rs
    # to a copy of the table (same files, same statistics).
    snap = delta_log.snapshot(table)
    copy = b.path("commit-copy.delta")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(table, copy)
    last = delta_log.log_dir(table) / f"{snap.version:020d}.json"
    adds = [json.loads(line).get("add") for line in last.read_text().splitlines()]
    files = [
        {
            "path": a["path"],
            "size": a["size"],
            "partition_values": a["partitionValues"],
            "stats": a.get("stats"),
        }
        for a in adds
        if a
    ]
    t0 = time.perf_counter()
    plan = writes.plan_write(copy, snap.arrow_schema, {}, False)
    plan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    writes.commit_files(copy, files, plan, overwrite=False)
    commit_s = time.perf_counter() - t0
    out.append(
        f"driver side, in this process: plan_write (opens the snapshot) {plan_s:.3f} s, "
        f"delta-rs commit of {len(files)} files {commit_s:.3f} s"
    )

    # The transfer alone: the same write into a Python sink that drops every batch.
    spark.dataSource.register(_discarding_classes())
    t_null = clock(lambda: base.write.format("bench_discard").mode("append").save("unused"))
    t_delta = clock(lambda: base.write.format("delta").mode("append").save(copy))
    t_pq = clock(lambda: base.write.mode("append").parquet(b.path("transfer.parquet")))
    out.append(
        f"write of {n:,} rows: delta {t_delta:.2f} s, of which {t_null:.2f} s is Spark handing "
        f"the rows to Python workers as Arrow (the same write into a Python sink that drops "
        f"them); Spark's own Parquet writer {t_pq:.2f} s"
    )

    # Fixed cost of a write: planning (a Python process opens the table), an empty Spark job
    # and the commit (another Python process runs delta-rs).
    empty = base.limit(0)
    fixed_d = clock(lambda: empty.write.format("delta").mode("append").save(copy))
    fixed_p = clock(lambda: empty.write.mode("append").parquet(b.path("empty.parquet")))
    out.append(
        f"write of 0 rows (fixed cost per write): delta {fixed_d:.2f} s, parquet {fixed_p:.2f} s"
    )

    # Task side of a write: what one Python worker does with Arrow batches (cast, Parquet
    # encoding, statistics), against plain pyarrow writing the same table, on one thread.
    arrow = base.toArrow()
    arrow = arrow.cast(delta_log.nullable(delta_log.normalize_schema(arrow.schema)))
    scratch = Path(b.path("task-scratch"))
    scratch.mkdir(exist_ok=True)
    batches = arrow.to_batches(max_chunksize=10_000)
    worker = delta_source._FileWriter(str(scratch), arrow.schema, [])
    t_writer = clock(lambda: worker.write(iter(batches)), rounds=1)
    t_pyarrow = clock(
        lambda: pq.write_table(arrow, scratch / "plain.parquet", compression="snappy"), rounds=1
    )
    out.append(
        f"task side of a write, {n:,} rows on one thread: engine's _FileWriter {t_writer:.2f} s "
        f"(cast + Parquet + stats), pyarrow write_table of the whole table at once "
        f"{t_pyarrow:.2f} s"
    )
    t_to_arrow = clock(lambda: base.toArrow(), rounds=1)
    out.append(
        f"JVM -> Arrow transfer of the cached frame (toArrow, {n:,} rows): {t_to_arrow:.2f} s"
    )

    # Read side: the Python reader alone (pyarrow, one thread), and Spark's native reader over
    # the very files of the snapshot.
    snap = delta_log.snapshot(table)
    schema = delta_source._spark_to_arrow(spark.read.format("delta").load(table).schema)
    t_py = clock(
        lambda: sum(
            batch.num_rows for batch in delta_source._read_files(snap.root, snap.files, schema, [])
        ),
        rounds=1,
    )
    paths = [os.path.join(snap.root, f.path) for f in snap.files]
    t_native = clock(lambda: full_scan(spark.read.parquet(*paths)))
    t_source = clock(lambda: full_scan(spark.read.format("delta").load(table)))
    t_plan = clock(lambda: spark.read.format("delta").load(table).schema)
    out.append(
        f"read, same snapshot ({len(paths)} files): Python source + aggregate {t_source:.2f} s "
        f"({n / t_source:,.0f} rows/s); spark.read.parquet(*snapshot files) + aggregate "
        f"{t_native:.2f} s ({n / t_native:,.0f} rows/s, {t_source / t_native:.1f}x faster)"
    )
    out.append(
        f"read parts: resolving the source (schema, a Python process) {t_plan:.2f} s; "
        f"the reader's pyarrow work alone (_read_files, one thread) {t_py:.2f} s; the rest is "
        "Arrow -> JVM rows and the aggregate"
    )
    groups = sum(pq.ParquetFile(p).metadata.num_row_groups for p in paths)
    spark_files = sorted(Path(b.path("overwrite.parquet")).glob("*.parquet"))
    spark_groups = sum(pq.ParquetFile(p).metadata.num_row_groups for p in spark_files)
    out.append(
        f"file layout: the engine wrote {len(paths)} files with {groups} row groups "
        f"(~{n // max(groups, 1):,} rows each); Spark's Parquet writer {len(spark_files)} files "
        f"with {spark_groups} row groups"
    )


def streaming_breakdown(b: Bench, base) -> None:
    """One availableNow run over one new version, split into Spark's own progress timings:
    query start and stop (outside the trigger), offsets, planning and the batch itself; the
    batch is split into source and sink by running it once more into Spark's noop sink."""
    spark, out = b.spark, b.breakdown
    rows = b.rows // b.versions
    chunk = base.filter(f"id < {rows}")
    parts = {}

    def run(side: str, source_format: str, sink_format: str, i: int):
        src = b.path(f"sb_src.{side}")
        reader = (
            spark.readStream.format("delta").load(src)
            if source_format == "delta"
            else spark.readStream.schema(base.schema).parquet(src)
        )
        writer = reader.writeStream.format(sink_format).option(
            "checkpointLocation", b.path(f"sb_ck.{side}.{i}")
        )
        sink = [] if sink_format == "noop" else [b.path(f"sb_sink.{side}.{i}")]
        t0 = time.perf_counter()
        query = writer.trigger(availableNow=True).start(*sink)
        query.awaitTermination()
        wall = time.perf_counter() - t0
        progress = [p for p in query.recentProgress if p["numInputRows"] > 0][-1]
        return wall, progress["durationMs"]

    for side, source_format, sink_format in (
        ("delta", "delta", "delta"),
        ("parquet", "parquet", "parquet"),
        ("delta->noop", "delta", "noop"),
    ):
        chunk.write.format(source_format).mode("append").save(b.path(f"sb_src.{side}"))
        run(side, source_format, sink_format, 0)  # warm-up
        results = [run(side, source_format, sink_format, i) for i in range(1, 3)]
        parts[side] = min(results, key=lambda r: r[0])
    for side, (wall, ms) in parts.items():
        trigger = ms.get("triggerExecution", 0) / 1000
        offsets = sum(ms.get(k, 0) for k in ("latestOffset", "walCommit", "commitOffsets"))
        out.append(
            f"streaming, one availableNow run over {rows:,} new rows, {side}: {wall:.2f} s = "
            f"query start/stop {wall - trigger:.2f} s + trigger {trigger:.2f} s (batch "
            f"{ms.get('addBatch', 0) / 1000:.2f} s, offsets "
            f"{offsets / 1000:.2f} s, "
            f"planning {ms.get('queryPlanning', 0) / 1000:.2f} s)"
        )
    if "delta" in parts and "delta->noop" in parts:
        sink = parts["delta"][1].get("addBatch", 0) - parts["delta->noop"][1].get("addBatch", 0)
        out.append(
            f"  so the Delta sink (Python tasks writing Parquet + the commit with its txn) takes "
            f"about {sink / 1000:.2f} s of the batch, the Delta source the rest"
        )


def profile_workers(b: Bench, op: str, action) -> None:
    """py-spy samples of every Python process under the JVM while ``action`` runs."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(spy):
        b.breakdown.append("py-spy not installed: no sampling profile of the Python workers")
        return
    b.memory.sample()
    jvm = b.memory.jvm_pid
    if jvm is None:
        return
    raw = Path(b.path("py-spy"))
    raw.mkdir(exist_ok=True)
    profilers: list[subprocess.Popen] = []
    seen: set[int] = set()
    done = threading.Event()

    def attach():
        # Workers are forked on demand: attach to each new one as it appears.
        while not done.is_set():
            _, workers = b.memory._processes()
            for pid in workers:
                if pid in seen:
                    continue
                seen.add(pid)
                profilers.append(
                    subprocess.Popen(
                        [
                            spy,
                            "record",
                            "--pid",
                            str(pid),
                            "--format",
                            "raw",
                            "--rate",
                            "50",
                            "--nonblocking",
                            "--output",
                            str(raw / f"{pid}.txt"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            done.wait(0.05)

    watcher = threading.Thread(target=attach, daemon=True)
    watcher.start()
    time.sleep(0.3)
    action()
    done.set()
    watcher.join()
    for proc in profilers:
        proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
    for proc in profilers:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    own: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    for path in raw.glob("*.txt"):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            own[_frame(frames[-1])] += int(count)
            kinds[_kind(frames)] += int(count)
    total = sum(own.values())
    if not total:
        b.breakdown.append(f"py-spy: no samples for {op} (ptrace not permitted?)")
        return
    b.breakdown.append(
        f"py-spy, Python processes during one '{op}' on the delta side ({total} samples at "
        f"50 Hz over {len(seen)} processes):"
    )
    for kind, count in kinds.most_common():
        b.breakdown.append(f"    {100 * count / total:5.1f}%  {kind}")
    b.breakdown.append("  busiest functions (own time):")
    for frame, count in own.most_common(5):
        b.breakdown.append(f"    {100 * count / total:5.1f}%  {frame}")


def _kind(frames: list[str]) -> str:
    """What a sampled stack was doing, in the terms of the engine's design."""
    text = ";".join(frames)
    if "invalidate_caches" in text:
        # pyspark's worker calls importlib.invalidate_caches() for every task and planning
        # call; each zipimporter over pyspark.zip, py4j and spark-core's jar re-reads its
        # archive's directory.
        return "pyspark: re-reading its zip archives (importlib.invalidate_caches per call)"
    if "importlib" in text or "zipimport" in text:
        return "importing modules (pyspark from pyspark.zip, pyarrow, the engine)"
    if "lakehouse/" in text:
        return "engine code (Parquet through pyarrow, statistics, delta-rs)"
    if "serializers" in text:
        return "pyspark: Arrow batches to and from the JVM"
    if "daemon.py" in frames[-1]:
        return "pyspark daemon: forking and waiting for workers"
    if "pyspark/" in text:
        return "pyspark worker loop and planning"
    return "other"


def _frame(text: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, where = text.partition(" (")
    where = where.rstrip(")")
    short = "/".join(where.split("/")[-2:])
    return f"{name} ({short})"


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def report(b: Bench, meta: dict) -> str:
    lines = [
        f"{b.engine} Delta engine vs Spark Parquet, {b.rows:,} rows, median of {b.repeats} "
        f"runs after one warm-up ({meta['date']}, {meta['cores']} cores, "
        f"pyspark {meta['pyspark']}, {meta['delta_version']})",
        "",
        f"{'operation':<22}|{'delta rows/s':>14} |{'parquet rows/s':>15} |{'ratio':>7} "
        f"|{'files read':>11} |{'delta MB':>9} |{'workers MB':>11} |{'parquet MB':>11}",
        "-" * 113,
    ]
    for r in b.results:
        delta = f"{r['delta_rows_per_s']:,.0f}" if r["delta_rows_per_s"] else "n/a"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "n/a"
        files = f"{r['files_read']}/{r['files_total']}" if r.get("files_read") is not None else ""
        lines.append(
            f"{r['operation']:<22}|{delta:>14} |{r['parquet_rows_per_s']:>15,.0f} |{ratio:>7} "
            f"|{files:>11} |{mb(r['delta_peak_total_rss']):>9} "
            f"|{mb(r['delta_peak_workers_rss']):>11} |{mb(r['parquet_peak_total_rss']):>11}"
        )
    lines.append("")
    for r in b.results:
        lines.append(f"  {r['operation']}: {r['what']}")
    lines += [
        "",
        "ratio = delta rows/s / parquet rows/s (1.00x = as fast as plain Parquet).",
        "delta MB / parquet MB = driver JVM + Python workers RSS, the largest total at one "
        "moment during the operation; workers MB = the Python processes under the JVM alone "
        "(data source planners, daemons, task workers) during the Delta operation.",
        f"Peak memory over the run: JVM + Python workers {mb(b.memory.total_peak)} MB at one "
        f"moment; driver JVM {mb(b.memory.jvm_hwm)} MB (VmHWM); "
        + (
            f"largest single Python worker {mb(b.memory.worker_hwm)} MB (VmHWM), "
            f"{len(b.memory.worker_pids)} Python processes seen."
            if b.memory.worker_hwm
            else "no Python workers."
        ),
    ]
    lines += [f"NOTE: {n}" for n in b.notes]
    if b.breakdown:
        lines += ["", "Where the time goes", "-------------------"] + b.breakdown
    return "\n".join(lines)


def write_json(path: str, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engine", choices=ENGINES, default="embedded", help="the Delta engine (embedded)"
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per table (1M)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (3)")
    parser.add_argument("--versions", type=int, default=10, help="versions streamed (10)")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument("--workdir", help="folder for the tables (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the tables afterwards")
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the breakdown (embedded only)"
    )
    parser.add_argument(
        "--only",
        default=",".join(OPERATIONS),
        help=f"comma-separated subset of {','.join(OPERATIONS)} (default: all)",
    )
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.rows % 10:
        parser.error("--rows must be a multiple of 10, at least 1000")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - set(OPERATIONS):
        unknown = ", ".join(sorted(only - set(OPERATIONS)))
        parser.error(f"--only takes {', '.join(OPERATIONS)}, not {unknown}")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="lakehouse-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # Tables, metastore and logs in the work folder, never in the course's lake.
    os.environ["LAKEHOUSE_LAKE"] = str(work / "lake")
    os.environ["LAKEHOUSE_CATALOG"] = "bench"
    os.environ["LAKEHOUSE_ENGINE"] = args.engine
    import pyspark

    from lakehouse import EngineUnavailable, get_spark
    from lakehouse.session import delta_spark_jars

    meta = {
        "engine": args.engine,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "rows": args.rows,
        "repeats": args.repeats,
    }

    def skipped(reason: str) -> int:
        """The engine cannot start here: say why (and in the JSON, for bench_engines.py)."""
        print(f"SKIPPED {args.engine}: {reason}", flush=True)
        if args.out:
            write_json(args.out, {"meta": meta, "skipped": reason})
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return 3

    if args.engine == "delta-spark":
        if not delta_spark_jars():
            from lakehouse.engines.delta_spark import jvm

            absent = ", ".join(a.coordinate for a in jvm.missing("spark"))
            return skipped(
                f"delta-spark's jars are not in the JVM cache {jvm.cache_dir()} (missing: "
                f"{absent}): run `python -m lakehouse.engines.delta_spark.jvm fetch` "
                "(scripts/bootstrap does)"
            )
        meta["delta_version"] = f"delta-spark {_version('delta-spark')}"
    else:
        try:
            import deltalake
        except ImportError as exc:
            return skipped(f"deltalake (delta-rs) is not importable: {exc}")
        meta["delta_version"] = f"deltalake {deltalake.__version__}"
        meta["deltalake"] = deltalake.__version__
    started = time.perf_counter()
    print(f"Starting Spark ({args.engine} engine), tables under {work} ...", flush=True)
    try:
        spark = get_spark(args.engine, app_name=f"bench-{args.engine}")
    except EngineUnavailable as exc:
        return skipped(str(exc))
    b = Bench(spark, args.engine, work, args.rows, args.repeats, args.versions)
    b.memory.start()
    try:
        # Cached in memory so that every write measures writing, not generating the rows.
        base = orders(spark, 0, args.rows).cache()
        base.count()
        tenth = args.rows // 10
        source = (
            orders(spark, 0, args.rows, updated=True)
            .filter("id % 10 = 0")
            .unionByName(orders(spark, args.rows, tenth))
            .cache()
        )
        source.count()
        print("Timing (one warm-up round, then the median of the timed rounds):", flush=True)
        run_operations(b, base, source, only)
        profile = not args.no_profile and b.results
        if profile and args.engine != "embedded":
            b.notes.append("the breakdown looks inside the embedded engine: not run on " + b.engine)
        elif profile and not os.path.isdir(b.path("overwrite.delta")):
            b.notes.append("breakdown not run: it needs the tables of --only write or read")
        elif profile:
            print("Breaking down where the time goes ...", flush=True)
            breakdown(b, base)
            if "streaming" in only:
                streaming_breakdown(b, base)
            # A sampling profile of the Python workers during the batch operation with the
            # worst ratio (streaming is split up above instead: most of it is query start).
            batch_ops = [r for r in b.results if r["ratio"] and "streaming" not in r["operation"]]
            if batch_ops:
                slowest = min(batch_ops, key=lambda r: r["ratio"])
                action = _profile_action(b, base, source, slowest["operation"])
                if action is not None:
                    profile_workers(b, slowest["operation"], action)
    finally:
        b.memory.stop()
    meta["seconds"] = round(time.perf_counter() - started, 1)
    text = report(b, meta)
    print()
    print(text)
    if args.out:
        write_json(
            args.out,
            {
                "meta": meta,
                "results": b.results,
                "notes": b.notes,
                "breakdown": b.breakdown,
                "memory": {
                    "jvm_hwm": b.memory.jvm_hwm,
                    "worker_hwm": b.memory.worker_hwm,
                    "total_peak": b.memory.total_peak,
                    "python_processes": len(b.memory.worker_pids),
                },
            },
        )
        print(f"\nFigures written to {args.out}")
    spark.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def _profile_action(b: Bench, base, source, op: str):
    spark = b.spark
    table = b.path("overwrite.delta")
    if op.endswith("scan"):
        return lambda: full_scan(spark.read.format("delta").load(table))
    if op in ("append", "overwrite"):
        return lambda: base.write.format("delta").mode(op).save(b.path(f"{op}.delta"))
    if op == "merge":
        target = b.path("merge.delta")
        return lambda: merge_into(spark, target, source)
    return None


if __name__ == "__main__":
    raise SystemExit(main())
