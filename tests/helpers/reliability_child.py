"""A child process for tests/test_reliability.py and scripts/kill_drill.py: one Spark session
doing one thing to a Delta table, so the parent can kill it, or run two at once.

    python reliability_child.py slow-append TABLE START COUNT PARTITIONS
    python reliability_child.py read-then-append TABLE START COUNT
    python reliability_child.py append-on-signal TABLE READY GO START COUNT TIMES
    python reliability_child.py idempotent-append TABLE START COUNT PARTITIONS APP_ID VERSION
    python reliability_child.py merge TABLE START COUNT TAG [PARTITIONS]
    python reliability_child.py merge-together TABLE START COUNT TAG BARRIER PEERS
    python reliability_child.py stream SOURCE SINK CHECKPOINT TRIGGER [RUNS [PAUSE_DIR [MAX_FILES]]]

The engine comes from LAKEHOUSE_ENGINE (embedded or delta-spark; embedded when unset), the lake
folder from LAKEHOUSE_LAKE. When RELIABILITY_FLAGS names a folder, the child touches ``ready``
there just before the operation starts and ``done`` just after it ends, so a parent can tell
whether its kill landed mid-operation. Results are printed as one JSON line, last.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ENGINES = ("embedded", "delta-spark")


def session():
    from lakehouse import get_spark

    engine = os.environ.get("LAKEHOUSE_ENGINE") or "embedded"
    if engine not in ENGINES:
        raise SystemExit(
            f"LAKEHOUSE_ENGINE={engine!r} cannot run the reliability child: set it to one of "
            f"{', '.join(ENGINES)}."
        )
    return get_spark(engine, scale="tiny", app_name="reliability-child")


def flag(name: str) -> None:
    """Touch ``name`` in the RELIABILITY_FLAGS folder, if there is one."""
    folder = os.environ.get("RELIABILITY_FLAGS")
    if folder:
        Path(folder, name).touch()


def rows(spark, start: int, count: int, partitions: int | None = None, tag: str = "row"):
    """Rows ``start``..``start + count - 1``: an id and a payload ``<tag>-<id>``."""
    frame = (
        spark.range(start, start + count, 1, partitions)
        if partitions
        else spark.range(start, start + count)
    )
    return frame.selectExpr("id", f"concat('{tag}-', cast(id as string)) AS payload")


def slow_append(table: str, start: int, count: int, partitions: int) -> None:
    # Many small tasks on two cores: data files appear one task at a time, long before the
    # single commit at the end of the job.
    spark = session()
    rows(spark, start, count, partitions).write.format("delta").mode("append").save(table)
    print(json.dumps({"finished": True}))


def read_then_append(table: str, start: int, count: int) -> None:
    from pyspark.sql import functions as F

    spark = session()
    before = spark.read.format("delta").load(table).agg(F.count("*"), F.sum("id")).first()
    rows(spark, start, count).write.format("delta").mode("append").save(table)
    after = spark.read.format("delta").load(table).agg(F.count("*"), F.sum("id")).first()
    print(
        json.dumps(
            {
                "rows_before": before[0],
                "id_sum_before": before[1],
                "rows_after": after[0],
                "id_sum_after": after[1],
            }
        )
    )


def append_on_signal(table: str, ready: str, go: str, start: int, count: int, times: int) -> None:
    spark = session()
    batches = [rows(spark, start + i * count, count) for i in range(times)]
    Path(ready).touch()
    wait_for_file(Path(go))
    for batch in batches:
        batch.write.format("delta").mode("append").save(table)
    print(json.dumps({"appended": times * count}))


def idempotent_append(
    table: str, start: int, count: int, partitions: int, app_id: str, version: int
) -> None:
    """An append a restart can simply run again: Delta records (app id, version) in the commit
    and skips a later write of a version the table already has."""
    spark = session()
    frame = rows(spark, start, count, partitions)
    flag("ready")
    began = time.monotonic()
    (
        frame.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .save(table)
    )
    flag("done")
    print(json.dumps({"seconds": time.monotonic() - began}))


def merge(table: str, start: int, count: int, tag: str, partitions: int = 0) -> None:
    """Upsert rows ``start``..``start + count - 1`` with payload ``<tag>-<id>``: matched rows
    are updated, the others inserted. Running it again changes nothing, so a restart after a
    crash simply runs it again. With ``partitions``, the join runs in that many tasks, each
    writing its own data file, so the merge's files appear one task at a time."""
    from lakehouse import DeltaTable

    spark = session()
    if partitions:
        spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
        # Adaptive execution would fold the tasks back into one or two.
        spark.conf.set("spark.sql.adaptive.enabled", "false")
    source = rows(spark, start, count, tag=tag)
    flag("ready")
    began = time.monotonic()
    upsert(DeltaTable.forPath(spark, table), source)
    flag("done")
    print(json.dumps({"committed": True, "seconds": time.monotonic() - began}))


def merge_together(table: str, start: int, count: int, tag: str, barrier: str, peers: int) -> None:
    """The same upsert, held at a barrier until ``peers`` merges have all read the table: each
    reads its source only after it has fixed the table version it merges into, and the source
    waits until every peer's source is being read. So all of them start from one version and
    at most one can commit it; a loser's error is printed, not raised."""
    from lakehouse import DeltaTable

    spark = session()
    source = rows(spark, start, count, tag=tag).mapInArrow(
        Barrier(barrier, tag, peers), "id long, payload string"
    )
    target = DeltaTable.forPath(spark, table)
    try:
        upsert(target, source)
    except Exception as exc:  # the loser: the parent judges the error
        print(json.dumps({"committed": False, "error": f"{type(exc).__name__}: {exc}"}))
        return
    print(json.dumps({"committed": True}))


def upsert(target, source) -> None:
    (
        target.alias("t")
        .merge(source.alias("s"), "t.id = s.id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )


class Barrier:
    """``mapInArrow`` function: announce this merge in ``folder`` and pass rows on only once
    ``peers`` merges have announced themselves (runs in Spark's Python workers)."""

    def __init__(self, folder: str, name: str, peers: int):
        self.folder, self.name, self.peers = folder, name, peers

    def __call__(self, batches):
        Path(self.folder, self.name).touch()
        deadline = time.monotonic() + 600
        while len(list(Path(self.folder).iterdir())) < self.peers:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {len(list(Path(self.folder).iterdir()))} of {self.peers} merges "
                    f"reached the barrier in {self.folder} within 600 s: did a peer fail?"
                )
            time.sleep(0.01)
        yield from batches


def stream(
    source: str,
    sink: str,
    checkpoint: str,
    trigger: str,
    runs: int = 1,
    pause: str = "",
    max_files: int = 0,
) -> None:
    """Stream ``source`` into ``sink``. A processing-time query runs until the test kills it;
    an available-now query runs ``runs`` times in a row. After each run but the last, if
    ``pause`` names a folder, touch ``done-<run>`` there and wait for ``go-<run>``, so the test
    can change the tables between runs. With ``max_files``, each micro-batch takes at most that
    many source files. Prints the sink's version after each run."""
    import deltalake

    spark = session()
    versions = []
    flag("ready")
    began = time.monotonic()
    for run in range(1, runs + 1):
        reader = spark.readStream.format("delta")
        if max_files:
            reader = reader.option("maxFilesPerTrigger", max_files)
        writer = (
            reader.load(source).writeStream.format("delta").option("checkpointLocation", checkpoint)
        )
        if trigger == "processing":
            writer = writer.trigger(processingTime="1 second")
        elif trigger == "available-now":
            writer = writer.trigger(availableNow=True)
        else:
            raise SystemExit(f"unknown trigger {trigger!r}: use processing or available-now")
        writer.start(sink).awaitTermination()
        versions.append(deltalake.DeltaTable(sink).version())
        if pause and run < runs:
            Path(pause, f"done-{run}").touch()
            wait_for_file(Path(pause, f"go-{run}"))
    flag("done")
    print(json.dumps({"sink_versions": versions, "seconds": time.monotonic() - began}))


def wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + 600
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {path}")
        time.sleep(0.005)


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "slow-append":
        slow_append(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif command == "read-then-append":
        read_then_append(args[0], int(args[1]), int(args[2]))
    elif command == "append-on-signal":
        append_on_signal(args[0], args[1], args[2], int(args[3]), int(args[4]), int(args[5]))
    elif command == "idempotent-append":
        idempotent_append(args[0], int(args[1]), int(args[2]), int(args[3]), args[4], int(args[5]))
    elif command == "merge":
        merge(args[0], int(args[1]), int(args[2]), args[3], int(args[4]) if len(args) > 4 else 0)
    elif command == "merge-together":
        merge_together(args[0], int(args[1]), int(args[2]), args[3], args[4], int(args[5]))
    elif command == "stream":
        runs = int(args[4]) if len(args) > 4 else 1
        pause = args[5] if len(args) > 5 else ""
        max_files = int(args[6]) if len(args) > 6 else 0
        stream(args[0], args[1], args[2], args[3], runs, pause, max_files)
    else:
        raise SystemExit(f"unknown command {command!r}; see the module docstring")


if __name__ == "__main__":
    main(sys.argv[1:])
