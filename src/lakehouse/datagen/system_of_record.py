"""The e-commerce system of record in PostgreSQL: customers, products, orders and order lines
in schema ``shop``, with primary keys, foreign keys and an ``updated_at`` column, as of the
end of the data window (day 1), then a seeded second day of inserts, updates and deletes.

Day 1 is the database the CSV exports came from: the same customers, products, orders and
lines, without the exports' defects. Day 2 carries the traps of watermark extraction, and
:class:`Changes` records them by key, so a test or a lesson computes the truth from it:

- ``same_timestamp``: a nightly job updates several orders in one transaction, so they share
  one ``updated_at``, the day-1 watermark of ``shop.orders``;
- ``at_watermark``: one order updated on day 2 in a transaction that began at that same
  instant (PostgreSQL's ``now()`` is the transaction's start): ``updated_at > watermark``
  never sees it;
- ``day2_same_timestamp``: a repricing job updates several products at one instant;
- deletes: purged cancelled orders and their lines, which no watermark can see.

Example::

    from lakehouse.datagen import system_of_record as sor
    from lakehouse.services import postgres

    with postgres.connect() as conn:
        day1 = sor.load(conn, scale="tiny", seed=42, day=1)
        changes = sor.load(conn, scale="tiny", seed=42, day=2)
    changes.rows["shop.orders"]         # rows after day 2

Command line: ``python -m lakehouse.datagen --postgres --day 1`` (``make pg-load``).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from . import crm, ecommerce
from ._common import DAY_MS, HOUR_MS, MINUTE_MS, WINDOW_END_MS, iso_ms, money, stream
from ._context import Context
from .scales import Scale, get_scale

SCHEMA = "shop"
# load order: a table comes after the tables its foreign keys point at
TABLES = ("customers", "products", "orders", "order_lines")
KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "products": ("product_id",),
    "orders": ("order_id",),
    "order_lines": ("order_id", "line_number"),
}
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "customers": (
        ("customer_id", "text PRIMARY KEY"),
        ("first_name", "text NOT NULL"),
        ("last_name", "text NOT NULL"),
        ("email", "text NOT NULL"),
        ("phone", "text"),
        ("date_of_birth", "date"),
        ("street", "text"),
        ("city", "text"),
        ("state", "text"),
        ("postal_code", "text"),
        ("country", "text NOT NULL"),
        ("segment", "text NOT NULL"),
        ("signup_date", "date NOT NULL"),
        ("marketing_opt_in", "boolean NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
    ),
    "products": (
        ("product_id", "text PRIMARY KEY"),
        ("name", "text NOT NULL"),
        ("category", "text NOT NULL"),
        ("subcategory", "text NOT NULL"),
        ("brand", "text NOT NULL"),
        ("unit_price", "numeric(10,2) NOT NULL"),
        ("unit_cost", "numeric(10,2) NOT NULL"),
        ("is_active", "boolean NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
    ),
    "orders": (
        ("order_id", "text PRIMARY KEY"),
        ("customer_id", "text NOT NULL REFERENCES shop.customers"),
        ("order_ts", "timestamptz NOT NULL"),
        ("status", "text NOT NULL"),
        ("channel", "text NOT NULL"),
        ("currency", "text NOT NULL"),
        ("shipping_method", "text"),
        ("shipping_cost", "numeric(10,2)"),
        ("shipping_city", "text"),
        ("shipping_postal_code", "text"),
        ("country", "text NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
    ),
    "order_lines": (
        ("order_id", "text NOT NULL REFERENCES shop.orders"),
        ("line_number", "integer NOT NULL"),
        ("product_id", "text NOT NULL REFERENCES shop.products"),
        ("quantity", "integer NOT NULL"),
        ("unit_price", "numeric(10,2) NOT NULL"),
        ("discount", "numeric(10,2) NOT NULL"),
        ("tax", "numeric(10,2) NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
    ),
}

# Day 1 closes at midnight after the window: the nightly job's transaction starts then.
DAY1_CLOSE_MS = WINDOW_END_MS  # 2026-07-01T00:00:00Z
DAY2_END_MS = WINDOW_END_MS + DAY_MS
REPRICE_MS = WINDOW_END_MS + 6 * HOUR_MS  # the products' repricing job, 06:00 on day 2
# How long after the order each status is usually reached (hours): when updated_at moved last.
STATUS_DELAY_HOURS = {
    "processing": (0, 0),
    "shipped": (12, 48),
    "completed": (72, 144),
    "cancelled": (1, 24),
    "returned": (240, 480),
}
NEXT_STATUS = {"processing": "shipped", "shipped": "completed", "completed": "returned"}


def qualified(table: str) -> str:
    """``"orders"`` -> ``"shop.orders"``."""
    return table if "." in table else f"{SCHEMA}.{table}"


def key_text(values) -> str:
    """A row's key as the manifests write it: ``"O00000017"``, ``"O00000017:2"``."""
    return ":".join(str(v) for v in values)


@dataclass
class Changes:
    """What a load left in the database, by key: the truth tests and lessons compare with.

    ``rows``: rows per table after this day. ``watermarks``: the latest ``updated_at`` per
    table after day 1 (ISO-8601 UTC). For day 2, ``inserted``/``updated``/``deleted`` list the
    keys per table, and ``pitfalls`` the traps: ``same_timestamp`` (day-1 orders sharing the
    watermark), ``at_watermark`` (a day-2 order updated at exactly that instant),
    ``day2_same_timestamp`` (products repriced at one instant); ``boundary``, the day-1 rows
    at their table's watermark that day 2 leaves as they were (what ``>=`` reads again)."""

    scale: str
    seed: int
    day: int
    rows: dict[str, int]
    watermarks: dict[str, str]
    inserted: dict[str, list[str]] = field(default_factory=dict)
    updated: dict[str, list[str]] = field(default_factory=dict)
    deleted: dict[str, list[str]] = field(default_factory=dict)
    pitfalls: dict[str, dict] = field(default_factory=dict)
    boundary: dict[str, int] = field(default_factory=dict)

    def changed(self, table: str) -> set[str]:
        """Keys inserted or updated on day 2 in ``table`` (``"shop.orders"`` or ``"orders"``)."""
        table = qualified(table)
        return set(self.inserted.get(table, [])) | set(self.updated.get(table, []))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    def summary(self) -> str:
        """One line per table: rows, and the day-2 inserts, updates and deletes."""
        lines = []
        for table in (qualified(t) for t in TABLES):
            line = f"{table:<18} {self.rows[table]:>7,} rows"
            if self.day == 2:
                line += (
                    f"  +{len(self.inserted[table])} inserted, {len(self.updated[table])} "
                    f"updated, -{len(self.deleted[table])} deleted"
                )
            lines.append(line)
        return "\n".join(lines)


# ------------------------------------------------------------------------------ the data


def _pick(rng: np.random.Generator, items: list, n: int) -> list:
    """``n`` distinct items (all when fewer), in their original order."""
    chosen = rng.choice(len(items), size=min(n, len(items)), replace=False)
    return [items[i] for i in sorted(chosen.tolist())]


class SystemOfRecord:
    """The rows of day 1 and the operations of day 2 for one seed and scale, in Python.
    Each table's rows are lists of text values in :data:`COLUMNS` order (what COPY reads)."""

    def __init__(self, *, scale: str | Scale = "tiny", seed: int = 42):
        self.scale = get_scale(scale)
        self.seed = seed

    def rng(self, *key) -> np.random.Generator:
        return stream(self.seed, "system_of_record", *key)

    # ---------------------------------------------------------------- day 1

    @cached_property
    def day1(self) -> dict[str, list[list]]:
        with tempfile.TemporaryDirectory(prefix="lakehouse-sor-") as scratch:
            ctx = Context(out_dir=Path(scratch), scale=self.scale, seed=self.seed)
            files: list = []
            ecommerce._orders(ctx, clean=files)  # the true rows; the files are discarded
            customers = self._customers(ctx)
            products = self._products(ctx)
        orders, lines = [], []
        rng = self.rng("orders", "updated_at")
        for order_rows, ts, line_rows in files:
            delay_lo = np.array([STATUS_DELAY_HOURS[r[3]][0] for r in order_rows])
            delay_hi = np.array([STATUS_DELAY_HOURS[r[3]][1] for r in order_rows])
            delay = (delay_lo + rng.random(len(order_rows)) * (delay_hi - delay_lo)) * HOUR_MS
            updated = np.minimum(ts + delay.astype("int64"), DAY1_CLOSE_MS - 1_000)
            order_updated = dict(zip((r[0] for r in order_rows), iso_ms(updated)))
            order_ts = dict(zip((r[0] for r in order_rows), iso_ms(ts)))
            orders += [[*row, order_updated[row[0]]] for row in order_rows]
            lines += [[*row, order_ts[row[0]]] for row in line_rows]
        for row in lines:
            row[1] = int(row[1])
            row[3] = int(row[3])
        # The nightly job: the latest open orders move on in one transaction at midnight.
        open_orders = [i for i, r in enumerate(orders) if r[3] in ("processing", "shipped")]
        nightly = sorted(open_orders, key=lambda i: orders[i][2])[-self._count(0.005, 3) :]
        close = iso_ms([DAY1_CLOSE_MS])[0]
        for i in nightly:
            orders[i][3] = NEXT_STATUS[orders[i][3]]
            orders[i][-1] = close
        self.nightly_keys = sorted(orders[i][0] for i in nightly)
        return {
            "customers": customers,
            "products": products,
            "orders": orders,
            "order_lines": lines,
        }

    def _count(self, rate: float, minimum: int) -> int:
        return max(minimum, int(round(self.scale.orders * rate)))

    def _customers(self, ctx: Context) -> list[list]:
        base = crm._Base(ctx)
        rows = []
        for i in range(ctx.customers.size):
            r = base.record(i)
            rows.append([r[name] for name, _ in COLUMNS["customers"]])
        return rows

    def _products(self, ctx: Context) -> list[list]:
        cat = ctx.catalog
        rng = self.rng("products", "updated_at")
        start = WINDOW_END_MS - 270 * DAY_MS
        updated = iso_ms(start + np.floor(rng.random(cat.size) * 260 * DAY_MS).astype("int64"))
        return [[*ecommerce.product_row(cat, i), updated[i]] for i in range(cat.size)]

    # ---------------------------------------------------------------- day 2

    @cached_property
    def day2(self) -> dict:
        """``{"insert": {table: rows}, "update": {table: [(key, {column: value})]},
        "delete": {table: [key]}}`` and the pitfalls, drawn from day 1."""
        day1 = self.day1
        rng = self.rng("day2")
        col = {t: [name for name, _ in COLUMNS[t]] for t in TABLES}

        def at(ms) -> str:
            return iso_ms([int(ms)])[0]

        def day2_time() -> str:
            return at(WINDOW_END_MS + MINUTE_MS + int(rng.integers(0, DAY_MS - 2 * MINUTE_MS)))

        insert = {t: [] for t in TABLES}
        update = {t: [] for t in TABLES}
        delete = {t: [] for t in TABLES}

        # customers: a few sign up, a few change their email and marketing consent
        customers = day1["customers"]
        n_new = max(2, self.scale.customers // 50)
        for j in range(n_new):
            like = customers[int(rng.integers(len(customers)))]
            cid = f"C{len(customers) + j + 1:06d}"
            row = dict(zip(col["customers"], like))
            row.update(
                customer_id=cid,
                email=f"{row['first_name'][:1].lower()}.{cid.lower()}@example.com",
                signup_date="2026-07-01",
                updated_at=day2_time(),
            )
            insert["customers"].append([row[c] for c in col["customers"]])
        moved = rng.choice(len(customers), size=max(3, self.scale.customers // 40), replace=False)
        for i in sorted(moved.tolist()):
            row = customers[i]
            update["customers"].append(
                (
                    (row[0],),
                    {
                        "email": f"{row[0].lower()}@mail.example.org",
                        "marketing_opt_in": not row[col["customers"].index("marketing_opt_in")],
                        "updated_at": day2_time(),
                    },
                )
            )

        # products: one repricing job at 06:00 (several rows, one instant), one new product
        products = day1["products"]
        active = [i for i, r in enumerate(products) if r[7] == "true"]
        repriced = rng.choice(active, size=max(3, len(products) // 10), replace=False)
        for i in sorted(repriced.tolist()):
            price = money(int(round(float(products[i][5]) * 105)))
            update["products"].append(
                ((products[i][0],), {"unit_price": price, "updated_at": at(REPRICE_MS)})
            )
        like = products[active[0]]
        new_product = [f"P{len(products) + 1:05d}", "Refill pack (new)", *like[2:5]]
        new_product += [like[5], like[6], "true", day2_time()]
        insert["products"].append(new_product)

        # orders: new orders with lines; status moves; purged cancelled orders; the late commit
        orders = day1["orders"]
        touched = set(self.nightly_keys)
        late_candidates = [r for r in orders if r[3] == "processing" and r[0] not in touched] or [
            r for r in orders if r[0] not in touched
        ]
        late = late_candidates[int(rng.integers(len(late_candidates)))]
        touched.add(late[0])
        late_change = {"status": "cancelled", "updated_at": at(DAY1_CLOSE_MS)}
        update["orders"].append(((late[0],), late_change))
        movable = [r for r in orders if r[3] in NEXT_STATUS and r[0] not in touched]
        for r in _pick(rng, movable, self._count(0.02, 5)):
            touched.add(r[0])
            change = {"status": NEXT_STATUS[r[3]], "updated_at": day2_time()}
            update["orders"].append(((r[0],), change))
        cancelled = [r[0] for r in orders if r[3] == "cancelled" and r[0] not in touched]
        purge = sorted(_pick(rng, cancelled, self._count(0.003, 2)))
        touched.update(purge)
        delete["orders"] = [(k,) for k in purge]
        purged = set(purge)
        delete["order_lines"] = [(r[0], r[1]) for r in day1["order_lines"] if r[0] in purged]
        last_order = max(int(r[0][1:]) for r in orders)
        customer_ids = [r[0] for r in customers] + [r[0] for r in insert["customers"]]
        product_ids = [products[i][0] for i in active]
        by_id = {r[0]: r for r in orders}
        for j in range(self._count(0.01, 5)):
            oid = f"O{last_order + j + 1:08d}"
            like = by_id[orders[int(rng.integers(len(orders)))][0]]
            ts = day2_time()
            row = dict(zip(col["orders"], like))
            row.update(
                order_id=oid,
                customer_id=customer_ids[int(rng.integers(len(customer_ids)))],
                order_ts=ts,
                status="processing",
                updated_at=ts,
            )
            insert["orders"].append([row[c] for c in col["orders"]])
            for n in range(1, int(rng.integers(1, 4)) + 1):
                price = int(rng.integers(500, 20_000))
                qty = int(rng.integers(1, 4))
                insert["order_lines"].append(
                    [oid, n, product_ids[int(rng.integers(len(product_ids)))], qty,
                     money(price), money(0), money(qty * price // 10), ts]
                )  # fmt: skip
        # order lines: a customer changes the quantity of a line of an open order
        open_lines = [
            r for r in day1["order_lines"] if r[0] not in touched and by_id[r[0]][3] == "processing"
        ] or [r for r in day1["order_lines"] if r[0] not in touched]
        for r in _pick(rng, open_lines, self._count(0.002, 2)):
            update["order_lines"].append(
                ((r[0], r[1]), {"quantity": r[3] + 1, "updated_at": day2_time()})
            )
        return {
            "insert": insert,
            "update": update,
            "delete": delete,
            "pitfalls": {
                "same_timestamp": {
                    "table": "shop.orders",
                    "updated_at": at(DAY1_CLOSE_MS),
                    "keys": list(self.nightly_keys),
                },
                "at_watermark": {
                    "table": "shop.orders",
                    "updated_at": at(DAY1_CLOSE_MS),
                    "keys": [late[0]],
                },
                "day2_same_timestamp": {
                    "table": "shop.products",
                    "updated_at": at(REPRICE_MS),
                    "keys": sorted(products[i][0] for i in repriced.tolist()),
                },
            },
        }

    # ---------------------------------------------------------------- records

    def watermarks(self) -> dict[str, str]:
        """The latest ``updated_at`` of each table after day 1."""
        return {qualified(t): max(row[-1] for row in self.day1[t]) for t in TABLES}

    def changes(self, day: int) -> Changes:
        rows = {qualified(t): len(self.day1[t]) for t in TABLES}
        record = Changes(
            scale=self.scale.name, seed=self.seed, day=day, rows=rows, watermarks=self.watermarks()
        )
        if day == 1:
            return record
        ops = self.day2
        for t in TABLES:
            name = qualified(t)
            width = len(KEYS[t])
            record.inserted[name] = sorted(key_text(r[:width]) for r in ops["insert"][t])
            record.updated[name] = sorted(key_text(k) for k, _ in ops["update"][t])
            record.deleted[name] = sorted(key_text(k) for k in ops["delete"][t])
            rows[name] += len(ops["insert"][t]) - len(ops["delete"][t])
        record.pitfalls = ops["pitfalls"]
        for t in TABLES:
            name, width = qualified(t), len(KEYS[t])
            touched = set(record.updated[name]) | set(record.deleted[name])
            record.boundary[name] = sum(
                1
                for row in self.day1[t]
                if row[-1] == record.watermarks[name] and key_text(row[:width]) not in touched
            )
        return record


# ------------------------------------------------------------------------------ loading


def _ddl() -> str:
    statements = [f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE", f"CREATE SCHEMA {SCHEMA}"]
    for t in TABLES:
        columns = [f"{name} {kind}" for name, kind in COLUMNS[t]]
        if len(KEYS[t]) > 1:
            columns.append(f"PRIMARY KEY ({', '.join(KEYS[t])})")
        statements.append(f"CREATE TABLE {qualified(t)} (\n  " + ",\n  ".join(columns) + "\n)")
        # the incremental extraction's predicate
        statements.append(f"CREATE INDEX ON {qualified(t)} (updated_at)")
    return ";\n".join(statements)


def _state(conn) -> str | None:
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
        (SCHEMA,),
    ).fetchone()
    return row[0] if row else None


def _stamp(sor: SystemOfRecord, day: int) -> str:
    return f"lakehouse system of record: scale={sor.scale.name} seed={sor.seed} day={day}"


def load_day1(conn, sor: SystemOfRecord) -> Changes:
    """Replace schema ``shop`` with day 1: tables, keys and indexes, the rows loaded with
    COPY (one stream per table, not one INSERT per row), in one transaction."""
    with conn.transaction():
        conn.execute(_ddl())
        with conn.cursor() as cur:
            for t in TABLES:
                names = ", ".join(name for name, _ in COLUMNS[t])
                with cur.copy(f"COPY {qualified(t)} ({names}) FROM STDIN") as copy:
                    for row in sor.day1[t]:
                        copy.write_row(row)
        conn.execute(f"COMMENT ON SCHEMA {SCHEMA} IS '{_stamp(sor, 1)}'")
    with conn.cursor() as cur:
        for t in TABLES:
            cur.execute(f"ANALYZE {qualified(t)}")
    return sor.changes(1)


def apply_day2(conn, sor: SystemOfRecord) -> Changes:
    """Apply day 2's changes to day 1 in one transaction: updates with their own
    ``updated_at`` (never ``now()``: the same seed gives the same rows), inserts, deletes."""
    ops = sor.day2
    with conn.transaction(), conn.cursor() as cur:
        for t in TABLES:
            names = [name for name, _ in COLUMNS[t]]
            if ops["insert"][t]:
                placeholders = ", ".join(["%s"] * len(names))
                cur.executemany(
                    f"INSERT INTO {qualified(t)} ({', '.join(names)}) VALUES ({placeholders})",
                    ops["insert"][t],
                )
            where = " AND ".join(f"{k} = %s" for k in KEYS[t])
            for key, values in ops["update"][t]:
                sets = ", ".join(f"{c} = %s" for c in values)
                cur.execute(
                    f"UPDATE {qualified(t)} SET {sets} WHERE {where}", [*values.values(), *key]
                )
        for t in reversed(TABLES):  # lines before their orders
            where = " AND ".join(f"{k} = %s" for k in KEYS[t])
            if ops["delete"][t]:
                cur.executemany(f"DELETE FROM {qualified(t)} WHERE {where}", ops["delete"][t])
        cur.execute(f"COMMENT ON SCHEMA {SCHEMA} IS '{_stamp(sor, 2)}'")
    return sor.changes(2)


def load(conn, *, scale: str | Scale = "tiny", seed: int = 42, day: int = 1) -> Changes:
    """Bring schema ``shop`` to ``day`` (1 or 2) for ``scale`` and ``seed`` and return what it
    holds. Idempotent: a database already at that day of the same data is left as it is; day 2
    reloads day 1 first unless the database is exactly at day 1."""
    if day not in (1, 2):
        raise ValueError(f"day must be 1 or 2, got {day!r}")
    sor = SystemOfRecord(scale=scale, seed=seed)
    state = _state(conn)
    if state == _stamp(sor, day):
        return sor.changes(day)
    if day == 1 or state != _stamp(sor, 1):
        load_day1(conn, sor)
    if day == 2:
        return apply_day2(conn, sor)
    return sor.changes(1)


def table_counts(conn) -> dict[str, int]:
    """Rows per table of schema ``shop`` as the database counts them."""
    return {
        qualified(t): conn.execute(f"SELECT count(*) FROM {qualified(t)}").fetchone()[0]
        for t in TABLES
    }
