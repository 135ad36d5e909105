"""One driver shared by kernels in turn (lakehouse.shared_driver): each attached program gets a
session of its own on the host's driver, sees the tables the others wrote and none of their
temporary views or SQL settings; a program asking for another engine is told so; a host that
cannot start says why, with its log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers.notebook_runs import requires_java

from lakehouse import shared_driver
from lakehouse.notebooks import ci_environment

pytestmark = requires_java

PROGRAM = textwrap.dedent(
    """
    import json, os, sys
    from lakehouse import get_spark
    spark = get_spark()
    step = sys.argv[1]
    if step == "first":
        spark.conf.set("spark.sql.shuffle.partitions", "7")
        spark.range(3).createOrReplaceTempView("only_mine")
        spark.sql("CREATE SCHEMA IF NOT EXISTS shared")
        spark.range(5).write.format("delta").mode("overwrite").saveAsTable("shared.numbers")
    views = [t.name for t in spark.catalog.listTables() if t.isTemporary]
    print(json.dumps({
        "pid": os.getpid(),
        "driver": spark.sparkContext.applicationId,
        "partitions": spark.conf.get("spark.sql.shuffle.partitions"),
        "views": views,
        "numbers": spark.table("shared.numbers").count(),
        "udf": spark.range(3).selectExpr("id").toPandas()["id"].sum().item(),
    }))
    """
)


def run(env: dict, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("shared-driver")
    env = {k: v for k, v in ci_environment(workdir).items() if v is not None}
    with shared_driver.running(env, workdir / "host.log") as attach:
        yield {**os.environ, **env, **attach}


def test_programs_share_the_driver_and_tables_not_their_sessions(host):
    first = run(host, "first")
    second = run(host, "second")
    assert first["pid"] != second["pid"]
    assert first["driver"] == second["driver"], "both must run on the host's driver"
    assert first["views"] == ["only_mine"] and second["views"] == []
    assert first["partitions"] == "7" and second["partitions"] != "7"
    assert second["numbers"] == 5, "a table one program wrote is there for the next"
    assert second["udf"] == 3


def test_another_engine_is_refused_with_the_fix(host):
    env = {**host, "LAKEHOUSE_ENGINE": "embedded"}
    result = subprocess.run(
        [sys.executable, "-c", "from lakehouse import get_spark; get_spark()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    assert "runs another engine" in result.stderr and "LAKEHOUSE_ENGINE" in result.stderr


def test_a_host_that_cannot_start_shows_its_log(tmp_path):
    env = {"LAKEHOUSE_ENGINE": "no-such-engine", "LAKEHOUSE_LAKE": str(tmp_path / "lake")}
    with pytest.raises(shared_driver.SharedDriverError, match="no-such-engine"):
        with shared_driver.running(env, tmp_path / "host.log"):
            pass


def test_a_driver_that_is_gone_is_named_with_the_fix(tmp_path):
    from lakehouse.services import free_port

    env = {
        **os.environ,
        shared_driver.PORT_VARIABLE: str(free_port()),  # nothing listens there
        shared_driver.SECRET_VARIABLE: "no-secret",
        "LAKEHOUSE_LAKE": str(tmp_path / "lake"),
    }
    result = subprocess.run(
        [sys.executable, "-c", "from lakehouse import get_spark; get_spark()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "no Spark driver answers" in result.stderr
    assert f"Unset {shared_driver.PORT_VARIABLE}" in result.stderr
