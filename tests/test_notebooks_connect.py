"""The solution notebooks run headless at CI scale through Spark Connect, as they would through
Databricks Connect or on serverless: one local Spark Connect server on delta-spark for the
whole run, each lesson executed with papermill as a client of it. Any failing cell fails; the
marked outputs are compared in classic mode (tests/test_notebooks.py). Which lessons run here,
and why not all of them: helpers/notebook_runs.py's CLASSIC_ONLY.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.notebook_runs import (
    CLASSIC_ONLY,
    SOLUTIONS,
    cases,
    kafka_port,  # noqa: F401 (a fixture)
    kernel_name,  # noqa: F401 (a fixture)
    lesson,
    mode_run,
    pg_port,  # noqa: F401 (a fixture)
    requires_java,
    run_papermill,
)

from lakehouse import connect_server

pytestmark = [pytest.mark.notebooks, requires_java]


@pytest.fixture(scope="session")
def connect_run(tmp_path_factory, kafka_port, pg_port) -> tuple:  # noqa: F811
    return mode_run(tmp_path_factory, "connect", kafka_port, pg_port)


@pytest.fixture(scope="session")
def connect_url(connect_run, tmp_path_factory):
    """One Spark Connect server for the session; it sees the connect mode's lake settings."""
    _, env = connect_run
    server_env = {k: v for k, v in env.items() if v is not None}
    log_dir = tmp_path_factory.mktemp("connect-server")
    with connect_server.running(port=0, log_dir=log_dir, env=server_env) as url:
        yield url


def test_connect_server_starts_serves_and_stops(tmp_path):
    with connect_server.running(port=0, log_dir=tmp_path) as url:
        port = int(url.rsplit(":", 1)[1])
        client = (
            "from pyspark.sql import SparkSession\n"
            f"spark = SparkSession.builder.remote({url!r}).getOrCreate()\n"
            "print(spark.range(3).count())\n"
            "spark.stop()\n"
        )
        # A separate process, so no Connect session leaks into other tests' classic sessions.
        result = subprocess.run(
            [sys.executable, "-c", client], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().splitlines()[-1] == "3"
    assert not connect_server.port_open(port)
    assert "Spark Connect server started" in (tmp_path / f"connect-{port}.log").read_text()


def test_classic_only_names_real_lessons_and_leaves_every_module_some_through_connect():
    lessons = {lesson(nb) for nb in SOLUTIONS}
    assert set(CLASSIC_ONLY) <= lessons, (
        f"CLASSIC_ONLY names lessons that do not exist: {sorted(set(CLASSIC_ONLY) - lessons)}"
    )
    through_connect = lessons - set(CLASSIC_ONLY)
    modules = {name.split("/")[0] for name in lessons}
    assert modules == {name.split("/")[0] for name in through_connect}, (
        "every module needs at least one lesson that runs through Connect"
    )


@pytest.mark.parametrize("solution", cases("connect"))
def test_solution_notebook_runs(solution, kernel_name, connect_run, connect_url, monkeypatch):  # noqa: F811
    workdir, env = connect_run
    env = {**env, "SPARK_REMOTE": connect_url}
    run_papermill(solution, "connect", workdir, env, kernel_name, monkeypatch)
