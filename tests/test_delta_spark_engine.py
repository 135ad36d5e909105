"""The delta-spark engine as a learner gets it: the pinned jars from the project's cache, a
session that starts with no network, named tables that outlive the session, and a failed fetch
that says what to do.

Each session runs in a child process: a classic Spark JVM keeps the first session's jars and
catalog, and these tests need fresh ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lakehouse import session
from lakehouse.engines.delta_spark import jvm

pytestmark = pytest.mark.skipif(
    not session.delta_spark_jars(),
    reason="Delta's jars are not in the JVM cache: run scripts/bootstrap where Maven is reached",
)


def classic_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``env`` on top and no SPARK_REMOTE: a classic session."""
    return {**{k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}, **env}


def run_child(code: str, env: dict[str, str], *, offline: bool = False) -> str:
    """Run ``code`` in a fresh interpreter; with ``offline`` in a network namespace that has
    only a loopback interface, so any download would fail."""
    command = [sys.executable, "-c", textwrap.dedent(code)]
    if offline:
        command = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
    result = subprocess.run(
        command, env=classic_env(env), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def lake_env(tmp_path: Path, catalog: str = "engine_test") -> dict[str, str]:
    return {
        "LAKEHOUSE_LAKE": str(tmp_path / "lake"),
        "LAKEHOUSE_CATALOG": catalog,
        "LAKEHOUSE_ENGINE": "delta-spark",
    }


def can_isolate_network() -> str | None:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "unshare or ip (util-linux, iproute2) not installed"
    probe = subprocess.run(
        ["unshare", "--net", "sh", "-c", "ip link set lo up"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace here: {probe.stderr.strip()[:200]}"
    return None


def test_session_starts_and_writes_delta_without_the_network(tmp_path):
    reason = can_isolate_network()
    if reason:
        pytest.skip(f"no offline sandbox: {reason}")
    out = run_child(
        """
        import socket
        try:  # prove the sandbox: nothing outside loopback is reachable
            socket.create_connection(("192.0.2.1", 443), timeout=2)
            print("NETWORK")
        except OSError:
            print("OFFLINE")
        from lakehouse import get_spark
        spark = get_spark("delta-spark")
        conf = spark.sparkContext.getConf()
        print("packages", conf.get("spark.jars.packages", ""))
        print("jars", conf.get("spark.jars"))
        spark.sql("CREATE SCHEMA IF NOT EXISTS bronze")
        spark.range(3).write.format("delta").mode("overwrite").saveAsTable("bronze.numbers")
        print("history", spark.sql("DESCRIBE HISTORY bronze.numbers").first().operation)
        """,
        lake_env(tmp_path),
        offline=True,
    )
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert "OFFLINE" in out.splitlines()
    assert lines["packages"] == "", "nothing may be resolved at session start"
    assert lines["jars"].split(",") == jvm.jars("spark")
    assert lines["history"] == "CREATE OR REPLACE TABLE AS SELECT"


def test_named_tables_persist_across_sessions_and_drop_deletes_managed_data(tmp_path):
    env = lake_env(tmp_path)
    run_child(
        """
        from lakehouse import get_spark
        spark = get_spark()
        spark.sql("CREATE SCHEMA IF NOT EXISTS silver")
        spark.sql("CREATE TABLE silver.customers (id BIGINT, city STRING) USING delta "
                  "COMMENT 'one row per customer'")
        spark.sql("INSERT INTO silver.customers VALUES (1, 'Lyon'), (2, 'Porto')")
        """,
        env,
    )
    out = run_child(
        """
        from lakehouse import get_spark, engine_of
        spark = get_spark()
        print("engine", engine_of(spark))
        print("rows", spark.table("silver.customers").count())
        detail = spark.sql("DESCRIBE DETAIL silver.customers").first()
        print("comment", detail.description)
        print("location", detail.location.removeprefix("file:"))
        spark.sql("DROP TABLE silver.customers")
        print("exists", spark.catalog.tableExists("silver.customers"))
        """,
        env,
    )
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert (lines["engine"], lines["rows"], lines["comment"]) == (
        "delta-spark",
        "2",
        "one row per customer",
    )
    assert lines["exists"] == "False"
    location = Path(lines["location"])
    assert location.is_relative_to(tmp_path / "lake" / "engine_test")
    assert not location.exists(), "DROP TABLE of a managed table must delete its data"


def test_catalogs_are_isolated_from_each_other(tmp_path):
    run_child(
        """
        from lakehouse import get_spark
        spark = get_spark()
        spark.sql("CREATE SCHEMA IF NOT EXISTS gold")
        spark.range(1).write.format("delta").saveAsTable("gold.only_in_a")
        """,
        lake_env(tmp_path, "learner_a"),
    )
    out = run_child(
        """
        from lakehouse import get_spark
        print("seen", get_spark().catalog.tableExists("gold.only_in_a"))
        """,
        lake_env(tmp_path, "learner_b"),
    )
    assert "seen False" in out.splitlines()


def test_a_failed_fetch_names_the_artifact_the_command_and_the_fallback(tmp_path, monkeypatch):
    wanted = tmp_path / "jvm-artifacts.txt"
    wanted.write_text("spark io.delta:no-such-artifact-for-this-test_2.13:0.0.1\n")
    monkeypatch.setattr(jvm, "PINNED_LIST", wanted)
    monkeypatch.setattr(jvm.pinned, "__defaults__", (wanted,))
    with pytest.raises(jvm.ArtifactError) as failure:
        jvm.fetch(cache=tmp_path / "cache", log=lambda _: None)
    message = str(failure.value)
    assert "io.delta:no-such-artifact-for-this-test_2.13:0.0.1" in message
    assert "command: " in message and "-dependency io.delta" in message
    assert "LAKEHOUSE_ENGINE=embedded" in message


def test_a_second_process_on_the_same_catalog_is_told_what_to_do(tmp_path):
    env = lake_env(tmp_path)
    ready, done = tmp_path / "ready", tmp_path / "done"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import pathlib, time
                from lakehouse import get_spark
                get_spark().sql("CREATE SCHEMA IF NOT EXISTS held")
                pathlib.Path({str(ready)!r}).touch()
                deadline = time.monotonic() + 300
                while not pathlib.Path({str(done)!r}).exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
                """
            ),
        ],
        env=classic_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert holder.poll() is None, "the first session failed to start"
            assert time.monotonic() < deadline, "the first session did not start in 300 s"
            time.sleep(0.2)
        out = run_child(
            """
            from lakehouse import EngineUnavailable, get_spark
            try:
                get_spark()
                print("started")
            except EngineUnavailable as exc:
                print(exc)
            """,
            env,
        )
    finally:
        done.touch()
        holder.wait(timeout=120)
    assert "is in use by another Spark process" in out
    assert "LAKEHOUSE_CATALOG" in out and "make lab" in out
