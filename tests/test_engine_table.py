"""The README's engine table is the rendering of the recorded course runs, not prose."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location(
        "engine_table", ROOT / "scripts" / "engine_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_engine_table_is_the_recorded_runs():
    script = load_script()
    data = json.loads(script.DATA.read_text(encoding="utf-8"))
    block = script.readme_block(script.README.read_text(encoding="utf-8"))
    assert block == script.render(data), (
        "README.md's engine table differs from tests/expected/engine_support.json: regenerate "
        "both with scripts/engine_table.py from two course runs (see its docstring)"
    )


def test_every_solution_notebook_has_a_result_on_every_engine():
    from lakehouse import notebooks

    script = load_script()
    data = json.loads(script.DATA.read_text(encoding="utf-8"))
    lessons = {
        p.relative_to(ROOT / "solutions").as_posix() for p in notebooks.solution_notebooks(ROOT)
    }
    assert set(data["lessons"]) == lessons, "re-run scripts/engine_table.py: the lessons changed"
    assert all(set(r) == set(data["engines"]) for r in data["lessons"].values())
    assert all(r["delta-spark"] == "runs" for r in data["lessons"].values()), (
        "every lesson must run on delta-spark, the reference engine"
    )


def test_a_stop_on_delta_sql_is_rendered_with_its_statement():
    script = load_script()
    error = (
        "cell 9 failed: UnsupportedOperation: ALTER TABLE ... SET TBLPROPERTIES is Delta Lake "
        "SQL that the embedded engine (local Spark with delta-rs) does not run. Run this on ..."
    )
    assert script.stopped_at(error) == "stops at `ALTER TABLE ... SET TBLPROPERTIES` (Delta SQL)"
    in_a_stream = (
        "cell 27 failed: StreamingQueryException: [STREAM_FAILED] Query terminated with "
        'exception: [FOREACH_BATCH_USER_FUNCTION_ERROR] ...\n  File "x.py", line 3\n'
        "lakehouse.engines.embedded.errors.UnsupportedOperation: MERGE INTO is Delta Lake SQL "
        "that the embedded engine ..."
    )
    assert script.stopped_at(in_a_stream) == "stops at `MERGE INTO` (Delta SQL)"
    assert (
        script.stopped_at("cell 2 failed: KeyError: 'x'") == "fails: cell 2 failed: KeyError: 'x'"
    )


def test_an_update_replaces_only_the_lessons_re_run():
    script = load_script()
    base = {
        "engines": ["delta-spark", "embedded"],
        "lessons": {
            "a.ipynb": {"delta-spark": "runs", "embedded": "runs"},
            "b.ipynb": {"delta-spark": "runs", "embedded": "runs"},
        },
    }
    rerun = {
        "engine": "embedded",
        "notebooks": [
            {
                "notebook": "b.ipynb",
                "status": "failed",
                "error": "cell 3 failed: UnsupportedOperation: MERGE INTO is Delta Lake SQL ...",
            }
        ],
    }
    data = script.merge([rerun], base)
    assert data["lessons"]["a.ipynb"] == {"delta-spark": "runs", "embedded": "runs"}
    assert data["lessons"]["b.ipynb"] == {
        "delta-spark": "runs",
        "embedded": "stops at `MERGE INTO` (Delta SQL)",
    }
    assert base["lessons"]["b.ipynb"]["embedded"] == "runs", "merge must not change its base"
