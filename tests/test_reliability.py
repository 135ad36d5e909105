"""Both local engines' guarantees under failure: a write or a MERGE killed mid-way, two writers at
once, a stream killed and restarted, a sample of the random kill drill, and, on the embedded
engine, clear errors for broken or missing tables.

Children run tests/helpers/reliability_child.py in their own process group, so SIGKILL takes
down the driver, its JVM and its Python workers at once, as a crash or a power cut would.
The parent reads the tables with delta-rs alone: no Spark is needed to judge the outcome, and
delta-rs reads what delta-spark writes here (protocol 1/2, no table features). Each engine runs
in children of its own: a classic Spark JVM keeps the first session's jars.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import deltalake
import pyarrow as pa
import pytest
from helpers import processes
from helpers.processes import commits, kill
from helpers.reliability import (
    START_TIMEOUT,
    batch,
    child,
    data_files,
    finish,
    ids,
    rows,
    upserted,
)

from lakehouse import session

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
HAS_DELTA_JARS = bool(session.delta_spark_jars())
NO_JARS = "Delta's jars are not in the JVM cache: run scripts/bootstrap where Maven is reached"
ENGINES = [
    pytest.param("delta-spark", marks=pytest.mark.skipif(not HAS_DELTA_JARS, reason=NO_JARS)),
    "embedded",
]


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = START_TIMEOUT):
    """Poll ``condition`` until it returns something truthy; fail if the child dies first."""
    return processes.wait_for(condition, proc, what, timeout)


def txn_actions(table: Path) -> list[dict]:
    found = []
    for version in commits(table):
        text = (table / "_delta_log" / f"{version:020d}.json").read_text()
        actions = [json.loads(line) for line in text.splitlines() if line.strip()]
        found += [action["txn"] for action in actions if "txn" in action]
    return found


# ------------------------------------------------------------------------------------------------
# A write or a MERGE killed mid-way
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_a_write_killed_mid_way_leaves_the_previous_version(tmp_path, engine):
    table, lake = tmp_path / "orders", tmp_path / "lake"
    deltalake.write_deltalake(str(table), batch(0, 100))
    deltalake.write_deltalake(str(table), batch(100, 50), mode="append")
    before_ids, before_files = ids(table), data_files(table)
    assert commits(table) == [0, 1]

    # 200 tasks on two cores: the job runs for many seconds, one task's file at a time.
    writer = child(lake, engine, "slow-append", table, 1_000_000, 2_000_000, 200)
    new_files = wait_for(
        lambda: data_files(table) - before_files, writer, "the write's first data files"
    )
    kill(writer)

    # The crash left files behind, but no commit: readers see version 1 and its rows only.
    assert new_files <= data_files(table), "the killed write left no data file (not mid-way)"
    assert commits(table) == [0, 1], "a write killed mid-way committed (part of) its data"
    assert deltalake.DeltaTable(str(table)).version() == 1
    assert ids(table) == before_ids

    # A fresh Spark session reads the same, and the next write lands as version 2.
    after = finish(child(lake, engine, "read-then-append", table, 5_000, 10))
    assert (after["rows_before"], after["id_sum_before"]) == (150, sum(before_ids))
    assert after["rows_after"] == 160
    assert commits(table) == [0, 1, 2]
    assert ids(table) == before_ids + list(range(5_000, 5_010))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_merge_killed_mid_way_leaves_the_previous_version_and_a_rerun_completes(tmp_path, engine):
    table, lake = tmp_path / "customers", tmp_path / "lake"
    deltalake.write_deltalake(str(table), batch(0, 100))
    deltalake.write_deltalake(str(table), batch(100, 100), mode="append")
    before, before_files = rows(table), data_files(table)

    # Updates ids 100..199 and inserts 200..299, in 40 tasks that each write a data file.
    merger = child(lake, engine, "merge", table, 100, 200, "merged", 40)
    new_files = wait_for(
        lambda: data_files(table) - before_files, merger, "the merge's first data files"
    )
    kill(merger)

    assert new_files <= data_files(table), "the killed merge left no data file (not mid-way)"
    assert commits(table) == [0, 1], "a merge killed mid-way committed (part of) its changes"
    assert rows(table) == before, "a merge killed mid-way changed the rows readers see"

    # Restarted, the same merge runs to the end, as one commit: each row once, all updated.
    finish(child(lake, engine, "merge", table, 100, 200, "merged"))
    assert commits(table) == [0, 1, 2]
    assert rows(table) == upserted(before, 100, 200, "merged")


# ------------------------------------------------------------------------------------------------
# Two writers at once
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_two_processes_appending_at_once_both_land(tmp_path, engine):
    table, lake = tmp_path / "events", tmp_path / "lake"
    deltalake.write_deltalake(str(table), batch(0, 10))
    go = tmp_path / "go"
    ready = [tmp_path / "ready-a", tmp_path / "ready-b"]
    times, count = 3, 1_000
    writers = [
        child(lake, engine, "append-on-signal", table, ready[0], go, 10_000, count, times),
        child(lake, engine, "append-on-signal", table, ready[1], go, 20_000, count, times),
    ]
    try:
        for proc, flag in zip(writers, ready):
            wait_for(flag.exists, proc, "the writer's session to be ready")
        go.touch()  # both start their appends within a few milliseconds
        results = [finish(proc) for proc in writers]
    finally:
        for proc in writers:
            if proc.poll() is None:
                kill(proc)

    assert [r["appended"] for r in results] == [times * count] * 2
    # Every append is its own version: 1..6 after the table's version 0, none lost or merged.
    assert commits(table) == list(range(0, 1 + 2 * times))
    expected = list(range(10)) + [
        i for start in (10_000, 20_000) for i in range(start, start + times * count)
    ]
    assert ids(table) == sorted(expected)
    history = deltalake.DeltaTable(str(table)).history()
    assert sum(1 for h in history if h.get("operation") == "WRITE") == 1 + 2 * times


# The loser's error: Delta's concurrent-modification error class on delta-spark, the embedded
# engine's ConcurrentModification (no error classes there) naming the fix.
CONFLICT = {
    "delta-spark": r"DELTA_CONCURRENT_[A-Z_]+|Concurrent\w+Exception",
    "embedded": r"ConcurrentModification: Another writer committed version 1 .* run it again",
}


@pytest.mark.parametrize("engine", ENGINES)
def test_two_conflicting_merges_at_once_one_fails_and_nothing_is_lost(tmp_path, engine):
    table, lake, barrier = tmp_path / "customers", tmp_path / "lake", tmp_path / "barrier"
    barrier.mkdir()
    deltalake.write_deltalake(str(table), batch(0, 100))
    before = rows(table)
    # Both update ids 50..99; each inserts ids of its own as well.
    merges = {"a": (25, 100), "b": (50, 100)}
    procs = {
        tag: child(lake, engine, "merge-together", table, start, count, tag, barrier, 2)
        for tag, (start, count) in merges.items()
    }
    try:
        results = {tag: finish(proc) for tag, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                kill(proc)

    winners = [tag for tag, result in results.items() if result["committed"]]
    assert len(winners) == 1, f"both merges read version 0; exactly one may commit: {results}"
    (winner,) = winners
    (loser,) = set(merges) - {winner}
    assert re.search(CONFLICT[engine], results[loser]["error"], re.S), results[loser]["error"]

    # The table is the winning merge applied, whole: nothing of the loser, nothing lost.
    assert commits(table) == [0, 1]
    assert rows(table) == upserted(before, *merges[winner], winner)

    # Run again, the loser starts from the winner's version and lands on top of it.
    finish(child(lake, engine, "merge", table, *merges[loser], loser))
    assert commits(table) == [0, 1, 2]
    assert rows(table) == upserted(upserted(before, *merges[winner], winner), *merges[loser], loser)


# ------------------------------------------------------------------------------------------------
# A stream killed and restarted
# ------------------------------------------------------------------------------------------------
class Appender(threading.Thread):
    """Appends a new version of 50 fresh ids to the source every 0.3 s until stopped."""

    def __init__(self, table: Path, start: int):
        super().__init__(daemon=True)
        self.table, self.next_id = table, start
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                deltalake.write_deltalake(str(self.table), batch(self.next_id, 50), mode="append")
                self.next_id += 50
                self.halt.wait(0.3)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=60)
        if self.error:
            raise self.error


def uncommitted_sink_file(sink: Path):
    """A data file in the sink that no commit references yet: a micro-batch mid-write."""
    if not commits(sink):
        return None
    try:
        actions = pa.table(deltalake.DeltaTable(str(sink)).get_add_actions(flatten=True))
        committed = set(actions["path"].to_pylist())
    except Exception:  # the log is being written this very moment: look again
        return None
    return (data_files(sink) - committed) or None


def batch_ids(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


@pytest.fixture(scope="module", params=ENGINES)
def crashed_stream(request, tmp_path_factory):
    """On the engine ``request.param``, a Delta -> Delta stream killed twice with SIGKILL
    while its source keeps growing, then restarted with availableNow in a new process, three
    runs in a row:

    1. recovers from the second kill and runs;
    2. runs after the test has put the checkpoint in the state of a crash between the sink's
       commit and Spark's checkpoint commit (the batch is redone), and appended a version;
    3. runs once more.

    Returns the tables, the redone batch and the sink's version after each run."""
    engine = request.param
    root = tmp_path_factory.mktemp(f"stream-{engine}")
    source, sink, checkpoint = root / "source", root / "sink", root / "checkpoint"
    lake, pause = root / "lake", root / "pause"
    pause.mkdir()
    deltalake.write_deltalake(str(source), batch(0, 200))
    appender = Appender(source, 200)
    appender.start()
    try:
        # Kill 1: after a few micro-batches have landed, while new versions keep arriving.
        first = child(lake, engine, "stream", source, sink, checkpoint, "processing")
        wait_for(lambda: len(commits(sink)) >= 3, first, "three micro-batches in the sink")
        kill(first)
        landed = len(commits(sink))

        # Kill 2: in the middle of a micro-batch (its files written, not yet committed) if
        # the test can catch one, else right after the next batches land.
        second = child(lake, engine, "stream", source, sink, checkpoint, "processing")
        wait_for(
            lambda: uncommitted_sink_file(sink) or len(commits(sink)) >= landed + 3,
            second,
            "the restarted stream to write again",
        )
        kill(second)
    finally:
        appender.stop()

    restart = child(lake, engine, "stream", source, sink, checkpoint, "available-now", 3, pause)
    try:
        wait_for((pause / "done-1").exists, restart, "the first availableNow run")
        # The worst moment to crash: after the sink's Delta commit, before Spark's checkpoint
        # records the batch. Forget the last batch in the checkpoint so that run 2 redoes it;
        # only the application transaction in the sink's log can tell it already landed.
        redone = batch_ids(checkpoint / "commits")[-1]
        assert redone == batch_ids(checkpoint / "offsets")[-1]
        (checkpoint / "commits" / str(redone)).unlink()
        (checkpoint / "commits" / f".{redone}.crc").unlink(missing_ok=True)
        # And data that arrived after that batch: run 2 must pick it up too.
        deltalake.write_deltalake(str(source), batch(appender.next_id, 50), mode="append")
        (pause / "go-1").touch()
        wait_for((pause / "done-2").exists, restart, "the second availableNow run")
        (pause / "go-2").touch()
        result = finish(restart)
    finally:
        if restart.poll() is None:
            kill(restart)
    return {
        "source": source,
        "sink": sink,
        "checkpoint": checkpoint,
        "redone_batch": redone,
        "sink_versions": result["sink_versions"],
    }


def sink_ids(stream: dict, run: int) -> list[int]:
    """The sink's ids as the availableNow run ``run`` (1-based) left them."""
    version = stream["sink_versions"][run - 1]
    table = deltalake.DeltaTable(str(stream["sink"]), version=version)
    return sorted(table.to_pyarrow_table(columns=["id"])["id"].to_pylist())


def test_a_stream_killed_and_restarted_writes_every_row_exactly_once(crashed_stream):
    source_ids = ids(crashed_stream["source"])
    for run in (1, 2, 3):
        landed = sink_ids(crashed_stream, run)
        duplicates = len(landed) - len(set(landed))
        assert duplicates == 0, f"{duplicates} rows landed twice in the sink by restart run {run}"
        assert set(landed) <= set(source_ids)
    landed = sink_ids(crashed_stream, 3)
    missing = set(source_ids) - set(landed)
    assert not missing, f"{len(missing)} source rows never reached the sink"
    assert landed == source_ids  # the same ids, each once


def test_the_sink_log_records_each_micro_batch_as_an_application_transaction(crashed_stream):
    txns = txn_actions(crashed_stream["sink"])
    assert txns, "the sink's _delta_log has no application transaction (txn) actions"
    # One app id, the query's: Spark keeps the query id in the checkpoint across restarts.
    metadata = (crashed_stream["checkpoint"] / "metadata").read_text().splitlines()[0]
    query_id = json.loads(metadata)["id"]
    assert {t["appId"] for t in txns} <= {query_id, f"spark-streaming:{query_id}"}
    assert len({t["appId"] for t in txns}) == 1
    batches = [t["version"] for t in txns]
    # No batch committed twice (the redone one was skipped), in order.
    assert batches == sorted(set(batches))
    assert crashed_stream["redone_batch"] in batches


# Embedded only: delta-spark's sink names its transactions by the bare query id; the
# "spark-streaming:" prefix is the embedded sink's own, which its history() reads to label the
# commit STREAMING UPDATE.
@pytest.mark.parametrize("crashed_stream", ["embedded"], indirect=True)
def test_the_embedded_sink_marks_its_transactions_as_a_stream(crashed_stream):
    txns = txn_actions(crashed_stream["sink"])
    assert txns and all(t["appId"].startswith("spark-streaming:") for t in txns)


def test_one_available_now_restart_catches_up_after_a_crash(crashed_stream):
    # Run 2 redid the interrupted batch; availableNow means it also takes what came after.
    assert sink_ids(crashed_stream, 2) == ids(crashed_stream["source"])


# ------------------------------------------------------------------------------------------------
# The kill drill, sampled
# ------------------------------------------------------------------------------------------------
def test_a_sample_of_the_kill_drill_loses_and_duplicates_no_row():
    """scripts/kill_drill.py with two random kill points per engine, so the script itself stays
    working; the drill proper runs a hundred per engine by hand. Seed 4 draws every operation:
    a write and a MERGE on delta-spark, a stream and a write on embedded."""
    engines = ["delta-spark", "embedded"] if HAS_DELTA_JARS else ["embedded"]
    command = [sys.executable, str(REPO / "scripts" / "kill_drill.py"), "--trials", "2"]
    command += ["--seed", "4", "--engines", ",".join(engines)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=3600, cwd=REPO)
    report = f"{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    summary = dict(re.findall(r"^([a-z-]+): (trials=.*)$", run.stdout, re.M))
    for engine in engines:
        assert engine in summary, f"no summary line for {engine}:\n{report}"
        figures = dict(pair.split("=") for pair in summary[engine].split())
        assert figures["trials"] == "2", report
        assert (figures["lost"], figures["duplicated"]) == ("0", "0"), report
        assert (figures["torn"], figures["failed"]) == ("0", "0"), report
    assert run.returncode == 0, report


# ------------------------------------------------------------------------------------------------
# Clear errors
# ------------------------------------------------------------------------------------------------
# Embedded only from here: the messages checked are the embedded engine's own wording, naming a
# fix or the portable DeltaTable call for what it cannot run. On delta-spark, Delta's own errors
# apply, and clone, MERGE INTO, OPTIMIZE, VACUUM and DESCRIBE HISTORY simply run.
@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(tmp_path_factory.mktemp("lake")))
    mp.setenv("LAKEHOUSE_CATALOG", "reliability")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    yield get_spark("embedded", scale="tiny")
    mp.undo()


def test_a_corrupt_commit_names_the_table_and_the_fix(spark, tmp_path):
    table = tmp_path / "corrupt"
    deltalake.write_deltalake(str(table), batch(0, 3))
    deltalake.write_deltalake(str(table), batch(3, 3), mode="append")
    commit = table / "_delta_log" / f"{1:020d}.json"
    commit.write_text(commit.read_text()[:40])  # cut off mid-record, as a crash mid-copy would
    fix = "restore the folder from a copy, or rewrite the table"
    named = re.escape(str(table))

    with pytest.raises(Exception, match=f"(?s){named}.*could not be read.*{fix}"):
        spark.read.format("delta").load(str(table)).count()
    with pytest.raises(Exception, match=f"(?s){named}.*{fix}"):
        spark.range(1).write.format("delta").mode("append").save(str(table))
    from lakehouse import DeltaTable

    with pytest.raises(Exception, match=f"(?s){named}.*{fix}"):
        DeltaTable.forPath(spark, str(table))


def test_a_missing_path_names_the_path_and_the_fix(spark, tmp_path):
    missing = tmp_path / "never_written"
    named = re.escape(str(missing))
    with pytest.raises(Exception, match=f"No Delta table at '{named}'.*Check the path"):
        spark.read.format("delta").load(str(missing)).count()
    (missing / "data").mkdir(parents=True)
    with pytest.raises(Exception, match=f"'{named}' is not a Delta table.*Check the path"):
        spark.read.format("delta").load(str(missing)).count()
    from lakehouse import DeltaTable

    with pytest.raises(Exception, match=f"{named}.*Check the path"):
        DeltaTable.forPath(spark, str(missing))


def test_an_unknown_table_name_is_named_with_a_fix(spark):
    with pytest.raises(Exception, match=r"`nope`\.`missing` cannot be found\. Verify the spelling"):
        spark.table("nope.missing")
    with pytest.raises(Exception, match=r"`nope`\.`missing` cannot be found"):
        spark.sql("SELECT * FROM nope.missing")
    from lakehouse import DeltaTable

    with pytest.raises(
        Exception, match=r"Table nope\.missing does not exist .*Check the name.*saveAsTable"
    ):
        DeltaTable.forName(spark, "nope.missing")


def test_an_unsupported_call_names_the_alternative(spark, tmp_path):
    from lakehouse import DeltaTable
    from lakehouse.engines.embedded.errors import UnsupportedOperation

    table = str(tmp_path / "orders")
    spark.range(3).write.format("delta").save(table)
    with pytest.raises(
        UnsupportedOperation,
        match=r"DeltaTable\.clone is not available on the embedded engine\. Copy the data",
    ):
        DeltaTable.forPath(spark, table).clone(str(tmp_path / "copy"))
    with pytest.raises(NotImplementedError, match="clusterBy"):
        DeltaTable.create(spark).tableName("default.clustered").clusterBy("id")
    with pytest.raises(Exception, match=r"needs a checkpoint|checkpointLocation must be specified"):
        spark.readStream.format("delta").load(table).writeStream.format("delta").start(
            str(tmp_path / "sink")
        )


@pytest.mark.parametrize(
    ("statement", "alternative"),
    [
        (
            "MERGE INTO delta.`{path}` t USING (SELECT 1 AS id) s ON t.id = s.id "
            "WHEN MATCHED THEN DELETE",
            "merge",
        ),
        ("OPTIMIZE delta.`{path}`", "optimize"),
        ("VACUUM delta.`{path}`", "vacuum"),
        ("DESCRIBE HISTORY delta.`{path}`", "history"),
    ],
    ids=["merge-into", "optimize", "vacuum", "describe-history"],
)
def test_a_databricks_only_sql_statement_names_the_portable_call(
    spark, tmp_path, statement, alternative
):
    table = str(tmp_path / "orders")
    spark.range(3).write.format("delta").save(table)
    with pytest.raises(Exception, match=rf"(?is)embedded engine.*DeltaTable.*{alternative}"):
        spark.sql(statement.format(path=table)).collect()
