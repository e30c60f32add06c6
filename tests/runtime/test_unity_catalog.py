"""The projection as a Databricks job runs it: tables by catalog name, checkpoints on a volume path.

On Databricks ``CQRS_CATALOG`` / ``CQRS_SCHEMA`` make every table a managed table ``catalog.schema.name``
(no folders), and ``CQRS_CHECKPOINT_ROOT`` puts the streaming checkpoints on a Unity Catalog volume
(``/Volumes/<catalog>/<schema>/<volume>/...``). Here the same code runs against the local session's
catalog (``spark_catalog``, Delta's catalog) with a schema of its own, and a checkpoint root shaped like a
volume path under the test's folder. One scenario (streaming queries are slow to start): a first
``run_once``, then more events and a second ``run_once`` that must resume from the volume's checkpoint.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.config import Settings
from cqrs_orders.envelope import CustomerState, LineItem, OrderState, new_event
from cqrs_orders.pipeline.runner import CHECKPOINT, run_once
from cqrs_orders.pipeline.tables import PIPELINE_TABLES
from cqrs_orders.query.api import ReadModels
from cqrs_orders.query.views import create_views

CATALOG = "spark_catalog"


def order(order_id: str, version: int, status: str = "Created", customer_id: str = "cust-1") -> str:
    state = OrderState(
        orderId=order_id,
        customerId=customer_id,
        status=status,
        items=[LineItem(sku="SKU-1", quantity=2, price="2.50")],
        currency="EUR",
        createdAt="2025-01-15T10:00:00Z",
        updatedAt=f"2025-01-15T10:{version:02d}:00Z",
    )
    event_type = "OrderCreated" if version == 1 else "OrderItemAdded"
    at = datetime(2025, 1, 15, 11, version, tzinfo=timezone.utc)
    return new_event(event_type, state, version, at=at).to_json()


def customer(customer_id: str, name: str) -> str:
    state = CustomerState(
        customerId=customer_id,
        name=name,
        email=f"{customer_id}@example.com",
        createdAt="2025-01-15T09:00:00Z",
        updatedAt="2025-01-15T09:00:00Z",
    )
    at = datetime(2025, 1, 15, 9, 0, tzinfo=timezone.utc)
    return new_event("CustomerRegistered", state, 1, at=at).to_json()


class Scenario:
    """Two runs of the projection into ``spark_catalog.<schema>``, checkpointed on a volume-like path."""

    def __init__(self, spark, root: Path):
        self.schema = f"cqrs_runtime_{uuid.uuid4().hex[:8]}"
        self.schema_location = root / "managed"
        self.volume = root / "Volumes" / "main" / self.schema / "checkpoints"
        env = {
            "CQRS_CATALOG": CATALOG,
            "CQRS_SCHEMA": self.schema,
            "CQRS_CHECKPOINT_ROOT": str(self.volume),
        }
        self.settings = Settings.from_env(warehouse=root / "warehouse", env=env)
        spark.sql(f"CREATE SCHEMA {CATALOG}.{self.schema} LOCATION '{self.schema_location.as_uri()}'")
        log = EventLog(self.settings.event_log_path)
        log.append([("cust-1", customer("cust-1", "Ada")), ("order-1", order("order-1", 1))])
        self.first = run_once(spark, self.settings)
        self.commits_after_first = self.commits()
        log.append([("order-1", order("order-1", 2, "Confirmed")), ("order-2", order("order-2", 1))])
        self.second = run_once(spark, self.settings)

    def name(self, table: str) -> str:
        return f"{CATALOG}.{self.schema}.{table}"

    def commits(self) -> list[int]:
        folder = self.volume / CHECKPOINT / "commits"
        return sorted(int(path.name) for path in folder.iterdir() if path.name.isdigit())


@pytest.fixture(scope="module")
def scenario(spark, tmp_path_factory):
    run = Scenario(spark, tmp_path_factory.mktemp("unity-catalog"))
    yield run
    spark.sql(f"DROP SCHEMA IF EXISTS {CATALOG}.{run.schema} CASCADE")


def test_every_table_is_a_managed_catalog_table_and_no_folder_is_made(spark, scenario):
    listed = spark.catalog.listTables(f"{CATALOG}.{scenario.schema}")
    # Spark 4.0 also lists the session's temporary views of the same names (the read side's); not tables.
    tables = {table.name: table for table in listed if not table.isTemporary}

    assert set(PIPELINE_TABLES) <= set(tables)
    for name in PIPELINE_TABLES:
        assert tables[name].tableType == "MANAGED", name
        location = spark.sql(f"DESCRIBE DETAIL {scenario.name(name)}").first()["location"]
        assert location.endswith(f"{scenario.schema_location}/{name}"), (name, location)  # managed
    made = {path.name for path in scenario.settings.warehouse.iterdir()}
    assert not made & set(PIPELINE_TABLES)  # locally the event log stays a folder; no table does
    assert not (scenario.settings.warehouse / "_checkpoints").exists()


def test_the_projection_writes_and_reads_the_tables_by_name(spark, scenario):
    assert scenario.first["bronze_events"] == 2 and scenario.first["silver_orders"] == 1
    assert scenario.second["bronze_events"] == 4
    assert scenario.second["silver_orders"] == 2 and scenario.second["silver_customers"] == 1

    orders = spark.table(scenario.name("silver_orders")).select("order_id", "status", "version")
    expected = spark.createDataFrame([("order-1", "Confirmed", 2), ("order-2", "Created", 1)], orders.schema)
    assert_df_equality(orders, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_read_side_answers_from_the_catalog_tables_and_views(spark, scenario):
    found = ReadModels.on_spark(spark, scenario.settings).get_order("order-1")
    assert found is not None
    summary = (found["customer_name"], found["status"], found["total_amount"])
    assert summary == ("Ada", "Confirmed", Decimal("5"))

    created = create_views(spark, scenario.settings)  # what the bundle's deployment runs in Unity Catalog
    assert scenario.name("vw_order_summary") in created
    rows = spark.sql(
        f"SELECT order_id, customer_name FROM {scenario.name('vw_order_summary')} ORDER BY order_id"
    ).collect()
    assert [tuple(row) for row in rows] == [("order-1", "Ada"), ("order-2", "Ada")]


def test_create_views_replaces_the_history_table_of_earlier_versions_with_the_view(spark, scenario):
    """``silver_event_history`` was a table before it became a view over bronze_events."""
    history = scenario.name("silver_event_history")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {history} (event_id STRING) USING delta")  # an old deployment's
    assert history in create_views(spark, scenario.settings)
    kind = spark.sql(f"DESCRIBE TABLE EXTENDED {history}").where("col_name = 'Type'").first()["data_type"]
    assert kind.upper() == "VIEW"
    rows = spark.table(history).select("aggregate_id", "version", "version_conflict").collect()
    assert sorted(tuple(row) for row in rows) == [
        ("cust-1", 1, False), ("order-1", 1, False), ("order-1", 2, False), ("order-2", 1, False)
    ]  # fmt: skip


def test_the_checkpoint_is_on_the_volume_and_the_second_run_resumes_from_it(scenario):
    assert scenario.commits_after_first == [0]
    assert scenario.commits() == [0, 1]  # one more batch, on top of the first run's checkpoint
    assert scenario.first["projection_input_rows"] == 2
    assert scenario.second["projection_input_rows"] == 2  # only the new records: nothing read twice
    assert (scenario.volume / CHECKPOINT / "offsets" / "1").is_file()
