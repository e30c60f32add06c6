"""Silver: the read models (one row per aggregate, highest version wins) and the deduplicated event history.

Every event carries its aggregate's full state, so a projection needs only the winning event per aggregate,
never the order of arrival. The winner is the highest version; between two *different* events claiming the
same version (a conflict, flagged in the history) the smaller event id wins, so the result is the same
whatever the batching, the arrival order or a rebuild. Duplicates change nothing.

A batch is first collapsed to one row per aggregate (a MERGE with two source rows for one target row
fails), then merged with "update only when the incoming event wins". Each write runs under a Delta
transaction id (:mod:`.idempotency`), so a batch replayed after a crash changes nothing either.

The writes of a batch are independent tables, so they are not serialised: each read model's MERGE runs on
a thread of its own, in a Spark session of its own (the transaction id is a session conf), beside the
history write on the batch's thread. The read models come from :data:`~.read_models.READ_MODELS`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.envelope import AggregateType
from cqrs_orders.pipeline import profile
from cqrs_orders.pipeline.idempotency import isolated_session, transaction_id
from cqrs_orders.pipeline.read_models import READ_MODELS
from cqrs_orders.pipeline.tables import Table, table

#: MERGE update rule: the incoming row wins on a higher version, or on the same version with a smaller
#: event id (a conflict; keeps the outcome independent of arrival order). Equal ids: a duplicate, no-op.
WINS = "s.version > t.version OR (s.version = t.version AND s.last_event_id < t.last_event_id)"


def latest_per_aggregate(bronze: DataFrame, aggregate_type: str) -> DataFrame:
    """The winning bronze row per aggregate of ``aggregate_type`` (highest version, then smallest id)."""
    ranked = Window.partitionBy("aggregate_id").orderBy(F.col("version").desc(), F.col("event_id").asc())
    return (
        bronze.where(F.col("aggregate_type") == aggregate_type)
        .withColumn("_rank", F.row_number().over(ranked))
        .where("_rank = 1")
        .drop("_rank")
    )


def event_history_rows(bronze: DataFrame) -> DataFrame:
    """One ``silver_event_history`` row per event id: its first arrival (earliest ingest, then position).

    ``version_conflict`` starts false; :func:`write_event_history` sets it against the whole history.
    """
    first = Window.partitionBy("event_id").orderBy("ingest_time", "partition", "offset")
    return (
        bronze.withColumn("_rank", F.row_number().over(first))
        .where("_rank = 1")
        .select(
            "event_id",
            "event_type",
            "aggregate_type",
            "aggregate_id",
            "version",
            "event_time",
            "correlation_id",
            "causation_id",
            F.col("partition").alias("source_partition"),
            F.col("offset").alias("source_offset"),
            "ingest_time",
            F.lit(False).alias("version_conflict"),
        )
    )


#: What one event version is: two different events with the same key are a conflict.
VERSION_KEY = ("aggregate_type", "aggregate_id", "version")


def claims_per_version(events: DataFrame, *more: Column) -> DataFrame:
    """Per :data:`VERSION_KEY`: whether more than one distinct event claims it (``contested``), and ``more``
    aggregates. Told by min < max of the event ids: one plain aggregation, where a distinct count costs
    Spark an extra shuffle."""
    contested = F.min("event_id") < F.max("event_id")
    return events.groupBy(*VERSION_KEY).agg(contested.alias("contested"), *more)


def conflicting_versions(history: DataFrame) -> DataFrame:
    """The :data:`VERSION_KEY` values claimed by more than one distinct event."""
    return claims_per_version(history).where("contested").drop("contested")


#: Delta copies a MERGE source first unless told otherwise. Ours is a local checkpoint of the micro-batch:
#: computed once, the same rows on every read and not a cached plan (which Delta would insist on copying).
MATERIALIZE_SOURCE = "spark.databricks.delta.merge.materializeSource"


@dataclass(frozen=True)
class Slice:
    """The range of aggregate ids in one aggregate type's part of a batch (present when the part is)."""

    first_id: str
    last_id: str

    @staticmethod
    def metrics(aggregate_type: Column, aggregate_id: Column, included: Column) -> list[Column]:
        """Aggregates giving a :class:`Slice` per aggregate type over the ``included`` rows: one row for
        a whole batch, from an aggregation or observed (``DataFrame.observe``) in a job it runs anyway."""
        columns = []
        for kind in AggregateType:
            ids = F.when(included & (aggregate_type == kind.value), aggregate_id)
            columns += [F.min(ids).alias(f"{kind.value}_first_id"), F.max(ids).alias(f"{kind.value}_last_id")]
        return columns

    @classmethod
    def from_metrics(cls, metrics: dict) -> dict[str, Slice]:
        """Aggregate type -> :class:`Slice` from the row of :meth:`metrics` (types without rows left out)."""
        bounds = {
            kind.value: (metrics[f"{kind.value}_first_id"], metrics[f"{kind.value}_last_id"])
            for kind in AggregateType
        }
        return {kind: cls(first, last) for kind, (first, last) in bounds.items() if first is not None}

    @classmethod
    def spanning(cls, slices: Iterable[Slice]) -> Slice:
        """One slice covering ``slices`` (the whole batch, whatever the aggregate types)."""
        slices = list(slices)
        return cls(min(s.first_id for s in slices), max(s.last_id for s in slices))


def batch_slices(batch: DataFrame) -> dict[str, Slice]:
    """Aggregate type -> :class:`Slice` of a batch of ``bronze_events`` rows."""
    every_row = F.lit(True)
    row = batch.agg(*Slice.metrics(F.col("aggregate_type"), F.col("aggregate_id"), every_row)).first()
    return Slice.from_metrics(row.asDict())


def apply_batch(
    batch: DataFrame,
    batch_id: int,
    settings: Settings,
    writer_id: str,
    *,
    checkpointed: bool = False,
    slices: dict[str, Slice] | None = None,
) -> dict[str, Slice]:
    """Project one micro-batch of ``bronze_events`` rows into every read model (:data:`READ_MODELS`) and
    the event history, exactly once.

    ``checkpointed``: the caller already made ``batch`` a local checkpoint. ``slices``: the batch's
    :func:`batch_slices`, when the caller already has them (saves a Spark job). Returns the slices."""
    session = batch.sparkSession
    if not checkpointed:
        batch = batch.localCheckpoint()
    previous = session.conf.get(MATERIALIZE_SOURCE, None)
    session.conf.set(MATERIALIZE_SOURCE, "none")
    try:
        slices = batch_slices(batch) if slices is None else slices
        if not slices:
            return slices
        merges = [
            partial(_merge_read_model, model, batch, batch_id, settings, writer_id, ids)
            for model in READ_MODELS
            if (ids := slices.get(model.aggregate_type.value)) is not None
        ]
        running = [_MERGES.submit(merge) for merge in merges] if PARALLEL_MERGES else []
        try:
            if not PARALLEL_MERGES:
                for merge in merges:
                    merge()
            with (
                transaction_id(session, writer_id, "silver_event_history", batch_id),
                profile.step("history"),
            ):
                history = table(settings, "silver_event_history")
                write_event_history(session, history, batch, Slice.spanning(slices.values()))
        finally:
            with profile.step("wait for read-model MERGEs"):
                for future in running:
                    future.result()
        return slices
    finally:
        if previous is None:
            session.conf.unset(MATERIALIZE_SOURCE)
        else:
            session.conf.set(MATERIALIZE_SOURCE, previous)


#: Whether the read models' MERGEs run beside the history write, each on a thread and in a Spark session of
#: its own (a MERGE takes its transaction id from session confs, so two at once cannot share a session).
PARALLEL_MERGES = True
_MERGES = ThreadPoolExecutor(max_workers=len(READ_MODELS), thread_name_prefix="read-model-merge")
_sessions: dict[str, object] = {}
_sessions_guard = threading.Lock()


def _merge_read_model(
    model, batch: DataFrame, batch_id: int, settings: Settings, writer_id: str, ids
) -> None:
    session = _writer_session(batch.sparkSession, model.table) if PARALLEL_MERGES else batch.sparkSession
    latest = model.project(latest_per_aggregate(batch, model.aggregate_type.value))
    with transaction_id(session, writer_id, model.table, batch_id), profile.step(f"MERGE {model.table}"):
        merge_latest(session, table(settings, model.table), latest, model.key, ids)


def _writer_session(session, name: str):
    """The session ``name``'s writes use, one per name for the life of the process (its confs its own)."""
    with _sessions_guard:
        writer = _sessions.get(name)
        if writer is None or writer.sparkContext is not session.sparkContext:
            writer = isolated_session(session)
            writer.conf.set(MATERIALIZE_SOURCE, "none")
            _sessions[name] = writer
        return writer


def merge_latest(session, table: Table, latest: DataFrame, key: str, ids: Slice | None = None) -> None:
    """Upsert ``latest`` (one row per key) where the incoming event wins (:data:`WINS`).

    ``ids``, the range of the incoming keys, bounds the target rows the MERGE looks at: Delta then skips
    the files whose key statistics lie outside it, so a batch of recent aggregates reads recent files only.
    """
    condition = F.col(f"t.{key}") == F.col(f"s.{key}")
    if ids is not None:
        condition = condition & F.col(f"t.{key}").between(F.lit(ids.first_id), F.lit(ids.last_id))
    (
        table.delta(session)
        .alias("t")
        .merge(latest.alias("s"), condition)
        .whenMatchedUpdateAll(condition=WINS)
        .whenNotMatchedInsertAll()
        .execute()
    )


def write_event_history(session, history: Table, batch: DataFrame, ids: Slice | None = None) -> None:
    """Add the events of ``batch`` (``bronze_events`` rows) the history does not hold yet and flag version
    conflicts, in one write.

    The history rows that matter share an (aggregate, version) with the batch: they hold both the batch's
    duplicates (an event's copies share its version) and its rivals. ONE job reads them (``ids``, the
    batch's aggregate id range, lets Delta skip the files outside it) and tells whether any exist and
    which versions are in conflict (claimed by more than one distinct event, counting the history and the
    batch). That job reads the batch as it came, copies and all (they change no claim), so only the write
    pays for :func:`event_history_rows`' deduplication. The usual case is then a plain append. With a
    conflict, one MERGE inserts and flags together, so a crash cannot leave new events in without their
    flags. Replays change nothing: the caller's transaction id makes Delta skip a write it already committed.
    """
    keys = list(VERSION_KEY)
    new_events = event_history_rows(batch)
    stored = history.read(session)
    if ids is not None:
        stored = stored.where(F.col("aggregate_id").between(F.lit(ids.first_id), F.lit(ids.last_id)))
    stored = stored.join(batch.select(*keys).distinct(), keys, "left_semi")
    claims = stored.select("event_id", *keys, F.lit(True).alias("stored")).unionByName(
        batch.select("event_id", *keys, F.lit(False).alias("stored"))
    )
    summary = (
        claims_per_version(claims, F.max("stored").alias("stored"))
        .agg(
            F.max("stored").alias("any_stored"),
            F.collect_list(F.when(F.col("contested"), F.struct(*keys))).alias("conflicts"),
        )
        .first()
    )
    fresh = (
        new_events.join(stored.select("event_id"), "event_id", "left_anti")
        if summary["any_stored"]
        else new_events
    )
    if not summary["conflicts"]:
        history.save(fresh.write.format("delta").mode("append"))
        return
    conflicting = session.createDataFrame(summary["conflicts"], stored.select(*keys).schema)
    incoming = fresh.drop("version_conflict").join(
        conflicting.withColumn("version_conflict", F.lit(True)), keys, "left"
    )
    incoming = incoming.withColumn("version_conflict", F.coalesce("version_conflict", F.lit(False)))
    to_flag = (
        stored.where(~F.col("version_conflict"))
        .join(conflicting, keys, "left_semi")
        .withColumn("version_conflict", F.lit(True))
    )
    (
        history.delta(session)
        .alias("t")
        .merge(incoming.unionByName(to_flag).alias("s"), "t.event_id = s.event_id")
        .whenMatchedUpdate(
            condition="s.version_conflict AND NOT t.version_conflict", set={"version_conflict": "true"}
        )
        .whenNotMatchedInsertAll()
        .execute()
    )
