"""The projection as an open-source declarative pipeline: the AUTO CDC peer of ``benchmarks/projection.py``.

Run by the ``spark-pipelines`` CLI (Spark 4.3's ``pyspark.pipelines``) in the peer's own environment
(``.venv-pipelines``, extra ``auto-cdc``), never imported by the project: ``benchmarks/auto_cdc.py`` writes a
pipeline spec naming this file and starts the CLI. The CLI runs the file with a ``spark`` global (a Spark
Connect session) and builds the dataflow graph from what it declares:

* ``bronze_checked``, a streaming table: every record of the event log with the envelope's header columns
  and the expectations it failed, by *our* validation (:func:`~cqrs_orders.pipeline.bronze.validate_records`).
  Open-source pipelines have no expectations, so validation cannot split records into bronze and quarantine
  on the way in; it is one table, and the quarantine is its rows with failed expectations (records in =
  rows). Validation is written once into it and read back, because a filter over the lazy validation is
  planned through every one of its projections (see :func:`~cqrs_orders.pipeline.bronze.to_bronze`).
* per latest-state read model (``silver_orders``, ``silver_customers``): a streaming table filled by
  ``create_auto_cdc_flow`` keyed by the read model's key, sequenced by ``version``, SCD type 1, from a view
  of the valid events of its aggregate type turned into rows by *our* row function. AUTO CDC picks the
  winner itself, so every event is parsed into a row, where ours parses only each batch's winners.
* ``silver_product_sales`` and ``gold_daily_order_metrics``: materialized views over ``silver_orders``,
  recomputed whole by our definitions (open-source materialized views have no incremental refresh).

The same checks, row functions and table properties as ours, so that what the benchmark compares is the
projection's engine: AUTO CDC's flow against our foreachBatch MERGE.
"""

from __future__ import annotations

from pyspark import pipelines as dp
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqrs_orders.pipeline.bronze import validate_records
from cqrs_orders.pipeline.gold import GOLD_TABLE, daily_order_metrics
from cqrs_orders.pipeline.read_models import LATEST_STATE_MODELS, SILVER_PRODUCT_SALES, ReadModel
from cqrs_orders.pipeline.sources import as_records
from cqrs_orders.pipeline.tables import SYNAPSE_COMPATIBLE_PROPERTIES

#: The Spark Connect session the CLI puts in this module's globals before running it.
spark = globals()["spark"]
#: The event log to read: a Spark conf, so that the same file serves any run (set by benchmarks/auto_cdc.py).
EVENT_LOG = spark.conf.get("cqrs.auto_cdc.event_log")
STATE_CHECKS = {model.aggregate_type: model.state_is_complete for model in LATEST_STATE_MODELS}
#: Every table as ours are: Delta, at the level Synapse serverless reads.
DELTA = {"format": "delta", "table_properties": dict(SYNAPSE_COMPATIBLE_PROPERTIES)}
#: The catalog AUTO CDC writes into: the session's (Delta), or for ``--target iceberg`` an Iceberg catalog,
#: since open-source AUTO CDC needs a target that supports row-level operations and Delta's does not.
TARGET_CATALOG = spark.conf.get("cqrs.auto_cdc.target_catalog", "spark_catalog")


def target(name: str) -> str:
    """The name of AUTO CDC's target table ``name`` in :data:`TARGET_CATALOG`."""
    return name if TARGET_CATALOG == "spark_catalog" else f"{TARGET_CATALOG}.default.{name}"


#: How the targets are created: as every other table, or as the Iceberg catalog's default tables.
TARGET_OPTIONS = DELTA if TARGET_CATALOG == "spark_catalog" else {}


@dp.table(name="bronze_checked", **DELTA)
def bronze_checked() -> DataFrame:
    """Every record, its header and the expectations it failed (none: bronze; some: quarantine)."""
    records = as_records(spark.readStream.format("delta").load(EVENT_LOG))
    return validate_records(records, STATE_CHECKS).withColumn("ingest_time", F.current_timestamp())


def declare_latest_state(model: ReadModel) -> None:
    """A view of ``model``'s rows for every valid event of its type, and AUTO CDC from it into the table."""
    changes = f"{model.table}_changes"

    @dp.temporary_view(name=changes)
    def rows() -> DataFrame:
        valid = spark.readStream.table("bronze_checked").where(
            (F.size("failed_expectations") == 0) & (F.col("aggregate_type") == model.aggregate_type.value)
        )
        return model.project(valid)

    # No declared schema: AUTO CDC adds a column of its own (``__spark_autocdc_metadata``, the sequence of
    # each key's last upsert and delete), which a declared schema would have to spell out.
    dp.create_streaming_table(target(model.table), **TARGET_OPTIONS)
    dp.create_auto_cdc_flow(
        target=target(model.table),
        source=changes,
        keys=list(model.key),
        sequence_by="version",
        stored_as_scd_type=1,
    )


for latest_state in LATEST_STATE_MODELS:
    declare_latest_state(latest_state)


@dp.materialized_view(name=SILVER_PRODUCT_SALES.table, **DELTA)
def product_sales() -> DataFrame:
    """Sales per SKU and currency, recomputed whole from silver_orders (what ``rebuild`` does)."""
    return SILVER_PRODUCT_SALES.recompute(spark.read.table(target(SILVER_PRODUCT_SALES.derived_from.table)))


@dp.materialized_view(name=GOLD_TABLE, **DELTA)
def gold() -> DataFrame:
    """Daily order metrics, recomputed whole from silver_orders (as our gold is)."""
    return daily_order_metrics(spark.read.table(target("silver_orders")))
