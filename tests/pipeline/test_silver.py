"""Silver projections, one micro-batch at a time (``apply_batch`` as ``foreachBatch`` calls it).

Covers what a real bus does to a projection: several events of one aggregate in one batch, versions out of
order across batches, redelivered events, a replayed batch after a crash, a reset checkpoint, and two
different events claiming the same version.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal

from chispa import assert_df_equality

from cqrs_orders.pipeline import idempotency
from cqrs_orders.pipeline.bronze import to_bronze, validate_records
from cqrs_orders.pipeline.silver import apply_batch
from cqrs_orders.pipeline.tables import RECORD_SCHEMA, SCHEMAS, ensure_tables

WRITER = "test-writer"


def bronze_batch(spark, *bodies: str, first_offset: int = 0):
    records = spark.createDataFrame(
        [(body, 0, first_offset + i, None, None) for i, body in enumerate(bodies)], RECORD_SCHEMA
    )
    return to_bronze(validate_records(records))


def project(spark, settings, batch_id: int, *bodies: str, writer: str = WRITER, first_offset: int = 0):
    apply_batch(bronze_batch(spark, *bodies, first_offset=first_offset), batch_id, settings, writer)


def table(spark, settings, name: str):
    return settings.table(name).read(spark).drop("projected_at", "ingest_time")


def expected_order(spark, body: str, quantity: int):
    event = json.loads(body)
    total = Decimal("2.50") * quantity + Decimal("10.00")
    row = (
        event["aggregateId"], "cust-1", event["data"]["status"],
        [("SKU-1", quantity, Decimal("2.50")), ("SKU-2", 1, Decimal("10.00"))], quantity + 1, total, "EUR",
        datetime(2025, 1, 15, 10, 0), datetime.fromisoformat(event["data"]["updatedAt"][:-1]), event["version"],
        event["eventId"], event["eventType"], datetime.fromisoformat(event["timestamp"][:-1]), None,
    )  # fmt: skip
    return spark.createDataFrame([row], SCHEMAS["silver_orders"]).drop("projected_at")


def test_several_events_of_one_aggregate_in_one_batch_keep_the_highest_version(spark, settings, events):
    ensure_tables(spark, settings)
    created, confirmed, shipped = (
        events.order(version=1),
        events.order(version=2, status="Confirmed", quantity=2, event_type="OrderConfirmed"),
        events.order(version=3, status="Shipped", quantity=2, event_type="OrderShipped"),
    )
    project(spark, settings, 0, confirmed, created, shipped, events.customer(), events.customer(version=2, name="Ada L."))

    assert_df_equality(table(spark, settings, "silver_orders"), expected_order(spark, shipped, 2), ignore_nullable=True)
    customers = table(spark, settings, "silver_customers").select("customer_id", "customer_name", "version")
    assert [tuple(r) for r in customers.collect()] == [("cust-1", "Ada L.", 2)]
    history = table(spark, settings, "silver_event_history").select("aggregate_id", "version", "version_conflict")
    assert sorted(tuple(r) for r in history.collect()) == [
        ("cust-1", 1, False), ("cust-1", 2, False), ("order-1", 1, False), ("order-1", 2, False), ("order-1", 3, False)
    ]  # fmt: skip
    gold = settings.table("gold_daily_order_metrics").read(spark).collect()
    assert [tuple(r) for r in gold] == [(datetime(2025, 1, 15).date(), 1, Decimal("15.00"), Decimal("15.00"), 1)]


def test_versions_arriving_3_1_2_across_batches_end_at_3(spark, settings, events):
    ensure_tables(spark, settings)
    v1, v2, v3 = (events.order(version=v, status="Confirmed" if v > 1 else "Created", quantity=v) for v in (1, 2, 3))
    for batch_id, body in enumerate((v3, v1, v2)):
        project(spark, settings, batch_id, body, first_offset=batch_id)

    assert_df_equality(table(spark, settings, "silver_orders"), expected_order(spark, v3, 3), ignore_nullable=True)
    assert table(spark, settings, "silver_event_history").count() == 3


def test_the_same_event_three_times_changes_nothing(spark, settings, events):
    ensure_tables(spark, settings)
    created = events.order(version=1)
    project(spark, settings, 0, created, created)
    after_first = table(spark, settings, "silver_orders")
    project(spark, settings, 1, created, first_offset=2)

    assert_df_equality(table(spark, settings, "silver_orders"), after_first)
    assert_df_equality(table(spark, settings, "silver_orders"), expected_order(spark, created, 1), ignore_nullable=True)
    history = table(spark, settings, "silver_event_history").collect()
    assert [(r["event_id"], r["source_offset"]) for r in history] == [(json.loads(created)["eventId"], 0)]


def test_a_replayed_batch_changes_nothing_but_a_reset_checkpoint_still_writes(spark, settings, events, tmp_path):
    ensure_tables(spark, settings)
    checkpoint = str(tmp_path / "checkpoint")
    writer = idempotency.app_id(checkpoint)
    assert idempotency.app_id(checkpoint) == writer  # stable while the checkpoint lives
    project(spark, settings, 0, events.order(version=1), writer=writer)
    before = table(spark, settings, "silver_orders")

    # A crash after the MERGE but before the checkpoint commit replays batch 0: Delta must skip it. (Its
    # content differs here only to prove that nothing was applied; a real replay has the same rows.)
    project(spark, settings, 0, events.order(version=2, status="Confirmed"), writer=writer)
    assert_df_equality(table(spark, settings, "silver_orders"), before)
    assert table(spark, settings, "silver_event_history").count() == 1

    # A reset checkpoint restarts batch ids at 0; with a new app id the writes happen.
    idempotency.reset(checkpoint)
    new_writer = idempotency.app_id(checkpoint)
    assert new_writer != writer
    newer = events.order(version=2, status="Confirmed")
    project(spark, settings, 0, newer, writer=new_writer)
    assert_df_equality(table(spark, settings, "silver_orders"), expected_order(spark, newer, 1), ignore_nullable=True)
    assert table(spark, settings, "silver_event_history").count() == 2


def test_two_different_events_for_one_version_are_flagged_and_resolved_by_event_id(spark, settings, events):
    ensure_tables(spark, settings)
    small, large = uuid.UUID(int=1), uuid.UUID(int=2)
    confirmed = events.order(version=2, status="Confirmed", event_id=large)
    cancelled = events.order(version=2, status="Cancelled", event_id=small, event_type="OrderCancelled")
    project(spark, settings, 0, events.order(version=1), confirmed)
    project(spark, settings, 1, cancelled, first_offset=2)  # arrives later but wins: smaller event id

    orders = table(spark, settings, "silver_orders").select("status", "version", "last_event_id").collect()
    assert [tuple(r) for r in orders] == [("Cancelled", 2, str(small))]
    history = table(spark, settings, "silver_event_history").where("version = 2")
    assert sorted(tuple(r) for r in history.select("event_id", "version_conflict").collect()) == [
        (str(small), True),
        (str(large), True),
    ]
    assert table(spark, settings, "silver_event_history").where("version_conflict").count() == 2
    assert settings.table("gold_daily_order_metrics").read(spark).count() == 0  # the only order is cancelled
