"""Runs the projection: bus -> bronze (one query), bronze -> silver + gold (a second query).

Two queries rather than one: bronze is the durable, append-only record of what arrived, and silver streams
from it as a Delta source, so silver can be rebuilt or restarted without re-reading the bus. Both are
``foreachBatch`` queries whose writes are exactly-once (:mod:`.idempotency`), with checkpoints
``settings.checkpoint("bronze")`` and ``settings.checkpoint("silver")``.

``run_once`` processes what is there (availableNow) and returns; ``run_continuous`` keeps both queries
running until SIGINT/SIGTERM, then stops them between micro-batches.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.pipeline import gold, idempotency
from cqrs_orders.pipeline.bronze import to_bronze, to_quarantine, validate_records
from cqrs_orders.pipeline.progress import EVENT_TIME_METRIC, ProgressRecorder
from cqrs_orders.pipeline.silver import apply_batch
from cqrs_orders.pipeline.sources import read_records, source_exists
from cqrs_orders.pipeline.tables import ensure_tables

BRONZE, SILVER = "bronze", "silver"
#: In the silver checkpoint: the gold days the running batch touches (see :func:`_gold_dates`).
GOLD_DATES_FILE = "_cqrs_gold_dates"
STAGES = ("bronze", "silver", "all")
#: Tables whose row counts ``run_once`` reports.
COUNTED_TABLES = (
    "bronze_events",
    "bronze_quarantine",
    "silver_orders",
    "silver_customers",
    "silver_event_history",
    "gold_daily_order_metrics",
)


def start_bronze(spark, settings: Settings, trigger: dict):
    """Start the bus -> bronze_events / bronze_quarantine query."""
    checkpoint = settings.checkpoint(BRONZE)
    writer_id = idempotency.app_id(checkpoint)
    validated = validate_records(read_records(spark, settings))
    valid = F.size("failed_expectations") == 0
    observed = validated.observe(
        EVENT_TIME_METRIC, F.max(F.when(valid, F.col("event.timestamp"))).alias("max_event_time")
    )
    return _start(observed, BRONZE, checkpoint, trigger, _bronze_batch(settings, writer_id))


def start_silver(spark, settings: Settings, trigger: dict):
    """Start the bronze_events -> silver (+ gold) query."""
    checkpoint = settings.checkpoint(SILVER)
    writer_id = idempotency.app_id(checkpoint)
    reader = spark.readStream.format("delta")
    starting_version = idempotency.read_marker(checkpoint, idempotency.STARTING_VERSION_FILE)
    if starting_version is not None and not idempotency.has_progress(checkpoint):
        reader = reader.option("startingVersion", starting_version)  # resume after a rebuild
    bronze_table = settings.table("bronze_events")
    bronze = (
        reader.table(bronze_table.qualified_name)
        if bronze_table.qualified_name
        else reader.load(bronze_table.path)
    )
    observed = bronze.observe(EVENT_TIME_METRIC, F.max("event_time").alias("max_event_time"))

    def project(batch: DataFrame, batch_id: int) -> None:
        session = batch.sparkSession
        batch = batch.localCheckpoint()  # read from bronze once, for the dates and every MERGE
        dates = _gold_dates(checkpoint, batch_id, gold.order_dates(session, settings, batch))
        apply_batch(batch, batch_id, settings, writer_id, checkpointed=True)
        gold.refresh_dates(session, settings, dates)  # a recompute of those days: exact under replays

    return _start(observed, SILVER, checkpoint, trigger, project)


def run_once(spark, settings: Settings) -> dict:
    """Process everything on the bus into bronze, silver and gold (availableNow), then return counts."""
    ensure_tables(spark, settings)
    once = {"availableNow": True}
    result = {"bronze_input_rows": 0, "silver_input_rows": 0}
    with ProgressRecorder(spark, settings, (BRONZE, SILVER)) as recorder:
        finished = []
        if source_exists(spark, settings):
            finished.append(_await(start_bronze(spark, settings, once)))
        else:
            _progress(f"no event log at {settings.event_log_path} yet: nothing to ingest")
        finished.append(_await(start_silver(spark, settings, once)))  # gold is refreshed per batch
        recorder.flush([query.id for query in finished])
    for query in finished:
        result[f"{query.name}_input_rows"] = sum(p.numInputRows for p in query.recentProgress)
    for name in COUNTED_TABLES:
        result[name] = settings.table(name).read(spark).count()
    return result


def run_continuous(
    spark,
    settings: Settings,
    trigger_seconds: float = 5.0,
    stage: str = "all",
    stop: threading.Event | None = None,
) -> dict:
    """Run the chosen stage(s) until SIGINT/SIGTERM (or ``stop`` is set); stop between micro-batches."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    ensure_tables(spark, settings)
    stop = stop or threading.Event()
    trigger = {"processingTime": f"{trigger_seconds} seconds"}
    restore = _stop_on_signals(stop)
    queries = []
    try:
        with ProgressRecorder(spark, settings, (BRONZE, SILVER)) as recorder:
            try:
                if stage in ("bronze", "all") and _wait_for_source(spark, settings, stop):
                    queries.append(start_bronze(spark, settings, trigger))
                if stage in ("silver", "all") and not stop.is_set():
                    queries.append(start_silver(spark, settings, trigger))
                _progress(
                    f"running {', '.join(q.name for q in queries)} every {trigger_seconds:g} s; Ctrl-C stops"
                )
                while not stop.wait(0.5):
                    failed = [q for q in queries if not q.isActive]
                    if failed:
                        raise failed[0].exception() or RuntimeError(f"query {failed[0].name} stopped")
            finally:
                for query in queries:
                    stop_between_batches(query)
            recorder.flush([q.id for q in queries])
    finally:
        restore()
    return {"stopped": [q.name for q in queries], "batches": {q.name: _last_batch(q) for q in queries}}


def stop_between_batches(query, timeout: float = 60.0) -> None:
    """Stop ``query`` when no micro-batch is running (the next trigger would start a new one)."""
    deadline = time.monotonic() + timeout
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()


def _start(df: DataFrame, name: str, checkpoint: str, trigger: dict, batch: Callable):
    return (
        df.writeStream.queryName(name)
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .foreachBatch(batch)
        .start()
    )


def _bronze_batch(settings: Settings, writer_id: str) -> Callable:
    def write(validated: DataFrame, batch_id: int) -> None:
        validated = validated.persist()
        try:
            sizes = {
                row["valid"]: row["count"]
                for row in validated.groupBy((F.size("failed_expectations") == 0).alias("valid"))
                .count()
                .collect()
            }
            for name, rows, present in (
                ("bronze_events", to_bronze, sizes.get(True)),
                ("bronze_quarantine", to_quarantine, sizes.get(False)),
            ):
                if present:
                    options = idempotency.append_options(writer_id, name, batch_id)
                    writer = rows(validated).write.format("delta").mode("append").options(**options)
                    settings.table(name).save(writer)
        finally:
            validated.unpersist()

    return write


def _gold_dates(checkpoint: str, batch_id: int, dates: set) -> set:
    """``dates`` plus those noted by an earlier run of this same batch, noted durably before silver changes.

    A batch replayed after a crash between its silver MERGE and its gold refresh reads the already changed
    silver rows, so the days its orders left would be missed without the note.
    """
    noted = idempotency.read_marker(checkpoint, GOLD_DATES_FILE)
    if noted:
        earlier = json.loads(noted)
        if earlier["batch_id"] == batch_id:
            dates = dates | {date.fromisoformat(d) if d else None for d in earlier["dates"]}
    note = {"batch_id": batch_id, "dates": sorted(d.isoformat() if d else "" for d in dates)}
    idempotency.write_marker(checkpoint, GOLD_DATES_FILE, json.dumps(note))
    return dates


def _await(query):
    query.awaitTermination()
    return query


def _wait_for_source(spark, settings: Settings, stop: threading.Event) -> bool:
    announced = False
    while not source_exists(spark, settings):
        if not announced:
            _progress(f"waiting for the first event in {settings.event_log_path}")
            announced = True
        if stop.wait(1.0):
            return False
    return True


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set ``stop`` (main thread only); returns a function restoring the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def request_stop(signum, _frame) -> None:
        _progress(f"{signal.Signals(signum).name} received: stopping after the running micro-batch")
        stop.set()

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    for sig in previous:
        signal.signal(sig, request_stop)
    return restore


def _last_batch(query) -> int | None:
    progress = query.lastProgress
    return progress["batchId"] if progress else None


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
