"""Publish to the embedded event log (the local stand-in for Event Hubs): key = aggregateId, body = JSON."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.application.ports import OutboxEntry, Publisher
from cqrs_orders.errors import EventLogError, PublishError


class EventLogPublisher(Publisher):
    def __init__(self, path: str | Path, partitions: int = 4):
        self.log = EventLog(path, partitions)

    def publish(self, entries: Sequence[OutboxEntry]) -> None:
        try:
            self.log.append([(entry.aggregate_id, entry.body) for entry in entries])
        except EventLogError as error:
            raise PublishError(f"{error}; the outbox keeps the events, run the relay again") from error
