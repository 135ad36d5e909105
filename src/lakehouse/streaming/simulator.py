"""A seeded payment event stream: JSON-lines files dropped into a landing folder, the way a
producer (a payment switch, a Kafka connector) delivers them.

The events are card payments of the course's CRM customers at its merchants (the same population
as the batch source ``payments.transactions``, so joins with ``silver.customers`` and
``silver.payments`` work), one JSON object per line with exactly that source's fields and
encodings. The stream starts the day after the batch history (2026-07-01T00:00:00Z) and carries
the defects a real stream carries, each recorded with its transaction ids in the report:

- ``duplicates``: a line delivered again, byte for byte (same ``ingest_ts``), in the same file or
  one of the next two;
- ``out_of_order``: ``event_ts`` 1 to 8 minutes behind the highest ``event_ts`` delivered before
  it (within every watermark of the course);
- ``late_events``: ``event_ts`` 15 to 45 minutes behind it while ``ingest_ts`` is current (beyond
  the 10-minute event-time watermark);
- ``malformed_rows`` (a line cut short, or an amount that is not a number), ``null_required``
  (customer_id, merchant_id, amount or currency null), ``negative_amounts``;
- ``schema_change``: the events delivered in the files that carry ``device_fingerprint`` (the
  second half of the stream).

It also injects the patterns a risk team looks for, with their truth in ``report.scenarios``
(kind, customer_id, transaction_ids, start, end): ``structuring`` (3 to 5 payments of 9,000 to
9,999.99 USD-equivalent within 10 minutes), ``rapid_fire`` (6 or more within 1 minute),
``cash_velocity`` (3 or more ATM withdrawals within 10 minutes), ``geo_spread`` (3 or more
countries within 10 minutes) and ``amount_anomaly`` (one payment of at least 10 times the
customer's June average). The background traffic is checked to hold none of them.

Example::

    from lakehouse.streaming import simulator
    report = simulator.write_files("/tmp/landing", simulator.ci_config())
    report.files, report.lines, report.events      # 20 files, 4,000 distinct events
    {k: len(v) for k, v in report.defects.items()}
    simulator.expected_events(report)              # the distinct valid events, in plain Python

From a shell: ``lakehouse-simulate --landing /tmp/landing --rate 1000 --clock wall``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path

import numpy as np

from lakehouse.datagen import _reference as ref
from lakehouse.datagen import payments
from lakehouse.datagen._common import (
    MINUTE_MS,
    RowPicker,
    defect_count,
    iso_ms,
    json_line,
    money,
    non_numeric,
    round_half_up,
    stream,
)
from lakehouse.datagen._context import Context
from lakehouse.datagen.population import LOCATION_COUNTRY, LOCATION_CURRENCY
from lakehouse.datagen.scales import get_scale

REPORT_NAME = "_simulation.json"  # Spark's file source skips names starting with _ or .
FILE_PATTERN = "events_{:04d}.json"
STREAM_START = "2026-07-01T00:00:00Z"  # the day after the batch payment history (June 2026)
ID_BASE = 5_000_000_000  # stream ids TX5000000001...: never a batch id (TX0000000001...)
DEFAULT_TOPIC = "payment_events"  # lakehouse.streaming.TOPIC

DEFECTS = (
    "duplicates",
    "out_of_order",
    "late_events",
    "malformed_rows",
    "null_required",
    "negative_amounts",
    "schema_change",
)
# Lines of these classes can never become valid events: what Silver quarantines.
INVALID_DEFECTS = ("malformed_rows", "null_required", "negative_amounts")
SCENARIOS = ("structuring", "rapid_fire", "cash_velocity", "geo_spread", "amount_anomaly")

# The patterns' definitions (lesson 05 detects them; the generator and its tests check them).
NEAR_THRESHOLD_USD = (Decimal("9000"), Decimal("10000"))  # [9,000, 10,000): under the report
PATTERN_WINDOW_MS = {
    "structuring": 10 * MINUTE_MS,
    "rapid_fire": 1 * MINUTE_MS,
    "cash_velocity": 10 * MINUTE_MS,
    "geo_spread": 10 * MINUTE_MS,
}
PATTERN_MINIMUM = {"structuring": 3, "rapid_fire": 6, "cash_velocity": 3, "geo_spread": 3}
ANOMALY_FACTOR = 10  # amount_usd >= 10 x the customer's June average
OUT_OF_ORDER_MINUTES = (1, 8)
LATE_MINUTES = (15, 45)

# Per scale: distinct events, files and minutes of event time of the CI stream.
DEFAULT_RATE = 1_000  # events per second of wall time for the command (a live stream)
MAX_SCENARIO_DENSITY = 1  # events per customer and minute that still leave scenarios exact
STREAM_SIZES = {
    "tiny": (4_000, 20, 60),
    "small": (40_000, 40, 120),
    "medium": (400_000, 80, 240),
    "large": (4_000_000, 200, 480),
}

REQUIRED = tuple(c.name for c in payments.TRANSACTIONS.columns if c.required)
NULLABLE_BY_DEFECT = payments.NULLABLE_BY_DEFECT
FX = {code: Decimal(str(rate)) for code, rate in ref.FX_PER_USD.items()}
CENT = Decimal("0.01")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SimulatorConfig:
    """What to simulate. The defaults are the CI stream at ``tiny`` (:func:`ci_config`).

    Rates are fractions of the distinct events; each event carries at most one defect class
    (``schema_change`` aside, which is a property of the file). Example::

        SimulatorConfig(seed=7, events=1_000, files=5, span_minutes=20)
    """

    seed: int = 42
    scale: str = "tiny"
    events: int = 4_000
    files: int = 20
    start: str = STREAM_START
    span_minutes: int = 60
    duplicate_rate: float = 0.02
    out_of_order_rate: float = 0.02
    late_rate: float = 0.01
    malformed_rate: float = 0.004
    null_rate: float = 0.005
    negative_rate: float = 0.003
    schema_change_at: float = 0.5
    scenarios: bool = True

    def __post_init__(self) -> None:
        get_scale(self.scale)  # a clear error for an unknown scale
        if not isinstance(self.events, int) or self.events < 1:
            raise ValueError(f"events={self.events!r}: give a positive number of events")
        if not isinstance(self.files, int) or not 1 <= self.files <= self.events:
            raise ValueError(
                f"files={self.files!r}: give between 1 and events ({self.events}) files"
            )
        if self.span_minutes <= 0 or self.events >= self.span_minutes * MINUTE_MS // 2:
            raise ValueError(
                f"span_minutes={self.span_minutes!r} is too short for {self.events} events: "
                "use a longer span (at most one event per 2 ms)"
            )
        _parse_ts(self.start, "start")
        for name in (
            "duplicate_rate",
            "out_of_order_rate",
            "late_rate",
            "malformed_rate",
            "null_rate",
            "negative_rate",
        ):
            value = getattr(self, name)
            if not 0 <= value < 0.2:
                raise ValueError(f"{name}={value!r}: use a fraction between 0 and 0.2")
        if not 0 <= self.schema_change_at <= 1:
            raise ValueError(
                f"schema_change_at={self.schema_change_at!r}: use a fraction of the files, "
                "0 (every file) to 1 (never)"
            )
        if self.scenarios and self.events < 200:
            raise ValueError(
                f"events={self.events} is too few to hide the risk scenarios in: use at least "
                "200 events, or scenarios=False"
            )
        most = MAX_SCENARIO_DENSITY * get_scale(self.scale).customers * self.span_minutes
        if self.scenarios and self.events > most:
            # Denser traffic is rapid fire for everyone: no scenario would stand out.
            raise ValueError(
                f"events={self.events} in span_minutes={self.span_minutes} is too dense for "
                f"the risk scenarios at scale {self.scale!r} (at most {most:,} events, one per "
                "customer and minute): lengthen span_minutes, or pass scenarios=False "
                "(--no-scenarios) for a throughput run"
            )

    @property
    def start_ms(self) -> int:
        return _parse_ts(self.start, "start")

    @property
    def schema_change_file(self) -> int:
        """Index (0-based) of the first file that carries ``device_fingerprint``."""
        return int(self.files * self.schema_change_at)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SimulatorConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def ci_config(scale: str = "tiny", seed: int = 42) -> SimulatorConfig:
    """The stream every streaming lesson (and CI) uses at ``scale``: at tiny, 4,000 distinct
    events in 20 files spanning 60 minutes from 2026-07-01T00:00:00Z."""
    name = get_scale(scale).name
    events, files, span = STREAM_SIZES.get(name, STREAM_SIZES["tiny"])
    return SimulatorConfig(seed=seed, scale=name, events=events, files=files, span_minutes=span)


# --------------------------------------------------------------------------- the report


@dataclass
class SimulationReport:
    """What a simulation wrote: counts, the defects and scenarios with their transaction ids.

    ``defects[kind]`` lists transaction ids (for ``duplicates``: one entry per extra line, so
    ``lines == events + len(defects["duplicates"])``). Saved as ``<landing>/_simulation.json``.
    """

    landing: str
    files: int
    lines: int
    events: int
    defects: dict[str, list[str]]
    scenarios: list[dict]
    config: SimulatorConfig
    clock: str = "simulated"
    file_names: list[str] = field(default_factory=list)
    file_lines: list[int] = field(default_factory=list)
    file_bytes: list[int] = field(default_factory=list)
    schema_change_files: list[str] = field(default_factory=list)
    digest: str = ""  # sha256 over every file's bytes, in file order

    def counts(self) -> dict[str, int]:
        """Lines (duplicates) or events per defect class."""
        return {kind: len(self.defects.get(kind, [])) for kind in DEFECTS}

    def scenario_counts(self) -> dict[str, int]:
        return {kind: sum(s["kind"] == kind for s in self.scenarios) for kind in SCENARIOS}

    def paths(self) -> list[Path]:
        return [Path(self.landing) / name for name in self.file_names]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["config"] = self.config.to_dict()
        return data

    def save(self) -> Path:
        target = Path(self.landing) / REPORT_NAME
        _atomic_write(target, json.dumps(self.to_dict(), indent=1).encode())
        return target

    @classmethod
    def load(cls, landing: str | os.PathLike) -> SimulationReport:
        """The report a simulation saved in ``landing``."""
        path = Path(landing) / REPORT_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no simulation report at {str(path)!r}: write the stream first with "
                "simulator.write_files(landing, config) or ensure_landing(spark)"
            )
        data = json.loads(path.read_text())
        data["config"] = SimulatorConfig.from_dict(data["config"])
        data["landing"] = str(Path(landing))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------- the plan


@dataclass
class _Plan:
    """The stream before it is written: events in event-time order, how each line is
    delivered, and the scenario truth. Built once per config (deterministic)."""

    records: list[dict]  # without timestamps; keys in the source's order
    devices: list[str | None]
    event_ms: list[int]
    ingest_ms: list[int]
    defect: list[str | None]
    cut: dict[int, float]  # malformed lines cut short: event index -> where (0..1)
    deliveries: list[list[tuple[int, bool]]]  # per file: (event index, is_copy)
    scenarios: list[dict]  # kind, customer_id, events (indices), also


class _StreamContext(Context):
    """The datagen context with random streams of its own: the same customers and merchants
    as the batch sources, different draws."""

    def rng(self, *key: str | int) -> np.random.Generator:
        return stream(self.seed, "streaming", *key)


@lru_cache(maxsize=4)
def _june_profiles(seed: int, scale: str) -> dict[str, tuple[int, Decimal]]:
    """customer_id -> (payments, average amount in USD) of the batch history (June 2026),
    regenerated in memory exactly as the batch generator draws it (before its defects)."""
    ctx = Context(out_dir=Path("."), scale=get_scale(scale), seed=seed)
    sc = ctx.scale
    per_file = np.diff(np.linspace(0, sc.payments, sc.payment_files + 1).astype("int64"))
    slot = (payments.WINDOW_END_MS - payments.PAYMENTS_START_MS) // sc.payment_files
    totals: dict[str, list] = defaultdict(lambda: [0, Decimal(0)])
    for f in range(sc.payment_files):
        lo = payments.PAYMENTS_START_MS + f * slot
        hi = payments.WINDOW_END_MS if f == sc.payment_files - 1 else lo + slot
        records = payments._events(ctx, f, int(per_file[f]), lo, hi, 1)[0]
        for r in records:
            t = totals[r["customer_id"]]
            t[0] += 1
            t[1] += amount_usd(r["amount"], r["currency"])
    return {c: (n, (s / n).quantize(CENT, ROUND_HALF_UP)) for c, (n, s) in totals.items()}


def amount_usd(amount: str, currency: str) -> Decimal:
    """``amount`` in ``currency`` converted to USD with the course's fixed FX table, rounded
    half-up to the cent (the same rule as ``gold.fact_payments`` and Silver)."""
    return (Decimal(amount) / FX[currency]).quantize(CENT, ROUND_HALF_UP)


def _amount_text(usd: float, currency: str) -> str:
    cents = int(round_half_up(np.array([usd * 100 * ref.FX_PER_USD[currency]]))[0])
    if currency == "JPY":
        cents = (cents + 50) // 100 * 100
    return money(max(cents, 1))


@lru_cache(maxsize=4)
def _plan(config: SimulatorConfig) -> _Plan:
    scale = get_scale(config.scale)
    ctx = _StreamContext(out_dir=Path("."), scale=scale, seed=config.seed)
    profiles = _june_profiles(config.seed, scale.name)
    start, span = config.start_ms, config.span_minutes * MINUTE_MS
    rng = ctx.rng("plan")

    # 1. scenario events (kept apart from every defect), then the background traffic around them
    scen_events, scen_truth = (
        _scenario_events(config, ctx, profiles, rng) if config.scenarios else ([], [])
    )
    n_background = config.events - len(scen_events)
    per_file = np.diff(np.linspace(0, n_background, config.files + 1).astype("int64"))
    slot = span // config.files
    rows: list[tuple[int, int, dict, str | None, int]] = []  # event, ingest, record, device, scen
    for f in range(config.files):
        lo = start + f * slot
        hi = start + span if f == config.files - 1 else lo + slot
        records, devices, event, ingest, _ = payments._events(ctx, f, int(per_file[f]), lo, hi, 1)
        for r, d, e, i in zip(records, devices, event.tolist(), ingest.tolist()):
            rows.append((e, i, r, d, -1))
    for e, i, r, d, s in scen_events:
        rows.append((e, i, r, d, s))
    rows.sort(key=lambda row: (row[0], row[4]))
    n = len(rows)
    event_ms = [row[0] for row in rows]
    # arrival order is event order for clean events: the producer's clock never goes back
    ingest_ms = np.maximum.accumulate(np.array([row[1] for row in rows])).tolist()
    records, devices = [], []
    for j, (_, _, r, d, _) in enumerate(rows):
        r = {k: v for k, v in r.items() if k not in ("transaction_id", "event_ts", "ingest_ts")}
        records.append({"transaction_id": f"TX{ID_BASE + j + 1:010d}", **r})
        devices.append(d)
    scenario_of = [row[4] for row in rows]
    for truth in scen_truth:
        truth["events"] = [j for j in range(n) if scenario_of[j] == truth["id"]]

    # 2. defects, on background events only, at most one class per event
    drng = ctx.rng("defects")
    picker = RowPicker(n, drng)
    picker.free[[j for j in range(n) if scenario_of[j] >= 0]] = False
    ev = np.array(event_ms)
    defect: list[str | None] = [None] * n
    ooo = picker.pick(
        defect_count(n, config.out_of_order_rate, 0), eligible=ev >= start + 10 * MINUTE_MS
    )
    late = picker.pick(
        defect_count(n, config.late_rate, 0),
        eligible=ev >= start + (LATE_MINUTES[1] + 1) * MINUTE_MS,
    )
    for j in ooo.tolist():
        defect[j] = "out_of_order"
    for j in late.tolist():
        defect[j] = "late_events"
    cut: dict[int, float] = {}
    for j in picker.pick(defect_count(n, config.malformed_rate, 0)).tolist():
        defect[j] = "malformed_rows"
        if drng.random() < 0.6:
            cut[j] = float(drng.random())
        else:
            records[j]["amount"] = non_numeric(records[j]["amount"], int(drng.integers(3)))
    for j in picker.pick(defect_count(n, config.null_rate, 0)).tolist():
        defect[j] = "null_required"
        records[j][NULLABLE_BY_DEFECT[int(drng.integers(len(NULLABLE_BY_DEFECT)))]] = None
    for j in picker.pick(defect_count(n, config.negative_rate, 0)).tolist():
        defect[j] = "negative_amounts"
        records[j]["amount"] = "-" + records[j]["amount"]

    # 3. delivery: files in arrival order, redeliveries within the next two files
    file_of = [j * config.files // n for j in range(n)]
    first_in_file = [0] * config.files
    for j in range(n - 1, -1, -1):
        first_in_file[file_of[j]] = j
    size_of = np.bincount(file_of, minlength=config.files).tolist()
    change = config.schema_change_file
    keys: list[tuple[int, float, int, bool]] = [(file_of[j], j, j, False) for j in range(n)]
    for j in picker.pick(defect_count(n, config.duplicate_rate, 0)).tolist():
        f = file_of[j]
        last = config.files - 1 if f >= change else min(config.files, change) - 1
        target = min(f + int(drng.integers(0, 3)), last)
        lo = j if target == f else first_in_file[target] - 0.5
        hi = first_in_file[target] + size_of[target] - 0.5
        keys.append((target, float(lo + (hi - lo) * (0.05 + 0.9 * drng.random())), j, True))
    keys.sort()
    deliveries: list[list[tuple[int, bool]]] = [[] for _ in range(config.files)]
    for f, _, j, copy in keys:
        deliveries[f].append((j, copy))

    # 4. event times of delayed events, against the running max of the lines before them
    delays = {j: OUT_OF_ORDER_MINUTES for j in ooo.tolist()}
    delays.update({j: LATE_MINUTES for j in late.tolist()})
    running = -1
    for f in range(config.files):
        for j, copy in deliveries[f]:
            if not copy and j in delays:
                lo_min, hi_min = delays[j]
                lag = int(drng.integers(lo_min * MINUTE_MS + 1_000, hi_min * MINUTE_MS - 1_000))
                event_ms[j] = running - lag
            running = max(running, event_ms[j])

    plan = _Plan(records, devices, event_ms, ingest_ms, defect, cut, deliveries, scen_truth)
    if config.scenarios:  # the scenarios' truth is exact only if the background has none
        _clear_accidental_patterns(plan, ctx, profiles, ctx.rng("clean"))
    return plan


def _scenario_events(config, ctx, profiles, rng):
    """The risk patterns, each for a customer of its own at a quiet moment of the stream."""
    cust, merchants = ctx.customers, ctx.merchants
    per_kind = max(1, round(config.events / 2_000))
    start, span = config.start_ms, config.span_minutes * MINUTE_MS
    idx = {cid: i for i, cid in enumerate(cust.ids)}
    # customers with a June history solid enough for an average (anomalies need >= 10 payments)
    steady = sorted(idx[c] for c, (n, avg) in profiles.items() if n >= 10 and avg >= 20)
    known = sorted(idx[c] for c, (n, avg) in profiles.items() if n >= 3 and avg >= 20)
    chosen = rng.permutation(len(known)).tolist()
    anomaly_pool = [c for c in rng.permutation(steady).tolist()]
    used: set[int] = set()
    events, truth = [], []

    def take(pool: list[int]) -> int:
        for c in pool:
            if c not in used:
                used.add(c)
                return c
        raise ValueError(
            f"scale {config.scale!r} has too few customers with a June history for "
            f"{per_kind} scenarios of each kind: use fewer events or scenarios=False"
        )

    def record(c, loc, channel, merchant, usd, fraud):
        cat = merchants.category[merchant]
        currency = LOCATION_CURRENCY[loc]
        jitter = rng.random(2) - 0.5
        status = "declined" if fraud and rng.random() < 0.3 else "approved"
        return {
            "transaction_id": None,
            "customer_id": cust.ids[c],
            "merchant_id": merchants.ids[merchant],
            "merchant_category": cat,
            "amount": _amount_text(usd, currency),
            "currency": currency,
            "card_network": payments.NETWORK_OF[int(cust.card_network[c])],
            "card_last4": cust.card_last4[c],
            "channel": channel,
            "country": LOCATION_COUNTRY[loc],
            "city": payments.CITY_OF[loc],
            "lat": round(ref.LOCATIONS[loc].lat + 0.1 * float(jitter[0]), 5),
            "lon": round(ref.LOCATIONS[loc].lon + 0.1 * float(jitter[1]), 5),
            "status": status,
            "decline_reason": "suspected_fraud" if status == "declined" else None,
            "fraud_score": round(float(0.7 + 0.29 * rng.random()) if fraud else 0.05, 4),
            "is_fraud": bool(fraud),
        }

    def pick_merchant(channel: str, loc: int) -> int:
        return int(merchants.pick(channel, np.array([loc]), rng)[0])

    sid = 0
    slots = rng.permutation(len(SCENARIOS) * per_kind).tolist()
    n_slots = len(slots)
    for k, kind in enumerate(SCENARIOS):
        for i in range(per_kind):
            # spread the scenarios over the stream, none in its first or last 12 minutes
            where = slots[k * per_kind + i]
            t0 = start + 12 * MINUTE_MS + (span - 24 * MINUTE_MS) * where // n_slots
            room = (span - 24 * MINUTE_MS) // n_slots - 10 * MINUTE_MS
            t0 += int(rng.integers(0, max(MINUTE_MS, room)))
            c = take(anomaly_pool if kind == "amount_anomaly" else [known[j] for j in chosen])
            avg = float(profiles[cust.ids[c]][1])
            home = int(cust.location[c])
            device = cust.device[c]
            batch = []
            if kind == "structuring":
                for dt in np.sort(rng.integers(0, 9 * MINUTE_MS, size=int(rng.integers(3, 6)))):
                    usd = float(rng.uniform(9_100, 9_900))
                    r = record(c, home, "pos", pick_merchant("pos", home), usd, False)
                    batch.append((t0 + int(dt), r, None))
            elif kind == "rapid_fire":
                stolen = f"{int(rng.integers(0, 2**63 - 1)):016x}"
                for dt in np.sort(rng.integers(0, 50_000, size=int(rng.integers(6, 9)))):
                    usd = float(rng.uniform(1, min(10, 3 * avg)))
                    r = record(c, home, "online", pick_merchant("online", home), usd, True)
                    batch.append((t0 + int(dt), r, stolen))
            elif kind == "cash_velocity":
                for dt in np.sort(rng.integers(0, 8 * MINUTE_MS, size=int(rng.integers(3, 5)))):
                    usd = 20.0 * int(rng.integers(1, max(2, int(3 * avg) // 20 + 1)))
                    r = record(c, home, "atm", pick_merchant("atm", home), usd, True)
                    batch.append((t0 + int(dt), r, None))
            elif kind == "geo_spread":
                countries = sorted({LOCATION_COUNTRY[i] for i in range(payments.N_LOCATIONS)})
                size = int(rng.integers(3, 5))
                picked = rng.choice(len(countries), size=size, replace=False).tolist()
                for dt, p in zip(np.sort(rng.integers(0, 8 * MINUTE_MS, size=size)), picked):
                    spots = [i for i, cc in enumerate(LOCATION_COUNTRY) if cc == countries[p]]
                    loc = int(spots[int(rng.integers(len(spots)))])
                    usd = float(rng.uniform(0.3, 2) * avg)
                    r = record(c, loc, "pos", pick_merchant("pos", loc), usd, True)
                    batch.append((t0 + int(dt), r, None))
            else:  # amount_anomaly: one payment of ~20x the June average
                usd = float(rng.uniform(20, 30) * avg)
                r = record(c, home, "online", pick_merchant("online", home), usd, True)
                batch.append((t0, r, device))
            for t, r, d in batch:
                ingest = t + int(rng.integers(50, 5_000))
                events.append((t, ingest, r, d if r["channel"] == "online" else None, sid))
            truth.append({"id": sid, "kind": kind, "customer_id": cust.ids[c]})
            sid += 1
    return events, truth


def _valid_view(plan: _Plan) -> list[int]:
    """Indices of the events that end up valid (what Silver holds)."""
    return [j for j, d in enumerate(plan.defect) if d not in INVALID_DEFECTS]


def _clear_accidental_patterns(plan: _Plan, ctx, profiles, rng) -> None:
    """Background traffic must hold no risk pattern of its own, so the scenario truth is exact.

    The stream is dense (at tiny, 4,000 payments an hour among 210 customers), so ordinary
    traffic would form ATM runs and trips abroad by chance. Each accidental pattern is broken
    with the smallest change to its background payments: an ATM withdrawal becomes a card
    payment at the same place, a payment abroad happens at home, an amount near the reporting
    threshold or far above the customer's average gets an ordinary amount, and a payment that
    touches a scenario's customer (or a burst) moves to another customer. Deterministic."""
    cust, merchants = ctx.customers, ctx.merchants
    scenario_events = {j: s for s in plan.scenarios for j in s["events"]}
    scenario_customers = {s["customer_id"] for s in plan.scenarios}
    others = [c for c in range(cust.size) if cust.ids[c] not in scenario_customers]
    home_of = {cid: int(cust.location[c]) for c, cid in enumerate(cust.ids)}
    location_of_city = {loc.city: i for i, loc in enumerate(ref.LOCATIONS)}
    averages = {c: avg for c, (_, avg) in profiles.items()}

    def ordinary_amount(j: int) -> None:
        r = plan.records[j]
        avg = averages.get(r["customer_id"])
        usd = float(avg) * float(rng.uniform(0.5, 3)) if avg else float(rng.uniform(5, 200))
        r["amount"] = _amount_text(min(usd, 8_000.0), r["currency"])

    def relocate(j: int, loc: int) -> None:
        r = plan.records[j]
        usd = float(amount_usd(r["amount"], r["currency"]))
        if r["channel"] != "online":
            m = int(merchants.pick(r["channel"], np.array([loc]), rng)[0])
            r["merchant_id"], r["merchant_category"] = merchants.ids[m], merchants.category[m]
        jitter = rng.random(2) - 0.5
        r.update(
            currency=LOCATION_CURRENCY[loc],
            amount=_amount_text(usd, LOCATION_CURRENCY[loc]),
            country=LOCATION_COUNTRY[loc],
            city=payments.CITY_OF[loc],
            lat=round(ref.LOCATIONS[loc].lat + 0.1 * float(jitter[0]), 5),
            lon=round(ref.LOCATIONS[loc].lon + 0.1 * float(jitter[1]), 5),
        )

    def to_card(j: int) -> None:
        r = plan.records[j]
        loc = location_of_city[r["city"]]
        m = int(merchants.pick("pos", np.array([loc]), rng)[0])
        r.update(channel="pos", merchant_id=merchants.ids[m])
        r["merchant_category"] = merchants.category[m]

    def reassign(j: int) -> None:
        c = others[int(rng.integers(len(others)))]
        r = plan.records[j]
        r["customer_id"] = cust.ids[c]
        r["card_network"] = payments.NETWORK_OF[int(cust.card_network[c])]
        r["card_last4"] = cust.card_last4[c]
        if plan.devices[j] is not None and not r["is_fraud"]:
            plan.devices[j] = cust.device[c]
        avg = averages.get(cust.ids[c])
        if avg and amount_usd(r["amount"], r["currency"]) >= 5 * avg:
            ordinary_amount(j)

    # amounts of background events: never more than 5x the customer's June average
    for j, r in enumerate(plan.records):
        if j in scenario_events or plan.defect[j] in INVALID_DEFECTS:
            continue
        avg = averages.get(r["customer_id"])
        if avg and amount_usd(r["amount"], r["currency"]) >= 5 * avg:
            ordinary_amount(j)
    for _ in range(100):
        events = [_event_view(plan, j) for j in _valid_view(plan)]
        changed = False
        for hit in find_patterns(events, averages):
            members = [int(t[2:]) - ID_BASE - 1 for t in hit["transaction_ids"]]
            background = [j for j in members if j not in scenario_events]
            if len(background) < len(members):  # a scenario's own payments are in the hit
                truth = scenario_events[next(j for j in members if j in scenario_events)]
                exact = hit["kind"] == truth["kind"] and set(members) == set(truth["events"])
                if exact or (hit["kind"] == "amount_anomaly" and not background):
                    continue  # the scenario itself, or its payment also being anomalous
                for j in background:
                    reassign(j)
            elif hit["kind"] == "amount_anomaly":
                ordinary_amount(background[0])
            elif hit["kind"] == "structuring":
                for j in background[2:]:
                    ordinary_amount(j)
            elif hit["kind"] == "cash_velocity":
                for j in background[2:]:
                    to_card(j)
            elif hit["kind"] == "geo_spread":
                home = home_of[hit["customer_id"]]
                for j in background:
                    if plan.records[j]["country"] != LOCATION_COUNTRY[home]:
                        relocate(j, home)
            else:  # rapid_fire
                for j in background[5:]:
                    reassign(j)
            changed = True
        if not changed:
            break
    else:  # pragma: no cover - a guard, never reached with the course's configs
        raise RuntimeError("could not clear accidental risk patterns from the background")
    found = find_patterns([_event_view(plan, j) for j in _valid_view(plan)], averages)
    for s in plan.scenarios:
        ids = {plan.records[j]["transaction_id"] for j in s["events"]}
        s["also"] = sorted(
            {h["kind"] for h in found if h["kind"] != s["kind"] and ids & set(h["transaction_ids"])}
        )


def _event_view(plan: _Plan, j: int) -> dict:
    r = plan.records[j]
    return {**r, "event_ms": plan.event_ms[j]}


# --------------------------------------------------------------------------- the patterns


def find_patterns(events: Iterable[dict], june_average_usd: dict[str, Decimal]) -> list[dict]:
    """Every risk pattern in ``events`` (dicts with the source's fields; ``event_ms`` or an
    ``event_ts`` string), by the definitions of :data:`PATTERN_WINDOW_MS`,
    :data:`PATTERN_MINIMUM` and :data:`ANOMALY_FACTOR`. A pattern is the union of the
    qualifying windows that share payments; returned sorted by (kind, customer_id, start) with
    kind, customer_id, transaction_ids, start and end (ISO strings). Plain Python: the
    independent truth the tests (and lesson 05's checks) compare a detector against."""
    by_customer: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for e in events:
        t = e["event_ms"] if "event_ms" in e else _parse_ts(e["event_ts"], "event_ts")
        by_customer[e["customer_id"]].append((t, e))
    found = []
    lo_near, hi_near = NEAR_THRESHOLD_USD
    for customer, rows in by_customer.items():
        rows.sort(key=lambda row: (row[0], row[1]["transaction_id"]))
        usd = [amount_usd(e["amount"], e["currency"]) for _, e in rows]
        avg = june_average_usd.get(customer)
        for (t, e), u in zip(rows, usd):
            if avg is not None and u >= ANOMALY_FACTOR * avg:
                found.append(_hit("amount_anomaly", customer, [(t, e)]))
        subsets = {
            "structuring": [row for row, u in zip(rows, usd) if lo_near <= u < hi_near],
            "rapid_fire": rows,
            "cash_velocity": [row for row in rows if row[1]["channel"] == "atm"],
            "geo_spread": rows,
        }
        for kind, subset in subsets.items():
            times = [t for t, _ in subset]
            window, minimum = PATTERN_WINDOW_MS[kind], PATTERN_MINIMUM[kind]
            # A qualifying window is the run subset[i:j_end]; overlapping runs join into one
            # pattern, itself a run, so a pattern is kept as its (first, end) positions.
            spans: list[tuple[int, int]] = []
            for i in range(len(subset)):
                j_end = bisect_left(times, times[i] + window)
                if kind == "geo_spread":
                    ok = len({subset[m][1]["country"] for m in range(i, j_end)}) >= minimum
                else:
                    ok = j_end - i >= minimum
                if not ok:
                    continue
                if spans and spans[-1][1] > i:
                    spans[-1] = (spans[-1][0], max(spans[-1][1], j_end))
                else:
                    spans.append((i, j_end))
            for first, end in spans:
                found.append(_hit(kind, customer, subset[first:end]))
    found.sort(key=lambda h: (h["kind"], h["customer_id"], h["start"], h["transaction_ids"]))
    return found


def _hit(kind: str, customer: str, rows: list[tuple[int, dict]]) -> dict:
    times = [t for t, _ in rows]
    return {
        "kind": kind,
        "customer_id": customer,
        "transaction_ids": sorted(e["transaction_id"] for _, e in rows),
        "start": iso_ms([min(times)])[0],
        "end": iso_ms([max(times)])[0],
    }


def june_average_usd(scale: str = "tiny", seed: int = 42) -> dict[str, Decimal]:
    """customer_id -> average payment in USD over the batch history (June 2026), computed the
    way the generator drew it: the reference :func:`find_patterns` measures anomalies against."""
    return {c: avg for c, (_, avg) in _june_profiles(seed, get_scale(scale).name).items()}


# --------------------------------------------------------------------------- writing


def _parse_ts(text: str, what: str) -> int:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{what}={text!r} is not an ISO-8601 timestamp like {STREAM_START!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _atomic_write(target: Path, data: bytes) -> None:
    """Write under a hidden temporary name, then rename: a reader sees the whole file or none."""
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)


def _check_landing(landing: str | os.PathLike, option: str = "landing") -> Path:
    path = Path(landing)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{option} {str(path)!r} is a file: give a folder (it is created if missing)"
        )
    return path


def clear_landing(landing: str | os.PathLike) -> None:
    """Remove what a simulation wrote in ``landing`` (event files, temporary files, report);
    anything else in the folder is left alone."""
    path = Path(landing)
    if not path.is_dir():
        return
    for p in path.iterdir():
        name = p.name
        if (
            re.fullmatch(r"events_\d{4,}\.json", name)
            or re.fullmatch(r"\.events_\d{4,}\.json\.tmp", name)
            or name in (REPORT_NAME, f".{REPORT_NAME}.tmp")
        ):
            p.unlink()


@dataclass(frozen=True)
class FileSummary:
    """One written file, for progress output."""

    index: int
    name: str
    lines: int
    first_ingest: str
    last_ingest: str
    defects: dict[str, int]

    def __str__(self) -> str:
        defects = ", ".join(f"{k} {v}" for k, v in self.defects.items() if v)
        return (
            f"{self.name}: {self.lines} lines, ingest {self.first_ingest} .. {self.last_ingest}"
            + (f" ({defects})" if defects else "")
        )


def write_files(
    landing: str | os.PathLike,
    config: SimulatorConfig | None = None,
    *,
    rate: float | None = None,
    clock: str = "simulated",
    on_file: Callable[[FileSummary], None] | None = None,
    publish: Callable[[list[str]], object] | None = None,
) -> SimulationReport:
    """Write the stream ``config`` describes into ``landing`` as ``events_0001.json`` ...
    (replacing an earlier simulation there) and return its report, also saved as
    ``<landing>/_simulation.json``.

    ``rate``: events per second of wall time (``None`` or 0: as fast as possible), so a stream
    reading the folder sees files arrive. ``clock="wall"`` stamps ``event_ts``/``ingest_ts``
    from the wall clock at emission (each file shifted to "now", delays kept), for live runs;
    ``"simulated"`` (default) keeps the fixed simulated clock: same config, same bytes.
    ``on_file`` is called with a :class:`FileSummary` after each file, ``publish`` with the
    file's lines once it is written (:func:`stream_to_kafka` sends them to a topic: the same
    stream, at the same pace, in files and messages).
    """
    config = config or ci_config()
    if rate is not None and (not isinstance(rate, int | float) or rate < 0):
        raise ValueError(f"rate={rate!r}: give events per second (> 0), or None for no pacing")
    if clock not in ("simulated", "wall"):
        raise ValueError(f"clock={clock!r}: use 'simulated' or 'wall'")
    path = _check_landing(landing)
    path.mkdir(parents=True, exist_ok=True)
    clear_landing(path)
    plan = _plan(config)
    change = config.schema_change_file
    rendered: dict[int, str] = {}
    emitted_event_ms: dict[int, int] = {}
    digest = hashlib.sha256()
    names, line_counts, byte_counts = [], [], []
    t0, sent = time.monotonic(), 0
    for f, delivery in enumerate(plan.deliveries):
        if rate:
            sent += len(delivery)
            wait = t0 + sent / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        # wall clock: the file reaches the stream now; each event keeps its simulated delay
        now = int(time.time() * 1000) if clock == "wall" else None
        stamps = {
            j: (plan.event_ms[j], plan.ingest_ms[j])
            if now is None
            else (now - (plan.ingest_ms[j] - plan.event_ms[j]), now)
            for j, copy in delivery
            if not copy
        }
        lines, counts = [], defaultdict(int)
        for j, copy in delivery:
            if copy:
                lines.append(rendered[j])
                counts["duplicates"] += 1
                continue
            record = dict(plan.records[j])
            event, ingest = stamps[j]
            emitted_event_ms[j] = event
            ts = iso_ms([event, ingest])
            line_record = {"transaction_id": record.pop("transaction_id")}
            line_record.update(event_ts=ts[0], ingest_ts=ts[1], **record)
            if f >= change:
                line_record["device_fingerprint"] = plan.devices[j]
            line = json_line(line_record)
            if j in plan.cut:  # a partial write: the key survives, the closing brace never does
                keep = len('{"transaction_id":"TX0000000001",')
                line = line[: keep + int(plan.cut[j] * (len(line) - keep))]
            rendered[j] = line
            if plan.defect[j]:
                counts[plan.defect[j]] += 1
            lines.append(line)
        data = ("\n".join(lines) + "\n").encode()
        name = FILE_PATTERN.format(f + 1)
        _atomic_write(path / name, data)
        digest.update(data)
        if publish is not None:
            publish(lines)
        names.append(name)
        line_counts.append(len(lines))
        byte_counts.append(len(data))
        if on_file is not None:
            ingests = [ingest for _, ingest in stamps.values()]
            first, last = iso_ms([min(ingests), max(ingests)]) if ingests else ("-", "-")
            on_file(FileSummary(f + 1, name, len(lines), first, last, dict(counts)))

    ids = [r["transaction_id"] for r in plan.records]
    defects: dict[str, list[str]] = {kind: [] for kind in DEFECTS}
    for j, d in enumerate(plan.defect):
        if d:
            defects[d].append(ids[j])
    for f in range(change, config.files):
        defects["schema_change"].extend(ids[j] for j, copy in plan.deliveries[f] if not copy)
    for f in range(config.files):
        defects["duplicates"].extend(ids[j] for j, copy in plan.deliveries[f] if copy)
    for kind in defects:
        if kind != "duplicates":
            defects[kind].sort()
    scenarios = []
    for s in plan.scenarios:
        times = [emitted_event_ms[j] for j in s["events"]]
        scenarios.append(
            {
                "kind": s["kind"],
                "customer_id": s["customer_id"],
                "transaction_ids": sorted(ids[j] for j in s["events"]),
                "start": iso_ms([min(times)])[0],
                "end": iso_ms([max(times)])[0],
                "also": list(s.get("also", [])),
            }
        )
    report = SimulationReport(
        landing=str(path),
        files=config.files,
        lines=sum(line_counts),
        events=len(ids),
        defects=defects,
        scenarios=scenarios,
        config=config,
        clock=clock,
        file_names=names,
        file_lines=line_counts,
        file_bytes=byte_counts,
        schema_change_files=names[change:],
        digest=digest.hexdigest(),
    )
    report.save()
    return report


def ensure_landing(spark, *, scale: str = "tiny", seed: int = 42) -> SimulationReport:
    """The CI stream in ``lakehouse.streaming.landing(spark)``: written unless the folder
    already holds it (same config, simulated clock, every file in place), so every lesson can
    call this in its setup. Returns the report."""
    from lakehouse import streaming

    landing = streaming.landing(spark)
    config = ci_config(scale, seed)
    try:
        report = SimulationReport.load(landing)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        report = None
    if report is not None and _intact(report, config):
        return report
    return write_files(landing, config)


def _intact(report: SimulationReport, config: SimulatorConfig) -> bool:
    if report.config != config or report.clock != "simulated":
        return False
    return (
        all(
            p.is_file() and p.stat().st_size == size
            for p, size in zip(report.paths(), report.file_bytes)
        )
        and len(report.file_names) == config.files
    )


def check_ci_stream(report: SimulationReport, *, scale: str = "tiny", seed: int = 42) -> None:
    """Raise AssertionError, saying what differs, unless ``report`` is the CI stream of
    ``scale``/``seed`` (:func:`ci_config`, simulated clock) with every file byte-identical."""
    import tempfile

    expected = ci_config(scale, seed)
    wrong = [
        f"{f.name}={getattr(report.config, f.name)!r} (expected {getattr(expected, f.name)!r})"
        for f in fields(SimulatorConfig)
        if getattr(report.config, f.name) != getattr(expected, f.name)
    ]
    assert not wrong, (
        "The stream was written with other options: "
        + ", ".join(wrong)
        + f". Call write_files(landing, ci_config(scale={scale!r}, seed={seed!r}))."
    )
    assert report.clock == "simulated", (
        f"The stream was written with clock={report.clock!r}: the CI stream uses the simulated "
        "clock (the default), so the same seed gives the same bytes."
    )
    missing = [p.name for p in report.paths() if not p.is_file()]
    assert not missing, f"Files of the stream are missing from {report.landing}: {missing}"
    digest = hashlib.sha256()
    for p in report.paths():
        digest.update(p.read_bytes())
    with tempfile.TemporaryDirectory() as scratch:
        reference = write_files(scratch, expected)
    assert digest.hexdigest() == reference.digest, (
        f"The files in {report.landing} differ from the CI stream: rewrite them with "
        "write_files(landing, ci_config(...)) and do not edit them by hand."
    )


# --------------------------------------------------------------------------- the truth


def _parse_event(line: str) -> dict | None:
    """The event on ``line`` when it is valid, else None (the rules Silver applies)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    for name in REQUIRED:
        value = event.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
    try:
        amount = Decimal(str(event["amount"]))
        _parse_ts(event["event_ts"], "event_ts")
        _parse_ts(event["ingest_ts"], "ingest_ts")
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount < 0:
        return None
    return event


def read_lines(report_or_landing: SimulationReport | str | os.PathLike) -> list[str]:
    """Every line of the stream's files, in delivery order."""
    paths = _paths(report_or_landing)
    lines = []
    for p in paths:
        lines.extend(p.read_text(encoding="utf-8").splitlines())
    return lines


def _paths(report_or_landing) -> list[Path]:
    if isinstance(report_or_landing, SimulationReport):
        return report_or_landing.paths()
    landing = Path(report_or_landing)
    if (landing / REPORT_NAME).is_file():
        return SimulationReport.load(landing).paths()
    return sorted(landing.glob("events_*.json"))


def expected_events(report_or_landing: SimulationReport | str | os.PathLike) -> list[dict]:
    """The distinct valid events of a stream, computed in plain Python from its files: each
    line parsed; lines that do not parse, miss a required value or carry an amount that is not
    a number or is negative dropped; then one event per transaction_id (its first delivery).
    What Silver must hold, whatever the engine did: the independent truth for checks."""
    seen: set[str] = set()
    out = []
    for line in read_lines(report_or_landing):
        event = _parse_event(line)
        if event is None or event["transaction_id"] in seen:
            continue
        seen.add(event["transaction_id"])
        out.append(event)
    return out


# --------------------------------------------------------------------------- Kafka


def kafka_reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    """True when a TCP connection to one of the ``host:port`` brokers in ``bootstrap`` opens
    within ``timeout`` seconds each (:func:`lakehouse.services.kafka.reachable`)."""
    from lakehouse.services import kafka

    return kafka.reachable(bootstrap, timeout)


_CUSTOMER = re.compile(r'"customer_id":"([^"]*)"')


def message_key(line: str) -> bytes | None:
    """A line's Kafka key: its customer id, so one customer's payments go to one partition
    and keep their order there (a broken line without one gets no key and any partition)."""
    match = _CUSTOMER.search(line)
    return match.group(1).encode() if match else None


class KafkaPublisher:
    """Sends lines to a Kafka topic as messages (value: the line exactly as in the files, so
    broken lines and redeliveries travel too; key: :func:`message_key`) with the course's
    idempotent producer, and waits for every acknowledgement at each :meth:`flush`."""

    def __init__(self, topic: str, bootstrap_servers: str | None = None):
        from lakehouse.services import kafka

        self.topic, self.servers = topic, bootstrap_servers or kafka.bootstrap_servers()
        self.sent = 0
        self._failures: list[str] = []
        if not kafka.reachable(self.servers):
            raise kafka.KafkaError(
                f"No Kafka broker answers at {self.servers}: start the course's with make "
                "kafka-start (or pass its host:port); the same events are in the landing folder's "
                "files, which the course reads without a broker."
            )
        self._producer = kafka.producer(self.servers)

    def _delivered(self, error, message) -> None:
        if error is not None:
            self._failures.append(f"{message.key()!r}: {error.str()}")

    def __call__(self, lines: Iterable[str]) -> int:
        """Send ``lines`` and wait until Kafka acknowledged them all; returns how many."""
        n = 0
        for line in lines:
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        value=line.encode(),
                        key=message_key(line),
                        on_delivery=self._delivered,
                    )
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self._producer.poll(0.1)
            n += 1
            self._producer.poll(0)
        self.flush()
        self.sent += n
        return n

    def flush(self, timeout: float = 30) -> None:
        from lakehouse.services import kafka

        left = self._producer.flush(timeout)
        if left or self._failures:
            why = self._failures[:3] or f"not acknowledged in {timeout:.0f} s"
            raise kafka.KafkaError(
                f"Kafka did not take {left + len(self._failures)} messages for topic "
                f"{self.topic!r} at {self.servers} ({why}); is the broker still running "
                "(make kafka-start)?"
            )


def stream_to_kafka(
    landing: str | os.PathLike,
    config: SimulatorConfig | None = None,
    *,
    topic: str = DEFAULT_TOPIC,
    partitions: int = 4,
    bootstrap_servers: str | None = None,
    rate: float | None = None,
    clock: str = "simulated",
    on_file: Callable[[FileSummary], None] | None = None,
) -> SimulationReport:
    """:func:`write_files`, every file also sent to the Kafka ``topic`` (created with
    ``partitions`` if missing) as it is written: the same seeded events, defects and
    scenarios, at ``rate`` events per second. The files stay the record the report (and the
    truth, :func:`expected_events`) describes; the topic carries one message per line."""
    from lakehouse.services import kafka

    publisher = KafkaPublisher(topic, bootstrap_servers)
    kafka.create_topic(topic, partitions, bootstrap_servers=publisher.servers)
    return write_files(landing, config, rate=rate, clock=clock, on_file=on_file, publish=publisher)


def publish_once(
    report: SimulationReport,
    *,
    topic: str = DEFAULT_TOPIC,
    partitions: int = 4,
    bootstrap_servers: str | None = None,
) -> int:
    """Make the Kafka ``topic`` hold the stream of ``report``, one message per line: published
    now if the topic is missing (deleted again if the publish fails, so a half-published topic
    never passes for the stream), left as it is if it already holds exactly that many
    messages. A topic holding another count raises, naming how to start over. Returns the
    messages in the topic."""
    from lakehouse.services import kafka

    publisher = KafkaPublisher(topic, bootstrap_servers)  # fails fast without a broker
    servers = publisher.servers
    if topic in kafka.list_topics(bootstrap_servers=servers):
        held = sum(kafka.end_offsets(topic, bootstrap_servers=servers).values())
        if held != report.lines:
            raise kafka.KafkaError(
                f"Kafka topic {topic!r} at {servers} holds {held} messages, but the stream has "
                f"{report.lines} lines: it holds another stream. Delete it "
                f"(lakehouse.services.kafka.delete_topic({topic!r})) and run again."
            )
        return held
    kafka.create_topic(topic, partitions, bootstrap_servers=servers)
    try:
        return publisher(read_lines(report))
    except BaseException:
        kafka.delete_topic(topic, bootstrap_servers=servers)  # nothing half-published
        raise


# --------------------------------------------------------------------------- command line


def _positive(option: str, kind=float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} needs a number, got {text!r}") from None
        if value <= 0:
            hint = " (use --max-rate to write as fast as possible)" if option == "--rate" else ""
            raise argparse.ArgumentTypeError(
                f"{option} must be a positive number, got {text!r}{hint}"
            )
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakehouse-simulate",
        description=(
            "Write the course's simulated payment event stream (JSON lines) into a landing "
            "folder, optionally paced in wall time and published to Kafka."
        ),
    )
    parser.add_argument("--landing", required=True, help="folder to write events_NNNN.json into")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=_positive("--rate"),
        default=DEFAULT_RATE,
        help=f"events per second of wall time (default {DEFAULT_RATE:,})",
    )
    pace.add_argument("--max-rate", action="store_true", help="write as fast as possible")
    parser.add_argument("--events", type=_positive("--events", int), help="distinct events")
    parser.add_argument("--files", type=_positive("--files", int), help="number of files")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--scale", default="tiny", help="tiny | small | medium | large")
    parser.add_argument(
        "--clock",
        choices=("simulated", "wall"),
        default="simulated",
        help="timestamps from the simulated clock (reproducible) or the wall clock (live)",
    )
    parser.add_argument(
        "--no-scenarios", action="store_true", help="no injected risk patterns (small streams)"
    )
    parser.add_argument(
        "--kafka",
        metavar="HOST:PORT",
        help="also send every file's lines to this Kafka broker as it is written",
    )
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help=f"Kafka topic ({DEFAULT_TOPIC})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``lakehouse-simulate``: write a stream and print a line per file and a summary."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _check_landing(args.landing, "--landing")
        config = ci_config(args.scale, args.seed)
        changes = {}
        if args.events is not None:
            changes["events"] = args.events
            changes["files"] = args.files or max(1, min(config.files, args.events // 200))
        elif args.files is not None:
            changes["files"] = args.files
        if args.no_scenarios:
            changes["scenarios"] = False
        config = replace(config, **changes)
    except ValueError as exc:
        parser.error(_as_option_error(str(exc)))
    rate = None if args.max_rate else args.rate
    if args.kafka:
        from lakehouse.services.kafka import KafkaError

        try:
            report = stream_to_kafka(
                args.landing,
                config,
                topic=args.topic,
                bootstrap_servers=args.kafka,
                rate=rate,
                clock=args.clock,
                on_file=print,
            )
        except KafkaError as exc:
            print(f"lakehouse-simulate: --kafka: {exc}", file=sys.stderr)
            return 1
    else:
        report = write_files(args.landing, config, rate=rate, clock=args.clock, on_file=print)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts().items())
    scen = ", ".join(f"{k} {v}" for k, v in report.scenario_counts().items())
    print(
        f"wrote {report.files} files, {report.lines} lines, {report.events} distinct events "
        f"to {report.landing}\ndefects: {counts}\nscenarios: {scen}"
    )
    if args.kafka:
        print(f"published {report.lines} messages to Kafka topic {args.topic!r} at {args.kafka}")
    return 0


def _as_option_error(message: str) -> str:
    for name in ("events", "files", "scale", "seed"):
        if message.startswith(f"{name}=") or message.startswith(f"unknown {name}"):
            return f"--{name}: {message}"
    return message


__all__ = [
    "DEFECTS",
    "SCENARIOS",
    "FileSummary",
    "KafkaPublisher",
    "SimulationReport",
    "SimulatorConfig",
    "check_ci_stream",
    "ci_config",
    "clear_landing",
    "ensure_landing",
    "expected_events",
    "find_patterns",
    "june_average_usd",
    "kafka_reachable",
    "main",
    "message_key",
    "publish_once",
    "read_lines",
    "stream_to_kafka",
    "write_files",
]
