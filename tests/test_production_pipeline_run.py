"""The declarative pipeline's run on delta-spark (tests/production_pipeline_delta.py), in a
fresh interpreter: the rest of the suite's in-process sessions are embedded ones, and a
pytest-xdist worker that has started one cannot start a delta-spark session in the same
process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_the_pipeline_runs_twice_the_second_incremental_in_a_fresh_interpreter():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q",
         "--color=no", str(HERE / "production_pipeline_delta.py")],
        cwd=HERE.parent, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"the pipeline run failed:\n{output}"
