"""The manifest: what the generator wrote and exactly which rows it broke, so every layer can
prove that rows in = rows kept + rows quarantined."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST_NAME = "manifest.json"

# Every defect class, with the rule that decides whether a row has it. Per-dataset details (which
# column, which order) are in each dataset's ``defect_rules``.
DEFECT_CLASSES: dict[str, str] = {
    "malformed_rows": (
        "A row that cannot be read as a record: a JSON line that does not parse, a CSV row with "
        "the wrong number of fields, or a money field that is not a number."
    ),
    "null_required": "A required column is null (JSON null, or an empty CSV field).",
    "negative_amounts": "A money amount below zero.",
    "duplicates": (
        "A repeat of a row already delivered earlier in file order (same row key); the first "
        "occurrence is not counted, every later one is."
    ),
    "late_events": "An event whose ingest_ts is more than 2 hours after its event_ts.",
    "out_of_order": (
        "A row that arrives after a row it should precede (by event time, or by _seq for a CDC "
        "feed), yet is not late."
    ),
    "schema_change": (
        "A file carrying a column that earlier files of the dataset lack; keys are file paths."
    ),
    "pii_in_free_text": "An email address or phone number inside a free-text field.",
    "invalid_emails": "A non-null email that is not of the form local@domain.tld.",
    "future_dates": "A date or timestamp after the end of the data window (2026-06-30).",
    "orphan_keys": "A foreign key that matches no row of the dataset it refers to.",
}


@dataclass
class DefectRecord:
    count: int
    keys: list[str]


@dataclass
class FileRecord:
    path: str
    rows: int
    bytes: int
    sha256: str
    defects: dict[str, int] = field(default_factory=dict)


@dataclass
class DatasetRecord:
    name: str
    source: str
    path: str
    format: str
    key: list[str]
    rows: int
    files: list[FileRecord]
    defects: dict[str, DefectRecord]
    defect_rules: dict[str, str] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)

    def defect_count(self, defect: str) -> int:
        record = self.defects.get(defect)
        return record.count if record else 0


@dataclass
class Manifest:
    """What one ``generate`` call wrote.

    >>> m = load_manifest("datasets/tiny")  # doctest: +SKIP
    >>> m.defect_count("payments.transactions", "duplicates")  # doctest: +SKIP
    32
    """

    generator: str
    version: str
    scale: str
    seed: int
    scale_table: dict
    window: dict
    defect_classes: dict[str, str]
    datasets: dict[str, DatasetRecord]
    # the payment operations for the ML module (lakehouse.datagen.ML_DATASETS), kept apart from
    # the raw sources that the Bronze and Silver lessons walk one by one
    ml_datasets: dict[str, DatasetRecord] = field(default_factory=dict)

    @property
    def sources(self) -> dict[str, dict]:
        """Per source: total rows written and the datasets it holds."""
        out: dict[str, dict] = {}
        for record in self.datasets.values():
            entry = out.setdefault(record.source, {"rows": 0, "datasets": []})
            entry["rows"] += record.rows
            entry["datasets"].append(record.name)
        return out

    def dataset(self, name: str) -> DatasetRecord:
        """A raw source's or an ML dataset's record."""
        found = self.datasets.get(name) or self.ml_datasets.get(name)
        if found is None:
            raise KeyError(
                f"dataset {name!r} is not in this manifest: it has "
                f"{', '.join([*self.datasets, *self.ml_datasets])}"
            )
        return found

    def rows(self, dataset: str) -> int:
        return self.dataset(dataset).rows

    def defect_count(self, dataset: str, defect: str) -> int:
        return self.dataset(dataset).defect_count(defect)

    def defect_keys(self, dataset: str, defect: str) -> list[str]:
        record = self.dataset(dataset).defects.get(defect)
        return list(record.keys) if record else []

    def files(self, dataset: str) -> list[str]:
        return [f.path for f in self.dataset(dataset).files]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["sources"] = self.sources
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        def records(section: dict) -> dict[str, DatasetRecord]:
            return {
                name: DatasetRecord(
                    name=d["name"],
                    source=d["source"],
                    path=d["path"],
                    format=d["format"],
                    key=list(d["key"]),
                    rows=d["rows"],
                    files=[FileRecord(**f) for f in d["files"]],
                    defects={k: DefectRecord(**v) for k, v in d["defects"].items()},
                    defect_rules=d.get("defect_rules", {}),
                    facts=d.get("facts", {}),
                )
                for name, d in section.items()
            }

        return cls(
            generator=data["generator"],
            version=data["version"],
            scale=data["scale"],
            seed=data["seed"],
            scale_table=data["scale_table"],
            window=data["window"],
            defect_classes=data["defect_classes"],
            datasets=records(data["datasets"]),
            ml_datasets=records(data.get("ml_datasets", {})),
        )

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write ``manifest.json`` atomically: a reader never sees half a manifest."""
        path = Path(out_dir) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path


def load_manifest(out_dir: str | os.PathLike) -> Manifest:
    """Read the manifest a previous :func:`generate` wrote into ``out_dir``."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} in {str(out_dir)!r}: generate the data first, e.g. "
            f"python -m lakehouse.datagen --scale tiny --out {out_dir}"
        )
    return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
