"""Benchmark the embedded Delta engine against plain Spark Parquet doing the same work.

    python bench/bench_embedded.py --rows 1000000            # the reference run (default)
    python bench/bench_embedded.py --rows 100000             # a quick run
    python bench/bench_embedded.py --rows 1000000 --out results.json

One Spark session on the embedded engine, one temporary folder. Every operation runs once to
warm up (JVM, Python workers, imports), then ``--repeats`` times (median reported), first on a
Delta table through ``format("delta")`` and then on a Parquet folder through Spark's own
Parquet source. bench/README.md explains each figure.
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

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))


# ------------------------------------------------------------------------------------------------
# Memory: peak RSS of the driver JVM and of the Python workers
# ------------------------------------------------------------------------------------------------
def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes, from /proc."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return found


def _program(pid: int) -> str:
    """The running program's name. Not the command line: a process the JVM has forked but not
    yet exec'd still shows the JVM's command line (whose classpath mentions python) and the
    JVM's memory."""
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


class MemorySampler(threading.Thread):
    """Samples the JVM and every Python process it started (workers, the daemon, the data
    source planners) four times a second.

    Per phase it keeps the largest JVM RSS and the largest total RSS of the Python workers
    alive at one moment; over the run it keeps each process's VmHWM (the kernel's own peak),
    so a short-lived worker between two samples is still counted if it was alive at one.
    Linux /proc only; elsewhere psutil RSS sampling if installed, else nothing."""

    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        self.interval = interval
        self.phase = "start"
        self.by_phase: dict[str, dict[str, int]] = collections.defaultdict(
            lambda: {"jvm_rss": 0, "workers_rss": 0}
        )
        self.jvm_hwm = 0
        self.worker_hwm = 0
        self.jvm_pid: int | None = None
        self.worker_pids: set[int] = set()
        self._halt = threading.Event()
        self.available = os.path.isdir("/proc/self/task")
        self._psutil = None
        if not self.available:
            try:
                import psutil

                self._psutil = psutil
                self.available = True
            except ImportError:
                pass

    def _processes(self) -> tuple[int | None, list[int]]:
        if self._psutil is not None:
            me = self._psutil.Process()
            jvm = next((p for p in me.children() if p.name().lower() == "java"), None)
            if jvm is None:
                return None, []
            workers = [p.pid for p in jvm.children(recursive=True) if p.name().startswith("python")]
            return jvm.pid, workers
        jvm = next((c for c in _children(os.getpid()) if _program(c) == "java"), None)
        if jvm is None:
            return None, []
        workers, todo = [], _children(jvm)
        while todo:
            pid = todo.pop()
            if _program(pid).startswith("python"):
                workers.append(pid)
            todo += _children(pid)
        return jvm, workers

    def _rss(self, pid: int) -> tuple[int, int]:
        if self._psutil is not None:
            try:
                rss = self._psutil.Process(pid).memory_info().rss
            except self._psutil.Error:
                return 0, 0
            return rss, rss
        st = _status(pid)
        return st.get("VmRSS", 0), st.get("VmHWM", 0)

    def sample(self) -> None:
        jvm, workers = self._processes()
        if jvm is None:
            return
        self.jvm_pid = jvm
        self.worker_pids.update(workers)
        now = self.by_phase[self.phase]
        rss, hwm = self._rss(jvm)
        now["jvm_rss"] = max(now["jvm_rss"], rss)
        self.jvm_hwm = max(self.jvm_hwm, hwm)
        total = 0
        for pid in workers:
            rss, hwm = self._rss(pid)
            total += rss
            self.worker_hwm = max(self.worker_hwm, hwm)
        now["workers_rss"] = max(now["workers_rss"], total)

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)
        self.sample()


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
COUNTRIES = ["FR", "DE", "US", "GB", "ES", "IT", "NL"]
STATUSES = ["NEW", "PAID", "SHIPPED", "DELIVERED", "CANCELLED"]


def orders(spark, start: int, count: int, *, updated: bool = False):
    """``count`` order rows with ids ``start``.. : 10 columns of the usual kinds (long, four
    strings, decimal, int, double, timestamp, date), a pure function of the id. ``updated``
    gives the same ids a new status, amount and timestamp, as a merge source would."""
    from pyspark.sql import functions as F

    id_ = F.col("id")
    bump = F.lit(1 if updated else 0)
    return spark.range(start, start + count).select(
        id_,
        F.concat(F.lit("C"), F.lpad((id_ * 7919 % 100_000).cast("string"), 6, "0")).alias(
            "customer_id"
        ),
        F.element_at(F.array(*map(F.lit, COUNTRIES)), (id_ % len(COUNTRIES) + 1).cast("int")).alias(
            "country"
        ),
        (
            F.lit("UPDATED")
            if updated
            else F.element_at(F.array(*map(F.lit, STATUSES)), (id_ % len(STATUSES) + 1).cast("int"))
        ).alias("status"),
        F.concat(F.lit("user"), (id_ % 50_000).cast("string"), F.lit("@example.com")).alias(
            "email"
        ),
        ((id_ * 37 % 100_000 + bump * 100) / 100).cast("decimal(12,2)").alias("amount"),
        (id_ % 20 + 1).cast("int").alias("quantity"),
        ((id_ % 13) / 100.0).alias("discount"),
        F.timestamp_seconds(F.lit(1_704_067_200) + id_ * 17 % 31_536_000 + bump * 60).alias(
            "created_at"
        ),
        F.to_date(F.timestamp_seconds(F.lit(1_704_067_200) + id_ * 17 % 31_536_000)).alias(
            "order_date"
        ),
    )


def full_scan(df):
    """An aggregate that needs every column, so no reader can skip one: the count, sums of the
    numbers, total string length and the newest timestamp and date."""
    from pyspark.sql import functions as F

    text = sum(F.length(c) for c in ("customer_id", "country", "status", "email"))
    return df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum("id").alias("ids"),
        F.sum("amount").alias("amount"),
        F.sum("quantity").alias("quantity"),
        F.round(F.sum("discount"), 4).alias("discount"),
        F.sum(text).alias("text"),
        F.max("created_at").alias("created_at"),
        F.max("order_date").alias("order_date"),
    ).collect()[0]


def one_column(df):
    from pyspark.sql import functions as F

    return df.agg(F.sum("amount").alias("amount")).collect()[0]


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, spark, work: Path, rows: int, repeats: int, versions: int):
        self.spark = spark
        self.work = work
        self.rows = rows
        self.repeats = repeats
        self.versions = versions
        self.memory = MemorySampler()
        self.results: list[dict] = []
        self.notes: list[str] = []
        self.breakdown: list[str] = []

    def path(self, *parts: str) -> str:
        return str(self.work.joinpath(*parts))

    def timed(self, label: str, side: str, run, *, setup=None, warmup=True) -> float:
        """Median seconds of ``repeats`` runs of ``run`` (after ``setup``, untimed)."""
        self.memory.phase = f"{label}|{side}"
        rounds = self.repeats + (1 if warmup else 0)
        times = []
        for i in range(rounds):
            if setup is not None:
                setup(i)
            t0 = time.perf_counter()
            run(i)
            elapsed = time.perf_counter() - t0
            if not (warmup and i == 0):
                times.append(elapsed)
        self.memory.phase = "between"
        return statistics.median(times)

    def record(self, op: str, rows: int, delta_s: float | None, parquet_s: float, what: str):
        entry = {
            "operation": op,
            "rows": rows,
            "delta_seconds": delta_s,
            "parquet_seconds": parquet_s,
            "delta_rows_per_s": rows / delta_s if delta_s else None,
            "parquet_rows_per_s": rows / parquet_s,
            "ratio": (parquet_s / delta_s) if delta_s else None,
            "what": what,
        }
        mem_d = self.memory.by_phase.get(f"{op}|delta", {})
        mem_p = self.memory.by_phase.get(f"{op}|parquet", {})
        entry["delta_peak_workers_rss"] = mem_d.get("workers_rss")
        entry["parquet_peak_workers_rss"] = mem_p.get("workers_rss")
        entry["delta_peak_jvm_rss"] = mem_d.get("jvm_rss")
        entry["parquet_peak_jvm_rss"] = mem_p.get("jvm_rss")
        self.results.append(entry)
        shown = f"{rows / delta_s:,.0f}" if delta_s else "n/a"
        print(f"  {op:<20} delta {shown:>12} rows/s   parquet {rows / parquet_s:>12,.0f} rows/s")


# ------------------------------------------------------------------------------------------------
# Operations
# ------------------------------------------------------------------------------------------------
def bench_writes(b: Bench, base) -> None:
    n = b.rows
    delta, parquet = b.path("append.delta"), b.path("append.parquet")
    # The warm-up round creates the table and the folder; the timed rounds append to them.
    d = b.timed("append", "delta", lambda i: base.write.format("delta").mode("append").save(delta))
    p = b.timed("append", "parquet", lambda i: base.write.mode("append").parquet(parquet))
    b.record("append", n, d, p, "append N rows to an existing table / folder")

    delta, parquet = b.path("overwrite.delta"), b.path("overwrite.parquet")
    d = b.timed(
        "overwrite", "delta", lambda i: base.write.format("delta").mode("overwrite").save(delta)
    )
    p = b.timed("overwrite", "parquet", lambda i: base.write.mode("overwrite").parquet(parquet))
    b.record("overwrite", n, d, p, "replace a table / folder of N rows with N rows")


def bench_reads(b: Bench, base) -> None:
    spark, n = b.spark, b.rows
    delta, parquet = b.path("overwrite.delta"), b.path("overwrite.parquet")
    if not os.path.isdir(delta):  # the writes were skipped (--only)
        base.write.format("delta").mode("overwrite").save(delta)
        base.write.mode("overwrite").parquet(parquet)
    answers = {}

    def scan_delta(i):
        answers["delta"] = full_scan(spark.read.format("delta").load(delta))

    def scan_parquet(i):
        answers["parquet"] = full_scan(spark.read.parquet(parquet))

    d = b.timed("read", "delta", scan_delta)
    p = b.timed("read", "parquet", scan_parquet)
    if answers["delta"] != answers["parquet"] or answers["delta"]["rows"] != n:
        raise AssertionError(f"read results differ: {answers}")
    b.record("read", n, d, p, "count + aggregate over all 10 columns")

    d = b.timed(
        "read 1 column", "delta", lambda i: one_column(spark.read.format("delta").load(delta))
    )
    p = b.timed("read 1 column", "parquet", lambda i: one_column(spark.read.parquet(parquet)))
    b.record("read 1 column", n, d, p, "sum of one column (tests column pruning)")


def merge_available() -> tuple[bool, str]:
    try:
        from lakehouse import DeltaTable  # noqa: F401
    except (ImportError, AttributeError) as exc:
        return False, f"lakehouse.DeltaTable cannot be imported ({exc})"
    return True, ""


def bench_merge(b: Bench, base, source) -> None:
    spark, n = b.spark, b.rows
    expected = n + n // 10
    delta, parquet = b.path("merge.delta"), b.path("merge.parquet")
    ok, why = merge_available()
    d = None
    if ok:
        from lakehouse import DeltaTable

        def reset_delta(i):
            base.write.format("delta").mode("overwrite").save(delta)

        def merge_delta(i):
            (
                DeltaTable.forPath(spark, delta)
                .alias("t")
                .merge(source.alias("s"), "t.id = s.id")
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )

        d = b.timed("merge", "delta", merge_delta, setup=reset_delta)
        got = spark.read.format("delta").load(delta)
        merged = (got.count(), got.filter("status = 'UPDATED'").count())
        if merged != (expected, n // 10):
            raise AssertionError(f"delta merge gave {merged}, expected {(expected, n // 10)}")
    else:
        print(f"  merge: not available ({why})")
        b.notes.append(f"merge: not available ({why})")

    def reset_parquet(i):
        base.write.mode("overwrite").parquet(parquet)

    def merge_parquet(i):
        # The plain-Spark upsert: rows of the target the source does not replace, plus the
        # source, written as a new folder (Parquet cannot rewrite a folder it is reading).
        target = spark.read.parquet(parquet)
        upserted = target.join(source.select("id"), "id", "left_anti").unionByName(source)
        upserted.write.mode("overwrite").parquet(b.path(f"merge.parquet.out{i}"))

    p = b.timed("merge", "parquet", merge_parquet, setup=reset_parquet)
    got = spark.read.parquet(b.path("merge.parquet.out1"))
    if got.count() != expected:
        raise AssertionError(f"parquet upsert gave {got.count()} rows, expected {expected}")
    b.record("merge", n, d, p, "upsert: 10% of keys updated + 10% new rows (rows/s of target)")


def bench_streaming(b: Bench, base) -> None:
    spark, n, versions = b.spark, b.rows, b.versions
    delta_src, parquet_src = b.path("stream_src.delta"), b.path("stream_src.parquet")
    step = n // versions
    for v in range(versions):
        chunk = base.filter(f"id >= {v * step} and id < {(v + 1) * step}")
        chunk.write.format("delta").mode("append").save(delta_src)
        chunk.write.mode("append").parquet(parquet_src)
    total = step * versions
    batches = {}

    def run(side, i):
        sink, checkpoint = b.path(f"sink.{side}.{i}"), b.path(f"checkpoint.{side}.{i}")
        if side == "delta":
            reader = spark.readStream.format("delta").load(delta_src)
        else:
            reader = spark.readStream.schema(base.schema).parquet(parquet_src)
        query = (
            reader.writeStream.format(side)
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start(sink)
        )
        query.awaitTermination()
        batches[side] = sum(1 for p in query.recentProgress if p["numInputRows"] > 0)
        landed = (
            spark.read.format("delta").load(sink) if side == "delta" else spark.read.parquet(sink)
        ).count()
        if landed != total:
            raise AssertionError(f"{side} stream wrote {landed} rows, expected {total}")

    d = b.timed("streaming", "delta", lambda i: run("delta", i))
    p = b.timed("streaming", "parquet", lambda i: run("parquet", i))
    b.record(
        "streaming",
        total,
        d,
        p,
        f"availableNow over {versions} appended versions "
        f"(micro-batches: delta {batches['delta']}, parquet {batches['parquet']})",
    )

    # One micro-batch per version: the sink's per-batch commit (with its application
    # transaction) and the source's per-version listing are paid once per batch.
    inc_versions = min(versions, 5)
    inc_src, inc_pq = b.path("inc_src.delta"), b.path("inc_src.parquet")

    def incremental(side, i):
        src = inc_src if side == "delta" else inc_pq
        sink, checkpoint = b.path(f"incsink.{side}.{i}"), b.path(f"inccheckpoint.{side}.{i}")
        shutil.rmtree(src, ignore_errors=True)
        elapsed = 0.0
        for v in range(inc_versions):
            chunk = base.filter(f"id >= {v * step} and id < {(v + 1) * step}")
            if side == "delta":
                chunk.write.format("delta").mode("append").save(src)
                reader = spark.readStream.format("delta").load(src)
            else:
                chunk.write.mode("append").parquet(src)
                reader = spark.readStream.schema(base.schema).parquet(src)
            t0 = time.perf_counter()
            (
                reader.writeStream.format(side)
                .option("checkpointLocation", checkpoint)
                .trigger(availableNow=True)
                .start(sink)
                .awaitTermination()
            )
            elapsed += time.perf_counter() - t0
        return elapsed

    times = {}
    for side in ("delta", "parquet"):
        b.memory.phase = f"streaming per version|{side}"
        runs = [incremental(side, i) for i in range(b.repeats + 1)][1:]
        times[side] = statistics.median(runs)
    b.memory.phase = "between"
    b.record(
        "streaming per version",
        inc_versions * step,
        times["delta"],
        times["parquet"],
        f"{inc_versions} availableNow runs, one new version (one micro-batch) each; "
        "query start included on both sides",
    )


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

    from lakehouse.embedded import delta_source
    from lakehouse.embedded import log as delta_log

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
    plan = delta_log.plan_write(copy, snap.arrow_schema, {}, False)
    plan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    delta_log.commit_files(copy, files, plan, overwrite=False)
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
def mb(value: int | None) -> str:
    return f"{value / 2**20:,.0f}" if value else "-"


def report(b: Bench, meta: dict) -> str:
    lines = [
        f"Embedded Delta engine vs Spark Parquet, {b.rows:,} rows, median of {b.repeats} "
        f"runs after one warm-up ({meta['date']}, {meta['cores']} cores, "
        f"pyspark {meta['pyspark']}, deltalake {meta['deltalake']})",
        "",
        f"{'operation':<22}|{'delta rows/s':>14} |{'parquet rows/s':>15} |{'ratio':>7} "
        f"|{'delta workers MB':>17} |{'parquet workers MB':>19}",
        "-" * 102,
    ]
    for r in b.results:
        delta = f"{r['delta_rows_per_s']:,.0f}" if r["delta_rows_per_s"] else "n/a"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "n/a"
        lines.append(
            f"{r['operation']:<22}|{delta:>14} |{r['parquet_rows_per_s']:>15,.0f} |{ratio:>7} "
            f"|{mb(r['delta_peak_workers_rss']):>17} |{mb(r['parquet_peak_workers_rss']):>19}"
        )
    lines.append("")
    for r in b.results:
        lines.append(f"  {r['operation']}: {r['what']}")
    lines += [
        "",
        "ratio = delta rows/s / parquet rows/s (1.00x = as fast as plain Parquet).",
        "workers MB = total RSS of the Python processes under the JVM (data source planners, "
        "daemons, task workers), largest at one moment during the operation; plain Parquet "
        "uses none, so its column shows the idle processes the Delta operations left behind.",
        f"Peak memory over the run: driver JVM {mb(b.memory.jvm_hwm)} MB (VmHWM), largest "
        f"single Python worker {mb(b.memory.worker_hwm)} MB (VmHWM), "
        f"{len(b.memory.worker_pids)} Python processes seen.",
    ]
    lines += [f"NOTE: {n}" for n in b.notes]
    if b.breakdown:
        lines += ["", "Where the time goes", "-------------------"] + b.breakdown
    return "\n".join(lines)


OPERATIONS = ("write", "read", "merge", "streaming")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per table (1M)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (3)")
    parser.add_argument("--versions", type=int, default=10, help="versions streamed (10)")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument("--workdir", help="folder for the tables (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the tables afterwards")
    parser.add_argument("--no-profile", action="store_true", help="skip the breakdown")
    parser.add_argument(
        "--only",
        default=",".join(OPERATIONS),
        help=f"comma-separated subset of {','.join(OPERATIONS)} (default: all)",
    )
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.rows % 10:
        parser.error("--rows must be a multiple of 10, at least 1000")
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - set(OPERATIONS):
        unknown = ", ".join(sorted(only - set(OPERATIONS)))
        parser.error(f"--only takes {', '.join(OPERATIONS)}, not {unknown}")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="lakehouse-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["LAKEHOUSE_LAKE"] = str(work / "lake")
    os.environ["LAKEHOUSE_ENGINE"] = "embedded"
    import deltalake
    import pyspark

    from lakehouse import get_spark

    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "deltalake": deltalake.__version__,
        "rows": args.rows,
        "repeats": args.repeats,
    }
    started = time.perf_counter()
    print(f"Starting Spark (embedded engine), tables under {work} ...", flush=True)
    spark = get_spark("embedded", app_name="bench-embedded")
    b = Bench(spark, work, args.rows, args.repeats, args.versions)
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
        if "write" in only:
            bench_writes(b, base)
        if "read" in only:
            bench_reads(b, base)
        if "merge" in only:
            bench_merge(b, base, source)
        if "streaming" in only:
            bench_streaming(b, base)
        if not args.no_profile and b.results:
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
        Path(args.out).write_text(
            json.dumps(
                {
                    "meta": meta,
                    "results": b.results,
                    "notes": b.notes,
                    "breakdown": b.breakdown,
                    "memory": {"jvm_hwm": b.memory.jvm_hwm, "worker_hwm": b.memory.worker_hwm},
                },
                indent=2,
                default=str,
            )
        )
        print(f"\nFigures written to {args.out}")
    spark.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _profile_action(b: Bench, base, source, op: str):
    spark = b.spark
    table = b.path("overwrite.delta")
    if op.startswith("read"):
        return lambda: full_scan(spark.read.format("delta").load(table))
    if op in ("append", "overwrite"):
        return lambda: base.write.format("delta").mode(op).save(b.path(f"{op}.delta"))
    if op == "merge":
        from lakehouse import DeltaTable

        target = b.path("merge.delta")
        return lambda: (
            DeltaTable.forPath(spark, target)
            .alias("t")
            .merge(source.alias("s"), "t.id = s.id")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
    return None


if __name__ == "__main__":
    raise SystemExit(main())
