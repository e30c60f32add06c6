"""Publish to the bus's Kafka endpoint: Azure Event Hubs in production, a Kafka broker in tests.

Why Kafka and not the Event Hubs AMQP SDK: the projection already reads the hub through its Kafka endpoint,
so with the relay writing through it too, one protocol goes in and out of the bus, and the local Kafka broker
judges both ends of it. No local server speaks Event Hubs' AMQP dialect (its CBS and management nodes), so
an AMQP publisher could only ever be tested against a live namespace (``docs/architecture.md``).

The record key is the aggregate id: Kafka's partitioner sends one aggregate to one partition, where the
records keep the order they were sent in. ``max_in_flight_requests_per_connection=1`` keeps that order
across the client's own retries. A record the broker has not acknowledged (``acks=all``) within
``delivery_timeout_ms`` fails the whole call with :class:`~cqrs_orders.errors.PublishError`: the relay then
leaves its outbox position where it was and publishes the set again later (at least once; the event id
travels in the ``eventId`` header and the body, so consumers dedupe).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kafka import KafkaProducer
from kafka.errors import KafkaError

from cqrs_orders.adapters.kafka_endpoint import kafka_endpoint
from cqrs_orders.application.ports import OutboxEntry, Publisher
from cqrs_orders.config import Settings
from cqrs_orders.errors import PublishError

log = logging.getLogger(__name__)

#: Event Hubs' largest Kafka message (1 MiB, Standard tier); a larger event fails with a clear error.
MAX_MESSAGE_BYTES = 1_048_576
#: How long one set may take to be acknowledged before the relay gives up on it and retries later.
DELIVERY_TIMEOUT_MS = 120_000


class KafkaPublisher(Publisher):
    """Connects at the first publish, not when built: a bus that is down when the relay starts is a
    :class:`~cqrs_orders.errors.PublishError` the following relay retries, not a process that cannot start."""

    def __init__(self, producer_options: dict, topic: str):
        self._options = producer_options
        self._producer: KafkaProducer | None = None
        self.topic = topic

    @classmethod
    def from_settings(cls, settings: Settings, **producer_options) -> KafkaPublisher:
        endpoint = kafka_endpoint(settings, "CQRS_PUBLISHER=kafka")
        options = endpoint.client_options() | {
            "acks": "all",  # durable on the broker's replicas before the outbox moves on
            "enable_idempotence": False,  # not on every Event Hubs tier; the next line keeps the order
            "max_in_flight_requests_per_connection": 1,
            "linger_ms": 5,  # a relay set goes out as few requests per partition
            "max_request_size": MAX_MESSAGE_BYTES,
            "delivery_timeout_ms": DELIVERY_TIMEOUT_MS,
            "request_timeout_ms": 60_000,  # Microsoft's recommended client settings for Event Hubs
            "metadata_max_age_ms": 180_000,
            "connections_max_idle_ms": 180_000,  # Event Hubs closes connections idle for 240 s
            "client_id": "cqrs-orders-relay",
        }
        return cls(options | producer_options, settings.kafka_topic)

    def publish(self, entries: Sequence[OutboxEntry]) -> None:
        if not entries:
            return
        for entry in entries:
            if len(entry.body.encode()) > MAX_MESSAGE_BYTES:
                raise PublishError(
                    f"event {entry.event_id} ({len(entry.body.encode())} bytes) is larger than the bus's "
                    f"message size limit ({MAX_MESSAGE_BYTES} bytes); it cannot be published"
                )
        try:
            producer = self._connected()
            sent = [
                producer.send(
                    self.topic,
                    key=entry.aggregate_id.encode(),
                    value=entry.body.encode(),
                    headers=[("eventId", entry.event_id.encode())],
                )
                for entry in entries
            ]
            producer.flush(timeout=DELIVERY_TIMEOUT_MS / 1000)
            for future in sent:
                future.get(timeout=0)  # raises the record's own failure, if any
        except KafkaError as error:
            detail = str(error).splitlines()[0] if str(error) else "no detail"
            raise PublishError(
                f"the bus at {self._options['bootstrap_servers']} did not accept the events on topic "
                f"{self.topic!r} ({type(error).__name__}: {detail}); check EVENTHUB_SEND_CONNECTION or "
                "KAFKA_BOOTSTRAP_SERVERS and the network. The outbox keeps the events: the relay publishes "
                "them again."
            ) from error

    def _connected(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(**self._options)
        return self._producer

    def close(self) -> None:
        if self._producer is None:
            return
        try:
            self._producer.close(timeout=5)
        except KafkaError as error:  # closing must never hide what the relay was reporting
            log.warning("closing the Kafka producer: %s", error)
        self._producer = None
