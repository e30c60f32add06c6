"""Group commit in the SQLite write store: many callers' commands in one transaction, each in its own
savepoint, answered only once durable; a rejected or failing command leaves no trace, a SIGKILL loses only
unanswered commands, and a killed ``submit --file`` leaves a prefix of whole commands."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.ports import Commit
from cqrs_orders.envelope import AggregateType, CustomerState, new_event
from cqrs_orders.errors import WriteStoreError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def customer_commit(customer_id: str) -> Commit:
    state = CustomerState(
        customerId=customer_id, name="A", email="a@example.com", createdAt=NOW, updatedAt=NOW
    )
    event = new_event("CustomerRegistered", state, 1, at=NOW)
    return Commit(f"cmd-{customer_id}", "fp", "{}", AggregateType.CUSTOMER, customer_id, 0, [event], {})


CLI = [sys.executable, "-m", "cqrs_orders.cli"]


def register(n: int, **extra) -> dict:
    return {
        "type": "RegisterCustomer",
        "commandId": f"c-{n}",
        "customerId": f"cust-{n}",
        "name": f"Customer {n}",
        "email": f"c{n}@example.com",
        **extra,
    }


def whole_commands(path) -> dict[str, int]:
    """commandId -> its aggregate row, its event, that event pending in the outbox (3 when whole)."""
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT c.command_id, (SELECT count(*) FROM aggregates a WHERE a.aggregate_id = e.aggregate_id) "
        "+ (e.event_id IS NOT NULL) + (e.seq > (SELECT published_through FROM outbox_position)) "
        "FROM commands c LEFT JOIN events e ON e.command_id = c.command_id"
    ).fetchall()
    orphans = db.execute(
        "SELECT count(*) FROM events e WHERE NOT EXISTS "
        "(SELECT 1 FROM commands c WHERE c.command_id = e.command_id)"
    ).fetchone()[0]
    db.close()
    assert orphans == 0, "events without their command"
    return dict(rows)


def test_rejected_commands_in_a_group_leave_no_trace_while_their_neighbours_commit(handler, store):
    commands = [
        register(1),
        register(2, customerId="cust-1"),  # ALREADY_EXISTS: cust-1 was registered by the command before it
        register(3),
        {"type": "ShipOrder", "orderId": "nope"},  # NOT_FOUND
        register(4, email="not-an-email"),  # VALIDATION_ERROR, before the group
        register(5),
    ]
    groups = store.committed[0]
    results = handler.handle_many(commands)
    assert store.committed[0] == groups + 1
    assert [r.status for r in results] == [
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
        "accepted",
    ]
    assert [r.error["code"] for r in results if r.error] == [
        "ALREADY_EXISTS",
        "NOT_FOUND",
        "VALIDATION_ERROR",
    ]
    assert whole_commands(store.path) == {"c-1": 3, "c-3": 3, "c-5": 3}
    assert store.counts() == {"aggregates": 3, "events": 3, "commands": 3, "outbox_pending": 3}


def test_a_command_failing_half_way_is_rolled_back_alone(store):
    """A unit of work that wrote part of its rows, then failed: its savepoint is undone, the group commits."""

    def half_then_fail(tx):
        tx.append(customer_commit("cust-bad"))
        raise RuntimeError("the disk said no, half way")

    good = [customer_commit("cust-a"), customer_commit("cust-b")]
    outcomes = store.execute([lambda tx: tx.append(good[0]), half_then_fail, lambda tx: tx.append(good[1])])
    assert outcomes[0] is None and outcomes[2] is None  # the neighbours' own outcomes, in their slots
    assert isinstance(outcomes[1], RuntimeError) and "half way" in str(outcomes[1])
    assert store.load("cust-bad") is None
    assert store.load("cust-a").version == 1 and store.load("cust-b").version == 1
    assert store.counts() == {"aggregates": 2, "events": 2, "commands": 2, "outbox_pending": 2}
    assert store.committed[1] == 3  # one group of three works
    [alone] = store.execute([half_then_fail])  # alone in its group: no savepoint, the transaction is undone
    assert isinstance(alone, RuntimeError)
    assert store.load("cust-bad") is None and store.counts()["commands"] == 2
    assert store.execute([lambda tx: tx.load("cust-a").version]) == [1]


RETRIER = """
import json, sys
from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from concurrent.futures import ThreadPoolExecutor
handler = CommandHandler(SqliteWriteStore(sys.argv[1]))
commands = [{"type": "RegisterCustomer", "commandId": f"c-{n}", "customerId": f"cust-{n}", "name": "A",
             "email": "a@example.com"} for n in range(60)]
with ThreadPoolExecutor(8) as pool:
    print(json.dumps([r.to_dict() for r in pool.map(handler.handle, commands)]))
"""


def test_processes_retrying_the_same_commands_get_the_first_results(settings, store):
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RETRIER, str(settings.write_store_path)], stdout=subprocess.PIPE
        )
        for _ in range(3)
    ]
    answers = [json.loads(run.communicate(timeout=120)[0]) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0]
    assert answers[0] == answers[1] == answers[2]  # same events, same versions: the first outcome, replayed
    assert all(result["status"] == "accepted" for result in answers[0])
    assert store.counts() == {"aggregates": 60, "events": 60, "commands": 60, "outbox_pending": 60}


SUBMITTER = """
import sys, threading
from concurrent.futures import ThreadPoolExecutor
from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
handler = CommandHandler(SqliteWriteStore(sys.argv[1]))
lock = threading.Lock()
def caller(thread):
    for n in range(thread, 100_000, 16):
        result = handler.handle({"type": "RegisterCustomer", "commandId": f"c-{n}", "customerId": f"cust-{n}",
                                 "name": "A", "email": "a@example.com"})
        with lock:  # an answered caller tells the test at once
            sys.stdout.write(result.commandId + " " + result.status + "\\n")
            sys.stdout.flush()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(caller, range(16)))
"""


def test_a_sigkill_during_groups_loses_only_unanswered_commands(settings):
    path = settings.write_store_path
    SqliteWriteStore(path).close()
    submitter = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER, str(path)], stdout=subprocess.PIPE, text=True
    )
    answered = []
    while len(answered) < 400:
        line = submitter.stdout.readline()
        assert line, "the submitter stopped early"
        answered.append(line.split())
    os.kill(submitter.pid, signal.SIGKILL)
    submitter.wait(timeout=30)
    answered += [line.split() for line in submitter.stdout.read().splitlines() if len(line.split()) == 2]
    assert all(status == "accepted" for _, status in answered)
    committed = whole_commands(path)
    assert {command_id for command_id, _ in answered} <= set(committed)  # every answer was durable
    assert set(committed.values()) == {3}  # and every command in the store is whole
    assert SqliteWriteStore(path).counts()["commands"] == len(committed)


def test_a_sigkill_during_submit_file_leaves_a_prefix_of_whole_commands(settings, tmp_path):
    commands = tmp_path / "commands.jsonl"
    commands.write_text("".join(json.dumps(register(n)) + "\n" for n in range(30_000)))
    submit = subprocess.Popen(
        [*CLI, "submit", "--file", str(commands), "--warehouse", str(settings.warehouse)],
        stdout=subprocess.PIPE,
        text=True,
    )
    answered = 0
    deadline = time.monotonic() + 120
    while answered < 1500:  # past the first group, into a later one
        assert submit.stdout.readline(), "submit stopped early"
        answered += 1
        assert time.monotonic() < deadline
    os.kill(submit.pid, signal.SIGKILL)
    submit.wait(timeout=30)
    answered += len(submit.stdout.read().splitlines())
    committed = whole_commands(settings.write_store_path)
    assert len(committed) < 30_000, "the kill came too late to test anything"
    assert set(committed) == {f"c-{n}" for n in range(len(committed))}  # a prefix of the file
    assert len(committed) >= answered  # every printed result is in it
    assert set(committed.values()) == {3}  # of whole commands


def test_the_writers_snapshot_cache_sees_what_other_connections_wrote(settings, handler, store, given):
    """The group writer keeps parsed snapshots between groups; a write by anyone else (another process, here
    another store on the same file) must void them, or the next command would decide on a stale version."""
    given.customer()
    given.order()
    assert given.step("ConfirmOrder").version == 2  # order-1 is now cached at version 2
    other = SqliteWriteStore(settings.write_store_path)
    assert CommandHandler(other).handle({"type": "ShipOrder", "orderId": "order-1"}).version == 3
    other.close()
    delivered = handler.handle({"type": "DeliverOrder", "orderId": "order-1"})
    assert (delivered.status, delivered.version) == ("accepted", 4), delivered
    assert store.load("order-1").state.status.value == "Delivered"


def test_a_group_that_cannot_commit_answers_everyone_in_it_with_an_error(settings, store):
    """When the group's transaction itself fails, no work in it is committed and every caller in it is told
    (a follower gets a WriteStoreError as each work's outcome, the leader its own exception); the next group
    commits as usual."""
    good, other = customer_commit("cust-a"), customer_commit("cust-b")
    answers: dict[str, object] = {}

    def interrupted(tx):
        raise KeyboardInterrupt  # not one command's failure: it stops the whole transaction

    def call(name, works):
        try:
            answers[name] = store.execute(works)
        except BaseException as error:
            answers[name] = error

    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # both callers queue up while the write lock is taken
    leader = threading.Thread(target=call, args=("leader", [lambda tx: tx.append(good), interrupted]))
    follower = threading.Thread(target=call, args=("follower", [lambda tx: tx.append(other)]))
    for thread, queued in ((leader, 1), (follower, 2)):
        thread.start()
        while store.waiting() < queued:
            time.sleep(0.001)
    blocker.execute("ROLLBACK")
    for thread in (leader, follower):
        thread.join(timeout=30)
    assert isinstance(answers["leader"], KeyboardInterrupt)
    [followed] = answers["follower"]
    assert isinstance(followed, WriteStoreError), answers["follower"]
    assert store.load("cust-a") is None and store.load("cust-b") is None  # nothing of the group
    store.execute([lambda tx: tx.append(other)])
    assert store.load("cust-b").version == 1


def test_a_write_holds_the_lock_file_other_processes_queue_on(tmp_path):
    """Writers of other processes wait on an flock of ``<store>.write.lock`` (woken the moment it is free)
    instead of SQLite's busy handler, which polls with sleeps of up to 100 ms."""
    import fcntl

    store = SqliteWriteStore(tmp_path / "write_store.sqlite")
    inside, release = threading.Event(), threading.Event()

    def work(tx):
        inside.set()
        assert release.wait(10)
        return "done"

    writer = threading.Thread(target=lambda: store.execute([work]))
    writer.start()
    assert inside.wait(10)
    with open(tmp_path / "write_store.sqlite.write.lock", "a") as lock:
        with pytest.raises(BlockingIOError):  # held by the transaction in progress
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        release.set()
        writer.join()
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once it committed
        fcntl.flock(lock, fcntl.LOCK_UN)
    store.close()
