"""The adapters the settings name: the write store and the publisher of this deployment.

Adapters are imported only when chosen, so ``submit`` never loads the Azure SDKs or the Delta writer, and
the laptop never needs them.
"""

from __future__ import annotations

from cqrs_orders.application.ports import Publisher, WriteStore
from cqrs_orders.config import Settings


def write_store(settings: Settings) -> WriteStore:
    """Cosmos DB when ``write_store`` says so, else the embedded SQLite store at its path."""
    if settings.write_store == "cosmos":
        from cqrs_orders.adapters.cosmos_store import CosmosWriteStore

        return CosmosWriteStore.from_settings(settings)
    from cqrs_orders.adapters.sqlite_store import SqliteWriteStore

    return SqliteWriteStore.from_settings(settings)


def publisher(settings: Settings) -> Publisher:
    """Kafka (Event Hubs) when ``publisher`` says so, else the embedded Delta event log."""
    if settings.publisher == "kafka":
        from cqrs_orders.adapters.kafka_publisher import KafkaPublisher

        return KafkaPublisher.from_settings(settings)
    from cqrs_orders.adapters.event_log_publisher import EventLogPublisher

    return EventLogPublisher(settings.event_log_path, settings.event_log_partitions)
