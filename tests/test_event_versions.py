"""Event schema versions in Python: every reader brings an older event to the current schema with the
declared upcasters, digit for digit, and refuses an event newer than the code instead of reading part of it.

The worked evolution: Order schema 2 renames an order line's ``unitPrice`` to ``price``. Events written
before versions existed carry no ``schemaVersion`` (1) and hold ``unitPrice``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from cqrs_orders.envelope import (
    EVENT_CATALOG,
    EVENT_VERSIONS,
    STATE_VERSIONS,
    UPCASTERS,
    AggregateType,
    CustomerState,
    EventEnvelope,
    LineItem,
    NewerSchemaVersion,
    OrderState,
    Upcaster,
    _versions,
    load_state,
    new_event,
    upcast_event,
)

AT = datetime(2025, 1, 15, 10, 30, tzinfo=timezone.utc)
#: The largest amount the money rule takes, and one a binary float cannot hold: both must keep every digit.
AMOUNTS = ("9999999999999999.99", "90071992547409.93", "0.01")


def order_v1(*lines: dict, event_type: str = "OrderCreated", **envelope) -> dict:
    """An Order event as the code wrote it before schema versions: no ``schemaVersion``, ``unitPrice``."""
    return {
        "eventId": "3f2b8c1e-6f0a-4c3e-9a57-0c2b8f3e8a11",
        "eventType": event_type,
        "aggregateId": "order-1",
        "aggregateType": "Order",
        "version": 1,
        "timestamp": "2025-01-15T10:30:00Z",
        "correlationId": "cmd-1",
        "causationId": "cmd-1",
        "data": {
            "orderId": "order-1",
            "customerId": "cust-1",
            "status": "Created",
            "items": list(lines),
            "currency": "EUR",
            "createdAt": "2025-01-15T10:30:00Z",
            "updatedAt": "2025-01-15T10:30:00Z",
        },
        "metadata": {"userId": "ada", "source": None},
        **envelope,
    }


def test_every_event_type_has_a_current_version_and_writers_write_it():
    assert set(EVENT_VERSIONS) == set(EVENT_CATALOG)
    assert {t: v for t, v in EVENT_VERSIONS.items() if EVENT_CATALOG[t] is AggregateType.ORDER} == {
        t: 2 for t, kind in EVENT_CATALOG.items() if kind is AggregateType.ORDER
    }
    assert EVENT_VERSIONS["CustomerUpdated"] == 1
    state = OrderState.model_validate(
        order_v1()["data"] | {"items": [{"sku": "a", "quantity": 1, "price": "1"}]}
    )
    wire = json.loads(new_event("OrderShipped", state, 4, at=AT).to_json())
    assert wire["schemaVersion"] == 2 and wire["data"]["items"] == [
        {"sku": "a", "quantity": 1, "price": "1.00"}
    ]


@pytest.mark.parametrize("amount", AMOUNTS)
def test_a_schema_1_event_reads_as_the_current_schema_digit_for_digit(amount):
    body = json.dumps(
        order_v1(
            {"sku": "a", "quantity": 2, "unitPrice": amount}, {"sku": "b", "quantity": 1, "unitPrice": "2.50"}
        )
    )
    event = EventEnvelope.from_json(body)
    assert event.schemaVersion == 2
    assert event.data.items == (
        LineItem(sku="a", quantity=2, price=Decimal(amount)),
        LineItem(sku="b", quantity=1, price=Decimal("2.50")),
    )
    again = json.loads(event.to_json())  # written back, it is a schema 2 event
    assert again["schemaVersion"] == 2
    assert [item["price"] for item in again["data"]["items"]] == [amount, "2.50"]
    assert "unitPrice" not in json.dumps(again)


def test_the_upcaster_moves_the_value_as_it_is_and_keeps_the_field_order():
    body = order_v1({"sku": "a", "unitPrice": 19.99, "quantity": 1})
    upcast = upcast_event(body)
    assert upcast["schemaVersion"] == 2
    assert list(upcast["data"]["items"][0].items()) == [("sku", "a"), ("price", 19.99), ("quantity", 1)]
    assert body["data"]["items"][0] == {"sku": "a", "unitPrice": 19.99, "quantity": 1}  # pure: no mutation
    assert upcast_event(upcast) == upcast  # the current version passes untouched


def test_an_explicit_schema_version_1_is_the_same_as_none():
    line = {"sku": "a", "quantity": 2, "unitPrice": "3.10"}
    assert EventEnvelope.model_validate(order_v1(line, schemaVersion=1)) == EventEnvelope.model_validate(
        order_v1(line)
    )


def test_a_schema_1_line_without_unit_price_is_refused_not_read_as_null():
    with pytest.raises(ValidationError, match=r"items\.0\.price"):
        EventEnvelope.model_validate(order_v1({"sku": "a", "quantity": 1}))
    # A price field was never part of schema 1: the step takes unitPrice, whatever else the line holds.
    with pytest.raises(ValidationError, match=r"items\.0\.price"):
        EventEnvelope.model_validate(order_v1({"sku": "a", "quantity": 1, "price": "1.00"}))
    event = EventEnvelope.model_validate(
        order_v1({"sku": "a", "quantity": 1, "price": "9", "unitPrice": "1"})
    )
    assert event.data.items[0].price == Decimal("1.00")


def test_a_schema_2_event_holding_the_old_name_is_refused():
    body = order_v1({"sku": "a", "quantity": 1, "unitPrice": "1.00"}, schemaVersion=2)
    with pytest.raises(ValidationError, match="unitPrice"):
        EventEnvelope.model_validate(body)


@pytest.mark.parametrize(
    ("event_type", "version", "known"), [("OrderShipped", 3, 2), ("CustomerUpdated", 2, 1)]
)
def test_an_event_newer_than_the_code_is_refused_with_what_to_do(event_type, version, known):
    if EVENT_CATALOG[event_type] is AggregateType.ORDER:
        body = order_v1({"sku": "a", "quantity": 1, "price": "1.00"}, event_type=event_type)
    else:
        state = CustomerState(customerId="cust-1", name="Ada", email="a@b.io", createdAt=AT, updatedAt=AT)
        body = json.loads(new_event(event_type, state, 2, at=AT).to_json())
    body["schemaVersion"] = version
    expected = (
        f"schemaVersion {version} is newer than this code knows for {event_type} ({known}); deploy a newer "
        "version"
    )
    with pytest.raises(NewerSchemaVersion, match=expected.replace("(", r"\(").replace(")", r"\)")):
        upcast_event(body)
    with pytest.raises(ValidationError, match=r"newer than this code knows"):
        EventEnvelope.from_json(json.dumps(body))


@pytest.mark.parametrize("version", ["2", 2.0, True, 0, -1, None])
def test_a_schema_version_that_is_no_positive_integer_is_refused(version):
    with pytest.raises(ValidationError, match="schemaVersion"):
        EventEnvelope.model_validate(
            order_v1({"sku": "a", "quantity": 1, "price": "1"}, schemaVersion=version)
        )


def test_an_event_built_in_python_is_of_the_current_version():
    state = OrderState.model_validate(
        order_v1()["data"] | {"items": [{"sku": "a", "quantity": 1, "price": "1"}]}
    )
    assert new_event("OrderCreated", state, 1, at=AT).schemaVersion == 2
    with pytest.raises(ValidationError, match="not OrderCreated's current 2"):
        EventEnvelope(**{**new_event("OrderCreated", state, 1, at=AT).__dict__, "schemaVersion": 1})


def test_steps_are_declared_one_per_version_in_order():
    (order_step,) = UPCASTERS
    skipping = Upcaster(AggregateType.ORDER, 3, order_step.changes, why="a step that skips version 2")
    with pytest.raises(TypeError, match="must follow the one to version 1"):
        _versions((skipping,))
    assert _versions(UPCASTERS) == STATE_VERSIONS


@pytest.mark.parametrize("amount", AMOUNTS)
def test_a_stored_state_of_schema_1_loads_as_the_current_model(amount):
    stored = json.dumps(order_v1({"sku": "a", "quantity": 2, "unitPrice": amount})["data"])
    state = load_state(AggregateType.ORDER, stored, None)
    assert state.items == (LineItem(sku="a", quantity=2, price=Decimal(amount)),)
    # A state document (Cosmos DB) holds JSON numbers where an old writer wrote them: digits kept as given.
    number = json.loads(stored.replace(f'"{amount}"', amount), parse_float=Decimal)
    assert load_state(AggregateType.ORDER, number, 1).items[0].price == Decimal(amount)


def test_a_stored_state_newer_than_the_code_is_refused():
    stored = json.dumps(order_v1({"sku": "a", "quantity": 2, "price": "1"})["data"])
    with pytest.raises(NewerSchemaVersion, match="Order state of schemaVersion 3 is newer"):
        load_state(AggregateType.ORDER, stored, 3)
    assert load_state(AggregateType.ORDER, stored, 2).items[0].price == Decimal("1.00")


def test_a_schema_1_event_with_money_as_a_json_number_keeps_its_digits():
    """Events written before the money rule hold numbers: a float would turn ...93 into ...94."""
    body = json.dumps(order_v1({"sku": "a", "quantity": 1, "unitPrice": "AMOUNT"})).replace(
        '"AMOUNT"', "90071992547409.93"
    )
    assert EventEnvelope.from_json(body).data.items[0].price == Decimal("90071992547409.93")
