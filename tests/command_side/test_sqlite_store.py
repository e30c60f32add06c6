"""What only the SQLite write store has: the upgrade from its first layout (a separate outbox table)."""

from __future__ import annotations

import sqlite3

from cqrs_orders.adapters.sqlite_store import SCHEMA_VERSION, SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler

FIRST_LAYOUT = """
CREATE TABLE aggregates (aggregate_id TEXT PRIMARY KEY, aggregate_type TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1), state TEXT NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    aggregate_id TEXT NOT NULL, version INTEGER NOT NULL, event_type TEXT NOT NULL, command_id TEXT NOT NULL,
    body TEXT NOT NULL, UNIQUE (aggregate_id, version));
CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE REFERENCES events (event_id), published_at TEXT);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE TABLE commands (command_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, command TEXT NOT NULL,
    outcome TEXT NOT NULL, recorded_at TEXT NOT NULL);
"""


def register(n: int) -> dict:
    return {"type": "RegisterCustomer", "customerId": f"cust-{n}", "name": "A", "email": "a@example.com"}


def test_a_store_of_the_first_layout_is_upgraded_with_its_outbox_intact(settings):
    """Three events under the old layout, the first one published: after the upgrade the other two are still
    pending, in order, a new command goes behind them, and retries of old commands are still answered."""
    path = settings.write_store_path
    path.parent.mkdir(parents=True)
    new = SqliteWriteStore(settings.warehouse / "scratch.sqlite")  # the rows as today's code writes them
    handler = CommandHandler(new)
    results = [handler.handle({**register(n), "commandId": f"c-{n}"}) for n in range(3)]
    rows = new._connection().execute("SELECT * FROM aggregates").fetchall()
    events = (
        new._connection()
        .execute("SELECT seq, event_id, aggregate_id, version, event_type, command_id, body FROM events")
        .fetchall()
    )
    commands = new._connection().execute("SELECT * FROM commands").fetchall()
    new.close()
    old = sqlite3.connect(path)
    old.executescript(FIRST_LAYOUT)
    old.executemany("INSERT INTO aggregates VALUES (?, ?, ?, ?)", rows)
    old.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", events)
    old.executemany(
        "INSERT INTO outbox (event_id, published_at) VALUES (?, ?)",
        [(event[1], "2026-01-01T00:00:00+00:00" if n == 0 else None) for n, event in enumerate(events)],
    )
    old.executemany("INSERT INTO commands VALUES (?, ?, ?, ?, ?)", commands)
    old.commit()
    old.close()

    store = SqliteWriteStore(path)
    assert store._connection().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.counts() == {"aggregates": 3, "events": 3, "commands": 3, "outbox_pending": 2}
    upgraded = CommandHandler(store)
    assert upgraded.handle({**register(1), "commandId": "c-1"}) == results[1]  # a retry: the first answer
    fourth = upgraded.handle(register(3))
    pending = store.pending(10)
    expected = [*results[1].eventIds, *results[2].eventIds, *fourth.eventIds]
    assert [entry.event_id for entry in pending.entries] == expected
    store.acknowledge(pending)
    assert store.counts()["outbox_pending"] == 0
    store.close()
    assert SqliteWriteStore(path).counts()["events"] == 4  # opening an upgraded store again changes nothing
