"""Gold: the dimensional model (dimensions, facts), Customer 360 and analytics, built from the
Silver tables.

Modules: ``dates`` (the date dimension), ``dimensions`` (conformed dimensions with surrogate keys
and an unknown member), ``facts`` (fact tables at an explicit grain), ``customer360``,
``analytics``, ``maintenance`` (compaction, Z-order, vacuum, time travel).

A Gold lesson's setup calls :func:`ensure_silver_inputs` for the Silver tables it reads: it builds
only the ones that do not exist yet, so lessons run in course order reuse what the Silver lessons
wrote, and a lesson run alone after a reset still finds every input.

Example::

    from lakehouse import gold

    gold.ensure_silver_inputs(spark, ["silver.orders", "silver.order_lines"], raw_root)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

from pyspark.sql import SparkSession

UNKNOWN_KEY = -1  # the surrogate key of every dimension's "unknown" member


def commented_field(name: str, data_type, comment: str, nullable: bool = True):
    """A ``StructField`` carrying its column comment: Gold schemas document every column."""
    from pyspark.sql.types import StructField

    return StructField(name, data_type, nullable, {"comment": comment})


def _build_canonical(spark: SparkSession, dataset: str) -> str:
    from lakehouse.silver import dedup

    return dedup.build_silver_table(spark, dataset)


def _builders() -> dict[str, tuple[str, Callable[[SparkSession], object]]]:
    """Silver table -> (the Bronze source it is built from, the function that builds it)."""
    from lakehouse.silver import cdc, dedup, scd2, sessions

    builders: dict[str, tuple[str, Callable[[SparkSession], object]]] = {
        spec.table: (dataset, partial(_build_canonical, dataset=dataset))
        for dataset, spec in dedup.SILVER_TABLES.items()
    }
    builders[scd2.CUSTOMERS_HISTORY] = ("crm.customers", scd2.build_customers_history)
    builders[cdc.SUPPORT_TICKETS] = (cdc.CDC_DATASET, cdc.build_support_tickets)
    builders[sessions.WEB_SESSIONS] = (sessions.EVENTS_DATASET, sessions.build_web_sessions)
    return builders


SILVER_INPUTS = (
    "silver.customers",
    "silver.customers_history",
    "silver.products",
    "silver.orders",
    "silver.order_lines",
    "silver.payments",
    "silver.web_events",
    "silver.web_sessions",
    "silver.support_tickets",
)


def ensure_silver_inputs(spark: SparkSession, tables: Iterable[str] | None, raw_root) -> list[str]:
    """Build each Silver table of ``tables`` (default: every table Gold reads) that does not
    exist yet, landing its Bronze source first; a table that exists is left as it is.
    Returns the table names.

    >>> ensure_silver_inputs(spark, ["silver.orders"], raw_root)  # doctest: +SKIP
    ['silver.orders']
    """
    from lakehouse import bronze

    builders = _builders()
    names = list(SILVER_INPUTS if tables is None else tables)
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise ValueError(
            f"no Silver builder for {', '.join(map(repr, unknown))}: use tables from "
            f"{', '.join(sorted(builders))}"
        )
    missing = [n for n in names if not spark.catalog.tableExists(n)]
    if missing:
        bronze.ensure_bronze(spark, sorted({builders[n][0] for n in missing}), raw_root)
        spark.sql("CREATE SCHEMA IF NOT EXISTS silver")
        for name in missing:
            builders[name][1](spark)
    return names
