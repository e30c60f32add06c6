"""Gold: daily order metrics, recomputed from ``silver_orders`` so they stay exact under replays.

Gold is a materialised view of silver: every refresh is a full recompute, so a replayed or duplicated batch
can never double count. It is kept off the micro-batch path (which only has to make silver fresh): a
:class:`GoldRefresher` recomputes it when ``silver_orders`` has a new Delta version, at most once per
``Settings.gold_refresh_seconds`` while streaming, and once more when a run ends.

The definition is shared with the view ``vw_daily_order_metrics``: orders whose status is not
``Cancelled``, grouped by the UTC date of ``created_at``; money as decimal(18,2), a day's revenue as
decimal(38,2) (a sum of amounts that each fit decimal(18,2) need not).
"""

from __future__ import annotations

import logging
import threading

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import table
from cqrs_orders.envelope_schema import MONEY_SUM_TYPE, MONEY_TYPE
from cqrs_orders.pipeline.sessions import isolated_session

log = logging.getLogger(__name__)

#: The table this module writes.
GOLD_TABLE = "gold_daily_order_metrics"


def daily_order_metrics(silver_orders: DataFrame) -> DataFrame:
    """``gold_daily_order_metrics`` rows: order count, revenue, average value, distinct customers per day."""
    return (
        silver_orders.where(F.col("status") != "Cancelled")
        .groupBy(F.to_date("created_at").alias("order_date"))
        .agg(
            F.count(F.lit(1)).alias("order_count"),
            F.sum("total_amount").cast(MONEY_SUM_TYPE).alias("total_revenue"),
            F.avg("total_amount").cast(MONEY_TYPE).alias("avg_order_value"),
            F.count_distinct("customer_id").alias("unique_customers"),
        )
    )


def refresh(spark, settings: Settings) -> None:
    """Overwrite the gold table with the metrics of the current silver orders (idempotent by design)."""
    metrics = daily_order_metrics(table(settings, "silver_orders").read(spark))
    # Recomputed whole each time, so its schema is the code's (an older revenue column's width is replaced).
    writer = metrics.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    table(settings, GOLD_TABLE).save(writer)


class GoldRefresher:
    """Recomputes gold when ``silver_orders`` changed since the last refresh (see the module docstring)."""

    def __init__(self, spark, settings: Settings):
        self._spark, self._settings = isolated_session(spark), settings  # runs beside the batches
        self._refreshed_version: int | None = None

    def refresh_if_changed(self) -> bool:
        """Refresh gold if silver_orders has a version gold was not computed from; True when it did."""
        version = self._silver_version()
        if version == self._refreshed_version:
            return False
        refresh(self._spark, self._settings)  # reads silver at `version` or later: never older than noted
        self._refreshed_version = version
        return True

    def run(self, stop: threading.Event, interval_seconds: float) -> None:
        """Refresh every ``interval_seconds`` until ``stop`` is set (a daemon thread's loop)."""
        while not stop.wait(interval_seconds):
            try:
                self.refresh_if_changed()
            except Exception as error:  # a failed refresh is retried next time; it must not kill the stream
                log.warning("gold refresh failed, retrying in %g s: %s", interval_seconds, error)

    def _silver_version(self) -> int:
        return table(self._settings, "silver_orders").version(self._spark)
