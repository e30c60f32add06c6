"""The relay: moves committed events from the outbox to the event bus, in order, at least once.

An entry is acknowledged only after the bus accepted it, so a relay killed at any point re-publishes at
most the batch it was working on (duplicates carry the same eventId; consumers dedupe) and loses nothing.
Batches are taken in commit order, so each aggregate's events reach the bus in version order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cqrs_orders.application.ports import Publisher, WriteStore
from cqrs_orders.errors import PublishError, WriteStoreError

log = logging.getLogger(__name__)

#: How often a following relay asks the store whether anything was committed (a cheap look, not a drain).
WAKE_CHECK_SECONDS = 0.05


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

    def drain(self) -> int:
        """Publish everything pending now; return how many events were published."""
        published = 0
        with self.store.relay_guard():
            while True:
                batch = self.store.pending(self.batch_size)
                if not batch.entries:
                    return published
                self.publisher.publish(batch.entries)
                self.store.acknowledge(batch)
                published += len(batch.entries)
                if self.progress:
                    self.progress(published)

    def follow(self, stop_event: threading.Event, poll_seconds: float = 1.0) -> int:
        """Drain, then wait for the next commit until ``stop_event`` is set; return the total published.

        The wait ends within :data:`WAKE_CHECK_SECONDS` of a commit when the store can tell
        (:meth:`~.ports.WriteStore.change_marker`), and after ``poll_seconds`` in any case. An unreachable
        bus or store is reported on stderr and retried at the next poll, never fatal."""
        total = 0
        while not stop_event.is_set():
            marker = self.store.change_marker()  # before the drain: a commit during it wakes the next wait
            try:
                published = self.drain()
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
