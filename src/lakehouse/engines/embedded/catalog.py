"""Named Delta tables on the embedded engine: the lake folder is the catalog.

A table ``bronze.customers`` lives at ``<lake>/<catalog>/bronze/customers``. At session start
every table found there is registered in Spark's session catalog, through a data source class
bound to its location, so ``spark.table``, SQL and ``INSERT INTO`` reach it by name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.delta_source import DeltaDataSource, bind
from lakehouse.engines.embedded.errors import DeltaError, TableNotFound

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class TableRef:
    schema: str
    table: str
    location: str

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


class LakeCatalog:
    """Maps table names to folders under ``root`` and keeps Spark's catalog in step."""

    def __init__(self, spark, root: Path, catalog_name: str):
        self.spark = spark
        self.root = Path(root)
        self.catalog_name = catalog_name
        # name -> (location, source name, schema json) of what is registered in this session
        self._registered: dict[str, tuple[str, str, str]] = {}

    # -- names --------------------------------------------------------------------------------
    def resolve(self, name: str) -> TableRef:
        """``table``, ``schema.table`` or ``catalog.schema.table`` to a TableRef."""
        if not isinstance(name, str) or not name.strip():
            raise DeltaError(f"A table name must be a non-empty string, not {name!r}.")
        parts = [p.strip("`") for p in name.strip().split(".")]
        if len(parts) == 3:
            if parts[0] not in (self.catalog_name, "spark_catalog"):
                raise TableNotFound(
                    f"Table {name!r} names catalog {parts[0]!r}, but this session's catalog is "
                    f"{self.catalog_name!r} (LAKEHOUSE_CATALOG). Use 'schema.table', or the "
                    f"catalog {self.catalog_name!r}."
                )
            parts = parts[1:]
        if len(parts) == 1:
            parts = [self.spark.catalog.currentDatabase(), parts[0]]
        if len(parts) != 2 or not all(_IDENT.match(p) for p in parts):
            raise DeltaError(
                f"{name!r} is not a valid table name: use schema.table with letters, digits and "
                "underscores (e.g. 'silver.customers')."
            )
        schema, table = (p.lower() for p in parts)
        return TableRef(schema, table, str(self.root / schema / table))

    def exists(self, name: str) -> bool:
        return delta_log.is_delta_table(self.resolve(name).location)

    def require(self, name: str) -> TableRef:
        ref = self.resolve(name)
        if not delta_log.is_delta_table(ref.location):
            raise TableNotFound(
                f"Table {ref.name} does not exist (no Delta table at {ref.location}). Check the "
                f"name; tables in this catalog: {', '.join(self.table_names()) or 'none yet'}. "
                "Create it with df.write.saveAsTable(name) or DeltaTable.create(spark)."
            )
        return ref

    def table_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            f"{schema.name}.{table.name}"
            for schema in self.root.iterdir()
            if schema.is_dir() and _IDENT.match(schema.name)
            for table in schema.iterdir()
            if table.is_dir() and delta_log.is_delta_table(str(table))
        )

    # -- Spark's catalog ----------------------------------------------------------------------
    def sync(self) -> list[str]:
        """Register every table in the lake folder; returns their names."""
        names = self.table_names()
        for name in names:
            self.register(name)
        return names

    def register(self, name: str, *, force: bool = False) -> TableRef:
        """Make ``name`` resolvable by Spark (again, when its schema or location changed)."""
        ref = self.require(name)
        snap = delta_log.snapshot(ref.location)
        fingerprint = snap.arrow_schema.to_string()
        current = self._registered.get(ref.name)
        if not force and current and current[0] == ref.location and current[2] == fingerprint:
            return ref
        digest = hashlib.sha1(ref.location.encode()).hexdigest()[:10]
        source = f"delta_{ref.schema}__{ref.table}__{digest}"
        self.spark.dataSource.register(bind(source, ref.location, ref.name))
        self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{ref.schema}`")
        self.spark.sql(f"DROP TABLE IF EXISTS `{ref.schema}`.`{ref.table}`")
        description = _table_description(ref.location)
        comment = f" COMMENT '{_sql_string(description)}'" if description else ""
        self.spark.sql(f"CREATE TABLE `{ref.schema}`.`{ref.table}` USING {source}{comment}")
        self._registered[ref.name] = (ref.location, source, fingerprint)
        return ref

    def refresh(self, name: str) -> None:
        """Before a read by name: re-register ``name`` if its Delta schema changed since it was
        registered (a stream with mergeSchema, another session's write). Names that are not
        ``schema.table`` tables of this lake (temp views, other catalogs) are left to Spark."""
        try:
            if self.exists(name):
                self.register(name)
        except DeltaError:
            return

    def unregister_all(self) -> None:
        """Remove every table this catalog registered from Spark's catalog (data untouched)."""
        for name in list(self._registered):
            schema, table = name.split(".")
            self.spark.sql(f"DROP TABLE IF EXISTS `{schema}`.`{table}`")
        self._registered.clear()

    def forget(self, name: str) -> None:
        """Drop what this session knows of ``name`` (after the table was dropped)."""
        self._registered.pop(self.resolve(name).name, None)

    def refresh_location(self, location: str) -> None:
        """After a write by path: re-register the table stored there, if it has a name."""
        location = delta_log.local_path(location)
        for name, (registered, _, _) in list(self._registered.items()):
            if registered == location:
                self.register(name)
                return
        try:
            relative = Path(location).relative_to(self.root)
        except ValueError:
            return
        if len(relative.parts) == 2 and all(_IDENT.match(p) for p in relative.parts):
            self.register(".".join(relative.parts))


def _table_description(location: str) -> str | None:
    try:
        return delta_log.open_table(location).metadata().description
    except DeltaError:
        return None


def _sql_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


_ACTIVE: LakeCatalog | None = None


def install(spark, root: Path, catalog_name: str) -> LakeCatalog:
    """Create the catalog for ``spark``, register the generic ``delta`` source and every table
    in the lake."""
    global _ACTIVE
    spark.dataSource.register(DeltaDataSource)
    previous = catalog_for(spark)
    moved = previous is not None and (previous.root, previous.catalog_name) != (
        Path(root),
        catalog_name,
    )
    if moved:
        # One Spark session, another lake: names of the old lake must stop resolving, or
        # bronze.x would still read the previous lake's table.
        previous.unregister_all()
    catalog = LakeCatalog(spark, root, catalog_name)
    spark.conf.set(ROOT_CONF, str(root))
    spark.conf.set(NAME_CONF, catalog_name)
    try:
        spark._lakehouse_catalog = catalog
    except AttributeError:  # a session class that refuses new attributes
        pass
    _ACTIVE = catalog
    catalog.sync()
    return catalog


def catalog_for(spark) -> LakeCatalog | None:
    """The lake catalog of ``spark`` if it runs the embedded engine, else None."""
    found = getattr(spark, "_lakehouse_catalog", None)
    if found is not None:
        return found
    if _ACTIVE is not None and _same_session(_ACTIVE.spark, spark):
        return _ACTIVE
    if _is_connect(spark):
        return _attach(spark)
    return None


# Session confs that carry the lake to another process of the same Spark Connect session: a
# stream's foreachBatch function runs in a Python process of the server's, with a session of
# its own on the same server session (its tables and data sources are already registered).
ROOT_CONF = "spark.lakehouse.embedded.root"
NAME_CONF = "spark.lakehouse.embedded.catalog"


def _attach(spark) -> LakeCatalog | None:
    global _ACTIVE
    if getattr(spark, "_lakehouse_no_catalog", False):
        return None
    root = spark.conf.get(ROOT_CONF, None)
    if not root:
        try:
            spark._lakehouse_no_catalog = True  # not the embedded engine: ask once
        except AttributeError:
            pass
        return None
    catalog = LakeCatalog(spark, Path(root), spark.conf.get(NAME_CONF))
    try:
        spark._lakehouse_catalog = catalog
        spark._lakehouse_engine = "embedded"
    except AttributeError:
        pass
    if _ACTIVE is None:
        _ACTIVE = catalog
    return catalog


def _same_session(a, b) -> bool:
    if a is b:
        return True
    if _is_connect(a) or _is_connect(b):
        try:
            return a.client is b.client  # Spark Connect sessions wrap one client
        except AttributeError:
            return False
    # Classic: a stream's foreachBatch hands its function a session cloned from the query's,
    # a different object on the same SparkContext (one per process).
    return getattr(a, "_sc", None) is not None and getattr(a, "_sc", None) is getattr(b, "_sc", 0)


def _is_connect(spark) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")
