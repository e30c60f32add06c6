"""Every rule of the Order and Customer aggregates and every error code, via the real handler + SQLite."""

from __future__ import annotations

import json

import pytest

from cqrs_orders.envelope import EventEnvelope

ITEM = {"sku": "A", "quantity": 1, "unitPrice": 1}


def published_events(store) -> list[EventEnvelope]:
    return [EventEnvelope.from_json(entry.body) for entry in store.pending(10_000).entries]


def test_register_customer_records_full_state(handler, store):
    result = handler.handle(
        {
            "type": "RegisterCustomer",
            "commandId": "cmd-1",
            "correlationId": "corr-1",
            "metadata": {"userId": "u-7", "source": "web"},
            "customerId": "cust-1",
            "name": "Ada",
            "email": "ada@example.com",
        }
    )
    assert result.to_dict() == {
        "commandId": "cmd-1",
        "status": "accepted",
        "aggregateId": "cust-1",
        "version": 1,
        "eventIds": result.eventIds,
        "error": None,
    }
    [event] = published_events(store)
    assert str(event.eventId) == result.eventIds[0]
    assert (event.eventType, event.aggregateType.value, event.version) == (
        "CustomerRegistered",
        "Customer",
        1,
    )
    assert (event.causationId, event.correlationId) == ("cmd-1", "corr-1")
    # The body's userId is a claim, kept apart; userId is who ran the handler (here this process's OS user).
    assert (event.metadata.claimedUserId, event.metadata.source) == ("u-7", "web")
    assert event.metadata.authenticatedBy == "os-user" and event.metadata.userId != "u-7"
    assert (event.data.name, event.data.email) == ("Ada", "ada@example.com")


def test_customer_rules(given, reject, store):
    given.customer()
    reject(
        {"type": "RegisterCustomer", "customerId": "cust-1", "name": "B", "email": "b@example.com"},
        "ALREADY_EXISTS",
        "customerId",
        "already registered",
    )
    updated = given.accepted({"type": "UpdateCustomer", "customerId": "cust-1", "email": "ada@new.example"})
    assert updated.version == 2
    event = published_events(store)[-1]
    assert (event.eventType, event.data.name, event.data.email) == (
        "CustomerUpdated",
        "Ada",
        "ada@new.example",
    )
    reject(
        {"type": "UpdateCustomer", "customerId": "cust-9", "name": "X"}, "NOT_FOUND", "customerId", "cust-9"
    )
    reject({"type": "UpdateCustomer", "customerId": "cust-1"}, "VALIDATION_ERROR", "name, email")
    reject(
        {"type": "RegisterCustomer", "customerId": "cust-2", "name": "B", "email": "not-an-email"},
        "VALIDATION_ERROR",
        "email",
    )
    reject(
        {"type": "RegisterCustomer", "customerId": "cust-2", "name": "  ", "email": "b@x.io"},
        "VALIDATION_ERROR",
        "name",
    )


def test_create_order_defaults_and_generated_id(given, store):
    given.customer()
    result = given.accepted({"type": "CreateOrder", "customerId": "cust-1", "items": [ITEM]})
    assert result.aggregateId.startswith("order-") and result.version == 1
    event = published_events(store)[-1]
    assert (event.eventType, event.data.orderId, event.data.currency, event.data.status.value) == (
        "OrderCreated",
        result.aggregateId,
        "EUR",
        "Created",
    )


def test_create_order_rules(given, reject):
    given.customer()
    given.order()
    base = {"type": "CreateOrder", "orderId": "order-2", "customerId": "cust-1", "items": [ITEM]}
    reject({**base, "orderId": "order-1"}, "ALREADY_EXISTS", "orderId", "order-1")
    reject({**base, "customerId": "cust-404"}, "NOT_FOUND", "customerId", "not registered")
    reject({**base, "items": []}, "VALIDATION_ERROR", "items", "at least one item")
    reject({key: value for key, value in base.items() if key != "items"}, "VALIDATION_ERROR", "items")
    for quantity in (0, -1, 1.5, "2", True, 10**9):
        reject({**base, "items": [{**ITEM, "quantity": quantity}]}, "VALIDATION_ERROR", "items.0.quantity")
    for price in (-1, 1.005, "abc", None, "NaN"):
        reject({**base, "items": [{**ITEM, "unitPrice": price}]}, "VALIDATION_ERROR", "items.0.unitPrice")
    reject({**base, "items": [ITEM, ITEM]}, "VALIDATION_ERROR", "items", "more than once")
    reject({**base, "currency": "eur"}, "VALIDATION_ERROR", "currency", "3 upper-case letters")
    reject({**base, "items": [{"sku": "A", "quantity": 1}]}, "VALIDATION_ERROR", "items.0.unitPrice")
    reject({**base, "orderId": "cust-1"}, "ALREADY_EXISTS", "orderId", "Customer")
    huge = {"sku": "H", "quantity": 1_000_000, "unitPrice": 99_999_999_999.99}
    reject({**base, "items": [huge]}, "VALIDATION_ERROR", "items", "order total", "exceeds")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("orderId", ""),
        ("orderId", "   "),
        ("orderId", "x" * 129),
        ("orderId", 7),
        ("orderId", "a\nb"),
        ("customerId", ""),
        ("customerId", None),
        ("commandId", ""),
        ("correlationId", " padded "),
    ],
)
def test_ids_are_bounded_non_empty_strings(given, reject, field, value):
    given.customer()
    command = {
        "type": "CreateOrder",
        "orderId": "order-9",
        "customerId": "cust-1",
        "items": [ITEM],
        field: value,
    }
    reject(command, "VALIDATION_ERROR", field)


def test_lifecycle_moves_forward_one_step_at_a_time(given, store, reject):
    given.customer()
    given.order()
    versions = [given.step(step).version for step in ("ConfirmOrder", "ShipOrder", "DeliverOrder")]
    assert versions == [2, 3, 4]
    events = published_events(store)[2:]
    assert [(e.eventType, e.data.status.value, e.version) for e in events] == [
        ("OrderConfirmed", "Confirmed", 2),
        ("OrderShipped", "Shipped", 3),
        ("OrderDelivered", "Delivered", 4),
    ]
    assert all(len(e.data.items) == 2 and e.data.customerId == "cust-1" for e in events)  # full state
    for step in ("ConfirmOrder", "ShipOrder", "DeliverOrder"):
        reject({"type": step, "orderId": "order-1"}, "INVALID_TRANSITION", "status", "Delivered")
    reject(
        {"type": "CancelOrder", "orderId": "order-1", "reason": "late"},
        "INVALID_TRANSITION",
        "Created or Confirmed",
    )


@pytest.mark.parametrize(
    ("steps", "command", "rule"),
    [
        ((), "ShipOrder", "Confirmed"),
        ((), "DeliverOrder", "Shipped"),
        (("ConfirmOrder",), "ConfirmOrder", "Created"),
        (("ConfirmOrder",), "DeliverOrder", "Shipped"),
        (("ConfirmOrder", "ShipOrder"), "ConfirmOrder", "Created"),
    ],
)
def test_steps_out_of_order_are_invalid_transitions(given, reject, steps, command, rule):
    given.customer()
    given.order()
    for step in steps:
        given.step(step)
    reject({"type": command, "orderId": "order-1"}, "INVALID_TRANSITION", "status", rule)


@pytest.mark.parametrize("steps", [(), ("ConfirmOrder",)])
def test_cancel_from_created_or_confirmed(given, store, steps):
    given.customer()
    given.order()
    for step in steps:
        given.step(step)
    result = given.step("CancelOrder", reason="customer changed their mind")
    event = published_events(store)[-1]
    assert (event.eventType, event.data.status.value, event.version) == (
        "OrderCancelled",
        "Cancelled",
        result.version,
    )


@pytest.mark.parametrize(
    "steps", [("ConfirmOrder", "ShipOrder"), ("ConfirmOrder", "ShipOrder", "DeliverOrder"), ("CancelOrder",)]
)
def test_cancel_is_refused_after_shipping_or_cancelling(given, reject, steps):
    given.customer()
    given.order()
    for step in steps:
        given.step(step, **({"reason": "r"} if step == "CancelOrder" else {}))
    reject(
        {"type": "CancelOrder", "orderId": "order-1", "reason": "r"},
        "INVALID_TRANSITION",
        "Created or Confirmed",
    )


def test_cancel_needs_a_reason(given, reject):
    given.customer()
    given.order()
    reject({"type": "CancelOrder", "orderId": "order-1"}, "VALIDATION_ERROR", "reason")


def test_items_change_only_while_created(given, store, reject):
    given.customer()
    given.order()
    added = given.accepted(
        {"type": "AddOrderItem", "orderId": "order-1", "sku": "C", "quantity": 3, "unitPrice": 0}
    )
    removed = given.accepted({"type": "RemoveOrderItem", "orderId": "order-1", "sku": "A"})
    assert (added.version, removed.version) == (2, 3)
    added_event, removed_event = published_events(store)[-2:]
    assert added_event.eventType == "OrderItemAdded" and [i.sku for i in added_event.data.items] == [
        "A",
        "B",
        "C",
    ]
    assert removed_event.eventType == "OrderItemRemoved" and [i.sku for i in removed_event.data.items] == [
        "B",
        "C",
    ]

    add = {"type": "AddOrderItem", "orderId": "order-1", "sku": "D", "quantity": 1, "unitPrice": 1}
    reject({**add, "sku": "B"}, "ALREADY_EXISTS", "sku", "'B'")
    reject({**add, "quantity": 0}, "VALIDATION_ERROR", "quantity")
    reject({**add, "unitPrice": -0.01}, "VALIDATION_ERROR", "unitPrice")
    reject({**add, "orderId": "order-404"}, "NOT_FOUND", "orderId", "order-404")
    reject({"type": "RemoveOrderItem", "orderId": "order-1", "sku": "Z"}, "NOT_FOUND", "sku", "'Z'")
    given.accepted({"type": "RemoveOrderItem", "orderId": "order-1", "sku": "B"})
    reject(
        {"type": "RemoveOrderItem", "orderId": "order-1", "sku": "C"}, "VALIDATION_ERROR", "at least one item"
    )

    given.step("ConfirmOrder")
    reject(add, "INVALID_TRANSITION", "items change only while", "Confirmed")
    reject({"type": "RemoveOrderItem", "orderId": "order-1", "sku": "C"}, "INVALID_TRANSITION", "Confirmed")


def test_unknown_missing_and_unreadable_commands(reject):
    reject({"type": "ApproveLoan"}, "UNKNOWN_COMMAND", "type", "ApproveLoan", "CreateOrder")
    reject({"type": 3}, "UNKNOWN_COMMAND", "type")
    reject({"orderId": "order-1"}, "VALIDATION_ERROR", "type: missing")
    reject('{"type": "ShipOrder", ', "VALIDATION_ERROR", "not valid JSON")
    reject("[1, 2]", "VALIDATION_ERROR", "JSON object")
    reject(b"\xff\xfe", "VALIDATION_ERROR", "not valid JSON")
    reject({"type": "ShipOrder"}, "VALIDATION_ERROR", "orderId")
    reject(
        {"type": "ShipOrder", "orderId": "order-1", "colour": "red"},
        "VALIDATION_ERROR",
        "colour",
        "unknown field",
    )


def test_commands_over_256_kib_are_refused_before_parsing(given, reject):
    given.customer()
    padding = "x" * (256 * 1024)
    command = {
        "type": "RegisterCustomer",
        "customerId": "cust-2",
        "name": "B",
        "email": "b@x.io",
        "metadata": {"userId": padding},
    }
    reject(command, "VALIDATION_ERROR", "256 KiB")
    reject(json.dumps(command), "VALIDATION_ERROR", "256 KiB")
    just_under = {
        "type": "CreateOrder",
        "orderId": "order-big",
        "customerId": "cust-1",
        "items": [{"sku": f"S{i:04d}", "quantity": 1, "unitPrice": 1} for i in range(400)],
    }
    assert given.accepted(just_under).version == 1


def test_stale_expected_version_is_a_conflict(given, reject):
    given.customer()
    given.order(expectedVersion=0)
    confirmed = given.step("ConfirmOrder", expectedVersion=1)
    assert confirmed.version == 2
    reject(
        {"type": "ShipOrder", "orderId": "order-1", "expectedVersion": 1},
        "CONCURRENCY_CONFLICT",
        "expectedVersion",
        "version 2",
    )
    reject(
        {
            "type": "RegisterCustomer",
            "customerId": "cust-1",
            "name": "A",
            "email": "a@b.cd",
            "expectedVersion": 0,
        },
        "CONCURRENCY_CONFLICT",
    )
    reject(
        {"type": "ShipOrder", "orderId": "order-1", "expectedVersion": -1},
        "VALIDATION_ERROR",
        "expectedVersion",
    )


def test_a_repeated_command_id_returns_the_first_outcome_and_writes_nothing(given, handler, store, reject):
    given.customer()
    create = {"type": "CreateOrder", "commandId": "create-1", "customerId": "cust-1", "items": [ITEM]}
    first = handler.handle(create)
    before = store.counts()
    again = handler.handle(json.dumps(create))
    assert again == first and again.aggregateId.startswith("order-")  # even the generated orderId
    assert store.counts() == before
    reject({**create, "items": [{**ITEM, "quantity": 2}]}, "ALREADY_EXISTS", "commandId", "different command")


def test_a_rejected_command_can_be_retried_with_its_command_id(given, handler):
    command = {
        "type": "CreateOrder",
        "commandId": "create-2",
        "orderId": "o-2",
        "customerId": "cust-1",
        "items": [ITEM],
    }
    first = handler.handle(command)
    assert first.error["code"] == "NOT_FOUND" and first.commandId == "create-2"
    given.customer()
    assert handler.handle(command).accepted  # nothing was recorded for the rejection
