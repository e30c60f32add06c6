"""The catch-up scenario of ``test_catch_up.py``, run in a process of its own, and the batch watcher it and
the Kafka catch-up test share.

Why a process of its own: the test measures what the driver JVM still references after each batch. In the
suite's shared JVM that figure also moves with whatever earlier tests left behind (their caches, their
threads), so the scenario starts its own Spark and reports its figures as one JSON line on stdout:

    python tests/pipeline/catch_up_support.py WAREHOUSE

Test folders are not packages (pytest's importlib mode): the tests load this module by path.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from cqrs_orders.adapters import event_log
from cqrs_orders.adapters.event_log import SEGMENT_RECORDS, EventLog
from cqrs_orders.config import Settings
from cqrs_orders.pipeline.batch_rows import release
from cqrs_orders.pipeline.bronze import validate_records
from cqrs_orders.pipeline.runner import STATE_CHECKS, run_continuous, run_once
from cqrs_orders.pipeline.sources import as_records

LIMIT = 100
#: Appends of every size: trickles, a segment and more in one append (the sizes add up to BACKLOG).
APPENDS = (1, 7, 180, 33, 250, 2, 95, 300, 12, 120, 200)
BACKLOG = sum(APPENDS)


class Batches:
    """Watches the session's streaming queries (polling every 20 ms: the engine's listener events arrived
    seconds late here, too late to stop a run on) and records every micro-batch with input.

    Per batch: ``rows`` (its numInputRows), ``heap`` (the driver JVM's used heap right after a full garbage
    collection: what is still referenced, which a leak grows), ``held`` (what Spark stores for batches: see
    :func:`held_by_batches`) and ``rss`` (this Python process's resident memory). ``peak_held`` is the most
    ``held`` seen at any poll, so while batches ran. Sets ``stop`` once ``stop_after`` batches were seen."""

    def __init__(self, spark):
        self.spark, self.seen, self.peak_held = spark, [], 0
        self.stop, self.stop_after = threading.Event(), None
        self._queries, self._counted, self._done, self._lock = {}, set(), threading.Event(), threading.Lock()

    def __enter__(self) -> Batches:
        self._thread = threading.Thread(target=self._poll, name="batches", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()
        self._record_new_batches()

    def run(self, settings: Settings, batches: int, timeout: float = 300) -> list[dict]:
        """Run the projection (``project --continuous``) until ``batches`` more batches with input ran."""
        with self._lock:
            first, self.stop_after = len(self.seen), len(self.seen) + batches
            self.stop.clear()
        deadline = threading.Timer(timeout, self.stop.set)
        deadline.start()
        try:  # batches take ~1-4 s: a trigger every 10 s leaves the pause the runner stops in
            run_continuous(self.spark, settings, trigger_seconds=10, stop=self.stop)
        finally:
            deadline.cancel()
        self._record_new_batches()
        assert len(self.seen) - first >= batches, f"{len(self.seen) - first} batches in {timeout:g} s"
        return self.seen[first:]

    def _poll(self) -> None:
        while not self._done.wait(0.02):
            self.peak_held = max(self.peak_held, held_by_batches(self.spark))
            for query in self.spark.streams.active:
                self._queries.setdefault(str(query.runId), query)  # kept: read again once it ended
            self._record_new_batches()

    def _record_new_batches(self) -> None:
        with self._lock:  # the poller and the test's thread
            self._record_new_batches_locked()

    def _record_new_batches_locked(self) -> None:
        for run_id, query in list(self._queries.items()):
            for progress in query.recentProgress:
                if progress.numInputRows and (run_id, progress.batchId) not in self._counted:
                    self._counted.add((run_id, progress.batchId))
                    self.seen.append(
                        {"batch": progress.batchId, "rows": progress.numInputRows, **memory(self.spark)}
                    )
        if self.stop_after is not None and len(self.seen) >= self.stop_after:
            self.stop.set()


def memory(spark) -> dict[str, int]:
    jvm = spark._jvm
    jvm.System.gc()
    runtime = jvm.Runtime.getRuntime()
    rss = os.sysconf("SC_PAGE_SIZE") * int(Path("/proc/self/statm").read_text().split()[1])
    return {"heap": runtime.totalMemory() - runtime.freeMemory(), "held": held_by_batches(spark), "rss": rss}


def held_by_batches(spark) -> int:
    """Bytes Spark stores for cached or checkpointed datasets, Delta's caches of table state left out: what
    micro-batches hold (their validated rows, a local checkpoint, :mod:`cqrs_orders.pipeline.batch_rows`)."""
    return sum(
        info.memSize() + info.diskSize()
        for info in spark.sparkContext._jsc.sc().getRDDStorageInfo()
        if not (info.name() or "").startswith("Delta Table State")
    )


def write_backlog(settings: Settings) -> int:
    """BACKLOG order events on the embedded log, appended in APPENDS, compacted on the way (as a relay
    running for a while leaves it); returns how many files the log has now."""
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import Events  # the pipeline tests' event bodies

    events = Events()
    event_log.COMPACT_EVERY_COMMITS = 4
    log, order = EventLog(settings.event_log_path, settings.event_log_partitions), 0
    for size in APPENDS:
        log.append([(f"order-{n}", events.order(f"order-{n}")) for n in range(order, order + size)])
        order += size
    files = pa.table(DeltaTable(str(settings.event_log_path)).get_add_actions(flatten=True))
    assert max(files.column("num_records").to_pylist()) <= SEGMENT_RECORDS
    return files.num_rows


def held_by_one_batch_of_everything(spark, settings: Settings) -> int:
    """What an unbounded batch would hold: the whole backlog validated and checkpointed, as the runner
    holds a batch (measured, then freed)."""
    log = spark.read.format("delta").load(str(settings.event_log_path))
    rows = validate_records(as_records(log), STATE_CHECKS)
    before = held_by_batches(spark)
    rows = rows.localCheckpoint()
    try:
        return held_by_batches(spark) - before
    finally:
        release(rows)


def bus_backlog(warehouse: Path) -> int:
    """What ``cqrs-orders lag`` reports as waiting on the bus (the same figure for every read model)."""
    from cqrs_orders.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["lag", "--json", "--warehouse", str(warehouse)])
    [backlog] = {p["bus_backlog"] for p in json.loads(out.getvalue())["projections"]}
    return backlog


def scenario(warehouse: Path) -> dict:
    """Work a backlog of BACKLOG records off in batches of LIMIT: two continuous runs of two batches each,
    then ``project --once`` for the rest, with the lag measured after each; returns every figure."""
    from cqrs_orders.spark import get_spark

    spark = get_spark("cqrs-orders-catch-up")
    settings = Settings.from_env(warehouse, env={})
    files = write_backlog(settings)
    unbounded_held = held_by_one_batch_of_everything(spark, settings)
    bounded = Settings.from_env(warehouse, env={"CQRS_MAX_RECORDS_PER_BATCH": str(LIMIT)})
    lag = [bus_backlog(warehouse)]
    with Batches(spark) as batches:
        first = batches.run(bounded, 2)
        lag.append(bus_backlog(warehouse))
        second = batches.run(bounded, 2)
        lag.append(bus_backlog(warehouse))
        rest = run_once(spark, bounded)  # `project --once`: availableNow, in batches of the limit too
        lag.append(bus_backlog(warehouse))
    return {
        "files": files, "lag": lag, "first": len(first), "second": len(second), "seen": batches.seen,
        "rest": rest, "peak_held": batches.peak_held, "unbounded_held": unbounded_held,
        "held_after": held_by_batches(spark),
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(scenario(Path(sys.argv[1])), default=str))
