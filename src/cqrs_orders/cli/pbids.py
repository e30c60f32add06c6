"""Power BI connection files (``.pbids``) for the two SQL endpoints the read side is served from.

A ``.pbids`` file is a small JSON document Power BI Desktop opens as "Get data" already filled in: which
connector, which server, which database, and the storage mode. It holds no credential (Power BI asks the
person who opens it to sign in) and exactly one connection, so a deployment gets one file per endpoint:

* the Databricks SQL warehouse (protocol ``databricks-sql``, the shape Databricks Partner Connect writes:
  ``address {host, path}`` and the catalog and schema as ``options``);
* the Synapse serverless SQL endpoint (protocol ``tds``, the SQL Server connector: ``address {server,
  database}``), which serves the views of ``sql/synapse/`` without personal data.

Pure functions: the command (:mod:`.bi_connection`) reads the settings and writes the file.
"""

from __future__ import annotations

import json
import re

from cqrs_orders.errors import ConfigurationError

#: The only version of the format Power BI Desktop reads.
PBIDS_VERSION = "0.1"
#: DirectQuery leaves the rows in the warehouse (always as fresh as the read models); Import copies them.
MODES = ("DirectQuery", "Import")
#: Where Databricks SQL warehouses answer ODBC/JDBC and Power BI: the http path of warehouse ``<id>``.
WAREHOUSE_HTTP_PATH = "/sql/1.0/warehouses/{}"

_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_WAREHOUSE_ID = re.compile(r"^[A-Za-z0-9-]+$")
_HTTP_PATH = re.compile(r"^/sql/[0-9.]+/(warehouses|endpoints)/[A-Za-z0-9-]+$")
_NAME = re.compile(r"^[^\s.`\[\]]+$")


def host_name(value: str | None, what: str, example: str) -> str:
    """The bare host name of ``value``, which may be given as a URL (``databricks bundle validate`` shows the
    workspace host as ``https://...``): Power BI wants the name alone, without scheme, port or path."""
    if not value or not value.strip():
        raise ConfigurationError(f"no {what}: give it, e.g. {example}")
    host = value.strip().lower()
    host = host.removeprefix("https://").removeprefix("http://").rstrip("/")
    if not _HOST.match(host):
        raise ConfigurationError(f"{what} {value!r} is not a host name: give it as {example}")
    return host


def warehouse_http_path(warehouse_id: str | None = None, http_path: str | None = None) -> str:
    """The http path of the SQL warehouse: given as is, or built from its id (the bundle's ``warehouse_id``
    variable, the setting ``CQRS_SQL_WAREHOUSE_ID``), the one value the workspace shows for both."""
    if http_path:
        if not _HTTP_PATH.match(http_path.strip()):
            raise ConfigurationError(
                f"http path {http_path!r} is not a SQL warehouse's: it looks like /sql/1.0/warehouses/<id> "
                "(the warehouse's Connection details tab)"
            )
        return http_path.strip()
    if not warehouse_id:
        raise ConfigurationError(
            "no SQL warehouse: give --warehouse-id (or CQRS_SQL_WAREHOUSE_ID), or --http-path; "
            "`databricks warehouses list` shows the ids"
        )
    if not _WAREHOUSE_ID.match(warehouse_id.strip()):
        raise ConfigurationError(f"SQL warehouse id {warehouse_id!r} is not an id (letters, digits, -)")
    return WAREHOUSE_HTTP_PATH.format(warehouse_id.strip())


def _mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigurationError(f"mode {mode!r}: Power BI takes {' or '.join(MODES)}")
    return mode


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ConfigurationError(f"{what} {value!r} is not a plain name (no spaces, dots or quotes)")
    return value


def databricks_sql(
    host: str,
    http_path: str,
    catalog: str | None = None,
    schema: str | None = None,
    mode: str = "DirectQuery",
) -> dict:
    """The connection to a Databricks SQL warehouse, opened at ``catalog.schema`` when both are given (the
    schema the bundle deployed: the person lands on the read models, not on every catalog)."""
    if bool(catalog) != bool(schema):
        raise ConfigurationError("give both --catalog and --schema (the deployed schema), or neither")
    return {
        "version": PBIDS_VERSION,
        "connections": [
            {
                "details": {
                    "protocol": "databricks-sql",
                    "address": {"host": host, "path": http_path},
                    "authentication": None,
                    "query": None,
                },
                "options": {
                    "Catalog": _name(catalog, "catalog") if catalog else "",
                    "Database": _name(schema, "schema") if schema else "",
                },
                "mode": _mode(mode),
            }
        ],
    }


def synapse_serverless(server: str, database: str | None, mode: str = "DirectQuery") -> dict:
    """The connection to the Synapse serverless SQL endpoint's database holding ``sql/synapse/``'s views.

    The database is required: the views cannot live in ``master``, so a file without it would open on a
    database without them."""
    if not server.endswith("-ondemand.sql.azuresynapse.net"):
        raise ConfigurationError(
            f"{server!r} is not a Synapse serverless endpoint: it is "
            "<workspace>-ondemand.sql.azuresynapse.net (the dedicated pools' endpoint, without -ondemand, "
            "does not serve these views)"
        )
    if not database:
        raise ConfigurationError(
            "no Synapse database: give --synapse-database, the database sql/synapse/deploy.sh -d created"
        )
    return {
        "version": PBIDS_VERSION,
        "connections": [
            {
                "details": {
                    "protocol": "tds",
                    "address": {"server": server, "database": _name(database, "Synapse database")},
                    "authentication": None,
                    "query": None,
                },
                "options": {},
                "mode": _mode(mode),
            }
        ],
    }


def render(document: dict) -> str:
    """The file's text: indented JSON, so a person can read what they are about to open."""
    return json.dumps(document, indent=2) + "\n"
