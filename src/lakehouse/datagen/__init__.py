"""Deterministic generator of the course's raw sources (CRM, e-commerce, web, support, payments),
with known injected defects and a manifest that counts them.

>>> from lakehouse.datagen import generate, load_manifest, SCALES
>>> manifest = generate("datasets/tiny", scale="tiny", seed=42)      # doctest: +SKIP
>>> manifest.rows("ecommerce.orders")                                  # doctest: +SKIP
1010
"""

from .core import DATASETS, GENERATOR_VERSION, ML_DATASETS, SCHEMAS, SOURCES, generate
from .manifest import DEFECT_CLASSES, MANIFEST_NAME, Manifest, load_manifest
from .scales import SCALES, Scale, get_scale
from .schema import Column, DatasetSpec, arrow_type

__all__ = [
    "DATASETS",
    "DEFECT_CLASSES",
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "ML_DATASETS",
    "SCALES",
    "SCHEMAS",
    "SOURCES",
    "Column",
    "DatasetSpec",
    "Manifest",
    "Scale",
    "arrow_type",
    "generate",
    "get_scale",
    "load_manifest",
]
