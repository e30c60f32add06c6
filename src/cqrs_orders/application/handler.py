"""Handle one command: validate -> load the aggregate -> decide -> append state, events and outbox at once.

Concurrency is optimistic: the store refuses a commit when the aggregate moved since it was loaded. With an
``expectedVersion`` the caller asked for exactly that version, so a conflict is reported; without one the
handler reloads and decides again, a bounded number of times. A ``commandId`` makes retries safe: an
accepted command's outcome is stored with its events, and a repeat is answered from it.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cqrs_orders.application.ports import (
    Commit,
    DuplicateCommand,
    RecordedOutcome,
    VersionConflict,
    WriteStore,
)
from cqrs_orders.domain.aggregates import decide, target_of, with_target
from cqrs_orders.domain.commands import CreateOrder, decode_command, validate_command
from cqrs_orders.envelope import AggregateType
from cqrs_orders.errors import AlreadyExists, CommandRejected, ConcurrencyConflict


@dataclass(frozen=True)
class CommandResult:
    """The answer to one command (the CLI prints ``to_dict()`` as one JSON line)."""

    commandId: str | None
    status: str
    aggregateId: str | None = None
    version: int | None = None
    eventIds: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def to_dict(self) -> dict[str, Any]:
        return {
            "commandId": self.commandId,
            "status": self.status,
            "aggregateId": self.aggregateId,
            "version": self.version,
            "eventIds": list(self.eventIds),
            "error": dict(self.error) if self.error else None,
        }

    @classmethod
    def rejected(
        cls, command_id: str | None, aggregate_id: str | None, error: CommandRejected
    ) -> CommandResult:
        return cls(command_id, "rejected", aggregate_id, error={"code": error.code, "message": error.message})

    @classmethod
    def from_dict(cls, outcome: dict[str, Any]) -> CommandResult:
        return cls(**outcome)


class CommandHandler:
    """Runs commands against one write store."""

    def __init__(
        self,
        store: WriteStore,
        *,
        max_attempts: int = 8,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self.store = store
        self.max_attempts = max_attempts
        self.clock = clock

    def handle(self, raw: str | bytes | dict) -> CommandResult:
        declared_id = None
        try:
            decoded = decode_command(raw)
            declared_id = _declared_command_id(decoded)
            command = validate_command(decoded)
        except CommandRejected as error:
            return CommandResult.rejected(declared_id, None, error)
        fingerprint = hashlib.sha256(command.model_dump_json().encode()).hexdigest()
        given_id = command.commandId
        command = with_target(command.model_copy(update={"commandId": given_id or str(uuid.uuid4())}))
        kind, aggregate_id = target_of(command)
        if given_id is not None:
            recorded = self.store.recorded_outcome(given_id, aggregate_id)
            if recorded is not None:
                return _replay(recorded, fingerprint)
        for attempt in range(self.max_attempts):
            current = self.store.load(aggregate_id)
            customer = None
            if isinstance(command, CreateOrder):
                found = self.store.load(command.customerId)
                customer = found.state if found and found.aggregate_type is AggregateType.CUSTOMER else None
            try:
                events = decide(command, current, now=self.clock(), customer=customer)
            except CommandRejected as error:
                return CommandResult.rejected(command.commandId, aggregate_id, error)
            result = CommandResult(
                command.commandId,
                "accepted",
                aggregate_id,
                events[-1].version,
                [str(e.eventId) for e in events],
            )
            commit = Commit(
                command_id=command.commandId,
                fingerprint=fingerprint,
                command_json=command.model_dump_json(),
                aggregate_type=kind,
                aggregate_id=aggregate_id,
                base_version=current.version if current else 0,
                events=events,
                outcome=result.to_dict(),
            )
            try:
                self.store.append(commit)
                return result
            except DuplicateCommand as duplicate:
                return _replay(duplicate.recorded, fingerprint)
            except VersionConflict:
                time.sleep(random.uniform(0, 0.005 * 2**attempt))  # de-synchronise the racing writers
        conflict = ConcurrencyConflict(
            f"{kind.value} {aggregate_id!r} kept changing while this command ran "
            f"({self.max_attempts} attempts); submit it again"
        )
        return CommandResult.rejected(command.commandId, aggregate_id, conflict)


def _replay(recorded: RecordedOutcome, fingerprint: str) -> CommandResult:
    first = CommandResult.from_dict(recorded.outcome)
    if recorded.fingerprint != fingerprint:
        error = AlreadyExists(
            f"commandId: {first.commandId!r} was already used for a different command; give each command its "
            "own commandId"
        )
        return CommandResult.rejected(first.commandId, first.aggregateId, error)
    return first


def _declared_command_id(decoded: dict) -> str | None:
    """The commandId of even an invalid command, when one is readable, so a rejection can be matched."""
    value = decoded.get("commandId")
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None
