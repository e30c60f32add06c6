"""What every command's decision shares: the aggregate it loads, and the checks made before its own rule.

No I/O happens here: the application layer loads the current :class:`Snapshot` (and the aggregates the
command ``refers_to``), calls :func:`decide`, and appends the returned events atomically. Every event
carries the aggregate's full state after it (the envelope contract), so a projection never has to replay
history. Each command's own rule is its ``decide`` (:mod:`cqrs_orders.domain.commands`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cqrs_orders.domain.commands import Command, State
from cqrs_orders.envelope import (
    AGGREGATE_ID_FIELD,
    AggregateType,
    CustomerState,
    EventEnvelope,
    EventMetadata,
    OrderState,
    new_event,
)
from cqrs_orders.errors import AlreadyExists, ConcurrencyConflict, NotFound


@dataclass(frozen=True)
class Snapshot:
    """An aggregate as stored: its state after its latest event, and that event's version."""

    aggregate_type: AggregateType
    state: OrderState | CustomerState
    version: int


def decide(
    command: Command,
    current: Snapshot | None,
    *,
    now: datetime,
    referenced: Mapping[str, State | None] | None = None,
) -> list[EventEnvelope]:
    """The events ``command`` (after ``with_target``) causes on ``current``, or a ``CommandRejected`` naming
    the rule it breaks.

    First the rules every command shares: ``expectedVersion`` must be the aggregate's version; the id must
    not name an aggregate of another type; a command that ``creates`` needs its aggregate absent, any other
    needs it present. Then the command's own ``decide``. ``referenced`` holds the state of each aggregate
    the command ``refers_to`` (``None``: no aggregate of that type has the id).
    """
    kind, aggregate_id = command.target()
    id_field = AGGREGATE_ID_FIELD[kind]
    version = current.version if current else 0
    if command.expectedVersion is not None and command.expectedVersion != version:
        raise ConcurrencyConflict(
            f"expectedVersion: {kind.value} {aggregate_id!r} is at version {version}, not "
            f"{command.expectedVersion}; reload it and decide again"
        )
    if current is not None and current.aggregate_type is not kind:
        error = AlreadyExists if command.creates else NotFound
        raise error(f"{id_field}: {aggregate_id!r} already identifies a {current.aggregate_type.value}")
    state = current.state if current else None
    if command.creates and state is not None:
        raise AlreadyExists(f"{id_field}: {command.already_exists.format(id=aggregate_id)}")
    if not command.creates and state is None:
        raise NotFound(f"{id_field}: {command.missing.format(id=aggregate_id)}")
    referenced = referenced or {}
    event_type, after = command.decide(
        state, now, {field: referenced.get(field) for field in command.refers_to}
    )
    if event_type not in command.emits:  # a bug in the declaration: its events are what the docs promise
        raise TypeError(f"{command.type} recorded {event_type!r}, which it does not declare in emits")
    return [
        new_event(
            event_type,
            after,
            version + 1,
            causation_id=command.commandId,
            correlation_id=command.correlationId or command.commandId,
            metadata=EventMetadata(userId=command.metadata.userId, source=command.metadata.source),
            at=now,
        )
    ]
