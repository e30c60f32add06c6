"""``cqrs-orders upgrade``: a warehouse an older version wrote, built here by hand, is converted once; a
second run does nothing; and the run path refuses the old layout until it is converted."""

from __future__ import annotations

import sqlite3

import pytest

from cqrs_orders.adapters.sqlite_store import SCHEMA_VERSION, SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.cli import main
from cqrs_orders.errors import WriteStoreError
from cqrs_orders.pipeline.runner import CHECKPOINT

#: The first SQLite layout (schema 0), as that version created it: an outbox row per event, written by a
#: trigger.
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
CREATE TRIGGER events_to_outbox AFTER INSERT ON events
BEGIN
    INSERT INTO outbox (event_id) VALUES (NEW.event_id);
END;
"""


def register(n: int) -> dict:
    return {"type": "RegisterCustomer", "customerId": f"cust-{n}", "name": "A", "email": "a@example.com"}


def old_store(settings) -> list:
    """A schema-0 store at the warehouse's write store path holding three commands, the first one's event
    published; returns the commands' results (from today's code, whose rows the old layout holds)."""
    scratch = SqliteWriteStore(settings.warehouse.parent / "scratch.sqlite")
    handler = CommandHandler(scratch)
    results = [handler.handle({**register(n), "commandId": f"c-{n}"}) for n in range(3)]
    db = scratch._connection()
    aggregates = db.execute("SELECT aggregate_id, aggregate_type, version, state FROM aggregates").fetchall()
    events = db.execute(
        "SELECT seq, event_id, aggregate_id, version, event_type, command_id, body FROM events"
    ).fetchall()
    commands = db.execute("SELECT * FROM commands").fetchall()
    scratch.close()
    settings.warehouse.mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(settings.write_store_path)
    old.executescript(FIRST_LAYOUT)
    old.executemany("INSERT INTO aggregates VALUES (?, ?, ?, ?)", aggregates)
    old.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", events)  # the trigger fills the outbox
    old.execute("UPDATE outbox SET published_at = '2026-01-01T00:00:00+00:00' WHERE seq = 1")
    old.executemany("INSERT INTO commands VALUES (?, ?, ?, ?, ?)", commands)
    old.commit()
    old.close()
    return results


def user_version(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test_a_store_of_the_old_layout_is_refused_until_upgraded(settings, cli):
    """Opening it (here through ``submit``) changes nothing and names the command that converts it."""
    old_store(settings)
    with pytest.raises(WriteStoreError, match="run `cqrs-orders upgrade"):
        SqliteWriteStore(settings.write_store_path)
    refused = cli("submit", '{"type": "RegisterCustomer", "customerId": "c", "name": "A", "email": "a@b.c"}')
    assert refused.exit_code == 2 and "cqrs-orders upgrade" in refused.stderr
    assert user_version(settings.write_store_path) == 0  # untouched: the run path converts nothing


def test_upgrade_converts_the_old_store_with_its_outbox_intact_and_then_has_nothing_to_do(settings, cli):
    """After the upgrade the two unpublished events are still pending, in order, a new command goes behind
    them, and a retry of an old command gets its first answer. A second run changes nothing."""
    results = old_store(settings)

    first = cli("upgrade")
    assert first.exit_code == 0, first.stderr
    [done] = first.json_lines()[0]["upgraded"]
    assert "write store" in done and "schema 0 -> 2" in first.stderr
    assert user_version(settings.write_store_path) == SCHEMA_VERSION

    store = SqliteWriteStore(settings.write_store_path)
    assert store.counts() == {"aggregates": 3, "events": 3, "commands": 3, "outbox_pending": 2}
    handler = CommandHandler(store)
    assert handler.handle({**register(1), "commandId": "c-1"}) == results[1]  # a retry: the first answer
    fourth = handler.handle(register(3))
    pending = store.pending(10)
    expected = [*results[1].eventIds, *results[2].eventIds, *fourth.eventIds]
    assert [entry.event_id for entry in pending.entries] == expected
    store.close()

    again = cli("upgrade")
    assert again.exit_code == 0 and again.json_lines() == [{"upgraded": []}]
    assert "nothing to upgrade" in again.stderr
    assert SqliteWriteStore(settings.write_store_path).counts()["events"] == 4


def test_a_store_of_schema_0_without_the_old_tables_is_refused_unchanged(settings, cli):
    """Not a store this project wrote: the upgrade says so and leaves it as it is."""
    settings.warehouse.mkdir(parents=True)
    with sqlite3.connect(settings.write_store_path) as db:
        db.execute("CREATE TABLE something (x)")
    refused = cli("upgrade")
    assert refused.exit_code == 2 and "not written by cqrs-orders" in refused.stderr
    with sqlite3.connect(settings.write_store_path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["something"]


def test_upgrade_renames_the_old_checkpoint_folder_once(settings, cli):
    old = settings.warehouse / "_checkpoints" / "bronze"
    (old / "offsets").mkdir(parents=True)
    (old / "offsets" / "0").write_text("v1")

    first = cli("upgrade")
    assert first.exit_code == 0 and len(first.json_lines()[0]["upgraded"]) == 1
    new = settings.warehouse / "_checkpoints" / CHECKPOINT
    assert CHECKPOINT != "bronze" and (new / "offsets" / "0").read_text() == "v1" and not old.exists()
    assert cli("upgrade").json_lines() == [{"upgraded": []}]


def test_an_old_checkpoint_folder_is_left_alone_when_the_new_one_exists(settings, cli):
    """The projection resumes from the new folder: replacing it would rewind or skip batches."""
    old, new = (settings.warehouse / "_checkpoints" / name for name in ("bronze", CHECKPOINT))
    (old / "offsets").mkdir(parents=True)
    (new / "offsets").mkdir(parents=True)
    (new / "offsets" / "7").write_text("current")

    result = cli("upgrade")
    assert result.exit_code == 0 and result.json_lines() == [{"upgraded": []}]
    assert old.is_dir() and (new / "offsets" / "7").read_text() == "current"
    assert "is kept" in result.stderr


def test_upgrade_has_help(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["upgrade", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "schema 0" in text and "'bronze'" in text and "silver_event_history" in text


def test_upgrade_drops_the_former_history_table(spark, settings, cli):
    """An earlier version kept the event history as a Delta table where the view is now."""
    folder = settings.warehouse / "silver_event_history"
    spark.range(3).withColumnRenamed("id", "version").write.format("delta").save(str(folder))
    assert (folder / "_delta_log").is_dir()

    first = cli("upgrade")
    assert first.exit_code == 0, first.stderr
    [done] = first.json_lines()[0]["upgraded"]
    assert "silver_event_history" in done and not folder.exists()
    assert list(settings.warehouse.iterdir()) == []  # nothing else was made
    assert cli("upgrade").json_lines() == [{"upgraded": []}]


def test_the_checkpoint_is_not_renamed_while_a_projection_runs_on_it(settings, cli):
    """The rename takes the projection's lock: a projection of the older version still running on the old
    folder keeps it, and the upgrade says what to do."""
    import subprocess
    import sys

    old = settings.warehouse / "_checkpoints" / "bronze"
    old.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from cqrs_orders.pipeline import checkpoint_lock\n"
            "with checkpoint_lock.exclusive(sys.argv[1]):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
            str(old),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = cli("upgrade")
    finally:
        holder.kill()
        holder.wait()
    assert refused.exit_code == 2 and "Another projection is already running" in refused.stderr
    assert old.is_dir() and not (settings.warehouse / "_checkpoints" / CHECKPOINT).exists()
