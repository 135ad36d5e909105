"""lakehouse.governance.vault on delta-spark: the SQL HMAC against Python's, the card tokens,
the vault under per-customer keys, crypto-shredding (the key in no file afterwards), the log's
statistics read without Delta, and every wrong answer of lesson 06_governance/03's catalogue
caught by its check with its message."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from helpers.lesson_files import LessonFiles
from pyspark.sql import functions as F

from lakehouse.governance import vault

ROOT = Path(__file__).resolve().parents[1]
LESSON = LessonFiles(ROOT / "solutions/06_governance/03_protecting_data_at_rest.ipynb")

CUSTOMERS = [
    # customer_sk, customer_id, email, first_name, last_name, country, signup_date, segment, ltv
    (11, "C001", "ana.lee@example.com", "Ana", "Lee", "US", dt.date(2025, 1, 3), "vip", 120.0),
    (12, "C002", "lukas@example.de", "Lukas", "Müller", "DE", dt.date(2025, 2, 1), "consumer", 8.0),
    (13, "C003", None, "Chloé", "Dubois", "CA", dt.date(2025, 3, 9), "consumer", 0.0),
    (14, "C004", "aoife@example.ie", "Aoife", "Byrne", "IE", dt.date(2025, 4, 2), "consumer", 5.5),
    (15, "C005", "sam@example.com", "Sam", "Lee", "US", dt.date(2025, 5, 5), "corporate", 42.0),
    (16, "C006", "zoe@example.com", "Zoë", "Ng", "US", dt.date(2025, 6, 6), "consumer", 3.0),
    (17, "C007", "bo@example.com", "Bo", "Li", "US", dt.date(2025, 7, 7), "vip", 99.0),
    (18, "C008", "yan@example.com", "Yan", "Wu", "US", dt.date(2025, 8, 8), "consumer", 1.0),
]
DDL = (
    "customer_sk bigint, customer_id string, email string, first_name string, last_name string, "
    "country string, signup_date date, segment string, lifetime_value_usd double"
)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(tmp_path_factory.mktemp("lake")))
    mp.setenv("LAKEHOUSE_CATALOG", "vault_tests")
    mp.setenv("LAKEHOUSE_METASTORE", "in-memory")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("delta-spark", scale="tiny")
    for schema in (vault.SOURCE_TABLE.split(".")[0], "governance"):
        session.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    # the three governance scripts share one session: another one's table of that name goes
    session.sql(f"DROP TABLE IF EXISTS {vault.SOURCE_TABLE}")
    session.createDataFrame(CUSTOMERS, DDL).write.format("delta").mode("overwrite").saveAsTable(
        vault.SOURCE_TABLE
    )
    vault.define_secret_function(session)
    yield session
    mp.undo()


def run_cell(spark, source: str, **names) -> None:
    namespace = {"spark": spark, "vault": vault, "F": F, "print": lambda *a, **k: None, **names}
    exec(source, namespace)  # noqa: S102 (the lesson's cells)


# --------------------------------------------------------------------------- tokens


def test_the_sql_hmac_equals_python_hmac(spark):
    key = vault.secret(vault.SCOPE, vault.TOKEN_KEY)
    values = ["4111111111111111", "Søren@example.com", "", None]
    rows = (
        spark.createDataFrame([(v,) for v in values], "m string")
        .select(
            "m",
            vault.hmac_sha256("m", key).alias("t"),
            vault.hmac_sha256("m", b"x" * 100).alias("long"),
        )
        .collect()
    )
    for r in rows:
        if r.m is None:
            assert r.t is None
        else:
            assert r.t == vault.hmac_sha256_hex(r.m, key)
            assert r.long == vault.hmac_sha256_hex(r.m, b"x" * 100)


def test_the_card_file_is_luhn_valid_repeatable_and_shares_a_card(spark):
    cards = vault.card_file(spark, seed=7).toPandas()
    assert len(cards) == len(CUSTOMERS) and cards["pan"].map(vault.luhn_valid).all()
    assert cards.loc[0, "pan"] == cards.loc[1, "pan"]  # the household card
    assert cards["pan"].nunique() == len(CUSTOMERS) - 1
    assert vault.card_file(spark, seed=7).toPandas().equals(cards)
    assert not vault.card_file(spark, seed=8).toPandas()["pan"].equals(cards["pan"])


@pytest.fixture(scope="module")
def cards(spark):
    return vault.card_file(spark, seed=42)


def test_the_token_solution_passes(spark, cards):
    key = vault.secret(vault.SCOPE, vault.TOKEN_KEY)
    run_cell(spark, LESSON.cell("t1tokens"), cards_df=cards, token_key=key)
    assert vault.check_card_tokens(spark.table(vault.TOKENS_TABLE), cards, key).startswith(
        "card tokens ok"
    )
    assert vault.card_tokens(cards, key).columns == list(vault.TOKEN_COLUMNS)


@pytest.mark.parametrize("mistake", LESSON.mistakes_of("t1tokens"), ids=lambda m: m["name"])
def test_each_wrong_token_is_caught(spark, cards, mistake):
    key = vault.secret(vault.SCOPE, vault.TOKEN_KEY)
    run_cell(spark, mistake["source"], cards_df=cards, token_key=key)
    with pytest.raises(AssertionError, match=re.escape(mistake["caught_by"])):
        vault.check_card_tokens(spark.table(vault.TOKENS_TABLE), cards, key)


# --------------------------------------------------------------------------- the vault


@pytest.fixture(scope="module")
def keys(spark):
    vault.create_keys_table(spark)
    made = vault.provision_keys(spark)
    return made


def test_keys_are_made_once_per_customer_and_wrapped(spark, keys):
    assert keys == len(CUSTOMERS) and vault.provision_keys(spark) == 0
    sizes = {
        r[0]
        for r in spark.sql(f"SELECT octet_length(wrapped_key) FROM {vault.KEYS_TABLE}").collect()
    }
    assert sizes == {12 + 32 + 16}
    opened = spark.sql(f"SELECT count(data_key) FROM ({vault.data_keys_sql()})").collect()[0][0]
    assert opened == len(CUSTOMERS)


def test_the_vault_solution_and_the_package_answer_pass(spark, keys):
    run_cell(spark, LESSON.cell("t2vault1"))
    assert vault.check_vault(spark).startswith("vault ok")
    spark.sql(vault.vault_sql())
    assert vault.check_vault(spark).startswith("vault ok")


@pytest.mark.parametrize("mistake", LESSON.mistakes_of("t2vault1"), ids=lambda m: m["name"])
def test_each_wrong_vault_is_caught(spark, keys, mistake):
    run_cell(spark, mistake["source"])
    try:
        with pytest.raises(AssertionError, match=re.escape(mistake["caught_by"])):
            vault.check_vault(spark)
    finally:
        spark.sql(vault.vault_sql())


@pytest.fixture(scope="module")
def shredded(spark, keys):
    spark.sql(vault.vault_sql())
    sk = CUSTOMERS[0][0]
    before = vault.wrapped_key_of(spark, sk)
    assert vault.shred(spark, sk) == 1
    holding, scanned = vault.files_holding(spark, vault.KEYS_TABLE, "wrapped_key", before)
    assert (holding, scanned > 0) == (0, True)
    assert vault.provision_keys(spark) == 1  # a fresh key for the shredded customer
    return sk


def test_the_reveal_solution_passes_and_the_shredded_customer_reads_null(spark, shredded):
    run_cell(spark, LESSON.cell("t3reveal"))
    assert vault.check_revealed(spark, shredded).startswith("customers_revealed ok")
    row = spark.table(vault.REVEALED_VIEW).where(F.col("customer_sk") == shredded).first()
    assert (row.email, row.first_name) == (None, None)
    spark.sql(vault.revealed_view_sql())
    assert vault.check_revealed(spark, shredded).startswith("customers_revealed ok")
    assert vault.check_vault(spark, shredded=[shredded]).startswith("vault ok")
    with pytest.raises(AssertionError, match="do not decrypt to their customer's values"):
        vault.check_vault(spark)  # the shredded row opens with nothing, its own fresh key included


@pytest.mark.parametrize("mistake", LESSON.mistakes_of("t3reveal"), ids=lambda m: m["name"])
def test_each_wrong_reveal_is_caught(spark, shredded, mistake):
    run_cell(spark, mistake["source"])
    with pytest.raises(AssertionError, match=re.escape(mistake["caught_by"])):
        vault.check_revealed(spark, shredded)


# --------------------------------------------------------------------------- statistics


def test_the_copy_carries_pii_statistics_until_the_task(spark):
    vault.create_contacts_copy(spark)
    summary = vault.stats_summary(spark)
    assert summary["pii_files"] == summary["files"] > 0
    with pytest.raises(AssertionError, match="set delta.dataSkippingStatsColumns"):
        vault.check_stats(spark)
    run_cell(spark, LESSON.cell("t4stats1"))
    assert vault.check_stats(spark).startswith("log statistics ok")
    assert vault.stats_summary(spark)["historic_pii_commits"] > 0  # the old commits keep them
    assert set(vault.file_stats(spark)["column"]) == set(vault.INDEXED_COLUMNS)


@pytest.mark.parametrize("mistake", LESSON.mistakes_of("t4stats1"), ids=lambda m: m["name"])
def test_each_wrong_statistics_fix_is_caught(spark, mistake):
    cell = LESSON.cell("t4stats1")
    start, end = cell.index("# BEGIN SOLUTION"), cell.index("# END SOLUTION\n") + 15
    run_cell(spark, cell[:start] + mistake["source"] + cell[end:])
    with pytest.raises(AssertionError, match=re.escape(mistake["caught_by"])):
        vault.check_stats(spark)


def test_the_evidence_table(spark):
    vault.write_evidence(spark, {"a proof": (True, "1 row"), "another": (True, "2 rows")})
    assert vault.check_evidence(spark).startswith("evidence ok: 2 proofs")
    vault.write_evidence(spark, {"a proof": (False, "it failed")})
    with pytest.raises(AssertionError, match="a proof: it failed"):
        vault.check_evidence(spark)
