"""Governance: classify, protect, erase provably, trace, audit and observe the lakehouse."""

GOVERNANCE_SCHEMA = "governance"  # every table of the module lives here


def run_on_databricks(spark, statements) -> int:
    """Run ``statements`` (Unity Catalog SQL) when the engine is Databricks; returns how many ran
    (0 elsewhere: they need Unity Catalog, which no local engine has)."""
    from lakehouse.session import engine_of

    if engine_of(spark) != "databricks":
        return 0
    for statement in statements:
        spark.sql(statement)
    return len(statements)
