"""The real systems at the lakehouse's edges, run locally by the project: a Kafka broker
(:mod:`lakehouse.services.kafka`) and a PostgreSQL server (:mod:`lakehouse.services.postgres`).

Each keeps its data and logs in a folder of its own under the lake folder
(``<lake>/_services/<name>``; ``LAKEHOUSE_LAKE`` moves the lake), listens on loopback only, and
has ``start`` / ``stop`` / ``status`` functions, a ``running()`` context manager for tests and
notebooks, and a command line (``python -m lakehouse.services.kafka start``, ``make kafka-start``).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path


class ServiceError(RuntimeError):
    """A local service could not be started, reached or used; the message names the fix."""


def services_dir() -> Path:
    """``<lake>/_services``: catalog names start with a letter, so it never meets a catalog."""
    from lakehouse.config import settings

    return settings().lake / "_services"


def env_port(variable: str, default: int) -> int:
    """The port in ``variable``, else ``default``; a bad value is named."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ServiceError(f"{variable}={raw!r} is not a port number (1-65535)")
    return int(raw)


def free_port() -> int:
    """A TCP port nobody listens on right now, on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A free port whose next port is free too, on loopback: a Kafka broker's controller
    listens on the port after the broker's."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise ServiceError("no two consecutive free ports on loopback")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def port_taken(port: int) -> bool:
    """Whether something already holds ``port`` on loopback (listening or bound)."""
    if port_open(port):
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as servers do: connections of a stopped server in TIME_WAIT do not hold the port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> str:
    """A process's command line, arguments joined by spaces ('' when it is gone)."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def terminate(pid: int, timeout: float = 30, *, group: bool = True) -> None:
    """SIGTERM ``pid`` (its process group when it leads one), SIGKILL after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # reap it when it is our child, so it does not linger as a zombie
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass
            if not alive(pid):
                return
            time.sleep(0.1)


def wait_until(ready: Callable[[], bool], timeout: float, failed: Callable[[], str | None]) -> bool:
    """Poll ``ready`` every 0.1 s until it is true (True) or ``timeout`` passes (False);
    ``failed`` returns a message when waiting is pointless (the process died), raised at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if message := failed():
            raise ServiceError(message)
        time.sleep(0.1)
    return ready()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
