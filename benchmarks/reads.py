"""The read commands without Spark next to the same reads through Spark: what does a laptop wait for?

One warehouse of ``--orders`` orders (default 100,000), written once with the project's own table schemas
(``cqrs_orders.pipeline.tables.SCHEMAS``) by ``deltalake`` and cached under ``--warehouse`` (reused when it
holds the same number of orders). Then, in interleaved rounds (``--repeat``), each a fresh process as a
person would start it:

- ``version``: ``cqrs-orders --version``, the floor of any command (Python and the CLI's imports);
- ``sql``: ``cqrs-orders sql "SELECT count(*) FROM silver_orders"`` (the new path: DataFusion over Delta);
- ``sql_spark``: the same query the way ``sql`` used to run it: a local Spark session with the Delta jars,
  the warehouse registered as views, ``spark.sql(...).show()`` (this script, ``--spark-baseline sql``);
- ``report``: ``cqrs-orders report`` (the new path);
- ``report_spark``: the report's three queries through Spark, then the same page (``--spark-baseline
  report``).

Prints ONE JSON line: the median seconds of each, and the ratios
``ratio_sql_spark_to_new`` (aim: at least 10), ``ratio_sql_new_to_version`` (aim: at most 3),
``ratio_report_spark_to_new`` and ``ratio_report_new_to_version``. Progress goes to stderr.

    python benchmarks/reads.py                                  # 100,000 orders, 5 rounds
    python benchmarks/reads.py --orders 2000 --repeat 1         # a quick check
    python benchmarks/reads.py --warehouse /tmp/reads-100k      # keep the warehouse for the next run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

SQL = "SELECT count(*) FROM silver_orders"
#: The report's queries as it ran them on Spark (``unix_micros``: PySpark hands timestamps over naive).
SPARK_REPORT = (
    "SELECT order_date, order_count, total_revenue FROM vw_daily_order_metrics ORDER BY order_date",
    "SELECT status, count(*) AS orders FROM silver_orders GROUP BY status ORDER BY orders DESC, status",
    "SELECT projection, unix_micros(run_at) AS run_micros, event_time_lag_seconds FROM ops_projection_lag "
    "WHERE event_time_lag_seconds IS NOT NULL ORDER BY run_at",
)
STATUSES = ("Created", "Confirmed", "Shipped", "Delivered", "Cancelled")
_MARKER = "reads-benchmark.json"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the warehouse ------------------------------------------------------------------------------------
def build_warehouse(warehouse: Path, orders: int) -> None:
    """silver_orders, silver_customers, silver_product_sales and ops_projection_lag with ``orders`` orders
    over a year, in the pipeline's exact schemas (what ``project --once`` would have written)."""
    import pyarrow as pa
    from deltalake import write_deltalake
    from pyspark.sql.pandas.types import to_arrow_schema  # pure Python: no JVM

    from cqrs_orders.config import Settings
    from cqrs_orders.pipeline.tables import SCHEMAS

    settings = Settings.from_env(warehouse=warehouse, env={})
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    customers = max(1, orders // 10)
    order_rows, sales = [], {}
    for number in range(orders):
        created = start + timedelta(seconds=number * 31_536_000 // max(orders, 1))
        status = STATUSES[number % len(STATUSES)]
        quantity, price = 1 + number % 3, Decimal(f"{1 + number % 50}.{number % 100:02d}")
        sku = f"SKU-{number % 200}"
        version = 1 + STATUSES.index(status)
        order_rows.append({
            "order_id": f"order-{number}", "customer_id": f"cust-{number % customers}", "status": status,
            "items": [{"sku": sku, "quantity": quantity, "unit_price": price}], "item_count": quantity,
            "total_amount": price * quantity, "currency": "EUR", "created_at": created,
            "updated_at": created + timedelta(hours=version), "version": version,
            "last_event_id": f"evt-{number}-{version}", "last_event_type": f"Order{status}",
            "last_event_time": created + timedelta(hours=version),
            "projected_at": created + timedelta(hours=9),
        })  # fmt: skip
        if status != "Cancelled":
            units, revenue, count, last = sales.get(sku, (0, Decimal("0.00"), 0, created))
            sales[sku] = (units + quantity, revenue + price * quantity, count + 1, max(last, created))
    customer_rows = [
        {"customer_id": f"cust-{number}", "customer_name": f"Customer {number}",
         "email": f"c{number}@example.com", "created_at": start, "updated_at": start, "version": 1,
         "last_event_id": f"evt-cust-{number}", "last_event_type": "CustomerRegistered",
         "last_event_time": start, "projected_at": start}
        for number in range(customers)
    ]  # fmt: skip
    sales_rows = [
        {"sku": sku, "currency": "EUR", "units": units, "revenue": revenue, "orders": count,
         "last_sale_at": last, "projected_at": last}
        for sku, (units, revenue, count, last) in sales.items()
    ]  # fmt: skip
    lag_rows = [
        {"run_at": start + timedelta(minutes=5 * run), "projection": projection,
         "event_time_lag_seconds": float(run % 7), "bus_backlog": 0, "bronze_backlog": 0,
         "staleness_seconds": 1.0, "version_gaps": 0, "threshold_seconds": 60.0, "healthy": True,
         "breaches": [], "outbox_unpublished": None, "outbox_oldest_age_seconds": None}
        for run in range(288) for projection in ("silver_orders", "silver_customers")
    ]  # fmt: skip
    for name, rows in (
        ("silver_orders", order_rows),
        ("silver_customers", customer_rows),
        ("silver_product_sales", sales_rows),
        ("ops_projection_lag", lag_rows),
    ):
        schema = to_arrow_schema(SCHEMAS[name])
        table = pa.Table.from_pylist(
            [{field: row.get(field) for field in schema.names} for row in rows], schema
        )
        write_deltalake(settings.table(name).path, table, mode="overwrite")
    (warehouse / _MARKER).write_text(json.dumps({"orders": orders}), encoding="utf-8")


def ensure_warehouse(warehouse: Path, orders: int) -> None:
    marker = warehouse / _MARKER
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")).get("orders") == orders:
        log(f"reusing the warehouse of {orders:,} orders at {warehouse}")
        return
    shutil.rmtree(warehouse, ignore_errors=True)
    warehouse.mkdir(parents=True)
    log(f"writing a warehouse of {orders:,} orders at {warehouse}")
    started = time.perf_counter()
    build_warehouse(warehouse, orders)
    log(f"  written in {time.perf_counter() - started:.1f} s")


# --- the Spark baseline (run in its own process by --spark-baseline) -----------------------------------
def spark_baseline(kind: str, warehouse: Path, out: Path) -> None:
    """The reads as ``sql`` and ``report`` made them before they left Spark."""
    from cqrs_orders.config import Settings
    from cqrs_orders.query.views import register_views
    from cqrs_orders.report.page import ReportData, render_report
    from cqrs_orders.spark import get_spark

    settings = Settings.from_env(warehouse=warehouse, env={})
    spark = get_spark(f"reads-benchmark-{kind}")
    register_views(spark, settings)
    if kind == "sql":
        spark.sql(SQL).show(n=100, truncate=False)
        return
    daily_rows, mix_rows, lag_rows = (spark.sql(query).collect() for query in SPARK_REPORT)
    daily = [(row.order_date, row.order_count, row.total_revenue) for row in daily_rows]
    mix = [(row.status, row.orders) for row in mix_rows]
    lag: dict = {}
    for row in lag_rows:
        moment = datetime.fromtimestamp(row.run_micros / 1e6, timezone.utc)
        lag.setdefault(row.projection, []).append((moment, row.event_time_lag_seconds))
    page = render_report(ReportData(datetime.now(timezone.utc), str(warehouse), daily, mix, lag))
    out.write_text(page, encoding="utf-8")


# --- timing -------------------------------------------------------------------------------------------
def cli() -> list[str]:
    """The installed console script beside this Python (what a person types), else ``python -m``."""
    script = Path(sys.executable).with_name("cqrs-orders")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cqrs_orders.cli"]


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    finished = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(
            f"{' '.join(command[:3])} ... failed ({finished.returncode}): {finished.stderr[-2000:]}"
        )
    return elapsed


def commands(warehouse: Path, scratch: Path) -> dict[str, list[str]]:
    this = [sys.executable, str(Path(__file__).resolve())]
    where = ["--warehouse", str(warehouse)]
    return {
        "version": [*cli(), "--version"],
        "sql": [*cli(), "sql", *where, SQL],
        "sql_spark": [*this, "--spark-baseline", "sql", *where],
        "report": [*cli(), "report", *where, "--out", str(scratch / "report.html"), "--quiet"],
        "report_spark": [*this, "--spark-baseline", "report", *where, "--out", str(scratch / "spark.html")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--warehouse", type=Path, help="where to keep (and reuse) the warehouse")
    parser.add_argument("--spark-baseline", choices=("sql", "report"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spark_baseline:
        spark_baseline(args.spark_baseline, args.warehouse, args.out)
        return

    scratch = Path(tempfile.mkdtemp(prefix="reads-benchmark-"))
    warehouse = args.warehouse or scratch / "warehouse"
    try:
        ensure_warehouse(warehouse, args.orders)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CQRS_") or key == "CQRS_JARS_DIR"
        }
        runs = commands(warehouse, scratch)
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for round_number in range(1, args.repeat + 1):
            for name, command in runs.items():
                seconds[name].append(timed(command, env, scratch))
            log(
                f"round {round_number}/{args.repeat}: "
                + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in seconds.items())
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    figures = {
        "orders": args.orders,
        "rounds": args.repeat,
        **{f"{name}_seconds": round(value, 4) for name, value in median.items()},
        "ratio_sql_spark_to_new": round(median["sql_spark"] / median["sql"], 2),
        "ratio_sql_new_to_version": round(median["sql"] / median["version"], 2),
        "ratio_report_spark_to_new": round(median["report_spark"] / median["report"], 2),
        "ratio_report_new_to_version": round(median["report"] / median["version"], 2),
    }
    figures["sql_at_least_10x_faster_than_spark"] = median["sql_spark"] >= 10 * median["sql"]
    figures["sql_within_3x_of_version"] = median["sql"] <= 3 * median["version"]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
