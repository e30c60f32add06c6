"""The HTTP command API next to the command handler it wraps: what does the API cost per command?

Four ways to run the same work on the embedded SQLite store (each on a fresh warehouse, same settings):

- ``api``: ``POST /commands`` (one command per request) to a real ``cqrs-orders serve`` process on
  127.0.0.1, from 1 client and from ``--clients`` concurrent clients (threads, each with its own keep-alive
  connection);
- ``handler``: the command handler ``submit`` uses, called in this process from 1 and ``--clients`` threads;
- ``submit_cli``: ``cqrs-orders submit --file`` with every command in one JSON Lines file (one process, its
  start included).

The work per order is CreateOrder -> ConfirmOrder -> ShipOrder, as in ``benchmarks/commands.py``. Latency
is per command, measured by the caller. The API and handler runs are repeated in interleaved rounds
(``--repeat``) and the median run of each is reported, since other work on the machine moves the figures.
Prints ONE JSON line; the headline is
``ratio_api_to_handler`` = API commands/s at ``--clients`` clients / in-process handler commands/s at the
same number of threads (aim: at least 0.8).

    python benchmarks/api.py                 # 1200 commands per run, 16 clients
    python benchmarks/api.py --commands 48   # a quick check
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from cqrs_orders import wiring
from cqrs_orders.config import Settings

ITEMS = [
    {"sku": "SKU-1", "quantity": 2, "unitPrice": 10.25},
    {"sku": "SKU-2", "quantity": 1, "unitPrice": 4.5},
]
CUSTOMER = {"type": "RegisterCustomer", "customerId": "cust-1", "name": "Bench", "email": "b@example.com"}
CLI = [sys.executable, "-m", "cqrs_orders.cli"]
_JSON_HEADERS = {"Content-Type": "application/json"}


def order_commands(number: int) -> list[dict]:
    order_id = f"order-{number}"
    return [
        {"type": "CreateOrder", "orderId": order_id, "customerId": "cust-1", "items": ITEMS},
        {"type": "ConfirmOrder", "orderId": order_id},
        {"type": "ShipOrder", "orderId": order_id},
    ]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- measuring ---------------------------------------------------------------------------------------
def run_orders(orders: int, workers: int, make_runner: Callable[[], Callable[[dict], bool]]) -> dict:
    """Every order's commands in sequence, the orders spread over ``workers`` threads; each thread gets its
    own ``runner(command) -> accepted`` (e.g. its own HTTP connection)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(numbers: range) -> None:
        run, mine = make_runner(), []
        for number in numbers:
            for command in order_commands(number):
                started = time.perf_counter()
                accepted = run(command)
                mine.append(time.perf_counter() - started)
                if not accepted:
                    raise RuntimeError(f"benchmark command rejected: {command}")
        with lock:
            latencies.extend(mine)

    shares = [range(start, orders, workers) for start in range(workers)]
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, shares))
    return figures(latencies, time.perf_counter() - started)


def figures(latencies: list[float], elapsed: float) -> dict:
    latencies = sorted(latencies)
    return {
        "commands": len(latencies),
        "seconds": round(elapsed, 4),  # 0.1 ms: small runs last a few ms
        "commands_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 3),
    }


# --- the four ways -----------------------------------------------------------------------------------
def bench_handler(warehouse: Path, orders: int, workers: int) -> dict:
    handler = wiring.command_handler(Settings.from_env(warehouse, env={}))  # exactly what submit builds
    try:
        assert handler.handle(json.dumps(CUSTOMER)).accepted
        return run_orders(orders, workers, lambda: lambda c: handler.handle(json.dumps(c)).accepted)
    finally:
        handler.store.close()


def bench_api(url: str, orders: int, clients: int) -> dict:
    """Clients on the standard library's keep-alive ``http.client``: the lightest real HTTP client, so the
    figures are the server's, not the client's (both share this machine's cores)."""
    connections: list[http.client.HTTPConnection] = []
    host, port = url.removeprefix("http://").split(":")

    def make_runner():
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connections.append(connection)

        def run(command: dict) -> bool:
            connection.request("POST", "/commands", json.dumps(command).encode(), _JSON_HEADERS)
            response = connection.getresponse()
            response.read()
            return response.status == 200

        return run

    try:
        return run_orders(orders, clients, make_runner)
    finally:
        for client in connections:
            client.close()


def bench_submit_cli(warehouse: Path, orders: int) -> dict:
    lines = [CUSTOMER] + [command for number in range(orders) for command in order_commands(number)]
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    commands_file = warehouse.parent / "commands.jsonl"
    commands_file.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    started = time.perf_counter()
    finished = subprocess.run(
        [*CLI, "submit", "--file", str(commands_file), "--warehouse", str(warehouse)],
        capture_output=True, text=True, check=False, env=_env(),
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    results = [json.loads(line) for line in finished.stdout.splitlines()]
    if finished.returncode != 0 or len(results) != len(lines):
        raise RuntimeError(f"submit failed ({finished.returncode}): {finished.stderr[-2000:]}")
    return {
        "commands": len(lines),
        "seconds_with_process_start": round(elapsed, 3),
        "commands_per_s": round(len(lines) / elapsed, 1),
    }


# --- the server --------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    scrub = ("CQRS_CATALOG", "CQRS_SCHEMA", "CQRS_WRITE_STORE", "CQRS_SQL_WAREHOUSE_ID", "CQRS_WAREHOUSE")
    return {key: value for key, value in os.environ.items() if key not in scrub}


def start_server(warehouse: Path, log_file) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [*CLI, "serve", "--warehouse", str(warehouse), "--port", str(port)],
        stdout=log_file, stderr=subprocess.STDOUT, env=_env(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"cqrs-orders serve did not start (exit code {process.poll()})")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def api_run(folder: Path, name: str, orders: int, clients: int, server_log) -> dict:
    """One API run on a fresh warehouse and server (started and warmed up outside the timing)."""
    process, url = start_server(folder / name / "warehouse", server_log)
    try:
        with httpx.Client(base_url=url) as client:  # the customer, and a warm-up
            assert client.post("/commands", json=CUSTOMER).status_code == 200
        return bench_api(url, orders, clients)
    finally:
        stop_server(process)


def median_run(runs: list[dict]) -> dict:
    """The run with the median commands/s (``runs`` of them, interleaved with the other ways)."""
    ranked = sorted(runs, key=lambda run: run["commands_per_s"])
    return {**ranked[len(ranked) // 2], "runs_commands_per_s": [run["commands_per_s"] for run in runs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1200, help="commands per run (whole orders of 3)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients / threads (default 16)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds, each running every way once; the median run is kept"
    )
    args = parser.parse_args(argv)
    orders = max(args.clients, args.commands // 3)
    ways = ("handler_1", f"handler_{args.clients}", "api_1", f"api_{args.clients}")
    runs: dict[str, list[dict]] = {way: [] for way in ways}
    with (
        tempfile.TemporaryDirectory(prefix="bench-api-") as tmp,
        open(Path(tmp) / "serve.log", "w") as server_log,
    ):
        folder = Path(tmp)
        log(
            f"benchmarking {orders * 3} commands per run, 1 and {args.clients} clients, "
            f"{args.repeat} rounds ..."
        )
        for round_number in range(args.repeat):  # interleaved: a change in the machine's load hits every way
            for way in ways:
                log(f"round {round_number + 1}: {way} ...")
                kind, workers = way.rsplit("_", 1)
                name = f"{way}-{round_number}"
                if kind == "handler":
                    runs[way].append(bench_handler(folder / name / "warehouse", orders, int(workers)))
                else:
                    runs[way].append(api_run(folder, name, orders, int(workers), server_log))
        log("cqrs-orders submit --file ...")
        submit = bench_submit_cli(folder / "submit" / "warehouse", orders)
    work = "CreateOrder+ConfirmOrder+ShipOrder per order, one command per request"
    line: dict = {"benchmark": "api", "work": work, "commands": orders * 3, "clients": args.clients,
                  "rounds": args.repeat, "cpus": os.cpu_count()}  # fmt: skip
    line.update({way: median_run(runs[way]) for way in ways})
    line["submit_cli"] = submit
    handler, api = line[f"handler_{args.clients}"], line[f"api_{args.clients}"]
    line["ratio_api_to_handler"] = round(api["commands_per_s"] / handler["commands_per_s"], 3)
    line["ratio_api_1_to_handler_1"] = round(
        line["api_1"]["commands_per_s"] / line["handler_1"]["commands_per_s"], 3
    )
    line["api_at_least_80pct_of_handler"] = line["ratio_api_to_handler"] >= 0.8
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
