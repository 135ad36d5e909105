"""A fresh interpreter on a delta-spark session for tests that need Spark's pinned JVM jars
(the JDBC driver, the Kafka connector): a classic Spark JVM keeps the jars of the first
session of its process, which another test module may have started without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def run_spark_child(code: str, env: dict[str, str]) -> dict:
    """Run ``code`` in a fresh interpreter on a delta-spark session; it prints one JSON line."""
    child_env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    child_env.update(env, LAKEHOUSE_ENGINE="delta-spark", LAKEHOUSE_MASTER="local[2]")
    preamble = """
        import json
        from lakehouse import get_spark
        spark = get_spark("delta-spark", scale="tiny")
        packages = spark.sparkContext.getConf().get("spark.jars.packages", "")
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(preamble) + textwrap.dedent(code)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
