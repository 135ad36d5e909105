"""Delta SQL that only Databricks (or delta-spark) runs, stopped early on the embedded engine.

On the embedded engine Spark's parser knows nothing of Delta's SQL extensions: ``MERGE INTO``
fails with a syntax error, ``DESCRIBE HISTORY t`` looks for a table named ``HISTORY``, and
``ALTER TABLE t SET TBLPROPERTIES`` succeeds while changing nothing in the Delta log. Each of
these raises :class:`UnsupportedOperation` instead, naming the call that runs on every engine.
Everything else goes to Spark untouched.
"""

from __future__ import annotations

import functools
import re

from lakehouse.engines.embedded.errors import UnsupportedOperation

_PATCHED = "_lakehouse_sql_guard"
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)

# (pattern on the statement without comments, what it is, the portable call)
_DELTA_SQL: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE | re.DOTALL), what, portable)
    for pattern, what, portable in (
        (
            r"^\s*MERGE\s+INTO\b",
            "MERGE INTO",
            "DeltaTable.forName(spark, name).alias('t').merge(source_df.alias('s'), "
            "'t.id = s.id').whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()",
        ),
        (
            r"^\s*OPTIMIZE\b",
            "OPTIMIZE",
            "DeltaTable.forName(spark, name).optimize().executeCompaction() "
            "(ZORDER BY: .optimize().executeZOrderBy(columns))",
        ),
        (r"^\s*VACUUM\b", "VACUUM", "DeltaTable.forName(spark, name).vacuum(retention_hours)"),
        (
            r"^\s*DESC(RIBE)?\s+HISTORY\b",
            "DESCRIBE HISTORY",
            "DeltaTable.forName(spark, name).history()",
        ),
        (
            r"^\s*DESC(RIBE)?\s+DETAIL\b",
            "DESCRIBE DETAIL",
            "DeltaTable.forName(spark, name).detail()",
        ),
        (
            r"^\s*RESTORE\b",
            "RESTORE",
            "DeltaTable.forName(spark, name).restoreToVersion(v) (or restoreToTimestamp)",
        ),
        (
            r"^\s*ALTER\s+TABLE\b.*\b(UN)?SET\s+TBLPROPERTIES\b",
            "ALTER TABLE ... SET TBLPROPERTIES",
            "lakehouse.tables.set_table_properties(spark, name, {key: value}) (it is "
            "the ALTER TABLE statement on Databricks), or .property(key, value) on a "
            "DeltaTable.createIfNotExists builder",
        ),
        (
            r"^\s*ALTER\s+TABLE\b.*\bADD\s+CONSTRAINT\b",
            "ALTER TABLE ... ADD CONSTRAINT",
            "lakehouse.tables.add_check_constraint(spark, name, constraint, expression)",
        ),
        (
            r"^\s*ALTER\s+TABLE\b.*\bDROP\s+CONSTRAINT\b",
            "ALTER TABLE ... DROP CONSTRAINT",
            "lakehouse.tables.drop_check_constraint(spark, name, constraint)",
        ),
        (
            # a Delta table: no USING, or USING DELTA (the engine's own catalog registers its
            # tables with USING <its data source>, which passes)
            r"^\s*CREATE\s+(OR\s+REPLACE\s+)?TABLE\b(?!.*\bUSING\s+(?!delta\b)\w)",
            "CREATE TABLE",
            "DeltaTable.createIfNotExists(spark).tableName(name).addColumns(schema) (with "
            ".partitionedBy(), .clusterBy(), .comment(), .property() and addColumn(name, type, "
            "generatedAlwaysAs=...)), or df.write.format('delta').saveAsTable(name)",
        ),
        (
            r"^\s*COMMENT\s+ON\b",
            "COMMENT ON",
            "DeltaTable.createIfNotExists(spark).tableName(name).comment(text) (and "
            "addColumn(name, type, comment=...)) when the table is created",
        ),
        (
            r"^\s*ALTER\s+TABLE\b",
            "ALTER TABLE (columns, comments, renames)",
            "DeltaTable is not needed for columns: write with .option('mergeSchema', 'true') "
            "to add them, or rewrite with .option('overwriteSchema', 'true'); comments come "
            "from the DeltaTable.createIfNotExists builder (.comment(), addColumn(comment=))",
        ),
        (
            r"\b(VERSION|TIMESTAMP)\s+AS\s+OF\b",
            "time travel in SQL (VERSION AS OF / TIMESTAMP AS OF)",
            "DeltaTable is not needed: spark.read.option('versionAsOf', v).table(name) "
            "(or 'timestampAsOf')",
        ),
        (
            r"\btable_changes\s*\(",
            "table_changes()",
            "DeltaTable is not needed: spark.read.option('readChangeFeed', 'true')"
            ".option('startingVersion', v).table(name)",
        ),
    )
)


def delta_only_statement(statement: str) -> tuple[str, str] | None:
    """``(what, portable call)`` if ``statement`` is Delta SQL the embedded engine cannot run."""
    if not isinstance(statement, str):
        return None
    text = _COMMENTS.sub(" ", statement)
    for pattern, what, portable in _DELTA_SQL:
        if pattern.search(text):
            return what, portable
    return None


def _check(session, statement) -> None:
    from lakehouse.engines import runs_embedded

    # runs_embedded also knows the sessions Spark makes from an embedded one, such as the
    # micro-batch session foreachBatch hands its function.
    if not runs_embedded(session):
        return
    found = delta_only_statement(statement)
    if found:
        what, portable = found
        raise UnsupportedOperation(
            f"{what} is Delta Lake SQL that the embedded engine (local Spark with delta-rs) "
            f"does not run. Run this on the delta-spark engine (LAKEHOUSE_ENGINE=delta-spark, "
            f"after scripts/bootstrap has fetched Delta's jars) or on Databricks, where it works "
            f"as written; on the embedded engine, the DeltaTable API does the same: {portable}."
        )


def install() -> None:
    """Guard ``spark.sql`` of classic and Spark Connect sessions (once per process)."""
    from lakehouse.engines.embedded.writer_shim import session_classes

    for cls in session_classes():
        if cls.__dict__.get(_PATCHED):
            continue
        original = cls.sql

        @functools.wraps(original)
        def sql(self, sqlQuery, *args, __original=original, **kwargs):  # noqa: N803
            _check(self, sqlQuery)
            return __original(self, sqlQuery, *args, **kwargs)

        cls.sql = sql
        setattr(cls, _PATCHED, True)
