#!/usr/bin/env python3
"""Prove rows in = rows kept + rows quarantined for every source at one scale.

    python scripts/reconcile.py --scale small          # what `make reconcile SCALE=small` runs

Generates the sources (unless already there), lands them in Bronze, writes the quarantine, and
reconciles each source against the generator's manifest: Bronze rows = valid rows + quarantined
rows, and the quarantined keys are exactly the keys the generator broke. Prints a table with the
time each step took and writes reports/reconcile-<scale>.md. Exits 1 if any source does not
reconcile. Runs in its own lake and catalog (reports/reconcile-<scale>/), so it never touches
the course's tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default=os.environ.get("SCALE", "tiny"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args(argv)

    work = args.out / f"reconcile-{args.scale}"
    os.environ["LAKEHOUSE_LAKE"] = str(work / "lake")
    os.environ["LAKEHOUSE_CATALOG"] = f"reconcile_{args.scale}"
    os.environ.setdefault("LAKEHOUSE_ENGINE", "embedded")

    from lakehouse import bronze, get_spark, settings
    from lakehouse.course import drop_schema, prepare_datasets
    from lakehouse.silver import validation

    timings: dict[str, float] = {}

    def timed(step: str, fn, *a, **kw):
        start = time.perf_counter()
        result = fn(*a, **kw)
        timings[step] = time.perf_counter() - start
        print(f"{step}: {timings[step]:.1f} s", flush=True)
        return result

    manifest = timed("generate", prepare_datasets, scale=args.scale, seed=args.seed)
    raw_root = settings(scale=args.scale, seed=args.seed).source_path()
    spark = timed("start Spark", get_spark, os.environ["LAKEHOUSE_ENGINE"], scale=args.scale)
    for schema in ("bronze", "silver"):
        drop_schema(spark, schema)  # a fresh run: every count below comes from this run
    timed("bronze", bronze.ensure_bronze, spark, None, raw_root)
    timed("quarantine", validation.write_quarantine, spark)

    rows = []
    failures = []
    start = time.perf_counter()
    for dataset in bronze.SOURCES:
        result = validation.reconcile(spark, dataset, manifest)
        rows.append(result)
        try:
            result.assert_ok()
        except AssertionError as exc:
            failures.append(str(exc))
    timings["reconcile"] = time.perf_counter() - start

    header = "| source | bronze rows | valid | quarantined | manifest defects | reconciles |"
    lines = [
        f"# Reconciliation at scale {args.scale} (seed {args.seed})",
        "",
        header,
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.dataset} | {r.bronze_rows:,} | {r.valid_rows:,} | {r.quarantined_rows:,} | "
            f"{len(r.expected_keys):,} | {'yes' if r.ok else 'NO'} |"
        )
    total = sum(r.bronze_rows for r in rows)
    lines += [
        "",
        f"{total:,} Bronze rows. Seconds: "
        + ", ".join(f"{step} {seconds:.1f}" for step, seconds in timings.items()),
        "",
    ]
    lines += [f"- {failure}" for failure in failures]
    report = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"reconcile-{args.scale}.md").write_text(report)
    print(report)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
