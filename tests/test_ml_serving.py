"""Real-time serving: two real ``mlflow models serve`` processes (a champion and a challenger
registered in a temporary SQLite registry) and the router in front of them, all on loopback,
started once for the module and stopped at its end, called with a real HTTP client; the
request formats, bad inputs refused with a 4xx and a message, the hash split, the shadow that
never reaches the client, the inference log loaded into Delta idempotently; the A/B statistics
against formulas computed here and against simulation; and the checks of lesson 05_ml/07
against their plausible wrong answers."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lakehouse.config import settings
from lakehouse.ml import abtest, registry, router, serving, tracking

pytest.importorskip("mlflow")
requests = pytest.importorskip("requests")

NAME = "fraud_detector_serving_ci"
CHAMPION_COLUMNS = ["log_amount_usd", "channel"]
CHALLENGER_COLUMNS = ["log_amount_usd", "local_hour", "channel"]


# --------------------------------------------------------------------------- the A/B statistics


def test_the_z_test_agrees_with_a_chi_square_test_of_the_2x2_table():
    x_a, n_a, x_b, n_b = 120, 2_400, 41, 600
    result = abtest.two_proportion_test(x_a, n_a, x_b, n_b)
    table = [[x_a, n_a - x_a], [x_b, n_b - x_b]]
    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    assert result.z**2 == pytest.approx(chi2)
    assert result.p_value == pytest.approx(p_value)
    assert result.z > 0 and result.difference == pytest.approx(41 / 600 - 120 / 2_400)


def test_the_interval_is_newcombes_from_scipys_wilson_intervals_and_covers_the_truth():
    result = abtest.two_proportion_test(51, 385, 0, 28, confidence=0.90)
    wilson_a = stats.binomtest(51, 385).proportion_ci(confidence_level=0.90, method="wilson")
    wilson_b = stats.binomtest(0, 28).proportion_ci(confidence_level=0.90, method="wilson")
    p_a, p_b = 51 / 385, 0.0
    low = p_b - p_a - np.hypot(p_b - wilson_b.low, wilson_a.high - p_a)
    high = p_b - p_a + np.hypot(wilson_b.high - p_b, p_a - wilson_a.low)
    assert (result.low, result.high) == pytest.approx((low, high))
    assert result.low < -p_a  # 0 of 28 is not a certainty: the interval reaches beyond -p_a
    # coverage by simulation: 95% intervals cover the true difference about 95% of the time
    rng = np.random.default_rng(0)
    x_a, x_b = rng.binomial(2_000, 0.10, 2_000), rng.binomial(2_000, 0.12, 2_000)
    covered = np.mean(
        [
            (r := abtest.two_proportion_test(a, 2_000, b, 2_000)).low <= 0.02 <= r.high
            for a, b in zip(x_a, x_b)
        ]
    )
    assert 0.935 <= covered <= 0.965


def test_the_decision_follows_the_interval_not_the_point_estimate():
    assert abtest.two_proportion_test(50, 1_000, 56, 1_000).decision() == abtest.DECISIONS[1]
    assert abtest.two_proportion_test(50, 1_000, 90, 1_000).decision() == abtest.DECISIONS[0]
    assert abtest.two_proportion_test(90, 1_000, 50, 1_000).decision() == abtest.DECISIONS[2]


def test_sample_size_equal_arms_matches_the_textbook_formula():
    p_a, p_b, alpha, target = 0.10, 0.15, 0.05, 0.80
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(target)
    pooled = (p_a + p_b) / 2
    n = (
        z_a * np.sqrt(2 * pooled * (1 - pooled)) + z_b * np.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))
    ) ** 2 / (p_b - p_a) ** 2
    assert abtest.sample_size(p_a, p_b, alpha=alpha, power=target) == (int(np.ceil(n)),) * 2


def test_sample_size_reaches_its_power_and_one_fewer_does_not_and_simulation_agrees():
    p_a, p_b, ratio = 0.05, 0.08, 1 / 9  # a 90/10 split
    n_a, n_b = abtest.sample_size(p_a, p_b, ratio=ratio)
    assert n_b == int(np.ceil(n_a * ratio)) and n_a > 8 * n_b
    assert abtest.power(p_a, p_b, n_a, n_b) >= 0.80 > abtest.power(p_a, p_b, n_a - 40, n_b - 5)
    rng = np.random.default_rng(1)
    x_a, x_b = rng.binomial(n_a, p_a, 3_000), rng.binomial(n_b, p_b, 3_000)
    detected = np.mean(
        [abtest.two_proportion_test(a, n_a, b, n_b).p_value < 0.05 for a, b in zip(x_a, x_b)]
    )
    assert detected == pytest.approx(0.80, abs=0.035)


def test_bad_rates_and_counts_are_named():
    with pytest.raises(ValueError, match="arm B: 7 successes of 5"):
        abtest.two_proportion_test(1, 10, 7, 5)
    with pytest.raises(ValueError, match="no difference to detect"):
        abtest.sample_size(0.1, 0.1)
    with pytest.raises(ValueError, match="1/9 for a 90/10 split"):
        abtest.sample_size(0.1, 0.2, ratio=0)


def test_peeking_inflates_false_positives_and_the_fixed_horizon_does_not():
    result = abtest.simulate_peeking(p=0.05, n_per_arm=2_000, looks=20, simulations=4_000)
    assert result.p_values.shape == (4_000, 20) and result.looks[-1] == 2_000
    assert abs(result.fixed_horizon_rate - 0.05) < 0.015
    assert result.peeking_rate > 0.15
    curve = result.rate_by_looks()
    assert curve[0] == pytest.approx((result.p_values[:, 0] < 0.05).mean())
    assert np.all(np.diff(curve) >= 0) and curve[-1] == pytest.approx(result.peeking_rate)
    assert "stopped at the first p < 0.05" in abtest.check_peeking(result)
    # a simulation seeded the same way gives the same figures
    again = abtest.simulate_peeking(p=0.05, n_per_arm=2_000, looks=20, simulations=4_000)
    assert np.array_equal(again.p_values, result.p_values)


def test_check_peeking_catches_a_last_look_only_and_a_real_difference():
    result = abtest.simulate_peeking(looks=20, simulations=2_000)
    one_look = abtest.PeekingResult(result.looks[-1:], result.p_values[:, -1:], 0.05)
    with pytest.raises(AssertionError, match="stopped at the first look with p < alpha"):
        abtest.check_peeking(one_look)
    real = abtest.PeekingResult(result.looks, result.p_values / 10, 0.05)  # not an A/A test
    with pytest.raises(AssertionError, match="simulate A/A tests"):
        abtest.check_peeking(real)


COUNTS = {"champion": (90, 900), "challenger": (14, 100)}
SHADOW_FLAGS = 80  # the challenger's decisions on the champion's 900 requests, in shadow


def test_check_readout_accepts_the_served_counts_and_the_interval_decision():
    result = abtest.two_proportion_test(90, 900, 14, 100)
    assert "readout:" in abtest.check_readout(result, result.decision(), COUNTS)


@pytest.mark.parametrize(
    ("result", "decision", "message"),
    [
        # the shadow rows counted in the challenger's arm
        (
            abtest.two_proportion_test(90, 900, 14 + SHADOW_FLAGS, 1_000),
            abtest.DECISIONS[1],
            "count the rows with role == 'served' only",
        ),
        # champion and challenger swapped
        (abtest.two_proportion_test(14, 100, 90, 900), abtest.DECISIONS[1], "arms are swapped"),
        # "the challenger flags more": the point estimates, whatever the interval says
        (abtest.two_proportion_test(90, 900, 14, 100), abtest.DECISIONS[0], "not a finding"),
    ],
    ids=["shadow_counted", "arms_swapped", "point_estimate"],
)
def test_check_readout_catches_the_classic_mistakes(result, decision, message):
    with pytest.raises(AssertionError, match=message):
        abtest.check_readout(result, decision, COUNTS)


# --------------------------------------------------------------------------- the split


def test_the_bucket_is_sha256_of_salt_and_customer_and_stable():
    digest = hashlib.sha256(b"fraud-ab-1:C000042").digest()
    assert router.bucket_of("C000042") == int.from_bytes(digest[:8], "big") % 100
    customers = [f"C{i:06d}" for i in range(20_000)]
    arms = [router.arm_of(c) for c in customers]
    assert arms == [router.arm_of(c) for c in customers]
    assert abs(arms.count("challenger") / len(arms) - 0.10) < 0.01
    other = [router.arm_of(c, salt="another-test") for c in customers]
    assert sum(a != b for a, b in zip(arms, other)) > 1_000  # a new salt reshuffles
    assert {router.arm_of(c, challenger_share=0.0) for c in customers} == {"champion"}


def _random_arm(customer_id):
    return "challenger" if random.random() < 0.10 else "champion"


def _builtin_hash_arm(customer_id):
    return "challenger" if hash(customer_id) % 100 < 10 else "champion"


def _inverted_arm(customer_id):
    bucket = int(hashlib.sha256(customer_id.encode()).hexdigest(), 16) % 100
    return "challenger" if bucket >= 10 else "champion"


def _sha_arm(customer_id):
    bucket = int(hashlib.sha256(customer_id.encode()).hexdigest(), 16) % 100
    return "challenger" if bucket < 10 else "champion"


CUSTOMERS = [f"C{i:06d}" for i in range(2_000)]


def test_check_assignment_accepts_any_stable_hash_split():
    assert "same arm on every call" in router.check_assignment(_sha_arm, CUSTOMERS)
    assert "fresh processes" in router.check_assignment(router.arm_of, CUSTOMERS)


@pytest.mark.parametrize(
    ("assign", "message"),
    [
        (_random_arm, "a random draw per request"),
        (_builtin_hash_arm, "salted per process"),
        (_inverted_arm, "which side of the cut"),
    ],
    ids=["random", "builtin_hash", "inverted"],
)
def test_check_assignment_catches_the_classic_mistakes(assign, message):
    with pytest.raises(AssertionError, match=message):
        router.check_assignment(assign, CUSTOMERS)


# --------------------------------------------------------------------------- requests


SPEC = serving.InputSpec(
    (("log_amount_usd", "double"), ("local_hour", "double"), ("channel", "string"))
)
GOOD = {"customer_id": "C1", "log_amount_usd": 3.2, "local_hour": 14, "channel": "online"}


def test_the_three_formats_parse_to_the_same_records():
    frame = pd.DataFrame([GOOD, {**GOOD, "customer_id": "C2", "local_hour": 2.5}])
    parsed = [
        router.parse_records(serving.request_body(frame, fmt).encode()) for fmt in serving.FORMATS
    ]
    assert parsed[0] == parsed[1] == parsed[2] == frame.to_dict(orient="records")
    columns = {"inputs": {k: [v, v] for k, v in GOOD.items()}}
    assert router.parse_records(json.dumps(columns).encode()) == [GOOD, GOOD]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b"  \n", "empty body"),
        (b'{"dataframe_records": [', "not valid JSON"),
        (b"[1, 2]", "exactly one of"),
        (b'{"records": []}', "exactly one of"),
        (b'{"dataframe_records": []}', "holds no record"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', "needs 1 values"),
        (b'{"inputs": {"a": [1], "b": [1, 2]}}', "same length"),
    ],
)
def test_bad_bodies_are_refused_with_a_message(body, message):
    with pytest.raises(router.BadRequest, match=message):
        router.parse_records(body)


def test_validation_names_the_column_and_the_type():
    router.validate([GOOD], SPEC)
    cases = [
        ({k: v for k, v in GOOD.items() if k != "channel"}, "'channel' \\(string\\) is missing"),
        ({**GOOD, "log_amount_usd": "a lot"}, "must be a number \\(double\\), got str"),
        ({**GOOD, "local_hour": None}, "'local_hour' \\(double\\) is null"),
        ({**GOOD, "channel": 5}, "'channel' must be string"),
        ({**GOOD, "local_hour": True}, "must be a number"),
        ({k: v for k, v in GOOD.items() if k != "customer_id"}, "customer_id is missing"),
        ("not a record", "must be a JSON object"),
    ]
    for record, message in cases:
        with pytest.raises(router.BadRequest, match=message):
            router.validate([record], SPEC)


def test_a_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "log.jsonl"
    line = {c: None for c, _ in router.INFERENCE_LOG_COLUMNS}
    line.update(request_id="r1", role="served", logged_at="2026-06-22T10:00:00+00:00", score=0.5)
    path.write_text(json.dumps(line) + '\n{"request_id": "r2", "ro', encoding="utf-8")
    frame = router.read_log_lines(path)
    assert list(frame["request_id"]) == ["r1"]
    assert str(frame["logged_at"].iloc[0]) == "2026-06-22 10:00:00"


# --------------------------------------------------------------------------- managed processes


def test_a_server_that_exits_is_reported_with_its_log(tmp_path):
    process = serving.ManagedProcess(
        "a broken server",
        [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"],
        port=9,
        ready_path="/ping",
        log_file=tmp_path / "broken.log",
    )
    with pytest.raises(serving.ServingError, match="exited with code 3(.|\n)*no model here"):
        process.start(timeout=30)
    assert not process.running


def test_a_server_that_never_answers_is_stopped_after_the_timeout(tmp_path):
    process = serving.ManagedProcess(
        "a silent server",
        [sys.executable, "-c", "import time; time.sleep(600)"],
        port=9,
        ready_path="/ping",
        log_file=tmp_path / "silent.log",
    )
    with pytest.raises(serving.ServingError, match="did not answer .* within 1 s"):
        process.start(timeout=1)
    assert not process.running


def test_serve_model_refuses_a_uri_that_is_not_a_model():
    with pytest.raises(ValueError, match="registry URI"):
        serving.serve_model("fraud_detector")


# --------------------------------------------------------------------------- real servers


def _fit(frame: pd.DataFrame, columns: list[str]) -> Pipeline:
    numeric = [c for c in columns if c != "channel"]
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    model = Pipeline([("features", pre), ("model", LogisticRegression(class_weight="balanced"))])
    return model.fit(frame[columns], frame["label"])


@pytest.fixture(scope="module")
def payments() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 600
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i % 240:05d}" for i in range(n)],
            "payment_id": [f"P{i:05d}" for i in range(n)],
            "log_amount_usd": np.round(rng.normal(4.0, 1.2, n), 4),
            "local_hour": rng.integers(0, 24, n).astype("float64"),
            "channel": rng.choice(["pos", "online", "atm"], n),
        }
    )
    signal = frame["log_amount_usd"] + (frame["channel"] == "online") + rng.normal(0, 1, n)
    return frame.assign(label=(signal > 5.5).astype(int))


@pytest.fixture(scope="module")
def models(tmp_path_factory, payments):
    lake = tmp_path_factory.mktemp("lake")
    tracking.configure(store=tracking.store_for(settings=settings(lake=lake, catalog="serving")))
    registry.delete_model(NAME)
    fitted = {}
    for alias, columns in (("champion", CHAMPION_COLUMNS), ("challenger", CHALLENGER_COLUMNS)):
        model = _fit(payments, columns)
        logged = tracking.log_training_run(
            model, alias, payments[columns], payments["label"], table="ml.t", table_version=0
        )
        registry.register(logged.model_uri, NAME, alias=alias, tags={registry.THRESHOLD_TAG: 0.5})
        fitted[alias] = model
    return fitted


@pytest.fixture(scope="module")
def servers(models, tmp_path_factory):
    """The champion's and the challenger's mlflow servers, started together, and the router."""
    logs = tmp_path_factory.mktemp("serving")
    champion = serving.ModelServer(
        registry.model_uri(NAME, "champion"), log_file=logs / "champion.log"
    )
    challenger = serving.ModelServer(
        registry.model_uri(NAME, "challenger"), log_file=logs / "challenger.log"
    )
    serving.start_all(champion, challenger)
    config = router.config_for(NAME, champion, challenger, log_path=logs / "inference.jsonl")
    front = router.Router(config)
    try:
        front.start()
        yield {"champion": champion, "challenger": challenger, "router": front}
    finally:
        for server in (front, champion, challenger):
            server.stop()


def test_the_endpoint_answers_every_format_with_the_models_probabilities(servers, models, payments):
    frame = payments[CHAMPION_COLUMNS].head(7)
    want = tracking.scores(models["champion"], frame)
    url = servers["champion"].url
    with requests.Session() as session:
        served = {fmt: serving.predict(url, frame, fmt, session=session) for fmt in serving.FORMATS}
    assert "7 rows scored identically" in serving.check_served_scores(want, served)


def test_check_served_scores_catches_classes_and_a_wrong_column(models, payments):
    frame = payments[CHAMPION_COLUMNS].head(20)
    want = tracking.scores(models["champion"], frame)
    classes = (want >= 0.5).astype(float)
    with pytest.raises(AssertionError, match="pyfunc_predict_fn='predict_proba'"):
        serving.check_served_scores(want, dict.fromkeys(serving.FORMATS, classes))
    with pytest.raises(AssertionError, match="take column 1 of predict_proba"):
        serving.check_served_scores(want, dict.fromkeys(serving.FORMATS, 1 - want))


def test_mlflow_refuses_most_bad_inputs_but_scores_a_number_as_a_category(servers, payments):
    spec = serving.InputSpec((("log_amount_usd", "double"), ("channel", "string")))
    record = payments[CHAMPION_COLUMNS].iloc[0].to_dict()
    table = serving.probe_bad_inputs(servers["champion"].url, record, spec).set_index("case")
    assert table["alive"].all()
    assert table.loc["number in text column 'channel'", "status"] == 200  # silently scored
    refused = table.drop(index="number in text column 'channel'")
    assert refused["status"].between(400, 499).all(), refused
    with pytest.raises(AssertionError, match="number in text column"):
        serving.check_refusals(table.reset_index())


def test_the_router_refuses_every_bad_input_with_a_400_and_stays_up(servers, payments):
    front = servers["router"]
    record = payments[["customer_id", *CHALLENGER_COLUMNS]].iloc[0].to_dict()
    table = serving.probe_bad_inputs(front.url, record, front.config.spec)
    assert "bad requests refused with a 4xx" in serving.check_refusals(table)
    assert set(table["status"]) == {400}
    no_customer = json.dumps({"dataframe_records": [{k: record[k] for k in CHALLENGER_COLUMNS}]})
    response = serving.invoke(front.invocations_url, no_customer)
    assert response.status_code == 400 and "customer_id is missing" in response.json()["message"]


def test_the_router_splits_by_customer_and_never_returns_the_shadow(servers, models, payments):
    front = servers["router"]
    frame = payments[["customer_id", "payment_id", *CHALLENGER_COLUMNS]]
    answers = []
    with requests.Session() as session:
        for i, record in enumerate(frame.head(300).to_dict(orient="records")):
            body = json.dumps({"dataframe_records": [{**record, "request_id": f"single-{i}"}]})
            response = serving.invoke(front.invocations_url, body, session=session)
            assert response.status_code == 200, response.text
            answers.extend(response.json()["predictions"])
        # one batch request mixing both arms: answers in the order of the records
        batch = frame.iloc[300:400].assign(request_id=[f"batch-{i}" for i in range(100)])
        response = serving.invoke(
            front.invocations_url, serving.request_body(batch, "dataframe_split"), session=session
        )
        batch_answers = response.json()["predictions"]
    assert [a["request_id"] for a in batch_answers] == list(batch["request_id"])
    answers.extend(batch_answers)
    stats_ = front.wait_for_shadow()
    assert stats_["shadow_pending"] == 0 and stats_["shadow_errors"] == 0
    arms = {a["request_id"]: a["model_alias"] for a in answers}
    customers = pd.concat([frame.head(300), frame.iloc[300:400]])["customer_id"]
    assert list(arms.values()) == [router.arm_of(c) for c in customers]
    # each answer is what its arm's model says in process
    for alias in ("champion", "challenger"):
        columns = CHAMPION_COLUMNS if alias == "champion" else CHALLENGER_COLUMNS
        mask = np.array([a["model_alias"] == alias for a in answers])
        rows = pd.concat([frame.head(300), frame.iloc[300:400]])[mask]
        want = tracking.scores(models[alias], rows[columns])
        got = np.array([a["score"] for a, m in zip(answers, mask) if m])
        np.testing.assert_allclose(got, want, rtol=1e-9)
    log = router.read_log_lines(front.config.log_path)
    assert "none the shadow's" in router.check_shadow_not_returned(answers, log)
    assert "each served by one arm" in router.check_split(log)
    pairs = router.shadow_pairs(log)
    assert len(pairs) == sum(a["model_alias"] == "champion" for a in answers)
    assert "paired with their shadow score" in router.check_shadow_pairs(pairs, log)
    mirrored = log[log["role"] == "shadow"]
    assert set(mirrored["model_alias"]) == {"challenger"}
    assert (log["source"] == "serving").all() and log["latency_ms"].gt(0).all()
    # a shadow answer returned to the client is caught
    shadow_scores = mirrored.set_index("request_id")["score"]
    leaked = [
        {**a, "score": shadow_scores[a["request_id"]]}
        for a in answers
        if a["request_id"] in shadow_scores.index
    ]
    with pytest.raises(AssertionError, match="never reach the client"):
        router.check_shadow_not_returned(leaked, log)


def test_check_shadow_pairs_catches_a_join_on_the_customer_and_no_role_filter():
    log = pd.DataFrame(
        {
            "request_id": ["r1", "r1", "r2", "r2", "r3"],
            "customer_id": ["C1", "C1", "C1", "C1", "C9"],
            "model_alias": ["champion", "challenger", "champion", "challenger", "challenger"],
            "role": ["served", "shadow", "served", "shadow", "served"],
            "score": [0.1, 0.7, 0.2, 0.3, 0.9],
            "flagged": [False, True, False, False, True],
        }
    )
    assert "2 requests paired" in router.check_shadow_pairs(router.shadow_pairs(log), log)
    champion = log[(log["role"] == "served") & (log["model_alias"] == "champion")]
    shadow = log[log["role"] == "shadow"]
    on_customer = champion.merge(
        shadow, on="customer_id", suffixes=("_champion", "_challenger")
    ).rename(columns={"request_id_champion": "request_id"})
    with pytest.raises(AssertionError, match="join on request_id"):
        router.check_shadow_pairs(on_customer, log)
    by_alias = log[log["model_alias"] == "challenger"]  # the challenger-served r3 included
    no_role = champion.merge(
        by_alias, on="request_id", how="outer", suffixes=("_champion", "_challenger")
    )
    with pytest.raises(AssertionError, match="role == 'shadow'"):
        router.check_shadow_pairs(no_role, log)


def test_the_split_check_catches_a_customer_served_by_both_arms():
    log = pd.DataFrame(
        {
            "customer_id": ["C1", "C1", "C2"],
            "model_alias": ["champion", "challenger", "champion"],
            "role": ["served"] * 3,
        }
    )
    with pytest.raises(AssertionError, match="1 customers were served by both models"):
        router.check_split(log)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake_log")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "ml_serving_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


def test_the_inference_log_loads_into_delta_once(servers, spark, tmp_path):
    path = tmp_path / "log.jsonl"
    lines = router.read_log_lines(servers["router"].config.log_path)
    text = open(servers["router"].config.log_path, encoding="utf-8").read()
    path.write_text(text + text.splitlines()[0] + "\n", encoding="utf-8")  # a line logged twice
    table = "ml.inference_log_ci"
    n = len(lines)
    first = router.load_inference_log(spark, path, table)
    assert first == {"lines": n + 1, "keys": n, "inserted": n}
    again = router.load_inference_log(spark, path, table)
    assert again == {"lines": n + 1, "keys": n, "inserted": 0}
    loaded = spark.table(table)
    assert loaded.columns == [c for c, _ in router.INFERENCE_LOG_COLUMNS]
    assert loaded.select("request_id", "role").distinct().count() == loaded.count() == n


# --------------------------------------------------------------------------- the lesson's mistakes


MISTAKES = json.loads(
    (
        __import__("pathlib").Path(__file__).resolve().parents[1]
        / "solutions/05_ml/07_real_time_serving.mistakes.json"
    ).read_text(encoding="utf-8")
)


def lesson_log(seed: int = 3) -> pd.DataFrame:
    """A log like the lesson's: customers with several requests each, served by their arm,
    the champion's requests mirrored in shadow."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(400):
        customer = f"C{i % 120:04d}"
        alias = router.arm_of(customer)
        score = rng.random()
        rows.append((f"07-{i}", customer, alias, "served", score, score >= 0.8))
        if alias == "champion":
            shadow = rng.random()
            rows.append((f"07-{i}", customer, "challenger", "shadow", shadow, shadow >= 0.9))
    columns = ["request_id", "customer_id", "model_alias", "role", "score", "flagged"]
    return pd.DataFrame(rows, columns=columns).assign(model_version=1)


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m["name"] for m in MISTAKES])
def test_every_catalogued_mistake_is_caught_by_its_check(mistake):
    log_pdf = lesson_log()
    namespace = {
        "__name__": "__main__",
        "challenger_share": 0.10,
        "confidence": 0.95,
        "log_pdf": log_pdf,
        "abtest": abtest,
    }
    exec(mistake["source"], namespace)
    with pytest.raises(AssertionError, match=re.escape(mistake["caught_by"])):
        if mistake["task_cell"] == "task-arm-of":
            router.check_assignment(namespace["arm_of"], CUSTOMERS)
        elif mistake["task_cell"] == "task-shadow-pairs":
            router.check_shadow_pairs(namespace["pairs"], log_pdf)
        else:
            counts = {
                alias: (int(row.flagged), int(row.requests))
                for alias, row in router.split_summary(log_pdf).iterrows()
            }
            abtest.check_readout(namespace["readout"], namespace["decision"], counts)


def test_the_router_logs_the_columns_the_scoring_stream_creates():
    from lakehouse.ml import scoring

    created = [(f.name, f.dataType.simpleString()) for f in scoring.INFERENCE_LOG_SCHEMA.fields]
    logged = [(f.name, f.dataType.simpleString()) for f in router.inference_log_schema().fields]
    assert logged == created
