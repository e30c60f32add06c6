"""End-to-end freshness: how long after ``submit`` returns is the change visible in ``silver_orders``?

Runs ``cqrs-orders relay --follow`` and ``cqrs-orders project --continuous --trigger-seconds 1`` as
subprocesses on a temporary warehouse, submits commands in this process at a steady rate (``CreateOrder``
for a new order, then ``ConfirmOrder`` of an order created a moment earlier, alternating) and polls
silver_orders (through deltalake's SQL engine) until each command's (order id, version) is there.

Prints ONE JSON line: latency p50/p99/max in seconds, the median micro-batch duration of the running
queries (from ops_stream_progress) and the rate actually sustained. Progress goes to stderr.
Usage: ``python benchmarks/freshness.py --rate 50 --seconds 120``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
from deltalake.exceptions import TableNotFoundError

from cqrs_orders.application.wiring import command_handler
from cqrs_orders.config import Settings

POLL_SECONDS = 0.2  # how often silver_orders is checked: the resolution of every latency figure
STARTUP_TIMEOUT_SECONDS = 300
_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def read(table: DeltaTable, sql: str) -> pa.Table:
    """Query a Delta table with deltalake's SQL engine (never its pyarrow dataset: see event_log.py)."""
    return pa.table(QueryBuilder().register("t", table).execute(sql).read_all())


class SilverWatcher:
    """Sees which (order id, version) pairs silver_orders holds, re-reading only when the table changed."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.table: DeltaTable | None = None
        self.seen_version = -1

    def versions(self) -> dict[str, int] | None:
        """Order id -> version, or None when the table has not changed since the last call."""
        try:
            if self.table is None:
                self.table = DeltaTable(self.path)
            else:
                self.table.update_incremental()
        except TableNotFoundError:
            return None
        if self.table.version() == self.seen_version:
            return None
        self.seen_version = self.table.version()
        rows = read(self.table, "SELECT order_id, version FROM t")
        return dict(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True))


CUSTOMERS = 100


def submit(handler, raw: dict):
    result = handler.handle(raw)
    if not result.accepted:
        raise RuntimeError(f"command {raw['commandId']} was rejected: {result.error}")
    return result


def register_customers(handler) -> None:
    for n in range(CUSTOMERS):
        customer = {"customerId": f"customer-{n}", "name": f"Customer {n}", "email": f"c{n}@example.com"}
        submit(handler, {"type": "RegisterCustomer", "commandId": f"fresh-customer-{n}", **customer})


def command(index: int) -> dict:
    """Even: create order ``index``; odd: confirm the order created just before it."""
    if index % 2 == 0:
        return {
            "type": "CreateOrder",
            "commandId": f"fresh-{index}",
            "orderId": f"fresh-order-{index}",
            "customerId": f"customer-{index % CUSTOMERS}",
            "items": [{"sku": "sku-1", "quantity": 1 + index % 5, "unitPrice": 9.99}],
        }
    return {"type": "ConfirmOrder", "commandId": f"fresh-{index}", "orderId": f"fresh-order-{index - 1}"}


def start(args: list[str], warehouse: Path, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CQRS_")}
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cqrs_orders.cli", *args, "--warehouse", str(warehouse)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_visible(watcher: SilverWatcher, pending: dict[tuple[str, int], float], seen: dict, deadline: float,
                 processes: list[subprocess.Popen]) -> None:  # fmt: skip
    """Poll until every pending (order id, version) is in silver (recording when), or the deadline."""
    while pending and time.monotonic() < deadline:
        poll(watcher, pending, seen)
        check_alive(processes)
        time.sleep(POLL_SECONDS)


def poll(watcher: SilverWatcher, pending: dict[tuple[str, int], float], seen: dict) -> None:
    versions = watcher.versions()
    if versions is None:
        return
    now = time.monotonic()
    for key in [k for k in pending if versions.get(k[0], 0) >= k[1]]:
        seen[key] = now - pending.pop(key)


def check_alive(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(process.args[3:5])} exited with code {process.returncode}")


def median_batch_ms(settings: Settings, since_epoch: float) -> dict[str, float | None]:
    """Median duration of the batches that read rows since ``since_epoch``, per query and overall."""
    try:
        table = DeltaTable(str(settings.table("ops_stream_progress").path))
    except TableNotFoundError:
        return {"all": None}
    query = "SELECT query_name, duration_ms, batch_timestamp FROM t WHERE num_input_rows > 0"
    rows = read(table, query).to_pylist()
    by_query: dict[str, list[int]] = {}
    for row in rows:
        if row["batch_timestamp"].timestamp() >= since_epoch:
            by_query.setdefault(row["query_name"] or "?", []).append(row["duration_ms"])
    result = {name: statistics.median(values) for name, values in sorted(by_query.items())}
    every = [d for values in by_query.values() for d in values]
    result["all"] = statistics.median(every) if every else None
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="commands per second (50)")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to submit (120)")
    parser.add_argument("--trigger-seconds", type=float, default=1.0, help="projection trigger interval (1)")
    parser.add_argument(
        "--relay-poll-seconds", type=float, default=1.0, help="relay outbox poll (1.0, the relay's default)"
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="wait for the last commands (120)")
    parser.add_argument(
        "--keep", metavar="DIR", help="work in DIR and keep it (default: a temp dir, deleted)"
    )
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be > 0")
    work = Path(args.keep or tempfile.mkdtemp(prefix="cqrs-bench-freshness-"))
    try:
        result = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0 if result["not_visible"] == 0 else 1


def run(args, work: Path) -> dict:
    warehouse = work / "warehouse"
    settings = Settings.from_env(warehouse=warehouse, env={})
    handler = command_handler(settings)
    watcher = SilverWatcher(Path(settings.table("silver_orders").path))
    seen: dict[tuple[str, int], float] = {}
    pending: dict[tuple[str, int], float] = {}

    # The first commands create the write store and the event log before the subprocesses look for them.
    register_customers(handler)
    warm = submit(handler, command(0))
    pending[(warm.aggregateId, warm.version)] = time.monotonic()
    progress(f"starting relay --follow and project --continuous on {warehouse}")
    relay = ["relay", "--follow", "--poll-seconds", str(args.relay_poll_seconds)]
    project = ["project", "--continuous", "--trigger-seconds", str(args.trigger_seconds)]
    processes = [start(relay, warehouse, work / "relay.log"), start(project, warehouse, work / "project.log")]
    try:
        wait_visible(watcher, pending, seen, time.monotonic() + STARTUP_TIMEOUT_SECONDS, processes)
        if pending:
            raise RuntimeError(f"the pipeline did not show a first order within {STARTUP_TIMEOUT_SECONDS}s")
        seen.clear()
        progress(f"pipeline running; submitting {args.rate:g} commands/s for {args.seconds:g}s")

        since_epoch = time.time()
        total = int(args.rate * args.seconds)
        first = time.monotonic()
        for index in range(1, total + 1):
            due = first + (index - 1) / args.rate
            while time.monotonic() < due:
                poll(watcher, pending, seen)
                time.sleep(min(POLL_SECONDS, max(0.0, due - time.monotonic())))
            result = submit(handler, command(index + 1))  # index + 1: order 0 was the warm-up
            pending[(result.aggregateId, result.version)] = time.monotonic()
            if index % max(1, int(args.rate * 10)) == 0:
                check_alive(processes)
                progress(f"  submitted {index}/{total}, visible {len(seen)}")
        submit_seconds = time.monotonic() - first
        progress(f"submitted {total} commands in {submit_seconds:.1f}s; waiting for the last ones")
        wait_visible(watcher, pending, seen, time.monotonic() + args.drain_timeout, processes)
    finally:
        for process in processes:
            stop(process)
        handler.store.close()
    batches = median_batch_ms(settings, since_epoch)  # after the stop: every batch's row is written

    latencies = list(seen.values())
    if not latencies:
        raise RuntimeError("no command became visible in silver_orders")
    return {
        "benchmark": "freshness",
        "commands": total,
        "visible": len(latencies),
        "not_visible": len(pending),
        "target_rate_per_second": args.rate,
        "sustained_rate_per_second": round(total / submit_seconds, 2) if submit_seconds > 0 else None,
        "latency_p50_seconds": round(percentile(latencies, 0.50), 3),
        "latency_p99_seconds": round(percentile(latencies, 0.99), 3),
        "latency_max_seconds": round(max(latencies), 3),
        "median_batch_ms": batches["all"],
        "median_batch_ms_by_query": {k: v for k, v in batches.items() if k != "all"},
        "trigger_seconds": args.trigger_seconds,
        "cpu_count": os.cpu_count(),
    }


if __name__ == "__main__":
    sys.exit(main())
