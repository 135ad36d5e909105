"""The payment event simulator: deterministic files, defects and scenarios that are really in
them (recounted from the files, not from the report), pacing, idempotent landing, CLI errors."""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from lakehouse.datagen.population import build_customers, build_merchants
from lakehouse.datagen.scales import get_scale
from lakehouse.streaming import simulator
from lakehouse.streaming.simulator import (
    SimulationReport,
    SimulatorConfig,
    amount_usd,
    ci_config,
    expected_events,
    find_patterns,
    june_average_usd,
    kafka_reachable,
    write_files,
)

MINUTE_MS = 60_000
ID = re.compile(r'^\{"transaction_id":"(TX\d{10})"')


@pytest.fixture(scope="module")
def ci(tmp_path_factory):
    landing = tmp_path_factory.mktemp("ci") / "landing"
    return write_files(landing, ci_config())


@pytest.fixture(scope="module")
def lines(ci):
    """(file index, line text) in delivery order, read straight from the files."""
    out = []
    for f, path in enumerate(sorted(Path(ci.landing).glob("events_*.json"))):
        out.extend((f, line) for line in path.read_text().splitlines())
    return out


def _ms(text: str) -> int:
    return simulator._parse_ts(text, "ts")


def _parsed(line: str) -> dict | None:
    try:
        return json.loads(line)
    except ValueError:
        return None


# --------------------------------------------------------------------------- determinism


def test_same_seed_writes_byte_identical_files(ci, tmp_path):
    again = write_files(tmp_path / "again", ci_config())
    assert again.file_names == ci.file_names
    for a, b in zip(ci.paths(), again.paths()):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert again.digest == ci.digest


def test_a_different_seed_writes_a_different_stream(ci, tmp_path):
    other = write_files(tmp_path / "other", ci_config(seed=7))
    assert other.digest != ci.digest
    assert other.paths()[0].read_bytes() != ci.paths()[0].read_bytes()


def test_ci_stream_shape(ci, lines):
    assert (ci.files, ci.events) == (20, 4_000)
    assert ci.lines == len(lines) == ci.events + len(ci.defects["duplicates"])
    assert [p.name for p in sorted(Path(ci.landing).iterdir())] == [
        "_simulation.json",
        *[f"events_{i:04d}.json" for i in range(1, 21)],
    ], "only complete files and the report: no temporary file left behind"
    first = _parsed(lines[0][1])
    assert first["event_ts"].startswith("2026-07-01T00:0")
    assert list(first) == [c.name for c in simulator.payments.TRANSACTIONS.columns][:-1]
    assert SimulationReport.load(ci.landing).to_dict() == ci.to_dict()


# --------------------------------------------------------------------------- defects


def test_invalid_lines_are_exactly_the_recorded_ones(ci, lines):
    malformed, nulls, negative = set(), set(), set()
    for _, line in lines:
        record = _parsed(line)
        if record is None:
            malformed.add(ID.match(line).group(1))
            continue
        try:
            amount = Decimal(record["amount"]) if record["amount"] is not None else None
        except ArithmeticError:
            malformed.add(record["transaction_id"])
            continue
        if any(record[c] is None for c in simulator.REQUIRED):
            nulls.add(record["transaction_id"])
        elif amount < 0:
            negative.add(record["transaction_id"])
    assert malformed == set(ci.defects["malformed_rows"]) and malformed
    assert nulls == set(ci.defects["null_required"]) and nulls
    assert negative == set(ci.defects["negative_amounts"]) and negative
    assert {k: len(v) for k, v in ci.defects.items()} == ci.counts()


def test_duplicates_are_identical_lines_within_two_files(ci, lines):
    first_file: dict[str, int] = {}
    copies = []
    for f, line in lines:
        if line in first_file:
            copies.append(ID.match(line).group(1))
            assert 0 <= f - first_file[line] <= 2, "a redelivery arrives within the next 2 files"
        else:
            first_file[line] = f
    assert sorted(copies) == sorted(ci.defects["duplicates"]) and copies
    ids = [ID.match(line).group(1) for _, line in lines]
    assert len(set(ids)) == ci.events, "redeliveries repeat whole lines, never new ids"


def test_out_of_order_and_late_events_lag_the_running_max(ci, lines):
    running, seen = None, set()
    ooo, late = set(), set()
    for _, line in lines:
        record = _parsed(line)
        if record is None or line in seen:
            continue
        seen.add(line)
        event = _ms(record["event_ts"])
        if running is not None:
            lag = running - event
            if MINUTE_MS <= lag <= 8 * MINUTE_MS:
                ooo.add(record["transaction_id"])
            elif 15 * MINUTE_MS <= lag <= 45 * MINUTE_MS:
                late.add(record["transaction_id"])
            else:
                assert lag <= 0, f"{record['transaction_id']} is {lag} ms behind: no class"
            assert _ms(record["ingest_ts"]) >= event, "an event never arrives before it happened"
        running = event if running is None else max(running, event)
    assert ooo == set(ci.defects["out_of_order"]) and ooo
    assert late == set(ci.defects["late_events"]) and late


def test_schema_change_only_in_the_second_half(ci, lines):
    with_column = set()
    for f, line in lines:
        record = _parsed(line)
        if record is not None:
            assert ("device_fingerprint" in record) == (f >= 10), f"file {f + 1}"
        if f >= 10:  # redeliveries never cross the change: every id here is first seen here
            with_column.add(ID.match(line).group(1))
    assert with_column == set(ci.defects["schema_change"])
    assert ci.schema_change_files == [f"events_{i:04d}.json" for i in range(11, 21)]


# --------------------------------------------------------------------------- the truth


def test_expected_events_drop_exactly_the_invalid_lines(ci, lines):
    events = expected_events(ci)
    invalid = {
        t for d in simulator.INVALID_DEFECTS for t in ci.defects[d]
    }  # malformed, null, negative
    all_ids = {ID.match(line).group(1) for _, line in lines}
    assert [e["transaction_id"] for e in events] == sorted(
        {e["transaction_id"] for e in events}, key=[e["transaction_id"] for e in events].index
    )
    assert {e["transaction_id"] for e in events} == all_ids - invalid
    assert len(events) == ci.events - len(invalid) == 3_952
    first = {}
    for _, line in lines:
        first.setdefault(ID.match(line).group(1), line)
    assert all(json.loads(first[e["transaction_id"]]) == e for e in events[:200])
    assert expected_events(ci.landing) == events, "from the landing folder too"


def test_ids_are_real_crm_customers_and_merchants(ci):
    scale = get_scale("tiny")
    customers = set(build_customers(42, scale).ids)
    merchants = set(build_merchants(42, scale).ids)
    events = expected_events(ci)
    assert {e["customer_id"] for e in events} <= customers
    assert {e["merchant_id"] for e in events} <= merchants
    assert len({e["customer_id"] for e in events}) > 150


def test_scenarios_are_in_the_data_and_nothing_else_is(ci):
    events = expected_events(ci)
    averages = june_average_usd("tiny", 42)
    by_id = {e["transaction_id"]: e for e in events}
    assert ci.scenario_counts() == dict.fromkeys(simulator.SCENARIOS, 2)
    truth = {(s["kind"], s["customer_id"], tuple(s["transaction_ids"])) for s in ci.scenarios}
    found = find_patterns(events, averages)
    also = {
        (h["kind"], h["customer_id"], tuple(h["transaction_ids"]))
        for h in found
        if h["kind"] == "amount_anomaly"
        and any(
            set(h["transaction_ids"]) <= set(s["transaction_ids"]) and "amount_anomaly" in s["also"]
            for s in ci.scenarios
        )
    }
    assert {(h["kind"], h["customer_id"], tuple(h["transaction_ids"])) for h in found} == (
        truth | also
    )
    for s in ci.scenarios:  # each definition, rechecked by hand on the events
        rows = [by_id[t] for t in s["transaction_ids"]]
        assert {r["customer_id"] for r in rows} == {s["customer_id"]}
        times = sorted(_ms(r["event_ts"]) for r in rows)
        span = times[-1] - times[0]
        usd = [amount_usd(r["amount"], r["currency"]) for r in rows]
        if s["kind"] == "structuring":
            assert 3 <= len(rows) <= 5 and span < 10 * MINUTE_MS
            assert all(Decimal(9000) <= u < Decimal(10000) for u in usd)
        elif s["kind"] == "rapid_fire":
            assert len(rows) >= 6 and span < MINUTE_MS
        elif s["kind"] == "cash_velocity":
            assert len(rows) >= 3 and span < 10 * MINUTE_MS
            assert {r["channel"] for r in rows} == {"atm"}
        elif s["kind"] == "geo_spread":
            assert len({r["country"] for r in rows}) >= 3 and span < 10 * MINUTE_MS
        else:
            assert len(rows) == 1 and usd[0] >= 10 * averages[s["customer_id"]]
        assert s["start"] == simulator.iso_ms([times[0]])[0]


def test_find_patterns_catches_a_burst_and_ignores_a_slow_run():
    def event(i, second, channel="online", country="US"):
        ts = simulator.iso_ms([simulator._parse_ts("2026-07-01T00:00:00Z", "t") + second * 1000])
        return {
            "transaction_id": f"TX{i:010d}",
            "customer_id": "C000001",
            "event_ts": ts[0],
            "amount": "10.00",
            "currency": "USD",
            "channel": channel,
            "country": country,
        }

    burst = [event(i, i * 5) for i in range(6)]
    assert [h["kind"] for h in find_patterns(burst, {})] == ["rapid_fire"]
    slow = [event(i, i * 15) for i in range(6)]  # 75 s from first to last
    assert find_patterns(slow, {}) == []
    trips = [event(1, 0, country="US"), event(2, 100, country="GB"), event(3, 700, country="FR")]
    assert find_patterns(trips, {}) == [], "the third country comes 11:40 after the first"
    trips[2] = event(3, 500, country="FR")
    assert [h["kind"] for h in find_patterns(trips, {})] == ["geo_spread"]
    assert [h["kind"] for h in find_patterns(burst[:1], {"C000001": Decimal("1.00")})] == [
        "amount_anomaly"
    ]


# --------------------------------------------------------------------------- writing


def test_rate_paces_the_files_in_wall_time(tmp_path):
    config = SimulatorConfig(events=1_000, files=5, span_minutes=20, scenarios=False)
    started = time.monotonic()
    report = write_files(tmp_path / "paced", config, rate=2_000)
    assert time.monotonic() - started >= 0.45, "1,000 events at 2,000/s take half a second"
    assert report.events == 1_000


def test_wall_clock_stamps_now(tmp_path):
    config = SimulatorConfig(events=500, files=2, span_minutes=20, scenarios=False)
    before = int(time.time() * 1000)
    report = write_files(tmp_path / "live", config, clock="wall")
    after = int(time.time() * 1000)
    records = [r for r in map(_parsed, simulator.read_lines(report)) if r]
    ingests = [_ms(r["ingest_ts"]) for r in records]
    assert before - 10_000 <= min(ingests) and max(ingests) <= after
    assert report.clock == "wall"


def test_ensure_landing_writes_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("LAKEHOUSE_CATALOG", "sim_tests")
    from lakehouse import streaming

    spark = object()  # only the lake settings are read: the environment's
    first = simulator.ensure_landing(spark)
    landing = Path(streaming.landing(spark))
    assert Path(first.landing) == landing and first.files == 20
    stamp = (landing / "events_0001.json").stat().st_mtime_ns
    again = simulator.ensure_landing(spark)
    assert again.digest == first.digest
    assert (landing / "events_0001.json").stat().st_mtime_ns == stamp, "nothing rewritten"
    (landing / "events_0003.json").write_text("{}\n")  # a damaged file: rewritten
    repaired = simulator.ensure_landing(spark)
    assert (landing / "events_0003.json").read_bytes() == first.paths()[2].read_bytes()
    assert repaired.digest == first.digest
    other = simulator.ensure_landing(spark, seed=7)
    assert other.config == ci_config(seed=7) and other.digest != first.digest


def test_write_files_replaces_an_earlier_simulation(tmp_path):
    landing = tmp_path / "landing"
    write_files(landing, SimulatorConfig(events=600, files=6, span_minutes=20))
    (landing / "notes.txt").write_text("mine")
    write_files(landing, SimulatorConfig(events=300, files=3, span_minutes=20))
    assert sorted(p.name for p in landing.iterdir()) == [
        "_simulation.json",
        "events_0001.json",
        "events_0002.json",
        "events_0003.json",
        "notes.txt",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"events": 0}, "events=0"),
        ({"files": 0}, "files=0"),
        ({"events": 100}, "scenarios=False"),
        ({"late_rate": 0.5}, "late_rate"),
        ({"start": "July 1st"}, "start='July 1st'"),
        ({"scale": "huge"}, "unknown scale"),
        ({"schema_change_at": 2}, "schema_change_at"),
        ({"events": 60_000, "files": 60}, "too dense for the risk scenarios"),
    ],
)
def test_config_errors_name_the_option(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        replace(ci_config(), **changes)


def test_a_dense_throughput_stream_without_scenarios_is_written_quickly(tmp_path):
    # 15 events per customer and minute: only possible without scenarios, whose background
    # clearing would never converge at this density (it used to run for minutes).
    config = replace(ci_config(), events=20_000, files=4, span_minutes=5, scenarios=False)
    report = write_files(tmp_path / "landing", config)
    assert report.events == 20_000 and not report.scenarios


def test_write_files_errors(tmp_path):
    a_file = tmp_path / "file.json"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file: give a folder"):
        write_files(a_file, ci_config())
    with pytest.raises(ValueError, match="rate=-1"):
        write_files(tmp_path / "x", ci_config(), rate=-1)
    with pytest.raises(ValueError, match="clock='local'"):
        write_files(tmp_path / "x", ci_config(), clock="local")
    with pytest.raises(FileNotFoundError, match="write the stream first"):
        SimulationReport.load(tmp_path / "nothing")


def test_check_ci_stream_catches_a_wrong_stream(ci, tmp_path):
    simulator.check_ci_stream(ci, scale="tiny", seed=42)
    wrong = write_files(tmp_path / "wrong", replace(ci_config(), events=3_000, files=15))
    with pytest.raises(AssertionError, match="events=3000"):
        simulator.check_ci_stream(wrong, scale="tiny", seed=42)
    reseeded = write_files(tmp_path / "seed", ci_config(seed=1))
    with pytest.raises(AssertionError, match="seed=1"):
        simulator.check_ci_stream(reseeded, scale="tiny", seed=42)
    live = write_files(tmp_path / "live", ci_config(), clock="wall")
    with pytest.raises(AssertionError, match="clock"):
        simulator.check_ci_stream(live, scale="tiny", seed=42)


# --------------------------------------------------------------------------- command line


def test_cli_writes_and_summarises(tmp_path, capsys):
    landing = tmp_path / "cli"
    assert simulator.main(["--landing", str(landing), "--events", "600", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "events_0001.json: " in out and "wrote 3 files" in out and "600 distinct events" in out
    report = SimulationReport.load(landing)
    assert report.config.seed == 3 and report.config.files == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "0"], "--rate must be a positive number"),
        (["--rate", "-5"], "use --max-rate"),
        (["--rate", "fast"], "--rate needs a number"),
        (["--events", "50"], "--events: events=50 is too few"),
        (["--scale", "huge"], "--scale: unknown scale"),
        (["--rate", "10", "--max-rate"], "not allowed with argument"),
    ],
)
def test_cli_errors_name_the_option_and_the_fix(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        simulator.main(["--landing", str(tmp_path / "l"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_landing_that_is_a_file(tmp_path, capsys):
    a_file = tmp_path / "landing.json"
    a_file.write_text("x")
    with pytest.raises(SystemExit):
        simulator.main(["--landing", str(a_file)])
    assert "--landing" in capsys.readouterr().err


# --------------------------------------------------------------------------- Kafka


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kafka_reachable_is_false_fast_for_a_closed_port():
    started = time.monotonic()
    assert kafka_reachable(f"127.0.0.1:{_free_port()}", timeout=1.0) is False
    assert kafka_reachable("not a server") is False
    assert time.monotonic() - started < 3


def test_kafka_reachable_when_something_listens():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert kafka_reachable(f"127.0.0.1:{_free_port()},127.0.0.1:{port}")


def test_publishing_without_a_broker_points_to_the_start_and_the_files(ci):
    from lakehouse.services.kafka import KafkaError

    with pytest.raises(KafkaError, match="make kafka-start.*landing folder's files"):
        simulator.publish_once(ci, bootstrap_servers=f"127.0.0.1:{_free_port()}")


def test_a_message_is_keyed_by_its_customer():
    line = '{"transaction_id":"TX1","event_ts":"x","customer_id":"C000042","amount":"1.00"}'
    assert simulator.message_key(line) == b"C000042"
    assert simulator.message_key('{"transaction_id":"TX2","ev') is None
