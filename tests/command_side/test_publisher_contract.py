"""One contract for every publisher (the event bus port), run against each adapter: the embedded event log
always, Azure Event Hubs when ``EVENTHUB_CONNECTION`` is set. Plus Event Hubs' batching and failure paths,
which need no hub: the SDK's own ``EventDataBatch`` and an endpoint on 127.0.0.1 that refuses connections."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import pytest
from azure.eventhub import EventDataBatch

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.adapters.event_log_publisher import EventLogPublisher
from cqrs_orders.adapters.eventhubs_publisher import EventHubsPublisher, split_batches
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
        publisher = EventHubsPublisher.from_settings(settings)
        consumer = EventHubConsumerClient.from_connection_string(
            settings.secret("EVENTHUB_CONNECTION").reveal(), "$Default", eventhub_name=settings.eventhub_name
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


class RecordingBatch(EventDataBatch):
    """The SDK's real batch (own size accounting, ``ValueError`` when full) that remembers what it took."""

    def __init__(self, key: str):
        super().__init__(max_size_in_bytes=1024, partition_key=key)
        self.key, self.versions = key, []

    def add(self, event_data):
        super().add(event_data)
        self.versions.append(json.loads(event_data.body_as_str())["version"])


def test_batches_split_at_the_size_limit_keeping_each_key_in_order():
    entries = entries_for(["a", "b"], per_key=10, size=150)
    batches = list(split_batches(entries, RecordingBatch))
    assert len(batches) > 2  # 20 events of ~250 bytes do not fit two 1 KiB batches
    assert all(len(batch) > 0 and batch.size_in_bytes <= 1024 for batch in batches)
    versions: dict[str, list[int]] = {}
    for batch in batches:
        versions.setdefault(batch.key, []).extend(batch.versions)
    assert versions == {"a": list(range(1, 11)), "b": list(range(1, 11))}


def test_an_event_larger_than_the_limit_is_a_clear_error():
    [too_big] = entries_for(["a"], per_key=1, size=2000)
    with pytest.raises(PublishError, match=r"larger than the hub's message size limit \(1024 bytes\)"):
        list(split_batches([too_big], RecordingBatch))


UNREACHABLE = "Endpoint=sb://127.0.0.1:9/;SharedAccessKeyName=relay;SharedAccessKey=c2VjcmV0LWtleQ=="


def test_an_unreachable_hub_is_a_publish_error_and_the_outbox_keeps_the_events(settings, given, store):
    given.customer()
    unreachable = Settings.from_env(settings.warehouse, env={"EVENTHUB_CONNECTION": UNREACHABLE})
    publisher = EventHubsPublisher.from_settings(
        unreachable, retry_total=1, retry_backoff_factor=0.01, retry_backoff_max=0.05
    )
    started = time.monotonic()
    with pytest.raises(PublishError) as raised:
        Relay(store, publisher).drain()
    assert time.monotonic() - started < 30
    message = str(raised.value)
    assert "did not accept the events" in message and "run the relay again" in message
    assert "c2VjcmV0LWtleQ" not in message  # the key never shows
    assert store.counts()["outbox_pending"] == 1
    publisher.close()


def test_event_hubs_without_a_connection_string_says_what_to_set(settings):
    with pytest.raises(ConfigurationError, match="EVENTHUB_CONNECTION"):
        EventHubsPublisher.from_settings(settings)
