"""Child processes for the crash tests: started in a process group of their own, killed with
SIGKILL as a whole (the JVM and Python workers included), watched through their log files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path


def spawn(command: list[str], env: dict[str, str], log_dir: Path, name: str) -> subprocess.Popen:
    """Start ``command`` with stdout and stderr in ``log_dir/<name>.out|.err`` (the paths are
    kept on the process as ``out_path`` and ``err_path``)."""
    out, err = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group: the JVM and workers die with it
        )
    proc.out_path, proc.err_path = out, err
    return proc


def errors_of(proc: subprocess.Popen) -> str:
    return proc.err_path.read_text()[-4000:]


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group and wait until nothing of it is left."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes of group {proc.pid} survived SIGKILL")


def wait_for(
    condition,
    proc: subprocess.Popen,
    what: str,
    timeout: float,
    *,
    died: type[AssertionError] = AssertionError,
    every: float = 0.02,
):
    """Poll ``condition`` until it returns something truthy; raise ``died`` if the child exits
    first, and kill it on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            raise died(f"child exited ({proc.returncode}) before {what}:\n{errors_of(proc)}")
        time.sleep(every)
    kill(proc)
    raise AssertionError(f"timed out waiting for {what}:\n{errors_of(proc)}")


def commits(table: Path) -> list[int]:
    """The versions of the Delta table at ``table``, read from its log folder."""
    log = table / "_delta_log"
    if not log.is_dir():
        return []
    return sorted(int(p.name[:20]) for p in log.iterdir() if re.fullmatch(r"\d{20}\.json", p.name))
