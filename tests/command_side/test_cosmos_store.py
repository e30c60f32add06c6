"""The Cosmos DB write store without a network: the real ``azure-cosmos`` client talks to an in-memory account
through azure-core's pluggable transport (``transport=``), which records every HTTP request and answers as
the Cosmos REST API does (documents, ETags, transactional batches with 207 multi-status, change feed LSNs).

The tests check the requests the adapter shapes (one atomic batch per command in the aggregate's partition,
IfMatch on the state document, the change-feed continuation saved after publishing) and its behaviour on
conflicts and relay restarts."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from urllib.parse import unquote, urlparse

import pytest
from azure.core.pipeline.transport import HttpResponse, HttpTransport
from azure.core.utils import CaseInsensitiveDict

from cqrs_orders.adapters.cosmos_store import CosmosWriteStore
from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.adapters.event_log_publisher import EventLogPublisher
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.ports import Commit, DuplicateCommand, VersionConflict
from cqrs_orders.application.relay import Relay
from cqrs_orders.config import Settings
from cqrs_orders.envelope import new_event
from cqrs_orders.errors import ConfigurationError

ENDPOINT = "https://cosmos.test:8081/"
KEY = "c2VjcmV0LWNvc21vcy1rZXk="
CONTAINER = "/dbs/orders/colls/order-store"


class _Response(HttpResponse):
    def __init__(self, request, status: int, body=None, headers=None):
        super().__init__(request, None)
        self.status_code = status
        self.reason = {
            200: "OK",
            201: "Created",
            207: "Multi-Status",
            304: "Not Modified",
            404: "Not Found",
        }.get(status, "Error")
        self.headers = CaseInsensitiveDict(
            {"Content-Type": "application/json", "x-ms-request-charge": "1", **(headers or {})}
        )
        self.content_type = "application/json"
        self._body = b"" if body is None else json.dumps(body).encode()

    def body(self) -> bytes:
        return self._body


class FakeCosmosAccount(HttpTransport):
    """One account, one container (partition key /aggregateId, one physical partition), in memory."""

    def __init__(self):
        self.documents: dict[tuple[str, str], dict] = {}
        self.lsn = 0
        self.requests: list[dict] = []
        self.before_next_batch = None  # a hook: another writer acting between a read and a batch
        self.batch_failures: list[int] = []

    # HttpTransport
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def open(self):
        return None

    def close(self):
        return None

    def send(self, request, **kwargs):
        path = unquote(urlparse(request.url).path).rstrip("/")
        body = json.loads(request.body) if request.body else None
        self.requests.append(
            {"method": request.method, "path": path, "headers": dict(request.headers), "body": body}
        )
        headers = CaseInsensitiveDict(request.headers)
        if path == "":
            location = [{"name": "Test", "databaseAccountEndpoint": ENDPOINT}]
            return _Response(
                request,
                200,
                {
                    "id": "test",
                    "writableLocations": location,
                    "readableLocations": location,
                    "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
                },
            )
        if path == CONTAINER:
            return _Response(
                request,
                200,
                {
                    "id": "order-store",
                    "_rid": "cRID==",
                    "partitionKey": {"paths": ["/aggregateId"], "kind": "Hash", "version": 2},
                },
            )
        if path == f"{CONTAINER}/pkranges":
            if headers.get("If-None-Match"):
                return _Response(request, 304, headers={"etag": '"ranges-1"'})
            ranges = [{"id": "0", "minInclusive": "", "maxExclusive": "FF", "parents": []}]
            return _Response(
                request,
                200,
                {"_rid": "cRID==", "PartitionKeyRanges": ranges, "_count": 1},
                headers={"etag": '"ranges-1"'},
            )
        partition = json.loads(headers.get("x-ms-documentdb-partitionkey", "[null]"))[0]
        if path.startswith(f"{CONTAINER}/docs/") and request.method == "GET":
            document = self.documents.get((partition, path.rsplit("/", 1)[1]))
            if document is None:
                return _Response(
                    request,
                    404,
                    {"code": "NotFound", "message": "Entity with the specified id does not exist"},
                )
            return _Response(request, 200, document, headers={"etag": document["_etag"]})
        if (
            path == f"{CONTAINER}/docs"
            and request.method == "POST"
            and headers.get("x-ms-cosmos-is-batch-request")
        ):
            return self._batch(request, partition, body)
        if (
            path == f"{CONTAINER}/docs"
            and request.method == "POST"
            and headers.get("x-ms-documentdb-is-upsert")
        ):
            return _Response(request, 200, self._write(partition, body))
        if (
            path == f"{CONTAINER}/docs"
            and request.method == "GET"
            and headers.get("A-IM", "").lower() == "incremental feed"
        ):
            return self._change_feed(request, headers)
        return _Response(
            request, 400, {"code": "BadRequest", "message": f"unexpected {request.method} {path}"}
        )

    # Cosmos semantics
    def _write(self, partition: str, document: dict) -> dict:
        self.lsn += 1
        stored = {**document, "_etag": f'"{uuid.uuid4()}"', "_lsn": self.lsn, "_ts": 1_700_000_000 + self.lsn}
        self.documents[(partition, document["id"])] = stored
        return stored

    def _batch(self, request, partition: str, operations: list[dict]):
        if self.before_next_batch:
            hook, self.before_next_batch = self.before_next_batch, None
            hook()
        failed = None
        for index, operation in enumerate(operations):
            key = (partition, operation.get("id") or operation["resourceBody"]["id"])
            existing = self.documents.get(key)
            if operation["operationType"] == "Create" and existing is not None:
                failed = (index, 409)
            elif operation["operationType"] == "Replace" and (
                existing is None or operation.get("ifMatch") not in (None, existing["_etag"])
            ):
                failed = (index, 412 if existing else 404)
            if failed:
                break
        if failed:
            self.batch_failures.append(failed[1])
            results = [{"statusCode": failed[1] if i == failed[0] else 424} for i in range(len(operations))]
            return _Response(request, 207, results)
        results = [
            {"statusCode": 201, "resourceBody": self._write(partition, op["resourceBody"])}
            for op in operations
        ]
        return _Response(request, 200, results)

    def _change_feed(self, request, headers):
        since = int(headers.get("If-None-Match", '"0"').strip('"') or 0)
        limit = int(headers.get("x-ms-max-item-count", "100"))
        changed = sorted((d for d in self.documents.values() if d["_lsn"] > since), key=lambda d: d["_lsn"])[
            :limit
        ]
        if not changed:
            return _Response(request, 304, headers={"etag": f'"{since}"'})
        return _Response(
            request,
            200,
            {"_rid": "cRID==", "Documents": changed, "_count": len(changed)},
            headers={"etag": f'"{changed[-1]["_lsn"]}"'},
        )

    def batches(self) -> list[dict]:
        return [r for r in self.requests if r["headers"].get("x-ms-cosmos-is-batch-request")]


@pytest.fixture
def account():
    return FakeCosmosAccount()


@pytest.fixture
def cosmos_settings(tmp_path):
    return Settings.from_env(
        tmp_path / "warehouse",
        env={"CQRS_WRITE_STORE": "cosmos", "COSMOS_ENDPOINT": ENDPOINT, "COSMOS_KEY": KEY},
    )


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
        ("Create", "event-000000000002"),
        ("Create", "outbox-000000000002"),
        ("Create", operations[3]["resourceBody"]["id"]),
    ]
    assert operations[0]["ifMatch"] == etag_before_confirm
    assert operations[3]["resourceBody"]["id"].startswith("command-")  # a digest: ids may hold '/' or '#'
    assert operations[0]["resourceBody"]["version"] == 2
    assert operations[0]["resourceBody"]["state"]["status"] == "Confirmed"
    event, outbox = operations[1]["resourceBody"], operations[2]["resourceBody"]
    assert event["eventId"] == outbox["eventId"] == confirmed.eventIds[0]
    assert json.loads(outbox["body"])["eventType"] == "OrderConfirmed"
    assert all(op["resourceBody"]["aggregateId"] == "order-1" for op in operations)
    assert KEY not in json.dumps([r["headers"] for r in account.requests])  # only signatures travel


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


def next_events(snapshot, version: int):
    state = snapshot.state.model_copy(update={"updatedAt": datetime.now(timezone.utc)})
    return [new_event("OrderUpdated", state, version)]


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


def test_cosmos_without_endpoint_or_key_says_what_to_set(tmp_path):
    with pytest.raises(ConfigurationError, match="COSMOS_ENDPOINT and COSMOS_KEY"):
        CosmosWriteStore.from_settings(Settings.from_env(tmp_path, env={"COSMOS_ENDPOINT": ENDPOINT}))


def is_feed_read(request: dict) -> bool:
    return (
        request["path"].endswith("/docs") and request["headers"].get("A-IM", "").lower() == "incremental feed"
    )
