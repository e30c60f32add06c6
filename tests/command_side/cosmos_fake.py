"""An in-memory Cosmos DB account (one container, partition key ``/aggregateId``) that answers the
azure-cosmos SDK's REST calls: in-process as azure-core's pluggable transport (``transport=`` of
``CosmosClient``), or over HTTP on a loopback port through ``cosmos_server.py``. ``endpoint`` is the address
the account advertises as its read and write location (the SDK sends every later call there).

Databases and containers: the container at ``CONTAINER_PATH`` exists from the start, with only its
partition key, unless the account is made with ``precreated=False``; then ``cqrs-orders cosmos-setup`` (or
any ``create_database``/``create_container``) creates it, and the account keeps the properties it was given
(``containers``), answers them on a read and replaces them on a ``replace_container``.

Time to live, as the service applies it: only when the container's ``defaultTtl`` is set (``-1``: per
document). A document then expires ``ttl`` seconds (its own, else a positive ``defaultTtl``) after its
``_ts``, on the account's clock; an expired document is gone for reads, writes and the change feed.

Request units: every answer carries ``x-ms-request-charge`` and every logged request its ``charge``, by a
documented approximation of the service's cost model (the real charge depends on indexing and
consistency too; docs/operations.md, "Cosmos DB containers and cost"):

- a point read: ``READ_RU_PER_KB`` (1) RU per started KB of the document; a miss (404) 1 RU;
- a write (create, replace, upsert, delete; each operation of a transactional batch):
  ``WRITE_RU_PER_KB`` (5.7) RU per started KB of the document, as for a container that indexes no path
  (the declared policy), plus ``INDEX_RU_PER_TERM`` (0.2) RU per indexed property value when the container
  indexes every path (the service's default policy, which the implicitly created container has);
- a change-feed page: 1 RU per started KB returned, at least 1 (an empty poll, 304, too);
- account, database, container and partition-range metadata reads: 0 here. The SDK caches them per
  client and asks again when it likes, so they vary from run to run and say nothing of a command's cost
  (on the service they are small and few); every other answer without its own charge (a refusal) 1 RU.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from urllib.parse import unquote, urlparse

from azure.core.pipeline.transport import HttpResponse, HttpTransport
from azure.core.utils import CaseInsensitiveDict

COSMOS_ENDPOINT = "https://cosmos.test:8081/"
COSMOS_KEY = "c2VjcmV0LWNvc21vcy1rZXk="
CONTAINER_PATH = "/dbs/orders/colls/order-store"
READ_RU_PER_KB = 1.0
WRITE_RU_PER_KB = 5.7
INDEX_RU_PER_TERM = 0.2
#: What the service gives a container created with no indexing policy: every path indexed.
DEFAULT_INDEXING = {"indexingMode": "consistent", "automatic": True, "includedPaths": [{"path": "/*"}],
                    "excludedPaths": [{"path": '/"_etag"/?'}]}  # fmt: skip


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

    def __init__(self, clock=time.time, endpoint: str = COSMOS_ENDPOINT, precreated: bool = True):
        self.endpoint = endpoint
        self.documents: dict[tuple[str, str], dict] = {}
        #: Container properties by path (``/dbs/<db>/colls/<name>``), as created; databases by path.
        self.containers: dict[str, dict] = {}
        self.databases: set[str] = set()
        if precreated:
            self.databases.add("/dbs/orders")
            self.containers[CONTAINER_PATH] = {
                "id": "order-store",
                "partitionKey": {"paths": ["/aggregateId"], "kind": "Hash", "version": 2},
                "indexingPolicy": DEFAULT_INDEXING,
            }
        self._charge = 0.0  # the request units of the request being answered
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
            self._charge = 0.0
            response = self._answer(request)
            charge = round(self._charge or (0.0 if _is_metadata(request) else 1.0), 2)
            response.headers["x-ms-request-charge"] = str(charge)
            self.requests[-1]["charge"] = charge
            self.requests[-1]["status"] = response.status_code
            return response

    def _answer(self, request):
        path = unquote(urlparse(request.url).path).rstrip("/")
        body = json.loads(request.body) if request.body else None
        self.requests.append(
            {"method": request.method, "path": path, "headers": dict(request.headers), "body": body}
        )
        headers = CaseInsensitiveDict(request.headers)
        metadata = self._metadata(request, path, body)
        if metadata is not None:
            return metadata
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
        if path == CONTAINER_PATH and request.method == "GET":
            if CONTAINER_PATH not in self.containers:
                return _not_found(request)
            return _CosmosResponse(request, 200, {**self.containers[CONTAINER_PATH], "_rid": "cRID=="})
        if path.startswith(CONTAINER_PATH) and CONTAINER_PATH not in self.containers:
            return _not_found(request)
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
        document = self._live((partition, item_id))
        if document is None:
            self._charge += 1.0
            return _not_found(request)
        if request.method == "GET":
            self._charge += READ_RU_PER_KB * _kb(document)
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
            self._charge += self._write_charge(document)
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
        self._charge += self._write_charge(stored)
        return stored

    # Request units and time to live
    def _write_charge(self, document: dict) -> float:
        charge = WRITE_RU_PER_KB * _kb(document)
        policy = self.containers.get(CONTAINER_PATH, {}).get("indexingPolicy") or DEFAULT_INDEXING
        if any(p.get("path") == "/*" for p in policy.get("includedPaths", [])):
            charge += INDEX_RU_PER_TERM * _terms(document)
        return charge

    def _expired(self, document: dict) -> bool:
        default = self.containers.get(CONTAINER_PATH, {}).get("defaultTtl")
        if default is None:  # TTL off on the container: a document's own ttl means nothing
            return False
        ttl = document.get("ttl", default)
        return ttl is not None and ttl > 0 and document["_ts"] + ttl <= self.clock()

    def _live(self, key: tuple[str, str]) -> dict | None:
        """The document at ``key`` unless absent or expired (an expired one is removed, as the service's
        background deletion would have)."""
        document = self.documents.get(key)
        if document is not None and self._expired(document):
            del self.documents[key]
            return None
        return document

    def _metadata(self, request, path: str, body):
        """Databases and containers: create, read and replace (the cosmos-setup calls)."""
        if request.method == "POST" and path == "/dbs":
            database = f"/dbs/{body['id']}"
            if database in self.databases:
                return _conflict(request)
            self.databases.add(database)
            return _CosmosResponse(request, 201, {"id": body["id"], "_rid": "dRID=="})
        if request.method == "GET" and path.count("/") == 2 and path.startswith("/dbs/"):
            if path not in self.databases:
                return _not_found(request)
            return _CosmosResponse(request, 200, {"id": path.rsplit("/", 1)[1], "_rid": "dRID=="})
        if request.method == "POST" and path.startswith("/dbs/") and path.endswith("/colls"):
            database = path.removesuffix("/colls")
            if database not in self.databases:
                return _not_found(request)
            container = f"{path}/{body['id']}"
            if container in self.containers:
                return _conflict(request)
            self.containers[container] = {"indexingPolicy": DEFAULT_INDEXING, **body}
            return _CosmosResponse(request, 201, {**self.containers[container], "_rid": "cRID=="})
        if request.method == "PUT" and "/colls/" in path and path.count("/") == 4:
            if path not in self.containers:
                return _not_found(request)
            self.containers[path] = dict(body)
            return _CosmosResponse(request, 200, {**body, "_rid": "cRID=="})
        if request.method == "GET" and "/colls/" in path and path.count("/") == 4 and path != CONTAINER_PATH:
            if path not in self.containers:
                return _not_found(request)
            return _CosmosResponse(request, 200, {**self.containers[path], "_rid": "cRID=="})
        return None

    def charges(self, since: int = 0) -> float:
        """The request units of the requests logged from the ``since``-th on."""
        return round(sum(r.get("charge", 0.0) for r in self.requests[since:]), 2)

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
            existing = self._live(key)
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
            self._charge += len(operations)  # a refused batch: ~1 RU per operation looked at
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
        live = [d for key, d in list(self.documents.items()) if self._live(key) is not None]
        changed = sorted((d for d in live if d["_lsn"] > since), key=lambda d: d["_lsn"])[:limit]
        self._charge += max(1.0, READ_RU_PER_KB * math.ceil(sum(len(json.dumps(d)) for d in changed) / 1024))
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


def _kb(document: dict) -> int:
    """The started kilobytes of a document as stored (its JSON, system properties included)."""
    return max(1, math.ceil(len(json.dumps(document).encode()) / 1024))


def _terms(value) -> int:
    """Property values an index-everything policy indexes: every leaf of the document."""
    if isinstance(value, dict):
        return sum(_terms(v) for v in value.values())
    if isinstance(value, list):
        return sum(_terms(v) for v in value)
    return 1


def _not_found(request):
    return _CosmosResponse(
        request, 404, {"code": "NotFound", "message": "Entity with the specified id does not exist"}
    )


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


def _is_metadata(request) -> bool:
    """A read of the account, a database, a container or its partition ranges (not of a document)."""
    path = unquote(urlparse(request.url).path).strip("/")
    parts = path.split("/") if path else []
    return request.method == "GET" and (len(parts) in (0, 2, 4) or parts[-1:] == ["pkranges"])
