"""The command side loads what it stored before event schema versions: a state row or document of schema
1 (an order line's ``unitPrice``, no version recorded) loads through the upcaster, commands carry on from
it, and what they write is of the current schema, money digit for digit."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

from cqrs_orders.adapters.cosmos_store import CosmosWriteStore
from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.envelope import EventEnvelope, LineItem

AMOUNT = "90071992547409.93"  # a binary float holds 17 digits at most: this one would come back ...94
CUSTOMER = {"type": "RegisterCustomer", "customerId": "cust-1", "name": "Ada", "email": "ada@example.com"}
ORDER = {
    "type": "CreateOrder",
    "orderId": "order-1",
    "customerId": "cust-1",
    "items": [{"sku": "a", "quantity": 1, "unitPrice": AMOUNT}],
}


def as_schema_1(state: dict) -> dict:
    """An Order state as the code wrote it before schema 2: each line's price named ``unitPrice``."""
    lines = [{"sku": i["sku"], "quantity": i["quantity"], "unitPrice": i["price"]} for i in state["items"]]
    return {**state, "items": lines}


def accepted(handler: CommandHandler, command: dict) -> None:
    result = handler.handle(command)
    assert result.accepted, result.error


def carry_on_and_check(handler: CommandHandler, store) -> list[EventEnvelope]:
    """Add a line to the order of schema 1 and confirm it; return the new events."""
    accepted(
        handler,
        {"type": "AddOrderItem", "orderId": "order-1", "sku": "b", "quantity": 2, "unitPrice": "0.10"},
    )
    accepted(handler, {"type": "ConfirmOrder", "orderId": "order-1"})
    loaded = store.load("order-1")
    assert loaded.version == 3
    assert loaded.state.items == (
        LineItem(sku="a", quantity=1, price=Decimal(AMOUNT)),
        LineItem(sku="b", quantity=2, price=Decimal("0.10")),
    )
    bodies = [e.body for e in store.pending(100).entries if e.aggregate_id == "order-1"]
    new = [json.loads(body) for body in bodies][-2:]
    assert [(b["schemaVersion"], b["version"]) for b in new] == [(2, 2), (2, 3)]
    assert [line["price"] for line in new[-1]["data"]["items"]] == [AMOUNT, "0.10"]  # the digits as sent
    return [EventEnvelope.from_json(body) for body in bodies]


def test_a_sqlite_store_made_before_schema_versions_loads_and_carries_on(settings):
    path = settings.write_store_path
    store = SqliteWriteStore(path)
    handler = CommandHandler(store)
    accepted(handler, CUSTOMER)
    accepted(handler, ORDER)
    store.close()
    with sqlite3.connect(path) as db:  # back to what the code wrote before versions, column and all
        (state,) = db.execute("SELECT state FROM aggregates WHERE aggregate_id = 'order-1'").fetchone()
        old = json.dumps(as_schema_1(json.loads(state)))
        db.execute("UPDATE aggregates SET state = ? WHERE aggregate_id = 'order-1'", (old,))
        db.execute("ALTER TABLE aggregates DROP COLUMN schema_version")
    assert '"unitPrice":"90071992547409.93"' in old.replace(" ", "")

    store = SqliteWriteStore(path)  # opening gives the rows a schema version column: null, version 1
    try:
        assert store.load("order-1").state.items == (LineItem(sku="a", quantity=1, price=Decimal(AMOUNT)),)
        carry_on_and_check(CommandHandler(store), store)
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        rows = dict(db.execute("SELECT aggregate_id, schema_version FROM aggregates").fetchall())
    assert rows == {"cust-1": None, "order-1": 2}  # the customer's state was not written again


def test_a_cosmos_state_document_of_schema_1_loads_and_carries_on(cosmos_settings, cosmos_account):
    store = CosmosWriteStore.from_settings(cosmos_settings, transport=cosmos_account)
    handler = CommandHandler(store)
    accepted(handler, CUSTOMER)
    accepted(handler, ORDER)
    document = cosmos_account.documents[("order-1", "state")]
    assert document["schemaVersion"] == 2
    old = {key: value for key, value in document.items() if key != "schemaVersion"}
    cosmos_account.documents[("order-1", "state")] = {**old, "state": as_schema_1(document["state"])}

    assert store.load("order-1").state.items == (LineItem(sku="a", quantity=1, price=Decimal(AMOUNT)),)
    carry_on_and_check(handler, store)
    assert cosmos_account.documents[("order-1", "state")]["schemaVersion"] == 2


def test_a_state_written_by_newer_code_is_not_overwritten(settings, caplog):
    """Code that rolled back must not write an older shape over a newer state: the command fails, the log
    says why, and the stored state is left as it was."""
    path = settings.write_store_path
    store = SqliteWriteStore(path)
    handler = CommandHandler(store)
    accepted(handler, CUSTOMER)
    accepted(handler, ORDER)
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE aggregates SET schema_version = 3 WHERE aggregate_id = 'order-1'")
        before = db.execute("SELECT state, version FROM aggregates WHERE aggregate_id = 'order-1'").fetchone()

    store = SqliteWriteStore(path)
    try:
        result = CommandHandler(store).handle({"type": "ConfirmOrder", "orderId": "order-1"})
    finally:
        store.close()
    assert result.error["code"] == "INTERNAL_ERROR"
    assert "Order state of schemaVersion 3 is newer than this code knows (2)" in caplog.text
    with sqlite3.connect(path) as db:
        assert (
            db.execute("SELECT state, version FROM aggregates WHERE aggregate_id = 'order-1'").fetchone()
            == before
        )
