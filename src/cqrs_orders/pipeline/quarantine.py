"""Working the quarantine: list its records, replay them once the cause is fixed, accept a version as lost.

A record that fails an expectation waits in ``bronze_quarantine`` (:mod:`.bronze`) until someone acts on it,
and meanwhile its aggregate shows a version gap, which the lag monitor reports on every run. Three actions,
one function each (``cqrs-orders quarantine`` only parses arguments and prints):

* **list**: the records, their reasons and the envelope's header read *leniently* off the body, which
  may be invalid JSON (that may be why it is here): one SQL statement (:mod:`cqrs_orders.query.quarantine`),
  run without Spark on a laptop and by :func:`list_records` on Databricks. Replay and acknowledge choose
  records with the same SQL (:func:`described`, :func:`select_records`).
* **replay**: :func:`replay` sends the chosen records through the same validation
  (:func:`~.bronze.validate_records`) and the projection's own micro-batch function
  (:func:`~.runner.project_batch`) again, exactly once; the use is after a fix (a new upcaster, a bug fix).
* **acknowledge**: :func:`acknowledge` records in ``ops_quarantine_acknowledgements`` that a quarantined
  version is accepted as lost, with who and why; the lag monitor's version gaps no longer count it
  (:func:`~cqrs_orders.ops.measures.version_gaps`). Nothing else changes: the record stays quarantined.

The DataFrame functions are pure (DataFrame in, DataFrame out) so tests can call them on hand-made rows.
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cqrs_orders.config import Settings, running_on_databricks
from cqrs_orders.delta_io import table
from cqrs_orders.errors import QuarantineError
from cqrs_orders.pipeline import gold
from cqrs_orders.pipeline.batch_rows import release
from cqrs_orders.pipeline.bronze import RECORD_COLUMNS, to_quarantine, validate_records
from cqrs_orders.pipeline.conflicts import retry_on_conflict
from cqrs_orders.pipeline.runner import STATE_CHECKS, project_batch
from cqrs_orders.pipeline.tables import SCHEMAS, ensure_tables
from cqrs_orders.query.quarantine import (
    ACKNOWLEDGEMENTS,
    PATTERNS,
    QUARANTINE,
    Selection,
    criteria,
    described_columns,
    listing,
)

logger = logging.getLogger(__name__)

#: What a replay did with each record (the ``outcome`` of :func:`judged`).
REPLAYED, REASONS_CHANGED, UNCHANGED = "replayed", "reasons_changed", "unchanged"
#: The writer id prefix of replays' Delta transaction ids (:mod:`.idempotency`), and their batch id: each
#: replay is the one batch of a writer of its own (:func:`replay`).
REPLAY_WRITER = "quarantine-replay"
REPLAY_BATCH = 0


def described(quarantine: DataFrame) -> DataFrame:
    """``bronze_quarantine`` rows plus ``event_id``, ``event_type``, ``aggregate_type``, ``aggregate_id``
    and ``version`` read leniently off the body (:func:`~cqrs_orders.query.quarantine.described_columns`):
    null where the body does not have them."""
    return quarantine.sparkSession.sql(
        f"SELECT q.*, {described_columns('q')} FROM {{quarantine}} AS q", args=PATTERNS, quarantine=quarantine
    )


def select_records(rows: DataFrame, selection: Selection) -> DataFrame:
    """The :func:`described` rows that meet every criterion of ``selection``."""
    condition, values = criteria(selection, "d")
    return rows.sparkSession.sql(f"SELECT * FROM {{rows}} AS d WHERE {condition}", args=values, rows=rows)


def list_records(spark, settings: Settings, selection: Selection, limit: int) -> list[dict]:
    """The listing on Spark (the ``quarantine`` job on Databricks), the tables registered under their
    logical names (a missing one: no rows with its columns; listing creates nothing)."""
    from cqrs_orders.query.api import SparkBackend

    for name in (QUARANTINE, ACKNOWLEDGEMENTS):
        found = table(settings, name)
        frame = found.read(spark) if found.exists(spark) else spark.createDataFrame([], SCHEMAS[name])
        frame.createOrReplaceTempView(name)
    return SparkBackend(spark).query(*listing(selection, limit))


# --- replay --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayResult:
    """How many bus records a replay chose and what became of them."""

    chosen: int = 0
    replayed: int = 0  # now valid: in bronze and silver, gone from the quarantine
    reasons_changed: int = 0  # still failing, for other reasons now: quarantined with those
    unchanged: int = 0  # still failing for the same reasons: left exactly as they were
    already_in_bronze: tuple[str, ...] = field(default=())  # asked-for event ids a replay already moved

    def to_json(self) -> dict:
        return {
            "chosen": self.chosen,
            "replayed": self.replayed,
            "reasonsChanged": self.reasons_changed,
            "unchanged": self.unchanged,
            "alreadyInBronze": list(self.already_in_bronze),
        }


def latest_per_record(rows: DataFrame) -> DataFrame:
    """One row per bus record (``partition``, ``offset``): its newest quarantine row. A record can have
    several (a stream run again from an older checkpoint quarantines it again)."""
    newest = Window.partitionBy("partition", "offset").orderBy(F.col("ingest_time").desc())
    return rows.withColumn("_rank", F.row_number().over(newest)).where("_rank = 1").drop("_rank")


def judged(validated: DataFrame, previous: DataFrame) -> DataFrame:
    """``validated`` records (:func:`~.bronze.validate_records`) with their ``outcome``: :data:`REPLAYED`
    (they pass now), :data:`UNCHANGED` (they fail as they did: ``previous``' ``failed_expectations``) or
    :data:`REASONS_CHANGED`; plus ``previous_ingest_time``, the time of the row they replace."""
    before = previous.select(
        "partition",
        "offset",
        F.col("failed_expectations").alias("previous_failed"),
        F.col("ingest_time").alias("previous_ingest_time"),
    )
    failed = F.col("failed_expectations")
    outcome = (
        F.when(F.size(failed) == 0, F.lit(REPLAYED))
        .when(failed == F.col("previous_failed"), F.lit(UNCHANGED))
        .otherwise(F.lit(REASONS_CHANGED))
    )
    return (
        validated.join(before, ["partition", "offset"]).withColumn("outcome", outcome).drop("previous_failed")
    )


def replay(spark, settings: Settings, selection: Selection) -> ReplayResult:
    """Validate the chosen records again; project those that pass, requarantine those that fail anew.

    **Passing records leave the quarantine** (deleted, not marked resolved): then every record of the bus is
    in exactly one of ``bronze_events`` and ``bronze_quarantine``, as the projection itself guarantees;
    the lag monitor, which skips quarantined positions, counts a replayed record again; and the quarantine's
    columns and readers stay as they are. The deleted row stays in the table's Delta history (``DESCRIBE
    HISTORY``, time travel) until VACUUM. Records that fail **for the same reasons** are left exactly as
    they were; records that fail **for other reasons** now get a new row with those reasons in place of
    the old one.

    **Exactly once.** The chosen rows are read at one version of the quarantine. The passing ones go
    through the projection's micro-batch function as batch :data:`REPLAY_BATCH` of a writer named after
    them (:func:`_digest`: their positions and quarantine times), whose writes Delta's transaction ids make
    happen at most once (:mod:`.idempotency`). Then one MERGE on the quarantine deletes the replaced rows
    and inserts the new ones: one commit. If the run stops between the two, those rows are still there:
    the same command chooses them again, under the same writer, so Delta skips the writes already done
    and the MERGE follows (new rows the stream quarantines meanwhile change nothing of that). Once done,
    a second replay finds nothing to move and unchanged reasons to leave alone: it changes nothing. The
    same rows can never pass twice (passing removes them), so a writer id never comes back for new work.
    (A run with *other* criteria after an interrupted one may put a record into bronze twice: a
    duplicate, as a redelivery from the bus would be, which every reader of bronze counts once.)
    """
    ensure_tables(spark, settings)
    quarantine = table(settings, QUARANTINE)
    version = quarantine.version(spark)
    snapshot = described(quarantine.read(spark, versionAsOf=str(version)))
    already = _check_event_ids(spark, settings, snapshot, selection.event_ids, replaying=True)
    chosen = select_records(snapshot, selection)
    records = latest_per_record(chosen)

    # Validated and stored as the runner does, with the same state checks.
    validated = validate_records(records.select(*RECORD_COLUMNS), STATE_CHECKS).localCheckpoint()
    verdicts = judged(validated, records).localCheckpoint()
    release(validated)
    try:
        counts = {row.outcome: row["count"] for row in verdicts.groupBy("outcome").count().collect()}
        result = ReplayResult(
            chosen=sum(counts.values()),
            replayed=counts.get(REPLAYED, 0),
            reasons_changed=counts.get(REASONS_CHANGED, 0),
            unchanged=counts.get(UNCHANGED, 0),
            already_in_bronze=already,
        )
        logger.info(
            "quarantine version %d: %d records chosen; %d pass now, %d fail for other reasons, %d as before",
            version, result.chosen, result.replayed, result.reasons_changed, result.unchanged,
        )  # fmt: skip
        if result.replayed:
            passing = verdicts.where(F.col("outcome") == REPLAYED)
            writer = f"{REPLAY_WRITER}:{_digest(passing)}"
            batch = project_batch(settings, writer)
            frame = passing.select(*validated.columns)
            retry_on_conflict(lambda: batch(frame, REPLAY_BATCH), f"quarantine replay {writer}")
        if result.replayed or result.reasons_changed:
            _replace_rows(spark, settings, chosen, verdicts)
        if result.replayed:
            retry_on_conflict(lambda: gold.refresh(spark, settings), "gold refresh after a replay")
    finally:
        release(verdicts)
    return result


def _digest(passing: DataFrame) -> str:
    """A digest of the rows a replay moves (position and quarantine time): the same rows, the same id.
    (Each replay adds its writer's few transaction ids to the tables' logs; replays are rare.)"""
    key = F.concat_ws(":", "partition", "offset", F.unix_micros("previous_ingest_time"))
    return passing.agg(F.sha2(F.concat_ws(",", F.sort_array(F.collect_list(key))), 256)).first()[0][:32]


def _replace_rows(spark, settings: Settings, chosen: DataFrame, verdicts: DataFrame) -> None:
    """One MERGE (one commit) on the quarantine: delete every row of the records that pass now or fail
    for other reasons, insert the new row of the latter."""
    moved = verdicts.where(F.col("outcome") != UNCHANGED).select("partition", "offset")
    deleted = (
        chosen.join(moved, ["partition", "offset"], "left_semi")
        .select("partition", "offset", "ingest_time")
        .distinct()  # a MERGE refuses two source rows for one target row
        .withColumn("_action", F.lit("delete"))
    )
    changed = verdicts.where(F.col("outcome") == REASONS_CHANGED).select("partition", "offset")
    inserted = (
        to_quarantine(verdicts, datetime.now(timezone.utc))
        .join(changed, ["partition", "offset"], "left_semi")
        .withColumn("_action", F.lit("insert"))
    )
    source = deleted.unionByName(inserted, allowMissingColumns=True)
    columns = SCHEMAS[QUARANTINE].fieldNames()
    matches = (
        "s._action = 'delete' AND t.`partition` = s.`partition` AND t.`offset` = s.`offset` "
        "AND t.ingest_time = s.ingest_time"
    )

    def merge() -> None:
        (
            table(settings, QUARANTINE)
            .delta(spark)
            .alias("t")
            .merge(source.alias("s"), matches)
            .whenMatchedDelete()
            .whenNotMatchedInsert(
                condition="s._action = 'insert'", values={c: F.col(f"s.`{c}`") for c in columns}
            )
            .execute()
        )

    retry_on_conflict(merge, "quarantine update after a replay")


# --- acknowledge ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcknowledgeResult:
    """What an acknowledgement recorded."""

    acknowledged_by: str
    acknowledged: tuple[str, ...] = ()  # event ids recorded now
    already: tuple[str, ...] = ()  # acknowledged before: the first acknowledgement stands
    without_version: tuple[str, ...] = ()  # bodies without a readable aggregate and version: close no gap

    def to_json(self) -> dict:
        return {
            "acknowledged": list(self.acknowledged),
            "alreadyAcknowledged": list(self.already),
            "withoutVersion": list(self.without_version),
            "acknowledgedBy": self.acknowledged_by,
        }


def caller_identity(spark, env: Mapping[str, str] | None = None) -> str:
    """Who is acting: on Databricks the session's user (``current_user()``: the person, or the job's
    run-as identity in a job run), elsewhere the operating-system user."""
    if running_on_databricks(env):
        return spark.sql("SELECT current_user()").first()[0]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry and without $USER
        return f"uid:{os.getuid()}"


def acknowledge(
    spark,
    settings: Settings,
    event_ids: Iterable[str],
    reason: str,
    who: str,
    now: datetime | None = None,
) -> AcknowledgeResult:
    """Record that the quarantined events ``event_ids`` are accepted as lost, by ``who``, for ``reason``.

    Each event id is recorded once (a MERGE on it): acknowledging it again changes nothing and the first
    acknowledgement stands. Refused, with nothing written, when ``reason`` is blank or an id is not in the
    quarantine.
    """
    ids = _unique(event_ids)
    reason = reason.strip()
    if not ids:
        raise QuarantineError("Name the event ids to acknowledge (see `cqrs-orders quarantine list`).")
    if not reason:
        raise QuarantineError(
            "An acknowledgement needs a reason: say why the versions are accepted as lost "
            '(--reason "producer bug 123, order was cancelled by hand").'
        )
    ensure_tables(spark, settings)
    snapshot = described(table(settings, QUARANTINE).read(spark))
    _check_event_ids(spark, settings, snapshot, ids, replaying=False)
    newest = Window.partitionBy("event_id").orderBy(F.col("ingest_time").desc(), F.col("offset").desc())
    found = (
        snapshot.where(F.col("event_id").isin(list(ids)))
        .withColumn("_rank", F.row_number().over(newest))
        .where("_rank = 1")
        .select("event_id", "aggregate_type", "aggregate_id", "version", "partition", "offset")
        .collect()
    )
    acknowledgements = table(settings, ACKNOWLEDGEMENTS)
    earlier = {
        row.event_id
        for row in acknowledgements.read(spark).where(F.col("event_id").isin(list(ids))).collect()
    }
    at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    rows = [(*row, reason, who, at) for row in found if row.event_id not in earlier]
    if rows:
        source = spark.createDataFrame(rows, SCHEMAS[ACKNOWLEDGEMENTS])

        def merge() -> None:
            (
                acknowledgements.delta(spark)
                .alias("t")
                .merge(source.alias("s"), "t.event_id = s.event_id")
                .whenNotMatchedInsertAll()
                .execute()
            )

        retry_on_conflict(merge, "quarantine acknowledgement")
    unplaced = tuple(
        row.event_id for row in found if None in (row.aggregate_type, row.aggregate_id, row.version)
    )
    if unplaced:
        logger.warning(
            "no aggregate or version can be read from the body of %s: acknowledged, but it closes no "
            "version gap",
            ", ".join(unplaced),
        )
    recorded = tuple(sorted(row[0] for row in rows))
    logger.info("acknowledged %d quarantined events as lost, by %s", len(recorded), who)
    return AcknowledgeResult(who, recorded, tuple(sorted(earlier)), unplaced)


# --- both ----------------------------------------------------------------------------------------------


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for value in values if value))


def _check_event_ids(
    spark, settings: Settings, snapshot: DataFrame, event_ids: Sequence[str], replaying: bool
) -> tuple[str, ...]:
    """Refuse event ids that name no quarantined record. For a replay, an id already in ``bronze_events``
    (a replay moved it) is no error: returned, so that running the same replay twice is harmless."""
    ids = _unique(event_ids)
    if not ids:
        return ()
    quarantined = snapshot.where(F.col("event_id").isin(list(ids))).select("event_id").distinct().collect()
    missing = [event_id for event_id in ids if event_id not in {row.event_id for row in quarantined}]
    if not missing:
        return ()
    bronze = table(settings, "bronze_events").read(spark)
    landed = {
        row.event_id
        for row in bronze.where(F.col("event_id").isin(missing)).select("event_id").distinct().collect()
    }
    unknown = [event_id for event_id in missing if event_id not in landed]
    if unknown:
        raise QuarantineError(
            f"No quarantined record has the event id {', '.join(unknown)}. See the records and their "
            "eventId with `cqrs-orders quarantine list --json`; choose one without a readable eventId with "
            "--aggregate, --reason or --since/--until."
        )
    if not replaying:
        raise QuarantineError(
            f"{', '.join(missing)} passed validation and is in bronze_events: its version is not missing, "
            "there is nothing to acknowledge."
        )
    logger.info("already in bronze_events (replayed before): %s", ", ".join(missing))
    return tuple(missing)
