"""The mistake harness: every task's catalogue of classic wrong answers, proven caught.

Beside a solution ``solutions/<module>/<lesson>.ipynb`` a sidecar
``<lesson>.mistakes.json`` lists plausible wrong answers to its tasks::

    [{"task_cell": "<cell id>", "name": "no embargo before the holdout",
      "source": "<code for the task's solution block>",
      "caught_by": "<words the failing check's message must contain>"}, ...]

The notebook test runs the lesson once, then, **in the same kernel**, runs :func:`prove` from
one cell added at the end (:func:`harness_cell`): for each mistake, the task cell is executed
with its ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` block replaced by the mistake's source,
then the task's check cells (the cells tagged ``check`` after it, up to the next task); one of
them must fail with a message containing ``caught_by``. Then the tables the mistake changed
are restored (``RESTORE``) and the solution's cell runs again, so the next mistake (and the
rest of the lesson) starts from the lesson's own state; after the task's last mistake the
checks run once more and must pass. Only cells are re-executed, never the whole notebook.

The exercise generator ignores the sidecars: a learner never sees the catalogue.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

SUFFIX = ".mistakes.json"
REPORT_ENV = "LAKEHOUSE_MISTAKES_REPORT"  # a JSON-lines file each proof appends its results to
CHECK_TAG = "check"
_BLOCK = re.compile(r"# BEGIN SOLUTION\n.*?# END SOLUTION\n?", re.DOTALL)
MIN_PER_TASK = 2


@dataclass(frozen=True)
class Mistake:
    task_cell: str
    name: str
    source: str
    caught_by: str


@dataclass(frozen=True)
class Task:
    """A task of a lesson: its cell (with the solution block), its check cells, its mistakes."""

    cell_id: str
    source: str
    checks: tuple[str, ...]
    mistakes: tuple[Mistake, ...]

    def with_block(self, code: str) -> str:
        """The task cell with its solution block replaced by ``code`` (or ``code`` itself
        when it is a whole cell, solution markers included)."""
        code = code if code.endswith("\n") else code + "\n"
        if "# BEGIN SOLUTION" in code:
            return code
        return _BLOCK.sub(lambda _: code, self.source, count=1)


def sidecar_of(solution: str | Path) -> Path:
    solution = Path(solution)
    return solution.with_name(solution.name.removesuffix(".ipynb") + SUFFIX)


def load(solution: str | Path) -> list[Mistake]:
    """The mistakes catalogued beside ``solution`` (none when it has no sidecar)."""
    path = sidecar_of(solution)
    if not path.is_file():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))
    fields = set(Mistake.__dataclass_fields__)
    for i, entry in enumerate(entries):
        missing = fields - set(entry)
        if missing:
            raise ValueError(
                f"{path}: entry {i} lacks {sorted(missing)} (fields: {sorted(fields)})"
            )
    return [Mistake(**{k: entry[k] for k in fields}) for entry in entries]


def _source(cell) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def is_task(cell) -> bool:
    return cell["cell_type"] == "code" and "# BEGIN SOLUTION" in _source(cell)


def ends_task(cell) -> bool:
    """A task's checks run to the next task or the next section heading (``## ...``)."""
    return is_task(cell) or (
        cell["cell_type"] == "markdown" and re.search(r"^## ", _source(cell), re.MULTILINE)
    )


def tasks(nb, mistakes: Iterable[Mistake]) -> list[Task]:
    """The lesson's tasks (cells with a solution block), each with its check cells (those
    tagged ``check`` up to the next task or section heading) and its mistakes. Raises when a
    mistake names a cell that is not a task."""
    cells = nb["cells"]
    by_cell: dict[str, list[Mistake]] = {}
    for mistake in mistakes:
        by_cell.setdefault(mistake.task_cell, []).append(mistake)
    found = []
    for i, cell in enumerate(cells):
        if not is_task(cell):
            continue
        checks = []
        for later in cells[i + 1 :]:
            if ends_task(later):
                break
            if later["cell_type"] == "code" and CHECK_TAG in later.get("metadata", {}).get(
                "tags", []
            ):
                checks.append(_source(later))
        cell_id = cell.get("id")
        found.append(Task(cell_id, _source(cell), tuple(checks), tuple(by_cell.pop(cell_id, []))))
    if by_cell:
        raise ValueError(
            f"mistakes name cells that are not tasks (no # BEGIN SOLUTION): {sorted(by_cell)}"
        )
    return found


def coverage(nb, mistakes: Iterable[Mistake]) -> list[dict]:
    """Per task: its cell id, its check cells and mistakes counted (what the report shows)."""
    return [
        {"task_cell": t.cell_id, "checks": len(t.checks), "mistakes": len(t.mistakes)}
        for t in tasks(nb, mistakes)
    ]


# --------------------------------------------------------------------------- in the kernel


@dataclass(frozen=True)
class Proof:
    lesson: str
    task_cell: str
    mistake: str
    caught: bool
    message: str
    seconds: float = 0.0  # the wrong answer, its checks, and putting the lesson back


def _run(source: str, namespace: dict) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(source, "<cell>", "exec"), namespace)  # noqa: S102 (the lesson's cells)


def _first_failure(checks: Iterable[str], namespace: dict) -> str | None:
    for check in checks:
        try:
            _run(check, namespace)
        except Exception as error:  # noqa: BLE001 (any failing check catches the mistake)
            return f"{type(error).__name__}: {error}"
    return None


def _put_back(namespace: dict, names: Mapping) -> None:
    """``namespace`` holding exactly ``names`` again: what a wrong answer bound or rebound is
    undone (objects it changed in place are not: a task cell builds new objects)."""
    for name in [n for n in namespace if n not in names]:
        del namespace[name]
    namespace.update(names)


def delta_versions() -> dict[Path, int]:
    """The latest commit of every Delta table of the course's catalog, read from the file
    system (``_delta_log/<version>.json``): cheap enough to take around every mistake."""
    from lakehouse.config import settings

    root = settings().catalog_path
    found = {}
    for log in [*root.glob("_warehouse/*/*/_delta_log"), *root.glob("*/*/_delta_log")]:
        commits = [int(f.name[:-5]) for f in log.glob("*.json") if f.name[:-5].isdigit()]
        if commits:
            found[log.parent] = max(commits)
    return found


def restore_changed(namespace: dict, before: Mapping[Path, int]) -> list[str]:
    """``RESTORE`` every table whose latest commit moved since ``before`` to the version it
    had then (Delta's own undo of a bad write); returns the tables restored."""
    spark = namespace.get("spark")
    restored = []
    for path, version in delta_versions().items():
        if path in before and before[path] != version and spark is not None:
            spark.sql(f"RESTORE TABLE delta.`{path}` TO VERSION AS OF {before[path]}")
            restored.append(path.name)
    return restored


def prove(namespace: dict, plan: Mapping) -> list[Proof]:
    """Run ``plan`` (:func:`plan_for`) in the kernel's ``namespace``: each mistake replaces
    its task's solution block, the task's checks must fail with a message containing its
    ``caught_by``, then the changed tables are restored and the namespace is put back as the
    lesson left it (the names the wrong answer bound are undone without running the solution
    again, which can cost as much as the lesson's heaviest cell). After the task's last
    mistake the solution runs once more and its checks must pass: the task is rerun-safe and
    nothing of a mistake was left behind. Appends every result to the file named by
    :data:`REPORT_ENV` (if set) and raises AssertionError listing the mistakes not caught (or
    caught for another reason)."""
    lesson, proofs, problems = plan["lesson"], [], []
    for task in plan["tasks"]:
        task = Task(
            task["cell_id"],
            task["source"],
            tuple(task["checks"]),
            tuple(Mistake(**m) for m in task["mistakes"]),
        )
        lesson_names = dict(namespace)  # the names as the lesson's own cells left them
        for n, mistake in enumerate(task.mistakes, 1):
            started = time.perf_counter()
            before = delta_versions()
            try:
                _run(task.with_block(mistake.source), namespace)
                message = _first_failure(task.checks, namespace)
            except Exception as error:  # noqa: BLE001 (the wrong answer itself fails)
                message = f"the wrong answer raised {type(error).__name__}: {error}"
            caught = message is not None and mistake.caught_by in message
            proof = Proof(lesson, task.cell_id, mistake.name, caught, message or "")
            if message is None:
                problems.append(f"{task.cell_id} / {mistake.name}: no check failed")
            elif not caught:
                problems.append(
                    f"{task.cell_id} / {mistake.name}: a check failed, but its message lacks "
                    f"{mistake.caught_by!r}: {message[:300]}"
                )
            try:  # back to the lesson's own state: its tables, then its names
                restore_changed(namespace, before)
                _put_back(namespace, lesson_names)
                restored = None
                if n == len(task.mistakes):  # the solution again, and its checks, once
                    _run(task.source, namespace)
                    restored = _first_failure(task.checks, namespace)
            except Exception:  # noqa: BLE001
                restored = traceback.format_exc(limit=2)
            proofs.append(replace(proof, seconds=round(time.perf_counter() - started, 2)))
            if restored is not None:
                problems.append(
                    f"{task.cell_id}: the solution fails its checks after {mistake.name!r}: "
                    f"{restored[:300]} (the task must be rerun-safe)"
                )
                break
    report = os.environ.get(REPORT_ENV)
    if report:
        with open(report, "a", encoding="utf-8") as handle:
            for proof in proofs:
                handle.write(json.dumps(asdict(proof)) + "\n")
    caught = sum(p.caught for p in proofs)
    seconds = sum(p.seconds for p in proofs)
    print(
        f"mistake harness: {caught} of {len(proofs)} catalogued mistakes caught in {lesson} "
        f"({seconds:.0f} s)"
    )
    if problems:
        raise AssertionError("mistakes not proven caught:\n- " + "\n- ".join(problems))
    return proofs


def plan_for(task: Task, lesson: str) -> dict:
    """What :func:`prove` runs for one ``task``: its sources and mistakes."""
    return {
        "lesson": lesson,
        "tasks": [
            {
                "cell_id": task.cell_id,
                "source": task.source,
                "checks": list(task.checks),
                "mistakes": [asdict(m) for m in task.mistakes],
            }
        ],
    }


HARNESS_TAG = "mistake-harness"


def insert_harness(nb, mistakes: Iterable[Mistake], lesson: str) -> int:
    """Insert into ``nb`` (in place), after each task's last check cell, a cell that runs
    :func:`prove` for that task's mistakes in the kernel, while the lesson's state is the one
    the task ran in. Returns the number inserted."""
    # a task whose checks lie beyond its section (a stream drill checked at the end of a
    # lesson) cannot be replayed alone: its catalogue is proven by unit tests instead
    found = {t.cell_id: t for t in tasks(nb, mistakes) if t.mistakes and t.checks}
    cells = nb["cells"]
    after: dict[int, str] = {}  # cell index -> the task whose harness follows it
    for i, cell in enumerate(cells):
        if not (is_task(cell) and cell.get("id") in found):
            continue
        last = i
        for j in range(i + 1, len(cells)):
            if ends_task(cells[j]):
                break
            if CHECK_TAG in cells[j].get("metadata", {}).get("tags", []):
                last = j
        after[last] = cell["id"]
    nb["cells"] = [
        c
        for i, cell in enumerate(cells)
        for c in ([cell, _harness(found[after[i]], lesson)] if i in after else [cell])
    ]
    return len(after)


def _harness(task: Task, lesson: str):
    from nbformat.v4 import new_code_cell

    plan = json.dumps(plan_for(task, lesson))
    cell = new_code_cell(
        "# the mistake harness (added by the notebook test; not part of the lesson)\n"
        "import json as _json\n"
        "from lakehouse import mistakes as _mistakes\n"
        f"_mistakes.prove(globals(), _json.loads({plan!r}))\n"
    )
    cell.metadata["tags"] = [HARNESS_TAG]
    return cell


def report(root: str | Path, proofs: str | Path | None = None):
    """Per lesson with tasks: its tasks, those with at least :data:`MIN_PER_TASK` mistakes,
    the mistakes catalogued and, from a harness report (``proofs``, JSON lines), those proven
    caught in the kernel. A pandas frame."""
    import pandas as pd

    from lakehouse.notebooks import SOLUTIONS_DIR, read, solution_notebooks

    root = Path(root)
    caught: dict[str, int] = {}
    seconds: dict[str, float] = {}
    if proofs is not None and Path(proofs).is_file():
        for line in Path(proofs).read_text(encoding="utf-8").splitlines():
            proof = json.loads(line)
            caught[proof["lesson"]] = caught.get(proof["lesson"], 0) + int(proof["caught"])
            seconds[proof["lesson"]] = seconds.get(proof["lesson"], 0.0) + proof.get("seconds", 0)
    rows = []
    for solution in solution_notebooks(root):
        lesson = solution.relative_to(root / SOLUTIONS_DIR).as_posix()
        found = tasks(read(solution), load(solution))
        if not found:
            continue
        rows.append(
            {
                "lesson": lesson,
                "tasks": len(found),
                f"tasks with {MIN_PER_TASK}+": sum(len(t.mistakes) >= MIN_PER_TASK for t in found),
                "mistakes": sum(len(t.mistakes) for t in found),
                "provable in kernel": sum(len(t.mistakes) for t in found if t.checks),
                "caught": caught.get(lesson) if proofs is not None else None,
                "harness s": round(seconds[lesson]) if lesson in seconds else None,
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "MIN_PER_TASK",
    "Mistake",
    "Proof",
    "Task",
    "coverage",
    "HARNESS_TAG",
    "insert_harness",
    "load",
    "plan_for",
    "prove",
    "report",
    "sidecar_of",
    "tasks",
]
