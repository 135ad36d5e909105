"""Protecting data at rest: card tokens, a PII vault with per-customer keys, crypto-shredding,
and no personal data in the Delta log's per-file statistics.

Lesson 06_governance/03::

    governance.card_tokens          one row per card on file: bin, last4 and a keyed token
                                    (HMAC-SHA-256 of the card number under a secret key)
    governance.customer_keys        customer_sk -> that customer's data key, wrapped (AES-GCM)
                                    by the master key; no history kept (VACUUM RETAIN 0 HOURS)
    governance.pii_vault            customer_sk -> e-mail and names, each AES-GCM encrypted
                                    under the customer's own data key
    customers_revealed              the vault read back (try_aes_decrypt): NULL once shredded
    governance.customer_contacts    a copy of the contact columns whose files' statistics in
                                    the Delta log cover the non-PII columns only
    governance.protection_evidence  what was proven, one row each

**Secrets.** Keys never sit in code or tables in clear: :func:`secret` reads one the way
``dbutils.secrets.get(scope, key)`` does on Databricks (where it *is* that call); locally from
an environment variable ``LAKEHOUSE_SECRET_<SCOPE>_<KEY>`` or, failing that, from a file made
once with random bytes in the lake (``<lake>/<catalog>/_secrets/<scope>/<key>``, mode 0600).
In SQL, Databricks has the built-in ``secret(scope, key)``; :func:`define_secret_function`
gives the local session a temporary function of the same name and signature, so the lesson's
SQL runs unchanged on both.

**HMAC in SQL.** Spark has ``sha2`` but no HMAC. :func:`hmac_sha256` builds RFC 2104's
``H((K ^ opad) || H((K ^ ipad) || m))`` from ``sha2``, ``unhex`` and ``concat``, the pads
computed from the key on the driver: a Column that runs on every engine, Connect included,
with no Python UDF, and equals Python's ``hmac`` (the unit tests compare them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets as _secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.governance import GOVERNANCE_SCHEMA

LESSON = "06_governance/03"
SOURCE_TABLE = "gold.customer_360"
TOKENS_TABLE = f"{GOVERNANCE_SCHEMA}.card_tokens"
KEYS_TABLE = f"{GOVERNANCE_SCHEMA}.customer_keys"
VAULT_TABLE = f"{GOVERNANCE_SCHEMA}.pii_vault"
CONTACTS_TABLE = f"{GOVERNANCE_SCHEMA}.customer_contacts"
EVIDENCE_TABLE = f"{GOVERNANCE_SCHEMA}.protection_evidence"
REVEALED_VIEW = "customers_revealed"

SCOPE = "lakehouse_vault"  # the secret scope (a Databricks secret scope of this name)
TOKEN_KEY = "card_token_key"  # HMAC key of the card tokens
MASTER_KEY = "master_key"  # wraps every customer's data key (a KMS key's role)
KEY_BYTES = 32  # AES-256 and a full-width HMAC key

PII_COLUMNS = ("email", "first_name", "last_name")  # what the vault encrypts
# The contact copy's columns, in order: e-mail second, so "the first N columns" catches it.
CONTACT_COLUMNS = (
    "customer_sk",
    "email",
    "country",
    "signup_date",
    "first_name",
    "last_name",
    "segment",
    "lifetime_value_usd",
)
INDEXED_COLUMNS = ("customer_sk", "country", "signup_date", "segment", "lifetime_value_usd")
CONTACT_FILES = 4  # the copy is written as several files, each with its own statistics


# --------------------------------------------------------------------------- secrets


def _secret_env(scope: str, key: str) -> str:
    return "LAKEHOUSE_SECRET_" + re.sub(r"[^A-Z0-9]", "_", f"{scope}_{key}".upper())


def _local_secret_file(scope: str, key: str) -> Path:
    from lakehouse.config import settings

    return settings().catalog_path / "_secrets" / scope / key


def secret_text(scope: str, key: str) -> str:
    """A secret's value as text (base64 of random bytes for the course's keys): Databricks'
    ``dbutils.secrets.get(scope, key)`` there; locally ``LAKEHOUSE_SECRET_<SCOPE>_<KEY>``, else
    a file in the lake made once with :data:`KEY_BYTES` random bytes (mode 0600)."""
    for name, value in (("scope", scope), ("key", key)):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError(f"secret {name} {value!r}: use letters, digits, '_', '.', '-'")
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        from databricks.sdk.runtime import dbutils  # the runtime's own, on a cluster

        return dbutils.secrets.get(scope=scope, key=key)
    if os.environ.get(_secret_env(scope, key)):
        return os.environ[_secret_env(scope, key)]
    path = _local_secret_file(scope, key)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(_secrets.token_bytes(KEY_BYTES)).decode("ascii"))
    return path.read_text("ascii").strip()


def secret(scope: str, key: str) -> bytes:
    """A key: the secret ``scope``/``key`` decoded from base64 (see :func:`secret_text`)."""
    value = base64.b64decode(secret_text(scope, key), validate=True)
    if len(value) not in (16, 24, 32):
        raise ValueError(
            f"secret {scope}/{key} is {len(value)} bytes: an AES key is 16, 24 or 32 bytes "
            "(store base64 of 32 random bytes)"
        )
    return value


def define_secret_function(spark: SparkSession, keys: Sequence[str] = (MASTER_KEY,)) -> None:
    """Give the local session ``secret(scope, key) RETURNS STRING``, Databricks' built-in,
    as a temporary function over session variables holding ``keys`` of :data:`SCOPE`. Does
    nothing on Databricks, where the built-in reads the secret service (and redacts it)."""
    from lakehouse.session import engine_of

    if engine_of(spark) == "databricks":
        return
    cases = []
    for key in keys:
        variable = f"secret_{SCOPE}_{key}"
        value = secret_text(SCOPE, key)
        spark.sql(f"DECLARE OR REPLACE VARIABLE {variable} STRING DEFAULT '{value}'")
        cases.append(f"WHEN scope = '{SCOPE}' AND key = '{key}' THEN {variable}")
    spark.sql(
        "CREATE OR REPLACE TEMPORARY FUNCTION secret(scope STRING, key STRING) RETURNS STRING "
        f"RETURN CASE {' '.join(cases)} END"
    )


def master_key_sql() -> str:
    """The master key as a SQL expression, the same text locally and on Databricks."""
    return f"unbase64(secret('{SCOPE}', '{MASTER_KEY}'))"


# --------------------------------------------------------------------------- card numbers

# Issuer identification numbers (the BIN, first 6 digits) of the networks' test ranges.
NETWORK_BINS = {"visa": "411111", "mastercard": "555555", "discover": "601100"}
PAN_LENGTH = 16


def luhn_check_digit(partial: str) -> str:
    """The digit that completes ``partial`` into a Luhn-valid number."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # doubled: it will sit at an odd position once the check digit is added
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def card_file(spark: SparkSession, *, seed: int = 42, source: str = SOURCE_TABLE) -> DataFrame:
    """The payment processor's card file: one card per customer of ``source`` (customer_sk,
    card_network, pan), Luhn-valid numbers in the networks' test BINs, derived from ``seed``
    and the customer so every run gives the same cards. The second customer (by customer_id)
    shares the first one's card (a household card): the same card must get one token."""
    customers = [
        r.customer_sk
        for r in spark.table(source).select("customer_sk", "customer_id").orderBy("customer_id")
        .collect()
    ]  # fmt: skip
    rows = []
    for i, sk in enumerate(customers):
        if i == 1:
            rows.append((sk, rows[0][1], rows[0][2]))
            continue
        digest = hashlib.sha256(f"{seed}:{sk}".encode()).hexdigest()
        network = sorted(NETWORK_BINS)[int(digest[:2], 16) % len(NETWORK_BINS)]
        body = NETWORK_BINS[network] + "".join(str(int(c, 16) % 10) for c in digest[2:11])
        rows.append((sk, network, body + luhn_check_digit(body)))
    return spark.createDataFrame(rows, "customer_sk bigint, card_network string, pan string")


@dataclass(frozen=True)
class Attack:
    """A brute force over the card numbers a BIN and last 4 digits leave."""

    found: str | None  # the card number whose hash matched, or None
    space: int  # numbers with this BIN and last 4 (10 ** unknown digits)
    luhn_candidates: int  # of which Luhn-valid: the ones worth hashing
    hashed: int  # hashes computed before the match (or all of them)


def brute_force_pan(
    target_hex: str,
    bin6: str,
    last4: str,
    *,
    length: int = PAN_LENGTH,
    hash_hex: Callable[[bytes], str] = lambda b: hashlib.sha256(b).hexdigest(),
    progress: Callable[[Iterable], Iterable] | None = None,
    chunk: int = 10_000,
) -> Attack:
    """Recover a card number from its hash: every middle digit string between the known BIN
    and last 4, kept only when Luhn-valid (numpy, vectorised), then hashed with ``hash_hex``
    (SHA-256 by default, what ``sha2(pan, 256)`` computes) until one equals ``target_hex``.
    ``progress`` wraps the chunks' loop (e.g. ``tqdm``).

    >>> brute_force_pan(hashlib.sha256(b"4111111111111111").hexdigest(), "411111", "1111").found
    '4111111111111111'
    """
    if not (re.fullmatch(r"\d{6}", bin6 or "") and re.fullmatch(r"\d{4}", last4 or "")):
        raise ValueError(f"bin6 {bin6!r} and last4 {last4!r}: 6 and 4 digits")
    unknown = length - 10
    if not 1 <= unknown <= 7:
        raise ValueError(f"length {length}: between 11 and 17 digits (7 unknown at most)")
    middles = np.arange(10**unknown, dtype=np.int32)
    doubled_digit = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.int32)  # 2d, less 9 if > 9
    # Luhn: from the right, every second digit doubled; the sum must end in 0
    digits = [int(c) for c in bin6] + [None] * unknown + [int(c) for c in last4]
    totals = np.zeros(len(middles), dtype=np.int32)
    for i, d in enumerate(digits):
        doubled = (length - 1 - i) % 2 == 1
        if d is None:  # a middle digit: vectorised over every candidate
            column = (middles // 10 ** (length - 5 - i)) % 10
            totals += doubled_digit[column] if doubled else column
        else:
            totals += int(doubled_digit[d]) if doubled else d
    candidates = middles[totals % 10 == 0]
    chunks = [candidates[i : i + chunk] for i in range(0, len(candidates), chunk)]
    hashed = 0
    target = target_hex.lower()
    for part in progress(chunks) if progress else chunks:
        middle = np.char.zfill(part.astype(str), unknown)
        for pan in np.char.add(np.char.add(bin6, middle), last4).tolist():
            hashed += 1
            if hash_hex(pan.encode()) == target:
                return Attack(pan, 10**unknown, len(candidates), hashed)
    return Attack(None, 10**unknown, len(candidates), hashed)


def search_space(attack: Attack, *, length: int = PAN_LENGTH) -> pd.DataFrame:
    """How many card numbers are left at each step of the attack (for the lesson's chart)."""
    return pd.DataFrame(
        {
            "step": [
                f"any {length} digits",
                "BIN and last 4 known",
                "Luhn-valid",
                "hash matches",
            ],
            "numbers_left": [
                10**length,
                attack.space,
                attack.luhn_candidates,
                int(bool(attack.found)),
            ],
        }
    )


# --------------------------------------------------------------------------- keyed tokens

_BLOCK = 64  # SHA-256's block size in bytes


def _pads(key: bytes) -> tuple[bytes, bytes]:
    if not key:
        raise ValueError("an HMAC key is needed: read it with vault.secret(scope, key)")
    key = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def hmac_sha256(message: Column | str, key: bytes) -> Column:
    """HMAC-SHA-256 of a string column under ``key``, as 64 hex characters (what Python's
    ``hmac.new(key, m, 'sha256').hexdigest()`` gives), built from Spark SQL's ``sha2``: no
    UDF, the same on every engine. NULL in, NULL out.

    >>> key = secret(SCOPE, TOKEN_KEY)
    >>> cards.select(hmac_sha256("pan", key).alias("card_token"))  # doctest: +SKIP
    """
    ipad, opad = _pads(key)
    message = F.col(message) if isinstance(message, str) else message
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), F.encode(message, "UTF-8")), 256))
    return F.sha2(F.concat(F.lit(opad), inner), 256)


def hmac_sha256_hex(message: str, key: bytes) -> str:
    """The same token in Python: the yardstick of :func:`hmac_sha256`."""
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


TOKEN_COLUMNS = ("customer_sk", "card_network", "bin", "last4", "card_token")


def card_tokens(cards_df: DataFrame, key: bytes) -> DataFrame:
    """The tokenized card file (:data:`TOKEN_COLUMNS`): the first 6 and last 4 digits (what
    PCI DSS allows to keep) and the HMAC token; the card number itself is dropped. The lesson's
    task asks for this; it is the complete answer."""
    return cards_df.select(
        "customer_sk",
        "card_network",
        F.substring("pan", 1, 6).alias("bin"),
        F.substring("pan", -4, 4).alias("last4"),
        hmac_sha256(F.col("pan"), key).alias("card_token"),
    )


def check_card_tokens(tokens_df: DataFrame, cards_df: DataFrame, key: bytes) -> str:
    """The tokens against the card file: no card number kept, one row per card, each token
    the HMAC of its card under ``key``, the same card the same token. A plain hash is
    brute-forced to prove the point."""
    tokens = tokens_df.toPandas()
    cards = cards_df.toPandas()
    pans = set(cards["pan"])
    for column in tokens.columns:
        values = tokens[column].astype(str)
        if column == "pan" or values.isin(pans).any():
            raise AssertionError(
                f"{TOKENS_TABLE} keeps the card number (column {column}): keep bin, last4 and "
                "the token only; the card number must not land anywhere (PCI DSS 3.4)"
            )
    missing = [c for c in TOKEN_COLUMNS if c not in tokens.columns]
    if missing:
        raise AssertionError(f"{TOKENS_TABLE} lacks {missing}: the columns are {TOKEN_COLUMNS}")
    if len(tokens) != len(cards):
        raise AssertionError(
            f"{TOKENS_TABLE} has {len(tokens)} rows for {len(cards)} cards: one row per card"
        )
    joined = cards.merge(tokens, on="customer_sk", suffixes=("_file", ""))
    plain = joined[
        joined["card_token"] == joined["pan"].map(lambda p: hashlib.sha256(p.encode()).hexdigest())
    ]
    if len(plain):
        row = plain.iloc[0]
        attack = brute_force_pan(row["card_token"], row["bin"], row["last4"])
        raise AssertionError(
            f"card_token is a plain SHA-256 of the card number: a brute force over the BIN and "
            f"last 4 found {_mask_pan(attack.found)} after {attack.hashed:,} of "
            f"{attack.luhn_candidates:,} Luhn-valid candidates. Use a keyed hash, HMAC-SHA-256 "
            "with the secret token key (vault.hmac_sha256(pan, key))"
        )
    per_card = joined.groupby("pan")["card_token"].nunique()
    if (per_card > 1).any():
        raise AssertionError(
            f"the same card got {int(per_card.max())} different tokens (customers sharing a "
            "card): a token must be deterministic, one card one token, or joins and counts "
            "break; no per-row or per-customer salt: the secret key is what protects it"
        )
    expected = joined["pan"].map(lambda p: hmac_sha256_hex(p, key))
    if not (joined["card_token"] == expected).all():
        raise AssertionError(
            "card_token is not HMAC-SHA-256 of the card number under the token key "
            "(vault.hmac_sha256(pan, key) with key = vault.secret(SCOPE, TOKEN_KEY))"
        )
    if not (
        (joined["bin"] == joined["pan"].str[:6]) & (joined["last4"] == joined["pan"].str[-4:])
    ).all():
        raise AssertionError("bin is the card number's first 6 digits, last4 its last 4")
    return (
        f"card tokens ok: {len(tokens)} cards, HMAC-SHA-256 tokens under the secret key, one "
        "token per card (the shared card too), no card number stored"
    )


def _mask_pan(pan: str | None) -> str:
    return "nothing" if not pan else pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


# --------------------------------------------------------------------------- keys and vault


def create_keys_table(spark: SparkSession) -> str:
    """(Re)create ``governance.customer_keys`` empty. It keeps no history: deletion vectors
    off (a DELETE rewrites the file) and deleted files expire at once, so a VACUUM after a
    shred removes the key's last copy (time travel to it is meant to be impossible)."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    spark.sql(
        f"CREATE OR REPLACE TABLE {KEYS_TABLE} (customer_sk BIGINT NOT NULL, "
        "wrapped_key BINARY NOT NULL) USING delta TBLPROPERTIES ("
        "'delta.enableDeletionVectors' = 'false', "
        "'delta.deletedFileRetentionDuration' = 'interval 0 hours')"
    )
    spark.sql(f"VACUUM {KEYS_TABLE} RETAIN 0 HOURS")  # the previous run's keys, gone
    return KEYS_TABLE


def provision_keys(spark: SparkSession, *, source: str = SOURCE_TABLE) -> int:
    """Give every customer of ``source`` (and of the vault, when it exists) who has no key
    row a new data key: :data:`KEY_BYTES` random bytes from the OS, wrapped in SQL with
    ``aes_encrypt(data_key, master key, 'GCM')`` and merged in. Returns how many were made
    (0 on a rerun): the nightly job of a real vault."""
    sources = f"SELECT customer_sk FROM {source}"
    if spark.catalog.tableExists(VAULT_TABLE):
        sources += f" UNION SELECT customer_sk FROM {VAULT_TABLE}"
    missing = [
        r.customer_sk
        for r in spark.sql(
            f"SELECT customer_sk FROM ({sources}) WHERE customer_sk IS NOT NULL "
            f"EXCEPT SELECT customer_sk FROM {KEYS_TABLE}"
        ).collect()
    ]
    if not missing:
        return 0
    fresh = spark.createDataFrame(
        [(sk, _secrets.token_bytes(KEY_BYTES)) for sk in sorted(missing)],
        "customer_sk bigint, data_key binary",
    )
    fresh.createOrReplaceTempView("_fresh_data_keys")
    spark.sql(
        f"""MERGE INTO {KEYS_TABLE} AS k
USING (SELECT customer_sk, aes_encrypt(data_key, {master_key_sql()}, 'GCM') AS wrapped_key
       FROM _fresh_data_keys) AS n
ON k.customer_sk = n.customer_sk
WHEN NOT MATCHED THEN INSERT (customer_sk, wrapped_key) VALUES (n.customer_sk, n.wrapped_key)"""
    )
    spark.catalog.dropTempView("_fresh_data_keys")
    return len(missing)


def data_keys_sql() -> str:
    """Each customer's data key, unwrapped with the master key: a subquery for joins."""
    return (
        f"SELECT customer_sk, try_aes_decrypt(wrapped_key, {master_key_sql()}, 'GCM') "
        f"AS data_key FROM {KEYS_TABLE}"
    )


def vault_sql() -> str:
    """``governance.pii_vault`` from the source: the lesson's task asks for this; it is the
    complete answer."""
    encrypted = ",\n       ".join(
        f"aes_encrypt(c.{col}, k.data_key, 'GCM') AS {col}_enc" for col in PII_COLUMNS
    )
    return f"""CREATE OR REPLACE TABLE {VAULT_TABLE} USING delta AS
SELECT c.customer_sk,
       {encrypted}
FROM {SOURCE_TABLE} AS c
JOIN ({data_keys_sql()}) AS k ON k.customer_sk = c.customer_sk"""


def check_vault(spark: SparkSession, *, shredded: Iterable[int] = ()) -> str:
    """The vault against the source: keyed by ``customer_sk``, no clear PII, one row per
    customer, each value opening (AES-GCM) with its own customer's data key and with no
    other key; the rows of ``shredded`` customers must open with nothing at all."""
    vault = spark.table(VAULT_TABLE)
    source = spark.table(SOURCE_TABLE).select("customer_sk", *PII_COLUMNS)
    strings = [f.name for f in vault.schema.fields if f.dataType.simpleString() == "string"]
    if strings:
        clear = vault.select(*strings).limit(5).toPandas()
        emails = clear.apply(lambda s: s.astype(str).str.contains("@").any())
        example = next((c for c in strings if emails.get(c)), strings[0])
        if emails.any():
            raise AssertionError(
                f"the vault is keyed by e-mail (column {example} holds addresses in clear): a "
                "vault's key must say nothing about the person; key it by customer_sk, the "
                "surrogate key every table shares, and encrypt the e-mail like the rest"
            )
        raise AssertionError(
            f"the vault holds clear text in {strings}: every PII column is aes_encrypt(...)'s "
            "BINARY, named <column>_enc"
        )
    expected = ["customer_sk", *(f"{c}_enc" for c in PII_COLUMNS)]
    missing = [c for c in expected if c not in vault.columns]
    if missing:
        raise AssertionError(
            f"{VAULT_TABLE} lacks {missing}: key it by customer_sk (the surrogate key), one "
            f"<column>_enc per PII column {PII_COLUMNS}"
        )
    vault.createOrReplaceTempView("_vault_under_check")
    source.createOrReplaceTempView("_vault_source")
    opens = " AND ".join(
        f"CAST(try_aes_decrypt(v.{c}_enc, k.data_key, 'GCM') AS STRING) <=> s.{c}"
        for c in PII_COLUMNS
    )
    shredded_list = ", ".join(str(int(sk)) for sk in shredded) or "NULL"
    stats = spark.sql(
        f"""WITH keys AS ({data_keys_sql()}),
neighbours AS (SELECT customer_sk, lead(data_key) OVER (ORDER BY customer_sk) AS other_key
               FROM keys)
SELECT count(*) AS rows, count(DISTINCT v.customer_sk) AS customers,
       (SELECT count(*) FROM _vault_source) AS source_rows,
       count_if({opens} OR v.customer_sk IN ({shredded_list})) AS opens_with_own_key,
       count_if(v.customer_sk IN ({shredded_list})
                AND try_aes_decrypt(v.email_enc, k.data_key, 'GCM') IS NOT NULL) AS unshredded,
       count_if(try_aes_decrypt(v.email_enc, {master_key_sql()}, 'GCM') IS NOT NULL
                OR try_aes_decrypt(v.email_enc, n.other_key, 'GCM') IS NOT NULL)
         AS opens_with_another_key,
       count_if(v.email_enc IS NOT NULL AND try_aes_decrypt(v.email_enc, k.data_key, 'GCM') IS NULL
                AND try_aes_decrypt(v.email_enc, k.data_key, 'ECB') IS NOT NULL) AS ecb_rows
FROM _vault_under_check v
LEFT JOIN keys k ON k.customer_sk = v.customer_sk
LEFT JOIN neighbours n ON n.customer_sk = v.customer_sk
LEFT JOIN _vault_source s ON s.customer_sk = v.customer_sk"""
    ).collect()[0]
    spark.catalog.dropTempView("_vault_under_check")
    spark.catalog.dropTempView("_vault_source")
    if stats.opens_with_another_key:
        raise AssertionError(
            f"{stats.opens_with_another_key} vault rows open with a key that is not their "
            "customer's own (the master key or another customer's): one key for all customers "
            "makes shredding one customer impossible; encrypt each row with that customer's "
            "data key, unwrapped from governance.customer_keys"
        )
    if stats.ecb_rows:
        raise AssertionError(
            f"{stats.ecb_rows} vault rows are encrypted in ECB mode: equal values give equal "
            "ciphertext and nothing detects tampering; use 'GCM' (random IV, authenticated)"
        )
    if stats.rows != stats.source_rows or stats.customers != stats.rows:
        raise AssertionError(
            f"{VAULT_TABLE} has {stats.rows} rows for {stats.customers} customer_sk values, the "
            f"source {stats.source_rows} customers: one row per customer of {SOURCE_TABLE}"
        )
    if stats.unshredded:
        raise AssertionError(
            f"{stats.unshredded} shredded customers' vault rows still open: shredding deletes "
            f"the customer's key row from {KEYS_TABLE} (and VACUUMs it away)"
        )
    if stats.opens_with_own_key != stats.rows:
        raise AssertionError(
            f"{stats.rows - stats.opens_with_own_key} vault rows do not decrypt to their "
            f"customer's values with the customer's own data key: aes_encrypt(c.<column>, "
            "k.data_key, 'GCM') joined on customer_sk"
        )
    return (
        f"vault ok: {stats.rows} customers keyed by customer_sk, {len(PII_COLUMNS)} PII columns "
        "encrypted (AES-GCM), each opening with its customer's own key and no other"
    )


def wrapped_key_of(spark: SparkSession, customer_sk: int) -> bytes | None:
    row = spark.table(KEYS_TABLE).where(F.col("customer_sk") == customer_sk).first()
    return bytes(row.wrapped_key) if row else None


def shred(spark: SparkSession, customer_sk: int) -> int:
    """Crypto-shred a customer: delete their key row, then VACUUM the key table so no file
    (no earlier version) holds the key any more. Their ciphertext stays where it is, in the
    vault and in every copy of it, and opens with nothing. Returns the rows deleted."""
    before = spark.table(KEYS_TABLE).where(F.col("customer_sk") == customer_sk).count()
    spark.sql(f"DELETE FROM {KEYS_TABLE} WHERE customer_sk = {int(customer_sk)}")
    spark.sql(f"VACUUM {KEYS_TABLE} RETAIN 0 HOURS")
    return before


def table_location(spark: SparkSession, table: str) -> Path:
    """A table's folder on this machine (from ``DESCRIBE DETAIL``); raises for cloud storage,
    which the lesson's independent readers (pyarrow, Python's json) do not reach."""
    location = spark.sql(f"DESCRIBE DETAIL {table}").collect()[0]["location"]
    if location.startswith("file:"):
        location = re.sub(r"^file:(//)?", "", location)
    if not location.startswith("/"):
        raise ValueError(f"{table} lives at {location}: read it with Spark there, not a file path")
    return Path(location)


def files_holding(spark: SparkSession, table: str, column: str, value: bytes) -> tuple[int, int]:
    """Read every Parquet file in ``table``'s folder with pyarrow (not Delta: files an old
    version still lists count too) and count those where ``column`` holds ``value``. Returns
    (files holding it, files scanned)."""
    import pyarrow.parquet as pq

    files = sorted(table_location(spark, table).glob("**/*.parquet"))
    holding = sum(
        1 for f in files if value in pq.read_table(f, columns=[column]).column(0).to_pylist()
    )
    return holding, len(files)


def revealed_view_sql() -> str:
    """``customers_revealed``: the vault decrypted with each customer's key; NULL for a
    shredded customer, and no failure. The lesson's task asks for this; it is the complete
    answer."""
    clear = ",\n       ".join(
        f"CAST(try_aes_decrypt(v.{c}_enc, k.data_key, 'GCM') AS STRING) AS {c}" for c in PII_COLUMNS
    )
    return f"""CREATE OR REPLACE TEMPORARY VIEW {REVEALED_VIEW} AS
SELECT v.customer_sk,
       {clear}
FROM {VAULT_TABLE} AS v
LEFT JOIN ({data_keys_sql()}) AS k ON k.customer_sk = v.customer_sk"""


def check_revealed(spark: SparkSession, shredded_sk: int) -> str:
    """Read ``customers_revealed``: every customer's values as in the source, except the
    shredded one's, NULL, and the query must not fail on the shredded customer's row."""
    try:
        seen = spark.table(REVEALED_VIEW).toPandas()
    except Exception as error:  # noqa: BLE001 (the reader's failure is the finding)
        text = str(error)
        if "AES_CRYPTO_ERROR" in text or "Tag mismatch" in text:
            raise AssertionError(
                f"reading {REVEALED_VIEW} fails: aes_decrypt raises on a value its key does not "
                f"open (customer {shredded_sk} was shredded and has a fresh key that opens "
                "nothing of theirs); use try_aes_decrypt, which returns NULL"
            ) from None
        raise
    expected_columns = ["customer_sk", *PII_COLUMNS]
    if [c for c in expected_columns if c not in seen.columns]:
        raise AssertionError(f"{REVEALED_VIEW} has {list(seen.columns)}: {expected_columns}")
    binary = [
        c for c in PII_COLUMNS if seen[c].map(lambda v: isinstance(v, bytes | bytearray)).any()
    ]
    if binary:
        raise AssertionError(
            f"{REVEALED_VIEW}.{binary[0]} holds bytes: try_aes_decrypt returns BINARY; "
            "CAST(try_aes_decrypt(...) AS STRING)"
        )
    source = spark.table(SOURCE_TABLE).select("customer_sk", *PII_COLUMNS).toPandas()
    vault_rows = spark.table(VAULT_TABLE).count()
    if len(seen) != vault_rows or shredded_sk not in set(seen["customer_sk"]):
        raise AssertionError(
            f"{REVEALED_VIEW} has {len(seen)} rows for {vault_rows} vault rows: keep every "
            "vault row (LEFT JOIN the keys); a shredded customer reads NULL, not nothing"
        )
    joined = seen.merge(source, on="customer_sk", suffixes=("", "_source"))
    others = joined[joined["customer_sk"] != shredded_sk]
    same = (
        others[list(PII_COLUMNS)]
        .fillna("<null>")
        .eq(others[[f"{c}_source" for c in PII_COLUMNS]].fillna("<null>").to_numpy())
        .all(axis=1)
    )
    if not same.all():
        raise AssertionError(
            f"{int((~same).sum())} of {len(others)} customers do not read back as in "
            f"{SOURCE_TABLE}: decrypt with the customer's data key, unwrapped from "
            f"{KEYS_TABLE} with the master key (try_aes_decrypt(wrapped_key, "
            f"{master_key_sql()}, 'GCM')), not with the master key itself"
        )
    shredded = joined[joined["customer_sk"] == shredded_sk][list(PII_COLUMNS)]
    if shredded.notna().any(axis=None):
        raise AssertionError(
            f"customer {shredded_sk} was shredded but still reads in clear: read the vault, "
            f"not {SOURCE_TABLE}, and only through the keys in {KEYS_TABLE}"
        )
    return (
        f"{REVEALED_VIEW} ok: {len(others)} customers read back in clear, the shredded "
        f"customer reads NULL in all {len(PII_COLUMNS)} PII columns, and nothing fails"
    )


# --------------------------------------------------------------------------- log statistics


def create_contacts_copy(spark: SparkSession) -> str:
    """(Re)create ``governance.customer_contacts`` from the source as :data:`CONTACT_FILES`
    files with Delta's default statistics (the first 32 columns, e-mail and names included):
    the pre-task state of the statistics task, so the task can run again from it."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    spark.sql(
        f"CREATE OR REPLACE TABLE {CONTACTS_TABLE} USING delta AS "
        f"SELECT /*+ REPARTITION({CONTACT_FILES}, customer_sk) */ {', '.join(CONTACT_COLUMNS)} "
        f"FROM {SOURCE_TABLE}"
    )
    spark.sql(
        f"ALTER TABLE {CONTACTS_TABLE} UNSET TBLPROPERTIES IF EXISTS "
        "('delta.dataSkippingStatsColumns', 'delta.dataSkippingNumIndexedCols')"
    )
    return CONTACTS_TABLE


def read_log(location: Path) -> tuple[dict[str, dict], list[dict]]:
    """Replay a table's ``_delta_log/*.json`` commits with Python's json, no Delta reader:
    the ``add`` actions of the files in the current snapshot (by path), and every ``add``
    action ever written (with its commit's version)."""
    current: dict[str, dict] = {}
    every: list[dict] = []
    commits = sorted(
        (int(f.stem), f) for f in (location / "_delta_log").glob("*.json") if f.stem.isdigit()
    )
    for version, commit in commits:
        for line in commit.read_text("utf-8").splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "add" in action:
                current[action["add"]["path"]] = action["add"]
                every.append({**action["add"], "version": version})
            elif "remove" in action:
                current.pop(action["remove"]["path"], None)
    return current, every


def _stats(add: dict) -> dict:
    return json.loads(add.get("stats") or "{}")


def file_stats(spark: SparkSession, table: str = CONTACTS_TABLE) -> pd.DataFrame:
    """Per file of the current snapshot and per column with statistics: min and max as the
    Delta log stores them (read from the log's JSON, not through Delta)."""
    current, _ = read_log(table_location(spark, table))
    rows = []
    for path, add in sorted(current.items()):
        stats = _stats(add)
        for column in stats.get("minValues", {}):
            rows.append(
                {
                    "file": path[:12] + "…",
                    "records": stats.get("numRecords"),
                    "column": column,
                    "min": stats["minValues"].get(column),
                    "max": stats.get("maxValues", {}).get(column),
                }
            )
    return pd.DataFrame(rows, columns=["file", "records", "column", "min", "max"])


def stats_summary(spark: SparkSession, table: str = CONTACTS_TABLE) -> dict:
    """Counts for the checks and the evidence: files in the snapshot, those whose statistics
    name a PII column, the columns indexed in every file, and the commits of the table's
    history that still carry PII statistics (kept until the log's retention expires)."""
    current, every = read_log(table_location(spark, table))
    per_file = [set(_stats(a).get("minValues", {})) for a in current.values()]
    pii = set(PII_COLUMNS)
    return {
        "files": len(current),
        "pii_files": sum(1 for cols in per_file if cols & pii),
        "pii_columns": sorted(set().union(*per_file) & pii) if per_file else [],
        "indexed_everywhere": sorted(set.intersection(*per_file)) if per_file else [],
        "historic_pii_commits": len(
            {a["version"] for a in every if set(_stats(a).get("minValues", {})) & pii}
        ),
    }


def _properties(spark: SparkSession, table: str) -> dict[str, str]:
    return {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES {table}").collect()}


def check_stats(spark: SparkSession, table: str = CONTACTS_TABLE) -> str:
    """No PII in the statistics of the files the table is made of, and the non-PII columns
    (:data:`INDEXED_COLUMNS`) still indexed in every file, so data skipping works on them."""
    summary = stats_summary(spark, table)
    props = _properties(spark, table)
    listed = props.get("delta.dataSkippingStatsColumns")
    first_n = props.get("delta.dataSkippingNumIndexedCols")
    if summary["pii_files"]:
        cols = ", ".join(summary["pii_columns"])
        if listed and not set(PII_COLUMNS) & {c.strip() for c in listed.split(",")}:
            raise AssertionError(
                f"delta.dataSkippingStatsColumns is set, but {summary['pii_files']} of "
                f"{summary['files']} files were written before and the log still carries their "
                f"min/max of {cols}: the property applies to new files only; rewrite them "
                f"(INSERT OVERWRITE {table} SELECT * FROM {table})"
            )
        if first_n and not listed:
            raise AssertionError(
                f"delta.dataSkippingNumIndexedCols = {first_n} indexes the first {first_n} "
                f"columns, among them {cols}: the log keeps their min/max. Name the "
                "non-PII columns in delta.dataSkippingStatsColumns instead of counting"
            )
        raise AssertionError(
            f"{summary['pii_files']} of {summary['files']} files carry min/max of {cols} in the "
            "Delta log: set delta.dataSkippingStatsColumns to the non-PII columns "
            f"({', '.join(INDEXED_COLUMNS)}) and rewrite the files"
        )
    lost = [c for c in INDEXED_COLUMNS if c not in summary["indexed_everywhere"]]
    if lost:
        raise AssertionError(
            f"data skipping on {', '.join(lost)} is gone: the files have no statistics for "
            "them (statistics off for every column breaks data skipping, and a query on them "
            "reads every file); name the non-PII columns in delta.dataSkippingStatsColumns"
        )
    return (
        f"log statistics ok: every file of the current version has min/max of "
        f"{', '.join(INDEXED_COLUMNS)} only, no PII"
    )


# --------------------------------------------------------------------------- evidence


def write_evidence(spark: SparkSession, checks: dict[str, tuple[bool, str]]) -> str:
    """Replace this lesson's rows of ``governance.protection_evidence``, one per proof."""
    from lakehouse.governance.classification import write_evidence as write

    return write(spark, EVIDENCE_TABLE, LESSON, checks)


def check_evidence(spark: SparkSession) -> str:
    from lakehouse.governance.classification import check_evidence as check

    return check(spark, EVIDENCE_TABLE, LESSON)


# --------------------------------------------------------------------------- Databricks


def databricks_statements(catalog: str = "main") -> list[str]:
    """The Unity Catalog form: the same tables, keys from a secret scope through ``secret()``,
    a column mask that opens the vault for fraud operations only (``try_aes_decrypt`` with
    the customer's key unwrapped by the master key from the secret), statistics on non-PII
    columns for the contact copy. Create the scope and keys first with the CLI:
    ``databricks secrets create-scope lakehouse_vault`` and ``databricks secrets put-secret
    lakehouse_vault master_key`` (base64 of 32 random bytes)."""
    schema = f"{catalog}.{GOVERNANCE_SCHEMA}"
    keys, vault = f"{catalog}.{KEYS_TABLE}", f"{catalog}.{VAULT_TABLE}"
    statements = [
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"""CREATE OR REPLACE FUNCTION {schema}.open_for_fraud_ops(value BINARY, sk BIGINT)
RETURNS BINARY
RETURN CASE WHEN is_account_group_member('fraud_ops') THEN
  try_aes_decrypt(value,
    (SELECT try_aes_decrypt(k.wrapped_key, {master_key_sql()}, 'GCM')
     FROM {keys} k WHERE k.customer_sk = sk), 'GCM')
  ELSE value END""",
    ]
    statements += [
        f"ALTER TABLE {vault} ALTER COLUMN {c}_enc SET MASK {schema}.open_for_fraud_ops "
        "USING COLUMNS (customer_sk)"
        for c in PII_COLUMNS
    ]
    statements += [
        f"ALTER TABLE {catalog}.{CONTACTS_TABLE} SET TBLPROPERTIES "
        f"('delta.dataSkippingStatsColumns' = '{','.join(INDEXED_COLUMNS)}')",
        f"INSERT OVERWRITE {catalog}.{CONTACTS_TABLE} SELECT * FROM {catalog}.{CONTACTS_TABLE}",
        f"REVOKE ALL PRIVILEGES ON TABLE {keys} FROM `account users`",
    ]
    return statements


def apply_on_databricks(spark: SparkSession, catalog: str = "main") -> int:
    """Run :func:`databricks_statements` when the engine is Databricks; returns how many ran
    (0 elsewhere: they need Unity Catalog and a secret scope)."""
    from lakehouse.governance import run_on_databricks

    return run_on_databricks(spark, databricks_statements(catalog))
