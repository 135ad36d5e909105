"""Silver: typed and checked rows, split into kept and quarantined, then the latest version of
each payment.

Open-source pipelines have no expectations, so the data contract (pipeline.EXPECTATIONS) splits
the checked rows into two streaming tables, each the exact complement of the other: rows in =
rows kept + rows quarantined. The Lakeflow form, with @dp.expect_all_or_drop, is in
pipelines/lakehouse/lakeflow/.
"""

from pyspark import pipelines as dp
from pyspark.sql import DataFrame, SparkSession

from lakehouse.production import pipeline

spark = SparkSession.active()


@dp.temporary_view(name=pipeline.CHECKED)
def payments_checked() -> DataFrame:
    return spark.readStream.table(pipeline.BRONZE).transform(pipeline.checked)


@dp.table(
    name=pipeline.SILVER_VALID,
    comment="Silver: payment rows that meet every rule of the data contract, every version.",
)
def silver_payments_valid() -> DataFrame:
    return (
        spark.readStream.table(pipeline.CHECKED)
        .transform(pipeline.kept_rows())
        .transform(pipeline.silver_rows)
    )


@dp.table(
    name=pipeline.QUARANTINE,
    comment="Quarantine: payment rows that break a rule, with their reasons and lineage.",
)
def payments_quarantine() -> DataFrame:
    return spark.readStream.table(pipeline.CHECKED).transform(pipeline.quarantined_rows())


@dp.materialized_view(
    name=pipeline.SILVER,
    comment="Silver: one row per transaction_id, its latest version (as silver.payments).",
)
def silver_payments() -> DataFrame:
    return spark.read.table(pipeline.SILVER_VALID).transform(pipeline.latest_payments)
