"""A lesson's solution cells and its catalogue of mistakes, for the tests that prove each
mistake is caught by the lesson's check."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat


class LessonFiles:
    """``solutions/<module>/<NN>_<name>.ipynb`` and its ``.mistakes.json`` sidecar."""

    def __init__(self, notebook: Path):
        self.notebook = notebook
        self.mistakes = json.loads(notebook.with_suffix(".mistakes.json").read_text("utf-8"))

    def mistakes_of(self, cell: str) -> list[dict]:
        """The catalogue's wrong answers to the task cell ``cell``."""
        return [m for m in self.mistakes if m["task_cell"] == cell]

    def cell(self, cell_id: str) -> str:
        """The solution's source of the cell with this id."""
        nb = nbformat.read(self.notebook, as_version=4)
        return next(c.source for c in nb.cells if c.get("id") == cell_id)
