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
stopped projection would freeze it): the embedded event log is a Delta table whose records that reached
neither bronze nor the quarantine are read (:mod:`.measures`); Kafka / Event Hubs is asked by a consumer
without a group (:mod:`.bus`) for its offsets and the unread records at both ends of each partition, against
the position the projection's checkpoint reached. Either way bronze stands for what was read, and the
unread records' bodies are parsed by one function (:func:`~.measures.event_of`).
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

Where it runs: each measure is one SQL text (:mod:`.measures`) over the logical table names. On a laptop
Apache DataFusion runs it over the Delta folders and the run's rows are appended with ``deltalake``: no
Spark, no JVM to start for a check that reads a few aggregates. On Databricks (``CQRS_CATALOG``
set: the lag job) the job's Spark session runs the same texts over the Unity Catalog tables, and appends
with Spark.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from cqrs_orders.ops.outbox import BREACH as OUTBOX_BREACH
from cqrs_orders.ops.outbox import OutboxMeasure, measure_outbox
from cqrs_orders.pipeline.read_models import READ_MODELS
from cqrs_orders.pipeline.tables import SCHEMAS

if TYPE_CHECKING:  # the Kafka client is imported only where the bus is Kafka
    from cqrs_orders.ops.bus import BusMeasure

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
    bus: BusMeasure | None = None  # None: the embedded event log (no figures of its own)

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


#: Answers the monitor's SQL texts, each as its rows (dicts; times timezone-aware, UTC), all from one read of
#: the warehouse (:meth:`~cqrs_orders.query.delta.DeltaBackend.query_all`).
Queries = Callable[[Sequence[str]], list[list[dict[str, Any]]]]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def measure_lag(
    spark,
    settings: Settings,
    threshold_seconds: float,
    now: datetime | None = None,
    record: bool = True,
) -> LagReport:
    """Measure every projection; with ``record`` (the default) append the result to ``ops_projection_lag``.

    ``spark``: ``None`` to read the local warehouse's Delta folders without Spark (a laptop); a session to
    read through Spark (the Databricks lag job, Unity Catalog tables). Both run the same SQL texts."""
    tables = _DeltaTables(settings) if spark is None else _SparkTables(spark, settings)
    report = assess(tables.query_all, settings, threshold_seconds, now)
    if record:
        tables.record(report)
    return report


def assess(
    queries: Queries, settings: Settings, threshold_seconds: float, now: datetime | None = None
) -> LagReport:
    """The report, from the warehouse's tables as ``queries`` reads them, the write store and the bus.

    Every measure that needs nothing but the tables is asked for in one call, so they describe one moment;
    only the records still unread (when there is a backlog) and the Kafka positions are asked after."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    waiting = measure_outbox(settings, now)  # the write store's outbox: before the bus
    stalled = (OUTBOX_BREACH,) if waiting is not None and waiting.breached(threshold_seconds) else ()
    embedded = settings.source != "kafka"
    figure_statements = list(dict.fromkeys(measures.projection_figures(p) for p in PROJECTIONS))
    statements = [
        measures.BRONZE_EVENT_TIMES,
        measures.LAST_BATCH,
        *((measures.LOG_RECORDS, measures.INGESTED_POSITIONS) if embedded else ()),
        *figure_statements,  # a derived read model reads its source's figures: each text once
    ]
    answers = dict(zip(statements, queries(statements), strict=True))
    bronze_times = {
        row["aggregate_type"]: (row["newest_event_time"], row["oldest_event_time"])
        for row in answers[measures.BRONZE_EVENT_TIMES]
    }

    bus = None
    if embedded:
        (log,), (ingested,) = answers[measures.LOG_RECORDS], answers[measures.INGESTED_POSITIONS]
        bus_backlog = max(0, log["records"] - ingested["ingested"])
        # Without a backlog every record of the log is in bronze or the quarantine: none to read.
        unread = (
            (measures.event_of(row["body"]) for row in queries([measures.UNREAD_RECORDS])[0])
            if bus_backlog
            else ()
        )
        bus_times = measures.with_events(bronze_times, (event for event in unread if event is not None))
    else:
        from cqrs_orders.ops.bus import measure_kafka_bus

        bus = measure_kafka_bus(settings, _kafka_positions(queries, settings), now)
        bus_times = measures.with_events(bronze_times, bus.waiting_events)
        bus_backlog = bus.backlog
        stalled += bus.breaches()

    (progress,) = answers[measures.LAST_BATCH]
    now_micros = _micros(now)
    results = []
    for projection in PROJECTIONS:
        (f,) = answers[measures.projection_figures(projection)]
        newest_bus, oldest_bus = bus_times.get(projection.aggregate_type.value, (None, None))
        if newest_bus is None:
            lag_micros = 0
        elif f["newest_applied"] is None:  # nothing applied yet: how long the oldest event has waited
            lag_micros = now_micros - _micros(oldest_bus)
        else:
            lag_micros = _micros(newest_bus) - _micros(f["newest_applied"])
        last = progress["last_batch_at"] if progress["last_batch_at"] is not None else f["last_projected"]
        staleness = None if last is None else max(0, now_micros - _micros(last)) / 1e6
        lag, backlog, gaps = max(0, lag_micros) / 1e6, int(f["bronze_backlog"]), int(f["version_gaps"])
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
    return LagReport(
        run_at=now,
        threshold_seconds=float(threshold_seconds),
        projections=tuple(results),
        outbox=waiting,
        bus=bus,
    )


def _micros(moment: datetime) -> int:
    return (moment.astimezone(timezone.utc) - _EPOCH) // timedelta(microseconds=1)


def _kafka_positions(queries: Queries, settings: Settings) -> dict[int, int]:
    """Where the projection has read the topic to, per partition (the next offset it reads).

    Its checkpoint's word first: the end offsets of its newest progress row that names the topic. That is
    right after the topic was made again and the checkpoint reset, when bronze still holds the offsets of
    the old topic. Without such a row (a warehouse whose progress was never recorded), what reached bronze
    or quarantine: Kafka is read in offset order, so the offset after the last one."""
    (newest,) = queries([measures.NEWEST_SOURCE_END])
    read = (
        measures.latest_source_offsets(newest[0]["source_end_offset"], settings.kafka_topic) if newest else {}
    )
    if read:
        return read
    return {row["partition"]: row["next_offset"] for row in queries([measures.INGESTED_NEXT_OFFSETS])[0]}


def _rows(report: LagReport) -> list[dict]:
    return [{**row, "breaches": list(row["breaches"])} for row in report.rows()]


class _DeltaTables:
    """The local warehouse read by DataFusion (a missing table reads as no rows with the columns the
    monitor reads); the report appended with ``deltalake``. No Spark."""

    def __init__(self, settings: Settings):
        from pyspark.sql.pandas.types import to_arrow_schema  # pure Python: no JVM

        from cqrs_orders.adapters.event_log import RECORD_SCHEMA
        from cqrs_orders.query.delta import DeltaBackend

        self.settings = settings
        locations = {name: settings.table(name).path for name in COLUMNS_READ}
        schemas = {name: to_arrow_schema(columns) for name, columns in COLUMNS_READ.items()}
        if settings.source != "kafka":
            locations[measures.EVENT_LOG] = str(Path(settings.event_log_path))
            schemas[measures.EVENT_LOG] = RECORD_SCHEMA
        self._backend = DeltaBackend(locations, schemas)

    def query(self, statement: str) -> list[dict[str, Any]]:
        return self._backend.query(statement, {})

    def query_all(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        return self._backend.query_all(statements)

    def record(self, report: LagReport) -> None:
        """Append the rows; a new table gets the properties every pipeline table is created with
        (:func:`~cqrs_orders.pipeline.tables.table_properties`), an older one the columns it lacks."""
        import pyarrow as pa
        from deltalake import DeltaTable, write_deltalake
        from pyspark.sql.pandas.types import to_arrow_schema

        from cqrs_orders.pipeline.tables import table_properties

        path = self.settings.table(LAG_TABLE).path
        rows = pa.Table.from_pylist(_rows(report), to_arrow_schema(LAG_SCHEMA))
        new = not DeltaTable.is_deltatable(path)
        write_deltalake(
            path,
            rows,
            mode="append",
            schema_mode="merge",
            configuration=table_properties(LAG_TABLE) if new else None,
        )


class _SparkTables:
    """The warehouse read by Spark SQL under the same logical names (temporary views; a missing table is
    an empty view with the columns the monitor reads); the report appended with Spark."""

    def __init__(self, spark, settings: Settings):
        from cqrs_orders.query.api import SparkBackend

        self.spark, self.settings = spark, settings
        for name, columns in COLUMNS_READ.items():
            table = Table(settings.table(name))
            frame = table.read(spark) if table.exists(spark) else spark.createDataFrame([], columns)
            frame.createOrReplaceTempView(name)
        if settings.source != "kafka":
            path = Path(settings.event_log_path)
            if (path / "_delta_log").is_dir():
                frame = spark.read.format("delta").load(str(path))
            else:
                frame = spark.createDataFrame([], "body string, partition int, offset bigint")
            frame.createOrReplaceTempView(measures.EVENT_LOG)
        self._backend = SparkBackend(spark)

    def query(self, statement: str) -> list[dict[str, Any]]:
        return self._backend.query(statement, {})

    def query_all(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        """One after another: each Spark SQL query already uses every core of the job's cluster."""
        return [self.query(statement) for statement in statements]

    def record(self, report: LagReport) -> None:
        """Append the rows to ``ops_projection_lag``, created (or given the columns it lacks) as every
        pipeline table is (:func:`~cqrs_orders.pipeline.tables.ensure_table`)."""
        from cqrs_orders.pipeline.tables import ensure_table

        ensure_table(self.spark, self.settings, LAG_TABLE)
        writer = self.spark.createDataFrame(_rows(report), LAG_SCHEMA).write.format("delta").mode("append")
        Table(self.settings.table(LAG_TABLE)).save(writer)
