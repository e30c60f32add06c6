"""A small hand-made warehouse with the contract schemas, so the read side is tested without the pipeline.

The rows are chosen so every expectation can be computed by hand:

- 2025-01-15: o-1 (cust-1, 25.50) and o-2 (cust-2, 4.55, created 23:30 UTC) -> 2 orders, 30.05, avg 15.025
  rounded half up to 15.03, 2 customers.
- 2025-01-16: o-3 (cust-9, unknown customer, 100.00), o-5 (cust-1, 1.98) -> 2 orders, 101.98, avg 50.99;
  o-4 is Cancelled and counts nowhere in the metrics (but is in the summary).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table
from cqrs_orders.ops.lag import LAG_SCHEMA
from cqrs_orders.pipeline.tables import SCHEMAS as PIPELINE_SCHEMAS

#: The contract schemas, from the one place that defines them.
SCHEMAS = {
    "silver_orders": PIPELINE_SCHEMAS["silver_orders"],
    "silver_customers": PIPELINE_SCHEMAS["silver_customers"],
    "silver_product_sales": PIPELINE_SCHEMAS["silver_product_sales"],
    "ops_projection_lag": LAG_SCHEMA,
}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def order(order_id, customer_id, status, items, created, updated=None, version=1):
    updated = updated or created
    lines = [(sku, quantity, Decimal(price)) for sku, quantity, price in items]
    total = sum((quantity * price for _, quantity, price in lines), Decimal("0.00"))
    event_type = {"Created": "OrderCreated"}.get(status, f"Order{status}")
    return (
        order_id, customer_id, status, lines, sum(q for _, q, _ in lines), total, "EUR", utc(created),
        utc(updated), version, f"evt-{order_id}-{version}", event_type, utc(updated), utc(updated),
    )  # fmt: skip


def customer(customer_id, name, created):
    return (
        customer_id, name, f"{name.lower()}@example.com", utc(created), utc(created), 1,
        f"evt-{customer_id}", "CustomerRegistered", utc(created), utc(created),
    )  # fmt: skip


ORDERS = [
    order("o-1", "cust-1", "Created", [("A", 2, "10.25"), ("B", 1, "5.00")], "2025-01-15T09:00:00"),
    order("o-2", "cust-2", "Confirmed", [("C", 1, "4.55")], "2025-01-15T23:30:00", "2025-01-16T01:00:00", 2),
    order("o-3", "cust-9", "Shipped", [("D", 1, "100.00")], "2025-01-16T00:15:00", "2025-01-16T05:00:00", 3),
    order("o-4", "cust-1", "Cancelled", [("E", 5, "20.00")], "2025-01-16T08:00:00", "2025-01-16T08:30:00", 2),
    order("o-5", "cust-1", "Delivered", [("F", 2, "0.99")], "2025-01-16T10:00:00", "2025-01-17T10:00:00", 4),
]
CUSTOMERS = [
    customer("cust-1", "Ada", "2025-01-14T08:00:00"),
    customer("cust-2", "Bob", "2025-01-14T09:00:00"),
]


def sales(sku, currency, units, revenue, orders, last_sale_at):
    return (sku, currency, units, Decimal(revenue), orders, utc(last_sale_at), utc("2025-01-17T10:00:00"))


#: The orders' sales but the cancelled o-4's (E), and A's in USD too (an order not among ORDERS, which are
#: all in EUR): a SKU sold in two currencies.
PRODUCT_SALES = [
    sales("A", "EUR", 2, "20.50", 1, "2025-01-15T09:00:00"),
    sales("A", "USD", 3, "36.00", 2, "2025-01-16T12:00:00"),
    sales("B", "EUR", 1, "5.00", 1, "2025-01-15T09:00:00"),
    sales("C", "EUR", 1, "4.55", 1, "2025-01-15T23:30:00"),
    sales("D", "EUR", 1, "100.00", 1, "2025-01-16T00:15:00"),
    sales("F", "EUR", 2, "1.98", 1, "2025-01-16T10:00:00"),
]


def lag(run_at, projection, lag_seconds, healthy=True):
    return (
        utc(run_at),
        projection,
        lag_seconds,
        0,
        2,
        4.0,
        0,
        60.0,
        healthy,
        [] if healthy else ["event_time_lag"],
        None,  # outbox_unpublished: no write store measured
        None,  # outbox_oldest_age_seconds
    )


LAG = [
    lag("2025-01-16T10:00:00", "silver_orders", 3.0),
    lag("2025-01-16T10:00:00", "silver_customers", 1.0),
    lag("2025-01-16T10:05:00", "silver_orders", 75.0, healthy=False),
    lag("2025-01-16T10:05:00", "silver_customers", 2.0),
    lag("2025-01-16T11:10:00", "silver_orders", 5.0),
    lag("2025-01-16T11:10:00", "silver_customers", 0.5),
]
ROWS = {
    "silver_orders": ORDERS,
    "silver_customers": CUSTOMERS,
    "silver_product_sales": PRODUCT_SALES,
    "ops_projection_lag": LAG,
}
#: The tables written unless a test names others.
WRITTEN = tuple(ROWS)


def write_tables(spark, settings: Settings, tables=WRITTEN):
    """Write the hand-made rows of ``tables`` as Delta, exactly where the pipeline would."""
    for name in tables:
        frame = spark.createDataFrame(ROWS[name], SCHEMAS[name])
        Table(settings.table(name)).save(frame.coalesce(1).write.format("delta").mode("overwrite"))


@pytest.fixture(scope="session")
def read_warehouse(spark, tmp_path_factory) -> Settings:
    """The hand-made warehouse, written once per run; tests only read it."""
    settings = Settings.from_env(warehouse=tmp_path_factory.mktemp("read_side") / "warehouse", env={})
    write_tables(spark, settings)
    return settings


@pytest.fixture
def write_warehouse(spark):
    """``write_warehouse(settings, tables)``: the hand-made rows of some tables into another warehouse."""

    def write(settings: Settings, tables=WRITTEN) -> None:
        write_tables(spark, settings, tables)

    return write


def write_tables_without_spark(settings: Settings, tables=WRITTEN) -> None:
    """The same hand-made rows written by ``deltalake``: the fast tier's warehouse (no Spark to start)."""
    import pyarrow as pa
    from deltalake import write_deltalake
    from pyspark.sql.pandas.types import to_arrow_schema  # pure Python: no JVM

    for name in tables:
        schema = to_arrow_schema(SCHEMAS[name])
        rows = [dict(zip(schema.names, row, strict=True)) for row in ROWS[name]]
        write_deltalake(settings.table(name).path, pa.Table.from_pylist(rows, schema=schema))


@pytest.fixture(scope="session")
def delta_warehouse(tmp_path_factory) -> Settings:
    """The hand-made warehouse written without Spark, once per run; tests only read it."""
    settings = Settings.from_env(warehouse=tmp_path_factory.mktemp("read_side_delta") / "warehouse", env={})
    write_tables_without_spark(settings)
    return settings


@pytest.fixture
def write_delta_warehouse():
    """``write_delta_warehouse(settings, tables)``: the hand-made rows, without Spark, into a warehouse."""
    return write_tables_without_spark
