"""Pausing the running projection between micro-batches, so that a rebuild can publish while no MERGE is in
flight, and resuming it afterwards.

Three small files in the checkpoint folder, where the projection and a rebuild of one warehouse already
meet (a local folder, or the checkpoints volume both Databricks jobs mount; no lock needed, so it works on
FUSE mounts too):

* ``_cqrs_pause_request``, written by the rebuild: a lease, renewed while the rebuild runs, so a rebuild
  that dies (SIGKILL) leaves a request that expires instead of a projection paused for ever (and the next
  rebuild takes it over before then where it can tell the first one died: :func:`paused`);
* ``_cqrs_paused``, written by the projection once it holds its batches back, and removed when it resumes;
* ``_cqrs_projection_alive``, renewed by a running projection: how a rebuild knows whether to wait for an
  acknowledgement at all (no projection: nothing to pause).

The hot path is untouched: a micro-batch only takes an uncontended in-process lock (:class:`PauseGate`);
the files are polled by a watcher thread every :data:`POLL_SECONDS`. To pause, the watcher takes the gate
(waiting for the running batch to end), acknowledges, and holds it until the request is withdrawn or
expires; the next batch waits at its start meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cqrs_orders.errors import RebuildError
from cqrs_orders.pipeline import checkpoint_lock
from cqrs_orders.pipeline.background import beside
from cqrs_orders.pipeline.checkpoint_files import checkpoint_folder, write_marker

logger = logging.getLogger(__name__)

REQUEST_FILE = "_cqrs_pause_request"
PAUSED_FILE = "_cqrs_paused"
ALIVE_FILE = "_cqrs_projection_alive"
#: How often a projection looks for a request (the most a pause waits on top of the running batch).
POLL_SECONDS = 0.5
#: How long a rebuild waits for a running projection to pause by default (its batch must end first).
DEFAULT_PAUSE_TIMEOUT = 300.0
#: How long a request or a projection's liveness holds without being renewed (renewed every third of it).
LEASE_SECONDS = 30.0


def _read_until(checkpoint: str, name: str) -> float | None:
    """The expiry written in the marker ``name`` (epoch seconds), or ``None`` when there is none."""
    try:
        text = (checkpoint_folder(checkpoint) / name).read_text()
        return float(json.loads(text)["until"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_lease(checkpoint: str, name: str, **fields) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname()}
    write_marker(checkpoint, name, json.dumps({**holder, "until": time.time() + LEASE_SECONDS, **fields}))


def _remove(checkpoint: str, name: str) -> None:
    (checkpoint_folder(checkpoint) / name).unlink(missing_ok=True)


def is_requested(checkpoint: str) -> bool:
    """A pause is asked for and its lease has not expired."""
    until = _read_until(checkpoint, REQUEST_FILE)
    return until is not None and until > time.time()


def is_paused(checkpoint: str) -> bool:
    return (checkpoint_folder(checkpoint) / PAUSED_FILE).is_file()


def projection_alive(checkpoint: str) -> bool:
    """A projection renewed its liveness within the last :data:`LEASE_SECONDS`."""
    until = _read_until(checkpoint, ALIVE_FILE)
    return until is not None and until > time.time()


class PauseGate:
    """Held by each micro-batch for its whole run, and by the watcher while the projection is paused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextmanager
    def batch(self) -> Iterator[None]:
        with self._lock:
            yield

    def hold(self) -> None:
        """Wait for the running batch to end, then keep the next ones from starting."""
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()


@contextmanager
def serving(checkpoint: str, gate: PauseGate, stop: threading.Event) -> Iterator[None]:
    """While the block runs, answer pause requests for the projection on ``checkpoint``, until the block
    ends or ``stop`` (the projection's own stop) is set: a stopping projection is never held paused.

    A request already there when the block starts is honoured before it yields: a projection started during
    a rebuild runs no batch until the rebuild is done."""
    watcher = _Watcher(checkpoint, gate)
    watcher.step()
    with beside(watcher.run, stop, name="pause-watcher"):
        yield


class _Watcher:
    def __init__(self, checkpoint: str, gate: PauseGate):
        self._checkpoint, self._gate = checkpoint, gate
        self._paused = False
        self._alive_renewed = 0.0

    def run(self, done: threading.Event, stop: threading.Event) -> None:
        try:
            while not (done.wait(POLL_SECONDS) or stop.is_set()):
                try:
                    self.step()
                except OSError as error:  # the folder briefly unreadable: try again next poll
                    logger.warning("pause watcher: %s", error)
        finally:
            self.close()

    def step(self) -> None:
        if time.monotonic() - self._alive_renewed > LEASE_SECONDS / 3:
            _write_lease(self._checkpoint, ALIVE_FILE)
            self._alive_renewed = time.monotonic()
        requested = is_requested(self._checkpoint)
        if requested and not self._paused:
            logger.info("pause requested: holding micro-batches back after the running one")
            self._gate.hold()
            self._paused = True
            _write_lease(self._checkpoint, PAUSED_FILE)
            logger.info("projection paused")
        elif self._paused and requested and not is_paused(self._checkpoint):
            _write_lease(self._checkpoint, PAUSED_FILE)  # a new request took a stale acknowledgement away
        elif self._paused and not requested:
            self._resume()

    def close(self) -> None:
        if self._paused:
            self._resume()
        _remove(self._checkpoint, ALIVE_FILE)

    def _resume(self) -> None:
        _remove(self._checkpoint, PAUSED_FILE)
        self._paused = False
        self._gate.release()
        logger.info("projection resumed")


@contextmanager
def paused(checkpoint: str, timeout: float, requesters_lock: str | None = None) -> Iterator[bool]:
    """Ask the projection on ``checkpoint`` to pause; yield once it has (``True``), or at once when no
    projection is running (``False``: a projection starting meanwhile pauses before its first batch). The
    request is renewed while the block runs and withdrawn when it ends, which resumes the projection.

    A request already live is refused, unless its requester is known dead (:func:`_dead_requester`, given
    ``requesters_lock``, the lock every requester holds while its request lives): then it is taken over, so
    a rebuild run again right after one was killed does not wait out the lease.

    :class:`~cqrs_orders.errors.RebuildError` when a running projection does not acknowledge within
    ``timeout`` seconds (the request is withdrawn)."""
    if is_requested(checkpoint):
        dead = _dead_requester(checkpoint, requesters_lock)
        if dead is None:
            raise RebuildError(
                f"A pause of the projection on {checkpoint} is already requested (another rebuild or "
                f"rollback is running); wait for it, or for its request to expire within {LEASE_SECONDS:g} s."
            )
        logger.warning("taking over the pause request left by process %d, which is gone", dead)
    _remove(checkpoint, PAUSED_FILE)  # an acknowledgement left by a killed projection answers nothing
    _write_lease(checkpoint, REQUEST_FILE)
    try:
        with beside(_renew, checkpoint, name="pause-request"):
            # A projection killed within the lease still looks alive: where locks work, a free lock says not.
            alive = projection_alive(checkpoint) and checkpoint_lock.held_elsewhere(checkpoint) is not False
            if alive:
                _await_paused(checkpoint, timeout)
            yield alive
    finally:
        _remove(checkpoint, REQUEST_FILE)


def _dead_requester(checkpoint: str, requesters_lock: str | None) -> int | None:
    """The pid of the process whose request is on ``checkpoint``, if it certainly died: this process holds
    ``requesters_lock`` from the OS (no live requester sharing that lock can), and the request was written on
    this machine by a pid no process has now. Both, because a file system may grant locks it does not share
    between machines (a volume's FUSE mount), and a pid means nothing on another machine. ``None`` otherwise:
    the request then holds until its lease expires."""
    if requesters_lock is None or not checkpoint_lock.holds(requesters_lock):
        return None
    try:
        request = json.loads((checkpoint_folder(checkpoint) / REQUEST_FILE).read_text())
        pid, host = int(request["pid"]), request["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname() or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return pid
    except OSError:
        return None  # it exists (another user's)
    return None


def _renew(done: threading.Event, checkpoint: str) -> None:
    while not done.wait(LEASE_SECONDS / 3):
        _write_lease(checkpoint, REQUEST_FILE)


def _await_paused(checkpoint: str, timeout: float) -> None:
    logger.info("waiting for the running projection to pause (at most %g s)", timeout)
    deadline = time.monotonic() + timeout
    while not is_paused(checkpoint):
        if time.monotonic() > deadline:
            raise RebuildError(
                f"The projection on {checkpoint} did not pause within {timeout:g} s (a long micro-batch, or "
                "a projection that stopped without saying so); nothing was changed. Run the rebuild again, "
                "with a longer --pause-timeout if its batches are long."
            )
        time.sleep(POLL_SECONDS / 5)
