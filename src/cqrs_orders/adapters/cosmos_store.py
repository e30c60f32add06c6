"""The Azure write store: one Cosmos DB container partitioned by ``/aggregateId``.

Per aggregate (one logical partition) the container holds a ``state`` document, one ``event-<version>``
document per event, and one ``command-<hash>`` document per accepted command. A
command's documents are written in ONE transactional batch, guarded by the state document's ETag (IfMatch):
if another writer got there first, the whole batch fails and nothing is written.

Publishing is driven by the container's change feed, which is the outbox: the relay reads the ``event``
documents in modification order (per partition key = per aggregate, hence in version order), publishes
them, and only then saves the change-feed continuation token in a checkpoint document, so a restarted relay
resumes where it stopped. An event document is written once and never changed, so the feed shows each
once; no separate outbox document is written (it would cost a second write per event, and could expire
before it was published).

One relay at a time drains the feed: it holds a lease document next to the checkpoint (see
:class:`_CosmosLease`), and saves the checkpoint in one transactional batch with the lease's renewal,
guarded by the lease's ETag. A relay that lost its lease therefore can never move the checkpoint, and it
stops publishing at its next step.
The key (``COSMOS_KEY``, from the environment or a Databricks secret scope) is never logged.

Group commit (as in the SQLite store) does not apply here, and this store does not pretend to it: it runs
``execute`` as the port's default, one transactional batch per command. A transactional batch is bounded to
one logical partition (one aggregate), so commands on different aggregates can never share a commit, and
there is no client-side fsync to amortise: each batch is made durable by the service's replicas. What
concurrency buys here is concurrent batches across partitions (each HTTP request thread runs its own),
limited by the provisioned RU/s, not by a lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ServiceRequestError
from azure.cosmos import CosmosClient
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosBatchOperationError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from cqrs_orders.adapters.cosmos_containers import COMMAND_ID_WINDOW_SECONDS, DAY_SECONDS
from cqrs_orders.application.erasure import (
    MARKER,
    Erasure,
    WriteStoreErasure,
    mask_personal,
    personal_values,
)
from cqrs_orders.application.ports import (
    Commit,
    DuplicateCommand,
    OutboxBatch,
    OutboxEntry,
    OutboxLag,
    RecordedOutcome,
    RelayLease,
    VersionConflict,
    WriteStore,
    command_id_retention_seconds,
)
from cqrs_orders.config import COSMOS_KEY, Settings
from cqrs_orders.domain.aggregates import Snapshot
from cqrs_orders.envelope import AggregateType, load_state
from cqrs_orders.errors import (
    ConfigurationError,
    CustomerErased,
    NotFound,
    RelayBusy,
    RelayLeaseLost,
    WriteOutcomeUnknown,
    WriteStoreError,
)

log = logging.getLogger(__name__)

#: The partition holding the relay's checkpoint and lease documents (their ids never clash with an
#: aggregate's), so the two can be written in one transactional batch.
CHECKPOINT_PARTITION = "__relay__"
#: How long a relay's lease lasts unless renewed: after a relay dies without releasing it (a crash, a
#: SIGKILL), a standby takes over within this plus its poll interval. Short enough that a crash costs half
#: a minute of publishing; long enough that a slow publish (a publish with the producer's retries) fits with
#: room to spare, since a holder renews before each step and at each saved checkpoint.
LEASE_SECONDS = 30.0
#: A holder renews when this much of its lease has passed (at a drain step, or at the latest while idle):
#: each step then starts with at least LEASE_SECONDS - RENEW_EVERY_SECONDS of lease left, one write per
#: RENEW_EVERY_SECONDS at most, and a relay idle between commits costs one small write every 10 s.
RENEW_EVERY_SECONDS = LEASE_SECONDS / 3
#: The document type the relay publishes from the change feed: each event's own document is the outbox.
PUBLISHED = "event"
#: ``outbox_lag`` reads the change feed from the checkpoint and stops after the page that passes this many
#: documents (the count is then a lower bound; a backlog that large is a breach whatever its exact size).
LAG_SCAN_LIMIT = 100_000
#: How much earlier than asked ``rewind_outbox`` starts the change feed: the feed filters on the service's
#: clock in whole seconds, an event's time is its writer's clock.
REWIND_MARGIN_SECONDS = 60.0
#: The most operations one transactional batch may hold (the service's limit).
BATCH_OPERATIONS = 100


class CosmosWriteStore(WriteStore):
    def __init__(
        self,
        container,
        *,
        client: CosmosClient | None = None,
        relay_name: str = "default",
        clock: Callable[[], float] = time.time,
        lease_seconds: float = LEASE_SECONDS,
        command_id_retention_days: int = COMMAND_ID_WINDOW_SECONDS // DAY_SECONDS,
    ):
        self.container = container
        #: The ``ttl`` of each command document: the idempotency window. The service expires the document
        #: that long after its write (``_ts``), hides it from reads at once, and the id can be used again;
        #: this needs the container's TTL on (``defaultTtl: -1``, as ``cosmos-setup`` declares it).
        self.command_ttl = command_id_retention_seconds(command_id_retention_days)
        self.client = client
        self.checkpoint_id = f"checkpoint-{relay_name}"
        self.lease_id = f"lease-{relay_name}"
        self.clock = clock  # epoch seconds; the lease's expiry is read against it
        self.lease_seconds = lease_seconds
        self.instance = uuid.uuid4().hex  # this store's identity as a lease holder
        self._lease: _CosmosLease | None = None  # held while a relay drains through this store

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], float] = time.time, **client_options
    ) -> CosmosWriteStore:
        key = settings.secret(COSMOS_KEY)
        if not settings.cosmos_endpoint or key is None:
            raise ConfigurationError(
                "CQRS_WRITE_STORE=cosmos needs COSMOS_ENDPOINT and COSMOS_KEY (environment, or the "
                "Databricks "
                "secret scope CQRS_SECRET_SCOPE, key cosmos-key); COSMOS_DATABASE and COSMOS_CONTAINER name "
                "the container (partition key /aggregateId)."
            )
        client = CosmosClient(settings.cosmos_endpoint, credential=key.reveal(), **client_options)
        database = client.get_database_client(settings.cosmos_database)
        return cls(
            database.get_container_client(settings.cosmos_container),
            client=client,
            clock=clock,
            command_id_retention_days=settings.command_id_retention_days,
        )

    # --- commands ----------------------------------------------------------------------------------
    def load(self, aggregate_id: str) -> Snapshot | None:
        document = self._read("state", aggregate_id)
        if document is None:
            return None
        kind = AggregateType(document["aggregateType"])
        # A state document written before schema versions has none: version 1.
        state = load_state(kind, document["state"], document.get("schemaVersion"))
        return Snapshot(kind, state, document["version"])

    def recorded_outcome(self, command_id: str, aggregate_id: str) -> RecordedOutcome | None:
        document = self._read(_command_doc_id(command_id), aggregate_id)
        return RecordedOutcome(document["fingerprint"], document["outcome"]) if document else None

    def append(self, commit: Commit) -> None:
        partition = commit.aggregate_id
        current = self._read("state", partition)
        if (current["version"] if current else 0) != commit.base_version:
            raise VersionConflict(partition)
        if current is not None and current.get("erasure"):  # the registry entry rides on the state
            raise CustomerErased(f"customer {partition!r} was erased; nothing more is written for it")
        state_doc = {
            "id": "state",
            "aggregateId": partition,
            "docType": "state",
            "aggregateType": commit.aggregate_type.value,
            "version": commit.version,
            "state": json.loads(commit.state.model_dump_json()),
            "schemaVersion": commit.events[-1].schemaVersion,
        }
        operations: list[tuple] = [
            ("create", (state_doc,))
            if current is None
            else ("replace", ("state", state_doc), {"if_match_etag": current["_etag"]})
        ]
        operations += [("create", (document,)) for document in _new_documents(commit, self.command_ttl)]
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

    def erase_customer(self, erasure: Erasure) -> WriteStoreErasure:
        """The port's erasure: every document of the customer's partition that holds personal data (the
        events, found by version; the command documents they name, unless expired) is replaced by its
        masked copy, and last the state document, masked and carrying the registry entry (``erasure``),
        guarded by its ETag: a command that committed meanwhile makes the erasure fail (run it again).

        Cosmos DB keeps no old version of a replaced document readable (no free pages or log to scrub
        here). Its change feed shows each replaced event again: the relay publishes the masked copy, which
        bronze takes as a duplicate of an event it holds (masked there too by the lake's erasure)."""
        partition = erasure.customer_id
        state = self._read("state", partition)
        if state is None or state.get("aggregateType") != AggregateType.CUSTOMER.value:
            raise NotFound(f"there is no customer {partition!r} in the Cosmos DB write store")
        values = personal_values(state["state"])
        replaced: list[dict] = []
        command_ids: list[str] = []
        for version in range(1, state["version"] + 1):
            event = self._read(f"event-{version:012d}", partition)
            if event is None:
                continue
            values |= personal_values(json.loads(event["body"]).get("data") or {})
            replaced.append({**_own(event), "body": mask_personal(event["body"])})
            if event["commandId"] not in command_ids:
                command_ids.append(event["commandId"])
        commands = 0
        for command_id in command_ids:
            command = self._read(_command_doc_id(command_id), partition)
            if command is None:  # expired: past the idempotency window
                continue
            values |= personal_values(json.loads(command["command"]))
            masked = {**_own(command), "command": mask_personal(command["command"]), "fingerprint": MARKER}
            if "_ts" in command:  # its window still counts from its first write
                masked["ttl"] = max(
                    1, int(command.get("ttl", self.command_ttl) - (self.clock() - command["_ts"]))
                )
            replaced.append(masked)
            commands += 1
        first = state.get("erasure")
        if first:
            erasure = Erasure(
                partition, datetime.fromisoformat(first["erasedAt"]), first["reason"], first["erasedBy"]
            )
        masked_state = {
            **_own(state),
            "state": json.loads(mask_personal(json.dumps(state["state"]))),
            "erasure": {
                "erasedAt": erasure.erased_at.isoformat(),
                "reason": erasure.reason,
                "erasedBy": erasure.erased_by,
            },
        }
        operations: list[tuple] = [("replace", (doc["id"], doc)) for doc in replaced]
        operations.append(("replace", ("state", masked_state), {"if_match_etag": state["_etag"]}))
        try:
            # The state's replacement goes in the last batch: until it commits the customer is not erased,
            # and a batch that failed before it is masked again by the next run.
            for start in range(0, len(operations), BATCH_OPERATIONS):
                chunk = operations[start : start + BATCH_OPERATIONS]
                self.container.execute_item_batch(chunk, partition_key=partition)
        except (CosmosBatchOperationError, CosmosAccessConditionFailedError):
            raise WriteStoreError(
                f"customer {partition!r} changed while it was being erased; run the erasure again"
            ) from None
        except CosmosHttpResponseError as error:
            raise _store_error("erase in", error) from error
        except AzureError as error:
            raise WriteStoreError(f"Could not reach the Cosmos DB account to erase: {error}") from error
        log.info(
            "Cosmos DB: customer %s erased (%d events, %d commands masked)",
            partition,
            len(replaced) - commands,
            commands,
        )
        return WriteStoreErasure(
            erasure, len(replaced) - commands, commands, frozenset(values), already_erased=bool(first)
        )

    # --- outbox, via the change feed ---------------------------------------------------------------
    def pending(self, limit: int) -> OutboxBatch:
        """Event documents changed after the saved continuation token (skipping every other document, and
        after a rewind the events older than it)."""
        token, start, rewound_to = self._feed_start()
        try:
            pages = self.container.query_items_change_feed(max_item_count=limit, **start).by_page()
            entries: list[OutboxEntry] = []
            for page in pages:
                documents = list(page)
                token = pages.continuation_token
                entries += [
                    OutboxEntry(doc["aggregateId"], doc["eventId"], doc["version"], doc["body"])
                    for doc in documents
                    if doc.get("docType") == PUBLISHED and (rewound_to is None or doc["_ts"] >= rewound_to)
                ]
                if entries:
                    break
            # One page can hold several events of one aggregate committed together: keep their versions
            # in order (across pages the feed's own order already does).
            entries.sort(key=lambda entry: (entry.aggregate_id, entry.version))
        except CosmosHttpResponseError as error:
            raise _store_error("read the change feed of", error) from error
        except AzureError as error:  # a transport failure: the store is unreachable, not a bug
            raise WriteStoreError(f"Could not reach the Cosmos DB account to read: {error}") from error
        if rewound_to is not None:  # the rewind's bound travels on in the checkpoint
            return OutboxBatch(entries, token={"continuation": token, "rewoundTo": rewound_to})
        return OutboxBatch(entries, token=token)

    def acknowledge(self, batch: OutboxBatch) -> None:
        """Save the batch's continuation token. Under a held lease, in one transactional batch with the
        lease's renewal guarded by its ETag: a relay whose lease was taken over moves nothing."""
        if batch.token is None:
            return
        saved = batch.token if isinstance(batch.token, dict) else {"continuation": batch.token}
        checkpoint = {
            "id": self.checkpoint_id,
            "aggregateId": CHECKPOINT_PARTITION,
            "docType": "checkpoint",
            **saved,
        }
        self._save_checkpoint(checkpoint)

    def _save_checkpoint(self, checkpoint: dict) -> None:
        """With the lease's renewal when a lease is held (a relay that lost it never moves the position)."""
        if self._lease is not None:
            self._lease.save_with(checkpoint)
            return
        try:
            self.container.upsert_item(checkpoint)
        except CosmosHttpResponseError as error:
            raise _store_error("save the relay checkpoint in", error) from error
        except AzureError as error:  # unsaved or unconfirmed: either way the next drain re-publishes
            raise WriteStoreError(f"Could not reach the Cosmos DB account to save: {error}") from error

    @contextlib.contextmanager
    def relay_guard(self, who: str = "relay") -> Iterator[RelayLease]:
        """The lease document ``lease-<relay name>``: taken when absent, expired or already this store's,
        else ``RelayBusy`` naming its holder; released (deleted) on exit, so a standby takes over at once."""
        lease = _CosmosLease.acquire(self, who)
        self._lease = lease
        try:
            yield lease
        finally:
            self._lease = None
            lease.release()

    def rewind_outbox(self, since: datetime) -> None:
        """Save a checkpoint that reads the change feed from its beginning again and skips the outbox
        documents older than a ``_ts`` (the service's clock, whole seconds): ``since`` less
        :data:`REWIND_MARGIN_SECONDS` (events carry their writer's clock), or the oldest unpublished
        document's if that is earlier; with a backlog too large to scan, none is skipped. Under a held lease
        it is saved with the lease's renewal, as :meth:`acknowledge` saves.

        Not the feed's own ``start_time``: a continuation token of a feed started at a time cannot be
        resumed (azure-cosmos 4.17 reads its milliseconds as seconds), and the relay resumes one at every
        step. The skipped part is read once, by the first drain after the rewind."""
        now = datetime.fromtimestamp(self.clock(), tz=timezone.utc)
        waiting = self.outbox_lag(now)
        start = since.timestamp() - REWIND_MARGIN_SECONDS
        if waiting.oldest_age_seconds is not None:
            start = min(start, now.timestamp() - waiting.oldest_age_seconds)
        checkpoint = {
            "id": self.checkpoint_id,
            "aggregateId": CHECKPOINT_PARTITION,
            "docType": "checkpoint",
            "continuation": None,
            "rewoundTo": math.floor(start) if waiting.exact else None,
        }
        self._save_checkpoint(checkpoint)

    def outbox_lag(self, now: datetime) -> OutboxLag:
        """Event documents in the change feed after the saved continuation token (read, not acknowledged);
        the oldest one's age from its ``_ts`` (the service's time of the commit, in seconds)."""
        _token, start, rewound_to = self._feed_start()
        unpublished, scanned, oldest, exact = 0, 0, None, True
        try:
            for page in self.container.query_items_change_feed(max_item_count=1000, **start).by_page():
                for document in page:
                    scanned += 1
                    if document.get("docType") == PUBLISHED and (
                        rewound_to is None or document["_ts"] >= rewound_to
                    ):
                        unpublished += 1
                        oldest = document["_ts"] if oldest is None else min(oldest, document["_ts"])
                if scanned >= LAG_SCAN_LIMIT:
                    exact = False
                    break
        except CosmosHttpResponseError as error:
            raise _store_error("read the change feed of", error) from error
        except AzureError as error:
            raise WriteStoreError(f"Could not reach the Cosmos DB account to read: {error}") from error
        age = None if oldest is None else max(0.0, now.timestamp() - oldest)
        return OutboxLag(unpublished, age, exact)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def _feed_start(self) -> tuple[str | None, dict[str, Any], int | None]:
        """The saved continuation token; where the change feed is read from (that token, else the
        beginning); and after a rewind (:meth:`rewind_outbox`) the ``_ts`` before which event documents
        were published already and are skipped (``None``: none are)."""
        checkpoint = self._read(self.checkpoint_id, CHECKPOINT_PARTITION) or {}
        token = checkpoint.get("continuation")
        start: dict[str, Any] = {"continuation": token} if token else {"start_time": "Beginning"}
        return token, start, checkpoint.get("rewoundTo")

    def _read(self, item_id: str, partition: str) -> dict | None:
        try:
            return self.container.read_item(item_id, partition_key=partition)
        except CosmosResourceNotFoundError:
            return None
        except CosmosHttpResponseError as error:
            raise _store_error("read", error) from error
        except AzureError as error:  # a transport failure: the store is unreachable, not a bug
            raise WriteStoreError(f"Could not reach the Cosmos DB account to read: {error}") from error


class _CosmosLease(RelayLease):
    """The relay's lease: one document in the ``__relay__`` partition, next to the checkpoint::

        {"id": "lease-default", "aggregateId": "__relay__", "docType": "lease",
         "holder": "command API relay (host h, pid 7, 1a2b3c4d)", "holderId": "<uuid of the store>",
         "acquiredAt": "...Z", "renewedAt": "...Z", "expiresAt": "...Z", "leaseSeconds": 30.0}

    Taken by create (409: another relay was first) or, when expired or already ours, by replace guarded by
    its ETag (412: another relay was first); renewed the same way; released by a delete guarded by its ETag.
    Expiry is read against each relay's own clock: hosts are expected to keep NTP time (seconds apart, well
    inside the ``RENEW_EVERY_SECONDS`` margin a holder keeps).
    """

    renew_every = RENEW_EVERY_SECONDS

    def __init__(self, store: CosmosWriteStore, holder: str, written: dict, renewed_at: float):
        super().__init__(holder)
        self.store = store
        self.acquired_at = written["acquiredAt"]
        self.etag = written["_etag"]
        self.renewed_at = renewed_at

    @classmethod
    def acquire(cls, store: CosmosWriteStore, who: str) -> _CosmosLease:
        holder = f"{who} (host {socket.gethostname()}, pid {os.getpid()}, {store.instance[:8]})"
        container, lease_id = store.container, store.lease_id
        current = None
        for _ in range(3):  # a rival may write between our read and our write; look again, then give up
            current = store._read(lease_id, CHECKPOINT_PARTITION)
            now = store.clock()
            document = _lease_document(store, holder, _iso(now), now)
            try:
                if current is None:
                    written = container.create_item(document)
                elif current.get("holderId") == store.instance or now >= _epoch(current["expiresAt"]):
                    if current.get("holderId") != store.instance:
                        log.info("relay lease: taking over from %s (expired %s)", current["holder"],
                                 current["expiresAt"])  # fmt: skip
                    written = container.replace_item(
                        lease_id,
                        document,
                        etag=current["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                else:
                    break
            except (CosmosResourceExistsError, CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                continue
            except CosmosHttpResponseError as error:
                raise _store_error("take the relay lease in", error) from error
            except AzureError as error:
                raise WriteStoreError(
                    f"Could not reach the Cosmos DB account for the lease: {error}"
                ) from error
            return cls(store, holder, written, now)
        if current is None:
            current = store._read(lease_id, CHECKPOINT_PARTITION) or {"holder": "another relay"}
        until = datetime.fromisoformat(current["expiresAt"]) if "expiresAt" in current else None
        raise RelayBusy(current["holder"], until)

    def renew(self) -> None:
        """Extend the lease once ``RENEW_EVERY_SECONDS`` of it have passed (a replace guarded by its ETag)."""
        now = self.store.clock()
        if now - self.renewed_at < RENEW_EVERY_SECONDS:
            return
        try:
            written = self.store.container.replace_item(
                self.store.lease_id,
                _lease_document(self.store, self.holder, self.acquired_at, now),
                etag=self.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
            raise self._lost() from None
        except CosmosHttpResponseError as error:
            raise _store_error("renew the relay lease in", error) from error
        except AzureError as error:
            raise WriteStoreError(f"Could not reach the Cosmos DB account for the lease: {error}") from error
        self.etag, self.renewed_at = written["_etag"], now

    def save_with(self, checkpoint: dict) -> None:
        """Renew the lease and save ``checkpoint`` in one transactional batch: both, or neither if the lease
        is no longer ours."""
        now = self.store.clock()
        operations: list[tuple] = [
            (
                "replace",
                (self.store.lease_id, _lease_document(self.store, self.holder, self.acquired_at, now)),
                {"if_match_etag": self.etag},
            ),
            ("upsert", (checkpoint,)),
        ]
        try:
            results = self.store.container.execute_item_batch(operations, partition_key=CHECKPOINT_PARTITION)
        except CosmosBatchOperationError as error:
            if getattr(error, "error_index", None) == 0:  # the lease's ETag no longer matches (or it is gone)
                raise self._lost() from None
            raise WriteStoreError(f"Could not save the relay checkpoint: {error.message}") from error
        except CosmosHttpResponseError as error:
            raise _store_error("save the relay checkpoint in", error) from error
        except AzureError as error:
            raise WriteStoreError(f"Could not reach the Cosmos DB account for the lease: {error}") from error
        lease_result = results[0]
        self.etag = lease_result.get("eTag") or lease_result["resourceBody"]["_etag"]
        self.renewed_at = now

    def release(self) -> None:
        """Delete the lease if it is still ours, so a standby takes it at its next poll; a lease that cannot
        be released (the account unreachable) simply expires."""
        try:
            self.store.container.delete_item(
                self.store.lease_id,
                partition_key=CHECKPOINT_PARTITION,
                etag=self.etag,
                match_condition=MatchConditions.IfNotModified,
            )
            log.info("relay lease released by %s", self.holder)
        except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
            log.info("relay lease: %s no longer held it at release", self.holder)
        except AzureError as error:
            log.warning("relay lease not released (it expires within %g s): %s", LEASE_SECONDS, error)

    def _lost(self) -> RelayLeaseLost:
        current = self.store._read(self.store.lease_id, CHECKPOINT_PARTITION)
        now_held_by = current["holder"] if current else "nobody"
        return RelayLeaseLost(
            f"{self.holder} lost the relay lease (now held by {now_held_by}); it stops publishing until it "
            "holds the lease again"
        )


def _lease_document(store: CosmosWriteStore, holder: str, acquired_at: str, now: float) -> dict:
    return {
        "id": store.lease_id,
        "aggregateId": CHECKPOINT_PARTITION,
        "docType": "lease",
        "holder": holder,
        "holderId": store.instance,
        "acquiredAt": acquired_at,
        "renewedAt": _iso(now),
        "expiresAt": _iso(now + store.lease_seconds),
        "leaseSeconds": store.lease_seconds,
    }


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _new_documents(commit: Commit, command_ttl: int) -> list[dict]:
    """The documents a commit adds next to its state: one per event (the relay's outbox too, kept), then the
    command document holding the outcome (its creation fails if the command was already recorded), which
    expires ``command_ttl`` seconds after it was written: the idempotency window."""
    partition, command_id = commit.aggregate_id, commit.command_id
    documents = []
    for event in commit.events:
        body, version = event.to_json(), event.version
        documents.append(
            {
                "id": f"event-{version:012d}",
                "docType": PUBLISHED,
                "eventType": event.eventType,
                "commandId": command_id,
                "aggregateId": partition,
                "eventId": str(event.eventId),
                "version": version,
                "body": body,
            }
        )
    documents.append(
        {
            "id": _command_doc_id(command_id),
            "aggregateId": partition,
            "docType": "command",
            "commandId": command_id,
            "fingerprint": commit.fingerprint,
            "command": commit.command_json,
            "outcome": commit.outcome,
            "ttl": command_ttl,  # the idempotency window: a retry after it runs anew
        }
    )
    return documents


def _own(document: dict) -> dict:
    """A document without the service's system properties (``_rid``, ``_etag``, ``_ts``, ...), as it is
    written back."""
    return {key: value for key, value in document.items() if not key.startswith("_")}


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
