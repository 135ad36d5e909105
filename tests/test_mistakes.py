"""The mistake harness: where its cells go, what it proves, and what it reports."""

from __future__ import annotations

import json

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lakehouse import mistakes

TASK = "x = 1\n# BEGIN SOLUTION\ndef double(v):\n    return 2 * v\n# END SOLUTION\n"
CHECK = "assert double(3) == 6, 'double(3) must be 6: multiply by 2'\nprint('ok')\n"


def lesson(*extra):
    cells = [
        new_markdown_cell("# A lesson"),
        new_code_cell(TASK),
        new_code_cell(CHECK),
        new_markdown_cell("## 2. Next section"),
        new_code_cell("assert double(1) == 2"),  # a later check: not this task's
        *extra,
    ]
    cells[1].id, cells[2].id = "task1", "check1"
    cells[2].metadata["tags"] = ["check"]
    cells[4].metadata["tags"] = ["check"]
    return new_notebook(cells=cells)


WRONG = mistakes.Mistake("task1", "adds instead", "def double(v):\n    return v + 2\n", "by 2")
SILENT = mistakes.Mistake("task1", "triples 0", "def double(v):\n    return 2 * v\n", "by 2")


def test_a_task_s_checks_stop_at_the_next_section():
    (task,) = mistakes.tasks(lesson(), [WRONG])
    assert task.checks == (CHECK,) and task.mistakes == (WRONG,)


def test_the_harness_cell_follows_the_task_s_last_check():
    nb = lesson()
    assert mistakes.insert_harness(nb, [WRONG], "m/l.ipynb") == 1
    sources = [c.source for c in nb.cells]
    assert sources.index(CHECK) + 1 == next(
        i for i, c in enumerate(nb.cells) if mistakes.HARNESS_TAG in c.metadata.get("tags", [])
    )


def test_a_mistake_naming_no_task_is_refused():
    with pytest.raises(ValueError, match="not tasks"):
        mistakes.tasks(lesson(), [mistakes.Mistake("check1", "n", "pass", "x")])


def run_harness(nb, found, tmp_path, monkeypatch):
    monkeypatch.setenv(mistakes.REPORT_ENV, str(tmp_path / "proofs.jsonl"))
    mistakes.insert_harness(nb, found, "m/l.ipynb")
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            exec(cell.source, namespace)  # noqa: S102 (the test's own cells)
    return namespace


def test_a_caught_mistake_is_proven_and_the_solution_restored(tmp_path, monkeypatch):
    namespace = run_harness(lesson(), [WRONG], tmp_path, monkeypatch)
    assert namespace["double"](5) == 10  # the solution again, for the rest of the lesson
    (proof,) = [json.loads(x) for x in (tmp_path / "proofs.jsonl").read_text().splitlines()]
    assert proof["caught"] and "multiply by 2" in proof["message"]


def test_a_mistake_no_check_catches_fails_the_lesson(tmp_path, monkeypatch):
    with pytest.raises(AssertionError, match="triples 0: no check failed"):
        run_harness(lesson(), [SILENT], tmp_path, monkeypatch)


def test_a_message_that_does_not_name_the_fix_fails(tmp_path, monkeypatch):
    vague = mistakes.Mistake("task1", "adds", WRONG.source, "use multiplication, not addition")
    with pytest.raises(AssertionError, match="its message lacks"):
        run_harness(lesson(), [vague], tmp_path, monkeypatch)


def test_the_lessons_catalogues_name_real_tasks():
    from helpers.notebook_runs import ROOT

    from lakehouse.notebooks import read, solution_notebooks

    for solution in solution_notebooks(ROOT):
        found = mistakes.load(solution)
        if found:
            tasks = mistakes.tasks(read(solution), found)
            assert all(len(t.mistakes) >= mistakes.MIN_PER_TASK for t in tasks), solution


def test_mistakes_are_undone_without_rerunning_the_solution_until_the_last(tmp_path, monkeypatch):
    """Between mistakes the names are put back as the lesson left them (a name a wrong answer
    bound is gone); the solution runs once more, after the last mistake, and its checks pass."""
    counted = "# BEGIN SOLUTION\nsolution_runs.append(1)\ndef double(v):\n    return 2 * v\n"
    nb = lesson()
    nb.cells.insert(1, new_code_cell("solution_runs = []"))
    nb.cells[2].source = nb.cells[2].source.replace("# BEGIN SOLUTION\n", counted)
    leaves_a_name = mistakes.Mistake(
        "task1", "binds more", "leftover = 1\ndef double(v):\n    return v + 2\n", "by 2"
    )
    namespace = run_harness(nb, [leaves_a_name, WRONG], tmp_path, monkeypatch)
    assert "leftover" not in namespace
    assert namespace["double"](5) == 10
    assert namespace["solution_runs"] == [1, 1]  # the lesson's run and the one after the last
