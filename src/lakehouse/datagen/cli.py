"""Command line: ``python -m lakehouse.datagen --scale tiny --seed 42 --out datasets/tiny``;
with ``--postgres [--day 2]``, the e-commerce system of record goes into the course's
PostgreSQL instead (``make pg-load``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .core import SOURCES, generate
from .manifest import DEFECT_CLASSES, Manifest
from .scales import SCALES

# column headers for the summary table, in DEFECT_CLASSES order
SHORT_NAMES = {
    "malformed_rows": "malformed",
    "null_required": "nulls",
    "negative_amounts": "negative",
    "duplicates": "dupes",
    "late_events": "late",
    "out_of_order": "disorder",
    "schema_change": "schema",
    "pii_in_free_text": "pii",
    "invalid_emails": "bad_email",
    "future_dates": "future",
    "orphan_keys": "orphans",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.datagen",
        description="Generate the course's raw sources, with known defects and a manifest.",
    )
    parser.add_argument(
        "--scale",
        default="tiny",
        choices=list(SCALES),
        help="size: " + "; ".join(s.describe() for s in SCALES.values()),
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default datasets/<scale>); regenerating replaces it",
    )
    parser.add_argument(
        "--sources",
        default=None,
        help=f"comma-separated subset of: {','.join(SOURCES)} (default all)",
    )
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None)
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    pg = parser.add_argument_group("PostgreSQL (the e-commerce system of record)")
    pg.add_argument(
        "--postgres",
        action="store_true",
        help="load customers, products, orders and order lines into schema 'shop' of the "
        "course's PostgreSQL (make pg-start; LAKEHOUSE_PG_PORT) instead of writing files",
    )
    pg.add_argument(
        "--day",
        type=int,
        choices=(1, 2),
        default=1,
        help="with --postgres: 1, the end of the data window; 2, then a second day of "
        "inserts, updates and deletes (default 1)",
    )
    pg.add_argument("--changes", default=None, help="with --postgres: write the changes as JSON")
    return parser


def summary_table(manifest: Manifest) -> str:
    """One line per dataset: files, rows, and the count of each defect class ('-': none); the
    ML module's datasets last."""
    every = [*manifest.datasets.values(), *manifest.ml_datasets.values()]
    classes = [c for c in DEFECT_CLASSES if any(c in d.defects for d in every)]
    header = ["dataset", "files", "rows"] + [SHORT_NAMES[c] for c in classes]
    body = []
    for d in every:
        counts = [str(d.defects[c].count) if c in d.defects else "-" for c in classes]
        body.append([d.name, str(len(d.files)), f"{d.rows:,}"] + counts)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])])

    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in body])


def load_postgres(args) -> int:
    from lakehouse.services import ServiceError, postgres

    from . import system_of_record

    started = time.perf_counter()
    try:
        with postgres.connect() as conn:
            changes = system_of_record.load(conn, scale=args.scale, seed=args.seed, day=args.day)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.changes:
        Path(args.changes).write_text(changes.to_json() + "\n", encoding="utf-8")
    if not args.quiet:
        print(changes.summary())
        print(
            f"\nschema {system_of_record.SCHEMA} at day {args.day}, scale {changes.scale}, "
            f"seed {changes.seed}, in {time.perf_counter() - started:.1f} s -> "
            f"{postgres.jdbc_url()}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.postgres:
        return load_postgres(args)
    out = args.out or f"datasets/{args.scale}"
    started = time.perf_counter()
    try:
        manifest = generate(
            out, scale=args.scale, seed=args.seed, sources=args.sources, progress=args.progress
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        elapsed = time.perf_counter() - started
        total = sum(d.rows for d in [*manifest.datasets.values(), *manifest.ml_datasets.values()])
        print(summary_table(manifest))
        print(
            f"\n{total:,} rows, scale {manifest.scale}, seed {manifest.seed}, "
            f"in {elapsed:.1f} s -> {out}/manifest.json"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
