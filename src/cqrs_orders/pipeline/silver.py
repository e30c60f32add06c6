"""Silver: the read models. Latest state: one row per aggregate, highest version wins; aggregations: rows
on any key, kept exact by adding each batch's change.

Every event carries its aggregate's full state, so a projection needs only the winning event per aggregate,
never the order of arrival. The winner is the highest version; between two *different* events claiming the
same version (a conflict, flagged in the event history: :mod:`.history`) the smaller event id wins, so the
result is the same whatever the batching, the arrival order or a rebuild. Duplicates change nothing.

A batch is first collapsed to one row per aggregate (a MERGE with two source rows for one target row
fails), then merged with "update only when the incoming event wins". Each write runs under a Delta
transaction id (:mod:`.idempotency`), so a batch replayed after a crash changes nothing either.

An aggregation over a latest-state read model (:func:`merge_aggregate`) adds, per key, the contributions
of the batch's rows that win against the source table minus the contributions of the rows they replace.
It is read against the source table *before* the source's MERGE of the same batch, and both writes carry
their own transaction id: a replay after the aggregation's write skips it (its id is recorded) and then
writes the source; a replay before it recomputes the same change from the unchanged source. Hence the
order: in each batch, a read model's aggregations are merged first, then the read model itself.

Writes to unrelated tables are not serialised: each chain (aggregations, then their source) runs on a
thread of its own, in a Spark session of its own per table (the transaction id is a session conf). The
read models come from :data:`~.read_models.READ_MODELS`.
"""

from __future__ import annotations

import operator
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table, table
from cqrs_orders.envelope import AggregateType
from cqrs_orders.pipeline import profile
from cqrs_orders.pipeline.batch_rows import release
from cqrs_orders.pipeline.idempotency import transaction_id
from cqrs_orders.pipeline.read_models import LATEST_STATE_MODELS, ReadModel, derived_from
from cqrs_orders.pipeline.sessions import isolated_session

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
    """Project one micro-batch of ``bronze_events`` rows into every read model
    (:data:`~.read_models.READ_MODELS`), exactly once.

    ``checkpointed``: the caller already made ``batch`` a local checkpoint. ``slices``: the batch's
    :func:`batch_slices`, when the caller already has them (saves a Spark job). Returns the slices."""
    own = None if checkpointed else batch.localCheckpoint()
    batch = batch if own is None else own
    running = []
    try:
        slices = batch_slices(batch) if slices is None else slices
        running = [
            _MERGES.submit(_merge_read_model, model, batch, batch_id, settings, writer_id, ids)
            for model in LATEST_STATE_MODELS
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
_MERGES = ThreadPoolExecutor(max_workers=len(LATEST_STATE_MODELS), thread_name_prefix="read-model-merge")
_sessions: dict[str, object] = {}
_sessions_guard = threading.Lock()


def _merge_read_model(
    model: ReadModel, batch: DataFrame, batch_id: int, settings: Settings, writer_id: str, ids: Slice
) -> None:
    """The batch into ``model``'s aggregations (first: see the module docstring), then into ``model``."""
    session = _writer_session(batch.sparkSession, model.table)
    with profile.step(f"project {model.table}"):
        # Stored before the MERGEs, which read their source twice (to find the files they touch, then to
        # write): the winners are ranked and parsed once.
        latest = model.project(latest_per_aggregate(batch, model.aggregate_type.value)).localCheckpoint()
    try:
        for derived in derived_from(model):
            derived_session = _writer_session(batch.sparkSession, derived.table)
            step = profile.step(f"MERGE {derived.table}")
            with step, transaction_id(derived_session, writer_id, derived.table, batch_id):
                merge_aggregate(derived_session, settings, derived, latest, ids)
        step = profile.step(f"MERGE {model.table}")
        with step, transaction_id(session, writer_id, model.table, batch_id):
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


def merge_latest(
    session, table: Table, latest: DataFrame, key: tuple[str, ...], ids: Slice | None = None
) -> None:
    """Upsert ``latest`` (one row per aggregate) where the incoming event wins (:data:`WINS`).

    ``ids``, the range of the incoming aggregate ids, bounds the target rows the MERGE looks at: Delta then
    skips the files whose key statistics lie outside it, so a batch of recent aggregates reads recent files
    only.
    """
    (id_column,) = key
    condition = F.col(f"t.{id_column}") == F.col(f"s.{id_column}")
    if ids is not None:
        condition = condition & F.col(f"t.{id_column}").between(F.lit(ids.first_id), F.lit(ids.last_id))
    (
        table.delta(session)
        .alias("t")
        .merge(latest.alias("s"), condition)
        .whenMatchedUpdateAll(condition=WINS)
        .whenNotMatchedInsertAll()
        .execute()
    )


def replaced_rows(session, source: Table, latest: DataFrame, key: tuple[str, ...], ids: Slice | None):
    """The rows of ``latest`` that win against the ``source`` table (what its MERGE will write), and the
    source rows they replace (what it will overwrite): by the same rule as :func:`merge_latest`."""
    (id_column,) = key
    current = source.delta(session).toDF()
    if ids is not None:
        current = current.where(F.col(id_column).between(F.lit(ids.first_id), F.lit(ids.last_id)))
    current = current.join(latest.select(id_column), id_column, "left_semi")
    matched = latest.alias("s").join(
        current.alias("t"), F.col(f"s.{id_column}") == F.col(f"t.{id_column}"), "left"
    )
    winning_ids = matched.where(F.col(f"t.{id_column}").isNull() | F.expr(WINS)).select(f"s.{id_column}")
    incoming = latest.join(winning_ids, id_column, "left_semi")
    replaced = current.join(winning_ids, id_column, "left_semi")
    return incoming, replaced


#: Tells the two sides of a batch's change apart: a new winner's contribution (true) or a replaced one's.
_SIDE = "_incoming"


def merge_aggregate(
    session, settings: Settings, model: ReadModel, latest: DataFrame, ids: Slice | None = None
) -> None:
    """Add to ``model`` (an aggregation) what this batch's ``latest`` rows change in its source.

    Per key, sums get the incoming contributions minus the replaced ones, and a key whose count of
    contributions (:attr:`~.read_models.Aggregation.count`) falls to zero is deleted. A maximum only grows
    by adding, so it takes the greater of the stored and the incoming value, except where a replaced
    contribution leaves a key without an incoming one as high for the same source row: that one may have
    held the maximum, so those keys' maxima are recomputed from the source as it will be after this batch
    (its rows but the replaced ones, plus the incoming ones). That recompute reads the whole source, once
    per batch that takes a contribution away (an item removed, an order cancelled); other batches read
    only their own aggregates' rows.
    """
    aggregation = model.aggregation
    source_model = aggregation.source
    source = table(settings, source_model.table)
    incoming, replaced = replaced_rows(session, source, latest, source_model.key, ids)
    sums = [m.name for m in aggregation.measures if m.how == "sum"]
    maxima = [m.name for m in aggregation.measures if m.how == "max"]
    key, source_key = list(model.key), list(source_model.key)
    # Both sides of the change in one stored frame: one Spark job reads the source's rows for this batch.
    sides = (
        aggregation.contribution(incoming)
        .withColumn(_SIDE, F.lit(True))
        .unionByName(aggregation.contribution(replaced).withColumn(_SIDE, F.lit(False)))
        .localCheckpoint()
    )
    added, removed = sides.where(F.col(_SIDE)).drop(_SIDE), sides.where(~F.col(_SIDE)).drop(_SIDE)
    stored = [sides]
    try:
        signed = added.select(*key, *sums, *maxima).unionByName(
            removed.select(
                *key,
                *[(-F.col(m)).alias(m) for m in sums],
                *[F.lit(None).cast(removed.schema[m].dataType).alias(m) for m in maxima],
            )
        )
        change = signed.groupBy(*key).agg(
            *[F.sum(m).alias(m) for m in sums], *[F.max(m).alias(m) for m in maxima]
        )
        recount = _keys_losing_a_maximum(added, removed, source_key, key, maxima)
        if recount is not None:
            after = source.delta(session).toDF().join(incoming.select(*source_key), source_key, "left_anti")
            after = after.unionByName(incoming.select(*after.columns))
            recomputed = (
                aggregation.contribution(after)
                .join(recount, key, "left_semi")
                .groupBy(*key)
                .agg(*[F.max(m).alias(f"_recomputed_{m}") for m in maxima])
            )
            marks = recount.withColumn("_recompute", F.lit(True)).join(recomputed, key, "left")
            # Stored: it read the whole source, which the MERGE would otherwise read twice.
            change = change.join(marks, key, "left").localCheckpoint()
            stored.append(change)
        else:
            change = change.select(
                "*",
                F.lit(None).cast("boolean").alias("_recompute"),
                *[F.lit(None).cast(added.schema[m].dataType).alias(f"_recomputed_{m}") for m in maxima],
            )  # computed from the stored sides alone: cheap to read twice
        change = change.withColumn("projected_at", F.current_timestamp())
        _merge_change(table(settings, model.table).delta(session), change, model, sums, maxima)
    finally:
        for frame in stored:
            release(frame)


def _keys_losing_a_maximum(
    added: DataFrame, removed: DataFrame, source_key: list[str], key: list[str], maxima: list[str]
) -> DataFrame | None:
    """The keys where a replaced contribution has no incoming one as high for the same source row (its
    maximum may be gone), or ``None`` when there are none."""
    if not maxima:
        return None
    kept = added.select(*source_key, *key, *[F.col(m).alias(f"_kept_{m}") for m in maxima])
    lower = [F.col(f"_kept_{m}").isNull() | (F.col(f"_kept_{m}") < F.col(m)) for m in maxima]
    leaving = removed.join(kept, [*source_key, *key], "left").where(reduce(operator.or_, lower))
    keys = leaving.select(*key).distinct().collect()  # a few keys: those one batch takes away from
    if not keys:
        return None
    return removed.sparkSession.createDataFrame(keys, removed.select(*key).schema)


def _merge_change(target, change: DataFrame, model: ReadModel, sums: list[str], maxima: list[str]) -> None:
    """MERGE a batch's change per key (:func:`merge_aggregate`) into the aggregation's table."""
    count = model.aggregation.count

    def maximum(m: str, stored: str | None) -> str:
        grown = f"s.{m}" if stored is None else f"greatest({stored}, s.{m})"
        return f"CASE WHEN s._recompute THEN s._recomputed_{m} ELSE {grown} END"

    types = {f.name: f.dataType.simpleString() for f in model.columns.fields}
    updated = {
        **{m: f"CAST(t.{m} + coalesce(s.{m}, 0) AS {types[m]})" for m in sums},
        **{m: maximum(m, f"t.{m}") for m in maxima},
        "projected_at": "s.projected_at",
    }
    inserted = {
        **{k: f"s.{k}" for k in model.key},
        **{m: f"CAST(s.{m} AS {types[m]})" for m in sums},
        **{m: maximum(m, None) for m in maxima},
        "projected_at": "s.projected_at",
    }
    changed = " OR ".join(
        [*(f"coalesce(s.{m}, 0) <> 0" for m in sums), "s._recompute", *(f"s.{m} > t.{m}" for m in maxima)]
    )
    condition = " AND ".join(f"t.{k} = s.{k}" for k in model.key)
    (
        target.alias("t")
        .merge(change.alias("s"), condition)
        .whenMatchedDelete(condition=f"t.{count} + coalesce(s.{count}, 0) = 0")
        .whenMatchedUpdate(condition=changed, set=updated)
        .whenNotMatchedInsert(condition=f"s.{count} > 0", values=inserted)
        .execute()
    )
