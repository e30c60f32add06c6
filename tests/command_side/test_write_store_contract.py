"""One contract for every write store (the port in ``application/ports.py``), run against each adapter:
SQLite always, Cosmos DB when ``COSMOS_ENDPOINT`` and ``COSMOS_KEY`` are set."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

import pytest

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.ports import Commit, DuplicateCommand, VersionConflict, WriteStore
from cqrs_orders.config import Settings
from cqrs_orders.envelope import AggregateType, CustomerState, new_event

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def customer_commit(
    customer_id: str, version: int, name: str = "Ada", command_id: str | None = None
) -> Commit:
    state = CustomerState(
        customerId=customer_id, name=name, email="ada@example.com", createdAt=NOW, updatedAt=NOW
    )
    event = new_event("CustomerRegistered" if version == 1 else "CustomerUpdated", state, version, at=NOW)
    command_id = command_id or str(uuid.uuid4())
    return Commit(
        command_id=command_id,
        fingerprint=f"fp-{command_id}",
        command_json="{}",
        aggregate_type=AggregateType.CUSTOMER,
        aggregate_id=customer_id,
        base_version=version - 1,
        events=[event],
        outcome={
            "commandId": command_id,
            "status": "accepted",
            "aggregateId": customer_id,
            "version": version,
            "eventIds": [str(event.eventId)],
            "error": None,
        },
    )


class WriteStoreContract:
    """Subclasses provide ``store`` (a fresh, empty store) as a fixture."""

    @pytest.fixture
    def store(self) -> WriteStore:
        raise NotImplementedError

    def test_an_unknown_aggregate_loads_as_none(self, store):
        assert store.load(f"nobody-{uuid.uuid4()}") is None
        assert store.recorded_outcome(f"cmd-{uuid.uuid4()}", "anyone") is None

    def test_append_stores_state_outcome_and_outbox(self, store):
        customer = f"cust-{uuid.uuid4()}"
        first, second = customer_commit(customer, 1), customer_commit(customer, 2, name="Bea")
        store.append(first)
        store.append(second)
        snapshot = store.load(customer)
        assert (snapshot.aggregate_type, snapshot.version, snapshot.state.name) == (
            AggregateType.CUSTOMER,
            2,
            "Bea",
        )
        assert store.recorded_outcome(first.command_id, customer).outcome == first.outcome
        assert store.recorded_outcome(first.command_id, customer).fingerprint == first.fingerprint
        entries = [e for e in self.drain(store) if e.aggregate_id == customer]
        assert [(e.version, e.event_id) for e in entries] == [
            (1, str(first.events[0].eventId)),
            (2, str(second.events[0].eventId)),
        ]
        assert entries[1].body == second.events[0].to_json()

    def test_a_stale_base_version_writes_nothing(self, store):
        customer = f"cust-{uuid.uuid4()}"
        store.append(customer_commit(customer, 1))
        self.drain(store)
        for stale in (customer_commit(customer, 1), customer_commit(customer, 3)):
            with pytest.raises(VersionConflict):
                store.append(stale)
            assert store.recorded_outcome(stale.command_id, customer) is None
        assert store.load(customer).version == 1
        assert self.drain(store) == []

    def test_a_recorded_command_id_writes_nothing(self, store):
        customer = f"cust-{uuid.uuid4()}"
        first = customer_commit(customer, 1)
        store.append(first)
        self.drain(store)
        with pytest.raises(DuplicateCommand) as raised:
            store.append(customer_commit(customer, 2, command_id=first.command_id))
        assert raised.value.recorded.outcome == first.outcome
        assert store.load(customer).version == 1
        assert self.drain(store) == []

    def test_acknowledged_entries_are_not_pending_again(self, store):
        customers = [f"cust-{uuid.uuid4()}" for _ in range(3)]
        for customer in customers:
            store.append(customer_commit(customer, 1))
        batch = store.pending(2)
        assert 0 < len(batch.entries) <= 2  # "up to": a change-feed page also holds non-outbox documents
        store.acknowledge(batch)
        rest = self.drain(store)
        assert {e.aggregate_id for e in batch.entries} | {e.aggregate_id for e in rest} >= set(customers)
        assert not {e.event_id for e in batch.entries} & {e.event_id for e in rest}

    @staticmethod
    def drain(store) -> list:
        entries = []
        while (batch := store.pending(100)).entries:
            entries.extend(batch.entries)
            store.acknowledge(batch)
        return entries


class TestSqliteWriteStore(WriteStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        store = SqliteWriteStore(tmp_path / "write_store.sqlite")
        yield store
        store.close()


class TestCosmosWriteStoreOverTheTransport(WriteStoreContract):
    """The Cosmos adapter through the real SDK, answered by the in-memory account (see conftest)."""

    @pytest.fixture
    def store(self, cosmos_settings, cosmos_account):
        from cqrs_orders.adapters.cosmos_store import CosmosWriteStore

        return CosmosWriteStore.from_settings(cosmos_settings, transport=cosmos_account)


@pytest.mark.live
@pytest.mark.skipif(
    not (os.environ.get("COSMOS_ENDPOINT") and os.environ.get("COSMOS_KEY")),
    reason="live Cosmos DB test: set COSMOS_ENDPOINT and COSMOS_KEY (optionally COSMOS_DATABASE, "
    "COSMOS_CONTAINER) to run it",
)
class TestCosmosWriteStore(WriteStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        from cqrs_orders.adapters.cosmos_store import CosmosWriteStore

        settings = Settings.from_env(warehouse=tmp_path)
        store = CosmosWriteStore.from_settings(settings)
        self.drain(store)  # start from "now": entries of earlier runs are not this test's
        yield store
        store.close()
