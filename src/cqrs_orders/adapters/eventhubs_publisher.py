"""Publish to Azure Event Hubs: partition key = aggregateId (one aggregate, one partition, in order).

Entries are grouped per partition key, in outbox order, and packed into as few batches as the hub's size
limit allows (the SDK's ``EventDataBatch.add`` raises ``ValueError`` when a batch is full). Transient
failures are retried by the SDK a bounded number of times with exponential backoff; after that the relay
gets a :class:`~cqrs_orders.errors.PublishError` and the outbox keeps the events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from azure.eventhub import EventData, EventDataBatch, EventHubProducerClient
from azure.eventhub.exceptions import EventHubError

from cqrs_orders.application.ports import OutboxEntry, Publisher
from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError, PublishError

#: Makes an empty batch for one partition key (``EventHubProducerClient.create_batch`` in production).
BatchFactory = Callable[[str], EventDataBatch]


def split_batches(entries: Sequence[OutboxEntry], new_batch: BatchFactory) -> Iterator[EventDataBatch]:
    """Full batches per partition key, keeping each key's entries in their outbox order."""
    by_key: dict[str, list[OutboxEntry]] = {}
    for entry in entries:
        by_key.setdefault(entry.aggregate_id, []).append(entry)
    for key, keyed in by_key.items():
        batch = new_batch(key)
        for entry in keyed:
            event = EventData(entry.body)
            event.message_id = entry.event_id  # lets consumers (and Event Hubs tooling) dedupe
            try:
                batch.add(event)
            except ValueError:
                if len(batch) == 0:
                    raise PublishError(
                        f"event {entry.event_id} ({len(entry.body.encode())} bytes) is larger than the hub's "
                        f"message size limit ({batch.max_size_in_bytes} bytes); it cannot be published"
                    ) from None
                yield batch
                batch = new_batch(key)
                batch.add(event)
        yield batch


class EventHubsPublisher(Publisher):
    def __init__(self, producer: EventHubProducerClient, hub_name: str):
        self.producer = producer
        self.hub_name = hub_name

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        retry_total: int = 3,
        retry_backoff_factor: float = 0.8,
        retry_backoff_max: float = 30.0,
        **client_options,
    ) -> EventHubsPublisher:
        connection = settings.secret("EVENTHUB_CONNECTION")
        if connection is None:
            raise ConfigurationError(
                "CQRS_PUBLISHER=eventhubs needs EVENTHUB_CONNECTION (an Event Hubs connection string) in the "
                "environment or in the Databricks secret scope CQRS_SECRET_SCOPE (key eventhub-connection)."
            )
        producer = EventHubProducerClient.from_connection_string(
            connection.reveal(),
            eventhub_name=settings.eventhub_name,
            retry_total=retry_total,
            retry_backoff_factor=retry_backoff_factor,
            retry_backoff_max=retry_backoff_max,
            **client_options,
        )
        return cls(producer, settings.eventhub_name)

    def publish(self, entries: Sequence[OutboxEntry]) -> None:
        try:
            for batch in split_batches(entries, lambda key: self.producer.create_batch(partition_key=key)):
                self.producer.send_batch(batch)
        except EventHubError as error:
            raise PublishError(
                f"Event Hubs {self.hub_name!r} did not accept the events after retrying "
                f"({type(error).__name__}: "
                f"{str(error).splitlines()[0]}); check EVENTHUB_CONNECTION and the network. The outbox keeps "
                "the events: run the relay again."
            ) from error

    def close(self) -> None:
        self.producer.close()
