"""The declarative pipeline run for real on delta-spark (lesson 07_production/01): two of the
four payment deliveries, then the rest; the second run reads only the new files, every run
reconciles (Bronze = kept + quarantined), and Gold holds one row per payment. Run in a fresh
interpreter by tests/test_production_pipeline_run.py."""

from __future__ import annotations

import pytest

from lakehouse import bronze
from lakehouse.production import pipeline as pp


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(tmp_path_factory.mktemp("lake")))
    mp.setenv("LAKEHOUSE_CATALOG", "pipeline_run_tests")
    mp.setenv("LAKEHOUSE_METASTORE", "in-memory")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("delta-spark", scale="tiny")
    yield session
    mp.undo()


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory):
    from lakehouse.datagen import generate

    folder = tmp_path_factory.mktemp("datasets") / "tiny"
    generate(folder, scale="tiny", seed=42)
    return folder


def reconciles(spark) -> bool:
    rows = {n: pp.read_table(spark, n).count() for n in (pp.BRONZE, pp.SILVER_VALID, pp.QUARANTINE)}
    return rows[pp.BRONZE] == rows[pp.SILVER_VALID] + rows[pp.QUARANTINE]


def test_two_runs_the_second_incremental(spark, raw_root):
    with pp.Runner(spark) as runner:
        first_files = pp.deliver(spark, raw_root, 2)
        first = runner.run()
        assert first.added[pp.BRONZE] == bronze.read_raw(spark, pp.DATASET, first_files).count()
        assert reconciles(spark)
        new_files = pp.deliver(spark, raw_root, 4)
        assert len(new_files) == 2
        second = runner.run()
        assert second.added[pp.BRONZE] == bronze.read_raw(spark, pp.DATASET, new_files).count()
        assert reconciles(spark)
    assert sorted(pp.flows_completed(second.log)) == sorted(pp.TABLES)
    fact = pp.read_table(spark, pp.FACT)
    assert fact.count() == fact.select(pp.KEY).distinct().count()
    assert fact.count() == pp.read_table(spark, pp.SILVER).count()
    approvals = pp.read_table(spark, "kpi_approval_by_network")
    assert approvals.agg({"attempts": "sum"}).first()[0] == fact.count()
