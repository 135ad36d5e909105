"""Gold: the payments fact and the payment KPIs of the dashboard (lesson 07_production/03),
materialized views recomputed from Silver on each update."""

from pyspark import pipelines as dp
from pyspark.sql import DataFrame, SparkSession

from lakehouse.production import pipeline

spark = SparkSession.active()


@dp.materialized_view(
    name=pipeline.FACT,
    comment="Gold: one row per payment attempt with its date key, USD amount and approval.",
)
def fact_payments() -> DataFrame:
    return spark.read.table(pipeline.SILVER).transform(pipeline.fact_payments)


def kpi_view(name: str) -> None:
    # One function per KPI: each runs the dashboard spec's SQL over this pipeline's fact.
    @dp.materialized_view(name=name, comment=f"Gold KPI {name}, the dashboard spec's SQL.")
    def kpi() -> DataFrame:
        return spark.sql(pipeline.kpi_sql(name))


for kpi_name in pipeline.KPIS:
    kpi_view(kpi_name)
