"""Event schema versions on the read side: validation, the projection, rebuild and the history read events
of schema 1 (an order line's ``unitPrice``, no ``schemaVersion``) and of schema 2 (``price``) alike, exactly
as the Python upcaster reads them, and quarantine an event newer than the code with the reason."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pydantic import ValidationError
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.envelope import EventEnvelope
from cqrs_orders.pipeline import idempotency
from cqrs_orders.pipeline.bronze import to_bronze, validate_records
from cqrs_orders.pipeline.history import read_output
from cqrs_orders.pipeline.quarantine import Selection, described, select_records
from cqrs_orders.pipeline.read_models import read_model
from cqrs_orders.pipeline.rebuild import rebuild
from cqrs_orders.pipeline.runner import STATE_CHECKS
from cqrs_orders.pipeline.tables import RECORD_SCHEMA, ensure_tables

#: Amounts at the edges of the money rule: the largest, one a binary float cannot hold, the smallest.
BIG, UNSAFE = "9999999999999999.99", "90071992547409.93"


def order(
    order_id: str,
    version: int,
    *lines: str,
    schema: int | None = None,
    event_type: str = "OrderCreated",
    status: str = "Created",
) -> str:
    """An Order event body; ``lines`` are JSON texts of the order's lines (so a number keeps its digits);
    ``schema`` is its ``schemaVersion`` (``None``: left out, as before versions)."""
    head = {
        "eventId": f"00000000-0000-4000-8000-{abs(hash((order_id, version, schema, lines))) % 10**12:012d}",
        "eventType": event_type,
        "aggregateId": order_id,
        "aggregateType": "Order",
        "version": version,
        **({} if schema is None else {"schemaVersion": schema}),
        "timestamp": f"2025-01-15T10:{version:02d}:00Z",
        "data": {
            "orderId": order_id,
            "customerId": "cust-1",
            "status": status,
            "items": "ITEMS",
            "currency": "EUR",
            "createdAt": "2025-01-15T10:00:00Z",
            "updatedAt": f"2025-01-15T10:{version:02d}:00Z",
        },
    }
    return json.dumps(head).replace('"ITEMS"', f"[{', '.join(lines)}]")


def v1(sku: str, quantity: int, price: str, *, number: bool = False) -> str:
    """A line as schema 1 wrote it: ``unitPrice`` (a JSON number when ``number``: events before the money
    rule)."""
    return (
        f'{{"sku": "{sku}", "quantity": {quantity}, "unitPrice": {price if number else json.dumps(price)}}}'
    )


def v2(sku: str, quantity: int, price: str) -> str:
    return f'{{"sku": "{sku}", "quantity": {quantity}, "price": "{price}"}}'


#: Bodies of both schemas, valid and not, whose lines Spark must read exactly as Python does.
CORPUS = [
    order("o-1", 1, v1("a", 1, BIG)),
    order("o-2", 1, v1("a", 2, UNSAFE, number=True), v1("b", 1, "0.01")),
    order("o-3", 1, v1("a", 1, "7.5", number=True), schema=1),
    order("o-4", 1, v1("a", 3, "0")),
    order("o-5", 1, v2("a", 1, UNSAFE), v2("b", 4, "2.50"), schema=2),
    order("o-6", 1, schema=2),  # no lines at all
    order("o-7", 1),
    order("o-8", 1, '{"sku": "a", "quantity": 1}'),  # schema 1 without a unitPrice: refused, not null
    order("o-9", 1, '{"sku": "a", "quantity": 1, "price": "1.00"}'),  # schema 1 never had price
    order("o-10", 1, '{"sku": "a", "quantity": 1, "price": "9.00", "unitPrice": "1.00"}'),
    order("o-11", 1, v1("a", 1, "1.00"), schema=2),  # schema 2 without its price
    order("o-12", 1, '{"sku": "a", "quantity": 1, "unitPrice": null}'),
]


def python_lines(body: str):
    """The lines as the Python reader gives them, ``None`` when it refuses the event."""
    try:
        event = EventEnvelope.from_json(body)
    except ValidationError:
        return None
    return [(item.sku, item.quantity, item.price) for item in event.data.items]


def test_spark_reads_every_version_exactly_as_the_python_upcaster(spark):
    records = spark.createDataFrame(
        [(body, 0, offset, None, None) for offset, body in enumerate(CORPUS)], RECORD_SCHEMA
    )
    validated = validate_records(records, STATE_CHECKS).localCheckpoint()
    failed = {
        r.offset: r.failed_expectations for r in validated.select("offset", "failed_expectations").collect()
    }
    winners = read_model("Order").winners_with_state(to_bronze(validated, datetime.now(timezone.utc)))
    spark_lines = {
        row.offset: [(i["sku"], i["quantity"], i["price"]) for i in row.state["items"]]
        for row in winners.select("offset", "state").collect()
    }
    expected = {offset: python_lines(body) for offset, body in enumerate(CORPUS)}

    assert {o for o, lines in expected.items() if lines is not None} == set(spark_lines)
    assert spark_lines == {o: lines for o, lines in expected.items() if lines is not None}
    refused = {o: failed[o] for o, lines in expected.items() if lines is None}
    assert refused == {o: ["data_matches_state_schema"] for o in refused}
    assert spark_lines[1] == [("a", 2, Decimal(UNSAFE)), ("b", 1, Decimal("0.01"))]  # a number, its digits
    assert len(refused) == 4


@pytest.fixture(scope="module")
def projected(spark, batches, tmp_path_factory):
    """Events of both schemas through the real micro-batches, one newer than the code, then a rebuild.

    A: created in schema 1, a line added in schema 2.  B: schema 1 only, money as a JSON number.
    C: schema 2 first, then a later version that an old writer sent in schema 1.  D: schema 3."""
    settings = Settings.from_env(warehouse=tmp_path_factory.mktemp("versions") / "warehouse", env={})
    ensure_tables(spark, settings)
    writer = idempotency.app_id(settings.checkpoint("event-versions"))
    bodies = {
        "a1": order("A", 1, v1("x", 1, UNSAFE)),
        "a2": order("A", 2, v2("x", 1, UNSAFE), v2("y", 2, "0.10"), schema=2, event_type="OrderItemAdded"),
        "b1": order("B", 1, v1("x", 3, "19.99", number=True)),
        "c1": order("C", 1, v2("y", 1, BIG), schema=2),
        "c2": order("C", 2, v1("y", 1, BIG), event_type="OrderConfirmed", status="Confirmed"),
        "d1": order("D", 1, v2("x", 1, "1.00"), schema=3),
    }
    batches.project(settings, 0, bodies["a1"], bodies["c1"], bodies["d1"], writer=writer)
    batches.project(settings, 1, bodies["b1"], bodies["a2"], bodies["c2"], writer=writer, first_offset=100)
    streamed = {
        name: read_output(spark, settings, name).drop("projected_at").localCheckpoint()
        for name in ("silver_orders", "silver_product_sales", "silver_event_history", "bronze_quarantine")
    }
    rebuild(spark, settings)
    rebuilt = {
        name: read_output(spark, settings, name).drop("projected_at").localCheckpoint()
        for name in ("silver_orders", "silver_product_sales")
    }
    return bodies, streamed, rebuilt


def test_the_read_models_hold_both_schemas_digit_for_digit(spark, projected):
    _, streamed, _ = projected
    orders = streamed["silver_orders"].select(
        "order_id", "status", "items", "item_count", "total_amount", "version", "last_event_type"
    )
    expected = spark.createDataFrame(
        [
            ("A", "Created", [("x", 1, Decimal(UNSAFE)), ("y", 2, Decimal("0.10"))], 3,
             Decimal("90071992547410.13"), 2, "OrderItemAdded"),
            ("B", "Created", [("x", 3, Decimal("19.99"))], 3, Decimal("59.97"), 1, "OrderCreated"),
            ("C", "Confirmed", [("y", 1, Decimal(BIG))], 1, Decimal(BIG), 2, "OrderConfirmed"),
        ],
        "order_id string, status string, items array<struct<sku:string,quantity:bigint,"
        "unit_price:decimal(18,2)>>, item_count bigint, total_amount decimal(18,2), version bigint, "
        "last_event_type string",
    )  # fmt: skip
    assert_df_equality(orders, expected, ignore_row_order=True, ignore_nullable=True)
    sales = {(r.sku, r.units, r.revenue) for r in streamed["silver_product_sales"].collect()}
    assert sales == {
        ("x", 4, Decimal(UNSAFE) + Decimal("59.97")),
        ("y", 3, Decimal("0.20") + Decimal(BIG)),
    }


def test_an_event_newer_than_the_code_is_quarantined_with_the_reason(projected):
    bodies, streamed, _ = projected
    rows = streamed["bronze_quarantine"].select("body", "failed_expectations").collect()
    assert [(r.body, r.failed_expectations) for r in rows] == [
        (
            bodies["d1"],
            [
                "schema_version_known",
                "schemaVersion 3 is newer than this code knows for OrderCreated (2); deploy a newer version",
            ],
        )
    ]


def test_the_reason_selects_by_the_expectation_name(projected):
    """``quarantine list/replay --reason schema_version_known`` finds the records whose reason says more."""
    bodies, streamed, _ = projected
    chosen = select_records(
        described(streamed["bronze_quarantine"]), Selection(reason="schema_version_known")
    )
    assert [r.body for r in chosen.collect()] == [bodies["d1"]]
    other = select_records(described(streamed["bronze_quarantine"]), Selection(reason="version_at_least_1"))
    assert other.count() == 0


def test_the_history_lists_the_events_of_every_schema_once(projected):
    _, streamed, _ = projected
    history = streamed["silver_event_history"]
    assert sorted((r.aggregate_id, r.version) for r in history.collect()) == [
        ("A", 1), ("A", 2), ("B", 1), ("C", 1), ("C", 2),
    ]  # fmt: skip
    assert history.where(F.col("version_conflict")).count() == 0


def test_a_rebuild_reads_the_old_events_as_streaming_did(projected):
    _, streamed, rebuilt = projected
    for name in ("silver_orders", "silver_product_sales"):
        assert_df_equality(rebuilt[name], streamed[name], ignore_row_order=True, ignore_nullable=True)
