"""lakehouse.production.compat: each rule on small notebooks (what serverless refuses is found,
with the cell, the line and the fix; what a workspace accepts passes), the lessons that need
classic compute on purpose, and the whole course checked as CI does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lakehouse.production import compat

ROOT = Path(__file__).resolve().parents[1]


def notebook(*sources: str, parameters: str = 'scale = "tiny"\nseed = 42\nreset = False'):
    first = new_code_cell(parameters)
    first.metadata["tags"] = ["parameters"]
    return new_notebook(
        cells=[first, new_markdown_cell("# a lesson"), *(new_code_cell(s) for s in sources)]
    )


def findings(*sources: str, **kwargs) -> list:
    return compat.notebook_findings(notebook(*sources), "bad.ipynb", **kwargs)


@pytest.mark.parametrize(
    ("source", "rule", "subject", "fix"),
    [
        ("df = spark.table('t').cache()", "cache", ".cache()", "write the intermediate result"),
        ("df.persist()", "cache", ".persist()", "serverless compute refuses"),
        ("spark.table('t').checkpoint()", "cache", ".checkpoint()", "no caching APIs"),
        ("spark.catalog.cacheTable('t')", "cache", "catalog.cacheTable()", "read the table"),
        ("spark.sql('CACHE TABLE gold.kpis')", "cache", "CACHE TABLE", "no caching"),
        ("spark.sql(f'uncache table {t}')", "cache", "UNCACHE TABLE", "no caching"),
        (
            "spark.conf.set('spark.sql.autoBroadcastJoinThreshold', -1)",
            "spark-conf",
            "spark.sql.autoBroadcastJoinThreshold",
            "CONFIG_NOT_AVAILABLE",
        ),
        (
            "KEY = 'spark.databricks.delta.optimizeWrite.enabled'\nspark.conf.set(KEY, 'true')",
            "spark-conf",
            "spark.databricks.delta.optimizeWrite.enabled",
            "use a table property, a writer option",
        ),
        (
            "spark.sql('SET spark.sql.adaptive.enabled = false')",
            "spark-conf",
            "spark.sql.adaptive.enabled",
            "SET",
        ),
        (
            "spark.conf.set(name_from_elsewhere, 1)",
            "spark-conf",
            "name_from_elsewhere",
            "not a literal",
        ),
        (
            "df.writeStream.trigger(processingTime='10 seconds').toTable('t')",
            "trigger",
            "trigger(processingTime)",
            "use trigger(availableNow=True)",
        ),
        (
            "q = df.writeStream.trigger(continuous='1 second')",
            "trigger",
            "trigger(continuous)",
            "INFINITE",
        ),
        (
            "spark.read.json('/tmp/landing/payments')",
            "local-path",
            "/tmp/landing/payments",
            "/Volumes/",
        ),
        ("spark.read.csv('dbfs:/mnt/raw/orders')", "local-path", "dbfs:/mnt/raw/orders", "volume"),
        ("path = 'file:/home/me/data.csv'", "local-path", "file:/home/me/data.csv", "settings()"),
        ("path = f'/tmp/{name}/x'", "local-path", "/tmp/", "source_path()"),
        ("rdd = spark.sparkContext.parallelize([1])", "classic-only", ".sparkContext", "DataFrame"),
        ("as_of = dbutils.widgets.get('as_of')", "widget", "as_of", "base_parameters"),
    ],
)
def test_each_rule_finds_what_a_workspace_refuses(source, rule, subject, fix):
    found = [f for f in findings(source) if f.rule == rule]
    assert len(found) == 1, [str(f) for f in findings(source)]
    (finding,) = found
    assert finding.subject == subject and fix in finding.message
    assert str(finding).startswith("bad.ipynb: code cell 2, line ")
    assert finding.accepted is None


@pytest.mark.parametrize(
    "source",
    [
        "spark.conf.set('spark.sql.shuffle.partitions', '8')",
        "spark.conf.set('spark.sql.session.timeZone', 'UTC')",
        "spark.sql('SET spark.sql.ansi.enabled = true')",
        "df.writeStream.trigger(availableNow=True).toTable('t')",
        "df.writeStream.trigger(once=True).toTable('t')",
        "spark.read.json('/Volumes/main/course/raw/payments')",
        "spark.read.text('/Workspace/Shared/config.txt')",
        "raw_root = settings(scale=scale).source_path()\npath = raw_root / 'orders'",
        "landing = str(lake) + '/landing/orders'",
        "path = f'{lake}/tmp/x'",
        "print('/ on the path')",
        "streaming.checkpoint(spark, 'bronze')",  # the course's helper, not DataFrame.checkpoint
        "dbutils.widgets.text('as_of', '2026-07-01')\nas_of = dbutils.widgets.get('as_of')",
        "scale_now = dbutils.widgets.get('scale')",  # the parameters cell's name: a widget
        "print('no sparkContext or .cache() here')",
        "%sql CACHE TABLE x\n!ls /tmp",
    ],
)
def test_what_a_workspace_accepts_passes(source):
    from lakehouse import streaming  # noqa: F401 - the helper the source above calls

    nb = notebook("from lakehouse import streaming", source)
    assert compat.notebook_findings(nb, "ok.ipynb") == []


def test_a_widget_fed_by_a_job_passes():
    assert findings("as_of = dbutils.widgets.get('as_of')", fed={"as_of"}) == []
    declared_empty = "dbutils.widgets.text('as_of', '')\nas_of = dbutils.widgets.get('as_of')"
    assert [f.subject for f in findings(declared_empty)] == ["as_of"]


def test_notebook_widgets_reads_parameters_and_declarations():
    nb = notebook(
        "dbutils.widgets.dropdown('layer', 'bronze', ['bronze', 'silver'])\n"
        "dbutils.widgets.get('as_of')\n"
        "dbutils.widgets.text(name='region', defaultValue='eu')"
    )
    assert compat.notebook_widgets(nb) == {
        "scale": "tiny",
        "seed": "42",
        "reset": "false",
        "layer": "bronze",
        "region": "eu",
        "as_of": None,
    }
    assert compat.parameter_literals(nb) == {"scale": "tiny", "seed": 42, "reset": False}


def test_a_lesson_that_needs_classic_compute_is_accepted_with_its_reason():
    source = "df.writeStream.trigger(processingTime='1 second').start()"
    lesson = "05_ml/06_batch_and_streaming_scoring.ipynb"
    (finding,) = findings(source, lesson=lesson)
    assert finding.accepted == compat.CLASSIC_COMPUTE[lesson]["trigger(processingTime)"]
    (other,) = findings(source, lesson="03_gold/05_business_analytics.ipynb")
    assert other.accepted is None


def test_an_acceptance_the_lesson_no_longer_needs_is_stale():
    lesson = "05_ml/06_batch_and_streaming_scoring.ipynb"
    assert compat.stale_acceptances([], [lesson]) == [
        "lakehouse.production.compat.CLASSIC_COMPUTE lists 'trigger(processingTime)' for "
        f"{lesson}, which the lesson no longer uses: remove the entry"
    ]
    found = findings("df.writeStream.trigger(processingTime='1 second')", lesson=lesson)
    moved = [dataclasses.replace(f, path=f"solutions/{lesson}") for f in found]
    assert compat.stale_acceptances(moved, [lesson]) == []


def test_every_course_notebook_passes_or_is_accepted():
    found = compat.course_findings(ROOT)
    problems = [str(f) for f in found if not f.accepted]
    assert problems == [], "\n".join(problems)
    lessons = {f.path.removeprefix("solutions/") for f in found}
    assert lessons == set(compat.CLASSIC_COMPUTE), "an entry of CLASSIC_COMPUTE went stale"
    assert "03_gold/05_business_analytics.ipynb" not in lessons  # it no longer caches
