"""The ports the application layer needs: a write store with an outbox, and an event publisher.

Adapters (SQLite, Cosmos DB; event log, Event Hubs) implement these; the contract tests in
``tests/command_side`` run the same assertions against each of them.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from cqrs_orders.application.erasure import Erasure, WriteStoreErasure
from cqrs_orders.domain.aggregates import Snapshot
from cqrs_orders.envelope import AggregateType, EventEnvelope
from cqrs_orders.errors import ConfigurationError

DAY_SECONDS = 24 * 60 * 60
#: The longest idempotency window a write store keeps, in whole days: Cosmos DB's largest time to live
#: (``2**31 - 1`` seconds), so the setting means the same on every store.
MAX_COMMAND_ID_RETENTION_DAYS = (2**31 - 1) // DAY_SECONDS


def command_id_retention_seconds(days: int) -> int:
    """The idempotency window of ``days`` in seconds; a ``ConfigurationError`` for a window no store can
    keep (not a positive whole number of days, or past :data:`MAX_COMMAND_ID_RETENTION_DAYS`)."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_COMMAND_ID_RETENTION_DAYS:
        raise ConfigurationError(
            f"CQRS_COMMAND_ID_RETENTION_DAYS={days!r} must be a whole number of days from 1 to "
            f"{MAX_COMMAND_ID_RETENTION_DAYS} (Cosmos DB's longest time to live)."
        )
    return days * DAY_SECONDS


@dataclass(frozen=True)
class Commit:
    """Everything one accepted command writes, atomically: new state, its events, their outbox entries, and
    the outcome under the command id (so a retry is answered from it)."""

    command_id: str
    fingerprint: str
    command_json: str
    aggregate_type: AggregateType
    aggregate_id: str
    base_version: int  # the version the decision was made on; the store refuses if it moved
    events: Sequence[EventEnvelope]
    outcome: dict[str, Any]

    @property
    def state(self):
        return self.events[-1].data

    @property
    def version(self) -> int:
        return self.events[-1].version


@dataclass(frozen=True)
class RecordedOutcome:
    fingerprint: str
    outcome: dict[str, Any]


@dataclass(frozen=True)
class OutboxEntry:
    """One committed event waiting to be published; ``aggregate_id`` is the partition key."""

    aggregate_id: str
    event_id: str
    version: int
    body: str


@dataclass
class OutboxBatch:
    """Entries in commit order, and the store's opaque token to acknowledge exactly them."""

    entries: list[OutboxEntry]
    token: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class OutboxLag:
    """How far the outbox is behind: committed events not yet published, and how long the oldest of them has
    waited (``None`` when none waits). ``exact`` is false when the store stopped counting at a limit (then
    ``unpublished`` is a lower bound)."""

    unpublished: int
    oldest_age_seconds: float | None
    exact: bool = True


class RelayLease:
    """What a relay holds while it drains (see :meth:`WriteStore.relay_guard`), so that two relays never
    interleave (and reorder) one outbox.

    This base class is a lease that cannot be lost (an OS lock held until its process ends); a store whose
    lease expires (Cosmos DB's lease document) overrides :meth:`renew`.
    """

    #: How often a holder must call :meth:`renew` (at least) to keep its lease; ``None``: it never expires.
    renew_every: float | None = None

    def __init__(self, holder: str):
        self.holder = holder  # who holds it, as other relays are told (RelayBusy)

    def renew(self) -> None:
        """Confirm the lease is still ours, extending it if it expires; called before each drain step.
        Raises :class:`~cqrs_orders.errors.RelayLeaseLost` when another relay has taken it over."""


class VersionConflict(Exception):
    """Another writer changed the aggregate since it was loaded (internal: the handler retries or rejects)."""


class DuplicateCommand(Exception):
    """The command id was recorded meanwhile by another writer (internal: the handler replays its outcome)."""

    def __init__(self, recorded: RecordedOutcome):
        super().__init__(recorded.outcome.get("commandId"))
        self.recorded = recorded


class WriteStore(ABC):
    """Aggregate state, the event history and the outbox, written together or not at all."""

    #: Whether ``execute`` commits many callers' works in one transaction (the SQLite store: one fsync for
    #: a group). Such a store is best fed whole groups from one thread; a store without it (Cosmos DB: each
    #: command its own transactional batch, a network round trip) is best called from many threads at once.
    group_commits: bool = False

    @abstractmethod
    def load(self, aggregate_id: str) -> Snapshot | None:
        """The aggregate's latest state and version, or ``None`` if it was never created."""

    @abstractmethod
    def recorded_outcome(self, command_id: str, aggregate_id: str) -> RecordedOutcome | None:
        """The outcome stored for an already accepted command id (it acted on ``aggregate_id``, so a
        partitioned store can find it with a point read).

        A command id is kept for the idempotency window only (``CQRS_COMMAND_ID_RETENTION_DAYS``, counted
        from when the store recorded it, on the store's clock): past it this answers ``None`` and
        ``append`` takes the id again, so a late retry is decided anew. Events and aggregates are kept."""

    @abstractmethod
    def append(self, commit: Commit) -> None:
        """Write the commit atomically; raise ``VersionConflict`` or ``DuplicateCommand`` and write nothing
        if the aggregate moved past ``base_version`` or the command id is already recorded."""

    def execute(self, works: Sequence[Callable[[WriteStore], Any]]) -> list:
        """Run units of work, each given a view with ``load`` / ``recorded_outcome`` / ``append``, and return
        one outcome per work, in order: its result, or the exception it raised (that work alone undone).
        Raises ``WriteStoreError`` only when the whole call failed and none of it was written.

        This default runs them one by one on the store itself, each ``append`` its own transaction (what
        a store without cross-aggregate transactions can offer). A store that can do better overrides it:
        the SQLite store runs them as a group in one transaction, each in its own savepoint.
        """
        outcomes = []
        for work in works:
            try:
                outcomes.append(work(self))
            except Exception as error:
                outcomes.append(error)
        return outcomes

    @abstractmethod
    def pending(self, limit: int) -> OutboxBatch:
        """Up to ``limit`` unpublished entries, in commit order (hence version order per aggregate)."""

    @abstractmethod
    def acknowledge(self, batch: OutboxBatch) -> None:
        """Mark a batch published; call only after the bus accepted it."""

    @contextlib.contextmanager
    def relay_guard(self, who: str = "relay") -> Iterator[RelayLease]:
        """The outbox's lease, held by one relay at a time while it drains and released on exit, so two relays
        never interleave (and reorder) one outbox. ``who`` labels the holder in what other relays are told.
        Raises :class:`~cqrs_orders.errors.RelayBusy` (without waiting) when another relay holds it."""
        yield RelayLease(who)

    @abstractmethod
    def rewind_outbox(self, since: datetime) -> None:
        """Make every event committed at or after ``since`` pending again, so that the relay publishes it
        once more: the way back after the bus lost events it had accepted (an outage longer than its
        retention, a topic deleted; ``docs/operations.md``). Call it holding the relay's lease
        (:meth:`~cqrs_orders.application.relay.Relay.republish` does), so no relay moves the position
        meanwhile.

        The position never moves forward: an event that was still unpublished stays pending. A store may
        rewind a little further than ``since`` (Cosmos DB's change feed starts at whole seconds of the
        service's clock): an event published twice is harmless downstream (bronze's history keeps its first
        arrival, the read models' MERGE keeps the highest version)."""

    @abstractmethod
    def outbox_lag(self, now: datetime) -> OutboxLag:
        """How many committed events are not published yet, and the age at ``now`` of the oldest; read only
        (it neither takes the relay's lease nor moves its position)."""

    @abstractmethod
    def erase_customer(self, erasure: Erasure) -> WriteStoreErasure:
        """Make the customer's personal data unreadable in this store, for good: its state, every event of
        it (the outbox's copy included: a relay publishing it later publishes the marker) and the commands
        that wrote them (their text, and their fingerprint, a hash of that text) get the marker in place of
        each ``name`` and ``email`` (:func:`~cqrs_orders.application.erasure.mask_personal`); the entry is
        kept in the store's erasure registry, and every later command on the customer is refused
        (:class:`~cqrs_orders.errors.CustomerErased`; ``RegisterCustomer`` with its id answers
        ``ALREADY_EXISTS``, the masked aggregate being kept). The store also removes the old bytes it
        keeps beyond its rows (SQLite's free pages and WAL).

        Erasing an erased customer again masks again and keeps the first registry entry
        (``already_erased``). Raises :class:`~cqrs_orders.errors.NotFound` for an id that is not a
        customer of this store."""

    def change_marker(self) -> object | None:
        """A cheap value that differs after another process committed to the store, so a following relay
        can wake at once instead of waiting out its poll; ``None`` when the store cannot tell."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class Publisher(ABC):
    """An event bus: takes outbox entries in order and makes them durable there, or raises PublishError."""

    @abstractmethod
    def publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Publish in the given order (per partition key); all of them or raise ``PublishError``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def outcome_json(outcome: dict[str, Any]) -> str:
    """A command's outcome as compact JSON (the stored outcome, the line ``submit`` prints). An accepted one,
    a fixed shape of ids, is written out by hand (it is written once per command, on the write path, and
    its shape is known); any other via ``json``."""
    ids = outcome.get("eventIds")
    if outcome.get("status") != "accepted" or outcome.get("error") is not None or not ids:
        return json.dumps(outcome, separators=(",", ":"))
    text = encode_basestring_ascii  # what json.dumps does to a str, in C
    return (
        f'{{"commandId":{text(outcome["commandId"])},"status":"accepted",'
        f'"aggregateId":{text(outcome["aggregateId"])},"version":{int(outcome["version"])},'
        f'"eventIds":[{",".join(map(text, ids))}],"error":null}}'
    )
