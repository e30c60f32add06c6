"""Money is kept exactly: every accepted amount, over the whole accepted range, is the same digits in the
write store (SQLite and Cosmos DB), in the event, on the bus (the embedded event log) and after the aggregate
is reloaded, whichever way the caller spelled it (a JSON number, a string, ``9.5`` or ``9.50``, ``1E+2``).

The bronze and silver half of the trip is ``tests/pipeline/test_money_exact.py`` (Spark)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrs_orders.adapters.cosmos_store import CosmosWriteStore
from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.adapters.event_log_publisher import EventLogPublisher
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.relay import Relay
from cqrs_orders.domain.commands.order import MAX_ORDER_TOTAL
from cqrs_orders.envelope import EventEnvelope

#: Every amount the API accepts: 0.00 to 9999999999999999.99 in cents (16 digits before the point).
AMOUNTS = st.decimals(min_value=Decimal(0), max_value=MAX_ORDER_TOTAL, places=2)


def spellings(amount: Decimal) -> list[str]:
    """JSON texts a caller may send for ``amount``: a number and a string, as given and shortest."""
    shortest = format(amount.normalize(), "f") if amount else "0"
    scientific = format(amount.normalize(), "E")
    return [f"{amount:.2f}", f'"{amount:.2f}"', shortest, f'"{shortest}"', scientific]


def create_order(order_id: str, price_text: str) -> str:
    """A CreateOrder as JSON text, the price spliced in as given (a float would round it first)."""
    return (
        f'{{"type": "CreateOrder", "commandId": "c-{order_id}", "orderId": "{order_id}", '
        f'"customerId": "cust-1", "items": [{{"sku": "s", "quantity": 1, "unitPrice": {price_text}}}]}}'
    )


def wire_price(body: str) -> str:
    return json.loads(body)["data"]["items"][0]["price"]


EDGES = [Decimal("90071992547409.93"), Decimal("9999999999999999.99"), Decimal("0.01"), Decimal("0.00")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amounts=st.lists(AMOUNTS, min_size=1, max_size=8))
def test_every_accepted_amount_is_the_same_digits_in_store_event_bus_and_reload(tmp_path_factory, amounts):
    from cqrs_orders.adapters.sqlite_store import SqliteWriteStore

    folder = tmp_path_factory.mktemp("money")
    store = SqliteWriteStore(folder / "store.db")
    handler = CommandHandler(store)
    try:
        _round_trip(handler, store, folder, EDGES + amounts)
    finally:
        store.close()


def _round_trip(handler, store, folder, amounts: list[Decimal]) -> None:
    handler.handle('{"type":"RegisterCustomer","customerId":"cust-1","name":"Ada","email":"a@b.io"}')
    texts = {
        f"o-{n}-{m}": (text, amount)
        for n, amount in enumerate(amounts)
        for m, text in enumerate(spellings(amount))
    }
    sent = {order_id: amount for order_id, (_, amount) in texts.items()}
    results = handler.handle_many([create_order(order_id, text) for order_id, (text, _) in texts.items()])
    assert all(result.accepted for result in results), [r.error for r in results if not r.accepted]

    for order_id, amount in sent.items():  # the store, after a reload from its text
        (item,) = store.load(order_id).state.items
        assert str(item.price) == f"{amount:.2f}", (order_id, item.price)

    pending = store.pending(10_000).entries
    by_order = {entry.aggregate_id: entry.body for entry in pending if entry.aggregate_id in sent}
    for order_id, body in by_order.items():  # the event as stored and as parsed back
        assert wire_price(body) == f"{sent[order_id]:.2f}"
        assert EventEnvelope.from_json(body).data.items[0].price == sent[order_id]

    Relay(store, EventLogPublisher(folder / "log")).drain()  # the bus: what the relay published, read back
    log = EventLog(folder / "log")
    published = {json.loads(body)["aggregateId"]: body for body in log.read().column("body").to_pylist()}
    assert {order_id: wire_price(published[order_id]) for order_id in sent} == {
        order_id: f"{amount:.2f}" for order_id, amount in sent.items()
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=AMOUNTS)
def test_cosmos_db_keeps_every_accepted_amount_exactly(cosmos_settings, cosmos_account, amount):
    store = CosmosWriteStore.from_settings(cosmos_settings, transport=cosmos_account)
    handler = CommandHandler(store)
    handler.handle('{"type":"RegisterCustomer","customerId":"cust-1","name":"Ada","email":"a@b.io"}')
    order_id = f"o-{len(cosmos_account.documents)}"
    assert handler.handle(create_order(order_id, f"{amount:.2f}")).accepted
    document = cosmos_account.documents[(order_id, "state")]
    assert document["state"]["items"][0]["price"] == f"{amount:.2f}"  # a string in the document
    assert store.load(order_id).state.items[0].price == amount
    (event,) = [
        d for (p, _), d in cosmos_account.documents.items() if p == order_id and d["docType"] == "event"
    ]
    assert wire_price(event["body"]) == f"{amount:.2f}"


@pytest.mark.parametrize(
    ("price", "words"),
    [
        ("10000000000000000.00", "16 digits before the decimal point"),
        ('"0.001"', "2 decimal places"),
        ("-0.01", "greater than or equal to 0"),
        ('"NaN"', "finite number"),
        ("Infinity", "not a JSON value"),
        ("1e400", "18 digits"),
    ],
)
def test_an_amount_that_cannot_be_kept_exactly_is_refused_naming_the_limit(handler, price, words):
    result = handler.handle(create_order("o-1", price))
    assert result.error["code"] == "VALIDATION_ERROR" and words in result.error["message"], result.error


def test_an_event_written_before_the_money_rule_still_reads_its_number(handler):
    """Events of the float era hold numbers: they are read, as the digits they hold."""
    body = json.dumps(
        {
            "eventId": "6f1c0a3e-6c1a-4a53-9b0e-5d3f3e0c9a11",
            "eventType": "OrderCreated",
            "aggregateId": "o-old",
            "aggregateType": "Order",
            "version": 1,
            "timestamp": "2025-01-01T00:00:00Z",
            "data": {
                "orderId": "o-old",
                "customerId": "c",
                "status": "Created",
                "items": [{"sku": "s", "quantity": 1, "unitPrice": 19.99}],
                "currency": "EUR",
                "createdAt": "2025-01-01T00:00:00Z",
                "updatedAt": "2025-01-01T00:00:00Z",
            },
        }
    )
    event = EventEnvelope.from_json(body)
    assert str(event.data.items[0].price) == "19.99"  # a schema 1 event, its unitPrice now price
    assert wire_price(event.to_json()) == "19.99"  # written back in the one rule
