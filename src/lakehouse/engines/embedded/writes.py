"""DataFrame writes into the Delta log on the embedded engine: the plan the driver settles
before tasks run (partitioning, ``mergeSchema``, ``overwriteSchema``, ``replaceWhere``), the
NOT NULL and CHECK constraints the written files must pass, and their commit with delta-rs as one
transaction (with the streaming query's application transaction id)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from lakehouse.engines.embedded.errors import DeltaError
from lakehouse.engines.embedded.log import (
    PARTITION_OPTION,
    is_delta_table,
    local_path,
    nullable,
    open_table,
    snapshot,
)


@dataclass
class WritePlan:
    """What a write will commit, decided once on the driver before tasks run."""

    table_exists: bool
    partition_columns: list[str]
    file_schema: pa.Schema
    commit_schema: pa.Schema
    replace_filters: list[tuple[str, str, Any]] | None = None
    # Columns that mergeSchema adds to an existing table (committed just before the data).
    add_columns: list[pa.Field] = field(default_factory=list)
    # overwriteSchema: the write replaces the table's schema and partitioning.
    replace_table: bool = False


def plan_write(
    path: str, data_schema: pa.Schema, options: dict[str, str], overwrite: bool
) -> WritePlan:
    opts = {k.lower(): v for k, v in options.items()}
    asked = json.loads(opts[PARTITION_OPTION.lower()]) if PARTITION_OPTION.lower() in opts else None
    merge = _true(opts.get("mergeschema"))
    replace_schema = overwrite and _true(opts.get("overwriteschema"))
    for column in asked or []:
        if column not in data_schema.names:
            raise DeltaError(
                f"partitionBy column {column!r} is not in the DataFrame being written to "
                f"{path!r}; its columns are {data_schema.names}."
            )
    if "replacewhere" in opts and not overwrite:
        raise DeltaError("replaceWhere works with mode('overwrite') only.")
    if not is_delta_table(path):
        partitions = asked or []
        return WritePlan(
            False,
            partitions,
            data_schema,
            data_schema,
            _replace_filters(path, opts.get("replacewhere"), partitions, data_schema),
        )
    snap = snapshot(path)
    table_schema = snap.arrow_schema
    if replace_schema:
        partitions = asked if asked is not None else snap.partition_columns
        return WritePlan(True, partitions, data_schema, data_schema, None, replace_table=True)
    if asked is not None and asked != snap.partition_columns:
        raise DeltaError(
            f"Partition columns do not match the Delta table at {path!r}: it is partitioned by "
            f"{snap.partition_columns}, the write asks for {asked}. Drop .partitionBy(...) to "
            "use the table's partitioning, or overwrite with .option('overwriteSchema', 'true') "
            "to change it."
        )
    table_types = {f.name: f.type for f in table_schema}
    new_columns = [f for f in data_schema if f.name not in table_types]
    mismatched = [
        (f.name, table_types[f.name], f.type)
        for f in data_schema
        if f.name in table_types
        and f.type != table_types[f.name]
        and not _can_store(f.type, table_types[f.name])
    ]
    if mismatched:
        listed = "; ".join(f"{n}: table {t}, data {d}" for n, t, d in mismatched)
        raise DeltaError(
            f"Column types do not match the Delta table at {path!r} ({listed}). Cast the "
            "columns to the table's types, or replace the schema on an overwrite with "
            ".option('overwriteSchema', 'true')."
        )
    if new_columns and not merge:
        raise DeltaError(
            f"A schema mismatch was detected when writing to the Delta table at {path!r}: the "
            f"data has new columns {[f.name for f in new_columns]}. To add them to the table, "
            "use .option('mergeSchema', 'true'); to replace the schema on an overwrite, use "
            ".option('overwriteSchema', 'true')."
        )
    file_schema = pa.schema(
        [pa.field(f.name, table_types.get(f.name, f.type), True) for f in data_schema]
    )
    commit_schema = pa.schema(list(table_schema) + [f.with_nullable(True) for f in new_columns])
    return WritePlan(
        True,
        snap.partition_columns,
        file_schema,
        commit_schema,
        _replace_filters(path, opts.get("replacewhere"), snap.partition_columns, table_schema),
        add_columns=[f.with_nullable(True) for f in new_columns],
    )


def _true(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _can_store(data: pa.DataType, table: pa.DataType) -> bool:
    """Whether values of ``data`` fit a table column of type ``table`` without loss."""
    if pa.types.is_integer(data) and pa.types.is_integer(table):
        return data.bit_width <= table.bit_width
    if pa.types.is_floating(data) and pa.types.is_floating(table):
        return data.bit_width <= table.bit_width
    if pa.types.is_integer(data) and pa.types.is_floating(table):
        return data.bit_width <= 32
    if pa.types.is_null(data):
        return True
    if pa.types.is_decimal(data) and pa.types.is_decimal(table):
        return data.scale == table.scale and data.precision <= table.precision
    if pa.types.is_timestamp(data) and pa.types.is_timestamp(table):
        return bool(data.tz) == bool(table.tz)
    return False


_CONJUNCT = re.compile(r"\s+and\s+", re.IGNORECASE)
_COMPARISON = re.compile(r"^\s*`?(\w+)`?\s*(=|==|!=|<>|>=|<=|>|<)\s*(.+?)\s*$")
_MEMBERSHIP = re.compile(r"^\s*`?(\w+)`?\s+(not\s+in|in)\s*\((.*)\)\s*$", re.IGNORECASE)


def _replace_filters(
    path: str, predicate: str | None, partitions: list[str], schema: pa.Schema
) -> list[tuple[str, str, Any]] | None:
    """``replaceWhere`` as delta-rs partition filters (AND of comparisons on partition
    columns)."""
    if predicate is None:
        return None
    filters = []
    for conjunct in _CONJUNCT.split(predicate.strip()):
        m = _MEMBERSHIP.match(conjunct)
        if m and m.group(1) in partitions:
            values = [_literal(v) for v in _split_list(m.group(3))]
            filters.append((m.group(1), "not in" if "not" in m.group(2).lower() else "in", values))
            continue
        m = _COMPARISON.match(conjunct)
        if m and m.group(1) in partitions:
            op = {"==": "=", "<>": "!="}.get(m.group(2), m.group(2))
            filters.append((m.group(1), op, _literal(m.group(3))))
            continue
        raise DeltaError(
            f"replaceWhere {predicate!r} on the Delta table at {path!r}: the embedded engine "
            f"replaces whole partitions, so each condition must compare a partition column "
            f"({partitions or 'none: the table is not partitioned'}) with a literal, joined by "
            "AND (e.g. \"order_date >= '2026-01-01' AND order_date < '2026-02-01'\"). For "
            "other conditions use DeltaTable.delete(condition) and then append."
        )
    return filters


def _split_list(text: str) -> list[str]:
    return [p for p in re.findall(r"'(?:[^']|'')*'|[^,\s][^,]*", text)]


def _literal(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if text.lower().startswith(("date'", "timestamp'")) or text.lower().startswith(
        ("date '", "timestamp '")
    ):
        return text.split("'", 1)[1].rstrip("'")
    return text


def _matches(value: str | None, op: str, target: Any) -> bool:
    if op in ("in", "not in"):
        inside = value in [str(t) for t in target]
        return inside if op == "in" else not inside
    if value is None:
        return False
    a, b = _comparable(value, str(target))
    return {"=": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]


def _comparable(a: str, b: str):
    try:
        return Decimal(a), Decimal(b)
    except ArithmeticError:
        return a, b


def query_id(checkpoint: str) -> str:
    """The streaming query's id, stable across restarts: Spark keeps it in the checkpoint's
    ``metadata`` file. It names the query's application transaction in the Delta log."""
    meta = Path(checkpoint) / "metadata"
    if meta.exists():
        try:
            return "spark-streaming:" + json.loads(meta.read_text().splitlines()[0])["id"]
        except (ValueError, KeyError, IndexError):
            pass
    return "spark-streaming-checkpoint:" + str(Path(checkpoint).absolute())


def commit_files(
    path: str,
    files: list[dict],
    plan: WritePlan,
    *,
    overwrite: bool,
    app_id: str | None = None,
    app_version: int | None = None,
    user_metadata: str | None = None,
) -> bool:
    """Commit the files tasks wrote as one Delta transaction; returns False when an
    application transaction shows this (app_id, app_version) was already committed."""
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake import Field as DeltaField
    from deltalake import Schema as DeltaSchema
    from deltalake.transaction import AddAction, create_table_with_add_actions

    path = local_path(path)
    if app_id is not None and is_delta_table(path):
        done = open_table(path).transaction_version(app_id)
        if done is not None and done >= app_version:
            _remove(path, files)
            return False
    if plan.replace_filters:
        for f in files:
            for column, op, target in plan.replace_filters:
                if not _matches(f["partition_values"].get(column), op, target):
                    _remove(path, files)
                    raise DeltaError(
                        f"Data written with replaceWhere to {path!r} must match the condition: "
                        f"a row has {column} = {f['partition_values'].get(column)!r}. Filter "
                        "the DataFrame to the replaced range first."
                    )
    if files and is_delta_table(path) and not plan.replace_table:
        try:
            check_constraints(path, files, plan)
        except DeltaError:
            _remove(path, files)
            raise
    now = int(time.time() * 1000)
    adds = [
        AddAction(f["path"], f["size"], f["partition_values"], now, True, f["stats"]) for f in files
    ]
    props = CommitProperties(
        custom_metadata={"userMetadata": user_metadata} if user_metadata else None,
        app_transactions=[Transaction(app_id, app_version)] if app_id is not None else None,
    )
    mode = "overwrite" if overwrite else "append"
    schema = DeltaSchema.from_arrow(plan.commit_schema)
    try:
        if not is_delta_table(path):
            Path(path).mkdir(parents=True, exist_ok=True)
            if not adds:
                # An empty DataFrame still creates the table, with its schema.
                write_deltalake(
                    path,
                    plan.commit_schema.empty_table(),
                    mode=mode,
                    partition_by=plan.partition_columns or None,
                    commit_properties=props,
                )
            else:
                create_table_with_add_actions(
                    path,
                    schema,
                    adds,
                    mode=mode,
                    partition_by=plan.partition_columns or None,
                    commit_properties=props,
                )
        elif plan.replace_table:
            table = open_table(path)
            meta = table.metadata()
            create_table_with_add_actions(
                path,
                schema,
                adds,
                mode="overwrite",
                partition_by=plan.partition_columns or None,
                name=meta.name,
                description=meta.description,
                configuration=meta.configuration,
                commit_properties=props,
            )
        else:
            table = open_table(path)
            known = set(pa.schema(table.schema().to_arrow()).names)
            missing = [f for f in plan.add_columns if f.name not in known]
            if missing:
                table.alter.add_columns([DeltaField.from_arrow(f) for f in missing])
            table.create_write_transaction(
                adds,
                mode,
                schema,
                partition_by=plan.partition_columns or None,
                partition_filters=plan.replace_filters,
                commit_properties=props,
            )
    except DeltaError:
        _remove(path, files)
        raise
    except Exception as exc:
        _remove(path, files)
        raise DeltaError(
            f"Committing to the Delta table at {path!r} failed: {exc}. The table is unchanged "
            "(still at its previous version); retry the write."
        ) from None
    return True


def check_constraints(path: str, files: list[dict], plan: WritePlan) -> None:
    """Reject written files that break the table's NOT NULL columns or CHECK constraints
    (``delta.constraints.*``), before they are committed.

    NOT NULL comes from each file's null counts. CHECK expressions are evaluated by delta-rs
    (DataFusion, the engine its own writer enforces constraints with) over a scratch table
    that points at the new files; as in Delta, a row fails when its expression is false or
    NULL."""
    import shutil
    import tempfile

    from deltalake import DeltaTable, QueryBuilder
    from deltalake import Schema as DeltaSchema
    from deltalake.transaction import AddAction, create_table_with_add_actions

    table = open_table(path)
    config = table.metadata().configuration or {}
    checks = {
        k[len("delta.constraints.") :]: v
        for k, v in config.items()
        if k.startswith("delta.constraints.")
    }
    table_schema = pa.schema(table.schema().to_arrow())
    for f in table_schema:
        if f.nullable or pa.types.is_nested(f.type):
            continue
        for written in files:
            if f.name in plan.partition_columns:
                nulls = written["partition_values"].get(f.name) is None
            else:
                stats = json.loads(written["stats"]) if written.get("stats") else {}
                counts = stats.get("nullCount", {})
                nulls = counts.get(f.name, stats.get("numRecords", 1)) > 0
            if nulls:
                raise DeltaError(
                    f"[DELTA_NOT_NULL_CONSTRAINT_VIOLATED] NOT NULL constraint violated for "
                    f"column: {f.name}. The write to {path!r} was not committed; the table "
                    "is unchanged."
                )
    if not checks:
        return
    scratch = tempfile.mkdtemp(prefix="lakehouse-check-")
    try:
        adds = [
            AddAction(
                Path(path, f["path"]).as_uri(),
                f["size"],
                f["partition_values"],
                0,
                True,
                f["stats"],
            )
            for f in files
        ]
        create_table_with_add_actions(
            scratch,
            DeltaSchema.from_arrow(nullable(plan.commit_schema)),
            adds,
            mode="append",
            partition_by=plan.partition_columns or None,
        )
        query = QueryBuilder().register("written", DeltaTable(scratch))
        for name, expression in checks.items():
            try:
                found = pa.table(
                    query.execute(
                        f"SELECT * FROM written WHERE NOT coalesce(({expression}), false) LIMIT 1"
                    ).read_all()
                ).to_pylist()
            except Exception as exc:
                raise DeltaError(
                    f"CHECK constraint {name} ({expression}) of the Delta table at {path!r} "
                    f"could not be evaluated on the written rows: {exc}"
                ) from None
            if found:
                values = "\n".join(f" - {k} : {v}" for k, v in found[0].items())
                raise DeltaError(
                    f"[DELTA_VIOLATE_CONSTRAINT_WITH_VALUES] CHECK constraint {name} "
                    f"({expression}) violated by row with values:\n{values}\nThe write to "
                    f"{path!r} was not committed; the table is unchanged."
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _remove(root: str, files: list[dict]) -> None:
    for f in files:
        Path(root, f["path"]).unlink(missing_ok=True)
