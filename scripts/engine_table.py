#!/usr/bin/env python3
"""Write the README's table of which lessons run on which engine, from course runs.

    python scripts/run_course.py --engine delta-spark --out reports/run-delta-spark
    python scripts/run_course.py --engine embedded --out reports/run-embedded
    python scripts/engine_table.py reports/run-delta-spark reports/run-embedded

A lesson changed since a full run can be re-run alone (``run_course.py --out DIR LESSON``) and
its folder given after the full run's: the later result of a lesson wins. With ``--update`` the
recorded results (``tests/expected/engine_support.json``) stand for the full runs, so only the
changed lessons need running:

    python scripts/run_course.py --engine embedded --out reports/fix-embedded LESSON ...
    python scripts/engine_table.py --update reports/fix-delta-spark reports/fix-embedded

Each run's ``summary.json`` gives every lesson's result on its engine; a lesson that failed on
the embedded engine records the first statement it stopped at. The merged results go to
``tests/expected/engine_support.json`` and, rendered, between the README's ``engine-table``
markers; ``tests/test_notebook_tooling.py`` fails when the two disagree.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DATA = ROOT / "tests" / "expected" / "engine_support.json"
BEGIN, END = "<!-- engine-table:begin -->", "<!-- engine-table:end -->"


def merge(runs: list[dict], base: dict | None = None) -> dict:
    """``{"engines": [...], "lessons": {notebook: {engine: result}}}`` from run summaries.

    Several runs of one engine combine in the order given: a later run's result for a lesson
    replaces an earlier one's (a lesson re-run after it changed). ``base``, recorded results in
    the same form, comes before every run."""
    base = base or {"engines": [], "lessons": {}}
    engines = list(dict.fromkeys([*base["engines"], *(run["engine"] for run in runs)]))
    lessons = {lesson: dict(results) for lesson, results in base["lessons"].items()}
    for run in runs:
        if run.get("spark_remote"):
            raise SystemExit(f"the {run['engine']} run went through Spark Connect: use classic")
        for row in run["notebooks"]:
            result = "runs" if row["status"] == "passed" else stopped_at(row["error"])
            lessons.setdefault(row["notebook"], {})[run["engine"]] = result
    return {"engines": engines, "lessons": dict(sorted(lessons.items()))}


def stopped_at(error: str) -> str:
    """A failure shortened to what the reader needs: the Delta SQL statement it stopped at (also
    when a stream's error wraps it, from foreachBatch), else its first line."""
    first = (error.strip().splitlines() or ["failed"])[0]
    match = re.search(r"(?:^|:)[ \t]*([^:\n]+?) is Delta Lake SQL", error, re.MULTILINE)
    if match:
        return f"stops at `{match.group(1)}` (Delta SQL)"
    return f"fails: {first[:120]}"


def render(data: dict) -> str:
    engines = data["engines"]
    lines = [
        "| lesson | " + " | ".join(f"`{e}`" for e in engines) + " |",
        "|---|" + "---|" * len(engines),
    ]
    for lesson, results in data["lessons"].items():
        cells = [results.get(engine, "not run") for engine in engines]
        lines.append(f"| `{lesson}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_block(text: str) -> str | None:
    match = re.search(re.escape(BEGIN) + r"(.*?)" + re.escape(END), text, re.DOTALL)
    return match.group(1).strip("\n") if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="report folders of run_course.py")
    parser.add_argument(
        "--update", action="store_true", help=f"start from the results recorded in {DATA.name}"
    )
    args = parser.parse_args(argv)
    runs = [json.loads((folder / "summary.json").read_text()) for folder in args.runs]
    base = json.loads(DATA.read_text(encoding="utf-8")) if args.update else None
    data = merge(runs, base)
    DATA.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    text = README.read_text(encoding="utf-8")
    if readme_block(text) is None:
        print(f"README.md has no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    block = f"{BEGIN}\n{render(data)}\n{END}"
    pattern = re.escape(BEGIN) + r".*?" + re.escape(END)
    README.write_text(re.sub(pattern, lambda _: block, text, flags=re.DOTALL), encoding="utf-8")
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
