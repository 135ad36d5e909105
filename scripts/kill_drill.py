"""Kill drill: SIGKILL writes, merges and streams at random moments on each local engine, restart
them, and count the rows lost or duplicated. Both must be 0.

    .venv/bin/python scripts/kill_drill.py [--trials 100] [--seed 1]
        [--engines delta-spark,embedded] [--ops write,merge,stream] [--keep-all]

Each trial, on a fresh table of a few hundred rows:

1. a child process (tests/helpers/reliability_child.py) starts the operation: an idempotent
   append (txnAppId/txnVersion), an upsert MERGE, or a Delta -> Delta stream (availableNow,
   one source file per micro-batch);
2. once the child says the operation has begun, the drill waits a random time, up to about
   the operation's duration on that engine (measured as the drill goes, so most kills land
   mid-operation), and SIGKILLs the child's process group: driver, JVM and Python workers;
3. what the kill left must be a state some commit made: the previous rows or the whole
   change, never a part (for a stream: whole micro-batches, each once), else it is "torn";
4. a new child runs the same operation to completion, as a restart after a crash would;
5. the table's rows are compared with the expected ones, read with delta-rs.

A trial costs two Spark starts, so a 100-trial run takes an hour or more per engine; the
progress line of each trial says where the time went. Not a CI test: tests/test_reliability.py
runs a small sample. Exits 1 when any row was lost or duplicated, a kill left a torn state, or
a trial failed; a failed trial's folder is kept and named.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The drill reuses the reliability tests' children and judges: they live with the tests.
sys.path.insert(0, str(REPO / "tests"))

import deltalake  # noqa: E402
from helpers import processes  # noqa: E402
from helpers.reliability import (  # noqa: E402
    ENGINES,
    START_TIMEOUT,
    as_rows,
    batch,
    child,
    finish,
    lost_and_duplicated,
    rows,
    upserted,
)

OPS = ("write", "merge", "stream")
# First guesses of how long each operation runs once its session is up (seconds); replaced by
# the durations the drill measures.
FIRST_GUESS = {"write": 3.0, "merge": 6.0, "stream": 6.0}
BASE = batch(0, 100), batch(100, 100)  # the target of writes and merges: two commits
STREAM_FILES, STREAM_ROWS = 4, 50  # the stream's source: 4 commits of 50 rows


@dataclass
class Tally:
    trials: int = 0
    mid_operation: int = 0
    lost: int = 0
    duplicated: int = 0
    torn: int = 0
    failed: int = 0
    durations: dict[str, list[float]] = field(default_factory=dict)

    def line(self, engine: str) -> str:
        return (
            f"{engine}: trials={self.trials} mid-operation={self.mid_operation} "
            f"lost={self.lost} duplicated={self.duplicated} torn={self.torn} failed={self.failed}"
        )

    def bad(self) -> bool:
        return bool(self.lost or self.duplicated or self.torn or self.failed)

    def estimate(self, op: str) -> float:
        seen = self.durations.get(op)
        return statistics.median(seen) if seen else FIRST_GUESS[op]


# ------------------------------------------------------------------------------------------------
# The operations: set up, the child's command, and what the table may hold
# ------------------------------------------------------------------------------------------------
@dataclass
class Setup:
    table: Path  # the table the operation changes (the sink, for a stream)
    command: list[object]
    before: list[tuple[int, str]]
    expected: list[tuple[int, str]]
    batches: list[set[int]] = field(default_factory=list)  # a stream's micro-batches, by id


def prepare(op: str, root: Path) -> Setup:
    if op == "stream":
        source = root / "source"
        for i in range(STREAM_FILES):
            deltalake.write_deltalake(
                str(source), batch(i * STREAM_ROWS, STREAM_ROWS), mode="append"
            )
        expected = rows(source)
        checkpoint = root / "checkpoint"
        command = ["stream", source, root / "sink", checkpoint, "available-now", 1, "", 1]
        batches = [set(range(i * STREAM_ROWS, (i + 1) * STREAM_ROWS)) for i in range(STREAM_FILES)]
        return Setup(root / "sink", command, [], expected, batches)
    table = root / "table"
    for part in BASE:
        deltalake.write_deltalake(str(table), part, mode="append")
    before = rows(table)
    if op == "write":
        # 8 tasks, 8 files; run again after a crash, Delta skips it if version 1 of app
        # "kill-drill" already committed.
        command = ["idempotent-append", table, 1_000, 200, 8, "kill-drill", 1]
        return Setup(table, command, before, sorted(before + as_rows(batch(1_000, 200))))
    # Updates ids 100..199, inserts 200..299, in 8 tasks; run again, it changes nothing.
    command = ["merge", table, 100, 200, "merged", 8]
    return Setup(table, command, before, upserted(before, 100, 200, "merged"))


def current(table: Path) -> list[tuple[int, str]]:
    """The table's rows, or none when no commit has made it a table yet."""
    if not processes.commits(table):
        return []
    return rows(table)


def torn(setup: Setup, landed: list[tuple[int, str]]) -> str | None:
    """Why ``landed`` is no state a commit could have left, or None when it is one."""
    if not setup.batches:
        if landed in (setup.before, setup.expected):
            return None
        return "neither the previous rows nor the whole change"
    landed_ids = [i for i, _ in landed]
    if len(landed_ids) != len(set(landed_ids)):
        return "a micro-batch landed twice"
    if not set(landed) <= set(setup.expected):
        return "rows the source does not have"
    partial = [b for b in setup.batches if b & set(landed_ids) and not b <= set(landed_ids)]
    return f"{len(partial)} micro-batches in part" if partial else None


def describe(setup: Setup, landed: list[tuple[int, str]]) -> str:
    if landed == setup.expected:
        return "the whole change"
    if not setup.batches:
        return "the previous rows" if landed == setup.before else "a torn state"
    ids = {i for i, _ in landed}
    return f"{sum(1 for b in setup.batches if b <= ids)} of {len(setup.batches)} micro-batches"


# ------------------------------------------------------------------------------------------------
# One trial
# ------------------------------------------------------------------------------------------------
def trial(engine: str, op: str, rng: random.Random, tally: Tally, root: Path) -> tuple[str, bool]:
    """Run one kill-and-restart trial and update ``tally``; return its progress line and
    whether it came out clean."""
    setup = prepare(op, root)
    lake, flags = root / "lake", root / "flags"
    estimate = tally.estimate(op)
    delay = rng.uniform(0, 1.1 * estimate)

    victim = child(lake, engine, *setup.command, flags=flags)
    processes.wait_for(
        (flags / "ready").exists, victim, f"the {op} to begin on {engine}", START_TIMEOUT
    )
    time.sleep(delay)
    processes.kill(victim)
    mid = not (flags / "done").exists()
    if not mid:  # it finished before the kill: a full run's duration
        record(tally, op, victim)

    after_kill = current(setup.table)
    broken = torn(setup, after_kill)
    state = describe(setup, after_kill)

    started = time.monotonic()
    result = finish(child(lake, engine, *setup.command))
    tally.durations.setdefault(op, []).append(result["seconds"])
    lost, duplicated = lost_and_duplicated(current(setup.table), setup.expected)

    tally.trials += 1
    tally.mid_operation += mid
    tally.lost += lost
    tally.duplicated += duplicated
    tally.torn += broken is not None
    when = "mid-operation" if mid else "after it finished"
    left = f"TORN ({broken})" if broken else state
    line = (
        f"{op}: killed {delay:.1f} s in (runs ~{estimate:.1f} s), {when}; left {left}; "
        f"restarted in {time.monotonic() - started:.0f} s: lost {lost}, duplicated {duplicated}"
    )
    return line, not (broken or lost or duplicated)


def record(tally: Tally, op: str, proc) -> None:
    """Keep the duration a child printed, if it got that far."""
    try:
        seconds = json.loads(proc.out_path.read_text().strip().splitlines()[-1])["seconds"]
    except (IndexError, KeyError, ValueError):
        return
    tally.durations.setdefault(op, []).append(seconds)


# ------------------------------------------------------------------------------------------------
# The drill
# ------------------------------------------------------------------------------------------------
def shuffled(rng: random.Random, ops: list[str], count: int) -> list[str]:
    """``count`` operations, each run of ``len(ops)`` a random order of all of them: a short
    drill still tries every operation, a long one tries each as often."""
    order: list[str] = []
    while len(order) < count:
        order += rng.sample(ops, len(ops))
    return order[:count]


def choices(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise SystemExit(
            f"{flag} {text!r}: choose from {', '.join(allowed)}, comma-separated "
            f"(e.g. {flag} {','.join(allowed)})."
        )
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per engine (100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random kill points")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated engines")
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated operations")
    parser.add_argument(
        "--keep-all", action="store_true", help="keep every trial's folder, not only failed ones"
    )
    args = parser.parse_args(argv)
    if args.trials < 1:
        raise SystemExit(f"--trials {args.trials}: run at least 1 trial per engine.")
    engines = choices(args.engines, ENGINES, "--engines")
    ops = choices(args.ops, OPS, "--ops")
    if "delta-spark" in engines:
        from lakehouse import session

        if not session.delta_spark_jars():
            raise SystemExit(
                "--engines delta-spark needs Delta's jars in the project's JVM cache: run "
                "scripts/bootstrap where Maven is reached, or pass --engines embedded."
            )

    workdir = Path(tempfile.mkdtemp(prefix="kill-drill-"))
    tallies = {engine: Tally() for engine in engines}
    began = time.monotonic()
    print(f"kill drill: {args.trials} trials per engine, seed {args.seed}, in {workdir}")
    for engine in engines:
        rng = random.Random(f"{args.seed}:{engine}")
        tally = tallies[engine]
        for number, op in enumerate(shuffled(rng, ops, args.trials), 1):
            root = workdir / f"{engine}-{number:03d}-{op}"
            root.mkdir()
            started = time.monotonic()
            try:
                line, ok = trial(engine, op, rng, tally, root)
            except Exception as exc:  # a child that failed or hung: count it, go on
                tally.failed += 1
                line, ok = f"{op}: FAILED: {exc}".splitlines()[0][:300], False
            took = time.monotonic() - started
            print(f"[{engine} {number}/{args.trials}] {line} ({took:.0f} s)", flush=True)
            if ok and not args.keep_all:
                shutil.rmtree(root, ignore_errors=True)
            elif not ok:
                print(f"    kept for inspection: {root}", flush=True)

    print(f"\nsummary ({time.monotonic() - began:.0f} s, seed {args.seed}):")
    for engine in engines:
        print(tallies[engine].line(engine))
    if not any(t.bad() for t in tallies.values()) and not args.keep_all:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(t.bad() for t in tallies.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
