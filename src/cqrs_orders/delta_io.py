"""Reading, writing and creating one Delta table at its location: the only code that opens a table by
where it lives, beneath the pipeline, the read side and the operators' tools alike.

A location (:class:`~cqrs_orders.config.TableLocation`) is a Unity Catalog name, external at a path when
given one, or a folder; :mod:`cqrs_orders.config` only says where each table lives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import types as T

from cqrs_orders.config import Settings, TableLocation
from cqrs_orders.errors import ConfigurationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Table:
    """Reads and writes one table at its :class:`~cqrs_orders.config.TableLocation`."""

    location: TableLocation

    @property
    def logical_name(self) -> str:
        return self.location.logical_name

    @property
    def path(self) -> str | None:
        return self.location.path

    @property
    def qualified_name(self) -> str | None:
        return self.location.qualified_name

    @property
    def sql_name(self) -> str:
        return self.location.sql_name

    def read(self, spark, **options: str):
        reader = spark.read.format("delta").options(**options)
        return reader.table(self.qualified_name) if self.qualified_name else reader.load(self.path)

    def exists(self, spark) -> bool:
        from delta.tables import DeltaTable

        if self.qualified_name:
            return spark.catalog.tableExists(self.qualified_name)
        return DeltaTable.isDeltaTable(spark, self.path)

    def delta(self, spark):
        from delta.tables import DeltaTable

        if self.qualified_name:
            return DeltaTable.forName(spark, self.qualified_name)
        return DeltaTable.forPath(spark, self.path)

    def version(self, spark) -> int:
        """The table's newest Delta version."""
        return self.delta(spark).history(1).select("version").first()[0]

    def save(self, writer) -> None:
        """Finish a ``DataFrameWriter`` into this table."""
        if self.qualified_name:
            writer.saveAsTable(self.qualified_name)
        else:
            writer.save(self.path)


def table(settings: Settings, logical_name: str) -> Table:
    """The table ``logical_name`` of ``settings``' warehouse, for reading and writing."""
    return Table(settings.table(logical_name))


def create_if_missing(spark, location, columns: T.StructType, properties: dict[str, str]) -> None:
    """Create the Delta table at ``location`` (a :class:`~cqrs_orders.config.TableLocation`: a catalog name,
    external at ``external_path`` if given, or a folder) with ``columns`` and table ``properties``, unless it
    exists."""
    from delta.tables import DeltaTable

    if location.qualified_name:
        _create_in_catalog(spark, location.qualified_name, columns, properties, location.external_path)
        return
    builder = DeltaTable.createIfNotExists(spark).addColumns(columns).location(location.path)
    for key, value in properties.items():
        builder = builder.property(key, value)
    builder.execute()


def add_missing_columns(spark, table: Table, columns: T.StructType) -> None:
    present = set(table.read(spark).columns)
    missing = [f"`{f.name}` {f.dataType.simpleString()}" for f in columns.fields if f.name not in present]
    if missing:
        spark.sql(f"ALTER TABLE {table.sql_name} ADD COLUMNS ({', '.join(missing)})")


def _create_in_catalog(
    spark, name: str, schema: T.StructType, properties: dict[str, str], external_path: str | None = None
) -> None:
    """Create the table ``catalog.schema.table`` if it does not exist: managed, or external at
    ``external_path`` (which must lie under an external location the job's identity may create tables in).

    SQL rather than ``DeltaTable.createIfNotExists().tableName()``: outside Databricks that builder parses
    at most ``schema.table`` and rejects a three-part Unity Catalog name; the statement resolves any catalog.
    """
    listed = ", ".join(f"'{key}' = '{value}'" for key, value in properties.items())
    where = ""
    if external_path:
        if "'" in external_path or "\\" in external_path:
            raise ConfigurationError(f"{external_path!r}: a table location takes no quote or backslash.")
        where = f" LOCATION '{external_path}'"
        logger.info("creating %s as an external table at %s", name, external_path)
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {name} ({schema.toDDL()}) USING DELTA{where} TBLPROPERTIES ({listed})"
    )
