"""E-commerce CSV exports: the product catalog, orders and order lines, split into a few files
the way a nightly export lands them."""

from __future__ import annotations

import numpy as np

from . import _reference as ref
from ._common import (
    DAY_MS,
    WINDOW_END_MS,
    WINDOW_START_MS,
    RowPicker,
    TextSink,
    arrange,
    defect_count,
    iso_ms,
    money,
    non_numeric,
    round_half_up,
)
from ._context import Context, DatasetResult
from .population import LOCATION_CURRENCY, ORPHAN_CUSTOMER_BASE, ORPHAN_PRODUCT_BASE
from .schema import Column, DatasetSpec

PRODUCTS = DatasetSpec(
    name="ecommerce.products",
    source="ecommerce",
    path="ecommerce/products.csv",
    file_format="csv",
    columns=(
        Column("product_id", "string", True, "Business key: P and five digits."),
        Column("name", "string", True, "May contain commas and double quotes (CSV-quoted)."),
        Column("category", "string", True),
        Column("subcategory", "string", True),
        Column("brand", "string", True),
        Column("unit_price", "decimal(10,2)", True, "List price in USD."),
        Column("unit_cost", "decimal(10,2)", True, "Cost in USD."),
        Column("is_active", "boolean", True, "false: discontinued, still on old orders."),
    ),
    key=("product_id",),
    description="The product catalog: clean reference data, the dimension orders point at.",
)

ORDERS = DatasetSpec(
    name="ecommerce.orders",
    source="ecommerce",
    path="ecommerce/orders",
    file_format="csv",
    columns=(
        Column("order_id", "string", True, "Business key: O and eight digits."),
        Column("customer_id", "string", True, "Refers to crm.customers."),
        Column("order_ts", "timestamp", True),
        Column("status", "string", True, "processing, shipped, completed, cancelled, returned."),
        Column("channel", "string", True, "web, mobile_app, marketplace or phone."),
        Column("currency", "string", True, "The customer's local currency."),
        Column("shipping_method", "string", description="standard, express or pickup."),
        Column("shipping_cost", "decimal(10,2)"),
        Column("shipping_city", "string"),
        Column("shipping_postal_code", "string"),
        Column("country", "string", True, "ISO 3166-1 alpha-2 code."),
    ),
    key=("order_id",),
    description="Orders from 2026-01-01 to 2026-06-30, in order_ts order, one file per period.",
    defect_rules={
        "malformed_rows": "A row with too few or too many fields.",
        "null_required": "customer_id or order_ts is empty.",
        "duplicates": "An order row repeated exactly later in the same file (row key order_id).",
        "future_dates": "order_ts after 2026-06-30.",
        "orphan_keys": "customer_id matches no customer in crm.customers (either batch).",
    },
)

ORDER_LINES = DatasetSpec(
    name="ecommerce.order_lines",
    source="ecommerce",
    path="ecommerce/order_lines",
    file_format="csv",
    columns=(
        Column("order_id", "string", True, "Refers to ecommerce.orders."),
        Column("line_number", "int", True, "1, 2, ... within the order."),
        Column("product_id", "string", True, "Refers to ecommerce.products."),
        Column("quantity", "int", True),
        Column("unit_price", "decimal(10,2)", True, "In the order's currency."),
        Column("discount", "decimal(10,2)", True, "Amount off the line, not a rate."),
        Column("tax", "decimal(10,2)", True, "Tax on (quantity * unit_price - discount)."),
    ),
    key=("order_id", "line_number"),
    description="Order lines; file N holds the lines of the orders in orders file N.",
    defect_rules={
        "malformed_rows": (
            "A row with the wrong number of fields, or a unit_price that is not a number."
        ),
        "null_required": "product_id is empty.",
        "negative_amounts": "unit_price below zero.",
        "duplicates": (
            "A line repeated exactly later in the same file (row key order_id:line_number)."
        ),
        "orphan_keys": "product_id matches no product in ecommerce.products.",
    },
)
DATASETS = (PRODUCTS, ORDERS, ORDER_LINES)

STATUSES = ("processing", "shipped", "completed", "cancelled", "returned")
CHANNELS = ("web", "mobile_app", "marketplace", "phone")
SHIPPING = (("standard", 499), ("express", 1499), ("pickup", 0))
LINES_PER_ORDER = (np.arange(1, 7), [0.30, 0.30, 0.20, 0.10, 0.06, 0.04])
QUANTITIES = (np.arange(1, 6), [0.60, 0.22, 0.10, 0.05, 0.03])


def generate(ctx: Context) -> list[DatasetResult]:
    return [_products(ctx), *_orders(ctx)]


def product_row(cat, i: int) -> list[str]:
    """Product ``i`` of the catalog as the export writes it (and PostgreSQL's COPY reads it)."""
    return [
        cat.ids[i],
        cat.name[i],
        cat.category[i],
        cat.subcategory[i],
        cat.brand[i],
        money(cat.price_cents[i]),
        money(cat.cost_cents[i]),
        "true" if cat.is_active[i] else "false",
    ]


def _products(ctx: Context) -> DatasetResult:
    result = DatasetResult(PRODUCTS)
    cat = ctx.catalog
    sink = TextSink(ctx.out_dir, PRODUCTS.path, header=list(PRODUCTS.column_names))
    sink.write_csv([product_row(cat, i) for i in range(cat.size)])
    ctx.tick(cat.size)
    result.files.append(sink.close(result.log))
    return result


def _status(age_days: np.ndarray, u: np.ndarray) -> list[str]:
    fresh = np.where(u < 0.6, 0, 1)  # processing / shipped
    recent = np.where(u < 0.5, 1, np.where(u < 0.95, 2, 3))
    settled = np.where(u < 0.85, 2, np.where(u < 0.92, 3, 4))
    code = np.where(age_days < 2, fresh, np.where(age_days < 7, recent, settled))
    return [STATUSES[c] for c in code.tolist()]


def wrong_width(row: list[str], rng: np.random.Generator) -> list[str]:
    if rng.random() < 0.5:
        return row[: len(row) - int(rng.integers(1, 4))]
    return row + [row[-1]]


def _orders(ctx: Context, clean: list | None = None) -> tuple[DatasetResult, DatasetResult]:
    """Write the order and order line files. ``clean``, a list, receives per file the true
    rows before any defect is injected, as ``(order_rows, order_ts_ms, line_rows)``: the
    system of record the exports came from (:mod:`lakehouse.datagen.system_of_record`). It
    draws nothing, so the files are the same bytes with or without it."""
    orders, lines = DatasetResult(ORDERS), DatasetResult(ORDER_LINES)
    cust, cat = ctx.customers, ctx.catalog
    n_files = ctx.scale.order_files
    per_file = np.diff(np.linspace(0, ctx.scale.orders, n_files + 1).astype("int64"))
    slot = (WINDOW_END_MS - WINDOW_START_MS) // n_files
    signup_ms = cust.signup_day * DAY_MS
    product_p = cat.popularity * np.where(cat.is_active, 1.0, 0.3)
    product_p = product_p / product_p.sum()
    next_id = 1
    for f in range(n_files):
        rng = ctx.rng("ecommerce", "orders", f)
        m = int(per_file[f])
        lo_slot = WINDOW_START_MS + f * slot
        hi_slot = WINDOW_END_MS if f == n_files - 1 else lo_slot + slot
        eligible = cust.activity * (signup_ms < hi_slot)
        who = rng.choice(cust.size, size=m, p=eligible / eligible.sum())
        lo = np.maximum(lo_slot, signup_ms[who])
        ts = lo + np.floor(rng.random(m) * (hi_slot - lo)).astype("int64")
        order = np.argsort(ts, kind="stable")
        who, ts = who[order], ts[order]
        ids = [f"O{i:08d}" for i in range(next_id, next_id + m)]
        next_id += m
        currency = [LOCATION_CURRENCY[loc] for loc in cust.location[who].tolist()]
        method = rng.choice(len(SHIPPING), size=m, p=[0.7, 0.2, 0.1]).tolist()
        status = _status((WINDOW_END_MS - ts) / DAY_MS, rng.random(m))
        channel = rng.choice(len(CHANNELS), size=m, p=[0.55, 0.35, 0.07, 0.03]).tolist()
        ts_text = iso_ms(ts)
        rows = []
        for j, c in enumerate(who.tolist()):
            loc = ref.LOCATIONS[int(cust.location[c])]
            rows.append(
                [
                    ids[j],
                    cust.ids[c],
                    ts_text[j],
                    status[j],
                    CHANNELS[channel[j]],
                    currency[j],
                    SHIPPING[method[j]][0],
                    money(SHIPPING[method[j]][1]),
                    loc.city,
                    cust.postal_code[c],
                    loc.country,
                ]
            )
        rel = f"ecommerce/orders/orders_{f + 1:03d}.csv"
        true_rows = [list(row) for row in rows] if clean is not None else None
        _write_orders(ctx, orders, rel, rows, ts, rng)

        # Lines come from the true orders, so every order (even one whose row is broken) has them.
        n_lines = rng.choice(LINES_PER_ORDER[0], size=m, p=LINES_PER_ORDER[1])
        owner = np.repeat(np.arange(m), n_lines)
        line_no = np.arange(owner.size) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines) + 1
        product = rng.choice(cat.size, size=owner.size, p=product_p)
        qty = rng.choice(QUANTITIES[0], size=owner.size, p=QUANTITIES[1])
        fx = np.array([ref.FX_PER_USD[c] for c in currency])[owner]
        price = round_half_up(cat.price_cents[product] * fx)
        gross = qty * price
        pct = np.where(rng.random(owner.size) < 0.15, rng.integers(1, 6, owner.size) * 5, 0)
        discount = gross * pct // 100
        tax_bp = np.array([ref.COUNTRIES[row[10]][2] for row in rows])[owner]
        tax = ((gross - discount) * tax_bp + 5000) // 10000
        line_rows = [
            [ids[o], str(n), cat.ids[p], str(q), money(u), money(d), money(t)]
            for o, n, p, q, u, d, t in zip(
                owner.tolist(),
                line_no.tolist(),
                product.tolist(),
                qty.tolist(),
                price.tolist(),
                discount.tolist(),
                tax.tolist(),
            )
        ]
        if clean is not None:
            clean.append((true_rows, ts.copy(), [list(row) for row in line_rows]))
        _write_lines(
            ctx, lines, f"ecommerce/order_lines/order_lines_{f + 1:03d}.csv", line_rows, rng
        )
    return orders, lines


def _write_orders(ctx, result, rel, rows, ts, rng) -> None:
    log, m = result.log, len(rows)
    picker = RowPicker(m, rng)
    malformed = set(picker.pick(defect_count(m, 0.003)).tolist())
    for r in picker.pick(defect_count(m, 0.005)).tolist():
        rows[r][1 if rng.random() < 0.5 else 2] = ""
        log.add("null_required", rows[r][0], rel)
    for r in picker.pick(defect_count(m, 0.003)).tolist():
        rows[r][2] = iso_ms([ts[r] + int(rng.integers(200, 500)) * DAY_MS])[0]
        log.add("future_dates", rows[r][0], rel)
    for r in picker.pick(defect_count(m, 0.003)).tolist():
        rows[r][1] = f"C{ORPHAN_CUSTOMER_BASE + int(rng.integers(0, 99_999)):06d}"
        log.add("orphan_keys", rows[r][0], rel)
    _write_with_copies(ctx, result, rel, rows, malformed, picker, 0.01, rng, None)


def _write_lines(ctx, result, rel, rows, rng) -> None:
    log, m = result.log, len(rows)
    picker = RowPicker(m, rng)
    malformed = set(picker.pick(defect_count(m, 0.003)).tolist())
    for r in picker.pick(defect_count(m, 0.003)).tolist():
        rows[r][2] = ""
        log.add("null_required", f"{rows[r][0]}:{rows[r][1]}", rel)
    for r in picker.pick(defect_count(m, 0.003)).tolist():
        rows[r][4] = "-" + rows[r][4]
        log.add("negative_amounts", f"{rows[r][0]}:{rows[r][1]}", rel)
    for r in picker.pick(defect_count(m, 0.002)).tolist():
        rows[r][2] = f"P{ORPHAN_PRODUCT_BASE + int(rng.integers(0, 9_999)):05d}"
        log.add("orphan_keys", f"{rows[r][0]}:{rows[r][1]}", rel)
    _write_with_copies(ctx, result, rel, rows, malformed, picker, 0.005, rng, 4)


def _write_with_copies(ctx, result, rel, rows, malformed, picker, dup_rate, rng, money_col) -> None:
    """Place duplicate copies, break the malformed rows (``money_col``: a money field that may be
    made non-numeric instead of changing the row's width), write the file."""
    log, m = result.log, len(rows)
    width = len(result.spec.key)

    def key(row: list[str]) -> str:
        return ":".join(row[:width])

    sources = picker.pick(defect_count(m, dup_rate)).tolist()
    copies = [(s, min(m - 1, s + int(rng.integers(0, 50)))) for s in sources]
    order, is_copy = arrange(m, copies=copies)
    out = []
    for r, copy in zip(order.tolist(), is_copy.tolist()):
        row = rows[r]
        if copy:
            log.add("duplicates", key(row), rel)
        elif r in malformed:
            if money_col is not None and rng.random() < 0.6:
                row = list(row)
                row[money_col] = non_numeric(row[money_col], int(rng.integers(3)))
            else:
                row = wrong_width(row, rng)
            log.add("malformed_rows", key(row), rel)
        out.append(row)
    spec = result.spec
    sink = TextSink(ctx.out_dir, rel, header=list(spec.column_names))
    sink.write_csv(out)
    ctx.tick(len(out))
    result.files.append(sink.close(log))
