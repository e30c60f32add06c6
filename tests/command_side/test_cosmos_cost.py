"""What a command costs in Cosmos DB request units, from the stand-in's request log and its documented cost
model (``cosmos_fake.py``: a point read 1 RU per started KB, a write 5.7 RU per started KB, plus 0.2 RU per
indexed value under an index-everything policy).

Each command type runs once on an order that already exists (the client's metadata is cached by then, as in
a running app), and its charge is every request it caused: the reads of the handler (the aggregate's state,
the command id; the customer's state for an order) and the transactional batch. The figures are the table in
docs/operations.md, "Cosmos DB containers and cost": the test fails when they drift apart, and when a
command costs more than the bound (a change that doubles a command's cost must be a decision).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from azure.cosmos import CosmosClient

from cqrs_orders.adapters.cosmos_containers import ORDER_STORE, ensure_container
from cqrs_orders.adapters.cosmos_store import CosmosWriteStore
from cqrs_orders.adapters.event_log_publisher import EventLogPublisher
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.relay import Relay
from cqrs_orders.config import Settings

from .cosmos_fake import COSMOS_ENDPOINT, COSMOS_KEY, FakeCosmosAccount
from .cosmos_server import CosmosServer

log = logging.getLogger(__name__)
OPERATIONS_DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
#: The most one command may cost under the declared policy: the dearest (AddOrderItem) is ~25 RU.
BOUND_RU = 40.0

ITEM = {"sku": "sku-1", "quantity": 2, "unitPrice": "9.50"}
#: One command of each type, in an order that makes each valid; (type, command).
SEQUENCE = [
    {"type": "RegisterCustomer", "customerId": "cust-1", "name": "Ada", "email": "ada@example.com"},
    {"type": "UpdateCustomer", "customerId": "cust-1", "name": "Ada Lovelace"},
    {"type": "CreateOrder", "orderId": "order-1", "customerId": "cust-1", "items": [ITEM]},
    {"type": "AddOrderItem", "orderId": "order-1", "sku": "sku-2", "quantity": 1, "unitPrice": "4.00"},
    {"type": "RemoveOrderItem", "orderId": "order-1", "sku": "sku-2"},
    {"type": "ConfirmOrder", "orderId": "order-1"},
    {"type": "ShipOrder", "orderId": "order-1"},
    {"type": "DeliverOrder", "orderId": "order-1"},
    {"type": "CreateOrder", "orderId": "order-2", "customerId": "cust-1", "items": [ITEM]},
    {"type": "CancelOrder", "orderId": "order-2", "reason": "changed my mind"},
]


def measure(account: FakeCosmosAccount, tmp_path) -> dict[str, float]:
    """RU per command type (the first of each type in SEQUENCE), and of the relay publishing them all."""
    env = {"CQRS_WRITE_STORE": "cosmos", "COSMOS_ENDPOINT": COSMOS_ENDPOINT, "COSMOS_KEY": COSMOS_KEY}
    settings = Settings.from_env(tmp_path / "warehouse", env=env)
    store = CosmosWriteStore.from_settings(settings, transport=account)
    handler = CommandHandler(store)
    store.load("warm-up")  # the client's account, container and partition-range reads: once per process
    costs: dict[str, float] = {}
    for command in SEQUENCE:
        since = len(account.requests)
        result = handler.handle(command)
        assert result.accepted, result.error
        costs.setdefault(command["type"], account.charges(since))
    since = len(account.requests)
    published = Relay(store, EventLogPublisher(settings.event_log_path)).drain()
    assert published == len(SEQUENCE)
    costs["relay, per event published"] = round(account.charges(since) / published, 2)
    return costs


@pytest.fixture
def declared_account() -> FakeCosmosAccount:
    account = FakeCosmosAccount(precreated=False)
    client = CosmosClient(COSMOS_ENDPOINT, credential=COSMOS_KEY, transport=account)
    ensure_container(client, "orders", ORDER_STORE)
    return account


def documented_table() -> dict[str, tuple[float, float]]:
    """The table in docs/operations.md, "Cosmos DB containers and cost": per row, the RU under the declared
    policy and under the default one."""
    section = OPERATIONS_DOC.read_text().split("### Cosmos DB containers and cost", 1)[1]
    section = re.split(r"^##+ ", section, flags=re.MULTILINE)[0]  # up to the next heading
    rows = re.findall(r"^\| `?([A-Za-z ,]+?)`? \| ([0-9.]+) \| ([0-9.]+) \|$", section, re.MULTILINE)
    return {name: (float(declared), float(default)) for name, declared, default in rows}


def test_each_command_type_costs_less_than_the_bound_and_as_documented(declared_account, tmp_path):
    costs = measure(declared_account, tmp_path)
    log.info("RU per command type: %s", costs)

    assert set(costs) == {c["type"] for c in SEQUENCE} | {"relay, per event published"}
    assert {name: ru for name, ru in costs.items() if ru > BOUND_RU} == {}
    assert {name: declared for name, (declared, _) in documented_table().items()} == pytest.approx(
        costs, abs=0.05
    )


def test_the_declared_policy_costs_less_than_indexing_every_path(declared_account, tmp_path):
    declared = measure(declared_account, tmp_path / "declared")
    everything = measure(FakeCosmosAccount(), tmp_path / "default")  # the service's default policy

    for kind in ("CreateOrder", "AddOrderItem", "ConfirmOrder"):
        assert declared[kind] < everything[kind], kind
    assert {name: default for name, (_, default) in documented_table().items()} == pytest.approx(
        everything, abs=0.05
    )


def test_the_sdk_reads_each_charge_over_http(declared_account, tmp_path):
    """The stand-in's charge reaches the client as the service's does: the ``x-ms-request-charge`` header,
    through the loopback server the app and the jobs talk to in the bundle flow test."""
    with CosmosServer(declared_account) as server:
        client = CosmosClient(server.url, credential=COSMOS_KEY)
        container = client.get_database_client("orders").get_container_client("order-store")
        container.create_item({"id": "state", "aggregateId": "a-1", "docType": "state", "note": "x" * 1500})
        container.read_item("state", partition_key="a-1")
        charge = container.client_connection.last_response_headers["x-ms-request-charge"]
        client.close()

    assert float(charge) == 2.0  # a point read of a document of 1-2 KB
    assert declared_account.requests[-1]["charge"] == 2.0
