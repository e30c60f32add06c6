"""Read the bus's Kafka endpoint (Event Hubs, or the local broker) as an observer, for the lag monitor.

The monitor must see the bus as it is, not as the projection last saw it: a projection that is paused, hung
or never started reports nothing, so figures taken from its own progress freeze with it and read as healthy.
This reader asks the broker itself: per partition the first and next offsets (``beginning_offsets`` /
``end_offsets``) and, on request, the record at a given offset (its enqueued time and body).

It is a consumer **without a group**: it joins no consumer group, commits nothing and moves nobody's
position, so it can run beside the projection (whose Spark source keeps its offsets in its checkpoint) at
any time. It uses the endpoint and login of :mod:`.kafka_endpoint`, as the relay and the projection do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from cqrs_orders.adapters.kafka_endpoint import kafka_endpoint
from cqrs_orders.config import Settings
from cqrs_orders.errors import BusReadError

log = logging.getLogger(__name__)

#: The longest the reader waits for the broker (metadata, offsets, a record) before it reports the bus
#: unreadable: the monitor runs every 5 minutes and must finish well within its own timeout.
READ_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class BusOffsets:
    """Per partition, the first offset the bus still holds and the offset its next record will get."""

    beginning: dict[int, int]
    end: dict[int, int]


@dataclass(frozen=True)
class BusRecord:
    partition: int
    offset: int
    enqueued_time: datetime  # the record's timestamp on the bus (Event Hubs: when it was enqueued)
    body: str | None


class KafkaBusReader:
    """Offsets and single records of one topic; connects at the first call, raises :class:`BusReadError`."""

    def __init__(self, client_options: dict, topic: str, timeout_seconds: float = READ_TIMEOUT_SECONDS):
        self.topic = topic
        self.timeout_seconds = timeout_seconds
        self._options = {
            **client_options,
            "group_id": None,  # an observer: no group, no commits, nobody's position moves
            "enable_auto_commit": False,
            "client_id": "cqrs-orders-lag-monitor",
            "request_timeout_ms": int(timeout_seconds * 1000) + 1000,
            "max_poll_records": 1,
            "connections_max_idle_ms": 180_000,  # Event Hubs closes connections idle for 240 s
        }
        self._consumer: KafkaConsumer | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaBusReader:
        endpoint = kafka_endpoint(settings, "CQRS_SOURCE=kafka")
        return cls(endpoint.client_options(), settings.kafka_topic)

    @property
    def address(self) -> str:
        return f"topic {self.topic!r} at {self._options['bootstrap_servers']}"

    def offsets(self) -> BusOffsets:
        """The topic's first and next offsets per partition; a missing topic is a :class:`BusReadError`."""
        consumer = self._connected()
        try:
            partitions = self._partitions(consumer)
            beginning = consumer.beginning_offsets(partitions)
            end = consumer.end_offsets(partitions)
        except KafkaError as error:
            raise self._error("read the offsets of", error) from error
        return BusOffsets(
            {tp.partition: int(o) for tp, o in beginning.items()},
            {tp.partition: int(o) for tp, o in end.items()},
        )

    def records_at(self, offsets: Mapping[int, int]) -> dict[int, BusRecord]:
        """Per partition, the first record at or after the given offset (none for a partition with no record
        there by the timeout). A consumer of its own per call: kafka-python keeps the fetch state of a
        partition across assignments (records fetched for an earlier position, its pause), which a second
        read of the same partition must not see."""
        if not offsets:
            return {}
        try:
            consumer = KafkaConsumer(**self._options)
        except KafkaError as error:
            raise self._error("connect to", error) from error
        found: dict[int, BusRecord] = {}
        try:
            assigned = [TopicPartition(self.topic, partition) for partition in offsets]
            consumer.assign(assigned)
            for tp in assigned:
                consumer.seek(tp, offsets[tp.partition])
            deadline = time.monotonic() + self.timeout_seconds
            while len(found) < len(offsets) and (left := deadline - time.monotonic()) > 0:
                for tp, records in consumer.poll(timeout_ms=int(min(left, 1.0) * 1000)).items():
                    if records and tp.partition not in found:
                        found[tp.partition] = _record(records[0])
                        consumer.pause(tp)  # answered: fetch only the others
        except KafkaError as error:
            raise self._error("read records of", error) from error
        finally:
            _close(consumer)
        return found

    def close(self) -> None:
        if self._consumer is not None:
            _close(self._consumer)
            self._consumer = None

    def _connected(self) -> KafkaConsumer:
        if self._consumer is None:
            try:
                self._consumer = KafkaConsumer(**self._options)
            except KafkaError as error:
                raise self._error("connect to", error) from error
        return self._consumer

    def _partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            partitions = consumer.partitions_for_topic(self.topic)
            if partitions:
                return [TopicPartition(self.topic, partition) for partition in sorted(partitions)]
            if time.monotonic() >= deadline:
                raise BusReadError(
                    f"the bus has no {self.address} (or it has no partitions): check EVENTHUB_NAME "
                    "(--eventhub-name) and that the event hub exists"
                )
            consumer.topics()  # refreshes the metadata; a topic made a moment ago appears here
            time.sleep(0.2)

    def _error(self, action: str, error: KafkaError) -> BusReadError:
        detail = str(error).splitlines()[0] if str(error) else "no detail"
        return BusReadError(
            f"could not {action} the bus's {self.address} ({type(error).__name__}: {detail}); check "
            "EVENTHUB_CONNECTION or KAFKA_BOOTSTRAP_SERVERS and the network"
        )


def _close(consumer: KafkaConsumer) -> None:
    try:
        consumer.close()
    except KafkaError as error:  # closing must never hide what the monitor reports
        log.warning("closing the Kafka bus reader: %s", error)


def _record(record) -> BusRecord:
    body = None
    if record.value is not None:
        body = record.value.decode("utf-8", errors="replace")
    enqueued = datetime.fromtimestamp(record.timestamp / 1000, tz=timezone.utc)
    return BusRecord(record.partition, record.offset, enqueued, body)
