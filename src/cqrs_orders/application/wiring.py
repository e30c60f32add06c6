"""Pick the adapters named by the settings and assemble the command handler and the relay.

Adapters are imported only when chosen, so ``submit`` never loads the Azure SDKs or the Delta writer.
"""

from __future__ import annotations

from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.ports import Publisher, WriteStore
from cqrs_orders.application.relay import Relay
from cqrs_orders.config import Settings


def write_store(settings: Settings) -> WriteStore:
    if settings.write_store == "cosmos":
        from cqrs_orders.adapters.cosmos_store import CosmosWriteStore

        return CosmosWriteStore.from_settings(settings)
    from cqrs_orders.adapters.sqlite_store import SqliteWriteStore

    return SqliteWriteStore(settings.write_store_path)


def publisher(settings: Settings) -> Publisher:
    if settings.publisher == "kafka":
        from cqrs_orders.adapters.kafka_publisher import KafkaPublisher

        return KafkaPublisher.from_settings(settings)
    from cqrs_orders.adapters.event_log_publisher import EventLogPublisher

    return EventLogPublisher(settings.event_log_path, settings.event_log_partitions)


def command_handler(settings: Settings) -> CommandHandler:
    return CommandHandler(write_store(settings))


def relay(settings: Settings, *, batch_size: int = 500, progress=None, who: str = "relay") -> Relay:
    """A relay with a store and a publisher of its own (``who`` names it in the outbox lease)."""
    store, bus = write_store(settings), publisher(settings)
    return Relay(store, bus, batch_size=batch_size, progress=progress, who=who)
