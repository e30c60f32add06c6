"""The embedded write store: one SQLite file holding aggregate state, the event history and the outbox.

Hardening: WAL (readers never block the writer), ``synchronous=FULL`` by default (a committed command
survives power loss), a busy timeout plus ``BEGIN IMMEDIATE`` (many threads and processes queue for the
write lock instead of failing), one connection per thread, and unique keys on (aggregate_id, version),
event_id and command_id as the last line of defence against a lost update or a double write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cqrs_orders.application.ports import (
    Commit,
    DuplicateCommand,
    OutboxBatch,
    OutboxEntry,
    RecordedOutcome,
    VersionConflict,
    WriteStore,
)
from cqrs_orders.domain.aggregates import Snapshot
from cqrs_orders.envelope import STATE_MODELS, AggregateType
from cqrs_orders.errors import WriteStoreError

logger = logging.getLogger(__name__)

#: A unit of work: reads and appends through the transaction it is given, returns the caller's answer.
Work = Callable[["_Session"], object]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS aggregates (
    aggregate_id   TEXT PRIMARY KEY,
    aggregate_type TEXT NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    state          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    aggregate_id TEXT NOT NULL,
    version      INTEGER NOT NULL,
    event_type   TEXT NOT NULL,
    command_id   TEXT NOT NULL,
    body         TEXT NOT NULL,
    UNIQUE (aggregate_id, version)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE REFERENCES events (event_id),
    published_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS commands (
    command_id  TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    command     TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
"""


#: Commands per group: enough to amortise one fsync over a whole ``submit --file`` chunk, small enough
#: that a group's transaction (and the wait of its last caller) stays short.
MAX_GROUP_COMMANDS = 1000


class SqliteWriteStore(WriteStore):
    """Thread-safe, multi-process-safe write store in one SQLite file, with group commit.

    Callers of :meth:`execute` queue up; the caller at the head of the queue becomes the group's leader: it
    takes the write lock, runs every queued unit of work (its own and its followers') in turn, each in its
    own ``SAVEPOINT``, and commits them with one ``COMMIT`` (one fsync). Only then is any caller of the
    group answered, so an answer always means durable. The leader design (after LevelDB's write queue)
    needs no background thread: a lone caller leads its own group with no hand-off at all.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", busy_timeout_ms: int = 30_000):
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        # Writers of this process queue here, FIFO-ish and without sleeping; SQLite's busy handler (which
        # polls with sleeps of up to 100 ms) then only arbitrates between processes.
        self._write_lock = threading.Lock()
        self._queue: deque[_Request] = deque()
        self._queue_lock = threading.Lock()
        #: (groups, commands) committed by this instance: how well group commit is grouping.
        self.committed = [0, 0]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists() and self.path.stat().st_size > 0
        if existed:
            self._check_integrity()
        with self._transaction() as connection:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)

    # --- commands ----------------------------------------------------------------------------------
    def load(self, aggregate_id: str) -> Snapshot | None:
        return _load(self._connection(), aggregate_id)

    def recorded_outcome(self, command_id: str, aggregate_id: str) -> RecordedOutcome | None:
        return _recorded_outcome(self._connection(), command_id)

    def append(self, commit: Commit) -> None:
        [outcome] = self._run([lambda tx: tx.append(commit)])
        if isinstance(outcome, BaseException):
            raise outcome

    def execute(self, works: Sequence[Work]) -> list:
        """Run each unit of work in its own savepoint of a shared transaction; answer once it is durable.

        A work that raises is rolled back alone and its exception re-raised here (after its neighbours'
        commit); the results of the others are kept.
        """
        outcomes = self._run(works)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes

    def waiting(self) -> int:
        """Requests queued for (or in) a group right now (for tests and diagnostics)."""
        with self._queue_lock:
            return len(self._queue)

    def _run(self, works: Sequence[Work]) -> list:
        request = _Request(list(works), threading.Condition(self._queue_lock))
        with self._queue_lock:
            self._queue.append(request)
            while not request.done and self._queue[0] is not request:
                request.wake.wait()
            if request.done:
                return request.outcomes
        self._lead()
        return request.outcomes

    def _lead(self) -> None:
        """Run and commit the group at the head of the queue (this caller's request is its first)."""
        group: list[_Request] = []
        failure: BaseException | None = None
        try:
            with self._transaction() as db:
                with self._queue_lock:  # whoever queued while the lock was awaited joins this group
                    size = 0
                    for request in self._queue:
                        if group and size + len(request.works) > MAX_GROUP_COMMANDS:
                            break
                        group.append(request)
                        size += len(request.works)
                session = _Session(db)
                for request in group:
                    request.outcomes = [session.run(work) for work in request.works]
        except BaseException as error:  # the group's transaction failed: nobody in it was committed
            failure = error
        finally:
            with self._queue_lock:
                if not group:  # failed before the group was taken: it is this caller's request alone
                    group = [self._queue[0]]
                answer = failure
                if failure is not None and not isinstance(failure, Exception):  # e.g. KeyboardInterrupt
                    answer = WriteStoreError(f"The group commit on {self.path} was interrupted; retry")
                elif isinstance(failure, sqlite3.Error):  # e.g. disk full or I/O error at COMMIT
                    answer = WriteStoreError(f"The write store at {self.path} failed: {failure}; retry")
                for request in group:
                    self._queue.popleft()
                    request.done = True
                    if answer is not None:
                        request.outcomes = [answer] * len(request.works)
                    request.wake.notify()
                if failure is None:
                    self.committed[0] += 1
                    self.committed[1] += size
                if self._queue:
                    self._queue[0].wake.notify()  # the next head leads the next group
        if failure is None:
            logger.debug("group commit: %d commands in %d requests", size, len(group))
        elif not isinstance(failure, Exception):
            raise failure  # KeyboardInterrupt and the like still stop this thread

    # --- outbox ------------------------------------------------------------------------------------
    def pending(self, limit: int) -> OutboxBatch:
        rows = (
            self._connection()
            .execute(
                "SELECT o.seq, e.aggregate_id, e.event_id, e.version, e.body FROM outbox o "
                "JOIN events e ON e.event_id = o.event_id "
                "WHERE o.published_at IS NULL ORDER BY o.seq LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return OutboxBatch([OutboxEntry(*row[1:]) for row in rows], token=[row[0] for row in rows])

    def acknowledge(self, batch: OutboxBatch) -> None:
        if not batch.token:
            return
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET published_at = ? WHERE seq = ?", [(_now(), seq) for seq in batch.token]
            )

    @contextlib.contextmanager
    def relay_guard(self) -> Iterator[None]:
        """An OS file lock (released even on SIGKILL): one relay drains this outbox at a time."""
        with open(self.path.with_name(self.path.name + ".relay.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def counts(self) -> dict[str, int]:
        """Rows per table (for tests, tools and the benchmark)."""
        db = self._connection()
        counts = {
            t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("aggregates", "events", "commands")
        }
        counts["outbox_pending"] = db.execute(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        ).fetchone()[0]
        return counts

    def close(self) -> None:
        with self._guard:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    # --- plumbing ----------------------------------------------------------------------------------
    def _check_integrity(self) -> None:
        """Refuse a damaged file at open instead of writing into it (``PRAGMA quick_check``: every page is
        read once, indexes are not cross-checked; see benchmarks/RESULTS.md for its cost)."""
        try:
            verdict = self._connection().execute("PRAGMA quick_check(1)").fetchone()[0]
        except sqlite3.DatabaseError as error:
            verdict = str(error)
        if verdict != "ok":
            self.close()
            raise WriteStoreError(
                f"The write store at {self.path} is damaged (SQLite quick_check: {verdict.splitlines()[0]}); "
                "restore it from a backup, or move it away to start an empty one"
            )

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout_ms / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
                connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                _switch_to_wal(connection, self.busy_timeout_ms / 1000)
                connection.execute(f"PRAGMA synchronous = {self.synchronous}")
                connection.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as error:
                raise WriteStoreError(f"Cannot open the write store at {self.path}: {error}") from error
            self._local.connection = connection
            with self._guard:
                self._connections.append(connection)
        return connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: take the write lock up front, so check-then-write is atomic."""
        db = self._connection()
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                raise WriteStoreError(
                    f"The write store at {self.path} stayed locked for {self.busy_timeout_ms} ms: {error}; "
                    "retry"
                ) from error
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT may have rolled back already
                    db.execute("ROLLBACK")
                raise


@dataclass(eq=False)
class _Request:
    """One caller's units of work, waiting in the queue; ``done`` once their group committed (or failed)."""

    works: list[Work]
    wake: threading.Condition
    done: bool = False
    outcomes: list = field(default_factory=list)


class _Session:
    """The group's transaction as one unit of work sees it: the ``load`` / ``recorded_outcome`` /
    ``append`` of the port, on the leader's connection, seeing the group's earlier commands.

    The leader holds the write lock, so a version read here cannot move before this work appends: ``append``
    checks ``base_version`` against what this work loaded instead of reading it again.
    """

    __slots__ = ("_db", "_versions")

    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self._versions: dict[str, int] = {}

    def run(self, work: Work):
        db = self._db
        db.execute("SAVEPOINT command")
        try:
            outcome = work(self)
        except Exception as error:  # this command alone is undone; its neighbours go on
            db.execute("ROLLBACK TO command")
            db.execute("RELEASE command")
            self._versions.clear()  # versions seen or written by the undone work are void
            return error
        db.execute("RELEASE command")
        return outcome

    def load(self, aggregate_id: str) -> Snapshot | None:
        snapshot = _load(self._db, aggregate_id)
        self._versions[aggregate_id] = snapshot.version if snapshot else 0
        return snapshot

    def recorded_outcome(self, command_id: str, aggregate_id: str) -> RecordedOutcome | None:
        return _recorded_outcome(self._db, command_id)

    def append(self, commit: Commit) -> None:
        db = self._db
        current = self._versions.get(commit.aggregate_id)
        if current is None:
            row = db.execute(
                "SELECT version FROM aggregates WHERE aggregate_id = ?", (commit.aggregate_id,)
            ).fetchone()
            current = row[0] if row else 0
        if current != commit.base_version:
            raise VersionConflict(commit.aggregate_id)
        try:  # the command id first: a duplicate fails before anything else is written
            db.execute(
                "INSERT INTO commands (command_id, fingerprint, command, outcome, recorded_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (commit.command_id, commit.fingerprint, commit.command_json, _json(commit.outcome), _now()),
            )
        except sqlite3.IntegrityError:
            raise DuplicateCommand(_recorded_outcome(db, commit.command_id)) from None
        state = commit.state.model_dump_json()
        try:
            if current == 0:
                db.execute(
                    "INSERT INTO aggregates (aggregate_id, aggregate_type, version, state) "
                    "VALUES (?, ?, ?, ?)",
                    (commit.aggregate_id, commit.aggregate_type.value, commit.version, state),
                )
            else:
                db.execute(
                    "UPDATE aggregates SET version = ?, state = ? WHERE aggregate_id = ?",
                    (commit.version, state, commit.aggregate_id),
                )
            for event in commit.events:
                event_id = str(event.eventId)
                db.execute(
                    "INSERT INTO events (event_id, aggregate_id, version, event_type, command_id, body) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (event_id, event.aggregateId, event.version, event.eventType, commit.command_id,
                     event.to_json()),
                )
                db.execute("INSERT INTO outbox (event_id) VALUES (?)", (event_id,))
        except sqlite3.IntegrityError as error:  # unreachable under the write lock; kept as the backstop
            raise VersionConflict(f"{commit.aggregate_id}: {error}") from None
        self._versions[commit.aggregate_id] = commit.version


def _load(db: sqlite3.Connection, aggregate_id: str) -> Snapshot | None:
    row = db.execute(
        "SELECT aggregate_type, version, state FROM aggregates WHERE aggregate_id = ?", (aggregate_id,)
    ).fetchone()
    if row is None:
        return None
    kind = AggregateType(row[0])
    return Snapshot(kind, STATE_MODELS[kind].model_validate_json(row[2]), row[1])


def _recorded_outcome(db: sqlite3.Connection, command_id: str) -> RecordedOutcome | None:
    return _recorded(
        db.execute("SELECT fingerprint, outcome FROM commands WHERE command_id = ?", (command_id,)).fetchone()
    )


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


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
