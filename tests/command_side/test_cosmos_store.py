"""The Cosmos DB write store without a network: the real ``azure-cosmos`` client talks to an in-memory account
through azure-core's pluggable transport (``transport=``), which records every HTTP request and answers as
the Cosmos REST API does (documents, ETags, transactional batches with 207 multi-status, change feed LSNs).

The tests check the requests the adapter shapes (one atomic batch per command in the aggregate's partition,
IfMatch on the state document, the change-feed continuation saved after publishing) and its behaviour on
conflicts and relay restarts."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest

from cqrs_orders.adapters.cosmos_containers import COMMAND_ID_WINDOW_SECONDS
from cqrs_orders.adapters.cosmos_store import CosmosWriteStore
from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.adapters.event_log_publisher import EventLogPublisher
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.ports import (
    MAX_COMMAND_ID_RETENTION_DAYS,
    Commit,
    DuplicateCommand,
    VersionConflict,
)
from cqrs_orders.application.relay import MIN_PUBLISH_INTERVAL_SECONDS, Relay
from cqrs_orders.config import Settings
from cqrs_orders.envelope import new_event
from cqrs_orders.errors import ConfigurationError

from .cosmos_fake import COSMOS_ENDPOINT, COSMOS_KEY


@pytest.fixture
def account(cosmos_account):
    return cosmos_account


def cosmos_store(settings, account) -> CosmosWriteStore:
    return CosmosWriteStore.from_settings(settings, transport=account)


def submit(handler, *commands):
    results = [handler.handle(command) for command in commands]
    assert all(result.accepted for result in results), [r.error for r in results]
    return results


CUSTOMER = {"type": "RegisterCustomer", "customerId": "cust-1", "name": "Ada", "email": "ada@example.com"}
ORDER = {
    "type": "CreateOrder",
    "commandId": "create-1",
    "orderId": "order-1",
    "customerId": "cust-1",
    "items": [{"sku": "A", "quantity": 2, "unitPrice": 10.25}],
}


def test_each_command_is_one_atomic_batch_in_its_partition_guarded_by_the_state_etag(
    cosmos_settings, account
):
    handler = CommandHandler(cosmos_store(cosmos_settings, account))
    submit(handler, CUSTOMER, ORDER)
    etag_before_confirm = account.documents[("order-1", "state")]["_etag"]
    [confirmed] = submit(handler, {"type": "ConfirmOrder", "commandId": "confirm-1", "orderId": "order-1"})

    batches = account.batches()
    assert len(batches) == 3  # one round trip per command, nothing written outside it
    last = batches[-1]
    assert last["headers"]["x-ms-documentdb-partitionkey"] == '["order-1"]'
    assert last["headers"]["x-ms-cosmos-batch-atomic"] == "True"
    operations = last["body"]
    assert [(op["operationType"], op.get("id") or op["resourceBody"]["id"]) for op in operations] == [
        ("Replace", "state"),
        ("Create", "event-000000000002"),  # also the relay's outbox: it publishes from the change feed
        ("Create", operations[2]["resourceBody"]["id"]),
    ]
    assert operations[0]["ifMatch"] == etag_before_confirm
    assert operations[2]["resourceBody"]["id"].startswith("command-")  # a digest: ids may hold '/' or '#'
    assert operations[0]["resourceBody"]["version"] == 2
    assert operations[0]["resourceBody"]["state"]["status"] == "Confirmed"
    event = operations[1]["resourceBody"]
    assert event["eventId"] == confirmed.eventIds[0] and event["commandId"] == "confirm-1"
    assert json.loads(event["body"])["eventType"] == event["eventType"] == "OrderConfirmed"
    assert all(op["resourceBody"]["aggregateId"] == "order-1" for op in operations)
    assert cosmos_settings.secret("COSMOS_KEY").reveal() not in json.dumps(
        [r["headers"] for r in account.requests]
    )  # only signatures travel


def test_a_writer_racing_between_read_and_batch_hits_the_etag_and_retries(cosmos_settings, account):
    store = cosmos_store(cosmos_settings, account)
    handler = CommandHandler(store)
    submit(handler, CUSTOMER, ORDER)
    rival = CommandHandler(cosmos_store(cosmos_settings, account))

    def rival_adds_an_item():
        submit(
            rival, {"type": "AddOrderItem", "orderId": "order-1", "sku": "R", "quantity": 1, "unitPrice": 1}
        )

    account.before_next_batch = rival_adds_an_item
    [added] = submit(
        handler, {"type": "AddOrderItem", "orderId": "order-1", "sku": "X", "quantity": 1, "unitPrice": 1}
    )
    assert added.version == 3  # lost at version 2 (412 on IfMatch), reloaded, decided again
    assert [item.sku for item in store.load("order-1").state.items] == ["A", "R", "X"]
    assert account.batch_failures == [412]

    account.before_next_batch = lambda: submit(
        rival, {"type": "AddOrderItem", "orderId": "order-1", "sku": "S", "quantity": 1, "unitPrice": 1}
    )
    pinned = handler.handle(
        {
            "type": "AddOrderItem",
            "orderId": "order-1",
            "sku": "Y",
            "quantity": 1,
            "unitPrice": 1,
            "expectedVersion": 3,
        }
    )
    assert pinned.error["code"] == "CONCURRENCY_CONFLICT"
    assert account.batch_failures == [412, 412]
    assert [item.sku for item in store.load("order-1").state.items] == ["A", "R", "X", "S"]


def test_a_stale_commit_and_a_repeated_command_write_nothing(cosmos_settings, account):
    store = cosmos_store(cosmos_settings, account)
    handler = CommandHandler(store)
    [first] = submit(handler, CUSTOMER, ORDER)[1:]
    documents = dict(account.documents)
    assert handler.handle(ORDER) == first  # answered from the command document (a point read)
    assert account.documents == documents
    assert len(account.batches()) == 2

    snapshot = store.load("order-1")
    stale = Commit(
        "c-x",
        "fp",
        "{}",
        snapshot.aggregate_type,
        "order-1",
        snapshot.version - 1,
        next_events(snapshot, snapshot.version),
        {"commandId": "c-x"},
    )
    with pytest.raises(VersionConflict):
        store.append(stale)
    # A concurrent retry of create-1 that got past the first check: the batch fails on the command document.
    duplicate = Commit(
        "create-1",
        "fp",
        "{}",
        snapshot.aggregate_type,
        "order-1",
        snapshot.version,
        next_events(snapshot, snapshot.version + 1),
        {"commandId": "create-1"},
    )
    with pytest.raises(DuplicateCommand) as raised:
        store.append(duplicate)
    assert raised.value.recorded.outcome == first.to_dict()
    assert account.batch_failures == [409]
    assert account.documents == documents


def test_only_command_documents_carry_a_time_to_live(cosmos_settings, account):
    """Only command ids expire, after their idempotency window (docs/operations.md, "Cosmos DB containers
    and cost"); state and events stay: events are the relay's outbox, so none can expire unpublished."""
    handler = CommandHandler(cosmos_store(cosmos_settings, account))
    submit(handler, CUSTOMER)

    [batch] = account.batches()
    ttl = {op["resourceBody"]["docType"]: op["resourceBody"].get("ttl") for op in batch["body"]}
    assert ttl == {
        "state": None,
        "event": None,
        "command": COMMAND_ID_WINDOW_SECONDS,
    }


def test_command_documents_live_for_the_configured_window(tmp_path, account):
    env = {"CQRS_WRITE_STORE": "cosmos", "COSMOS_ENDPOINT": COSMOS_ENDPOINT, "COSMOS_KEY": COSMOS_KEY,
           "CQRS_COMMAND_ID_RETENTION_DAYS": "7"}  # fmt: skip
    handler = CommandHandler(cosmos_store(Settings.from_env(tmp_path / "warehouse", env=env), account))
    submit(handler, CUSTOMER)

    [batch] = account.batches()
    ttl = {op["resourceBody"]["docType"]: op["resourceBody"].get("ttl") for op in batch["body"]}
    assert ttl == {"state": None, "event": None, "command": 7 * 24 * 60 * 60}


def test_a_window_longer_than_cosmos_keeps_a_document_is_refused(tmp_path, account):
    env = {"CQRS_WRITE_STORE": "cosmos", "COSMOS_ENDPOINT": COSMOS_ENDPOINT, "COSMOS_KEY": COSMOS_KEY,
           "CQRS_COMMAND_ID_RETENTION_DAYS": str(MAX_COMMAND_ID_RETENTION_DAYS + 1)}  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"CQRS_COMMAND_ID_RETENTION_DAYS=.*longest time to live"):
        cosmos_store(Settings.from_env(tmp_path / "warehouse", env=env), account)
    assert account.batches() == []


def next_events(snapshot, version: int):
    state = snapshot.state.model_copy(update={"updatedAt": datetime.now(timezone.utc)})
    return [new_event("OrderConfirmed", state, version)]


def test_the_change_feed_relay_resumes_from_its_saved_continuation(cosmos_settings, account, settings):
    handler = CommandHandler(cosmos_store(cosmos_settings, account))
    submit(handler, CUSTOMER, ORDER, {"type": "ConfirmOrder", "orderId": "order-1"})
    publisher = EventLogPublisher(settings.event_log_path)
    assert Relay(cosmos_store(cosmos_settings, account), publisher, batch_size=2).drain() == 3
    checkpoint = account.documents[("__relay__", "checkpoint-default")]
    assert checkpoint["continuation"]

    # A restarted relay (a new client, same account) starts from the saved token: nothing is sent twice.
    feed_reads = len([r for r in account.requests if is_feed_read(r)])
    assert Relay(cosmos_store(cosmos_settings, account), publisher).drain() == 0
    resumed = [r for r in account.requests if is_feed_read(r)][feed_reads:]
    assert resumed and all(r["headers"].get("If-None-Match") for r in resumed)

    submit(handler, {"type": "ShipOrder", "orderId": "order-1"})
    assert Relay(cosmos_store(cosmos_settings, account), publisher).drain() == 1
    bodies = [json.loads(b) for b in EventLog(settings.event_log_path).read().column("body").to_pylist()]
    order_versions = [b["version"] for b in bodies if b["aggregateId"] == "order-1"]
    assert order_versions == [1, 2, 3]
    assert sorted(b["eventType"] for b in bodies) == [
        "CustomerRegistered",
        "OrderConfirmed",
        "OrderCreated",
        "OrderShipped",
    ]


def test_cosmos_without_endpoint_or_key_says_what_to_set(tmp_path, cosmos_settings):
    only_endpoint = {"COSMOS_ENDPOINT": cosmos_settings.cosmos_endpoint}
    with pytest.raises(ConfigurationError, match="COSMOS_ENDPOINT and COSMOS_KEY"):
        CosmosWriteStore.from_settings(Settings.from_env(tmp_path, env=only_endpoint))


def is_feed_read(request: dict) -> bool:
    return (
        request["path"].endswith("/docs") and request["headers"].get("A-IM", "").lower() == "incremental feed"
    )


def test_a_following_relay_does_not_hold_back_a_change_feed_backlog(cosmos_settings, account, settings):
    """Change-feed pages are short even mid-backlog (they skip the state documents), and Cosmos DB cannot
    wake the relay at a commit: its sets are never paced like a trickle of SQLite commits."""
    handler = CommandHandler(cosmos_store(cosmos_settings, account))
    submit(handler, CUSTOMER, ORDER, *[{"type": "AddOrderItem", "orderId": "order-1", "sku": f"S{n}",
                                        "quantity": 1, "unitPrice": 1} for n in range(6)])  # fmt: skip
    store, published = cosmos_store(cosmos_settings, account), []

    class Recording(EventLogPublisher):
        def publish(self, entries) -> None:
            super().publish(entries)
            published.append(time.monotonic())

    stop = threading.Event()
    relay = Relay(store, Recording(settings.event_log_path), batch_size=2)
    follower = threading.Thread(target=relay.follow, args=(stop, 30))
    follower.start()
    deadline = time.monotonic() + 30
    while len(EventLog(settings.event_log_path).read()) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    follower.join(10)
    assert len(EventLog(settings.event_log_path).read()) == 8
    assert len(published) >= 4 and published[-1] - published[0] < MIN_PUBLISH_INTERVAL_SECONDS * (
        len(published) - 1
    )
