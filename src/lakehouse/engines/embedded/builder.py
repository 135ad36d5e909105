"""``DeltaTable.create``, ``createIfNotExists``, ``replace`` and ``createOrReplace`` on the
embedded engine: ``EmbeddedTableBuilder`` collects columns, partitioning, comment and properties,
then creates or replaces the table with delta-rs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql.types import DataType, StructField, StructType

from lakehouse.engines.embedded import log as delta_log
from lakehouse.engines.embedded.catalog import catalog_for
from lakehouse.engines.embedded.common import _storable, _unsupported
from lakehouse.engines.embedded.errors import DeltaError

if TYPE_CHECKING:
    from lakehouse.engines.embedded.table import EmbeddedDeltaTable


class EmbeddedTableBuilder:
    """Creates or replaces a Delta table from columns, partitioning, comment and properties.

    Example::

        (DeltaTable.createIfNotExists(spark)
            .tableName("silver.customers")
            .addColumn("customer_id", "BIGINT", nullable=False)
            .addColumn("email", "STRING", comment="lower-cased")
            .partitionedBy("country")
            .property("delta.enableChangeDataFeed", "true")
            .execute())
    """

    def __init__(self, spark, mode: str):
        self._spark = spark
        self._mode = mode
        self._name: str | None = None
        self._location: str | None = None
        self._comment: str | None = None
        self._fields: list[StructField] = []
        self._partitions: list[str] = []
        self._properties: dict[str, str] = {}

    def _raise_type_error(self, msg: str, objs) -> None:
        for obj in objs:
            msg += f" Found {obj} with type {type(obj)}"
        raise TypeError(msg)

    def tableName(self, identifier: str) -> EmbeddedTableBuilder:  # noqa: N802
        """The table name, ``schema.table``."""
        if type(identifier) is not str:
            self._raise_type_error("Identifier must be str.", [identifier])
        self._name = identifier
        return self

    def location(self, location: str) -> EmbeddedTableBuilder:
        """The folder of the table's data."""
        if type(location) is not str:
            self._raise_type_error("Location must be str.", [location])
        self._location = location
        return self

    def comment(self, comment: str) -> EmbeddedTableBuilder:
        """The table comment (its description)."""
        if type(comment) is not str:
            self._raise_type_error("Table comment must be str.", [comment])
        self._comment = comment
        return self

    def addColumn(  # noqa: N802
        self,
        colName: str,  # noqa: N803
        dataType: str | DataType,  # noqa: N803
        nullable: bool = True,
        generatedAlwaysAs=None,  # noqa: N803
        generatedByDefaultAs=None,  # noqa: N803
        comment: str | None = None,
    ) -> EmbeddedTableBuilder:
        """A column: name, type (DDL string such as ``"DECIMAL(10,2)"`` or a DataType),
        nullability and comment."""
        if type(colName) is not str:
            self._raise_type_error("Column name must be str.", [colName])
        if type(dataType) is not str and not isinstance(dataType, DataType):
            self._raise_type_error("Column data type must be str or DataType.", [dataType])
        if type(nullable) is not bool:
            self._raise_type_error("Column nullable must be bool.", [nullable])
        if generatedAlwaysAs is not None or generatedByDefaultAs is not None:
            raise _unsupported(
                f"Generated or identity column {colName!r}",
                "Compute the column in the DataFrame before writing instead, e.g. "
                "df.withColumn('order_date', F.to_date('order_ts')), and declare it as a plain "
                "column.",
            )
        if comment is not None and type(comment) is not str:
            self._raise_type_error("Column comment must be str.", [comment])
        parsed = DataType.fromDDL(dataType) if isinstance(dataType, str) else dataType
        metadata = {"comment": comment} if comment is not None else {}
        self._fields.append(StructField(colName, _storable(parsed), nullable, metadata))
        return self

    def addColumns(self, cols) -> EmbeddedTableBuilder:  # noqa: N802
        """Columns from an existing schema (StructType or a list of StructFields)."""
        if isinstance(cols, list):
            for col in cols:
                if type(col) is not StructField:
                    self._raise_type_error("Column in existing schema must be StructField.", [col])
            cols = StructType(cols)
        if type(cols) is not StructType:
            self._raise_type_error("Schema must be StructType or a list of StructField.", [cols])
        for f in cols.fields:
            self._fields.append(StructField(f.name, _storable(f.dataType), f.nullable, f.metadata))
        return self

    def partitionedBy(self, *cols) -> EmbeddedTableBuilder:  # noqa: N802
        """Partition columns."""
        if len(cols) == 1 and isinstance(cols[0], (list, tuple)):
            cols = tuple(cols[0])
        for c in cols:
            if type(c) is not str:
                self._raise_type_error("Partitioning column must be str.", [c])
        self._partitions = list(cols)
        return self

    def clusterBy(self, *cols) -> EmbeddedTableBuilder:  # noqa: N802
        """Not available on the embedded engine (liquid clustering)."""
        raise _unsupported(
            "Liquid clustering (clusterBy)",
            "Use partitionedBy(...) for the layout, or optimize().executeZOrderBy(...) to "
            "cluster the files by columns.",
        )

    def property(self, key: str, value: str) -> EmbeddedTableBuilder:
        """A table property, e.g. ``("delta.enableChangeDataFeed", "true")``."""
        if type(key) is not str or type(value) is not str:
            self._raise_type_error("Key and value of property must be string.", [key, value])
        self._properties[key] = value
        return self

    def execute(self) -> EmbeddedDeltaTable:
        """Create or replace the table; returns it."""
        from deltalake import DeltaTable as RsDeltaTable
        from deltalake import Schema as DeltaSchema

        spark = self._spark
        catalog = catalog_for(spark)
        ref = None
        if self._name is not None:
            if catalog is None:
                raise DeltaError("Named tables need the embedded engine's catalog (get_spark()).")
            ref = catalog.resolve(self._name)
            location = ref.location
            if self._location is not None and delta_log.local_path(self._location) != location:
                raise _unsupported(
                    f"A table name with its own location ({self._location})",
                    f"The embedded engine keeps table {ref.name} at {location}. Drop "
                    ".location(...) to use that folder, or drop .tableName(...) to create a "
                    "table by path only.",
                )
        elif self._location is not None:
            location = delta_log.local_path(self._location)
        else:
            raise DeltaError("Table name or location has to be specified")
        label = ref.name if ref else f"delta.`{location}`"
        exists = delta_log.is_delta_table(location)
        if exists and self._mode == "create":
            raise DeltaError(
                f"[DELTA_TABLE_ALREADY_EXISTS] Table {label} already exists. Use "
                "DeltaTable.createIfNotExists(spark) to keep it, or DeltaTable.createOrReplace("
                "spark) to replace it."
            )
        if exists and self._mode == "createIfNotExists":
            return self._table(location, ref)
        if not exists and self._mode == "replace":
            raise DeltaError(
                f"[DELTA_TABLE_NOT_FOUND] Table {label} cannot be replaced as it does not "
                "exist. Use DeltaTable.createOrReplace(spark) to create it."
            )
        if not self._fields:
            raise DeltaError(
                f"Table schema is not set for {label}: add columns with addColumn(...) or "
                "addColumns(df.schema)."
            )
        names = [f.name for f in self._fields]
        for column in self._partitions:
            if column not in names:
                raise DeltaError(
                    f"Partition column {column!r} is not one of the table's columns {names}."
                )
        schema = DeltaSchema.from_json(StructType(self._fields).json())
        Path(location).mkdir(parents=True, exist_ok=True)
        try:
            RsDeltaTable.create(
                location,
                schema,
                mode="overwrite" if exists else "error",
                partition_by=self._partitions or None,
                description=self._comment,
                configuration=self._properties or None,
                raise_if_key_not_exists=False,
            )
        except Exception as exc:
            raise DeltaError(f"Cannot create table {label}: {exc}") from None
        if ref is not None:
            catalog.register(ref.name, force=True)
        elif catalog is not None:
            catalog.refresh_location(location)
        return self._table(location, ref)

    def _table(self, location: str, ref) -> EmbeddedDeltaTable:
        # Imported here: table.py imports this module for DeltaTable.create and the others.
        from lakehouse.engines.embedded.table import EmbeddedDeltaTable

        return EmbeddedDeltaTable(self._spark, location, ref.name if ref else None)


__all__ = ["EmbeddedTableBuilder"]
