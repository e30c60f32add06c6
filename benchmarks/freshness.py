"""End-to-end freshness: how long after ``submit`` returns is the change visible in ``silver_orders``, against
the floor: a bare stream that only appends the raw records to one Delta table, in the same run.

Runs ``cqrs-orders relay --follow``, ``cqrs-orders project --continuous --trigger-seconds 1`` and the floor
stream (this script with ``--floor-stream``: the event log appended as it is to ``_floor/raw``, with the
same trigger) as subprocesses on a temporary warehouse; submits commands in this process at a steady rate
(``CreateOrder`` for a new order, then ``ConfirmOrder`` of an order created a moment earlier, alternating)
and polls silver_orders and the floor table (through deltalake's SQL engine) until each command's (order
id, version) is in both. Both streams share the submitter, the relay and the machine, so the ratio
ours/floor is what the projection itself costs.

``--warm-up-seconds`` submits at the rate for that long first, unmeasured: in the first two minutes each JVM
spends about a third of its CPU compiling Spark's own code (catalyst, Janino), which both sides pay.

Prints ONE JSON line: latency p50/p99/max in seconds for ours and the floor and their ratios, the median
micro-batch duration of the projection (from ops_stream_progress) and the rate actually sustained.
Progress goes to stderr. Usage: ``python benchmarks/freshness.py --rate 50 --seconds 120``.
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
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
from deltalake.exceptions import TableNotFoundError

from cqrs_orders.config import Settings
from cqrs_orders.wiring import command_handler

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

    #: Order id -> version, from the watched table.
    QUERY = "SELECT order_id, version FROM t"

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
        rows = read(self.table, self.QUERY)
        return dict(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True))


class FloorWatcher(SilverWatcher):
    """The floor table holds raw records only: an order's version is how many events of it arrived (one
    per command here; a record the relay published twice only counts ahead)."""

    QUERY = "SELECT partition_key, count(*) FROM t GROUP BY partition_key"


def floor_stream(warehouse: Path, trigger_seconds: float) -> int:
    """The floor: the event log appended as it is to one Delta table, until SIGINT/SIGTERM."""
    import threading

    from cqrs_orders.spark import get_spark

    spark = get_spark("cqrs-orders-freshness-floor")
    target = warehouse / "_floor" / "raw"
    query = (
        spark.readStream.format("delta")
        .load(str(warehouse / "event_log"))
        .writeStream.format("delta")
        .option("checkpointLocation", str(target) + "_checkpoint")
        .trigger(processingTime=f"{trigger_seconds} seconds")
        .start(str(target))
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5) and query.isActive:
        pass
    query.stop()
    return 0


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


def start(
    args: list[str], warehouse: Path, log_path: Path, program: tuple[str, ...] = ()
) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CQRS_")}
    program = program or ("-m", "cqrs_orders.cli")
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, *program, *args, "--warehouse", str(warehouse)],
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


class Visibility:
    """One watched table: the commands not visible there yet (with when they were submitted), and the
    latencies of the rest."""

    def __init__(self, watcher: SilverWatcher):
        self.watcher = watcher
        self.pending: dict[tuple[str, int], float] = {}
        self.seen: dict[tuple[str, int], float] = {}


def wait_visible(sides: list[Visibility], deadline: float, processes: list[subprocess.Popen]) -> None:
    """Poll until every pending (order id, version) is visible on every side (recording when), or the
    deadline."""
    while any(side.pending for side in sides) and time.monotonic() < deadline:
        poll(sides)
        check_alive(processes)
        time.sleep(POLL_SECONDS)


def poll(sides: list[Visibility]) -> None:
    for side in sides:
        versions = side.watcher.versions()
        if versions is None:
            continue
        now = time.monotonic()
        for key in [k for k in side.pending if versions.get(k[0], 0) >= k[1]]:
            side.seen[key] = now - side.pending.pop(key)


def pace(
    handler,
    indexes: range,
    rate: float,
    sides: list[Visibility],
    processes: list[subprocess.Popen],
    submitted: Callable[[object], None] | None = None,
) -> None:
    """Submit ``command(i)`` for each index at ``rate`` a second, polling the sides in between; each
    result goes to ``submitted`` (none: a warm-up, not measured)."""
    first = time.monotonic()
    for count, index in enumerate(indexes, start=1):
        due = first + (count - 1) / rate
        while time.monotonic() < due:
            poll(sides)
            time.sleep(min(POLL_SECONDS, max(0.0, due - time.monotonic())))
        result = submit(handler, command(index + 1))  # index + 1: order 0 was the first, before the run
        if submitted is not None:
            submitted(result)
        if count % max(1, int(rate * 10)) == 0:
            check_alive(processes)
            ours, floor = sides
            what = "measured" if submitted is not None else "warm-up"
            seen = f"visible {len(ours.seen)} (floor {len(floor.seen)})"
            progress(f"  {what}: submitted {count}/{len(indexes)}, {seen}")


def check_alive(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(process.args[1:5])} exited with code {process.returncode}")


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
    parser.add_argument(
        "--warm-up-seconds",
        type=float,
        default=0.0,
        help="submit at the rate this long first, unmeasured (0): both JVMs spend the first minutes "
        "compiling Spark's own code, a third of their CPU in the first two",
    )
    parser.add_argument("--trigger-seconds", type=float, default=1.0, help="projection trigger interval (1)")
    parser.add_argument(
        "--relay-poll-seconds", type=float, default=1.0, help="relay outbox poll (1.0, the relay's default)"
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="wait for the last commands (120)")
    parser.add_argument(
        "--keep", metavar="DIR", help="work in DIR and keep it (default: a temp dir, deleted)"
    )
    parser.add_argument("--floor-stream", action="store_true", help=argparse.SUPPRESS)  # the floor's process
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_stream:
        return floor_stream(Path(args.warehouse), args.trigger_seconds)
    if args.rate <= 0 or args.seconds <= 0 or args.warm_up_seconds < 0:
        parser.error("--rate and --seconds must be > 0, --warm-up-seconds >= 0")
    work = Path(args.keep or tempfile.mkdtemp(prefix="cqrs-bench-freshness-"))
    try:
        result = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0 if result["not_visible"] == 0 and result["floor_not_visible"] == 0 else 1


def run(args, work: Path) -> dict:
    warehouse = work / "warehouse"
    settings = Settings.from_env(warehouse=warehouse, env={})
    handler = command_handler(settings)
    ours = Visibility(SilverWatcher(Path(settings.table("silver_orders").path)))
    floor = Visibility(FloorWatcher(warehouse / "_floor" / "raw"))
    sides = [ours, floor]

    def submitted(result) -> None:
        for side in sides:
            side.pending[(result.aggregateId, result.version)] = time.monotonic()

    # The first commands create the write store and the event log before the subprocesses look for them.
    register_customers(handler)
    submitted(submit(handler, command(0)))
    progress(f"starting relay --follow, project --continuous and the floor stream on {warehouse}")
    relay = ["relay", "--follow", "--poll-seconds", str(args.relay_poll_seconds)]
    trigger = ["--trigger-seconds", str(args.trigger_seconds)]
    processes = [
        start(relay, warehouse, work / "relay.log"),
        start(["project", "--continuous", *trigger], warehouse, work / "project.log"),
        start(["--floor-stream", *trigger], warehouse, work / "floor.log", (str(Path(__file__).resolve()),)),
    ]
    try:
        wait_visible(sides, time.monotonic() + STARTUP_TIMEOUT_SECONDS, processes)
        if any(side.pending for side in sides):
            raise RuntimeError(f"the pipeline did not show a first order within {STARTUP_TIMEOUT_SECONDS}s")
        for side in sides:
            side.seen.clear()
        warm_up = int(args.rate * args.warm_up_seconds)
        if warm_up:
            progress(f"warming up: {args.rate:g} commands/s for {args.warm_up_seconds:g}s, not measured")
            pace(handler, range(1, warm_up + 1), args.rate, sides, processes)
        progress(f"pipeline running; submitting {args.rate:g} commands/s for {args.seconds:g}s")
        since_epoch = time.time()
        total = int(args.rate * args.seconds)
        first = time.monotonic()
        pace(handler, range(warm_up + 1, warm_up + total + 1), args.rate, sides, processes, submitted)
        submit_seconds = time.monotonic() - first
        progress(f"submitted {total} commands in {submit_seconds:.1f}s; waiting for the last ones")
        wait_visible(sides, time.monotonic() + args.drain_timeout, processes)
    finally:
        for process in processes:
            stop(process)
        handler.store.close()
    batches = median_batch_ms(settings, since_epoch)  # after the stop: every batch's row is written

    figures = {}
    for name, side in (("", ours), ("floor_", floor)):
        latencies = list(side.seen.values())
        if not latencies:
            raise RuntimeError(f"no command became visible ({name or 'ours'})")
        figures[name] = {
            "visible": len(latencies),
            "not_visible": len(side.pending),
            "latency_p50_seconds": round(percentile(latencies, 0.50), 3),
            "latency_p99_seconds": round(percentile(latencies, 0.99), 3),
            "latency_max_seconds": round(max(latencies), 3),
        }
    ratios = {
        f"ratio_{p}_ours_to_floor": round(
            figures[""][f"latency_{p}_seconds"] / figures["floor_"][f"latency_{p}_seconds"], 2
        )
        for p in ("p50", "p99", "max")
    }
    return {
        "benchmark": "freshness",
        "commands": total,
        **figures[""],
        **{f"floor_{k}": v for k, v in figures["floor_"].items()},
        **ratios,
        "ours_p99_within_1_5x_of_floor": ratios["ratio_p99_ours_to_floor"] <= 1.5,
        "target_rate_per_second": args.rate,
        "warm_up_seconds": args.warm_up_seconds,
        "sustained_rate_per_second": round(total / submit_seconds, 2) if submit_seconds > 0 else None,
        "median_batch_ms": batches["all"],
        "median_batch_ms_by_query": {k: v for k, v in batches.items() if k != "all"},
        "trigger_seconds": args.trigger_seconds,
        "relay_poll_seconds": args.relay_poll_seconds,
        "cpu_count": os.cpu_count(),
    }


if __name__ == "__main__":
    sys.exit(main())
