# Databricks notebook source
# MAGIC %md
# MAGIC # Explore the read models
# MAGIC
# MAGIC The silver read models (`silver_orders`, `silver_customers`), the two views analysts use
# MAGIC (`vw_order_summary`, `vw_daily_order_metrics`), the read-side API and projection lag over time.
# MAGIC
# MAGIC * On Databricks, after `databricks bundle deploy` (dev): open this notebook from the bundle's files
# MAGIC   folder, attach any compute and run all. It installs the wheel the deploy uploaded (widget
# MAGIC   `wheel_dir`, as the `command_ingest` job's notebook does) and reads the schema the dev deploy
# MAGIC   created for you: the widgets default to catalog `main`, schema `dev_<your short name>_cqrs_orders` and your
# MAGIC   dev deploy's artifact folder. For prod, set `schema` to `cqrs_orders` and `wheel_dir` to the prod
# MAGIC   deploy's `artifacts/.internal` folder (or clear it on a cluster that has the wheel installed).
# MAGIC * Locally: `python notebooks/explore_read_models.py --warehouse ./warehouse` (`display` prints tables,
# MAGIC   the lag chart is drawn as text).

# COMMAND ----------

import argparse
import glob
import os
import re
import subprocess
import sys
from datetime import datetime, timezone

#: A Databricks notebook (its runtime defines dbutils); a plain `python` run has neither.
ON_DATABRICKS = "dbutils" in globals() and "DATABRICKS_RUNTIME_VERSION" in os.environ
BUNDLE, SCHEMA, CATALOG = "cqrs_orders", "cqrs_orders", "main"  # databricks.yml: bundle name, var defaults


def short_name(user_name):
    """The Databricks CLI's short name of a user (its ``iamutil.GetShortUserName``): the e-mail's local part
    in lower case, each run of characters other than letters and digits one ``_``, none at either end."""
    local = user_name.split("@", 1)[0].lower()
    kept = "".join(c if c.isalpha() or c.isdecimal() else "_" for c in local)
    return re.sub("_+", "_", kept).strip("_")


def dev_defaults(user_name):
    """What `databricks bundle deploy -t dev` by ``user_name`` creates: development mode prefixes the schema
    with ``dev_<short name>_`` and uploads the wheel to the dev root's ``artifacts/.internal`` folder."""
    root = f"/Workspace/Users/{user_name}/.bundle/{BUNDLE}/dev"
    return {
        "catalog": CATALOG,
        "schema": f"dev_{short_name(user_name)}_{SCHEMA}",
        "wheel_dir": f"{root}/artifacts/.internal",
    }


if ON_DATABRICKS:
    defaults = dev_defaults(spark.sql("SELECT current_user()").first()[0])  # noqa: F821
    for widget, default in defaults.items():
        dbutils.widgets.text(widget, default)  # noqa: F821
    widgets = {widget: dbutils.widgets.get(widget) for widget in defaults}  # noqa: F821

# COMMAND ----------

# The newest wheel the deploy uploaded (dev wheels carry a timestamped version), as command_ingest installs it.
if ON_DATABRICKS and widgets["wheel_dir"]:
    wheels = sorted(glob.glob(os.path.join(widgets["wheel_dir"], "cqrs_orders-*.whl")))
    if not wheels:
        raise FileNotFoundError(
            f"no cqrs_orders wheel in {widgets['wheel_dir']}: run `databricks bundle deploy`, or clear the "
            "wheel_dir widget on compute that has the wheel installed"
        )
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", wheels[-1]], check=True)

# COMMAND ----------

from cqrs_orders.config import Settings  # noqa: E402
from cqrs_orders.query.api import ReadModels  # noqa: E402
from cqrs_orders.query.views import register_views  # noqa: E402
from cqrs_orders.report.charts import line_chart  # noqa: E402
from cqrs_orders.spark import get_spark  # noqa: E402

try:  # Databricks provides display() and displayHTML(); a plain Python run prints instead
    display  # noqa: B018
    displayHTML  # noqa: B018
    ON_NOTEBOOK = True
except NameError:
    ON_NOTEBOOK = False

    def display(frame):
        frame.show(truncate=False)


if ON_DATABRICKS:
    uc = {"CQRS_CATALOG": widgets["catalog"], "CQRS_SCHEMA": widgets["schema"]}
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
