"""The publisher contract against a real Kafka broker: what production does against Event Hubs' Kafka
endpoint (``adapters/kafka_publisher.py``), read back with a Kafka consumer. Plus what the contract cannot
say: the record key is the aggregate id, and every event id travels in a header."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from cqrs_orders.adapters.kafka_publisher import KafkaPublisher
from cqrs_orders.config import Settings

pytestmark = pytest.mark.kafka


def _contract_module():
    # Test folders are not packages (pytest's importlib mode): load the contract's module by path.
    path = Path(__file__).parents[1] / "command_side" / "test_publisher_contract.py"
    spec = importlib.util.spec_from_file_location("cqrs_orders_test_publisher_contract", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_contract = _contract_module()


def read_topic(bootstrap: str, topic: str, wanted: set[str], timeout: float = 30.0) -> list:
    """Every record of ``topic`` until all ``wanted`` event ids were seen (or the timeout)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records, seen, deadline = [], set(), time.monotonic() + timeout
    while not wanted <= seen and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            for record in batch:
                records.append(record)
                seen.add(json.loads(record.value)["eventId"])
    consumer.close()
    return records


class TestKafkaPublisher(_contract.PublisherContract):
    @pytest.fixture
    def publisher(self, kafka_broker, kafka_topic, tmp_path):
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "EVENTHUB_NAME": kafka_topic}
        publisher = KafkaPublisher.from_settings(Settings.from_env(tmp_path, env=env))
        yield publisher
        publisher.close()

    def read_back(self, publisher, event_ids):
        bootstrap = publisher._options["bootstrap_servers"]
        received: dict[str, list[dict]] = {}
        for record in read_topic(bootstrap, publisher.topic, event_ids):
            body = json.loads(record.value)
            if body["eventId"] in event_ids:
                received.setdefault(body["aggregateId"], []).append(body)
        return received


def test_records_are_keyed_by_aggregate_and_carry_their_event_id(kafka_broker, kafka_topic, tmp_path):
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "EVENTHUB_NAME": kafka_topic}
    publisher = KafkaPublisher.from_settings(Settings.from_env(tmp_path, env=env))
    entries = _contract.entries_for(["order-a", "order-b", "cust-c"], per_key=3)
    publisher.publish(entries)
    publisher.close()
    records = read_topic(kafka_broker, kafka_topic, {e.event_id for e in entries})
    assert len(records) == len(entries)
    partitions: dict[str, set[int]] = {}
    for record in records:
        body = json.loads(record.value)
        assert record.key.decode() == body["aggregateId"]
        assert dict(record.headers)["eventId"].decode() == body["eventId"]
        partitions.setdefault(body["aggregateId"], set()).add(record.partition)
    assert all(len(found) == 1 for found in partitions.values())  # one aggregate, one partition
