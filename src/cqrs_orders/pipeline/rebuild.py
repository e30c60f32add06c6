"""Rebuild silver (every read model) and gold from ``bronze_events``, leaving bronze alone (the event
history is a view over bronze: nothing to rebuild).

For a bug fix in a projection, or a lost silver table: bronze holds every valid event that ever arrived,
and the projection rules (highest version wins, smaller id on a tie) depend on the set of events only, so
one batch over a bronze snapshot gives exactly what streaming gave. An aggregation over a read model is
recomputed whole from that read model's rebuilt rows (what its incremental MERGE keeps equal). The read
models come from :data:`~.read_models.READ_MODELS`, the same declarations the stream's MERGEs use, and
each winner's body is read through its declared upcasters as the stream reads it
(:meth:`~.read_models.ReadModel.parse_state`), so events of an older schema version rebuild exactly.

Afterwards the projection simply carries on from the bus: its checkpoint is untouched, and applying an
event the rebuild already applied changes nothing. Stop the projection while rebuilding.
"""

from __future__ import annotations

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import table
from cqrs_orders.pipeline import gold
from cqrs_orders.pipeline.read_models import READ_MODELS
from cqrs_orders.pipeline.silver import latest_per_aggregate
from cqrs_orders.pipeline.tables import ensure_tables


def rebuild(spark, settings: Settings) -> dict:
    """Recompute silver and gold from the latest bronze snapshot; return the bronze version and counts."""
    ensure_tables(spark, settings)
    bronze_table = table(settings, "bronze_events")
    version = bronze_table.version(spark)
    bronze = bronze_table.read(spark, versionAsOf=str(version))
    outputs = {}
    for model in READ_MODELS:  # a derived model comes after its source
        if model.derived_from is None:
            outputs[model.table] = model.project(latest_per_aggregate(bronze, model.aggregate_type.value))
        else:
            outputs[model.table] = model.recompute(outputs[model.derived_from.table])
    for name, rows in outputs.items():
        table(settings, name).save(rows.write.format("delta").mode("overwrite"))
    gold.refresh(spark, settings)
    counts = {
        name: table(settings, name).read(spark).count() for name in [*outputs, "gold_daily_order_metrics"]
    }
    return {"bronze_version": version, **counts}
