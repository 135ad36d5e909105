"""MERGE on the embedded engine: ``EmbeddedMergeBuilder`` collects the ``when...`` clauses as
delta-spark's builder does; ``_Merge`` has Spark join the source with the matched files, pick
each row's clause and compute its values, then writes and commits the result."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, StructField, StructType

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.commit import (
    _SKIP,
    _commit,
    _enforce,
    _guard,
    _metadata_action,
    _remove_action,
    _session_transaction,
    _txn_action,
)
from lakehouse.engines.embedded.common import (
    CLAUSE,
    COPY,
    DATA_OPS,
    DELETE,
    DROP,
    FILE,
    INSERT,
    OLD,
    OP,
    ROW,
    SOURCE,
    SOURCE_DELETE,
    SOURCE_UPDATE,
    TARGET,
    UPDATE,
    _now_ms,
    _quoted,
    _spark_schema,
    _storable,
)
from lakehouse.engines.embedded.errors import DeltaError
from lakehouse.engines.embedded.expressions import assignment_columns, condition_column, describe
from lakehouse.engines.embedded.rewrite import (
    _files_of,
    _foreign_columns_explained,
    _resolve_column,
    _target_frame,
    _write_rows,
)

_MERGE_RESULT_DDL = (
    "num_affected_rows long, num_updated_rows long, num_deleted_rows long, num_inserted_rows long"
)


@dataclass(frozen=True)
class _Clause:
    kind: str  # matched | not_matched | not_matched_by_source
    action: str  # update | update_all | delete | insert | insert_all
    condition: Any = None  # as given (str or Column)
    assignments: dict | None = None  # as given

    @property
    def op(self) -> str:
        if self.kind == "not_matched":
            return INSERT
        if self.kind == "matched":
            return DELETE if self.action == "delete" else UPDATE
        return SOURCE_DELETE if self.action == "delete" else SOURCE_UPDATE

    def describe(self) -> dict:
        entry = {}
        if self.condition is not None:
            entry["predicate"] = describe(self.condition)
        entry["actionType"] = self.action.replace("_all", "")
        return entry


class EmbeddedMergeBuilder:
    """Clauses of a merge; each ``when...`` call returns a new builder, as delta-spark's do.

    Example::

        (deltaTable.alias("t").merge(updates.alias("s"), "t.id = s.id")
            .whenMatchedUpdate(set={"amount": "s.amount"})
            .whenNotMatchedInsertAll()
            .whenNotMatchedBySourceDelete()
            .execute())
    """

    def __init__(self, table, source, condition, clauses=(), schema_evolution=False):
        self._table = table
        self._source = source
        self._condition = condition
        self._clauses: tuple[_Clause, ...] = tuple(clauses)
        self._schema_evolution = schema_evolution

    def _with(self, clause: _Clause) -> EmbeddedMergeBuilder:
        condition_column(clause.condition)
        if clause.assignments is not None:
            assignment_columns(clause.assignments, f"'{_ARGNAME[clause.action]}'")
        return EmbeddedMergeBuilder(
            self._table,
            self._source,
            self._condition,
            self._clauses + (clause,),
            self._schema_evolution,
        )

    def whenMatchedUpdate(self, condition=None, set=None) -> EmbeddedMergeBuilder:  # noqa: A002,N802
        """Update a matched target row as ``set`` says (if ``condition`` holds)."""
        if set is None:
            raise ValueError("'set' in whenMatchedUpdate cannot be None")
        return self._with(_Clause("matched", "update", condition, set))

    def whenMatchedUpdateAll(self, condition=None) -> EmbeddedMergeBuilder:  # noqa: N802
        """Update every column of a matched target row from the source row."""
        return self._with(_Clause("matched", "update_all", condition))

    def whenMatchedDelete(self, condition=None) -> EmbeddedMergeBuilder:  # noqa: N802
        """Delete a matched target row (if ``condition`` holds)."""
        return self._with(_Clause("matched", "delete", condition))

    def whenNotMatchedInsert(self, condition=None, values=None) -> EmbeddedMergeBuilder:  # noqa: N802
        """Insert a source row with no match as ``values`` says (if ``condition`` holds)."""
        if values is None:
            raise ValueError("'values' in whenNotMatchedInsert cannot be None")
        return self._with(_Clause("not_matched", "insert", condition, values))

    def whenNotMatchedInsertAll(self, condition=None) -> EmbeddedMergeBuilder:  # noqa: N802
        """Insert a source row with no match, column for column."""
        return self._with(_Clause("not_matched", "insert_all", condition))

    def whenNotMatchedBySourceUpdate(self, condition=None, set=None) -> EmbeddedMergeBuilder:  # noqa: A002,N802
        """Update a target row no source row matches, as ``set`` says."""
        if set is None:
            raise ValueError("'set' in whenNotMatchedBySourceUpdate cannot be None")
        return self._with(_Clause("not_matched_by_source", "update", condition, set))

    def whenNotMatchedBySourceDelete(self, condition=None) -> EmbeddedMergeBuilder:  # noqa: N802
        """Delete a target row no source row matches (if ``condition`` holds)."""
        return self._with(_Clause("not_matched_by_source", "delete", condition))

    def withSchemaEvolution(self) -> EmbeddedMergeBuilder:  # noqa: N802
        """Let the merge add the source's new columns to the table."""
        return EmbeddedMergeBuilder(self._table, self._source, self._condition, self._clauses, True)

    def execute(self) -> DataFrame:
        """Run the merge; returns one row: num_affected_rows, num_updated_rows,
        num_deleted_rows, num_inserted_rows."""
        return _Merge(self).run()


_ARGNAME = {
    "update": "set",
    "insert": "values",
    "update_all": "set",
    "insert_all": "values",
    "delete": "condition",
}
_MULTIPLE_MATCHES = (
    "[DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_MERGE] Cannot perform Merge as multiple "
    "source rows matched and attempted to modify the same target row in the Delta table in "
    "possibly conflicting ways. By SQL semantics of Merge, when multiple source rows match on "
    "the same target row, the result may be ambiguous as it is unclear which source row should "
    "be used to update or delete the matching target row. You can preprocess the source table "
    "to eliminate the possibility of multiple matches."
)


class _Merge:
    def __init__(self, builder: EmbeddedMergeBuilder):
        self.table = builder._table
        self.source = builder._source
        self.condition_text = builder._condition
        self.condition = condition_column(builder._condition)
        self.clauses = builder._clauses
        self.evolve = builder._schema_evolution

    def _check_clauses(self) -> None:
        if not self.clauses:
            raise DeltaError(
                "There must be at least one WHEN clause in a MERGE statement: add "
                ".whenMatchedUpdateAll(), .whenNotMatchedInsertAll() or another when... clause "
                "before execute()."
            )
        for kind, label in (
            ("matched", "MATCHED"),
            ("not_matched", "NOT MATCHED"),
            ("not_matched_by_source", "NOT MATCHED BY SOURCE"),
        ):
            group = [c for c in self.clauses if c.kind == kind]
            if any(c.condition is None for c in group[:-1]):
                raise DeltaError(
                    f"When there are more than one {label} clauses in a MERGE statement, only "
                    f"the last {label} clause can omit the condition."
                )

    def run(self) -> DataFrame:
        with _foreign_columns_explained():
            return self._run()

    def _run(self) -> DataFrame:
        started = time.time()
        self._check_clauses()
        table = self.table
        spark, root = table._spark, table._location
        handle = delta_log.open_table(root)
        snap = delta_log.snapshot(root)
        txn = _session_transaction(spark, handle)
        if txn == _SKIP:
            return self._result(spark, 0, 0, 0)
        changes = any(c.kind != "not_matched" for c in self.clauses)
        guard = _guard(root, handle, snap, "MERGE", removes=changes)
        alias = table._alias
        names = snap.arrow_schema.names
        struct = _spark_schema(snap.arrow_schema)
        matched = [c for c in self.clauses if c.kind == "matched"]
        not_matched = [c for c in self.clauses if c.kind == "not_matched"]
        by_source = [c for c in self.clauses if c.kind == "not_matched_by_source"]
        source = self.source.withColumn(SOURCE, F.lit(True))

        def aliased(frame: DataFrame) -> DataFrame:
            return frame.alias(alias) if alias else frame

        self._check_scopes(self.source, aliased(_target_frame(spark, snap, [])))
        # 1. Which files hold target rows that some source row matches? A target row
        #    matched by two source rows is an error unless one unconditional delete is all
        #    the matched clauses do (delta-spark's rule).
        touched: list[delta_log.DataFile] = []
        if matched:
            target = aliased(_target_frame(spark, snap, snap.files))
            per_file = (
                source.join(target, self.condition, "inner")
                .groupBy(F.col(FILE), F.col(ROW))
                .count()
                .groupBy(FILE)
                .agg(F.max("count").alias("matches"))
                .collect()
            )
            only_delete = (
                len(matched) == 1 and matched[0].action == "delete" and matched[0].condition is None
            )
            if any(r["matches"] > 1 for r in per_file) and not only_delete:
                raise DeltaError(_MULTIPLE_MATCHES)
            touched = _files_of(snap, [r[FILE] for r in per_file])
        rewrite = snap.files if by_source else touched

        # 2. The rows the merge writes: rewritten target files joined with the source, or
        #    only the source rows that match nothing when no target file needs rewriting.
        if rewrite:
            target = aliased(_target_frame(spark, snap, rewrite).withColumn(TARGET, F.lit(True)))
            joined = target.join(source, self.condition, "full" if not_matched else "left")
        elif not_matched:
            target = aliased(_target_frame(spark, snap, snap.files))
            joined = source.join(target, self.condition, "left_anti").withColumn(
                TARGET, F.lit(None).cast("boolean")
            )
            target = None
        else:
            return self._result(spark, 0, 0, 0)

        columns, new_fields = self._columns(joined, target, source, names, struct)
        out_names = names + [f.name for f in new_fields]
        is_matched = F.col(TARGET).isNotNull() & F.col(SOURCE).isNotNull()
        guards = {
            "matched": is_matched,
            "not_matched": F.col(TARGET).isNull(),
            "not_matched_by_source": F.col(SOURCE).isNull(),
        }
        chosen = None
        for i, clause in enumerate(self.clauses):
            if target is None and clause.kind != "not_matched":
                continue  # only unmatched source rows are here; target columns do not exist
            when = guards[clause.kind]
            if clause.condition is not None:
                when = when & condition_column(clause.condition)
            chosen = F.when(when, F.lit(i)) if chosen is None else chosen.when(when, F.lit(i))
        frame = joined.withColumn(CLAUSE, chosen.otherwise(F.lit(-1)))
        clause_id = F.col(CLAUSE)

        op = None
        for i, clause in enumerate(self.clauses):
            op = (
                F.when(clause_id == i, F.lit(clause.op))
                if op is None
                else op.when(clause_id == i, F.lit(clause.op))
            )
        op = op.otherwise(F.when(F.col(TARGET).isNotNull(), F.lit(COPY)).otherwise(F.lit(DROP)))

        values = []
        for name in out_names:
            current, branches = columns[name]
            expression = None
            for i, value in branches:
                expression = (
                    F.when(clause_id == i, value)
                    if expression is None
                    else expression.when(clause_id == i, value)
                )
            values.append(
                (expression.otherwise(current) if expression is not None else current).alias(name)
            )
        old = (
            [columns[n][0].alias(f"{OLD}{i}") for i, n in enumerate(out_names)]
            if guard.change_data_feed
            else []
        )
        out = frame.select(*values, op.alias(OP), *old).filter(F.col(OP) != DROP)
        out = _enforce(out, guard, out_names)

        schema = snap.arrow_schema
        metadata = None
        if new_fields:
            schema = pa.schema(
                list(schema) + [f.with_nullable(True) for f in _arrow_fields(new_fields)]
            )
            schema_json = json.loads(handle.schema().to_json())
            schema_json["fields"] += [json.loads(f.json()) for f in new_fields]
            metadata = _metadata_action(handle, json.dumps(schema_json, separators=(",", ":")))
        written = _write_rows(out, root, schema, snap.partition_columns, guard.change_data_feed)
        inserted = written.count(INSERT)
        updated = written.count(UPDATE, SOURCE_UPDATE)
        deleted = written.count(DELETE, SOURCE_DELETE)
        if not (inserted or updated or deleted) and metadata is None:
            written.discard(root)
            return self._result(spark, 0, 0, 0)
        now = _now_ms()
        actions = [_remove_action(f, now) for f in rewrite] + written.actions(now)
        actions += _txn_action(txn)
        metrics = {
            "numSourceRows": None,
            "numTargetRowsInserted": inserted,
            "numTargetRowsUpdated": updated,
            "numTargetRowsMatchedUpdated": written.count(UPDATE),
            "numTargetRowsNotMatchedBySourceUpdated": written.count(SOURCE_UPDATE),
            "numTargetRowsDeleted": deleted,
            "numTargetRowsMatchedDeleted": written.count(DELETE),
            "numTargetRowsNotMatchedBySourceDeleted": written.count(SOURCE_DELETE),
            "numTargetRowsCopied": written.count(COPY),
            "numOutputRows": written.count(*DATA_OPS),
            "numTargetFilesAdded": len(written.adds),
            "numTargetFilesRemoved": len(rewrite),
            "numTargetChangeFilesAdded": len(written.cdcs),
            "executionTimeMs": int((time.time() - started) * 1000),
        }
        metrics = {k: v for k, v in metrics.items() if v is not None}
        parameters = {
            "predicate": json.dumps([describe(self.condition_text)]),
            "matchedPredicates": json.dumps([c.describe() for c in matched]),
            "notMatchedPredicates": json.dumps([c.describe() for c in not_matched]),
            "notMatchedBySourcePredicates": json.dumps([c.describe() for c in by_source]),
        }
        try:
            _commit(root, snap.version, actions, "MERGE", parameters, metrics, metadata=metadata)
        except BaseException:
            written.discard(root)
            raise
        if metadata is not None:
            table._refresh_catalog()
        return self._result(spark, updated, deleted, inserted)

    def _check_scopes(self, source: DataFrame, target: DataFrame) -> None:
        """As in Delta, NOT MATCHED clauses see only the source row and NOT MATCHED BY SOURCE
        clauses only the target row (Spark analyses them; nothing runs)."""
        for clause in self.clauses:
            if clause.kind == "matched":
                continue
            scope, side = (source, "source") if clause.kind == "not_matched" else (target, "target")
            expressions = (
                [condition_column(clause.condition)] if clause.condition is not None else []
            )
            if clause.assignments:
                expressions += list(
                    assignment_columns(clause.assignments, f"'{_ARGNAME[clause.action]}'").values()
                )
            if not expressions:
                continue
            try:
                _ = scope.select(*[e.alias(f"_{i}") for i, e in enumerate(expressions)]).schema
            except Exception as exc:
                label = "NOT MATCHED" if side == "source" else "NOT MATCHED BY SOURCE"
                raise DeltaError(
                    f"[DELTA_MERGE_UNRESOLVED_EXPRESSION] A {label} clause may only refer to the "
                    f"{side}'s columns: {str(exc).splitlines()[0]}"
                ) from None

    def _columns(self, joined, target, source, names, struct):
        """For each output column: its current value (the target's, or null) and, per clause
        that sets it, (clause index, value); plus the new columns schema evolution adds."""
        types = {f.name: f.dataType for f in struct.fields}
        source_columns = [c for c in self.source.columns]
        source_lower = {c.lower(): c for c in source_columns}
        alias = self.table._alias
        new_fields: list[StructField] = []

        def add_column(name: str, data_type: DataType) -> str:
            existing = {f.name.lower(): f.name for f in new_fields}
            if name.lower() in existing:
                return existing[name.lower()]
            new_fields.append(StructField(name, _storable(data_type), True))
            return name

        def source_ref(name: str):
            return source[_quoted(source_lower[name.lower()])]

        plans: list[tuple[int, dict]] = []
        for i, clause in enumerate(self.clauses):
            if clause.action == "delete":
                continue
            if target is None and clause.kind != "not_matched":
                continue  # no target row matched: only insert clauses can apply
            verb = "UPDATE" if clause.kind != "not_matched" else "INSERT"
            assigned = {}
            if clause.action in ("update_all", "insert_all"):
                missing = [n for n in names if n.lower() not in source_lower]
                if missing and not self.evolve:
                    raise DeltaError(
                        f"[DELTA_MERGE_UNRESOLVED_EXPRESSION] Cannot resolve "
                        f"{', '.join(missing)} in {verb} clause given columns "
                        f"{', '.join(source_columns)} of the source. Add the columns to the "
                        "source, list the columns to set with whenMatchedUpdate(set=...) / "
                        "whenNotMatchedInsert(values=...), or call withSchemaEvolution()."
                    )
                for n in names:
                    if n.lower() in source_lower:
                        assigned[n] = source_ref(n)
                if self.evolve:
                    for c in source_columns:
                        if c.lower() not in {n.lower() for n in names}:
                            assigned[add_column(c, self.source.schema[c].dataType)] = source_ref(c)
            else:
                for key, value in assignment_columns(
                    clause.assignments, f"'{_ARGNAME[clause.action]}'"
                ).items():
                    column = _resolve_column(key, names, alias)
                    if column is None:
                        if not self.evolve:
                            raise DeltaError(
                                f"[DELTA_MERGE_UNRESOLVED_EXPRESSION] Cannot resolve {key} in "
                                f"{verb} clause given columns {', '.join(names)} of the target. "
                                "Set only the table's columns, or call withSchemaEvolution() to "
                                "add new ones."
                            )
                        data_type = joined.select(value.alias("v")).schema["v"].dataType
                        column = add_column(key.split(".")[-1].strip("`"), data_type)
                    assigned[column] = value
            plans.append((i, assigned))

        for f in new_fields:
            types[f.name] = f.dataType
        columns = {}
        for name in names + [f.name for f in new_fields]:
            if target is not None and name in names:
                current = target[_quoted(name)]
            else:
                current = F.lit(None).cast(types[name])
            branches = []
            for i, assigned in plans:
                clause = self.clauses[i]
                if name in assigned:
                    branches.append((i, assigned[name].cast(types[name])))
                elif clause.kind == "not_matched":
                    branches.append((i, F.lit(None).cast(types[name])))
            columns[name] = (current, branches)
        return columns, new_fields

    @staticmethod
    def _result(spark, updated: int, deleted: int, inserted: int) -> DataFrame:
        return spark.createDataFrame(
            [(updated + deleted + inserted, updated, deleted, inserted)], _MERGE_RESULT_DDL
        )


def _arrow_fields(fields: list[StructField]) -> list[pa.Field]:
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(StructType(fields))
    return list(delta_log.normalize_schema(arrow))


__all__ = ["EmbeddedMergeBuilder"]
