"""Rebuild silver (every read model and the event history) and gold from ``bronze_events``, leaving bronze
alone.

For a bug fix in a projection, or a lost silver table: bronze holds every valid event that ever arrived,
and the projection rules (highest version wins, smaller id on a tie, first arrival of an event id) depend on
the set of events only, so one batch over a bronze snapshot gives exactly what streaming gave. The read
models come from :data:`~.read_models.READ_MODELS`, the same declarations the stream's MERGE uses.

Afterwards the projection simply carries on from the bus: its checkpoint is untouched, and applying an
event the rebuild already applied changes nothing. Stop the projection while rebuilding.
"""

from __future__ import annotations

from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.pipeline import gold
from cqrs_orders.pipeline.read_models import READ_MODELS
from cqrs_orders.pipeline.silver import (
    VERSION_KEY,
    conflicting_versions,
    event_history_rows,
    latest_per_aggregate,
)
from cqrs_orders.pipeline.tables import ensure_tables, table


def rebuild(spark, settings: Settings) -> dict:
    """Recompute silver and gold from the latest bronze snapshot; return the bronze version and counts."""
    ensure_tables(spark, settings)
    bronze_table = table(settings, "bronze_events")
    version = bronze_table.version(spark)
    bronze = bronze_table.read(spark, versionAsOf=str(version))
    history = event_history_rows(bronze)
    conflicts = conflicting_versions(history).withColumn("_conflict", F.lit(True))
    history = history.join(conflicts, list(VERSION_KEY), "left").select(
        *[c for c in history.columns if c != "version_conflict"],
        F.coalesce("_conflict", F.lit(False)).alias("version_conflict"),
    )
    outputs = {
        **{
            model.table: model.project(latest_per_aggregate(bronze, model.aggregate_type.value))
            for model in READ_MODELS
        },
        "silver_event_history": history,
    }
    for name, rows in outputs.items():
        table(settings, name).save(rows.write.format("delta").mode("overwrite"))
    gold.refresh(spark, settings)
    counts = {
        name: table(settings, name).read(spark).count() for name in [*outputs, "gold_daily_order_metrics"]
    }
    return {"bronze_version": version, **counts}
