"""The projection lag monitor: how far each read model is behind the event bus, and whether that is too far.

Per read model (each of :data:`~cqrs_orders.pipeline.read_models.READ_MODELS`) it measures:

- **outbox lag** (:mod:`.outbox`): committed events the relay has not published yet, and how long the
  oldest has waited (``outbox_unpublished``, ``outbox_oldest_age_seconds``; upstream of every read model,
  so each row carries the same figures, ``null`` when there is no write store to measure).
- **event-time lag**: newest event time on the bus minus the newest event time applied to the read model
  (the seed note's measure). With nothing applied yet it is how long the oldest waiting event has waited.
- **backlog**: records on the bus not yet in bronze (``bus_backlog``; the bus is untyped until bronze
  parses it, so both rows carry the same figure) and bronze events not yet applied to the read model
  (``bronze_backlog``).

Where "the bus" is read from depends on the source, and never on the projection's own progress alone (a
stopped projection would freeze it): the embedded event log is a Delta table read whole (:mod:`.measures`);
Kafka / Event Hubs is asked by a consumer without a group (:mod:`.bus`) for its offsets and the unread
records at both ends of each partition, against the position the projection's checkpoint reached.
- **staleness**: wall-clock time since the projection's last batch (``ops_stream_progress``), or since the
  read model's newest ``projected_at`` when no progress was recorded.
- **version gaps**: aggregates whose versions in the event history skip a number (a lost event); measured
  on ``bronze_events``, which the history view (``silver_event_history``) deduplicates: the same versions.
  A version acknowledged as lost (``cqrs-orders quarantine acknowledge``) is no gap any more.

A measure is a *breach* when:

- ``event_time_lag``: the event-time lag is over the threshold;
- ``staleness``: staleness is over the threshold **and** work is waiting (a backlog). A stream runs no
  batch when nothing arrives, so an idle bus is not a stale projection;
- ``bus_backlog`` / ``bronze_backlog``: that backlog is non-zero while the lag or staleness is breached
  (a backlog alone is normal between two micro-batches; it names which stage is stuck);
- ``version_gaps``: any gap at all;
- ``outbox_lag``: the oldest unpublished event has waited past the threshold (the relay is not
  publishing), or the write store could not be read;
- ``bus_unreadable`` / ``bus_data_lost`` (Kafka): the bus did not answer, or it no longer holds records the
  projection has not read (:mod:`.bus`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table
from cqrs_orders.ops import measures
from cqrs_orders.ops.bus import BusMeasure, measure_kafka_bus
from cqrs_orders.ops.outbox import BREACH as OUTBOX_BREACH
from cqrs_orders.ops.outbox import OutboxMeasure, measure_outbox
from cqrs_orders.pipeline.read_models import READ_MODELS, ReadModel
from cqrs_orders.pipeline.tables import SCHEMAS, ensure_table

LAG_TABLE = "ops_projection_lag"
#: Its columns: declared with every other table's (:data:`~cqrs_orders.pipeline.tables.SCHEMAS`).
LAG_SCHEMA = SCHEMAS[LAG_TABLE]
#: What is measured: every read model, as declared once in the pipeline. A derived one is written in the
#: same batch as the read model it derives from, just before it, so it is measured by that one's progress
#: (:attr:`~cqrs_orders.pipeline.read_models.ReadModel.applied_by`).
PROJECTIONS = READ_MODELS

# The columns the monitor reads from each table; a missing table reads as empty with these columns.
_BRONZE = StructType(
    [
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("aggregate_type", StringType()),
        StructField("aggregate_id", StringType()),
        StructField("version", LongType()),
        StructField("event_time", TimestampType()),
    ]
)
_QUARANTINE = StructType([StructField("partition", IntegerType()), StructField("offset", LongType())])
_ACKNOWLEDGED = StructType(
    [
        StructField("aggregate_type", StringType()),
        StructField("aggregate_id", StringType()),
        StructField("version", LongType()),
    ]
)
_RECORDS = StructType([*_QUARANTINE.fields, StructField("body", StringType())])
_PROGRESS = StructType(
    [
        StructField("query_name", StringType()),
        StructField("source_end_offset", StringType()),
        StructField("recorded_at", TimestampType()),
    ]
)


def _silver_schema(id_column: str) -> StructType:
    return StructType(
        [
            StructField(id_column, StringType()),
            StructField("version", LongType()),
            StructField("last_event_time", TimestampType()),
            StructField("projected_at", TimestampType()),
        ]
    )


#: The columns the monitor reads, per table (a test holds them against the pipeline's table schemas).
COLUMNS_READ = {
    "bronze_events": _BRONZE,
    "bronze_quarantine": _QUARANTINE,
    "ops_stream_progress": _PROGRESS,
    "ops_quarantine_acknowledgements": _ACKNOWLEDGED,
    **{p.applied_by.table: _silver_schema(*p.applied_by.key) for p in PROJECTIONS},
}


@dataclass(frozen=True)
class ProjectionLag:
    """One projection's measures; one row of ``ops_projection_lag``."""

    projection: str
    event_time_lag_seconds: float
    bus_backlog: int | None  # None: the bus's end offsets are not known (Kafka: the bus did not answer)
    bronze_backlog: int
    staleness_seconds: float | None  # None: the projection never ran
    version_gaps: int
    threshold_seconds: float
    breaches: tuple[str, ...]
    outbox_unpublished: int | None = None  # None: not measured (see the module docstring)
    outbox_oldest_age_seconds: float | None = None  # None: nothing waits, or not measured

    @property
    def healthy(self) -> bool:
        return not self.breaches


def find_breaches(
    event_time_lag: float,
    bus_backlog: int | None,
    bronze_backlog: int,
    staleness: float | None,
    gaps: int,
    threshold: float,
) -> tuple[str, ...]:
    """Which measures are past their threshold (the rules are in the module docstring)."""
    late = event_time_lag > threshold
    stuck = staleness is not None and staleness > threshold and ((bus_backlog or 0) + bronze_backlog) > 0
    found = []
    if late:
        found.append("event_time_lag")
    if stuck:
        found.append("staleness")
    if (late or stuck) and bus_backlog:
        found.append("bus_backlog")
    if (late or stuck) and bronze_backlog:
        found.append("bronze_backlog")
    if gaps:
        found.append("version_gaps")
    return tuple(found)


@dataclass(frozen=True)
class LagReport:
    run_at: datetime
    threshold_seconds: float
    projections: tuple[ProjectionLag, ...]
    outbox: OutboxMeasure | None = None  # None: no write store here to measure
    bus: BusMeasure | None = None  # None: the embedded event log (measured in Spark, no figures of its own)

    @property
    def healthy(self) -> bool:
        return all(p.healthy for p in self.projections)

    def rows(self) -> list[dict]:
        return [{"run_at": self.run_at, **asdict(p), "healthy": p.healthy} for p in self.projections]

    def to_json(self) -> str:
        projections = [
            {**asdict(p), "breaches": list(p.breaches), "healthy": p.healthy} for p in self.projections
        ]
        return json.dumps(
            {
                "run_at": self.run_at.isoformat().replace("+00:00", "Z"),
                "threshold_seconds": self.threshold_seconds,
                "healthy": self.healthy,
                "projections": projections,
                "outbox": None if self.outbox is None else asdict(self.outbox),
                "bus": None if self.bus is None else self.bus.as_json(),
            }
        )

    def to_text(self) -> str:
        lines = [
            f"Projection lag at {self.run_at:%Y-%m-%d %H:%M:%S} UTC "
            f"(threshold {self.threshold_seconds:g} s): {'HEALTHY' if self.healthy else 'BREACH'}"
        ]
        if self.outbox is not None:
            breached = self.outbox.breached(self.threshold_seconds)
            lines.append(f"  outbox: {'BREACH: ' if breached else ''}{self.outbox.to_text()}")
        if self.bus is not None:
            lines.append(f"  bus: {'BREACH: ' if self.bus.breaches() else ''}{self.bus.to_text()}")
        for p in self.projections:
            lines += [
                f"  {p.projection}: {'ok' if p.healthy else 'BREACH: ' + ', '.join(p.breaches)}",
                f"    event-time lag   {p.event_time_lag_seconds:.1f} s",
                f"    bus backlog      {'unknown' if p.bus_backlog is None else p.bus_backlog} records",
                f"    bronze backlog   {p.bronze_backlog} events",
                f"    staleness        {_seconds(p.staleness_seconds)}",
                f"    version gaps     {p.version_gaps} aggregates",
            ]
        return "\n".join(lines)

    def alert_text(self) -> str:
        broken = [f"{p.projection} ({', '.join(p.breaches)})" for p in self.projections if not p.healthy]
        stalled = ""
        if self.outbox is not None and self.outbox.breached(self.threshold_seconds):
            stalled = (
                f"\nThe relay is not publishing the outbox ({OUTBOX_BREACH}): {self.outbox.to_text()}; "
                "is the command API app (its relay) running?"
            )
        if self.bus is not None and self.bus.breaches():
            stalled += f"\nThe bus ({', '.join(self.bus.breaches())}): {self.bus.to_text()}"
        return f"cqrs-orders projection lag breach: {'; '.join(broken)}.{stalled}\n\n{self.to_text()}"


def _seconds(value: float | None) -> str:
    return "never ran" if value is None else f"{value:.1f} s"


def measure_lag(
    spark: SparkSession,
    settings: Settings,
    threshold_seconds: float,
    now: datetime | None = None,
    record: bool = True,
) -> LagReport:
    """Measure every projection; with ``record`` (the default) append the result to ``ops_projection_lag``."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    waiting = measure_outbox(settings, now)  # the write store's outbox: before the bus, and without Spark
    stalled = (OUTBOX_BREACH,) if waiting is not None and waiting.breached(threshold_seconds) else ()
    read = _Reader(spark, settings)
    bronze, quarantine, progress = (
        read("bronze_events"),
        read("bronze_quarantine"),
        read("ops_stream_progress"),
    )

    bus = None
    if settings.source == "kafka":
        bus = measure_kafka_bus(settings, _kafka_positions(bronze, quarantine, progress, settings), now)
        bus_times = measures.with_events(measures.bronze_event_times(bronze), bus.waiting_events)
        bus_backlog = bus.backlog
        stalled += bus.breaches()
    else:
        from cqrs_orders.adapters.event_log import EventLog

        bus_times = measures.bus_event_times(read.event_log(), quarantine)
        end_offsets = EventLog(settings.event_log_path, settings.event_log_partitions).end_offsets()
        # The embedded log is not always read in offset order, but its offsets have no holes: a count.
        ingested = {
            r.partition: r.next_offset for r in measures.ingested_counts(bronze, quarantine).collect()
        }
        bus_backlog = measures.bus_backlog(end_offsets, ingested)

    # Everything else in one Spark job: one row of figures per projection (each part is a 1-row aggregate).
    last_batch = measures.last_batch_time(progress)
    acknowledged = read("ops_quarantine_acknowledgements")  # versions accepted as lost: no gap
    stats = None
    for projection in PROJECTIONS:
        row = _projection_stats(
            projection,
            read(projection.applied_by.table),
            bronze,
            bus_times,
            acknowledged,
        ).crossJoin(last_batch)
        stats = row if stats is None else stats.unionByName(row)
    figures = {row.projection: row for row in stats.collect()}

    now_micros = int(now.timestamp() * 1_000_000)
    results = []
    for projection in PROJECTIONS:
        f = figures[projection.table]
        if f.newest_bus is None:
            lag_micros = 0
        elif f.newest_applied is None:  # nothing applied yet: how long the oldest event has waited
            lag_micros = now_micros - f.oldest_bus
        else:
            lag_micros = f.newest_bus - f.newest_applied
        last = f.last_batch_at if f.last_batch_at is not None else f.last_projected
        staleness = None if last is None else max(0, now_micros - last) / 1e6
        lag, backlog, gaps = max(0, lag_micros) / 1e6, int(f.bronze_backlog), int(f.version_gaps)
        results.append(
            ProjectionLag(
                projection=projection.table,
                event_time_lag_seconds=lag,
                bus_backlog=bus_backlog,
                bronze_backlog=backlog,
                staleness_seconds=staleness,
                version_gaps=gaps,
                threshold_seconds=float(threshold_seconds),
                breaches=(
                    *find_breaches(lag, bus_backlog, backlog, staleness, gaps, threshold_seconds),
                    *stalled,
                ),
                outbox_unpublished=None if waiting is None else waiting.unpublished,
                outbox_oldest_age_seconds=None if waiting is None else waiting.oldest_age_seconds,
            )
        )
    report = LagReport(
        run_at=now,
        threshold_seconds=float(threshold_seconds),
        projections=tuple(results),
        outbox=waiting,
        bus=bus,
    )
    if record:
        record_report(spark, settings, report)
    return report


def record_report(spark: SparkSession, settings: Settings, report: LagReport) -> None:
    """Append the report's rows to ``ops_projection_lag``, created (or given the columns it lacks) as
    every pipeline table is (:func:`~cqrs_orders.pipeline.tables.ensure_table`)."""
    ensure_table(spark, settings, LAG_TABLE)
    rows = [{**row, "breaches": list(row["breaches"])} for row in report.rows()]
    writer = spark.createDataFrame(rows, LAG_SCHEMA).write.format("delta").mode("append")
    Table(settings.table(LAG_TABLE)).save(writer)


def _kafka_positions(
    bronze: DataFrame, quarantine: DataFrame, progress: DataFrame, settings: Settings
) -> dict[int, int]:
    """Where the projection has read the topic to, per partition (the next offset it reads).

    Its checkpoint's word first: the end offsets of its newest progress row that names the topic. That is
    right after the topic was made again and the checkpoint reset, when bronze still holds the offsets of
    the old topic. Without such a row (a warehouse whose progress was never recorded), what reached bronze
    or quarantine: Kafka is read in offset order, so the offset after the last one."""
    newest = (
        progress.where(F.col("source_end_offset").isNotNull())
        .orderBy(F.col("recorded_at").desc())
        .select("source_end_offset")
        .first()
    )
    read = measures.latest_source_offsets(newest[0], settings.kafka_topic) if newest else {}
    if read:
        return read
    return {r.partition: r.next_offset for r in measures.ingested_next_offsets(bronze, quarantine).collect()}


def _projection_stats(
    projection: ReadModel, silver: DataFrame, bronze: DataFrame, bus_times: DataFrame, acknowledged: DataFrame
) -> DataFrame:
    """One row: the projection's name and its raw figures (times as epoch microseconds)."""
    of_type = F.col("aggregate_type") == projection.aggregate_type.value
    applied = silver.agg(
        F.unix_micros(F.max("last_event_time")).alias("newest_applied"),
        F.unix_micros(F.max("projected_at")).alias("last_projected"),
    )
    bus = bus_times.where(of_type).agg(
        F.unix_micros(F.max("newest_event_time")).alias("newest_bus"),
        F.unix_micros(F.min("oldest_event_time")).alias("oldest_bus"),
    )
    (id_column,) = projection.applied_by.key
    pending = measures.unapplied_events(bronze, silver, projection.aggregate_type.value, id_column).agg(
        F.count(F.lit(1)).alias("bronze_backlog")
    )
    gaps = measures.version_gaps(bronze.where(of_type), acknowledged).agg(
        F.count(F.lit(1)).alias("version_gaps")
    )
    return (
        applied.crossJoin(bus)
        .crossJoin(pending)
        .crossJoin(gaps)
        .select(F.lit(projection.table).alias("projection"), "*")
    )


class _Reader:
    """Reads the warehouse's tables, or an empty DataFrame with the needed columns when one is missing."""

    def __init__(self, spark: SparkSession, settings: Settings):
        self.spark, self.settings = spark, settings

    def __call__(self, name: str) -> DataFrame:
        schema, table = COLUMNS_READ[name], Table(self.settings.table(name))
        if table.exists(self.spark):
            return table.read(self.spark).select(*schema.fieldNames())
        return self._empty(schema)

    def event_log(self) -> DataFrame:
        path = Path(self.settings.event_log_path)
        if (path / "_delta_log").is_dir():
            return self.spark.read.format("delta").load(str(path)).select(*_RECORDS.fieldNames())
        return self._empty(_RECORDS)

    def _empty(self, schema: StructType) -> DataFrame:
        return self.spark.createDataFrame([], schema)
