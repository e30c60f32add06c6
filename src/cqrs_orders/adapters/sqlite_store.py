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
import sqlite3
import threading
import time
from collections.abc import Iterator
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


class SqliteWriteStore(WriteStore):
    """Thread-safe, multi-process-safe write store in one SQLite file."""

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as connection:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)

    # --- commands ----------------------------------------------------------------------------------
    def load(self, aggregate_id: str) -> Snapshot | None:
        row = (
            self._connection()
            .execute(
                "SELECT aggregate_type, version, state FROM aggregates WHERE aggregate_id = ?",
                (aggregate_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        kind = AggregateType(row[0])
        return Snapshot(kind, STATE_MODELS[kind].model_validate_json(row[2]), row[1])

    def recorded_outcome(self, command_id: str, aggregate_id: str) -> RecordedOutcome | None:
        row = (
            self._connection()
            .execute("SELECT fingerprint, outcome FROM commands WHERE command_id = ?", (command_id,))
            .fetchone()
        )
        return _recorded(row)

    def append(self, commit: Commit) -> None:
        with self._transaction() as db:
            recorded = _recorded(
                db.execute(
                    "SELECT fingerprint, outcome FROM commands WHERE command_id = ?", (commit.command_id,)
                ).fetchone()
            )
            if recorded is not None:
                raise DuplicateCommand(recorded)
            row = db.execute("SELECT version FROM aggregates WHERE aggregate_id = ?", (commit.aggregate_id,))
            current = row.fetchone()
            if (current[0] if current else 0) != commit.base_version:
                raise VersionConflict(commit.aggregate_id)
            state = commit.state.model_dump_json()
            try:
                if current is None:
                    db.execute(
                        "INSERT INTO aggregates (aggregate_id, aggregate_type, version, state) "
                        "VALUES (?, ?, ?, ?)",
                        (commit.aggregate_id, commit.aggregate_type.value, commit.version, state),
                    )
                else:
                    db.execute(
                        "UPDATE aggregates SET version = ?, state = ? WHERE aggregate_id = ? AND version = ?",
                        (commit.version, state, commit.aggregate_id, commit.base_version),
                    )
                for event in commit.events:
                    db.execute(
                        "INSERT INTO events (event_id, aggregate_id, version, event_type, command_id, body) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            str(event.eventId),
                            event.aggregateId,
                            event.version,
                            event.eventType,
                            commit.command_id,
                            event.to_json(),
                        ),
                    )
                    db.execute("INSERT INTO outbox (event_id) VALUES (?)", (str(event.eventId),))
                db.execute(
                    "INSERT INTO commands (command_id, fingerprint, command, outcome, recorded_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        commit.command_id,
                        commit.fingerprint,
                        commit.command_json,
                        _json(commit.outcome),
                        _now(),
                    ),
                )
            except sqlite3.IntegrityError as error:  # unreachable under BEGIN IMMEDIATE; kept as the backstop
                raise VersionConflict(f"{commit.aggregate_id}: {error}") from None

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

    def change_marker(self) -> int | None:
        """SQLite's ``data_version``: it changes when another connection commits (one page read)."""
        try:
            return self._connection().execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None

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
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


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
