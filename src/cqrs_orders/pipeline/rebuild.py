"""Rebuild silver (read models and event history) and gold from ``bronze_events``, leaving bronze alone.

For a bug fix in a projection, or a lost silver table: bronze holds every valid event that ever arrived,
and the projection rules (highest version wins, smaller id on a tie, first arrival of an event id) depend on
the set of events only, so one batch over a bronze snapshot gives exactly what streaming gave.

Afterwards the one-query projection simply carries on from the bus. For the two-query layout, silver's own
checkpoint is reset and told to resume from the snapshot's version, so its next run continues from there
instead of re-reading all of bronze (re-reading that one version is harmless: applying an event twice
changes nothing). Stop the projection while rebuilding.
"""

from __future__ import annotations

from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.envelope import AggregateType
from cqrs_orders.pipeline import gold, idempotency
from cqrs_orders.pipeline.runner import SILVER
from cqrs_orders.pipeline.silver import (
    VERSION_KEY,
    conflicting_versions,
    customer_rows,
    event_history_rows,
    latest_per_aggregate,
    order_rows,
)
from cqrs_orders.pipeline.tables import ensure_tables


def rebuild(spark, settings: Settings) -> dict:
    """Recompute silver and gold from the latest bronze snapshot; return the bronze version and counts."""
    ensure_tables(spark, settings)
    bronze_table = settings.table("bronze_events")
    version = bronze_table.version(spark)
    reader = spark.read.format("delta").option("versionAsOf", version)
    bronze = (
        reader.table(bronze_table.qualified_name)
        if bronze_table.qualified_name
        else reader.load(bronze_table.path)
    )
    history = event_history_rows(bronze)
    conflicts = conflicting_versions(history).withColumn("_conflict", F.lit(True))
    history = history.join(conflicts, list(VERSION_KEY), "left").select(
        *[c for c in history.columns if c != "version_conflict"],
        F.coalesce("_conflict", F.lit(False)).alias("version_conflict"),
    )
    outputs = {
        "silver_orders": order_rows(latest_per_aggregate(bronze, AggregateType.ORDER.value)),
        "silver_customers": customer_rows(latest_per_aggregate(bronze, AggregateType.CUSTOMER.value)),
        "silver_event_history": history,
    }
    for name, rows in outputs.items():
        settings.table(name).save(rows.write.format("delta").mode("overwrite"))
    gold.refresh(spark, settings)

    checkpoint = settings.checkpoint(SILVER)
    idempotency.reset(checkpoint)  # a new app id too: the new query's batch ids start at 0 again
    idempotency.write_marker(checkpoint, idempotency.STARTING_VERSION_FILE, str(version))
    counts = {
        name: settings.table(name).read(spark).count() for name in [*outputs, "gold_daily_order_metrics"]
    }
    return {"bronze_version": version, **counts}
