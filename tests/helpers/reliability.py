"""The parent's side of the crash drills, shared by tests/test_reliability.py and
scripts/kill_drill.py: start a child on an engine, wait for it, and read what it left in a
table with delta-rs alone, so judging an outcome needs no Spark."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import deltalake
import pyarrow as pa
from helpers.processes import errors_of, kill, spawn

CHILD = Path(__file__).parent / "reliability_child.py"
SCHEMA = pa.schema([("id", pa.int64()), ("payload", pa.string())])
ENGINES = ("delta-spark", "embedded")
# Generous: Spark starts in ~10 s on an idle 2-core machine, several times that on a busy one.
START_TIMEOUT = 300

_children = itertools.count(1)


def batch(start: int, count: int, tag: str = "row") -> pa.Table:
    """Rows ``start``..``start + count - 1`` with payload ``<tag>-<id>``, as the child makes
    them."""
    ids = pa.array(range(start, start + count), pa.int64())
    return pa.table({"id": ids, "payload": [f"{tag}-{i}" for i in ids.to_pylist()]}, schema=SCHEMA)


def child(lake: Path, engine: str, *args: object, flags: Path | None = None) -> subprocess.Popen:
    """Start tests/helpers/reliability_child.py on ``engine``; its output goes to files in the
    lake folder, so a chatty child can never block on a full pipe.

    Each child gets a catalog of its own, and since every table it touches is addressed by
    path, Spark's in-memory catalog instead of a Hive metastore: on delta-spark that saves each
    child the 10 s or so of creating a Derby metastore. With ``flags``, the child touches
    ``ready`` and ``done`` there around its operation."""
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}: choose one of {', '.join(ENGINES)}.")
    number = next(_children)
    env = {
        **os.environ,
        "LAKEHOUSE_LAKE": str(lake),
        "LAKEHOUSE_ENGINE": engine,
        "LAKEHOUSE_CATALOG": f"child_{os.getpid()}_{number}",
        "LAKEHOUSE_METASTORE": "in-memory",
    }
    env.pop("SPARK_REMOTE", None)
    env.pop("RELIABILITY_FLAGS", None)
    if flags is not None:
        flags.mkdir(parents=True, exist_ok=True)
        env["RELIABILITY_FLAGS"] = str(flags)
    lake.mkdir(parents=True, exist_ok=True)
    name = f"{args[0]}-{engine}-{number}"
    return spawn([sys.executable, str(CHILD), *map(str, args)], env, lake, name)


def finish(proc: subprocess.Popen, timeout: float = START_TIMEOUT + 300) -> dict:
    """Wait for a child that should succeed; its last stdout line is JSON."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        raise
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{errors_of(proc)}"
    return json.loads(proc.out_path.read_text().strip().splitlines()[-1])


def data_files(table: Path) -> set[str]:
    return {
        str(p.relative_to(table)) for p in table.rglob("*.parquet") if "_delta_log" not in p.parts
    }


def ids(table: Path) -> list[int]:
    return sorted(
        deltalake.DeltaTable(str(table)).to_pyarrow_table(columns=["id"])["id"].to_pylist()
    )


def rows(table: Path, version: int | None = None) -> list[tuple[int, str]]:
    """The table's (id, payload) rows, sorted; duplicates kept."""
    data = deltalake.DeltaTable(str(table), version=version).to_pyarrow_table(
        columns=["id", "payload"]
    )
    return sorted(zip(data["id"].to_pylist(), data["payload"].to_pylist()))


def as_rows(table: pa.Table) -> list[tuple[int, str]]:
    return sorted(zip(table["id"].to_pylist(), table["payload"].to_pylist()))


def upserted(current: list[tuple[int, str]], start: int, count: int, tag: str):
    """``current`` after the child's ``merge TABLE START COUNT TAG``: what the table must hold."""
    merged = dict(current)
    merged.update((i, f"{tag}-{i}") for i in range(start, start + count))
    return sorted(merged.items())


def lost_and_duplicated(
    landed: list[tuple[int, str]], expected: list[tuple[int, str]]
) -> tuple[int, int]:
    """How many expected rows are missing from ``landed`` (a row with a stale payload counts
    as lost), and how many landed more than once."""
    have, want = Counter(landed), Counter(expected)
    lost = sum((want - have).values())
    duplicated = sum(n - 1 for n in Counter(i for i, _ in landed).values() if n > 1)
    return lost, duplicated
