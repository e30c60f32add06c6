"""A hand-made lake for the lag monitor: real events on the embedded log, and bronze, silver and progress
tables written directly with the contract schemas, so each test sets exactly the state it needs (the event
history is a view over bronze)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.delta_io import Table
from cqrs_orders.envelope import CustomerState, EventEnvelope, LineItem, OrderState, OrderStatus, new_event
from cqrs_orders.envelope_schema import ENVELOPE_SCHEMA
from cqrs_orders.pipeline.tables import SCHEMAS

#: The contract schemas, from the one place that defines them.
SILVER_ORDERS = SCHEMAS["silver_orders"]
SILVER_CUSTOMERS = SCHEMAS["silver_customers"]
QUARANTINE = SCHEMAS["bronze_quarantine"]
PROGRESS = SCHEMAS["ops_stream_progress"]


def order_event(order_id: str, version: int, at: datetime, customer_id: str = "cust-1") -> EventEnvelope:
    state = OrderState(
        orderId=order_id,
        customerId=customer_id,
        status=OrderStatus.CREATED,
        items=(LineItem(sku="A", quantity=version, price=Decimal("2.50")),),
        currency="EUR",
        createdAt=at,
        updatedAt=at,
    )
    return new_event("OrderCreated" if version == 1 else "OrderItemAdded", state, version, at=at)


def customer_event(customer_id: str, version: int, at: datetime) -> EventEnvelope:
    state = CustomerState(
        customerId=customer_id, name="Ada", email="ada@example.com", createdAt=at, updatedAt=at
    )
    return new_event("CustomerRegistered" if version == 1 else "CustomerUpdated", state, version, at=at)


class Lake:
    """Writes the tables of one test's warehouse; every method appends."""

    order_event = staticmethod(order_event)
    customer_event = staticmethod(customer_event)

    def __init__(self, spark, settings):
        self.spark, self.settings = spark, settings
        self.log = EventLog(settings.event_log_path, settings.event_log_partitions)
        self.positions: dict[str, tuple[int, int]] = {}  # event id -> (partition, offset) on the log

    def publish(self, *events: EventEnvelope) -> None:
        """Append events to the embedded log (the bus)."""
        positions = self.log.append([(e.aggregateId, e.to_json()) for e in events])
        self.positions.update(zip((str(e.eventId) for e in events), positions, strict=True))

    def ingest(self, *events: EventEnvelope, at: datetime | None = None) -> None:
        """Put published events into bronze_events, as the projection would."""
        at = at or datetime.now(timezone.utc)
        records = [(e.to_json(), *self.positions[str(e.eventId)], at, e.aggregateId) for e in events]
        frame = self.spark.createDataFrame(
            records,
            "body string, partition int, offset bigint, enqueued_time timestamp, partition_key string",
        ).withColumn("event", F.from_json("body", ENVELOPE_SCHEMA))
        bronze = frame.select(
            "body",
            "partition",
            "offset",
            "enqueued_time",
            "partition_key",
            F.col("event.eventId").cast("string").alias("event_id"),
            F.col("event.eventType").alias("event_type"),
            F.col("event.aggregateType").alias("aggregate_type"),
            F.col("event.aggregateId").alias("aggregate_id"),
            F.col("event.version").cast("bigint").alias("version"),
            F.col("event.timestamp").alias("event_time"),
            F.col("event.correlationId").alias("correlation_id"),
            F.col("event.causationId").alias("causation_id"),
            F.lit(at).alias("ingest_time"),
        )
        self._append("bronze_events", bronze)

    def quarantine(self, body: str, at: datetime) -> None:
        """Publish a bad record and put it into bronze_quarantine."""
        ((partition, offset),) = self.log.append([(None, body)])
        row = (body, partition, offset, at, None, ["body_is_json"], at)
        self._append("bronze_quarantine", self.spark.createDataFrame([row], QUARANTINE))

    def project(self, *events: EventEnvelope, at: datetime) -> None:
        """Silver rows for the given events (at most one per aggregate: the latest applied)."""
        assert len({e.aggregateId for e in events}) == len(events), "silver holds one row per aggregate"
        orders = [
            (e.aggregateId, e.data.customerId, "Created", None, None, None, "EUR", None, None, e.version,
             str(e.eventId), e.eventType, e.timestamp, at)
            for e in events if e.aggregateType.value == "Order"
        ]  # fmt: skip
        customers = [
            (e.aggregateId, e.data.name, e.data.email, None, None, e.version, str(e.eventId), e.eventType,
             e.timestamp, at)
            for e in events if e.aggregateType.value == "Customer"
        ]  # fmt: skip
        if orders:
            self._append("silver_orders", self.spark.createDataFrame(orders, SILVER_ORDERS))
        if customers:
            self._append("silver_customers", self.spark.createDataFrame(customers, SILVER_CUSTOMERS))

    def progress(self, query_name: str, recorded_at: datetime, latest_offset: str | None = None) -> None:
        row = (
            query_name,
            "run-1",
            0,
            recorded_at,
            1,
            1.0,
            1.0,
            100,
            None,
            latest_offset,
            latest_offset,
            recorded_at,
        )
        self._append("ops_stream_progress", self.spark.createDataFrame([row], PROGRESS))

    def _append(self, name: str, frame) -> None:
        Table(self.settings.table(name)).save(frame.write.format("delta").mode("append"))


@pytest.fixture(scope="session")
def lake_type() -> type[Lake]:
    """The Lake class, for tests that build a lake on settings of their own."""
    return Lake


@pytest.fixture
def lake(spark, settings) -> Lake:
    return Lake(spark, settings)
