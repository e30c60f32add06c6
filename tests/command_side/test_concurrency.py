"""Two (or more) writers on one aggregate, as threads sharing a group commit and as processes: no lost update,
no duplicate version, a stale ``expectedVersion`` reported as CONCURRENCY_CONFLICT, a retry answered as its
original."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.envelope import EventEnvelope


@contextlib.contextmanager
def one_group(store: SqliteWriteStore, callers: int):
    """Hold the file's write lock (from another connection, as another process would) until ``callers``
    requests wait in the store's queue; released, they all run in one group, deciding in turn."""
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
        deadline = time.monotonic() + 10
        while store.waiting() < callers:
            assert time.monotonic() < deadline, f"only {store.waiting()} of {callers} callers queued"
            time.sleep(0.005)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def add_item(sku: str, **extra) -> dict:
    return {"type": "AddOrderItem", "orderId": "order-1", "sku": sku, "quantity": 1, "unitPrice": 1, **extra}


def order_versions(store) -> list[int]:
    bodies = [EventEnvelope.from_json(entry.body) for entry in store.pending(100_000).entries]
    return [event.version for event in bodies if event.aggregateId == "order-1"]


def run_in_one_group(store, handler, commands: list[dict]) -> list:
    groups = store.committed[0]
    with ThreadPoolExecutor(len(commands)) as pool, one_group(store, len(commands)):
        futures = [pool.submit(handler.handle, command) for command in commands]
    results = [future.result(timeout=30) for future in futures]
    assert store.committed[0] == groups + 1, "the commands did not share one group"
    return results


def test_two_callers_with_the_same_expected_version_one_wins(store, handler, given):
    given.customer()
    given.order()
    racing = [add_item("X", expectedVersion=1), add_item("Y", expectedVersion=1)]
    results = run_in_one_group(store, handler, racing)
    assert sorted(r.status for r in results) == ["accepted", "rejected"]
    [loser] = [r for r in results if not r.accepted]
    assert loser.error["code"] == "CONCURRENCY_CONFLICT"
    assert store.load("order-1").version == 2
    assert order_versions(store) == [1, 2]


def test_two_callers_without_expected_version_both_win(store, handler, given):
    given.customer()
    given.order()
    results = run_in_one_group(store, handler, [add_item("X"), add_item("Y")])
    assert [r.status for r in results] == ["accepted", "accepted"]
    assert sorted(r.version for r in results) == [2, 3]
    state = store.load("order-1")
    assert state.version == 3 and sorted(i.sku for i in state.state.items) == ["A", "B", "X", "Y"]
    assert order_versions(store) == [1, 2, 3]


def test_a_retry_in_the_same_group_as_its_original_gets_the_first_result(store, handler, given):
    given.customer()
    given.order()
    command = add_item("X", commandId="retry-me")
    results = run_in_one_group(store, handler, [command, command, add_item("Y", commandId="retry-me")])
    first, again, reused = results
    assert first.accepted and again == first
    assert reused.error["code"] == "ALREADY_EXISTS"  # the same id for a different command
    assert order_versions(store) == [1, 2]


def test_sixteen_threads_lose_no_update(store, handler, given):
    given.customer()
    given.order()
    groups, commands = store.committed
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(handler.handle, [add_item(f"T{n:02d}") for n in range(64)]))
    assert store.committed[1] - commands == 64 and store.committed[0] - groups < 64  # they shared commits
    assert all(r.accepted for r in results)  # no expectedVersion, one writer: nothing to lose a race to
    assert sorted(r.version for r in results) == list(range(2, 66))
    assert len(store.load("order-1").state.items) == 66
    assert order_versions(store) == list(range(1, 66))


def test_sixteen_threads_with_expected_versions_and_retries(store, handler, given):
    """Every caller reads the version, then sends its command twice (a retry, same commandId) expecting it:
    per version exactly one command wins; an accepted command's retry gets the very same answer, a refused
    one's retry is refused again (its expectedVersion only gets staler)."""
    given.customer()
    given.order()

    def caller(n: int) -> tuple:
        seen = store.load("order-1").version
        command = add_item(f"E{n:02d}", expectedVersion=seen, commandId=f"cmd-{n}")
        return handler.handle(command), handler.handle(command)

    with ThreadPoolExecutor(16) as pool:
        pairs = list(pool.map(caller, range(64)))
    assert all(first == retry for first, retry in pairs if first.accepted)
    assert all(retry.error["code"] == "CONCURRENCY_CONFLICT" for first, retry in pairs if not first.accepted)
    accepted = [first for first, _ in pairs if first.accepted]
    assert all(first.error["code"] == "CONCURRENCY_CONFLICT" for first, _ in pairs if not first.accepted)
    assert accepted and sorted(r.version for r in accepted) == list(range(2, 2 + len(accepted)))
    assert order_versions(store) == list(range(1, 2 + len(accepted)))
    assert store.counts()["commands"] == 2 + len(accepted)


WRITER = """
import json, sys
from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
store = SqliteWriteStore(sys.argv[1])
handler = CommandHandler(store)
name, outcomes = sys.argv[2], []
for n in range(15):
    seen = store.load("order-1").version
    with_expected = {"type": "AddOrderItem", "orderId": "order-1", "sku": f"{name}-E{n}", "quantity": 1,
                     "unitPrice": 1, "expectedVersion": seen}
    without = dict(with_expected, sku=f"{name}-R{n}")
    del without["expectedVersion"]
    outcomes += [handler.handle(with_expected).to_dict(), handler.handle(without).to_dict()]
print(json.dumps(outcomes))
"""


def test_writer_processes_conflict_safely(settings, store, given):
    given.customer()
    given.order()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(settings.write_store_path), f"P{n}"], stdout=subprocess.PIPE
        )
        for n in range(3)
    ]
    outcomes = [result for writer in writers for result in json.loads(writer.communicate(timeout=120)[0])]
    assert all(writer.returncode == 0 for writer in writers)
    accepted = [r for r in outcomes if r["status"] == "accepted"]
    rejected = [r for r in outcomes if r["status"] == "rejected"]
    assert all(r["error"]["code"] == "CONCURRENCY_CONFLICT" for r in rejected)
    assert len(accepted) + len(rejected) == 90 and len(accepted) >= 45
    assert sorted(r["version"] for r in accepted) == list(range(2, 2 + len(accepted)))  # no version twice
    assert len(store.load("order-1").state.items) == 2 + len(accepted)  # no lost update
    assert order_versions(store) == list(range(1, 2 + len(accepted)))


OPENER = """
import sys, time
from pathlib import Path
from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
folder, files = Path(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
start = float(sys.stdin.readline())  # the same start time for every process, sent once all are ready
for n in range(files):
    time.sleep(max(0.0, start + n * 0.05 - time.time()))  # every process opens file n at the same moment
    SqliteWriteStore(folder / f"store-{n}.sqlite").counts()
"""


def test_processes_opening_a_new_store_together_all_succeed(tmp_path):
    """Creating the file and switching it to WAL race between processes (seen as a flaky ``submit``)."""
    files = 20
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(tmp_path), str(files)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    assert [opener.stdout.readline() for opener in openers] == ["ready\n"] * 6
    start = time.time() + 0.2
    for opener in openers:
        opener.stdin.write(f"{start}\n")
        opener.stdin.flush()
    errors = [opener.communicate(timeout=120)[1] for opener in openers]
    assert [opener.returncode for opener in openers] == [0] * 6, errors
    assert len(list(tmp_path.glob("store-*.sqlite"))) == files
