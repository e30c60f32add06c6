"""Runs the projection: ONE streaming query, bus -> silver + bronze in each micro-batch, on the laptop and on
Databricks alike (the job runs ``cqrs-orders project --continuous``).

Each micro-batch is validated once and held as a local checkpoint; then it is projected into the read
models (silver first: it is what readers wait for) and appended to ``bronze_events`` /
``bronze_quarantine`` (the event history is a view over ``bronze_events``: :mod:`.history`). The bronze
appends take their transaction ids as writer options, so they run on their own threads while silver is
written; every write is exactly-once on its own (:mod:`.idempotency`), so their order is free, and a batch
that loses a race with another Delta writer (``maintain``'s OPTIMIZE) simply runs again
(:mod:`.conflicts`).

Nothing but the tables readers query is written on the batch's path: progress rows are queued and appended
every few seconds by :class:`~.progress.ProgressRecorder`, and gold is recomputed by a
:class:`~.gold.GoldRefresher` on its own thread. One process per checkpoint (:mod:`.checkpoint_lock`).

``run_once`` processes what is there (availableNow) and returns; ``run_continuous`` keeps the query running
until SIGINT/SIGTERM, then stops it between micro-batches.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime, timezone

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import table
from cqrs_orders.pipeline import checkpoint_lock, idempotency, pause, profile
from cqrs_orders.pipeline.background import beside
from cqrs_orders.pipeline.batch_rows import release
from cqrs_orders.pipeline.bronze import to_bronze, to_quarantine, validate_records
from cqrs_orders.pipeline.conflicts import retry_on_conflict
from cqrs_orders.pipeline.erasure import erased_ids, mask_erased
from cqrs_orders.pipeline.gold import GOLD_TABLE, GoldRefresher
from cqrs_orders.pipeline.progress import EVENT_TIME_METRIC, ProgressRecorder
from cqrs_orders.pipeline.read_models import LATEST_STATE_MODELS, READ_MODELS
from cqrs_orders.pipeline.silver import Slice, apply_batch
from cqrs_orders.pipeline.sources import read_records, source_exists
from cqrs_orders.pipeline.tables import ensure_tables

logger = logging.getLogger(__name__)

#: The query's name (``ops_stream_progress.query_name``).
QUERY_NAME = "projection"
#: The checkpoint folder's name: the query's (``cqrs-orders upgrade`` renames an older warehouse's folder).
CHECKPOINT = QUERY_NAME
#: What validation checks an event's ``data`` with, per aggregate type: its latest-state read model's check,
#: so that every event bronze accepts is one that read model can hold.
STATE_CHECKS = {model.aggregate_type: model.state_is_complete for model in LATEST_STATE_MODELS}
#: The tables whose row counts ``run_once`` reports: every one it writes but progress. (Not the event
#: history: counting that view deduplicates all of bronze, where a table's count is read off its log.)
COUNTED_TABLES = ("bronze_events", "bronze_quarantine", *(model.table for model in READ_MODELS), GOLD_TABLE)


def start_projection(spark, settings: Settings, trigger: dict, gate: pause.PauseGate | None = None):
    """Start the bus -> silver + bronze query (the caller holds the checkpoint's lock); each micro-batch
    holds ``gate`` while it runs (:mod:`.pause`)."""
    checkpoint = settings.checkpoint(CHECKPOINT)
    writer_id = idempotency.app_id(checkpoint)
    validated = validate_records(read_records(spark, settings), STATE_CHECKS)
    valid = F.size("failed_expectations") == 0
    observed = validated.observe(
        EVENT_TIME_METRIC, F.max(F.when(valid, F.col("event_time"))).alias("max_event_time")
    )
    batch = project_batch(settings, writer_id, gate)

    def run_batch(frame: DataFrame, batch_id: int) -> None:  # every write in it is idempotent
        retry_on_conflict(lambda: batch(frame, batch_id), f"{QUERY_NAME} batch {batch_id}")

    return (
        observed.writeStream.queryName(QUERY_NAME)
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .foreachBatch(run_batch)
        .start()
    )


def project_batch(
    settings: Settings, writer_id: str, gate: pause.PauseGate | None = None
) -> Callable[[DataFrame, int], None]:
    """The ``foreachBatch`` function: one validated micro-batch into silver, bronze and quarantine, each
    while holding ``gate`` (a paused projection's next batch waits at its start: :mod:`.pause`)."""
    appends = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bronze-append")
    gate = gate or pause.PauseGate()

    def write(validated: DataFrame, batch_id: int) -> None:
        with gate.batch():
            _write(validated, batch_id)

    def _write(validated: DataFrame, batch_id: int) -> None:
        checked_at = datetime.now(timezone.utc)  # the batch's ingest_time, in bronze and quarantine alike
        with profile.batch(batch_id) as info:
            with profile.step("erasure registry"):  # an erased customer's records are written masked
                validated = mask_erased(validated, erased_ids(validated.sparkSession, settings))
            # Validated once; every write below reads these rows. The job that stores them also observes
            # what the writes need to know: the valid rows' aggregate id ranges and how many rows failed.
            observation, valid = Observation(), F.size("failed_expectations") == 0
            with profile.step("read+validate"):
                validated = validated.observe(
                    observation,
                    F.count(F.lit(1)).alias("rows"),
                    F.count_if(~valid).alias("rejected"),
                    *Slice.metrics(F.col("aggregate_type"), F.col("aggregate_id"), valid),
                ).localCheckpoint()
                metrics = observation.get
            info["rows"] = metrics["rows"]
            slices = Slice.from_metrics(metrics)
            pending = [
                appends.submit(_append, settings, writer_id, name, rows(validated, checked_at), batch_id)
                for name, rows, present in (
                    ("bronze_events", to_bronze, bool(slices)),
                    ("bronze_quarantine", to_quarantine, metrics["rejected"] > 0),
                )
                if present
            ]
            try:
                if slices:
                    bronze = to_bronze(validated, checked_at)
                    apply_batch(bronze, batch_id, settings, writer_id, checkpointed=True, slices=slices)
            finally:
                with profile.step("wait for bronze appends"):
                    wait(pending)  # all of them, failed or not: then no write reads these rows any more
                release(validated)
            for future in pending:
                future.result()  # an append's failure fails the batch

    return write


def _append(settings: Settings, writer_id: str, name: str, rows: DataFrame, batch_id: int) -> None:
    options = idempotency.append_options(writer_id, name, batch_id)
    with profile.step(f"append {name}"):
        table(settings, name).save(rows.write.format("delta").mode("append").options(**options))


def run_once(spark, settings: Settings) -> dict:
    """Process everything available (availableNow), refresh gold, return counts."""
    ensure_tables(spark, settings)
    result = {f"{QUERY_NAME}_input_rows": 0}
    with (
        checkpoint_lock.exclusive(settings.checkpoint(CHECKPOINT)),
        ProgressRecorder(spark, settings, (QUERY_NAME,)) as recorder,
    ):
        query = None
        if source_exists(spark, settings):
            query = start_projection(spark, settings, {"availableNow": True})
            query.awaitTermination()
            result[f"{QUERY_NAME}_input_rows"] = sum(p.numInputRows for p in query.recentProgress)
        else:
            logger.info("no event log at %s yet: nothing to ingest", settings.event_log_path)
        result.update(_finish(spark, settings, recorder, [query.id] if query is not None else []))
    return result


def _finish(spark, settings: Settings, recorder: ProgressRecorder, query_ids: list) -> dict[str, int]:
    """After the query: the last progress rows written, gold refreshed, every table counted.

    They are independent (only gold's count waits for gold), so they run side by side: in a fresh process
    (what ``project --once`` is) each first loads its tables' logs, and those loads overlap."""

    def count(name: str, after=None) -> int:
        if after is not None:
            after.result()
        return table(settings, name).read(spark).count()

    with ThreadPoolExecutor(max_workers=len(COUNTED_TABLES) + 2, thread_name_prefix="run-once") as pool:
        flushed = pool.submit(recorder.flush, query_ids)
        gold = pool.submit(GoldRefresher(spark, settings).refresh_if_changed)
        counts = {
            name: pool.submit(count, name, gold if name == GOLD_TABLE else None) for name in COUNTED_TABLES
        }
        flushed.result()
        return {name: counted.result() for name, counted in counts.items()}


def run_continuous(
    spark, settings: Settings, trigger_seconds: float = 1.0, stop: threading.Event | None = None
) -> dict:
    """Run the projection until SIGINT/SIGTERM (or ``stop`` is set); stop between micro-batches.

    A background thread refreshes gold every ``settings.gold_refresh_seconds`` (when silver changed), and
    once more on the way out; another answers a rebuild's pause requests (:mod:`.pause`)."""
    ensure_tables(spark, settings)
    stop = stop or threading.Event()
    trigger = {"processingTime": f"{trigger_seconds} seconds"}
    restore = _stop_on_signals(stop)
    query, gate, checkpoint = None, pause.PauseGate(), settings.checkpoint(CHECKPOINT)
    try:
        with (
            checkpoint_lock.exclusive(checkpoint),
            ProgressRecorder(spark, settings, (QUERY_NAME,)) as recorder,
        ):
            with _gold_refreshed(spark, settings), pause.serving(checkpoint, gate, stop):
                try:
                    if _wait_for_source(spark, settings, stop):
                        query = start_projection(spark, settings, trigger, gate)
                        logger.info("projecting every %g s; Ctrl-C stops", trigger_seconds)
                    while query is not None and not stop.wait(0.5):
                        if not query.isActive:
                            raise query.exception() or RuntimeError(f"query {query.name} stopped")
                finally:  # before gold's last refresh, so that it sees the last batches
                    if query is not None:
                        stop_between_batches(query)
            recorder.flush([query.id] if query is not None else [])
    finally:
        restore()
    return {
        "stopped": [query.name] if query else [],
        "batches": {query.name: _last_batch(query)} if query else {},
    }


def stop_between_batches(query, timeout: float = 60.0) -> None:
    """Stop ``query`` when no micro-batch is running (the next trigger would start a new one)."""
    deadline = time.monotonic() + timeout
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()


@contextmanager
def _gold_refreshed(spark, settings: Settings) -> Iterator[None]:
    """Refresh gold on a background thread while the block runs, and once more when it ends normally."""
    refresher = GoldRefresher(spark, settings)
    with beside(refresher.run, settings.gold_refresh_seconds, name="gold-refresh"):
        yield
    refresher.refresh_if_changed()


def _wait_for_source(spark, settings: Settings, stop: threading.Event) -> bool:
    announced = False
    while not source_exists(spark, settings):
        if not announced:
            logger.info("waiting for the first event in %s", settings.event_log_path)
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
        logger.info("%s received: stopping after the running micro-batch", signal.Signals(signum).name)
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
