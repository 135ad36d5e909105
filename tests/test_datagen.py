"""The dataset generator: repeatable bytes, a truthful manifest, the CLI, and clear errors.

The manifest is checked against an independent recount: these tests parse the written files with
their own rules (from the manifest's defect descriptions), never with the generator's code.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lakehouse.datagen import (
    DATASETS,
    DEFECT_CLASSES,
    ML_DATASETS,
    SCALES,
    SCHEMAS,
    SOURCES,
    generate,
    load_manifest,
)
from lakehouse.datagen.cli import main

WINDOW_END = datetime.fromisoformat("2026-07-01T00:00:00+00:00")
EMAIL_IN_TEXT = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
PHONE_IN_TEXT = re.compile(r"\+\d[\d ()-]{7,}\d")
VALID_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
MONEY = re.compile(r"-?\d+\.\d{2}")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def after_window(day_or_ts: str | None) -> bool:
    if not day_or_ts:
        return False
    if len(day_or_ts) == 10:
        return day_or_ts > "2026-06-30"
    return ts(day_or_ts) >= WINDOW_END


def has_pii(text: str | None) -> bool:
    return bool(text) and bool(EMAIL_IN_TEXT.search(text) or PHONE_IN_TEXT.search(text))


def file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("tiny") / "data"
    started = time.perf_counter()
    generate(out, scale="tiny", seed=42)
    return out, time.perf_counter() - started


@pytest.fixture(scope="module")
def root(tiny) -> Path:
    return tiny[0]


# --- repeatability -------------------------------------------------------------------------


def test_tiny_generates_in_well_under_five_seconds(tiny):
    assert tiny[1] < 5, f"tiny took {tiny[1]:.1f} s"


def test_same_seed_gives_byte_identical_files(root, tmp_path):
    again = tmp_path / "again"
    generate(again, scale="tiny", seed=42)
    assert file_hashes(again) == file_hashes(root)


# Fixed reference tables, the same at every seed.
REFERENCE_FILES = {"payments/processors.csv", "payments/response_codes.csv"}


def test_different_seed_changes_every_data_file(root, tmp_path):
    other = tmp_path / "other"
    generate(other, scale="tiny", seed=7)
    ours, theirs = file_hashes(root), file_hashes(other)
    assert ours.keys() == theirs.keys()
    same = [path for path in ours if ours[path] == theirs[path]]
    assert sorted(same) == sorted(REFERENCE_FILES), f"files identical across seeds: {same}"


def test_regenerating_in_place_replaces_the_folder(tmp_path):
    out = tmp_path / "data"
    generate(out, scale="tiny", seed=7)
    generate(out, scale="tiny", seed=42, sources=["crm"])  # a new generation: the rest is stale
    assert sorted(p.name for p in out.iterdir()) == ["crm", "manifest.json"]
    assert list(load_manifest(out).datasets) == ["crm.customers"]


def test_regenerating_one_source_keeps_the_others(root, tmp_path):
    out = tmp_path / "data"
    generate(out, scale="tiny", seed=42)
    (out / "payments" / "transactions" / "stray.json").write_text("{}\n")
    generate(out, scale="tiny", seed=42, sources="payments")
    assert file_hashes(out) == file_hashes(root)


def test_sources_are_independent_streams(root, tmp_path):
    out = tmp_path / "web_only"
    generate(out, scale="tiny", seed=42, sources=["web"])
    ours, alone = file_hashes(root), file_hashes(out)
    assert alone["web/events/part-00000.parquet"] == ours["web/events/part-00000.parquet"]


# --- manifest truthfulness -------------------------------------------------------------------


def recount_crm(root: Path, files: list[str]) -> tuple[dict[str, Counter], int, set[str]]:
    spec = DATASETS["crm.customers"]
    found: dict[str, Counter] = defaultdict(Counter)
    rows, ids = 0, set()
    for rel in files:
        seen = set()
        for line in (root / rel).read_text(encoding="utf-8").splitlines():
            rows += 1
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                key = re.match(r'\{"customer_id":"(C\d{6})"', line).group(1)
                found["malformed_rows"][key] += 1
                ids.add(key)
                continue
            key = r["customer_id"]
            ids.add(key)
            if (key, r["updated_at"]) in seen:
                found["duplicates"][key] += 1
                continue
            seen.add((key, r["updated_at"]))
            if any(r[c] is None for c in spec.required):
                found["null_required"][key] += 1
            if r["email"] is not None and not VALID_EMAIL.fullmatch(r["email"]):
                found["invalid_emails"][key] += 1
            if after_window(r["date_of_birth"]) or after_window(r["signup_date"]):
                found["future_dates"][key] += 1
            if has_pii(r["notes"]):
                found["pii_in_free_text"][key] += 1
    return found, rows, ids


def read_csv(path: Path, spec_name: str) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(DATASETS[spec_name].column_names), f"{path}: header"
    return rows[1:]


def recount_orders(root, files, customer_ids) -> tuple[dict[str, Counter], int]:
    spec = DATASETS["ecommerce.orders"]
    names = spec.column_names
    found: dict[str, Counter] = defaultdict(Counter)
    rows, seen = 0, set()
    for rel in files:
        for row in read_csv(root / rel, spec.name):
            rows += 1
            key = row[0]
            record = dict(zip(names, row))
            money_ok = not record.get("shipping_cost") or MONEY.fullmatch(record["shipping_cost"])
            if len(row) != len(names) or not money_ok:
                found["malformed_rows"][key] += 1
                continue
            if key in seen:
                found["duplicates"][key] += 1
                continue
            seen.add(key)
            if any(record[c] == "" for c in spec.required):
                found["null_required"][key] += 1
            if after_window(record["order_ts"]):
                found["future_dates"][key] += 1
            if record["customer_id"] and record["customer_id"] not in customer_ids:
                found["orphan_keys"][key] += 1
    return found, rows


def recount_order_lines(root, files, product_ids) -> tuple[dict[str, Counter], int]:
    spec = DATASETS["ecommerce.order_lines"]
    names = spec.column_names
    found: dict[str, Counter] = defaultdict(Counter)
    rows, seen = 0, set()
    for rel in files:
        for row in read_csv(root / rel, spec.name):
            rows += 1
            key = f"{row[0]}:{row[1]}"
            record = dict(zip(names, row))
            money_ok = all(
                MONEY.fullmatch(record[c])
                for c in ("unit_price", "discount", "tax")
                if record.get(c)
            )
            if len(row) != len(names) or not money_ok:
                found["malformed_rows"][key] += 1
                continue
            if key in seen:
                found["duplicates"][key] += 1
                continue
            seen.add(key)
            if any(record[c] == "" for c in spec.required):
                found["null_required"][key] += 1
            if Decimal(record["unit_price"]) < 0:
                found["negative_amounts"][key] += 1
            if record["product_id"] and record["product_id"] not in product_ids:
                found["orphan_keys"][key] += 1
    return found, rows


def recount_web(root, files) -> tuple[dict[str, Counter], int, int]:
    spec = DATASETS["web.events"]
    found: dict[str, Counter] = defaultdict(Counter)
    rows, seen = 0, set()
    by_visitor: dict[str, list[datetime]] = defaultdict(list)
    for rel in files:
        highest = None
        for r in pq.read_table(root / rel).to_pylist():
            rows += 1
            key = r["event_id"]
            if key in seen:
                found["duplicates"][key] += 1
                continue
            seen.add(key)
            if any(r[c] is None for c in spec.required):
                found["null_required"][key] += 1
            if has_pii(r["page_url"]):
                found["pii_in_free_text"][key] += 1
            if r["event_ts"] >= WINDOW_END:
                found["future_dates"][key] += 1
                continue
            by_visitor[r["visitor_id"]].append(r["event_ts"])
            if highest is not None and r["event_ts"] < highest:
                found["out_of_order"][key] += 1
            else:
                highest = r["event_ts"]
    sessions = 0
    for times in by_visitor.values():
        times.sort()
        gaps = sum(1 for a, b in zip(times, times[1:]) if b - a > timedelta(minutes=30))
        sessions += 1 + gaps
    return found, rows, sessions


def recount_tickets(root, files) -> tuple[dict[str, Counter], int, set[str]]:
    spec = DATASETS["support.tickets_cdc"]
    found: dict[str, Counter] = defaultdict(Counter)
    rows, seen, tickets = 0, set(), set()
    highest: dict[str, int] = {}
    for rel in files:
        for line in (root / rel).read_text(encoding="utf-8").splitlines():
            rows += 1
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                m = re.match(r'\{"ticket_id":"(TK\d{7})","_op":"\w+","_seq":(\d+),', line)
                found["malformed_rows"][f"{m.group(1)}:{m.group(2)}"] += 1
                tickets.add(m.group(1))
                continue
            ticket, seq = r["ticket_id"], r["_seq"]
            tickets.add(ticket)
            key = f"{ticket}:{seq}"
            if key in seen:
                found["duplicates"][key] += 1
                continue
            seen.add(key)
            if any(r[c] is None for c in spec.required):
                found["null_required"][key] += 1
            if has_pii(r["subject"]):
                found["pii_in_free_text"][key] += 1
            if seq < highest.get(ticket, 0):
                found["out_of_order"][key] += 1
            else:
                highest[ticket] = seq
    return found, rows, tickets


def recount_payments(root, files) -> tuple[dict[str, Counter], int]:
    spec = DATASETS["payments.transactions"]
    found: dict[str, Counter] = defaultdict(Counter)
    rows, seen, highest = 0, set(), None
    for rel in files:
        records = []
        for line in (root / rel).read_text(encoding="utf-8").splitlines():
            rows += 1
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                key = re.match(r'\{"transaction_id":"(TX\d{10})",', line).group(1)
                found["malformed_rows"][key] += 1
                continue
            records.append(r)
            key = r["transaction_id"]
            if r["amount"] is not None and not MONEY.fullmatch(r["amount"]):
                found["malformed_rows"][key] += 1
                continue
            if key in seen:
                found["duplicates"][key] += 1
                continue
            seen.add(key)
            if any(r.get(c) is None for c in spec.required):
                found["null_required"][key] += 1
            if r["amount"] is not None and Decimal(r["amount"]) < 0:
                found["negative_amounts"][key] += 1
            event = ts(r["event_ts"])
            if ts(r["ingest_ts"]) - event > timedelta(hours=2):
                found["late_events"][key] += 1
                continue
            if highest is not None and event < highest:
                found["out_of_order"][key] += 1
            else:
                highest = event
        if all("device_fingerprint" in r for r in records):
            found["schema_change"][rel] += 1
        else:
            assert not any("device_fingerprint" in r for r in records), f"{rel}: mixed schema"
    return found, rows


def assert_matches(manifest, dataset: str, found: dict[str, Counter], rows: int) -> None:
    record = manifest.dataset(dataset)
    assert record.rows == rows, f"{dataset}: manifest rows {record.rows}, files hold {rows}"
    classes = set(record.defects) | set(found)
    for defect in sorted(classes):
        expected = Counter(manifest.defect_keys(dataset, defect))
        assert sum(expected.values()) == manifest.defect_count(dataset, defect)
        assert found.get(defect, Counter()) == expected, (
            f"{dataset}/{defect}: recount {sum(found.get(defect, Counter()).values())}, "
            f"manifest {sum(expected.values())}"
        )
    assert set(record.defects) == set(record.defect_rules), f"{dataset}: undocumented defect"


@pytest.fixture(scope="module")
def recounted(root):
    m = load_manifest(root)
    crm, crm_rows, customer_ids = recount_crm(root, m.files("crm.customers"))
    with open(root / "ecommerce/products.csv", newline="", encoding="utf-8") as handle:
        product_ids = {row["product_id"] for row in csv.DictReader(handle)}
    web, web_rows, sessions = recount_web(root, m.files("web.events"))
    tickets, ticket_rows, ticket_ids = recount_tickets(root, m.files("support.tickets_cdc"))
    return {
        "manifest": m,
        "crm.customers": (crm, crm_rows),
        "ecommerce.orders": recount_orders(root, m.files("ecommerce.orders"), customer_ids),
        "ecommerce.order_lines": recount_order_lines(
            root, m.files("ecommerce.order_lines"), product_ids
        ),
        "ecommerce.products": ({}, len(product_ids)),
        "web.events": (web, web_rows),
        "support.tickets_cdc": (tickets, ticket_rows),
        "payments.transactions": recount_payments(root, m.files("payments.transactions")),
        "sessions": sessions,
        "tickets": ticket_ids,
    }


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_manifest_counts_and_keys_match_an_independent_recount(recounted, dataset):
    found, rows = recounted[dataset]
    assert_matches(recounted["manifest"], dataset, found, rows)


def test_every_defect_class_appears_at_tiny_scale(recounted):
    m = recounted["manifest"]
    present = {d for record in m.datasets.values() for d, r in record.defects.items() if r.count}
    assert present == set(DEFECT_CLASSES), f"missing: {set(DEFECT_CLASSES) - present}"
    for record in m.datasets.values():
        empty = [d for d, r in record.defects.items() if r.count == 0]
        assert empty == [], f"{record.name}: declared but never injected: {empty}"


def test_manifest_files_rows_and_checksums(root):
    m = load_manifest(root)
    records = [*m.datasets.values(), *m.ml_datasets.values()]
    listed = {f.path: f for record in records for f in record.files}
    on_disk = {k: v for k, v in file_hashes(root).items() if k != "manifest.json"}
    assert set(listed) == set(on_disk)
    for path, entry in listed.items():
        assert entry.sha256 == on_disk[path], path
        assert entry.bytes == (root / path).stat().st_size, path
    for record in records:
        assert record.rows == sum(f.rows for f in record.files)
        row_level = Counter()
        for f in record.files:
            row_level.update(f.defects)
        for defect, count in row_level.items():
            assert record.defect_count(defect) == count, f"{record.name}/{defect} per file"
    assert m.sources["ecommerce"]["rows"] == sum(
        m.rows(n) for n in ("ecommerce.products", "ecommerce.orders", "ecommerce.order_lines")
    )
    assert (m.scale, m.seed, m.scale_table["customers"]) == ("tiny", 42, 200)


def test_facts_sessions_and_tickets_match_the_files(recounted):
    m = recounted["manifest"]
    assert m.dataset("web.events").facts["sessions"] == recounted["sessions"]
    assert m.dataset("support.tickets_cdc").facts["tickets"] == len(recounted["tickets"])


def test_row_counts_are_near_the_scale_table(recounted):
    m, tiny = recounted["manifest"], SCALES["tiny"]
    assert m.rows("ecommerce.products") == tiny.products
    assert tiny.orders <= m.rows("ecommerce.orders") < tiny.orders * 1.05
    assert 2_000 < m.rows("ecommerce.order_lines") < 3_000
    assert 4_000 < m.rows("web.events") < 6_000
    assert 200 < m.rows("support.tickets_cdc") < 400
    assert tiny.payments <= m.rows("payments.transactions") < tiny.payments * 1.05


# --- the SCD Type 2 batch ----------------------------------------------------------------------


def clean_rows(root: Path, rel: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for line in (root / rel).read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[r["customer_id"]].append(r)
    return out


def test_second_crm_batch_changes_addresses_and_segments_and_adds_customers(root):
    first = clean_rows(root, "crm/customers/batch=001/customers.json")
    second = clean_rows(root, "crm/customers/batch=002/customers.json")
    address = ("street", "city", "state", "postal_code", "country")
    moved, resegmented, unchanged, new = set(), set(), set(), set()
    for cid, versions in second.items():
        if cid not in first:
            new.add(cid)
            continue
        before = first[cid][0]
        for after in versions:
            assert after["updated_at"] > before["updated_at"], cid
            if any(after[c] != before[c] for c in address):
                moved.add(cid)
            if after["segment"] != before["segment"]:
                resegmented.add(cid)
            rest = [c for c in before if c != "updated_at"]
            if all(after[c] == before[c] for c in rest):
                unchanged.add(cid)
    assert moved and resegmented and new and unchanged
    assert not new & set(first)
    facts = load_manifest(root).dataset("crm.customers").facts["batch_002"]
    assert set(facts["address_changed"]) == moved
    assert set(facts["segment_changed"]) == resegmented
    assert set(facts["new_customers"]) == new
    assert set(facts["unchanged_resent"]) == unchanged
    assert {c for c, v in second.items() if len(v) > 1} == set(facts["multiple_versions"])


# --- schemas --------------------------------------------------------------------------------


def test_files_follow_their_declared_schemas(root):
    m = load_manifest(root)
    web = pq.read_schema(root / m.files("web.events")[0])
    assert web.remove_metadata() == DATASETS["web.events"].arrow_schema.remove_metadata()
    for name in ("crm.customers", "support.tickets_cdc", "payments.transactions"):
        columns = list(DATASETS[name].column_names)
        base = [c.name for c in DATASETS[name].columns if not c.added_in_schema_change]
        for rel in m.files(name):
            for line in (root / rel).read_text(encoding="utf-8").splitlines()[:50]:
                try:
                    keys = list(json.loads(line))
                except json.JSONDecodeError:
                    continue
                assert keys in (columns, base), f"{rel}: {keys}"


def test_schemas_export_simple_types_for_spark():
    assert set(SCHEMAS) == set(DATASETS) | set(ML_DATASETS)
    assert not set(DATASETS) & set(ML_DATASETS)
    payments = SCHEMAS["payments.transactions"]
    assert payments["amount"] == "decimal(12,2)" and payments["event_ts"] == "timestamp"
    raw = DATASETS["payments.transactions"].raw_column_types
    assert raw["amount"] == "string" and raw["is_fraud"] == "boolean"
    assert set(DATASETS["ecommerce.orders"].raw_column_types.values()) == {"string"}
    assert DATASETS["web.events"].ddl().startswith("event_id string, visitor_id string")


# --- CLI and bad input --------------------------------------------------------------------------


def test_cli_main_writes_a_manifest(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(["--scale", "tiny", "--seed", "3", "--out", str(out), "--sources", "crm,support"]) == 0
    )
    printed = capsys.readouterr().out
    assert "crm.customers" in printed and "support.tickets_cdc" in printed
    assert set(load_manifest(out).sources) == {"crm", "support"}


def test_cli_runs_as_a_module_and_matches_bytes_across_processes(root, tmp_path):
    out = tmp_path / "module"
    done = subprocess.run(
        [sys.executable, "-m", "lakehouse.datagen", "--scale", "tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "12345"},  # nothing may depend on set order
    )
    assert done.returncode == 0, done.stderr
    assert "ecommerce.order_lines" in done.stdout
    assert file_hashes(out) == file_hashes(root)


def test_cli_rejects_an_unknown_source(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x"), "--sources", "crm,billing"]) == 2
    assert "choose from crm, ecommerce, web, support, payments" in capsys.readouterr().err


def test_unknown_scale_names_the_valid_ones(tmp_path):
    with pytest.raises(
        ValueError, match="unknown scale 'huge': choose one of tiny, small, medium, large"
    ):
        generate(tmp_path, scale="huge")


def test_unknown_source_names_the_valid_ones(tmp_path):
    with pytest.raises(
        ValueError, match=r"unknown source\(s\) 'billing': choose from " + ", ".join(SOURCES)
    ):
        generate(tmp_path, sources=["crm", "billing"])


def test_bad_seed_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        generate(tmp_path, seed=-1)


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "thesis.docx").write_text("precious")
    with pytest.raises(ValueError, match="refusing to write into"):
        generate(tmp_path, sources=["crm"])
    assert (tmp_path / "thesis.docx").read_text() == "precious"


def test_load_manifest_explains_a_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate the data first"):
        load_manifest(tmp_path)
