"""What only the SQLite write store has: it opens its own schema only, and the pages a group of commands
writes."""

from __future__ import annotations

import sqlite3

import pytest

from cqrs_orders.adapters.sqlite_store import SCHEMA_VERSION, SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.errors import WriteStoreError


def register(n: int) -> dict:
    return {"type": "RegisterCustomer", "customerId": f"cust-{n}", "name": "A", "email": "a@example.com"}


@pytest.mark.parametrize(
    ("version", "says"), [(0, "run `cqrs-orders upgrade"), (SCHEMA_VERSION + 1, "newer than this version")]
)
def test_a_store_of_another_schema_is_refused_and_left_as_it_is(tmp_path, version, says):
    """The run path knows one layout: an older store is converted by ``cqrs-orders upgrade``, not on the way
    to a write, and a newer one needs a newer cqrs-orders."""
    path = tmp_path / "write_store.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY)")
        db.execute(f"PRAGMA user_version = {version}")
    with pytest.raises(WriteStoreError, match=says):
        SqliteWriteStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == version
        assert [row[0] for row in db.execute("SELECT name FROM sqlite_master")] == ["events"]


def test_a_new_store_gets_the_current_schema(tmp_path):
    store = SqliteWriteStore(tmp_path / "write_store.sqlite")
    assert store._connection().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.close()
    SqliteWriteStore(tmp_path / "write_store.sqlite").close()  # and opens it again


def test_generated_command_ids_are_time_ordered_so_a_group_writes_fewer_pages(tmp_path):
    """A command without a commandId gets a version-7 UUID: ids made later sort later, so the command-id
    index grows at its end instead of taking a random page per command. Measured in WAL frames (pages
    written and synced) per command, for groups of 16 on a store already holding 3,000 commands."""
    import time
    import uuid

    store = SqliteWriteStore(tmp_path / "write_store.sqlite")
    handler = CommandHandler(store)
    for first in range(0, 3000, 500):
        handler.handle_many([register(n) for n in range(first, first + 500)])
    writer = store._writer_connection()
    writer.execute("PRAGMA wal_autocheckpoint = 0")  # keep every frame from here on in the WAL
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ids = []
    for group in range(30):
        results = handler.handle_many([register(10_000 + group * 16 + n) for n in range(16)])
        ids += [result.commandId for result in results]
        time.sleep(0.002)  # the next group's ids are in a later millisecond
    frames_per_command = (tmp_path / "write_store.sqlite-wal").stat().st_size / (4096 + 24) / len(ids)

    assert {uuid.UUID(command_id).version for command_id in ids} == {7}
    assert ids[::16] == sorted(ids[::16])  # groups made later sort later
    assert frames_per_command < 1.8  # 1.36 measured; random (version-4) ids needed 2.18
    store.close()
