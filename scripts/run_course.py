#!/usr/bin/env python3
"""Run every solution notebook in course order and write a summary of timings and results.

    python scripts/run_course.py --scale tiny          # what `make course` runs

Executed notebooks, kernel logs and summary.md / summary.json go to reports/run-<scale>/.
Exits 1 if any notebook failed. The engine is $LAKEHOUSE_ENGINE, else ``auto`` (delta-spark
once its jars are cached); set SPARK_REMOTE=sc://... to run every notebook through a Spark
Connect server. Run classic, the notebooks share one Spark driver in turn, each with a session of
its own (``lakehouse.shared_driver``), as notebooks on a cluster do; ``--own-drivers`` gives
each notebook's kernel a driver of its own instead, as a lone Jupyter kernel has.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from lakehouse import notebooks, shared_driver

ROOT = Path(__file__).resolve().parents[1]
SCALES = ("tiny", "small", "medium", "large")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default=os.environ.get("SCALE", "tiny"), choices=SCALES)
    parser.add_argument(
        "--engine",
        default=os.environ.get("LAKEHOUSE_ENGINE") or "auto",
        help="embedded | delta-spark | databricks | auto (default: $LAKEHOUSE_ENGINE or auto)",
    )
    parser.add_argument("--out", type=Path, help="report folder (default: reports/run-<scale>)")
    parser.add_argument(
        "--no-reset", action="store_true", help="pass reset=False (keep existing tables)"
    )
    parser.add_argument(
        "--own-drivers",
        action="store_true",
        help="start a Spark driver per notebook instead of one they share (classic runs)",
    )
    parser.add_argument("--stop-on-failure", action="store_true", help="stop at the first failure")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="solution notebooks to run (default: all)"
    )
    return parser.parse_args(argv)


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]


def markdown_summary(summary: dict) -> str:
    lines = [
        f"# Course run: scale `{summary['scale']}`, engine `{summary['engine']}`",
        "",
        f"Started {summary['started']} on Python {summary['python']}"
        + (
            f", through Spark Connect at `{summary['spark_remote']}`"
            if summary["spark_remote"]
            else ""
        )
        + ".",
        "",
        "| # | notebook | result | seconds |",
        "|---|---|---|---:|",
    ]
    for i, row in enumerate(summary["notebooks"], start=1):
        lines.append(f"| {i} | `{row['notebook']}` | {row['status']} | {row['seconds']:.1f} |")
    lines += [
        "",
        f"**{summary['passed']} passed, {summary['failed']} failed** in "
        f"{summary['total_seconds']:.1f} s.",
    ]
    failures = [row for row in summary["notebooks"] if row["status"] == "failed"]
    if failures:
        lines += ["", "## Failures", ""]
        for row in failures:
            lines += [
                f"### `{row['notebook']}`",
                "",
                f"Executed notebook: `{row['output']}`; kernel log: `{row['log']}`",
                "",
                "```",
                row["error"],
                "```",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def table(summary: dict) -> str:
    rows = [
        (row["notebook"], row["status"], f"{row['seconds']:.1f}") for row in summary["notebooks"]
    ]
    width = max([len("notebook"), *(len(r[0]) for r in rows)])
    out = [f"{'notebook':<{width}}  result  seconds", f"{'-' * width}  ------  -------"]
    out += [f"{name:<{width}}  {status:<6}  {secs:>7}" for name, status, secs in rows]
    out.append(
        f"{summary['passed']} passed, {summary['failed']} failed "
        f"in {summary['total_seconds']:.1f} s (scale {summary['scale']}, "
        f"engine {summary['engine']})"
    )
    return "\n".join(out)


def run_all(solutions, root, out_dir, parameters, kernel, args, summary) -> None:
    for index, solution in enumerate(solutions, start=1):
        rel = solution.relative_to(root / notebooks.SOLUTIONS_DIR)
        output = out_dir / rel
        log = output.with_suffix(".log")
        print(f"[{index}/{len(solutions)}] {rel.as_posix()} ...", end=" ", flush=True)
        start = time.perf_counter()
        error = ""
        try:
            notebooks.execute(
                solution,
                output,
                parameters=parameters,
                kernel_name=kernel,
                timeout=args.timeout,
                kernel_log=log,
            )
        except Exception as exc:  # a failed cell, a timeout or a dead kernel: all are reported
            error = notebooks.describe_failure(exc)
        seconds = time.perf_counter() - start
        status = "failed" if error else "passed"
        print(f"{status} in {seconds:.1f} s" + (f": {first_line(error)}" if error else ""))
        summary["notebooks"].append(
            {
                "notebook": rel.as_posix(),
                "status": status,
                "seconds": round(seconds, 2),
                "output": str(output.relative_to(root) if output.is_relative_to(root) else output),
                "log": str(log.relative_to(root) if log.is_relative_to(root) else log),
                "error": error,
            }
        )
        if error and args.stop_on_failure:
            break


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.root.resolve()
    solutions = (
        [p.resolve() for p in args.notebooks]
        if args.notebooks
        else notebooks.solution_notebooks(root)
    )
    if not solutions:
        print(f"no solution notebooks under {root / 'solutions'}", file=sys.stderr)
        return 1
    out_dir = (args.out or root / "reports" / f"run-{args.scale}").resolve()
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a report describes one run, never leftovers of an older one
    out_dir.mkdir(parents=True)

    os.environ["LAKEHOUSE_ENGINE"] = args.engine
    os.environ["LAKEHOUSE_SCALE"] = args.scale
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    parameters = {"scale": args.scale, "reset": not args.no_reset}
    kernel = notebooks.ensure_kernel()

    summary: dict = {
        "scale": args.scale,
        "engine": args.engine,
        "spark_remote": os.environ.get("SPARK_REMOTE"),
        "parameters": parameters,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "notebooks": [],
    }
    shown = out_dir.relative_to(root) if out_dir.is_relative_to(root) else out_dir
    print(
        f"Running {len(solutions)} solution notebook(s): scale {args.scale}, "
        f"engine {args.engine}; reports in {shown}"
    )
    begin = time.perf_counter()
    with ExitStack() as stack:
        if not args.own_drivers:
            attach = stack.enter_context(shared_driver.for_kernels(out_dir / "shared-driver.log"))
            os.environ.update(attach)
            summary["shared_driver"] = bool(attach)
        run_all(solutions, root, out_dir, parameters, kernel, args, summary)

    summary["total_seconds"] = round(time.perf_counter() - begin, 2)
    summary["passed"] = sum(row["status"] == "passed" for row in summary["notebooks"])
    summary["failed"] = sum(row["status"] == "failed" for row in summary["notebooks"])
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out_dir / "summary.md").write_text(markdown_summary(summary), encoding="utf-8")
    print()
    print(table(summary))
    print(f"summary: {out_dir / 'summary.md'}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
