"""The relay: moves committed events from the outbox to the event bus, in order, at least once.

An entry is acknowledged only after the bus accepted it, so a relay killed at any point re-publishes at
most the batch it was working on (duplicates carry the same eventId; consumers dedupe) and loses nothing.
Batches are taken in commit order, so each aggregate's events reach the bus in version order.

One relay at a time drains an outbox: it holds the store's relay lease (an OS lock for SQLite, a lease
document for Cosmos DB), renews it before each step and stops at once when it is lost. A one-shot
:meth:`Relay.drain` that finds the lease held reports who holds it (``RelayBusy``); a following relay
(:meth:`Relay.follow`) stands by and takes over when the holder releases the lease or dies.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime

from cqrs_orders.application.ports import Publisher, RelayLease, WriteStore
from cqrs_orders.errors import PublishError, RelayBusy, WriteStoreError

log = logging.getLogger(__name__)

#: How often a following relay asks the store whether anything was committed (a cheap look, not a drain).
WAKE_CHECK_SECONDS = 0.05
#: A relay that wakes at each commit (the store has a change marker) publishes a set shorter than its
#: batch size (a trickle, not a backlog) at most this often; what is committed meanwhile goes out with it.
#: Unpaced, a steady trickle would go out as many sets of one or two events, each a small commit on the bus
#: that every reader has to take. A store without a marker is only polled, and its sets
#: may be short mid-backlog (Cosmos DB's change feed pages skip the state documents): never paced.
MIN_PUBLISH_INTERVAL_SECONDS = 0.1


class Relay:
    """Drains one store's outbox to one publisher, holding the store's relay lease while it does.

    ``who`` names this relay in the lease (what a standby or a one-shot drain is told about the holder).
    """

    def __init__(
        self,
        store: WriteStore,
        publisher: Publisher,
        *,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
        who: str = "relay",
    ):
        self.store = store
        self.publisher = publisher
        self.batch_size = batch_size
        self.progress = progress  # called with the running total after each published batch
        self.who = who
        self.published = 0  # events this relay published (and acknowledged) since it was made
        self._last_publish = -math.inf

    def drain(self) -> int:
        """Publish everything pending now; return how many events were published.

        Raises :class:`~cqrs_orders.errors.RelayBusy`, having published nothing, when another relay holds the
        outbox's lease (that relay publishes them)."""
        with self.store.relay_guard(self.who) as lease:
            return self._drain(lease, pace_seconds=0.0)

    def republish(self, since: datetime) -> int:
        """Publish again every event committed at or after ``since``, then everything pending; return how
        many events were published.

        For a bus that lost events it had accepted (an outage longer than its retention, a topic made
        again: ``docs/operations.md``, "The bus lost events"). The outbox is rewound
        (:meth:`~.ports.WriteStore.rewind_outbox`) and drained under one holding of the lease, so no other
        relay moves the position in between; what was pending stays pending. Events that reach bronze twice
        change nothing downstream (the read models keep the highest version; the history its first
        arrival). Raises :class:`~cqrs_orders.errors.RelayBusy`, having changed nothing, when another relay
        holds the lease."""
        with self.store.relay_guard(self.who) as lease:
            lease.renew()
            self.store.rewind_outbox(since)
            log.info("relay: outbox rewound to the events committed since %s", since.isoformat())
            return self._drain(lease, pace_seconds=0.0)

    def _drain(self, lease: RelayLease, pace_seconds: float) -> int:
        """Publish until nothing is pending; a set shorter than ``batch_size`` waits until ``pace_seconds``
        passed since the last publish (then takes what arrived meanwhile too); a full one goes at once.
        The lease is renewed before each step: a relay that lost it raises before publishing again."""
        published = 0
        while True:
            lease.renew()
            batch = self.store.pending(self.batch_size)
            if not batch.entries:
                return published
            wait = self._last_publish + pace_seconds - time.monotonic()
            if wait > 0 and len(batch.entries) < self.batch_size:
                time.sleep(wait)
                batch = self.store.pending(self.batch_size)
            self.publisher.publish(batch.entries)
            self._last_publish = time.monotonic()
            self.store.acknowledge(batch)  # under a lease that expires: only if it is still ours
            published += len(batch.entries)
            self.published += len(batch.entries)
            if self.progress:
                self.progress(published)

    def follow(self, stop_event: threading.Event, poll_seconds: float = 1.0) -> int:
        """Hold the outbox's lease and publish each commit, until ``stop_event`` is set; then release the
        lease and return how many events were published.

        While another relay holds the lease this one stands by: it says so once (INFO, naming the holder)
        and tries again every ``poll_seconds``, so it takes over at its next poll after the holder released
        the lease, and within the lease's expiry plus one poll after the holder died.

        Holding it, it drains, then waits for the next commit: within :data:`WAKE_CHECK_SECONDS` when the
        store can tell (:meth:`~.ports.WriteStore.change_marker`), after ``poll_seconds`` in any case; a
        trickle of commits goes out in sets, at most every :data:`MIN_PUBLISH_INTERVAL_SECONDS`. An
        unreachable bus or store, or a lost lease, is logged as a warning and retried at the next poll, never
        fatal."""
        started, standing_by = self.published, None
        while not stop_event.is_set():
            try:
                with self.store.relay_guard(self.who) as lease:
                    log.info("relay: %s holds the outbox lease and publishes", lease.holder)
                    standing_by = None
                    self._follow_holding(lease, stop_event, poll_seconds)
            except RelayBusy as busy:
                if busy.holder != standing_by:  # said once per holder, not at every poll
                    log.info("relay: standing by: %s", busy)
                    standing_by = busy.holder
                stop_event.wait(poll_seconds)
            except WriteStoreError as error:  # the store is down, or the lease was lost: start over
                log.warning("relay: %s", error)
                stop_event.wait(poll_seconds)
        return self.published - started

    def _follow_holding(self, lease: RelayLease, stop_event: threading.Event, poll_seconds: float) -> None:
        # Never wait so long between two drains that a lease which expires lapses meanwhile.
        wait_seconds = poll_seconds if lease.renew_every is None else min(poll_seconds, lease.renew_every)
        while not stop_event.is_set():
            marker = self.store.change_marker()  # before the drain: a commit during it wakes the next wait
            try:
                published = self._drain(lease, 0.0 if marker is None else MIN_PUBLISH_INTERVAL_SECONDS)
            except PublishError as error:  # the bus is down: keep the lease, try again at the next poll
                log.warning("relay: %s", error)
                published = 0
            if published:
                log.info("relay: published %d events (%d in total)", published, self.published)
            self._wait_for_commit(stop_event, marker, wait_seconds)

    def _wait_for_commit(self, stop_event: threading.Event, marker, poll_seconds: float) -> None:
        deadline = time.monotonic() + poll_seconds
        while (left := deadline - time.monotonic()) > 0:
            if stop_event.wait(min(WAKE_CHECK_SECONDS, left)):
                return
            if marker is not None and self.store.change_marker() != marker:
                return

    def close(self) -> None:
        self.publisher.close()
        self.store.close()
