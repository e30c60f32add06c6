"""Two (or more) writers on one aggregate, as threads and as processes: no lost update, no duplicate version,
a stale ``expectedVersion`` reported as CONCURRENCY_CONFLICT, and a lost race retried when none was given."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.envelope import EventEnvelope


class RacingStore(SqliteWriteStore):
    """A real SQLite store whose first load per thread waits for the other writers: both decide on the same
    version, so exactly one commit can win the race."""

    def __init__(self, path, writers: int):
        super().__init__(path)
        self.barrier = threading.Barrier(writers, timeout=10)
        self.waited = threading.local()
        self.waited.done = True  # only the writer threads race

    def load(self, aggregate_id):
        snapshot = super().load(aggregate_id)
        if aggregate_id == "order-1" and not getattr(self.waited, "done", False):
            self.waited.done = True
            self.barrier.wait()
        return snapshot


def add_item(sku: str, **extra) -> dict:
    return {"type": "AddOrderItem", "orderId": "order-1", "sku": sku, "quantity": 1, "unitPrice": 1, **extra}


def order_versions(store) -> list[int]:
    bodies = [EventEnvelope.from_json(entry.body) for entry in store.pending(100_000).entries]
    return [event.version for event in bodies if event.aggregateId == "order-1"]


def test_two_threads_with_the_same_expected_version_one_wins(settings, given):
    given.customer()
    given.order()
    racing = RacingStore(settings.write_store_path, writers=2)
    handler = CommandHandler(racing)
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(handler.handle, [add_item("X", expectedVersion=1), add_item("Y", expectedVersion=1)])
        )
    assert sorted(r.status for r in results) == ["accepted", "rejected"]
    [loser] = [r for r in results if not r.accepted]
    assert loser.error["code"] == "CONCURRENCY_CONFLICT"
    assert racing.load("order-1").version == 2
    assert order_versions(racing) == [1, 2]
    racing.close()


def test_two_threads_without_expected_version_both_win_by_retrying(settings, given):
    given.customer()
    given.order()
    racing = RacingStore(settings.write_store_path, writers=2)
    handler = CommandHandler(racing)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(handler.handle, [add_item("X"), add_item("Y")]))
    assert [r.status for r in results] == ["accepted", "accepted"]
    assert sorted(r.version for r in results) == [2, 3]
    state = racing.load("order-1")
    assert state.version == 3 and sorted(i.sku for i in state.state.items) == ["A", "B", "X", "Y"]
    assert order_versions(racing) == [1, 2, 3]
    racing.close()


def test_many_threads_lose_no_update(store, handler, given):
    given.customer()
    given.order()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(handler.handle, [add_item(f"T{n:02d}") for n in range(40)]))
    accepted = [r for r in results if r.accepted]
    assert all(r.error["code"] == "CONCURRENCY_CONFLICT" for r in results if not r.accepted)
    assert len(accepted) >= 30
    assert sorted(r.version for r in accepted) == list(range(2, 2 + len(accepted)))
    assert len(store.load("order-1").state.items) == 2 + len(accepted)
    assert order_versions(store) == list(range(1, 2 + len(accepted)))


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
folder, start = Path(sys.argv[1]), float(sys.argv[2])
for n in range(int(sys.argv[3])):
    time.sleep(max(0.0, start + n * 0.05 - time.time()))  # every process opens file n at the same moment
    SqliteWriteStore(folder / f"store-{n}.sqlite").counts()
"""


def test_processes_opening_a_new_store_together_all_succeed(tmp_path):
    """Creating the file and switching it to WAL race between processes (seen as a flaky ``submit``)."""
    files, start = 20, time.time() + 3
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(tmp_path), str(start), str(files)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    errors = [opener.communicate(timeout=120)[1] for opener in openers]
    assert [opener.returncode for opener in openers] == [0] * 6, errors
    assert len(list(tmp_path.glob("store-*.sqlite"))) == files
