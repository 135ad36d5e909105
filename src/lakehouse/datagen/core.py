"""``generate``: write every source into one folder, then the manifest that accounts for it."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from . import crm, ecommerce, payments, support, web
from ._common import WINDOW_END, WINDOW_START
from ._context import Context, DatasetResult
from .manifest import (
    DEFECT_CLASSES,
    MANIFEST_NAME,
    DatasetRecord,
    DefectRecord,
    FileRecord,
    Manifest,
    load_manifest,
)
from .scales import Scale, get_scale
from .schema import DatasetSpec

GENERATOR = "lakehouse.datagen"
# Bump when the same seed and scale would produce different bytes. 1.1.0 added the payment
# operations (ML_DATASETS); every file of 1.0.0 is still written byte for byte.
GENERATOR_VERSION = "1.1.0"

# source name -> module; each module has DATASETS (and may have ML_DATASETS) and
# generate(ctx) -> list[DatasetResult]
_MODULES = {
    "crm": crm,
    "ecommerce": ecommerce,
    "web": web,
    "support": support,
    "payments": payments,
}
SOURCES: tuple[str, ...] = tuple(_MODULES)
# The raw sources of the lakehouse: every one is landed in Bronze and reconciled in Silver.
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for module in _MODULES.values() for spec in module.DATASETS
}
# The payment operations behind the payments (attempts and retries, chargebacks, processors,
# response codes), written beside them for the ML module. Kept apart from DATASETS, and in the
# manifest's ml_datasets, so the lessons that walk every raw source (01_bronze, 02_silver)
# see the same sources as before.
ML_DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for module in _MODULES.values() for spec in getattr(module, "ML_DATASETS", ())
}
# Spark-free column types per dataset: {"payments.transactions": {"amount": "decimal(12,2)", ...}}
SCHEMAS: dict[str, dict[str, str]] = {
    name: spec.column_types for name, spec in {**DATASETS, **ML_DATASETS}.items()
}


def _check_sources(sources: Iterable[str] | str | None) -> tuple[str, ...]:
    if sources is None:
        return SOURCES
    if isinstance(sources, str):
        sources = [s.strip() for s in sources.split(",") if s.strip()]
    chosen = list(dict.fromkeys(sources))
    unknown = [s for s in chosen if s not in _MODULES]
    if unknown or not chosen:
        raise ValueError(
            f"unknown source(s) {', '.join(map(repr, unknown)) or '(none given)'}: "
            f"choose from {', '.join(SOURCES)}"
        )
    return tuple(s for s in SOURCES if s in chosen)  # a fixed order, whatever the caller's


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def _prepare_folder(out: Path, *, trusted: bool) -> None:
    """Create ``out``; refuse a non-empty folder the generator did not make (``trusted``: it
    holds a manifest), so a mistyped ``--out`` never deletes someone's files."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output path {str(out)!r} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    ours = set(SOURCES) | {MANIFEST_NAME, MANIFEST_NAME + ".tmp"}
    strangers = sorted(p.name for p in out.iterdir() if p.name not in ours)
    if not trusted and strangers:
        raise ValueError(
            f"refusing to write into {str(out)!r}: it holds files the generator did not write "
            f"({', '.join(strangers[:5])}); give an empty or new folder"
        )


def _progress_bar(progress: bool | None, scale: Scale, sources: tuple[str, ...]):
    show = scale.name in ("medium", "large") if progress is None else bool(progress)
    if not show:
        return None
    from tqdm.auto import tqdm

    s = scale
    expected = {
        "crm": s.customers * 1.02 + s.changed_customers * 1.3 + s.new_customers,
        "ecommerce": s.products + s.orders * 3.45,
        "web": s.web_events,
        "support": s.tickets * 2.9,
        "payments": s.payments * 2.25,  # the transactions, ~1.2 attempts each, notices
    }
    total = int(sum(expected[name] for name in sources))
    return tqdm(
        total=total, unit="rows", unit_scale=True, desc=f"datagen {s.name}", file=sys.stderr
    )


def _record(result: DatasetResult) -> DatasetRecord:
    spec = result.spec
    return DatasetRecord(
        name=spec.name,
        source=spec.source,
        path=spec.path,
        format=spec.file_format,
        key=list(spec.key),
        rows=result.rows,
        files=[FileRecord(**asdict(f)) for f in result.files],
        defects={
            name: DefectRecord(count=len(keys), keys=keys)
            for name, keys in sorted(result.log.entries.items())
        },
        defect_rules=dict(spec.defect_rules),
        facts=result.facts,
    )


def generate(
    out_dir: str | os.PathLike,
    *,
    scale: str | Scale = "tiny",
    seed: int = 42,
    sources: Iterable[str] | str | None = None,
    progress: bool | None = None,
) -> Manifest:
    """Write the course's raw sources into ``out_dir`` and return their manifest.

    The same ``scale`` and ``seed`` always give byte-identical files. Regenerating replaces the
    sources asked for; with ``sources`` a subset, the other sources' files and manifest entries
    are kept when they came from the same scale, seed and generator version, and removed
    otherwise (so the folder never mixes two generations).

    >>> from lakehouse.datagen import generate
    >>> manifest = generate("datasets/tiny", scale="tiny", seed=42)        # doctest: +SKIP
    >>> manifest.defect_count("payments.transactions", "late_events")      # doctest: +SKIP
    32

    ``progress``: ``True``/``False`` to show a progress bar or not; ``None`` shows one for the
    medium and large scales.
    """
    chosen_scale = get_scale(scale)
    seed = _check_seed(seed)
    chosen = _check_sources(sources)
    out = Path(out_dir)

    previous = _previous_manifest(out)
    same_generation = previous is not None and (
        previous.version == GENERATOR_VERSION
        and previous.seed == seed
        and previous.scale_table == asdict(chosen_scale)
    )
    _prepare_folder(out, trusted=previous is not None)
    # Clear what this run rewrites; a different generation's leftovers go too.
    for source in chosen if same_generation else SOURCES:
        shutil.rmtree(out / source, ignore_errors=True)
    kept = {}
    if same_generation:
        earlier = {**previous.datasets, **previous.ml_datasets}
        kept = {n: d for n, d in earlier.items() if d.source not in chosen}

    bar = _progress_bar(progress, chosen_scale, chosen)
    ctx = Context(out_dir=out, scale=chosen_scale, seed=seed, progress=bar)
    datasets: dict[str, DatasetRecord] = dict(kept)
    try:
        for name in chosen:
            for result in _MODULES[name].generate(ctx):
                datasets[result.spec.name] = _record(result)
        if bar is not None:
            bar.total = bar.n  # the estimate was approximate; end the bar at 100%
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    manifest = Manifest(
        generator=GENERATOR,
        version=GENERATOR_VERSION,
        scale=chosen_scale.name,
        seed=seed,
        scale_table=asdict(chosen_scale),
        window={"start": WINDOW_START.isoformat(), "end": WINDOW_END.isoformat()},
        defect_classes=dict(DEFECT_CLASSES),
        datasets={name: datasets[name] for name in DATASETS if name in datasets},
        ml_datasets={name: datasets[name] for name in ML_DATASETS if name in datasets},
    )
    manifest.write(out)
    return manifest


def _previous_manifest(out: Path) -> Manifest | None:
    """The manifest of an earlier run in ``out``, or None (none there, or unreadable)."""
    try:
        return load_manifest(out)
    except (OSError, ValueError, KeyError, TypeError):
        return None
