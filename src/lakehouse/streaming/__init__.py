"""Real-time payments with Structured Streaming: the names every streaming lesson shares.

The module's pipeline, lesson by lesson::

    simulator (files in the landing folder,        01  lakehouse.streaming.simulator
               and the Kafka topic payment_events)
      -> bronze.payment_events (raw, lineage)       02  lakehouse.streaming.pipeline
      -> silver.payment_events (+ _quarantine)      02
      -> windowed aggregates                        03  lakehouse.streaming.windows
      -> gold.payment_risk_windows (foreachBatch)   04  lakehouse.streaming.upsert
      -> gold.payment_alerts                        05  lakehouse.streaming.risk
      -> ops.stream_metrics, restarts, drills       06  lakehouse.streaming.operations

Each stream has one checkpoint of its own under ``<lake>/<catalog>/_checkpoints/streaming/``;
on Databricks set ``LAKEHOUSE_LAKE`` to a Unity Catalog volume so files and checkpoints live in
governed storage.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager

LANDING_NAME = "payment_events"  # <lake>/<catalog>/_landing/payment_events
# The Kafka topic the same stream is published to, one message per line, keyed by customer id
# (a customer's payments keep their order within a partition).
TOPIC = "payment_events"
TOPIC_PARTITIONS = 4

BRONZE = "bronze.payment_events"
SILVER = "silver.payment_events"
QUARANTINE = "silver.payment_events_quarantine"
RISK_WINDOWS = "gold.payment_risk_windows"
ALERTS = "gold.payment_alerts"
METRICS = "ops.stream_metrics"


# Delta's idempotent DML: a MERGE/UPDATE/DELETE whose (app id, version) the table already
# committed is skipped. Session-wide, so set for one write and always unset.
TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"


@contextmanager
def idempotent_writes(session, app_id: str, version: int):
    """Within the block, Delta writes of ``session`` are transaction (``app_id``, ``version``):
    the foreachBatch form of exactly-once (version = the batch id). Under Spark Connect the
    batch's session is the notebook's server session, hence the unset in ``finally``.

    >>> with idempotent_writes(batch_df.sparkSession, app_id, batch_id):  # doctest: +SKIP
    ...     DeltaTable.forName(batch_df.sparkSession, table).merge(...).execute()
    """
    session.conf.set(TXN_APP_ID, app_id)
    session.conf.set(TXN_VERSION, str(version))
    try:
        yield
    finally:
        session.conf.unset(TXN_APP_ID)
        session.conf.unset(TXN_VERSION)


def landing(spark) -> str:
    """The folder the simulator writes event files to:
    ``<lake>/<catalog>/_landing/payment_events``."""
    from lakehouse.autoloader import landing_location

    return landing_location(spark, LANDING_NAME)


def checkpoint(spark, stream: str) -> str:
    """The checkpoint of the stream named ``stream`` (e.g. ``"silver"``), one folder per stream:
    ``<lake>/<catalog>/_checkpoints/streaming/<stream>``."""
    from lakehouse.course import checkpoint_location

    return checkpoint_location(spark, f"streaming/{stream}")


def reset_checkpoint(spark, stream: str) -> None:
    """Forget what the stream ``stream`` has read: the next run starts from the beginning."""
    shutil.rmtree(checkpoint(spark, stream), ignore_errors=True)


__all__ = [
    "ALERTS",
    "BRONZE",
    "LANDING_NAME",
    "METRICS",
    "QUARANTINE",
    "RISK_WINDOWS",
    "SILVER",
    "TOPIC",
    "TOPIC_PARTITIONS",
    "TXN_APP_ID",
    "TXN_VERSION",
    "checkpoint",
    "idempotent_writes",
    "landing",
    "reset_checkpoint",
]
