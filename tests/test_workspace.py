"""Tests for the local ``display`` and ``dbutils`` notebook globals."""

from __future__ import annotations

import os
import re
import sys
import types

import pandas as pd
import pyarrow as pa
import pytest

from lakehouse import workspace
from lakehouse.workspace import (
    CloudPathError,
    DirectoryNotEmptyError,
    FileInfo,
    InputWidgetNotDefined,
    LocalDBUtils,
    NotebookExit,
    StreamingDisplayError,
    display,
    install,
    render,
)


@pytest.fixture(scope="session")
def spark():
    # Python workers must run this interpreter, not whatever "python" is on PATH.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def no_workspace_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("LAKEHOUSE_WIDGET_", "LAKEHOUSE_DISPLAY_", "LAKEHOUSE_DBFS_")):
            monkeypatch.delenv(name)


@pytest.fixture
def local(tmp_path):
    return LocalDBUtils(dbfs_root=tmp_path / "dbfs")


# --- display: Spark ------------------------------------------------------------------------


def test_spark_frame_is_escaped_and_cut_at_the_limit(spark):
    customers = spark.createDataFrame([(1, "<b>"), (2, None), (3, "carol")], "id INT, name STRING")

    rendered = render(customers, limit=2)

    assert rendered.truncated
    assert "<td>&lt;b&gt;</td>" in rendered.html
    assert "<b>" not in rendered.html
    assert "<td>null</td>" in rendered.html
    assert rendered.html.count("<tr>") == 3  # header + 2 rows
    assert "carol" not in rendered.html
    assert rendered.html.endswith("<p>Showing the first 2 rows.</p>")
    assert render(customers, limit=2) == rendered  # deterministic, so nbval can compare


def test_spark_frame_outside_ipython_prints_show_like_text(spark, capsys):
    customers = spark.createDataFrame([(1, "ann"), (2, None)], "id INT, name STRING")

    display(customers)

    assert capsys.readouterr().out == (
        "+---+----+\n| id|name|\n+---+----+\n|  1| ann|\n|  2|null|\n+---+----+\n"
    )


def test_streaming_frame_explains_the_workspace_only_display(spark):
    events = spark.readStream.format("rate").load()

    with pytest.raises(StreamingDisplayError, match=r"only works in a Databricks workspace"):
        display(events)
    with pytest.raises(StreamingDisplayError, match=r"trigger\(availableNow=True\)"):
        display(events)


# --- display: pandas, Arrow, others ---------------------------------------------------------


def test_pandas_frame_default_limit_is_one_thousand_rows():
    orders = pd.DataFrame({"order_id": range(1001)})

    rendered = render(orders)

    assert rendered.truncated
    assert rendered.html.count("<tr>") == 1001
    assert rendered.text.endswith("Showing the first 1,000 rows.")


def test_pandas_missing_values_show_as_null_and_headers_are_escaped():
    frame = pd.DataFrame({"<amount>": [1.5, None], "note": ["a&b", None]})

    rendered = render(frame)

    assert not rendered.truncated
    assert "<th>&lt;amount&gt;</th>" in rendered.html
    assert "<td>a&amp;b</td>" in rendered.html
    assert rendered.text.splitlines()[4] == "|    null|null|"


def test_display_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_DISPLAY_LIMIT", "1")

    rendered = render(pd.DataFrame({"id": [1, 2]}))

    assert rendered.text.endswith("Showing the first 1 rows.")


def test_bad_display_limits_are_refused(monkeypatch):
    frame = pd.DataFrame({"id": [1]})
    with pytest.raises(ValueError, match=r"limit=0 must be a positive number of rows"):
        render(frame, limit=0)
    monkeypatch.setenv("LAKEHOUSE_DISPLAY_LIMIT", "lots")
    with pytest.raises(ValueError, match=r"LAKEHOUSE_DISPLAY_LIMIT='lots' is not a whole number"):
        render(frame)


def test_arrow_table_renders_like_a_frame():
    table = pa.table({"id": [1, None], "tags": [["a", "b"], []]})

    assert render(table).text.splitlines()[3:5] == ["|   1|[a, b]|", "|null|    []|"]


def test_empty_frame_says_no_results():
    assert render(pd.DataFrame({"id": []})).text.endswith("Query returned no results.")


def test_in_ipython_the_output_carries_html_and_text(monkeypatch):
    import IPython.display

    published = []
    monkeypatch.setattr(workspace, "_ipython_shell", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw: published.append(obj))

    display(pd.DataFrame({"id": [7]}))

    assert published[0]["text/html"].startswith('<table class="lakehouse-display"')
    assert "|  7|" in published[0]["text/plain"]


def test_other_objects_fall_back_to_ipython(capsys):
    display({"rows": 3})

    assert capsys.readouterr().out == "{'rows': 3}\n"


# --- dbutils.widgets -------------------------------------------------------------------------


def test_widget_value_bound_parameter_beats_env_beats_default(local, monkeypatch):
    local.widgets.text("scale", "tiny", "Data scale")
    assert local.widgets.get("scale") == "tiny"

    monkeypatch.setenv("LAKEHOUSE_WIDGET_SCALE", "small")
    assert local.widgets.get("scale") == "small"

    local.widgets.bind_parameters({"scale": "medium"})
    assert local.widgets.get("scale") == "medium"


def test_bound_parameters_become_strings_and_skip_non_literals(local):
    local.widgets.bind_parameters({"reset": True, "seed": 42, "os": os, "_private": "x"})
    local.widgets.text("reset", "false")
    local.widgets.text("seed", "0")
    local.widgets.text("os", "none")
    local.widgets.text("_private", "default")

    assert local.widgets.getAll() == {
        "reset": "true",
        "seed": "42",
        "os": "none",
        "_private": "default",
    }


def test_env_var_name_is_upper_cased_and_sanitised(local, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_WIDGET_CATALOG_PREFIX", "dev")
    local.widgets.text("catalog-prefix", "main")

    assert local.widgets.get("catalog-prefix") == "dev"


def test_undeclared_widget_names_itself_and_the_fix(local):
    with pytest.raises(InputWidgetNotDefined, match=r"'scale'.*dbutils\.widgets\.text\("):
        local.widgets.get("scale")
    with pytest.raises(InputWidgetNotDefined, match=r"Cannot remove input widget 'scale'"):
        local.widgets.remove("scale")
    assert local.widgets.getArgument("scale", "tiny") == "tiny"


def test_dropdown_default_must_be_a_choice(local):
    with pytest.raises(ValueError, match=r"'huge'.*not among its choices \['tiny', 'small'\]"):
        local.widgets.dropdown("scale", "huge", ["tiny", "small"])


def test_dropdown_parameter_must_be_a_choice(local):
    local.widgets.dropdown("scale", "tiny", ["tiny", "small"])
    local.widgets.bind_parameters({"scale": "huge"})

    with pytest.raises(ValueError, match=r"notebook parameter 'scale' 'huge'"):
        local.widgets.get("scale")


def test_widget_declarations_are_checked(local):
    with pytest.raises(TypeError, match=r"defaultValue of widget 'seed' must be a string"):
        local.widgets.text("seed", 42)
    with pytest.raises(TypeError, match=r"choices of widget 'scale' must be a list"):
        local.widgets.dropdown("scale", "tiny", "tiny")
    with pytest.raises(ValueError, match=r"'bronze,gold'.*not among its choices"):
        local.widgets.multiselect("layers", "bronze,gold", ["bronze", "silver"])


def test_combobox_multiselect_remove_and_remove_all(local):
    local.widgets.combobox("region", "mars", ["eu", "us"])
    local.widgets.multiselect("layers", "bronze,silver", ["bronze", "silver", "gold"])
    assert local.widgets.getAll() == {"region": "mars", "layers": "bronze,silver"}

    local.widgets.remove("region")
    assert list(local.widgets.getAll()) == ["layers"]
    local.widgets.removeAll()
    assert local.widgets.getAll() == {}


# --- dbutils.fs ------------------------------------------------------------------------------


def test_dbfs_paths_map_under_the_local_root(local, tmp_path, capsys):
    assert local.fs.put("dbfs:/landing/orders.csv", "id\n1\n") is True
    assert capsys.readouterr().out == "Wrote 5 bytes.\n"
    assert (tmp_path / "dbfs" / "landing" / "orders.csv").read_text() == "id\n1\n"

    assert local.fs.mkdirs("dbfs:/landing/archive") is True
    listing = local.fs.ls("dbfs:/landing")

    assert [(f.path, f.name, f.size) for f in listing] == [
        ("dbfs:/landing/archive/", "archive/", 0),
        ("dbfs:/landing/orders.csv", "orders.csv", 5),
    ]
    assert all(isinstance(f, FileInfo) and f.modificationTime > 0 for f in listing)


def test_dbfs_root_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_DBFS_ROOT", str(tmp_path / "elsewhere"))

    LocalDBUtils().fs.mkdirs("dbfs:/tmp")

    assert (tmp_path / "elsewhere" / "tmp").is_dir()


def test_local_and_file_uri_paths_are_the_same_file(local, tmp_path):
    target = tmp_path / "notes.txt"
    local.fs.put(str(target), "héllo")

    assert local.fs.head(f"file:{target}") == "héllo"
    assert local.fs.head(f"file://{target}") == "héllo"
    assert local.fs.ls(f"file:{target}") == [
        FileInfo(f"file:{target}", "notes.txt", 6, local.fs.ls(str(target))[0].modificationTime)
    ]


def test_head_cuts_at_max_bytes(local, capsys):
    local.fs.put("dbfs:/big.txt", "abcdef")
    capsys.readouterr()

    assert local.fs.head("dbfs:/big.txt", maxBytes=3) == "abc"
    assert capsys.readouterr().out == "[Truncated to first 3 bytes]\n"


def test_put_refuses_to_overwrite_unless_asked(local):
    local.fs.put("dbfs:/a.txt", "one")
    with pytest.raises(FileExistsError, match=r"'dbfs:/a.txt' already exists; pass overwrite=True"):
        local.fs.put("dbfs:/a.txt", "two")

    local.fs.put("dbfs:/a.txt", "two", overwrite=True)
    assert local.fs.head("dbfs:/a.txt") == "two"


def test_cp_and_mv_files_and_directories(local):
    local.fs.put("dbfs:/raw/a.txt", "a")
    local.fs.put("dbfs:/raw/sub/b.txt", "b")

    local.fs.cp("dbfs:/raw/a.txt", "dbfs:/copy/a.txt")
    with pytest.raises(IsADirectoryError, match=r"'dbfs:/raw' is a directory; .*recurse=True"):
        local.fs.cp("dbfs:/raw", "dbfs:/copy")
    local.fs.cp("dbfs:/raw", "dbfs:/copy", recurse=True)
    assert local.fs.head("dbfs:/copy/sub/b.txt") == "b"

    local.fs.mkdirs("dbfs:/archive")
    local.fs.mv("dbfs:/copy/a.txt", "dbfs:/archive")  # onto a directory: lands inside it
    local.fs.mv("dbfs:/copy/sub", "dbfs:/moved/sub", recurse=True)

    assert [f.name for f in local.fs.ls("dbfs:/archive")] == ["a.txt"]
    assert [f.name for f in local.fs.ls("dbfs:/moved/sub")] == ["b.txt"]
    assert [f.name for f in local.fs.ls("dbfs:/copy")] == []
    with pytest.raises(ValueError, match=r"Cannot cp 'dbfs:/raw' into itself"):
        local.fs.cp("dbfs:/raw", "dbfs:/raw/inner", recurse=True)


def test_rm_refuses_a_non_empty_directory_without_recurse(local):
    local.fs.put("dbfs:/raw/a.txt", "a")
    local.fs.mkdirs("dbfs:/empty")

    with pytest.raises(DirectoryNotEmptyError, match=r"'dbfs:/raw' is a non-empty directory"):
        local.fs.rm("dbfs:/raw")

    assert local.fs.rm("dbfs:/empty") is True
    assert local.fs.rm("dbfs:/raw", recurse=True) is True
    assert local.fs.rm("dbfs:/raw") is False
    assert local.fs.ls("dbfs:/") == []


@pytest.mark.parametrize(
    "uri", ["s3://bucket/raw/", "abfss://raw@account.dfs.core.windows.net/x", "gs://bucket/x"]
)
def test_cloud_storage_is_refused_with_the_reason(local, uri):
    with pytest.raises(CloudPathError, match=r"only reachable from a Databricks workspace"):
        local.fs.ls(uri)


def test_missing_paths_and_unknown_schemes_are_named(local):
    with pytest.raises(FileNotFoundError, match=r"'dbfs:/nope' \(local folder .*\) does not exist"):
        local.fs.ls("dbfs:/nope")
    with pytest.raises(ValueError, match=r"Unsupported path scheme 'hdfs'"):
        local.fs.ls("hdfs://namenode/x")


# --- notebook, install, get_dbutils ----------------------------------------------------------


def test_notebook_exit_carries_the_value(local):
    with pytest.raises(NotebookExit, match=r"Notebook exited: 42") as exited:
        local.notebook.exit(42)
    assert exited.value.value == "42"


def test_install_never_shadows_existing_globals(monkeypatch):
    fresh = LocalDBUtils()
    monkeypatch.setattr(workspace, "dbutils", fresh)
    real_display, real_dbutils = object(), object()
    namespace = {"display": real_display, "dbutils": real_dbutils}

    install(namespace)

    assert namespace["display"] is real_display
    assert namespace["dbutils"] is real_dbutils


def test_install_adds_missing_globals_and_binds_parameters(monkeypatch):
    fresh = LocalDBUtils()
    monkeypatch.setattr(workspace, "dbutils", fresh)
    namespace = {"scale": "small"}

    install(namespace)

    assert namespace["display"] is display
    assert namespace["displayHTML"] is workspace.displayHTML
    assert namespace["dbutils"] is fresh
    fresh.widgets.text("scale", "tiny")
    assert namespace["dbutils"].widgets.get("scale") == "small"


class WorkspaceWidgets:
    """The runtime's dbutils.widgets in a job run: the job's parameters, nothing else."""

    def __init__(self, passed):
        self.passed = passed

    def get(self, name):
        if name not in self.passed:
            raise RuntimeError(f"InputWidgetNotDefined: {name}")  # a Py4J error on Databricks
        return self.passed[name]


def test_install_on_databricks_reads_job_parameters_into_the_parameters():
    class RuntimeDBUtils:
        widgets = WorkspaceWidgets({"scale": "small", "seed": "7", "reset": "true"})

    namespace = {
        "scale": "tiny", "seed": 42, "reset": False, "engine": "auto",
        "_private": "x", "spark": object(), "dbutils": RuntimeDBUtils(),
    }  # fmt: skip

    install(namespace)

    assert (namespace["scale"], namespace["seed"], namespace["reset"]) == ("small", 7, True)
    assert namespace["engine"] == "auto"  # not passed: the literal stays


@pytest.mark.parametrize(
    ("literal", "text", "value"),
    [("tiny", "small", "small"), (42, "7", 7), (0.5, "0.25", 0.25), (False, "TRUE", True),
     (True, "false", False)],
)  # fmt: skip
def test_parameter_from_widget_converts_to_the_literal_type(literal, text, value):
    converted = workspace.parameter_from_widget("p", literal, text)
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize(
    ("literal", "text", "message"),
    [
        (42, "forty-two", "parameter 'p' is a whole number"),
        (False, "yes", "parameter 'p' is a boolean: pass 'true' or 'false'"),
        (0.5, "half", "parameter 'p' is a number"),
        (["2026-06-30"], "2026-07-01", "only str, int, float and bool parameters can be fed"),
    ],
)
def test_parameter_from_widget_refuses_what_does_not_parse(literal, text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        workspace.parameter_from_widget("p", literal, text)


def test_apply_job_parameters_reports_what_changed():
    namespace = {"scale": "tiny", "seed": 42}
    changed = workspace.apply_job_parameters(namespace, WorkspaceWidgets({"seed": "42"}))
    assert changed == {} and namespace == {"scale": "tiny", "seed": 42}


def test_get_dbutils_prefers_the_databricks_one(monkeypatch):
    assert workspace.get_dbutils(None) is workspace.dbutils

    fake = types.ModuleType("pyspark.dbutils")
    fake.DBUtils = lambda session: ("DBUtils", session)
    monkeypatch.setitem(sys.modules, "pyspark.dbutils", fake)

    assert workspace.get_dbutils("session") == ("DBUtils", "session")
