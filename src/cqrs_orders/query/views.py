"""The Databricks SQL views, run from the very files that ship (``cqrs_orders/query/sql/*.sql``).

Each file is a ``CREATE OR REPLACE VIEW ${catalog}.${schema}.vw_... AS ...`` statement that reads
``${catalog}.${schema}.<table>``. Locally :func:`register_views` removes that prefix and makes temporary views
over temporary views of the warehouse's Delta folders, so the SQL tested on a laptop is the SQL deployed to
Unity Catalog by :func:`create_views`. (``sql/databricks`` in the repository is a link to this folder.)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from cqrs_orders.config import TABLES, VIEWS, Settings, running_on_databricks
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.query.readers import APP_OBJECTS, reader_grants

logger = logging.getLogger(__name__)

_PREFIX = "${catalog}.${schema}."
_REFERENCE = re.compile(r"\$\{catalog\}\.\$\{schema\}\.(\w+)")
_CREATE = "CREATE OR REPLACE VIEW "
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class ViewDefinition:
    """One shipped view file."""

    name: str
    sql: str

    @property
    def sources(self) -> tuple[str, ...]:
        """The tables and views it reads, by logical name."""
        return tuple(sorted({name for name in _REFERENCE.findall(self.sql) if name != self.name}))

    def local_sql(self) -> str:
        """The statement as a temporary view over logical names (tables registered as temp views)."""
        return self.sql.replace(_CREATE, "CREATE OR REPLACE TEMPORARY VIEW ", 1).replace(_PREFIX, "")

    def select_sql(self) -> str:
        """Only the view's query, over logical names: what a reader without views inlines as
        ``WITH <name> AS (...)`` (:class:`~cqrs_orders.query.delta.DeltaBackend`)."""
        header = _CREATE + _PREFIX + self.name + " AS"
        return self.sql.split(header, 1)[1].replace(_PREFIX, "").strip()

    def unity_catalog_sql(self, catalog: str, schema: str) -> str:
        """The statement with the Unity Catalog schema filled in."""
        for identifier in (catalog, schema):
            if not _IDENTIFIER.match(identifier):
                raise ConfigurationError(
                    f"{identifier!r} is not a plain catalog/schema name (letters, digits, '_' and '-')."
                )
        return self.sql.replace(_PREFIX, f"`{catalog}`.`{schema}`.")


@cache
def view_definitions() -> tuple[ViewDefinition, ...]:
    """Every shipped view, the seed's two (``VIEWS``) first, then the others by name (event history, lag).
    Read from the package once per process."""
    folder = files("cqrs_orders.query") / "sql"
    definitions = [
        ViewDefinition(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    for view in definitions:
        if _CREATE + _PREFIX + view.name + " " not in view.sql:
            raise ConfigurationError(
                f"{view.name}.sql must create the view ${{catalog}}.${{schema}}.{view.name}."
            )
    order = {name: index for index, name in enumerate(VIEWS)}
    return tuple(sorted(definitions, key=lambda view: (order.get(view.name, len(order)), view.name)))


def view_definition(name: str) -> ViewDefinition:
    """The shipped view ``name``."""
    for view in view_definitions():
        if view.name == name:
            return view
    raise ConfigurationError(
        f"No shipped view {name!r}; known: {', '.join(v.name for v in view_definitions())}."
    )


def register_views(spark, settings: Settings) -> list[str]:
    """Make the warehouse queryable by logical names in this Spark session; return the names registered.

    Every existing table of ``TABLES`` becomes a temporary view under its logical name, then every shipped
    view whose sources all exist. Names whose table is missing are dropped, so a session that saw another
    warehouse before never answers from it.
    """
    from cqrs_orders.delta_io import Table

    registered: list[str] = []
    for name in TABLES:
        table = Table(settings.table(name))
        if table.exists(spark):
            spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS SELECT * FROM {table.sql_name}")
            registered.append(name)
        else:
            spark.catalog.dropTempView(name)
    for view in view_definitions():
        if set(view.sources) <= set(registered):
            spark.sql(view.local_sql())
            registered.append(view.name)
        else:
            spark.catalog.dropTempView(view.name)
    return registered


def create_views(spark, settings: Settings, readers: str | None = None, app: str | None = None) -> list[str]:
    """Create (or replace) the shipped views in Unity Catalog, ``catalog.schema.vw_...``; return their names.

    For deployment on Databricks (``CQRS_CATALOG``/``CQRS_SCHEMA`` set); views over tables that do not exist
    yet are skipped, so it can run before the first projection and again after it. With ``readers``, that
    principal is then granted SELECT on each existing reader object (:mod:`cqrs_orders.query.readers`):
    table-level grants, which a bundle cannot declare, made by the jobs' identity, which owns the objects.
    With ``app`` (the command API app's service principal), it is granted SELECT on what the app reads.
    """
    if not settings.catalog or not settings.schema:
        raise ConfigurationError("create_views needs CQRS_CATALOG and CQRS_SCHEMA (a Unity Catalog schema).")
    from cqrs_orders.delta_io import Table

    existing = {name for name in TABLES if Table(settings.table(name)).exists(spark)}
    created = []
    for view in view_definitions():
        if set(view.sources) <= existing:
            spark.sql(view.unity_catalog_sql(settings.catalog, settings.schema))
            created.append(f"{settings.catalog}.{settings.schema}.{view.name}")
    present = existing | {name.rsplit(".", 1)[1] for name in created}
    grants = []
    if readers:
        grants += reader_grants(settings.catalog, settings.schema, readers, present)
    if app:
        grants += reader_grants(settings.catalog, settings.schema, app, present, APP_OBJECTS)
    _grant(spark, settings, grants)
    return created


def _grant(spark, settings: Settings, grants: list[str]) -> None:
    """Run the GRANTs. Open-source Spark (a Hive metastore standing in for Unity Catalog) has no GRANT:
    there the readers get nothing, which is logged; on Databricks a failed GRANT fails the job."""
    from pyspark.errors import PySparkException

    for grant in grants:
        logger.info("%s", grant)
        try:
            spark.sql(grant)
        except PySparkException as error:
            if running_on_databricks(settings.env):
                raise
            logger.warning(
                "this Spark cannot GRANT (%s); no reader was granted anything", type(error).__name__
            )
            return
