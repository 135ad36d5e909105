"""Incremental file ingestion: each file lands exactly once across runs, unparseable lines are
kept, a column that later files add is merged into the table, and re-reading the files with a
fresh checkpoint (the classic mistake) fails the check the lesson relies on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyspark.sql import functions as F

from lakehouse import autoloader, bronze

PAYMENTS = "payments.transactions"


def tx(n: int, **extra) -> dict:
    row = {
        "transaction_id": f"TX{n:010d}",
        "event_ts": "2026-06-01T00:00:00.000Z",
        "customer_id": "C000001",
        "amount": "12.50",
        "lat": 1.5,
        "is_fraud": False,
    }
    return {**row, **extra}


DAYS = {
    "2026-06-01": [tx(1), tx(2, amount=None), '{"transaction_id":"TX0000000003","amo'],
    "2026-06-08": [tx(4), tx(5)],
    "2026-06-16": [tx(6, device_fingerprint="ab12"), tx(7, device_fingerprint=None)],
}


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "autoloader_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


@pytest.fixture
def raw_root(tmp_path) -> Path:
    for day, lines in DAYS.items():
        folder = tmp_path / "raw/payments/transactions" / day
        folder.mkdir(parents=True)
        text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
        (folder / f"events_{day}.json").write_text(text)
    return tmp_path / "raw"


MANIFEST = SimpleNamespace(
    datasets={
        PAYMENTS: SimpleNamespace(
            files=[
                SimpleNamespace(path=f"payments/transactions/{day}/events_{day}.json", rows=len(x))
                for day, x in DAYS.items()
            ]
        )
    }
)


@pytest.fixture
def stream(spark, tmp_path):
    landing = str(tmp_path / "landing")
    autoloader.reset_stream(spark, PAYMENTS, landing)
    return SimpleNamespace(
        landing=landing, checkpoint=autoloader.stream_checkpoint(spark, PAYMENTS)
    )


def run(spark, stream, **kwargs):
    return autoloader.ingest_stream(
        spark, PAYMENTS, landing=stream.landing, checkpoint=stream.checkpoint, **kwargs
    )


def test_initial_schema_leaves_out_columns_added_later():
    names = autoloader.initial_schema(PAYMENTS).fieldNames()
    assert "device_fingerprint" not in names and names[-1] == "_corrupt_record"
    assert "device_fingerprint" in bronze.SOURCES[PAYMENTS].raw_schema.fieldNames()


def test_land_batches_copies_each_file_once(tmp_path, raw_root):
    batches = bronze.source_batches(PAYMENTS, raw_root)
    landing = tmp_path / "landing"
    first = autoloader.land_batches(landing, batches[:2])
    assert [Path(p).relative_to(landing).as_posix() for p in first] == [
        "2026-06-01/events_2026-06-01.json",
        "2026-06-08/events_2026-06-08.json",
    ]
    assert autoloader.land_batches(landing, batches[:2]) == []
    (landing / "2026-06-08" / ".events.json.landing").write_text("half")
    assert autoloader.landed_files(landing) == sorted(first)


def test_each_file_lands_exactly_once_and_the_schema_evolves(spark, raw_root, stream):
    batches = bronze.source_batches(PAYMENTS, raw_root)
    autoloader.land_batches(stream.landing, batches[:2])
    first = run(spark, stream)
    assert (first.rows, len(first.files), first.new_columns) == (5, 2, ())

    nothing = run(spark, stream)
    assert (nothing.rows, nothing.files) == (0, ())

    autoloader.land_batches(stream.landing, batches[2:])
    evolved = run(spark, stream)
    assert (evolved.rows, evolved.new_columns) == (2, ("device_fingerprint",))

    table_df = spark.table(bronze.bronze_table(PAYMENTS))
    assert table_df.columns[-1] == "device_fingerprint"  # appended, as addNewColumns does
    by_batch = {r[0]: r[1] for r in table_df.groupBy("_batch_id").count().collect()}
    assert by_batch == {"2026-06-01": 3, "2026-06-08": 2, "2026-06-16": 2}
    fingerprints = {
        r.transaction_id: r.device_fingerprint
        for r in table_df.select("transaction_id", "device_fingerprint").collect()
    }
    assert fingerprints["TX0000000006"] == "ab12" and fingerprints["TX0000000001"] is None
    corrupt = table_df.where(F.col("_corrupt_record").isNotNull()).collect()
    assert [r._corrupt_record for r in corrupt] == [DAYS["2026-06-01"][2]]
    assert bronze.check_bronze_table(spark, PAYMENTS, MANIFEST, raw_root)["2026-06-01"] == 3


def test_ingest_stream_from_raw_root_matches_the_arrival_replay(spark, raw_root, stream):
    """What ensure_bronze runs: every batch at once gives the same columns, in the same order."""
    report = run(spark, stream, raw_root=raw_root)
    assert report.rows == 7 and report.new_columns == ("device_fingerprint",)
    assert spark.table(bronze.bronze_table(PAYMENTS)).columns[-1] == "device_fingerprint"
    assert run(spark, stream, raw_root=raw_root).rows == 0


def test_a_fresh_checkpoint_reads_every_file_again_and_fails_the_check(spark, raw_root, stream):
    run(spark, stream, raw_root=raw_root)
    shutil.rmtree(stream.checkpoint)  # the classic mistake: a new checkpoint for the same sink
    run(spark, stream)
    with pytest.raises(AssertionError, match="holds 6 rows of batch '2026-06-01'.*landed twice"):
        bronze.check_bronze_table(spark, PAYMENTS, MANIFEST, raw_root)


def test_read_landing_refuses_other_formats(spark, tmp_path):
    with pytest.raises(ValueError, match="'web.events' is parquet"):
        autoloader.read_landing(
            spark, "web.events", str(tmp_path), autoloader.initial_schema(PAYMENTS)
        )


def test_schema_hints_pin_known_types():
    hints = autoloader.schema_hints(autoloader.initial_schema(PAYMENTS))
    assert "`lat` double" in hints and "`amount` string" in hints and "`_corrupt_record`" in hints


def test_a_dropped_table_is_rebuilt_from_every_landed_file(spark, raw_root, stream):
    """The checkpoint outlives DROP TABLE; a new table must not inherit its 'already read'."""
    from lakehouse.course import drop_table

    run(spark, stream, raw_root=raw_root)
    drop_table(spark, bronze.bronze_table(PAYMENTS))
    report = run(spark, stream, raw_root=raw_root)
    assert report.rows == 7 and report.new_columns == ("device_fingerprint",)
    assert bronze.check_bronze_table(spark, PAYMENTS, MANIFEST, raw_root)["2026-06-16"] == 2
