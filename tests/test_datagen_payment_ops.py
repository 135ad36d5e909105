"""The payment operations for the ML module: routing, attempts and retries, delayed fraud labels
and the drift, checked in the written files.

Like test_datagen, these tests read the files with their own rules and recompute what the
manifest documents (the routing rule, the approval model's parameters, the drift) instead of
calling the generator's functions. Statistical checks run at the small scale, with bounds of
four standard deviations or more, so they hold at any seed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lakehouse.datagen import (
    DATASETS,
    ML_DATASETS,
    SCALES,
    generate,
    load_manifest,
)
from lakehouse.datagen import _reference as ref
from lakehouse.datagen.cli import main
from lakehouse.datagen.manifest import Manifest

ATTEMPTS, CHARGEBACKS = "payments.attempts", "payments.chargebacks"
EUROPE = {"GB", "DE", "FR", "ES", "IT", "NL", "IE"}
SOFT, HARD = {"05", "51", "91"}, {"14", "43", "54", "59", "N7"}
REASON_OF_CODE = {
    "51": "insufficient_funds",
    "05": "do_not_honor",
    "54": "card_expired",
    "N7": "incorrect_cvv",
    "59": "suspected_fraud",
    "43": "suspected_fraud",
    "14": "suspected_fraud",
}
FX = {code: Decimal(str(rate)) for code, rate in ref.FX_PER_USD.items()}
CHI2_DF3_P001 = 16.27  # the chi-square critical value for 3 degrees of freedom at p = 0.001

# The lakehouse's raw sources at tiny, seed 42, as generator 1.0.0 wrote them: the payment
# operations were added without moving a byte of them, so no lesson's output moves.
LAKEHOUSE_SOURCES_DIGEST = "c57a666f43d0e3156c612992a04341329cd2d0f8bd0b032586e0a127b5d50b74"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def amount_usd(record: dict) -> Decimal:
    return (Decimal(record["amount"]) / FX[record["currency"]]).quantize(
        Decimal("0.01"), ROUND_HALF_UP
    )


class Payments:
    """The files of one generation, read back: transactions (first delivery of each, parseable
    and with no defect), attempts per payment, notices per payment."""

    def __init__(self, root: Path):
        self.root = root
        self.manifest = load_manifest(root)
        m = self.manifest
        broken = {
            key
            for defect in ("malformed_rows", "null_required", "negative_amounts")
            for key in m.defect_keys("payments.transactions", defect)
        }
        self.tx: dict[str, dict] = {}
        self.all_ids: set[str] = set()
        for rel in m.files("payments.transactions"):
            for line in (root / rel).read_text(encoding="utf-8").splitlines():
                key = re.match(r'\{"transaction_id":"(TX\d{10})"', line).group(1)
                self.all_ids.add(key)
                if key not in broken and key not in self.tx:
                    self.tx[key] = json.loads(line)
        self.attempt_rows = []
        for rel in m.files(ATTEMPTS):
            self.attempt_rows += pq.read_table(root / rel).to_pylist()
        self.chains: dict[str, list[dict]] = defaultdict(list)
        for a in sorted(self.attempt_rows, key=lambda a: (a["transaction_id"], a["attempt_no"])):
            self.chains[a["transaction_id"]].append(a)
        self.by_id = {a["attempt_id"]: a for a in self.attempt_rows}
        self.notice_lines: list[tuple[str, dict]] = []
        for rel in m.files(CHARGEBACKS):
            with open(root / rel, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                assert reader.fieldnames == list(ML_DATASETS[CHARGEBACKS].column_names), rel
                self.notice_lines += [(rel, row) for row in reader]
        self.notices: dict[str, dict] = {}
        for _, row in self.notice_lines:
            self.notices.setdefault(row["chargeback_id"], row)
        self.notices_of: dict[str, list[dict]] = defaultdict(list)
        for row in self.notices.values():
            self.notices_of[row["transaction_id"]].append(row)

    def facts(self, dataset: str) -> dict:
        return self.manifest.dataset(dataset).facts

    def first_attempts(self, *, randomly: bool | None = None, before_drift: bool = False):
        """(first attempt, its transaction) of clean, legitimate payments."""
        start = ts(self.facts(ATTEMPTS)["drift"]["start"])
        for key, r in self.tx.items():
            first = self.chains[key][0]
            if r["is_fraud"] or (randomly is not None and first["routed_randomly"] != randomly):
                continue
            if before_drift and ts(r["event_ts"]) >= start:
                continue
            yield first, r


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Payments:
    out = tmp_path_factory.mktemp("ops_tiny") / "data"
    generate(out, scale="tiny", seed=42)
    return Payments(out)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Payments:
    out = tmp_path_factory.mktemp("ops_small") / "data"
    generate(out, scale="small", seed=42, sources="payments")
    return Payments(out)


def rate(pairs) -> tuple[float, int]:
    pairs = list(pairs)
    return (sum(pairs) / len(pairs) if pairs else float("nan")), len(pairs)


# --- the lakehouse's sources stay as they were -------------------------------------------------


def test_the_lakehouse_sources_are_byte_identical_to_generator_1_0_0(tiny):
    m = tiny.manifest
    digest = hashlib.sha256()
    paths = sorted(path for name in m.datasets for path in m.files(name))
    for rel in paths:
        digest.update(
            f"{rel} {hashlib.sha256((tiny.root / rel).read_bytes()).hexdigest()}\n".encode()
        )
    assert digest.hexdigest() == LAKEHOUSE_SOURCES_DIGEST, (
        "The raw sources that lessons 01-04 read changed. If that is on purpose, regenerate the "
        "expected notebook outputs (make expected) and update LAKEHOUSE_SOURCES_DIGEST."
    )


def test_the_ml_datasets_are_kept_apart_from_the_raw_sources(tiny):
    m = tiny.manifest
    assert list(m.datasets) == list(DATASETS)
    assert list(DATASETS) == [
        "crm.customers",
        "ecommerce.products",
        "ecommerce.orders",
        "ecommerce.order_lines",
        "web.events",
        "support.tickets_cdc",
        "payments.transactions",
    ], "the Bronze and Silver lessons walk DATASETS: a new name there changes their outputs"
    assert (
        list(m.ml_datasets)
        == list(ML_DATASETS)
        == [
            ATTEMPTS,
            CHARGEBACKS,
            "payments.processors",
            "payments.response_codes",
        ]
    )
    assert m.dataset(ATTEMPTS).rows == len(tiny.attempt_rows)
    assert "payments" in m.sources and m.sources["payments"]["datasets"] == [
        "payments.transactions"
    ]


# --- attempts: structure ------------------------------------------------------------------------


def test_attempts_follow_their_schema(tiny):
    spec = ML_DATASETS[ATTEMPTS]
    for rel in tiny.manifest.files(ATTEMPTS):
        schema = pq.read_schema(tiny.root / rel)
        assert schema.remove_metadata() == spec.arrow_schema.remove_metadata(), rel
        times = pq.read_table(tiny.root / rel, columns=["attempt_ts"]).column(0).to_pylist()
        assert times == sorted(times), f"{rel}: not in attempt_ts order"
    for name in ("payments.processors", "payments.response_codes"):
        with open(tiny.root / ML_DATASETS[name].path, newline="", encoding="utf-8") as handle:
            assert next(csv.reader(handle)) == list(ML_DATASETS[name].column_names)


def test_every_payment_has_a_chain_of_attempts_that_ends_as_the_ledger_says(tiny):
    ids = {a["attempt_id"] for a in tiny.attempt_rows}
    assert len(ids) == len(tiny.attempt_rows), "attempt_id is not unique"
    assert set(tiny.chains) == tiny.all_ids, "attempts for payments that do not exist, or none"
    codes = {
        row["response_code"]: row
        for row in csv.DictReader(
            open(tiny.root / "payments/response_codes.csv", newline="", encoding="utf-8")
        )
    }
    assert {c for c, row in codes.items() if row["decline_type"] == "soft"} == SOFT
    assert {c for c, row in codes.items() if row["decline_type"] == "hard"} == HARD
    for key, chain in tiny.chains.items():
        assert [a["attempt_no"] for a in chain] == list(range(1, len(chain) + 1)), key
        assert len(chain) <= 4, key
        assert chain[0]["retry_of"] is None, key
        for before, after in zip(chain, chain[1:]):
            assert after["retry_of"] == before["attempt_id"], key
            assert after["attempt_ts"] > before["attempt_ts"], key
            assert not before["approved"], f"{key}: an attempt after an approval"
            assert after["processor"] == before["processor"], key
            assert after["routed_randomly"] == before["routed_randomly"], key
        for a in chain:
            assert a["approved"] == (a["response_code"] == "00"), key
            assert a["response_code"] in codes, key
            assert a["latency_ms"] > 0, key
            if a["response_code"] == "91":
                assert a["latency_ms"] >= 3_000, f"{key}: a 91 is a timeout"
        r = tiny.tx.get(key)
        if r is None:
            continue
        last = chain[-1]
        assert last["attempt_ts"] == ts(r["event_ts"]), f"{key}: last attempt not at event_ts"
        assert last["approved"] == (r["status"] == "approved"), key
        if r["status"] == "declined":
            assert REASON_OF_CODE[last["response_code"]] == r["decline_reason"], key
            assert codes[last["response_code"]]["decline_reason"] == r["decline_reason"], key


def test_hard_declines_are_never_followed_by_an_approval(small):
    for key, chain in small.chains.items():
        if any(a["response_code"] in HARD for a in chain):
            assert not chain[-1]["approved"], key
            assert all(a["response_code"] in HARD | {"91"} for a in chain), key


# --- routing ------------------------------------------------------------------------------------


def rule(r: dict) -> str:
    """The routing rule as the manifest states it, first match wins."""
    if r["card_network"] == "amex":
        return "lamna"
    if r["country"] in EUROPE:
        return "relecloud"
    if amount_usd(r) >= 500:
        return "lamna"
    if r["merchant_category"] in ("digital_goods", "streaming"):
        return "trey"
    return "woodgrove"


def test_the_routing_rule_is_the_documented_one(small):
    facts = small.facts(ATTEMPTS)
    assert facts["routing_rule"] == [
        "card_network = amex -> lamna",
        "country in Europe (GB, DE, FR, ES, IT, NL, IE) -> relecloud",
        "amount_usd >= 500 -> lamna",
        "merchant_category in (digital_goods, streaming) -> trey",
        "otherwise -> woodgrove",
    ]
    checked = Counter()
    for key, r in small.tx.items():
        first = small.chains[key][0]
        if not first["routed_randomly"]:
            assert first["processor"] == rule(r), f"{key}: {first['processor']} != {rule(r)}"
            checked[first["processor"]] += 1
    assert set(checked) == set(facts["processors"]), f"the rule never picks some: {checked}"


def test_the_random_slice_is_a_fifth_uniform_and_independent_of_the_payment(small):
    firsts = [small.chains[key][0] for key in small.all_ids]
    n = len(firsts)
    randomly = [a for a in firsts if a["routed_randomly"]]
    share = small.facts(ATTEMPTS)["random_routing_share"]
    assert share == 0.2
    assert abs(len(randomly) - n * share) < 4 * math.sqrt(n * share * (1 - share))
    assert small.facts(ATTEMPTS)["randomly_routed_payments"] == len(randomly)

    counts = Counter(a["processor"] for a in randomly)
    expected = len(randomly) / 4
    chi2 = sum((counts[p] - expected) ** 2 / expected for p in small.facts(ATTEMPTS)["processors"])
    assert chi2 < CHI2_DF3_P001, f"random routing is not uniform: {counts}"

    # independent of the payment: the same split in Europe and elsewhere (chi-square, 3 df)
    table = defaultdict(Counter)
    for key, r in small.tx.items():
        first = small.chains[key][0]
        if first["routed_randomly"]:
            table[r["country"] in EUROPE][first["processor"]] += 1
    total = sum(sum(c.values()) for c in table.values())
    chi2 = 0.0
    for group in table.values():
        for p in small.facts(ATTEMPTS)["processors"]:
            column = sum(table[g][p] for g in table)
            e = sum(group.values()) * column / total
            chi2 += (group[p] - e) ** 2 / e
    assert chi2 < CHI2_DF3_P001, f"random routing depends on the country: {dict(table)}"


# --- approval ----------------------------------------------------------------------------------


PROCESSORS = ["woodgrove", "relecloud", "lamna", "trey"]  # the order of the model's values


def designed_probability(model: dict, r: dict, processor: str) -> float:
    """The manifest's approval model (before the drift), for one payment on one processor."""
    i = PROCESSORS.index(processor)
    logit = (
        model["intercept"]["all"][i]
        + model["card_network"][r["card_network"]][i]
        + model["region"][model["regions"][r["country"]]][i]
        + model["category_group"][model["category_groups"][r["merchant_category"]]][i]
        + model["log10_amount_usd_minus_log10_50"]["all"][i]
        * (math.log10(float(Decimal(r["amount"]) / FX[r["currency"]])) - math.log10(50))
    )
    return 1 / (1 + math.exp(-logit))


def test_first_attempt_approval_matches_the_designed_model_per_processor(small):
    facts = small.facts(ATTEMPTS)
    model = facts["approval_model"]
    assert facts["processors"] == PROCESSORS
    observed, expected, variance = Counter(), Counter(), Counter()
    for first, r in small.first_attempts(randomly=True, before_drift=True):
        p = first["processor"]
        observed[p] += first["approved"]
        if r["status"] == "approved":  # a payment the ledger declines is declined at once
            q = designed_probability(model, r, p)
            expected[p] += q
            variance[p] += q * (1 - q)
    for p in facts["processors"]:
        assert abs(observed[p] - expected[p]) < 4 * math.sqrt(variance[p]) + 1, (
            f"{p}: {observed[p]} approvals, the model expects {expected[p]:.0f}"
        )


def test_approval_odds_differ_by_processor_where_the_design_says(small):
    """Each processor's niche shows in the randomly routed slice, before the drift."""
    cells: dict[tuple[str, str], list[int]] = defaultdict(list)
    for first, r in small.first_attempts(randomly=True, before_drift=True):
        usd = amount_usd(r)
        p = first["processor"]
        cells["europe" if r["country"] in EUROPE else "north_america", p].append(first["approved"])
        cells["visa" if r["card_network"] == "visa" else "other_network", p].append(
            first["approved"]
        )
        if r["card_network"] == "mastercard":
            cells["mastercard", p].append(first["approved"])
        if usd >= 500:
            cells["large", p].append(first["approved"])
        if r["merchant_category"] in ("digital_goods", "streaming"):
            cells["digital", p].append(first["approved"])

    def better(cell: str, winner: str, loser: str, margin: float) -> None:
        (a, na), (b, nb) = rate(cells[cell, winner]), rate(cells[cell, loser])
        assert a - b > margin, f"{cell}: {winner} {a:.2f} (n={na}) vs {loser} {b:.2f} (n={nb})"

    better("europe", "relecloud", "woodgrove", 0.05)
    better("north_america", "woodgrove", "relecloud", 0.10)
    better("mastercard", "trey", "woodgrove", 0.05)
    better("large", "lamna", "trey", 0.15)
    better("digital", "trey", "lamna", 0.15)


def test_the_rule_beats_random_routing_but_leaves_room_to_learn(small):
    rule_rate, _ = rate(f["approved"] for f, _ in small.first_attempts(randomly=False))
    random_rate, _ = rate(f["approved"] for f, _ in small.first_attempts(randomly=True))
    assert rule_rate - random_rate > 0.05, (rule_rate, random_rate)
    # the best processor per payment, by the design, beats the rule's choice on average
    model = small.facts(ATTEMPTS)["approval_model"]
    gains = []
    for _, r in small.first_attempts(randomly=False, before_drift=True):
        odds = {p: designed_probability(model, r, p) for p in PROCESSORS}
        gains.append(max(odds.values()) - odds[rule(r)])
    assert sum(gains) / len(gains) > 0.015, "routing leaves too little to learn"


# --- retries -----------------------------------------------------------------------------------


def retries(p: Payments):
    """(code of the declined attempt, wait in seconds, whether the retry was approved)."""
    for a in p.attempt_rows:
        if a["retry_of"]:
            before = p.by_id[a["retry_of"]]
            wait = (a["attempt_ts"] - before["attempt_ts"]).total_seconds()
            yield before["response_code"], wait, a["approved"]


def test_soft_declines_retried_after_longer_waits_succeed_more_and_hard_ones_never(small):
    done = list(retries(small))
    hard = [ok for code, _, ok in done if code in HARD]
    assert len(hard) > 20 and not any(hard), "retries after hard declines must all fail"

    def success(codes, lo, hi):
        return rate(ok for code, w, ok in done if code in codes and lo <= w < hi)

    for codes, short, long_ in (
        ({"51"}, (0, 600), (86_400, 10**7)),  # funds arrive over days
        ({"05"}, (0, 600), (21_600, 10**7)),
        ({"91"}, (0, 30), (600, 10**7)),  # the issuer is back within minutes
        (SOFT, (0, 60), (3_600, 10**7)),
    ):
        (a, na), (b, nb) = success(codes, *short), success(codes, *long_)
        assert b - a > 0.2, (
            f"{sorted(codes)}: {a:.2f} (n={na}) after short waits, {b:.2f} (n={nb}) after long"
        )
    soft, _ = rate(ok for code, _, ok in done if code in SOFT)
    assert soft > 0.3

    facts = small.facts(ATTEMPTS)
    assert facts["retries_after_soft_decline"] == sum(1 for c, _, _ in done if c in SOFT)
    assert facts["retries_after_soft_decline_approved"] == sum(
        1 for c, _, ok in done if c in SOFT and ok
    )
    assert facts["retries_after_hard_decline"] == len(hard)
    assert facts["retries_after_hard_decline_approved"] == 0


def test_retry_waits_follow_the_channel(small):
    for a in small.attempt_rows:
        if not a["retry_of"]:
            continue
        r = small.tx.get(a["transaction_id"])
        wait = (a["attempt_ts"] - small.by_id[a["retry_of"]]["attempt_ts"]).total_seconds()
        if r is None:
            continue
        if r["channel"] == "online":
            assert 9 <= wait <= 72 * 3600, a["attempt_id"]
        else:
            assert 4 <= wait <= 181, f"{a['attempt_id']}: a till does not wait {wait:.0f} s"


# --- labels ------------------------------------------------------------------------------------


def test_every_fraud_gets_one_fraud_notice_after_the_payment_and_no_legitimate_one_does(tiny):
    check_labels(tiny)


def test_labels_at_small_scale(small):
    check_labels(small)


def check_labels(p: Payments) -> None:
    facts = p.facts(CHARGEBACKS)
    new_pattern = set(facts["drift"]["new_pattern_transaction_ids"])
    original = {k for k, r in p.tx.items() if r["is_fraud"]}
    feed_end = ts(facts["feed_as_of"] + "T00:00:00Z") + timedelta(days=1)
    for key, notices in p.notices_of.items():
        assert key in p.all_ids, f"a notice for an unknown payment {key}"
        fraud = [n for n in notices if n["is_fraud"] == "true"]
        assert len(fraud) <= 1 and len(notices) == 1, f"{key}: {len(notices)} notices"
        n = notices[0]
        assert (n["is_fraud"] == "true") == n["reason"].startswith("fraud_"), key
        assert ts(n["label_available_ts"]) < feed_end, key
        assert ts(n["label_available_ts"]) >= ts(n["dispute_ts"]), key
        r = p.tx.get(key)
        if r is None:
            continue
        assert ts(n["label_available_ts"]) > ts(r["ingest_ts"]), key
        assert ts(n["dispute_ts"]) > ts(r["event_ts"]), key
        assert n["amount"] == r["amount"] and n["currency"] == r["currency"], key
        assert n["kind"] == ("fraud_report" if r["status"] == "declined" else "chargeback"), key
        if n["kind"] == "fraud_report":
            assert n["is_fraud"] == "true", f"{key}: only fraud is reported on a decline"
        expected_reason = "absent" if r["channel"] == "online" else "present"
        if n["is_fraud"] == "true":
            assert n["reason"] == f"fraud_card_{expected_reason}", key
        else:
            assert not r["is_fraud"] and key not in new_pattern, key
    with_fraud_notice = {
        k for k, ns in p.notices_of.items() if any(n["is_fraud"] == "true" for n in ns)
    }
    clean = set(p.tx)
    assert with_fraud_notice & clean == (original | new_pattern) & clean
    assert not original & new_pattern
    assert facts["fraud_transactions"] == len(with_fraud_notice)
    assert (
        facts["original_fraud_transactions"]
        == p.manifest.dataset("payments.transactions").facts["fraud_transactions"]
    )
    assert facts["new_pattern_fraud_transactions"] == len(new_pattern)
    assert facts["notices"] == len(p.notices)
    delays = sorted(
        (ts(n["label_available_ts"]) - ts(p.tx[n["transaction_id"]]["event_ts"])).days
        for n in p.notices.values()
        if n["is_fraud"] == "true" and n["transaction_id"] in p.tx
    )
    assert delays[len(delays) // 2] >= 1, "labels arrive days after the payment"
    assert facts["label_delay_days"]["p50"] <= facts["label_delay_days"]["p90"]
    assert facts["label_delay_days"]["p90"] <= facts["label_delay_days"]["max"] <= 31


def test_notices_are_filed_by_month_and_duplicates_match_the_manifest(tiny):
    m = tiny.manifest
    record = m.dataset(CHARGEBACKS)
    assert [f.path for f in record.files] == [
        "payments/chargebacks/chargebacks_2026-06.csv",
        "payments/chargebacks/chargebacks_2026-07.csv",
    ]
    seen, duplicates = {}, Counter()
    for rel, row in tiny.notice_lines:
        assert rel.endswith(row["label_available_ts"][:7] + ".csv"), row["chargeback_id"]
        key = row["chargeback_id"]
        if key in seen:
            assert row == seen[key], f"{key}: a repeat differs from the first delivery"
            duplicates[key] += 1
        seen[key] = row
    assert duplicates == Counter(m.defect_keys(CHARGEBACKS, "duplicates"))
    assert sum(duplicates.values()) >= 2, "each month's file repeats at least one notice"
    assert record.rows == len(tiny.notice_lines) == len(seen) + sum(duplicates.values())
    assert set(record.defects) == set(record.defect_rules) == {"duplicates"}
    for name in (ATTEMPTS, "payments.processors", "payments.response_codes"):
        assert m.dataset(name).defects == {}, f"{name} is clean"


# --- drift -------------------------------------------------------------------------------------


def test_the_drift_is_recorded_in_the_manifest(tiny):
    drift = tiny.facts(ATTEMPTS)["drift"]
    assert drift["start"] == "2026-06-20T00:00:00.000Z"
    assert drift["processor_shift"]["processor"] == "relecloud"
    assert drift["processor_shift"]["latency_factor"] > 1.5
    assert drift["processor_shift"]["approval_logit_shift"] < 0
    pattern = drift["fraud_pattern"]
    assert pattern["merchant_category"] == "digital_goods" and pattern["channel"] == "online"
    labels = tiny.facts(CHARGEBACKS)["drift"]
    assert {k: v for k, v in labels.items() if k != "new_pattern_transaction_ids"} == drift
    assert labels["new_pattern_transaction_ids"], "the new pattern shows even at tiny"


def matches_pattern(r: dict, pattern: dict) -> bool:
    hour = ts(r["event_ts"]).hour
    lo, hi = pattern["utc_hours"]
    return (
        r["channel"] == pattern["channel"]
        and r["merchant_category"] == pattern["merchant_category"]
        and amount_usd(r) < pattern["max_amount_usd"]
        and lo <= hour < hi
        and r["status"] == "approved"
        and not r["is_fraud"]
    )


def test_the_new_fraud_pattern_starts_at_the_drift_start_and_not_before(small):
    facts = small.facts(CHARGEBACKS)
    start, pattern = ts(facts["drift"]["start"]), facts["drift"]["fraud_pattern"]
    new = set(facts["drift"]["new_pattern_transaction_ids"])
    before, after = [], []
    for key, r in small.tx.items():
        if matches_pattern(r, pattern):
            fraud = any(n["is_fraud"] == "true" for n in small.notices_of.get(key, []))
            (after if ts(r["event_ts"]) >= start else before).append(fraud)
        elif key in new:
            pytest.fail(f"{key} is in the new pattern but does not match its description")
    assert len(before) > 50 and not any(before), "the pattern must not exist before the start"
    share, n = rate(after)
    assert n > 50 and 0.4 < share < 0.6, f"{share:.2f} of {n} matching payments are fraud"
    # the original label does not know it: models trained on is_fraud miss it
    assert not any(small.tx[k]["is_fraud"] for k in new if k in small.tx)


def test_the_processor_shift_shows_after_the_drift_start_only(small):
    start = ts(small.facts(ATTEMPTS)["drift"]["start"])
    latency: dict[tuple[str, bool], list[int]] = defaultdict(list)
    for a in small.attempt_rows:
        if a["response_code"] != "91":
            latency[a["processor"], a["attempt_ts"] >= start].append(a["latency_ms"])

    def median(values):
        values = sorted(values)
        return values[len(values) // 2]

    for p in small.facts(ATTEMPTS)["processors"]:
        ratio = median(latency[p, True]) / median(latency[p, False])
        if p == "relecloud":
            assert ratio > 1.8, f"relecloud's latency after / before the start: {ratio:.2f}"
        else:
            assert 0.9 < ratio < 1.1, f"{p}'s latency moved: {ratio:.2f}"

    approval: dict[tuple[str, bool], list[int]] = defaultdict(list)
    for first, r in small.first_attempts(randomly=True):
        approval[first["processor"], ts(r["event_ts"]) >= start].append(first["approved"])
    for p in small.facts(ATTEMPTS)["processors"]:
        (b, nb), (a, na) = rate(approval[p, False]), rate(approval[p, True])
        if p == "relecloud":
            assert b - a > 0.08, f"relecloud approves {b:.2f} before (n={nb}), {a:.2f} after"
        else:
            assert abs(b - a) < 4 * math.sqrt(b * (1 - b) * (1 / nb + 1 / na)), (p, b, a)


# --- scales, determinism, the manifest ----------------------------------------------------------


@pytest.mark.parametrize("scale", list(SCALES))
def test_every_scale_generates_the_payment_operations(scale, tmp_path):
    """The first and last payments file of each scale go through the payment operations (the
    whole of medium and large would take minutes)."""
    import numpy as np

    from lakehouse.datagen import payments
    from lakehouse.datagen._common import WINDOW_END_MS
    from lakehouse.datagen._context import Context
    from lakehouse.datagen.payment_ops import Operations

    ctx = Context(out_dir=tmp_path, scale=SCALES[scale], seed=42)
    n_files = ctx.scale.payment_files
    per_file = np.diff(np.linspace(0, ctx.scale.payments, n_files + 1).astype("int64"))
    slot = (WINDOW_END_MS - payments.PAYMENTS_START_MS) // n_files
    operations = Operations(ctx)
    for f in (0, n_files - 1):
        lo = payments.PAYMENTS_START_MS + f * slot
        hi = WINDOW_END_MS if f == n_files - 1 else lo + slot
        drawn = payments._draw(ctx, f, int(per_file[f]), lo, hi)
        operations.add_file(f, drawn, 1 + int(per_file[:f].sum()), drawn.event, drawn.ingest)
    results = {r.spec.name: r for r in operations.finish()}
    attempts = results[ATTEMPTS]
    payments_done = int(per_file[0] + per_file[-1])
    assert attempts.facts["payments"] == payments_done
    assert payments_done < attempts.rows < 1.5 * payments_done
    assert 0.15 < attempts.facts["randomly_routed_payments"] / payments_done < 0.25
    if scale != "tiny":  # at tiny, a whole generation shows it (test_the_drift_is_recorded...)
        assert results[CHARGEBACKS].facts["new_pattern_fraud_transactions"] >= 1
    assert results[CHARGEBACKS].rows > results[CHARGEBACKS].facts["notices"]


def test_same_seed_same_bytes_different_seed_different_bytes(tiny, tmp_path):
    def hashes(root: Path) -> dict[str, str]:
        m = load_manifest(root)
        return {f.path: f.sha256 for d in m.ml_datasets.values() for f in d.files}

    again = tmp_path / "again"
    generate(again, scale="tiny", seed=42, sources="payments")
    assert hashes(again) == hashes(tiny.root)
    for rel, digest in hashes(again).items():
        assert hashlib.sha256((again / rel).read_bytes()).hexdigest() == digest, rel
    other = tmp_path / "other"
    generate(other, scale="tiny", seed=7, sources="payments")
    moved = {k for k, v in hashes(other).items() if hashes(tiny.root)[k] != v}
    assert moved == {k for k in hashes(other) if "/attempts/" in k or "/chargebacks/" in k}


def test_the_manifest_round_trips_and_reads_an_older_one(tiny):
    m = tiny.manifest
    assert Manifest.from_dict(json.loads(m.to_json())) == m
    older = json.loads(m.to_json())
    del older["ml_datasets"]
    assert Manifest.from_dict(older).ml_datasets == {}
    assert Manifest.from_dict(older).datasets == m.datasets
    with pytest.raises(KeyError, match="it has crm.customers.*payments.attempts"):
        m.dataset("payments.nonsense")
    assert m.rows(ATTEMPTS) == len(tiny.attempt_rows)
    assert m.dataset("payments.processors").rows == 4
    assert m.dataset("payments.response_codes").rows == 9


def test_the_command_line_lists_the_ml_datasets(tmp_path, capsys):
    assert main(["--scale", "tiny", "--out", str(tmp_path / "cli"), "--sources", "payments"]) == 0
    printed = capsys.readouterr().out
    for name in (ATTEMPTS, CHARGEBACKS, "payments.processors", "payments.response_codes"):
        assert name in printed


def test_timestamps_are_utc_and_in_range(tiny):
    first = min(a["attempt_ts"] for a in tiny.attempt_rows)
    last = max(a["attempt_ts"] for a in tiny.attempt_rows)
    assert first.tzinfo is not None and first.utcoffset() == timedelta(0)
    assert datetime(2026, 5, 20, tzinfo=UTC) < first and last < datetime(2026, 7, 1, tzinfo=UTC)
