"""A following relay in a daemon thread of a longer-lived process: how the command API publishes its outbox.

The app runs anyway, so its process relays too: no extra compute, and the relay wakes at a commit instead of
a job's poll (the trade-offs are in docs/operations.md, "The relay in production"). The relay has its own
store and publisher instances, so it shares no connection or lock with the request path; it holds the
outbox's lease while it runs, and a second app instance's relay stands by. Stopping releases the lease, so a
restarted app (or any other relay) takes over at once.
"""

from __future__ import annotations

import logging
import threading

from cqrs_orders.application.relay import Relay

log = logging.getLogger(__name__)

#: After an unexpected error (a bug, not an unreachable store or bus: ``follow`` retries those itself), the
#: relay starts over after this long instead of leaving the outbox unpublished while the app serves on.
RESTART_SECONDS = 30.0
#: How long stopping waits for a publish in flight; a relay still busy then is abandoned (a daemon thread),
#: and its lease expires by itself.
STOP_SECONDS = 30.0


class BackgroundRelay:
    """``start()`` runs ``relay.follow`` in a daemon thread; ``stop()`` ends it, releases the lease and
    closes the relay's store and publisher."""

    def __init__(self, relay: Relay, poll_seconds: float = 1.0):
        self.relay = relay
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()
        log.info("relay: following the outbox in this process (at least every %g s)", self.poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_SECONDS)
            if self._thread.is_alive():
                log.warning("relay: still publishing after %g s; left to end with the process", STOP_SECONDS)
                return
        log.info("relay: stopped; %d events published since the start", self.relay.published)
        self.relay.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.relay.follow(self._stop, self.poll_seconds)
            except Exception:  # a bug: say so with its traceback, and start over rather than stay dead
                log.exception("relay: stopped by an unexpected error; starting over in %g s", RESTART_SECONDS)
                self._stop.wait(RESTART_SECONDS)
