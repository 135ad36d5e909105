"""Support tickets as a change-data-capture feed (JSON lines): every insert, update and delete of
a ticket, with a per-ticket sequence number, delivered partly out of order."""

from __future__ import annotations

import numpy as np

from . import _reference as ref
from ._common import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    WINDOW_END_MS,
    WINDOW_START_MS,
    RowPicker,
    TextSink,
    arrange,
    defect_count,
    iso_ms,
    json_line,
    truncate_json,
)
from ._context import Context, DatasetResult
from .population import weights
from .schema import Column, DatasetSpec

TICKETS_CDC = DatasetSpec(
    name="support.tickets_cdc",
    source="support",
    path="support/tickets_cdc",
    file_format="json",
    columns=(
        Column("ticket_id", "string", True, "The ticket: TK and seven digits."),
        Column("_op", "string", True, "INSERT, UPDATE or DELETE."),
        Column("_seq", "bigint", True, "1, 2, ... per ticket, in the order the changes happened."),
        Column("_commit_ts", "timestamp", True, "When the source database committed the change."),
        Column("customer_id", "string", True, "Refers to crm.customers."),
        Column("subject", "string", True, "Free text typed by the customer."),
        Column(
            "status", "string", True, "open, in_progress, waiting_on_customer, resolved, closed."
        ),
        Column("priority", "string", True, "low, medium, high or urgent."),
        Column("channel", "string", True, "email, phone, chat or web."),
        Column("created_at", "timestamp", True),
        Column("updated_at", "timestamp", True),
    ),
    key=("ticket_id", "_seq"),
    description=(
        "Every change to every support ticket, mostly in commit order. A DELETE row carries the "
        "ticket's last image. Apply a change only when its _seq is newer than the one applied."
    ),
    defect_rules={
        "malformed_rows": "A JSON line cut short after its ticket_id, _op and _seq.",
        "null_required": "customer_id or priority is null (never on a DELETE).",
        "duplicates": "A change delivered again later (row key ticket_id:_seq).",
        "out_of_order": (
            "In file order across the files, skipping repeats, a change whose _seq is lower "
            "than a _seq already seen for the same ticket."
        ),
        "pii_in_free_text": (
            "subject holds an email address or a phone number (on every row of the ticket)."
        ),
    },
)
DATASETS = (TICKETS_CDC,)

PRIORITIES = ("low", "medium", "high", "urgent")
CHANNELS = ("email", "phone", "chat", "web")
UPDATES = (np.arange(6), [0.15, 0.30, 0.25, 0.15, 0.10, 0.05])
TICKET, OP, SEQ, _, CUSTOMER, SUBJECT, _, PRIORITY = range(8)  # positions in a change row


def _next_status(status: str, u: float) -> str:
    if status == "open":
        return "in_progress"
    if status == "in_progress":
        return "waiting_on_customer" if u < 0.3 else "resolved"
    if status == "waiting_on_customer":
        return "in_progress"
    if status == "resolved":
        return "in_progress" if u < 0.2 else "closed"
    return status


def generate(ctx: Context) -> list[DatasetResult]:
    result = DatasetResult(TICKETS_CDC)
    rng = ctx.rng("support", "tickets")
    cust = ctx.customers
    n = ctx.scale.tickets
    existing = np.arange(cust.n_existing)
    who = rng.choice(existing, size=n, p=weights(cust.activity[existing]))
    lo = np.maximum(WINDOW_START_MS, cust.signup_day[who] * DAY_MS)
    created = lo + np.floor(rng.random(n) * (WINDOW_END_MS - DAY_MS - lo)).astype("int64")
    subject = rng.integers(len(ref.TICKET_SUBJECTS), size=n).tolist()
    channel = rng.choice(len(CHANNELS), size=n, p=[0.45, 0.2, 0.25, 0.1]).tolist()
    priority = rng.choice(len(PRIORITIES), size=n, p=[0.3, 0.45, 0.2, 0.05]).tolist()
    updates = rng.choice(UPDATES[0], size=n, p=UPDATES[1]).tolist()
    deleted = (rng.random(n) < 0.04).tolist()

    # one row per change: (ticket, seq, op, status, priority, updated_at)
    rows: list[tuple[int, int, str, str, int, int]] = []
    final: dict[str, int] = {}
    n_deleted = 0
    for t in range(n):
        when, status, prio = int(created[t]), "open", priority[t]
        rows.append((t, 1, "INSERT", status, prio, when))
        for _ in range(updates[t]):
            when += int(rng.integers(10 * MINUTE_MS, 3 * DAY_MS))
            if when >= WINDOW_END_MS or status == "closed":
                break
            status = _next_status(status, float(rng.random()))
            if rng.random() < 0.15:
                prio = min(prio + 1, len(PRIORITIES) - 1)
            rows.append((t, rows[-1][1] + 1, "UPDATE", status, prio, when))
        when += int(rng.integers(HOUR_MS, 2 * DAY_MS))
        if deleted[t] and when < WINDOW_END_MS:
            rows.append((t, rows[-1][1] + 1, "DELETE", status, prio, when))
            n_deleted += 1
        else:
            final[status] = final.get(status, 0) + 1
    ticket = np.array([r[0] for r in rows])
    seq = np.array([r[1] for r in rows])
    updated = np.array([r[5] for r in rows], dtype="int64")
    commit = updated + rng.integers(200, 5_000, size=len(rows))
    order = np.lexsort((seq, ticket, commit))
    rows = [rows[i] for i in order.tolist()]
    ticket, seq, commit = ticket[order], seq[order], commit[order]
    ticket_ids = [f"TK{t + 1:07d}" for t in range(n)]
    records = []
    commit_text, updated_text, created_text = (
        iso_ms(commit),
        iso_ms(updated[order]),
        iso_ms(created),
    )
    # values in column order, as lists: a dict per change would cost several times the memory
    for j, (t, s, op, status, prio, _) in enumerate(rows):
        records.append(
            [
                ticket_ids[t],
                op,
                s,
                commit_text[j],
                cust.ids[int(who[t])],
                ref.TICKET_SUBJECTS[subject[t]],
                status,
                PRIORITIES[prio],
                CHANNELS[channel[t]],
                created_text[t],
                updated_text[j],
            ]
        )
    del rows, commit_text, updated_text
    _inject_and_write(ctx, result, records, ticket, seq)
    result.facts = {
        "tickets": n,
        "deleted_tickets": n_deleted,
        "final_status": dict(sorted(final.items())),
        "note": "The state after applying every change in _seq order, defects aside.",
    }
    return [result]


def _inject_and_write(ctx, result, records, ticket, seq) -> None:
    rng = ctx.rng("support", "defects")
    log = result.log
    m = len(records)
    picker = RowPicker(m, rng)
    defect_of: dict[int, str] = {}  # row -> its one defect class, logged when the row is written

    # PII sits in the subject, so it marks every change of the ticket.
    n_tickets = int(ticket.max(initial=-1)) + 1
    pii_tickets = rng.choice(n_tickets, size=defect_count(n_tickets, 0.03), replace=False)
    pii_rows = np.flatnonzero(np.isin(ticket, pii_tickets))
    picker.free[pii_rows] = False
    cust = ctx.customers
    for t in np.sort(pii_tickets).tolist():
        who = int(rng.integers(cust.size))
        template = ref.PII_SUBJECTS[int(rng.integers(len(ref.PII_SUBJECTS)))]
        text = template.format(email=cust.email[who], phone=cust.phone[who])
        for r in pii_rows[ticket[pii_rows] == t].tolist():
            records[r][SUBJECT] = text
            defect_of[r] = "pii_in_free_text"

    # Out of order: change s of a ticket is delivered just after change s+1.
    by_ticket = np.lexsort((seq, ticket))
    pairs = [
        (int(a), int(b))
        for a, b in zip(by_ticket[:-1].tolist(), by_ticket[1:].tolist())
        if ticket[a] == ticket[b] and picker.free[a] and picker.free[b]
    ]
    moves = []
    wanted = defect_count(m, 0.02)
    used_tickets: set[int] = set()
    for p in rng.permutation(len(pairs)).tolist():
        if len(moves) >= wanted:
            break
        a, b = pairs[p]
        if int(ticket[a]) in used_tickets:
            continue
        used_tickets.add(int(ticket[a]))
        picker.free[[a, b]] = False
        moves.append((a, b - a))
        defect_of[a] = "out_of_order"

    for r in picker.pick(defect_count(m, 0.005)).tolist():
        defect_of[r] = "malformed_rows"
    not_delete = np.array([r[OP] != "DELETE" for r in records])
    for r in picker.pick(defect_count(m, 0.01), eligible=not_delete).tolist():
        records[r][CUSTOMER if rng.random() < 0.5 else PRIORITY] = None
        defect_of[r] = "null_required"
    sources = picker.pick(defect_count(m, 0.01)).tolist()
    copies = [(s, min(m - 1, s + int(rng.integers(1, 40)))) for s in sources]
    final, is_copy = arrange(m, moves=sorted(moves), copies=copies)

    n_files = ctx.scale.ticket_files
    bounds = np.linspace(0, final.size, n_files + 1).astype("int64")
    for f in range(n_files):
        rel = f"support/tickets_cdc/cdc_{f + 1:03d}.json"
        lines = []
        part = slice(bounds[f], bounds[f + 1])
        for r, copy in zip(final[part].tolist(), is_copy[part].tolist()):
            values = records[r]
            line = json_line(dict(zip(TICKETS_CDC.column_names, values)))
            key = f"{values[TICKET]}:{values[SEQ]}"
            defect = "duplicates" if copy else defect_of.get(r)
            if defect == "malformed_rows":
                line = truncate_json(line, line.index(',"_commit_ts"') + 1, rng)
            if defect is not None:
                log.add(defect, key, rel)
            lines.append(line)
        sink = TextSink(ctx.out_dir, rel)
        sink.write(lines)
        ctx.tick(len(lines))
        result.files.append(sink.close(log))
