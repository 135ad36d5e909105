"""lakehouse.governance.classification: Presidio's offline recognizers on the values that
matter (a Luhn-valid card and one digit off, a fictional phone, an e-mail in a URL), with no
network; the classification rule and its check; comments applied idempotently; the PCI check;
the ground truth from the generator's people; and every wrong answer of lesson
06_governance/01's catalogue caught by its check with its message."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest
from helpers.lesson_files import LessonFiles

from lakehouse.governance import classification as gc

ROOT = Path(__file__).resolve().parents[1]
LESSON = LessonFiles(ROOT / "solutions/06_governance/01_inventory_and_classification.ipynb")


# --------------------------------------------------------------------------- detection


def test_recognizers_validate_what_they_match():
    found = {
        v: gc.value_findings([v], c)
        for v, c in (
            ("4111 1111 1111 1111", "card_number"),
            ("4111 1111 1111 1112", "card_number"),  # fails Luhn
            ("+44 203 555 0147", "phone"),
            ("+1 555 210 3344", "phone"),  # the fictional 555 exchange
            ("https://shop.example.com/search?q=anna.smith@example.org", "page_url"),
            ("GB82 WEST 1234 5698 7654 32", "iban"),
            ("10.20.30.40", "client"),
            (";4111111111111111=28121010000012300000?", "raw"),
            ("C000123", "customer_id"),
        )
    }
    classes = {v: {f["pii_class"] for f in fs} for v, fs in found.items()}
    assert classes["4111 1111 1111 1111"] == {"CREDIT_CARD"}
    assert classes["4111 1111 1111 1112"] == set()
    assert classes["+44 203 555 0147"] == {"PHONE_NUMBER"}
    assert classes["+1 555 210 3344"] == set()
    assert classes["https://shop.example.com/search?q=anna.smith@example.org"] == {"EMAIL_ADDRESS"}
    assert classes["GB82 WEST 1234 5698 7654 32"] == {"IBAN_CODE"}
    assert classes["10.20.30.40"] == {"IP_ADDRESS"}
    assert "TRACK_DATA" in classes[";4111111111111111=28121010000012300000?"]
    assert classes["C000123"] == set()


def test_the_column_name_is_context_that_raises_a_phone_score():
    plain = gc.value_findings(["+44 203 555 0147"], "notes")[0]["score"]
    named = gc.value_findings(["+44 203 555 0147"], "phone")[0]["score"]
    assert plain < gc.MIN_CONFIDENCE <= named


def test_the_detector_never_touches_the_network(monkeypatch):
    gc._analyze.cache_clear()

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    found = gc.value_findings(["write to zoe.kim42@mail.example.net today"], "notes")
    assert [f["pii_class"] for f in found] == ["EMAIL_ADDRESS"]
    assert gc._offline_tld_extractor().suffix_list_urls == ()


def test_evidence_masks_the_example_it_reports():
    [finding] = gc.value_findings(["anna.smith@example.org"], "email")
    assert finding["example"] == "a***.s****@e******.o**"
    assert "anna" not in finding["example"]


def test_name_rules_find_metadata_but_not_product_names():
    assert gc.name_findings("first_name") == [("PERSON_NAME", 0.85)]
    assert gc.name_findings("shipping_postal_code") == [("POSTAL_CODE", 0.85)]
    assert gc.name_findings("cvv") == [("CVV", 0.9)]
    assert gc.name_findings("name") == []  # products have names too
    assert gc.name_findings("device") == []  # desktop, mobile or tablet: not an identifier


# --------------------------------------------------------------------------- classification


def finding(table, column, cls, method, matched, sampled, score):
    return {
        "table_name": table,
        "column_name": column,
        "pii_class": cls,
        "method": method,
        "matched": matched,
        "sampled": sampled,
        "score": score,
        "evidence": f"{cls} by {method} in {column}",
    }


FINDINGS = pd.DataFrame(
    [
        finding("s.customers", "email", "EMAIL_ADDRESS", "value", 50, 50, 1.0),
        finding("s.customers", "email", "EMAIL_ADDRESS", "name", 0, 50, 0.7),
        finding("s.customers", "first_name", "PERSON_NAME", "name", 0, 40, 0.85),
        finding("s.customers", "notes", "EMAIL_ADDRESS", "value", 2, 30, 1.0),
        finding("s.customers", "notes", "PHONE_NUMBER", "value", 1, 30, 0.75),
        finding("s.customers", "street", "PHONE_NUMBER", "value", 3, 50, 0.4),
        finding("s.customers", "street", "STREET_ADDRESS", "name", 0, 50, 0.85),
    ]
)


def test_classify_keeps_rare_free_text_every_class_and_drops_weak_findings():
    out = gc.classify(FINDINGS)
    got = set(map(tuple, out[["column_name", "pii_class"]].itertuples(index=False)))
    assert got == {
        ("email", "EMAIL_ADDRESS"),
        ("first_name", "PERSON_NAME"),
        ("notes", "EMAIL_ADDRESS"),
        ("notes", "PHONE_NUMBER"),
        ("street", "STREET_ADDRESS"),
    }
    email = out[out["column_name"] == "email"].iloc[0]
    assert email["confidence"] == 1.0 and email["sensitivity"] == "confidential"
    assert email["evidence"].startswith("EMAIL_ADDRESS by value")  # strongest first
    assert "by name" in email["evidence"]
    assert gc.check_classification(out, FINDINGS).startswith("classification ok")


def test_check_classification_names_each_mistake():
    full = gc.classify(FINDINGS)
    no_phone_in_notes = full[
        ~((full["column_name"] == "notes") & (full["pii_class"] == "PHONE_NUMBER"))
    ]
    with pytest.raises(AssertionError, match="unclassified.*do not require most values"):
        gc.check_classification(no_phone_in_notes, FINDINGS)
    wrong_level = full.assign(sensitivity="public")
    with pytest.raises(AssertionError, match="take the sensitivity from CLASSES"):
        gc.check_classification(wrong_level, FINDINGS)
    with pytest.raises(AssertionError, match="lacks columns"):
        gc.check_classification(full.drop(columns=["evidence"]), FINDINGS)


def run_classify(source: str, findings: pd.DataFrame, min_confidence=gc.MIN_CONFIDENCE):
    scope = {"gc": gc, "pd": pd, "findings_pdf": findings, "min_confidence": min_confidence}
    exec(source, scope)  # noqa: S102 (the lesson's code, from the repository)
    return scope["classified_pdf"]


def test_the_solution_rule_passes():
    source = LESSON.cell("t1class1")
    assert gc.check_classification(run_classify(source, FINDINGS), FINDINGS).startswith(
        "classification ok"
    )


@pytest.mark.parametrize("mistake", LESSON.mistakes_of("t1class1"), ids=lambda m: m["name"])
def test_each_wrong_rule_is_caught(mistake):
    classified = run_classify(mistake["source"], FINDINGS)
    with pytest.raises(AssertionError, match=mistake["caught_by"]):
        gc.check_classification(classified, FINDINGS)


# --------------------------------------------------------------------------- comments


def test_comment_keeps_the_documentation_and_replaces_the_marker():
    once = gc.comment_with_classification("Customer's e-mail", ["EMAIL_ADDRESS"])
    assert once == "Customer's e-mail [classification: EMAIL_ADDRESS; confidential]"
    assert gc.comment_with_classification(once, ["EMAIL_ADDRESS"]) == once
    both = gc.comment_with_classification(once, ["PHONE_NUMBER", "EMAIL_ADDRESS"])
    assert both == "Customer's e-mail [classification: EMAIL_ADDRESS, PHONE_NUMBER; confidential]"
    assert gc.comment_with_classification(None, ["CVV"]) == "[classification: CVV; prohibited]"
    with pytest.raises(ValueError, match="unknown classes"):
        gc.classification_marker(["SSN"])


def comment_fn_of(source: str):
    scope = {"gc": gc}
    exec(source, scope)  # noqa: S102 (the lesson's code, from the repository)
    return scope["comment_for"]


def test_check_comment_function_accepts_the_package_and_the_solution():
    assert gc.check_comment_function(gc.comment_with_classification).startswith("comments ok")
    assert gc.check_comment_function(comment_fn_of(LESSON.cell("t2comm01"))).startswith(
        "comments ok"
    )


@pytest.mark.parametrize("mistake", LESSON.mistakes_of("t2comm01"), ids=lambda m: m["name"])
def test_each_wrong_comment_is_caught(mistake):
    with pytest.raises(AssertionError, match=mistake["caught_by"]):
        gc.check_comment_function(comment_fn_of(mistake["source"]))


# --------------------------------------------------------------------------- PCI


def test_check_pci_refuses_authentication_data_and_clear_card_numbers():
    ok = gc.classify(FINDINGS)
    assert gc.check_pci(ok).startswith("PCI ok")
    bad = pd.concat(
        [
            ok,
            pd.DataFrame(
                [
                    {
                        "table_name": "t.p",
                        "column_name": "cvv",
                        "pii_class": "CVV",
                        "sensitivity": "prohibited",
                        "confidence": 0.9,
                        "evidence": "name",
                    },
                    {
                        "table_name": "t.p",
                        "column_name": "pan",
                        "pii_class": "CREDIT_CARD",
                        "sensitivity": "restricted",
                        "confidence": 1.0,
                        "evidence": "Luhn",
                    },
                ]
            ),
        ]
    )
    with pytest.raises(
        AssertionError,
        match=r"t\.p\.cvv holds CVV \(PCI DSS 3\.3\.1.*t\.p\.pan holds CREDIT_CARD \(PCI DSS 3\.5",
    ):
        gc.check_pci(bad)


# --------------------------------------------------------------------------- truth and scores


def test_people_values_come_from_the_generator():
    people = gc.people_values(scale="tiny", seed=42)
    assert set(people["pii_class"]) == set(gc.TRUTH_ATTRIBUTES.values())
    emails = people[people["pii_class"] == "EMAIL_ADDRESS"]["value"]
    assert len(emails) == 210 and emails.str.contains("@").all()
    again = gc.people_values(scale="tiny", seed=42)
    pd.testing.assert_frame_equal(people, again)


def test_precision_recall_and_disagreements():
    truth = pd.DataFrame(
        [
            ("s.c", "email", "EMAIL_ADDRESS", 10, 10, "column"),
            ("s.c", "notes", "PHONE_NUMBER", 10, 1, "free text"),
        ],
        columns=gc.TRUTH_COLUMNS,
    )
    classified = pd.DataFrame(
        [
            ("s.c", "email", "EMAIL_ADDRESS", "confidential", 1.0, "e"),
            ("s.c", "street", "PHONE_NUMBER", "confidential", 0.75, "digits"),
            ("s.c", "cvv", "CVV", "prohibited", 0.9, "name"),  # no truth for CVV: not judged
        ],
        columns=gc.CLASSIFICATION_COLUMNS,
    )
    scores = gc.precision_recall(classified, truth).set_index("pii_class")
    assert scores.loc[
        "all", ["truth", "classified", "true_pos", "false_pos", "missed"]
    ].tolist() == [2, 2, 1, 1, 1]
    assert scores.loc["PHONE_NUMBER", "precision"] == 0.0
    assert scores.loc["EMAIL_ADDRESS", "recall"] == 1.0
    diff = gc.disagreements(classified, truth)
    assert diff[["column_name", "outcome"]].values.tolist() == [
        ["notes", "missed"],
        ["street", "false positive"],
    ]


def test_estate_lists_the_core_tables():
    estate = gc.estate()
    assert len(estate) == 23 and "gold.customer_360" in estate and "bronze.crm_customers" in estate


# --------------------------------------------------------------------------- on Spark


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_LAKE", str(tmp_path_factory.mktemp("lake")))
    mp.setenv("LAKEHOUSE_CATALOG", "classification_tests")
    mp.setenv("LAKEHOUSE_METASTORE", "in-memory")
    mp.delenv("SPARK_REMOTE", raising=False)
    from lakehouse import get_spark

    session = get_spark("delta-spark", scale="tiny")
    yield session
    mp.undo()


@pytest.fixture(scope="module")
def people_table(spark):
    """20 of the generator's customers, a free-text column with one e-mail and one phone, and
    a column of nothing personal."""
    people = gc.people_values(scale="tiny", seed=42)
    emails = people[people["pii_class"] == "EMAIL_ADDRESS"]["value"].tolist()[:20]
    phones = people[people["pii_class"] == "PHONE_NUMBER"]["value"].tolist()
    valid_phone = next(p for p in phones if gc.value_findings([p], "phone"))  # libphonenumber
    notes = ["Prefers e-mail."] * 18 + [f"Reach me at {emails[3]}", f"Call back on {valid_phone}"]
    rows = [(f"C{i:06d}", emails[i], notes[i], "consumer") for i in range(20)]
    spark.sql("CREATE SCHEMA IF NOT EXISTS silver")
    (
        spark.createDataFrame(
            rows, "customer_id string, email string, notes string, segment string"
        )
        .write.format("delta")
        .mode("overwrite")
        .saveAsTable("silver.people")
    )
    spark.sql("ALTER TABLE silver.people ALTER COLUMN email COMMENT 'As typed at sign-up'")
    return "silver.people"


def test_inventory_and_a_deterministic_distinct_sample(spark, people_table):
    inventory = gc.inventory(spark, ["silver"])
    assert inventory["table_name"].unique().tolist() == [people_table]
    assert inventory.set_index("column_name").loc["email", "comment"] == "As typed at sign-up"
    columns = gc.scanned_columns(inventory)
    first = gc.sample_values(spark, columns, sample_size=5)
    assert first == gc.sample_values(spark, columns, sample_size=5)
    assert len(first[(people_table, "email")]) == 5
    assert len(set(gc.sample_values(spark, columns, sample_size=50)[(people_table, "notes")])) == 3
    with pytest.raises(ValueError, match="sample_size must be at least 1"):
        gc.sample_values(spark, columns, sample_size=0)


def test_scan_truth_and_comments_on_a_small_table(spark, people_table):
    columns = gc.scanned_columns(gc.inventory(spark, ["silver"]))
    findings = gc.scan(spark, columns, sample_size=50)
    classified = gc.classify(findings)
    got = set(map(tuple, classified[["column_name", "pii_class"]].itertuples(index=False)))
    assert got == {("email", "EMAIL_ADDRESS"), ("notes", "EMAIL_ADDRESS")}
    # a phone in text with no "phone" around it is a bare pattern match ("call" is a stop word)
    phone = findings[
        (findings["column_name"] == "notes") & (findings["pii_class"] == "PHONE_NUMBER")
    ]
    assert phone["score"].tolist() == [0.4]

    truth = gc.ground_truth(spark, columns, scale="tiny", seed=42)
    assert truth[["column_name", "pii_class", "matched_rows", "kind"]].values.tolist() == [
        ["email", "EMAIL_ADDRESS", 20, "column"],
        ["notes", "EMAIL_ADDRESS", 1, "free text"],
        ["notes", "PHONE_NUMBER", 1, "free text"],
    ]
    scores = gc.precision_recall(classified, truth).set_index("pii_class")
    assert scores.loc["all", ["precision", "recall"]].tolist() == [1.0, 2 / 3]

    first = gc.apply_classification(spark, classified)
    assert first["changed"].all()
    second = gc.apply_classification(spark, classified)
    assert not second["changed"].any()  # a rerun commits nothing
    comments = gc.read_comments(spark, [people_table])
    assert comments[(people_table, "email")] == (
        "As typed at sign-up [classification: EMAIL_ADDRESS; confidential]"
    )
    assert comments[(people_table, "notes")] == "[classification: EMAIL_ADDRESS; confidential]"
    assert comments[(people_table, "segment")] == ""


def test_the_pci_probe_is_refused(spark):
    gc.create_pci_probe(spark)
    columns = gc.scanned_columns(gc.inventory(spark, [gc.GOVERNANCE_SCHEMA]))
    columns = columns[columns["table_name"] == gc.PCI_PROBE]
    classified = gc.classify(gc.scan(spark, columns))
    with pytest.raises(AssertionError, match="pci_probe.cvv holds CVV"):
        gc.check_pci(classified)
    assert set(gc.pci_violations(classified)["column_name"]) == {"card_number", "cvv", "track2"}


def test_write_classification_and_evidence_are_idempotent(spark):
    classified = gc.classify(FINDINGS)
    gc.write_classification(spark, classified)
    gc.write_classification(spark, classified)
    assert spark.table(gc.CLASSIFICATION_TABLE).count() == len(classified)
    checks = {"a": (True, "fine"), "b": gc.run_check(lambda: gc.check_pci(classified))}
    gc.write_evidence(spark, gc.EVIDENCE_TABLE, "lesson x", checks)
    gc.write_evidence(spark, gc.EVIDENCE_TABLE, "lesson y", {"c": (False, "broken")})
    gc.write_evidence(spark, gc.EVIDENCE_TABLE, "lesson x", checks)
    rows = spark.table(gc.EVIDENCE_TABLE).orderBy("lesson", "check_name").collect()
    assert [(r.lesson, r.check_name, r.passed) for r in rows] == [
        ("lesson x", "a", True),
        ("lesson x", "b", True),
        ("lesson y", "c", False),
    ]
    assert (
        gc.run_check(
            lambda: gc.check_pci(
                pd.DataFrame(
                    [("t", "c", "CVV", "prohibited", 1.0, "")], columns=gc.CLASSIFICATION_COLUMNS
                )
            )
        )[0]
        is False
    )
