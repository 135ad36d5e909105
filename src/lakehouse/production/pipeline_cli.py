"""``spark-pipelines run`` against a Spark Connect server that is already running.

pyspark's CLI starts a Spark of its own for each run; the course runs the same steps
(``pyspark.pipelines.cli``: load the spec, create the dataflow graph, register the definition
files, start the run, print its events) as a client of the pipeline's server, which holds
Delta's jars and the pipeline's catalog. ``--storage`` and ``--conf`` override the spec's
``storage`` and add to its ``configuration`` (the landing folder differs per machine).

    python -m lakehouse.production.pipeline_cli --spec pipelines/lakehouse/spark-pipeline.yml \\
        --remote sc://localhost:15002 --storage file:///tmp/storage [--full-refresh-all]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehouse.production.pipeline_cli")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--remote", required=True, help="sc://host:port of the server")
    parser.add_argument("--storage", help="overrides the spec's storage")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--full-refresh-all", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)

    from pyspark.pipelines import cli
    from pyspark.pipelines.spark_connect_graph_element_registry import (
        SparkConnectGraphElementRegistry,
    )
    from pyspark.pipelines.spark_connect_pipeline import (
        create_dataflow_graph,
        handle_pipeline_events,
        start_run,
    )
    from pyspark.sql import SparkSession

    spec_path = Path(args.spec).resolve()
    spec = cli.load_pipeline_spec(spec_path)
    configuration = {**spec.configuration, **dict(item.split("=", 1) for item in args.conf)}
    # PipelineSpec is frozen, and replace() would validate its (already expanded) globs again.
    object.__setattr__(spec, "storage", args.storage or spec.storage)
    object.__setattr__(spec, "configuration", configuration)
    builder = SparkSession.builder.remote(args.remote)
    for key, value in spec.configuration.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        if spec.database:  # Spark's catalog does not create the pipeline's schema itself
            spark.sql(f"CREATE SCHEMA IF NOT EXISTS {spec.database}")
        graph = create_dataflow_graph(
            spark,
            default_catalog=spec.catalog,
            default_database=spec.database,
            sql_conf=spec.configuration,
        )
        registry = SparkConnectGraphElementRegistry(spark, graph)
        cli.register_definitions(spec_path, registry, spec, spark, graph)
        events = start_run(
            spark,
            graph,
            full_refresh=[],
            full_refresh_all=args.full_refresh_all,
            refresh=[],
            dry=args.dry_run,
            storage=spec.storage,
        )
        handle_pipeline_events(events)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
