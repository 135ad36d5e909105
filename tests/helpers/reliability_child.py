"""A child process for tests/test_reliability.py: one Spark session on the embedded engine doing
one thing to a Delta table, so the test can kill it, or run two at once.

    python reliability_child.py slow-append TABLE START COUNT PARTITIONS
    python reliability_child.py read-then-append TABLE START COUNT
    python reliability_child.py append-on-signal TABLE READY GO START COUNT TIMES
    python reliability_child.py stream SOURCE SINK CHECKPOINT TRIGGER [RUNS [PAUSE_DIR]]

The lake folder comes from LAKEHOUSE_LAKE. Results are printed as one JSON line, last.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def session():
    from lakehouse import get_spark

    return get_spark("embedded", scale="tiny", app_name="reliability-child")


def rows(spark, start: int, count: int, partitions: int | None = None):
    """Rows ``start``..``start + count - 1``: an id and a payload derived from it."""
    frame = (
        spark.range(start, start + count, 1, partitions)
        if partitions
        else spark.range(start, start + count)
    )
    return frame.selectExpr("id", "concat('row-', cast(id as string)) AS payload")


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


def stream(
    source: str, sink: str, checkpoint: str, trigger: str, runs: int = 1, pause: str = ""
) -> None:
    """Stream ``source`` into ``sink``. A processing-time query runs until the test kills it;
    an available-now query runs ``runs`` times in a row. After each run but the last, if
    ``pause`` names a folder, touch ``done-<run>`` there and wait for ``go-<run>``, so the test
    can change the tables between runs. Prints the sink's version after each run."""
    import deltalake

    spark = session()
    versions = []
    for run in range(1, runs + 1):
        writer = (
            spark.readStream.format("delta")
            .load(source)
            .writeStream.format("delta")
            .option("checkpointLocation", checkpoint)
        )
        if trigger == "processing":
            writer = writer.trigger(processingTime="1 second")
        elif trigger == "available-now":
            writer = writer.trigger(availableNow=True)
        else:
            raise SystemExit(f"unknown trigger {trigger!r}")
        writer.start(sink).awaitTermination()
        versions.append(deltalake.DeltaTable(sink).version())
        if pause and run < runs:
            Path(pause, f"done-{run}").touch()
            wait_for_file(Path(pause, f"go-{run}"))
    print(json.dumps({"sink_versions": versions}))


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
    elif command == "stream":
        runs = int(args[4]) if len(args) > 4 else 1
        stream(args[0], args[1], args[2], args[3], runs, args[5] if len(args) > 5 else "")
    else:
        raise SystemExit(f"unknown command {command!r}; see the module docstring")


if __name__ == "__main__":
    main(sys.argv[1:])
