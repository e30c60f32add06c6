"""The embedded write store: one SQLite file holding aggregate state, the event history and the outbox.

Hardening: WAL (readers never block the writer), ``synchronous=FULL`` by default (a committed command
survives power loss), a busy timeout plus ``BEGIN IMMEDIATE`` (many threads and processes queue for the
write lock instead of failing), unique keys on (aggregate_id, version) and command_id as the last line of
defence against a lost update or a double write, and ``PRAGMA quick_check`` at open (a damaged file is
refused, not written into).

Throughput: group commit (see :class:`SqliteWriteStore`) pays one commit, one fsync, for many commands; the
schema is laid out so that each command writes few pages.

Idempotency window: a command id (its row in ``commands``, holding the first answer) is kept for
``CQRS_COMMAND_ID_RETENTION_DAYS`` after the store recorded it (on the store's clock), as Cosmos DB's ``ttl``
keeps its command documents. Past the window the row is ignored at once (a retry runs as a new command) and
swept soon after. The sweep runs on the write path, inside a group's transaction, because that is the only
place every user of this store already has (``submit`` and ``serve`` write; neither runs a scheduler of its
own, and a relay may not run at all), so no job or schedule is needed; it costs no fsync of its own, and it
holds the write lock it needs anyway. Its cost is bounded: at most once per :data:`SWEEP_EVERY_SECONDS`
per process, at most :data:`SWEEP_BATCH` rows a time, found through the index on ``recorded_at`` (which
grows with time, so the index grows at its end). A sweep that fills its batch runs again at the next group, so
a backlog is worked off at up to one batch per group, as fast as a group can add rows. Events and
aggregates are never swept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cqrs_orders.adapters.group_commit import GroupCommitQueue
from cqrs_orders.application.erasure import (
    MARKER,
    Erasure,
    WriteStoreErasure,
    mask_personal,
    personal_values,
)
from cqrs_orders.application.ports import (
    Commit,
    DuplicateCommand,
    OutboxBatch,
    OutboxEntry,
    OutboxLag,
    RecordedOutcome,
    RelayLease,
    VersionConflict,
    WriteStore,
    command_id_retention_seconds,
    outcome_json,
)
from cqrs_orders.config import PLAIN
from cqrs_orders.domain.aggregates import Snapshot
from cqrs_orders.envelope import AggregateType, load_state
from cqrs_orders.errors import CustomerErased, NotFound, RelayBusy, WriteStoreError

logger = logging.getLogger(__name__)

#: A unit of work: reads and appends through the transaction it is given, returns the caller's answer.
Work = Callable[["_Session"], object]

#: The schema's version in ``PRAGMA user_version``: the only one this store opens (``cqrs-orders upgrade``
#: converts an older store).
SCHEMA_VERSION = 2

# Laid out for few pages written per command (each page is a WAL frame written and synced at commit): no
# AUTOINCREMENT (no sqlite_sequence page; events are never deleted, so rowids still only grow), no index on
# the random event id, and no outbox table: the outbox is every event after the relay's position, one row
# (the relay publishes in seq order and acknowledges what it published, so a position is all it needs).
# Rows append at the end of rowid tables, not WITHOUT ROWID ones: rows of this size keyed at random would
# split pages often. (aggregate_id, version) and command_id stay unique: the last line of defence
# against a lost update or a double write. The index on commands.recorded_at is the sweep's way to the
# rows past the idempotency window; it is part of schema 2 and made at open where missing (a store made
# before it gets it at its first open, one pass over the commands). The erasure registry (``erasures``) is
# made at open where missing too: an empty table, which a store of schema 2 reads as "nobody erased".
_SCHEMA = """
CREATE TABLE IF NOT EXISTS aggregates (
    aggregate_id   TEXT PRIMARY KEY,
    aggregate_type TEXT NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    state          TEXT NOT NULL,
    schema_version INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    version      INTEGER NOT NULL,
    event_type   TEXT NOT NULL,
    command_id   TEXT NOT NULL,
    body         TEXT NOT NULL,
    UNIQUE (aggregate_id, version)
);
CREATE TABLE IF NOT EXISTS outbox_position (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    published_through INTEGER NOT NULL,
    published_at      TEXT
);
INSERT OR IGNORE INTO outbox_position (id, published_through) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS commands (
    command_id  TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    command     TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_by_recorded_at ON commands (recorded_at);
CREATE TABLE IF NOT EXISTS erasures (
    customer_id TEXT PRIMARY KEY,
    erased_at   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    erased_by   TEXT NOT NULL
);
"""

#: Aggregates whose latest snapshot the writer keeps parsed: the bound on that cache's memory.
SNAPSHOT_CACHE_SIZE = 10_000

_Snapshots = OrderedDict  # aggregate id -> Snapshot | None (known absent), least recently used first

#: The longest a group waits for callers it expects (see ``SqliteWriteStore._gather``).
MAX_GATHER_SECONDS = 0.002

#: Commands per group: enough to amortise one fsync over a whole ``submit --file`` chunk, small enough
#: that a group's transaction (and the wait of its last caller) stays short.
MAX_GROUP_COMMANDS = 1000

#: How often a writer sweeps command ids past the idempotency window (unless its last sweep filled its
#: batch). Rows past the window are ignored from the moment they pass it, so this bounds only how long
#: they take space, never what a retry is answered.
SWEEP_EVERY_SECONDS = 600.0
#: The most command rows one sweep deletes: as many as a group may add, so the sweep keeps up with any
#: rate of writing while a group's transaction stays short.
SWEEP_BATCH = MAX_GROUP_COMMANDS

#: The idempotency window when none is given: the setting's default.
DEFAULT_RETENTION_DAYS = PLAIN["command_id_retention_days"].default


class SqliteWriteStore(WriteStore):
    """Thread-safe, multi-process-safe write store in one SQLite file, with group commit.

    Callers of :meth:`execute` queue up (:mod:`~cqrs_orders.adapters.group_commit`); the caller at the head
    of the queue takes the write lock, runs every queued unit of work (its own and its followers') in turn,
    each in its own ``SAVEPOINT``, and commits them with one ``COMMIT`` (one fsync). Only then is any caller
    of the group answered, so an answer always means durable.
    """

    group_commits = True

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 30_000,
        command_id_retention_days: int = DEFAULT_RETENTION_DAYS,
        clock: Callable[[], float] = time.time,
    ):
        self.path = Path(path)
        #: The idempotency window, in seconds (see the module's docstring).
        self.command_id_retention = command_id_retention_seconds(command_id_retention_days)
        self.clock = clock  # epoch seconds: when a command id is recorded, and when its window ends
        self._next_sweep = float("-inf")  # the first group sweeps: a store reopened after a pause may owe one
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        # Writers of this process queue here, FIFO-ish and without sleeping; writers of other processes
        # (another server worker, a `submit` beside it) queue on the lock file's flock, which wakes the
        # next one the moment the lock is released. SQLite's own busy handler polls with sleeps of up to
        # 100 ms instead, so it is left only as the backstop against writers that bypass the lock file.
        self._write_lock = threading.Lock()
        self._process_lock_path = self.path.with_name(self.path.name + ".write.lock")
        self._process_lock: int | None = None  # the lock file's descriptor, opened at the first write
        self._groups = GroupCommitQueue(
            max_commands=MAX_GROUP_COMMANDS, max_gather_seconds=MAX_GATHER_SECONDS
        )
        self._writer: sqlite3.Connection | None = None  # the groups' connection, used by one leader at a time
        self._writer_generation = 0
        self._snapshots: _Snapshots = OrderedDict()
        self._snapshots_at: int | None = None
        #: (groups, commands) committed by this instance: how well group commit is grouping.
        self.committed = self._groups.committed
        #: The file this store writes: (device, inode) of ``path`` when it was opened, and a generation
        #: that every connection is tagged with (see :meth:`_verify_file`).
        self._identity: tuple[int, int] | None = None
        self._generation = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write_lock:
            self._adopt_file()

    def _adopt_file(self) -> None:
        """Open the file at ``path`` as this store's (called under the write lock): refuse a damaged one,
        create the schema (refusing one of another version), remember its identity. Connections of an
        earlier file are dropped."""
        self._generation += 1
        self._snapshots.clear()
        self._snapshots_at = None
        if self._process_lock is not None:  # the lock file beside the new store file, not the old one's
            os.close(self._process_lock)
            self._process_lock = None
        existed = self.path.exists() and self.path.stat().st_size > 0
        connection = self._open()
        try:
            if existed:
                self._check_integrity(connection)
            with self._locked_across_processes():
                connection.execute("BEGIN IMMEDIATE")
                try:
                    _create_schema(connection, self.path)
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
            self._identity = _identity(self.path)
        except sqlite3.Error as error:
            raise WriteStoreError(f"Cannot open the write store at {self.path}: {error}") from error
        finally:
            connection.close()

    def _verify_file(self, *, write_locked: bool) -> None:
        """Check that ``path`` is still the file this store opened, before every use of a connection.

        A connection keeps writing into its file after the file was deleted or its folder moved, and every
        write there would be lost, so a missing file is a ``WriteStoreError`` (the server answers 503 and
        recovers when the file is back). A different file at the path (restored from a backup, moved back
        as a copy) is adopted: the connections of the old one are dropped.
        """
        try:
            found = _identity(self.path)
        except OSError as error:
            raise WriteStoreError(
                f"The write store file {self.path} is gone ({error.strerror}): it was removed or moved since "
                "it was opened. Put it back (or restart to start an empty store there)"
            ) from None
        if found == self._identity:
            return
        if write_locked:
            self._adopt_file()
        else:
            with self._write_lock:
                if _identity(self.path) != self._identity:
                    self._adopt_file()
        logger.warning("write store %s: the file was replaced; now using the file at that path", self.path)

    # --- commands ----------------------------------------------------------------------------------
    def load(self, aggregate_id: str) -> Snapshot | None:
        return _load(self._connection(), aggregate_id)

    def recorded_outcome(self, command_id: str, aggregate_id: str) -> RecordedOutcome | None:
        return _recorded_outcome(self._connection(), command_id, self._window(self.clock())[1])

    @classmethod
    def from_settings(cls, settings, **options) -> SqliteWriteStore:
        """The store at the settings' path, keeping command ids for their idempotency window."""
        return cls(
            settings.write_store_path, command_id_retention_days=settings.command_id_retention_days, **options
        )

    def forget_expired_command_ids(self) -> int:
        """Sweep every command id past the idempotency window now, a batch per transaction (an operator's
        step, and the tests'; writers sweep on their own as they go); returns how many were deleted."""
        deleted = 0
        while True:
            with self._transaction() as db:
                swept = _sweep(db, self._window(self.clock())[1])
            deleted += swept
            if swept < SWEEP_BATCH:
                return deleted

    def erase_customer(self, erasure: Erasure) -> WriteStoreErasure:
        """The port's erasure, in one transaction on a connection of its own with ``secure_delete`` on
        (SQLite then overwrites the bytes it frees with zeros), then :meth:`_scrub`: the old bytes also
        survive in the WAL's frames and in free pages, and only a checkpoint, a ``VACUUM`` and a truncated
        WAL remove them from every file of the store."""
        with self._write_lock:
            self._verify_file(write_locked=True)
            db = self._open()
            try:
                db.execute("PRAGMA secure_delete = ON")
                with self._locked_across_processes():
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        erased = _erase(db, erasure)
                        db.execute("COMMIT")
                    except BaseException:
                        if db.in_transaction:
                            db.execute("ROLLBACK")
                        raise
                    self._snapshots.pop(erasure.customer_id, None)  # the writer's cache held the old state
                    self._check_still_the_store()
                    self._scrub(db)
            except sqlite3.Error as error:
                raise WriteStoreError(f"Could not erase in the write store {self.path}: {error}") from error
            finally:
                db.close()
        logger.info(
            "write store: customer %s erased (%d events, %d commands masked)",
            erasure.customer_id,
            erased.events,
            erased.commands,
        )
        return erased

    def _scrub(self, db: sqlite3.Connection) -> None:
        """Remove every old copy of rewritten rows from the store's files (called holding both write locks):
        checkpoint the WAL into the database and truncate it, ``VACUUM`` (a fresh copy of the live rows, no
        free page left), then checkpoint and truncate again (``VACUUM`` went through the WAL too).

        A checkpoint cannot truncate while another connection reads an older snapshot (it answers busy
        after the busy timeout): then the erasure is committed but its old bytes are still in the WAL, and
        this raises, so the command is run again (it is idempotent)."""
        for step in ("PRAGMA wal_checkpoint(TRUNCATE)", "VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"):
            row = db.execute(step).fetchone()
            if row is not None and row[0]:
                raise WriteStoreError(
                    f"the erasure is committed in {self.path}, but a reader kept the WAL from being emptied "
                    "(its old pages still hold the erased values); run the erasure again"
                )

    def _window(self, now: float) -> tuple[str, str]:
        """``now`` as ``recorded_at`` text, and the window's start: a command recorded at or before it is
        past the window. Both as ``_utc_text`` writes them, which sorts as time does."""
        return _utc_text(_moment(now)), _utc_text(_moment(now - self.command_id_retention))

    def append(self, commit: Commit) -> None:
        [outcome] = self._run([lambda tx: tx.append(commit)])
        if isinstance(outcome, BaseException):
            raise outcome

    def execute(self, works: Sequence[Work]) -> list:
        """Run each unit of work in its own savepoint of a shared transaction; answer once it is durable.

        A work that raises is rolled back alone and its exception is its outcome; its neighbours' results
        are kept. When the transaction itself fails, every outcome is that ``WriteStoreError``.
        """
        return self._run(works)

    def waiting(self) -> int:
        """Requests queued for (or in) a group right now (for tests and diagnostics)."""
        return self._groups.waiting()

    def _run(self, works: Sequence[Work]) -> list:
        return self._groups.run(works, self._commit_group)

    def _commit_group(self, take) -> float | None:
        """The leader's transaction: every work of the group in turn, each in its own savepoint, then one
        COMMIT. Returns how long the commit took, or ``None`` if nothing was committed."""
        try:
            with self._transaction(writer=True) as db:
                # The cached snapshots are current unless another connection (another process, a relay
                # acknowledging) committed since this writer's last group: data_version tells exactly that.
                seen = db.execute("PRAGMA data_version").fetchone()[0]
                if seen != self._snapshots_at:
                    self._snapshots.clear()
                now = self.clock()
                recorded_at, cutoff = self._window(now)
                sweeping = now >= self._next_sweep
                swept = _sweep(db, cutoff) if sweeping else 0  # first: a retry in the group sees it gone
                group = take()
                # A lone command needs no savepoint: the transaction is its savepoint.
                lone = len(group) == 1 and len(group[0].works) == 1
                session = _Session(db, self._snapshots, recorded_at, cutoff, savepoints=not lone)
                for request in group:
                    request.outcomes = [session.run(work) for work in request.works]
                if lone and isinstance(group[0].outcomes[0], Exception):
                    raise _Undone
                self._snapshots_at = seen  # this writer's own commit does not change its data_version
                committing = time.perf_counter()
            if sweeping:  # committed: due again after the interval, or at once while a backlog remains
                self._next_sweep = now if swept >= SWEEP_BATCH else now + SWEEP_EVERY_SECONDS
                if swept:
                    logger.debug("write store %s: forgot %d command ids past their window", self.path, swept)
            return time.perf_counter() - committing
        except _Undone:  # rolled back with its lone failed work, whose error is that caller's answer
            return None
        except BaseException as error:
            self._snapshots.clear()
            self._snapshots_at = None
            if isinstance(error, sqlite3.Error):  # e.g. disk full, an I/O error, a read-only file system
                raise WriteStoreError(f"The write store at {self.path} failed: {error}") from error
            raise

    # --- outbox ------------------------------------------------------------------------------------
    def pending(self, limit: int) -> OutboxBatch:
        rows = (
            self._connection()
            .execute(
                "SELECT seq, aggregate_id, event_id, version, body FROM events "
                "WHERE seq > (SELECT published_through FROM outbox_position) ORDER BY seq LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return OutboxBatch([OutboxEntry(*row[1:]) for row in rows], token=[row[0] for row in rows])

    def acknowledge(self, batch: OutboxBatch) -> None:
        """Move the position past the batch (``pending`` hands out events in seq order from it)."""
        if not batch.token:
            return
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox_position SET published_through = max(published_through, ?), published_at = ?",
                (max(batch.token), _now()),
            )

    @contextlib.contextmanager
    def relay_guard(self, who: str = "relay") -> Iterator[RelayLease]:
        """An OS file lock beside the store: one relay drains this outbox at a time. The kernel releases it
        when its process ends, even on SIGKILL, so it never expires and never needs renewing; the holder
        writes its name into the file, and another relay is told that name (``RelayBusy``) at once."""
        self._verify_file(write_locked=False)  # a missing store is a WriteStoreError, which relays wait out
        descriptor = os.open(
            self.path.with_name(self.path.name + ".relay.lock"), os.O_RDWR | os.O_CREAT, 0o644
        )
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(descriptor, 1024, 0).decode(errors="replace").strip()
                raise RelayBusy(holder or "another relay") from None
            holder = f"{who} (host {socket.gethostname()}, pid {os.getpid()})"
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, holder.encode(), 0)
            try:
                yield RelayLease(holder)
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)

    def rewind_outbox(self, since: datetime) -> None:
        """Move the position to just before the first event (by ``seq``) whose timestamp is ``since`` or
        later, unless it is already there or earlier. Every event committed at or after ``since`` has a
        ``seq`` from there on; a few earlier ones after it (committed in the same moments by other
        writers) go out again too. One scan of the events (a rare, operator-run step), timestamps compared
        as times by SQLite, to the millisecond: ``since`` is taken one millisecond early."""
        cutoff = (since.astimezone(timezone.utc) - timedelta(milliseconds=1)).isoformat()
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox_position SET published_through = min(published_through, coalesce("
                "(SELECT min(seq) - 1 FROM events "
                "WHERE julianday(json_extract(body, '$.timestamp')) >= julianday(?)), published_through))",
                (cutoff,),
            )

    def outbox_lag(self, now: datetime) -> OutboxLag:
        """Events after the relay's position; the oldest one's age from its timestamp (taken at commit)."""
        db = self._connection()
        count, first = db.execute(
            "SELECT count(*), min(seq) FROM events "
            "WHERE seq > (SELECT published_through FROM outbox_position)"
        ).fetchone()
        if not count:
            return OutboxLag(0, None)
        (body,) = db.execute("SELECT body FROM events WHERE seq = ?", (first,)).fetchone()
        committed = datetime.fromisoformat(json.loads(body)["timestamp"])
        return OutboxLag(count, max(0.0, (now - committed).total_seconds()))

    def change_marker(self) -> int | None:
        """SQLite's ``data_version``: it changes when another connection commits (one page read)."""
        try:
            return self._connection().execute("PRAGMA data_version").fetchone()[0]
        except (sqlite3.Error, WriteStoreError):
            return None

    def counts(self) -> dict[str, int]:
        """Rows per table (for tests, tools and the benchmark)."""
        db = self._connection()
        counts = {
            t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("aggregates", "events", "commands")
        }
        counts["outbox_pending"] = db.execute(
            "SELECT count(*) FROM events WHERE seq > (SELECT published_through FROM outbox_position)"
        ).fetchone()[0]
        return counts

    def close(self) -> None:
        with self._guard:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
            self._writer = None
            self._snapshots.clear()
            self._snapshots_at = None
        with self._write_lock:
            if self._process_lock is not None:
                os.close(self._process_lock)
                self._process_lock = None
        self._local = threading.local()

    # --- plumbing ----------------------------------------------------------------------------------
    def _check_integrity(self, connection: sqlite3.Connection) -> None:
        """Refuse a damaged file at open instead of writing into it (``PRAGMA quick_check``: every page is
        read once, indexes are not cross-checked)."""
        try:
            verdict = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
        except sqlite3.DatabaseError as error:
            verdict = str(error)
        if verdict != "ok":
            raise WriteStoreError(
                f"The write store at {self.path} is damaged (SQLite quick_check: {verdict.splitlines()[0]}); "
                "restore it from a backup, or move it away to start an empty one"
            )

    def _connection(self) -> sqlite3.Connection:
        """This thread's reading connection, to the file at ``path`` (checked first: see _verify_file)."""
        self._verify_file(write_locked=False)
        local = self._local
        if getattr(local, "generation", None) != self._generation:
            stale = getattr(local, "connection", None)
            if stale is not None:
                self._forget(stale)
            local.connection = self._open()
            local.generation = self._generation
            with self._guard:
                self._connections.append(local.connection)
        return local.connection

    def _forget(self, connection: sqlite3.Connection) -> None:
        with self._guard:
            if connection in self._connections:
                self._connections.remove(connection)
        connection.close()

    def _open(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=64,
            )
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            _switch_to_wal(connection, self.busy_timeout_ms / 1000)
            connection.execute(f"PRAGMA synchronous = {self.synchronous}")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as error:
            raise WriteStoreError(f"Cannot open the write store at {self.path}: {error}") from error
        return connection

    def _writer_connection(self) -> sqlite3.Connection:
        """One connection for every group of this store, whichever thread leads it (under the write lock):
        its ``data_version`` then says whether anyone else wrote since the last group."""
        if self._writer is not None and self._writer_generation != self._generation:
            self._forget(self._writer)
            self._writer = None
        if self._writer is None:
            self._writer = self._open()
            self._writer_generation = self._generation
            with self._guard:
                self._connections.append(self._writer)
        return self._writer

    @contextlib.contextmanager
    def _transaction(self, *, writer: bool = False) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: take the write lock up front, so check-then-write is atomic. The file is
        checked before (a replaced one is adopted, a missing one refused) and after the commit: a commit
        into a file that is no longer at ``path`` is lost with it, so it is reported as not written."""
        with self._write_lock:
            self._verify_file(write_locked=True)
            db = self._writer_connection() if writer else self._connection()
            with self._locked_across_processes():
                try:
                    db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as error:
                    raise WriteStoreError(
                        f"The write store at {self.path} stayed locked for {self.busy_timeout_ms} ms: {error}"
                    ) from error
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:  # a failed COMMIT may have rolled back already
                        db.execute("ROLLBACK")
                    raise
                self._check_still_the_store()

    def _check_still_the_store(self) -> None:
        try:
            still = _identity(self.path) == self._identity
        except OSError:
            still = False
        if not still:
            raise WriteStoreError(
                f"The write store file {self.path} was removed or replaced while a transaction committed, "
                "so that transaction is not in the store"
            )

    @contextlib.contextmanager
    def _locked_across_processes(self) -> Iterator[None]:
        """The lock file's exclusive flock for the transaction (called under ``_write_lock``)."""
        if self._process_lock is None:
            self._process_lock = os.open(self._process_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._process_lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._process_lock, fcntl.LOCK_UN)


class _Undone(Exception):
    """A group of one failed command: roll the transaction back instead of committing it."""


class _Session:
    """The group's transaction as one unit of work sees it: the ``load`` / ``recorded_outcome`` /
    ``append`` of the port, on the writer connection, seeing the group's earlier commands.

    Snapshots come from the store's cache when it is current (see ``SqliteWriteStore._lead``); the leader
    holds the write lock, so a version read here cannot move before this work appends, and ``append``
    checks ``base_version`` against it instead of reading it again. The savepoint is opened at the first
    write: a command that is rejected never wrote and needs none.
    """

    __slots__ = ("_cutoff", "_db", "_recorded_at", "_saved", "_savepoints", "_snapshots", "_touched")

    def __init__(
        self,
        db: sqlite3.Connection,
        snapshots: _Snapshots,
        recorded_at: str,
        cutoff: str,
        *,
        savepoints: bool = True,
    ):
        self._db = db
        self._recorded_at = recorded_at  # the group's time: when its command ids are recorded
        self._cutoff = cutoff  # command ids recorded at or before it are past the window
        self._snapshots = snapshots
        self._savepoints = savepoints
        self._saved = False
        self._touched: list[str] = []

    def run(self, work: Work):
        self._saved = False
        self._touched.clear()
        try:
            outcome = work(self)
        except sqlite3.Error:  # the database failed (disk full, I/O, read-only): the whole group is undone
            raise
        except Exception as error:  # this command alone is undone; its neighbours go on
            if self._saved:
                self._db.execute("ROLLBACK TO command")
                self._db.execute("RELEASE command")
            for aggregate_id in self._touched:  # what the undone work cached is void
                self._snapshots.pop(aggregate_id, None)
            return error
        if self._saved:
            self._db.execute("RELEASE command")
        return outcome

    def load(self, aggregate_id: str) -> Snapshot | None:
        snapshots = self._snapshots
        if aggregate_id in snapshots:
            snapshots.move_to_end(aggregate_id)
            return snapshots[aggregate_id]
        snapshot = _load(self._db, aggregate_id)
        snapshots[aggregate_id] = snapshot
        self._touched.append(aggregate_id)
        if len(snapshots) > SNAPSHOT_CACHE_SIZE:
            snapshots.popitem(last=False)
        return snapshot

    def recorded_outcome(self, command_id: str, aggregate_id: str) -> RecordedOutcome | None:
        return _recorded_outcome(self._db, command_id, self._cutoff)

    def append(self, commit: Commit) -> None:
        db = self._db
        aggregate_id = commit.aggregate_id
        if aggregate_id in self._snapshots:
            known = self._snapshots[aggregate_id]
            current = known.version if known else 0
        else:
            row = db.execute(
                "SELECT version FROM aggregates WHERE aggregate_id = ?", (aggregate_id,)
            ).fetchone()
            current = row[0] if row else 0
        if current != commit.base_version:
            raise VersionConflict(aggregate_id)
        if commit.aggregate_type is AggregateType.CUSTOMER and current and _erased(db, aggregate_id):
            raise CustomerErased(f"customer {aggregate_id!r} was erased; nothing more is written for it")
        if self._savepoints and not self._saved:
            db.execute("SAVEPOINT command")
            self._saved = True
        last = commit.events[-1]
        # The command id first: a duplicate fails before anything else is written. A row of the same id
        # past the window (not swept yet) is forgotten already, so it is taken over, not a duplicate.
        taken = db.execute(
            "INSERT INTO commands (command_id, fingerprint, command, outcome, recorded_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (command_id) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, command = excluded.command, outcome = excluded.outcome, "
            "recorded_at = excluded.recorded_at "
            "WHERE commands.recorded_at <= ?",
            (
                commit.command_id,
                commit.fingerprint,
                commit.command_json,
                outcome_json(commit.outcome),
                self._recorded_at,
                self._cutoff,
            ),
        ).rowcount
        if not taken:
            raise DuplicateCommand(_recorded_outcome(db, commit.command_id, self._cutoff))
        state = last.data.model_dump_json()
        try:
            if current == 0:
                db.execute(
                    "INSERT INTO aggregates (aggregate_id, aggregate_type, version, state, schema_version) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (aggregate_id, commit.aggregate_type.value, last.version, state, last.schemaVersion),
                )
            else:
                db.execute(
                    "UPDATE aggregates SET version = ?, state = ?, schema_version = ? WHERE aggregate_id = ?",
                    (last.version, state, last.schemaVersion, aggregate_id),
                )
            for event in commit.events:  # after the relay's position: in the outbox
                db.execute(
                    "INSERT INTO events (event_id, aggregate_id, version, event_type, command_id, body) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        str(event.eventId),
                        event.aggregateId,
                        event.version,
                        event.eventType,
                        commit.command_id,
                        event.to_json(state if event is last else None),
                    ),
                )
        except sqlite3.IntegrityError as error:  # unreachable under the write lock; kept as the backstop
            raise VersionConflict(f"{aggregate_id}: {error}") from None
        self._snapshots[aggregate_id] = Snapshot(commit.aggregate_type, last.data, last.version)
        self._touched.append(aggregate_id)


def _create_schema(connection: sqlite3.Connection, path: Path) -> None:
    """Create the tables in a new store (inside a write transaction); refuse a store of another schema.

    A store of an older schema is converted once by ``cqrs-orders upgrade``, never on the way to a write:
    the run path knows one layout only."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise WriteStoreError(
            f"The write store at {path} has schema {version}, newer than this version of cqrs-orders knows "
            f"({SCHEMA_VERSION}); upgrade cqrs-orders"
        )
    if version < SCHEMA_VERSION and connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
        raise WriteStoreError(
            f"The write store at {path} has schema {version}, older than this version of cqrs-orders writes "
            f"({SCHEMA_VERSION}); run `cqrs-orders upgrade --warehouse DIR` once to convert it"
        )
    for statement in _statements(_SCHEMA):
        connection.execute(statement)
    _add_state_schema_version(connection)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _add_state_schema_version(connection: sqlite3.Connection) -> None:
    """Give ``aggregates`` the schema version of each stored state where a store made before event schema
    versions lacks it: a column added empty (no row is rewritten), null meaning version 1, which is what
    every state written before then is."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(aggregates)")}
    if "schema_version" not in columns:
        connection.execute("ALTER TABLE aggregates ADD COLUMN schema_version INTEGER")


def _identity(path: Path) -> tuple[int, int]:
    """Which file ``path`` names now: (device, inode); ``OSError`` when there is none."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


def _load(db: sqlite3.Connection, aggregate_id: str) -> Snapshot | None:
    row = db.execute(
        "SELECT aggregate_type, version, state, schema_version FROM aggregates WHERE aggregate_id = ?",
        (aggregate_id,),
    ).fetchone()
    if row is None:
        return None
    kind = AggregateType(row[0])
    return Snapshot(kind, load_state(kind, row[2], row[3]), row[1])


def _erased(db: sqlite3.Connection, customer_id: str) -> bool:
    return db.execute("SELECT 1 FROM erasures WHERE customer_id = ?", (customer_id,)).fetchone() is not None


def _erase(db: sqlite3.Connection, erasure: Erasure) -> WriteStoreErasure:
    """Mask the customer's state, events and commands, and register the erasure (inside a transaction)."""
    customer_id = erasure.customer_id
    row = db.execute("SELECT aggregate_type, state FROM aggregates WHERE aggregate_id = ?", (customer_id,))
    found = row.fetchone()
    if found is None or found[0] != AggregateType.CUSTOMER.value:
        raise NotFound(f"there is no customer {customer_id!r} in the write store")
    values = personal_values(json.loads(found[1]))
    db.execute(
        "UPDATE aggregates SET state = ? WHERE aggregate_id = ?", (mask_personal(found[1]), customer_id)
    )
    events = db.execute(
        "SELECT seq, body, command_id FROM events WHERE aggregate_id = ?", (customer_id,)
    ).fetchall()
    for seq, body, _ in events:
        values |= personal_values(json.loads(body).get("data") or {})
        db.execute("UPDATE events SET body = ? WHERE seq = ?", (mask_personal(body), seq))
    commands = 0
    for command_id in {command_id for _, _, command_id in events}:
        command = db.execute("SELECT command FROM commands WHERE command_id = ?", (command_id,)).fetchone()
        if command is None:  # swept: past the idempotency window
            continue
        values |= personal_values(json.loads(command[0]))
        # The fingerprint is a hash of the command's text, personal values included: it goes too, so a
        # retry of the erased command answers that its id was used for another command.
        db.execute(
            "UPDATE commands SET command = ?, fingerprint = ? WHERE command_id = ?",
            (mask_personal(command[0]), MARKER, command_id),
        )
        commands += 1
    registered = db.execute(
        "INSERT INTO erasures (customer_id, erased_at, reason, erased_by) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (customer_id) DO NOTHING",
        (customer_id, _utc_text(erasure.erased_at), erasure.reason, erasure.erased_by),
    ).rowcount
    if not registered:
        first = db.execute(
            "SELECT erased_at, reason, erased_by FROM erasures WHERE customer_id = ?", (customer_id,)
        ).fetchone()
        erasure = Erasure(customer_id, datetime.fromisoformat(first[0]), first[1], first[2])
    return WriteStoreErasure(erasure, len(events), commands, frozenset(values), already_erased=not registered)


def _recorded_outcome(db: sqlite3.Connection, command_id: str, cutoff: str) -> RecordedOutcome | None:
    """The first answer under ``command_id``, unless it was recorded at or before ``cutoff`` (past the
    window: forgotten, even before the sweep deletes it)."""
    return _recorded(
        db.execute(
            "SELECT fingerprint, outcome FROM commands WHERE command_id = ? AND recorded_at > ?",
            (command_id, cutoff),
        ).fetchone()
    )


def _sweep(db: sqlite3.Connection, cutoff: str) -> int:
    """Delete up to :data:`SWEEP_BATCH` command rows recorded at or before ``cutoff``, the oldest first
    (through the index on ``recorded_at``); returns how many. Only ``commands``: events keep their
    ``command_id``, and aggregates and events are never swept."""
    return db.execute(
        "DELETE FROM commands WHERE rowid IN "
        "(SELECT rowid FROM commands WHERE recorded_at <= ? ORDER BY recorded_at LIMIT ?)",
        (cutoff, SWEEP_BATCH),
    ).rowcount


def _statements(script: str) -> list[str]:
    """The script's statements, comments left out (``sqlite3.complete_statement`` finds where each ends)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def _switch_to_wal(connection: sqlite3.Connection, timeout_seconds: float) -> None:
    """Put the file in WAL mode, retrying while another process creates or converts it.

    Switching the journal mode needs an exclusive lock, and SQLite answers "database is locked" at once
    (without its busy handler) when two processes open a new file together, so the wait happens here.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _recorded(row) -> RecordedOutcome | None:
    if row is None:
        return None
    return RecordedOutcome(row[0], json.loads(row[1]))


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
