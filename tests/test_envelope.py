"""The envelope contract: round trips, wire form, rejection of inconsistent events, Spark schema."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cqrs_orders.envelope import (
    EVENT_CATALOG,
    CustomerState,
    EventEnvelope,
    LineItem,
    OrderState,
    new_event,
)
from cqrs_orders.envelope_schema import ENVELOPE_SCHEMA

AT = datetime(2025, 1, 15, 10, 30, tzinfo=timezone.utc)


def order_state(**changes) -> OrderState:
    fields = dict(
        orderId="order-123",
        customerId="cust-001",
        status="Created",
        items=[LineItem(sku="SKU-1", quantity=2, price=Decimal("19.99"))],
        currency="EUR",
        createdAt=AT,
        updatedAt=AT,
    )
    return OrderState(**{**fields, **changes})


def test_round_trip_preserves_every_field():
    event = new_event("OrderCreated", order_state(), 1, causation_id="cmd-1", correlation_id="req-1", at=AT)
    assert EventEnvelope.from_json(event.to_json()) == event


def test_wire_form_uses_utc_z_timestamps_and_money_as_decimal_strings():
    wire = json.loads(new_event("OrderCreated", order_state(), 1, at=AT).to_json())
    assert wire["timestamp"] == "2025-01-15T10:30:00Z"
    assert wire["data"]["items"][0]["price"] == "19.99"
    assert wire["aggregateId"] == "order-123" and wire["aggregateType"] == "Order"
    assert wire["schemaVersion"] == 2  # every writer states the version its data is in
    assert set(wire) == {
        "eventId", "eventType", "aggregateId", "aggregateType", "version", "schemaVersion", "timestamp",
        "correlationId", "causationId", "data", "metadata",
    }  # fmt: skip


def test_customer_event_round_trip():
    state = CustomerState(
        customerId="cust-001", name="Ada", email="ada@example.com", createdAt=AT, updatedAt=AT
    )
    event = new_event("CustomerRegistered", state, 1, at=AT)
    parsed = EventEnvelope.from_json(event.to_json())
    assert isinstance(parsed.data, CustomerState) and parsed == event


def test_unknown_fields_are_tolerated_on_read():
    wire = json.loads(new_event("OrderCreated", order_state(), 1, at=AT).to_json())
    wire["producer"] = "another service"
    assert EventEnvelope.model_validate(wire).aggregateId == "order-123"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 0}, "greater than or equal to 1"),
        ({"eventType": "OrderExploded"}, "unknown eventType"),
        ({"aggregateId": "order-999"}, "disagrees with aggregateId"),
        ({"eventType": "CustomerRegistered"}, "belongs to Customer"),
        ({"timestamp": "not a time"}, "timestamp"),
    ],
)
def test_inconsistent_events_are_rejected(change, message):
    wire = {**json.loads(new_event("OrderCreated", order_state(), 1, at=AT).to_json()), **change}
    with pytest.raises(ValidationError, match=message):
        EventEnvelope.model_validate(wire)


def test_the_catalog_is_the_events_the_commands_record():
    """An event type no command records is one no reader should expect (the seed's generic OrderUpdated);
    each is listed under the aggregate of the commands that record it."""
    from cqrs_orders.domain.commands import COMMANDS

    emitted = {event: command.aggregate for command in COMMANDS.values() for event in command.emits}
    assert emitted == EVENT_CATALOG
    assert {"OrderCreated", "OrderShipped", "OrderCancelled", "CustomerUpdated"} <= set(EVENT_CATALOG)


def test_an_event_type_nothing_records_is_refused():
    wire = {
        **json.loads(new_event("OrderCreated", order_state(), 1, at=AT).to_json()),
        "eventType": "OrderUpdated",
    }
    with pytest.raises(ValidationError, match="unknown eventType 'OrderUpdated'"):
        EventEnvelope.model_validate(wire)


def test_spark_schema_parses_the_wire_form(spark):
    event = new_event("OrderCreated", order_state(), 3, at=AT)
    parsed = (
        spark.createDataFrame([(event.to_json(),)], "body string")
        .select(F.from_json("body", ENVELOPE_SCHEMA).alias("e"))
        .select("e.*")
        .first()
    )
    assert uuid.UUID(parsed.eventId) == event.eventId
    assert parsed.version == 3
    assert parsed.timestamp == datetime(2025, 1, 15, 10, 30)  # session time zone is UTC
    assert parsed.data.items[0].price == Decimal("19.99")
    assert parsed.schemaVersion == 2
    assert ENVELOPE_SCHEMA["data"].dataType["items"].dataType.elementType["price"].dataType == T.DecimalType(
        18, 2
    )
