"""What the code writes, the same code reads back: every state and event that any sequence of commands
stores (hypothesis draws the commands, with any text, id and amount) loads again and equals what was
decided. A state that no longer validates on reload would be a bug of ours, not of the caller."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.envelope import STATE_MODELS, EventEnvelope

from .test_money_exact import AMOUNTS

#: Mostly a few ids (so later commands find the aggregates earlier ones made), sometimes any text.
IDS = st.sampled_from(["a", "b", "é", "o 1", "x'y"]) | st.text(min_size=1, max_size=8)
TEXT = st.text(min_size=1, max_size=210)
EMAILS = st.builds(
    lambda a, b: f"{a}@{b}.io", st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=9)
)
ITEM = st.fixed_dictionaries(
    {"sku": IDS, "quantity": st.integers(min_value=-1, max_value=1_000_001), "unitPrice": AMOUNTS.map(str)}
)

COMMANDS = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("RegisterCustomer"), "customerId": IDS, "name": TEXT, "email": EMAILS}
    ),
    st.fixed_dictionaries(
        {"type": st.just("UpdateCustomer"), "customerId": IDS},
        optional={"name": TEXT, "email": EMAILS},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("CreateOrder"),
            "orderId": IDS,
            "customerId": IDS,
            "items": st.lists(ITEM, min_size=1, max_size=4),
        },
        optional={"currency": st.sampled_from(["EUR", "USD", "eur"])},
    ),
    st.builds(lambda order, item: {"type": "AddOrderItem", "orderId": order, **item}, IDS, ITEM),
    st.fixed_dictionaries({"type": st.just("RemoveOrderItem"), "orderId": IDS, "sku": IDS}),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["ConfirmOrder", "ShipOrder", "DeliverOrder"]), "orderId": IDS}
    ),
    st.fixed_dictionaries({"type": st.just("CancelOrder"), "orderId": IDS, "reason": TEXT}),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(COMMANDS, min_size=5, max_size=60))
def test_every_state_and_event_the_code_writes_loads_back(tmp_path_factory, commands):
    store = SqliteWriteStore(tmp_path_factory.mktemp("loads") / "store.db")
    try:
        handler = CommandHandler(store)
        decided = {}
        for command in commands:
            result = handler.handle(json.dumps(command, ensure_ascii=False))
            assert result.error is None or result.error["code"] != "INTERNAL_ERROR", result.error
            if result.accepted:
                decided[result.aggregateId] = result.version

        target(len(decided), label="aggregates stored")  # steer towards sequences that store more
        for aggregate_id, version in decided.items():
            snapshot = store.load(aggregate_id)  # parses the stored state with the state model
            assert snapshot.version == version
        bodies = [entry.body for entry in store.pending(100_000).entries]
        assert len(bodies) == sum(decided.values())
        for body in bodies:
            event = EventEnvelope.from_json(body)
            again = STATE_MODELS[event.aggregateType].model_validate_json(event.data.model_dump_json())
            assert again == event.data
            assert EventEnvelope.from_json(event.to_json()) == event
        for aggregate_id in decided:  # and each state is its last event's
            last = max(
                (EventEnvelope.from_json(b) for b in bodies if json.loads(b)["aggregateId"] == aggregate_id),
                key=lambda event: event.version,
            )
            assert store.load(aggregate_id).state == last.data
    finally:
        store.close()
