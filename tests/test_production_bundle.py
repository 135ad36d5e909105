"""lakehouse.production.bundle: the real databricks.yml passes the offline check, and each way
of breaking a copy of it (a missing notebook, a parameter no widget reads, a missing target, a
typo in a field...) is caught with a message that names the file, the key and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml
from helpers import catalogue
from nbformat.v4 import new_code_cell

from lakehouse.production import bundle

ROOT = Path(__file__).resolve().parents[1]
JOB_FILE = "resources/lakehouse_job.yml"
JOB = "lakehouse_production"


def test_the_repository_bundle_passes_the_offline_check():
    findings = bundle.check_bundle(ROOT)
    assert findings == [], "bundle problems:\n" + "\n".join(map(str, findings))


def test_the_job_runs_solutions_in_course_order_with_job_parameters_on_a_cluster():
    loaded = bundle.load_bundle(ROOT)
    for target in ("dev", "prod"):
        tasks = bundle.job_tasks(loaded, target)
        assert tasks, "the production job has no notebook task"
        assert all(t.notebook.startswith("solutions/") for t in tasks)
        assert all(t.compute == "job cluster course" for t in tasks)
        for task in tasks:
            assert {"scale", "seed", "engine", "reset"} <= set(task.parameters)
    dev, prod = (bundle.job_tasks(loaded, t) for t in ("dev", "prod"))
    assert dev[0].parameters["scale"] == "tiny" and prod[0].parameters["scale"] == "small"
    dates = next(t for t in dev if t.task_key == "gold_dates")
    assert dates.parameters["fiscal_year_start_month"] == "7"


def test_fed_widgets_names_each_job_lesson():
    fed = bundle.fed_widgets(ROOT)
    assert fed["03_gold/01_date_dimension.ipynb"] >= {"scale", "fiscal_year_start_month"}
    assert "01_bronze/00_setup_and_tour.ipynb" not in fed  # a tour is not production
    assert bundle.fed_widgets(ROOT / "tests") == {}  # no databricks.yml there


# --------------------------------------------------------------------------- broken copies


@pytest.fixture
def copy(tmp_path):
    return bundle.copy_bundle(ROOT, tmp_path / "bundle")


def edit(root: Path, name: str, change) -> None:
    path = root / name
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def job(data: dict) -> dict:
    return data["resources"]["jobs"][JOB]


def task(data: dict, key: str) -> dict:
    return next(t for t in job(data)["tasks"] if t["task_key"] == key)


def messages(root: Path) -> list[str]:
    return [str(f) for f in bundle.check_bundle(root)]


def test_a_copy_passes_before_it_is_broken(copy):
    assert messages(copy) == []


BROKEN_JOB = {
    "a notebook that does not exist": (
        lambda d: task(d, "gold_facts")["notebook_task"].update(
            notebook_path="../solutions/03_gold/03_fact_table.ipynb"
        ),
        "resources.jobs.lakehouse_production.tasks[gold_facts].notebook_task.notebook_path: "
        "'../solutions/03_gold/03_fact_table.ipynb' does not exist",
    ),
    "a base parameter no widget reads": (
        lambda d: task(d, "gold_dates")["notebook_task"].update(
            base_parameters={"fiscal_year_start": "7"}
        ),
        "base parameter 'fiscal_year_start' feeds no widget of "
        "solutions/03_gold/01_date_dimension.ipynb",
    ),
    "a base parameter the job parameter overrides": (
        lambda d: task(d, "gold_dates")["notebook_task"].update(base_parameters={"scale": "large"}),
        "base parameter 'scale' is overridden by the job parameter of the same name",
    ),
    "a job parameter no notebook reads": (
        lambda d: job(d)["parameters"].append({"name": "scael", "default": "tiny"}),
        "job parameter 'scael' feeds no widget of any task's notebook",
    ),
    "a value the notebook cannot parse": (
        lambda d: job(d)["parameters"][1].update(default="forty-two"),
        "would refuse the value 'forty-two' of 'seed': parameter 'seed' is a whole number",
    ),
    "a boolean written as yes": (
        lambda d: job(d)["parameters"][3].update(default="yes"),
        "parameter 'reset' is a boolean: pass 'true' or 'false'",
    ),
    "a dependency on an unknown task": (
        lambda d: task(d, "gold_kpis")["depends_on"].append({"task_key": "gold_c360"}),
        "task 'gold_kpis' depends on 'gold_c360', which is not a task of this job",
    ),
    "a cycle": (
        lambda d: task(d, "bronze_batch").update(depends_on=[{"task_key": "gold_kpis"}]),
        "depends_on makes a cycle",
    ),
    "a dependency against the course's order": (
        lambda d: task(d, "gold_dates").update(depends_on=[{"task_key": "fraud_scoring"}]),
        "depends on 'fraud_scoring' (solutions/05_ml/06_batch_and_streaming_scoring.ipynb), a "
        "later lesson",
    ),
    "the exercise instead of the solution": (
        lambda d: task(d, "gold_kpis")["notebook_task"].update(
            notebook_path="../03_gold/05_business_analytics.ipynb"
        ),
        "runs the exercise 03_gold/05_business_analytics.ipynb, whose task cells raise "
        "NotImplementedError",
    ),
    "a typo in a field": (
        lambda d: task(d, "gold_kpis").update(
            notebook_task={"notebook_pth": task(d, "gold_kpis")["notebook_task"]["notebook_path"]}
        ),
        "does not fit the bundle schema: Unexpected field 'notebook_pth'",
    ),
    "a job cluster that is not defined": (
        lambda d: task(d, "gold_kpis").update(job_cluster_key="big"),
        "runs on job cluster 'big', which job_clusters does not define",
    ),
    "serverless for a lesson that needs a cluster": (
        lambda d: task(d, "fraud_scoring").pop("job_cluster_key"),
        "runs 05_ml/06_batch_and_streaming_scoring.ipynb on serverless, which refuses what "
        "the lesson does on purpose (trigger(processingTime))",
    ),
    "a reference to a resource that does not exist": (
        lambda d: d["resources"]["volumes"]["raw"].update(
            schema_name="${resources.schemas.courses.name}"
        ),
        "${resources.schemas.courses.name} names a resource the bundle does not declare",
    ),
    "an undeclared variable": (
        lambda d: job(d)["job_clusters"][0]["new_cluster"].update(node_type_id="${var.node}"),
        "uses ${var.node}, which is not declared",
    ),
}


@pytest.mark.parametrize("change", BROKEN_JOB, ids=list(BROKEN_JOB))
def test_each_broken_job_is_caught_with_its_message(copy, change):
    mutate, expected = BROKEN_JOB[change]
    edit(copy, JOB_FILE, mutate)
    found = messages(copy)
    assert any(expected in m for m in found), f"{expected!r} not in:\n" + "\n".join(found)
    assert all(m.startswith((JOB_FILE, "databricks.yml")) for m in found)


BROKEN_BUNDLE = {
    "no prod target": (
        lambda d: d["targets"].pop("prod"),
        "databricks.yml: targets.prod: target 'prod' is missing: add targets.prod with "
        "mode: production",
    ),
    "dev in production mode": (
        lambda d: d["targets"]["dev"].update(mode="production"),
        "target 'dev' must have mode: development (it has 'production')",
    ),
    "two default targets": (
        lambda d: d["targets"]["prod"].update(default=True),
        "exactly one target must have default: true (found ['dev', 'prod'])",
    ),
    "production as a user": (
        lambda d: d["targets"]["prod"].pop("run_as"),
        "production must run as a service principal",
    ),
    "production in a user's home": (
        lambda d: d["targets"]["prod"]["workspace"].update(
            root_path="/Workspace/Users/${workspace.current_user.userName}/.bundle"
        ),
        "production needs one shared deployment folder",
    ),
    "no permissions": (lambda d: d.pop("permissions"), "no permissions: add a top-level"),
    "a permission level that does not exist": (
        lambda d: d["permissions"][1].update(level="CAN_READ"),
        "permission level 'CAN_READ' is not one of CAN_MANAGE, CAN_RUN, CAN_VIEW",
    ),
    "a variable without a value": (
        lambda d: d["variables"]["catalog"].pop("default"),
        "variable 'catalog' has no value in target 'dev'",
    ),
    "a variable nobody uses": (
        lambda d: d["variables"].update(region={"default": "eu"}),
        "variable 'region' is declared but never used",
    ),
    "an include that matches nothing": (
        lambda d: d.update(include=["resource/*.yml"]),
        "include glob 'resource/*.yml' matches no file",
    ),
    "an unknown top-level key": (
        lambda d: d.update(target={"dev": {}}),
        "unknown top-level key 'target'",
    ),
}


@pytest.mark.parametrize("change", BROKEN_BUNDLE, ids=list(BROKEN_BUNDLE))
def test_each_broken_bundle_is_caught_with_its_message(copy, change):
    mutate, expected = BROKEN_BUNDLE[change]
    edit(copy, "databricks.yml", mutate)
    found = messages(copy)
    assert any(expected in m for m in found), f"{expected!r} not in:\n" + "\n".join(found)


def test_invalid_yaml_names_the_line(copy):
    path = copy / JOB_FILE
    lines = path.read_text().splitlines()
    lines[20] = lines[20] + ": : oops"
    path.write_text("\n".join(lines))
    found = messages(copy)
    assert len(found) == 1 and found[0].startswith(f"{JOB_FILE}: line 21")
    assert "is not valid YAML" in found[0]


def test_no_bundle_at_all(tmp_path):
    (finding,) = bundle.check_bundle(tmp_path)
    assert finding.rule == "missing" and "databricks.yml not found" in finding.message


def test_a_resource_declared_twice(copy):
    (copy / "resources/zz_again.yml").write_text((copy / JOB_FILE).read_text())
    found = messages(copy)
    assert any(
        "resources/zz_again.yml: resources.jobs.lakehouse_production: declares "
        "resources.jobs.lakehouse_production again (first in resources/lakehouse_job.yml)" in m
        for m in found
    ), found


def test_a_widget_without_default_must_be_fed(copy):
    path = copy / "solutions/03_gold/04_customer_360.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(new_code_cell('as_of = dbutils.widgets.get("as_of")'))
    nbformat.write(nb, path)
    expected = (
        "solutions/03_gold/04_customer_360.ipynb reads widget 'as_of', which has no default, "
        "and task 'gold_customer_360' does not feed it"
    )
    assert any(expected in m for m in messages(copy))
    edit(
        copy,
        JOB_FILE,
        lambda d: task(d, "gold_customer_360")["notebook_task"].update(
            base_parameters={"as_of": "{{job.start_time.iso_date}}"}
        ),
    )
    assert messages(copy) == []


def test_pipeline_and_dashboard_paths_are_checked(copy):
    (copy / "resources/pipeline.yml").write_text(
        yaml.safe_dump(
            {
                "resources": {
                    "pipelines": {
                        "medallion": {
                            "name": "medallion",
                            "catalog": "${var.catalog}",
                            "libraries": [{"glob": {"include": "../medallion/**"}}],
                        }
                    },
                    "dashboards": {
                        "kpis": {
                            "display_name": "KPIs",
                            "file_path": "../dashboards/kpis.lvdash.json",
                        }
                    },
                }
            }
        )
    )
    found = messages(copy)
    assert any("glob '../medallion/**' matches no file" in m for m in found), found
    assert any("'../dashboards/kpis.lvdash.json' does not exist" in m for m in found), found
    (copy / "medallion").mkdir()  # pipelines/ holds the course's own pipeline
    (copy / "medallion/bronze.py").write_text("")
    (copy / "dashboards").mkdir(exist_ok=True)  # the copy holds the KPI dashboard already
    (copy / "dashboards/kpis.lvdash.json").write_text("{}")
    assert messages(copy) == []


def test_target_config_merges_the_target_over_the_top_level():
    loaded = bundle.load_bundle(ROOT)
    prod = bundle.target_config(loaded, "prod")
    assert prod["run_as"] == {"service_principal_name": "${var.deployer}"}
    assert "targets" not in prod
    with pytest.raises(KeyError, match="no target 'staging'"):
        bundle.target_config(loaded, "staging")


# ------------------------------------------------------------------ lesson 07_production/02

LESSON = ROOT / "solutions/07_production/02_deploying_with_an_asset_bundle.ipynb"
MISTAKES = catalogue.load(LESSON)
CHECKS = {
    "t1param1": ("task_parameters", lambda fn: bundle.check_task_parameters(fn, LOADED)),
    "t2widg01": ("parameter_problems", bundle.check_parameter_problems),
}
LOADED = bundle.load_bundle(ROOT)


def test_the_lesson_solutions_and_the_package_pass_their_checks():
    for cell_id, (name, check) in CHECKS.items():
        solution = catalogue.defined(catalogue.task_cell(LESSON, cell_id), name)
        assert check(solution).endswith(("base_parameters", "cases"))
        assert check(getattr(bundle, name))


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m["name"])
def test_each_classic_mistake_is_caught_by_its_check(mistake):
    name, check = CHECKS[mistake["task_cell"]]
    with pytest.raises(AssertionError, match=re.escape(mistake["caught_by"])):
        check(catalogue.defined(mistake["source"], name))


def test_the_catalogue_covers_every_task_with_two_mistakes():
    catalogue.assert_covers_every_task(LESSON, MISTAKES, set(CHECKS))
