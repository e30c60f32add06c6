"""The composition root: the command handler, the relay and the read side's backend, assembled from what the
settings name.

It sits beside the entry points (:mod:`cqrs_orders.cli`, :mod:`cqrs_orders.http`, the jobs' notebooks),
the only code that knows both the application and the adapters.
"""

from __future__ import annotations

from cqrs_orders.adapters.chosen import publisher, write_store
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.relay import Relay
from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError

__all__ = ["command_handler", "publisher", "read_backend", "relay", "write_store"]


def command_handler(settings: Settings) -> CommandHandler:
    return CommandHandler(write_store(settings))


def relay(settings: Settings, *, batch_size: int = 500, progress=None, who: str = "relay") -> Relay:
    """A relay with a store and a publisher of its own (``who`` names it in the outbox lease)."""
    store, bus = write_store(settings), publisher(settings)
    return Relay(store, bus, batch_size=batch_size, progress=progress, who=who)


def read_backend(settings: Settings):
    """Where the read side (the API, ``sql``, ``report``) reads: with ``CQRS_CATALOG`` set, the SQL warehouse
    ``CQRS_SQL_WAREHOUSE_ID`` over ``CQRS_CATALOG.CQRS_SCHEMA``, authenticated by ``WorkspaceClient()`` from
    the environment; otherwise the local warehouse's Delta folders, read without Spark."""
    if settings.sql_warehouse_id and not settings.catalog:
        raise ConfigurationError(
            "CQRS_SQL_WAREHOUSE_ID needs CQRS_CATALOG and CQRS_SCHEMA: the schema holding the views."
        )
    if not settings.catalog:
        from cqrs_orders.query.delta import DeltaBackend

        return DeltaBackend.for_warehouse(settings)
    if not settings.sql_warehouse_id:
        raise ConfigurationError(
            "With CQRS_CATALOG set the read models are Unity Catalog tables: set CQRS_SQL_WAREHOUSE_ID to "
            "the SQL warehouse that serves them, or unset CQRS_CATALOG to read the local warehouse."
        )
    from databricks.sdk import WorkspaceClient

    from cqrs_orders.query.api import SqlWarehouseBackend

    try:
        client = WorkspaceClient()
    except ValueError as error:  # the SDK's message names the missing host or credentials
        raise ConfigurationError(f"Cannot authenticate to the Databricks workspace: {error}") from None
    return SqlWarehouseBackend(client, settings.sql_warehouse_id, settings.catalog, settings.schema)
