"""Build the app from the settings: the command handler ``submit`` uses, and the read models.

Read models: with ``CQRS_SQL_WAREHOUSE_ID`` set (the Databricks App), a SQL warehouse reading the views in
``CQRS_CATALOG.CQRS_SCHEMA``, authenticated by ``WorkspaceClient()`` from the environment (the app's service
principal); otherwise the local warehouse's Delta folders, read without Spark.

Callers: as a Databricks App every command must name its caller (the proxy's headers); anywhere else a
request without them is recorded as anonymous, and the server warns at start that nothing vouches for its
callers (:mod:`.callers`).
"""

from __future__ import annotations

import logging

from cqrs_orders import wiring
from cqrs_orders.config import Settings
from cqrs_orders.http.app import create_app
from cqrs_orders.http.callers import UNAUTHENTICATED_WARNING, CallerPolicy
from cqrs_orders.query.api import ReadModels

logger = logging.getLogger(__name__)


def read_models(settings: Settings) -> ReadModels:
    backend = wiring.read_backend(settings)
    if settings.catalog:
        logger.info("read models: SQL warehouse %s, %s.%s", settings.sql_warehouse_id, settings.catalog,
                    settings.schema)  # fmt: skip
    else:
        logger.info("read models: the Delta tables under %s (no Spark)", settings.warehouse)
    return ReadModels(backend)


def app_for(settings: Settings):
    """The ASGI app for these settings; closes the write store at shutdown. With ``settings.relay ==
    "follow"`` it also runs a following relay (its own store and publisher) from startup to shutdown."""
    models = read_models(settings)
    handler = wiring.command_handler(settings)
    callers = CallerPolicy.for_settings(settings)
    if not callers.required:
        logger.warning(UNAUTHENTICATED_WARNING)
    options = {
        "callers": callers,
        "read_timeout": settings.read_timeout_seconds,
        "write_timeout": settings.write_timeout_seconds,
    }
    if settings.relay != "follow":
        return create_app(handler, models, on_close=handler.store.close, **options)
    from cqrs_orders.application.background_relay import BackgroundRelay

    # Built here, before the server starts, so that a missing setting (the bus's connection) is a usage
    # error of `serve` rather than a failed startup.
    relay = BackgroundRelay(wiring.relay(settings, who="command API relay"))

    def close() -> None:
        relay.stop()  # releases the outbox lease: another relay takes over at once
        handler.store.close()

    return create_app(handler, models, on_start=relay.start, on_close=close, **options)
