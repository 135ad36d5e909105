"""The classic lessons of modules 05-07, in course order in a lake of their own (the first
lessons build what they read, as when a learner opens 05_ml first): the other half of
tests/test_notebooks.py, so the two pytest-xdist workers share the classic lessons."""

from __future__ import annotations

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

pytestmark = [pytest.mark.notebooks, requires_java]


@pytest.mark.parametrize("solution", cases("classic", lake="second"))
def test_solution_notebook_runs(solution, kernel_name, classic_run, monkeypatch):  # noqa: F811
    run_classic(solution, *classic_run, kernel_name, monkeypatch)


def test_every_catalogued_mistake_was_proven_caught(classic_run):  # noqa: F811
    check_mistakes_proven(classic_run[0], "second")
