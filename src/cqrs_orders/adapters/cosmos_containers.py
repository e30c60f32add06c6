"""The Cosmos DB write store's container, declared once: partition key, indexing policy and time to live.

Every document of the write store lives in one container (``COSMOS_CONTAINER``, default ``order-store``; see
:mod:`cqrs_orders.adapters.cosmos_store`), partitioned by ``/aggregateId`` so that a command's documents
share one logical partition and can be written in one transactional batch. ``cqrs-orders cosmos-setup``
creates the database and the container from :data:`ORDER_STORE` and reports where an existing one differs.

**Indexing.** The store never queries: it reads documents by id and partition key (point reads), writes
them in batches, and reads the change feed. Neither a point read nor the change feed uses the index, so the
policy indexes no path (``/*`` excluded; in consistent mode the service still indexes ``id`` and ``_ts``).
Every write then pays for no index terms: Cosmos DB's default policy indexes every path of every document,
the bulk of a write's request units for documents like ours (an order's state holds every item).
A future query must add the paths it filters or sorts on here.

**Time to live.** ``defaultTtl: -1`` turns TTL on without expiring anything by default: state, event,
checkpoint and lease documents are kept; a document expires only if it carries its own ``ttl`` (seconds
after its last write, ``_ts``). One kind does (set by the store when it writes it):

- ``command-<hash>`` after the idempotency window (``CQRS_COMMAND_ID_RETENTION_DAYS``, default
  :data:`COMMAND_ID_WINDOW_SECONDS`): within it a retry with the same ``commandId`` is answered with the
  first result; after it the id is unknown again and the command runs anew. The service hides an expired
  document from reads at once and deletes it in the background. Each document keeps the ``ttl`` it was
  written with, so a changed window applies to the commands recorded from then on. (The SQLite store keeps
  the same window by a sweep: :mod:`cqrs_orders.adapters.sqlite_store`.)

There is no outbox document to expire: the relay publishes the ``event-<version>`` documents themselves
from the change feed (:mod:`cqrs_orders.adapters.cosmos_store`), which are kept, so an unpublished event
can never expire unpublished, and ``relay --from`` can republish from any time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from cqrs_orders.config import PLAIN

log = logging.getLogger(__name__)

DAY_SECONDS = 24 * 60 * 60
#: How long a command id is remembered by default (its outcome answers a retry): the setting
#: ``CQRS_COMMAND_ID_RETENTION_DAYS``'s default. Clients retry within seconds to hours (an HTTP timeout, a
#: re-run job); the default covers a retry after any outage the platform alerts on.
COMMAND_ID_WINDOW_SECONDS = PLAIN["command_id_retention_days"].default * DAY_SECONDS


@dataclass(frozen=True)
class ContainerSpec:
    """What a container must be: the properties given to ``create_container`` and compared with an
    existing container's by :func:`differences`."""

    name: str
    partition_key_path: str
    #: The queried paths (``WHERE``/``ORDER BY``): none for the write store.
    included_paths: tuple[str, ...] = ()
    #: ``None``: TTL off; ``-1``: on, per document (``ttl``) only; ``n``: every document after ``n`` seconds.
    default_ttl: int | None = -1
    #: The time to live, in seconds, each document type carries by default (``docType`` -> ``ttl``; the
    #: command documents' follows ``CQRS_COMMAND_ID_RETENTION_DAYS``): documentation of what the store
    #: writes, and what the tests check it against. Every other type is kept.
    document_ttl: dict[str, int] = field(default_factory=dict)

    @property
    def partition_key(self) -> dict[str, Any]:
        # Version 2 hashes the whole key (ids are up to 128 characters); version 1 only its first 100 bytes.
        return {"paths": [self.partition_key_path], "kind": "Hash", "version": 2}

    @property
    def indexing_policy(self) -> dict[str, Any]:
        return {
            "indexingMode": "consistent",
            "automatic": True,
            "includedPaths": [{"path": path} for path in self.included_paths],
            "excludedPaths": [{"path": "/*"}],
        }


#: The write store's one container (its name is ``Settings.cosmos_container``; this is the default).
ORDER_STORE = ContainerSpec(
    name="order-store",
    partition_key_path="/aggregateId",
    document_ttl={"command": COMMAND_ID_WINDOW_SECONDS},
)


def differences(spec: ContainerSpec, properties: dict[str, Any]) -> list[str]:
    """Where an existing container's ``properties`` (as ``ContainerProxy.read()`` returns them) differ
    from ``spec``, one sentence each; empty when they match. The partition key cannot be changed in place;
    the indexing policy and the default TTL can (``cosmos-setup --update``)."""
    found = []
    key = properties.get("partitionKey") or {}
    if key.get("paths") != [spec.partition_key_path] or key.get("kind", "Hash") != "Hash":
        found.append(
            f"partition key is {key.get('paths')} ({key.get('kind')}), not [{spec.partition_key_path!r}] "
            "(Hash): a partition key cannot be changed; create a new container and move the documents"
        )
    have, want = _comparable(properties.get("indexingPolicy") or {}), _comparable(spec.indexing_policy)
    if have != want:
        found.append(f"indexing policy is {have}, not {want}")
    if properties.get("defaultTtl") != spec.default_ttl:
        found.append(f"default TTL is {properties.get('defaultTtl')}, not {spec.default_ttl}")
    return found


def _comparable(policy: dict[str, Any]) -> dict[str, Any]:
    """An indexing policy without what the service adds on its own (the ``_etag`` exclusion, empty
    composite and spatial lists, default index kinds), so a policy read back equals the one written."""
    paths = lambda name: sorted(  # noqa: E731 - a one-line helper local to this normalisation
        p["path"] for p in policy.get(name, []) if p.get("path") != '/"_etag"/?'
    )
    return {
        "indexingMode": str(policy.get("indexingMode", "consistent")).lower(),
        "automatic": policy.get("automatic", True),
        "includedPaths": paths("includedPaths"),
        "excludedPaths": paths("excludedPaths"),
    }


@dataclass(frozen=True)
class SetupResult:
    """What ``cosmos-setup`` found or did for one container: ``created``, ``unchanged``, ``updated``,
    ``differs`` (left as it was: the differences say how) or ``missing`` (``--check`` only)."""

    database: str
    container: str
    action: str
    differences: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.action in ("created", "unchanged", "updated")

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "container": self.container,
            "action": self.action,
            "differences": list(self.differences),
        }


def ensure_container(
    client, database: str, spec: ContainerSpec, *, name: str | None = None, update: bool = False,
    check: bool = False,
) -> SetupResult:  # fmt: skip
    """Create ``database`` and the container ``spec`` declares (named ``name``, default ``spec.name``)
    unless they exist; compare an existing container with ``spec``. Idempotent: a second run changes
    nothing. ``update`` replaces an existing container's indexing policy and default TTL with the declared
    ones (the service re-indexes in the background); ``check`` writes nothing at all.

    ``client`` is an ``azure.cosmos.CosmosClient``; its credential needs control-plane rights here (create
    a database and a container): the account key, or an Entra ID identity holding an Azure RBAC role such
    as "Cosmos DB Operator". The data-plane role the app needs ("Cosmos DB Built-in Data Contributor")
    cannot create containers.
    """
    from azure.cosmos import PartitionKey
    from azure.cosmos.exceptions import CosmosResourceExistsError, CosmosResourceNotFoundError

    name = name or spec.name
    if check:
        try:
            properties = client.get_database_client(database).get_container_client(name).read()
        except CosmosResourceNotFoundError:
            return SetupResult(database, name, "missing", (f"container {database}/{name} does not exist",))
        found = differences(spec, properties)
        return SetupResult(database, name, "differs" if found else "unchanged", tuple(found))
    db = client.create_database_if_not_exists(database)
    partition_key = PartitionKey(path=spec.partition_key_path, kind="Hash", version=2)
    try:
        db.create_container(
            name, partition_key, indexing_policy=spec.indexing_policy, default_ttl=spec.default_ttl
        )
        log.info("created container %s/%s", database, name)
        return SetupResult(database, name, "created")
    except CosmosResourceExistsError:
        pass  # made earlier (or by a concurrent setup): compare it below
    found = differences(spec, db.get_container_client(name).read())
    if not found:
        return SetupResult(database, name, "unchanged")
    if update and not any(text.startswith("partition key") for text in found):
        db.replace_container(
            name, partition_key, indexing_policy=spec.indexing_policy, default_ttl=spec.default_ttl
        )
        log.info("updated container %s/%s: %s", database, name, "; ".join(found))
        return SetupResult(database, name, "updated", tuple(found))
    return SetupResult(database, name, "differs", tuple(found))
