"""The Cosmos DB relay lease in detail, through the real SDK and the in-memory account (see conftest), on a
clock the test moves: what the lease document says, when it is renewed, when it may be taken over, and
that a relay which lost it publishes no further batch and never moves the checkpoint. (What both write
stores share, two relays never draining at once among it, is in ``test_write_store_contract.py``.)"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

import pytest

from cqrs_orders.adapters.cosmos_store import (
    CHECKPOINT_PARTITION,
    LEASE_SECONDS,
    RENEW_EVERY_SECONDS,
    CosmosWriteStore,
)
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.relay import Relay
from cqrs_orders.errors import RelayBusy, RelayLeaseLost

LEASE = (CHECKPOINT_PARTITION, "lease-default")
CHECKPOINT = (CHECKPOINT_PARTITION, "checkpoint-default")


@pytest.fixture
def open_store(cosmos_settings, cosmos_account, cosmos_clock):
    """``open_store()``: a store instance of its own (another process's) on the shared account and clock."""
    return lambda: CosmosWriteStore.from_settings(
        cosmos_settings, transport=cosmos_account, clock=cosmos_clock
    )


def customers(store, *ids: str) -> None:
    handler = CommandHandler(store)
    for customer in ids:
        command = {"type": "RegisterCustomer", "customerId": customer, "name": "Ada", "email": "a@b.io"}
        assert handler.handle(command).accepted


class Recording:
    def __init__(self, during_first_publish=None):
        self.published, self.hook = [], during_first_publish

    def publish(self, entries) -> None:
        if self.hook:
            hook, self.hook = self.hook, None
            hook()
        self.published.extend(entries)

    def close(self) -> None:
        pass


def lease_puts(account) -> int:
    return sum(1 for r in account.requests if r["method"] == "PUT" and r["path"].endswith("/lease-default"))


def test_the_lease_document_names_its_holder_expires_in_30_s_and_is_deleted_at_release(
    open_store, cosmos_account, cosmos_clock
):
    store = open_store()
    with store.relay_guard("command API relay") as lease:
        document = cosmos_account.documents[LEASE]
        assert document["docType"] == "lease" and document["aggregateId"] == "__relay__"
        assert document["holder"] == lease.holder
        assert lease.holder.startswith("command API relay (host ") and store.instance[:8] in lease.holder
        expires = datetime.fromisoformat(document["expiresAt"]).timestamp()
        assert expires == pytest.approx(cosmos_clock() + LEASE_SECONDS, abs=0.001)
        assert document["leaseSeconds"] == LEASE_SECONDS == 30
    assert LEASE not in cosmos_account.documents  # released: a standby takes it at its next poll


def test_a_live_holders_lease_is_not_taken_before_it_expires(open_store, cosmos_clock):
    holder, rival = open_store(), open_store()
    with holder.relay_guard("first relay"):
        cosmos_clock.advance(LEASE_SECONDS - 0.5)
        with pytest.raises(RelayBusy) as busy:
            Relay(rival, Recording()).drain()
        expires = datetime.fromtimestamp(cosmos_clock() + 0.5, timezone.utc)
        assert abs((busy.value.until - expires).total_seconds()) < 0.01
        assert f"until {expires:%H:%M:%S} UTC" in str(busy.value) and "first relay" in str(busy.value)
        cosmos_clock.advance(1.0)  # past the expiry: the holder is taken for dead
        assert Relay(rival, Recording()).drain() == 0


def test_a_holder_renews_at_most_every_10_s_and_so_keeps_its_lease(open_store, cosmos_account, cosmos_clock):
    holder, rival = open_store(), open_store()
    with holder.relay_guard("first relay") as lease:
        puts = lease_puts(cosmos_account)
        cosmos_clock.advance(RENEW_EVERY_SECONDS - 1)
        lease.renew()
        assert lease_puts(cosmos_account) == puts  # still fresh: no write
        cosmos_clock.advance(2)
        lease.renew()
        assert lease_puts(cosmos_account) == puts + 1
        cosmos_clock.advance(LEASE_SECONDS - 2)  # past the first expiry, within the renewed one
        with pytest.raises(RelayBusy, match="first relay"), rival.relay_guard("rival"):
            pytest.fail("a renewed lease was taken")


def test_a_relay_that_lost_its_lease_publishes_no_further_batch_and_moves_nothing(
    open_store, cosmos_account, cosmos_clock
):
    """The widest window: the holder stalls in its first publish past its lease's expiry and a rival takes
    over. The holder's checkpoint write fails on the lease's ETag, so the rival publishes from the old
    position: the stalled batch goes out twice (at least once), each aggregate's versions still in order."""
    writer = open_store()
    customers(writer, "cust-1", "cust-2", "cust-3", "cust-4")
    rival, held = open_store(), []

    def stall_until_taken_over():
        cosmos_clock.advance(LEASE_SECONDS + 1)
        taken = rival.relay_guard("rival relay")
        taken.__enter__()
        held.append(taken)

    stalled = Relay(open_store(), Recording(stall_until_taken_over), batch_size=2, who="stalled relay")
    with pytest.raises(RelayLeaseLost, match="now held by rival relay"):
        stalled.drain()
    stalled_batch = [e.event_id for e in stalled.publisher.published]
    assert stalled_batch and stalled.published == 0  # one batch published, not acknowledged, then no more
    assert CHECKPOINT not in cosmos_account.documents  # the position did not move
    assert "rival relay" in cosmos_account.documents[LEASE]["holder"]  # and the rival's lease stands

    held.pop().__exit__(None, None, None)
    after = Relay(rival, Recording())
    assert after.drain() == 4
    again = [e.event_id for e in after.publisher.published][: len(stalled_batch)]
    assert again == stalled_batch  # the stalled batch goes out again, first


def test_a_lease_lost_while_idle_is_found_at_the_next_renewal(open_store, cosmos_clock):
    holder, rival = open_store(), open_store()
    with holder.relay_guard("first relay") as lease:
        cosmos_clock.advance(LEASE_SECONDS + 1)  # the holder was frozen (a long GC, a suspended VM)
        with rival.relay_guard("rival relay"), pytest.raises(RelayLeaseLost, match="rival relay"):
            lease.renew()


def test_a_holder_frozen_past_its_lease_publishes_nothing_when_it_wakes(open_store, cosmos_clock):
    """A following relay frozen between two drains (a long GC pause, a suspended VM) past its lease's
    expiry, while a rival took over: its next step renews first, finds the lease lost, and publishes none of
    what was committed meanwhile. (``_drain`` is the step ``follow`` repeats while it holds the lease.)"""
    store, rival = open_store(), open_store()
    relay = Relay(store, Recording(), who="frozen relay")
    with store.relay_guard("frozen relay") as lease:
        assert relay._drain(lease, 0.0) == 0
        cosmos_clock.advance(LEASE_SECONDS + 1)
        with rival.relay_guard("rival relay"):
            customers(open_store(), "cust-1")
            with pytest.raises(RelayLeaseLost, match="rival relay"):
                relay._drain(lease, 0.0)
    assert relay.publisher.published == []


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_following_relay_stands_by_then_takes_over_at_once_when_the_holder_stops(
    open_store, cosmos_account, caplog
):
    caplog.set_level(logging.INFO, logger="cqrs_orders.application.relay")
    writer = open_store()
    first, second = (
        Relay(open_store(), Recording(), who="first relay"),
        Relay(open_store(), Recording(), who="second relay"),
    )
    stop_first, stop_second = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=first.follow, args=(stop_first, 0.05)),
        threading.Thread(target=second.follow, args=(stop_second, 0.05)),
    ]
    threads[0].start()
    wait_for(lambda: "first relay" in cosmos_account.documents.get(LEASE, {}).get("holder", ""))
    threads[1].start()
    try:
        wait_for(lambda: "standing by" in caplog.text)
        customers(writer, "cust-1", "cust-2")
        wait_for(lambda: len(first.publisher.published) == 2)
        standing_by = [r for r in caplog.records if "standing by" in r.getMessage()]
        assert len(standing_by) == 1 and "first relay" in standing_by[0].getMessage()  # said once

        stop_first.set()
        threads[0].join(10)
        wait_for(lambda: "second relay" in cosmos_account.documents.get(LEASE, {}).get("holder", ""), 2)
        customers(writer, "cust-3")
        wait_for(lambda: len(second.publisher.published) == 1)
    finally:
        stop_first.set()
        stop_second.set()
        for thread in threads:
            thread.join(10)
    assert [e.aggregate_id for e in second.publisher.published] == ["cust-3"]  # nothing twice
    assert LEASE not in cosmos_account.documents  # the last holder released it too


def test_a_standby_takes_over_from_a_crashed_holder_after_the_lease_expires(
    open_store, cosmos_account, cosmos_clock
):
    crashed = open_store().relay_guard("crashed relay")
    crashed.__enter__()  # and never left: the process died holding it
    customers(open_store(), "cust-1")
    standby, stop = Relay(open_store(), Recording(), who="standby relay"), threading.Event()
    thread = threading.Thread(target=standby.follow, args=(stop, 0.05))
    thread.start()
    try:
        time.sleep(0.3)  # several polls
        assert standby.publisher.published == []
        cosmos_clock.advance(LEASE_SECONDS)  # the bound: the lease's expiry, plus one poll
        wait_for(lambda: len(standby.publisher.published) == 1, 2)
    finally:
        stop.set()
        thread.join(10)
    assert crashed is not None


def test_the_apps_background_relay_publishes_and_releases_the_lease_when_stopped(open_store, cosmos_account):
    from cqrs_orders.application.background_relay import BackgroundRelay

    background = BackgroundRelay(Relay(open_store(), Recording(), who="command API relay"), poll_seconds=0.05)
    background.start()
    try:
        wait_for(lambda: "command API relay" in cosmos_account.documents.get(LEASE, {}).get("holder", ""))
        customers(open_store(), "cust-1", "cust-2")
        wait_for(lambda: len(background.relay.publisher.published) == 2)
    finally:
        background.stop()
    assert LEASE not in cosmos_account.documents  # a restarted app (or any relay) takes over at once
    assert background.relay.published == 2


def test_outbox_lag_stops_counting_at_its_limit_and_says_so(open_store, monkeypatch):
    import cqrs_orders.adapters.cosmos_store

    store = open_store()
    customers(store, "cust-1", "cust-2", "cust-3")
    monkeypatch.setattr(cqrs_orders.adapters.cosmos_store, "LAG_SCAN_LIMIT", 2)
    lag = store.outbox_lag(datetime.now(timezone.utc))
    assert not lag.exact and lag.unpublished >= 2  # a lower bound (whole pages), marked as one
