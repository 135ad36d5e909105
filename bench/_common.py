"""What the benchmarks share: the rows, the memory sampler, the timing and the operations, each
run on a Delta engine (``embedded`` or ``delta-spark``) and on plain Spark Parquet in the same
session, so that the machine's speed and load cancel out of the ratio.

``bench_embedded.py --engine ...`` runs these operations on one engine in one process (a classic
Spark JVM keeps the jars of its first session, so each engine needs its own process);
``bench_engines.py`` runs one such process per engine and puts the figures side by side.
"""

from __future__ import annotations

import collections
import math
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "src"))

ENGINES = ("delta-spark", "embedded")

# The selective read: the table Z-ordered by this column into about this many files, then one
# value of the column looked up. 32 files leave a one-value lookup 1 or 2 files to read (3-6 %)
# when data skipping works, and all 32 when it does not.
ZORDER_COLUMN = "customer_id"
ZORDER_FILES = 32


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

    Per phase it keeps the largest JVM RSS, the largest total RSS of the Python workers alive
    at one moment, and the largest JVM + workers total at one moment (what the machine must
    hold); over the run it keeps each process's VmHWM (the kernel's own peak), so a short-lived
    worker between two samples is still counted if it was alive at one.
    Linux /proc only; elsewhere psutil RSS sampling if installed, else nothing."""

    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        self.interval = interval
        self.phase = "start"
        self.by_phase: dict[str, dict[str, int]] = collections.defaultdict(
            lambda: {"jvm_rss": 0, "workers_rss": 0, "total_rss": 0}
        )
        self.jvm_hwm = 0
        self.worker_hwm = 0
        self.total_peak = 0
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
        jvm_rss, hwm = self._rss(jvm)
        now["jvm_rss"] = max(now["jvm_rss"], jvm_rss)
        self.jvm_hwm = max(self.jvm_hwm, hwm)
        total = 0
        for pid in workers:
            rss, hwm = self._rss(pid)
            total += rss
            self.worker_hwm = max(self.worker_hwm, hwm)
        now["workers_rss"] = max(now["workers_rss"], total)
        now["total_rss"] = max(now["total_rss"], jvm_rss + total)
        self.total_peak = max(self.total_peak, jvm_rss + total)

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


def customer_of(order_id: int) -> str:
    """The ``customer_id`` :func:`orders` gives the order ``order_id``."""
    return f"C{order_id * 7919 % 100_000:06d}"


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


def lookup(df, customer: str):
    """The selective query: one customer's orders, counted and summed. Returns the DataFrame
    (collected) so that its executed plan, with the scan's metrics, can be read afterwards."""
    from pyspark.sql import functions as F

    query = df.filter(F.col(ZORDER_COLUMN) == customer).agg(
        F.count(F.lit(1)).alias("rows"), F.sum("amount").alias("amount")
    )
    return query, query.collect()[0]


# ------------------------------------------------------------------------------------------------
# Files: in a table, and read by a query
# ------------------------------------------------------------------------------------------------
def delta_detail(b: Bench, path: str) -> dict:
    """``DESCRIBE DETAIL`` of the table at ``path`` (numFiles, sizeInBytes): the SQL on
    delta-spark, ``DeltaTable.detail()`` on the embedded engine, which runs no Delta SQL."""
    if b.engine == "delta-spark":
        row = b.spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    else:
        from lakehouse import DeltaTable

        row = DeltaTable.forPath(b.spark, path).detail().first()
    return {"numFiles": int(row["numFiles"]), "sizeInBytes": int(row["sizeInBytes"])}


def embedded_files(path: str, customer: str) -> tuple[int, int, int]:
    """(files in the snapshot, files the embedded reader plans to read, files the log's min/max
    statistics leave for ``customer``). The embedded engine's scan is a Python data source
    without file metrics, so the reader is asked directly: it plans every file of the snapshot
    (it does not implement ``pushFilters``, see ``SnapshotReader``); :func:`prune_files` is what
    a reader that did could skip to."""
    from pyspark.sql.datasource import EqualTo

    from lakehouse.engines.embedded import log as delta_log
    from lakehouse.engines.embedded.delta_source import DeltaDataSource, prune_files

    snap = delta_log.snapshot(path)
    source = DeltaDataSource({"path": path})
    planned = sum(len(p.files) for p in source.reader(source.schema()).partitions())
    kept = prune_files(snap.files, [EqualTo((ZORDER_COLUMN,), customer)], snap.partition_columns)
    return len(snap.files), planned, len(kept)


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, spark, engine: str, work: Path, rows: int, repeats: int, versions: int):
        self.spark = spark
        self.engine = engine
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
                self.memory.phase = "between"
                setup(i)
                self.memory.phase = f"{label}|{side}"
            t0 = time.perf_counter()
            run(i)
            elapsed = time.perf_counter() - t0
            if not (warmup and i == 0):
                times.append(elapsed)
        self.memory.phase = "between"
        return statistics.median(times)

    def record(
        self, op: str, rows: int, delta_s: float | None, parquet_s: float, what: str, **extra
    ) -> dict:
        entry = {
            "operation": op,
            "engine": self.engine,
            "rows": rows,
            "delta_seconds": delta_s,
            "parquet_seconds": parquet_s,
            "delta_rows_per_s": rows / delta_s if delta_s else None,
            "parquet_rows_per_s": rows / parquet_s,
            "ratio": (parquet_s / delta_s) if delta_s else None,
            "what": what,
        }
        for side in ("delta", "parquet"):
            mem = self.memory.by_phase.get(f"{op}|{side}", {})
            entry[f"{side}_peak_workers_rss"] = mem.get("workers_rss")
            entry[f"{side}_peak_jvm_rss"] = mem.get("jvm_rss")
            entry[f"{side}_peak_total_rss"] = mem.get("total_rss")
        entry.update(extra)
        self.results.append(entry)
        shown = f"{rows / delta_s:,.0f}" if delta_s else "n/a"
        files = ""
        if entry.get("files_read") is not None:
            files = f"   files read {entry['files_read']}/{entry['files_total']}"
        print(
            f"  {op:<22} {self.engine} {shown:>12} rows/s   parquet {rows / parquet_s:>12,.0f} "
            f"rows/s{files}",
            flush=True,
        )
        return entry


# ------------------------------------------------------------------------------------------------
# Operations, each on the engine's Delta and on Parquet
# ------------------------------------------------------------------------------------------------
def bench_writes(b: Bench, base) -> None:
    n = b.rows
    delta, parquet = b.path("append.delta"), b.path("append.parquet")
    # The warm-up round creates the table and the folder; the timed rounds append to them.
    d = b.timed("append", "delta", lambda i: base.write.format("delta").mode("append").save(delta))
    p = b.timed("append", "parquet", lambda i: base.write.mode("append").parquet(parquet))
    b.record("append", n, d, p, "append N rows to an existing table / folder")
    if b.engine == "delta-spark":
        bench_append_without_statistics(b, base, p)

    delta, parquet = b.path("overwrite.delta"), b.path("overwrite.parquet")
    d = b.timed(
        "overwrite", "delta", lambda i: base.write.format("delta").mode("overwrite").save(delta)
    )
    p = b.timed("overwrite", "parquet", lambda i: base.write.mode("overwrite").parquet(parquet))
    b.record("overwrite", n, d, p, "replace a table / folder of N rows with N rows")


def bench_append_without_statistics(b: Bench, base, parquet_s: float) -> None:
    """The same append to a table that keeps no column statistics: what Delta's write costs
    beyond Parquet's, less the per-file min/max/null counts that data skipping reads."""
    delta = b.path("append-nostats.delta")
    base.limit(0).write.format("delta").save(delta)
    b.spark.sql(
        f"ALTER TABLE delta.`{delta}` SET TBLPROPERTIES ('delta.dataSkippingNumIndexedCols' = 0)"
    )
    d = b.timed(
        "append, no stats",
        "delta",
        lambda i: base.write.format("delta").mode("append").save(delta),
    )
    b.record(
        "append, no stats",
        b.rows,
        d,
        parquet_s,
        "the same append to a table with delta.dataSkippingNumIndexedCols = 0: no per-file "
        "column statistics, so no data skipping (shows what the statistics cost)",
    )


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

    d = b.timed("full scan", "delta", scan_delta)
    p = b.timed("full scan", "parquet", scan_parquet)
    if answers["delta"] != answers["parquet"] or answers["delta"]["rows"] != n:
        raise AssertionError(f"full scan results differ: {answers}")
    b.record("full scan", n, d, p, "count + aggregate over all 10 columns")

    d = b.timed(
        "1-column scan", "delta", lambda i: one_column(spark.read.format("delta").load(delta))
    )
    p = b.timed("1-column scan", "parquet", lambda i: one_column(spark.read.parquet(parquet)))
    b.record("1-column scan", n, d, p, "sum of one column (tests column pruning)")


def bench_zorder(b: Bench, base) -> None:
    """Z-order a table by ``customer_id`` into about ``ZORDER_FILES`` files, then look one
    customer up and count the files the lookup read.

    delta-spark runs ``OPTIMIZE ... ZORDER BY`` with ``spark.databricks.delta.optimize.maxFileSize``
    set to the table's size over ``ZORDER_FILES`` (open-source Delta reads that setting, not
    ``delta.targetFileSize``); the embedded engine runs ``optimize().executeZOrderBy`` with the
    table's ``delta.targetFileSize``, which delta-rs reads. The timed rounds size the files by
    what the warm-up's OPTIMIZE wrote, so both engines end near ``ZORDER_FILES`` files whatever
    their compression. The Parquet side does the same
    clustering by hand (``repartitionByRange`` into as many files) and reads the same lookup:
    Spark has no file statistics for a plain folder, so it opens every file."""
    from lakehouse import DeltaTable
    from lakehouse.tables import set_table_properties

    spark, n = b.spark, b.rows
    delta, parquet = b.path("zorder.delta"), b.path("zorder.parquet")
    base.write.format("delta").mode("overwrite").save(delta)
    base.write.mode("overwrite").parquet(parquet)
    max_size = "spark.databricks.delta.optimize.maxFileSize"
    target = [math.ceil(delta_detail(b, delta)["sizeInBytes"] / ZORDER_FILES)]

    def reset_delta(i):
        if i > 0:
            # A Z-ordered file compresses better than the written ones (delta-rs's writer much
            # better): size the files by what the warm-up's OPTIMIZE wrote, not by the input.
            target[0] = math.ceil(delta_detail(b, delta)["sizeInBytes"] / ZORDER_FILES)
        base.write.format("delta").mode("overwrite").save(delta)
        if b.engine == "embedded":
            set_table_properties(spark, delta, {"delta.targetFileSize": str(target[0])})
        else:
            spark.conf.set(max_size, str(target[0]))

    def zorder_delta(i):
        if b.engine == "delta-spark":
            spark.sql(f"OPTIMIZE delta.`{delta}` ZORDER BY ({ZORDER_COLUMN})").collect()
        else:
            DeltaTable.forPath(spark, delta).optimize().executeZOrderBy(ZORDER_COLUMN)

    def zorder_parquet(i):
        (
            spark.read.parquet(parquet)
            .repartitionByRange(ZORDER_FILES, ZORDER_COLUMN)
            .write.mode("overwrite")
            .parquet(b.path(f"zorder.parquet.out{i}"))
        )

    try:
        d = b.timed("z-order", "delta", zorder_delta, setup=reset_delta)
    finally:
        if b.engine == "delta-spark":
            spark.conf.unset(max_size)
    p = b.timed("z-order", "parquet", zorder_parquet)
    layout = delta_detail(b, delta)
    b.record(
        "z-order",
        n,
        d,
        p,
        f"{'OPTIMIZE ZORDER BY' if b.engine == 'delta-spark' else 'executeZOrderBy'}"
        f"({ZORDER_COLUMN}) into ~{ZORDER_FILES} files (got {layout['numFiles']}); parquet: "
        f"repartitionByRange({ZORDER_FILES}, {ZORDER_COLUMN}) rewrite",
    )

    # The lookup, on the Z-ordered table and on the range-partitioned folder.
    customer = customer_of(n // 3)
    clustered = b.path(f"zorder.parquet.out{b.repeats}")
    last: dict = {}

    def lookup_delta(i):
        last["delta"] = lookup(spark.read.format("delta").load(delta), customer)

    def lookup_parquet(i):
        last["parquet"] = lookup(spark.read.parquet(clustered), customer)

    d = b.timed("selective read", "delta", lookup_delta)
    p = b.timed("selective read", "parquet", lookup_parquet)
    if last["delta"][1] != last["parquet"][1] or not last["delta"][1]["rows"]:
        raise AssertionError(f"selective read results differ: {last}")
    from lakehouse.gold.maintenance import files_read

    parquet_read = files_read(last["parquet"][0])
    parquet_total = len(list(Path(clustered).glob("*.parquet")))
    extra = {"files_total": layout["numFiles"], "parquet_files_total": parquet_total}
    extra["parquet_files_read"] = parquet_read
    if b.engine == "delta-spark":
        extra["files_read"] = files_read(last["delta"][0])
        how = "files read: numFiles of the Delta scan in the executed plan"
    else:
        total, planned, by_stats = embedded_files(delta, customer)
        extra.update(files_total=total, files_read=planned, files_by_stats=by_stats)
        how = (
            f"files read: the files the embedded reader plans (no pushdown); the log's "
            f"min/max statistics would leave {by_stats}"
        )
    b.record(
        "selective read",
        n,
        d,
        p,
        f"{ZORDER_COLUMN} = '{customer}' on the Z-ordered table (rows/s of the table); {how}",
        **extra,
    )


def merge_available() -> tuple[bool, str]:
    try:
        from lakehouse import DeltaTable  # noqa: F401
    except (ImportError, AttributeError) as exc:
        return False, f"lakehouse.DeltaTable cannot be imported ({exc})"
    return True, ""


def merge_into(spark, path: str, source) -> None:
    """The upsert through ``DeltaTable``: the real ``delta.tables.DeltaTable`` on delta-spark,
    the delta-rs-backed one on the embedded engine."""
    from lakehouse import DeltaTable

    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(source.alias("s"), "t.id = s.id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )


def bench_merge(b: Bench, base, source) -> None:
    spark, n = b.spark, b.rows
    expected = n + n // 10
    delta, parquet = b.path("merge.delta"), b.path("merge.parquet")
    ok, why = merge_available()
    d = None
    if ok:

        def reset_delta(i):
            base.write.format("delta").mode("overwrite").save(delta)

        d = b.timed("merge", "delta", lambda i: merge_into(spark, delta, source), setup=reset_delta)
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
    b.record(
        "merge",
        n,
        d,
        p,
        "upsert: 10% of keys updated + 10% new rows (rows/s of target); parquet: the whole "
        "table rewritten with the changes applied",
    )


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


OPERATIONS = ("write", "read", "zorder", "merge", "streaming")


def run_operations(b: Bench, base, source, only: set[str]) -> None:
    """The operations of ``only``, in a fixed order (the reads reuse the written tables)."""
    if "write" in only:
        bench_writes(b, base)
    if "read" in only:
        bench_reads(b, base)
    if "zorder" in only:
        bench_zorder(b, base)
    if "merge" in only:
        bench_merge(b, base, source)
    if "streaming" in only:
        bench_streaming(b, base)


def mb(value: int | None) -> str:
    return f"{value / 2**20:,.0f}" if value else "-"
