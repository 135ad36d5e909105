"""lakehouse.production.pipeline: the quarantine split on small rows with NULLs, the transforms
the definition files call (the same rows as the notebooks' Silver validation and dedup, without
analyzing their input), the checks catching lesson 07_production/01's wrong answers, and the
pipeline's files (spec, definitions, bundle resource). Runs on the embedded engine; the
pipeline itself runs twice on delta-spark, the second run incremental, in lesson 07_production/01,
whose checks CI runs (tests/test_notebooks_from_05.py): every line of the landed files in Bronze,
kept + quarantined = Bronze, the second run reading only the new files, the fact's grain, the KPIs
against one batch over every file, and a full refresh rebuilding the same tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse import bronze
from lakehouse.production import pipeline as pp
from lakehouse.silver import dedup, validation

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(tmp_path_factory.mktemp("lake")))
    mp.setenv("LAKEHOUSE_CATALOG", "pipeline_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory):
    from lakehouse.datagen import generate

    folder = tmp_path_factory.mktemp("datasets") / "tiny"
    generate(folder, scale="tiny", seed=42)
    return folder


@pytest.fixture(scope="module")
def bronze_df(spark, raw_root):
    """The first two payment deliveries as the Bronze streaming table holds them, read once
    (the lineage's ingestion time would differ between two reads)."""
    files = [p for b in bronze.source_batches(pp.DATASET, raw_root)[:2] for p in b.paths]
    read = (
        spark.read.schema(bronze.source(pp.DATASET).raw_schema)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", bronze.CORRUPT_RECORD)
        .option("recursiveFileLookup", "true")
        .json(files)
        .transform(pp.with_file_lineage)
    )
    return spark.createDataFrame(read.collect(), read.schema)


# --------------------------------------------------------------------------- the split

RULES = {"present": "customer_id IS NOT NULL", "not_negative": "amount >= 0"}


@pytest.fixture
def rows(spark):
    return spark.createDataFrame(
        [("a", "C1", 5.0), ("b", "C2", -1.0), ("c", None, 3.0), ("d", "C4", None)],
        "id string, customer_id string, amount double",
    )


def test_kept_and_quarantined_are_exact_complements_with_nulls(rows):
    kept = rows.transform(pp.kept_rows(RULES))
    quarantined = rows.transform(pp.quarantined_rows(RULES))
    assert sorted(r.id for r in kept.collect()) == ["a"]
    # d: amount >= 0 is NULL on a NULL amount; it must land in the quarantine, not vanish
    assert sorted(r.id for r in quarantined.collect()) == ["b", "c", "d"]


def test_every_rule_holds_is_never_null(rows):
    values = [r.ok for r in rows.select(pp.every_rule_holds(RULES).alias("ok")).collect()]
    assert values == [True, False, False, False]
    with pytest.raises(ValueError, match="at least one rule"):
        pp.every_rule_holds({})


def test_expectations_match_silver_validation_on_the_generated_payments(bronze_df):
    checked = bronze_df.transform(pp.checked)
    kept = checked.transform(pp.kept_rows()).count()
    quarantined = checked.transform(pp.quarantined_rows()).count()
    valid = checked.where("_is_valid").count()
    assert (kept, quarantined) == (valid, checked.count() - valid)
    assert quarantined > 0


def test_check_quarantine_split_accepts_the_answer_and_names_each_mistake(bronze_df):
    checked = bronze_df.transform(pp.checked)
    kept = checked.transform(pp.kept_rows())
    quarantined = checked.transform(pp.quarantined_rows())
    assert pp.check_quarantine_split(checked, kept, quarantined).startswith("quarantine split OK")
    with pytest.raises(AssertionError, match="neither kept nor quarantined"):
        pp.check_quarantine_split(checked, kept, checked.where("NOT (amount >= 0)"))
    with pytest.raises(AssertionError, match="both kept and quarantined"):
        pp.check_quarantine_split(checked, checked.where("amount >= 0"), quarantined)


# --------------------------------------------------------------------------- the transforms


def test_checked_is_silver_validation_without_reading_the_schema(bronze_df):
    assertDataFrameEqual(
        bronze_df.transform(pp.checked),
        bronze_df.transform(validation.standardize_column_names).transform(
            validation.validate(pp.DATASET)
        ),
    )


def test_validate_with_columns_needs_no_schema_and_names_missing_columns(spark):
    df = spark.createDataFrame([("x",)], "transaction_id string")
    with pytest.raises(ValueError, match="lacks columns"):
        validation.validate(pp.DATASET, columns=["transaction_id"])(df)


def test_latest_payments_is_latest_per_key_of_silver(bronze_df):
    silver = bronze_df.transform(pp.checked).transform(pp.kept_rows()).transform(pp.silver_rows)
    expected = silver.transform(
        dedup.latest_per_key(pp.KEY, pp.SEQUENCE_BY, tie_breakers=dedup.DELIVERY_ORDER)
    )
    latest = silver.transform(pp.latest_payments)
    assertDataFrameEqual(latest, expected)
    assert latest.count() == latest.select(pp.KEY).distinct().count() < silver.count()


def test_latest_per_key_with_columns_refuses_an_unknown_key(spark):
    df = spark.createDataFrame([("a", 1)], "k string, v int")
    with pytest.raises(ValueError, match="columns lacks"):
        dedup.latest_per_key("k", "ts", columns=["k", "v"])(df)


def test_fact_payments_columns_and_types_are_gold_facts(bronze_df):
    from lakehouse.gold import facts

    silver = bronze_df.transform(pp.checked).transform(pp.kept_rows()).transform(pp.silver_rows)
    fact = silver.transform(pp.latest_payments).transform(pp.fact_payments)
    assert tuple(fact.columns) == pp.FACT_COLUMNS
    for name in pp.FACT_COLUMNS:
        assert fact.schema[name].dataType == facts.FACT_PAYMENTS_SCHEMA[name].dataType, name
    row = fact.where(F.col("status") == "approved").first()
    assert row.is_approved is True and row.date_key > 20260000
    assert pp.check_grain(fact, silver).startswith("fact grain OK")
    with pytest.raises(AssertionError, match="appear more than once"):
        pp.check_grain(silver.transform(pp.fact_payments), silver)


def test_kpi_sql_reads_the_pipelines_fact_and_refuses_other_gold_tables():
    sql = pp.kpi_sql("kpi_decline_reasons")
    assert "FROM fact_payments" in sql and "gold." not in sql
    with pytest.raises(ValueError, match="besides the payments fact"):
        pp.kpi_sql("kpi_approval_by_country")


def test_check_kinds_names_the_kind_and_why():
    assert pp.check_kinds(dict(pp.DATASET_KINDS)).startswith("dataset kinds OK")
    wrong = {**pp.DATASET_KINDS, pp.BRONZE: pp.MATERIALIZED_VIEW}
    with pytest.raises(AssertionError, match="bronze_payments should be a streaming table"):
        pp.check_kinds(wrong)


# --------------------------------------------------------------------------- the files


def test_the_spec_loads_and_its_glob_finds_every_definition_file():
    from pyspark.pipelines import cli

    spec = cli.load_pipeline_spec(ROOT / pp.PIPELINE_FOLDER / pp.SPEC_FILE)
    assert spec.database == pp.DATABASE
    assert {pp.LANDING_CONF, pp.READER_CONF} <= set(spec.configuration)
    folder = ROOT / pp.PIPELINE_FOLDER
    found = {p.name for lib in spec.libraries for p in folder.glob(lib.include) if p.is_file()}
    assert found == {"bronze.py", "silver.py", "gold.py"}


def test_every_dataset_is_defined_in_the_definition_files():
    text = "".join(
        p.read_text() for p in (ROOT / pp.PIPELINE_FOLDER / "transformations").glob("*.py")
    )
    for constant in ("BRONZE", "CHECKED", "SILVER_VALID", "QUARANTINE", "SILVER", "FACT"):
        assert f"name=pipeline.{constant}" in text, constant
    assert "for kpi_name in pipeline.KPIS" in text


def test_the_bundle_pipeline_points_at_the_definition_files():
    from lakehouse.production import bundle

    resource = yaml.safe_load((ROOT / "resources" / "lakehouse_pipeline.yml").read_text())
    body = resource["resources"]["pipelines"]["lakehouse_pipeline"]
    includes = [lib["glob"]["include"] for lib in body["libraries"]]
    assert "../pipelines/lakehouse/transformations/**" in includes
    assert set(body["configuration"]) >= {pp.LANDING_CONF, pp.READER_CONF}
    assert bundle.check_bundle(ROOT) == []
