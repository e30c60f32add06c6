"""Rebuild silver (every read model) and gold from ``bronze_events`` while the projection runs, check the
new generation against bronze before readers see it, publish it at one point, and roll it back on demand.
Bronze is left alone (the event history is a view over bronze: nothing to rebuild).

Why it is exact: bronze holds every valid event that ever arrived, and the projection rules (highest version
wins, smaller id on a tie) depend on the set of events only, so one batch over a bronze snapshot gives
exactly what streaming gave. An aggregation over a read model is recomputed whole from that read model's
rebuilt rows (what its incremental MERGE keeps equal). The read models come from
:data:`~.read_models.READ_MODELS`, the same declarations the stream's MERGEs use, and each winner's body is
read through its declared upcasters as the stream reads it, so events of an older schema version rebuild
exactly. Bronze is already masked for erased customers, so a rebuild brings none back.

The steps (:func:`rebuild`), one rebuild at a time (:func:`one_at_a_time`):

1. **Pause** the live projection between micro-batches (:mod:`.pause`). If none is running, first run the
   projection once (availableNow) instead: a projection killed mid-batch may have MERGEd a batch into silver
   whose bronze append never happened; its replay would then skip the MERGE (its transaction id is recorded
   in the read model) after a rebuild had dropped those events. Either way, bronze now holds every batch
   silver holds, and nothing writes silver until the publish is done.
2. **Build** the next generation from one bronze snapshot version, held as local checkpoints (computed
   once: the rows checked are the rows published).
3. **Check** it against that snapshot (:mod:`.generation_check`); a disagreement is a
   :class:`~cqrs_orders.errors.RebuildError` naming it, and nothing is published.
4. **Publish**: record each table's current Delta version in ``ops_rebuilds`` (what a rollback restores),
   overwrite each read model and gold with its new generation (each overwrite one atomic Delta commit), and
   record the versions written.
5. **Resume** the projection: it carries on from its checkpoint; the MERGE is idempotent and version-ordered,
   so events that arrive meanwhile are applied on top.

What a reader sees: each table answers from its old generation, then from its new one, never from neither
(an overwrite is one commit). While the projection is paused every table, old or new, reflects the same
bronze version, so a reader moving between tables mid-publish sees one point of the event stream; it only
sees that point later than usual (no new event is projected until the publish is done).

:func:`rollback` restores every table of the newest rebuild not yet rolled back to the version recorded
before its publish (Delta ``RESTORE``, possible while the old files are kept: the tables' retention, 7 days
unless ``maintain --retain-hours`` was given more), then re-applies the events bronze received since, with
the stream's own MERGE, so nothing projected after the rebuild is lost. It restores every table or none
(:func:`_restore_all`): a VACUUM deletes the old files but keeps the log, so a version whose files are gone
still looks restorable until its RESTORE fails, and one table restored without the others (an emptied
table back, say) is worse than none.

A rebuild killed during its publish (step 4) leaves some tables on the new generation and its "started"
record without a "published" one: ``rebuild`` again publishes a generation equal to bronze, and
``rollback`` restores the versions of that "started" record. Its pause request's lease outlives it by up to
:data:`~.pause.LEASE_SECONDS`; the next rebuild takes the request over at once where it can tell the first
one died (:func:`.pause.paused`).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import table
from cqrs_orders.errors import RebuildError
from cqrs_orders.pipeline import checkpoint_lock, gold, pause
from cqrs_orders.pipeline.batch_rows import release
from cqrs_orders.pipeline.conflicts import retry_on_conflict
from cqrs_orders.pipeline.generation_check import check
from cqrs_orders.pipeline.pause import DEFAULT_PAUSE_TIMEOUT
from cqrs_orders.pipeline.read_models import READ_MODELS
from cqrs_orders.pipeline.runner import CHECKPOINT, run_once
from cqrs_orders.pipeline.silver import apply_batch, latest_per_aggregate
from cqrs_orders.pipeline.tables import SCHEMAS, ensure_tables

logger = logging.getLogger(__name__)

#: The tables a rebuild publishes, in order: the read models (a derived one after its source), then gold.
PUBLISHED = (*(model.table for model in READ_MODELS), gold.GOLD_TABLE)
#: Where the rebuilds' lock lives, beside the checkpoints (one warehouse, one rebuild at a time).
LOCK_FOLDER = "_rebuild"
#: A rollback re-applies the bronze rows ingested since its rebuild started, minus this margin: the
#: projection's clock and the rebuild's may differ, and re-applying a row already applied changes nothing.
CLOCK_MARGIN = timedelta(minutes=10)
RECORDS = "ops_rebuilds"


@contextmanager
def one_at_a_time(settings: Settings) -> Iterator[None]:
    """The rebuilds' lock: an OS file lock beside the checkpoints (on Databricks, where a volume takes no
    locks, the rebuild job's ``max_concurrent_runs: 1`` is the guard, and a second pause request is refused
    while the first is live: :func:`.pause.paused`)."""
    busy = "Another rebuild or rollback is running on this warehouse{holder}; wait for it to finish."
    with checkpoint_lock.exclusive(settings.checkpoint(LOCK_FOLDER), busy):
        yield


@contextmanager
def projection_held(spark, settings: Settings, pause_timeout: float) -> Iterator[None]:
    """Nothing writes silver in the block, and bronze holds every batch silver holds (steps 1 and 5). Every
    pause request is made under the rebuilds' lock, so a live one found while holding it was left by a
    rebuild or rollback that died, and is taken over."""
    checkpoint, lock = settings.checkpoint(CHECKPOINT), settings.checkpoint(LOCK_FOLDER)
    with pause.paused(checkpoint, pause_timeout, requesters_lock=lock) as running:
        if running:
            logger.info("the projection is paused")
        else:
            logger.info("no projection running: finishing its checkpoint first (a cut-short batch replays)")
            run_once(spark, settings)
        yield
    logger.info("projection released")


def build_generation(bronze: DataFrame) -> dict[str, DataFrame]:
    """Every read model's rows from a bronze snapshot (table -> rows, each a local checkpoint)."""
    outputs: dict[str, DataFrame] = {}
    for model in READ_MODELS:  # a derived model comes after its source
        if model.derived_from is None:
            rows = model.project(latest_per_aggregate(bronze, model.aggregate_type.value))
        else:
            rows = model.recompute(outputs[model.derived_from.table])
        outputs[model.table] = rows.localCheckpoint()
    return outputs


def rebuild(spark, settings: Settings, pause_timeout: float = DEFAULT_PAUSE_TIMEOUT) -> dict:
    """Build, check and publish the next generation of silver and gold (the module docstring's steps);
    return the rebuild id, the bronze version, each table's versions and rows, and the check's figures."""
    started = time.monotonic()
    ensure_tables(spark, settings)
    rebuild_id = uuid.uuid4().hex[:12]
    with one_at_a_time(settings), projection_held(spark, settings, pause_timeout):
        bronze_table = table(settings, "bronze_events")
        version = bronze_table.version(spark)
        logger.info("rebuild %s: building from bronze_events version %d", rebuild_id, version)
        bronze = bronze_table.read(spark, versionAsOf=str(version))
        generation = build_generation(bronze)
        try:
            figures = check(bronze, generation)
            wrong = {f.table: f.differences for f in figures if f.differences}
            if wrong:
                listed = "; ".join(f"{name}: {', '.join(found)}" for name, found in wrong.items())
                raise RebuildError(
                    f"The rebuilt generation disagrees with bronze_events version {version} ({listed}); "
                    "nothing was published, the read models are as they were."
                )
            logger.info("rebuild %s: the new generation agrees with bronze; publishing", rebuild_id)
            previous = _versions(spark, settings)
            _record(spark, settings, rebuild_id, "started", version, previous)
            for name, rows in generation.items():
                writer = rows.write.format("delta").mode("overwrite")
                retry_on_conflict(lambda name=name, writer=writer: table(settings, name).save(writer), name)
            _refresh_gold(spark, settings)
            published = _versions(spark, settings)
            _record(spark, settings, rebuild_id, "published", version, published)
        finally:
            for rows in generation.values():
                release(rows)
    counts = {name: table(settings, name).read(spark).count() for name in PUBLISHED}
    logger.info("rebuild %s published in %.1f s", rebuild_id, time.monotonic() - started)
    return {
        "rebuild_id": rebuild_id,
        "bronze_version": version,
        "seconds": round(time.monotonic() - started, 1),
        "previous_versions": previous,
        "published_versions": published,
        "checked": {f.table: f.summary() for f in figures},
        **counts,
    }


def rollback(spark, settings: Settings, pause_timeout: float = DEFAULT_PAUSE_TIMEOUT) -> dict:
    """Return every published table to its version before the newest rebuild not yet rolled back, then
    re-apply the events bronze received since (see the module docstring)."""
    started = time.monotonic()
    ensure_tables(spark, settings)
    with one_at_a_time(settings), projection_held(spark, settings, pause_timeout):
        rebuild_id, bronze_version, previous, since = _last_rebuild(spark, settings)
        _refuse_after_erasure(spark, settings, since)
        logger.info("rolling back rebuild %s: restoring %s", rebuild_id, previous)
        _restore_all(spark, settings, previous)
        caught_up = _reapply_since(spark, settings, since - CLOCK_MARGIN, rebuild_id)
        _refresh_gold(spark, settings)
        restored = _versions(spark, settings)
        _record(spark, settings, rebuild_id, "rolled_back", bronze_version, restored)
    logger.info("rebuild %s rolled back in %.1f s", rebuild_id, time.monotonic() - started)
    return {
        "rolled_back": rebuild_id,
        "restored_to": previous,
        "reapplied_bronze_rows": caught_up,
        "seconds": round(time.monotonic() - started, 1),
        **{name: table(settings, name).read(spark).count() for name in PUBLISHED},
    }


def _refresh_gold(spark, settings: Settings) -> None:
    """Gold from the silver just written; a paused projection's gold refresher may overwrite it at the same
    moment (the same rows: a conflict, retried)."""
    retry_on_conflict(lambda: gold.refresh(spark, settings), gold.GOLD_TABLE)


def _versions(spark, settings: Settings) -> dict[str, int]:
    return {name: table(settings, name).version(spark) for name in PUBLISHED}


def _record(spark, settings: Settings, rebuild_id: str, status: str, bronze_version: int, versions) -> None:
    row = (rebuild_id, status, bronze_version, versions, datetime.now(timezone.utc))
    rows = spark.createDataFrame([row], SCHEMAS[RECORDS])
    table(settings, RECORDS).save(rows.write.format("delta").mode("append"))


def _last_rebuild(spark, settings: Settings) -> tuple[str, int, dict[str, int], datetime]:
    """The newest rebuild that started publishing and was not rolled back: its id, bronze version, the
    versions before it and when it started."""
    records = table(settings, RECORDS).read(spark)
    undone = records.where(F.col("status") == "rolled_back").select("rebuild_id")
    candidate = (
        records.where(F.col("status") == "started")
        .join(undone, "rebuild_id", "left_anti")
        .orderBy(F.col("recorded_at").desc())
        .first()
    )
    if candidate is None:
        raise RebuildError(f"No rebuild to roll back: {RECORDS} records none not rolled back already.")
    # A naive timestamp, as Spark hands them back; Spark reads it back the same way in a comparison.
    return (
        candidate["rebuild_id"],
        candidate["bronze_version"],
        dict(candidate["versions"]),
        candidate["recorded_at"],
    )


def _refuse_after_erasure(spark, settings: Settings, since: datetime) -> None:
    """A restored version may hold personal data erased after it was written: refuse rather than bring it
    back (rebuild again instead: bronze is masked)."""
    erasures = table(settings, "ops_erasures").read(spark)
    erased = erasures.where(F.col("erased_at") >= F.lit(since - CLOCK_MARGIN))
    if not erased.isEmpty():
        raise RebuildError(
            "A customer was erased since this rebuild started: its previous generation may hold that "
            "personal data, so it is not restored. Run `cqrs-orders rebuild` again instead (bronze is "
            "masked)."
        )


def _restore_all(spark, settings: Settings, versions: dict[str, int]) -> None:
    """Restore each table to its version in ``versions``, or leave every table as it is.

    Delta has no transaction across tables, and its RESTORE fails only once it meets the version's missing
    files (a VACUUM keeps the log, so the version still looks restorable). So first each version is read
    through every one of its data files (:func:`_check_restorable`): no table is touched unless every one
    can be restored. Then the tables are restored side by side (independent tables; the projection waits
    meanwhile). A restore that fails anyway (a VACUUM in between, conflicts past the retries) is rolled
    forward: the tables restored are returned to their versions of before the rollback, whose files the
    rollback has only just removed."""
    rank = {name: place for place, name in enumerate(PUBLISHED)}
    ordered = sorted(versions.items(), key=lambda item: rank.get(item[0], len(rank)))  # as published
    _check_restorable(spark, settings, ordered)
    before = {name: table(settings, name).version(spark) for name, _ in ordered}

    with ThreadPoolExecutor(max_workers=len(ordered) or 1, thread_name_prefix="restore") as pool:
        running = {name: pool.submit(_restore, spark, settings, name, version) for name, version in ordered}
    failures = {name: future.exception() for name, future in running.items()}
    failed = [failure for failure in failures.values() if failure is not None]
    if failed:
        done = {name: before[name] for name, failure in failures.items() if failure is None}
        _roll_forward(spark, settings, done, failed[0])


def _check_restorable(spark, settings: Settings, versions: list[tuple[str, int]]) -> None:
    """:class:`~cqrs_orders.errors.RebuildError` naming the tables whose version has a data file missing.
    Each version is read whole (its files' paths into Spark's ``noop`` sink, side by side: a count Delta
    would answer from its log), which opens every file; a file VACUUMed since fails the read."""

    def missing(item: tuple[str, int]) -> str | None:
        name, version = item
        paths = table(settings, name).read(spark, versionAsOf=str(version)).select("_metadata.file_path")
        try:
            paths.write.format("noop").mode("overwrite").save()
        except Exception as error:  # the JVM's error, unwrapped: FAILED_READ_FILE.FILE_NOT_EXIST
            return f"{name} cannot be restored to version {version} ({_reason(error)})"
        return None

    with ThreadPoolExecutor(max_workers=len(versions) or 1, thread_name_prefix="restorable") as pool:
        refused = [found for found in pool.map(missing, versions) if found]
    if refused:
        raise RebuildError(
            f"{'; '.join(refused)}. Their files are past the retention (VACUUMed); run `cqrs-orders "
            "rebuild` again instead. Nothing was restored."
        )


def _restore(spark, settings: Settings, name: str, version: int) -> None:
    try:
        retry_on_conflict(lambda: table(settings, name).delta(spark).restoreToVersion(version), name)
    except Exception as error:  # Delta raises its JVM errors unwrapped; the files may be VACUUMed
        raise RebuildError(
            f"{name} cannot be restored to version {version}: {_reason(error)}. Its files may be past the "
            "retention (VACUUMed); run `cqrs-orders rebuild` again instead."
        ) from None


def _roll_forward(spark, settings: Settings, versions: dict[str, int], failure: RebuildError) -> None:
    """Return the tables already restored to ``versions`` (theirs before the rollback), then raise
    ``failure`` saying so; if one of them cannot be returned either, say which tables are left restored."""
    if not versions:
        raise failure
    left = list(versions)
    for name, version in versions.items():
        try:
            _restore(spark, settings, name, version)
        except RebuildError:
            logger.exception("%s could not be returned to version %d", name, version)
            raise RebuildError(
                f"{failure} The rollback stopped half-way: {', '.join(left)} could not be returned to their "
                "versions before it; run `cqrs-orders rebuild` again."
            ) from None
        left.remove(name)
    raise RebuildError(f"{failure} The tables restored beside it are back as they were.") from None


def _reason(error: Exception) -> str:
    """The first line of a JVM error that says something (Py4J's first names only the method called),
    without the Java class."""
    lines = [line.strip(" :") for line in str(error).splitlines() if line.strip(" :")]
    lines = [line for line in lines if not line.startswith("An error occurred while calling")] or ["?"]
    return re.sub(r"^[\w.$]+(Exception|Error): ", "", lines[0])[:300]


def _reapply_since(spark, settings: Settings, since: datetime, rebuild_id: str) -> int:
    """Apply the bronze rows ingested since ``since`` to the restored read models, as a micro-batch is."""
    recent = table(settings, "bronze_events").read(spark).where(F.col("ingest_time") >= F.lit(since))
    batch = recent.localCheckpoint()
    try:
        rows = batch.count()
        if rows:
            writer_id = f"rollback-{rebuild_id}-{uuid.uuid4().hex[:8]}"  # its own transaction ids
            apply_batch(batch, 0, settings, writer_id, checkpointed=True)
        return rows
    finally:
        release(batch)
