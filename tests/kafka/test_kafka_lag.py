"""The lag monitor reads the Kafka bus itself (issue 33, point 3): a projection that is stopped, or never
started, leaves records on the bus that the monitor counts and alerts on, instead of freezing with the
projection's own progress and reading healthy.

The whole flow runs on real parts: commands into the SQLite write store, the relay publishing them to the
suite's Kafka broker, ``cqrs-orders project --once`` and ``cqrs-orders lag``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from kafka import KafkaProducer

from cqrs_orders.adapters.kafka_bus import BusOffsets, KafkaBusReader
from cqrs_orders.config import Settings
from cqrs_orders.exit_codes import ExitCode
from cqrs_orders.ops.bus import DATA_LOST, UNREADABLE, assess, first_unread, measure_kafka_bus

THRESHOLD = "1"  # seconds: the test waits past it instead of back-dating events


def _reader(broker: str, topic: str) -> KafkaBusReader:
    return KafkaBusReader({"bootstrap_servers": broker}, topic, timeout_seconds=10)


def test_the_reader_sees_the_bus_offsets_and_the_records_at_them(kafka_broker, kafka_topic):
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    for n in range(5):
        producer.send(kafka_topic, value=f"record-{n}".encode(), partition=n % 2)
    producer.flush()
    producer.close()
    reader = _reader(kafka_broker, kafka_topic)
    try:
        offsets = reader.offsets()
        records = reader.records_at({0: 1, 1: 0})
        again = reader.records_at({0: 2})  # a second read assigns afresh
    finally:
        reader.close()

    assert offsets == BusOffsets(beginning={0: 0, 1: 0}, end={0: 3, 1: 2})
    assert {p: (r.offset, r.body) for p, r in records.items()} == {0: (1, "record-2"), 1: (0, "record-1")}
    assert {p: (r.offset, r.body) for p, r in again.items()} == {0: (2, "record-4")}
    assert all(
        abs((datetime.now(timezone.utc) - r.enqueued_time).total_seconds()) < 60 for r in records.values()
    )


def test_a_missing_topic_or_broker_is_an_unreadable_bus_not_a_healthy_one(kafka_broker, settings):
    missing = Settings.from_env(
        settings.warehouse, env={"KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "EVENTHUB_NAME": "no-such-topic"}
    )
    measure = measure_kafka_bus(
        missing, {}, datetime.now(timezone.utc), reader_factory=lambda s: _short(kafka_broker, s.kafka_topic)
    )
    assert measure.breaches() == (UNREADABLE,) and measure.backlog is None
    assert "no-such-topic" in measure.error


def _short(broker: str, topic: str) -> KafkaBusReader:
    return KafkaBusReader({"bootstrap_servers": broker}, topic, timeout_seconds=1)


def test_records_the_bus_dropped_or_an_offset_reset_are_data_loss():
    now = datetime.now(timezone.utc)
    # Partition 0: retention removed offsets 0..4 while the projection had read 3; partition 1: the topic
    # was made again, its end (2) is before the projection's position (7).
    offsets = BusOffsets(beginning={0: 5, 1: 0}, end={0: 9, 1: 2})
    measure = assess("topic 't'", offsets, {0: 3, 1: 7}, [], now)
    assert (measure.lost, measure.reset_partitions, measure.backlog) == (2, (1,), 4)
    assert measure.breaches() == (DATA_LOST,)
    assert first_unread(offsets, {0: 3, 1: 7}) == {0: 5}
    assert assess("t", BusOffsets({0: 0}, {0: 4}), {0: 4}, [], now).breaches() == ()


def test_lag_reads_the_bus_while_the_projection_is_stopped_or_never_started(
    spark, kafka_broker, kafka_topic, cli
):
    topic = kafka_topic
    flags = (
        *("--source", "kafka", "--publisher", "kafka"),
        *("--kafka-bootstrap-servers", kafka_broker, "--eventhub-name", topic),
    )
    bus_cli = _on_the_bus(cli, flags)

    # Never started: events wait on the bus, no progress, no bronze.
    _commit_and_publish(bus_cli, "cust-1")
    time.sleep(1.5)  # past the threshold
    never = bus_cli("lag", "--threshold-seconds", THRESHOLD)
    assert never.exit_code == ExitCode.LAG_BREACH, never.stdout
    assert "bus_backlog" in never.stdout and "2 records not read by the projection" in never.stdout, (
        never.stdout
    )

    assert bus_cli("project", "--once").exit_code == ExitCode.OK
    caught_up = bus_cli("lag", "--threshold-seconds", THRESHOLD, "--json")
    report = json.loads(caught_up.stdout)
    assert caught_up.exit_code == ExitCode.OK, caught_up.stdout
    assert report["bus"]["backlog"] == 0 and {p["bus_backlog"] for p in report["projections"]} == {0}

    # Stopped after a batch: its progress and bronze stay where they were while the bus moves on.
    _commit_and_publish(bus_cli, "cust-2")
    time.sleep(1.5)
    stopped = bus_cli("lag", "--threshold-seconds", THRESHOLD, "--json")
    report = json.loads(stopped.stdout)
    assert stopped.exit_code == ExitCode.LAG_BREACH, stopped.stdout
    assert report["bus"]["backlog"] == 2 and report["bus"]["oldest_waiting_age_seconds"] >= 1
    for projection in report["projections"]:
        assert projection["bus_backlog"] == 2
        assert {"staleness", "bus_backlog"} <= set(projection["breaches"]), projection

    assert bus_cli("project", "--once").exit_code == ExitCode.OK
    healthy = bus_cli("lag", "--threshold-seconds", THRESHOLD)
    assert healthy.exit_code == ExitCode.OK, healthy.stdout
    assert "0 records not read by the projection" in healthy.stdout


def _commit_and_publish(cli, customer_id: str) -> None:
    """A customer registered and updated (2 events), published to the bus by the relay."""
    register = {
        "type": "RegisterCustomer",
        "customerId": customer_id,
        "name": "Ada",
        "email": "a@example.com",
    }
    update = {**register, "type": "UpdateCustomer", "name": "Ada L."}
    for command in (register, update):
        assert cli("submit", json.dumps(command)).exit_code == ExitCode.OK
    published = cli("relay")
    assert published.exit_code == ExitCode.OK and "published 2 events" in published.stdout, published.stdout


def _on_the_bus(cli, flags):
    """The ``cli`` fixture with the settings that put this test's commands on the Kafka bus."""
    return lambda *args: cli(*args, *flags)
