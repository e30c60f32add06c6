"""The lag monitor's look at the bus on Kafka / Event Hubs, taken from the bus itself.

Why not from the projection: its progress rows and bronze freeze when it is paused, hung or never started,
and figures taken from them then read as "nothing waiting" (the failure the monitor exists to catch). So the
bus's side comes from the broker (:class:`~cqrs_orders.adapters.kafka_bus.KafkaBusReader`): per partition
its first and next offsets, the record the projection would read next (the oldest waiting) and the newest
one. The projection's side is its position: where its checkpoint says it has read to, given by the caller.

From those, per topic:

- **backlog**: records the bus holds that the projection has not read (``end - max(position, beginning)``);
- **oldest waiting**: how long ago the oldest unread record was enqueued;
- **waiting events**: the aggregate type and event time of the sampled unread records (the oldest and the
  newest per partition), which the event-time lag counts as "on the bus" next to bronze's;
- **lost**: records the bus dropped before the projection read them (its first offset is past the
  position: retention ran out), and partitions whose next offset is *before* the position (the topic was
  deleted and made again). Either stops the projection (``failOnDataLoss``): ``docs/operations.md``, "The
  bus lost events", says what to do.

A bus that cannot be read is a breach of its own (``bus_unreadable``): then the monitor cannot vouch for
anything downstream of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cqrs_orders.adapters.kafka_bus import BusOffsets, BusRecord, KafkaBusReader
from cqrs_orders.config import Settings
from cqrs_orders.errors import BusReadError
from cqrs_orders.ops.measures import event_of

log = logging.getLogger(__name__)

#: The breaches' names in ``ops_projection_lag.breaches`` and in alerts.
UNREADABLE = "bus_unreadable"
DATA_LOST = "bus_data_lost"


@dataclass(frozen=True)
class BusMeasure:
    """What the monitor found on the bus; ``error`` says why nothing could be measured."""

    address: str
    end_offsets: dict[int, int] | None
    backlog: int | None
    oldest_waiting_age_seconds: float | None = None  # None: nothing waits
    lost: int = 0
    reset_partitions: tuple[int, ...] = ()
    waiting_events: tuple[tuple[str, datetime], ...] = field(default=(), repr=False)
    error: str | None = None

    def breaches(self) -> tuple[str, ...]:
        if self.error is not None:
            return (UNREADABLE,)
        return (DATA_LOST,) if self.lost or self.reset_partitions else ()

    def to_text(self) -> str:
        if self.error is not None:
            return f"unreadable: {self.error}"
        text = f"{self.address}: {self.backlog} records not read by the projection"
        if self.oldest_waiting_age_seconds is not None:
            text += f", the oldest enqueued {self.oldest_waiting_age_seconds:.1f} s ago"
        if self.lost:
            text += f"; {self.lost} records dropped by the bus before the projection read them (retention)"
        if self.reset_partitions:
            partitions = ", ".join(map(str, self.reset_partitions))
            text += (
                f"; partition(s) {partitions} end before the projection's position (the topic was made again)"
            )
        if self.lost or self.reset_partitions:
            text += ": see docs/operations.md, 'The bus lost events'"
        return text

    def as_json(self) -> dict:
        return {
            "address": self.address,
            "end_offsets": None
            if self.end_offsets is None
            else {str(p): o for p, o in self.end_offsets.items()},
            "backlog": self.backlog,
            "oldest_waiting_age_seconds": self.oldest_waiting_age_seconds,
            "lost": self.lost,
            "reset_partitions": list(self.reset_partitions),
            "error": self.error,
        }


def assess(
    address: str,
    offsets: BusOffsets,
    positions: Mapping[int, int],
    samples: list[BusRecord],
    now: datetime,
) -> BusMeasure:
    """The measure from the bus's offsets, the projection's positions (partition -> next offset it reads;
    a partition it never read is at 0) and sampled unread records."""
    backlog, lost, reset = 0, 0, []
    for partition, end in offsets.end.items():
        position = positions.get(partition, 0)
        beginning = offsets.beginning.get(partition, 0)
        if end < position:
            reset.append(partition)
        lost += max(0, min(beginning, end) - position)
        backlog += max(0, end - max(position, beginning))
    oldest = min((record.enqueued_time for record in samples), default=None)
    return BusMeasure(
        address=address,
        end_offsets=dict(offsets.end),
        backlog=backlog,
        oldest_waiting_age_seconds=None if oldest is None else max(0.0, (now - oldest).total_seconds()),
        lost=lost,
        reset_partitions=tuple(sorted(reset)),
        waiting_events=tuple(event for record in samples if (event := event_of(record.body)) is not None),
    )


def first_unread(offsets: BusOffsets, positions: Mapping[int, int]) -> dict[int, int]:
    """Per partition with unread records, the offset of the first one the bus still holds."""
    first = {p: max(positions.get(p, 0), offsets.beginning.get(p, 0)) for p in offsets.end}
    return {p: offset for p, offset in first.items() if offset < offsets.end[p]}


def measure_kafka_bus(
    settings: Settings,
    positions: Mapping[int, int],
    now: datetime,
    reader_factory: Callable[[Settings], KafkaBusReader] = KafkaBusReader.from_settings,
) -> BusMeasure:
    """Read the configured topic and assess it against the projection's ``positions``. A configuration
    error (no broker configured) is raised; a bus that does not answer is a measure with ``error``."""
    reader = reader_factory(settings)
    try:
        offsets = reader.offsets()
        oldest = first_unread(offsets, positions)
        newest = {p: offsets.end[p] - 1 for p, offset in oldest.items() if offsets.end[p] - 1 > offset}
        samples = [*reader.records_at(oldest).values(), *reader.records_at(newest).values()]
    except BusReadError as error:
        log.warning("bus: could not be measured: %s", error)
        return BusMeasure(reader.address, None, None, error=str(error))
    finally:
        reader.close()
    return assess(reader.address, offsets, positions, samples, now)
