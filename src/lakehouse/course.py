"""What every lesson's setup cell does: its data, its session's tables, a clean slate.

Each helper runs the real idiom on Databricks and the equivalent on the embedded engine.
"""

from __future__ import annotations

import shutil

from lakehouse.config import settings
from lakehouse.session import engine_of


def prepare_datasets(*, scale: str = "tiny", seed: int = 42, reset: bool = False):
    """Generate the raw sources for ``scale`` and ``seed`` unless they are already there;
    returns the manifest. The folder is ``<datasets>/<scale>`` (``LAKEHOUSE_DATASETS``; on
    Databricks point it at a Unity Catalog volume such as ``/Volumes/main/course/raw``)."""
    from lakehouse.datagen import GENERATOR_VERSION, generate, load_manifest

    folder = settings(scale=scale, seed=seed).source_path()
    if not reset and (folder / "manifest.json").is_file():
        manifest = load_manifest(folder)
        if (manifest.seed, manifest.scale, manifest.version) == (seed, scale, GENERATOR_VERSION):
            return manifest
    return generate(folder, scale=scale, seed=seed)


def drop_table(spark, name: str) -> None:
    """``DROP TABLE IF EXISTS name``, data included (a managed table's semantics).

    On the embedded engine the table's folder in the lake is its storage, so it goes too."""
    from lakehouse.engines.embedded.catalog import catalog_for

    catalog = catalog_for(spark) if engine_of(spark) == "embedded" else None
    if catalog is None:
        spark.sql(f"DROP TABLE IF EXISTS {name}")
        return
    ref = catalog.resolve(name)
    spark.sql(f"DROP TABLE IF EXISTS `{ref.schema}`.`{ref.table}`")
    catalog.forget(ref.name)
    shutil.rmtree(ref.location, ignore_errors=True)


def drop_schema(spark, schema: str) -> None:
    """``DROP SCHEMA IF EXISTS schema CASCADE``: the schema and every table in it."""
    from lakehouse.engines.embedded.catalog import catalog_for

    catalog = catalog_for(spark) if engine_of(spark) == "embedded" else None
    if catalog is None:
        spark.sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        return
    for name in catalog.table_names():
        if name.split(".")[0] == schema.lower():
            drop_table(spark, name)
    spark.sql(f"DROP SCHEMA IF EXISTS `{schema}` CASCADE")
    shutil.rmtree(catalog.root / schema.lower(), ignore_errors=True)


def checkpoint_location(spark, name: str) -> str:
    """Where a stream named ``name`` (e.g. ``"bronze/payments_transactions"``) keeps its
    checkpoint: ``<lake>/<catalog>/_checkpoints/<name>``. On Databricks set ``LAKEHOUSE_LAKE``
    to a Unity Catalog volume (``/Volumes/<catalog>/<schema>/<volume>``) so checkpoints live
    beside the tables' governance."""
    from lakehouse.session import settings_of

    s = settings_of(spark) or settings()
    return str(s.catalog_path / "_checkpoints" / name)
