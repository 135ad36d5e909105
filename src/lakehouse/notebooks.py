"""Notebook tooling: exercises generated from solutions, output stripping, convention checks,
and headless execution with papermill (used by tests, ``scripts/run_course.py`` and the CLI).

Solutions under ``solutions/`` are the source of truth. ``lakehouse-notebooks generate`` writes
each exercise at the same relative path without the ``solutions/`` prefix; ``check`` lists every
broken convention; ``strip`` removes outputs; ``expected`` refreshes the expected outputs that
nbval compares, kept as JSON in ``tests/expected/`` (see :func:`write_expected`).

Example::

    from lakehouse.notebooks import find_problems
    assert find_problems(".") == []
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import nbformat
from nbformat import NotebookNode

SOLUTIONS_DIR = "solutions"
EXPECTED_DIR = Path("tests") / "expected"
SANITIZE_FILE = EXPECTED_DIR / "nbval_sanitize.cfg"
EXPECTED_SUFFIX = ".outputs.json"
KERNEL_NAME = "lakehouse"

PARAMETERS_TAG = "parameters"
CHECK_TAG = "check"
INJECTED_TAG = "injected-parameters"

# Parameters used whenever the course runs headless for checking (CI, `make expected`).
CI_PARAMETERS: dict[str, object] = {"scale": "tiny", "reset": True}

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)#+[ \t]*BEGIN SOLUTION[ \t]*$")
_END = re.compile(r"^[ \t]*#+[ \t]*END SOLUTION[ \t]*$")
_MD_BLOCK = re.compile(r"<!--\s*BEGIN SOLUTION\s*-->.*?<!--\s*END SOLUTION\s*-->\n?", re.DOTALL)
_MD_MARKER = re.compile(r"<!--\s*(BEGIN|END) SOLUTION\s*-->")
_NBVAL_COMMENT = re.compile(r"^[ \t]*#+[ \t]*NBVAL_CHECK_OUTPUT[ \t]*$", re.MULTILINE)

# Metadata that changes on every run and means nothing to a reader.
_NOISY_CELL_METADATA = ("execution", "papermill", "ExecuteTime")
_NOISY_NOTEBOOK_METADATA = ("papermill", "widgets", "execution")


class NotebookConventionError(ValueError):
    """A solution notebook breaks a convention that exercise generation relies on."""


# --------------------------------------------------------------------------- discovery


def solution_notebooks(root: str | Path) -> list[Path]:
    """Every solution notebook under ``root/solutions``, sorted (the course's run order)."""
    return _notebooks_under(Path(root) / SOLUTIONS_DIR)


def expected_files(root: str | Path) -> list[Path]:
    """Every expected-outputs file under ``root/tests/expected``, sorted."""
    folder = Path(root) / EXPECTED_DIR
    return sorted(folder.rglob(f"*{EXPECTED_SUFFIX}")) if folder.is_dir() else []


def exercise_path(root: str | Path, solution: str | Path) -> Path:
    """Where the exercise of ``solution`` lives: same relative path without ``solutions/``."""
    root = Path(root)
    return root / Path(solution).relative_to(root / SOLUTIONS_DIR)


def expected_path(root: str | Path, solution: str | Path) -> Path:
    """Where the expected outputs of ``solution`` live: ``tests/expected/<path>.outputs.json``."""
    root = Path(root)
    rel = Path(solution).relative_to(root / SOLUTIONS_DIR)
    return root / EXPECTED_DIR / rel.parent / (rel.stem + EXPECTED_SUFFIX)


def solution_of_expected(root: str | Path, expected: str | Path) -> Path:
    """The solution notebook an expected-outputs file belongs to."""
    root = Path(root)
    rel = Path(expected).relative_to(root / EXPECTED_DIR)
    return root / SOLUTIONS_DIR / rel.parent / (rel.name[: -len(EXPECTED_SUFFIX)] + ".ipynb")


def exercise_dirs(root: str | Path) -> list[Path]:
    """Top-level lesson folders: those mirrored under solutions/ and any named like ``01_x``."""
    root = Path(root)
    names = {p.name for p in (root / SOLUTIONS_DIR).glob("*") if p.is_dir()}
    names |= {p.name for p in root.glob("[0-9][0-9]_*") if p.is_dir()}
    return [root / name for name in sorted(names)]


def _notebooks_under(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.relative_to(folder).parts
    )


# --------------------------------------------------------------------------- reading, writing


def read(path: str | Path) -> NotebookNode:
    return nbformat.read(str(path), as_version=4)


def dumps(nb: NotebookNode) -> str:
    """Serialize the way Jupyter does (indent 1, trailing newline), so diffs stay small."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def write(nb: NotebookNode, path: str | Path) -> bool:
    """Write ``nb`` to ``path`` unless the file already holds exactly that; True if written."""
    path = Path(path)
    text = dumps(nb)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def tags(cell: Mapping) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def code_cells(nb: NotebookNode) -> list[NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def is_nbval_checked(cell: Mapping) -> bool:
    """True if nbval --nbval-lax compares this cell's output (comment marker or tag)."""
    if cell.get("cell_type") != "code":
        return False
    return bool(_NBVAL_COMMENT.search(cell.get("source", ""))) or (
        "nbval-check-output" in tags(cell)
    )


# --------------------------------------------------------------------------- cleaning


def clean(nb: NotebookNode, *, keep_outputs=lambda cell: False) -> NotebookNode:
    """Return a copy without outputs, execution counts and noisy metadata (``tags`` are kept).

    ``keep_outputs(cell)`` selects code cells whose outputs and execution count survive.
    """
    nb = copy.deepcopy(nb)
    for key in _NOISY_NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in _NOISY_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code" and not keep_outputs(cell):
            cell.outputs = []
            cell.execution_count = None
    return nb


def has_outputs(nb: NotebookNode) -> bool:
    return any(c.get("outputs") or c.get("execution_count") is not None for c in code_cells(nb))


def strip_outputs(path: str | Path) -> bool:
    """Strip outputs, execution counts and noisy metadata from the notebook at ``path`` in place.

    Returns True if the file changed.
    """
    return write(clean(read(path)), path)


# --------------------------------------------------------------------------- exercises


def _hint_literal(hint: str) -> str:
    return hint.replace("\\", "\\\\").replace('"', '\\"')


def _stub(indent: str, hint: str, newline: str) -> str:
    if hint:
        message = f"Complete this cell: {_hint_literal(hint)}"
        return f'{indent}# TODO: {hint}\n{indent}raise NotImplementedError("{message}"){newline}'
    return f'{indent}# TODO\n{indent}raise NotImplementedError("Complete this cell"){newline}'


def exercise_source(source: str, *, where: str = "cell") -> str:
    """Replace each ``# BEGIN SOLUTION`` … ``# END SOLUTION`` block of a code cell by a stub.

    The stub keeps the block's indentation: ``# TODO: <hint>`` and
    ``raise NotImplementedError("Complete this cell: <hint>")``, where the hint is the first
    comment line inside the block. Everything outside the markers is kept byte for byte.
    """
    out: list[str] = []
    block: list[str] | None = None
    indent = ""
    for line in source.splitlines(keepends=True):
        text = line.rstrip("\r\n")
        if block is None:
            begin = _BEGIN.match(text)
            if begin:
                block, indent = [], begin.group("indent")
            elif _END.match(text):
                raise NotebookConventionError(
                    f"{where}: '# END SOLUTION' without a matching '# BEGIN SOLUTION'"
                )
            else:
                out.append(line)
        elif _END.match(text):
            hint = next(
                (b.strip().lstrip("#").strip() for b in block if b.strip().startswith("#")), ""
            )
            newline = line[len(text) :]
            out.append(_stub(indent, hint, newline))
            block = None
        elif _BEGIN.match(text):
            raise NotebookConventionError(f"{where}: nested '# BEGIN SOLUTION' blocks")
        else:
            block.append(text)
    if block is not None:
        raise NotebookConventionError(f"{where}: '# BEGIN SOLUTION' without '# END SOLUTION'")
    return "".join(out)


def exercise_markdown(source: str, *, where: str = "cell") -> str:
    """Drop ``<!-- BEGIN SOLUTION -->`` … ``<!-- END SOLUTION -->`` spans from markdown."""
    result = _MD_BLOCK.sub("", source)
    if _MD_MARKER.search(result):
        raise NotebookConventionError(f"{where}: unbalanced <!-- BEGIN/END SOLUTION --> markers")
    return result


def generate_exercise(solution_nb: NotebookNode, *, name: str = "notebook") -> NotebookNode:
    """Build the exercise notebook from a solution notebook (the input is not modified).

    Cells tagged ``check`` (and the ``parameters`` cell) are copied byte-identical and must not
    contain solution markers. Outputs, execution counts and noisy metadata are removed.
    """
    nb = clean(solution_nb)
    for index, cell in enumerate(nb.cells):
        where = f"{name}, cell {index}"
        if cell.cell_type == "code":
            protected = {CHECK_TAG, PARAMETERS_TAG} & set(tags(cell))
            if protected:
                if _BEGIN.search(cell.source) or re.search(r"END SOLUTION", cell.source):
                    raise NotebookConventionError(
                        f"{where}: a cell tagged {sorted(protected)[0]!r} must not contain "
                        "solution markers (it is copied to the exercise unchanged)"
                    )
                continue
            cell.source = exercise_source(cell.source, where=where)
        elif cell.cell_type == "markdown":
            cell.source = exercise_markdown(cell.source, where=where)
    return nb


def generate_all(root: str | Path, check: bool = False) -> list[Path]:
    """Write every exercise from its solution; return the paths written.

    With ``check=True`` nothing is written and the exercises that are missing or differ from
    what their solution generates are returned instead.
    """
    root = Path(root)
    changed: list[Path] = []
    for solution in solution_notebooks(root):
        target = exercise_path(root, solution)
        exercise = generate_exercise(read(solution), name=str(solution.relative_to(root)))
        if check:
            if not target.exists() or not _same_notebook(read(target), exercise):
                changed.append(target)
        elif write(exercise, target):
            changed.append(target)
    return changed


def _same_notebook(a: NotebookNode, b: NotebookNode) -> bool:
    # Compare content, not JSON formatting: a re-save by another tool is not drift.
    return nbformat.reads(dumps(a), as_version=4) == nbformat.reads(dumps(b), as_version=4)


# --------------------------------------------------------------------------- checks


def parameters_problem(source: str) -> str | None:
    """Why a ``parameters`` cell is not plain literal assignments, or None if it is."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return f"syntax error on line {exc.lineno}: {exc.msg}"
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            return f"line {stmt.lineno} is not an assignment of a literal"
        if not all(isinstance(t, ast.Name) for t in targets):
            return f"line {stmt.lineno} assigns to something other than a plain name"
        try:
            ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            return f"line {stmt.lineno} assigns a non-literal value ({ast.unparse(value)})"
    return None


def find_problems(root: str | Path) -> list[str]:
    """Every broken notebook convention in the repository at ``root``, one message each.

    Checks: committed outputs; solutions whose first code cell is not tagged ``parameters`` or
    holds anything but literal assignments; solutions without a ``check`` cell; solutions using
    what a Databricks workspace refuses (only a classic session's SparkContext, RDDs and JVM
    handles, caching, Spark settings serverless does not accept, other streaming triggers than
    availableNow, local paths, widgets nothing feeds: :mod:`lakehouse.production.compat`, with
    the widgets a ``databricks.yml`` bundle feeds); solution markers
    that cannot be turned into an exercise; exercises missing, drifted or orphaned; nbval sidecars
    missing, stale or orphaned. An empty list means all is well.
    """
    root = Path(root)
    problems: list[str] = []
    solutions = solution_notebooks(root)
    if not solutions:
        problems.append(f"no solution notebooks found under {root / SOLUTIONS_DIR}")

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    solution_set = set(solutions)
    from lakehouse.production import bundle, compat  # they read notebooks with this module

    fed = bundle.fed_widgets(root)
    accepted: list = []
    lessons: list[str] = []
    for folder in [root / SOLUTIONS_DIR, *exercise_dirs(root)]:
        for path in _notebooks_under(folder):
            try:
                nb = read(path)
            except Exception as exc:  # unreadable JSON is a problem to report, not to crash on
                problems.append(f"{rel(path)}: cannot be read as a notebook ({exc})")
                continue
            if has_outputs(nb):
                problems.append(f"{rel(path)}: outputs committed (run `make strip`)")
            if path not in solution_set and folder != root / SOLUTIONS_DIR:
                source = root / SOLUTIONS_DIR / path.relative_to(root)
                if not source.exists():
                    problems.append(f"{rel(path)}: exercise without a solution ({rel(source)})")

    for solution in solutions:
        name = rel(solution)
        try:
            nb = read(solution)
        except Exception:
            continue  # already reported above
        codes = code_cells(nb)
        if not codes or PARAMETERS_TAG not in tags(codes[0]):
            problems.append(f"{name}: the first code cell must be tagged 'parameters'")
        else:
            why = parameters_problem(codes[0].source)
            if why:
                problems.append(f"{name}: parameters cell must hold only literals: {why}")
        if not any(CHECK_TAG in tags(c) for c in codes):
            problems.append(f"{name}: no cell tagged 'check'")
        lesson = solution.relative_to(root / SOLUTIONS_DIR).as_posix()
        findings = compat.notebook_findings(nb, name, lesson=lesson, fed=fed.get(lesson, ()))
        problems.extend(str(f) for f in findings if not f.accepted)
        accepted.extend(f for f in findings if f.accepted)
        lessons.append(lesson)
        try:
            exercise = generate_exercise(nb, name=name)
        except NotebookConventionError as exc:
            problems.append(str(exc))
        else:
            target = exercise_path(root, solution)
            if not target.exists():
                problems.append(f"{rel(target)}: exercise missing (run `make exercises`)")
            elif not _same_notebook(read(target), exercise):
                problems.append(
                    f"{rel(target)}: exercise drifted from its solution (run `make exercises`)"
                )
        problems.extend(_expected_problems(root, solution, nb))

    problems.extend(compat.stale_acceptances(accepted, lessons))
    for sidecar in expected_files(root):
        solution = solution_of_expected(root, sidecar)
        if solution not in solution_set:
            problems.append(
                f"{rel(sidecar)}: expected outputs for a missing solution {rel(solution)}"
            )
    return problems


def _expected_problems(root: Path, solution: Path, nb: NotebookNode) -> list[str]:
    sidecar = expected_path(root, solution)
    name = sidecar.relative_to(root).as_posix()
    checked = [i for i, c in enumerate(code_cells(nb)) if is_nbval_checked(c)]
    if not sidecar.exists():
        if checked:
            return [f"{name}: missing; the solution marks outputs for nbval (run `make expected`)"]
        return []
    try:
        expected = read_expected(sidecar)
    except (ValueError, KeyError) as exc:
        return [f"{name}: cannot be read ({exc}); run `make expected`"]
    if expected["code_sha256"] != code_digest(nb):
        return [f"{name}: stale, its code differs from the solution (run `make expected`)"]
    if not checked:
        return [f"{name}: the solution marks no output with # NBVAL_CHECK_OUTPUT; delete the file"]
    have = [cell["cell"] for cell in expected["cells"]]
    if have != checked:
        missing = sorted(set(checked) - set(have))
        return [f"{name}: no expected output for code cell(s) {missing} (run `make expected`)"]
    return []


# --------------------------------------------------------------------------- execution


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Install (once) a Jupyter kernelspec ``name`` that runs this very interpreter.

    papermill then executes notebooks with ``sys.executable``, whatever kernels the user has
    elsewhere. Returns the kernel name. Safe for several processes at once (the pytest-xdist
    workers of a fresh checkout): installing replaces the kernelspec's folder (delete, then
    copy), so another process installing or reading it meanwhile fails; an exclusive lock on a
    file beside the venv's kernels makes them take turns.
    """
    import fcntl

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def current_argv0() -> str | None:
        try:
            return KernelSpecManager().get_kernel_spec(name).argv[0]
        except NoSuchKernel:
            return None

    lock_path = Path(sys.prefix) / "share" / "jupyter" / f".{name}-kernelspec.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if current_argv0() != sys.executable:
            from ipykernel.kernelspec import install

            install(kernel_name=name, display_name="Python (lakehouse course)", prefix=sys.prefix)
        found = current_argv0()
    if found != sys.executable:
        raise RuntimeError(
            f"Jupyter kernel {name!r} runs {found}, not {sys.executable}: another kernelspec of "
            f"that name shadows it (see `jupyter kernelspec list`); remove it or rename ours."
        )
    return name


@contextmanager
def environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) environment variables for the duration of the block.

    Kernels started inside the block inherit them.
    """
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# Headless runs keep their lake under <workdir>/lakehouse-ci/ so that tests/expected's sanitize
# file can blank out the varying temp-folder prefix of any path a checked cell prints.
CI_RUN_FOLDER = "lakehouse-ci"


def ci_environment(workdir: str | Path, *, remote: str | None = None) -> dict[str, str | None]:
    """Environment for a headless run in its own lake and a fresh catalog name, on the course's
    reference engine, delta-spark (``LAKEHOUSE_TEST_ENGINE=embedded`` on a machine without
    Delta's jars)."""
    base = Path(workdir) / CI_RUN_FOLDER
    return {
        "LAKEHOUSE_LAKE": str(base / "lake"),
        "LAKEHOUSE_DATASETS": str(base / "datasets"),
        "LAKEHOUSE_CATALOG": f"ci_{uuid.uuid4().hex[:8]}",
        "LAKEHOUSE_ENGINE": os.environ.get("LAKEHOUSE_TEST_ENGINE", "delta-spark"),
        "LAKEHOUSE_SCALE": str(CI_PARAMETERS["scale"]),
        "SPARK_REMOTE": remote,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def execute(
    source: str | Path,
    output: str | Path,
    *,
    parameters: Mapping[str, object] | None = None,
    cwd: str | Path | None = None,
    timeout: int = 600,
    kernel_name: str | None = None,
    kernel_log: str | Path | None = None,
) -> NotebookNode:
    """Execute ``source`` with papermill into ``output`` and return the executed notebook.

    Runs in the notebook's own folder (as Jupyter does) on the kernel from :func:`ensure_kernel`.
    ``kernel_log`` receives what the kernel process itself prints (JVM start-up lines and the
    like), which otherwise lands on this process's terminal. Raises papermill's
    ``PapermillExecutionError`` if a cell fails; ``output`` then holds the notebook up to the
    failing cell.
    """
    import papermill

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    kernel_name = kernel_name or ensure_kernel()
    with _redirect_std_fds(kernel_log):
        return papermill.execute_notebook(
            str(source),
            str(output),
            parameters=dict(parameters or {}),
            kernel_name=kernel_name,
            cwd=str(cwd or Path(source).parent),
            progress_bar=False,
            start_timeout=180,
            execution_timeout=timeout,
        )


@contextmanager
def _redirect_std_fds(path: str | Path | None) -> Iterator[None]:
    # The kernel is a child process: it inherits file descriptors 1 and 2, not sys.stdout.
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def describe_failure(exc: BaseException) -> str:
    """A readable account of a failed cell: its source and the error, without ANSI colours."""
    source = getattr(exc, "source", None)
    if source is None:
        return f"{type(exc).__name__}: {exc}"
    traceback = _ANSI.sub("", "\n".join(getattr(exc, "traceback", []) or []))
    return (
        f"cell {exc.cell_index} failed: {exc.ename}: {exc.evalue}\n"
        f"--- cell source ---\n{source}\n--- traceback ---\n{traceback}"
    )


def code_digest(nb: NotebookNode) -> str:
    """A fingerprint of a notebook's code: expected outputs are stale once it changes."""
    joined = "\x1e".join(c.source for c in code_cells(nb) if INJECTED_TAG not in tags(c))
    return hashlib.sha256(joined.encode()).hexdigest()


def expected_from_run(
    solution_nb: NotebookNode,
    executed: NotebookNode,
    *,
    solution: str = "",
    parameters: Mapping[str, object] | None = None,
) -> dict:
    """The expected outputs of a run: for each cell marked ``# NBVAL_CHECK_OUTPUT``, its index
    among the solution's code cells, its source and its outputs (JSON; no notebook committed with
    outputs). ``materialize_expected`` turns it back into the notebook nbval runs."""
    ran = [c for c in code_cells(executed) if INJECTED_TAG not in tags(c)]
    ours = code_cells(solution_nb)
    if [c.source for c in ran] != [c.source for c in ours]:
        raise ValueError("the executed notebook's code differs from the solution's")
    cells = []
    for index, (cell, run) in enumerate(zip(ours, ran, strict=True)):
        if is_nbval_checked(cell):
            outputs = json.loads(json.dumps(run.get("outputs", [])))
            cells.append({"cell": index, "source": cell.source, "outputs": outputs})
    return {
        "solution": solution,
        "parameters": dict(CI_PARAMETERS if parameters is None else parameters),
        "code_sha256": code_digest(solution_nb),
        "cells": cells,
    }


def write_expected_file(data: dict, path: str | Path) -> bool:
    """Write expected outputs as stable, diff-friendly JSON; False if nothing changed."""
    path = Path(path)
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def read_expected(path: str | Path) -> dict:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    for key in ("parameters", "code_sha256", "cells"):
        data[key]  # noqa: B018 (a KeyError names the missing field)
    return data


def materialize_expected(
    root: str | Path, solution: str | Path, dest: str | Path, *, harness: bool = False
) -> Path:
    """Write the notebook nbval runs for ``solution`` into the folder ``dest``: the solution with
    its CI parameters injected as papermill does, and the committed expected outputs in the
    marked cells. With ``harness``, a cell after each task's checks proves its catalogued
    mistakes caught in the same kernel (:mod:`lakehouse.mistakes`). Returns its path (same
    relative path as under ``solutions/``)."""
    from papermill.parameterize import parameterize_notebook

    root = Path(root)
    solution = Path(solution)
    nb = read(solution)
    expected = read_expected(expected_path(root, solution))
    if expected["code_sha256"] != code_digest(nb):
        raise ValueError(
            f"{expected_path(root, solution)} is stale: the solution's code changed since its "
            "outputs were recorded (run `make expected`)"
        )
    nb = copy.deepcopy(nb)
    nb.metadata.setdefault("papermill", {})  # papermill's own metadata, which it records into
    for cell in nb.cells:  # and a tag list on every cell, as papermill's reader ensures
        cell.metadata.setdefault("tags", [])
    parameterized = parameterize_notebook(nb, expected["parameters"], language="python")
    for cell in parameterized.cells:
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
    ours = [c for c in code_cells(parameterized) if INJECTED_TAG not in tags(c)]
    for entry in expected["cells"]:
        cell = ours[entry["cell"]]
        cell.outputs = nbformat.from_dict(entry["outputs"])
        cell.execution_count = entry["cell"] + 1  # nbval skips cells it considers unrun
    for key in _NOISY_NOTEBOOK_METADATA:
        parameterized.metadata.pop(key, None)
    lesson = solution.relative_to(root / SOLUTIONS_DIR).as_posix()
    if harness:
        from lakehouse import mistakes

        mistakes.insert_harness(parameterized, mistakes.load(solution), lesson)
    target = Path(dest) / lesson
    write(parameterized, target)
    return target


def write_expected(
    root: str | Path,
    solutions: Iterable[str | Path] | None = None,
    *,
    parameters: Mapping[str, object] | None = None,
    log=print,
) -> list[Path]:
    """Run solutions the way the nbval test does and write their sidecars in tests/expected/.

    Notebooks are committed without outputs, so the outputs nbval compares are kept as JSON
    (``tests/expected/<path>.outputs.json``: the cells marked ``# NBVAL_CHECK_OUTPUT``, their
    outputs, the CI parameters and a fingerprint of the solution's code). The test turns one back
    into a notebook (:func:`materialize_expected`) and runs ``pytest --nbval-lax`` on it.
    ``find_problems`` reports expected outputs whose code no longer matches the solution.

    By default every solution that marks an output is run, in course order, in one fresh lake.
    """
    root = Path(root).resolve()
    if solutions is None:
        chosen = [s for s in solution_notebooks(root) if any(map(is_nbval_checked, read(s).cells))]
    else:
        chosen = sorted(Path(s).resolve() for s in solutions)
    params = dict(CI_PARAMETERS if parameters is None else parameters)
    written: list[Path] = []
    from lakehouse.shared_driver import for_kernels  # one driver for the kernels, as the test

    with tempfile.TemporaryDirectory(prefix="lakehouse-expected-") as tmp:
        with (
            environ(ci_environment(tmp)),
            for_kernels(Path(tmp) / "shared-driver.log") as attach,
            environ(attach),
        ):
            for solution in chosen:
                out = Path(tmp) / "out" / solution.relative_to(root / SOLUTIONS_DIR)
                log_file = out.with_suffix(".log")
                log(f"running {solution.relative_to(root)} ...")
                try:
                    executed = execute(solution, out, parameters=params, kernel_log=log_file)
                except Exception as exc:
                    raise RuntimeError(
                        f"{solution.relative_to(root)} failed; no expected outputs written.\n"
                        + describe_failure(exc)
                        + f"\n--- kernel log (tail) ---\n{_tail(log_file)}"
                    ) from exc
                target = expected_path(root, solution)
                data = expected_from_run(
                    read(solution),
                    executed,
                    solution=solution.relative_to(root).as_posix(),
                    parameters=params,
                )
                if write_expected_file(data, target):
                    written.append(target)
                log(f"  wrote {target.relative_to(root)}")
    return written


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


# --------------------------------------------------------------------------- CLI


def _repo_root() -> Path:
    here = Path.cwd().resolve()
    for folder in [here, *here.parents]:
        if (folder / SOLUTIONS_DIR).is_dir() and (folder / "pyproject.toml").exists():
            return folder
    return here


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lakehouse-notebooks", description="Exercise generation and notebook checks."
    )
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: found)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("generate", help="write every exercise from its solution")
    sub.add_parser("check", help="list broken conventions; exit 1 if any")
    strip = sub.add_parser("strip", help="strip outputs (default: all course notebooks)")
    strip.add_argument("paths", nargs="*", type=Path)
    expected = sub.add_parser("expected", help="refresh nbval expected outputs in tests/expected/")
    expected.add_argument("paths", nargs="*", type=Path, help="solution notebooks (default: all)")
    catalogue = sub.add_parser(
        "mistakes", help="per lesson: tasks, mistakes catalogued and (with --report) caught"
    )
    catalogue.add_argument(
        "--report", type=Path, default=None, help="a harness report (JSON lines) of a test run"
    )
    args = parser.parse_args(argv)
    root = (args.root or _repo_root()).resolve()

    if args.command == "generate":
        written = generate_all(root)
        for path in written:
            print(f"wrote {path.relative_to(root)}")
        print(f"{len(solution_notebooks(root))} solutions, {len(written)} exercises updated")
        return 0
    if args.command == "check":
        problems = find_problems(root)
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s)" if problems else "notebooks OK")
        return 1 if problems else 0
    if args.command == "strip":
        folders = [root / SOLUTIONS_DIR, *exercise_dirs(root)]
        paths = args.paths or [p for folder in folders for p in _notebooks_under(folder)]
        changed = [p for p in paths if strip_outputs(p)]
        for path in changed:
            print(f"stripped {path}")
        print(f"{len(paths)} notebooks, {len(changed)} stripped")
        return 0
    if args.command == "expected":
        try:
            written = write_expected(root, args.paths or None)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{len(written)} expected-output notebook(s) updated")
        return 0
    if args.command == "mistakes":
        from lakehouse import mistakes

        table = mistakes.report(root, args.report)
        print(table.to_string(index=False))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
