"""``DeltaTable`` through a Spark Connect server that has Delta but not Delta Connect.

Delta Connect's server plugin (``io.delta:delta-connect-server``) is what lets
``delta.tables.DeltaTable`` work over Spark Connect; where the server runs Delta's SQL extension
without that plugin, this class gives the same methods by issuing the Delta SQL each one stands
for (``MERGE INTO``, ``UPDATE``, ``DESCRIBE HISTORY``, ``OPTIMIZE``, ``RESTORE`` ...). The
tables, the transactions and the results are Delta's own; only the client side differs.

Conditions and values may be SQL strings (used as written) or Columns built from names,
literals, casts and the common operators and functions, which are written back as SQL.

>>> SqlDeltaTable.forName(spark, "silver.customers").history(1)   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql.types import DataType, StructField, StructType

# Connect expression operators and the SQL they stand for.
_INFIX = {
    "==": "=",
    "<=>": "<=>",
    "!=": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "+": "+",
    "-": "-",
    "*": "*",
    "/": "/",
    "%": "%",
    "and": "AND",
    "or": "OR",
}
_POSTFIX = {"isNull": "IS NULL", "isNotNull": "IS NOT NULL", "isNaN": None}


def _quote_ident(name: str) -> str:
    """``schema.table`` or ``a.b`` with each part in backticks unless it already is."""
    parts = re.findall(r"`[^`]*`|[^.]+", name)
    return ".".join(p if p.startswith("`") else f"`{p}`" for p in parts)


def sql_literal(value: Any) -> str:
    """A Python value as a Spark SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | decimal.Decimal):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP'{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a SQL literal")


def to_sql(expression: Any) -> str:
    """A condition or value as SQL: a string as written, a Column translated.

    Raises ``TypeError`` naming the expression when a Column uses something not covered;
    write that one as a SQL string instead."""
    if isinstance(expression, str):
        return expression
    expr = getattr(expression, "_expr", None)
    if expr is None:
        raise TypeError(
            f"expected a SQL string or a Column, got {type(expression).__name__}: {expression!r}"
        )
    return _expr_sql(expr, expression)


def _expr_sql(expr: Any, original: Any) -> str:
    from pyspark.sql.connect import expressions as E

    if isinstance(expr, E.ColumnReference):
        return _quote_ident(expr._unparsed_identifier)
    if isinstance(expr, E.SQLExpression):
        return f"({expr._expr})"
    if isinstance(expr, E.LiteralExpression):
        return sql_literal(expr._value)
    if isinstance(expr, E.CastExpression):
        target = expr._data_type
        type_sql = target.simpleString() if isinstance(target, DataType) else str(target)
        return f"CAST({_expr_sql(expr._expr, original)} AS {type_sql})"
    if isinstance(expr, E.ColumnAlias):
        return _expr_sql(expr._child, original)
    if isinstance(expr, E.UnresolvedFunction):
        name, args = expr._name, [_expr_sql(a, original) for a in expr._args]
        if name in _INFIX and len(args) == 2:
            return f"({args[0]} {_INFIX[name]} {args[1]})"
        if name in _POSTFIX and _POSTFIX[name] and len(args) == 1:
            return f"({args[0]} {_POSTFIX[name]})"
        if name == "not" and len(args) == 1:
            return f"(NOT {args[0]})"
        if name == "negative" and len(args) == 1:
            return f"(- {args[0]})"
        if name == "in" and args:
            return f"({args[0]} IN ({', '.join(args[1:])}))"
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            distinct = "DISTINCT " if getattr(expr, "_is_distinct", False) else ""
            return f"{name}({distinct}{', '.join(args)})"
    if isinstance(expr, E.CaseWhen):
        branches = " ".join(
            f"WHEN {_expr_sql(c, original)} THEN {_expr_sql(v, original)}"
            for c, v in expr._branches
        )
        otherwise = (
            f" ELSE {_expr_sql(expr._else_value, original)}" if expr._else_value is not None else ""
        )
        return f"(CASE {branches}{otherwise} END)"
    raise TypeError(
        f"cannot write the Column {original} as SQL for Delta through Spark Connect; pass it as "
        f'a SQL string instead (e.g. "t.id = s.id")'
    )


def _assignments(mapping: Mapping[str, Any] | None, what: str) -> str:
    if not mapping:
        raise ValueError(f"{what} needs a non-empty dict of column -> expression")
    return ", ".join(f"{_quote_ident(k)} = {to_sql(v)}" for k, v in mapping.items())


def _is_delta(spark, identifier: str) -> bool:
    try:
        row = spark.sql(f"DESCRIBE DETAIL {identifier}").select("format").first()
    except AnalysisException:
        return False
    return row is not None and row[0] == "delta"


def _alias_of(df) -> str | None:
    plan = getattr(df, "_plan", None)
    return getattr(plan, "_alias", None)


class SqlDeltaTable:
    """The ``delta.tables.DeltaTable`` methods, each run as the Delta SQL it stands for."""

    def __init__(self, spark, identifier: str, *, path: str | None = None, alias=None):
        self._spark = spark
        self._identifier = identifier  # `schema`.`table` or delta.`/path`
        self._path = path
        self._alias = alias

    def __repr__(self) -> str:
        return f"SqlDeltaTable({self._identifier})"

    # -- entry points ------------------------------------------------------------------------
    @classmethod
    def forPath(cls, sparkSession, path: str, hadoopConf=None):  # noqa: N802,N803
        identifier = f"delta.`{path}`"
        if not _is_delta(sparkSession, identifier):
            raise AnalysisException(f"`{path}` is not a Delta table.")
        return cls(sparkSession, identifier, path=path)

    @classmethod
    def forName(cls, sparkSession, tableOrViewName: str):  # noqa: N802,N803
        identifier = _quote_ident(tableOrViewName)
        if not _is_delta(sparkSession, identifier):
            raise AnalysisException(f"`{tableOrViewName}` is not a Delta table.")
        return cls(sparkSession, identifier)

    @classmethod
    def isDeltaTable(cls, sparkSession, identifier: str) -> bool:  # noqa: N802,N803
        return _is_delta(sparkSession, f"delta.`{identifier}`")

    @classmethod
    def convertToDelta(cls, sparkSession, identifier: str, partitionSchema=None):  # noqa: N802,N803
        statement = f"CONVERT TO DELTA {identifier}"
        if partitionSchema is not None:
            schema = (
                partitionSchema
                if isinstance(partitionSchema, str)
                else ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in partitionSchema)
            )
            statement += f" PARTITIONED BY ({schema})"
        sparkSession.sql(statement)
        path = re.sub(r"^\w+\.`(.*)`$", r"\1", identifier)
        return cls(sparkSession, f"delta.`{path}`", path=path)

    @classmethod
    def create(cls, sparkSession=None):  # noqa: N803
        return SqlTableBuilder(sparkSession, "CREATE TABLE")

    @classmethod
    def createIfNotExists(cls, sparkSession=None):  # noqa: N802,N803
        return SqlTableBuilder(sparkSession, "CREATE TABLE IF NOT EXISTS")

    @classmethod
    def replace(cls, sparkSession=None):  # noqa: N803
        return SqlTableBuilder(sparkSession, "REPLACE TABLE")

    @classmethod
    def createOrReplace(cls, sparkSession=None):  # noqa: N802,N803
        return SqlTableBuilder(sparkSession, "CREATE OR REPLACE TABLE")

    # -- reads ---------------------------------------------------------------------------------
    def toDF(self):  # noqa: N802
        if self._path is not None:
            df = self._spark.read.format("delta").load(self._path)
        else:
            df = self._spark.table(self._identifier)
        return df.alias(self._alias) if self._alias else df

    def alias(self, aliasName: str) -> SqlDeltaTable:  # noqa: N803
        return SqlDeltaTable(self._spark, self._identifier, path=self._path, alias=aliasName)

    def history(self, limit: int | None = None):
        suffix = f" LIMIT {int(limit)}" if limit is not None else ""
        return self._spark.sql(f"DESCRIBE HISTORY {self._identifier}{suffix}")

    def detail(self):
        return self._spark.sql(f"DESCRIBE DETAIL {self._identifier}")

    # -- writes --------------------------------------------------------------------------------
    def _target(self) -> str:
        return f"{self._identifier} AS `{self._alias}`" if self._alias else self._identifier

    def delete(self, condition=None) -> None:
        where = f" WHERE {to_sql(condition)}" if condition is not None else ""
        self._spark.sql(f"DELETE FROM {self._target()}{where}").collect()

    def update(self, condition=None, set=None) -> None:  # noqa: A002 - delta's own name
        if set is None and isinstance(condition, Mapping):
            condition, set = None, condition
        where = f" WHERE {to_sql(condition)}" if condition is not None else ""
        statement = f"UPDATE {self._target()} SET {_assignments(set, 'update')}{where}"
        self._spark.sql(statement).collect()

    def merge(self, source, condition) -> SqlMergeBuilder:
        if source is None:
            raise ValueError("'source' in merge cannot be None")
        if condition is None:
            raise ValueError("'condition' in merge cannot be None")
        return SqlMergeBuilder(self, source, to_sql(condition))

    def vacuum(self, retentionHours: float | None = None):  # noqa: N803
        retain = f" RETAIN {retentionHours} HOURS" if retentionHours is not None else ""
        return self._spark.sql(f"VACUUM {self._identifier}{retain}")

    def restoreToVersion(self, version: int):  # noqa: N802
        return self._spark.sql(f"RESTORE TABLE {self._identifier} TO VERSION AS OF {int(version)}")

    def restoreToTimestamp(self, timestamp: str):  # noqa: N802
        return self._spark.sql(
            f"RESTORE TABLE {self._identifier} TO TIMESTAMP AS OF {sql_literal(timestamp)}"
        )

    def optimize(self) -> SqlOptimizeBuilder:
        return SqlOptimizeBuilder(self)

    def generate(self, mode: str) -> None:
        self._spark.sql(f"GENERATE {mode} FOR TABLE {self._identifier}").collect()

    def upgradeTableProtocol(self, readerVersion: int, writerVersion: int) -> None:  # noqa: N802,N803
        self._set_properties(
            {
                "delta.minReaderVersion": str(readerVersion),
                "delta.minWriterVersion": str(writerVersion),
            }
        )

    def addFeatureSupport(self, featureName: str) -> None:  # noqa: N802,N803
        self._set_properties({f"delta.feature.{featureName}": "supported"})

    def dropFeatureSupport(self, featureName: str, truncateHistory: bool | None = None) -> None:  # noqa: N802,N803
        truncate = " TRUNCATE HISTORY" if truncateHistory else ""
        self._spark.sql(
            f"ALTER TABLE {self._identifier} DROP FEATURE `{featureName}`{truncate}"
        ).collect()

    def _set_properties(self, properties: Mapping[str, str]) -> None:
        pairs = ", ".join(f"{sql_literal(k)} = {sql_literal(v)}" for k, v in properties.items())
        self._spark.sql(f"ALTER TABLE {self._identifier} SET TBLPROPERTIES ({pairs})").collect()

    def clone(self, target: str, isShallow: bool, replace: bool = False, properties=None):  # noqa: N803
        return self._clone(target, isShallow, replace, properties, "")

    def cloneAtVersion(
        self, version: int, target: str, isShallow: bool, replace=False, properties=None
    ):  # noqa: N802,N803
        return self._clone(target, isShallow, replace, properties, f" VERSION AS OF {int(version)}")

    def cloneAtTimestamp(
        self, timestamp: str, target: str, isShallow: bool, replace=False, properties=None
    ):  # noqa: N802,N803
        at = f" TIMESTAMP AS OF {sql_literal(timestamp)}"
        return self._clone(target, isShallow, replace, properties, at)

    def _clone(self, target, is_shallow, replace, properties, at):
        kind = "SHALLOW" if is_shallow else "DEEP"
        verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
        target_ident = target if target.startswith("delta.`") else _quote_ident(target)
        props = ""
        if properties:
            pairs = ", ".join(f"{sql_literal(k)} = {sql_literal(v)}" for k, v in properties.items())
            props = f" TBLPROPERTIES ({pairs})"
        self._spark.sql(
            f"{verb} {target_ident} {kind} CLONE {self._identifier}{at}{props}"
        ).collect()
        return SqlDeltaTable(self._spark, target_ident)


class SqlMergeBuilder:
    """``DeltaMergeBuilder``: collects the clauses, then runs one ``MERGE INTO``."""

    def __init__(self, table: SqlDeltaTable, source, condition: str):
        self._table = table
        self._source = source
        self._condition = condition
        self._clauses: list[str] = []
        self._evolve = False

    def _add(self, kind: str, condition, action: str) -> SqlMergeBuilder:
        guard = f" AND {to_sql(condition)}" if condition is not None else ""
        self._clauses.append(f"WHEN {kind}{guard} THEN {action}")
        return self

    def whenMatchedUpdate(self, condition=None, set=None):  # noqa: N802,A002
        return self._add(
            "MATCHED", condition, f"UPDATE SET {_assignments(set, 'whenMatchedUpdate')}"
        )

    def whenMatchedUpdateAll(self, condition=None):  # noqa: N802
        return self._add("MATCHED", condition, "UPDATE SET *")

    def whenMatchedDelete(self, condition=None):  # noqa: N802
        return self._add("MATCHED", condition, "DELETE")

    def whenNotMatchedInsert(self, condition=None, values=None):  # noqa: N802
        if not values:
            raise ValueError("whenNotMatchedInsert needs a non-empty dict of column -> value")
        columns = ", ".join(_quote_ident(k) for k in values)
        exprs = ", ".join(to_sql(v) for v in values.values())
        return self._add("NOT MATCHED", condition, f"INSERT ({columns}) VALUES ({exprs})")

    def whenNotMatchedInsertAll(self, condition=None):  # noqa: N802
        return self._add("NOT MATCHED", condition, "INSERT *")

    def whenNotMatchedBySourceUpdate(self, condition=None, set=None):  # noqa: N802,A002
        action = f"UPDATE SET {_assignments(set, 'whenNotMatchedBySourceUpdate')}"
        return self._add("NOT MATCHED BY SOURCE", condition, action)

    def whenNotMatchedBySourceDelete(self, condition=None):  # noqa: N802
        return self._add("NOT MATCHED BY SOURCE", condition, "DELETE")

    def withSchemaEvolution(self):  # noqa: N802
        self._evolve = True
        return self

    def statement(self, view: str) -> str:
        """The ``MERGE INTO`` this builder runs, reading the source from ``view``."""
        if not self._clauses:
            raise ValueError("a merge needs at least one WHEN clause before execute()")
        alias = _alias_of(self._source)
        source = f"`{view}` AS `{alias}`" if alias else f"`{view}`"
        evolve = " WITH SCHEMA EVOLUTION" if self._evolve else ""
        return (
            f"MERGE{evolve} INTO {self._table._target()} USING {source} ON {self._condition} "
            + " ".join(self._clauses)
        )

    def execute(self):
        spark = self._table._spark
        view = f"_merge_source_{uuid.uuid4().hex[:12]}"
        self._source.createOrReplaceTempView(view)
        try:
            metrics = spark.sql(self.statement(view))
            # Materialize while the source view exists; hand back a frame of the metrics.
            rows = metrics.collect()
            return spark.createDataFrame(rows, metrics.schema)
        finally:
            spark.catalog.dropTempView(view)


class SqlOptimizeBuilder:
    """``DeltaOptimizeBuilder``: ``OPTIMIZE ... [WHERE ...] [ZORDER BY ...]``."""

    def __init__(self, table: SqlDeltaTable):
        self._table = table
        self._where = ""

    def where(self, partitionFilter: str) -> SqlOptimizeBuilder:  # noqa: N803
        self._where = f" WHERE {partitionFilter}"
        return self

    def executeCompaction(self):  # noqa: N802
        return self._table._spark.sql(f"OPTIMIZE {self._table._identifier}{self._where}")

    def executeZOrderBy(self, *cols):  # noqa: N802
        names = [c for group in cols for c in ([group] if isinstance(group, str) else group)]
        zorder = ", ".join(_quote_ident(c) for c in names)
        return self._table._spark.sql(
            f"OPTIMIZE {self._table._identifier}{self._where} ZORDER BY ({zorder})"
        )


class SqlTableBuilder:
    """``DeltaTableBuilder``: one ``CREATE [OR REPLACE] TABLE ... USING delta``."""

    def __init__(self, spark, verb: str):
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.getActiveSession()
        self._spark = spark
        self._verb = verb
        self._name: str | None = None
        self._location: str | None = None
        self._comment: str | None = None
        self._columns: list[str] = []
        self._partitioned: list[str] = []
        self._clustered: list[str] = []
        self._properties: dict[str, str] = {}

    def tableName(self, identifier: str):  # noqa: N802
        self._name = identifier
        return self

    def location(self, location: str):
        self._location = location
        return self

    def comment(self, comment: str):
        self._comment = comment
        return self

    def addColumn(  # noqa: N802
        self,
        colName: str,  # noqa: N803
        dataType: str | DataType,  # noqa: N803
        nullable: bool = True,
        generatedAlwaysAs=None,  # noqa: N803
        generatedByDefaultAs=None,  # noqa: N803
        comment: str | None = None,
    ):
        type_sql = dataType.simpleString() if isinstance(dataType, DataType) else dataType
        column = f"{_quote_ident(colName)} {type_sql}"
        if not nullable:
            column += " NOT NULL"
        if generatedAlwaysAs is not None:
            column += _generation("ALWAYS", generatedAlwaysAs)
        if generatedByDefaultAs is not None:
            column += _generation("BY DEFAULT", generatedByDefaultAs)
        if comment is not None:
            column += f" COMMENT {sql_literal(comment)}"
        self._columns.append(column)
        return self

    def addColumns(self, cols: StructType | Iterable[StructField]):  # noqa: N802
        for field in cols.fields if isinstance(cols, StructType) else cols:
            self.addColumn(
                field.name,
                field.dataType,
                field.nullable,
                comment=(field.metadata or {}).get("comment"),
            )
        return self

    def partitionedBy(self, *cols):  # noqa: N802
        self._partitioned += [c for g in cols for c in ([g] if isinstance(g, str) else g)]
        return self

    def clusterBy(self, *cols):  # noqa: N802
        self._clustered += [c for g in cols for c in ([g] if isinstance(g, str) else g)]
        return self

    def property(self, key: str, value: str):
        self._properties[key] = value
        return self

    def statement(self) -> str:
        if self._name is None and self._location is None:
            raise ValueError("Table name or location has to be specified (tableName, location)")
        ident = _quote_ident(self._name) if self._name else f"delta.`{self._location}`"
        parts = [f"{self._verb} {ident}"]
        if self._columns:
            parts.append(f"({', '.join(self._columns)})")
        parts.append("USING delta")
        if self._partitioned:
            parts.append(f"PARTITIONED BY ({', '.join(map(_quote_ident, self._partitioned))})")
        if self._clustered:
            parts.append(f"CLUSTER BY ({', '.join(map(_quote_ident, self._clustered))})")
        if self._name and self._location:
            parts.append(f"LOCATION {sql_literal(self._location)}")
        if self._comment is not None:
            parts.append(f"COMMENT {sql_literal(self._comment)}")
        if self._properties:
            pairs = ", ".join(
                f"{sql_literal(k)} = {sql_literal(str(v))}" for k, v in self._properties.items()
            )
            parts.append(f"TBLPROPERTIES ({pairs})")
        return " ".join(parts)

    def execute(self) -> SqlDeltaTable:
        self._spark.sql(self.statement()).collect()
        if self._name:
            return SqlDeltaTable(self._spark, _quote_ident(self._name))
        return SqlDeltaTable(self._spark, f"delta.`{self._location}`", path=self._location)


def _generation(kind: str, spec) -> str:
    """``GENERATED ALWAYS AS (expr)`` or an identity column from ``IdentityGenerator``."""
    if isinstance(spec, str):
        return f" GENERATED {kind} AS ({spec})"
    start, step = getattr(spec, "start", 1), getattr(spec, "step", 1)
    return f" GENERATED {kind} AS IDENTITY (START WITH {int(start)} INCREMENT BY {int(step)})"
