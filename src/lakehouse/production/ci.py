"""CI/CD for the course: the gate that turns workspace findings into a build's result, and the
rules a workspace deployment workflow (``ci/workspace-deploy.yml``) must follow.

The deployment workflow is a GitHub Actions file that authenticates as a service principal
with OAuth (``DATABRICKS_CLIENT_ID`` / ``DATABRICKS_CLIENT_SECRET`` from the repository's
secrets) and runs ``databricks bundle validate``, ``deploy`` and ``run``. It cannot run here
(no workspace, no CLI), so :func:`check_workflow` checks what can go wrong in the file itself.

>>> from lakehouse.production import ci
>>> ci.check_workflow(ci.load_workflow("."))  # doctest: +SKIP
'workflow ok: ...'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import yaml

from lakehouse.production import Finding

__all__ = [
    "OAUTH_VARIABLES",
    "WORKFLOW_FILE",
    "bundle_commands",
    "check_gate",
    "check_prod_job",
    "check_workflow",
    "load_workflow",
    "workspace_gate",
]

WORKFLOW_FILE = Path("ci") / "workspace-deploy.yml"
# A service principal's OAuth machine-to-machine credentials, as the Databricks CLI reads them.
OAUTH_VARIABLES = ("DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET")
_BUNDLE_COMMAND = re.compile(r"databricks\s+bundle\s+(validate|deploy|run)\b.*?-t\s+(\w+)")
_SECRET = re.compile(r"^\$\{\{\s*secrets\.\w+\s*\}\}$")


# --------------------------------------------------------------------------- the gate


def workspace_gate(findings: Iterable[Finding]) -> tuple[int, list[str]]:
    """A build's verdict on workspace findings: ``(1, report)`` if any finding is not accepted,
    else ``(0, report)``. The report lists the findings to fix first, then the accepted ones
    with their reason (``... (accepted: <reason>)``), so a reader sees both.

    >>> workspace_gate([])
    (0, [])
    """
    findings = list(findings)
    problems = [str(f) for f in findings if not f.accepted]
    accepted = [f"{f} (accepted: {f.accepted})" for f in findings if f.accepted]
    return (1 if problems else 0), problems + accepted


def check_gate(gate: Callable[[list[Finding]], tuple[int, Sequence[str]]]) -> str:
    """The check of lesson 07_production/04's first task: ``gate(findings)`` must fail the build
    on a finding that is not accepted, pass on accepted ones, and report both. Raises
    AssertionError naming the fix."""
    problem = Finding("a.ipynb", "code cell 2, line 1", "cache", ".cache()", "calls .cache()")
    kept = Finding(
        "b.ipynb", "code cell 5, line 3", "trigger", "trigger(processingTime)",
        "starts a stream with trigger(processingTime=...)", accepted="a live demo",
    )  # fmt: skip
    cases = [[], [problem], [kept], [kept, problem], [problem, problem]]
    for findings in cases:
        status, report = gate(list(findings))
        want_status, want_report = workspace_gate(findings)
        shown = [f.subject + (" (accepted)" if f.accepted else "") for f in findings]
        if status != want_status:
            if not findings:
                raise AssertionError(f"no findings: exit {status}, expected 0; nothing to fix")
            if want_status == 0:
                raise AssertionError(
                    f"findings {shown}: exit {status}, expected 0; an accepted finding does not "
                    "fail the build (its lesson needs classic compute on purpose)"
                )
            raise AssertionError(
                f"findings {shown}: exit {status}, expected 1; a finding that is not accepted "
                "fails the build"
            )
        if sorted(report) != sorted(want_report):
            if any(f.accepted for f in findings) and not any("accepted" in r for r in report):
                raise AssertionError(
                    f"findings {shown}: report {list(report)}; accepted findings stay in the "
                    "report, each with '(accepted: <reason>)'"
                )
            raise AssertionError(
                f"findings {shown}: report {list(report)}, expected {want_report}: one line per "
                "finding, str(finding), with '(accepted: <reason>)' after an accepted one"
            )
        if list(report) != want_report:
            raise AssertionError(
                f"findings {shown}: report {list(report)}; list the findings to fix first, then "
                "the accepted ones"
            )
    return f"gate ok: {len(cases)} cases"


# --------------------------------------------------------------------------- the workflow


def load_workflow(root: str | Path, path: str | Path = WORKFLOW_FILE) -> dict:
    """Read the deployment workflow (``ci/workspace-deploy.yml``) as a dict.

    YAML 1.1 reads the key ``on`` as True; it is put back under ``"on"``.
    """
    data = yaml.safe_load((Path(root) / path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a workflow (a mapping with on: and jobs:)")
    if True in data:
        data["on"] = data.pop(True)
    return data


def bundle_commands(job: dict) -> list[tuple[str, str]]:
    """``(command, target)`` of each ``databricks bundle validate|deploy|run -t <target>`` step
    of a workflow job, in order."""
    commands = []
    for step in job.get("steps") or []:
        for line in str(step.get("run") or "").splitlines():
            match = _BUNDLE_COMMAND.search(line)
            if match:
                commands.append((match.group(1), match.group(2)))
    return commands


def check_workflow(workflow: dict) -> str:
    """Check a deployment workflow's rules; returns a one-line summary, or raises AssertionError
    naming the job and the fix:

    - each job that runs ``databricks bundle`` authenticates as a service principal with OAuth
      (``DATABRICKS_HOST``, ``DATABRICKS_CLIENT_ID``, ``DATABRICKS_CLIENT_SECRET`` in its or the
      workflow's ``env``), the secret from ``${{ secrets.* }}``, and no personal token;
    - it validates a target before deploying it, and deploys before it runs it;
    - it needs the job that runs the tests (``.ci/run``), so nothing untested is deployed;
    - ``prod`` is deployed only on a push to main, from a GitHub ``environment``;
    - both ``dev`` and ``prod`` are deployed by some job.
    """
    jobs = workflow.get("jobs") or {}
    assert jobs, "the workflow has no jobs: add a test job and the deploy jobs"
    test_jobs = {
        name
        for name, job in jobs.items()
        if any(".ci/run" in str(step.get("run") or "") for step in (job or {}).get("steps") or [])
    }
    assert test_jobs, "no job runs the course's tests (a step `run: bash .ci/run`)"
    deployed: set[str] = set()
    for name, job in jobs.items():
        job = job or {}
        commands = bundle_commands(job)
        if not commands:
            continue
        env = {**(workflow.get("env") or {}), **(job.get("env") or {})}
        if "DATABRICKS_TOKEN" in env:
            raise AssertionError(
                f"job {name!r} sets DATABRICKS_TOKEN: deploy as a service principal's OAuth "
                "(DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET), not a personal access token"
            )
        missing = [v for v in OAUTH_VARIABLES if not env.get(v)]
        assert not missing, (
            f"job {name!r} runs databricks bundle without {', '.join(missing)}: set the service "
            "principal's OAuth variables in its env"
        )
        for variable in ("DATABRICKS_CLIENT_SECRET", "DATABRICKS_CLIENT_ID"):
            if not _SECRET.match(str(env[variable]).strip()):
                raise AssertionError(
                    f"job {name!r}: {variable} must come from the repository's secrets, "
                    f"${{{{ secrets.{variable} }}}}, never be written in the file"
                )
        needs = job.get("needs") or []
        needs = [needs] if isinstance(needs, str) else list(needs)
        assert set(needs) & test_jobs, (
            f"job {name!r} deploys without needs: {sorted(test_jobs)}; deploy only after the "
            "tests pass"
        )
        seen: dict[str, list[str]] = {}
        for command, target in commands:
            done = seen.setdefault(target, [])
            if command == "deploy" and "validate" not in done:
                raise AssertionError(
                    f"job {name!r} deploys -t {target} before `databricks bundle validate -t "
                    f"{target}`: validate before deploy, so a broken bundle stops the job first"
                )
            if command == "run" and "deploy" not in done:
                raise AssertionError(
                    f"job {name!r} runs -t {target} before deploying it: deploy before run, or "
                    "the run uses the previous deployment"
                )
            done.append(command)
            if command == "deploy":
                deployed.add(target)
        if any(target == "prod" for _, target in commands):
            condition = str(job.get("if") or "")
            if "refs/heads/main" not in condition or "push" not in condition:
                raise AssertionError(
                    f"job {name!r} deploys prod with if: {condition or '(none)'}; production "
                    "deploys only from main: if: github.event_name == 'push' && github.ref == "
                    "'refs/heads/main'"
                )
            assert job.get("environment"), (
                f"job {name!r} deploys prod without an environment: set environment: prod (its "
                "secrets and required reviewers live there)"
            )
    for target in ("dev", "prod"):
        assert target in deployed, (
            f"no job deploys -t {target}: add a job with databricks bundle validate and deploy "
            f"-t {target}"
        )
    return (
        f"workflow ok: {len(jobs)} jobs; dev and prod deployed as a service principal, validated "
        "first, after the tests"
    )


def check_prod_job(job: dict, workflow: dict, name: str = "deploy-prod") -> str:
    """The check of lesson 07_production/04's second task: ``workflow`` with its production job
    replaced by ``job`` must pass :func:`check_workflow`. Raises AssertionError naming the fix."""
    assert isinstance(job, dict) and job, (
        "deploy_prod must be a workflow job: a dict with needs, if, environment, env and steps"
    )
    jobs = {k: v for k, v in (workflow.get("jobs") or {}).items() if k != name}
    return check_workflow({**workflow, "jobs": {**jobs, name: job}})
