"""One contract for every write store (the port in ``application/ports.py``), run against each adapter:
SQLite always, Cosmos DB through the in-memory account always, and a live Cosmos DB account when
``COSMOS_ENDPOINT`` and ``COSMOS_KEY`` are set (without the tests that move the clock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

import pytest

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.erasure import MARKER, Erasure
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.ports import (
    Commit,
    DuplicateCommand,
    OutboxEntry,
    OutboxLag,
    Publisher,
    VersionConflict,
    WriteStore,
)
from cqrs_orders.application.relay import Relay
from cqrs_orders.config import Settings
from cqrs_orders.envelope import AggregateType, CustomerState, new_event
from cqrs_orders.errors import NotFound, PublishError, RelayBusy

from .cosmos_fake import COSMOS_ENDPOINT, COSMOS_KEY, FakeClock

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
#: The idempotency window the stores under test keep (``CQRS_COMMAND_ID_RETENTION_DAYS``): not the
#: default, so that a store ignoring the setting fails.
WINDOW_DAYS = 2
WINDOW_SECONDS = WINDOW_DAYS * 24 * 60 * 60


def customer_commit(
    customer_id: str, version: int, name: str = "Ada", command_id: str | None = None, at: datetime = NOW
) -> Commit:
    state = CustomerState(
        customerId=customer_id, name=name, email="ada@example.com", createdAt=at, updatedAt=at
    )
    event = new_event("CustomerRegistered" if version == 1 else "CustomerUpdated", state, version, at=at)
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


class Recording(Publisher):
    """A bus in memory: what each publish carried; ``during_publish`` runs inside a publish (before it is
    accepted), ``fail`` refuses the next publishes."""

    def __init__(self, during_publish: Callable[[], None] | None = None):
        self.published: list[OutboxEntry] = []
        self.during_publish = during_publish
        self.fail = False

    def publish(self, entries: Sequence[OutboxEntry]) -> None:
        if self.fail:
            raise PublishError("the bus is down")
        if self.during_publish:
            hook, self.during_publish = self.during_publish, None
            hook()
        self.published.extend(entries)


class WriteStoreContract:
    """Subclasses provide ``store`` (a fresh, empty store keeping command ids for :data:`WINDOW_DAYS`) and
    ``other_store`` (another instance on the same data: what a second process opens) as fixtures, ``clock``
    (the stores' clock, a :class:`FakeClock` the test moves), and :meth:`hold_then_die`."""

    @pytest.fixture
    def store(self) -> WriteStore:
        raise NotImplementedError

    @pytest.fixture
    def clock(self) -> FakeClock:
        raise NotImplementedError

    @pytest.fixture
    def other_store(self) -> WriteStore:
        raise NotImplementedError

    def hold_then_die(self, request) -> Callable[[], None]:
        """Have a relay called "doomed relay" take the lease and keep it; return the function that kills it
        without a release and waits out the documented takeover bound (for a lease that expires, by moving
        the clock past its expiry)."""
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

    # --- the relay lease ---------------------------------------------------------------------------
    def test_a_second_relay_is_told_who_holds_the_lease(self, store, other_store):
        with store.relay_guard("first relay") as lease:
            assert "first relay" in lease.holder
            with (
                pytest.raises(RelayBusy, match="first relay") as busy,
                other_store.relay_guard("second relay"),
            ):
                pytest.fail("two relays held the lease at once")
            assert "first relay" in busy.value.holder and "holds the outbox lease" in str(busy.value)

    def test_a_released_lease_is_taken_at_once(self, store, other_store):
        with store.relay_guard("first relay"):
            pass
        with other_store.relay_guard("second relay") as lease:  # no wait for an expiry: it was released
            assert "second relay" in lease.holder
        with store.relay_guard("first relay"):  # and back
            pass

    def test_a_dead_holders_lease_is_taken_over(self, store, request):
        die = self.hold_then_die(request)
        with pytest.raises(RelayBusy, match="doomed relay"), store.relay_guard("heir"):
            pytest.fail("the lease was taken from a live holder")
        die()
        with store.relay_guard("heir") as lease:
            assert "heir" in lease.holder
            lease.renew()

    def test_two_relays_never_drain_at_once(self, store, other_store):
        """While one relay publishes, another relay's drain publishes nothing and says who holds the lease;
        every event goes out once, in version order."""
        customer = f"cust-{uuid.uuid4()}"
        for version in (1, 2, 3):
            store.append(customer_commit(customer, version))
        rival, told = Relay(other_store, Recording(), who="rival relay"), []

        def rival_drains() -> None:
            with pytest.raises(RelayBusy, match="first relay") as busy:
                rival.drain()
            told.append(busy.value)

        first = Relay(store, Recording(during_publish=rival_drains), batch_size=2, who="first relay")
        first.drain()
        assert told and rival.publisher.published == []
        mine = [e.version for e in first.publisher.published if e.aggregate_id == customer]
        assert mine == [1, 2, 3]
        assert rival.drain() == 0  # released: the rival takes the lease, and nothing is left

    def test_the_position_survives_a_restart_and_a_failed_publish_moves_nothing(self, store, other_store):
        customer = f"cust-{uuid.uuid4()}"
        store.append(customer_commit(customer, 1))
        self.drain(store)  # earlier entries are not this test's
        store.append(customer_commit(customer, 2))
        failing = Recording()
        failing.fail = True
        with pytest.raises(PublishError):
            Relay(store, failing).drain()
        assert store.outbox_lag(datetime.now(timezone.utc)).unpublished == 1  # still waiting

        restarted = Relay(other_store, Recording())  # another instance: a restarted process
        assert restarted.drain() == 1
        assert [(e.aggregate_id, e.version) for e in restarted.publisher.published] == [(customer, 2)]
        assert Relay(store, Recording()).drain() == 0  # the position is the store's, not the instance's

    # --- outbox lag --------------------------------------------------------------------------------
    def test_outbox_lag_counts_unpublished_events_and_the_oldest_ones_age(self, store):
        self.drain(store)
        now = datetime.now(timezone.utc)
        assert store.outbox_lag(now) == OutboxLag(unpublished=0, oldest_age_seconds=None)
        first, second = f"cust-{uuid.uuid4()}", f"cust-{uuid.uuid4()}"
        store.append(customer_commit(first, 1, at=now))
        store.append(customer_commit(second, 1, at=now))
        store.append(customer_commit(first, 2, at=now))
        later = now + timedelta(seconds=90)
        lag = store.outbox_lag(later)
        assert lag.unpublished == 3 and lag.exact
        assert 85 <= lag.oldest_age_seconds <= 95  # from the oldest commit (stores keep whole seconds)
        assert store.outbox_lag(later) == lag  # reading it acknowledged nothing
        self.drain(store)
        assert store.outbox_lag(later).unpublished == 0 and store.outbox_lag(later).oldest_age_seconds is None

    # --- republishing after the bus lost events ----------------------------------------------------
    def test_a_rewind_makes_every_event_since_a_time_pending_again_in_order(self, store):
        self.drain(store)
        now = datetime.now(timezone.utc)
        old, new = f"cust-{uuid.uuid4()}", f"cust-{uuid.uuid4()}"
        store.append(customer_commit(old, 1, at=now - timedelta(hours=2)))
        store.append(customer_commit(new, 1, at=now))
        store.append(customer_commit(new, 2, name="Ada L.", at=now + timedelta(seconds=1)))
        first = {(e.aggregate_id, e.version): e for e in self.drain(store)}
        assert store.outbox_lag(now).unpublished == 0

        store.rewind_outbox(now)
        again = [e for e in self.drain(store) if e.aggregate_id == new]
        assert again == [first[(new, 1)], first[(new, 2)]]  # the same events (ids, bodies), in version order
        assert store.outbox_lag(now).unpublished == 0  # acknowledged again as they went out
        assert self.drain(store) == []

    def test_a_rewind_never_skips_an_unpublished_event(self, store):
        self.drain(store)
        now = datetime.now(timezone.utc)
        waiting = f"cust-{uuid.uuid4()}"
        store.append(customer_commit(waiting, 1, at=now))
        store.rewind_outbox(now + timedelta(hours=1))  # after it: the position must not move forward
        assert [(e.aggregate_id, e.version) for e in self.drain(store)] == [(waiting, 1)]

    def test_a_relay_republishes_under_its_lease_and_a_busy_lease_changes_nothing(self, store, other_store):
        self.drain(store)
        now = datetime.now(timezone.utc)
        customer = f"cust-{uuid.uuid4()}"
        store.append(customer_commit(customer, 1, at=now))
        self.drain(store)
        with other_store.relay_guard("the app's relay"), pytest.raises(RelayBusy, match="the app's relay"):
            Relay(store, Recording()).republish(now)
        assert store.outbox_lag(now).unpublished == 0  # nothing was rewound

        bus = Recording()
        assert Relay(store, bus).republish(now) >= 1
        assert [(e.aggregate_id, e.version) for e in bus.published if e.aggregate_id == customer] == [
            (customer, 1)
        ]

    # --- the idempotency window --------------------------------------------------------------------
    def test_a_command_id_answers_within_its_window_and_is_free_again_after_it(self, store, clock):
        customer = f"cust-{uuid.uuid4()}"
        first = customer_commit(customer, 1)
        store.append(first)

        clock.advance(WINDOW_SECONDS - 1)
        assert store.recorded_outcome(first.command_id, customer).outcome == first.outcome
        with pytest.raises(DuplicateCommand) as raised:
            store.append(customer_commit(customer, 2, command_id=first.command_id))
        assert raised.value.recorded.outcome == first.outcome

        clock.advance(2)
        assert store.recorded_outcome(first.command_id, customer) is None  # forgotten
        again = customer_commit(customer, 2, name="Bea", command_id=first.command_id)
        store.append(again)  # a new command under the old id
        assert store.recorded_outcome(first.command_id, customer).outcome == again.outcome
        assert store.load(customer).version == 2

    def test_the_window_counts_from_when_the_store_recorded_the_command(self, store, clock):
        """Not from the command's own time: a command decided long before it was written (a retry stuck in
        a queue, an answer that never arrived) is kept a whole window from its write, so its retry is
        answered from it."""
        customer = f"cust-{uuid.uuid4()}"
        long_ago = datetime.fromtimestamp(clock(), timezone.utc) - timedelta(days=10 * WINDOW_DAYS)
        late = customer_commit(customer, 1, at=long_ago)
        store.append(late)

        clock.advance(WINDOW_SECONDS - 1)
        store.append(customer_commit(f"cust-{uuid.uuid4()}", 1))  # another write (the SQLite store sweeps)
        assert store.recorded_outcome(late.command_id, customer).outcome == late.outcome

    def test_events_and_aggregates_outlive_the_window(self, store, clock):
        self.drain(store)
        start, customer = datetime.fromtimestamp(clock(), timezone.utc), f"cust-{uuid.uuid4()}"
        store.append(customer_commit(customer, 1, at=start))
        store.append(customer_commit(customer, 2, name="Bea", at=start))

        clock.advance(10 * WINDOW_SECONDS)
        store.append(customer_commit(f"cust-{uuid.uuid4()}", 1))  # another write (the SQLite store sweeps)

        snapshot = store.load(customer)
        assert (snapshot.version, snapshot.state.name) == (2, "Bea")
        assert [e.version for e in self.drain(store) if e.aggregate_id == customer] == [1, 2]  # unpublished
        store.rewind_outbox(start)  # the bus lost them: they are all there to publish again
        assert [e.version for e in self.drain(store) if e.aggregate_id == customer] == [1, 2]  # and again

    def test_a_retry_past_the_window_is_decided_as_a_new_command(self, store, clock):
        """Through the handler. Inside the window a retry answers the first result; past it the command runs
        again: a create is refused by its own rule (nothing is written twice), an update is applied again
        (docs/operations.md, "Idempotency window": the window must outlast every retry a client makes)."""
        handler = CommandHandler(store)
        customer = f"cust-{uuid.uuid4()}"
        register = {"type": "RegisterCustomer", "commandId": f"reg-{customer}", "customerId": customer,
                    "name": "Ada", "email": "ada@example.com"}  # fmt: skip
        rename = {"type": "UpdateCustomer", "commandId": f"ren-{customer}", "customerId": customer,
                  "name": "Ada L."}  # fmt: skip
        registered, renamed = handler.handle(register), handler.handle(rename)
        assert registered.accepted and renamed.accepted

        clock.advance(WINDOW_SECONDS - 1)
        assert (handler.handle(register), handler.handle(rename)) == (registered, renamed)
        assert store.load(customer).version == 2

        clock.advance(2)
        late = handler.handle(register)
        assert (late.commandId, late.status, late.error["code"]) == (registered.commandId, "rejected",
                                                                     "ALREADY_EXISTS")  # fmt: skip
        again = handler.handle(rename)
        assert again.accepted and again.version == 3 and again.eventIds != renamed.eventIds
        assert handler.handle(rename) == again  # and the new answer is the one kept from now on

    def test_an_erased_customer_reads_as_the_marker_everywhere_and_stays_erased(self, store):
        """Erasure masks the state, every event (the outbox's copy: what a relay publishes later) and the
        commands; every name and e-mail the customer ever had comes back once, for the lake's search; and
        no later command writes the customer again: an update is refused, a register finds it exists."""
        handler = CommandHandler(store)
        customer = f"cust-{uuid.uuid4()}"
        register = {"type": "RegisterCustomer", "commandId": f"reg-{customer}", "customerId": customer,
                    "name": "Zyx Quorra", "email": "zyx.quorra@example.test"}  # fmt: skip
        rename = {"type": "UpdateCustomer", "commandId": f"ren-{customer}", "customerId": customer,
                  "name": "Zyx Quorra-Vell"}  # fmt: skip
        assert handler.handle(register).accepted and handler.handle(rename).accepted
        published_before = [e for e in self.drain(store) if e.aggregate_id == customer]
        assert len(published_before) == 2

        erased = store.erase_customer(Erasure(customer, NOW, "ticket 42", "dpo@example.test"))

        assert erased.values == {"Zyx Quorra", "Zyx Quorra-Vell", "zyx.quorra@example.test"}
        assert (erased.events, erased.commands, erased.already_erased) == (2, 2, False)
        state = store.load(customer).state
        assert (state.name, state.email, store.load(customer).version) == (MARKER, MARKER, 2)
        store.rewind_outbox(NOW - timedelta(days=3650))
        bodies = [e.body for e in self.drain(store) if e.aggregate_id == customer]
        assert len(bodies) == 2 and not any("Zyx" in body or "quorra" in body for body in bodies)
        assert all(json.loads(body)["data"]["name"] == MARKER for body in bodies)

        refused = handler.handle({**rename, "commandId": f"again-{customer}", "name": "Back Again"})
        assert (refused.status, refused.error["code"]) == ("rejected", "CUSTOMER_ERASED")
        recreated = handler.handle({**register, "commandId": f"new-{customer}"})
        assert (recreated.status, recreated.error["code"]) == ("rejected", "ALREADY_EXISTS")
        retried = handler.handle(register)  # the erased command's own id: its fingerprint is gone
        assert retried.status == "rejected" and "Zyx" not in json.dumps(retried.to_dict())
        assert store.load(customer).state.name == MARKER

        again = store.erase_customer(Erasure(customer, NOW + timedelta(days=1), "repeat", "someone else"))
        assert again.already_erased and again.erasure.reason == "ticket 42" and again.values == set()

    def test_erasing_an_unknown_or_non_customer_id_is_not_found(self, store):
        store.append(customer_commit("cust-known", 1))
        with pytest.raises(NotFound):
            store.erase_customer(Erasure("cust-missing", NOW, "ticket", "dpo"))
        assert store.load("cust-known").state.name == "Ada"

    @staticmethod
    def drain(store) -> list:
        entries = []
        while (batch := store.pending(100)).entries:
            entries.extend(batch.entries)
            store.acknowledge(batch)
        return entries


class TestSqliteWriteStore(WriteStoreContract):
    @pytest.fixture
    def clock(self):
        return FakeClock()

    @pytest.fixture
    def store(self, tmp_path, clock):
        store = SqliteWriteStore(
            tmp_path / "write_store.sqlite", command_id_retention_days=WINDOW_DAYS, clock=clock
        )
        yield store
        store.close()

    @pytest.fixture
    def other_store(self, tmp_path, clock):
        store = SqliteWriteStore(
            tmp_path / "write_store.sqlite", command_id_retention_days=WINDOW_DAYS, clock=clock
        )
        yield store
        store.close()

    def test_a_rewind_starts_exactly_at_the_first_event_of_that_time(self, store):
        """SQLite compares the events' own timestamps: nothing before ``since`` goes out again."""
        now = datetime.now(timezone.utc)
        store.append(customer_commit("before", 1, at=now - timedelta(milliseconds=5)))
        store.append(customer_commit("at", 1, at=now))
        store.append(customer_commit("after", 1, at=now + timedelta(microseconds=500)))
        self.drain(store)
        store.rewind_outbox(now)
        assert [e.aggregate_id for e in self.drain(store)] == ["at", "after"]

    def test_an_erasure_leaves_no_old_byte_in_any_file_of_the_store(self, store, tmp_path):
        """SQLite keeps rewritten rows' old bytes in the WAL's frames and in free pages: after the erasure
        no file of the store (database, WAL, shared memory, lock files) holds the personal values."""
        handler = CommandHandler(store)
        register = {"type": "RegisterCustomer", "customerId": "cust-bytes", "name": "Wendeline Oxtrot",
                    "email": "w.oxtrot@example.test"}  # fmt: skip
        for number in range(5):
            other = {"customerId": f"other-{number}", "name": f"Other {number}", "email": f"o{number}@x.test"}
            assert handler.handle({**register, **other}).accepted
        assert handler.handle(register).accepted
        assert handler.handle({"type": "UpdateCustomer", "customerId": "cust-bytes", "name": "Wen Oxtrot"})
        self.drain(store)
        store.load("cust-bytes")  # a reading connection stays open: it must not keep the WAL alive
        files = sorted(tmp_path.iterdir())
        assert any(b"Oxtrot" in f.read_bytes() for f in files)

        store.erase_customer(Erasure("cust-bytes", NOW, "ticket", "dpo"))

        found = {
            f.name
            for f in sorted(tmp_path.iterdir())
            for text in (b"Oxtrot", b"oxtrot")
            if text in f.read_bytes()
        }
        assert found == set()
        assert store.load("other-3").state.name == "Other 3"  # the rest of the store as it was

    def hold_then_die(self, request):
        """A relay process that takes the lock, then is killed (SIGKILL): the kernel releases its lock."""
        path = request.getfixturevalue("tmp_path") / "write_store.sqlite"
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER.format(path=str(path))], stdout=subprocess.PIPE, text=True
        )
        request.addfinalizer(holder.kill)
        assert holder.stdout.readline().strip() == "held"

        def die():
            holder.kill()
            holder.wait(10)

        return die


#: A relay process that holds the SQLite store's lease until it is killed.
_HOLDER = """
import time
from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
with SqliteWriteStore({path!r}).relay_guard("doomed relay"):
    print("held", flush=True)
    time.sleep(600)
"""


class TestCosmosWriteStoreOverTheTransport(WriteStoreContract):
    """The Cosmos adapter through the real SDK, answered by the in-memory account (see conftest), on a
    clock the test moves; its container made as ``cosmos-setup`` makes it (TTL on, per document), so the
    command documents expire as on the service."""

    @pytest.fixture
    def clock(self, cosmos_clock):
        return cosmos_clock

    @pytest.fixture
    def cosmos_account(self, cosmos_clock):
        from azure.cosmos import CosmosClient

        from cqrs_orders.adapters.cosmos_containers import ORDER_STORE, ensure_container

        from .cosmos_fake import FakeCosmosAccount

        account = FakeCosmosAccount(clock=cosmos_clock, precreated=False)
        client = CosmosClient(COSMOS_ENDPOINT, credential=COSMOS_KEY, transport=account)
        assert ensure_container(client, "orders", ORDER_STORE).action == "created"
        return account

    @pytest.fixture
    def cosmos_settings(self, tmp_path):
        env = {"CQRS_WRITE_STORE": "cosmos", "COSMOS_ENDPOINT": COSMOS_ENDPOINT, "COSMOS_KEY": COSMOS_KEY,
               "CQRS_COMMAND_ID_RETENTION_DAYS": str(WINDOW_DAYS)}  # fmt: skip
        return Settings.from_env(tmp_path / "warehouse", env=env)

    @pytest.fixture
    def store(self, cosmos_settings, cosmos_account, cosmos_clock):
        from cqrs_orders.adapters.cosmos_store import CosmosWriteStore

        return CosmosWriteStore.from_settings(cosmos_settings, transport=cosmos_account, clock=cosmos_clock)

    other_store = store

    def hold_then_die(self, request):
        """Another store instance takes the lease and never releases it; dying is the clock passing the
        lease's expiry (a crashed holder renews no more)."""
        from cqrs_orders.adapters.cosmos_store import LEASE_SECONDS, CosmosWriteStore

        clock = request.getfixturevalue("cosmos_clock")
        doomed = CosmosWriteStore.from_settings(
            request.getfixturevalue("cosmos_settings"),
            transport=request.getfixturevalue("cosmos_account"),
            clock=clock,
        )
        held = doomed.relay_guard("doomed relay")
        held.__enter__()
        request.addfinalizer(lambda: _keep(held))  # never exited: a dead holder releases nothing

        def die():
            clock.advance(LEASE_SECONDS + 0.001)

        return die


def _keep(_held) -> None:
    """Holds a reference until the test's end (a collected generator would run its release)."""


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

    @pytest.fixture
    def clock(self):
        pytest.skip("a live account's clock cannot be moved: the idempotency window is tested on the others")

    other_store = store

    def hold_then_die(self, request):
        """A holder with a 2-second lease that is never released; dying is waiting that lease out."""
        from cqrs_orders.adapters.cosmos_store import CosmosWriteStore

        doomed = CosmosWriteStore.from_settings(
            Settings.from_env(warehouse=request.getfixturevalue("tmp_path"))
        )
        doomed.lease_seconds = 2.0
        held = doomed.relay_guard("doomed relay")
        held.__enter__()
        request.addfinalizer(lambda: _keep(held))
        return lambda: time.sleep(2.5)
