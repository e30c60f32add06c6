"""Silver: the read models, one row per aggregate, highest version wins.

Every event carries its aggregate's full state, so a projection needs only the winning event per aggregate,
never the order of arrival. The winner is the highest version; between two *different* events claiming the
same version (a conflict, flagged in the event history: :mod:`.history`) the smaller event id wins, so the
result is the same whatever the batching, the arrival order or a rebuild. Duplicates change nothing.

A batch is first collapsed to one row per aggregate (a MERGE with two source rows for one target row
fails), then merged with "update only when the incoming event wins". Each write runs under a Delta
transaction id (:mod:`.idempotency`), so a batch replayed after a crash changes nothing either.

The writes of a batch are independent tables, so they are not serialised: each read model's MERGE runs on
a thread of its own, in a Spark session of its own (the transaction id is a session conf). The read models
come from :data:`~.read_models.READ_MODELS`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table, table
from cqrs_orders.envelope import AggregateType
from cqrs_orders.pipeline import profile
from cqrs_orders.pipeline.batch_rows import release
from cqrs_orders.pipeline.idempotency import isolated_session, transaction_id
from cqrs_orders.pipeline.read_models import READ_MODELS

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
    """Project one micro-batch of ``bronze_events`` rows into every read model (:data:`READ_MODELS`),
    exactly once.

    ``checkpointed``: the caller already made ``batch`` a local checkpoint. ``slices``: the batch's
    :func:`batch_slices`, when the caller already has them (saves a Spark job). Returns the slices."""
    own = None if checkpointed else batch.localCheckpoint()
    batch = batch if own is None else own
    running = []
    try:
        slices = batch_slices(batch) if slices is None else slices
        running = [
            _MERGES.submit(_merge_read_model, model, batch, batch_id, settings, writer_id, ids)
            for model in READ_MODELS
            if (ids := slices.get(model.aggregate_type.value)) is not None
        ]
    finally:
        with profile.step("wait for read-model MERGEs"):
            wait(running)  # all of them, failed or not: then none reads the batch any more
        if own is not None:
            release(own)
    for future in running:
        future.result()  # a MERGE's failure fails the batch
    return slices


#: The read models' MERGEs run side by side, each on a thread and in a Spark session of its own (a MERGE
#: takes its transaction id from session confs, so two at once cannot share a session).
_MERGES = ThreadPoolExecutor(max_workers=len(READ_MODELS), thread_name_prefix="read-model-merge")
_sessions: dict[str, object] = {}
_sessions_guard = threading.Lock()


def _merge_read_model(
    model, batch: DataFrame, batch_id: int, settings: Settings, writer_id: str, ids
) -> None:
    session = _writer_session(batch.sparkSession, model.table)
    with profile.step(f"MERGE {model.table}"):
        # The winners are stored before the MERGE, which reads its source twice (to find the files it
        # touches, then to write): ranked once, 1,000,000 events merged in ~3.5 s instead of ~4.5 s.
        latest = model.project(latest_per_aggregate(batch, model.aggregate_type.value)).localCheckpoint()
        try:
            with transaction_id(session, writer_id, model.table, batch_id):
                merge_latest(session, table(settings, model.table), latest, model.key, ids)
        finally:
            release(latest)


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
