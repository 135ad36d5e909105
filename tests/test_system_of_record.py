"""The e-commerce system of record: deterministic for a seed and scale, the exports' true rows,
keys that hold, the traps of day 2 where the changes say they are, and a real PostgreSQL that
holds exactly what the changes record after each load (loaded with COPY, idempotent)."""

from __future__ import annotations

import csv

import pytest

from lakehouse.datagen import generate
from lakehouse.datagen import system_of_record as sor
from lakehouse.services import free_port, postgres


@pytest.fixture(scope="module")
def shop():
    return sor.SystemOfRecord(scale="tiny", seed=42)


def test_the_same_seed_gives_the_same_database(shop):
    again = sor.SystemOfRecord(scale="tiny", seed=42)
    assert again.day1 == shop.day1
    assert again.changes(2) == shop.changes(2)
    other = sor.SystemOfRecord(scale="tiny", seed=7)
    assert other.day1["orders"] != shop.day1["orders"]


def test_day_one_holds_the_exports_orders_without_their_defects(shop, tmp_path):
    manifest = generate(tmp_path, scale="tiny", seed=42, sources="ecommerce")
    exported = set()
    for path in sorted((tmp_path / "ecommerce" / "orders").glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as rows:
            exported |= {row[0] for row in list(csv.reader(rows))[1:] if row}
    assert {row[0] for row in shop.day1["orders"]} == exported
    orphans = manifest.datasets["ecommerce.orders"].defects["orphan_keys"].keys
    customers = {row[0] for row in shop.day1["customers"]}
    assert orphans, "the exports carry orphan customer ids"
    assert all(row[1] in customers for row in shop.day1["orders"]), "the database has none"


def test_keys_hold_on_both_days(shop):
    day1 = shop.day1
    for table, key in sor.KEYS.items():
        width = len(key)
        keys = [tuple(row[:width]) for row in day1[table]]
        assert len(keys) == len(set(keys)), f"{table}: duplicate keys"
    products = {row[0] for row in day1["products"]} | {
        row[0] for row in shop.day2["insert"]["products"]
    }
    orders = {row[0] for row in day1["orders"]} | {row[0] for row in shop.day2["insert"]["orders"]}
    deleted = {key[0] for key in shop.day2["delete"]["orders"]}
    lines = [row for row in day1["order_lines"] if row[0] not in deleted]
    lines += shop.day2["insert"]["order_lines"]
    assert all(row[0] in orders - deleted and row[2] in products for row in lines)


def test_day_two_carries_the_traps_of_a_watermark(shop):
    changes = shop.changes(2)
    watermark = changes.watermarks["shop.orders"]
    assert watermark == "2026-07-01T00:00:00.000Z"
    nightly = changes.pitfalls["same_timestamp"]["keys"]
    assert len(nightly) >= 2
    at_watermark = [row[0] for row in shop.day1["orders"] if row[-1] == watermark]
    assert at_watermark == nightly, "only the nightly job's orders share the watermark"
    late = changes.pitfalls["at_watermark"]["keys"]
    assert late[0] not in nightly and late[0] in changes.updated["shop.orders"]
    change = dict(shop.day2["update"]["orders"])[(late[0],)]
    assert change["updated_at"] == watermark, "updated at exactly the watermark"
    repriced = changes.pitfalls["day2_same_timestamp"]["keys"]
    assert len(repriced) >= 2 and set(repriced) == set(changes.updated["shop.products"])
    assert changes.deleted["shop.orders"] and changes.deleted["shop.order_lines"]
    for table in changes.rows:
        assert changes.rows[table] == (
            len(shop.day1[table.split(".")[1]])
            + len(changes.inserted[table])
            - len(changes.deleted[table])
        )
    assert changes.boundary["shop.orders"] == len(nightly)


def test_an_unknown_day_is_refused():
    with pytest.raises(ValueError, match="day must be 1 or 2"):
        sor.load(None, day=3)


# ------------------------------------------------------------------------------ PostgreSQL


def _postgres_missing() -> str | None:
    return postgres.unavailable()


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    if reason := _postgres_missing():
        pytest.skip(reason)
    server = postgres.Server(home=tmp_path_factory.mktemp("postgres"), port=free_port())
    server.start()
    yield server
    server.destroy()


def fetch_keys(conn, table: str) -> set[str]:
    key = ", ".join(sor.KEYS[table.split(".")[1]])
    return {sor.key_text(row) for row in conn.execute(f"SELECT {key} FROM {table}").fetchall()}


def test_postgres_holds_what_the_changes_record_after_each_day(pg, shop):
    with postgres.connect(pg.port) as conn:
        day1 = sor.load(conn, scale="tiny", seed=42, day=1)
        assert sor.table_counts(conn) == day1.rows
        before = {t: fetch_keys(conn, t) for t in day1.rows}
        changes = sor.load(conn, scale="tiny", seed=42, day=2)
        assert sor.table_counts(conn) == changes.rows
        for table, keys in before.items():
            after = fetch_keys(conn, table)
            assert after == (keys | set(changes.inserted[table])) - set(changes.deleted[table])
        late = changes.pitfalls["at_watermark"]["keys"][0]
        status, updated_at = conn.execute(
            "SELECT status, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') "
            "FROM shop.orders WHERE order_id = %s",
            (late,),
        ).fetchone()
        assert (status, updated_at) == ("cancelled", "2026-07-01T00:00:00")
        # loading day 2 again leaves the database as it is
        assert sor.load(conn, scale="tiny", seed=42, day=2) == changes
        assert sor.table_counts(conn) == changes.rows


def test_postgres_keeps_keys_and_foreign_keys(pg):
    with postgres.connect(pg.port) as conn:
        sor.load(conn, scale="tiny", seed=42, day=1)
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, contype FROM pg_constraint "
            "WHERE connamespace = 'shop'::regnamespace AND contype IN ('p', 'f') ORDER BY 1, 2"
        ).fetchall()
        assert constraints == [
            ("shop.customers", "p"),
            ("shop.order_lines", "f"),
            ("shop.order_lines", "f"),
            ("shop.order_lines", "p"),
            ("shop.orders", "f"),
            ("shop.orders", "p"),
            ("shop.products", "p"),
        ]
        with pytest.raises(Exception, match="foreign key"):
            conn.execute(
                "INSERT INTO shop.orders (order_id, customer_id, order_ts, status, channel, "
                "currency, country, updated_at) VALUES ('O99999999', 'C999999', now(), "
                "'processing', 'web', 'USD', 'US', now())"
            )


def test_the_command_line_loads_and_reports(pg, tmp_path, monkeypatch, capsys):
    from lakehouse.datagen import cli

    monkeypatch.setenv("LAKEHOUSE_PG_PORT", str(pg.port))
    out = tmp_path / "changes.json"
    assert cli.main(["--postgres", "--day", "2", "--changes", str(out), "--quiet"]) == 0
    assert '"day": 2' in out.read_text()
    monkeypatch.setenv("LAKEHOUSE_PG_PASSWORD", "not-the-password")
    assert cli.main(["--postgres"]) == 1
    assert "LAKEHOUSE_PG_PASSWORD" in capsys.readouterr().err
    monkeypatch.delenv("LAKEHOUSE_PG_PASSWORD")
    monkeypatch.setenv("LAKEHOUSE_PG_PORT", str(free_port()))
    assert cli.main(["--postgres"]) == 1
    assert "make pg-start" in capsys.readouterr().err
