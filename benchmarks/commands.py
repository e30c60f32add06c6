"""Command-side throughput and latency: cqrs-orders' handler on the embedded SQLite store (state + events +
outbox in one transaction), next to the ``eventsourcing`` library doing the same work on SQLite.

The work per order is CreateOrder -> ConfirmOrder -> ShipOrder (our lifecycle needs the confirmation before
shipping), run once in a single thread and once spread over 4 threads. Both stores use WAL and the same
``synchronous`` setting (eventsourcing keeps SQLite's default; we set ours to that same value), so both pay
the same price per durable commit. Prints ONE JSON line.

    python benchmarks/commands.py               # full size: 3000 commands
    python benchmarks/commands.py --commands 30 # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler

STEPS = ("CreateOrder", "ConfirmOrder", "ShipOrder")
ITEMS = [
    {"sku": "SKU-1", "quantity": 2, "unitPrice": 10.25},
    {"sku": "SKU-2", "quantity": 1, "unitPrice": 4.5},
]


# --- the eventsourcing side: the same aggregate rules, in that library's idiom ---------------------------
class EsOrder(Aggregate):
    @event("Created")
    def __init__(self, customer_id: str, items: list[dict], currency: str):
        self.customer_id, self.items, self.currency, self.status = customer_id, items, currency, "Created"

    @event("Confirmed")
    def confirm(self) -> None:
        if self.status != "Created":
            raise ValueError(f"cannot confirm a {self.status} order")
        self.status = "Confirmed"

    @event("Shipped")
    def ship(self) -> None:
        if self.status != "Confirmed":
            raise ValueError(f"cannot ship a {self.status} order")
        self.status = "Shipped"


class EsOrders(Application):
    def create_order(self, customer_id: str, items: list[dict]) -> object:
        order = EsOrder(customer_id, items, "EUR")
        self.save(order)
        return order.id

    def confirm_order(self, order_id) -> None:
        order = self.repository.get(order_id)
        order.confirm()
        self.save(order)

    def ship_order(self, order_id) -> None:
        order = self.repository.get(order_id)
        order.ship()
        self.save(order)


# --- measuring ---------------------------------------------------------------------------------------
def run_orders(orders: int, threads: int, do_order: Callable[[int, list[float]], None]) -> dict:
    """Run ``do_order(n, latencies)`` for every order, on ``threads`` threads; figures over all commands."""
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(numbers: range) -> None:
        mine: list[float] = []
        for number in numbers:
            do_order(number, mine)
        with lock:
            latencies.extend(mine)

    shares = [range(start, orders, threads) for start in range(threads)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, shares))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "commands": len(latencies),
        "seconds": round(elapsed, 3),
        "commands_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 3),
    }


def timed(latencies: list[float], action: Callable[[], object]) -> object:
    started = time.perf_counter()
    outcome = action()
    latencies.append(time.perf_counter() - started)
    return outcome


def bench_cqrs_orders(folder: Path, orders: int, threads: int, synchronous: str, tag: str) -> dict:
    store = SqliteWriteStore(folder / f"cqrs-{tag}.sqlite", synchronous=synchronous)
    handler = CommandHandler(store)
    register = {
        "type": "RegisterCustomer",
        "customerId": "cust-1",
        "name": "Bench",
        "email": "bench@example.com",
    }
    assert handler.handle(register).accepted

    def do_order(number: int, latencies: list[float]) -> None:
        order_id = f"order-{tag}-{number}"
        create = {"type": "CreateOrder", "orderId": order_id, "customerId": "cust-1", "items": ITEMS}
        for command in (
            create,
            {"type": "ConfirmOrder", "orderId": order_id},
            {"type": "ShipOrder", "orderId": order_id},
        ):
            result = timed(latencies, lambda command=command: handler.handle(json.dumps(command)))
            if not result.accepted:
                raise RuntimeError(f"benchmark command rejected: {result.error}")

    figures = run_orders(orders, threads, do_order)
    counts = store.counts()
    assert (
        counts["events"] == orders * 3 + 1 and counts["outbox_pending"] == counts["events"]
    )  # all in the outbox
    store.close()
    return figures


def bench_eventsourcing(folder: Path, orders: int, threads: int, tag: str) -> dict:
    app = EsOrders(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(folder / f"es-{tag}.sqlite"),
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    )

    def do_order(number: int, latencies: list[float]) -> None:
        order_id = timed(latencies, lambda: app.create_order("cust-1", ITEMS))
        timed(latencies, lambda: app.confirm_order(order_id))
        timed(latencies, lambda: app.ship_order(order_id))

    figures = run_orders(orders, threads, do_order)
    app.close()
    return figures


def sqlite_default_synchronous(folder: Path) -> str:
    """The ``synchronous`` level a fresh WAL connection gets here (eventsourcing leaves it at this)."""
    connection = sqlite3.connect(folder / "probe.sqlite")
    connection.execute("PRAGMA journal_mode=WAL")
    level = connection.execute("PRAGMA synchronous").fetchone()[0]
    connection.close()
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[level]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--commands", type=int, default=3000, help="commands per run (rounded to whole orders)"
    )
    parser.add_argument("--threads", type=int, default=4, help="threads for the concurrent run (default 4)")
    args = parser.parse_args(argv)
    orders = max(1, args.commands // len(STEPS))
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        folder = Path(tmp)
        synchronous = sqlite_default_synchronous(folder)
        print(f"benchmarking {orders * 3} commands per run (synchronous={synchronous}) ...", file=sys.stderr)
        ours = {
            "single": bench_cqrs_orders(folder, orders, 1, synchronous, "single"),
            f"threads_{args.threads}": bench_cqrs_orders(
                folder, orders, args.threads, synchronous, "threads"
            ),
        }
        theirs = {
            "single": bench_eventsourcing(folder, orders, 1, "single"),
            f"threads_{args.threads}": bench_eventsourcing(folder, orders, args.threads, "threads"),
        }
    line = {
        "benchmark": "commands",
        "work": "CreateOrder+ConfirmOrder+ShipOrder per order, JSON in, via the command handler",
        "commands": orders * 3,
        "sqlite": {"journal_mode": "WAL", "synchronous": synchronous},
        "cpus": os.cpu_count(),
        "cqrs_orders": ours,
        "eventsourcing": theirs,
        "ratio_commands_per_s": {
            run: round(ours[run]["commands_per_s"] / theirs[run]["commands_per_s"], 3) for run in ours
        },
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
