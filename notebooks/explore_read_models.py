# Databricks notebook source
# MAGIC %md
# MAGIC # Explore the read models
# MAGIC
# MAGIC The silver read models (`silver_orders`, `silver_customers`), the two views analysts use
# MAGIC (`vw_order_summary`, `vw_daily_order_metrics`), the read-side API and projection lag over time.
# MAGIC
# MAGIC * On Databricks: attach a cluster with the project's wheel installed, set the `catalog` and `schema`
# MAGIC   widgets to where the bundle deployed the tables, and run all.
# MAGIC * Locally: `python notebooks/explore_read_models.py --warehouse ./warehouse` (`display` prints tables,
# MAGIC   the lag chart is drawn as text).

# COMMAND ----------

import argparse
import os
from datetime import datetime, timezone

from cqrs_orders.config import Settings, running_on_databricks
from cqrs_orders.query.api import ReadModels
from cqrs_orders.query.views import register_views
from cqrs_orders.report.charts import line_chart
from cqrs_orders.spark import get_spark

try:  # Databricks provides display() and displayHTML(); a plain Python run prints instead
    display  # noqa: B018
    displayHTML  # noqa: B018
    ON_NOTEBOOK = True
except NameError:
    ON_NOTEBOOK = False

    def display(frame):
        frame.show(truncate=False)


if running_on_databricks() and ON_NOTEBOOK:
    dbutils.widgets.text("catalog", "main")  # noqa: F821
    dbutils.widgets.text("schema", "cqrs_orders")  # noqa: F821
    uc = {"CQRS_CATALOG": dbutils.widgets.get("catalog"), "CQRS_SCHEMA": dbutils.widgets.get("schema")}  # noqa: F821
    settings = Settings.from_env(env={**os.environ, **uc})
else:
    parser = argparse.ArgumentParser(description="Explore the read models of a local warehouse.")
    parser.add_argument("--warehouse", metavar="DIR", help="the warehouse folder (default $CQRS_WAREHOUSE or ./warehouse)")
    settings = Settings.from_env(parser.parse_known_args()[0].warehouse)

spark = get_spark("explore-read-models")
names = register_views(spark, settings)
print(f"Read models in {settings.warehouse if not settings.catalog else settings.catalog + '.' + settings.schema}:")
print("  " + (", ".join(names) or "none yet: run `cqrs-orders demo` or the projection job first"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Silver read models
# MAGIC One row per aggregate, at the highest version ever seen (order-independent projection).

# COMMAND ----------

if "silver_orders" in names:
    display(spark.sql(
        "SELECT order_id, customer_id, status, item_count, total_amount, currency, created_at, updated_at, version "
        "FROM silver_orders ORDER BY created_at, order_id"
    ))
if "silver_customers" in names:
    display(spark.sql("SELECT customer_id, customer_name, email, version FROM silver_customers ORDER BY customer_id"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## The views
# MAGIC `vw_order_summary` LEFT JOINs customers: an order whose customer is not projected yet keeps
# MAGIC `customer_name` NULL instead of disappearing. `vw_daily_order_metrics` leaves cancelled orders out.

# COMMAND ----------

if "vw_order_summary" in names:
    display(spark.sql("SELECT * FROM vw_order_summary ORDER BY created_date, order_id"))
    unknown = spark.sql("SELECT count(*) FROM vw_order_summary WHERE customer_name IS NULL").first()[0]
    print(f"Orders whose customer is not (yet) known: {unknown}")
if "vw_daily_order_metrics" in names:
    display(spark.sql("SELECT * FROM vw_daily_order_metrics ORDER BY order_date"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## The read-side API
# MAGIC `ReadModels` binds every value as a parameter; on a SQL warehouse use `ReadModels.on_sql_warehouse`.

# COMMAND ----------

if "vw_order_summary" in names:
    read_models = ReadModels.on_spark(spark, settings)
    first = spark.sql("SELECT order_id, customer_id FROM vw_order_summary ORDER BY created_date, order_id").first()
    if first is not None:
        print("get_order:", read_models.get_order(first.order_id))
        print("orders_of_customer:", [o["order_id"] for o in read_models.orders_of_customer(first.customer_id)])

# COMMAND ----------

# MAGIC %md
# MAGIC ## Projection lag over time
# MAGIC Event-time lag per projection, one point per run of the lag monitor (`ops_projection_lag`).

# COMMAND ----------

if "ops_projection_lag" not in names:
    print("No lag measurements yet: run `cqrs-orders lag` (or the lag monitor job).")
else:
    rows = spark.sql(
        "SELECT projection, unix_micros(run_at) AS run_micros, event_time_lag_seconds FROM ops_projection_lag "
        "WHERE event_time_lag_seconds IS NOT NULL ORDER BY run_at, projection"
    ).collect()
    series = {}
    for row in rows:
        moment = datetime.fromtimestamp(row.run_micros / 1e6, timezone.utc)
        series.setdefault(row.projection, []).append((moment, row.event_time_lag_seconds))
    if ON_NOTEBOOK:
        displayHTML(line_chart("projection-lag", "Event-time lag (seconds)", series))  # noqa: F821
        display(spark.sql("SELECT * FROM vw_projection_lag_hourly ORDER BY hour, projection"))
    else:
        print("Event-time lag (seconds) per run:")
        top = max(lag for points in series.values() for _, lag in points) or 1.0
        for projection, points in sorted(series.items()):
            for moment, lag in points:
                print(f"  {moment:%Y-%m-%d %H:%M} {projection:<17} {'#' * max(1, round(lag / top * 40)):<40} {lag:.1f}")
