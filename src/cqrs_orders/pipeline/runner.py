"""Runs the projection: bus -> bronze -> silver, in one query or in two.

- ``stage="all"`` (the default, and the low-latency path): ONE query reads the bus, and each micro-batch
  projects into silver and then appends the same rows to bronze (silver first: it is what readers wait
  for; each write is exactly-once on its own, so the order is free). One hop and one batch per event: on
  a laptop the difference between seconds and tens of seconds of freshness.
- ``stage="bronze"`` and ``stage="silver"``: two queries, silver streaming from ``bronze_events`` as a
  Delta source, so each can run (and restart) on its own: the two tasks of the Databricks job.

Every query is a ``foreachBatch`` whose writes are exactly-once (:mod:`.idempotency`), so a batch that
loses a race with another Delta writer (``maintain``'s OPTIMIZE) simply runs again (:mod:`.conflicts`).
The bus is read with the checkpoint ``settings.checkpoint("bronze")`` in both layouts, so switching
between them never lands a record in bronze twice; silver's own query uses ``settings.checkpoint("silver")``.
Gold is recomputed off the batch path by a :class:`~.gold.GoldRefresher`.

``run_once`` processes what is there (availableNow) and returns; ``run_continuous`` keeps the queries
running until SIGINT/SIGTERM, then stops them between micro-batches.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.pipeline import idempotency
from cqrs_orders.pipeline.bronze import to_bronze, to_quarantine, validate_records
from cqrs_orders.pipeline.conflicts import retry_on_conflict
from cqrs_orders.pipeline.gold import GoldRefresher
from cqrs_orders.pipeline.progress import EVENT_TIME_METRIC, ProgressRecorder
from cqrs_orders.pipeline.silver import Slice, apply_batch
from cqrs_orders.pipeline.sources import read_records, source_exists
from cqrs_orders.pipeline.tables import ensure_tables

#: Query names (``ops_stream_progress.query_name``); the lag monitor matches "bronze" and "silver" in them.
BRONZE, SILVER, BRONZE_SILVER = "bronze", "silver", "bronze_silver"
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


def start_bronze(spark, settings: Settings, trigger: dict, *, project: bool = False):
    """Start the bus -> bronze_events / bronze_quarantine query; with ``project``, each batch then goes on
    into silver too (the one-query layout)."""
    checkpoint = settings.checkpoint(BRONZE)
    writer_id = idempotency.app_id(checkpoint)
    validated = validate_records(read_records(spark, settings))
    valid = F.size("failed_expectations") == 0
    observed = validated.observe(
        EVENT_TIME_METRIC, F.max(F.when(valid, F.col("event.timestamp"))).alias("max_event_time")
    )
    name = BRONZE_SILVER if project else BRONZE
    return _start(observed, name, checkpoint, trigger, _bronze_batch(settings, writer_id, project))


def start_silver(spark, settings: Settings, trigger: dict):
    """Start the bronze_events -> silver query (the two-query layout)."""
    checkpoint = settings.checkpoint(SILVER)
    writer_id = idempotency.app_id(checkpoint)
    options = {}
    starting_version = idempotency.read_marker(checkpoint, idempotency.STARTING_VERSION_FILE)
    if starting_version is not None and not idempotency.has_progress(checkpoint):
        options["startingVersion"] = starting_version  # resume after a rebuild
    bronze = settings.table("bronze_events").read_stream(spark, **options)
    observed = bronze.observe(EVENT_TIME_METRIC, F.max("event_time").alias("max_event_time"))

    def project(batch: DataFrame, batch_id: int) -> None:
        apply_batch(batch, batch_id, settings, writer_id)

    return _start(observed, SILVER, checkpoint, trigger, project)


def run_once(spark, settings: Settings, stage: str = "all") -> dict:
    """Process everything available through ``stage`` (availableNow), refresh gold, return counts."""
    _check_stage(stage)
    ensure_tables(spark, settings)
    once = {"availableNow": True}
    result = {}
    with ProgressRecorder(spark, settings, (BRONZE, SILVER, BRONZE_SILVER)) as recorder:
        finished = []
        if stage == "all":
            finished += _catch_up_silver(spark, settings)
        if stage in ("bronze", "all"):
            if source_exists(spark, settings):
                finished.append(_await(start_bronze(spark, settings, once, project=stage == "all")))
            else:
                _progress(f"no event log at {settings.event_log_path} yet: nothing to ingest")
        if stage == "silver":
            finished.append(_await(start_silver(spark, settings, once)))
        recorder.flush([query.id for query in finished])
    if stage != "bronze":
        GoldRefresher(spark, settings).refresh_if_changed()
    for query in finished:
        key = f"{query.name}_input_rows"
        result[key] = result.get(key, 0) + sum(p.numInputRows for p in query.recentProgress)
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
    """Run the chosen stage(s) until SIGINT/SIGTERM (or ``stop`` is set); stop between micro-batches.

    Wherever silver is projected, a background thread refreshes gold every ``settings.gold_refresh_seconds``
    (when silver changed), and once more on the way out."""
    _check_stage(stage)
    ensure_tables(spark, settings)
    stop = stop or threading.Event()
    trigger = {"processingTime": f"{trigger_seconds} seconds"}
    restore = _stop_on_signals(stop)
    queries = []
    try:
        with ProgressRecorder(spark, settings, (BRONZE, SILVER, BRONZE_SILVER)) as recorder:
            with _gold_refreshed(spark, settings) if stage != "bronze" else nullcontext():
                try:
                    if stage == "all":
                        _catch_up_silver(spark, settings)
                    if stage in ("bronze", "all") and _wait_for_source(spark, settings, stop):
                        queries.append(start_bronze(spark, settings, trigger, project=stage == "all"))
                    if stage == "silver" and not stop.is_set():
                        queries.append(start_silver(spark, settings, trigger))
                    names = ", ".join(q.name for q in queries)
                    _progress(f"running {names} every {trigger_seconds:g} s; Ctrl-C stops")
                    while not stop.wait(0.5):
                        failed = [q for q in queries if not q.isActive]
                        if failed:
                            raise failed[0].exception() or RuntimeError(f"query {failed[0].name} stopped")
                finally:  # before gold's last refresh, so that it sees the last batches
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
    def run_batch(frame: DataFrame, batch_id: int) -> None:  # every write in it is idempotent
        retry_on_conflict(lambda: batch(frame, batch_id), f"{name} batch {batch_id}")

    return (
        df.writeStream.queryName(name)
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .foreachBatch(run_batch)
        .start()
    )


def _bronze_batch(settings: Settings, writer_id: str, project: bool) -> Callable:
    def write(validated: DataFrame, batch_id: int) -> None:
        # Validated once; every write below reads these rows. The job that stores them also observes
        # what the writes need to know: the valid rows' aggregate id ranges and whether any row failed.
        observation, valid, event = Observation(), F.size("failed_expectations") == 0, F.col("event")
        validated = validated.observe(
            observation,
            F.count_if(~valid).alias("rejected"),
            *Slice.metrics(event["aggregateType"], event["aggregateId"], valid),
        ).localCheckpoint()
        metrics = observation.get
        slices = Slice.from_metrics(metrics)
        if project and slices:  # silver first: what readers query is fresh a bronze append sooner
            bronze = to_bronze(validated)
            apply_batch(bronze, batch_id, settings, writer_id, checkpointed=True, slices=slices)
        for name, rows, present in (
            ("bronze_events", to_bronze, bool(slices)),
            ("bronze_quarantine", to_quarantine, metrics["rejected"] > 0),
        ):
            if present:
                options = idempotency.append_options(writer_id, name, batch_id)
                writer = rows(validated).write.format("delta").mode("append").options(**options)
                settings.table(name).save(writer)

    return write


def _catch_up_silver(spark, settings: Settings) -> list:
    """When the two-query layout ran here before, silver's own query first projects what bronze holds
    beyond it; its checkpoint is then retired, marked to resume from today's bronze version should that
    layout come back (re-reading what the one-query layout projected meanwhile is harmless)."""
    checkpoint = settings.checkpoint(SILVER)
    if not idempotency.has_progress(checkpoint):
        return []
    _progress("silver's own checkpoint is behind: projecting the rest of bronze before the one-query layout")
    version = settings.table("bronze_events").version(spark)
    query = _await(start_silver(spark, settings, {"availableNow": True}))
    idempotency.reset(checkpoint)
    idempotency.write_marker(checkpoint, idempotency.STARTING_VERSION_FILE, str(version))
    return [query]


@contextmanager
def _gold_refreshed(spark, settings: Settings) -> Iterator[None]:
    """Refresh gold on a background thread while the block runs, and once more when it ends normally."""
    refresher, done = GoldRefresher(spark, settings), threading.Event()
    thread = threading.Thread(
        target=refresher.run, args=(done, settings.gold_refresh_seconds), name="gold-refresh", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    refresher.refresh_if_changed()


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")


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
