"""Payment transaction events as JSON lines, the way a stream delivers them: labelled for fraud,
with redeliveries, late and out-of-order arrivals, and a column added mid-stream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from . import _reference as ref
from . import payment_ops
from ._common import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    WINDOW_END_MS,
    RowPicker,
    TextSink,
    arrange,
    defect_count,
    iso_ms,
    json_line,
    money,
    ms_at,
    non_numeric,
    round_half_up,
    truncate_json,
)
from ._context import Context, DatasetResult
from .population import LOCATION_COUNTRY, LOCATION_CURRENCY
from .schema import Column, DatasetSpec

TRANSACTIONS = DatasetSpec(
    name="payments.transactions",
    source="payments",
    path="payments/transactions",
    file_format="json",
    columns=(
        Column("transaction_id", "string", True, "Business key: TX and ten digits."),
        Column("event_ts", "timestamp", True, "When the card was used."),
        Column("ingest_ts", "timestamp", True, "When the event reached the stream."),
        Column("customer_id", "string", True, "Refers to crm.customers."),
        Column("merchant_id", "string", True),
        Column("merchant_category", "string", True),
        Column("amount", "decimal(12,2)", True, "In currency; a JSON string."),
        Column("currency", "string", True, "ISO 4217: USD, EUR, GBP, CAD, JPY, MXN, SGD."),
        Column("card_network", "string", True),
        Column("card_last4", "string", True),
        Column("channel", "string", True, "online, pos or atm."),
        Column("country", "string", True, "Where the card was used."),
        Column("city", "string", True),
        Column("lat", "double"),
        Column("lon", "double"),
        Column(
            "status",
            "string",
            True,
            "approved or declined: the answer to the payment's last authorization attempt "
            "(payments.attempts).",
        ),
        Column(
            "decline_reason",
            "string",
            description="Null when approved; else the meaning of the last attempt's response code.",
        ),
        Column("fraud_score", "double", True, "0..1 from the upstream risk engine."),
        Column(
            "is_fraud",
            "boolean",
            True,
            "The fraud label of the original patterns, delivered with the event so the Gold and "
            "streaming lessons can count and test against it. No real stream knows it then: "
            "fraud becomes known days later, through payments.chargebacks (label_available_ts), "
            "which also holds the pattern that starts on 2026-06-20 and that is_fraud does not "
            "flag. Train and evaluate models on the chargebacks' labels, never on this column.",
        ),
        Column(
            "device_fingerprint",
            "string",
            description="Online payments only; only in files after the schema change.",
            added_in_schema_change=True,
        ),
    ),
    key=("transaction_id",),
    description=(
        "Card payments from 2026-06-01 to 2026-06-30, one folder per arrival day and files "
        "numbered in arrival order. Later files add the device_fingerprint column."
    ),
    defect_rules={
        "malformed_rows": (
            "A JSON line cut short after its transaction_id, or an amount that is not a number."
        ),
        "null_required": "One of customer_id, merchant_id, amount or currency is null.",
        "negative_amounts": "amount below zero.",
        "duplicates": (
            "A transaction delivered again later, in the same or the next file "
            "(row key transaction_id)."
        ),
        "late_events": "ingest_ts more than 2 hours after event_ts (3 to 72 hours).",
        "out_of_order": (
            "In file order across the files, skipping repeats and late events, an event_ts lower "
            "than the highest event_ts before it; such rows are at most 90 minutes behind."
        ),
        "schema_change": "The files that carry device_fingerprint (the second half of the stream).",
    },
)
DATASETS = (TRANSACTIONS,)
# read by the ML module only, not by the Bronze lessons: see core.ML_DATASETS
ML_DATASETS = payment_ops.DATASETS

PAYMENTS_START_MS = ms_at(date(2026, 6, 1))
LATE_AFTER_MS = 2 * HOUR_MS
CHANNELS = ("pos", "online", "atm")
NULLABLE_BY_DEFECT = ("customer_id", "merchant_id", "amount", "currency")
N_LOCATIONS = len(ref.LOCATIONS)
CITY_OF = [loc.city for loc in ref.LOCATIONS]
NETWORK_OF = dict(enumerate(ref.CARD_NETWORKS))


def generate(ctx: Context) -> list[DatasetResult]:
    result = DatasetResult(TRANSACTIONS)
    operations = payment_ops.Operations(ctx)
    n_files = ctx.scale.payment_files
    per_file = np.diff(np.linspace(0, ctx.scale.payments, n_files + 1).astype("int64"))
    slot = (WINDOW_END_MS - PAYMENTS_START_MS) // n_files
    next_id, carry, frauds = 1, [], 0
    for f in range(n_files):
        lo = PAYMENTS_START_MS + f * slot
        hi = WINDOW_END_MS if f == n_files - 1 else lo + slot
        drawn = _draw(ctx, f, int(per_file[f]), lo, hi)
        records, devices = _records(ctx, drawn, next_id)
        event, ingest = drawn.event.copy(), drawn.ingest.copy()
        frauds += int(drawn.fraud.sum())
        day = np.datetime_as_string(np.datetime64(lo, "ms"), unit="D")
        rel = f"payments/transactions/{day}/events_{f + 1:04d}.json"
        if n_files > 1 and f >= n_files // 2:  # the producer starts sending a new column
            result.log.add("schema_change", rel)
            for record, device in zip(records, devices):
                record["device_fingerprint"] = device
        carry = _inject_and_write(ctx, result, rel, f, records, devices, event, ingest, carry)
        # the attempts and notices follow each payment as delivered (a late event's event_ts)
        operations.add_file(f, drawn, next_id, event, ingest)
        next_id += len(records)
    result.facts = {"transactions": int(per_file.sum()), "fraud_transactions": frauds}
    return [result, *operations.finish()]


@dataclass
class Draw:
    """One file's payments as drawn, before any delivery defect: the arrays the JSON records
    are made of, kept so the payment operations (attempts, chargebacks) can follow them."""

    event: np.ndarray  # ms since the epoch, strictly increasing
    ingest: np.ndarray
    who: np.ndarray  # customer index
    where: np.ndarray  # location index: where the card was used
    channel: np.ndarray  # index into CHANNELS
    merchant: np.ndarray
    category: list[str]
    usd: np.ndarray  # the amount in US dollars, before conversion and rounding
    currency: list[str]
    cents: np.ndarray  # the amount in currency, in cents
    fraud: np.ndarray
    declined: np.ndarray
    reason: np.ndarray  # index into DECLINE_REASONS (meaningful when declined)
    score: np.ndarray
    lats: np.ndarray
    lons: np.ndarray
    stolen_device: list[int]

    @property
    def size(self) -> int:
        return self.event.size


def _draw(ctx: Context, f: int, m: int, lo: int, hi: int) -> Draw:
    rng = ctx.rng("payments", "events", f)
    cust, merchants = ctx.customers, ctx.merchants
    event = np.sort(rng.integers(lo, hi - m, size=m)) + np.arange(m)  # strictly increasing
    ingest = np.maximum.accumulate(event + rng.integers(50, 5_000, size=m))
    active = cust.activity * (cust.signup_day * DAY_MS < hi)
    who = rng.choice(cust.size, size=m, p=active / active.sum())
    fraud = rng.random(m) < 0.015
    channel = np.where(
        fraud,
        rng.choice(3, size=m, p=[0.35, 0.65, 0.0]),
        rng.choice(3, size=m, p=[0.47, 0.43, 0.10]),
    )
    home = cust.location[who]
    where = home.copy()
    travels = rng.random(m) < 0.05
    where[travels] = rng.integers(N_LOCATIONS, size=int(travels.sum()))
    abroad = fraud & (rng.random(m) < 0.6)
    where[abroad] = rng.integers(N_LOCATIONS, size=int(abroad.sum()))
    merchant = np.empty(m, dtype="int64")
    for c, name in enumerate(CHANNELS):
        sel = channel == c
        merchant[sel] = merchants.pick(name, where[sel], rng)
    category = [merchants.category[i] for i in merchant.tolist()]
    bounds = np.array([ref.MERCHANT_CATEGORIES[c][1:] for c in category], dtype="float64")
    u = rng.random(m)
    usd = bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * u * u * u
    usd = np.where(channel == 2, np.maximum(1, np.floor(usd / 2000)) * 2000, usd)
    usd = usd * np.where(fraud, rng.integers(3, 9, size=m), 1)
    currency = [LOCATION_CURRENCY[i] for i in where.tolist()]
    fx = np.array([ref.FX_PER_USD[c] for c in currency])
    cents = round_half_up(usd * fx)
    cents = np.where(np.array(currency) == "JPY", (cents + 50) // 100 * 100, cents)
    declined = rng.random(m) < np.where(fraud, 0.5, 0.04)
    legit_reason = rng.choice(4, size=m, p=[0.5, 0.2, 0.15, 0.15])
    fraud_reason = np.where(rng.random(m) < 0.8, 4, 1)
    reason = np.where(fraud, fraud_reason, legit_reason)
    u1, u2, u3 = rng.random(m), rng.random(m), rng.random(m)
    score = np.where(fraud, 1 - 0.7 * u1 * u2, u1 * u2 * u3)
    jitter = rng.random((m, 2)) - 0.5
    lats = np.array([loc.lat for loc in ref.LOCATIONS])[where] + 0.1 * jitter[:, 0]
    lons = np.array([loc.lon for loc in ref.LOCATIONS])[where] + 0.1 * jitter[:, 1]
    stolen_device = rng.integers(0, 2**63 - 1, size=m, dtype="int64").tolist()
    return Draw(
        event=event,
        ingest=ingest,
        who=who,
        where=where,
        channel=channel,
        merchant=merchant,
        category=category,
        usd=usd,
        currency=currency,
        cents=cents,
        fraud=fraud,
        declined=declined,
        reason=reason,
        score=score,
        lats=lats,
        lons=lons,
        stolen_device=stolen_device,
    )


def _events(ctx: Context, f: int, m: int, lo: int, hi: int, first_id: int):
    """The records of one file (and each online payment's device), as the stream sends them
    before delivery defects: ``(records, devices, event, ingest, fraud)``."""
    d = _draw(ctx, f, m, lo, hi)
    records, devices = _records(ctx, d, first_id)
    return records, devices, d.event, d.ingest, d.fraud


def _records(ctx: Context, d: Draw, first_id: int) -> tuple[list[dict], list[str | None]]:
    cust, merchants = ctx.customers, ctx.merchants
    m = d.size
    event_text, ingest_text = iso_ms(d.event), iso_ms(d.ingest)
    # plain lists: indexing numpy arrays one element at a time is what would make this slow
    who_l, where_l, channel_l = d.who.tolist(), d.where.tolist(), d.channel.tolist()
    fraud_l, declined_l, reason_l = d.fraud.tolist(), d.declined.tolist(), d.reason.tolist()
    merchant_l, cents_l = d.merchant.tolist(), d.cents.tolist()
    lat_l, lon_l = np.round(d.lats, 5).tolist(), np.round(d.lons, 5).tolist()
    score_l = np.round(d.score, 4).tolist()
    category, currency, stolen_device = d.category, d.currency, d.stolen_device
    records, devices = [], []
    for j in range(m):
        c, w = who_l[j], where_l[j]
        if channel_l[j] == 1:
            devices.append(f"{stolen_device[j]:016x}" if fraud_l[j] else cust.device[c])
        else:
            devices.append(None)
        records.append(
            {
                "transaction_id": f"TX{first_id + j:010d}",
                "event_ts": event_text[j],
                "ingest_ts": ingest_text[j],
                "customer_id": cust.ids[c],
                "merchant_id": merchants.ids[merchant_l[j]],
                "merchant_category": category[j],
                "amount": money(cents_l[j]),
                "currency": currency[j],
                "card_network": NETWORK_OF[cust.card_network[c]],
                "card_last4": cust.card_last4[c],
                "channel": CHANNELS[channel_l[j]],
                "country": LOCATION_COUNTRY[w],
                "city": CITY_OF[w],
                "lat": lat_l[j],
                "lon": lon_l[j],
                "status": "declined" if declined_l[j] else "approved",
                "decline_reason": ref.DECLINE_REASONS[reason_l[j]] if declined_l[j] else None,
                "fraud_score": score_l[j],
                "is_fraud": fraud_l[j],
            }
        )
    return records, devices


def _inject_and_write(ctx, result, rel, f, records, devices, event, ingest, carry) -> list:
    """Break, delay, reorder and repeat some rows, write the file, and return a few clean rows
    (with their device) that the next file delivers again. ``event`` and ``ingest`` are updated
    in place to the times the file carries (late events, out-of-order arrivals)."""
    rng = ctx.rng("payments", "defects", f)
    log = result.log
    m = len(records)
    picker = RowPicker(m, rng)
    defect_of: dict[int, str] = {}

    def not_late(i: int, k: int) -> bool:
        return ingest[i + k] + 1 - event[i] <= 90 * MINUTE_MS

    moves = picker.pick_runs(defect_count(m, 0.015), width=3, accept=not_late)
    for i, k in moves:
        records[i]["ingest_ts"] = iso_ms([ingest[i + k] + 1])[0]
        defect_of[i] = "out_of_order"
    for i, k in moves:  # after all moves: row i + k is never itself moved, but stay safe
        ingest[i] = ingest[i + k] + 1
    for r in picker.pick(defect_count(m, 0.01)).tolist():
        late = int(ingest[r] - rng.integers(3 * HOUR_MS, 72 * HOUR_MS))
        records[r]["event_ts"] = iso_ms([late])[0]
        event[r] = late  # the caller's copy: what the file now says
        defect_of[r] = "late_events"
    for r in picker.pick(defect_count(m, 0.003)).tolist():
        defect_of[r] = "malformed_rows"
    for r in picker.pick(defect_count(m, 0.005)).tolist():
        records[r][NULLABLE_BY_DEFECT[int(rng.integers(len(NULLABLE_BY_DEFECT)))]] = None
        defect_of[r] = "null_required"
    for r in picker.pick(defect_count(m, 0.003)).tolist():
        records[r]["amount"] = "-" + records[r]["amount"]
        defect_of[r] = "negative_amounts"

    # Redeliveries: some of this file's rows, and some rows of the previous file arriving again.
    n_dups = defect_count(m, 0.01)
    from_carry = min(len(carry), n_dups // 2)
    sources = picker.pick(n_dups - from_carry).tolist()
    copies = [(s, min(m - 1, s + int(rng.integers(1, 50)))) for s in sources]
    copies += [(m + c, int(rng.integers(-1, min(m, 50)))) for c in range(from_carry)]
    new_schema = bool(records) and "device_fingerprint" in records[0]
    pool = list(records)
    for record, device in carry[:from_carry]:
        # a redelivery through the new producer carries the new column too
        pool.append(dict(record, device_fingerprint=device) if new_schema else record)
    final, is_copy = arrange(m, moves=moves, copies=copies)

    lines = []
    for r, copy in zip(final.tolist(), is_copy.tolist()):
        record = pool[r]
        line = json_line(record)
        defect = "duplicates" if copy else defect_of.get(r)
        if defect == "malformed_rows":
            if rng.random() < 0.6:
                line = truncate_json(line, len('{"transaction_id":"TX0000000001",'), rng)
            else:
                broken = dict(record, amount=non_numeric(record["amount"], int(rng.integers(3))))
                line = json_line(broken)
        if defect is not None:
            log.add(defect, record["transaction_id"], rel)
        lines.append(line)
    sink = TextSink(ctx.out_dir, rel)
    sink.write(lines)
    ctx.tick(len(lines))
    result.files.append(sink.close(log))

    still_clean = np.flatnonzero(picker.free)
    chosen = rng.choice(still_clean, size=min(still_clean.size, 25), replace=False)
    return [(records[i], devices[i]) for i in np.sort(chosen).tolist()]
