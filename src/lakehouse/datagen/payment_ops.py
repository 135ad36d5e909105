"""The payment operations behind the card payments, for the ML module: the processors a payment
is routed to, every authorization attempt and retry with its ISO 8583 response code and latency,
and the chargebacks and fraud reports that reveal fraud days after a payment.

The story each payment follows (``payments.transactions`` is left exactly as it was; this data
is drawn from streams of its own and agrees with it):

1. **Routing.** A share of payments (:data:`RANDOM_ROUTING_SHARE`) goes to a processor drawn
   uniformly at random, an exploration slice from which routing can be learned without the
   rule's bias; the rest follow :func:`rule_processor`. Retries stay on the first processor.
2. **Approval.** A first attempt is approved with the probability of :func:`approval_probability`
   (a logistic model of processor, card network, region of the country, merchant category group
   and amount; the parameters are :data:`APPROVAL_MODEL`), given that the payment ends approved.
3. **Retries.** A payment the ledger records as approved but whose first attempt was declined
   (with a soft code) was retried until approved; a payment recorded as declined was retried by
   the merchant's policy (:data:`RETRY_POLICY`), every time in vain, and its last code is the one
   of its ``decline_reason``. A retry after a soft decline succeeds with the probability of
   :func:`retry_success_probability` (the code and the wait decide); after a hard decline, never.
   Chains are drawn forward and kept when they end as the ledger says, so the waits and codes
   are those of the forward model, conditioned on the outcome.
4. **Labels.** Fraud becomes known through a notice (``payments.chargebacks``): a chargeback for
   an approved fraudulent payment, an issuer's fraud report for a declined one, days later;
   some legitimate payments get non-fraud disputes.
5. **Drift** (:data:`DRIFT`): from 2026-06-20 a new fraud pattern appears (small night-time
   digital goods payments, which the original ``is_fraud`` label does not know) and the
   processor relecloud degrades (latency up, approval odds down).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import _reference as ref
from ._common import (
    DAY_MS,
    HOUR_MS,
    RowPicker,
    TextSink,
    arrange,
    arrow_bools,
    arrow_ints,
    arrow_strings,
    arrow_timestamps,
    defect_count,
    finish_file,
    iso_ms,
    money,
    ms_at,
)
from ._context import Context, DatasetResult
from .population import LOCATION_COUNTRY
from .schema import Column, DatasetSpec

# --------------------------------------------------------------------------- the datasets

PROCESSORS = ("woodgrove", "relecloud", "lamna", "trey")
WOODGROVE, RELECLOUD, LAMNA, TREY = range(len(PROCESSORS))

ATTEMPTS = DatasetSpec(
    name="payments.attempts",
    source="payments",
    path="payments/attempts",
    file_format="parquet",
    columns=(
        Column("attempt_id", "string", True, "Business key: AT and ten digits."),
        Column(
            "transaction_id",
            "string",
            True,
            "The payment this attempt authorizes; refers to payments.transactions.",
        ),
        Column("attempt_no", "int", True, "1 for a payment's first attempt, 2 to 4 for retries."),
        Column(
            "retry_of",
            "string",
            description="The attempt_id of the payment's previous attempt; null on attempt 1.",
        ),
        Column(
            "attempt_ts",
            "timestamp",
            True,
            "When the authorization request went out. A payment's last attempt is at the "
            "payment's event_ts; its earlier attempts come before (the wait before a retry is "
            "attempt_ts minus the previous attempt's attempt_ts).",
        ),
        Column(
            "processor",
            "string",
            True,
            "woodgrove, relecloud, lamna or trey (payments.processors). Retries stay on the "
            "processor of the first attempt.",
        ),
        Column(
            "routed_randomly",
            "boolean",
            True,
            "True: the processor was drawn uniformly at random (the exploration share, 20% of "
            "payments), so routing can be learned without bias; false: the routing rule chose "
            "it. The same on every attempt of a payment.",
        ),
        Column(
            "response_code",
            "string",
            True,
            "ISO 8583 response code: 00 approved; soft declines 05, 51, 91; hard declines 14, "
            "43, 54, 59, N7 (payments.response_codes).",
        ),
        Column("approved", "boolean", True, "True when response_code is 00."),
        Column("latency_ms", "int", True, "How long the processor took to answer."),
    ),
    key=("attempt_id",),
    description=(
        "Every authorization attempt behind payments.transactions, one Parquet file per "
        "payments file, in attempt_ts order. A payment's last attempt decides its status: "
        "approved payments end with a 00, declined ones with the code of their decline_reason. "
        "Clean: no injected defects."
    ),
)

CHARGEBACKS = DatasetSpec(
    name="payments.chargebacks",
    source="payments",
    path="payments/chargebacks",
    file_format="csv",
    columns=(
        Column("chargeback_id", "string", True, "Business key: CB and eight digits."),
        Column("transaction_id", "string", True, "Refers to payments.transactions."),
        Column(
            "kind",
            "string",
            True,
            "chargeback (the cardholder disputed an approved payment) or fraud_report (the "
            "issuer reported a fraudulent payment it declined).",
        ),
        Column(
            "reason",
            "string",
            True,
            "fraud_card_absent or fraud_card_present (fraud); product_not_received, "
            "not_as_described, duplicate_processing or credit_not_processed (not fraud).",
        ),
        Column("is_fraud", "boolean", True, "True when the reason is fraud: the honest label."),
        Column("amount", "decimal(12,2)", True, "The payment's amount, in its currency."),
        Column("currency", "string", True),
        Column("dispute_ts", "timestamp", True, "When the cardholder or the issuer raised it."),
        Column(
            "label_available_ts",
            "timestamp",
            True,
            "When the notice reached the merchant: the first moment its label may be used. "
            "Always after the payment's event_ts and ingest_ts.",
        ),
    ),
    key=("chargeback_id",),
    description=(
        "The acquirer's chargeback and fraud notices up to 2026-07-31, one CSV file per month "
        "of label_available_ts. Every fraudulent payment gets exactly one fraud notice "
        "(is_fraud true), days after it; a payment without one is legitimate as far as anyone "
        "can know, once it is old enough. Some legitimate payments get a non-fraud dispute."
    ),
    defect_rules={
        "duplicates": "A notice delivered again later in the same file (row key chargeback_id).",
    },
)

PROCESSOR_TABLE = DatasetSpec(
    name="payments.processors",
    source="payments",
    path="payments/processors.csv",
    file_format="csv",
    columns=(
        Column("processor", "string", True, "Business key."),
        Column("description", "string", True, "What the processor is good at."),
        Column("fee_bps", "int", True, "Fee per attempt in basis points of the amount."),
        Column("fee_fixed_usd", "decimal(6,2)", True, "Fixed fee per attempt, in USD."),
        Column("median_latency_ms", "int", True, "Typical response time, before any incident."),
    ),
    key=("processor",),
    description="The four payment processors (fictional), their fees and typical latency.",
)

RESPONSE_CODE_TABLE = DatasetSpec(
    name="payments.response_codes",
    source="payments",
    path="payments/response_codes.csv",
    file_format="csv",
    columns=(
        Column("response_code", "string", True, "Business key: ISO 8583 field 39."),
        Column("meaning", "string", True),
        Column(
            "decline_type",
            "string",
            description="soft (a retry may succeed) or hard (a retry never does); empty for 00.",
        ),
        Column(
            "decline_reason",
            "string",
            description=(
                "The decline_reason of payments.transactions a payment declined with this code "
                "as its last answer carries; empty for 00 and 91 (a 91 is never the last)."
            ),
        ),
    ),
    key=("response_code",),
    description="The response codes of payments.attempts and whether a retry can succeed.",
)

DATASETS = (ATTEMPTS, CHARGEBACKS, PROCESSOR_TABLE, RESPONSE_CODE_TABLE)

# processor -> (description, fee in basis points, fixed fee in cents, median latency in ms)
PROCESSOR_FACTS: dict[str, tuple[str, int, int, int]] = {
    "woodgrove": (
        "The incumbent North American acquirer: strongest on Visa in the US and Canada.",
        190,
        10,
        180,
    ),
    "relecloud": (
        "A European acquirer: strongest in Great Britain and the euro area, weak on Discover.",
        170,
        12,
        260,
    ),
    "lamna": (
        "A specialist for large amounts, travel and American Express; slower and dearer.",
        240,
        15,
        340,
    ),
    "trey": (
        "The low-cost processor: cheapest and fastest, strong on Mastercard and small digital "
        "payments, weak on large amounts and travel.",
        140,
        5,
        120,
    ),
}

# --------------------------------------------------------------------------- the model

RANDOM_ROUTING_SHARE = 0.2
REGIONS = ("north_america", "europe", "rest_of_world")
REGION_OF_COUNTRY = {
    "US": "north_america",
    "CA": "north_america",
    "GB": "europe",
    "DE": "europe",
    "FR": "europe",
    "ES": "europe",
    "IT": "europe",
    "NL": "europe",
    "IE": "europe",
    "JP": "rest_of_world",
    "MX": "rest_of_world",
    "SG": "rest_of_world",
}
CATEGORY_GROUPS = ("everyday", "cash", "goods", "digital", "travel")
CATEGORY_GROUP = {
    "grocery": "everyday",
    "restaurants": "everyday",
    "fuel": "everyday",
    "pharmacy": "everyday",
    "atm": "cash",
    "electronics_store": "goods",
    "online_retail": "goods",
    "digital_goods": "digital",
    "streaming": "digital",
    "travel": "travel",
}
AMOUNT_CENTRE_USD = 50.0
LARGE_AMOUNT_USD = 500.0

# Log-odds of a first attempt's approval, summed over the terms, per processor in PROCESSORS
# order; the amount term is a slope per decade of amount_usd around 50 USD.
APPROVAL_MODEL: dict[str, dict] = {
    "intercept": {"all": (1.6, 1.4, 1.3, 1.1)},
    "card_network": {
        "visa": (0.5, 0.3, 0.0, -0.1),
        "mastercard": (-0.4, -0.3, 0.0, 0.8),
        "amex": (-0.6, -0.8, 0.6, -0.3),
        "discover": (0.0, -1.0, -0.2, 0.3),
    },
    "region": {
        "north_america": (0.4, -0.6, 0.0, 0.2),
        "europe": (-0.6, 0.9, 0.0, 0.1),
        "rest_of_world": (-0.5, -0.2, 0.4, -0.6),
    },
    "category_group": {
        "everyday": (0.2, 0.1, -0.3, 0.3),
        "cash": (0.0, 0.0, -0.5, 0.2),
        "goods": (0.0, 0.0, 0.3, -0.2),
        "digital": (-0.2, 0.0, -0.2, 0.4),
        "travel": (-0.4, 0.0, 0.7, -0.6),
    },
    "log10_amount_usd_minus_log10_50": {"all": (-0.5, -0.4, 0.2, -0.9)},
}

# ISO 8583 response codes: code -> (meaning, decline type, decline_reason of a final decline)
RESPONSE_CODES: dict[str, tuple[str, str | None, str | None]] = {
    "00": ("approved", None, None),
    "05": ("do not honor", "soft", "do_not_honor"),
    "51": ("insufficient funds", "soft", "insufficient_funds"),
    "91": ("issuer or switch unavailable", "soft", None),
    "14": ("invalid card number (no such account)", "hard", "suspected_fraud"),
    "43": ("stolen card, pick up", "hard", "suspected_fraud"),
    "54": ("expired card", "hard", "card_expired"),
    "59": ("suspected fraud", "hard", "suspected_fraud"),
    "N7": ("CVV2 mismatch", "hard", "incorrect_cvv"),
}
CODES = tuple(RESPONSE_CODES)
CODE_INDEX = {code: i for i, code in enumerate(CODES)}
SOFT = np.array([RESPONSE_CODES[c][1] == "soft" for c in CODES])
# decline_reason (index into ref.DECLINE_REASONS) -> (codes, weights) of a payment's last answer
REASON_CODES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "insufficient_funds": (("51",), (1.0,)),
    "do_not_honor": (("05",), (1.0,)),
    "card_expired": (("54",), (1.0,)),
    "incorrect_cvv": (("N7",), (1.0,)),
    "suspected_fraud": (("59", "43", "14"), (0.6, 0.25, 0.15)),
}

# A retry after a soft decline succeeds with floor + gain * (1 - exp(-wait / time_constant)):
# an unavailable issuer is back within minutes, funds arrive over days, "do not honor" softens
# over hours. A retry after a hard decline never succeeds.
RETRY_SUCCESS: dict[str, tuple[float, float, float]] = {
    "91": (0.0, 0.9, 90.0),
    "51": (0.05, 0.6, 86_400.0),
    "05": (0.10, 0.35, 21_600.0),
}
RETRY_POLICY = {
    "description": (
        "The merchants' current policy, which a retry model should beat: after a soft decline "
        "retry with probability 0.6, after a hard one with 0.25 (a waste: it never works), at "
        "most 4 attempts; the wait is log-uniform, 5 s to 3 min at a till or ATM (pos, atm), "
        "10 s to 72 h online."
    ),
    "retry_probability": {"soft": 0.6, "hard": 0.25},
    "max_attempts": 4,
    "wait_seconds": {"pos": [5, 180], "atm": [5, 180], "online": [10, 259_200]},
}
MAX_ATTEMPTS = 4
_WAIT_PRESENT = RETRY_POLICY["wait_seconds"]["pos"]
_WAIT_ONLINE = RETRY_POLICY["wait_seconds"]["online"]
FIRST_91_SHARE = 0.1  # of retried declined payments: the issuer was unavailable at first

LATENCY_SIGMA = 0.35
AWAY_LATENCY_MS = 120  # woodgrove outside North America, relecloud outside Europe
TIMEOUT_MS = (3_000, 9_000)  # a 91 is a timeout

DRIFT_START = date(2026, 6, 20)
DRIFT_START_MS = ms_at(DRIFT_START)
DRIFT_LATENCY_FACTOR = 2.2
DRIFT_APPROVAL_SHIFT = -0.9
PATTERN = {
    "channel": "online",
    "merchant_category": "digital_goods",
    "max_amount_usd": 20,
    "utc_hours": [0, 6],
    "fraud_share": 0.5,
}
DRIFT: dict = {
    "start": iso_ms(np.array([DRIFT_START_MS]))[0],
    "fraud_pattern": {
        "name": "night_digital_card_testing",
        "description": (
            "From the start on, a ring tests stolen cards with small online payments at "
            "digital_goods merchants at night: half of the approved online digital_goods "
            "payments under 20 USD with event_ts between 00:00 and 06:00 UTC (rounded, at least "
            "one per payments file that has any) are fraud. Before the start none is. "
            "payments.transactions.is_fraud does not flag them; payments.chargebacks does."
        ),
        **PATTERN,
    },
    "processor_shift": {
        "processor": "relecloud",
        "description": (
            "relecloud degrades: latency_ms is 2.2 times higher on its attempts from the start, "
            "its first attempts' approval log-odds fall by 0.9 for payments from the start, and "
            "more of its first declines are 91."
        ),
        "latency_factor": DRIFT_LATENCY_FACTOR,
        "approval_logit_shift": DRIFT_APPROVAL_SHIFT,
    },
}

ROUTING_RULE = (
    "card_network = amex -> lamna",
    "country in Europe (GB, DE, FR, ES, IT, NL, IE) -> relecloud",
    "amount_usd >= 500 -> lamna",
    "merchant_category in (digital_goods, streaming) -> trey",
    "otherwise -> woodgrove",
)

FEED_AS_OF = "2026-07-31"
FEED_MONTHS = ("2026-06", "2026-07")
MAX_DISPUTE_DAYS = 25  # with at most 3 days of processing, every notice is in by 2026-07-31
FRAUD_REASONS = ("fraud_card_absent", "fraud_card_present")
DISPUTE_REASONS = (
    "product_not_received",
    "not_as_described",
    "duplicate_processing",
    "credit_not_processed",
)
DISPUTE_P = {
    "online": (0.4, 0.3, 0.15, 0.15),
    "present": (0.0, 0.3, 0.4, 0.3),
}
DISPUTE_SHARE = 0.004  # of approved legitimate payments

_NETWORKS = ref.CARD_NETWORKS
_INTERCEPT = np.array(APPROVAL_MODEL["intercept"]["all"])
_NETWORK_TERM = np.array([APPROVAL_MODEL["card_network"][n] for n in _NETWORKS])
_REGION_TERM = np.array([APPROVAL_MODEL["region"][r] for r in REGIONS])
_GROUP_TERM = np.array([APPROVAL_MODEL["category_group"][g] for g in CATEGORY_GROUPS])
_AMOUNT_SLOPE = np.array(APPROVAL_MODEL["log10_amount_usd_minus_log10_50"]["all"])
_REGION_OF_LOCATION = np.array(
    [REGIONS.index(REGION_OF_COUNTRY[country]) for country in LOCATION_COUNTRY]
)
_GROUP_INDEX = {c: CATEGORY_GROUPS.index(g) for c, g in CATEGORY_GROUP.items()}
_MEDIAN_LATENCY = np.array([PROCESSOR_FACTS[p][3] for p in PROCESSORS], dtype="float64")
_RETRY_FLOOR = np.zeros(len(CODES))
_RETRY_GAIN = np.zeros(len(CODES))
_RETRY_TAU = np.ones(len(CODES))
for _code, (_floor, _gain, _tau) in RETRY_SUCCESS.items():
    _RETRY_FLOOR[CODE_INDEX[_code]] = _floor
    _RETRY_GAIN[CODE_INDEX[_code]] = _gain
    _RETRY_TAU[CODE_INDEX[_code]] = _tau


def approval_probability(
    processor: np.ndarray,
    network: np.ndarray,
    region: np.ndarray,
    group: np.ndarray,
    amount_usd: np.ndarray,
    after_drift: np.ndarray,
) -> np.ndarray:
    """The designed odds that a first attempt is approved, given that the payment ends approved.

    Arguments are arrays of indices into PROCESSORS, ``ref.CARD_NETWORKS``, REGIONS and
    CATEGORY_GROUPS, the amount in USD and whether the payment is on or after the drift start.
    """
    logit = (
        _INTERCEPT[processor]
        + _NETWORK_TERM[network, processor]
        + _REGION_TERM[region, processor]
        + _GROUP_TERM[group, processor]
        + _AMOUNT_SLOPE[processor] * (np.log10(amount_usd) - math.log10(AMOUNT_CENTRE_USD))
        + np.where(after_drift & (processor == RELECLOUD), DRIFT_APPROVAL_SHIFT, 0.0)
    )
    return 1.0 / (1.0 + np.exp(-logit))


def rule_processor(
    network: np.ndarray, region: np.ndarray, category: list[str], amount_usd: np.ndarray
) -> np.ndarray:
    """The routing rule (:data:`ROUTING_RULE`, first match wins) as processor indices."""
    chosen = np.full(len(amount_usd), WOODGROVE)
    digital = np.array([c in ("digital_goods", "streaming") for c in category], dtype=bool)
    # written from the last rule to the first, so the first that matches is the one that stays
    chosen[digital] = TREY
    chosen[amount_usd >= LARGE_AMOUNT_USD - 0.005] = LAMNA  # 499.995 rounds to 500.00
    chosen[region == REGIONS.index("europe")] = RELECLOUD
    chosen[network == _NETWORKS.index("amex")] = LAMNA
    return chosen


def retry_success_probability(code: np.ndarray, wait_s: np.ndarray) -> np.ndarray:
    """The odds that a retry succeeds after a decline with ``code`` (indices into CODES) and a
    wait of ``wait_s`` seconds; 0 after a hard decline."""
    return _RETRY_FLOOR[code] + _RETRY_GAIN[code] * (1.0 - np.exp(-wait_s / _RETRY_TAU[code]))


def _waits(rng: np.random.Generator, present: np.ndarray) -> np.ndarray:
    """Seconds before a retry, by the merchants' policy: log-uniform per channel."""
    u = rng.random(present.size)
    (at_till, longest_at_till), (online, longest_online) = _WAIT_PRESENT, _WAIT_ONLINE
    lo = np.where(present, math.log(at_till), math.log(online))
    hi = np.where(present, math.log(longest_at_till), math.log(longest_online))
    return np.exp(lo + (hi - lo) * u)


def _soft_codes(rng, processor, amount_usd, after_drift) -> np.ndarray:
    """The code of a first decline of a payment that ends approved: 91 more often on trey and
    on a degraded relecloud, 51 more often the larger the amount."""
    w91 = 0.15 + 0.10 * (processor == TREY) + 0.25 * ((processor == RELECLOUD) & after_drift)
    size = np.clip(np.log10(amount_usd) - math.log10(AMOUNT_CENTRE_USD), -1.0, 1.5)
    w51 = 0.45 + 0.15 * size
    w05 = np.maximum(1.0 - w91 - w51, 0.05)
    total = w91 + w51 + w05
    u = rng.random(processor.size) * total
    return np.where(
        u < w91, CODE_INDEX["91"], np.where(u < w91 + w51, CODE_INDEX["51"], CODE_INDEX["05"])
    )


def _approved_chains(rng, processor, amount_usd, after_drift, present):
    """Chains of payments that end approved after a declined first attempt: a soft first code,
    then retries until one succeeds (at most MAX_ATTEMPTS attempts). A forward draw that does
    not succeed in time is drawn again, code included."""
    k = processor.size
    length = np.zeros(k, dtype="int64")
    codes = np.zeros((k, MAX_ATTEMPTS), dtype="int64")
    waits = np.zeros((k, MAX_ATTEMPTS), dtype="float64")
    pending = np.arange(k)
    for _ in range(60):
        q = pending.size
        if q == 0:
            break
        code = _soft_codes(rng, processor[pending], amount_usd[pending], after_drift[pending])
        success_at = np.full(q, -1)
        wait = np.zeros((q, MAX_ATTEMPTS))
        for j in range(1, MAX_ATTEMPTS):
            wait[:, j] = _waits(rng, present[pending])
            hit = rng.random(q) < retry_success_probability(code, wait[:, j])
            success_at[(success_at < 0) & hit] = j
        done = success_at >= 0
        rows, last = pending[done], success_at[done]
        length[rows] = last + 1
        codes[rows] = code[done, None]
        codes[rows, last] = CODE_INDEX["00"]
        waits[rows] = np.where(np.arange(MAX_ATTEMPTS) <= last[:, None], wait[done], 0.0)
        pending = pending[~done]
    if pending.size:  # practically never: an issuer that was unavailable, then answered
        length[pending] = 2
        codes[pending, 0], codes[pending, 1] = CODE_INDEX["91"], CODE_INDEX["00"]
        waits[pending, 1] = np.where(present[pending], _WAIT_PRESENT[1], 600.0)
    return length, codes, waits


def _declined_chains(rng, reason, present):
    """Chains of payments that end declined: the merchant's policy decides how often it
    retried; each retry failed, so its wait is drawn from the policy weighted by the odds of
    failing; the last code is the one of the payment's decline_reason."""
    k = reason.size
    final = np.empty(k, dtype="int64")
    u = rng.random(k)
    for r, name in enumerate(ref.DECLINE_REASONS):
        codes_r, weights_r = REASON_CODES[name]
        edges = np.cumsum(weights_r)
        pick = np.minimum(np.searchsorted(edges, u, side="right"), len(codes_r) - 1)
        sel = reason == r
        final[sel] = np.array([CODE_INDEX[c] for c in codes_r])[pick[sel]]
    soft = SOFT[final]
    p_retry = np.where(
        soft, RETRY_POLICY["retry_probability"]["soft"], RETRY_POLICY["retry_probability"]["hard"]
    )
    length = np.ones(k, dtype="int64")
    going = np.ones(k, dtype=bool)
    for _ in range(1, MAX_ATTEMPTS):
        going &= rng.random(k) < p_retry
        length += going
    codes = np.repeat(final[:, None], MAX_ATTEMPTS, axis=1)
    first_91 = (length >= 2) & (rng.random(k) < FIRST_91_SHARE)
    codes[first_91, 0] = CODE_INDEX["91"]
    waits = np.zeros((k, MAX_ATTEMPTS))
    for j in range(1, MAX_ATTEMPTS):
        prev = codes[:, j - 1]
        wait = _waits(rng, present)
        failed = rng.random(k) >= retry_success_probability(prev, wait)
        for _ in range(60):
            if failed.all():
                break
            redo = np.flatnonzero(~failed)
            wait[redo] = _waits(rng, present[redo])
            failed[redo] = rng.random(redo.size) >= retry_success_probability(
                prev[redo], wait[redo]
            )
        shortest = np.where(present, _WAIT_PRESENT[0], _WAIT_ONLINE[0])
        wait[~failed] = shortest[~failed]
        waits[:, j] = np.where(length > j, wait, 0.0)
    return length, codes, waits


class Operations:
    """Builds the attempts file of each payments file as it is written, collects the payments
    that get a notice, and writes the chargebacks and the two reference tables at the end."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.attempts = DatasetResult(ATTEMPTS)
        self.next_attempt = 1
        self.notices: list[dict[str, np.ndarray | list]] = []
        self.count: Counter = Counter()
        self.first_by_processor = np.zeros((len(PROCESSORS), 2), dtype="int64")  # [n, approved]

    def add_file(self, f: int, d, first_id: int, event: np.ndarray, ingest: np.ndarray) -> None:
        """``d``: the file's drawn payments (``payments.Draw``); ``event`` and ``ingest``: their
        times as delivered (a late event's event_ts is earlier than drawn)."""
        ctx = self.ctx
        n = d.size
        rng = ctx.rng("payments", "attempts", f)
        network = ctx.customers.card_network[d.who]
        region = _REGION_OF_LOCATION[d.where]
        group = np.array([_GROUP_INDEX[c] for c in d.category], dtype="int64")
        fx = np.array([ref.FX_PER_USD[c] for c in d.currency])
        amount_usd = d.cents / fx / 100  # what amount / FX gives, before rounding to the cent
        after = event >= DRIFT_START_MS
        present = d.channel != 1  # pos and atm: the customer is at the till

        randomly = rng.random(n) < RANDOM_ROUTING_SHARE
        drawn = rng.integers(len(PROCESSORS), size=n)
        processor = np.where(
            randomly, drawn, rule_processor(network, region, d.category, amount_usd)
        )
        p_first = approval_probability(processor, network, region, group, amount_usd, after)
        ends_approved = ~d.declined
        first_ok = ends_approved & (rng.random(n) < p_first)

        length = np.ones(n, dtype="int64")
        codes = np.zeros((n, MAX_ATTEMPTS), dtype="int64")
        waits = np.zeros((n, MAX_ATTEMPTS))
        a = np.flatnonzero(ends_approved & ~first_ok)
        length[a], codes[a], waits[a] = _approved_chains(
            rng, processor[a], amount_usd[a], after[a], present[a]
        )
        b = np.flatnonzero(d.declined)
        length[b], codes[b], waits[b] = _declined_chains(rng, d.reason[b], present[b])

        # times: the last attempt at the payment's event_ts, each earlier one a wait before
        wait_ms = np.floor(waits * 1000).astype("int64")
        from_here = np.cumsum(wait_ms[:, ::-1], axis=1)[:, ::-1]  # waits of attempts j and on
        times = event[:, None] - (from_here - wait_ms)  # minus the waits of the later attempts
        tx, slot = np.nonzero(np.arange(MAX_ATTEMPTS)[None, :] < length[:, None])
        m = tx.size
        attempt_ts = times[tx, slot]
        code = codes[tx, slot]
        proc = processor[tx]

        latency = _MEDIAN_LATENCY[proc] * np.exp(LATENCY_SIGMA * rng.standard_normal(m))
        away = ((proc == WOODGROVE) & (region[tx] != 0)) | ((proc == RELECLOUD) & (region[tx] != 1))
        latency = latency + AWAY_LATENCY_MS * away
        latency = np.where(
            (proc == RELECLOUD) & (attempt_ts >= DRIFT_START_MS),
            latency * DRIFT_LATENCY_FACTOR,
            latency,
        )
        timeout = rng.integers(TIMEOUT_MS[0], TIMEOUT_MS[1] + 1, size=m)
        latency = np.where(code == CODE_INDEX["91"], timeout, np.round(latency)).astype("int64")

        ids = self.next_attempt + np.arange(m)
        self.next_attempt += m
        order = np.lexsort((ids, attempt_ts))
        id_text = [f"AT{i:010d}" for i in ids.tolist()]
        retry_of = [id_text[i - 1] if s else None for i, s in enumerate(slot.tolist())]
        take = order.tolist()
        tx_text = [f"TX{first_id + t:010d}" for t in tx.tolist()]
        table = pa.Table.from_arrays(
            [
                arrow_strings([id_text[i] for i in take]),
                arrow_strings([tx_text[i] for i in take]),
                arrow_ints(slot[order] + 1),
                arrow_strings([retry_of[i] for i in take]),
                arrow_timestamps(attempt_ts[order]),
                arrow_strings([PROCESSORS[p] for p in proc[order].tolist()]),
                arrow_bools(randomly[tx][order]),
                arrow_strings([CODES[c] for c in code[order].tolist()]),
                arrow_bools(code[order] == CODE_INDEX["00"]),
                arrow_ints(latency[order]),
            ],
            schema=ATTEMPTS.arrow_schema,
        )
        rel = f"payments/attempts/attempts_{f + 1:04d}.parquet"
        path = ctx.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="snappy")
        ctx.tick(m)
        self.attempts.files.append(finish_file(path, rel, m, self.attempts.log))

        self._count(randomly, processor, first_ok, length, codes, waits)
        self._collect_notices(f, d, first_id, event, ingest, amount_usd)

    def _count(self, randomly, processor, first_ok, length, codes, waits) -> None:
        self.count["payments"] += processor.size
        self.count["attempts"] += int(length.sum())
        self.count["randomly_routed_payments"] += int(randomly.sum())
        np.add.at(self.first_by_processor, (processor[randomly], 0), 1)
        np.add.at(self.first_by_processor, (processor[randomly & first_ok], 1), 1)
        for j in range(1, MAX_ATTEMPTS):
            retried = length > j
            soft = SOFT[codes[retried, j - 1]]
            ok = codes[retried, j] == CODE_INDEX["00"]
            self.count["retries_after_soft"] += int(soft.sum())
            self.count["retries_after_soft_approved"] += int((soft & ok).sum())
            self.count["retries_after_hard"] += int((~soft).sum())
            self.count["retries_after_hard_approved"] += int((~soft & ok).sum())

    def _collect_notices(self, f, d, first_id, event, ingest, amount_usd) -> None:
        """Which of this file's payments get a notice, of which kind, and when."""
        rng = self.ctx.rng("payments", "chargebacks", f)
        n = d.size
        hour = (event % DAY_MS) // HOUR_MS
        lo_hour, hi_hour = PATTERN["utc_hours"]
        matches = (
            ~d.fraud
            & ~d.declined
            & (d.channel == 1)
            & np.array([c == PATTERN["merchant_category"] for c in d.category], dtype=bool)
            & (amount_usd < PATTERN["max_amount_usd"] - 0.005)  # under 20.00 once rounded
            & (hour >= lo_hour)
            & (hour < hi_hour)
            & (event >= DRIFT_START_MS)
        )
        # half of them (rounded, at least one), so even the smallest scale shows the pattern
        candidates = np.flatnonzero(matches)
        chosen = round(candidates.size * PATTERN["fraud_share"])
        chosen = max(chosen, 1) if candidates.size else 0
        pattern = np.zeros(n, dtype=bool)
        pattern[rng.choice(candidates, size=chosen, replace=False)] = True
        dispute = ~d.fraud & ~pattern & ~d.declined & (rng.random(n) < DISPUTE_SHARE)
        online = d.channel == 1
        u = rng.random(n)
        edges_online = np.cumsum(DISPUTE_P["online"])
        edges_present = np.cumsum(DISPUTE_P["present"])
        dispute_reason = np.where(
            online,
            np.searchsorted(edges_online, u * edges_online[-1], side="right"),
            np.searchsorted(edges_present, u * edges_present[-1], side="right"),
        )
        dispute_reason = np.minimum(dispute_reason, len(DISPUTE_REASONS) - 1)
        # delays in days: a chargeback is filed about a week after a fraud (median 7 days), a
        # dispute later (median 12), an issuer's fraud report within days; processing follows
        longest = MAX_DISPUTE_DAYS
        chargeback_days = np.clip(np.exp(math.log(7.0) + 0.5 * rng.standard_normal(n)), 1, longest)
        dispute_days = np.clip(np.exp(math.log(12.0) + 0.5 * rng.standard_normal(n)), 2, longest)
        report_days = rng.uniform(0.5, 3.0, size=n)
        processing_days = rng.uniform(0.25, 3.0, size=n)
        report_processing = rng.uniform(0.25, 1.0, size=n)

        fraud_report = d.fraud & d.declined
        fraud_chargeback = (d.fraud & ~d.declined) | pattern
        kept = np.flatnonzero(fraud_report | fraud_chargeback | dispute)
        days = np.where(
            fraud_report, report_days, np.where(fraud_chargeback, chargeback_days, dispute_days)
        )
        after_days = np.where(fraud_report, report_processing, processing_days)
        dispute_ts = event + np.floor(days * DAY_MS).astype("int64")
        label_ts = np.maximum(dispute_ts, ingest) + np.floor(after_days * DAY_MS).astype("int64")
        reason = np.where(
            fraud_report | fraud_chargeback,
            np.where(online, 0, 1),  # index into FRAUD_REASONS
            len(FRAUD_REASONS) + dispute_reason,
        )
        self.notices.append(
            {
                "transaction_id": [f"TX{first_id + i:010d}" for i in kept.tolist()],
                "kind": np.where(fraud_report, 1, 0)[kept],
                "reason": reason[kept],
                "is_fraud": (fraud_report | fraud_chargeback)[kept],
                "amount": [money(c) for c in d.cents[kept].tolist()],
                "currency": [d.currency[i] for i in kept.tolist()],
                "event": event[kept],
                "dispute": dispute_ts[kept],
                "label": label_ts[kept],
                "legacy": d.fraud[kept],
                "pattern": pattern[kept],
            }
        )

    def finish(self) -> list[DatasetResult]:
        return [
            self._attempts_result(),
            self._chargebacks(),
            _processors(self.ctx),
            _response_codes(self.ctx),
        ]

    def _attempts_result(self) -> DatasetResult:
        c = self.count
        n, ok = self.first_by_processor[:, 0], self.first_by_processor[:, 1]
        self.attempts.facts = {
            "payments": c["payments"],
            "attempts": c["attempts"],
            "processors": list(PROCESSORS),
            "random_routing_share": RANDOM_ROUTING_SHARE,
            "randomly_routed_payments": c["randomly_routed_payments"],
            "routing_rule": list(ROUTING_RULE),
            "approval_model": {
                "description": (
                    "Log-odds that a first attempt is approved, given that the payment ends "
                    "approved (a payment the ledger records as declined is declined on every "
                    "attempt): the sum of the terms for its processor (values in the order of "
                    "processors), with region from country, category_group from "
                    "merchant_category, and the amount term times log10(amount_usd) - "
                    "log10(50); relecloud's shifts by approval_logit_shift for payments from "
                    "the drift start."
                ),
                "regions": REGION_OF_COUNTRY,
                "category_groups": CATEGORY_GROUP,
                **{k: {kk: list(vv) for kk, vv in v.items()} for k, v in APPROVAL_MODEL.items()},
            },
            "first_attempt_approval_rate_randomly_routed": {
                p: round(float(ok[i] / n[i]), 4) if n[i] else None for i, p in enumerate(PROCESSORS)
            },
            "response_codes": {
                code: {"meaning": meaning, "decline_type": kind}
                for code, (meaning, kind, _) in RESPONSE_CODES.items()
            },
            "retry_policy": RETRY_POLICY,
            "retry_success": {
                "description": (
                    "After a soft decline with code c and a wait of w seconds a retry succeeds "
                    "with probability floor + gain * (1 - exp(-w / time_constant_s)); after a "
                    "hard decline never."
                ),
                **{
                    code: {"floor": fl, "gain": g, "time_constant_s": t}
                    for code, (fl, g, t) in RETRY_SUCCESS.items()
                },
            },
            "retries_after_soft_decline": c["retries_after_soft"],
            "retries_after_soft_decline_approved": c["retries_after_soft_approved"],
            "retries_after_hard_decline": c["retries_after_hard"],
            "retries_after_hard_decline_approved": c["retries_after_hard_approved"],
            "drift": DRIFT,
        }
        return self.attempts

    def _chargebacks(self) -> DatasetResult:
        ctx = self.ctx
        result = DatasetResult(CHARGEBACKS)
        cols = {k: _concat([part[k] for part in self.notices]) for k in self.notices[0]}
        tx = cols["transaction_id"]
        order = np.lexsort((np.arange(len(tx)), cols["label"]))
        ids = [f"CB{i:08d}" for i in range(1, len(tx) + 1)]
        reasons = FRAUD_REASONS + DISPUTE_REASONS
        kinds = ("chargeback", "fraud_report")
        rows = []
        for rank, i in enumerate(order.tolist()):
            rows.append(
                [
                    ids[rank],
                    tx[i],
                    kinds[int(cols["kind"][i])],
                    reasons[int(cols["reason"][i])],
                    "true" if cols["is_fraud"][i] else "false",
                    cols["amount"][i],
                    cols["currency"][i],
                ]
            )
        label = cols["label"][order]
        dispute_text, label_text = iso_ms(cols["dispute"][order]), iso_ms(label)
        for row, a, b in zip(rows, dispute_text, label_text):
            row += [a, b]
        months = [t[:7] for t in label_text]
        late = sorted(set(months) - set(FEED_MONTHS))
        if late:  # the delays are bounded so that this cannot happen
            raise AssertionError(f"notices after the feed's last month: {late}")
        for month in FEED_MONTHS:  # every month, even an empty one: the same files at any seed
            members = [r for r, mo in zip(rows, months) if mo == month]
            rel = f"payments/chargebacks/chargebacks_{month}.csv"
            rng = ctx.rng("payments", "chargebacks", "defects", month)
            m = len(members)
            picker = RowPicker(m, rng)
            sources = picker.pick(defect_count(m, 0.02)).tolist()
            copies = [(s, min(m - 1, s + int(rng.integers(1, 20)))) for s in sources]
            final, is_copy = arrange(m, copies=copies)
            sink = TextSink(ctx.out_dir, rel, header=list(CHARGEBACKS.column_names))
            out = []
            for r, copy in zip(final.tolist(), is_copy.tolist()):
                if copy:
                    result.log.add("duplicates", members[r][0], rel)
                out.append(members[r])
            sink.write_csv(out)
            ctx.tick(len(out))
            result.files.append(sink.close(result.log))

        fraud = cols["is_fraud"]
        delay_days = (cols["label"][fraud] - cols["event"][fraud]) / DAY_MS
        quantiles = np.percentile(delay_days, [50, 90, 99]) if delay_days.size else [0, 0, 0]
        pattern_ids = sorted(t for t, p in zip(tx, cols["pattern"].tolist()) if p)
        result.facts = {
            "notices": len(tx),
            "fraud_transactions": int(fraud.sum()),
            "fraud_chargebacks": int((fraud & (cols["kind"] == 0)).sum()),
            "fraud_reports": int((cols["kind"] == 1).sum()),
            "non_fraud_disputes": int((~fraud).sum()),
            "original_fraud_transactions": int(cols["legacy"].sum()),
            "new_pattern_fraud_transactions": len(pattern_ids),
            "label_delay_days": {
                "p50": round(float(quantiles[0]), 2),
                "p90": round(float(quantiles[1]), 2),
                "p99": round(float(quantiles[2]), 2),
                "max": round(float(delay_days.max()), 2) if delay_days.size else 0.0,
            },
            "feed_as_of": FEED_AS_OF,
            "label_rule": (
                "A payment is fraud once a notice with is_fraud true has label_available_ts at "
                "or before the moment you look. Every fraudulent payment gets exactly one such "
                "notice: the original patterns (payments.transactions.is_fraud) and, from the "
                "drift start, the new pattern. A payment without one is legitimate only once "
                "it is older than the labels' delay (label_delay_days)."
            ),
            "drift": {**DRIFT, "new_pattern_transaction_ids": pattern_ids},
        }
        return result


def _concat(parts: list) -> np.ndarray | list:
    if isinstance(parts[0], list):
        return [x for part in parts for x in part]
    return np.concatenate(parts)


def _processors(ctx: Context) -> DatasetResult:
    result = DatasetResult(PROCESSOR_TABLE)
    sink = TextSink(ctx.out_dir, PROCESSOR_TABLE.path, header=list(PROCESSOR_TABLE.column_names))
    sink.write_csv(
        [
            [name, text, str(bps), money(fixed), str(latency)]
            for name, (text, bps, fixed, latency) in PROCESSOR_FACTS.items()
        ]
    )
    result.files.append(sink.close(result.log))
    result.facts = {"processors": len(PROCESSOR_FACTS)}
    return result


def _response_codes(ctx: Context) -> DatasetResult:
    result = DatasetResult(RESPONSE_CODE_TABLE)
    header = list(RESPONSE_CODE_TABLE.column_names)
    sink = TextSink(ctx.out_dir, RESPONSE_CODE_TABLE.path, header=header)
    sink.write_csv(
        [
            [code, meaning, kind or "", reason or ""]
            for code, (meaning, kind, reason) in RESPONSE_CODES.items()
        ]
    )
    result.files.append(sink.close(result.log))
    result.facts = {
        "soft": [c for c, v in RESPONSE_CODES.items() if v[1] == "soft"],
        "hard": [c for c, v in RESPONSE_CODES.items() if v[1] == "hard"],
    }
    return result
