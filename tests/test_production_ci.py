"""lakehouse.production.ci: the gate, the deployment workflow in ci/workspace-deploy.yml parsed
and checked, each broken workflow caught with its message, and every wrong answer of lesson
07_production/04's catalogue caught by its check."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from helpers import catalogue

from lakehouse.production import Finding, ci

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "solutions/07_production/04_ci_cd_for_data.ipynb"
MISTAKES = catalogue.load(LESSON)
WORKFLOW = ci.load_workflow(ROOT)


def test_the_workflow_file_parses_and_passes():
    assert set(WORKFLOW) >= {"name", "on", "jobs"}  # `on` read back from YAML 1.1's True
    assert set(WORKFLOW["on"]) == {"pull_request", "push"}
    assert ci.check_workflow(WORKFLOW).startswith("workflow ok: 3 jobs")
    assert ci.bundle_commands(WORKFLOW["jobs"]["deploy-dev"]) == [
        ("validate", "dev"), ("deploy", "dev"), ("run", "dev"),
    ]  # fmt: skip
    assert not (ROOT / ".github/workflows/workspace-deploy.yml").exists()  # never run here


def broken(change) -> dict:
    workflow = copy.deepcopy(WORKFLOW)
    change(workflow)
    return workflow


def prod(w: dict) -> dict:
    return w["jobs"]["deploy-prod"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda w: prod(w)["env"].pop("DATABRICKS_CLIENT_SECRET"),
            "without DATABRICKS_CLIENT_SECRET",
        ),
        (
            lambda w: prod(w)["env"].update(DATABRICKS_TOKEN="${{ secrets.T }}"),
            "personal access token",
        ),
        (
            lambda w: prod(w)["env"].update(DATABRICKS_CLIENT_SECRET="s3cr3t"),
            "never be written in the file",
        ),
        (lambda w: prod(w).pop("needs"), "deploy only after the tests pass"),
        (lambda w: prod(w).update(environment=None), "without an environment"),
        (lambda w: prod(w).update({"if": "github.event_name == 'push'"}), "only from main"),
        (lambda w: prod(w)["steps"].pop(2), "validate before deploy"),
        (lambda w: w["jobs"]["deploy-dev"]["steps"].pop(3), "deploy before run"),
        (lambda w: w["jobs"].pop("deploy-prod"), "no job deploys -t prod"),
        (lambda w: w["jobs"]["test"]["steps"].pop(), "no job runs the course's tests"),
        (lambda w: w.update(jobs={}), "the workflow has no jobs"),
    ],
)
def test_each_broken_workflow_is_caught_with_its_message(change, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        ci.check_workflow(broken(change))


def test_the_gate_fails_only_on_what_is_not_accepted():
    fix = Finding("a.ipynb", "code cell 1, line 1", "cache", ".cache()", "calls .cache()")
    kept = Finding("b.ipynb", "code cell 2, line 1", "trigger", "t", "trigger", accepted="demo")
    assert ci.workspace_gate([]) == (0, [])
    assert ci.workspace_gate([kept]) == (
        0,
        ["b.ipynb: code cell 2, line 1: trigger (accepted: demo)"],
    )
    status, report = ci.workspace_gate([kept, fix])
    assert status == 1 and report[0] == "a.ipynb: code cell 1, line 1: calls .cache()"


# ------------------------------------------------------------------ lesson 07_production/04

CHECKS = {
    "t1gate01": ("workspace_gate", ci.check_gate),
    "t2prod01": ("deploy_prod", lambda job: ci.check_prod_job(job, WORKFLOW)),
}


def test_the_lesson_solutions_and_the_file_pass_their_checks():
    for cell_id, (name, check) in CHECKS.items():
        assert check(catalogue.defined(catalogue.task_cell(LESSON, cell_id), name))
    assert ci.check_gate(ci.workspace_gate)
    assert ci.check_prod_job(WORKFLOW["jobs"]["deploy-prod"], WORKFLOW)


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m["name"])
def test_each_classic_mistake_is_caught_by_its_check(mistake):
    name, check = CHECKS[mistake["task_cell"]]
    with pytest.raises(AssertionError, match=re.escape(mistake["caught_by"])):
        check(catalogue.defined(mistake["source"], name))


def test_the_catalogue_covers_every_task_with_two_mistakes():
    catalogue.assert_covers_every_task(LESSON, MISTAKES, set(CHECKS))
