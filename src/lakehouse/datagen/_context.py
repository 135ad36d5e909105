"""What every source generator receives, and what it hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ._common import DefectLog, FileResult, stream
from .population import build_catalog, build_customers, build_merchants
from .scales import Scale
from .schema import DatasetSpec


@dataclass
class Context:
    out_dir: Path
    scale: Scale
    seed: int
    progress: object = None  # a tqdm bar, or None

    def rng(self, *key: str | int) -> np.random.Generator:
        return stream(self.seed, *key)

    def tick(self, rows: int) -> None:
        if self.progress is not None:
            self.progress.update(rows)

    @cached_property
    def customers(self):
        return build_customers(self.seed, self.scale)

    @cached_property
    def catalog(self):
        return build_catalog(self.seed, self.scale)

    @cached_property
    def merchants(self):
        return build_merchants(self.seed, self.scale)


@dataclass
class DatasetResult:
    spec: DatasetSpec
    files: list[FileResult] = field(default_factory=list)
    log: DefectLog = field(default_factory=DefectLog)
    facts: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log.declare(*self.spec.defect_rules)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)
