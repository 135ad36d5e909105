"""A small traffic router in front of two model servers: each customer is assigned to the
champion or the challenger by a hash of its id (90/10 by default: the same customer always
lands in the same arm, in every process), the champion's requests are mirrored to the
challenger in shadow (after the answer is sent; its score is logged, never returned), and every
scoring is appended to an inference log (JSON lines) that :func:`load_inference_log` merges into
the Delta table ``ml.inference_log``.

The router is a FastAPI app (MLflow's scoring server is one too) run by uvicorn in a process of
its own; it validates each request against the models' signatures and refuses a bad one with a
400 that names the column, before any model sees it.

Example::

    from lakehouse.ml import router, serving

    champion = serving.serve_model(registry.model_uri(name, "champion"))
    challenger = serving.serve_model(registry.model_uri(name, "challenger"))
    config = router.config_for(name, champion, challenger, log_path=path)
    with router.Router(config) as running:
        requests.post(running.url + "/invocations", json={"dataframe_records": [record]})
    router.load_inference_log(spark, path)             # -> ml.inference_log, idempotent
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

# FastAPI reads the endpoints' annotations, which this module's future import makes strings
# resolved in its globals: the request's type must be one of them
from fastapi import Request

from lakehouse.ml import serving
from lakehouse.ml.serving import InputSpec, ManagedProcess, ServingError

INFERENCE_LOG = "ml.inference_log"
CHAMPION, CHALLENGER = "champion", "challenger"
SERVED, SHADOW = "served", "shadow"
SOURCE = "serving"
CHALLENGER_SHARE = 0.10
SALT = "fraud-ab-1"  # a new experiment takes a new salt: customers are shuffled afresh
BUCKETS = 100
ID_COLUMNS = ("request_id", "customer_id", "payment_id", "event_ts")
MAX_RECORDS = 10_000

# The Delta table's columns (shared with the streaming scorer, which writes source='stream').
INFERENCE_LOG_COLUMNS = (
    ("request_id", "string"),
    ("source", "string"),
    ("payment_id", "string"),
    ("customer_id", "string"),
    ("event_ts", "timestamp"),
    ("model_name", "string"),
    ("model_version", "int"),
    ("model_alias", "string"),
    ("role", "string"),
    ("features", "string"),
    ("score", "double"),
    ("threshold", "double"),
    ("flagged", "boolean"),
    ("latency_ms", "double"),
    ("batch_id", "bigint"),
    ("logged_at", "timestamp"),
)


# --------------------------------------------------------------------------- the split


def bucket_of(customer_id: str, *, salt: str = SALT, buckets: int = BUCKETS) -> int:
    """The customer's bucket, 0 to ``buckets - 1``: the first 8 bytes of SHA-256 of
    ``salt:customer_id``. The same in every process and on every machine (Python's ``hash``
    of a string is not: it is salted per process)."""
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def arm_of(
    customer_id: str, *, challenger_share: float = CHALLENGER_SHARE, salt: str = SALT
) -> str:
    """``"challenger"`` for the customers whose bucket is below ``challenger_share`` of the
    buckets, ``"champion"`` for the others."""
    if not 0 <= challenger_share <= 1:
        raise ValueError(f"challenger_share {challenger_share}: give a share in [0, 1], e.g. 0.1")
    cut = round(challenger_share * BUCKETS)
    return CHALLENGER if bucket_of(customer_id, salt=salt) < cut else CHAMPION


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Arm:
    """One model behind the router: where it answers, what it is, and the columns it takes."""

    alias: str
    url: str
    version: int
    threshold: float
    columns: tuple[str, ...]


@dataclass(frozen=True)
class RouterConfig:
    model_name: str
    champion: Arm
    challenger: Arm
    spec: InputSpec  # what a request must carry: the columns of both models
    log_path: str
    challenger_share: float = CHALLENGER_SHARE
    shadow: bool = True
    salt: str = SALT

    def to_json(self) -> str:
        data = asdict(self)
        data["spec"] = self.spec.to_json()
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> RouterConfig:
        data = json.loads(text)
        arms = {
            a: Arm(**{**data[a], "columns": tuple(data[a]["columns"])})
            for a in (CHAMPION, CHALLENGER)
        }
        spec = InputSpec(tuple((n, k) for n, k in data.pop("spec")))
        return cls(**{**data, **arms, "spec": spec})


def config_for(
    name: str,
    champion: serving.ModelServer | str,
    challenger: serving.ModelServer | str,
    *,
    log_path: str | os.PathLike,
    challenger_share: float = CHALLENGER_SHARE,
    shadow: bool = True,
    salt: str = SALT,
) -> RouterConfig:
    """The router's configuration from the registry: for ``@champion`` and ``@challenger`` of
    ``name``, the version, the threshold tag and the signature's columns, with the URL of the
    server (or a base URL) that serves each."""
    from lakehouse.ml import registry

    arms, specs = {}, {}
    for alias, server in ((CHAMPION, champion), (CHALLENGER, challenger)):
        version = registry.version_of(name, alias)
        if version is None:
            raise ValueError(f"{name} has no @{alias}: registry.ensure_{alias}(spark) builds one")
        specs[alias] = InputSpec.of(registry.signature_of(name, alias))
        url = server.url if isinstance(server, ManagedProcess) else str(server).rstrip("/")
        arms[alias] = Arm(
            alias, url, version, registry.threshold_of(name, alias), tuple(specs[alias].names)
        )
    return RouterConfig(
        model_name=name,
        champion=arms[CHAMPION],
        challenger=arms[CHALLENGER],
        spec=specs[CHAMPION].union(specs[CHALLENGER]),
        log_path=str(Path(log_path).resolve()),
        challenger_share=challenger_share,
        shadow=shadow,
        salt=salt,
    )


# --------------------------------------------------------------------------- requests


class BadRequest(ValueError):
    """A request the router refuses with a 400; the message names the problem and the fix."""


def parse_records(body: bytes) -> list[dict]:
    """The records of a request body in one of MLflow's formats (``dataframe_split``,
    ``dataframe_records``, ``inputs``); :class:`BadRequest` on anything else."""
    if not body or not body.strip():
        raise BadRequest(
            'empty body: send JSON such as {"dataframe_records": [{"customer_id": "...", ...}]}'
        )
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON ({exc})") from None
    keys = [k for k in serving.FORMATS if isinstance(data, dict) and k in data]
    if len(keys) != 1:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise BadRequest(
            f"send a JSON object with exactly one of {', '.join(serving.FORMATS)}; got {found}"
        )
    payload = data[keys[0]]
    if keys[0] == "dataframe_split":
        if not isinstance(payload, dict) or "columns" not in payload or "data" not in payload:
            raise BadRequest('dataframe_split needs {"columns": [...], "data": [[...], ...]}')
        columns = payload["columns"]
        rows = payload["data"]
        if not isinstance(rows, list) or any(
            not isinstance(r, list) or len(r) != len(columns) for r in rows
        ):
            raise BadRequest(f"dataframe_split: every row of data needs {len(columns)} values")
        records = [dict(zip(columns, row)) for row in rows]
    elif isinstance(payload, dict):  # inputs as a dict of columns
        lengths = {len(v) if isinstance(v, list) else -1 for v in payload.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise BadRequest("inputs as columns: every column must be a list of the same length")
        records = [dict(zip(payload, values)) for values in zip(*payload.values())]
    elif isinstance(payload, list):
        records = payload
    else:
        raise BadRequest(f"{keys[0]} must be a list of records, got {type(payload).__name__}")
    if not records:
        raise BadRequest(f"{keys[0]} holds no record: send at least one")
    if len(records) > MAX_RECORDS:
        raise BadRequest(f"{len(records)} records in one request: send at most {MAX_RECORDS}")
    return records


def validate(records: list, spec: InputSpec) -> None:
    """Raise :class:`BadRequest` naming up to five problems of ``records``: a customer_id
    missing or not a string, or a feature missing, null or of the wrong type."""
    problems = []
    for i, record in enumerate(records):
        found = serving.record_problems(record, spec)
        if isinstance(record, Mapping):
            customer = record.get("customer_id")
            if not isinstance(customer, str) or not customer:
                found.insert(0, "customer_id is missing (the router splits traffic by customer)")
        problems.extend(f"record {i}: {p}" for p in found)
        if len(problems) >= 5:
            break
    if problems:
        raise BadRequest(
            "; ".join(problems[:5])
            + f". The model takes {', '.join(f'{n} ({k})' for n, k in spec.columns)}"
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _split_body(records: list[dict], columns: tuple[str, ...]) -> str:
    return json.dumps(
        {
            "dataframe_split": {
                "columns": list(columns),
                "data": [[r[c] for c in columns] for r in records],
            }
        }
    )


# --------------------------------------------------------------------------- the app


def create_app(config: RouterConfig):
    """The router's FastAPI app: ``POST /invocations`` (MLflow's formats, plus a
    ``customer_id`` per record; optional ``payment_id``, ``request_id``, ``event_ts``),
    ``GET /health``, ``GET /stats``."""
    import aiohttp
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    state: dict = {"served": {CHAMPION: 0, CHALLENGER: 0}, "refused": 0, "shadow_done": 0}
    state.update(shadow_errors=0, upstream_errors=0)
    pending: set[asyncio.Task] = set()
    holder: dict = {}
    arms = {CHAMPION: config.champion, CHALLENGER: config.challenger}
    log = open(config.log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    async def lifespan(app):
        connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=60)
        holder["session"] = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        )
        yield
        if pending:
            await asyncio.wait(pending, timeout=30)
        await holder["session"].close()
        log.close()

    app = FastAPI(lifespan=lifespan)

    async def score(arm: Arm, records: list[dict]) -> np.ndarray:
        async with holder["session"].post(
            arm.url + "/invocations",
            data=_split_body(records, arm.columns),
            headers={"Content-Type": "application/json"},
        ) as response:
            text = await response.text()
            if response.status != 200:
                raise ServingError(
                    f"the {arm.alias} (v{arm.version}) answered {response.status}: {text[:300]}"
                )
        return serving.scores_of(json.loads(text))

    def write(records, ids, arm: Arm, role: str, scores, latency_ms: float) -> None:
        logged_at = _now()
        lines = []
        for record, request_id, s in zip(records, ids, scores):
            lines.append(
                json.dumps(
                    {
                        "request_id": request_id,
                        "source": SOURCE,
                        "payment_id": record.get("payment_id"),
                        "customer_id": record["customer_id"],
                        "event_ts": record.get("_event_ts"),
                        "model_name": config.model_name,
                        "model_version": arm.version,
                        "model_alias": arm.alias,
                        "role": role,
                        "features": json.dumps({c: record[c] for c in arm.columns}),
                        "score": float(s),
                        "threshold": arm.threshold,
                        "flagged": bool(s >= arm.threshold),
                        "latency_ms": round(latency_ms, 3),
                        "batch_id": None,
                        "logged_at": logged_at,
                    }
                )
            )
        log.write("\n".join(lines) + "\n")

    async def shadow(records, ids) -> None:
        started = time.perf_counter()
        try:
            scores = await score(config.challenger, records)
        except Exception as exc:  # a shadow's failure is logged and never reaches the client
            state["shadow_errors"] += 1
            print(f"shadow call failed: {exc}", file=sys.stderr, flush=True)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        write(records, ids, config.challenger, SHADOW, scores, elapsed_ms)
        state["shadow_done"] += 1

    def refuse(status: int, message: str, code: str = "BAD_REQUEST"):
        state["refused"] += 1
        return JSONResponse({"error_code": code, "message": message}, status_code=status)

    @app.post("/invocations")
    async def invocations(request: Request):
        started = time.perf_counter()
        arrival = _now()
        try:
            records = parse_records(await request.body())
            validate(records, config.spec)
        except BadRequest as exc:
            return refuse(400, str(exc))
        header_id = request.headers.get("x-request-id")
        ids = []
        for i, record in enumerate(records):
            given = record.get("request_id")
            if given is None and header_id:
                given = header_id if len(records) == 1 else f"{header_id}/{i}"
            ids.append(str(given) if given is not None else uuid.uuid4().hex)
            record["_event_ts"] = record.get("event_ts") or arrival
        groups: dict[str, list[int]] = {CHAMPION: [], CHALLENGER: []}
        for i, record in enumerate(records):
            arm = arm_of(
                record["customer_id"], challenger_share=config.challenger_share, salt=config.salt
            )
            groups[arm].append(i)
        chosen = [a for a in (CHAMPION, CHALLENGER) if groups[a]]
        try:
            results = await asyncio.gather(
                *(score(arms[a], [records[i] for i in groups[a]]) for a in chosen)
            )
        except (TimeoutError, ServingError, aiohttp.ClientError) as exc:
            state["upstream_errors"] += 1
            return refuse(502, f"a model server failed: {exc}", code="UPSTREAM_ERROR")
        latency_ms = (time.perf_counter() - started) * 1000
        predictions: list[dict | None] = [None] * len(records)
        for a, scores in zip(chosen, results):
            arm = arms[a]
            idx = groups[a]
            write([records[i] for i in idx], [ids[i] for i in idx], arm, SERVED, scores, latency_ms)
            state["served"][a] += len(idx)
            for i, s in zip(idx, scores):
                predictions[i] = {
                    "request_id": ids[i],
                    "payment_id": records[i].get("payment_id"),
                    "score": float(s),
                    "flagged": bool(s >= arm.threshold),
                    "model_version": arm.version,
                    "model_alias": arm.alias,
                }
        if config.shadow and groups[CHAMPION]:
            mirrored = [records[i] for i in groups[CHAMPION]]
            task = asyncio.create_task(shadow(mirrored, [ids[i] for i in groups[CHAMPION]]))
            pending.add(task)
            task.add_done_callback(pending.discard)
        return JSONResponse({"predictions": predictions})

    @app.get("/health")
    async def health():
        return Response("\n", media_type="application/json")

    @app.get("/stats")
    async def stats():
        return {**state, "shadow_pending": len(pending), "log": config.log_path}

    return app


# --------------------------------------------------------------------------- the process


class Router(ManagedProcess):
    """The router in a uvicorn process of its own on a free loopback port, configured by
    ``config`` (written beside its log)."""

    def __init__(self, config: RouterConfig, *, port: int | None = None):
        from lakehouse.services import free_port

        port = port or free_port()
        log_path = Path(config.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        config_file = log_path.with_name(f"router-{port}.json")
        config_file.write_text(config.to_json(), encoding="utf-8")
        super().__init__(
            "the router",
            [sys.executable, "-m", "lakehouse.ml.router", str(config_file), "--port", str(port)],
            port=port,
            ready_path="/health",
            log_file=log_path.with_name(f"router-{port}.log"),
            env=serving._child_env(),
        )
        self.config = config

    @property
    def invocations_url(self) -> str:
        return self.url + "/invocations"

    def stats(self) -> dict:
        import requests

        return requests.get(self.url + "/stats", timeout=10).json()

    def wait_for_shadow(self, timeout: float = 60) -> dict:
        """Wait until no shadow call is pending; returns the router's counters."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["shadow_pending"] == 0 or time.monotonic() > deadline:
                return stats
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m lakehouse.ml.router")
    parser.add_argument("config", type=Path, help="the router's configuration (JSON)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    config = RouterConfig.from_json(args.config.read_text(encoding="utf-8"))
    uvicorn.run(
        create_app(config), host=serving.HOST, port=args.port, log_level="warning", access_log=False
    )
    return 0


# --------------------------------------------------------------------------- the inference log


def read_log_lines(path: str | os.PathLike) -> pd.DataFrame:
    """The router's JSON lines as a frame with :data:`INFERENCE_LOG_COLUMNS` (a torn last line,
    from a router stopped mid-write, is skipped)."""
    rows = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    frame = pd.DataFrame(rows, columns=[c for c, _ in INFERENCE_LOG_COLUMNS])
    for column in ("event_ts", "logged_at"):
        parsed = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        frame[column] = parsed.dt.tz_localize(None)
    return frame


def inference_log_schema():
    """:data:`INFERENCE_LOG_COLUMNS` as a Spark schema."""
    from pyspark.sql import types as T

    kinds = {
        "string": T.StringType(),
        "timestamp": T.TimestampType(),
        "int": T.IntegerType(),
        "double": T.DoubleType(),
        "boolean": T.BooleanType(),
        "bigint": T.LongType(),
    }
    return T.StructType([T.StructField(n, kinds[k], True) for n, k in INFERENCE_LOG_COLUMNS])


def ensure_inference_log(spark, table: str = INFERENCE_LOG) -> None:
    """Create the Delta table ``table`` if it is missing, as the scoring stream of lesson 06
    does (:func:`lakehouse.ml.scoring.create_inference_log`: one table, one definition)."""
    from lakehouse.ml import scoring

    scoring.create_inference_log(spark, table)


def _spark_rows(frame: pd.DataFrame) -> list[tuple]:
    rows = []
    for row in frame.astype(object).itertuples(index=False):
        values = []
        for v in row:
            if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
                values.append(None)
            elif isinstance(v, pd.Timestamp):
                values.append(v.to_pydatetime())
            else:
                values.append(v)
        rows.append(tuple(values))
    return rows


def load_inference_log(spark, path: str | os.PathLike, table: str = INFERENCE_LOG) -> dict:
    """Merge the router's log at ``path`` into the Delta ``table`` (created if missing): one
    row per (request_id, role) of ``source = 'serving'``, inserted once, so a rerun or a line
    logged twice adds nothing. Returns the lines read, the distinct keys and the rows
    inserted."""
    from lakehouse import DeltaTable

    ensure_inference_log(spark, table)
    frame = read_log_lines(path)
    lines = len(frame)
    # one row per key, the first logged: a MERGE inserts every source row that matches no
    # target row, both copies of a key logged twice included
    frame = frame.sort_values("logged_at", kind="stable").drop_duplicates(["request_id", "role"])
    if not len(frame):
        return {"lines": lines, "keys": 0, "inserted": 0}
    batch = spark.createDataFrame(_spark_rows(frame), inference_log_schema())
    metrics = (
        DeltaTable.forName(spark, table)
        .alias("t")
        .merge(
            batch.alias("s"),
            "t.source = s.source AND t.request_id = s.request_id AND t.role = s.role",
        )
        .whenNotMatchedInsertAll()
        .execute()  # one row of metrics, num_inserted_rows among them
    )
    inserted = int(metrics.first()["num_inserted_rows"])
    return {"lines": lines, "keys": len(frame), "inserted": inserted}


# --------------------------------------------------------------------------- reading it back


def split_summary(log: pd.DataFrame) -> pd.DataFrame:
    """Per arm, among the served rows: requests, customers, share of requests, flag rate."""
    served = log[log["role"] == SERVED]
    table = served.groupby("model_alias").agg(
        requests=("request_id", "nunique"),
        customers=("customer_id", "nunique"),
        flagged=("flagged", "sum"),
        version=("model_version", "first"),
    )
    table["share"] = table["requests"] / table["requests"].sum()
    table["flag_rate"] = table["flagged"] / table["requests"]
    return table.reindex([CHAMPION, CHALLENGER]).dropna(how="all")


def shadow_pairs(log: pd.DataFrame) -> pd.DataFrame:
    """One row per request served by the champion and mirrored to the challenger: both
    scores and both decisions, joined on ``request_id``."""
    served = log[(log["role"] == SERVED) & (log["model_alias"] == CHAMPION)]
    mirrored = log[log["role"] == SHADOW]
    return served[["request_id", "customer_id", "score", "flagged"]].merge(
        mirrored[["request_id", "score", "flagged"]],
        on="request_id",
        suffixes=("_champion", "_challenger"),
    )


# --------------------------------------------------------------------------- checks


def check_assignment(
    assign: Callable[[str], str],
    customers: Iterable[str],
    *,
    challenger_share: float = CHALLENGER_SHARE,
) -> str:
    """Assert that ``assign`` (customer_id -> ``"champion"`` or ``"challenger"``) is a split a
    router can use: the same arm every time for a customer, in this process and in two fresh
    ones (each with its own string-hash seed), and a challenger share near
    ``challenger_share`` (within four standard errors). Returns one line."""
    import subprocess

    import cloudpickle

    customers = list(customers)
    first = [assign(c) for c in customers]
    unknown = sorted({a for a in first if a not in (CHAMPION, CHALLENGER)}, key=str)
    assert not unknown, f"assign returned {unknown}: return 'champion' or 'challenger'"
    again = [assign(c) for c in customers]
    flipped = sum(a != b for a, b in zip(first, again))
    assert not flipped, (
        f"{flipped} of {len(customers)} customers changed arm when assigned twice: a random draw "
        "per request sends one customer to both models; derive the arm from a hash of the "
        "customer_id"
    )
    program = (
        "import sys, json, cloudpickle\n"
        "assign, customers = cloudpickle.loads(sys.stdin.buffer.read())\n"
        "print(json.dumps([assign(c) for c in customers]))\n"
    )
    module = sys.modules.get(getattr(assign, "__module__", None) or "")
    # a function of a test module or a script travels by value, like a notebook's
    by_value = module is not None and module.__name__.split(".")[0] not in ("__main__", "lakehouse")
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        payload = cloudpickle.dumps((assign, customers))
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", program],
            input=payload,
            capture_output=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, (
            f"assign failed in a fresh process: {done.stderr.decode()[-500:]}"
        )
        other = json.loads(done.stdout)
        moved = sum(a != b for a, b in zip(first, other))
        assert not moved, (
            f"{moved} of {len(customers)} customers get another arm in another process: Python's "
            "hash() of a string is salted per process (PYTHONHASHSEED); use a hash that is the "
            "same everywhere, e.g. hashlib.sha256(customer_id.encode())"
        )
    share = first.count(CHALLENGER) / len(customers)
    spread = 4 * (challenger_share * (1 - challenger_share) / len(customers)) ** 0.5
    assert abs(share - challenger_share) <= spread, (
        f"{share:.1%} of customers go to the challenger, not about {challenger_share:.0%} "
        f"(±{spread:.1%} at {len(customers)} customers): check which side of the cut is the "
        "challenger, and that the buckets are uniform (a hash modulo 100, not a modulo of the "
        "id's length)"
    )
    return (
        f"{len(customers)} customers: {share:.1%} to the challenger, same arm on every call and "
        "in fresh processes"
    )


def check_split(log: pd.DataFrame, *, challenger_share: float = CHALLENGER_SHARE) -> str:
    """Assert that in the inference log every customer was served by one arm only, and that the
    challenger served about ``challenger_share`` of the customers. Returns one line."""
    served = log[log["role"] == SERVED]
    arms = served.groupby("customer_id")["model_alias"].nunique()
    both = arms[arms > 1]
    assert both.empty, (
        f"{len(both)} customers were served by both models (e.g. {both.index[0]}): the split "
        "must come from the customer_id alone"
    )
    customers = served.drop_duplicates("customer_id")
    share = (customers["model_alias"] == CHALLENGER).mean()
    spread = 4 * (challenger_share * (1 - challenger_share) / max(len(customers), 1)) ** 0.5
    assert abs(share - challenger_share) <= spread, (
        f"{share:.1%} of customers were served by the challenger, not about "
        f"{challenger_share:.0%}: check the router's challenger_share"
    )
    return f"{len(customers)} customers, each served by one arm; {share:.1%} by the challenger"


def check_shadow_pairs(pairs: pd.DataFrame, log: pd.DataFrame) -> str:
    """Assert that ``pairs`` has one row per request the champion served and the challenger
    scored in shadow, with both decisions. Returns one line."""
    want = shadow_pairs(log)
    needed = {"request_id", "flagged_champion", "flagged_challenger"}
    assert needed <= set(pairs.columns), (
        f"pairs lacks {sorted(needed - set(pairs.columns))}: join the champion's served rows "
        "with the shadow rows on request_id (suffixes _champion and _challenger)"
    )
    assert pairs["request_id"].is_unique, (
        f"{len(pairs)} rows for {pairs['request_id'].nunique()} requests: a join on customer_id "
        "pairs every request of a customer with every other; join on request_id"
    )
    extra = set(pairs["request_id"]) - set(want["request_id"])
    assert not extra, (
        f"{len(extra)} requests in pairs were not served by the champion and mirrored: keep "
        "role == 'served' and model_alias == 'champion' on one side, role == 'shadow' on the other"
    )
    missing = set(want["request_id"]) - set(pairs["request_id"])
    assert not missing, f"{len(missing)} mirrored requests are missing from pairs"
    merged = pairs.merge(want, on="request_id", suffixes=("", "_want"))
    wrong = (merged["flagged_champion"] != merged["flagged_champion_want"]) | (
        merged["flagged_challenger"] != merged["flagged_challenger_want"]
    )
    assert not wrong.any(), (
        f"{int(wrong.sum())} pairs carry the wrong decision: flagged_champion from the served row, "
        "flagged_challenger from the shadow row"
    )
    return f"{len(pairs)} requests paired with their shadow score"


def check_shadow_not_returned(responses: Iterable[Mapping], log: pd.DataFrame) -> str:
    """Assert that what the router returned for each request is the served model's score, never
    the shadow's: each response's score equals the ``served`` row of its request. Returns one
    line."""
    served = log[log["role"] == SERVED].set_index("request_id")
    responses = list(responses)
    checked = 0
    for answer in responses:
        row = served.loc[answer["request_id"]]
        same = answer["model_alias"] == row["model_alias"]
        assert same and abs(answer["score"] - row["score"]) < 1e-12, (
            f"request {answer['request_id']} was answered with {answer['model_alias']} score "
            f"{answer['score']:.4f}, but the served row says {row['model_alias']} "
            f"{row['score']:.4f}: the shadow's result must never reach the client"
        )
        checked += 1
    return f"{checked} responses carry the served model's score, none the shadow's"


__all__ = [
    "CHALLENGER",
    "CHALLENGER_SHARE",
    "CHAMPION",
    "INFERENCE_LOG",
    "INFERENCE_LOG_COLUMNS",
    "SERVED",
    "SHADOW",
    "Arm",
    "BadRequest",
    "Router",
    "RouterConfig",
    "arm_of",
    "bucket_of",
    "check_assignment",
    "check_shadow_not_returned",
    "check_shadow_pairs",
    "check_split",
    "config_for",
    "create_app",
    "ensure_inference_log",
    "inference_log_schema",
    "load_inference_log",
    "parse_records",
    "read_log_lines",
    "shadow_pairs",
    "split_summary",
    "validate",
]


if __name__ == "__main__":
    sys.exit(main())
