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
  report``);
- ``lag``: ``cqrs-orders lag`` (the new path: the monitor's SQL on DataFusion, its rows appended with
  ``deltalake``);
- ``lag_spark``: the same measures on a local Spark session, its rows appended with Spark: the path of
  the Databricks lag job, and of ``lag`` on a laptop before (``--spark-baseline lag``);
- ``quarantine``: ``cqrs-orders quarantine list`` (the new path: its SQL on DataFusion);
- ``quarantine_spark``: the same listing on a local Spark session (``--spark-baseline quarantine``).

The warehouse is a projected one: besides the read models, the embedded event log with every event of
those orders (written as the relay writes it), ``bronze_events``, 1% of the orders with one more record
in ``bronze_quarantine``, and the projection's progress, so ``lag`` measures a healthy warehouse.

Prints ONE JSON line: the median seconds of each, and the ratios
``ratio_sql_spark_to_new`` (aim: at least 10), ``ratio_sql_new_to_version`` (aim: at most 3),
``ratio_lag_spark_to_new`` (aim: at least 10), ``ratio_lag_new_to_version`` (aim: at most 3),
``ratio_report_spark_to_new``, ``ratio_report_new_to_version``, ``ratio_quarantine_spark_to_new`` and
``ratio_quarantine_new_to_version``. Progress goes to stderr.

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
#: ``lag``'s threshold: the warehouse is projected, so any threshold finds it healthy (exit 0).
LAG_THRESHOLD_SECONDS = "60"
#: The report's queries as it ran them on Spark (``unix_micros``: PySpark hands timestamps over naive).
SPARK_REPORT = (
    "SELECT order_date, order_count, total_revenue FROM vw_daily_order_metrics ORDER BY order_date",
    "SELECT status, count(*) AS orders FROM silver_orders GROUP BY status ORDER BY orders DESC, status",
    "SELECT projection, unix_micros(run_at) AS run_micros, event_time_lag_seconds FROM ops_projection_lag "
    "WHERE event_time_lag_seconds IS NOT NULL ORDER BY run_at",
)
STATUSES = ("Created", "Confirmed", "Shipped", "Delivered", "Cancelled")
_MARKER = "reads-benchmark.json"
#: What the warehouse holds; a kept warehouse of another layout is written again.
_LAYOUT = 2
#: One order in this many has one more record on the bus, which bronze quarantined.
QUARANTINED_EVERY = 100


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
    bronze_rows, quarantine_rows = bus(settings, order_rows)
    progress_rows = [
        {"query_name": "projection", "run_id": "benchmark", "batch_id": 0, "batch_timestamp": start,
         "num_input_rows": len(bronze_rows), "recorded_at": datetime.now(timezone.utc)}
    ]  # fmt: skip
    for name, rows in (
        ("silver_orders", order_rows),
        ("silver_customers", customer_rows),
        ("silver_product_sales", sales_rows),
        ("ops_projection_lag", lag_rows),
        ("bronze_events", bronze_rows),
        ("bronze_quarantine", quarantine_rows),
        ("ops_stream_progress", progress_rows),
    ):
        schema = to_arrow_schema(SCHEMAS[name])
        table = pa.Table.from_pylist(
            [{field: row.get(field) for field in schema.names} for row in rows], schema
        )
        write_deltalake(settings.table(name).path, table, mode="overwrite")
    (warehouse / _MARKER).write_text(json.dumps({"orders": orders, "layout": _LAYOUT}), encoding="utf-8")


def bus(settings, order_rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Every version of every order as an event on the embedded log, appended as the relay appends; and the
    rows bronze holds for them. One order in :data:`QUARANTINED_EVERY` has one more record on the log
    (its version sent as a string): a ``bronze_quarantine`` row."""
    from cqrs_orders.adapters.event_log import EventLog

    log_ = EventLog(settings.event_log_path, settings.event_log_partitions)
    events, bad = [], []
    for number, order in enumerate(order_rows):
        for version in range(1, order["version"] + 1):
            at = order["created_at"] + timedelta(hours=version - 1)
            event = {
                "eventId": f"evt-{number}-{version}", "eventType": "OrderCreated" if version == 1
                else f"Order{STATUSES[version - 1]}", "aggregateType": "Order",
                "aggregateId": order["order_id"], "version": version,
                "timestamp": at.isoformat().replace("+00:00", "Z"), "data": {"status": STATUSES[version - 1]},
            }  # fmt: skip
            events.append((event, at))
        if number % QUARANTINED_EVERY == 0:
            body = json.dumps({**events[-1][0], "eventId": f"bad-{number}", "version": "x"})
            bad.append((order["order_id"], body))
    positions = []
    for first in range(0, len(events), 50_000):
        chunk = events[first : first + 50_000]
        positions += log_.append([(e["aggregateId"], json.dumps(e)) for e, _ in chunk])
    ingested = datetime.now(timezone.utc)
    bronze = [
        {"body": json.dumps(e), "partition": partition, "offset": offset, "enqueued_time": at,
         "partition_key": e["aggregateId"], "event_id": e["eventId"], "event_type": e["eventType"],
         "aggregate_type": "Order", "aggregate_id": e["aggregateId"], "version": e["version"],
         "event_time": at, "ingest_time": ingested}
        for (e, at), (partition, offset) in zip(events, positions, strict=True)
    ]  # fmt: skip
    quarantine = [
        {"body": body, "partition": partition, "offset": offset, "enqueued_time": ingested,
         "partition_key": key, "failed_expectations": ["version_is_integer"], "ingest_time": ingested}
        for (key, body), (partition, offset) in zip(bad, log_.append(bad), strict=True)
    ]  # fmt: skip
    return bronze, quarantine


def ensure_warehouse(warehouse: Path, orders: int) -> None:
    marker = warehouse / _MARKER
    kept = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else {}
    if kept == {"orders": orders, "layout": _LAYOUT}:
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
    """The reads as ``sql``, ``report``, ``lag`` and ``quarantine list`` made them before they left Spark
    (``lag`` and ``quarantine list``: the very SQL the new path runs, on Spark, as the Databricks jobs
    run it)."""
    from cqrs_orders.config import Settings
    from cqrs_orders.query.views import register_views
    from cqrs_orders.report.page import ReportData, render_report
    from cqrs_orders.spark import get_spark

    settings = Settings.from_env(warehouse=warehouse, env={})
    spark = get_spark(f"reads-benchmark-{kind}")
    if kind == "lag":
        from cqrs_orders.ops.lag import measure_lag

        print(measure_lag(spark, settings, float(LAG_THRESHOLD_SECONDS)).to_text())
        return
    if kind == "quarantine":
        from cqrs_orders.cli.quarantine import DEFAULT_LIMIT, _record_text
        from cqrs_orders.pipeline.quarantine import list_records
        from cqrs_orders.query.quarantine import Selection

        for row in list_records(spark, settings, Selection(), DEFAULT_LIMIT + 1)[:DEFAULT_LIMIT]:
            print(_record_text(row))
        return
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
        "lag": [*cli(), "lag", *where, "--threshold-seconds", LAG_THRESHOLD_SECONDS, "--quiet"],
        "lag_spark": [*this, "--spark-baseline", "lag", *where],
        "quarantine": [*cli(), "quarantine", "list", *where, "--quiet"],
        "quarantine_spark": [*this, "--spark-baseline", "quarantine", *where],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--warehouse", type=Path, help="where to keep (and reuse) the warehouse")
    parser.add_argument(
        "--spark-baseline", choices=("sql", "report", "lag", "quarantine"), help=argparse.SUPPRESS
    )
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
        "ratio_lag_spark_to_new": round(median["lag_spark"] / median["lag"], 2),
        "ratio_lag_new_to_version": round(median["lag"] / median["version"], 2),
        "ratio_quarantine_spark_to_new": round(median["quarantine_spark"] / median["quarantine"], 2),
        "ratio_quarantine_new_to_version": round(median["quarantine"] / median["version"], 2),
    }
    for name in ("sql", "lag"):
        figures[f"{name}_at_least_10x_faster_than_spark"] = median[f"{name}_spark"] >= 10 * median[name]
        figures[f"{name}_within_3x_of_version"] = median[name] <= 3 * median["version"]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
