"""Gold: daily order metrics, recomputed from ``silver_orders`` so they stay exact under replays.

A day's metrics depend only on the silver orders created that day, so a micro-batch recomputes just the days
its orders belonged to before and after it (:func:`order_dates`, :func:`refresh_dates`); a rebuild
recomputes them all (:func:`refresh`).

The definition is shared with the view ``vw_daily_order_metrics``: orders whose status is not
``Cancelled``, grouped by the UTC date of ``created_at``; money as decimal(18,2).
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.envelope import AggregateType
from cqrs_orders.envelope_schema import MONEY_TYPE


def daily_order_metrics(silver_orders: DataFrame) -> DataFrame:
    """``gold_daily_order_metrics`` rows: order count, revenue, average value, distinct customers per day."""
    return (
        silver_orders.where(F.col("status") != "Cancelled")
        .groupBy(F.to_date("created_at").alias("order_date"))
        .agg(
            F.count(F.lit(1)).alias("order_count"),
            F.sum("total_amount").cast(MONEY_TYPE).alias("total_revenue"),
            F.avg("total_amount").cast(MONEY_TYPE).alias("avg_order_value"),
            F.count_distinct("customer_id").alias("unique_customers"),
        )
    )


def refresh(spark, settings: Settings) -> None:
    """Overwrite the gold table with the metrics of the current silver orders (idempotent by design)."""
    metrics = daily_order_metrics(settings.table("silver_orders").read(spark))
    settings.table("gold_daily_order_metrics").save(metrics.write.format("delta").mode("overwrite"))


def order_dates(spark, settings: Settings, bronze_batch: DataFrame) -> set[date | None]:
    """The order dates a batch of ``bronze_events`` rows can change: those of its orders' incoming states
    and of their current silver rows (read this before the batch is merged: a changed date moves an order
    out of its old day)."""
    orders = bronze_batch.where(F.col("aggregate_type") == AggregateType.ORDER.value)
    incoming = orders.select(F.to_date("event.data.createdAt").alias("order_date"))
    current = (
        settings.table("silver_orders")
        .read(spark)
        .join(F.broadcast(orders.select(F.col("aggregate_id").alias("order_id"))), "order_id", "left_semi")
        .select(F.to_date("created_at").alias("order_date"))
    )
    return {row["order_date"] for row in incoming.union(current).distinct().collect()}


def refresh_dates(spark, settings: Settings, dates: set[date | None]) -> None:
    """Recompute the gold rows of ``dates`` from the current silver orders (a day left empty is deleted)."""
    if not dates:
        return
    days = sorted(d for d in dates if d is not None)
    conditions = [f"order_date IN ({', '.join(repr(d.isoformat()) for d in days)})"] if days else []
    if None in dates:  # orders without created_at form a day of their own, as in the full recompute
        conditions.append("order_date IS NULL")
    condition = " OR ".join(conditions)
    silver = settings.table("silver_orders").read(spark)
    metrics = daily_order_metrics(silver).where(condition)
    settings.table("gold_daily_order_metrics").save(
        metrics.write.format("delta").mode("overwrite").option("replaceWhere", condition)
    )
