"""A rebuild on the benchmark's data: how long it takes, and what readers of the API feel meanwhile.

One warehouse: the projection benchmark's input (``--events`` order events over ``--aggregates`` orders on
the embedded event log, :func:`projection.write_rounds`), projected once from scratch with ``run_once``
(timed: ``project_seconds``, what replaying the whole log into empty tables costs). Then ``cqrs-orders
serve`` starts on it and ``--readers`` threads call ``GET /orders/{id}`` for random orders without pause
through three phases (after a few seconds of uncounted warm-up), each timed side by side in this one run:

1. ``idle``: nothing else runs (``--idle-seconds``);
2. ``catch_up``: one more round of events (one per order) is appended and projected with ``run_once``: an
   ordinary micro-batch of that size, the load readers already live with;
3. ``rebuild``: :func:`cqrs_orders.pipeline.rebuild.rebuild` (no projection runs, so it first finishes the
   projection's checkpoint, then builds every read model and gold from one bronze snapshot, checks them
   against it and publishes them).

Readers run in the API server's process as a user's would; Spark runs in this one, so the phases differ in
the CPU Spark takes from the server. Every answer must be 200 (the script fails otherwise), and silver must
hold every order after the rebuild.

Prints ONE JSON line: each phase's reads, p50, p99 and max milliseconds; ``rebuild_seconds``,
``project_seconds`` and ``catch_up_seconds``; and the ratios ``ratio_rebuild_to_project`` (a rebuild
against replaying the log from scratch), ``ratio_p99_rebuild_to_idle`` and
``ratio_p99_rebuild_to_catch_up`` (what a rebuild costs a reader, against no load and against an ordinary
batch). Progress goes to stderr.

    python benchmarks/rebuild.py                                   # 1,000,000 events, 100,000 orders
    python benchmarks/rebuild.py --events 2000 --aggregates 1000   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from api import start_server, stop_server  # the API benchmark's: serve on a free loopback port
from projection import progress, write_rounds

from cqrs_orders.adapters.event_log import SEGMENT_RECORDS, EventLog
from cqrs_orders.config import Settings

PHASES = ("idle", "catch_up", "rebuild")
#: Reads before the idle phase, not counted: the server's first reads open the tables and fill its caches.
WARM_UP_SECONDS = 5.0


class Readers:
    """``count`` threads calling ``GET /orders/{id}`` for random orders; each answer is kept with the phase
    it started in."""

    def __init__(self, url: str, orders: int, count: int):
        self.url, self.orders, self.count = url, orders, count
        self.phase = "warm_up"
        self.answers: list[tuple[str, float, int]] = []  # (phase, seconds, status)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(n,), daemon=True) for n in range(count)]

    def _read(self, seed: int) -> None:
        pick = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                phase, began = self.phase, time.perf_counter()
                status = client.get(f"/orders/order-{pick.randrange(self.orders):09d}").status_code
                self.answers.append((phase, time.perf_counter() - began, status))

    def __enter__(self) -> Readers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def figures(self, phase: str) -> dict:
        seconds = sorted(s for p, s, _ in self.answers if p == phase)
        if not seconds:
            raise SystemExit(f"no read finished during the {phase} phase: lengthen it or add --readers")
        # Inclusive: the exclusive default extrapolates past the slowest read on a small sample.
        p99 = statistics.quantiles(seconds, n=100, method="inclusive")[98] if len(seconds) > 1 else seconds[0]
        return {
            "reads": len(seconds),
            "not_200": sum(1 for p, _, status in self.answers if p == phase and status != 200),
            "p50_ms": round(statistics.median(seconds) * 1000, 2),
            "p99_ms": round(p99 * 1000, 2),
            "max_ms": round(seconds[-1] * 1000, 2),
        }


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def run(args, work: Path) -> dict:
    from cqrs_orders.delta_io import table
    from cqrs_orders.pipeline.rebuild import rebuild
    from cqrs_orders.pipeline.runner import run_once
    from cqrs_orders.spark import get_spark

    settings = Settings.from_env(warehouse=work / "warehouse", env={})
    progress(f"generating {args.events:,} events over {args.aggregates:,} orders in {work}")
    log = EventLog(settings.event_log_path)
    rounds = write_rounds(log, args.events, args.aggregates)
    spark = get_spark("cqrs-orders-rebuild-benchmark")
    progress("projecting the whole log from scratch (run_once)")
    project_seconds, _ = timed(lambda: run_once(spark, settings))

    server_log = (work / "serve.log").open("w", encoding="utf-8")
    server, url = start_server(settings.warehouse, server_log)
    try:
        with Readers(url, args.aggregates, args.readers) as readers:
            time.sleep(WARM_UP_SECONDS)
            readers.phase = "idle"
            progress(f"idle: {args.readers} readers for {args.idle_seconds:.0f} s")
            time.sleep(args.idle_seconds)
            readers.phase = "catch_up"
            progress(f"catch-up: one more round ({args.aggregates:,} events) projected by run_once")
            write_rounds(log, args.aggregates, args.aggregates, first_version=rounds + 1)
            catch_up_seconds, _ = timed(lambda: run_once(spark, settings))
            readers.phase = "rebuild"
            progress("rebuild: build, check and publish every read model and gold")
            rebuild_seconds, result = timed(lambda: rebuild(spark, settings))
            readers.phase = "after"
    finally:
        stop_server(server)
        server_log.close()
    silver_rows = table(settings, "silver_orders").read(spark).count()
    if silver_rows != args.aggregates:
        raise SystemExit(
            f"silver_orders holds {silver_rows:,} orders after the rebuild, not {args.aggregates:,}"
        )
    phases = {phase: readers.figures(phase) for phase in PHASES}
    wrong = {phase: figures["not_200"] for phase, figures in phases.items() if figures["not_200"]}
    if wrong:
        raise SystemExit(f"reads answered other than 200 during {wrong}; see {work / 'serve.log'}")
    progress("done")
    return {
        "benchmark": "rebuild",
        "events": args.events + args.aggregates,
        "aggregates": args.aggregates,
        "readers": args.readers,
        "project_seconds": round(project_seconds, 2),
        "catch_up_seconds": round(catch_up_seconds, 2),
        "rebuild_seconds": round(rebuild_seconds, 2),
        "rebuild_bronze_version": result["bronze_version"],
        "silver_orders_rows": silver_rows,
        **{f"reads_{phase}": figures for phase, figures in phases.items()},
        "ratio_rebuild_to_project": round(rebuild_seconds / project_seconds, 2),
        "ratio_p99_rebuild_to_idle": round(phases["rebuild"]["p99_ms"] / phases["idle"]["p99_ms"], 2),
        "ratio_p99_rebuild_to_catch_up": round(phases["rebuild"]["p99_ms"] / phases["catch_up"]["p99_ms"], 2),
        "cpu_count": os.cpu_count(),
        "spark_version": spark.version,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events before the rebuild (1,000,000)")
    parser.add_argument("--aggregates", type=int, default=100_000, help="orders they spread over (100,000)")
    parser.add_argument("--readers", type=int, default=2, help="threads reading the API (2)")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="the idle phase's length (30)")
    parser.add_argument(
        "--keep", metavar="DIR", help="work in DIR and keep it (default: a temp dir, deleted)"
    )
    args = parser.parse_args(argv)
    if min(args.events, args.aggregates, args.readers) < 1 or args.idle_seconds <= 0:
        parser.error("every size must be >= 1 and --idle-seconds > 0")
    if args.aggregates % SEGMENT_RECORDS:  # else a file of the log holds the end of one round and the next's
        parser.error(f"--aggregates must be a multiple of {SEGMENT_RECORDS}, the event log's segment")

    work = Path(args.keep or tempfile.mkdtemp(prefix="cqrs-bench-rebuild-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
