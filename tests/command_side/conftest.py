"""Fixtures of the command-side tests: a real SQLite write store in the test's warehouse, and a handler."""

from __future__ import annotations

import json
import uuid
from urllib.parse import unquote, urlparse

import pytest
from azure.core.pipeline.transport import HttpResponse, HttpTransport
from azure.core.utils import CaseInsensitiveDict

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.config import Settings


@pytest.fixture
def store(settings):
    store = SqliteWriteStore(settings.write_store_path)
    yield store
    store.close()


@pytest.fixture
def handler(store):
    return CommandHandler(store)


class Given:
    """Set-up steps that must succeed (an assertion error here means the arrangement itself failed)."""

    def __init__(self, handler):
        self.handler = handler

    def accepted(self, command: dict):
        result = self.handler.handle(command)
        assert result.accepted, result.error
        return result

    def customer(self, customer_id="cust-1", **extra):
        command = {
            "type": "RegisterCustomer",
            "customerId": customer_id,
            "name": "Ada",
            "email": "ada@example.com",
        }
        return self.accepted({**command, **extra})

    def order(self, order_id="order-1", customer_id="cust-1", **extra):
        command = {
            "type": "CreateOrder",
            "orderId": order_id,
            "customerId": customer_id,
            "items": [
                {"sku": "A", "quantity": 2, "unitPrice": 10.25},
                {"sku": "B", "quantity": 1, "unitPrice": 5},
            ],
        }
        return self.accepted({**command, **extra})

    def step(self, kind: str, order_id="order-1", **extra):
        return self.accepted({"type": kind, "orderId": order_id, **extra})


@pytest.fixture
def given(handler):
    return Given(handler)


@pytest.fixture
def reject(handler, store):
    """``reject(command, code, *words)``: the command is rejected with ``code``, the message names each of
    ``words``, and the store is left exactly as it was."""

    def check(command, code: str, *words: str):
        before = store.counts()
        result = handler.handle(command)
        assert result.status == "rejected", result
        assert result.error["code"] == code, result.error
        for word in words:
            assert word in result.error["message"], (word, result.error["message"])
        assert result.eventIds == [] and result.version is None
        assert store.counts() == before
        return result

    return check


# --- an in-memory Cosmos DB account behind azure-core's pluggable transport ----------------------------
COSMOS_ENDPOINT = "https://cosmos.test:8081/"
COSMOS_KEY = "c2VjcmV0LWNvc21vcy1rZXk="
CONTAINER_PATH = "/dbs/orders/colls/order-store"


class _CosmosResponse(HttpResponse):
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
        self.answer_next_batch_with: int | None = None  # commit the next batch, then answer this status
        self.refuse_next_batch_with: int | None = None  # refuse the next batch with this status, unrun

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
            location = [{"name": "Test", "databaseAccountEndpoint": COSMOS_ENDPOINT}]
            return _CosmosResponse(
                request,
                200,
                {
                    "id": "test",
                    "writableLocations": location,
                    "readableLocations": location,
                    "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
                },
            )
        if path == CONTAINER_PATH:
            return _CosmosResponse(
                request,
                200,
                {
                    "id": "order-store",
                    "_rid": "cRID==",
                    "partitionKey": {"paths": ["/aggregateId"], "kind": "Hash", "version": 2},
                },
            )
        if path == f"{CONTAINER_PATH}/pkranges":
            if headers.get("If-None-Match"):
                return _CosmosResponse(request, 304, headers={"etag": '"ranges-1"'})
            ranges = [{"id": "0", "minInclusive": "", "maxExclusive": "FF", "parents": []}]
            return _CosmosResponse(
                request,
                200,
                {"_rid": "cRID==", "PartitionKeyRanges": ranges, "_count": 1},
                headers={"etag": '"ranges-1"'},
            )
        partition = json.loads(headers.get("x-ms-documentdb-partitionkey", "[null]"))[0]
        if path.startswith(f"{CONTAINER_PATH}/docs/") and request.method == "GET":
            document = self.documents.get((partition, path.rsplit("/", 1)[1]))
            if document is None:
                return _CosmosResponse(
                    request,
                    404,
                    {"code": "NotFound", "message": "Entity with the specified id does not exist"},
                )
            return _CosmosResponse(request, 200, document, headers={"etag": document["_etag"]})
        if (
            path == f"{CONTAINER_PATH}/docs"
            and request.method == "POST"
            and headers.get("x-ms-cosmos-is-batch-request")
        ):
            return self._batch(request, partition, body)
        if (
            path == f"{CONTAINER_PATH}/docs"
            and request.method == "POST"
            and headers.get("x-ms-documentdb-is-upsert")
        ):
            return _CosmosResponse(request, 200, self._write(partition, body))
        if (
            path == f"{CONTAINER_PATH}/docs"
            and request.method == "GET"
            and headers.get("A-IM", "").lower() == "incremental feed"
        ):
            return self._change_feed(request, headers)
        return _CosmosResponse(
            request, 400, {"code": "BadRequest", "message": f"unexpected {request.method} {path}"}
        )

    # Cosmos semantics
    def _write(self, partition: str, document: dict) -> dict:
        self.lsn += 1
        stored = {**document, "_etag": f'"{uuid.uuid4()}"', "_lsn": self.lsn, "_ts": 1_700_000_000 + self.lsn}
        self.documents[(partition, document["id"])] = stored
        return stored

    def _batch(self, request, partition: str, operations: list[dict]):
        if self.refuse_next_batch_with:
            status, self.refuse_next_batch_with = self.refuse_next_batch_with, None
            return _CosmosResponse(request, status, {"code": "Refused", "message": "refused by the test"})
        if self.answer_next_batch_with:
            status, self.answer_next_batch_with = self.answer_next_batch_with, None
            self._batch(request, partition, operations)
            return _CosmosResponse(request, status, {"code": "Timeout", "message": "no answer in time"})
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
            return _CosmosResponse(request, 207, results)
        results = [
            {"statusCode": 201, "resourceBody": self._write(partition, op["resourceBody"])}
            for op in operations
        ]
        return _CosmosResponse(request, 200, results)

    def _change_feed(self, request, headers):
        since = int(headers.get("If-None-Match", '"0"').strip('"') or 0)
        limit = int(headers.get("x-ms-max-item-count", "100"))
        changed = sorted((d for d in self.documents.values() if d["_lsn"] > since), key=lambda d: d["_lsn"])[
            :limit
        ]
        if not changed:
            return _CosmosResponse(request, 304, headers={"etag": f'"{since}"'})
        return _CosmosResponse(
            request,
            200,
            {"_rid": "cRID==", "Documents": changed, "_count": len(changed)},
            headers={"etag": f'"{changed[-1]["_lsn"]}"'},
        )

    def batches(self) -> list[dict]:
        return [r for r in self.requests if r["headers"].get("x-ms-cosmos-is-batch-request")]


@pytest.fixture
def cosmos_account():
    """A fresh in-memory account; pass it as ``transport=`` to ``CosmosClient``."""
    return FakeCosmosAccount()


@pytest.fixture
def cosmos_settings(tmp_path):
    """Settings selecting the Cosmos write store at the fake account's endpoint."""
    env = {"CQRS_WRITE_STORE": "cosmos", "COSMOS_ENDPOINT": COSMOS_ENDPOINT, "COSMOS_KEY": COSMOS_KEY}
    return Settings.from_env(tmp_path / "warehouse", env=env)
