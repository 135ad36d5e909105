"""Web analytics events as Parquet: clickstream sessions of known and anonymous visitors. No
session id is given; sessions are derived later from a 30-minute inactivity gap per visitor."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import _reference as ref
from ._common import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    WINDOW_END_MS,
    RowPicker,
    arrange,
    arrow_strings,
    defect_count,
    finish_file,
    ms_at,
)
from ._context import Context, DatasetResult
from .population import RESIDENT_LOCATIONS, RESIDENT_P, weights
from .schema import Column, DatasetSpec

EVENTS = DatasetSpec(
    name="web.events",
    source="web",
    path="web/events",
    file_format="parquet",
    columns=(
        Column("event_id", "string", True, "Business key: E and ten digits."),
        Column("visitor_id", "string", True, "Browser cookie; stable per visitor."),
        Column("customer_id", "string", description="Null until the visitor logs in."),
        Column("event_ts", "timestamp", True),
        Column(
            "event_type",
            "string",
            True,
            "page_view, search, product_view, add_to_cart, checkout or purchase.",
        ),
        Column("page_url", "string", True),
        Column("product_id", "string", description="Set on product_view and add_to_cart."),
        Column("device", "string", True, "desktop, mobile or tablet."),
        Column("country", "string"),
        Column(
            "referrer",
            "string",
            description="External on a session's first event, else the previous page.",
        ),
    ),
    key=("event_id",),
    description=(
        "Clickstream from 2026-04-01 to 2026-06-30. A visitor's sessions are always more than "
        "30 minutes apart and events within one session at most 5 minutes apart."
    ),
    defect_rules={
        "null_required": "One of event_type, page_url or device is null.",
        "duplicates": "An event repeated later in the same file (row key event_id).",
        "out_of_order": (
            "In file order, skipping repeats and future-dated rows, an event_ts lower than the "
            "highest event_ts before it in the same file."
        ),
        "future_dates": "event_ts after 2026-06-30 (a device with a wrong clock).",
        "pii_in_free_text": "page_url holds an email address (typed into the search box).",
    },
)
DATASETS = (EVENTS,)

WEB_START_MS = ms_at(date(2026, 4, 1))
SLOT_MS = 3 * HOUR_MS  # one visitor has at most one session per slot: sessions never touch
SESSION_GAP_MS = 30 * MINUTE_MS
EVENT_TYPES = ("page_view", "search", "product_view", "add_to_cart", "checkout", "purchase")
FIRST_EVENT_P = (0.80, 0.10, 0.10, 0.0, 0.0, 0.0)
# next event type, by current event type (rows and columns in EVENT_TYPES order)
TRANSITIONS = np.array(
    [
        [0.35, 0.20, 0.45, 0.00, 0.00, 0.00],
        [0.20, 0.20, 0.60, 0.00, 0.00, 0.00],
        [0.20, 0.20, 0.35, 0.25, 0.00, 0.00],
        [0.25, 0.00, 0.40, 0.00, 0.35, 0.00],
        [0.25, 0.00, 0.15, 0.00, 0.00, 0.60],
        [0.70, 0.00, 0.30, 0.00, 0.00, 0.00],
    ]
)
EVENTS_PER_SESSION = np.arange(1, 21)
EVENTS_P = weights(0.8**EVENTS_PER_SESSION)  # 20 events of at most 5 min: under 100 min
DEVICES = ("desktop", "mobile", "tablet")
SEARCH = ref.SHOP_URL + "/search?q="
CATEGORY_NAMES = tuple(ref.CATEGORIES)


class _Sessions:
    """Every session of the data window, sorted by start time."""

    def __init__(self, ctx: Context):
        rng = ctx.rng("web", "sessions")
        cust = ctx.customers
        mean_events = float((EVENTS_PER_SESSION * EVENTS_P).sum())
        n = max(1, int(round(ctx.scale.web_events / mean_events)))
        n_slots = (WINDOW_END_MS - WEB_START_MS) // SLOT_MS
        known = rng.random(n) < 0.6
        anon_pool = max(1, int(n * 0.4 / 1.6))
        visitor = np.where(
            known,
            rng.choice(cust.size, size=n, p=cust.activity / cust.activity.sum()),
            cust.size + rng.integers(anon_pool, size=n),
        )
        slot = rng.integers(n_slots, size=n)
        # a visitor drawn twice for one slot keeps one session, so sessions stay apart
        _, first = np.unique(visitor * n_slots + slot, return_index=True)
        keep = np.sort(first)
        visitor, slot, known = visitor[keep], slot[keep], known[keep]
        n = keep.size
        start = WEB_START_MS + slot * SLOT_MS + rng.integers(0, 45 * MINUTE_MS, size=n)
        order = np.argsort(start, kind="stable")
        self.visitor = visitor[order]
        self.known = known[order]
        self.start = start[order]
        self.events = rng.choice(EVENTS_PER_SESSION, size=n, p=EVENTS_P)
        self.device = rng.choice(len(DEVICES), size=n, p=[0.45, 0.45, 0.10])
        self.referrer = rng.choice(len(ref.REFERRERS), size=n, p=weights(ref.REFERRER_WEIGHTS))
        logs_in_late = rng.random(n) < 0.3
        self.login_at = np.where(logs_in_late, rng.integers(1, self.events + 1), 0)
        anon_loc = rng.choice(RESIDENT_LOCATIONS, size=n, p=RESIDENT_P)
        home = cust.location[np.minimum(self.visitor, cust.size - 1)]
        self.location = np.where(self.known, home, anon_loc)
        self.size = n


def generate(ctx: Context) -> list[DatasetResult]:
    result = DatasetResult(EVENTS)
    sessions = _Sessions(ctx)
    bounds = np.linspace(0, sessions.size, ctx.scale.web_files + 1).astype("int64")
    next_id = 1
    kept_sessions = 0
    for f in range(ctx.scale.web_files):
        rel = f"web/events/part-{f:05d}.parquet"
        rows, kept = _write_part(ctx, result, sessions, bounds[f], bounds[f + 1], f, rel, next_id)
        next_id += rows
        kept_sessions += kept
    result.facts = {
        "sessions": kept_sessions,
        "session_rule": (
            "Sessions per visitor_id with a new session after more than 30 minutes without an "
            "event, counted over rows with event_ts not after 2026-06-30."
        ),
    }
    return [result]


def _write_part(ctx, result, sessions, a, b, f, rel, next_id) -> tuple[int, int]:
    rng = ctx.rng("web", "events", f)
    cust, cat = ctx.customers, ctx.catalog
    log = result.log
    s_idx = np.arange(a, b)
    n_ev = sessions.events[s_idx]
    starts = np.cumsum(n_ev) - n_ev
    m = int(n_ev.sum())
    sess = np.repeat(s_idx, n_ev)
    pos = np.arange(m) - np.repeat(starts, n_ev)
    gaps = rng.integers(5_000, 300_001, size=m)
    gaps[pos == 0] = 0
    csum = np.cumsum(gaps)
    ts = sessions.start[sess] + csum - np.repeat(csum[starts], n_ev)

    # Walk the sessions one step at a time: event type, and the product a cart add refers to.
    etype = np.zeros(m, dtype="int64")
    product = np.full(m, -1, dtype="int64")
    current = np.full(s_idx.size, -1, dtype="int64")
    product_p = cat.popularity / cat.popularity.sum()
    cumulative = np.cumsum(TRANSITIONS, axis=1)
    for step in range(int(n_ev.max(initial=0))):
        alive = np.flatnonzero(n_ev > step)
        rows = starts[alive] + step
        if step == 0:
            state = rng.choice(len(EVENT_TYPES), size=alive.size, p=FIRST_EVENT_P)
        else:
            u = rng.random(alive.size)
            state = (u[:, None] >= cumulative[etype[rows - 1]]).sum(axis=1)
            state = np.minimum(state, len(EVENT_TYPES) - 1)
        etype[rows] = state
        viewed = state == 2
        current[alive[viewed]] = rng.choice(cat.size, size=int(viewed.sum()), p=product_p)
        carted = state == 3
        no_product = carted & (current[alive] < 0)
        current[alive[no_product]] = rng.choice(cat.size, size=int(no_product.sum()), p=product_p)
        product[rows[viewed | carted]] = current[alive[viewed | carted]]

    pages = rng.integers(0, len(ref.STATIC_PAGES) + len(CATEGORY_NAMES), size=m).tolist()
    terms = rng.integers(len(ref.SEARCH_TERMS), size=m).tolist()
    urls = []
    for e, p, pg, t in zip(etype.tolist(), product.tolist(), pages, terms):
        if e == 0:
            path = (
                ref.STATIC_PAGES[pg]
                if pg < len(ref.STATIC_PAGES)
                else f"/c/{CATEGORY_NAMES[pg - len(ref.STATIC_PAGES)]}"
            )
        elif e == 1:
            path = "/search?q=" + ref.SEARCH_TERMS[t].replace(" ", "+")
        elif e == 2:
            path = f"/p/{cat.ids[p]}"
        elif e == 3:
            path = "/cart"
        elif e == 4:
            path = "/checkout"
        else:
            path = "/checkout/confirmation"
        urls.append(ref.SHOP_URL + path)
    referrer = [urls[i - 1] for i in range(m)]
    first_ref = sessions.referrer[s_idx].tolist()
    for k, row in enumerate(starts.tolist()):
        referrer[row] = ref.REFERRERS[first_ref[k]]
    logged_in = sessions.known[sess] & (pos >= sessions.login_at[sess])
    visitor = sessions.visitor[sess]
    customer = [cust.ids[v] if li else None for v, li in zip(visitor.tolist(), logged_in.tolist())]
    visitor_ids = [f"V{v + 1:08d}" for v in visitor.tolist()]
    device = [DEVICES[d] for d in sessions.device[sess].tolist()]
    country = [ref.LOCATIONS[loc].country for loc in sessions.location[sess].tolist()]
    types = [EVENT_TYPES[e] for e in etype.tolist()]
    products = [cat.ids[p] if p >= 0 else None for p in product.tolist()]

    # File order is event time; nudge ties apart by a millisecond so "out of order" is exact.
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    ts = np.maximum.accumulate(ts - np.arange(m)) + np.arange(m)
    cols = [visitor_ids, customer, types, urls, products, device, country, referrer]
    visitor_ids, customer, types, urls, products, device, country, referrer = (
        [c[i] for i in order.tolist()] for c in cols
    )
    sess = sess[order]
    ids = [f"E{i:010d}" for i in range(next_id, next_id + m)]

    picker = RowPicker(m, rng)
    moves = picker.pick_runs(defect_count(m, 0.01), width=5)
    for i, _ in moves:
        log.add("out_of_order", ids[i], rel)
    for r in picker.pick(defect_count(m, 0.003)).tolist():
        column = (types, urls, device)[int(rng.integers(3))]
        column[r] = None
        log.add("null_required", ids[r], rel)
    future = picker.pick(defect_count(m, 0.002))
    for r in future.tolist():
        ts[r] += int(rng.integers(200, 600)) * DAY_MS
        log.add("future_dates", ids[r], rel)
    is_search = np.array([t == "search" for t in types])
    for r in picker.pick(defect_count(m, 0.002), eligible=is_search).tolist():
        who = int(rng.integers(cust.size))
        urls[r] = SEARCH + cust.email[who]
        log.add("pii_in_free_text", ids[r], rel)
    sources = picker.pick(defect_count(m, 0.005)).tolist()
    copies = [(s, min(m - 1, s + int(rng.integers(0, 50)))) for s in sources]
    for s, _ in copies:
        log.add("duplicates", ids[s], rel)
    final, _ = arrange(m, moves=moves, copies=copies)

    take = final.tolist()
    table = pa.Table.from_arrays(
        [
            arrow_strings([ids[i] for i in take]),
            arrow_strings([visitor_ids[i] for i in take]),
            arrow_strings([customer[i] for i in take]),
            pa.Array.from_buffers(
                pa.timestamp("us", tz="UTC"), len(take), [None, pa.py_buffer(ts[final] * 1000)]
            ),
            arrow_strings([types[i] for i in take]),
            arrow_strings([urls[i] for i in take]),
            arrow_strings([products[i] for i in take]),
            arrow_strings([device[i] for i in take]),
            arrow_strings([country[i] for i in take]),
            arrow_strings([referrer[i] for i in take]),
        ],
        schema=EVENTS.arrow_schema,
    )
    path = ctx.out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy")
    ctx.tick(table.num_rows)
    result.files.append(finish_file(path, rel, table.num_rows, log))

    # A session whose every event was pushed into the future no longer exists in the window.
    remaining = np.bincount(sess - a, minlength=b - a)
    np.subtract.at(remaining, sess[future] - a, 1)
    return m, int((remaining > 0).sum())
