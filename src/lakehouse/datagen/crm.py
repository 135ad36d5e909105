"""CRM customers as JSON lines: a full extract (batch=001) and a change batch (batch=002) with
moved customers, new segments and new customers, for the SCD Type 2 lessons."""

from __future__ import annotations

from datetime import date

import numpy as np

from . import _reference as ref
from ._common import (
    DAY_MS,
    WINDOW_END_MS,
    RowPicker,
    TextSink,
    arrange,
    day_number,
    defect_count,
    iso_day,
    iso_ms,
    json_line,
    ms_at,
    truncate_json,
)
from ._context import Context, DatasetResult
from .population import BATCH1_AS_OF, RESIDENT_LOCATIONS, RESIDENT_P, fill_patterns
from .schema import Column, DatasetSpec

CUSTOMERS = DatasetSpec(
    name="crm.customers",
    source="crm",
    path="crm/customers",
    file_format="json",
    columns=(
        Column("customer_id", "string", True, "Business key: C and six digits."),
        Column("first_name", "string", True),
        Column("last_name", "string", True),
        Column("email", "string", True),
        Column("phone", "string", description="International format, e.g. +44 203 555 0147."),
        Column("date_of_birth", "date"),
        Column("street", "string"),
        Column("city", "string"),
        Column("state", "string", description="State, province or region."),
        Column("postal_code", "string"),
        Column("country", "string", True, "ISO 3166-1 alpha-2 code."),
        Column("segment", "string", True, "consumer, small_business, corporate or vip."),
        Column("signup_date", "date", True),
        Column("marketing_opt_in", "boolean"),
        Column("updated_at", "timestamp", True, "When the CRM last changed the record."),
        Column("notes", "string", description="Free text typed by service agents."),
    ),
    key=("customer_id",),
    description=(
        "CRM extracts. batch=001: every customer as of 2026-06-15. batch=002: customers whose "
        "address and/or segment changed (some twice), a few re-sent unchanged, and new customers. "
        "Defects are injected into batch=001 only."
    ),
    defect_rules={
        "malformed_rows": "A JSON line cut short; the text still starts with the customer_id.",
        "null_required": "One of last_name, email, segment or signup_date is null.",
        "duplicates": "A batch repeats a line exactly (row key: customer_id and updated_at).",
        "invalid_emails": "email is not local@domain.tld (no @, @@, no top-level domain, a space).",
        "future_dates": "date_of_birth or signup_date after 2026-06-30.",
        "pii_in_free_text": "notes holds an email address or a phone number.",
    },
)
DATASETS = (CUSTOMERS,)

CHUNK = 50_000
AS_OF_MS = ms_at(BATCH1_AS_OF)
FUTURE_DOB_DAY = day_number(date(2027, 1, 1))
FUTURE_SIGNUP_DAY = day_number(date(2026, 7, 1))
NULLABLE_BY_DEFECT = ("last_name", "email", "segment", "signup_date")


class _Base:
    """The true, clean record of every customer as of batch 001 (or sign-up, for new ones)."""

    def __init__(self, ctx: Context):
        cust = ctx.customers
        rng = ctx.rng("crm", "base")
        n = cust.size
        signup_ms = cust.signup_day * DAY_MS
        lo = np.maximum(signup_ms, np.where(np.arange(n) < cust.n_existing, signup_ms, AS_OF_MS))
        hi = np.where(np.arange(n) < cust.n_existing, AS_OF_MS, WINDOW_END_MS)
        self.updated_ms = lo + np.floor(rng.random(n) * (hi - lo)).astype("int64")
        note = rng.integers(0, int(len(ref.CLEAN_NOTES) / 0.4), size=n).tolist()
        self.notes = [ref.CLEAN_NOTES[i] if i < len(ref.CLEAN_NOTES) else None for i in note]
        self.updated = iso_ms(self.updated_ms)
        self.dob = iso_day(cust.dob_day)
        self.signup = iso_day(cust.signup_day)
        self.cust = cust

    def record(self, i: int) -> dict:
        c = self.cust
        loc = ref.LOCATIONS[int(c.location[i])]
        return {
            "customer_id": c.ids[i],
            "first_name": c.first_name[i],
            "last_name": c.last_name[i],
            "email": c.email[i],
            "phone": c.phone[i],
            "date_of_birth": self.dob[i],
            "street": c.street[i],
            "city": loc.city,
            "state": loc.state,
            "postal_code": c.postal_code[i],
            "country": loc.country,
            "segment": ref.SEGMENTS[int(c.segment[i])],
            "signup_date": self.signup[i],
            "marketing_opt_in": bool(c.opt_in[i]),
            "updated_at": self.updated[i],
            "notes": self.notes[i],
        }


def invalid_email(email: str, variant: int) -> str:
    local, domain = email.split("@")
    if variant == 0:
        return f"{local}.{domain}"
    if variant == 1:
        return f"{local}@@{domain}"
    if variant == 2:
        return f"{local}@{domain.split('.')[0]}"
    return email.replace(".", " ", 1)


def generate(ctx: Context) -> list[DatasetResult]:
    result = DatasetResult(CUSTOMERS)
    base = _Base(ctx)
    defective = _write_batch1(ctx, base, result)
    _write_batch2(ctx, base, result, defective)
    return [result]


def _write_batch1(ctx: Context, base: _Base, result: DatasetResult) -> set[int]:
    rel = "crm/customers/batch=001/customers.json"
    sink = TextSink(ctx.out_dir, rel)
    log = result.log
    defective: set[int] = set()
    n_old = ctx.customers.n_existing
    for chunk, start in enumerate(range(0, n_old, CHUNK)):
        stop = min(n_old, start + CHUNK)
        m = stop - start
        rng = ctx.rng("crm", "batch1", chunk)
        rows = [base.record(i) for i in range(start, stop)]
        picker = RowPicker(m, rng)
        malformed = set(picker.pick(defect_count(m, 0.005)).tolist())
        for r in picker.pick(defect_count(m, 0.01)).tolist():
            rows[r][NULLABLE_BY_DEFECT[int(rng.integers(len(NULLABLE_BY_DEFECT)))]] = None
            log.add("null_required", rows[r]["customer_id"], rel)
            defective.add(start + r)
        for r in picker.pick(defect_count(m, 0.015)).tolist():
            rows[r]["email"] = invalid_email(rows[r]["email"], int(rng.integers(4)))
            log.add("invalid_emails", rows[r]["customer_id"], rel)
            defective.add(start + r)
        for r in picker.pick(defect_count(m, 0.005)).tolist():
            if rng.random() < 0.5:
                day = rng.integers(FUTURE_DOB_DAY, FUTURE_DOB_DAY + 4 * 365)
                rows[r]["date_of_birth"] = iso_day([day])[0]
            else:
                day = rng.integers(FUTURE_SIGNUP_DAY, FUTURE_SIGNUP_DAY + 400)
                rows[r]["signup_date"] = iso_day([day])[0]
            log.add("future_dates", rows[r]["customer_id"], rel)
            defective.add(start + r)
        for r in picker.pick(defect_count(m, 0.02)).tolist():
            template = ref.PII_NOTES[int(rng.integers(len(ref.PII_NOTES)))]
            rows[r]["notes"] = template.format(email=rows[r]["email"], phone=rows[r]["phone"])
            log.add("pii_in_free_text", rows[r]["customer_id"], rel)
            defective.add(start + r)
        sources = picker.pick(defect_count(m, 0.01)).tolist()
        copies = [(s, min(m - 1, s + int(rng.integers(0, 30)))) for s in sources]
        order, is_copy = arrange(m, copies=copies)
        lines = []
        for r, copy in zip(order.tolist(), is_copy.tolist()):
            line = json_line(rows[r])
            if copy:
                log.add("duplicates", rows[r]["customer_id"], rel)
            elif r in malformed:
                line = truncate_json(line, len('{"customer_id":"C000000",'), rng)
                log.add("malformed_rows", rows[r]["customer_id"], rel)
                defective.add(start + r)
            lines.append(line)
        sink.write(lines)
        ctx.tick(len(lines))
    result.files.append(sink.close(log))
    return defective


def _write_batch2(ctx: Context, base: _Base, result: DatasetResult, defective: set[int]) -> None:
    rel = "crm/customers/batch=002/customers.json"
    cust = ctx.customers
    rng = ctx.rng("crm", "batch2")
    candidates = np.array([i for i in range(cust.n_existing) if i not in defective])
    n_changed = min(ctx.scale.changed_customers, candidates.size)
    changed = np.sort(rng.choice(candidates, size=n_changed, replace=False))
    kind = rng.choice(3, size=n_changed, p=[0.5, 0.3, 0.2])  # address, segment, both
    rest = np.setdiff1d(candidates, changed)
    unchanged = np.sort(
        rng.choice(rest, size=min(rest.size, max(1, n_changed // 5)), replace=False)
    )
    n_twice = min(n_changed, max(1, n_changed // 10))
    twice = set(rng.choice(changed, size=n_twice, replace=False).tolist())

    def later(after_ms: int) -> int:
        step = int(rng.integers(60_000, max(120_000, (WINDOW_END_MS - after_ms) // 2)))
        return min(WINDOW_END_MS - 1, after_ms + step)

    def move(record: dict) -> None:
        loc = int(rng.choice(RESIDENT_LOCATIONS, p=RESIDENT_P)) if rng.random() < 0.7 else None
        if loc is None:
            loc = next(i for i, x in enumerate(ref.LOCATIONS) if x.city == record["city"])
        place = ref.LOCATIONS[loc]
        number = int(rng.integers(1, 3000))
        street = ref.STREET_NAMES[int(rng.integers(len(ref.STREET_NAMES)))]
        suffix = ref.STREET_SUFFIXES[int(rng.integers(len(ref.STREET_SUFFIXES)))]
        record.update(
            street=f"{number} {street} {suffix}",
            city=place.city,
            state=place.state,
            postal_code=fill_patterns([place.postal_pattern], rng)[0],
            country=place.country,
        )

    rows: list[tuple[int, str, dict]] = []
    facts: dict[str, list[str]] = {
        "address_changed": [],
        "segment_changed": [],
        "multiple_versions": [],
        "unchanged_resent": [],
        "new_customers": [],
    }
    for i, k in zip(changed.tolist(), kind.tolist()):
        record = base.record(i)
        if k in (0, 2):
            move(record)
            facts["address_changed"].append(record["customer_id"])
        if k in (1, 2):
            current = ref.SEGMENTS.index(record["segment"])
            record["segment"] = ref.SEGMENTS[(current + int(rng.integers(1, 4))) % 4]
            facts["segment_changed"].append(record["customer_id"])
        when = later(AS_OF_MS)
        record["updated_at"] = iso_ms([when])[0]
        rows.append((when, record["customer_id"], record))
        if i in twice:
            second = dict(record)
            move(second)
            when2 = later(when)
            second["updated_at"] = iso_ms([when2])[0]
            rows.append((when2, second["customer_id"], second))
            facts["multiple_versions"].append(record["customer_id"])
            if k == 1:
                facts["address_changed"].append(record["customer_id"])
    for i in unchanged.tolist():
        record = base.record(i)
        when = later(AS_OF_MS)
        record["updated_at"] = iso_ms([when])[0]
        rows.append((when, record["customer_id"], record))
        facts["unchanged_resent"].append(record["customer_id"])
    for i in range(cust.n_existing, cust.size):
        record = base.record(i)
        rows.append((int(base.updated_ms[i]), record["customer_id"], record))
        facts["new_customers"].append(record["customer_id"])
    rows.sort(key=lambda t: (t[0], t[1]))
    sink = TextSink(ctx.out_dir, rel)
    sink.write([json_line(r) for _, _, r in rows])
    ctx.tick(len(rows))
    result.files.append(sink.close(result.log))
    result.facts["batch_002"] = {k: sorted(v) for k, v in facts.items()}
