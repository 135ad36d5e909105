"""Benchmark real-time serving on loopback: latency percentiles and errors at a fixed request
rate, and the maximum sustained requests/s, for the champion served by ``mlflow models serve``
directly and through the course's router (split 90/10 and shadow on), single-record and batched,
beside the same model called in process in the same run (the floor).

The model is the shape of the course's fraud champion: lesson 02's twelve feature columns
(``training.FEATURE_COLUMNS``) into a scikit-learn pipeline (scaler, one-hot encoder, logistic
regression), fitted on seeded synthetic payments and registered with a challenger in a
temporary MLflow registry: no lake and no Spark needed, the same work per request as the
lesson's models.

Loads:

- fixed rate (open loop): requests are *scheduled* at ``--rate`` per second for ``--seconds``
  and sent by a pool of client threads; a request's latency runs from its scheduled time, so a
  server that falls behind is charged for the queue it causes (no coordinated omission);
- maximum: ``--clients`` threads send back to back for ``--max-seconds``; requests/s is what
  completed over the elapsed time.

"Where the time goes" times the parts of one request in this process: scikit-learn's
``predict_proba`` on one row, MLflow's pyfunc ``predict`` (schema enforcement + the model), the
scoring server's JSON parsing into a DataFrame and its answer's serialisation, the router's own
parsing and validation; what the endpoint adds beyond them is HTTP, uvicorn and the thread hop.

    python bench/serving.py                                # 60 s at 100 requests/s per case
    python bench/serving.py --seconds 10 --max-seconds 5   # a smoke run
    python bench/serving.py --out results.json

A script, not a test: nothing asserts a speed. The client shares the machine's cores with the
servers, as a sidecar or a co-located caller would.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

NAME = "fraud_detector_bench"
TARGET_P95_MS = 20.0  # at 100 requests/s on 2 cores
PLATFORM_CLAIM = "< 50 ms p95 at 1,000 requests/s"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s of the fixed load")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each fixed load")
    parser.add_argument("--batch", type=int, default=20, help="records per batched request")
    parser.add_argument("--clients", type=int, default=4, help="threads of the maximum load")
    parser.add_argument("--max-seconds", type=float, default=15.0, help="length of a max load")
    parser.add_argument(
        "--workers", type=int, default=2, help="uvicorn workers per model server (one per core)"
    )
    parser.add_argument("--parts", type=int, default=500, help="repeats of each part timed")
    parser.add_argument("--out", help="write every figure as JSON here")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.batch < 1 or args.clients < 1:
        parser.error("--rate, --seconds, --batch and --clients must be positive")
    return args


# --------------------------------------------------------------------------- the models


def synthetic_payments(n: int, seed: int = 42) -> pd.DataFrame:
    from lakehouse.ml import training

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {c: rng.normal(0, 1, n).round(4) for c in training.NUMERIC_FEATURES}
        | {
            "channel": rng.choice(["online", "pos", "atm"], n),
            "merchant_category": rng.choice(["grocery", "travel", "online_retail", "fuel"], n),
            "card_network": rng.choice(["visa", "mastercard", "amex"], n),
        }
    )
    signal = frame["log_amount_usd"] + 1.5 * (frame["channel"] == "online") + rng.normal(0, 1, n)
    frame["label"] = (signal > 2.5).astype(int)
    frame["customer_id"] = [f"C{i % 5_000:06d}" for i in range(n)]
    frame["payment_id"] = [f"P{i:08d}" for i in range(n)]
    return frame


def register_models(payments: pd.DataFrame, lake: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from lakehouse.config import settings
    from lakehouse.ml import registry, tracking, training

    tracking.configure(store=tracking.store_for(settings=settings(lake=lake, catalog="bench")))
    registry.delete_model(NAME)
    for alias, numeric in (("champion", training.NUMERIC_FEATURES), ("challenger", ())):
        inputs = [*numeric, *training.CATEGORICAL_FEATURES]
        pre = ColumnTransformer(
            [
                ("numeric", StandardScaler(), list(numeric)),
                (
                    "categorical",
                    OneHotEncoder(handle_unknown="ignore"),
                    list(training.CATEGORICAL_FEATURES),
                ),
            ]
        )
        model = Pipeline(
            [
                ("features", pre),
                ("model", LogisticRegression(class_weight="balanced", max_iter=1000)),
            ]
        )
        model.fit(payments[inputs], payments["label"])
        logged = tracking.log_training_run(
            model, alias, payments[inputs], payments["label"], table="ml.bench", table_version=0
        )
        registry.register(logged.model_uri, NAME, alias=alias, tags={registry.THRESHOLD_TAG: 0.5})


# --------------------------------------------------------------------------- loads


def _session_factory():
    import requests

    local = threading.local()

    def session():
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    return session


def fixed_rate(url: str, bodies: list[str], rate: float, seconds: float) -> dict:
    """Open loop: request i is due at start + i / rate; latency from the due time."""
    session = _session_factory()
    n = int(rate * seconds)
    due = np.empty(n)
    done = np.full(n, np.nan)
    service = np.full(n, np.nan)
    status = np.zeros(n, dtype=int)

    def send(i: int) -> None:
        begun = time.perf_counter()
        try:
            response = session().post(
                url,
                data=bodies[i % len(bodies)],
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            status[i] = response.status_code
        except Exception:
            status[i] = -1
        done[i] = time.perf_counter()
        service[i] = done[i] - begun

    start = time.perf_counter() + 0.2
    with ThreadPoolExecutor(max_workers=32) as pool:
        for i in range(n):
            due[i] = start + i / rate
            wait = due[i] - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            pool.submit(send, i)
    latency = (done - due) * 1000
    ok = status == 200
    return {
        "requests": n,
        "errors": int((~ok).sum()),
        "p50_ms": float(np.nanpercentile(latency[ok], 50)),
        "p95_ms": float(np.nanpercentile(latency[ok], 95)),
        "p99_ms": float(np.nanpercentile(latency[ok], 99)),
        "service_p95_ms": float(np.nanpercentile(service[ok] * 1000, 95)),
        "achieved_rps": float(n / (np.nanmax(done) - start)),
    }


def max_rate(url: str, bodies: list[str], clients: int, seconds: float) -> dict:
    """Closed loop: ``clients`` threads back to back; completed requests over the time."""
    session = _session_factory()
    stop = time.perf_counter() + seconds
    results: list[tuple[float, int]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        i, mine = k, []
        while time.perf_counter() < stop:
            begun = time.perf_counter()
            try:
                code = (
                    session()
                    .post(
                        url,
                        data=bodies[i % len(bodies)],
                        headers={"Content-Type": "application/json"},
                        timeout=30,
                    )
                    .status_code
                )
            except Exception:
                code = -1
            mine.append(((time.perf_counter() - begun) * 1000, code))
            i += clients
        with lock:
            results.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latency = np.array([ms for ms, code in results if code == 200])
    return {
        "requests": len(results),
        "errors": sum(code != 200 for _, code in results),
        "rps": len(latency) / elapsed,
        "p95_ms": float(np.percentile(latency, 95)) if len(latency) else float("nan"),
    }


# --------------------------------------------------------------------------- parts


def time_parts(payments: pd.DataFrame, repeats: int, spec) -> dict[str, float]:
    """Median ms of each part of one single-record request, in this process."""
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import _parse_json_data, predictions_to_json

    from lakehouse.ml import registry, router, serving

    uri = registry.model_uri(NAME, "champion")
    sklearn_model = registry.load(NAME, "champion")
    pyfunc_model = mlflow.pyfunc.load_model(uri)
    columns = spec.names
    one = payments[columns].iloc[[0]]
    body = serving.request_body(one, "dataframe_split")
    router_body = serving.request_body(
        payments[["customer_id", *columns]].iloc[[0]], "dataframe_records"
    )
    schema = pyfunc_model.metadata.get_input_schema()

    def median_ms(call) -> float:
        for _ in range(20):
            call()
        times = []
        for _ in range(repeats):
            begun = time.perf_counter()
            call()
            times.append((time.perf_counter() - begun) * 1000)
        return statistics.median(times)

    import io

    predictions = pyfunc_model.predict(one)
    return {
        "sklearn predict_proba (1 row)": median_ms(lambda: sklearn_model.predict_proba(one)),
        "pyfunc predict (schema + model)": median_ms(lambda: pyfunc_model.predict(one)),
        "JSON -> DataFrame (scoring server)": median_ms(
            lambda: _parse_json_data(body, pyfunc_model.metadata, schema)
        ),
        "predictions -> JSON": median_ms(lambda: predictions_to_json(predictions, io.StringIO())),
        "router: parse + validate": median_ms(
            lambda: router.validate(router.parse_records(router_body.encode()), spec)
        ),
    }


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from lakehouse.ml import registry, router, serving

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    os.environ["LAKEHOUSE_LAKE"] = str(work / "lake")
    print(
        f"bench/serving.py: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; work folder {work}"
    )
    payments = synthetic_payments(20_000)
    started = time.perf_counter()
    register_models(payments, work / "lake")
    print(f"models registered in {time.perf_counter() - started:.1f} s")

    champion = serving.ModelServer(
        registry.model_uri(NAME, "champion"), workers=args.workers, log_file=work / "champion.log"
    )
    challenger = serving.ModelServer(
        registry.model_uri(NAME, "challenger"),
        workers=args.workers,
        log_file=work / "challenger.log",
    )
    serving.start_all(champion, challenger)
    config = router.config_for(NAME, champion, challenger, log_path=work / "inference.jsonl")
    front = router.Router(config).start()
    print(
        f"servers ready: champion {champion.startup_s:.1f} s, "
        f"challenger {challenger.startup_s:.1f} s, "
        f"router {front.startup_s:.1f} s"
    )

    spec = serving.InputSpec.of(registry.signature_of(NAME, "champion"))
    columns = spec.names
    rows = payments.head(2_000)
    bodies = {
        ("direct", 1): [
            serving.request_body(rows[columns].iloc[[i]], "dataframe_split")
            for i in range(len(rows))
        ],
        ("direct", args.batch): [
            serving.request_body(rows[columns].iloc[i : i + args.batch], "dataframe_split")
            for i in range(0, len(rows), args.batch)
        ],
        ("router", 1): [
            serving.request_body(
                rows[["customer_id", "payment_id", *columns]].iloc[[i]], "dataframe_records"
            )
            for i in range(len(rows))
        ],
        ("router", args.batch): [
            serving.request_body(
                rows[["customer_id", "payment_id", *columns]].iloc[i : i + args.batch],
                "dataframe_split",
            )
            for i in range(0, len(rows), args.batch)
        ],
    }
    urls = {"direct": champion.invocations_url, "router": front.invocations_url}
    results: dict = {"settings": vars(args), "cases": []}
    try:
        model = registry.load(NAME, "champion")
        floor = {}
        for size in (1, args.batch):
            frames = [
                rows[columns].iloc[i : i + size] for i in range(0, len(rows) - size + 1, size)
            ][:200]
            times = []
            for frame in frames * 3:
                begun = time.perf_counter()
                model.predict_proba(frame)
                times.append((time.perf_counter() - begun) * 1000)
            floor[size] = {
                "p50_ms": float(np.percentile(times, 50)),
                "p95_ms": float(np.percentile(times, 95)),
                "p99_ms": float(np.percentile(times, 99)),
                "rps": 1000 / float(np.mean(times)),
            }
        for (path, size), payload in bodies.items():
            where = "champion direct" if path == "direct" else "through router"
            label = f"{where}, {'single' if size == 1 else f'batch {size}'}"
            print(f"  {label}: {args.rate:.0f} requests/s for {args.seconds:.0f} s ...", flush=True)
            fixed = fixed_rate(urls[path], payload, args.rate, args.seconds)
            if path == "router":
                front.wait_for_shadow(120)
            print(
                f"  {label}: maximum, {args.clients} clients for {args.max_seconds:.0f} s ...",
                flush=True,
            )
            best = max_rate(urls[path], payload, args.clients, args.max_seconds)
            if path == "router":
                front.wait_for_shadow(300)
            results["cases"].append({"case": label, "records": size, "fixed": fixed, "max": best})
        parts = time_parts(payments, args.parts, spec)
        stats_ = front.stats()
    finally:
        for server in (front, champion, challenger):
            server.stop()

    print()
    print(
        f"Serving on loopback, {args.rate:.0f} requests/s for {args.seconds:.0f} s (open loop), "
        f"maximum with {args.clients} clients; latency in ms"
    )
    header = (
        f"{'case':34} {'p50':>7} {'p95':>7} {'p99':>7} {'errors':>7} "
        f"{'max req/s':>10} {'max rec/s':>10}"
    )
    print(header)
    print("-" * len(header))
    for size in (1, args.batch):
        f = floor[size]
        print(
            f"{'in process (floor), ' + ('single' if size == 1 else f'batch {size}'):34} "
            f"{f['p50_ms']:7.2f} "
            f"{f['p95_ms']:7.2f} {f['p99_ms']:7.2f} {'-':>7} {f['rps']:10,.0f} "
            f"{f['rps'] * size:10,.0f}"
        )
    for case in results["cases"]:
        f, m = case["fixed"], case["max"]
        print(
            f"{case['case']:34} {f['p50_ms']:7.2f} {f['p95_ms']:7.2f} {f['p99_ms']:7.2f} "
            f"{f['errors'] + m['errors']:7d} {m['rps']:10,.0f} {m['rps'] * case['records']:10,.0f}"
        )

    def verdict(figures: dict) -> str:
        return "MET" if figures["p95_ms"] <= TARGET_P95_MS else "NOT MET"

    single_direct = results["cases"][0]["fixed"]
    single_router = results["cases"][2]["fixed"]
    print()
    print(
        f"target p95 <= {TARGET_P95_MS:.0f} ms at {args.rate:.0f} requests/s, single record: "
        f"direct {single_direct['p95_ms']:.1f} ms ({verdict(single_direct)}), "
        f"through the router {single_router['p95_ms']:.1f} ms "
        f"({verdict(single_router)}); the platform claims {PLATFORM_CLAIM}"
    )
    print()
    print("Where the time goes (one single-record request, medians in this process, ms):")
    for part, ms in parts.items():
        print(f"  {part:38} {ms:7.3f}")
    inside = (
        parts["JSON -> DataFrame (scoring server)"]
        + parts["pyfunc predict (schema + model)"]
        + parts["predictions -> JSON"]
    )
    print(
        f"  {'endpoint p50 - (parse + predict + JSON)':38} "
        f"{single_direct['p50_ms'] - inside:7.3f}   (HTTP, uvicorn, thread hop)"
    )
    print(
        f"  {'router p50 - endpoint p50':38} "
        f"{single_router['p50_ms'] - single_direct['p50_ms']:7.3f}"
        "   (a second hop, validation, the log)"
    )
    print(
        f"router counters: {stats_['served']} served, {stats_['shadow_done']} shadow calls, "
        f"{stats_['shadow_errors']} shadow errors, {stats_['upstream_errors']} upstream errors"
    )
    results.update(floor={str(k): v for k, v in floor.items()}, parts=parts, router=stats_)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(f"figures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
