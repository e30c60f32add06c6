"""The Azure write store: one Cosmos DB container partitioned by ``/aggregateId``.

Per aggregate (one logical partition) the container holds a ``state`` document, one ``event-<version>`` and
one ``outbox-<version>`` document per event, and one ``command-<hash>`` document per accepted command. A
command's documents are written in ONE transactional batch, guarded by the state document's ETag (IfMatch):
if another writer got there first, the whole batch fails and nothing is written.

Publishing is driven by the container's change feed: the relay reads ``outbox`` documents in modification
order (per partition key = per aggregate, hence in version order), publishes them, and only then saves the
change-feed continuation token in a checkpoint document, so a restarted relay resumes where it stopped.
The key (``COSMOS_KEY``, from the environment or a Databricks secret scope) is never logged.

Group commit (as in the SQLite store) does not apply here, and this store does not pretend to it: it runs
``execute`` as the port's default, one transactional batch per command. A transactional batch is bounded to
one logical partition (one aggregate), so commands on different aggregates can never share a commit, and
there is no client-side fsync to amortise: each batch is made durable by the service's replicas. What
concurrency buys here is concurrent batches across partitions (each HTTP request thread runs its own),
limited by the provisioned RU/s, not by a lock.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from azure.core.exceptions import AzureError, ServiceRequestError
from azure.cosmos import CosmosClient
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosBatchOperationError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from cqrs_orders.application.ports import (
    Commit,
    DuplicateCommand,
    OutboxBatch,
    OutboxEntry,
    RecordedOutcome,
    VersionConflict,
    WriteStore,
)
from cqrs_orders.config import Settings
from cqrs_orders.domain.aggregates import Snapshot
from cqrs_orders.envelope import STATE_MODELS, AggregateType
from cqrs_orders.errors import ConfigurationError, WriteOutcomeUnknown, WriteStoreError

#: The partition holding the relay's checkpoint documents (their ids never clash with an aggregate's).
CHECKPOINT_PARTITION = "__relay__"


class CosmosWriteStore(WriteStore):
    def __init__(self, container, *, client: CosmosClient | None = None, relay_name: str = "default"):
        self.container = container
        self.client = client
        self.checkpoint_id = f"checkpoint-{relay_name}"

    @classmethod
    def from_settings(cls, settings: Settings, **client_options) -> CosmosWriteStore:
        key = settings.secret("COSMOS_KEY")
        if not settings.cosmos_endpoint or key is None:
            raise ConfigurationError(
                "CQRS_WRITE_STORE=cosmos needs COSMOS_ENDPOINT and COSMOS_KEY (environment, or the "
                "Databricks "
                "secret scope CQRS_SECRET_SCOPE, key cosmos-key); COSMOS_DATABASE and COSMOS_CONTAINER name "
                "the container (partition key /aggregateId)."
            )
        client = CosmosClient(settings.cosmos_endpoint, credential=key.reveal(), **client_options)
        database = client.get_database_client(settings.cosmos_database)
        return cls(database.get_container_client(settings.cosmos_container), client=client)

    # --- commands ----------------------------------------------------------------------------------
    def load(self, aggregate_id: str) -> Snapshot | None:
        document = self._read("state", aggregate_id)
        if document is None:
            return None
        kind = AggregateType(document["aggregateType"])
        return Snapshot(kind, STATE_MODELS[kind].model_validate(document["state"]), document["version"])

    def recorded_outcome(self, command_id: str, aggregate_id: str) -> RecordedOutcome | None:
        document = self._read(_command_doc_id(command_id), aggregate_id)
        return RecordedOutcome(document["fingerprint"], document["outcome"]) if document else None

    def append(self, commit: Commit) -> None:
        partition = commit.aggregate_id
        current = self._read("state", partition)
        if (current["version"] if current else 0) != commit.base_version:
            raise VersionConflict(partition)
        state_doc = {
            "id": "state",
            "aggregateId": partition,
            "docType": "state",
            "aggregateType": commit.aggregate_type.value,
            "version": commit.version,
            "state": json.loads(commit.state.model_dump_json()),
        }
        operations: list[tuple] = [
            ("create", (state_doc,))
            if current is None
            else ("replace", ("state", state_doc), {"if_match_etag": current["_etag"]})
        ]
        operations += [("create", (document,)) for document in _new_documents(commit)]
        try:
            self.container.execute_item_batch(operations, partition_key=partition)
        except (CosmosBatchOperationError, CosmosResourceExistsError, CosmosAccessConditionFailedError):
            # Nothing was written. Either the command document exists (a concurrent retry won) or the state
            # document moved (its ETag no longer matches, or another writer created it first).
            recorded = self.recorded_outcome(commit.command_id, partition)
            if recorded is not None:
                raise DuplicateCommand(recorded) from None
            raise VersionConflict(partition) from None
        except CosmosHttpResponseError as error:
            if _maybe_executed(error):
                raise WriteOutcomeUnknown(_describe("write", error)) from error
            raise _store_error("write", error) from error
        except ServiceRequestError as error:  # the request never reached the service
            raise WriteStoreError(f"Could not reach the Cosmos DB account to write: {error}") from error
        except AzureError as error:  # sent, and no answer came back (a dropped connection, a timeout)
            raise WriteOutcomeUnknown(f"the Cosmos DB write got no answer: {error}") from error

    # --- outbox, via the change feed ---------------------------------------------------------------
    def pending(self, limit: int) -> OutboxBatch:
        """Outbox documents changed after the saved continuation token (skipping every other document)."""
        token = self._saved_token()
        start: dict[str, Any] = {"continuation": token} if token else {"start_time": "Beginning"}
        try:
            pages = self.container.query_items_change_feed(max_item_count=limit, **start).by_page()
            entries: list[OutboxEntry] = []
            for page in pages:
                documents = list(page)
                token = pages.continuation_token
                entries += [
                    OutboxEntry(doc["aggregateId"], doc["eventId"], doc["version"], doc["body"])
                    for doc in documents
                    if doc.get("docType") == "outbox"
                ]
                if entries:
                    break
            # One page can hold several events of one aggregate committed together: keep their versions
            # in order (across pages the feed's own order already does).
            entries.sort(key=lambda entry: (entry.aggregate_id, entry.version))
        except CosmosHttpResponseError as error:
            raise _store_error("read the change feed of", error) from error
        return OutboxBatch(entries, token=token)

    def acknowledge(self, batch: OutboxBatch) -> None:
        if batch.token is None:
            return
        checkpoint = {
            "id": self.checkpoint_id,
            "aggregateId": CHECKPOINT_PARTITION,
            "docType": "checkpoint",
            "continuation": batch.token,
        }
        try:
            self.container.upsert_item(checkpoint)
        except CosmosHttpResponseError as error:
            raise _store_error("save the relay checkpoint in", error) from error

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def _saved_token(self) -> str | None:
        checkpoint = self._read(self.checkpoint_id, CHECKPOINT_PARTITION)
        return checkpoint["continuation"] if checkpoint else None

    def _read(self, item_id: str, partition: str) -> dict | None:
        try:
            return self.container.read_item(item_id, partition_key=partition)
        except CosmosResourceNotFoundError:
            return None
        except CosmosHttpResponseError as error:
            raise _store_error("read", error) from error
        except AzureError as error:  # a transport failure: the store is unreachable, not a bug
            raise WriteStoreError(f"Could not reach the Cosmos DB account to read: {error}") from error


def _new_documents(commit: Commit) -> list[dict]:
    """The documents a commit adds next to its state: per event an event and an outbox document, then the
    command document holding the outcome (its creation fails if the command was already recorded)."""
    partition, command_id = commit.aggregate_id, commit.command_id
    documents = []
    for event in commit.events:
        body, version = event.to_json(), event.version
        common = {"aggregateId": partition, "eventId": str(event.eventId), "version": version, "body": body}
        event_doc = {"id": f"event-{version:012d}", "docType": "event", "eventType": event.eventType}
        documents.append({**event_doc, "commandId": command_id, **common})
        documents.append({"id": f"outbox-{version:012d}", "docType": "outbox", **common})
    documents.append(
        {
            "id": _command_doc_id(command_id),
            "aggregateId": partition,
            "docType": "command",
            "commandId": command_id,
            "fingerprint": commit.fingerprint,
            "command": commit.command_json,
            "outcome": commit.outcome,
        }
    )
    return documents


def _command_doc_id(command_id: str) -> str:
    # Command ids may hold characters Cosmos ids must not ('/', '\\', '?', '#'): store a digest instead.
    return "command-" + hashlib.sha256(command_id.encode()).hexdigest()


def _store_error(action: str, error: CosmosHttpResponseError) -> WriteStoreError:
    return WriteStoreError(_describe(action, error))


def _describe(action: str, error: CosmosHttpResponseError) -> str:
    return (
        f"Could not {action} the Cosmos DB container (HTTP {error.status_code}: {error.reason}); check "
        "COSMOS_ENDPOINT, COSMOS_KEY, COSMOS_DATABASE and COSMOS_CONTAINER"
    )


def _maybe_executed(error: CosmosHttpResponseError) -> bool:
    """Whether a failed batch may have been committed all the same: a timeout (408) or a server-side
    failure (5xx) can come after the write; any other refusal (4xx: auth, throttling, a bad request) comes
    before it."""
    status = error.status_code or 0
    return status == 408 or status >= 500
