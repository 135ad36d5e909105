"""Commits of the embedded ``DeltaTable``: history rows and table features, one Delta transaction
per rewrite (idempotent ``txnAppId``/``txnVersion``, checkpoints), and the checks a rewrite must
pass first (writable table features, append-only, NOT NULL and CHECK constraints)."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.common import (
    INSERT,
    OP,
    SOURCE_UPDATE,
    UPDATE,
    _now_ms,
    _quoted,
    _unsupported,
)
from lakehouse.engines.embedded.errors import ConcurrentModification, DeltaError

_Z_ORDER_BY = "zOrderBy"  # OPTIMIZE's parameter naming the Z-order columns

# Table features this engine's merge/update/delete honour. Others (column mapping, row
# tracking, identity and generated columns, ...) need the writer to do work it cannot do.
_WRITABLE_FEATURES = {
    "appendOnly",
    "invariants",
    "checkConstraints",
    "changeDataFeed",
    "timestampNtz",
    "domainMetadata",
    "deletionVectors",
    "v2Checkpoint",
    "vacuumProtocolCheck",
    "typeWidening",
    "typeWidening-preview",
}
_FEATURE_NAMES = {
    "appendOnly": "AppendOnly",
    "invariants": "Invariants",
    "checkConstraints": "CheckConstraints",
    "changeDataFeed": "ChangeDataFeed",
    "generatedColumns": "GeneratedColumns",
    "columnMapping": "ColumnMapping",
    "identityColumns": "IdentityColumns",
    "deletionVectors": "DeletionVectors",
    "rowTracking": "RowTracking",
    "timestampNtz": "TimestampWithoutTimezone",
    "domainMetadata": "DomainMetadata",
    "v2Checkpoint": "V2Checkpoint",
    "icebergCompatV1": "IcebergCompatV1",
    "variantType": "VariantType",
    "variantType-preview": "VariantTypePreview",
}
# Features a legacy (readerVersion, writerVersion) protocol implies, as delta-spark lists them.
_LEGACY_FEATURES = [
    ((1, 2), ["appendOnly", "invariants"]),
    ((1, 3), ["checkConstraints"]),
    ((1, 4), ["changeDataFeed", "generatedColumns"]),
    ((2, 5), ["columnMapping"]),
    ((2, 6), ["identityColumns"]),
]

_HISTORY_DDL = (
    "version long, timestamp timestamp, userId string, userName string, operation string, "
    "operationParameters map<string,string>, "
    "job struct<jobId:string,jobName:string,jobRunId:string,runId:string,jobOwnerId:string,"
    "triggerType:string>, "
    "notebook struct<notebookId:string>, clusterId string, readVersion long, "
    "isolationLevel string, isBlindAppend boolean, operationMetrics map<string,string>, "
    "userMetadata string, engineInfo string"
)


# ------------------------------------------------------------------------------------------------
# History and protocol
# ------------------------------------------------------------------------------------------------
def _commits(root: str, limit: int | None) -> Iterator[tuple[int, list[dict]]]:
    """(version, actions) of the commits still in the log, newest first."""
    folder = delta_log.log_dir(root)
    versions = sorted(
        (int(n[:20]) for n in os.listdir(folder) if re.fullmatch(r"\d{20}\.json", n)),
        reverse=True,
    )
    for version in versions[:limit] if limit is not None else versions:
        text = (folder / f"{version:020d}.json").read_text()
        yield version, [json.loads(line) for line in text.splitlines() if line.strip()]


def _commit_info(actions: list[dict]) -> dict:
    return next((a["commitInfo"] for a in actions if "commitInfo" in a), {})


def _commit_time(actions: list[dict]) -> datetime | None:
    info = _commit_info(actions)
    ts = info.get("inCommitTimestamp", info.get("timestamp"))
    return datetime.fromtimestamp(ts / 1000, UTC) if ts is not None else None


def _commit_timestamp(root: str, version: int) -> datetime | None:
    path = delta_log.log_dir(root) / f"{version:020d}.json"
    if not path.exists():
        return None
    actions = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return _commit_time(actions) or datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _operation(info: dict, actions: list[dict]) -> str:
    """The commit's operation in delta-spark's words.

    delta-rs records a write that creates or replaces a table as ``CREATE TABLE``/``CREATE OR
    REPLACE TABLE``; delta-spark calls a DataFrame write ``WRITE``, and a streaming sink's
    commit (it carries the query's application transaction) ``STREAMING UPDATE``."""
    operation = info.get("operation") or "UNKNOWN"
    adds_data = any("add" in a and a["add"].get("dataChange", True) for a in actions)
    mode = str((info.get("operationParameters") or {}).get("mode", "")).lower()
    # A builder's CREATE TABLE says ErrorIfExists/Ignore; a write says Append/Overwrite, and
    # a builder's replace adds no data.
    if mode in ("append", "overwrite") and (
        operation == "CREATE TABLE" or (operation == "CREATE OR REPLACE TABLE" and adds_data)
    ):
        operation = "WRITE"
    if operation == "WRITE" and any(
        "txn" in a and str(a["txn"].get("appId", "")).startswith("spark-streaming") for a in actions
    ):
        operation = "STREAMING UPDATE"
    return operation


def _strings(mapping: dict | None) -> dict[str, str] | None:
    if mapping is None:
        return None
    return {
        str(k): (v if isinstance(v, str) else json.dumps(v))
        for k, v in mapping.items()
        if v is not None
    }


def _history_row(version: int, actions: list[dict]) -> tuple:
    info = _commit_info(actions)
    parameters = _strings(info.get("operationParameters")) or {}
    if info.get("operation") == "OPTIMIZE" and isinstance(info.get(_Z_ORDER_BY), str):
        parameters.setdefault(_Z_ORDER_BY, info[_Z_ORDER_BY])
    return (
        version,
        _commit_time(actions),
        info.get("userId"),
        info.get("userName"),
        _operation(info, actions),
        parameters,
        None,
        None,
        info.get("clusterId"),
        info.get("readVersion"),
        info.get("isolationLevel"),
        info.get("isBlindAppend"),
        _strings(info.get("operationMetrics")),
        info.get("userMetadata"),
        info.get("engineInfo") or info.get("clientVersion"),
    )


def _table_features(protocol) -> list[str]:
    if protocol.min_writer_version >= 7 or protocol.min_reader_version >= 3:
        return sorted(set(protocol.writer_features or []) | set(protocol.reader_features or []))
    features: list[str] = []
    for (reader, writer), names in _LEGACY_FEATURES:
        if protocol.min_writer_version >= writer and protocol.min_reader_version >= reader:
            features += names
    return sorted(features)


# ------------------------------------------------------------------------------------------------
# Committing
# ------------------------------------------------------------------------------------------------
def _engine_info() -> str:
    import deltalake
    import pyspark

    return (
        f"Apache-Spark/{pyspark.__version__} delta-rs/{deltalake.__version__} (lakehouse embedded)"
    )


def _commit(
    root: str,
    read_version: int,
    actions: list[dict],
    operation: str,
    parameters: dict[str, Any],
    metrics: dict[str, Any],
    *,
    metadata: dict | None = None,
) -> int:
    """Write commit ``read_version + 1`` holding ``actions``; fails if another writer took
    that version first (the table then stays as that writer left it)."""
    version = read_version + 1
    folder = delta_log.log_dir(root)
    info = {
        "timestamp": _now_ms(),
        "operation": operation,
        "operationParameters": _strings(parameters) or {},
        "readVersion": read_version,
        "isolationLevel": "Serializable",
        "isBlindAppend": False,
        "operationMetrics": {k: str(v) for k, v in metrics.items()},
        "engineInfo": _engine_info(),
        "txnId": str(uuid.uuid4()),
    }
    lines = [{"commitInfo": info}]
    if metadata is not None:
        lines.append({"metaData": metadata})
    lines += actions
    staged = folder / f".{version:020d}.json.{uuid.uuid4().hex}.tmp"
    staged.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    target = folder / f"{version:020d}.json"
    try:
        # A hard link fails when the name exists: two writers cannot both commit a version.
        try:
            os.link(staged, target)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: create the name exclusively
            with open(target, "x") as out:
                out.write(staged.read_text())
    except FileExistsError:
        raise ConcurrentModification(
            f"Another writer committed version {version} of the Delta table at {root!r} while "
            f"this {operation} was running. This {operation} was not committed and the table is "
            "as the other writer left it; run it again."
        ) from None
    finally:
        staged.unlink(missing_ok=True)
    _maybe_checkpoint(root, version)
    return version


TXN_APP_ID_CONF = "spark.databricks.delta.write.txnAppId"
TXN_VERSION_CONF = "spark.databricks.delta.write.txnVersion"
_SKIP = "skip"


def _session_transaction(spark, handle) -> tuple[str, int] | str | None:
    """Delta's idempotent DML: with the session confs ``txnAppId`` and ``txnVersion`` set, a
    MERGE, UPDATE or DELETE whose (app id, version) the table already committed is skipped, and
    one that runs records it in the same commit (a ``txn`` action). Returns ``_SKIP``, the
    pair to record, or None when the confs are not set."""
    app_id = spark.conf.get(TXN_APP_ID_CONF, None) or None
    raw = spark.conf.get(TXN_VERSION_CONF, None) or None
    if app_id is None and raw is None:
        return None
    if app_id is None or raw is None:
        raise DeltaError(
            "[DELTA_INVALID_IDEMPOTENT_WRITES_OPTIONS] Invalid options for idempotent Delta "
            f"writes: both {TXN_APP_ID_CONF} and {TXN_VERSION_CONF} must be specified (set "
            "both, e.g. to the stream's id and the foreachBatch batch id, or unset both)."
        )
    try:
        version = int(raw)
    except ValueError:
        raise DeltaError(
            f"{TXN_VERSION_CONF} must be a whole number (e.g. the foreachBatch batch id), "
            f"not {raw!r}."
        ) from None
    done = handle.transaction_version(app_id)
    if done is not None and done >= version:
        return _SKIP
    return app_id, version


def _txn_action(txn: tuple[str, int] | None) -> list[dict]:
    if txn is None:
        return []
    return [{"txn": {"appId": txn[0], "version": txn[1], "lastUpdated": _now_ms()}}]


def _maybe_checkpoint(root: str, version: int) -> None:
    table = delta_log.open_table(root)
    interval = int((table.metadata().configuration or {}).get("delta.checkpointInterval", 100))
    if interval > 0 and version % interval == 0:
        table.create_checkpoint()


def _remove_action(f: delta_log.DataFile, now: int) -> dict:
    return {
        "remove": {
            "path": f.path,
            "deletionTimestamp": now,
            "dataChange": True,
            "extendedFileMetadata": True,
            "partitionValues": {
                k: delta_log.partition_string(v) for k, v in f.partition_values.items()
            },
            "size": f.size,
        }
    }


def _metadata_action(table, schema_json: str) -> dict:
    meta = table.metadata()
    return {
        "id": str(meta.id),
        "name": meta.name,
        "description": meta.description,
        "format": {"provider": "parquet", "options": {}},
        "schemaString": schema_json,
        "partitionColumns": list(meta.partition_columns),
        "configuration": dict(meta.configuration or {}),
        "createdTime": meta.created_time,
    }


@dataclass
class _Guard:
    """What a rewrite must honour: the table's constraints and unsupported features."""

    constraints: dict[str, str]
    not_null: list[str]
    change_data_feed: bool
    append_only: bool


def _guard(root: str, table, snap: delta_log.Snapshot, operation: str, removes: bool) -> _Guard:
    config = snap.configuration
    protocol = table.protocol()
    features = set(protocol.writer_features or []) if protocol.min_writer_version >= 7 else set()
    blocked = sorted(features - _WRITABLE_FEATURES)
    schema_json = json.loads(table.schema().to_json())
    if str(config.get("delta.columnMapping.mode", "none")).lower() != "none":
        blocked.append("columnMapping")
    if any(
        "delta.generationExpression" in (f.get("metadata") or {})
        or "delta.identity.start" in (f.get("metadata") or {})
        for f in schema_json["fields"]
    ):
        blocked.append("generated or identity columns")
    if str(config.get("delta.enableRowTracking", "false")).lower() == "true":
        blocked.append("rowTracking")
    if blocked:
        raise _unsupported(
            f"{operation} on a table using {', '.join(sorted(set(blocked)))}",
            "Rewrite the table without that feature, or run this on delta-spark or Databricks.",
        )
    append_only = str(config.get("delta.appendOnly", "false")).lower() == "true"
    if append_only and removes:
        raise DeltaError(
            "This table is configured to only allow appends. If you would like to permit "
            "updates or deletes, use 'ALTER TABLE <table_name> SET TBLPROPERTIES "
            "(delta.appendOnly=false)'."
        )
    return _Guard(
        constraints={
            k[len("delta.constraints.") :]: v
            for k, v in config.items()
            if k.startswith("delta.constraints.")
        },
        not_null=[f["name"] for f in schema_json["fields"] if not f.get("nullable", True)],
        change_data_feed=str(config.get("delta.enableChangeDataFeed", "false")).lower() == "true",
        append_only=append_only,
    )


def _enforce(frame: DataFrame, guard: _Guard, names: list[str]) -> DataFrame:
    """Fail the job on the first written row that breaks a NOT NULL column or CHECK
    constraint, evaluated by Spark as delta-spark does."""
    writes = F.col(OP).isin(INSERT, UPDATE, SOURCE_UPDATE)
    for column in guard.not_null:
        frame = frame.filter(
            F.when(
                writes & F.col(_quoted(column)).isNull(),
                F.raise_error(
                    F.lit(
                        "[DELTA_NOT_NULL_CONSTRAINT_VIOLATED] NOT NULL constraint violated for "
                        f"column: {column}."
                    )
                ),
            ).otherwise(F.lit(True))
        )
    values = F.concat_ws(
        "\n",
        *[
            F.concat(
                F.lit(f" - {n} : "), F.coalesce(F.col(_quoted(n)).cast("string"), F.lit("null"))
            )
            for n in names
        ],
    )
    for name, expression in guard.constraints.items():
        # As in Delta, a row violates a CHECK constraint when it is false or NULL.
        frame = frame.filter(
            F.when(
                writes & ~F.coalesce(F.expr(expression), F.lit(False)),
                F.raise_error(
                    F.concat(
                        F.lit(
                            f"[DELTA_VIOLATE_CONSTRAINT_WITH_VALUES] CHECK constraint {name} "
                            f"({expression}) violated by row with values:\n"
                        ),
                        values,
                    )
                ),
            ).otherwise(F.lit(True))
        )
    return frame


_OWN_ERRORS = (
    "[DELTA_NOT_NULL_CONSTRAINT_VIOLATED]",
    "[DELTA_VIOLATE_CONSTRAINT_WITH_VALUES]",
)


def _own_error(exc: Exception) -> DeltaError | None:
    """The DeltaError behind a Spark job failure that one of our checks raised."""
    text = str(exc)
    for tag in _OWN_ERRORS:
        start = text.find(tag)
        if start >= 0:
            message = text[start:]
            for end in (" SQLSTATE:", "\n\tat ", "\nJVM stacktrace"):
                if end in message:
                    message = message[: message.index(end)]
            return DeltaError(message.strip())
    return None
