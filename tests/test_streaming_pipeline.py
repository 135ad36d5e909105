"""The streaming Bronze -> Silver pipeline: each transformation on small explicit batch frames
(nulls, threshold edges, night-time edges per time zone, customers without history), then the
three streams end to end on a small simulated landing, and the checks catching wrong answers."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.streaming import pipeline as p


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(lake))
    mp.setenv("LAKEHOUSE_CATALOG", "streaming_pipeline_tests")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("embedded", scale="tiny")
    yield session
    mp.undo()


VALID = {
    "transaction_id": "TX0000000001",
    "event_ts": "2026-07-01T00:10:00.000Z",
    "ingest_ts": "2026-07-01T00:10:02.500Z",
    "customer_id": "C000001",
    "merchant_id": "M000001",
    "merchant_category": "grocery",
    "amount": "92.00",
    "currency": "EUR",
    "card_network": "visa",
    "card_last4": "1234",
    "channel": "pos",
    "country": "DE",
    "city": "Berlin",
    "lat": 52.52,
    "lon": 13.4,
    "status": "approved",
    "decline_reason": None,
    "fraud_score": 0.1,
    "is_fraud": False,
    "device_fingerprint": None,
    "_corrupt_record": None,
    "_source_file": "file:/landing/events_0001.json",
    "_ingestion_timestamp": datetime(2026, 7, 1, 0, 11),
}


def raw(spark, *rows: dict):
    """Bronze rows: VALID with each row's overrides."""
    return spark.createDataFrame([{**VALID, **r} for r in rows], p.BRONZE_SCHEMA)


def profiles(spark, rows=()):
    return spark.createDataFrame(list(rows), p.PROFILE_SCHEMA)


# --------------------------------------------------------------------------- schema


def test_raw_schema_is_the_sources_json_schema():
    from lakehouse import bronze

    assert p.RAW_SCHEMA == bronze.source("payments.transactions").raw_schema
    assert p.RAW_SCHEMA["amount"].dataType.simpleString() == "string"
    assert "device_fingerprint" in p.RAW_SCHEMA.fieldNames()


def test_every_city_has_a_time_zone():
    from zoneinfo import ZoneInfo

    from lakehouse.datagen._reference import LOCATIONS

    for loc in LOCATIONS:
        ZoneInfo(p.CITY_TIME_ZONES[loc.city])  # a real IANA name


# --------------------------------------------------------------------------- validation


def test_validation_reasons(spark):
    bronze_df = raw(
        spark,
        {"transaction_id": "ok"},
        {"transaction_id": "corrupt", "_corrupt_record": '{"transaction_id":"TX1",'},
        {"transaction_id": "null_customer", "customer_id": None},
        {"transaction_id": "blank_currency", "currency": "  "},
        {"transaction_id": "negative", "amount": "-5.00"},
        {"transaction_id": "zero", "amount": "0.00"},
        {"transaction_id": "not_a_number", "amount": "N/A"},
        {"transaction_id": "unknown_currency", "currency": "XYZ"},
        {"transaction_id": "bad_ts", "event_ts": "yesterday"},
        {"transaction_id": "null_fraud", "is_fraud": None, "fraud_score": None},
    )
    got = {
        r.transaction_id: r._validation_errors
        for r in bronze_df.transform(p.with_validation_errors).collect()
    }
    assert got == {
        "ok": [],
        "corrupt": ["record: the JSON line did not parse (kept in _corrupt_record)"],
        "null_customer": ["customer_id: required but missing"],
        "blank_currency": ["currency: required but missing"],
        "negative": ["amount: negative amount -5.00"],
        "zero": [],
        "not_a_number": ["amount: 'N/A' is not a decimal(12,2)"],
        "unknown_currency": [
            "currency: 'XYZ' is not a known currency (USD, EUR, GBP, CAD, JPY, MXN, SGD)"
        ],
        "bad_ts": ["event_ts: 'yesterday' is not a timestamp"],
        "null_fraud": ["fraud_score: required but missing", "is_fraud: required but missing"],
    }


def test_reasons_are_classified_like_silver_validation(spark):
    from lakehouse.silver import validation

    bronze_df = raw(
        spark,
        {"_corrupt_record": "{"},
        {"merchant_id": None},
        {"amount": "-1.00"},
        {"amount": "abc"},
    )
    classes = (
        bronze_df.transform(p.with_validation_errors)
        .select(validation.defect_class(F.col(p.VALIDATION_ERRORS)[0]).alias("c"))
        .collect()
    )
    assert sorted(r.c for r in classes) == [
        "malformed_rows",
        "malformed_rows",
        "negative_amounts",
        "null_required",
    ]


def test_split_accounts_for_every_row(spark):
    validated = raw(
        spark, {"transaction_id": "a"}, {"transaction_id": "b", "amount": None}
    ).transform(p.with_validation_errors)
    quarantine_df, valid_df = p.quarantined(validated), p.valid(validated)
    assert [r.transaction_id for r in quarantine_df.collect()] == ["b"]
    assert [r.transaction_id for r in valid_df.collect()] == ["a"]
    assert quarantine_df.columns == p.QUARANTINE_SCHEMA.fieldNames()


def test_validate_names_missing_columns(spark):
    with pytest.raises(ValueError, match="lacks column.*'_corrupt_record'.*RAW_SCHEMA"):
        raw(spark, {}).drop("_corrupt_record").transform(p.with_validation_errors)


def test_parse_types_and_dedup_on_batch(spark):
    parsed = raw(
        spark,
        {"transaction_id": "a"},
        {"transaction_id": "a", "_source_file": "file:/landing/events_0002.json"},
        {"transaction_id": "b"},
    ).transform(p.parse_events)
    assert dict(parsed.dtypes)["event_ts"] == "timestamp"
    assert dict(parsed.dtypes)["amount"] == "decimal(12,2)"
    assert sorted(r.transaction_id for r in parsed.transform(p.deduplicate).collect()) == [
        "a",
        "b",
    ]


# --------------------------------------------------------------------------- enrichment


def test_amount_usd_divides_by_units_per_usd_and_rounds_half_up(spark):
    rows = [("92.00", "EUR"), ("155.00", "JPY"), ("0.09", "MXN"), ("0.45", "MXN"), ("1", "XXX")]
    df = spark.createDataFrame(rows, "amount string, currency string").select(
        F.col("amount").cast("decimal(12,2)").alias("amount"), "currency"
    )
    got = [r.amount_usd for r in df.transform(p.with_amount_usd).collect()]
    # 0.09 MXN / 18 = 0.005 -> 0.01 (half-up, not half-even 0.00); 0.45 / 18 = 0.025 -> 0.03
    assert got == [Decimal("100.00"), Decimal("1.00"), Decimal("0.01"), Decimal("0.03"), None]
    assert got[:4] == [p.expected_amount_usd(a, c) for a, c in rows[:4]]


def enriched(spark, rows, profile_rows=()):
    return (
        raw(spark, *rows)
        .transform(p.parse_events)
        .transform(p.enrich(profiles(spark, profile_rows)))
    )


def test_thresholds(spark):
    amounts = ["4999.99", "5000.00", "8999.99", "9000.00", "9999.99", "10000.00"]
    rows = [
        {"transaction_id": a, "amount": a, "currency": "USD", "city": "Atlantis"} for a in amounts
    ]
    got = {
        r.transaction_id: (r.rule_high_amount, r.is_near_threshold, r.is_reportable)
        for r in enriched(spark, rows).collect()
    }
    assert got == {
        "4999.99": (False, False, False),
        "5000.00": (True, False, False),
        "8999.99": (True, False, False),
        "9000.00": (True, True, False),
        "9999.99": (True, True, False),
        "10000.00": (True, False, True),
    }


@pytest.mark.parametrize(
    ("city", "event_ts", "night"),
    [
        ("New York", "2026-07-01T04:00:00.000Z", True),  # 00:00 EDT
        ("New York", "2026-07-01T08:59:59.999Z", True),  # 04:59:59 EDT
        ("New York", "2026-07-01T09:00:00.000Z", False),  # 05:00 EDT
        ("New York", "2026-07-01T03:59:59.000Z", False),  # 23:59:59 EDT
        ("New York", "2026-01-15T09:59:59.000Z", True),  # 04:59:59 EST (no daylight saving)
        ("Tokyo", "2026-06-30T15:00:00.000Z", True),  # 00:00 JST
        ("Tokyo", "2026-07-01T20:00:00.000Z", False),  # 05:00 JST
        ("London", "2026-07-01T00:30:00.000Z", True),  # 01:30 BST
        ("London", "2026-07-01T04:00:00.000Z", False),  # 05:00 BST
        ("Atlantis", "2026-07-01T02:00:00.000Z", False),  # no time zone: never
    ],
)
def test_night_time_in_local_time(spark, city, event_ts, night):
    (row,) = enriched(spark, [{"city": city, "event_ts": event_ts}]).collect()
    assert row.rule_night_time is night
    assert ("night_time" in row.fraud_rules) is night


def test_above_customer_average_and_cross_border(spark):
    profile_rows = [
        ("C1", "US", Decimal("100"), 3),
        ("C2", "GB", None, 0),  # a customer without history
    ]
    rows = [
        {"transaction_id": "at_5x", "customer_id": "C1", "amount": "500.00", "currency": "USD"},
        {"transaction_id": "above", "customer_id": "C1", "amount": "500.01", "currency": "USD"},
        {"transaction_id": "no_history", "customer_id": "C2", "amount": "9000.00"},
        {"transaction_id": "no_profile", "customer_id": "C9", "amount": "9000.00"},
    ]
    got = {
        r.transaction_id: (r.rule_above_customer_average, r.is_cross_border)
        for r in enriched(spark, rows, profile_rows).collect()
    }
    # VALID's country is DE: abroad for C1 (US) and C2 (GB); unknown home -> not cross-border
    assert got == {
        "at_5x": (False, True),
        "above": (True, True),
        "no_history": (False, True),
        "no_profile": (False, False),
    }


@pytest.mark.parametrize(
    ("score", "amount", "city", "tier", "rules"),
    [
        (0.1, "10.00", "Atlantis", "low", []),
        (0.49, "10.00", "Atlantis", "low", []),
        (0.5, "10.00", "Atlantis", "medium", []),
        (0.79, "10.00", "Atlantis", "medium", []),
        (0.8, "10.00", "Atlantis", "high", []),
        (0.1, "6000.00", "Atlantis", "medium", ["high_amount"]),
        (0.1, "6000.00", "Tokyo", "high", ["high_amount", "night_time"]),
        (None, "10.00", "Atlantis", "low", []),
    ],
)
def test_risk_tier(spark, score, amount, city, tier, rules):
    event_ts = "2026-06-30T16:10:00.000Z"  # 01:10 in Tokyo
    (row,) = (
        raw(spark, {"fraud_score": score, "amount": amount, "currency": "USD", "city": city})
        .withColumn("event_ts", F.lit(event_ts))
        .transform(p.parse_events)
        .transform(p.with_amount_usd)
        .transform(p.with_customer_profile(profiles(spark)))
        .transform(p.with_fraud_rules)
        .collect()
    )
    assert (row.risk_tier, row.fraud_rules) == (tier, rules)


def test_cash(spark):
    got = {
        r.channel: r.is_cash
        for r in enriched(spark, [{"channel": c} for c in ("atm", "pos", "online")]).collect()
    }
    assert got == {"atm": True, "pos": False, "online": False}


def test_silver_columns_are_the_contract(spark):
    silver_df = raw(spark, {}).transform(p.silver_events(profiles(spark)))
    assert silver_df.schema.simpleString() == p.SILVER_SCHEMA.simpleString()


def test_rules_need_their_inputs(spark):
    parsed = raw(spark, {}).transform(p.parse_events).transform(p.with_amount_usd)
    with pytest.raises(ValueError, match="'avg_amount_usd'.*with_customer_profile"):
        parsed.transform(p.with_fraud_rules)
    with pytest.raises(ValueError, match="'home_country'.*with_customer_profile"):
        parsed.transform(p.with_compliance_flags)


def test_profiles_from_history(spark):
    customers = spark.createDataFrame(
        [("C1", "US"), ("C2", "GB")], "customer_id string, country string"
    )
    payments = spark.createDataFrame(
        [
            ("C1", Decimal("100.00"), "USD", "approved"),
            ("C1", Decimal("92.00"), "EUR", "approved"),
            ("C1", Decimal("400.00"), "USD", "declined"),
            ("C7", Decimal("5.00"), "USD", "approved"),  # not a CRM customer
        ],
        "customer_id string, amount decimal(12,2), currency string, status string",
    )
    expected = spark.createDataFrame(
        [("C1", "US", Decimal("200"), 3), ("C2", "GB", None, 0)], p.PROFILE_SCHEMA
    )
    assertDataFrameEqual(p.profiles_from(customers, payments), expected)


# --------------------------------------------------------------------------- the checks


def test_check_counts_names_the_mismatch():
    ok = {
        "landed_lines": 10,
        "bronze_rows": 10,
        "silver_rows": 7,
        "quarantined_rows": 2,
        "duplicates_removed": 1,
    }
    p.check_counts(ok)
    with pytest.raises(AssertionError, match="holds 9 rows but 10 lines landed"):
        p.check_counts({**ok, "bronze_rows": 9})
    with pytest.raises(AssertionError, match="quarantined 0 .*rows are missing"):
        p.check_counts({**ok, "quarantined_rows": 0, "silver_rows": 7})
    with pytest.raises(AssertionError, match="Silver has extra rows"):
        p.check_counts({**ok, "silver_rows": 8})


# --------------------------------------------------------------------------- Kafka records


def kafka_records(spark, *values):
    """Records as Spark's Kafka source gives them, one per value (None: a message without one)."""
    rows = [
        (None if v is None else v.encode(), "payment_events", i % 2, i, datetime(2026, 7, 1, 0, 12))
        for i, v in enumerate(values)
    ]
    return spark.createDataFrame(
        rows, "value binary, topic string, partition int, offset long, timestamp timestamp"
    )


def test_kafka_messages_parse_like_file_lines_and_keep_their_address(spark):
    line = _line("TX1", "00:10:00", "00:10:01")
    broken = line[:40]
    bronze_df = p.parse_kafka_messages(kafka_records(spark, line, broken, None))
    assert bronze_df.schema.simpleString() == p.BRONZE_SCHEMA.simpleString()
    rows = bronze_df.orderBy("_kafka_offset").collect()
    assert [r.transaction_id for r in rows] == ["TX1", None, None]
    assert [r._corrupt_record for r in rows] == [None, broken, ""]
    assert [(r._kafka_topic, r._kafka_partition, r._kafka_offset) for r in rows] == [
        ("payment_events", 0, 0),
        ("payment_events", 1, 1),
        ("payment_events", 0, 2),
    ]
    assert all(r._source_file is None and r._ingestion_timestamp for r in rows)
    # the broken record and the empty message go to the quarantine with their reason
    reasons = [
        r._validation_errors
        for r in p.quarantine_events(bronze_df).orderBy("_kafka_offset").collect()
    ]
    assert reasons == [[p.UNPARSED_REASON], [p.UNPARSED_REASON]]


def test_kafka_records_need_the_connectors_columns(spark):
    with pytest.raises(ValueError, match=r"lacks column\(s\) 'topic'.*format\(\"kafka\"\)"):
        p.parse_kafka_messages(spark.createDataFrame([("x",)], "value string"))


def test_bronze_columns_fill_the_other_sources_lineage_with_typed_nulls(spark):
    from_files = raw(spark, {}).drop(*p.KAFKA_LINEAGE_COLUMNS)
    aligned = p.to_bronze_columns(from_files)
    assert aligned.schema.simpleString() == p.BRONZE_SCHEMA.simpleString()
    assert aligned.first()._kafka_offset is None
    with pytest.raises(ValueError, match="_ingestion_timestamp"):
        p.to_bronze_columns(from_files.drop("_ingestion_timestamp"))


def test_the_embedded_engine_streams_from_files_and_says_why(spark):
    source, why = p.choose_source(spark)
    assert source == "files" and "embedded engine has no Kafka connector" in why
    with pytest.raises(ValueError, match="cannot stream from Kafka: the embedded engine"):
        p.choose_source(spark, "kafka")
    with pytest.raises(ValueError, match="use 'auto', 'kafka' or 'files'"):
        p.choose_source(spark, "kinesis")


# --------------------------------------------------------------------------- streams


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A small simulated stream in a staging folder (files are moved to the landing one by one)."""
    from lakehouse.streaming import simulator

    staging = tmp_path_factory.mktemp("staging")
    config = simulator.SimulatorConfig(events=300, files=3, span_minutes=20, scenarios=False)
    return simulator.write_files(staging, config)


def _deliver(report, landing: str, names) -> None:
    Path(landing).mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(Path(report.landing) / name, Path(landing) / f".{name}")
        (Path(landing) / f".{name}").rename(Path(landing) / name)


def _versions(spark):
    from lakehouse import DeltaTable, streaming

    return {
        t: DeltaTable.forName(spark, t).history(1).select("version").first()[0]
        for t in (streaming.BRONZE, streaming.SILVER, streaming.QUARANTINE)
    }


def test_streams_end_to_end(spark, simulated):
    from lakehouse import streaming
    from lakehouse.streaming import simulator

    landing = streaming.landing(spark)
    p.reset(spark)
    shutil.rmtree(landing, ignore_errors=True)
    no_history = profiles(spark)
    first, last = simulated.file_names[:-1], simulated.file_names[-1]

    _deliver(simulated, landing, first)
    p.run_streams(spark, profiles_df=no_history)
    counts = p.reconcile(spark, sum(simulated.file_lines[:-1]))
    assert counts["duplicates_removed"] > 0 and counts["quarantined_rows"] > 0

    # a rerun without new files reads nothing and commits nothing
    before = _versions(spark)
    p.run_streams(spark, profiles_df=no_history)
    assert _versions(spark) == before

    # a new file is picked up, once
    _deliver(simulated, landing, [last])
    p.run_streams(spark, profiles_df=no_history)
    counts = p.reconcile(spark, simulated)
    assert counts["landed_lines"] == simulated.lines
    assert counts["duplicates_removed"] == len(simulated.defects["duplicates"])
    invalid = sum(len(simulated.defects[k]) for k in p.QUARANTINE_DEFECT_CLASSES)
    assert counts["quarantined_rows"] == invalid
    silver_df = spark.table(streaming.SILVER)
    truth = simulator.expected_events(simulated)
    assert p.check_against_truth(silver_df, truth) == simulated.events - invalid
    files = {
        r[0].rsplit("/", 1)[-1]: r[1]
        for r in spark.table(streaming.BRONZE).groupBy("_source_file").count().collect()
    }
    assert files == dict(zip(simulated.file_names, simulated.file_lines))


DEDUP_LINES = [
    # file 1: a, b
    ("a", "00:10:00", "00:10:01"),
    ("b", "00:11:00", "00:11:01"),
    # file 2: b redelivered (the same line), c
    ("b", "00:11:00", "00:11:01"),
    ("c", "00:30:00", "00:30:01"),
    # file 3: a redelivered (older than the watermark 00:30:01 - 15 min: dropped as too old,
    # so still once), d whose event_ts is 2 hours late but which arrives now
    ("a", "00:10:00", "00:10:01"),
    ("d", "2026-06-30T22:31:00.000Z", "00:31:00"),
]


def _line(tx: str, event_ts: str, ingest_ts: str) -> str:
    def ts(text):
        return text if "T" in text else f"2026-07-01T{text}.000Z"

    record = {k: v for k, v in VALID.items() if not k.startswith("_")}
    return json.dumps(
        {**record, "transaction_id": tx, "event_ts": ts(event_ts), "ingest_ts": ts(ingest_ts)}
    )


def test_dedup_across_micro_batches_keeps_every_valid_event(spark, tmp_path):
    spark.sql("CREATE SCHEMA IF NOT EXISTS silver")
    landing = tmp_path / "landing"
    landing.mkdir()
    for i in range(3):
        lines = [_line(*fields) for fields in DEDUP_LINES[2 * i : 2 * i + 2]]
        (landing / f"events_{i + 1:04d}.json").write_text("\n".join(lines) + "\n")
    query = (
        p.read_landing(spark, str(landing), maxFilesPerTrigger="1")
        .transform(p.silver_events(profiles(spark)))
        .writeStream.format("delta")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .toTable("silver.dedup_test")
    )
    try:
        query.awaitTermination()
        batches = [b for b in query.recentProgress if b.numInputRows > 0]
    finally:
        query.stop()
    assert len(batches) == 3, "one micro-batch per file"
    ids = sorted(r.transaction_id for r in spark.table("silver.dedup_test").collect())
    # b's redelivery in the next micro-batch is removed by the state; d (late event time,
    # current arrival) is kept: the watermark is on ingest_ts
    assert ids == ["a", "b", "c", "d"]


# --------------------------------------------------------------------------- wrong answers


@pytest.fixture(scope="module")
def simulated_bronze(spark, simulated):
    files = [str(path) for path in simulated.paths()]
    return p.with_bronze_lineage(
        spark.read.schema(p.RAW_SCHEMA)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_corrupt_record")
        .json(files)
    ).cache()


def test_truth_check_passes_the_reference(spark, simulated, simulated_bronze):
    from lakehouse.streaming import simulator

    silver_df = simulated_bronze.transform(p.silver_events(profiles(spark)))
    p.check_against_truth(silver_df, simulator.expected_events(simulated))


def test_truth_check_catches_dedup_on_the_whole_row(spark, simulated, simulated_bronze):
    from lakehouse.streaming import simulator

    # the redelivery of a row of an earlier file differs in _source_file: not a duplicate row
    wrong = (
        simulated_bronze.transform(p.with_validation_errors)
        .transform(p.valid)
        .transform(p.parse_events)
        .dropDuplicates()
        .transform(p.enrich(profiles(spark)))
    )
    with pytest.raises(AssertionError, match="repeated transaction ids"):
        p.check_against_truth(wrong, simulator.expected_events(simulated))


def test_truth_check_catches_fx_the_wrong_way_round(spark, simulated, simulated_bronze):
    from lakehouse.gold.facts import fx_per_usd
    from lakehouse.streaming import simulator

    silver_df = simulated_bronze.transform(p.silver_events(profiles(spark)))
    # amount x units per USD instead of amount / units per USD
    wrong = silver_df.withColumn(
        "amount_usd", F.round(F.col("amount") * fx_per_usd("currency"), 2).cast("decimal(12,2)")
    )
    with pytest.raises(AssertionError, match="amount_usd values are wrong"):
        p.check_against_truth(wrong, simulator.expected_events(simulated))


def test_counts_catch_a_dropped_quarantine(spark, simulated, simulated_bronze):
    validated = simulated_bronze.transform(p.with_validation_errors)
    silver_rows = simulated_bronze.transform(p.silver_events(profiles(spark))).count()
    counts = {
        "landed_lines": simulated.lines,
        "bronze_rows": simulated_bronze.count(),
        "silver_rows": silver_rows,
        "quarantined_rows": p.quarantined(validated).count(),
        "duplicates_removed": len(simulated.defects["duplicates"]),
    }
    p.check_counts(counts)
    with pytest.raises(AssertionError, match="rows are missing"):
        p.check_counts({**counts, "quarantined_rows": 0})


@pytest.fixture
def parsed_stream(spark, tmp_path):
    (tmp_path / "events_0001.json").write_text(_line("a", "00:10:00", "00:10:01") + "\n")
    return (
        p.read_landing(spark, str(tmp_path))
        .transform(p.with_validation_errors)
        .transform(p.valid)
        .transform(p.parse_events)
    )


def test_check_deduplicate_passes_the_reference(parsed_stream):
    p.check_deduplicate(parsed_stream.transform(p.deduplicate))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (
            lambda df: df.withWatermark("ingest_ts", "15 minutes").dropDuplicates(
                ["transaction_id"]
            ),
            "dropDuplicates keeps every id",
        ),
        (
            lambda df: df.withWatermark("ingest_ts", "15 minutes").dropDuplicatesWithinWatermark(),
            "keyed on .*'_source_file'",
        ),
        (
            lambda df: df.withWatermark("event_ts", "15 minutes").dropDuplicatesWithinWatermark(
                ["transaction_id"]
            ),
            "on 'event_ts'",
        ),
        (
            lambda df: df.withWatermark("ingest_ts", "2 hours").dropDuplicatesWithinWatermark(
                ["transaction_id"]
            ),
            "'2 hours'",
        ),
    ],
)
def test_check_deduplicate_catches_wrong_dedup(parsed_stream, wrong, message):
    with pytest.raises(AssertionError, match=message):
        p.check_deduplicate(wrong(parsed_stream))


def test_check_deduplicate_wants_a_stream(spark):
    with pytest.raises(AssertionError, match="streaming"):
        p.check_deduplicate(raw(spark, {}).transform(p.parse_events).transform(p.deduplicate))
