"""Fixtures of the pipeline tests: event bodies built with the real envelope models, and batches of them."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from pyspark.sql import DataFrame

from cqrs_orders.envelope import CustomerState, EventEnvelope, LineItem, OrderState, new_event
from cqrs_orders.pipeline.batch_rows import release
from cqrs_orders.pipeline.bronze import to_bronze, validate_records
from cqrs_orders.pipeline.runner import STATE_CHECKS, project_batch
from cqrs_orders.pipeline.tables import RECORD_SCHEMA


class Events:
    """Builds wire bodies of Order and Customer events (full state after the event)."""

    def order(
        self,
        order_id: str = "order-1",
        version: int = 1,
        status: str = "Created",
        quantity: int = 1,
        event_type: str | None = None,
        customer_id: str = "cust-1",
        created: str = "2025-01-15T10:00:00Z",
        event_id: uuid.UUID | None = None,
        currency: str = "EUR",
    ) -> str:
        state = OrderState(
            orderId=order_id,
            customerId=customer_id,
            status=status,
            items=[
                LineItem(sku="SKU-1", quantity=quantity, price="2.50"),
                LineItem(sku="SKU-2", quantity=1, price="10"),
            ],
            currency=currency,
            createdAt=created,
            updatedAt=f"2025-01-15T10:{version:02d}:00Z",
        )
        event_type = event_type or ("OrderCreated" if version == 1 else "OrderItemAdded")
        return self._body(new_event(event_type, state, version, at=_at(version)), event_id)

    def customer(self, customer_id: str = "cust-1", version: int = 1, name: str = "Ada") -> str:
        state = CustomerState(
            customerId=customer_id,
            name=name,
            email=f"{customer_id}@example.com",
            createdAt="2025-01-15T09:00:00Z",
            updatedAt=f"2025-01-15T09:{version:02d}:00Z",
        )
        event_type = "CustomerRegistered" if version == 1 else "CustomerUpdated"
        return self._body(new_event(event_type, state, version, at=_at(version)), None)

    @staticmethod
    def _body(event: EventEnvelope, event_id: uuid.UUID | None) -> str:
        if event_id is not None:
            event = event.model_copy(update={"eventId": event_id})
        return event.to_json()


def _at(version: int) -> datetime:
    return datetime(2025, 1, 15, 11, version, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def events() -> Events:
    return Events()


class Batches:
    """Feeds event bodies through the real micro-batch function into bronze and silver, as ``foreachBatch``
    does."""

    def __init__(self, spark):
        self.spark = spark

    def bronze(self, *bodies: str, first_offset: int = 0) -> DataFrame:
        """``bronze_events`` rows of ``bodies`` (partition 0, offsets from ``first_offset``)."""
        records = self.records(bodies, first_offset)
        validated = validate_records(records, STATE_CHECKS).localCheckpoint()  # as the runner
        bronze = to_bronze(validated, datetime.now(timezone.utc))
        rows = self.spark.createDataFrame(bronze.collect(), bronze.schema)  # holds no checkpoint of its own
        release(validated)
        return rows

    def project(self, settings, batch_id: int, *bodies: str, writer: str, first_offset: int = 0) -> None:
        """Run ``bodies`` as micro-batch ``batch_id`` of writer ``writer`` (bronze, quarantine, silver)."""
        records = self.records(bodies, first_offset)
        project_batch(settings, writer)(validate_records(records, STATE_CHECKS), batch_id)

    def records(self, bodies, first_offset: int) -> DataFrame:
        """Bus records of ``bodies`` (partition 0, offsets from ``first_offset``)."""
        return self.spark.createDataFrame(
            [(body, 0, first_offset + i, None, None) for i, body in enumerate(bodies)], RECORD_SCHEMA
        )


@pytest.fixture(scope="session")
def batches(spark) -> Batches:
    return Batches(spark)
