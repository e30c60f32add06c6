"""The relay: moves committed events from the outbox to the event bus, in order, at least once.

An entry is acknowledged only after the bus accepted it, so a relay killed at any point re-publishes at
most the batch it was working on (duplicates carry the same eventId; consumers dedupe) and loses nothing.
Batches are taken in commit order, so each aggregate's events reach the bus in version order.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from cqrs_orders.application.ports import Publisher, WriteStore
from cqrs_orders.errors import PublishError, WriteStoreError

log = logging.getLogger(__name__)

#: How often a following relay asks the store whether anything was committed (a cheap look, not a drain).
WAKE_CHECK_SECONDS = 0.05
#: A relay that wakes at each commit (the store has a change marker) publishes a set shorter than its
#: batch size (a trickle, not a backlog) at most this often; what is committed meanwhile goes out with it.
#: At 50 commands a second it otherwise published ~25 sets a second of one or two events, each a small
#: commit on the bus that every reader has to take. A store without a marker is only polled, and its sets
#: may be short mid-backlog (Cosmos DB's change feed pages skip the state documents): never paced.
MIN_PUBLISH_INTERVAL_SECONDS = 0.1


class Relay:
    def __init__(
        self,
        store: WriteStore,
        publisher: Publisher,
        *,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
    ):
        self.store = store
        self.publisher = publisher
        self.batch_size = batch_size
        self.progress = progress  # called with the running total after each published batch
        self._last_publish = -math.inf

    def drain(self) -> int:
        """Publish everything pending now; return how many events were published."""
        return self._drain(pace_seconds=0.0)

    def _drain(self, pace_seconds: float) -> int:
        """Publish until nothing is pending; a set shorter than ``batch_size`` waits until ``pace_seconds``
        passed since the last publish (then takes what arrived meanwhile too); a full one goes at once."""
        published = 0
        with self.store.relay_guard():
            while True:
                batch = self.store.pending(self.batch_size)
                if not batch.entries:
                    return published
                wait = self._last_publish + pace_seconds - time.monotonic()
                if wait > 0 and len(batch.entries) < self.batch_size:
                    time.sleep(wait)
                    batch = self.store.pending(self.batch_size)
                self.publisher.publish(batch.entries)
                self._last_publish = time.monotonic()
                self.store.acknowledge(batch)
                published += len(batch.entries)
                if self.progress:
                    self.progress(published)

    def follow(self, stop_event: threading.Event, poll_seconds: float = 1.0) -> int:
        """Drain, then wait for the next commit until ``stop_event`` is set; return the total published.

        The wait ends within :data:`WAKE_CHECK_SECONDS` of a commit when the store can tell
        (:meth:`~.ports.WriteStore.change_marker`), and after ``poll_seconds`` in any case; a trickle of
        commits then goes out in sets, at most every :data:`MIN_PUBLISH_INTERVAL_SECONDS`. An unreachable
        bus or store is reported on stderr and retried at the next poll, never fatal."""
        total = 0
        while not stop_event.is_set():
            marker = self.store.change_marker()  # before the drain: a commit during it wakes the next wait
            try:
                published = self._drain(0.0 if marker is None else MIN_PUBLISH_INTERVAL_SECONDS)
            except (PublishError, WriteStoreError) as error:  # the bus or store is down: keep trying
                log.warning("relay: %s", error)
                published = 0
            if published:
                total += published
                log.info("relay: published %d events (%d in total)", published, total)
            self._wait_for_commit(stop_event, marker, poll_seconds)
        return total

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
