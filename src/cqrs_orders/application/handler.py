"""Handle one command: validate -> load the aggregate -> decide -> append state, events and outbox at once.

Concurrency is optimistic: the store refuses a commit when the aggregate moved since it was loaded. With an
``expectedVersion`` the caller asked for exactly that version, so a conflict is reported; without one the
handler reloads and decides again, a bounded number of times. A ``commandId`` makes retries safe: an
accepted command's outcome is stored with its events, and a repeat is answered from it.

Every result carries its ``commandId``: the caller's, or one generated here when the command came without
one (a rejection's too), so any answer can be retried as the same command. Every event records who asked
(:mod:`.identity`): the caller its entry point established, not the body's ``metadata.userId``, which is
kept beside it as ``claimedUserId``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cqrs_orders.application import identity
from cqrs_orders.application.identity import Caller
from cqrs_orders.application.ports import (
    Commit,
    DuplicateCommand,
    RecordedOutcome,
    VersionConflict,
    WriteStore,
    outcome_json,
)
from cqrs_orders.domain.aggregates import Snapshot, decide
from cqrs_orders.domain.commands import Command, State, decode_command, validate_command
from cqrs_orders.envelope import AggregateType, EventMetadata
from cqrs_orders.errors import AlreadyExists, CommandRejected, ConcurrencyConflict, WriteStoreError

logger = logging.getLogger(__name__)


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

    def to_json(self) -> str:
        """``to_dict()`` as compact JSON: what ``submit`` prints, and the store records."""
        return outcome_json(self.to_dict())

    @classmethod
    def rejected(
        cls, command_id: str | None, aggregate_id: str | None, error: CommandRejected
    ) -> CommandResult:
        return cls(command_id, "rejected", aggregate_id, error={"code": error.code, "message": error.message})

    @classmethod
    def from_dict(cls, outcome: dict[str, Any]) -> CommandResult:
        return cls(**outcome)


class CommandHandler:
    """Runs commands against one write store; thread-safe (concurrent callers share the store's groups).

    ``caller`` is who the events record when a call names nobody: by default the OS account running this
    process (``submit``); the HTTP API and the ingest job name the caller of each call."""

    def __init__(
        self,
        store: WriteStore,
        *,
        max_attempts: int = 8,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        caller: Caller | None = None,
    ):
        self.store = store
        self.max_attempts = max_attempts
        self.clock = clock
        self.caller = caller or identity.os_user()

    def handle(self, raw: str | bytes | dict, caller: Caller | None = None) -> CommandResult:
        """Run one command; the answer comes once its effects are durable (or it was rejected)."""
        [result] = self.handle_many([raw], caller)
        return result

    def handle_many(
        self,
        raws: Iterable[str | bytes | dict],
        caller: Caller | None = None,
        *,
        callers: Sequence[Caller] | None = None,
    ) -> list[CommandResult]:
        """Run commands in order, as few transactions as the store allows; one result per command, each in
        its own slot whatever happened to its neighbours (never an exception). ``caller`` asked for all of
        them, or ``callers`` names each one's (a commit group of several requests).

        With the SQLite store they share one commit (each in its own savepoint), so a bulk import pays one
        fsync per group instead of one per command, and a crash leaves a prefix of whole commands.
        """
        raws = list(raws)
        whos = callers if callers is not None else [caller or self.caller] * len(raws)
        prepared = [self.prepare(raw, who) for raw, who in zip(raws, whos, strict=True)]
        runnable = [p for p in prepared if not isinstance(p, CommandResult)]
        try:
            outcomes = self.store.execute([p.run for p in runnable]) if runnable else []
        except WriteStoreError as error:  # the whole call failed (the port's contract): as each one's outcome
            outcomes = [error] * len(runnable)
        answers = iter(zip(runnable, outcomes, strict=True))
        return [p if isinstance(p, CommandResult) else _answer(*next(answers)) for p in prepared]

    def run_prepared(self, prepared: _Prepared | CommandResult) -> CommandResult:
        """Run one command :meth:`prepare` gave (a rejection it gave is its own answer)."""
        if isinstance(prepared, CommandResult):
            return prepared
        try:
            [outcome] = self.store.execute([prepared.run])
        except WriteStoreError as error:
            outcome = error
        return _answer(prepared, outcome)

    def prepare(self, raw: str | bytes | dict, caller: Caller | None = None) -> _Prepared | CommandResult:
        """Validation and everything else that needs no store: done by the caller's thread, outside the
        group's transaction. A rejection is the command's result; either way ``commandId`` is known from
        here on (generated when the command has none)."""
        declared_id = None
        try:
            decoded = decode_command(raw)
            declared_id = _declared_command_id(decoded)
            replayable = decoded.get("commandId") is not None
            if not replayable:  # an id of our own, validated with the rest (cheaper than a copy after)
                declared_id = time_ordered_id()
                decoded = {**decoded, "commandId": declared_id}
            command = validate_command(decoded)
            targeted = command.with_target()
        except CommandRejected as error:
            return CommandResult.rejected(declared_id, None, error)
        except Exception:  # a bug, before anything ran: this command's answer alone
            logger.exception("command %s failed unexpectedly before it ran", declared_id)
            return CommandResult(declared_id, "rejected", error=dict(INTERNAL_ERROR))
        # The fingerprint is over the command as given (so a retry matches however its target was filled);
        # that is the stored text too unless filling the target changed it: one serialisation, not two.
        given_json = command.model_dump_json()
        command_json = given_json if targeted is command else targeted.model_dump_json()
        fingerprint = hashlib.sha256(given_json.encode()).hexdigest()
        who = caller or self.caller
        recorded = EventMetadata(
            userId=who.user_id,
            source=command.metadata.source,
            claimedUserId=command.metadata.userId,
            authenticatedBy=who.authenticated_by,
        )
        return _Prepared(self, targeted, command_json, fingerprint, replayable, recorded)

    @staticmethod
    def not_run(raw: str | bytes | dict | _Prepared, why: str) -> CommandResult:
        """The answer to a command that was never run (``why`` says so), with its commandId: the one it has,
        or a new one if it has none (nothing of it was written, so that id is as good as any)."""
        if isinstance(raw, _Prepared):
            command_id = raw.command.commandId
        else:
            try:
                decoded = decode_command(raw)
                command_id = _declared_command_id(decoded)
                if decoded.get("commandId") is None:
                    command_id = time_ordered_id()
            except CommandRejected:
                command_id = None
        not_written = {"code": WriteStoreError.code, "message": f"not run: {why}; send it again"}
        return CommandResult(command_id, "rejected", error=not_written)


class _Prepared:
    """One validated command, ready to run inside the store's transaction (``run`` is the unit of work)."""

    __slots__ = (
        "aggregate_id", "command", "command_json", "fingerprint", "handler", "kind", "metadata", "replayable"
    )  # fmt: skip

    def __init__(
        self,
        handler: CommandHandler,
        command: Command,
        command_json: str,
        fingerprint: str,
        replayable: bool,
        metadata: EventMetadata,
    ):
        self.handler = handler
        self.command = command
        self.command_json = command_json
        self.fingerprint = fingerprint
        self.replayable = replayable  # the caller chose the commandId, so a retry may repeat it
        self.metadata = metadata  # who asked: stamped on every event of this command
        self.kind, self.aggregate_id = command.target()

    @property
    def command_id(self) -> str:
        return self.command.commandId

    def run(self, tx: WriteStore) -> CommandResult:
        """Load, decide, append: the command's whole effect, on the view of the store it is given."""
        command, aggregate_id, handler = self.command, self.aggregate_id, self.handler
        if self.replayable:
            recorded = tx.recorded_outcome(command.commandId, aggregate_id)
            if recorded is not None:
                return _replay(recorded, self.fingerprint)
        for attempt in range(handler.max_attempts):
            current = tx.load(aggregate_id)
            referenced = {
                field: _state_of(tx.load(getattr(command, field)), kind)
                for field, kind in command.refers_to.items()
            }
            try:
                events = decide(command, current, now=handler.clock(), referenced=referenced)
            except CommandRejected as error:
                return CommandResult.rejected(command.commandId, aggregate_id, error)
            # The domain decides what happened; who asked is the application's to record.
            events = [event.model_copy(update={"metadata": self.metadata}) for event in events]
            event_ids = [str(event.eventId) for event in events]
            result = CommandResult(command.commandId, "accepted", aggregate_id, events[-1].version, event_ids)
            commit = Commit(
                command_id=command.commandId,
                fingerprint=self.fingerprint,
                command_json=self.command_json,
                aggregate_type=self.kind,
                aggregate_id=aggregate_id,
                base_version=current.version if current else 0,
                events=events,
                outcome=result.to_dict(),
            )
            try:
                tx.append(commit)
                return result
            except DuplicateCommand as duplicate:
                return _replay(duplicate.recorded, self.fingerprint)
            except CommandRejected as error:  # the store's own refusal: an erased customer (CustomerErased)
                return CommandResult.rejected(command.commandId, aggregate_id, error)
            except VersionConflict:  # only stores without a write lock (Cosmos DB) get here
                time.sleep(random.uniform(0, 0.005 * 2**attempt))  # de-synchronise the racing writers
        conflict = ConcurrencyConflict(
            f"{self.kind.value} {aggregate_id!r} kept changing while this command ran "
            f"({handler.max_attempts} attempts); submit it again"
        )
        return CommandResult.rejected(command.commandId, aggregate_id, conflict)


def _answer(prepared: _Prepared, outcome: CommandResult | BaseException) -> CommandResult:
    """A command's result from its unit of work's outcome: its answer, or the exception it ended with."""
    if isinstance(outcome, CommandResult):
        return outcome
    command_id, aggregate_id = prepared.command.commandId, prepared.aggregate_id
    if isinstance(outcome, WriteStoreError):
        logger.warning("the write store failed on command %s: %s", command_id, outcome)
        failed = {"code": outcome.code, "message": outcome.advice()}
        return CommandResult(command_id, "rejected", aggregate_id, error=failed)
    logger.error("command %s failed unexpectedly", command_id, exc_info=outcome)
    return CommandResult(command_id, "rejected", aggregate_id, error=dict(INTERNAL_ERROR))


#: The result of a command that failed on a bug: the log has the traceback, the caller a stable code and
#: how to find out what happened (a retry with the same commandId runs it at most once).
INTERNAL_ERROR = {
    "code": "INTERNAL_ERROR",
    "message": "an unexpected error stopped this command (the server log has the details); retry with the "
    "same commandId: a command is run at most once",
}


def time_ordered_id() -> str:
    """A random UUID in the version-7 layout (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Ids made one after another sort in the order they were made, so the write store's command-id index
    grows at its end instead of taking a random page (one more page written and synced) per command."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # the RFC's variant
    return str(uuid.UUID(int=value))


def _replay(recorded: RecordedOutcome, fingerprint: str) -> CommandResult:
    first = CommandResult.from_dict(recorded.outcome)
    if recorded.fingerprint != fingerprint:
        error = AlreadyExists(
            f"commandId: {first.commandId!r} was already used for a different command; give each command its "
            "own commandId"
        )
        return CommandResult.rejected(first.commandId, first.aggregateId, error)
    return first


def _state_of(found: Snapshot | None, kind: AggregateType) -> State | None:
    """The state of an aggregate a command refers to, if there is one of the type it must be."""
    return found.state if found is not None and found.aggregate_type is kind else None


def _declared_command_id(decoded: dict) -> str | None:
    """The commandId of even an invalid command, when one is readable, so a rejection can be matched."""
    value = decoded.get("commandId")
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None
