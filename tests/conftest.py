"""Shared pytest fixtures for the course's test suite."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT


# Longest first, so the two pytest-xdist workers of `make test` (--dist loadfile
# --no-loadscope-reorder take files in collected order) end together: the solution notebooks,
# classic in two files (two lakes, one per worker) and through Spark Connect; the kill drills;
# then the files that run whole Spark jobs, services and child processes, longest first (as
# reports/test-times.txt measured them); then every other file, in name order, filling the
# gaps at the end. A long file left for last keeps one worker busy while the other idles.
_LONGEST_FIRST = (
    "test_notebooks.py",
    "test_notebooks_from_05.py",
    "test_notebooks_connect.py",
    "test_streaming_exactly_once.py",
    "test_reliability.py",
    # the other files by their seconds in one process (reports/test-times.txt), longest first
    "test_conformance.py",
    "test_ml_features.py",
    "test_governance_delta.py",
    "test_ml_scoring.py",
    "test_extract.py",
    "test_delta_spark_engine.py",
    "test_streaming_kafka.py",
    "test_delta_table.py",
    "test_scd2.py",
    "test_streaming_pipeline.py",
    "test_gold_maintenance.py",
    "test_embedded_engine.py",
    "test_services.py",
    "test_shared_driver.py",
    "test_gold_facts.py",
    "test_production_dashboards.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# Where the minutes go: the seconds each test file took (setup, call and teardown of its
# tests, summed on the worker that ran it), and each worker's total, written to
# reports/test-times.txt when the run ends; `make test` prints it last, so the tail of a CI
# log shows it. (--durations=40 lists single tests; a file's cost is spread over many.)
_FILE_SECONDS: dict[tuple[str, str], float] = {}


def pytest_runtest_logreport(report):
    node = getattr(report, "node", None)  # the xdist worker that ran it, on the controller
    worker = node.gateway.id if node is not None else "main"
    key = (report.nodeid.split("::")[0], worker)
    _FILE_SECONDS[key] = _FILE_SECONDS.get(key, 0.0) + report.duration


_OUTERMOST = "LAKEHOUSE_TEST_RUN"  # set by the run that writes the table: tests that run
# pytest again in a subprocess (a fresh interpreter for delta-spark) inherit it and stay quiet
_WRITES_TABLE = False


def pytest_sessionstart(session):
    global _WRITES_TABLE
    if hasattr(session.config, "workerinput") or os.environ.get(_OUTERMOST):
        return  # an xdist worker, or a pytest run inside a test
    os.environ[_OUTERMOST] = "1"
    _WRITES_TABLE = True
    for stale in (REPO_ROOT / "reports").glob("mistake-harness-*.txt"):
        stale.unlink()  # a stale table must not pass for this run's


def pytest_sessionfinish(session):
    if not _WRITES_TABLE or not _FILE_SECONDS:
        return  # a worker (its reports reach the controller) or a pytest run inside a test
    per_worker: dict[str, float] = {}
    for (_, worker), seconds in _FILE_SECONDS.items():
        per_worker[worker] = per_worker.get(worker, 0.0) + seconds
    ranked = sorted(_FILE_SECONDS.items(), key=lambda item: -item[1])
    lines = ["seconds per test file (worker), slowest first:"]
    lines += [f"{seconds:8.0f}  {path} ({worker})" for (path, worker), seconds in ranked[:25]]
    rest = sum(seconds for _, seconds in ranked[25:])
    lines.append(f"{rest:8.0f}  the other {max(len(ranked) - 25, 0)} files")
    lines.append(
        "per worker: " + ", ".join(f"{w} {s:.0f} s" for w, s in sorted(per_worker.items()))
    )
    for harness in sorted((REPO_ROOT / "reports").glob("mistake-harness-*.txt")):
        lines.append(harness.read_text().splitlines()[-1])  # the classic lakes' harness totals
    out = REPO_ROOT / "reports" / "test-times.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
