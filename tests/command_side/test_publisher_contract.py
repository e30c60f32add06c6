"""One contract for every publisher (the event bus port), run against each adapter: the embedded event log
here, the Kafka publisher against the local broker (``tests/kafka/test_kafka_publisher.py``) and against
Azure Event Hubs' Kafka endpoint when ``EVENTHUB_CONNECTION`` is set (read back with Event Hubs' own AMQP
client: what Kafka producers write, Event Hubs consumers see). Plus the Kafka publisher's failure paths,
which need no bus: an endpoint on 127.0.0.1 that refuses connections, an event over the size limit."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import pytest

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.adapters.event_log_publisher import EventLogPublisher
from cqrs_orders.adapters.kafka_publisher import MAX_MESSAGE_BYTES, KafkaPublisher
from cqrs_orders.application.ports import OutboxEntry
from cqrs_orders.application.relay import Relay
from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError, PublishError


def entries_for(keys: list[str], per_key: int, size: int = 20) -> list[OutboxEntry]:
    """Interleaved entries of several aggregates, versions 1..per_key each."""
    entries = []
    for version in range(1, per_key + 1):
        for key in keys:
            event_id = str(uuid.uuid4())
            body = json.dumps(
                {"eventId": event_id, "aggregateId": key, "version": version, "pad": "x" * size}
            )
            entries.append(OutboxEntry(key, event_id, version, body))
    return entries


class PublisherContract:
    """Subclasses provide a ``publisher`` fixture and ``read_back(publisher, event_ids)`` -> bodies by key."""

    def read_back(self, publisher, event_ids: set[str]) -> dict[str, list[dict]]:
        raise NotImplementedError

    def test_each_aggregate_arrives_in_order(self, publisher):
        keys = [f"agg-{uuid.uuid4()}" for _ in range(3)]
        entries = entries_for(keys, per_key=4)
        publisher.publish(entries)
        received = self.read_back(publisher, {e.event_id for e in entries})
        assert sorted(received) == sorted(keys)
        for key in keys:
            assert [body["version"] for body in received[key]] == [1, 2, 3, 4]

    def test_an_empty_publish_is_a_no_op(self, publisher):
        publisher.publish([])


class TestEventLogPublisher(PublisherContract):
    @pytest.fixture
    def publisher(self, settings):
        return EventLogPublisher(settings.event_log_path, settings.event_log_partitions)

    def read_back(self, publisher, event_ids):
        received: dict[str, list[dict]] = {}
        for record in EventLog(publisher.log.path, publisher.log.partitions).read().to_pylist():
            body = json.loads(record["body"])
            if body["eventId"] in event_ids:
                assert record["partition_key"] == body["aggregateId"]
                received.setdefault(body["aggregateId"], []).append(body)
        return received


@pytest.mark.live
@pytest.mark.skipif(
    not os.environ.get("EVENTHUB_CONNECTION"),
    reason="live Event Hubs test: set EVENTHUB_CONNECTION (and EVENTHUB_NAME) to run it",
)
class TestEventHubsPublisher(PublisherContract):
    @pytest.fixture
    def publisher(self, tmp_path):
        from azure.eventhub import EventHubConsumerClient

        settings = Settings.from_env(warehouse=tmp_path)
        publisher = KafkaPublisher.from_settings(settings)
        consumer = EventHubConsumerClient.from_connection_string(
            settings.secret("EVENTHUB_CONNECTION").reveal(), "$Default", eventhub_name=settings.kafka_topic
        )
        # Start reading from each partition's current end, so only this test's events count.
        self.start = {
            pid: consumer.get_partition_properties(pid)["last_enqueued_sequence_number"]
            for pid in consumer.get_partition_ids()
        }
        self.consumer = consumer
        yield publisher
        publisher.close()
        consumer.close()

    def read_back(self, publisher, event_ids):
        received: dict[str, list[dict]] = {}
        count = 0
        done = threading.Event()

        def on_event(_context, event):
            nonlocal count
            if event is None:
                return
            body = json.loads(event.body_as_str())
            if body.get("eventId") in event_ids:
                received.setdefault(body["aggregateId"], []).append(body)
                count += 1
                if count == len(event_ids):
                    done.set()

        worker = threading.Thread(
            target=self.consumer.receive,
            kwargs={
                "on_event": on_event,
                "starting_position": self.start,
                "starting_position_inclusive": False,
                "max_wait_time": 1,
            },
            daemon=True,
        )
        worker.start()
        done.wait(60)
        self.consumer.close()
        worker.join(10)
        return received


def test_an_event_larger_than_the_limit_is_a_clear_error(settings):
    [too_big] = entries_for(["a"], per_key=1, size=MAX_MESSAGE_BYTES)
    local = Settings.from_env(settings.warehouse, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    with pytest.raises(PublishError, match=r"larger than the bus's message size limit \(1048576 bytes\)"):
        KafkaPublisher.from_settings(local).publish([too_big])


UNREACHABLE = "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=relay;SharedAccessKey=c2VjcmV0LWtleQ=="


def test_an_unreachable_bus_is_a_publish_error_and_the_outbox_keeps_the_events(settings, given, store):
    given.customer()
    unreachable = Settings.from_env(settings.warehouse, env={"EVENTHUB_CONNECTION": UNREACHABLE})
    publisher = KafkaPublisher.from_settings(unreachable, bootstrap_timeout_ms=500, max_block_ms=500)
    started = time.monotonic()
    with pytest.raises(PublishError) as raised:
        Relay(store, publisher).drain()
    assert time.monotonic() - started < 30
    message = str(raised.value)
    assert "did not accept the events" in message and "publishes them again" in message
    assert "c2VjcmV0LWtleQ" not in message  # the key never shows
    assert store.counts()["outbox_pending"] == 1
    publisher.close()


def test_the_kafka_publisher_without_a_bus_says_what_to_set(settings):
    with pytest.raises(ConfigurationError, match=r"EVENTHUB_CONNECTION .* or KAFKA_BOOTSTRAP_SERVERS"):
        KafkaPublisher.from_settings(settings)
