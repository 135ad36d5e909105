"""Real-time serving of a registered model on loopback: ``mlflow models serve`` as a managed
subprocess (a free port, readiness polled, logs in a file, stopped with its process group),
the request formats of MLflow's scoring protocol, the model's signature as a validator of
requests, and the checks of lesson 05_ml/07.

Example::

    from lakehouse.ml import serving

    with serving.serve_model("models:/fraud_detector@champion") as server:   # a free port
        scores = serving.predict(server.url, frame, "dataframe_split")       # P(fraud) per row
        table = serving.probe_bad_inputs(server.url, frame.iloc[0], spec)    # status, message

The traffic router in front of two such servers (A/B split, shadow, inference log) is
:mod:`lakehouse.ml.router`; the A/B statistics are :mod:`lakehouse.ml.abtest`.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lakehouse.services import ServiceError, free_port, tail, terminate

FORMATS = ("dataframe_split", "dataframe_records", "inputs")
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 180.0
CHAMPION_ENTITY, CHALLENGER_ENTITY = (
    "champion",
    "challenger",
)  # served entities on Databricks  # a cold start on 2 busy cores: imports, the registry, the model

# signature type -> the JSON values a request may carry for it (bool is not a number here,
# although Python's bool is an int)
_JSON_TYPES = {
    "double": (int, float),
    "float": (int, float),
    "long": (int,),
    "integer": (int,),
    "boolean": (bool,),
    "string": (str,),
}


class ServingError(ServiceError):
    """A server did not start, or answered a request with an error; the message says why."""


# --------------------------------------------------------------------------- managed processes


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux), so a kernel that
    crashes does not leave a server behind; and a process group of its own, to stop it whole."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _url_ok(url: str, timeout: float = 1.0) -> bool:
    import requests

    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


class ManagedProcess:
    """A server this process starts and stops: ``command`` in a process group of its own,
    stdout and stderr in ``log_file``, ready when ``ready_url`` answers 200. ``start()``
    raises :class:`ServingError` with the log's tail when it exits or does not answer in
    time; ``stop()`` ends the whole group (SIGTERM, then SIGKILL). A context manager; a
    server still running when the interpreter exits is stopped then."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        port: int,
        ready_path: str,
        log_file: str | os.PathLike,
        env: Mapping[str, str] | None = None,
    ):
        self.name, self.command, self.port = name, list(command), int(port)
        self.ready_path = ready_path
        self.log_file = Path(log_file)
        self.env = dict(env or os.environ)
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self) -> ManagedProcess:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        if self.running:
            return self
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._launched = time.monotonic()
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                preexec_fn=_die_with_parent,
            )
        _STARTED.append(self)
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> ManagedProcess:
        """Poll ``ready_path`` until it answers 200; :class:`ServingError` with the log's tail
        when the process exits first or ``timeout`` passes (then it is stopped)."""
        if self.process is None:
            raise ServingError(f"{self.name} was not launched: call start()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _url_ok(self.url + self.ready_path):
                if self.startup_s is None:
                    self.startup_s = time.monotonic() - self._launched
                return self
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise ServingError(
                    f"{self.name} exited with code {code} before answering {self.ready_path}; "
                    f"{self.log_file} ends with:\n{tail(self.log_file)}"
                )
            time.sleep(0.2)
        self.stop()
        raise ServingError(
            f"{self.name} did not answer {self.url}{self.ready_path} within {timeout:.0f} s "
            f"(stopped); {self.log_file} ends with:\n{tail(self.log_file)}"
        )

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> ManagedProcess:
        """Launch the process and wait until it is ready."""
        return self.launch().wait_ready(timeout)

    def stop(self) -> bool:
        """Stop the process group; True if it was running."""
        process, self.process = self.process, None
        if process is None:
            return False
        was_running = process.poll() is None
        if was_running:
            terminate(process.pid, timeout=15)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return was_running

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on {self.url}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.name}: {state}, log {self.log_file}>"


_STARTED: list[ManagedProcess] = []


def start_all(*servers: ManagedProcess, timeout: float = STARTUP_TIMEOUT_S) -> tuple:
    """Launch every server at once, then wait for each: their start-ups overlap. When one
    fails, the others are stopped too."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready(timeout)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


@atexit.register
def _stop_all() -> None:
    for server in _STARTED:
        if server.running:
            server.stop()


def stop_all() -> int:
    """Stop every server this process started that still runs; returns how many."""
    stopped = sum(server.stop() for server in _STARTED)
    _STARTED.clear()
    return stopped


def logs_dir() -> Path:
    """``<lake>/_services/serving``: the servers' logs and the router's inference log."""
    from lakehouse.services import services_dir

    return services_dir() / "serving"


def _child_env() -> dict[str, str]:
    """This process's environment, with its interpreter's scripts (``uvicorn``) first on the
    PATH and MLflow's tracking and registry URIs, so ``models:/`` resolves in the child."""
    import mlflow

    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "")
    env["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    env["MLFLOW_REGISTRY_URI"] = mlflow.get_registry_uri()
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # no access log line per request: it costs time on the critical path and fills the log
    env.setdefault("UVICORN_ACCESS_LOG", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class ModelServer(ManagedProcess):
    """``mlflow models serve -m <model_uri> --env-manager local`` on loopback."""

    def __init__(
        self,
        model_uri: str,
        *,
        port: int | None = None,
        workers: int = 1,
        log_file: str | os.PathLike | None = None,
        name: str | None = None,
    ):
        port = port or free_port()
        label = name or model_uri.removeprefix("models:/").replace("/", "_").replace("@", "_")
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "-h",
            HOST,
            "-p",
            str(port),
            "-w",
            str(int(workers)),
        ]
        if not Path(command[0]).exists():  # no console script: the module works the same
            command[:1] = [sys.executable, "-m", "mlflow"]
        super().__init__(
            f"mlflow models serve {model_uri}",
            command,
            port=port,
            ready_path="/ping",
            log_file=log_file or logs_dir() / f"{label}-{port}.log",
            env=_child_env(),
        )
        self.model_uri = model_uri

    @property
    def invocations_url(self) -> str:
        return self.url + "/invocations"


def serve_model(
    model_uri: str,
    *,
    port: int | None = None,
    workers: int = 1,
    log_file: str | os.PathLike | None = None,
    timeout: float = STARTUP_TIMEOUT_S,
) -> ModelServer:
    """Start ``mlflow models serve`` for ``model_uri`` (``models:/<name>@<alias>``) on a free
    loopback port and wait until ``/ping`` answers; returns the running :class:`ModelServer`
    (``with serving.serve_model(uri) as server:`` stops it at the end of the block)."""
    if not isinstance(model_uri, str) or not model_uri.startswith(("models:/", "runs:/", "/")):
        raise ValueError(
            f"model_uri {model_uri!r}: serve a registry URI such as 'models:/fraud_detector"
            "@champion' (registry.model_uri(name, alias))"
        )
    return ModelServer(model_uri, port=port, workers=workers, log_file=log_file).start(timeout)


# --------------------------------------------------------------------------- request formats


def _records_json(frame: pd.DataFrame) -> str:
    # pandas writes NaN as null, numpy numbers as JSON numbers and timestamps as ISO strings
    return frame.to_json(orient="records", date_format="iso")


def request_body(frame: pd.DataFrame, fmt: str = "dataframe_split") -> str:
    """The JSON body of a scoring request for ``frame`` in one of MLflow's :data:`FORMATS`:

    - ``dataframe_split``: ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}``,
      the most compact (column names once);
    - ``dataframe_records``: ``{"dataframe_records": [{"col": value, ...}, ...]}``;
    - ``inputs``: ``{"inputs": [{"col": value, ...}, ...]}`` (the format shared with tensor
      and LLM models; a dict of columns works too)."""
    if fmt == "dataframe_split":
        return '{"dataframe_split": ' + frame.to_json(orient="split", index=False) + "}"
    if fmt == "dataframe_records":
        return '{"dataframe_records": ' + _records_json(frame) + "}"
    if fmt == "inputs":
        return '{"inputs": ' + _records_json(frame) + "}"
    raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")


def error_message(response) -> str:
    """The message of an error response: MLflow's ``message`` field, else the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)
    return str(body)


def invoke(url: str, body: str | bytes, *, session=None, timeout: float = 30.0):
    """POST ``body`` (JSON) to ``url`` with the JSON content type; returns the response."""
    import requests

    poster = session or requests
    return poster.post(
        url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout
    )


def scores_of(payload: dict) -> np.ndarray:
    """P(fraud) per row from a scoring response: ``predictions`` holds each row's class
    probabilities (``[[p_legit, p_fraud], ...]``, the model's ``predict_proba``)."""
    predictions = np.asarray(payload["predictions"], dtype="float64")
    if predictions.ndim != 2 or predictions.shape[1] != 2:
        raise ServingError(
            f"the model answered predictions of shape {predictions.shape}, not one pair of "
            "class probabilities per row: log it with pyfunc_predict_fn='predict_proba' "
            "(tracking.log_training_run does), or it serves classes at 0.5"
        )
    return predictions[:, 1]


def predict(url: str, frame: pd.DataFrame, fmt: str = "dataframe_split", *, session=None):
    """P(fraud) of each row of ``frame`` from the server at ``url`` (its base URL or its
    ``/invocations``), sent in format ``fmt``; an error answer raises :class:`ServingError`
    with the server's status and message."""
    if not url.endswith("/invocations"):
        url = url.rstrip("/") + "/invocations"
    response = invoke(url, request_body(frame, fmt), session=session)
    if response.status_code != 200:
        raise ServingError(f"{url} answered {response.status_code}: {error_message(response)}")
    return scores_of(response.json())


# --------------------------------------------------------------------------- the signature


@dataclass(frozen=True)
class InputSpec:
    """The columns a model takes, by name, with their MLflow types (from its signature)."""

    columns: tuple[tuple[str, str], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @classmethod
    def of(cls, signature) -> InputSpec:
        if signature is None or signature.inputs is None:
            raise ValueError("the model has no signature: log it with infer_signature(X, ...)")
        columns = []
        for spec in signature.inputs.inputs:
            kind = spec.type.name if hasattr(spec.type, "name") else str(spec.type)
            columns.append((spec.name, kind))
        return cls(tuple(columns))

    def union(self, other: InputSpec) -> InputSpec:
        """The columns of both, this one's first (a request feeding two models needs both)."""
        mine = dict(self.columns)
        for name, kind in other.columns:
            if name in mine and mine[name] != kind:
                raise ValueError(
                    f"column {name!r} is {mine[name]} for one model, {kind} for the other"
                )
        extra = [(n, k) for n, k in other.columns if n not in mine]
        return InputSpec(self.columns + tuple(extra))

    def to_json(self) -> list[list[str]]:
        return [list(c) for c in self.columns]


def record_problems(record: Mapping, spec: InputSpec) -> list[str]:
    """What keeps ``record`` (one row as parsed from JSON) from feeding a model with input
    ``spec``: a missing column, a null, a value of the wrong JSON type. Empty: it fits."""
    if not isinstance(record, Mapping):
        return [f"a record must be a JSON object of column: value, not {type(record).__name__}"]
    problems = []
    for name, kind in spec.columns:
        if name not in record:
            problems.append(f"column {name!r} ({kind}) is missing")
            continue
        value = record[name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            problems.append(f"column {name!r} ({kind}) is null")
            continue
        allowed = _JSON_TYPES.get(kind)
        wrong = allowed is not None and (
            not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)
        )
        if wrong:
            problems.append(
                f"column {name!r} must be {'a number' if kind in ('double', 'float') else kind}"
                f" ({kind}), got {type(value).__name__} {value!r}"
            )
    return problems


# --------------------------------------------------------------------------- bad inputs


def bad_requests(record: Mapping, spec: InputSpec) -> dict[str, str]:
    """Request bodies that a server must refuse with a 4xx and a message, from one good
    ``record``: a column missing, text in a numeric column, a number in a text column, a null,
    an empty body, no records, broken JSON."""
    good = dict(record)
    numeric = next(
        (n for n, k in spec.columns if k in ("double", "float", "long", "integer")), None
    )
    text = next((n for n, k in spec.columns if k == "string"), None)
    first = spec.names[0]
    cases = {f"missing column {first!r}": {k: v for k, v in good.items() if k != first}}
    if numeric is not None:
        cases[f"text in numeric {numeric!r}"] = {**good, numeric: "a lot"}
    cases[f"null in {numeric or first!r}"] = {**good, numeric or first: None}
    if text is not None:
        cases[f"number in text column {text!r}"] = {**good, text: 5}
    bodies = {name: json.dumps({"dataframe_records": [row]}) for name, row in cases.items()}
    bodies["empty body"] = ""
    bodies["no records"] = json.dumps({"dataframe_records": []})
    bodies["broken JSON"] = '{"dataframe_records": [{'
    return bodies


def probe_bad_inputs(url: str, record: Mapping, spec: InputSpec, *, session=None) -> pd.DataFrame:
    """Send each of :func:`bad_requests` to ``url`` (``/invocations`` is added) and return one
    row per case: the status, the start of the message, and whether the server still
    answers its health check afterwards."""
    if not url.endswith("/invocations"):
        url = url.rstrip("/") + "/invocations"
    base = url.removesuffix("/invocations")
    rows = []
    for case, body in bad_requests(record, spec).items():
        response = invoke(url, body, session=session)
        message = error_message(response) if response.status_code != 200 else response.text
        rows.append(
            {
                "case": case,
                "status": response.status_code,
                "message": " ".join(message.split())[:110],
                "alive": _url_ok(base + "/health") or _url_ok(base + "/ping"),
            }
        )
    return pd.DataFrame(rows)


def latencies_ms(call: Callable[[], object], n: int, *, warmup: int = 5) -> np.ndarray:
    """The wall time of ``n`` calls of ``call`` in milliseconds, after ``warmup`` calls."""
    for _ in range(warmup):
        call()
    times = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        call()
        times[i] = (time.perf_counter() - started) * 1000
    return times


# --------------------------------------------------------------------------- checks


def check_served_scores(expected, served: Mapping[str, np.ndarray], *, rtol: float = 1e-9) -> str:
    """Assert that the scores the endpoint returned in each request format (``served``:
    format -> scores) are the model's own scores in process (``expected``). Returns one line."""
    expected = np.asarray(expected, dtype="float64")
    missing = [f for f in FORMATS if f not in served]
    assert not missing, f"no scores for the format(s) {missing}: send one request in each"
    for fmt, scores in served.items():
        scores = np.asarray(scores, dtype="float64")
        assert scores.shape == expected.shape, (
            f"{fmt}: {scores.shape[0] if scores.ndim else 0} scores for {len(expected)} rows: "
            "send the same rows in every format and take one score per row"
        )
        if np.all(np.isin(scores, (0.0, 1.0))) and not np.all(np.isin(expected, (0.0, 1.0))):
            raise AssertionError(
                f"{fmt}: the endpoint returned classes (0/1), not probabilities: the model's "
                "pyfunc predicts classes at 0.5; log it with pyfunc_predict_fn='predict_proba'"
            )
        worst = float(np.max(np.abs(scores - expected))) if len(expected) else 0.0
        assert np.allclose(scores, expected, rtol=rtol, atol=1e-12), (
            f"{fmt}: the served scores differ from the model's in process by up to {worst:.3g}: "
            "take column 1 of predict_proba (P(fraud)), for the same rows in the same order"
        )
    return (
        f"{len(expected)} rows scored identically over HTTP in {len(served)} formats and in process"
    )


def check_refusals(table: pd.DataFrame) -> str:
    """Assert that every bad request of ``table`` (:func:`probe_bad_inputs`) got a 4xx with a
    message and left the server alive. Returns one line."""
    accepted = table[table["status"] < 400]
    assert accepted.empty, (
        "accepted with status 200: "
        + ", ".join(accepted["case"])
        + ": a wrong input must be refused, not scored (a number in a text column becomes a "
        "category nobody trained on); validate the record against the signature first"
    )
    crashed = table[table["status"] >= 500]
    assert crashed.empty, (
        "answered with a 5xx: " + ", ".join(crashed["case"]) + ": a client's mistake is a 4xx "
        "with a message naming the column and the fix"
    )
    silent = table[table["message"].str.len() < 10]
    assert silent.empty, "refused without a message: " + ", ".join(silent["case"])
    dead = table[~table["alive"]]
    assert dead.empty, "the server stopped answering after: " + ", ".join(dead["case"])
    return f"{len(table)} bad requests refused with a 4xx and a message; the server still answers"


# --------------------------------------------------------------------------- on Databricks


def databricks_endpoint_config(
    name: str,
    champion_version: int,
    challenger_version: int,
    *,
    endpoint: str = "fraud-detector",
    challenger_share: float = 0.10,
    catalog: str = "main",
    schema: str = "ml",
) -> dict:
    """The body of ``POST /api/2.0/serving-endpoints`` (``databricks serving-endpoints create
    --json``) that serves two versions of the Unity Catalog model ``name`` side by side: the
    champion and the challenger as served entities, ``traffic_config`` routes sharing the
    requests (at random per request, not per customer), and AI Gateway's inference table in
    ``<catalog>.<schema>`` (a Delta table of every request and response)."""
    challenger_pct = round(100 * challenger_share)
    entities = [
        (CHAMPION_ENTITY, champion_version, 100 - challenger_pct),
        (CHALLENGER_ENTITY, challenger_version, challenger_pct),
    ]
    return {
        "name": endpoint,
        "config": {
            "served_entities": [
                {
                    "name": entity,
                    "entity_name": name,
                    "entity_version": str(int(version)),
                    "workload_size": "Small",
                    "scale_to_zero_enabled": False,
                }
                for entity, version, _ in entities
            ],
            "traffic_config": {
                "routes": [
                    {"served_model_name": entity, "traffic_percentage": pct}
                    for entity, _, pct in entities
                ]
            },
        },
        "ai_gateway": {
            "inference_table_config": {
                "enabled": True,
                "catalog_name": catalog,
                "schema_name": schema,
                "table_name_prefix": endpoint.replace("-", "_"),
            },
            "usage_tracking_config": {"enabled": True},
            "rate_limits": [{"calls": 1000, "key": "endpoint", "renewal_period": "minute"}],
        },
    }


__all__ = [
    "FORMATS",
    "InputSpec",
    "ManagedProcess",
    "ModelServer",
    "ServingError",
    "bad_requests",
    "check_refusals",
    "check_served_scores",
    "databricks_endpoint_config",
    "error_message",
    "invoke",
    "latencies_ms",
    "logs_dir",
    "predict",
    "probe_bad_inputs",
    "record_problems",
    "request_body",
    "scores_of",
    "serve_model",
    "start_all",
    "stop_all",
]
