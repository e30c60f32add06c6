"""The projection reading a real Kafka broker: events keyed by aggregate id land in silver, bad records in
quarantine, exactly as from the embedded event log."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from kafka import KafkaProducer

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table
from cqrs_orders.envelope import LineItem, OrderState, OrderStatus, new_event

pytestmark = pytest.mark.kafka

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
T1 = datetime(2026, 3, 1, 9, 5, tzinfo=timezone.utc)
SILVER_COLUMNS = (
    "order_id, customer_id, status, items, item_count, total_amount, currency, created_at, updated_at, "
    "version, last_event_id, last_event_type, last_event_time"
)


def order(order_id: str, status: str, *items: tuple[str, int, str], updated=T0) -> OrderState:
    return OrderState(
        orderId=order_id,
        customerId="cust-1",
        status=OrderStatus(status),
        items=tuple(LineItem(sku=s, quantity=q, price=Decimal(p)) for s, q, p in items),
        currency="EUR",
        createdAt=T0,
        updatedAt=updated,
    )


def test_events_on_kafka_are_projected_to_silver(spark, kafka_broker, kafka_topic, tmp_path):
    from cqrs_orders.pipeline.runner import run_once

    created = new_event("OrderCreated", order("order-1", "Created", ("A", 2, "10.25")), 1, at=T0)
    added = new_event(
        "OrderItemAdded", order("order-1", "Created", ("A", 2, "10.25"), ("B", 1, "5"), updated=T1), 2, at=T1
    )
    other = new_event("OrderCreated", order("order-2", "Created", ("C", 3, "1.50")), 1, at=T0)
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    for event in (created, other, added):
        producer.send(kafka_topic, key=event.aggregateId.encode(), value=event.to_json().encode())
    producer.send(kafka_topic, key=b"order-3", value=b"not json at all")
    producer.flush()
    producer.close()
    settings = Settings.from_env(
        warehouse=tmp_path / "warehouse",
        env={"CQRS_SOURCE": "kafka", "KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "EVENTHUB_NAME": kafka_topic},
    )

    run_once(spark, settings)

    silver = Table(settings.table("silver_orders")).read(spark).selectExpr(*SILVER_COLUMNS.split(", "))
    expected = spark.createDataFrame(
        [
            (
                "order-1",
                "cust-1",
                "Created",
                [("A", 2, Decimal("10.25")), ("B", 1, Decimal("5.00"))],
                3,
                Decimal("25.50"),
                "EUR",
                T0,
                T1,
                2,
                str(added.eventId),
                "OrderItemAdded",
                T1,
            ),
            (
                "order-2",
                "cust-1",
                "Created",
                [("C", 3, Decimal("1.50"))],
                3,
                Decimal("4.50"),
                "EUR",
                T0,
                T0,
                1,
                str(other.eventId),
                "OrderCreated",
                T0,
            ),
        ],
        silver.schema,
    )
    assert_df_equality(silver, expected, ignore_row_order=True, ignore_nullable=True)

    quarantined = Table(settings.table("bronze_quarantine")).read(spark).collect()
    assert [(row.body, row.partition_key) for row in quarantined] == [("not json at all", "order-3")]
    assert "body_is_json_object" in quarantined[0].failed_expectations
    assert Table(settings.table("bronze_events")).read(spark).count() == 3
