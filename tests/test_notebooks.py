"""Every solution notebook runs headless at CI scale in a classic Spark session, and the outputs
it marks for nbval match the committed expected outputs. This file runs modules 01-04 in course
order in one lake; tests/test_notebooks_from_05.py runs the rest in a lake of its own, so the
two pytest-xdist workers share the classic lessons (helpers/notebook_runs.py says why);
tests/test_notebooks_connect.py runs a subset again through Spark Connect.

A solution that marks outputs with ``# NBVAL_CHECK_OUTPUT`` runs under ``pytest --nbval-lax``,
which executes every cell (any error fails) and compares the marked outputs with
``tests/expected/<path>.outputs.json`` (written by ``make expected``; notebooks are committed
without outputs, so the expected ones are kept as JSON and turned back into a notebook for
nbval by ``materialize_expected``), with the mistake harness proving each task's catalogued
wrong answers caught in the same kernel. Other solutions run with papermill.
"""

from __future__ import annotations

import sys

import pytest
from helpers.notebook_runs import (
    cases,
    check_mistakes_proven,
    classic_run,  # noqa: F401 (a fixture: this file's lake)
    kafka_port,  # noqa: F401 (a fixture)
    kernel_name,  # noqa: F401 (a fixture)
    pg_port,  # noqa: F401 (a fixture)
    requires_java,
    run_classic,
)
from nbformat.v4 import new_code_cell, new_notebook

from lakehouse import notebooks

pytestmark = [pytest.mark.notebooks, requires_java]


def test_kernel_runs_this_interpreter(kernel_name, tmp_path):  # noqa: F811
    probe = new_notebook(cells=[new_code_cell("import sys\nprint(sys.executable)")])
    source = tmp_path / "probe.ipynb"
    notebooks.write(probe, source)
    executed = notebooks.execute(source, tmp_path / "out.ipynb", kernel_name=kernel_name)
    assert executed.cells[0].outputs[0]["text"].strip() == sys.executable


@pytest.mark.parametrize("solution", cases("classic", lake="first"))
def test_solution_notebook_runs(solution, kernel_name, classic_run, monkeypatch):  # noqa: F811
    run_classic(solution, *classic_run, kernel_name, monkeypatch)


def test_every_catalogued_mistake_was_proven_caught(classic_run):  # noqa: F811
    check_mistakes_proven(classic_run[0], "first")
