"""What a command's answer says when the network fails the write, with the real azure-cosmos SDK against the
loopback Cosmos DB server (``cosmos_faults.py``): a request that may have reached the store is answered
``WRITE_OUTCOME_UNKNOWN`` with the ``commandId`` to retry with (a generated one too), and the retry answers
the first result, once; a request that was never sent is ``WRITE_STORE_UNAVAILABLE``, nothing written.
Never ``INTERNAL_ERROR``: a transport failure is not a bug."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from azure.cosmos import CosmosClient

from cqrs_orders.adapters.cosmos_containers import COMMAND_ID_WINDOW_SECONDS, ORDER_STORE, ensure_container
from cqrs_orders.adapters.cosmos_store import CosmosWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.http.app import create_app

from .cosmos_fake import COSMOS_ENDPOINT, COSMOS_KEY, FakeCosmosAccount
from .cosmos_faults import COMMIT_THEN_DROP, COMMIT_THEN_STALL, RESET_UNREAD, FaultyCosmosServer

READ_TIMEOUT_SECONDS = 1  # the SDK's socket read timeout: a stalled answer is given up after this


@pytest.fixture
def account():
    return FakeCosmosAccount()


@pytest.fixture
def server(account):
    with FaultyCosmosServer(account) as serving:
        yield serving


@pytest.fixture
def handler(server):
    client = CosmosClient(server.url, credential=COSMOS_KEY, read_timeout=READ_TIMEOUT_SECONDS)
    container = client.get_database_client("orders").get_container_client("order-store")
    handler = CommandHandler(CosmosWriteStore(container, client=client))
    yield handler
    handler.store.close()


def register(customer_id: str, **extra) -> dict:
    command = {"type": "RegisterCustomer", "customerId": customer_id, "name": "Ada", "email": "a@example.com"}
    return {**command, **extra}


def rename(customer_id: str, **extra) -> dict:
    return {"type": "UpdateCustomer", "customerId": customer_id, "name": "Ada L.", **extra}


def stored_version(account, aggregate_id: str) -> int | None:
    state = account.documents.get((aggregate_id, "state"))
    return state["version"] if state else None


def events_of(account, aggregate_id: str) -> list[str]:
    return sorted(
        key[1] for key in account.documents if key[0] == aggregate_id and key[1].startswith("event-")
    )


@pytest.mark.parametrize(
    ("fault", "written"),
    [(COMMIT_THEN_STALL, True), (COMMIT_THEN_DROP, True), (RESET_UNREAD, False)],
)
def test_a_write_that_may_have_reached_the_store_is_unknown_and_its_retry_runs_once(
    handler, account, server, fault, written
):
    assert handler.handle(register("c-1", commandId="reg-c-1")).accepted
    server.next_batch = fault

    first = handler.handle(rename("c-1", commandId="ren-c-1"))

    assert server.faults_met == [fault]
    assert first.status == "rejected" and first.error["code"] == "WRITE_OUTCOME_UNKNOWN", first
    assert first.commandId == "ren-c-1" and "same commandId" in first.error["message"]
    assert stored_version(account, "c-1") == (2 if written else 1)  # the fault was real, either way
    retried = handler.handle(rename("c-1", commandId="ren-c-1"))
    assert retried.accepted and retried.version == 2
    assert stored_version(account, "c-1") == 2 and events_of(account, "c-1") == [
        "event-000000000001",
        "event-000000000002",
    ]  # written exactly once, by the first attempt or by the retry


def test_a_command_without_an_id_is_answered_with_one_and_retrying_with_it_creates_no_second_order(
    handler, account, server
):
    assert handler.handle(register("cust-1", commandId="reg-cust-1")).accepted
    create = {
        "type": "CreateOrder",
        "customerId": "cust-1",
        "items": [{"sku": "A", "quantity": 1, "unitPrice": "2"}],
    }
    server.next_batch = COMMIT_THEN_DROP

    lost = handler.handle(create)  # no commandId, no orderId: both generated

    assert lost.error["code"] == "WRITE_OUTCOME_UNKNOWN" and len(lost.commandId) == 36
    orders = {key[0] for key in account.documents if key[1] == "state"} - {"cust-1"}
    assert len(orders) == 1  # it had been written
    retried = handler.handle({**create, "commandId": lost.commandId})
    assert retried.accepted and retried.aggregateId in orders
    assert {key[0] for key in account.documents if key[1] == "state"} - {
        "cust-1"
    } == orders  # no second order


def test_a_write_that_was_never_sent_is_unavailable_and_not_written(handler, account, server):
    assert handler.handle(register("c-0", commandId="reg-c-0")).accepted
    assert handler.handle(register("c-1", commandId="reg-c-1")).accepted
    # How many requests a rename makes before its batch (its reads), counted on another customer.
    before = len(account.requests)
    assert handler.handle(rename("c-0", commandId="ren-c-0")).accepted
    reads = [r for r in account.requests[before:] if not r["headers"].get("x-ms-cosmos-is-batch-request")]
    server.stop_listening_after(len(reads))  # its reads are answered, then the door closes

    result = handler.handle(rename("c-1", commandId="ren-c-1"))

    assert result.error["code"] == "WRITE_STORE_UNAVAILABLE", result
    assert result.commandId == "ren-c-1" and "not written" in result.error["message"]
    assert stored_version(account, "c-1") == 1
    assert not [r for r in account.requests[before:] if r["body"] and "ren-c-1" in str(r["body"])]


def test_over_http_an_unknown_outcome_is_503_with_the_commandid_to_retry_with(handler, account, server):
    app = create_app(handler, read_models=None)
    assert handler.handle(register("c-1", commandId="reg-c-1")).accepted
    server.next_batch = COMMIT_THEN_STALL

    async def post(body):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.post("/commands", json=body)

    answer = asyncio.run(post(rename("c-1")))  # no commandId of its own

    assert answer.status_code == 503
    body = answer.json()
    assert body["error"]["code"] == "WRITE_OUTCOME_UNKNOWN" and len(body["commandId"]) == 36
    assert "same commandId" in body["error"]["message"]
    again = asyncio.run(post({**rename("c-1"), "commandId": body["commandId"]}))
    assert again.status_code == 200 and again.json()["version"] == 2
    assert stored_version(account, "c-1") == 2


def test_the_retry_of_an_unknown_outcome_is_answered_from_its_record_all_through_the_window(cosmos_clock):
    """The record a retry needs (the command document of a write whose answer was lost) is kept for the
    whole idempotency window, counted from that write: a retry on its last second still runs nothing."""
    account = FakeCosmosAccount(clock=cosmos_clock, precreated=False)
    setup = CosmosClient(COSMOS_ENDPOINT, credential=COSMOS_KEY, transport=account)
    assert ensure_container(setup, "orders", ORDER_STORE).action == "created"  # TTL on, as deployed
    with FaultyCosmosServer(account) as server:
        client = CosmosClient(server.url, credential=COSMOS_KEY, read_timeout=READ_TIMEOUT_SECONDS)
        container = client.get_database_client("orders").get_container_client("order-store")
        handler = CommandHandler(CosmosWriteStore(container, client=client, clock=cosmos_clock))
        assert handler.handle(register("c-1", commandId="reg-c-1")).accepted
        server.next_batch = COMMIT_THEN_DROP
        first = handler.handle(rename("c-1", commandId="ren-c-1"))
        assert first.error["code"] == "WRITE_OUTCOME_UNKNOWN"

        cosmos_clock.advance(COMMAND_ID_WINDOW_SECONDS - 1)
        retried = handler.handle(rename("c-1", commandId="ren-c-1"))
        handler.store.close()

    assert retried.accepted and retried.version == 2
    assert events_of(account, "c-1") == ["event-000000000001", "event-000000000002"]  # not run again
