#!/usr/bin/env python3
"""Run the declarative pipeline twice and compare its Gold KPIs with the notebooks' Gold.

    python scripts/pipeline.py --scale tiny          # what `make pipeline` runs

Generates the sources (unless already there), starts from an empty pipeline (its own catalog,
<lake>/<catalog>_pipeline, and an empty landing folder), lands the first half of the payment
files and runs the pipeline, lands the rest and runs it again (an update: the streaming tables
read only the new files), then compares each payment KPI with the same KPI computed over the
notebooks' gold.fact_payments (built with the course package when missing). Prints each run's
time and the rows each table holds and gained. Exits 1 when a KPI differs or a run did not
process exactly the new files.
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
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # each line as it comes, into a pipe or a log
    os.environ.setdefault("LAKEHOUSE_ENGINE", "delta-spark")
    os.environ.setdefault("LAKEHOUSE_HOME", str(ROOT))

    from lakehouse import bronze, get_spark, settings
    from lakehouse.course import prepare_datasets
    from lakehouse.gold import facts
    from lakehouse.production import pipeline

    started = time.perf_counter()
    prepare_datasets(scale=args.scale, seed=args.seed)
    raw_root = settings(scale=args.scale, seed=args.seed).source_path()
    spark = get_spark(os.environ["LAKEHOUSE_ENGINE"], scale=args.scale)
    print(f"sources and Spark ready: {time.perf_counter() - started:.0f} s", flush=True)

    pipeline.reset(spark)
    deliveries = len(bronze.source_batches(pipeline.DATASET, raw_root))
    first = max(1, deliveries // 2)
    failures: list[str] = []
    with pipeline.Runner(spark) as runner:
        reports = []
        for run, files in enumerate((first, deliveries), start=1):
            landed = pipeline.deliver(spark, raw_root, files)
            report = runner.run()
            reports.append(report)
            print(f"\nrun {run}: {len(landed)} new file(s), {report.seconds:.0f} s")
            print(report.table().to_string(index=False))
            new_rows = bronze.read_raw(spark, pipeline.DATASET, landed).count()
            if report.added[pipeline.BRONZE] != new_rows:
                failures.append(
                    f"run {run} added {report.added[pipeline.BRONZE]} Bronze rows, but the new "
                    f"files hold {new_rows}: an update must read the new files only"
                )
    print("\nthe notebooks' Gold: building what is missing...", flush=True)
    facts.ensure_facts(spark, raw_root)
    for name, problems in pipeline.compare_with_gold(spark).items():
        print(f"{name}: {'matches gold' if not problems else 'DIFFERS'}")
        failures.extend(problems)
    total = time.perf_counter() - started
    print(
        f"\nrun times: {', '.join(f'{r.seconds:.0f} s' for r in reports)}; "
        f"make pipeline took {total:.0f} s"
    )
    if failures:
        print("\n".join(["", "FAILED:", *failures]), file=sys.stderr)
        return 1
    print("the pipeline's Gold KPIs match the notebooks' Gold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
