"""One projection per checkpoint: an exclusive OS lock on a file in the checkpoint folder, held while the
query runs.

Two streaming queries on one checkpoint both start, and one of them dies later with Spark's
``CONCURRENT_STREAM_LOG_UPDATE`` or "Multiple streaming queries are concurrently using ... offsets". The
lock makes the second refuse to start, with one line, before Spark is asked for anything. The kernel
releases it when the process ends however it ends (SIGKILL included), so a crash never leaves it stale.

Where it guards: any local file system, and processes of one machine. On Databricks the checkpoint lives
on a Unity Catalog volume (``/Volumes/...``, a FUSE mount) or DBFS, where advisory locks are not shared
between clusters, or not supported at all (then this logs a warning and carries on). There the guard is
the job itself: the bundle's projection job allows one run at a time (``max_concurrent_runs: 1``), and
Spark's own check stops a second query on the same checkpoint.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from cqrs_orders.errors import ConfigurationError
from cqrs_orders.pipeline.checkpoint_files import checkpoint_folder

logger = logging.getLogger(__name__)
LOCK_FILE = "_cqrs_lock"
#: Checkpoints this process holds (the CLI takes the lock before Spark starts; the runner takes it again).
_held: Counter = Counter()
#: Those of them whose lock the OS granted (not where locks are unsupported: held, but guarding nothing).
_granted: set[str] = set()
_guard = threading.Lock()


#: What a refusal says by default: the lock guards a projection's checkpoint.
PROJECTION_BUSY = (
    "Another projection is already running on {checkpoint}{holder}: stop it first, or give this one its own "
    "warehouse (--warehouse) or CQRS_CHECKPOINT_ROOT."
)


@contextmanager
def exclusive(checkpoint: str, busy: str = PROJECTION_BUSY) -> Iterator[None]:
    """Hold the checkpoint's lock for the block; :class:`ConfigurationError` saying ``busy`` (its
    ``{checkpoint}`` and ``{holder}`` filled in) when another process has it. Re-entrant within a process."""
    folder = checkpoint_folder(checkpoint)
    key = str(folder.resolve())
    with _guard:
        if _held[key]:
            _held[key] += 1
            inner = True
        else:
            inner = False
    if inner:
        try:
            yield
        finally:
            with _guard:
                _held[key] -= 1
        return
    with _locked(folder, busy.replace("{checkpoint}", checkpoint)) as granted:
        with _guard:
            _held[key] += 1
            if granted:
                _granted.add(key)
        try:
            yield
        finally:
            with _guard:
                _held[key] -= 1
                _granted.discard(key)


@contextmanager
def _locked(folder, busy: str) -> Iterator[bool]:
    """Hold the folder's lock for the block; yields whether the OS granted it (``False``: unsupported)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(descriptor)
            raise ConfigurationError(busy.replace("{holder}", holder)) from None
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            logger.warning(
                "%s cannot be locked here (%s): not guarding against a second process", path, error
            )
            granted = False
        else:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"pid {os.getpid()}\n".encode(), 0)
            granted = True
        yield granted
    finally:
        os.close(descriptor)  # releases the lock


def holds(checkpoint: str) -> bool:
    """Whether this process holds the checkpoint's lock, granted by the OS (so no other process of the
    machines sharing that lock can hold it now)."""
    key = str(checkpoint_folder(checkpoint).resolve())
    with _guard:
        return _held[key] > 0 and key in _granted


def held_elsewhere(checkpoint: str) -> bool | None:
    """Whether another process holds the checkpoint's lock now (``None``: locks are not supported here, so
    it cannot be told). Takes and drops the lock when it is free."""
    path = checkpoint_folder(checkpoint) / LOCK_FILE
    if not path.exists():
        return False
    descriptor = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise
    finally:
        os.close(descriptor)
    return False


def _read(descriptor: int) -> str:
    text = os.pread(descriptor, 100, 0).decode(errors="replace").strip()
    return f" ({text})" if text else ""
