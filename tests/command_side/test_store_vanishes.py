"""A write store that disappears, moves, is replaced or cannot write is noticed: nothing is answered
"accepted" that the store at its path does not hold, the answer is WRITE_STORE_UNAVAILABLE, and the store
recovers when the file is back (the same file, or a restored copy)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from cqrs_orders.adapters.event_log_publisher import EventLogPublisher
from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.relay import Relay
from cqrs_orders.errors import WriteStoreError


def register(n: int) -> dict:
    return {
        "type": "RegisterCustomer",
        "commandId": f"reg-{n}",
        "customerId": f"cust-{n}",
        "name": "Ada",
        "email": "ada@example.com",
    }


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "warehouse"


def test_a_moved_folder_is_refused_and_the_store_recovers_when_it_is_back(folder):
    store = SqliteWriteStore(folder / "store.db")
    handler = CommandHandler(store)
    assert handler.handle(register(1)).accepted
    folder.rename(folder.with_name("moved"))

    gone = handler.handle_many([register(2), register(3)])
    assert [r.error["code"] for r in gone] == ["WRITE_STORE_UNAVAILABLE"] * 2
    assert "not written" in gone[0].error["message"] and gone[0].commandId == "reg-2"
    with pytest.raises(WriteStoreError, match="gone"):
        store.load("cust-1")

    folder.with_name("moved").rename(folder)
    assert handler.handle(register(2)).accepted
    assert store.counts()["commands"] == 2  # cust-1 and cust-2: nothing was written while it was away
    store.close()


def test_a_restored_copy_is_adopted_and_a_deleted_store_is_never_recreated_silently(folder):
    store = SqliteWriteStore(folder / "store.db")
    handler = CommandHandler(store)
    assert handler.handle(register(1)).accepted
    backup = folder.with_name("backup")
    store.close()
    shutil.copytree(folder, backup)
    shutil.rmtree(folder)

    assert handler.handle(register(2)).error["code"] == "WRITE_STORE_UNAVAILABLE"
    assert not folder.exists()  # not recreated empty behind the caller's back

    shutil.copytree(backup, folder)  # a restore: another file (inode) at the same path
    assert handler.handle(register(2)).accepted
    assert handler.handle(register(1)).version == 1  # the restored history answers the retry
    reopened = SqliteWriteStore(folder / "store.db")
    assert reopened.counts()["commands"] == 2
    reopened.close()
    store.close()


def test_a_commit_into_a_file_removed_meanwhile_is_not_answered_accepted(folder):
    store = SqliteWriteStore(folder / "store.db")
    handler = CommandHandler(store)
    assert handler.handle(register(1)).accepted

    def remove_the_folder_then_append(tx):
        shutil.rmtree(folder)  # while the transaction is open: its commit goes into a deleted file
        return handler.prepare(register(2)).run(tx)

    [outcome] = store.execute([remove_the_folder_then_append])
    assert isinstance(outcome, WriteStoreError) and "not in the store" in str(outcome)
    store.close()


def test_a_relay_refuses_a_missing_store_and_publishes_once_it_is_back(folder):
    """The refusal is a WriteStoreError, which a following relay logs and retries at its next poll."""
    store = SqliteWriteStore(folder / "store.db")
    assert CommandHandler(store).handle(register(1)).accepted
    relay = Relay(store, EventLogPublisher(folder.with_name("log")))
    folder.rename(folder.with_name("moved"))

    with pytest.raises(WriteStoreError, match="gone"):
        relay.drain()
    folder.with_name("moved").rename(folder)
    assert relay.drain() == 1
    store.close()


def test_a_disk_that_fills_up_answers_unavailable_and_writes_nothing(tmp_path):
    """A real full file system (a 1 MiB tmpfs, mounted for the test): SQLite's write fails, the whole
    group is undone, and the store takes commands again once there is room."""
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode
    ):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        store = SqliteWriteStore(mount / "store.db", synchronous="NORMAL")
        handler = CommandHandler(store)
        assert handler.handle(register(0)).accepted
        filler = mount / "filler"
        with open(filler, "wb") as handle:  # take every free byte
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        big = [{**register(n), "name": "x" * 200} for n in range(1, 200)]
        results = handler.handle_many(big)
        assert {r.error["code"] for r in results} == {"WRITE_STORE_UNAVAILABLE"}, results[0]
        filler.unlink()
        assert handler.handle(register(1)).accepted
        assert store.counts()["commands"] == 2
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
