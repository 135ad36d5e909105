"""The course's Databricks Asset Bundle (``databricks.yml``), loaded and cross-checked offline.

``databricks bundle validate`` needs the Databricks CLI (a Go program released on GitHub) and a
workspace. What can be checked without either is checked here, and the tests run it on the real
``databricks.yml`` in CI:

- the YAML is well formed, its top-level keys are known, ``include`` globs match files;
- every resource is well typed: each job, pipeline, dashboard, schema, volume... is loaded into
  the typed classes of the PyPI package ``databricks-bundles`` (generated from the bundle's own
  schema), which name an unknown or mistyped field;
- targets ``dev`` and ``prod`` exist with ``mode: development`` / ``mode: production``, one is
  the default, production runs as a service principal from a shared root path;
- permissions are present and well formed; every ``${var.x}`` is declared and has a value in
  every target that uses it; ``${resources.<type>.<name>...}`` names a resource that exists;
- every notebook, file and dashboard path exists (relative to the YAML file that names it, as
  the CLI resolves them), every glob matches, jobs run solutions rather than exercises;
- tasks: unique keys, ``depends_on`` naming existing tasks, no cycle, dependencies earlier in
  the course's order, a compute for each task (a cluster for a lesson that needs one);
- parameters and widgets: every job parameter and ``base_parameters`` key feeds a widget of the
  task's notebook (its ``parameters`` cell, see ``workspace.install``), every widget without a
  default is fed, and every value fed parses as the type of the parameter's literal.

Each problem is a :class:`~lakehouse.production.Finding` naming the file, the key and the fix.

>>> from lakehouse.production import bundle
>>> bundle.check_bundle(".")  # doctest: +SKIP
[]
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lakehouse.production import Finding, compat

__all__ = [
    "BUNDLE_FILE",
    "REQUIRED_TARGETS",
    "Bundle",
    "JobTask",
    "check_bundle",
    "copy_bundle",
    "fed_widgets",
    "job_tasks",
    "check_parameter_problems",
    "check_task_parameters",
    "load_bundle",
    "parameter_problems",
    "plot_tasks",
    "resolved_config",
    "target_config",
    "task_parameters",
    "tasks_frame",
]

BUNDLE_FILE = "databricks.yml"
# The targets every course bundle has, and the mode each must run in.
REQUIRED_TARGETS = {"dev": "development", "prod": "production"}
TOP_LEVEL_KEYS = frozenset(
    {
        "artifacts",
        "bundle",
        "experimental",
        "include",
        "permissions",
        "presets",
        "python",
        "resources",
        "run_as",
        "scripts",
        "sync",
        "targets",
        "variables",
        "workspace",
    }
)
PERMISSION_LEVELS = frozenset({"CAN_VIEW", "CAN_RUN", "CAN_MANAGE"})
PRINCIPALS = ("user_name", "group_name", "service_principal_name")
# ${...} namespaces: var and resources are checked here; the CLI fills in the others at deploy.
_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\])*)\}")
_KNOWN_NAMESPACES = frozenset({"var", "resources", "bundle", "workspace", "artifacts"})
# Lists a target override merges item by item (by this key), as the CLI does.
_LIST_KEYS = {
    "tasks": "task_key",
    "job_clusters": "job_cluster_key",
    "environments": "environment_key",
    "parameters": "name",
}
_SOLUTIONS = "solutions"


@dataclass
class Bundle:
    """A loaded bundle: ``config`` is ``databricks.yml`` with its included files merged in.

    ``origins`` maps ``(resource type, name)`` to the YAML file that declares it (relative
    paths in a resource resolve from that file's folder); ``problems`` holds what loading
    found (bad YAML, a glob matching nothing, a resource declared twice).
    """

    root: Path
    config: dict
    origins: dict[tuple[str, str], Path] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def origin(self, kind: str, name: str) -> Path:
        return self.origins.get((kind, name), self.root / BUNDLE_FILE)

    @property
    def targets(self) -> dict:
        return self.config.get("targets") or {}


@dataclass(frozen=True)
class JobTask:
    """One notebook task of a job, resolved for a target (see :func:`job_tasks`)."""

    job: str
    task_key: str
    notebook: str  # relative to the repository
    depends_on: tuple[str, ...]
    parameters: dict  # what the notebook receives: base_parameters, then job parameters over them
    compute: str


# --------------------------------------------------------------------------- loading


def _read_yaml(path: Path, bundle: Bundle) -> dict | None:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        bundle.problems.append(
            Finding(
                bundle.rel(path),
                where,
                "yaml",
                "yaml",
                f"is not valid YAML ({problem}); fix the indentation or quoting there",
            )
        )
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        bundle.problems.append(
            Finding(
                bundle.rel(path),
                "(file)",
                "yaml",
                "yaml",
                "must be a mapping of keys (bundle:, resources:, ...), not a "
                f"{type(data).__name__}",
            )
        )
        return None
    return data


def load_bundle(root: str | Path) -> Bundle:
    """Read ``root/databricks.yml`` and the files its ``include`` globs match.

    Raises FileNotFoundError when there is no ``databricks.yml``; YAML errors, globs that match
    nothing and resources declared twice land in ``Bundle.problems``.
    """
    root = Path(root)
    main = root / BUNDLE_FILE
    if not main.is_file():
        raise FileNotFoundError(
            f"{main} not found: a bundle starts with databricks.yml at the repository root "
            "(databricks bundle init writes one)"
        )
    bundle = Bundle(root=root, config={}, files=[main])
    config = _read_yaml(main, bundle)
    if config is None:
        return bundle
    bundle.config = config
    for kind, resources in (config.get("resources") or {}).items():
        for name in resources or {}:
            bundle.origins[(kind, name)] = main
    includes = config.get("include") or []
    if not isinstance(includes, list):
        includes = [includes]
    for index, pattern in enumerate(includes):
        matched = sorted(p for p in root.glob(str(pattern)) if p.is_file())
        if not matched:
            bundle.problems.append(
                _at(
                    f"include[{index}]",
                    "glob",
                    str(pattern),
                    f"include glob {pattern!r} matches no file: fix the pattern (relative to "
                    "databricks.yml) or remove it",
                )
            )
        for path in matched:
            _merge_included(bundle, path)
    return bundle


def _merge_included(bundle: Bundle, path: Path) -> None:
    data = _read_yaml(path, bundle)
    if data is None:
        return
    bundle.files.append(path)
    for key, value in data.items():
        if key == "resources":
            merged = bundle.config.setdefault("resources", {})
            for kind, resources in (value or {}).items():
                into = merged.setdefault(kind, {})
                for name, body in (resources or {}).items():
                    if name in into:
                        first = bundle.rel(bundle.origin(kind, name))
                        bundle.problems.append(
                            Finding(
                                bundle.rel(path),
                                f"resources.{kind}.{name}",
                                "duplicate",
                                name,
                                f"declares resources.{kind}.{name} again (first in {first}); "
                                "rename one or delete the copy",
                            )
                        )
                        continue
                    into[name] = body
                    bundle.origins[(kind, name)] = path
        elif key in ("variables", "targets"):
            into = bundle.config.setdefault(key, {})
            for name, body in (value or {}).items():
                into[name] = _deep_merge(into.get(name), body)
        else:
            bundle.problems.append(
                Finding(
                    bundle.rel(path),
                    key,
                    "unknown-key",
                    key,
                    f"an included file may hold resources, variables and targets, not {key!r}: "
                    "move it to databricks.yml",
                )
            )


def copy_bundle(root: str | Path, dest: str | Path) -> Path:
    """Copy the bundle at ``root`` to ``dest`` with what it points at (``databricks.yml``, the
    files its ``include`` globs match, the course's notebooks, the package's Python files that
    Python tasks run, ``pyproject.toml``, and every other local file a resource names: a
    pipeline's sources, a dashboard's ``.lvdash.json``), so a copy can be broken on purpose and
    checked. Returns ``dest``.

    >>> broken = copy_bundle(".", tmp / "bundle")  # doctest: +SKIP
    """
    root, dest = Path(root), Path(dest)
    bundle = load_bundle(root)
    files = set(bundle.files) | {root / "pyproject.toml"}
    from lakehouse import notebooks

    for folder in [root / _SOLUTIONS, *notebooks.exercise_dirs(root)]:
        files.update(folder.rglob("*.ipynb"))
    files.update((root / "src").rglob("*.py"))
    for kind, items in (bundle.config.get("resources") or {}).items():
        for name, body in (items or {}).items():
            for _, value, is_glob in _local_paths(kind, body or {}):
                if _is_remote(value):
                    continue
                base = bundle.origin(kind, name).parent
                if not is_glob:
                    files.add(_path_of(bundle, kind, name, value))
                    continue
                # A pipeline's `folder/**` matches folders (Path.glob): copy what they hold.
                for match in base.glob(value):
                    files.update(match.rglob("*") if match.is_dir() else [match])
    root = root.resolve()
    files = {f.resolve() for f in files if f.resolve().is_relative_to(root)}
    for path in files:
        if path.is_file() and ".ipynb_checkpoints" not in path.parts:
            target = dest / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return dest


# --------------------------------------------------------------------------- targets


def _deep_merge(base: Any, override: Any) -> Any:
    """``override`` on top of ``base``: mappings key by key, keyed lists item by item."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if key in _LIST_KEYS and isinstance(out.get(key), list) and isinstance(value, list):
                out[key] = _merge_keyed(out[key], value, _LIST_KEYS[key])
            else:
                out[key] = _deep_merge(out.get(key), value)
        return out
    return copy.deepcopy(override) if override is not None else copy.deepcopy(base)


def _merge_keyed(base: list, override: list, key: str) -> list:
    out = [copy.deepcopy(item) for item in base]
    for item in override:
        match = next(
            (
                i
                for i, old in enumerate(out)
                if isinstance(old, dict) and old.get(key) == item.get(key)
            ),
            None,
        )
        if match is None:
            out.append(copy.deepcopy(item))
        else:
            out[match] = _deep_merge(out[match], item)
    return out


def target_config(bundle: Bundle, target: str) -> dict:
    """The bundle as ``databricks bundle deploy -t <target>`` sees it before variables are
    filled in: the target's settings merged over the top-level ones, ``targets`` removed."""
    if target not in bundle.targets:
        raise KeyError(f"{BUNDLE_FILE} has no target {target!r}; targets: {sorted(bundle.targets)}")
    config = {k: copy.deepcopy(v) for k, v in bundle.config.items() if k != "targets"}
    overrides = bundle.targets.get(target) or {}
    for key, value in overrides.items():
        if key == "variables":
            continue  # values of variables, applied by _variable_values
        config[key] = _deep_merge(config.get(key), value)
    return config


@dataclass(frozen=True)
class _Lookup:
    # A value the CLI looks up in the workspace at deploy (a service principal's id...).
    what: str

    def __str__(self) -> str:
        return f"<looked up at deploy: {self.what}>"


def _variable_values(bundle: Bundle, target: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    overrides = (bundle.targets.get(target) or {}).get("variables") or {}
    for name, spec in (bundle.config.get("variables") or {}).items():
        spec = spec if isinstance(spec, dict) else {"default": spec}
        chosen = overrides.get(name, spec)
        if isinstance(chosen, dict) and "lookup" in chosen:
            kind, label = next(iter(chosen["lookup"].items()))
            values[name] = _Lookup(f"{kind} {label!r}")
        elif isinstance(chosen, dict):
            if "default" in chosen:
                values[name] = chosen["default"]
        else:
            values[name] = chosen
    return values


def _substitute(value: Any, variables: dict[str, Any], bundle_name: str, target: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, variables, bundle_name, target) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, bundle_name, target) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        path = match.group(1)
        if path.startswith("var.") and path[4:] in variables:
            return str(variables[path[4:]])
        if path == "bundle.target":
            return target
        if path == "bundle.name":
            return bundle_name
        return match.group(0)

    whole = _REFERENCE.fullmatch(value)
    if whole and whole.group(1).startswith("var.") and whole.group(1)[4:] in variables:
        return variables[whole.group(1)[4:]]  # keeps the variable's type (a number stays one)
    return _REFERENCE.sub(one, value)


def _references(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, reference path) of every ``${...}`` in a configuration tree."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _references(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _references(v, f"{key}[{i}]")
    elif isinstance(value, str):
        for match in _REFERENCE.finditer(value):
            yield key, match.group(1)


# --------------------------------------------------------------------------- checks


def _at(where: str, rule: str, subject: str, message: str) -> Finding:
    """A finding in databricks.yml itself."""
    return Finding(BUNDLE_FILE, where, rule, subject, message)


def check_bundle(root: str | Path) -> list[Finding]:
    """Every problem of the bundle at ``root`` that can be found offline; empty when all is well.

    >>> for finding in check_bundle("."):  # doctest: +SKIP
    ...     print(finding)
    """
    root = Path(root)
    try:
        bundle = load_bundle(root)
    except FileNotFoundError as exc:
        return [Finding(BUNDLE_FILE, "(file)", "missing", BUNDLE_FILE, str(exc))]
    found = list(bundle.problems)
    if not bundle.config or any(f.rule == "yaml" for f in found):
        return found  # the rest would be judged on a partial bundle: fix the YAML first
    found += _check_top_level(bundle)
    found += _check_targets(bundle)
    found += _check_permissions(bundle)
    for target in sorted(bundle.targets):
        found += _check_target_variables(bundle, target)
    found += _check_resource_references(bundle)
    found += _check_resource_types(bundle)
    found += _check_paths(bundle)
    for target in sorted(set(bundle.targets) & set(REQUIRED_TARGETS)) or sorted(bundle.targets):
        found += _check_jobs(bundle, target)
    # One finding per problem: a job checked in two targets reports a shared mistake once.
    unique: dict[tuple[str, str, str], Finding] = {}
    for finding in found:
        unique.setdefault((finding.path, finding.where, finding.message), finding)
    return list(unique.values())


def _check_top_level(bundle: Bundle) -> list[Finding]:
    found = []
    for key in bundle.config:
        if key not in TOP_LEVEL_KEYS:
            found.append(
                _at(
                    key,
                    "unknown-key",
                    key,
                    f"unknown top-level key {key!r} (known: {', '.join(sorted(TOP_LEVEL_KEYS))}); "
                    "fix its spelling or move it under the right section",
                )
            )
    if not (bundle.config.get("bundle") or {}).get("name"):
        found.append(
            _at(
                "bundle.name",
                "missing",
                "bundle.name",
                "the bundle has no name: add bundle: {name: <name>} (it names the deployment "
                "folder and prefixes nothing else)",
            )
        )
    return found


def _check_targets(bundle: Bundle) -> list[Finding]:
    found = []
    targets = bundle.targets
    for name, mode in REQUIRED_TARGETS.items():
        if name not in targets:
            found.append(
                _at(
                    f"targets.{name}",
                    "target",
                    name,
                    f"target {name!r} is missing: add targets.{name} with mode: {mode}",
                )
            )
            continue
        actual = (targets[name] or {}).get("mode")
        if actual != mode:
            found.append(
                _at(
                    f"targets.{name}.mode",
                    "target",
                    name,
                    f"target {name!r} must have mode: {mode} (it has {actual!r}): development "
                    "prefixes and pauses what a developer deploys, production guards what runs "
                    "for real",
                )
            )
    defaults = [name for name, body in targets.items() if (body or {}).get("default")]
    if len(defaults) != 1:
        found.append(
            _at(
                "targets",
                "target",
                "default",
                f"exactly one target must have default: true (found {defaults or 'none'}); "
                "make it dev, so that a command without -t never touches production",
            )
        )
    if "prod" in targets:
        prod = target_config(bundle, "prod")
        run_as = prod.get("run_as") or {}
        if not run_as.get("service_principal_name"):
            found.append(
                _at(
                    "targets.prod.run_as",
                    "target",
                    "run_as",
                    "production must run as a service principal: set targets.prod.run_as."
                    "service_principal_name (a lookup variable keeps its id out of the file)",
                )
            )
        root_path = str((prod.get("workspace") or {}).get("root_path") or "")
        if not root_path or "current_user" in root_path:
            found.append(
                _at(
                    "targets.prod.workspace.root_path",
                    "target",
                    "root_path",
                    "production needs one shared deployment folder: set targets.prod.workspace."
                    "root_path outside a user's home, e.g. /Workspace/Shared/.bundle/"
                    "${bundle.name}/${bundle.target}",
                )
            )
    return found


def _check_permissions(bundle: Bundle) -> list[Finding]:
    found = []
    sources = [("permissions", bundle.config.get("permissions"))]
    sources += [
        (f"targets.{name}.permissions", (body or {}).get("permissions"))
        for name, body in bundle.targets.items()
        if (body or {}).get("permissions") is not None
    ]
    if not bundle.config.get("permissions") and not all(
        (body or {}).get("permissions") for body in bundle.targets.values()
    ):
        found.append(
            _at(
                "permissions",
                "permissions",
                "permissions",
                "no permissions: add a top-level permissions list (who may view, run and "
                "manage what the bundle deploys), e.g. - {level: CAN_VIEW, group_name: users}",
            )
        )
    for key, entries in sources:
        for index, entry in enumerate(entries or []):
            entry = entry or {}
            where = f"{key}[{index}]"
            level = entry.get("level")
            if level not in PERMISSION_LEVELS:
                found.append(
                    _at(
                        f"{where}.level",
                        "permissions",
                        str(level),
                        f"permission level {level!r} is not one of "
                        f"{', '.join(sorted(PERMISSION_LEVELS))}",
                    )
                )
            named = [p for p in PRINCIPALS if entry.get(p)]
            if len(named) != 1:
                found.append(
                    _at(
                        where,
                        "permissions",
                        str(named),
                        f"a permission names exactly one of {', '.join(PRINCIPALS)} "
                        f"(found {named or 'none'})",
                    )
                )
    return found


def _check_target_variables(bundle: Bundle, target: str) -> list[Finding]:
    found = []
    declared = bundle.config.get("variables") or {}
    values = _variable_values(bundle, target)
    config = target_config(bundle, target)
    for name in (bundle.targets.get(target) or {}).get("variables") or {}:
        if name not in declared:
            found.append(
                _at(
                    f"targets.{target}.variables.{name}",
                    "variable",
                    name,
                    f"target {target!r} sets variable {name!r}, which is not declared: declare "
                    "it under variables (with a description) or fix the name",
                )
            )
    for key, path in _references(config):
        if not path.startswith("var."):
            continue
        name = path[4:].split(".")[0]
        if name not in declared:
            found.append(
                _at(
                    key,
                    "variable",
                    name,
                    f"uses ${{var.{name}}}, which is not declared: add variables.{name} "
                    "(description and default) or fix the name",
                )
            )
        elif name not in values:
            found.append(
                _at(
                    key,
                    "variable",
                    name,
                    f"variable {name!r} has no value in target {target!r}: give it a default, "
                    f"set targets.{target}.variables.{name}, or a lookup",
                )
            )
    used = {path[4:].split(".")[0] for _, path in _references(bundle.config)}
    for name in declared:
        if name not in used:
            found.append(
                _at(
                    f"variables.{name}",
                    "variable",
                    name,
                    f"variable {name!r} is declared but never used: use it or remove it",
                )
            )
    return found


def _check_resource_references(bundle: Bundle) -> list[Finding]:
    found = []
    resources = bundle.config.get("resources") or {}
    for key, path in _references(bundle.config):
        namespace = path.split(".")[0]
        if namespace not in _KNOWN_NAMESPACES:
            found.append(
                _at(
                    key,
                    "reference",
                    path,
                    f"${{{path}}} is not a bundle reference (known: "
                    f"{', '.join(sorted(_KNOWN_NAMESPACES))}); for a job's own values at run "
                    "time use {{job.parameters.<name>}}",
                )
            )
        elif namespace == "resources":
            parts = path.split(".")
            if len(parts) < 3 or parts[2] not in (resources.get(parts[1]) or {}):
                found.append(
                    _at(
                        key,
                        "reference",
                        path,
                        f"${{{path}}} names a resource the bundle does not declare: fix the "
                        "type or name",
                    )
                )
    return found


def _resource_types() -> dict[str, type]:
    # databricks-bundles' typed resource classes, generated from the bundle schema, by the key
    # under resources: (jobs, pipelines, dashboards, schemas, volumes, ...).
    from databricks.bundles.core._resource_type import _ResourceType

    return {tpe.plural_name: tpe.resource_type for tpe in _ResourceType.all()}


def _check_resource_types(bundle: Bundle) -> list[Finding]:
    from databricks.bundles.core._transform import _transform

    types = _resource_types()
    found = []
    for target in sorted(bundle.targets) or [None]:
        config = target_config(bundle, target) if target else bundle.config
        for kind, resources in (config.get("resources") or {}).items():
            cls = types.get(kind)
            origin_key = f"resources.{kind}"
            if cls is None:
                found.append(
                    _at(
                        origin_key,
                        "schema",
                        kind,
                        f"unknown resource type {kind!r} (known: {', '.join(sorted(types))})",
                    )
                )
                continue
            for name, body in (resources or {}).items():
                try:
                    _transform(cls, copy.deepcopy(body or {}))
                except Exception as exc:  # the library raises ValueError/TypeError with the field
                    found.append(
                        Finding(
                            bundle.rel(bundle.origin(kind, name)),
                            f"resources.{kind}.{name}",
                            "schema",
                            name,
                            f"does not fit the bundle schema: {exc}; see the fields of "
                            f"{cls.__name__} in the bundle reference",
                        )
                    )
    return found


def _path_of(bundle: Bundle, kind: str, name: str, value: str) -> Path:
    # Relative paths resolve from the folder of the file that declares the resource.
    return (bundle.origin(kind, name).parent / value).resolve()


def _check_paths(bundle: Bundle) -> list[Finding]:
    found = []
    resources = bundle.config.get("resources") or {}
    for kind, items in resources.items():
        for name, body in (items or {}).items():
            for key, value, is_glob in _local_paths(kind, body or {}):
                if _is_remote(value):
                    continue
                origin = bundle.rel(bundle.origin(kind, name))
                where = f"resources.{kind}.{name}.{key}"
                if is_glob:
                    base = bundle.origin(kind, name).parent
                    if not any(base.glob(value)):
                        found.append(
                            Finding(
                                origin,
                                where,
                                "glob",
                                value,
                                f"glob {value!r} matches no file (relative to {origin}): fix "
                                "the pattern",
                            )
                        )
                    continue
                path = _path_of(bundle, kind, name, value)
                if not path.exists():
                    found.append(
                        Finding(
                            origin,
                            where,
                            "path",
                            value,
                            f"{value!r} does not exist (relative to {origin}, it is "
                            f"{bundle.rel(path)}): fix the path",
                        )
                    )
    return found


def _is_remote(value: str) -> bool:
    return value.startswith(("/Workspace/", "/Volumes/", "${")) or "://" in value


def _local_paths(kind: str, body: dict) -> Iterator[tuple[str, str, bool]]:
    """(key, path, is a glob) of the local files a resource names."""
    if kind == "jobs":
        for index, task in enumerate(body.get("tasks") or []):
            key = f"tasks[{task.get('task_key', index)}]"
            notebook = (task.get("notebook_task") or {}).get("notebook_path")
            if notebook:
                yield f"{key}.notebook_task.notebook_path", str(notebook), False
            python_file = (task.get("spark_python_task") or {}).get("python_file")
            if python_file:
                yield f"{key}.spark_python_task.python_file", str(python_file), False
    elif kind == "pipelines":
        for index, library in enumerate(body.get("libraries") or []):
            for sort in ("notebook", "file"):
                if (library.get(sort) or {}).get("path"):
                    yield f"libraries[{index}].{sort}.path", str(library[sort]["path"]), False
            include = (library.get("glob") or {}).get("include")
            if include:
                yield f"libraries[{index}].glob.include", str(include), True
        if body.get("root_path"):
            yield "root_path", str(body["root_path"]), False
    elif kind == "dashboards" and body.get("file_path"):
        yield "file_path", str(body["file_path"]), False


# --------------------------------------------------------------------------- jobs


def job_tasks(bundle: Bundle, target: str = "dev") -> list[JobTask]:
    """Every notebook task of every job, for ``target``, with the parameters its notebook gets
    (the task's ``base_parameters``, and the job's parameters with their defaults, which take
    precedence over a base parameter of the same name), variables filled.

    >>> [t.task_key for t in job_tasks(load_bundle("."), "dev")]  # doctest: +SKIP
    ['bronze_batch', ...]
    """
    config = resolved_config(bundle, target)
    tasks = []
    for job_name, job in ((config.get("resources") or {}).get("jobs") or {}).items():
        job = job or {}
        for task in job.get("tasks") or []:
            notebook = (task.get("notebook_task") or {}).get("notebook_path")
            if not notebook:
                continue
            path = _path_of(bundle, "jobs", job_name, str(notebook))
            parameters = task_parameters(job, task)
            tasks.append(
                JobTask(
                    job=job_name,
                    task_key=str(task.get("task_key")),
                    notebook=bundle.rel(path),
                    depends_on=tuple(
                        str(d.get("task_key")) for d in task.get("depends_on") or [] if d
                    ),
                    parameters=parameters,
                    compute=_compute_of(task),
                )
            )
    return tasks


def _compute_of(task: dict) -> str:
    if task.get("job_cluster_key"):
        return f"job cluster {task['job_cluster_key']}"
    if task.get("existing_cluster_id"):
        return "existing cluster"
    if task.get("new_cluster"):
        return "new cluster"
    if task.get("environment_key"):
        return f"serverless ({task['environment_key']})"
    return "serverless"


def fed_widgets(root: str | Path) -> dict[str, set[str]]:
    """Per lesson (path under ``solutions/``), the widget names the bundle's jobs feed it, in
    any target; empty without a ``databricks.yml`` (or one that does not load)."""
    try:
        bundle = load_bundle(root)
    except FileNotFoundError:
        return {}
    fed: dict[str, set[str]] = {}
    for target in bundle.targets:
        try:
            tasks = job_tasks(bundle, target)
        except Exception:  # a broken bundle: check_bundle reports why
            continue
        for task in tasks:
            prefix = f"{_SOLUTIONS}/"
            if task.notebook.startswith(prefix):
                fed.setdefault(task.notebook[len(prefix) :], set()).update(task.parameters)
    return fed


def _check_jobs(bundle: Bundle, target: str) -> list[Finding]:
    from lakehouse import notebooks
    from lakehouse.workspace import parameter_from_widget

    found: list[Finding] = []
    config = target_config(bundle, target)
    jobs = (config.get("resources") or {}).get("jobs") or {}
    course_order = [
        bundle.rel(p) for p in notebooks.solution_notebooks(bundle.root)
    ]  # sorted paths are the course's order
    tasks_by_job: dict[str, list[JobTask]] = {}
    for task in job_tasks(bundle, target):
        tasks_by_job.setdefault(task.job, []).append(task)

    for job_name, job in jobs.items():
        job = job or {}
        origin = bundle.rel(bundle.origin("jobs", job_name))
        prefix = f"resources.jobs.{job_name}"

        def finding(key: str, rule: str, subject: str, message: str) -> None:
            found.append(Finding(origin, f"{prefix}.{key}", rule, subject, message))  # noqa: B023

        raw_tasks = job.get("tasks") or []
        keys = [str(t.get("task_key")) for t in raw_tasks]
        for key in sorted({k for k in keys if keys.count(k) > 1}):
            finding(f"tasks[{key}]", "task", key, f"task_key {key!r} is used twice: rename one")
        clusters = {c.get("job_cluster_key") for c in job.get("job_clusters") or []}
        for task in raw_tasks:
            key = str(task.get("task_key"))
            for dep in task.get("depends_on") or []:
                if dep.get("task_key") not in keys:
                    finding(
                        f"tasks[{key}].depends_on",
                        "task",
                        str(dep.get("task_key")),
                        f"task {key!r} depends on {dep.get('task_key')!r}, which is not a task "
                        f"of this job (tasks: {', '.join(keys)})",
                    )
            cluster = task.get("job_cluster_key")
            if cluster and cluster not in clusters:
                finding(
                    f"tasks[{key}].job_cluster_key",
                    "compute",
                    cluster,
                    f"task {key!r} runs on job cluster {cluster!r}, which job_clusters does "
                    f"not define (defined: {sorted(c for c in clusters if c) or 'none'})",
                )
        for cycle in _cycles(raw_tasks):
            finding(
                "tasks",
                "task",
                " -> ".join(cycle),
                f"depends_on makes a cycle: {' -> '.join(cycle)}; a job's tasks must form a DAG",
            )

        tasks = tasks_by_job.get(job_name, [])
        by_key = {t.task_key: t for t in tasks}
        read_by_some_task: set[str] = set()
        for task in tasks:
            where = f"tasks[{task.task_key}]"
            path = bundle.root / task.notebook
            if not path.is_file():
                continue  # reported by _check_paths
            if not task.notebook.startswith(f"{_SOLUTIONS}/"):
                solution = f"{_SOLUTIONS}/{task.notebook}"
                if (bundle.root / solution).is_file():
                    finding(
                        f"{where}.notebook_task.notebook_path",
                        "path",
                        task.notebook,
                        f"task {task.task_key!r} runs the exercise {task.notebook}, whose "
                        "task cells raise NotImplementedError: point it at "
                        f"{solution}",
                    )
            for dep in task.depends_on:
                upstream = by_key.get(dep)
                if (
                    upstream
                    and task.notebook in course_order
                    and upstream.notebook in course_order
                    and course_order.index(upstream.notebook) > course_order.index(task.notebook)
                ):
                    finding(
                        f"{where}.depends_on",
                        "order",
                        dep,
                        f"task {task.task_key!r} ({task.notebook}) depends on {dep!r} "
                        f"({upstream.notebook}), a later lesson: the job must follow the "
                        "course's order, so reverse the dependency",
                    )
            nb = notebooks.read(path)
            lesson = task.notebook.removeprefix(f"{_SOLUTIONS}/")
            widgets = compat.notebook_widgets(nb)
            literals = compat.parameter_literals(nb)
            read_by_some_task.update(set(widgets) & set(task.parameters))
            base = (
                next(
                    (t for t in job.get("tasks") or [] if str(t.get("task_key")) == task.task_key),
                    {},
                )
                .get("notebook_task", {})
                .get("base_parameters")
                or {}
            )
            job_names = {p.get("name") for p in job.get("parameters") or []}
            for name in base:
                if name in job_names:
                    finding(
                        f"{where}.notebook_task.base_parameters.{name}",
                        "parameter",
                        name,
                        f"base parameter {name!r} is overridden by the job parameter of the "
                        "same name (job parameters take precedence): remove one of them",
                    )
                elif name not in widgets:
                    finding(
                        f"{where}.notebook_task.base_parameters.{name}",
                        "parameter",
                        name,
                        f"base parameter {name!r} feeds no widget of {task.notebook} (its "
                        f"widgets: {', '.join(widgets) or 'none'}): fix the name or remove it",
                    )
            for name, default in widgets.items():
                if default is None and name not in task.parameters:
                    finding(
                        where,
                        "widget",
                        name,
                        f"{task.notebook} reads widget {name!r}, which has no default, and "
                        f"task {task.task_key!r} does not feed it: add it to the job's "
                        "parameters or the task's base_parameters",
                    )
            for name, value in task.parameters.items():
                if name not in literals or value is None or "{{" in str(value):
                    continue
                if isinstance(value, str) and _REFERENCE.search(value):
                    continue  # filled in at deploy
                try:
                    parameter_from_widget(name, literals[name], _as_text(value))
                except (TypeError, ValueError) as exc:
                    finding(
                        f"{where}.parameters.{name}",
                        "parameter",
                        name,
                        f"{task.notebook} would refuse the value {value!r} of {name!r}: {exc}",
                    )
            serverless = task.compute.startswith("serverless")
            needs_cluster = compat.CLASSIC_COMPUTE.get(lesson)
            if serverless and needs_cluster:
                subject = ", ".join(needs_cluster)
                finding(
                    where,
                    "compute",
                    subject,
                    f"task {task.task_key!r} runs {lesson} on serverless, which refuses "
                    f"what the lesson does on purpose ({subject}): give it a job_cluster_key",
                )
            for problem in compat.notebook_findings(
                nb, task.notebook, lesson=lesson, fed=task.parameters
            ):
                if problem.accepted:
                    continue  # on a cluster it is fine; on serverless, reported above
                finding(where, problem.rule, problem.subject, f"{task.notebook}: {problem}")
        for parameter in job.get("parameters") or []:
            name = parameter.get("name")
            if tasks and name not in read_by_some_task:
                finding(
                    f"parameters[{name}]",
                    "parameter",
                    str(name),
                    f"job parameter {name!r} feeds no widget of any task's notebook: fix the "
                    "name (a notebook's parameters cell names its widgets) or remove it",
                )
    return found


def _as_text(value: Any) -> str:
    # What a widget receives: job parameter values are strings; YAML may have typed them.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _cycles(tasks: Iterable[dict]) -> list[list[str]]:
    graph = {
        str(t.get("task_key")): [str(d.get("task_key")) for d in t.get("depends_on") or []]
        for t in tasks
    }
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in graph.get(node, []):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep in graph and dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    return cycles


# --------------------------------------------------------------------------- lesson helpers


def resolved_config(bundle: Bundle, target: str) -> dict:
    """:func:`target_config` with the target's variables filled in (lookups shown as
    ``<looked up at deploy: ...>``; ``${workspace.*}`` and ``${resources.*}`` stay, the CLI
    fills them at deploy).

    >>> resolved_config(load_bundle("."), "prod")["variables"]  # doctest: +SKIP
    """
    config = target_config(bundle, target)
    name = str((config.get("bundle") or {}).get("name", ""))
    return _substitute(config, _variable_values(bundle, target), name, target)


def task_parameters(job: dict, task: dict) -> dict:
    """What the notebook of ``task`` receives from a (resolved) ``job``: the task's
    ``notebook_task.base_parameters``, then every job parameter's default, which takes
    precedence over a base parameter of the same name.

    >>> task_parameters({"parameters": [{"name": "scale", "default": "small"}]},
    ...                 {"notebook_task": {"base_parameters": {"scale": "tiny", "x": "1"}}})
    {'scale': 'small', 'x': '1'}
    """
    parameters = dict((task.get("notebook_task") or {}).get("base_parameters") or {})
    parameters.update({p["name"]: p.get("default") for p in job.get("parameters") or []})
    return parameters


def parameter_problems(parameters: Iterable[str], widgets: dict[str, str | None]) -> list[str]:
    """The mismatches between what a task feeds (``parameters``' names) and what its notebook
    reads (``widgets``: name -> default, None for none), sorted: ``"<name>: no widget reads
    it"`` for a parameter, ``"<name>: no default, not fed"`` for a widget that would stop the
    run. A widget with a default needs nothing.

    >>> parameter_problems(["scale", "scael"], {"scale": "tiny", "as_of": None})
    ['as_of: no default, not fed', 'scael: no widget reads it']
    """
    parameters = set(parameters)
    problems = [f"{name}: no widget reads it" for name in parameters if name not in widgets]
    problems += [
        f"{name}: no default, not fed"
        for name, default in widgets.items()
        if default is None and name not in parameters
    ]
    return sorted(problems)


def check_task_parameters(task_parameters_fn, bundle: Bundle) -> str:
    """The check of lesson 07_production/02's first task: ``task_parameters_fn(job, task)`` must
    give each notebook what Databricks passes it, on the course's job in every target and on a
    job whose task repeats a job parameter. Raises AssertionError naming the fix."""
    cases = []
    for target in sorted(bundle.targets):
        config = resolved_config(bundle, target)
        for job in ((config.get("resources") or {}).get("jobs") or {}).values():
            cases += [(job, task) for task in job.get("tasks") or [] if task.get("notebook_task")]
    overlap_job = {
        "parameters": [{"name": "scale", "default": "small"}, {"name": "seed", "default": "42"}]
    }
    overlap_task = {"notebook_task": {"base_parameters": {"scale": "tiny", "month": "7"}}}
    bare_task = {"task_key": "t", "notebook_task": {"notebook_path": "x.ipynb"}}
    cases += [(overlap_job, overlap_task), (overlap_job, bare_task)]
    for job, task in cases:
        got = task_parameters_fn(job, task)
        want = task_parameters(job, task)
        where = f"task {task.get('task_key', '(example)')!r}"
        assert isinstance(got, dict), (
            f"task_parameters must return a dict name -> value, got {type(got).__name__}"
        )
        job_names = {p["name"] for p in job.get("parameters") or []}
        if any(isinstance(v, dict) for v in got.values()):
            raise AssertionError(
                f"{where}: the value of a job parameter is its default "
                "(parameters: [{name: ..., default: ...}]), not the whole entry"
            )
        missing = sorted(set(want) - set(got))
        if set(missing) & job_names:
            raise AssertionError(
                f"{where} misses {sorted(set(missing) & job_names)}: every task receives the "
                "job's parameters, as widgets of the same name"
            )
        if missing:
            raise AssertionError(
                f"{where} misses {missing}: a task's base_parameters reach its notebook too"
            )
        extra = sorted(set(got) - set(want))
        assert not extra, f"{where} gets {extra}, which neither the job nor the task passes"
        for name, value in want.items():
            if str(got[name]) != str(value):
                hint = (
                    "job parameters take precedence over a task's base_parameters of the same name"
                    if name in job_names
                    else "the task's base_parameters value"
                )
                raise AssertionError(
                    f"{where}: {name!r} should be {value!r}, got {got[name]!r}: {hint}"
                )
    return f"task parameters ok: {len(cases)} tasks, job parameters over base_parameters"


def check_parameter_problems(parameter_problems_fn) -> str:
    """The check of lesson 07_production/02's second task: ``parameter_problems_fn(parameters,
    widgets)`` must name each parameter no widget reads and each widget with no default that
    nothing feeds, and nothing else. Raises AssertionError naming the fix."""
    cases = [
        (["scale", "seed"], {"scale": "tiny", "seed": "42", "engine": "auto"}),
        (["scale", "scael"], {"scale": "tiny", "engine": "auto"}),
        (["scale"], {"scale": "tiny", "as_of": None}),
        (["as_of", "month"], {"as_of": None, "month": "7", "region": None}),
        ([], {}),
    ]
    for parameters, widgets in cases:
        got = sorted(parameter_problems_fn(list(parameters), dict(widgets)))
        want = parameter_problems(parameters, widgets)
        if got == want:
            continue
        shown = f"parameters {parameters}, widgets {widgets}"
        unread = [w for w in want if w.endswith("no widget reads it")]
        if any(p.split(":")[0] in widgets and widgets[p.split(":")[0]] for p in got):
            raise AssertionError(
                f"{shown}: got {got}; a widget with a default needs no parameter (only one "
                "without a default stops the run)"
            )
        if unread and not all(u in got for u in unread):
            raise AssertionError(
                f"{shown}: got {got}, missing {unread}; a parameter no widget reads is a "
                "problem too (a typo, or a parameter the notebook lost)"
            )
        raise AssertionError(
            f"{shown}: expected {want}, got {got}; write '<name>: no widget reads it' and "
            "'<name>: no default, not fed'"
        )
    return f"parameter problems ok: {len(cases)} cases"


def tasks_frame(tasks: Iterable[JobTask]):
    """A pandas table of tasks: key, lesson, what it waits for, compute and its own parameters
    (those beyond the job's scale, seed, engine and reset)."""
    import pandas as pd

    common = {"scale", "seed", "engine", "reset"}
    rows = [
        {
            "task": t.task_key,
            "lesson": t.notebook.removeprefix(f"{_SOLUTIONS}/"),
            "after": ", ".join(t.depends_on) or "-",
            "compute": t.compute,
            "own parameters": ", ".join(
                f"{k}={v}" for k, v in t.parameters.items() if k not in common
            )
            or "-",
        }
        for t in tasks
    ]
    return pd.DataFrame(rows)


def plot_tasks(tasks: Iterable[JobTask], ax=None):
    """Draw a job's tasks as a DAG, left to right: a task's column is the length of the longest
    chain of dependencies before it. Returns the matplotlib axes."""
    import matplotlib.pyplot as plt

    tasks = list(tasks)
    by_key = {t.task_key: t for t in tasks}
    depth: dict[str, int] = {}

    def level(key: str) -> int:
        if key not in depth:
            deps = [d for d in by_key[key].depends_on if d in by_key]
            depth[key] = 1 + max((level(d) for d in deps), default=-1)
        return depth[key]

    columns: dict[int, list[str]] = {}
    for t in tasks:
        columns.setdefault(level(t.task_key), []).append(t.task_key)
    where = {
        key: (x, -(i - (len(keys) - 1) / 2))
        for x, keys in columns.items()
        for i, key in enumerate(keys)
    }
    if ax is None:
        _, ax = plt.subplots(
            figsize=(2.3 * len(columns) + 1, 0.9 * max(map(len, columns.values())) + 1)
        )
    layer_colour = {
        "01_bronze": "#b08d57",
        "02_silver": "#9ea7ad",
        "03_gold": "#d4af37",
        "05_ml": "#6a9fb5",
    }
    for t in tasks:
        x, y = where[t.task_key]
        for dep in t.depends_on:
            if dep in where:
                dx, dy = where[dep]
                ax.annotate(
                    "",
                    (x - 0.42, y),
                    (dx + 0.42, dy),
                    arrowprops={"arrowstyle": "->", "color": "0.5"},
                )
        colour = layer_colour.get(t.notebook.split("/")[1] if "/" in t.notebook else "", "#cccccc")
        ax.text(
            x,
            y,
            t.task_key,
            ha="center",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round", "facecolor": colour, "edgecolor": "0.3"},
        )
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylim(min(y for _, y in where.values()) - 0.8, max(y for _, y in where.values()) + 0.8)
    ax.axis("off")
    return ax
