"""Compare the two local Delta engines, delta-spark and embedded, with plain Spark Parquet doing
the same work, in one run.

    python bench/bench_engines.py                                # 1M rows, both engines
    python bench/bench_engines.py --rows 100000 --repeats 1      # a quick run
    python bench/bench_engines.py --engines delta-spark --out results.json

A classic Spark JVM keeps the jars of its first session, so the engines cannot share one: each
runs in its own Python process (``bench_embedded.py --engine ...``), one after the other so that
they do not compete for the cores. Each process times its engine's Delta tables and plain Parquet
in the same Spark session, so every ratio compares figures taken in one JVM under the same load.
This script collects each process's JSON and prints one table, with the delta-spark targets
judged from the figures (nothing is asserted). bench/README.md explains each figure.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ENGINES, OPERATIONS, mb

HERE = Path(__file__).resolve().parent

# What delta-spark should reach: (operation, measure, threshold, wording). "ratio" is Delta
# rows/s over Parquet rows/s in the same process (for merge the Parquet side is a full rewrite
# of the table with the changes applied); "files" is the share of the table's files the
# selective read had to read.
TARGET_ENGINE = "delta-spark"
TARGETS = (
    ("append", "ratio", 0.90, ">= 0.90x parquet"),
    ("full scan", "ratio", 0.95, ">= 0.95x parquet"),
    ("1-column scan", "ratio", 0.95, ">= 0.95x parquet"),
    ("merge", "ratio", 0.50, ">= 0.50x parquet rewrite"),
    ("selective read", "files", 0.10, "<= 10% of files read"),
)


def judge(result: dict, measure: str, threshold: float) -> tuple[str, bool | None]:
    """The figure a target is about, as shown, and whether it meets the threshold (``None``
    when the figure is missing)."""
    if measure == "ratio":
        ratio = result.get("ratio")
        if ratio is None:
            return "n/a", None
        return f"{ratio:.2f}x", ratio >= threshold
    read, total = result.get("files_read"), result.get("files_total")
    if read is None or not total:
        return "n/a", None
    share = read / total
    return f"{read}/{total} files = {share:.0%}", share <= threshold


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else "MET" if met else "NOT MET"


# ------------------------------------------------------------------------------------------------
# One process per engine
# ------------------------------------------------------------------------------------------------
def run_engine(engine: str, args: argparse.Namespace, work: Path) -> dict:
    """Run ``bench_embedded.py --engine engine`` in a child process, echo its output with the
    engine's name in front, and return its JSON with a ``status``: ok, skipped (the engine
    cannot start here, with the reason) or failed (with the end of its output)."""
    out = work / f"{engine}.json"
    cmd = [
        sys.executable,
        str(HERE / "bench_embedded.py"),
        "--engine",
        engine,
        "--rows",
        str(args.rows),
        "--repeats",
        str(args.repeats),
        "--versions",
        str(args.versions),
        "--only",
        args.only,
        "--workdir",
        str(work / engine),
        "--out",
        str(out),
    ]
    if not args.breakdown:
        cmd.append("--no-profile")
    if args.keep:
        cmd.append("--keep")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    tail: collections.deque[str] = collections.deque(maxlen=25)
    started = time.perf_counter()
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        for line in proc.stdout:
            tail.append(line.rstrip())
            print(f"[{engine}] {line}", end="", flush=True)
        code = proc.wait()
    seconds = time.perf_counter() - started
    data = json.loads(out.read_text()) if out.is_file() else {}
    if data.get("skipped"):
        return {"status": "skipped", "reason": data["skipped"], **data}
    if code == 0 and "results" in data:
        return {"status": "ok", "wall_seconds": round(seconds, 1), **data}
    return {
        "status": "failed",
        "reason": f"exit code {code}; last lines of its output:\n    " + "\n    ".join(tail),
    }


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------
def files_cell(r: dict) -> str:
    if r.get("files_read") is None:
        return ""
    parquet = ""
    if r.get("parquet_files_read") is not None:
        parquet = f" | {r['parquet_files_read']}/{r['parquet_files_total']}"
    return f"{r['files_read']}/{r['files_total']}{parquet}"


def report(runs: dict[str, dict], args: argparse.Namespace) -> tuple[str, list[dict]]:
    ok = {e: run for e, run in runs.items() if run["status"] == "ok"}
    lines = [
        f"Delta engines vs plain Spark Parquet, {args.rows:,} rows, median of {args.repeats} "
        f"timed run(s) after one warm-up; each engine's parquet figures are taken in its own "
        f"process ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}, {os.cpu_count()} cores)",
        "",
    ]
    for engine, run in ok.items():
        meta = run["meta"]
        lines.append(
            f"  {engine}: pyspark {meta['pyspark']}, {meta.get('delta_version', '?')}, "
            f"{meta.get('seconds', '?')} s"
        )
    if not ok:
        lines.append("No engine ran: nothing to compare.")
        for engine, run in runs.items():
            lines.append(f"{run['status'].upper()} {engine}: {run['reason']}")
        return "\n".join(lines), []
    header = (
        f"{'operation':<22}{'engine':<13}{'delta rows/s':>13}{'parquet rows/s':>16}"
        f"{'ratio':>8}  {'files read':<14}{'delta MB':>9}{'parquet MB':>11}  "
        f"target ({TARGET_ENGINE})"
    )
    lines += ["", header, "-" * len(header)]
    rule = len(lines) - 1
    targets = {op: (measure, threshold, text) for op, measure, threshold, text in TARGETS}
    judged: list[dict] = []
    order = [r["operation"] for run in ok.values() for r in run["results"]]
    operations = list(dict.fromkeys(order))
    for op in operations:
        first = True
        for engine, run in ok.items():
            r = next((x for x in run["results"] if x["operation"] == op), None)
            if r is None:
                continue
            delta = f"{r['delta_rows_per_s']:,.0f}" if r["delta_rows_per_s"] else "n/a"
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "n/a"
            target = ""
            if engine == TARGET_ENGINE and op in targets:
                measure, threshold, text = targets[op]
                shown, met = judge(r, measure, threshold)
                target = f"{text}: {verdict(met)}"
                judged.append(
                    {
                        "engine": engine,
                        "operation": op,
                        "target": text,
                        "value": shown,
                        "met": met,
                    }
                )
            lines.append(
                f"{op if first else '':<22}{engine:<13}{delta:>13}"
                f"{r['parquet_rows_per_s']:>16,.0f}{ratio:>8}  {files_cell(r):<14}"
                f"{mb(r.get('delta_peak_total_rss')):>9}{mb(r.get('parquet_peak_total_rss')):>11}"
                f"  {target}".rstrip()
            )
            first = False
    lines[rule] = "-" * max(len(line) for line in lines[rule - 1 :])
    lines += [
        "",
        "ratio = delta rows/s / parquet rows/s, both measured in the engine's own process "
        "(1.00x = as fast as plain Parquet).",
        "files read = files the query read / files in the table, Delta | Parquet (delta-spark "
        "and Parquet: numFiles of the file scan in the executed plan; embedded: the files its "
        "reader plans).",
        "delta MB / parquet MB = driver JVM + Python workers RSS, the largest total at one "
        "moment during the operation.",
        "",
        "What each operation does:",
    ]
    for op in operations:
        texts = {
            e: r["what"] for e, run in ok.items() for r in run["results"] if r["operation"] == op
        }
        if len(set(texts.values())) == 1:
            lines.append(f"  {op}: {next(iter(texts.values()))}")
        else:
            lines += [f"  {op} ({engine}): {text}" for engine, text in texts.items()]

    lines += ["", f"Targets ({TARGET_ENGINE}, computed from the figures above):"]
    if TARGET_ENGINE not in ok:
        lines.append(f"  not judged: {TARGET_ENGINE} did not run")
    else:
        done = {t["operation"] for t in judged}
        for op, _measure, _threshold, text in TARGETS:
            if op not in done:
                judged.append(
                    {
                        "engine": TARGET_ENGINE,
                        "operation": op,
                        "target": text,
                        "value": "not measured",
                        "met": None,
                    }
                )
        rank = {op: i for i, (op, *_rest) in enumerate(TARGETS)}
        judged.sort(key=lambda t: rank[t["operation"]])
        for t in judged:
            lines.append(
                f"  {t['operation']:<16} {t['target']:<26} {t['value']:<22} {verdict(t['met'])}"
            )

    lines += ["", "Peak memory per engine (whole run):"]
    for engine, run in ok.items():
        mem = run.get("memory", {})
        workers = (
            f"largest Python worker {mb(mem['worker_hwm'])} MB (VmHWM), "
            f"{mem.get('python_processes', 0)} Python processes seen"
            if mem.get("worker_hwm")
            else "no Python workers"
        )
        lines.append(
            f"  {engine}: driver JVM + Python workers {mb(mem.get('total_peak'))} MB at one "
            f"moment; driver JVM {mb(mem.get('jvm_hwm'))} MB (VmHWM); {workers}"
        )
    for engine, run in runs.items():
        if run["status"] == "skipped":
            lines.append(f"SKIPPED {engine}: {run['reason']}")
        elif run["status"] == "failed":
            lines.append(f"FAILED {engine}: {run['reason']}")
        for note in run.get("notes", []):
            lines.append(f"NOTE ({engine}): {note}")
    return "\n".join(lines), judged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per table (1M)")
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated engines, run in this order (default: {','.join(ENGINES)})",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (3)")
    parser.add_argument("--versions", type=int, default=10, help="versions streamed (10)")
    parser.add_argument("--out", help="also write every figure to this JSON file")
    parser.add_argument(
        "--only",
        default=",".join(OPERATIONS),
        help=f"comma-separated subset of {','.join(OPERATIONS)} (default: all)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also run the embedded engine's breakdown and worker profile (minutes more)",
    )
    parser.add_argument("--workdir", help="folder for the tables (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the tables afterwards")
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        parser.error(f"--engines takes {', '.join(ENGINES)}, not {', '.join(unknown) or 'none'}")
    if args.rows < 1000 or args.rows % 10:
        parser.error("--rows must be a multiple of 10, at least 1000")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="lakehouse-bench-engines-"))
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict] = {}
    try:
        for engine in dict.fromkeys(engines):
            print(f"=== {engine}: {args.rows:,} rows, one process ===", flush=True)
            runs[engine] = run_engine(engine, args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text, judged = report(runs, args)
    print()
    print(text)
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "meta": {
                        "rows": args.rows,
                        "repeats": args.repeats,
                        "engines": engines,
                        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    },
                    "engines": runs,
                    "targets": judged,
                },
                indent=2,
                default=str,
            )
        )
        print(f"\nFigures written to {args.out}")
    return 1 if any(run["status"] == "failed" for run in runs.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
