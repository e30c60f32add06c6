"""Bounded catch-up on the embedded event log: a backlog many times ``CQRS_MAX_RECORDS_PER_BATCH`` is worked
off in micro-batches of at most that many records, memory does not grow with the number of batches, and the
lag monitor sees the backlog shrink from one run of the projection to the next.

(The same on Kafka, through ``maxOffsetsPerTrigger``: ``tests/kafka/test_kafka_catch_up.py``.)
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from cqrs_orders.adapters import event_log
from cqrs_orders.adapters.event_log import SEGMENT_RECORDS, EventLog
from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.pipeline.batch_rows import release
from cqrs_orders.pipeline.bronze import validate_records
from cqrs_orders.pipeline.runner import STATE_CHECKS, run_continuous, run_once
from cqrs_orders.pipeline.sources import as_records, event_log_options

LIMIT = 100
#: Appends of every size: trickles, a segment and more in one append (the sizes add up to BACKLOG).
APPENDS = (1, 7, 180, 33, 250, 2, 95, 300, 12, 120, 200)
BACKLOG = sum(APPENDS)
MiB = 1024 * 1024


# --- the setting and the source options (no Spark) -------------------------------------------------------
def test_the_limit_is_a_positive_setting_with_a_default(tmp_path):
    assert Settings.from_env(tmp_path, env={}).max_records_per_batch == 100_000
    assert Settings.from_env(tmp_path, env={"CQRS_MAX_RECORDS_PER_BATCH": "250"}).max_records_per_batch == 250
    flag = Settings.from_env(
        tmp_path, env={"CQRS_MAX_RECORDS_PER_BATCH": "250"}, overrides={"CQRS_MAX_RECORDS_PER_BATCH": "300"}
    )
    assert flag.max_records_per_batch == 300  # --max-records-per-batch wins over the environment
    for bad in ("0", "-5", "1e4", "many"):
        with pytest.raises(ConfigurationError, match="CQRS_MAX_RECORDS_PER_BATCH"):
            Settings.from_env(tmp_path, env={"CQRS_MAX_RECORDS_PER_BATCH": bad})


def test_the_event_log_is_read_in_whole_files_that_hold_the_limit_at_most(tmp_path):
    def options(limit: int) -> dict:
        env = {"CQRS_MAX_RECORDS_PER_BATCH": str(limit)}
        return event_log_options(Settings.from_env(tmp_path / "warehouse", env=env))

    EventLog(tmp_path / "warehouse" / "event_log").append([("a", "1")])
    assert options(100_000) == {"maxFilesPerTrigger": str(100_000 // SEGMENT_RECORDS)}
    assert options(2 * SEGMENT_RECORDS + SEGMENT_RECORDS // 2) == {"maxFilesPerTrigger": "2"}  # rounds down
    assert options(SEGMENT_RECORDS) == {"maxFilesPerTrigger": "1"}
    with pytest.raises(ConfigurationError, match=f"set it to {SEGMENT_RECORDS} or more"):
        options(SEGMENT_RECORDS - 1)  # one file may hold more: no number of files keeps that limit


def test_a_log_from_before_segments_is_read_unbounded_with_a_warning(tmp_path, caplog):
    path = tmp_path / "warehouse" / "event_log"
    write_deltalake(str(path), EventLog(path).read(), mode="append")  # no segment column
    with caplog.at_level(logging.WARNING, logger="cqrs_orders.pipeline.sources"):
        assert event_log_options(Settings.from_env(tmp_path / "warehouse", env={})) == {}
    assert "not bounded to 100000 records" in caplog.text


# --- the catch-up (Spark) -------------------------------------------------------------------------------
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


def write_backlog(events, settings: Settings, monkeypatch) -> int:
    """BACKLOG order events on the embedded log, appended in APPENDS, compacted on the way (as a relay
    running for a while leaves it); returns how many files the log has now."""
    monkeypatch.setattr(event_log, "COMPACT_EVERY_COMMITS", 4)
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


def bus_backlog(cli) -> int:
    """What ``cqrs-orders lag`` reports as waiting on the bus (the same figure for every read model)."""
    result = cli("lag", "--json")
    [backlog] = {p["bus_backlog"] for p in json.loads(result.stdout)["projections"]}
    return backlog


def test_a_backlog_is_worked_off_in_bounded_batches_with_flat_memory_and_shrinking_lag(
    spark, events, settings, cli, monkeypatch
):
    files = write_backlog(events, settings, monkeypatch)
    unbounded_held = held_by_one_batch_of_everything(spark, settings)
    bounded = Settings.from_env(settings.warehouse, env={"CQRS_MAX_RECORDS_PER_BATCH": str(LIMIT)})
    assert bus_backlog(cli) == BACKLOG
    with Batches(spark) as batches:
        first = batches.run(bounded, 2)
        after_first = bus_backlog(cli)
        second = batches.run(bounded, 2)
        after_second = bus_backlog(cli)
        rest = run_once(spark, bounded)  # `project --once`: availableNow, in batches of the limit too
        after_all = bus_backlog(cli)
    seen, lag = batches.seen, [after_first, after_second, after_all]
    figures = {"files": files, "lag": lag, "peak_held": batches.peak_held, "unbounded_held": unbounded_held}
    print(json.dumps(figures), *map(json.dumps, seen), sep="\n")  # shown with -s

    # Bounded: every batch within the limit, every record read once, in as many batches as files allow.
    assert all(b["rows"] <= LIMIT for b in seen), [b["rows"] for b in seen]
    assert sum(b["rows"] for b in seen) == BACKLOG
    files_per_batch = LIMIT // SEGMENT_RECORDS
    assert len(seen) == math.ceil(files / files_per_batch) >= math.ceil(BACKLOG / LIMIT)
    # A run stops between batches once it saw two; on a loaded machine a batch can start before the stop
    # is seen, so a run may read a third: what matters is that the lag falls by exactly what each run read.
    assert len(first) >= 2 and len(second) >= 2 and len(seen) > len(first) + len(second)

    # The lag monitor sees the backlog shrink from run to run, by what each run read.
    assert BACKLOG > after_first > after_second > after_all == 0
    assert after_first == BACKLOG - sum(b["rows"] for b in first)
    assert after_second == after_first - sum(b["rows"] for b in second)
    assert rest["projection_input_rows"] == after_second and rest["silver_orders"] == BACKLOG

    # Memory. What a batch holds is its own rows (validated, checkpointed, freed when it ends): at its
    # largest a fraction of what one batch of the whole backlog would hold, and nothing is left once the
    # batches are done. What stays referenced after a batch (the heap after a full collection) does not
    # grow with the number of batches within a run; a leak of the batches' rows or plans would grow it.
    # (It does grow at each new query and `lag` run in this shared JVM, ~50 MiB: caches and code of the
    # tables and plans they meet for the first time; so it is compared within the run of 8 batches.)
    assert batches.peak_held < unbounded_held / 3, (batches.peak_held, unbounded_held)
    assert held_by_batches(spark) == 0
    heap = [b["heap"] for b in seen[len(first) + len(second) :]]
    assert max(heap[len(heap) // 2 :]) - min(heap[: len(heap) // 2]) < 64 * MiB, [h // MiB for h in heap]
    rss = [b["rss"] for b in seen]
    assert max(rss) - min(rss) < 32 * MiB, [r // MiB for r in rss]  # the Python driver holds no rows


def test_the_backlog_of_a_log_read_out_of_order_counts_what_was_read(spark):
    """A new stream on a compacted log reads its files as written, compacted ones last: after a bounded
    batch a partition may have offsets 5 and 6 ingested but not 0 to 4. Its backlog is what is missing."""
    from cqrs_orders.ops import measures

    bronze = spark.createDataFrame([(0, 5), (0, 6), (1, 0)], "partition int, offset long")
    quarantine = spark.createDataFrame([(1, 1)], "partition int, offset long")
    counted, highest = (
        {r.partition: r.next_offset for r in measure(bronze, quarantine).collect()}
        for measure in (measures.ingested_counts, measures.ingested_next_offsets)
    )
    assert (counted, highest) == ({0: 2, 1: 2}, {0: 7, 1: 2})
    assert measures.bus_backlog({0: 7, 1: 2}, counted) == 5  # offsets 0 to 4 of partition 0
