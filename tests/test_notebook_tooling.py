"""Exercise generation, output stripping and notebook convention checks (lakehouse.notebooks)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from lakehouse import notebooks
from lakehouse.notebooks import (
    NotebookConventionError,
    expected_from_run,
    find_problems,
    generate_all,
    generate_exercise,
    parameters_problem,
    strip_outputs,
)

PARAMETERS = 'scale = "tiny"  # tiny | small | medium | large\nseed = 42\nreset = False\n'
SOLUTION_CODE = """\
orders = spark.range(10)
# BEGIN SOLUTION
# Keep the orders with an even id
even_orders = orders.where("id % 2 = 0")
# END SOLUTION
even_orders.count()"""
EXERCISE_CODE = """\
orders = spark.range(10)
# TODO: Keep the orders with an even id
raise NotImplementedError("Complete this cell: Keep the orders with an even id")
even_orders.count()"""
# Odd spacing and no trailing newline on purpose: check cells must survive byte for byte.
CHECK_CODE = 'assert even_orders.count() == 5,  "expected 5 even orders"   \n# BEGIN nothing'


def code(source: str, *tags: str, **fields) -> nbformat.NotebookNode:
    cell = new_code_cell(source, **fields)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def solution_notebook(*extra_cells) -> nbformat.NotebookNode:
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Bronze: orders\nLand the raw orders."),
            code(PARAMETERS, "parameters"),
            code(SOLUTION_CODE),
            code(CHECK_CODE, "check"),
            *extra_cells,
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return nb


def make_repo(tmp_path: Path, nb=None, rel="01_bronze/01_orders.ipynb") -> Path:
    """A tiny course repository with one solution notebook and its generated exercise."""
    (tmp_path / "pyproject.toml").write_text("")
    notebooks.write(nb or solution_notebook(), tmp_path / "solutions" / rel)
    generate_all(tmp_path)
    return tmp_path


def only(problems: list[str], text: str) -> list[str]:
    return [p for p in problems if text in p]


# --------------------------------------------------------------------------- exercise generation


def test_exercise_replaces_solution_block_with_hinted_stub():
    exercise = generate_exercise(solution_notebook())
    assert exercise.cells[2].source == EXERCISE_CODE


def test_exercise_stub_keeps_indentation_and_handles_blocks_without_hint():
    source = (
        "def clean(df):\n"
        "    # BEGIN SOLUTION\n"
        '    return df.dropna(subset=["id"])\n'
        "    # END SOLUTION\n"
        "\n"
        "# BEGIN SOLUTION\n"
        'x = 1  # "quoted" hint is not a comment line\n'
        '# Count the "clean" rows\n'
        "# END SOLUTION\n"
    )
    assert notebooks.exercise_source(source) == (
        "def clean(df):\n"
        "    # TODO\n"
        '    raise NotImplementedError("Complete this cell")\n'
        "\n"
        '# TODO: Count the "clean" rows\n'
        'raise NotImplementedError("Complete this cell: Count the \\"clean\\" rows")\n'
    )


def test_exercise_keeps_check_and_parameters_cells_byte_identical():
    solution = solution_notebook()
    exercise = generate_exercise(solution)
    assert exercise.cells[1].source == PARAMETERS
    assert exercise.cells[3].source == CHECK_CODE
    assert exercise.cells[3].metadata["tags"] == ["check"]


def test_exercise_has_no_outputs_or_noisy_metadata_but_keeps_tags():
    solved = code(SOLUTION_CODE, "keep-me", execution_count=7)
    solved.outputs = [new_output("execute_result", {"text/plain": "5"}, execution_count=7)]
    solved.metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00"}
    solved.metadata["papermill"] = {"duration": 1.2}
    nb = solution_notebook(solved)
    nb.metadata["papermill"] = {"parameters": {}}
    nb.metadata["widgets"] = {"state": {}}

    exercise = generate_exercise(nb)

    last = exercise.cells[-1]
    assert last.outputs == [] and last.execution_count is None
    assert last.metadata == {"tags": ["keep-me"]}
    assert "papermill" not in exercise.metadata and "widgets" not in exercise.metadata
    assert exercise.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[-1].outputs, "the solution passed in must not be modified"


def test_exercise_markdown_drops_solution_text():
    md = new_markdown_cell(
        "Which join keeps unmatched orders?\n<!-- BEGIN SOLUTION -->\nA left join.\n"
        "<!-- END SOLUTION -->\nRun the next cell."
    )
    exercise = generate_exercise(solution_notebook(md))
    assert exercise.cells[-1].source == "Which join keeps unmatched orders?\nRun the next cell."


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("# BEGIN SOLUTION\nx = 1\n", "without '# END SOLUTION'"),
        ("x = 1\n# END SOLUTION\n", "without a matching"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "nested"),
    ],
)
def test_unbalanced_markers_are_refused(source, message):
    with pytest.raises(NotebookConventionError, match=message):
        generate_exercise(solution_notebook(code(source)))


def test_solution_markers_in_a_check_cell_are_refused():
    bad = code("# BEGIN SOLUTION\nassert True\n# END SOLUTION", "check")
    with pytest.raises(NotebookConventionError, match="tagged 'check' must not contain"):
        generate_exercise(solution_notebook(bad))


# --------------------------------------------------------------------------- drift and problems


def test_generated_repo_has_no_problems(tmp_path):
    root = make_repo(tmp_path)
    exercise = notebooks.read(root / "01_bronze" / "01_orders.ipynb")
    assert exercise.cells[2].source == EXERCISE_CODE
    assert generate_all(root, check=True) == []
    assert find_problems(root) == []


def test_edited_exercise_is_reported_as_drift(tmp_path):
    root = make_repo(tmp_path)
    target = root / "01_bronze" / "01_orders.ipynb"
    exercise = notebooks.read(target)
    exercise.cells[3].source = CHECK_CODE.replace("== 5", "== 4")
    notebooks.write(exercise, target)

    assert generate_all(root, check=True) == [target]
    assert only(find_problems(root), "drifted") == [
        "01_bronze/01_orders.ipynb: exercise drifted from its solution (run `make exercises`)"
    ]
    generate_all(root)
    assert find_problems(root) == []


def test_reformatted_exercise_is_not_drift(tmp_path):
    root = make_repo(tmp_path)
    target = root / "01_bronze" / "01_orders.ipynb"
    target.write_text(nbformat.writes(notebooks.read(target), indent=4))
    assert generate_all(root, check=True) == []


def test_missing_and_orphaned_exercises_are_reported(tmp_path):
    root = make_repo(tmp_path)
    (root / "01_bronze" / "01_orders.ipynb").unlink()
    notebooks.write(generate_exercise(solution_notebook()), root / "02_silver" / "01_lost.ipynb")
    problems = find_problems(root)
    assert only(problems, "exercise missing") == [
        "01_bronze/01_orders.ipynb: exercise missing (run `make exercises`)"
    ]
    assert only(problems, "without a solution") == [
        "02_silver/01_lost.ipynb: exercise without a solution (solutions/02_silver/01_lost.ipynb)"
    ]


def test_committed_outputs_are_reported_and_stripped(tmp_path):
    root = make_repo(tmp_path)
    path = root / "solutions" / "01_bronze" / "01_orders.ipynb"
    nb = notebooks.read(path)
    nb.cells[2].execution_count = 3
    nb.cells[2].outputs = [new_output("stream", name="stdout", text="5\n")]
    notebooks.write(nb, path)

    assert find_problems(root) == [
        "solutions/01_bronze/01_orders.ipynb: outputs committed (run `make strip`)"
    ]
    assert strip_outputs(path) is True
    assert strip_outputs(path) is False
    assert find_problems(root) == []


def test_non_literal_parameters_cell_is_reported(tmp_path):
    nb = solution_notebook()
    nb.cells[1].source = 'import os\nlake = os.environ["LAKE"]\n'
    problems = find_problems(make_repo(tmp_path, nb))
    assert problems == [
        "solutions/01_bronze/01_orders.ipynb: parameters cell must hold only literals: "
        "line 1 is not an assignment of a literal"
    ]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (PARAMETERS, None),
        ("n: int = -3\nsizes = {'tiny': [1, 2.5], 'big': None}\n", None),
        ('scale = "ti" + "ny"', "line 1 assigns a non-literal value ('ti' + 'ny')"),
        ("rows = int('3')", "non-literal value (int('3'))"),
        ("config.scale = 'tiny'", "line 1 assigns to something other than a plain name"),
        ("print('hi')", "line 1 is not an assignment of a literal"),
        ("scale = ", "syntax error on line 1"),
    ],
)
def test_parameters_problem(source, problem):
    found = parameters_problem(source)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_first_code_cell_must_be_parameters_and_a_check_cell_must_exist(tmp_path):
    nb = solution_notebook()
    nb.cells[1].metadata["tags"] = []
    nb.cells[3].metadata["tags"] = []
    problems = find_problems(make_repo(tmp_path, nb))
    assert problems == [
        "solutions/01_bronze/01_orders.ipynb: the first code cell must be tagged 'parameters'",
        "solutions/01_bronze/01_orders.ipynb: no cell tagged 'check'",
    ]


@pytest.mark.parametrize(
    "source, used",
    [
        ("rdd = spark.sparkContext.parallelize([1, 2])", ".sparkContext"),
        ("spark.range(3).rdd.map(lambda r: r.id).collect()", ".rdd"),
        ("from pyspark import SparkContext", "SparkContext"),
        ("%time\nspark._jvm.java.lang.System.gc()", "._jvm"),
        ("n = spark.table('t')._jdf.count()", "._jdf"),
    ],
)
def test_a_call_only_a_classic_session_has_is_a_problem(tmp_path, source, used):
    nb = solution_notebook(code(source))
    problems = find_problems(make_repo(tmp_path, nb))
    assert len(problems) == 1, problems
    assert problems[0].startswith("solutions/01_bronze/01_orders.ipynb: code cell 4, line ")
    assert f"uses {used}, which Spark Connect" in problems[0]
    assert "use the DataFrame or SQL API" in problems[0]


def test_connect_safe_code_and_words_in_strings_are_not_problems(tmp_path):
    nb = solution_notebook(
        code('print("no sparkContext or .rdd here")  # nor .rdd in a comment\n'
             "df = spark.range(3).toPandas()\n!echo rdd")
    )  # fmt: skip
    assert find_problems(make_repo(tmp_path, nb)) == []


def test_a_repo_without_solutions_is_a_problem(tmp_path):
    assert find_problems(tmp_path) == [
        f"no solution notebooks found under {tmp_path / 'solutions'}"
    ]


# --------------------------------------------------------------------------- nbval sidecars


def marked_solution() -> nbformat.NotebookNode:
    return solution_notebook(code("# NBVAL_CHECK_OUTPUT\neven_orders.count()"))


def fake_run(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What papermill hands back: injected parameters, outputs everywhere, run metadata."""
    executed = nbformat.from_dict(nbformat.reads(notebooks.dumps(solution), as_version=4))
    executed.cells.insert(2, code('scale = "tiny"\nreset = True\n', "injected-parameters"))
    for n, cell in enumerate(notebooks.code_cells(executed), start=1):
        cell.execution_count = n
        cell.outputs = [new_output("execute_result", {"text/plain": str(n)}, execution_count=n)]
        cell.metadata["papermill"] = {"duration": 0.1}
    executed.metadata["papermill"] = {"parameters": {"scale": "tiny"}}
    return executed


def test_expected_outputs_keep_only_marked_cells():
    solution = marked_solution()
    data = expected_from_run(solution, fake_run(solution), solution="solutions/x.ipynb")
    assert [(c["cell"], c["source"]) for c in data["cells"]] == [
        (3, "# NBVAL_CHECK_OUTPUT\neven_orders.count()")
    ]
    assert data["cells"][0]["outputs"][0]["data"] == {"text/plain": "5"}  # its run number
    assert data["parameters"] == notebooks.CI_PARAMETERS
    assert data["code_sha256"] == notebooks.code_digest(solution)


def test_expected_outputs_refuse_a_run_of_other_code():
    solution = marked_solution()
    executed = fake_run(solution)
    executed.cells[-1].source = "print('something else')"
    with pytest.raises(ValueError, match="code differs"):
        expected_from_run(solution, executed)


def test_materialized_notebook_is_what_nbval_needs(tmp_path):
    solution = marked_solution()
    root = make_repo(tmp_path, solution)
    solution_path = root / "solutions" / "01_bronze" / "01_orders.ipynb"
    target = notebooks.expected_path(root, solution_path)
    notebooks.write_expected_file(expected_from_run(solution, fake_run(solution)), target)
    assert target == root / "tests" / "expected" / "01_bronze" / "01_orders.outputs.json"
    assert notebooks.solution_of_expected(root, target) == solution_path

    materialized = notebooks.read(
        notebooks.materialize_expected(root, solution_path, tmp_path / "run")
    )
    cells = notebooks.code_cells(materialized)
    assert notebooks.INJECTED_TAG in notebooks.tags(cells[1])  # right after the parameters
    assert "reset = True" in cells[1].source
    marked = [c for c in cells if c.outputs]
    assert [c.source for c in marked] == ["# NBVAL_CHECK_OUTPUT\neven_orders.count()"]
    assert marked[0].execution_count is not None  # nbval skips cells it considers unrun

    solution.cells[2].source += "\n"
    notebooks.write(solution, solution_path)
    with pytest.raises(ValueError, match="stale"):
        notebooks.materialize_expected(root, solution_path, tmp_path / "run")


def test_expected_outputs_missing_stale_and_orphaned_are_reported(tmp_path):
    solution = marked_solution()
    root = make_repo(tmp_path, solution)
    expected = root / "tests" / "expected" / "01_bronze" / "01_orders.outputs.json"
    assert only(find_problems(root), "tests/expected") == [
        "tests/expected/01_bronze/01_orders.outputs.json: missing; the solution marks outputs "
        "for nbval (run `make expected`)"
    ]

    notebooks.write_expected_file(expected_from_run(solution, fake_run(solution)), expected)
    assert find_problems(root) == []
    assert not notebooks.write_expected_file(
        expected_from_run(solution, fake_run(solution)), expected
    ), "rewriting identical expected outputs should leave the file alone"

    solution.cells[2].source += "\n"
    notebooks.write(solution, root / "solutions" / "01_bronze" / "01_orders.ipynb")
    generate_all(root)
    assert only(find_problems(root), "tests/expected") == [
        "tests/expected/01_bronze/01_orders.outputs.json: stale, its code differs from the "
        "solution (run `make expected`)"
    ]

    notebooks.write_expected_file(
        expected_from_run(solution, fake_run(solution)),
        root / "tests" / "expected" / "09_gone" / "x.outputs.json",
    )
    assert only(find_problems(root), "missing solution") == [
        "tests/expected/09_gone/x.outputs.json: expected outputs for a missing solution "
        "solutions/09_gone/x.ipynb"
    ]


# --------------------------------------------------------------------------- CLI and the repo


def test_cli_generate_then_check(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("")
    notebooks.write(solution_notebook(), tmp_path / "solutions" / "01_bronze" / "01_orders.ipynb")
    assert notebooks.main(["--root", str(tmp_path), "check"]) == 1
    assert "exercise missing" in capsys.readouterr().out
    assert notebooks.main(["--root", str(tmp_path), "generate"]) == 0
    assert notebooks.main(["--root", str(tmp_path), "check"]) == 0
    assert capsys.readouterr().out.strip().endswith("notebooks OK")


def test_repository_notebooks_follow_the_conventions(repo_root):
    problems = find_problems(repo_root)
    assert problems == [], "notebook problems:\n" + "\n".join(problems)


def test_run_course_runs_a_notebook_and_writes_its_summary(tmp_path, repo_root):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("run_course", repo_root / "scripts/run_course.py")
    run_course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_course)
    probe = tmp_path / "solutions" / "00_probe" / "00_probe.ipynb"
    probe.parent.mkdir(parents=True)
    parameters = new_code_cell('scale = "tiny"\nreset = False')
    parameters.metadata["tags"] = ["parameters"]
    probe_nb = new_notebook(cells=[parameters, new_code_cell("print(scale)")])
    probe_nb.metadata["kernelspec"] = {"name": "python3", "language": "python"}
    notebooks.write(probe_nb, probe)
    out = tmp_path / "report"
    argv = ["--root", str(tmp_path), "--out", str(out), "--own-drivers", str(probe)]
    assert run_course.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["passed"], summary["failed"]) == (1, 0)
    assert summary["notebooks"][0]["notebook"] == "00_probe/00_probe.ipynb"


# The kernelspec is installed by every pytest-xdist worker of a fresh checkout at the same
# moment; installing deletes then copies its folder, so without turns one worker fails
# (FileExistsError) and every notebook test it runs errors. Each child here gets the same
# fresh prefix and a copy slowed down, so without the lock they all collide.
_INSTALL_AT_ONCE = """
import shutil, sys, time
prefix, start = sys.argv[1], float(sys.argv[2])
sys.prefix = prefix  # before jupyter_core computes where kernelspecs live
copytree = shutil.copytree


def slow_copytree(*args, **kwargs):
    time.sleep(3)  # long enough for every child to be inside it, on a loaded machine too
    return copytree(*args, **kwargs)


shutil.copytree = slow_copytree
from lakehouse import notebooks

time.sleep(max(0.0, start - time.time()))
print(notebooks.ensure_kernel("lakehouse-at-once"))
"""


def test_processes_installing_the_kernel_at_once_all_get_it(tmp_path):
    import subprocess
    import sys
    import time

    script = tmp_path / "install.py"
    script.write_text(_INSTALL_AT_ONCE)
    start = time.time() + 5  # after every child has imported the course package
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "prefix"), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    failed = [out for child, out in zip(children, outputs) if child.returncode != 0]
    assert not failed, f"{len(failed)} of 4 processes failed to install it: {failed[0][-600:]}"
    spec = tmp_path / "prefix" / "share" / "jupyter" / "kernels" / "lakehouse-at-once"
    assert (spec / "kernel.json").exists()
