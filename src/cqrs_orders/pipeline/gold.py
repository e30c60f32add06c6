"""Gold: daily order metrics, recomputed in full from ``silver_orders`` so they stay exact under replays.

The definition is shared with the view ``vw_daily_order_metrics``: orders whose status is not
``Cancelled``, grouped by the UTC date of ``created_at``; money as decimal(18,2).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
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
