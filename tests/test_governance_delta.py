"""06_governance's unit tests that need the delta-spark engine in process (column comments,
SQL functions, row filters, the vault), run in one fresh interpreter: the rest of the suite's
in-process sessions are embedded ones, and a pytest-xdist worker that has started one cannot
start a delta-spark session in the same process. The three scripts share that interpreter's
session (one JVM start instead of three); each drops the tables it recreates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = (
    "governance_classification_delta.py",
    "governance_access_delta.py",
    "governance_vault_delta.py",
)


def test_delta_spark_governance_tests_pass_in_a_fresh_interpreter():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q",
         "--color=no", *(str(HERE / name) for name in FILES)],
        cwd=HERE.parent, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"the governance delta-spark tests failed:\n{result.stdout[-6000:]}{result.stderr[-2000:]}"
    )
    assert " passed" in result.stdout.splitlines()[-1], result.stdout[-2000:]
