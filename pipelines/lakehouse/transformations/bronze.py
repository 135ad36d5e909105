"""Bronze: every payment file that lands, appended once, with its lineage.

A streaming table: each update reads only the files that arrived since the last one (the
stream's checkpoint lists the files read), so a file is never ingested twice.
"""

from pyspark import pipelines as dp
from pyspark.sql import DataFrame, SparkSession

from lakehouse.production import pipeline

spark = SparkSession.active()


@dp.table(
    name=pipeline.BRONZE,
    comment="Bronze: raw payment events as delivered (JSON lines), plus lineage; append-only.",
)
def bronze_payments() -> DataFrame:
    return pipeline.read_landing(
        spark,
        spark.conf.get(pipeline.LANDING_CONF),
        spark.conf.get(pipeline.READER_CONF, "files"),
    )
