"""An in-memory Cosmos DB account (one container, partition key ``/aggregateId``) that answers the
azure-cosmos SDK's REST calls: in-process as azure-core's pluggable transport (``transport=`` of
``CosmosClient``), or over HTTP on a loopback port through ``cosmos_server.py``. ``endpoint`` is the address
the account advertises as its read and write location (the SDK sends every later call there)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from urllib.parse import unquote, urlparse

from azure.core.pipeline.transport import HttpResponse, HttpTransport
from azure.core.utils import CaseInsensitiveDict

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
            204: "No Content",
            207: "Multi-Status",
            304: "Not Modified",
            404: "Not Found",
            409: "Conflict",
            412: "Precondition Failed",
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

    def __init__(self, clock=time.time, endpoint: str = COSMOS_ENDPOINT):
        self.endpoint = endpoint
        self.documents: dict[tuple[str, str], dict] = {}
        self.lsn = 0
        self.clock = clock  # the service's time: each write's _ts (epoch seconds)
        self._lock = threading.RLock()  # re-entrant: a test's hook may send from inside a request
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
        with self._lock:  # the service applies each request atomically, whichever client sends it
            return self._answer(request)

    def _answer(self, request):
        path = unquote(urlparse(request.url).path).rstrip("/")
        body = json.loads(request.body) if request.body else None
        self.requests.append(
            {"method": request.method, "path": path, "headers": dict(request.headers), "body": body}
        )
        headers = CaseInsensitiveDict(request.headers)
        if path == "":
            location = [{"name": "Test", "databaseAccountEndpoint": self.endpoint}]
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
        if path.startswith(f"{CONTAINER_PATH}/docs/") and request.method in ("GET", "PUT", "DELETE"):
            return self._item(request, headers, partition, path.rsplit("/", 1)[1], body)
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
            and request.method == "POST"
            and not headers.get("x-ms-documentdb-isquery")
        ):
            if (partition, body["id"]) in self.documents:  # create: the id is taken in this partition
                return _conflict(request)
            stored = self._write(partition, body)
            return _CosmosResponse(request, 201, stored, headers={"etag": stored["_etag"]})
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
    def _item(self, request, headers, partition: str, item_id: str, body):
        """GET (read), PUT (replace) and DELETE of one document; the writes honour ``If-Match`` (412 when
        the document's ETag is another), as the service does."""
        document = self.documents.get((partition, item_id))
        if document is None:
            return _CosmosResponse(
                request, 404, {"code": "NotFound", "message": "Entity with the specified id does not exist"}
            )
        if request.method == "GET":
            return _CosmosResponse(request, 200, document, headers={"etag": document["_etag"]})
        if_match = headers.get("If-Match")
        if if_match not in (None, "*", document["_etag"]):
            return _CosmosResponse(
                request,
                412,
                {"code": "PreconditionFailed", "message": "Operation cannot be performed because one of the "
                 "specified precondition is not met."},
            )  # fmt: skip
        if request.method == "DELETE":
            del self.documents[(partition, item_id)]
            self.lsn += 1  # a delete is not in the change feed (latest-version mode), but it is a write
            return _CosmosResponse(request, 204)
        if body.get("id") != item_id:
            return _CosmosResponse(request, 400, {"code": "BadRequest", "message": "id does not match"})
        stored = self._write(partition, body)
        return _CosmosResponse(request, 200, stored, headers={"etag": stored["_etag"]})

    def _write(self, partition: str, document: dict) -> dict:
        self.lsn += 1
        stored = {**document, "_etag": f'"{uuid.uuid4()}"', "_lsn": self.lsn, "_ts": int(self.clock())}
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
            kind = operation["operationType"]
            if kind == "Create" and existing is not None:
                failed = (index, 409)
            elif kind in ("Replace", "Upsert") and operation.get("ifMatch") not in (
                None,
                existing and existing["_etag"],
            ):
                failed = (index, 412 if existing or kind == "Upsert" else 404)
            elif kind == "Replace" and existing is None:
                failed = (index, 404)
            if failed:
                break
        if failed:
            self.batch_failures.append(failed[1])
            results = [{"statusCode": failed[1] if i == failed[0] else 424} for i in range(len(operations))]
            return _CosmosResponse(request, 207, results)
        results = []
        for operation in operations:  # as the service answers: 201 created, 200 replaced (upsert too)
            replaced = (partition, operation["resourceBody"]["id"]) in self.documents
            stored = self._write(partition, operation["resourceBody"])
            results.append(
                {"statusCode": 200 if replaced else 201, "eTag": stored["_etag"], "resourceBody": stored}
            )
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


def _conflict(request):
    return _CosmosResponse(
        request,
        409,
        {"code": "Conflict", "message": "Entity with the specified id already exists in the system."},
    )


class FakeClock:
    """Epoch seconds that move only when a test says so (``advance``): lease expiry without sleeping."""

    def __init__(self, start: float | None = None):
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
