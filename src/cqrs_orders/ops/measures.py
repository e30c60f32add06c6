"""The lag monitor's measures as pure functions over DataFrames (tests call them on hand-made tables).

Every function takes the DataFrames it needs and returns a small DataFrame or a number; none reads or
writes a table, so the same code measures a local warehouse, Unity Catalog tables or test fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def bus_event_times(records: DataFrame, quarantine: DataFrame) -> DataFrame:
    """Per aggregate type, the newest and oldest event time of the raw records on the bus.

    The event time is read straight from the JSON body, so records not yet ingested count too. Records
    that bronze quarantined are left out: they will never reach a read model, and counting them would
    show a lag that no projection can ever close.
    """
    usable = records.join(quarantine.select("partition", "offset"), ["partition", "offset"], "left_anti")
    parsed = usable.select(
        F.get_json_object("body", "$.aggregateType").alias("aggregate_type"),
        F.try_to_timestamp(F.get_json_object("body", "$.timestamp")).alias("event_time"),
    ).where(F.col("aggregate_type").isNotNull() & F.col("event_time").isNotNull())
    return parsed.groupBy("aggregate_type").agg(
        F.max("event_time").alias("newest_event_time"), F.min("event_time").alias("oldest_event_time")
    )


def bronze_event_times(bronze: DataFrame) -> DataFrame:
    """Per aggregate type, the newest and oldest event time in bronze: on Kafka, the part of the bus the
    projection has read (the unread part is sampled off the bus itself: :func:`with_events`)."""
    return bronze.groupBy("aggregate_type").agg(
        F.max("event_time").alias("newest_event_time"), F.min("event_time").alias("oldest_event_time")
    )


def with_events(event_times: DataFrame, events: Sequence[tuple[str, datetime]]) -> DataFrame:
    """``event_times`` (per aggregate type, newest and oldest) widened by more events, given as
    (aggregate type, event time): on Kafka, the unread records sampled off the bus."""
    if not events:
        return event_times
    extra = event_times.sparkSession.createDataFrame(
        [(kind, at, at) for kind, at in events],
        "aggregate_type string, newest_event_time timestamp, oldest_event_time timestamp",
    )
    return (
        event_times.unionByName(extra)
        .groupBy("aggregate_type")
        .agg(
            F.max("newest_event_time").alias("newest_event_time"),
            F.min("oldest_event_time").alias("oldest_event_time"),
        )
    )


def ingested_next_offsets(bronze: DataFrame, quarantine: DataFrame) -> DataFrame:
    """Per source partition, the offset after the last record that reached bronze or quarantine."""
    positions = bronze.select("partition", "offset").unionByName(quarantine.select("partition", "offset"))
    return positions.groupBy("partition").agg((F.max("offset") + 1).alias("next_offset"))


def ingested_counts(bronze: DataFrame, quarantine: DataFrame) -> DataFrame:
    """Per source partition, how many records reached bronze or quarantine, as ``next_offset``: what
    :func:`ingested_next_offsets` says on a bus read in offset order whose offsets start at 0 without holes
    (the embedded log), and still true when the log was read out of order. A new stream starts from the
    log's current files in the order they were written, compacted ones last, so a bounded catch-up may have
    ingested a later record of a partition before an earlier one."""
    positions = bronze.select("partition", "offset").unionByName(quarantine.select("partition", "offset"))
    return positions.groupBy("partition").agg(F.count_distinct("offset").alias("next_offset"))


def bus_backlog(end_offsets: Mapping[int, int], ingested: Mapping[int, int]) -> int:
    """Records on the bus not yet in bronze: per partition, the end offset minus the next ingested one."""
    return sum(max(0, end - ingested.get(partition, 0)) for partition, end in end_offsets.items())


def unapplied_events(bronze: DataFrame, silver: DataFrame, aggregate_type: str, id_column: str) -> DataFrame:
    """Bronze events of one aggregate type that the read model has not applied yet.

    An event is applied once the read model holds its aggregate at that version or a higher one (silver
    keeps only the highest version), so pending = version above the silver row's, or no silver row at all.
    Duplicates in bronze count once: the result has one row per distinct (aggregate_id, version).
    """
    events = (
        bronze.where(F.col("aggregate_type") == aggregate_type).select("aggregate_id", "version").distinct()
    )
    applied = silver.select(F.col(id_column).alias("aggregate_id"), F.col("version").alias("applied_version"))
    return (
        events.join(applied, "aggregate_id", "left")
        .where(F.col("applied_version").isNull() | (F.col("version") > F.col("applied_version")))
        .select("aggregate_id", "version")
    )


def version_gaps(events: DataFrame, accepted: DataFrame | None = None) -> DataFrame:
    """Aggregates whose events skip a version (a sign of a lost event), one row each; ``events`` are
    ``bronze_events`` rows or the event history (redeliveries count once either way).

    Versions start at 1 and grow by one per event, so an aggregate with highest version ``n`` must have
    ``n`` distinct versions; ``missing`` is how many it lacks.

    ``accepted``: versions acknowledged as lost (``ops_quarantine_acknowledgements``: ``aggregate_type``,
    ``aggregate_id``, ``version``). Each fills the hole it names and nothing more: only below the highest
    version in ``events`` (an acknowledgement can close a gap, never open one) and only while that version
    is absent from ``events`` (one replayed later must not hide another gap). Without them the figures
    are those of ``events`` alone.
    """
    keys = ["aggregate_type", "aggregate_id"]
    per_aggregate = events.groupBy(*keys).agg(
        F.max("version").alias("max_version"), F.countDistinct("version").alias("distinct_versions")
    )
    missing = F.col("max_version") - F.col("distinct_versions")
    if accepted is not None:
        # Acknowledgements are a handful of rows: broadcast, they pick the few aggregates to look at.
        acknowledged = F.broadcast(accepted.select(*keys, "version").where(F.col("version").isNotNull()))
        present = events.join(F.broadcast(acknowledged.select(*keys).distinct()), keys, "left_semi")
        filled = (
            acknowledged.distinct()
            .join(present.select(*keys, "version"), [*keys, "version"], "left_anti")
            .join(per_aggregate.select(*keys, "max_version"), keys)
            .where(F.col("version").between(F.lit(1), F.col("max_version")))
            .groupBy(*keys)
            .agg(F.count(F.lit(1)).alias("_accepted"))
        )
        per_aggregate = per_aggregate.join(filled, keys, "left")
        missing = missing - F.coalesce(F.col("_accepted"), F.lit(0))
    return (
        per_aggregate.withColumn("missing", missing)
        .where(F.col("missing") > 0)
        .select(*keys, "max_version", "distinct_versions", "missing")
    )


def last_batch_time(progress: DataFrame) -> DataFrame:
    """The newest ``recorded_at`` (epoch microseconds) of the projection's progress rows."""
    return progress.agg(F.unix_micros(F.max("recorded_at")).alias("last_batch_at"))


def latest_source_offsets(progress_json: str | None, topic: str | None = None) -> dict[int, int]:
    """Kafka's end offsets per partition from a progress row's ``source_latest_offset`` JSON
    (``{"topic": {"0": 12, "1": 7}}``); ``{}`` when unknown. Only ``topic`` is used when given."""
    if not progress_json:
        return {}
    parsed = json.loads(progress_json)
    if not isinstance(parsed, dict):
        return {}
    offsets: dict[int, int] = {}
    for name, partitions in parsed.items():
        if (topic is None or name == topic) and isinstance(partitions, dict):
            for partition, offset in partitions.items():
                offsets[int(partition)] = offsets.get(int(partition), 0) + int(offset)
    return offsets
