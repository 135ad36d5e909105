"""lakehouse.governance.vault without Spark: Luhn, the brute force over a card's hash, the HMAC's
pads against Python's hmac, secrets from the environment and the lake, the Delta log replay."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from lakehouse.governance import vault

PAN = "5555551234567899"  # Luhn-valid, in a test BIN


def test_luhn():
    assert vault.luhn_valid("4111111111111111")
    assert vault.luhn_valid(PAN)
    assert not vault.luhn_valid("4111111111111112")
    assert not vault.luhn_valid("41111111x1111111")
    assert vault.luhn_check_digit("411111111111111") == "1"
    assert vault.luhn_check_digit("37828224631000") == "5"  # 15 digits (American Express)


def test_a_plain_hash_is_brute_forced_through_the_luhn_candidates():
    attack = vault.brute_force_pan(hashlib.sha256(PAN.encode()).hexdigest(), "555555", "7899")
    assert attack.found == PAN
    assert attack.space == 10**6 and attack.luhn_candidates == 10**5
    assert 0 < attack.hashed <= attack.luhn_candidates
    table = vault.search_space(attack)
    assert table["numbers_left"].tolist() == [10**16, 10**6, 10**5, 1]


def test_a_keyed_token_resists_the_same_attack():
    token = vault.hmac_sha256_hex(PAN, b"k" * 32)
    attack = vault.brute_force_pan(token, "555555", "7899", length=13)  # 3 unknown: fast
    assert attack.found is None and attack.hashed == attack.luhn_candidates == 100


def test_the_brute_force_works_for_15_digits_and_reports_progress():
    amex = "378282246310005"
    seen = []
    attack = vault.brute_force_pan(
        hashlib.sha256(amex.encode()).hexdigest(), "378282", "0005", length=15,
        progress=lambda chunks: seen.append(len(chunks)) or chunks,
    )  # fmt: skip
    assert attack.found == amex and attack.luhn_candidates == 10**4 and seen == [1]


@pytest.mark.parametrize(("bin6", "last4"), [("41111", "1111"), ("411111", "11a1"), (None, "1")])
def test_the_brute_force_refuses_what_is_not_a_bin_and_last4(bin6, last4):
    with pytest.raises(ValueError, match="6 and 4 digits"):
        vault.brute_force_pan("00", bin6, last4)


@pytest.mark.parametrize("key", [b"k" * 32, b"short", bytes(range(200))])
def test_the_pads_give_python_hmac(key):
    ipad, opad = vault._pads(key)
    message = "Søren@example.com".encode()
    inner = hashlib.sha256(ipad + message).digest()
    assert hashlib.sha256(opad + inner).hexdigest() == hmac.new(key, message, "sha256").hexdigest()


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="an HMAC key is needed"):
        vault._pads(b"")


def test_a_secret_comes_from_the_environment_first(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(tmp_path))
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    value = base64.b64encode(b"x" * 32).decode()
    monkeypatch.setenv("LAKEHOUSE_SECRET_LAKEHOUSE_VAULT_MASTER_KEY", value)
    assert vault.secret(vault.SCOPE, vault.MASTER_KEY) == b"x" * 32
    assert not (tmp_path / "lakehouse" / "_secrets").exists()


def test_a_local_secret_is_made_once_readable_by_its_owner_only(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(tmp_path))
    monkeypatch.setenv("LAKEHOUSE_CATALOG", "vault_tests")
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("LAKEHOUSE_SECRET_LAKEHOUSE_VAULT_CARD_TOKEN_KEY", raising=False)
    first = vault.secret(vault.SCOPE, vault.TOKEN_KEY)
    assert len(first) == 32 and vault.secret(vault.SCOPE, vault.TOKEN_KEY) == first
    path = tmp_path / "vault_tests" / "_secrets" / vault.SCOPE / vault.TOKEN_KEY
    assert path.stat().st_mode & 0o777 == 0o600


def test_secrets_refuse_bad_names_and_bad_keys(monkeypatch):
    with pytest.raises(ValueError, match="secret scope"):
        vault.secret_text("a/b", "k")
    monkeypatch.setenv("LAKEHOUSE_SECRET_S_K", base64.b64encode(b"12345").decode())
    with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
        vault.secret("s", "k")


def test_the_log_replay_keeps_the_files_of_the_current_version(tmp_path):
    log = tmp_path / "_delta_log"
    log.mkdir()

    def add(path, columns):
        stats = {"numRecords": 1, "minValues": dict.fromkeys(columns, "a"), "maxValues": {}}
        return {"add": {"path": path, "stats": json.dumps(stats)}}

    commits = [
        [{"commitInfo": {}}, add("a.parquet", ["customer_sk", "email"])],
        [{"remove": {"path": "a.parquet"}}, add("b.parquet", ["customer_sk"])],
    ]
    for version, actions in enumerate(commits):
        (log / f"{version:020d}.json").write_text("\n".join(json.dumps(a) for a in actions))
    current, every = vault.read_log(tmp_path)
    assert list(current) == ["b.parquet"]
    assert [a["version"] for a in every] == [0, 1]


def test_databricks_statements_use_the_secret_function_and_masks():
    text = "\n".join(vault.databricks_statements("main"))
    assert "unbase64(secret('lakehouse_vault', 'master_key'))" in text
    assert "try_aes_decrypt" in text and "is_account_group_member('fraud_ops')" in text
    assert "ALTER COLUMN email_enc SET MASK main.governance.open_for_fraud_ops" in text
    assert "'delta.dataSkippingStatsColumns' = 'customer_sk,country" in text
    assert "TEMPORARY" not in text


def test_the_package_answers_name_the_tables():
    assert vault.VAULT_TABLE in vault.vault_sql() and "'GCM'" in vault.vault_sql()
    assert "try_aes_decrypt" in vault.revealed_view_sql()
    assert "LEFT JOIN" in vault.revealed_view_sql()
