"""Inventory and classification: which columns of the lakehouse hold personal and card data.

The scan, lesson 06_governance/01::

    the catalog (spark.catalog.listTables / listColumns of bronze, silver, gold)
      -> inventory                         one row per table and column
    a deterministic sample per column (Spark: up to ``sample_size`` distinct values)
      -> findings                          per column and class: what Presidio's pattern and
                                           checksum recognizers found in the values, or what the
                                           column's name says (method ``value`` or ``name``)
      -> governance.column_classification  per column and class: sensitivity, confidence,
                                           evidence; applied as column comments (``SET TAGS``
                                           on Databricks)
      -> governance.classification_evidence  the lesson's checks, one row each

The detector is Presidio's analyzer with **no language model**: a blank spaCy pipeline (its
tokenizer ships with spaCy) and a registry of pattern recognizers only (e-mail, phone numbers
through Google's libphonenumber, card numbers with the Luhn checksum, IP addresses, IBANs with
their checksum, card track data). Names and street addresses need a language model to be found
in text; here they are found by their column's name, as catalog classifiers do. The column's
name is also given to Presidio as context, which raises a match's score when the name agrees.

The ground truth comes from the generator: it knows its people (their names, e-mails, phones,
addresses, birth dates, cards and devices), so a column holds a class when its values are the
people's values of that class (or, in free text, contain them). :func:`ground_truth` computes it
over every row, so the scan's precision and recall against it are measured, not assumed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.governance import GOVERNANCE_SCHEMA

GOVERNED_SCHEMAS = ("bronze", "silver", "gold")
CLASSIFICATION_TABLE = f"{GOVERNANCE_SCHEMA}.column_classification"
EVIDENCE_TABLE = f"{GOVERNANCE_SCHEMA}.classification_evidence"
PCI_PROBE = f"{GOVERNANCE_SCHEMA}.pci_probe"

SAMPLE_SIZE = 200  # distinct values per column
MIN_CONFIDENCE = 0.5  # a finding at or above it classifies its column
HIGH_CONFIDENCE = 0.8  # a finding at or above it must be classified (the check)
SCANNED_TYPES = ("string", "date")  # numbers, booleans and timestamps hold no PII here

SENSITIVITY_LEVELS = ("public", "internal", "confidential", "restricted", "prohibited")


@dataclass(frozen=True)
class PiiClass:
    """One class of sensitive data: how sensitive, and why."""

    name: str
    sensitivity: str
    description: str

    @property
    def tag(self) -> str:
        """The value of the ``pii_class`` tag: ``EMAIL_ADDRESS`` -> ``email_address``."""
        return self.name.lower()


CLASSES: dict[str, PiiClass] = {
    c.name: c
    for c in (
        PiiClass("PERSON_NAME", "confidential", "a person's first, last or full name"),
        PiiClass("EMAIL_ADDRESS", "confidential", "an e-mail address"),
        PiiClass("PHONE_NUMBER", "confidential", "a phone number"),
        PiiClass("STREET_ADDRESS", "confidential", "a street address"),
        PiiClass("POSTAL_CODE", "internal", "a postal code: narrows a person down, with others"),
        PiiClass("DATE_OF_BIRTH", "confidential", "a date of birth"),
        PiiClass("IP_ADDRESS", "confidential", "an IP address (an online identifier)"),
        PiiClass("DEVICE_ID", "confidential", "a device fingerprint (an online identifier)"),
        PiiClass("IBAN_CODE", "restricted", "a bank account number"),
        PiiClass("CARD_LAST4", "internal", "the last 4 digits of a card: PCI allows them"),
        PiiClass("CREDIT_CARD", "restricted", "a full card number (PAN), Luhn-valid"),
        PiiClass("CVV", "prohibited", "a card verification code (CVV2, CVC2, CID)"),
        PiiClass("TRACK_DATA", "prohibited", "a card's magnetic stripe or chip track data"),
        PiiClass("PIN", "prohibited", "a PIN or PIN block"),
    )
}
# PCI DSS 3.3.1: sensitive authentication data is never stored after authorization, even
# encrypted. A full PAN may be stored only unreadable (3.5.1): in clear it is a finding too.
PCI_FORBIDDEN = ("CVV", "TRACK_DATA", "PIN")
PCI_CLEAR_PAN = "CREDIT_CARD"


def sensitivity_rank(level: str) -> int:
    """``public`` 0 ... ``prohibited`` 4; an unknown level is an error naming the levels."""
    if level not in SENSITIVITY_LEVELS:
        raise ValueError(f"unknown sensitivity {level!r}: use one of {SENSITIVITY_LEVELS}")
    return SENSITIVITY_LEVELS.index(level)


# --------------------------------------------------------------------------- the estate


def estate() -> tuple[str, ...]:
    """The course's core tables, the ones lesson 01 builds when missing: every source's Bronze
    table, the Silver tables Gold reads, the dimensions, the facts and the Customer 360. A scan
    reads every table of the schemas; the lesson's figures are stated on these, which exist
    the same whether the lesson runs alone or after the whole course."""
    from lakehouse import bronze, gold
    from lakehouse.gold import customer360, dates, dimensions, facts

    gold_tables = (
        dates.DIM_DATE,
        dimensions.DIM_CUSTOMER,
        dimensions.DIM_PRODUCT,
        dimensions.DIM_GEOGRAPHY,
        facts.FACT_SALES,
        facts.FACT_PAYMENTS,
        customer360.CUSTOMER_360,
    )
    bronze_tables = tuple(src.table for src in bronze.SOURCES.values())
    return tuple(sorted((*bronze_tables, *gold.SILVER_INPUTS, *gold_tables)))


def ensure_estate(spark: SparkSession, raw_root) -> tuple[str, ...]:
    """Build whichever table of :func:`estate` is missing (Bronze first, then Silver, the
    dimensions, the facts and the Customer 360); tables that exist are left as they are."""
    from lakehouse import bronze, gold
    from lakehouse.gold import customer360, facts

    bronze.ensure_bronze(spark, None, raw_root)
    gold.ensure_silver_inputs(spark, None, raw_root)
    facts.ensure_facts(spark, raw_root)
    customer360.ensure_customer_360(spark, raw_root)
    return estate()


# --------------------------------------------------------------------------- inventory


def inventory(spark: SparkSession, schemas: Sequence[str] = GOVERNED_SCHEMAS) -> pd.DataFrame:
    """Every table of ``schemas`` and its columns, from the catalog (works through Spark
    Connect): ``table_name``, ``column_name``, ``data_type``, ``comment``, in a stable order.
    Views and temporary views are left out: they hold no data of their own.

    >>> inventory(spark, ["silver"]).head(1)  # doctest: +SKIP
    """
    rows = []
    for schema in schemas:
        if not spark.catalog.databaseExists(schema):
            continue
        for table in spark.catalog.listTables(schema):
            if table.isTemporary or (table.tableType or "").upper() == "VIEW":
                continue
            name = f"{schema}.{table.name}"
            for column in spark.catalog.listColumns(name):
                rows.append((name, column.name, column.dataType, column.description or ""))
    frame = pd.DataFrame(rows, columns=["table_name", "column_name", "data_type", "comment"])
    return frame.sort_values(["table_name", "column_name"], ignore_index=True)


def scanned_columns(inventory_pdf: pd.DataFrame) -> pd.DataFrame:
    """The inventory's columns a scan reads: strings and dates."""
    return inventory_pdf[inventory_pdf["data_type"].isin(SCANNED_TYPES)].reset_index(drop=True)


# --------------------------------------------------------------------------- sampling


def stacked_cells(spark: SparkSession, columns_pdf: pd.DataFrame) -> DataFrame:
    """Every non-null value of the given columns as ``(table_name, column_name, value)`` text,
    all tables in one DataFrame, so a scan is one Spark job rather than one per table."""
    tables = list(dict.fromkeys(columns_pdf["table_name"]))
    if not tables:
        raise ValueError("no columns to read: the inventory found no string or date column")
    stacks = []
    for table in tables:
        names = columns_pdf.loc[columns_pdf["table_name"] == table, "column_name"].tolist()
        cells = F.explode(
            F.array(
                *[
                    F.struct(
                        F.lit(c).alias("column_name"), F.col(f"`{c}`").cast("string").alias("value")
                    )
                    for c in names
                ]
            )
        )
        stacks.append(
            spark.table(table)
            .select(cells.alias("cell"))
            .select(F.lit(table).alias("table_name"), "cell.column_name", "cell.value")
            .where(F.col("value").isNotNull())
        )
    union = stacks[0]
    for stack in stacks[1:]:
        union = union.unionByName(stack)
    return union


def sample_values(
    spark: SparkSession, columns_pdf: pd.DataFrame, *, sample_size: int = SAMPLE_SIZE
) -> dict[tuple[str, str], list[str]]:
    """Up to ``sample_size`` distinct non-null values of each column, as text, in one Spark
    job: ``{(table, column): [values]}``. The same values on every run: each column keeps the
    values with the smallest 64-bit hash, a pseudo-random choice that depends on the data only.

    Distinct values, not rows: a column of a few templates (notes typed by agents) is read
    whole, so a rare value that holds PII is not drowned by a thousand copies of "OK".
    """
    if sample_size < 1:
        raise ValueError(f"sample_size must be at least 1, got {sample_size}")
    if columns_pdf.empty:
        return {}
    from pyspark.sql import Window

    by_hash = Window.partitionBy("table_name", "column_name").orderBy("h", "value")
    rows = (
        stacked_cells(spark, columns_pdf)
        .distinct()
        .withColumn("h", F.xxhash64("value"))
        .withColumn("rank", F.row_number().over(by_hash))
        .where(F.col("rank") <= sample_size)
        .select("table_name", "column_name", "value", "h")
        .toPandas()
        .sort_values(["table_name", "column_name", "h", "value"])
    )
    samples: dict[tuple[str, str], list[str]] = {
        (r.table_name, r.column_name): [] for r in columns_pdf.itertuples(index=False)
    }
    for r in rows.itertuples(index=False):
        samples[(r.table_name, r.column_name)].append(r.value)
    return samples


# --------------------------------------------------------------------------- detection

# What a column's name says, checked on the name's words (split at "_"): the way catalog
# classifiers use metadata. A bare "name" is left out on purpose: products have names too.
NAME_RULES: tuple[tuple[str, str, float], ...] = (
    (r"^(first|last|middle|given|family|full)_name$|^surname$", "PERSON_NAME", 0.85),
    (r"e_?mail", "EMAIL_ADDRESS", 0.7),
    (r"phone|mobile|msisdn", "PHONE_NUMBER", 0.7),
    (r"(^|_)street($|_)|address_line|^(home_|billing_|shipping_)?address$", "STREET_ADDRESS", 0.85),
    (r"postal_code|post_code|postcode|(^|_)zip(_code)?$", "POSTAL_CODE", 0.85),
    (r"date_of_birth|birth_?date|^dob$", "DATE_OF_BIRTH", 0.9),
    (r"(^|_)ip(_address)?$|ip_addr", "IP_ADDRESS", 0.7),
    (r"device_(fingerprint|id)", "DEVICE_ID", 0.85),
    (r"last_?4|pan_last", "CARD_LAST4", 0.85),
    (r"card_?number|^pan$|credit_card|cc_num", "CREDIT_CARD", 0.7),
    (r"^cvv2?$|^cvc2?$|^cid$|card_verification|security_code", "CVV", 0.9),
    (r"track_?[12]|track_data|magstripe", "TRACK_DATA", 0.9),
    (r"^pin$|pin_block", "PIN", 0.9),
)  # fmt: skip

# Presidio's entity names are the classes' names, but for one.
_PRESIDIO_TO_CLASS = {"CREDIT_CARD": "CREDIT_CARD"}
# Every value recognizer needs a digit or an "@": other values are skipped at no risk.
_WORTH_ANALYZING = re.compile(r"[0-9@]")


def name_findings(column: str) -> list[tuple[str, float]]:
    """The classes a column's name suggests, with the rule's confidence.

    >>> name_findings("date_of_birth")
    [('DATE_OF_BIRTH', 0.9)]
    """
    lowered = column.lower()
    return [(cls, conf) for pattern, cls, conf in NAME_RULES if re.search(pattern, lowered)]


@cache
def _offline_tld_extractor():
    import tldextract

    # The public suffix list snapshot bundled with tldextract: no download, no cache file.
    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())


@cache
def analyzer():
    """Presidio's ``AnalyzerEngine`` with no language model, built once per process.

    A blank English spaCy pipeline tokenizes (lower-cased tokens stand in for lemmas, so the
    recognizers' context words still count) and the registry holds pattern and checksum
    recognizers only. Nothing is downloaded: e-mail domains are checked against the public
    suffix list bundled with ``tldextract``.
    """
    import spacy
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )

    class BlankSpacyEngine(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {m["lang_code"]: spacy.blank(m["lang_code"]) for m in self.models}

        def _doc_to_nlp_artifact(self, doc, language):
            return NlpArtifacts(
                entities=[],
                tokens=doc,
                tokens_indices=[t.idx for t in doc],
                lemmas=[t.lower_ for t in doc],
                nlp_engine=self,
                language=language,
                scores=[],
            )

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str):
            return _offline_tld_extractor()(pattern_text).fqdn != ""

    track_data = PatternRecognizer(
        supported_entity="TRACK_DATA",
        patterns=[
            # track 1: %B<PAN>^<NAME>^<YYMM><service code>...; track 2: ;<PAN>=<YYMM>...
            Pattern("track 1", r"%?B\d{12,19}\^[^\^]{2,26}\^\d{4}", 0.9),
            Pattern("track 2", r";?\d{12,19}=\d{4}\d{3,}\??", 0.8),
        ],
        context=["track", "stripe", "swipe"],
    )
    engine = BlankSpacyEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        OfflineEmailRecognizer(),
        PhoneRecognizer(supported_regions=PHONE_REGIONS),
        CreditCardRecognizer(),
        IpRecognizer(),
        IbanRecognizer(),
        track_data,
    ):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])


# The countries the course's customers live in: where libphonenumber looks for local numbers.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IE", "CA", "JP", "MX", "SG")


def mask_example(text: str) -> str:
    """A finding's example with its digits and letters hidden but the first of each run, so
    evidence never copies the personal data it reports: ``anna@x.com`` -> ``a***@x***.c**``."""
    return re.sub(r"(?<=[0-9A-Za-z])[0-9A-Za-z]", "*", text)


@lru_cache(maxsize=200_000)
def _analyze(value: str, context: tuple[str, ...]) -> tuple[tuple[str, float, str], ...]:
    """Presidio's best match per class in one value: ``(class, score, matched text)``. Cached:
    bronze, silver and gold hold the same values under the same column names."""
    best: dict[str, tuple[float, str]] = {}
    for result in analyzer().analyze(value, language="en", context=list(context)):
        cls = _PRESIDIO_TO_CLASS.get(result.entity_type, result.entity_type)
        if cls in CLASSES and result.score > best.get(cls, (-1.0, ""))[0]:
            best[cls] = (result.score, value[result.start : result.end])
    return tuple((cls, score, text) for cls, (score, text) in sorted(best.items()))


def value_findings(values: Iterable[str], column: str) -> list[dict]:
    """Presidio on each value, the column's name as context: per class, how many values
    matched, the best score and a masked example."""
    context = tuple(w for w in re.split(r"[_\W]+", column.lower()) if w)
    found: dict[str, dict] = {}
    for value in values:
        if not _WORTH_ANALYZING.search(value):
            continue
        for cls, score, text in _analyze(value, context):
            entry = found.setdefault(cls, {"matched": 0, "score": 0.0, "example": ""})
            entry["matched"] += 1
            if score > entry["score"]:
                entry["score"], entry["example"] = score, mask_example(text)
    return [{"pii_class": cls, **entry} for cls, entry in sorted(found.items())]


FINDING_COLUMNS = [
    "table_name",
    "column_name",
    "pii_class",
    "method",
    "matched",
    "sampled",
    "score",
    "evidence",
]


def column_findings(table: str, column: str, values: Sequence[str]) -> list[dict]:
    """Every finding of one column: its values through Presidio, and its name."""
    sampled = len(values)
    rows = []
    for f in value_findings(values, column):
        rows.append(
            {
                "table_name": table,
                "column_name": column,
                "pii_class": f["pii_class"],
                "method": "value",
                "matched": f["matched"],
                "sampled": sampled,
                "score": round(float(f["score"]), 4),
                "evidence": (
                    f"{f['pii_class']} in {f['matched']} of {sampled} sampled values "
                    f"(best score {f['score']:.2f}, e.g. {f['example']})"
                ),
            }
        )
    for cls, confidence in name_findings(column):
        rows.append(
            {
                "table_name": table,
                "column_name": column,
                "pii_class": cls,
                "method": "name",
                "matched": 0,
                "sampled": sampled,
                "score": confidence,
                "evidence": f"column name {column!r} suggests {cls}",
            }
        )
    return rows


def scan(
    spark: SparkSession,
    columns_pdf: pd.DataFrame,
    *,
    sample_size: int = SAMPLE_SIZE,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> pd.DataFrame:
    """Sample every scanned column with Spark (one job) and detect on the driver; one row per
    finding (``FINDING_COLUMNS``). ``progress`` wraps the columns' loop (e.g. ``tqdm``)."""
    samples = sample_values(spark, columns_pdf, sample_size=sample_size)
    rows: list[dict] = []
    for table, column in progress(samples) if progress else samples:
        rows.extend(column_findings(table, column, samples[(table, column)]))
    frame = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    return frame.sort_values(
        ["table_name", "column_name", "pii_class", "method"], ignore_index=True
    )


# --------------------------------------------------------------------------- classification

CLASSIFICATION_COLUMNS = [
    "table_name",
    "column_name",
    "pii_class",
    "sensitivity",
    "confidence",
    "evidence",
]


def classify(findings: pd.DataFrame, *, min_confidence: float = MIN_CONFIDENCE) -> pd.DataFrame:
    """The classification rule: every (table, column, class) whose best finding reaches
    ``min_confidence`` is classified, **whatever share of the values matched** (one row of a
    free-text column holding an e-mail makes the column personal data), with the class's
    sensitivity, that best confidence and the evidence of every method that found it. A column
    can hold several classes (notes with e-mails and phone numbers).

    The lesson's first task asks for this rule; this function is the complete answer.
    """
    if findings.empty:
        return pd.DataFrame(columns=CLASSIFICATION_COLUMNS)
    keys = ["table_name", "column_name", "pii_class"]
    grouped = findings.sort_values("score", ascending=False).groupby(keys, sort=True)
    out = grouped.agg(
        confidence=("score", "max"), evidence=("evidence", lambda e: "; ".join(e))
    ).reset_index()
    out = out[out["confidence"] >= min_confidence].copy()
    out["sensitivity"] = out["pii_class"].map(lambda c: CLASSES[c].sensitivity)
    return out[CLASSIFICATION_COLUMNS].reset_index(drop=True)


def check_classification(
    classified: pd.DataFrame,
    findings: pd.DataFrame,
    *,
    min_confidence: float = MIN_CONFIDENCE,
    high: float = HIGH_CONFIDENCE,
) -> str:
    """Fail when a finding of ``min_confidence`` or more is left unclassified (a
    high-confidence one first), when a column is classified on weaker evidence, or with the
    wrong sensitivity; the message names the columns and the likely mistake."""
    missing_columns = [c for c in CLASSIFICATION_COLUMNS if c not in classified.columns]
    if missing_columns:
        raise AssertionError(
            f"the classification lacks columns {missing_columns}: return {CLASSIFICATION_COLUMNS}"
        )
    keys = ["table_name", "column_name", "pii_class"]
    best = findings.sort_values("score", ascending=False).drop_duplicates(keys).set_index(keys)
    expected = set(best[best["score"] >= min_confidence].index)
    got = set(map(tuple, classified[keys].itertuples(index=False)))
    missing = sorted(expected - got, key=lambda k: (-best.loc[k, "score"], k))
    if missing:
        rows = best.loc[missing]
        strong = rows[rows["score"] >= high]
        kind = f"high-confidence (>= {high})" if len(strong) else f"(>= {min_confidence})"
        where = ", ".join(f"{t}.{c} ({cls})" for t, c, cls in missing[:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        classified_cols = set(
            map(tuple, classified[["table_name", "column_name"]].itertuples(index=False))
        )
        if (rows["method"] == "name").all():
            hint = (
                "these were found by their column's name (metadata): names and addresses have "
                "no pattern a recognizer can check, so keep the 'name' findings too"
            )
        elif ((rows["method"] == "value") & (rows["matched"] < rows["sampled"] / 2)).any():
            example = rows[(rows["method"] == "value") & (rows["matched"] < rows["sampled"] / 2)]
            hint = (
                "a column is personal data if any row holds it: do not require most values to "
                f"match ({example.iloc[0]['evidence']})"
            )
        elif any((t, c) in classified_cols for t, c, _ in missing):
            hint = "keep every class found in a column, not only its strongest one"
        else:
            hint = f"classify every (table, column, class) whose best score is >= {min_confidence}"
        raise AssertionError(
            f"{len(missing)} {kind} PII findings are unclassified: {where}{more}. {hint}"
        )
    extra = sorted(got - expected)
    if extra:
        known = [k for k in extra if k in best.index]
        if known:
            k = known[0]
            raise AssertionError(
                f"{len(extra)} (column, class) pairs classified on weak evidence, e.g. "
                f"{k[0]}.{k[1]} as {k[2]}: {best.loc[k, 'evidence']}. A bare pattern match "
                f"without context is weak (phone-like digits in ids, house numbers): classify "
                f"only findings with a score >= {min_confidence}"
            )
        t, c, cls = extra[0]
        raise AssertionError(f"{t}.{c} is classified as {cls} but no finding supports it")
    wrong = classified[
        classified["sensitivity"] != classified["pii_class"].map(lambda c: CLASSES[c].sensitivity)
    ]
    if not wrong.empty:
        r = wrong.iloc[0]
        raise AssertionError(
            f"{r.table_name}.{r.column_name} ({r.pii_class}) is {r.sensitivity!r}: take the "
            f"sensitivity from CLASSES ({CLASSES[r.pii_class].sensitivity!r})"
        )
    return (
        f"classification ok: {len(classified)} (column, class) pairs in "
        f"{classified['table_name'].nunique()} tables; every finding of confidence >= "
        f"{min_confidence} is classified, nothing weaker"
    )


def write_classification(spark: SparkSession, classified: pd.DataFrame) -> str:
    """Overwrite ``governance.column_classification`` with the classification (one row per
    table, column and class), so a rerun leaves the same table."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    frame = classified[CLASSIFICATION_COLUMNS].astype({"confidence": float})
    schema = (
        "table_name string, column_name string, pii_class string, sensitivity string, "
        "confidence double, evidence string"
    )
    (
        spark.createDataFrame(frame.to_dict("records") if len(frame) else [], schema)
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .saveAsTable(CLASSIFICATION_TABLE)
    )
    return CLASSIFICATION_TABLE


# --------------------------------------------------------------------------- comments and tags

MARKER = re.compile(r"\s*\[classification: [^\]]*\]")


def classification_marker(classes: Sequence[str]) -> str:
    """The text a classified column's comment carries: its classes and their highest
    sensitivity, e.g. ``[classification: EMAIL_ADDRESS, PHONE_NUMBER; confidential]``."""
    if not classes:
        raise ValueError("classification_marker needs at least one class")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}: use names from CLASSES")
    level = max((CLASSES[c].sensitivity for c in classes), key=sensitivity_rank)
    return f"[classification: {', '.join(sorted(set(classes)))}; {level}]"


def comment_with_classification(comment: str | None, classes: Sequence[str]) -> str:
    """A column's comment with its classification: the documentation kept, the marker
    replaced (never appended twice), so applying it again changes nothing.

    >>> comment_with_classification("Where the customer lives", ["STREET_ADDRESS"])
    'Where the customer lives [classification: STREET_ADDRESS; confidential]'
    """
    documentation = MARKER.sub("", comment or "").strip()
    marker = classification_marker(classes)
    return f"{documentation} {marker}" if documentation else marker


def check_comment_function(comment_fn: Callable[[str | None, Sequence[str]], str]) -> str:
    """Check a learner's ``comment_fn(comment, classes)`` on the cases that matter: no comment,
    a documented column, a rerun, and a column whose classes changed."""
    doc = "Customer's e-mail as typed at sign-up"
    marker = classification_marker(["EMAIL_ADDRESS"])
    cases = [
        (None, ["EMAIL_ADDRESS"], marker, "a column with no comment"),
        ("", ["EMAIL_ADDRESS"], marker, "a column with an empty comment"),
        (doc, ["EMAIL_ADDRESS"], f"{doc} {marker}", "a documented column"),
    ]
    for comment, classes, expected, label in cases:
        got = comment_fn(comment, classes)
        if not isinstance(got, str):
            raise AssertionError(
                f"comment_fn returned {got!r} for {label}: return the comment text"
            )
        if doc in (comment or "") and doc not in got:
            raise AssertionError(
                f"for {label} the comment became {got!r}: the column's documentation was lost; "
                "keep the existing comment and add the classification to it"
            )
        if got.strip() != expected:
            raise AssertionError(
                f"for {label} the comment is {got!r}, expected {expected!r} "
                "(the documentation, a space, then classification_marker(classes))"
            )
    once = comment_fn(doc, ["EMAIL_ADDRESS"])
    twice = comment_fn(once, ["EMAIL_ADDRESS"])
    if twice.strip() != once.strip():
        raise AssertionError(
            f"a rerun changed the comment to {twice!r}: the classification was appended again; "
            "remove an existing [classification: ...] marker before adding the new one"
        )
    changed = comment_fn(once, ["EMAIL_ADDRESS", "PHONE_NUMBER"]).strip()
    expected = f"{doc} {classification_marker(['EMAIL_ADDRESS', 'PHONE_NUMBER'])}"
    if changed != expected:
        raise AssertionError(
            f"after a reclassification the comment is {changed!r}, expected {expected!r}: "
            "replace the old marker, do not keep both"
        )
    return "comments ok: documentation kept, one marker per column, a rerun changes nothing"


def apply_classification(
    spark: SparkSession,
    classified: pd.DataFrame,
    *,
    comment_fn: Callable[[str | None, Sequence[str]], str] = comment_with_classification,
) -> pd.DataFrame:
    """Write each classified column's classes into its comment: one ``ALTER TABLE ... ALTER
    COLUMN a COMMENT '...', b COMMENT '...'`` per table (one Delta commit), only for the
    columns whose comment changes, so a rerun commits nothing. On Databricks it also sets the
    governed tags ``pii_class`` and ``sensitivity`` with ``ALTER COLUMN ... SET TAGS``.

    Returns one row per classified column: table, column, comment, changed."""
    from lakehouse.session import engine_of

    rows = []
    on_databricks = engine_of(spark) == "databricks"
    for table, group in classified.groupby("table_name", sort=True):
        current = {c.name: c.description for c in spark.catalog.listColumns(table)}
        updates = {}
        for column, column_rows in group.groupby("column_name", sort=True):
            classes = sorted(column_rows["pii_class"])
            comment = comment_fn(current.get(column), classes)
            changed = comment != (current.get(column) or "")
            rows.append((table, column, comment, changed))
            if changed:
                updates[column] = comment
            if on_databricks:
                spark.sql(databricks_tag_statement(table, column, classes))
        if updates:
            spark.sql(
                f"ALTER TABLE {table} ALTER COLUMN "
                + ", ".join(f"`{c}` COMMENT {_sql_string(text)}" for c, text in updates.items())
            )
    return pd.DataFrame(rows, columns=["table_name", "column_name", "comment", "changed"])


def databricks_tag_statement(table: str, column: str, classes: Sequence[str]) -> str:
    """The Unity Catalog form: ``ALTER TABLE t ALTER COLUMN c SET TAGS ('pii_class' = '...',
    'sensitivity' = '...')``. ``pii_class`` and ``sensitivity`` are meant as governed tags
    (an account admin declares their allowed values), which access policies match on."""
    level = max((CLASSES[c].sensitivity for c in classes), key=sensitivity_rank)
    tag = ",".join(CLASSES[c].tag for c in sorted(set(classes)))
    return (
        f"ALTER TABLE {table} ALTER COLUMN `{column}` SET TAGS "
        f"('pii_class' = {_sql_string(tag)}, 'sensitivity' = {_sql_string(level)})"
    )


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def read_comments(spark: SparkSession, tables: Iterable[str]) -> dict[tuple[str, str], str]:
    """``{(table, column): comment}`` from the catalog, for the tables given."""
    return {
        (table, c.name): c.description or ""
        for table in tables
        for c in spark.catalog.listColumns(table)
    }


# --------------------------------------------------------------------------- PCI


def pci_violations(classified: pd.DataFrame) -> pd.DataFrame:
    """The classified columns PCI DSS forbids: sensitive authentication data (CVV, track data,
    PIN) stored at all, or a full card number (PAN) stored in clear."""
    forbidden = classified["pii_class"].isin([*PCI_FORBIDDEN, PCI_CLEAR_PAN])
    return classified[forbidden].reset_index(drop=True)


def check_pci(classified: pd.DataFrame) -> str:
    """Fail when any table stores what PCI DSS forbids after authorization, naming the table,
    the column and the requirement."""
    violations = pci_violations(classified)
    if violations.empty:
        return (
            f"PCI ok: no CVV, track data, PIN or clear card number in "
            f"{classified['table_name'].nunique()} classified tables"
        )
    lines = []
    for r in violations.itertuples():
        if r.pii_class == PCI_CLEAR_PAN:
            rule = (
                "PCI DSS 3.5.1: render the PAN unreadable (a token, or the first 6 / last 4 only)"
            )
        else:
            rule = (
                "PCI DSS 3.3.1: sensitive authentication data is never stored after "
                "authorization, even encrypted; drop the column and VACUUM its old files"
            )
        lines.append(f"{r.table_name}.{r.column_name} holds {r.pii_class} ({rule})")
    raise AssertionError("PCI violation: " + "; ".join(lines))


# Card numbers published by the card networks for testing: Luhn-valid, never issued.
TEST_PANS = ("4111111111111111", "5555555555554444", "378282246310005")


def create_pci_probe(spark: SparkSession) -> str:
    """A small table that stores what PCI forbids, to prove the check refuses it: test card
    numbers, their CVV and track 2 data (no real card)."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    rows = [
        (f"TXPROBE{i:03d}", pan, f"{(i * 137 + 101) % 1000:03d}", f";{pan}=2812101{i:05d}?")
        for i, pan in enumerate(TEST_PANS, start=1)
    ]
    (
        spark.createDataFrame(
            rows, "transaction_id string, card_number string, cvv string, track2 string"
        )
        .write.format("delta")
        .mode("overwrite")
        .saveAsTable(PCI_PROBE)
    )
    return PCI_PROBE


# --------------------------------------------------------------------------- ground truth

# The generator's people: which of their attributes is which class.
TRUTH_ATTRIBUTES = {
    "first_name": "PERSON_NAME",
    "last_name": "PERSON_NAME",
    "email": "EMAIL_ADDRESS",
    "phone": "PHONE_NUMBER",
    "street": "STREET_ADDRESS",
    "postal_code": "POSTAL_CODE",
    "date_of_birth": "DATE_OF_BIRTH",
    "card_last4": "CARD_LAST4",
    "device": "DEVICE_ID",
}
# The generator writes free-text PII as its people's e-mails and phones (lakehouse.datagen:
# the "pii_in_free_text" defect); these find the candidates to look up.
_TEXT_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TEXT_PHONE = re.compile(r"\+\d{1,3}(?: \d{2,4}){2,3}")
MAJORITY = 0.5  # a structured column is of a class when most of its values are


def people_values(*, scale: str, seed: int) -> pd.DataFrame:
    """The generator's customers as ``(value, pii_class)`` pairs: every name, e-mail, phone,
    street, postal code, birth date, card's last 4 digits and device it gave them."""
    from lakehouse.datagen._common import iso_day
    from lakehouse.datagen.population import build_customers
    from lakehouse.datagen.scales import get_scale

    people = build_customers(seed, get_scale(scale))
    attributes = {
        "first_name": people.first_name,
        "last_name": people.last_name,
        "email": people.email,
        "phone": people.phone,
        "street": people.street,
        "postal_code": people.postal_code,
        "date_of_birth": iso_day(people.dob_day),
        "card_last4": people.card_last4,
        "device": people.device,
    }
    frame = pd.concat(
        [
            pd.DataFrame({"value": list(values), "pii_class": TRUTH_ATTRIBUTES[name]})
            for name, values in attributes.items()
        ],
        ignore_index=True,
    )
    return frame.drop_duplicates(ignore_index=True)


TRUTH_COLUMNS = ["table_name", "column_name", "pii_class", "rows", "matched_rows", "kind"]


def ground_truth(
    spark: SparkSession, columns_pdf: pd.DataFrame, *, scale: str, seed: int
) -> pd.DataFrame:
    """What the columns truly hold, from the generator's own people, over **every** row:

    - a column is of a class when most of its non-null values are the people's values of that
      class (``kind = 'column'``): the e-mail column, the first names...;
    - a column holds a class in free text when at least one value contains one of the people's
      e-mails or phones (``kind = 'free text'``): notes, ticket subjects, URLs.

    One Spark job joins every value with the people's values and brings back, per column, the
    matches per class and the few unmatched values holding an ``@`` or a ``+`` (the free-text
    candidates, looked up on the driver)."""
    people = people_values(scale=scale, seed=seed)
    # a value two classes share (none today) would say nothing about either
    people = people[~people["value"].duplicated(keep=False)]
    people_df = spark.createDataFrame(people[["value", "pii_class"]])
    candidate = F.when(
        F.col("pii_class").isNull() & (F.col("value").contains("@") | F.col("value").contains("+")),
        F.col("value"),
    )
    counts = (
        stacked_cells(spark, columns_pdf)
        .join(F.broadcast(people_df), "value", "left")
        .groupBy("table_name", "column_name", "pii_class", candidate.alias("candidate"))
        .agg(F.count("*").alias("n"))
        .toPandas()
    )
    rows = counts.groupby(["table_name", "column_name"])["n"].sum()
    exact = (
        counts[counts["pii_class"].notna()]
        .groupby(["table_name", "column_name", "pii_class"], as_index=False)["n"]
        .sum()
        .rename(columns={"n": "matched_rows"})
    )
    exact["rows"] = [rows[(t, c)] for t, c in zip(exact["table_name"], exact["column_name"])]
    exact = exact[exact["matched_rows"] >= MAJORITY * exact["rows"]].assign(kind="column")

    emails = set(people.loc[people["pii_class"] == "EMAIL_ADDRESS", "value"])
    phones = set(people.loc[people["pii_class"] == "PHONE_NUMBER", "value"])
    found: dict[tuple[str, str, str], int] = {}
    for r in counts[counts["candidate"].notna()].itertuples(index=False):
        hits = set()
        if any(e in emails for e in _TEXT_EMAIL.findall(r.candidate)):
            hits.add("EMAIL_ADDRESS")
        if any(p in phones for p in _TEXT_PHONE.findall(r.candidate)):
            hits.add("PHONE_NUMBER")
        for cls in hits:
            key = (r.table_name, r.column_name, cls)
            found[key] = found.get(key, 0) + int(r.n)
    structured = set(
        map(tuple, exact[["table_name", "column_name", "pii_class"]].itertuples(index=False))
    )
    free = pd.DataFrame(
        [
            (t, c, cls, rows[(t, c)], n, "free text")
            for (t, c, cls), n in found.items()
            if (t, c, cls) not in structured
        ],
        columns=TRUTH_COLUMNS,
    )
    truth = pd.concat([exact[TRUTH_COLUMNS], free], ignore_index=True)
    truth[["rows", "matched_rows"]] = truth[["rows", "matched_rows"]].astype("int64")
    return truth.sort_values(["table_name", "column_name", "pii_class"], ignore_index=True)


def precision_recall(classified: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per class and overall: the (table, column, class) triples the ground truth holds, the
    classification found, true and false positives, misses, precision and recall. Only the
    classes the ground truth can know are judged (the generator has no CVV, IBAN or IP)."""
    judged = sorted(set(TRUTH_ATTRIBUTES.values()))
    keys = ["table_name", "column_name", "pii_class"]
    got = set(
        map(tuple, classified[classified["pii_class"].isin(judged)][keys].itertuples(index=False))
    )
    want = set(map(tuple, truth[keys].itertuples(index=False)))
    rows = []
    for cls in [*judged, "all"]:
        g = {k for k in got if cls in ("all", k[2])}
        w = {k for k in want if cls in ("all", k[2])}
        tp = len(g & w)
        rows.append(
            {
                "pii_class": cls,
                "truth": len(w),
                "classified": len(g),
                "true_pos": tp,
                "false_pos": len(g - w),
                "missed": len(w - g),
                "precision": tp / len(g) if g else float("nan"),
                "recall": tp / len(w) if w else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def disagreements(classified: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The false positives and the misses, one row each, with the evidence or the truth's
    count: what a reviewer reads to improve the rules."""
    judged = set(TRUTH_ATTRIBUTES.values())
    keys = ["table_name", "column_name", "pii_class"]
    c = classified[classified["pii_class"].isin(judged)].set_index(keys)
    t = truth.set_index(keys)
    rows = [(*k, "false positive", c.loc[k, "evidence"]) for k in c.index.difference(t.index)] + [
        (
            *k,
            "missed",
            f"{t.loc[k, 'matched_rows']} of {t.loc[k, 'rows']} rows ({t.loc[k, 'kind']})",
        )
        for k in t.index.difference(c.index)
    ]
    return pd.DataFrame(rows, columns=[*keys, "outcome", "detail"]).sort_values(
        keys, ignore_index=True
    )


# --------------------------------------------------------------------------- evidence

EVIDENCE_SCHEMA = "lesson string, check_name string, passed boolean, detail string"


def write_evidence(
    spark: SparkSession, table: str, lesson: str, checks: Mapping[str, tuple[bool, str]]
) -> str:
    """Replace ``lesson``'s rows of an evidence table with one row per check: its name,
    whether it passed and what it measured. A rerun leaves the same rows."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_SCHEMA}")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {table} ({EVIDENCE_SCHEMA}) USING delta")
    rows = [(lesson, name, bool(ok), detail) for name, (ok, detail) in checks.items()]
    (
        spark.createDataFrame(rows, EVIDENCE_SCHEMA)
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"lesson = {_sql_string(lesson)}")
        .saveAsTable(table)
    )
    return table


def check_evidence(spark: SparkSession, table: str, lesson: str) -> str:
    """``lesson``'s rows of the evidence ``table`` exist and every proof passed; the first
    failure's name and detail otherwise."""
    rows = spark.table(table).where(F.col("lesson") == lesson).toPandas()
    if rows.empty:
        raise AssertionError(f"{table} has no rows of {lesson}: run the cell above")
    failed = rows[~rows["passed"]]
    if len(failed):
        r = failed.iloc[0]
        raise AssertionError(f"{len(failed)} proofs failed, first {r.check_name}: {r.detail}")
    return f"evidence ok: {len(rows)} proofs passed, recorded in {table}"


def run_check(check: Callable[[], str]) -> tuple[bool, str]:
    """``(True, message)`` when ``check()`` passes, ``(False, its error)`` when it fails: a
    check's outcome as an evidence row."""
    try:
        return True, check()
    except AssertionError as error:
        return False, str(error)
