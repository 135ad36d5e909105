"""Every solution notebook runs headless at CI scale in a classic Spark session, and the outputs
it marks for nbval match the committed expected outputs. (tests/test_notebooks_connect.py runs
them all again through Spark Connect.) The lessons' kernels take turns on one Spark driver
(lakehouse.shared_driver), each with a session of its own, as notebooks attached to one cluster
do.

A solution that marks outputs with ``# NBVAL_CHECK_OUTPUT`` runs under ``pytest --nbval-lax``,
which executes every cell (any error fails) and compares the marked outputs with
``tests/expected/<path>.outputs.json`` (written by ``make expected``; notebooks are committed
without outputs, so the expected ones are kept as JSON and turned back into a notebook for
nbval by ``materialize_expected``). Other solutions run with papermill.
"""

from __future__ import annotations

import sys

import pytest
from helpers.notebook_runs import (
    ROOT,
    cases,
    kafka_port,  # noqa: F401 (a fixture)
    kernel_name,  # noqa: F401 (a fixture)
    mistakes_report,
    mode_run,
    pg_port,  # noqa: F401 (a fixture)
    requires_java,
    run_nbval,
    run_papermill,
)
from nbformat.v4 import new_code_cell, new_notebook

from lakehouse import mistakes, notebooks, shared_driver

pytestmark = [pytest.mark.notebooks, requires_java]


@pytest.fixture(scope="module")  # the shared driver stops when the lessons are done
def classic_run(tmp_path_factory, kafka_port, pg_port):  # noqa: F811
    """The classic lessons' lake, and one Spark driver their kernels share in turn, each with a
    session of its own (lakehouse.shared_driver), as notebooks share a cluster's driver: a
    lesson then starts in a second instead of a JVM's 10-20 s and runs on a warm JVM."""
    workdir, env = mode_run(tmp_path_factory, "classic", kafka_port, pg_port)
    with shared_driver.running(env, workdir / "shared-driver.log") as attach:
        yield workdir, {**env, **attach}


def test_kernel_runs_this_interpreter(kernel_name, tmp_path):  # noqa: F811
    probe = new_notebook(cells=[new_code_cell("import sys\nprint(sys.executable)")])
    source = tmp_path / "probe.ipynb"
    notebooks.write(probe, source)
    executed = notebooks.execute(source, tmp_path / "out.ipynb", kernel_name=kernel_name)
    assert executed.cells[0].outputs[0]["text"].strip() == sys.executable


@pytest.mark.parametrize("solution", cases("classic"))
def test_solution_notebook_runs(solution, kernel_name, classic_run, monkeypatch):  # noqa: F811
    workdir, env = classic_run
    if solution is not None and notebooks.expected_path(ROOT, solution).exists():
        run_nbval(solution, workdir, env)
        return
    run_papermill(solution, "classic", workdir, env, kernel_name, monkeypatch)


def test_every_catalogued_mistake_was_proven_caught(classic_run):
    """After the lessons (pytest keeps a file's order): the harness cells of the lessons that
    ran proved every mistake of a task with check cells caught (a harness cell fails its
    lesson otherwise); the table per lesson is printed."""
    workdir, _ = classic_run
    table = mistakes.report(ROOT, mistakes_report(workdir))
    print("\n" + table.to_string(index=False))
    ran_seconds = table["harness s"].dropna()
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports" / "mistake-harness.txt").write_text(
        table.to_string(index=False)
        + f"\nthe mistake harness: {ran_seconds.sum():.0f} s in {len(ran_seconds)} lessons\n"
    )
    ran = table[table["caught"].notna()]
    if ran.empty:
        pytest.skip("no lesson with catalogued mistakes ran in this session")
    short = ran[ran["caught"] < ran["provable in kernel"]]
    assert short.empty, f"mistakes not all proven caught: {short.to_dict('records')}"
