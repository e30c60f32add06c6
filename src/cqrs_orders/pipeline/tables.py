"""The pipeline's Delta tables: their exact schemas and the properties that keep them readable by Synapse.

Synapse serverless SQL reads only Delta 1.0-level tables (reader protocol 1, no deletion vectors, no column
mapping, classic checkpoints), and Databricks turns deletion vectors on by default; so every table is
created here, once, with those properties set explicitly instead of relying on defaults.

Layout: no partitioning and no liquid clustering. Liquid clustering raises the writer protocol to table
features, and partitioning by a hashed aggregate id would add a column the contracts do not have; a MERGE
bounds its target by the batch's key range instead (:func:`~.silver.merge_latest`), and ``maintain``
clusters the read models on their key.

Opening a table by its location is :mod:`cqrs_orders.delta_io`'s job, beneath this module.

Where Synapse reads: a Unity Catalog managed table lives at a path UC generates, which Synapse cannot name.
The tables Synapse's views read (:data:`SYNAPSE_TABLES`) are therefore created as external tables at
``<url>/<table>`` when the schema carries the property :data:`SYNAPSE_STORAGE_PROPERTY` (the bundle sets it
from its variable ``synapse_storage_url``); it is read from the schema by whichever job creates the table
first, so none of them can create one managed by mistake. Locally every table is a folder already.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from pyspark.sql import types as T

from cqrs_orders.config import Settings, TableLocation
from cqrs_orders.delta_io import Table, add_missing_columns, create_if_missing
from cqrs_orders.envelope_schema import MONEY_SUM_TYPE, MONEY_TYPE
from cqrs_orders.pipeline.read_models import READ_MODELS, TS, S, schema

logger = logging.getLogger(__name__)

#: The tables the Synapse views read (sql/synapse/*.sql): created under the schema's Synapse storage URL.
#: Only tables without personal data: whatever lies under that URL, Synapse's identity can read.
SYNAPSE_TABLES = ("silver_orders", "silver_product_sales")
#: The schema property naming the folder (under a Unity Catalog external location) they are created in.
#: Its name holds no "url", "key" or "token": Spark's DESCRIBE redacts the values of such properties.
SYNAPSE_STORAGE_PROPERTY = "cqrs_orders.synapse_root"

#: Table properties that keep every table at the Delta 1.0 level Synapse serverless can read.
SYNAPSE_COMPATIBLE_PROPERTIES = {
    "delta.minReaderVersion": "1",
    "delta.minWriterVersion": "2",
    "delta.enableDeletionVectors": "false",
    "delta.columnMapping.mode": "none",
    "delta.checkpointPolicy": "classic",
}


_schema = schema

#: The columns every bus record has, whichever the source (event log, Event Hubs / Kafka).
RECORD_FIELDS = (
    ("body", S),
    ("partition", T.IntegerType()),
    ("offset", T.LongType()),
    ("enqueued_time", TS),
    ("partition_key", S),
)
RECORD_SCHEMA = _schema(*RECORD_FIELDS)

SCHEMAS: dict[str, T.StructType] = {
    "bronze_events": _schema(
        *RECORD_FIELDS,
        ("event_id", S),
        ("event_type", S),
        ("aggregate_type", S),
        ("aggregate_id", S),
        ("version", T.LongType()),
        ("event_time", TS),
        ("correlation_id", S),
        ("causation_id", S),
        ("ingest_time", TS),
    ),
    "bronze_quarantine": _schema(
        *RECORD_FIELDS, ("failed_expectations", T.ArrayType(S, True)), ("ingest_time", TS)
    ),
    **{model.table: model.columns for model in READ_MODELS},
    "gold_daily_order_metrics": _schema(
        ("order_date", T.DateType()),
        ("order_count", T.LongType()),
        ("total_revenue", MONEY_SUM_TYPE),
        ("avg_order_value", MONEY_TYPE),
        ("unique_customers", T.LongType()),
    ),
    "ops_stream_progress": _schema(
        ("query_name", S),
        ("run_id", S),
        ("batch_id", T.LongType()),
        ("batch_timestamp", TS),
        ("num_input_rows", T.LongType()),
        ("input_rows_per_second", T.DoubleType()),
        ("processed_rows_per_second", T.DoubleType()),
        ("duration_ms", T.LongType()),
        ("max_event_time", TS),
        ("source_end_offset", S),
        ("source_latest_offset", S),
        ("recorded_at", TS),
    ),
    # One row per read model per run of the lag monitor (:mod:`cqrs_orders.ops.lag`). New columns go last:
    # an existing table gains them (:func:`ensure_tables`), its older rows reading them as null.
    "ops_projection_lag": _schema(
        ("run_at", TS),
        ("projection", S),
        ("event_time_lag_seconds", T.DoubleType()),
        ("bus_backlog", T.LongType()),
        ("bronze_backlog", T.LongType()),
        ("staleness_seconds", T.DoubleType()),
        ("version_gaps", T.LongType()),
        ("threshold_seconds", T.DoubleType()),
        ("healthy", T.BooleanType()),
        ("breaches", T.ArrayType(S, True)),
        ("outbox_unpublished", T.LongType()),
        ("outbox_oldest_age_seconds", T.DoubleType()),
    ),
    # One row per quarantined event accepted as lost: who said so, when and why (:mod:`.quarantine`). The
    # aggregate and version are read off the quarantined body; the lag monitor's version gaps skip them.
    "ops_quarantine_acknowledgements": _schema(
        ("event_id", S),
        ("aggregate_type", S),
        ("aggregate_id", S),
        ("version", T.LongType()),
        ("partition", T.IntegerType()),
        ("offset", T.LongType()),
        ("reason", S),
        ("acknowledged_by", S),
        ("acknowledged_at", TS),
    ),
    # One row per erased customer (:mod:`.erasure`): every micro-batch masks their records. The reason is an
    # operator's text (a ticket, a legal basis), never personal data.
    "ops_erasures": _schema(("customer_id", S), ("erased_at", TS), ("reason", S), ("erased_by", S)),
    # One row per step of a rebuild (:mod:`.rebuild`): ``started`` holds each published table's version
    # before the publish (what a rollback restores), ``published`` the versions it wrote, ``rolled_back``
    # marks a rebuild undone.
    "ops_rebuilds": _schema(
        ("rebuild_id", S),
        ("status", S),
        ("bronze_version", T.LongType()),
        ("versions", T.MapType(S, T.LongType(), True)),
        ("recorded_at", TS),
    ),
}

#: The tables this module creates: every table the pipeline writes.
PIPELINE_TABLES = tuple(SCHEMAS)

#: Per table, the columns Delta keeps min/max statistics for: those that filters and MERGEs use. Delta's
#: default (the first 32 columns) would spend most of a small append on the raw body. (A plain table
#: property: the protocol stays at Synapse's level.)
STATS_COLUMNS = {
    "bronze_events": (
        "partition,offset,enqueued_time,aggregate_type,aggregate_id,version,event_time,ingest_time"
    ),
    "bronze_quarantine": "partition,offset,enqueued_time,ingest_time",
    **{model.table: model.stats_columns for model in READ_MODELS},
    "gold_daily_order_metrics": "order_date",
    "ops_stream_progress": "query_name,batch_id,batch_timestamp,recorded_at",
    "ops_projection_lag": "run_at,projection",
    "ops_quarantine_acknowledgements": "event_id,aggregate_type,aggregate_id,version,acknowledged_at",
    "ops_erasures": "customer_id,erased_at",
    "ops_rebuilds": "rebuild_id,status,recorded_at",
}


#: The operational tables that grow by a row per batch or per run, and so keep a window only
#: (``maintain --ops-retention-days``): table -> (its time column, the column naming whose row it is). Each
#: one's newest row per name is kept whatever its age: the lag monitor reads the projection's last batch.
#: The other ``ops_`` tables are kept whole: an acknowledgement closes a version gap for good, an erasure
#: must be applied by every later batch, and a rebuild's record is what its rollback restores.
OPERATIONAL_WINDOWS = {
    "ops_stream_progress": ("recorded_at", "query_name"),
    "ops_projection_lag": ("run_at", "projection"),
}


#: Append-only tables: every micro-batch adds small files, which Delta packs after a write once 50 of them
#: have gathered ("small": under the size set in :mod:`cqrs_orders.spark`); its commits carry
#: dataChange=false, so streams reading the table skip them. Not the MERGE targets: compaction bin-packs
#: their key ranges into a few large files, and without deletion vectors (Synapse) a MERGE rewrites every
#: file it touches whole, so a few large files would make every batch rewrite most of the table (figures:
#: benchmarks/RESULTS.md). ``maintain`` clusters them instead.
AUTO_COMPACTED = frozenset({"bronze_events", "bronze_quarantine", "ops_stream_progress"})


#: How many tables :func:`ensure_tables` sees to at once.
_ENSURING_THREADS = 4


def ensure_tables(spark, settings: Settings) -> None:
    """Create every pipeline table that does not exist yet; add to an existing one the columns its
    declaration gained since it was created (rows written before hold null there; no column is dropped).

    The tables are independent, so they are seen to side by side: each is a few small Delta commits,
    mostly the driver's bookkeeping."""
    storage_url = synapse_storage_url(spark, settings)
    with ThreadPoolExecutor(max_workers=_ENSURING_THREADS, thread_name_prefix="ensure-table") as pool:
        for done in [pool.submit(ensure_table, spark, settings, name, storage_url) for name in SCHEMAS]:
            done.result()


def ensure_table(spark, settings: Settings, name: str, storage_url: str | None = None) -> None:
    """:func:`ensure_tables` for the one table ``name`` (``storage_url``: see :func:`synapse_storage_url`)."""
    columns, table = SCHEMAS[name], Table(settings.table(name))
    if table.exists(spark):
        add_missing_columns(spark, table, columns)
        return
    create_if_missing(spark, located(settings.table(name), storage_url), columns, table_properties(name))


def table_properties(name: str) -> dict[str, str]:
    """The properties table ``name`` is created with (also by the lag monitor's writer on a laptop)."""
    properties = {**SYNAPSE_COMPATIBLE_PROPERTIES, "delta.dataSkippingStatsColumns": STATS_COLUMNS[name]}
    if name in AUTO_COMPACTED:
        properties["delta.autoOptimize.autoCompact"] = "true"
    return properties


def located(location: TableLocation, storage_url: str | None) -> TableLocation:
    """``location``, placed at ``<storage_url>/<table>`` if it is a catalog table Synapse reads."""
    if not (storage_url and location.qualified_name and location.logical_name in SYNAPSE_TABLES):
        return location
    return replace(location, external_path=f"{storage_url.rstrip('/')}/{location.logical_name}")


def synapse_storage_url(spark, settings: Settings) -> str | None:
    """The schema's :data:`SYNAPSE_STORAGE_PROPERTY` (``None`` if unset or empty, or for a local warehouse).

    Read from the schema, not passed to each job: every job that may create a table (projection, rebuild,
    maintenance, quarantine) then agrees on where, with no flag that one of them could lack."""
    if not settings.catalog:
        return None
    described = spark.sql(f"DESCRIBE SCHEMA EXTENDED `{settings.catalog}`.`{settings.schema}`").collect()
    listed = next((row[1] for row in described if row[0] == "Properties"), "") or ""
    properties = dict(_PROPERTY.findall(listed))
    return properties.get(SYNAPSE_STORAGE_PROPERTY, "").strip() or None


#: One ``(key,value)`` pair of ``DESCRIBE SCHEMA EXTENDED``'s Properties row, ``((k1,v1), (k2,v2))``.
_PROPERTY = re.compile(r"\(([^,()]+),([^()]*)\)")
