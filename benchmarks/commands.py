"""Command-side throughput and latency: cqrs-orders' handler on the embedded SQLite store (state + events +
outbox of each command atomic, concurrent commands group-committed), next to the ``eventsourcing`` library
doing the same work on SQLite, with the same durability (WAL, ``synchronous=FULL``), in the same run.

The work per order is CreateOrder -> ConfirmOrder -> ShipOrder (our lifecycle needs the confirmation before
shipping), JSON in: once in a single thread, then spread over 4 and 16 threads (each thread its own orders),
and a ``cqrs-orders submit --file`` import of a JSON Lines file. Each threaded run is cut into slices that
the two sides take in turn (ours, theirs, theirs, ours, ...), so a shared machine that speeds up or slows
down weighs on both alike. Prints ONE JSON line: every figure, and every ratio of ours to the library's (the
file import against the library's one-thread rate: it has no bulk path).

    python benchmarks/commands.py                # full size: 3000 commands per run, a 10,000-command file
    python benchmarks/commands.py --commands 30 --file-commands 30   # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
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
from cqrs_orders.cli import main as cqrs_orders_cli

STEPS = ("CreateOrder", "ConfirmOrder", "ShipOrder")
REGISTER = {"type": "RegisterCustomer", "customerId": "cust-1", "name": "Bench", "email": "bench@example.com"}
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
def run_orders(orders: range, threads: int, do_order: Callable[[int, list[float]], None]):
    """Run ``do_order(n, latencies)`` for every order on ``threads`` threads: (latencies, elapsed seconds)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(numbers: range) -> None:
        mine: list[float] = []
        for number in numbers:
            do_order(number, mine)
        with lock:
            latencies.extend(mine)

    shares = [orders[start::threads] for start in range(threads)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, shares))
    return latencies, time.perf_counter() - started


def figures(latencies: list[float], elapsed: float) -> dict:
    latencies = sorted(latencies)
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


def bench_cqrs_orders(folder: Path, orders: range, threads: int, tag: str):
    """(latencies, elapsed, groups, commands in them) of our handler on a fresh store."""
    store = SqliteWriteStore(folder / f"cqrs-{tag}.sqlite", synchronous="FULL")
    handler = CommandHandler(store)
    assert handler.handle(REGISTER).accepted

    def do_order(number: int, latencies: list[float]) -> None:
        for command in order_commands(f"order-{tag}-{number}"):
            result = timed(latencies, lambda command=command: handler.handle(json.dumps(command)))
            if not result.accepted:
                raise RuntimeError(f"benchmark command rejected: {result.error}")

    groups_before, commands_before = store.committed
    latencies, elapsed = run_orders(orders, threads, do_order)
    groups, commands = store.committed[0] - groups_before, store.committed[1] - commands_before
    counts = store.counts()
    assert counts["events"] == len(orders) * 3 + 1 and counts["outbox_pending"] == counts["events"], counts
    store.close()
    return latencies, elapsed, groups, commands


def bench_eventsourcing(folder: Path, orders: range, threads: int, tag: str):
    """(latencies, elapsed) of the library doing the same orders on a fresh SQLite file."""
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

    latencies, elapsed = run_orders(orders, threads, do_order)
    app.close()
    return latencies, elapsed


def compare(folder: Path, orders: int, threads: int, rounds: int, run: str) -> tuple[dict, dict]:
    """Both sides, in ``rounds`` slices taken in turn (ours, theirs, theirs, ours, ...): a machine that gets
    faster or slower during the run then weighs on both alike. Figures over all slices."""
    ours: list = [[], 0.0, 0, 0]
    theirs: list = [[], 0.0]
    slices = [range(start, orders, rounds) for start in range(min(rounds, orders))]
    for number, share in enumerate(slices):
        sides = ("ours", "theirs") if number % 2 == 0 else ("theirs", "ours")
        for side in sides:
            if side == "ours":
                latencies, elapsed, groups, commands = bench_cqrs_orders(
                    folder, share, threads, f"{run}-{number}"
                )
                ours[0] += latencies
                ours[1] += elapsed
                ours[2] += groups
                ours[3] += commands
            else:
                latencies, elapsed = bench_eventsourcing(folder, share, threads, f"{run}-{number}")
                theirs[0] += latencies
                theirs[1] += elapsed
    mine = figures(ours[0], ours[1])
    mine["commands_per_group"] = round(ours[3] / max(ours[2], 1), 2)
    return mine, figures(theirs[0], theirs[1])


def order_commands(order_id: str) -> list[dict]:
    create = {"type": "CreateOrder", "orderId": order_id, "customerId": "cust-1", "items": ITEMS}
    return [create, {"type": "ConfirmOrder", "orderId": order_id}, {"type": "ShipOrder", "orderId": order_id}]


def bench_submit_file(folder: Path, orders: int) -> dict:
    """``cqrs-orders submit --file`` as a user runs it (in this process, so interpreter start-up is not in
    the figure), one RegisterCustomer then ``orders`` orders' commands; results go to a file."""
    warehouse = folder / "file-import"
    commands = folder / "commands.jsonl"
    lines = [REGISTER] + [command for n in range(orders) for command in order_commands(f"order-file-{n}")]
    commands.write_text("".join(json.dumps(command) + "\n" for command in lines))
    with open(folder / "results.jsonl", "w") as out, contextlib.redirect_stdout(out):
        started = time.perf_counter()
        code = cqrs_orders_cli(["submit", "--file", str(commands), "--warehouse", str(warehouse)])
        elapsed = time.perf_counter() - started
    results = (folder / "results.jsonl").read_text().splitlines()
    if code != 0 or len(results) != len(lines):
        raise RuntimeError(f"submit --file exited {code} with {len(results)} of {len(lines)} results")
    store = SqliteWriteStore(warehouse / "write_store.sqlite")
    counts = store.counts()
    store.close()
    assert counts["events"] == len(lines) and counts["outbox_pending"] == len(lines), counts
    return {
        "commands": len(lines),
        "seconds": round(elapsed, 3),
        "commands_per_s": round(len(lines) / elapsed, 1),
    }


def sqlite_default_synchronous(folder: Path) -> str:
    """The ``synchronous`` level a fresh WAL connection gets here: the library leaves its connections at
    it, so the comparison is only like for like when it is FULL, which is what we set on ours."""
    connection = sqlite3.connect(folder / "probe.sqlite")
    connection.execute("PRAGMA journal_mode=WAL")
    level = connection.execute("PRAGMA synchronous").fetchone()[0]
    connection.close()
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[level]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--commands", type=int, default=3000, help="commands per threaded run (rounded to whole orders)"
    )
    parser.add_argument(
        "--threads", default="4,16", help="thread counts of the concurrent runs, comma-separated (4,16)"
    )
    parser.add_argument(
        "--file-commands", type=int, default=10_000, help="commands in the submit --file import (10000)"
    )
    parser.add_argument(
        "--rounds", type=int, default=10, help="slices per run, taken in turn by both sides (10)"
    )
    args = parser.parse_args(argv)
    orders = max(1, args.commands // len(STEPS))
    file_orders = max(1, (args.file_commands - 1) // len(STEPS))
    thread_counts = [int(count) for count in args.threads.split(",")]
    ours: dict[str, dict] = {}
    theirs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        folder = Path(tmp)
        synchronous = sqlite_default_synchronous(folder)
        if synchronous != "FULL":
            raise SystemExit(
                f"this SQLite's default synchronous is {synchronous}, not FULL: not like for like"
            )
        print(f"benchmarking {orders * 3} commands per run (synchronous={synchronous}) ...", file=sys.stderr)
        for threads in [1, *thread_counts]:
            run = "single" if threads == 1 else f"threads_{threads}"
            ours[run], theirs[run] = compare(folder, orders, threads, max(1, args.rounds), run)
            print(
                f"  {run}: {ours[run]['commands_per_s']} vs {theirs[run]['commands_per_s']}/s",
                file=sys.stderr,
            )
        ours["submit_file"] = bench_submit_file(folder, file_orders)
        print(f"  submit_file: {ours['submit_file']['commands_per_s']}/s", file=sys.stderr)
    ratios = {run: round(ours[run]["commands_per_s"] / theirs[run]["commands_per_s"], 3) for run in theirs}
    ratios["submit_file_vs_single"] = round(
        ours["submit_file"]["commands_per_s"] / theirs["single"]["commands_per_s"], 3
    )
    line = {
        "benchmark": "commands",
        "work": "CreateOrder+ConfirmOrder+ShipOrder per order, JSON in, via the command handler",
        "commands": orders * 3,
        "file_commands": ours["submit_file"]["commands"],
        "rounds": max(1, args.rounds),
        "sqlite": {"journal_mode": "WAL", "synchronous": synchronous},
        "cpus": os.cpu_count(),
        "cqrs_orders": ours,
        "eventsourcing": theirs,
        "ratio_commands_per_s": ratios,
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
