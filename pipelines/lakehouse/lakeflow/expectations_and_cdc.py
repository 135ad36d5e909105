"""The Lakeflow forms open-source Spark Declarative Pipelines lack, for Databricks only
(resources/lakehouse_pipeline.yml adds this folder; the local spec does not): expectations that
drop the rows breaking the data contract, and AUTO CDC applying the support tickets' change feed.

- ``silver_payments_expected`` keeps what ``silver_payments_valid`` keeps, with the same rules
  (pipeline.EXPECTATIONS) as expectations: the pipeline's event log then counts, per rule, the
  rows it dropped. Locally the quarantine tables do that counting.
- ``silver_support_tickets`` is the tickets' latest state: AUTO CDC orders each ticket's
  changes by ``_seq``, applies inserts and updates, and deletes a ticket on a DELETE.
"""

from pyspark import pipelines as dp
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import bronze
from lakehouse.production import pipeline

spark = SparkSession.active()
TICKETS = bronze.source("support.tickets_cdc")


@dp.table(
    name="silver_payments_expected",
    comment="Silver: payment rows that meet every expectation (the Lakeflow form).",
)
@dp.expect_all_or_drop(pipeline.EXPECTATIONS)
def silver_payments_expected() -> DataFrame:
    return spark.readStream.table(pipeline.CHECKED).transform(pipeline.silver_rows)


@dp.table(name="bronze_support_tickets_cdc", comment="Bronze: the support tickets' change feed.")
@dp.expect_or_drop("change_identified", "ticket_id IS NOT NULL AND _seq IS NOT NULL")
def bronze_support_tickets_cdc() -> DataFrame:
    return (
        spark.readStream.format("cloudFiles")
        .option("cloudFiles.format", "json")
        .schema(TICKETS.raw_schema)
        .load(spark.conf.get("lakehouse.pipeline.support_cdc"))
        .withColumn("_seq", F.col("_seq").cast("bigint"))
    )


dp.create_streaming_table(
    name="silver_support_tickets",
    comment="Silver: each support ticket's latest state, deleted tickets removed (AUTO CDC).",
)
dp.create_auto_cdc_flow(
    target="silver_support_tickets",
    source="bronze_support_tickets_cdc",
    keys=["ticket_id"],
    sequence_by=F.col("_seq"),
    apply_as_deletes=F.expr("_op = 'DELETE'"),
    except_column_list=["_op", "_seq", bronze.CORRUPT_RECORD],
    stored_as_scd_type=1,
)
