"""What the tests of a lesson's mistake catalogue share: each wrong answer (and the solution)
defined from its source, and the catalogue's coverage of the lesson's tasks."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat


def load(lesson: Path) -> list[dict]:
    """The catalogue beside a solution notebook: ``<lesson>.mistakes.json``."""
    return json.loads(lesson.with_suffix(".mistakes.json").read_text(encoding="utf-8"))


def defined(source: str, name: str):
    """The object ``name`` that ``source`` (a task cell's code) defines."""
    scope: dict = {}
    exec(source, scope)  # noqa: S102 (the lesson's code or its catalogue's, from the repository)
    return scope[name]


def task_cell(lesson: Path, cell_id: str) -> str:
    nb = nbformat.read(lesson, as_version=4)
    return next(c for c in nb.cells if c.get("id") == cell_id).source


def assert_covers_every_task(lesson: Path, mistakes: list[dict], checked: set[str]) -> None:
    """Every task cell of ``lesson`` has a check in the tests and two mistakes or more."""
    nb = nbformat.read(lesson, as_version=4)
    tasks = {c["id"] for c in nb.cells if "# BEGIN SOLUTION" in c.source}
    assert tasks == {m["task_cell"] for m in mistakes} == checked
    assert all(sum(m["task_cell"] == t for m in mistakes) >= 2 for t in tasks)
