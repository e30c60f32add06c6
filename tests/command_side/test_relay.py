"""The relay: everything committed reaches the bus, in version order per aggregate, even when the relay is
killed (SIGKILL) in the middle of a drain and started again; duplicates are allowed and counted."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.adapters.event_log_publisher import EventLogPublisher
from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.ports import OutboxEntry, Publisher
from cqrs_orders.application.relay import Relay
from cqrs_orders.errors import PublishError, RelayBusy


def make_history(given, orders: int) -> int:
    """Customers and orders moved along their lifecycles; returns the number of events committed."""
    events = 0
    for number in range(orders):
        if number % 5 == 0:
            given.customer(f"cust-{number}")
            events += 1
        customer = f"cust-{number - number % 5}"
        given.order(f"order-{number}", customer_id=customer)
        steps = ("ConfirmOrder", "ShipOrder", "DeliverOrder")[: number % 4]
        for step in steps:
            given.step(step, f"order-{number}")
        events += 1 + len(steps)
    return events


def log_by_aggregate(settings) -> tuple[dict[str, list[tuple[str, int]]], int]:
    """Per aggregate, the (eventId, version) records in log order; and the total record count."""
    records = EventLog(settings.event_log_path, settings.event_log_partitions).read().to_pylist()
    by_aggregate: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for record in records:  # read() orders by partition, offset; an aggregate lives in one partition
        body = json.loads(record["body"])
        assert record["partition_key"] == body["aggregateId"]
        by_aggregate[body["aggregateId"]].append((body["eventId"], body["version"]))
    return by_aggregate, len(records)


def assert_complete_and_ordered(settings, store) -> int:
    """Every committed event is on the log; first deliveries are in version order; return the duplicates."""
    by_aggregate, total = log_by_aggregate(settings)
    unique = 0
    for aggregate_id, records in by_aggregate.items():
        first_seen, seen = [], set()
        for event_id, version in records:
            if event_id not in seen:
                seen.add(event_id)
                first_seen.append(version)
            else:
                assert version <= first_seen[-1]  # a re-delivery of something already published
        assert first_seen == list(range(1, len(first_seen) + 1)), (aggregate_id, first_seen)
        assert first_seen[-1] == store.load(aggregate_id).version, aggregate_id  # nothing missing at the end
        unique += len(first_seen)
    assert unique == store.counts()["events"]
    return total - unique


def test_drain_publishes_everything_once_in_order(settings, store, given):
    committed = make_history(given, orders=12)
    relay = Relay(store, EventLogPublisher(settings.event_log_path), batch_size=7)
    assert relay.drain() == committed
    assert relay.drain() == 0
    assert assert_complete_and_ordered(settings, store) == 0
    assert store.counts()["outbox_pending"] == 0


def test_two_relays_started_at_once_never_double_publish(settings, store, given):
    """Each drain either publishes or is told that the other relay holds the lease (RelayBusy); whichever
    way the race goes, everything goes out once, in order."""
    committed = make_history(given, orders=20)
    relays = [
        Relay(
            SqliteWriteStore(settings.write_store_path),
            EventLogPublisher(settings.event_log_path),
            batch_size=3,
        )
        for _ in range(2)
    ]

    def drain(relay: Relay) -> int | RelayBusy:
        try:
            return relay.drain()
        except RelayBusy as busy:
            return busy

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(drain, relays))
    assert sum(outcome for outcome in outcomes if isinstance(outcome, int)) == committed
    assert all("holds the outbox lease" in str(o) for o in outcomes if isinstance(o, RelayBusy))
    assert assert_complete_and_ordered(settings, store) == 0


class FailingPublisher(Publisher):
    def __init__(self, inner: Publisher, fail_on_call: int):
        self.inner, self.fail_on_call, self.calls = inner, fail_on_call, 0

    def publish(self, entries: list[OutboxEntry]) -> None:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise PublishError("bus unreachable")
        self.inner.publish(entries)


def test_a_failed_publish_keeps_the_events_for_the_next_drain(settings, store, given):
    committed = make_history(given, orders=6)
    publisher = FailingPublisher(EventLogPublisher(settings.event_log_path), fail_on_call=2)
    relay = Relay(store, publisher, batch_size=4)
    with pytest.raises(PublishError):
        relay.drain()
    assert store.counts()["outbox_pending"] == committed - 4
    assert relay.drain() == committed - 4
    assert assert_complete_and_ordered(settings, store) == 0


def test_follow_survives_an_unreachable_bus_and_stops_when_asked(settings, store, given, caplog):
    committed = make_history(given, orders=3)
    publisher = FailingPublisher(EventLogPublisher(settings.event_log_path), fail_on_call=1)
    stop = threading.Event()
    follower = threading.Thread(target=lambda: totals.append(Relay(store, publisher).follow(stop, 0.05)))
    totals: list[int] = []
    follower.start()
    deadline = time.monotonic() + 30
    while store.counts()["outbox_pending"] and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    follower.join(10)
    assert totals == [committed] and publisher.calls >= 2
    assert "bus unreachable" in caplog.text  # logged as a warning (the CLI's log goes to stderr)
    assert assert_complete_and_ordered(settings, store) == 0


class CrashAfterPublish(Exception):
    pass


class CrashingAfterPublishing(Publisher):
    """Publishes, then dies before the relay can acknowledge: the widest window for a duplicate."""

    def __init__(self, inner: Publisher):
        self.inner = inner

    def publish(self, entries: list[OutboxEntry]) -> None:
        self.inner.publish(entries)
        raise CrashAfterPublish


def test_a_crash_between_publish_and_acknowledge_only_duplicates(settings, store, given):
    committed = make_history(given, orders=6)
    with pytest.raises(CrashAfterPublish):
        Relay(
            store, CrashingAfterPublishing(EventLogPublisher(settings.event_log_path)), batch_size=5
        ).drain()
    assert Relay(store, EventLogPublisher(settings.event_log_path), batch_size=5).drain() == committed
    assert assert_complete_and_ordered(settings, store) == 5


def test_relay_killed_mid_drain_loses_and_reorders_nothing(settings, store, given):
    committed = make_history(given, orders=60)
    command = [
        sys.executable,
        "-m",
        "cqrs_orders.cli",
        "relay",
        "--batch-size",
        "4",
        "--warehouse",
        str(settings.warehouse),
    ]
    kills = 0
    for target in (0.85, 0.65, 0.45):  # kill when this share of the outbox is still pending
        relay = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while store.counts()["outbox_pending"] > committed * target and relay.poll() is None:
            assert time.monotonic() < deadline, "the relay made no progress"
            time.sleep(0.01)
        os.kill(relay.pid, signal.SIGKILL)
        relay.wait()
        kills += 1
        assert relay.returncode == -signal.SIGKILL
        assert 0 < store.counts()["outbox_pending"] < committed  # it really stopped mid-drain
    # More commands arrive while no relay runs, then a fresh relay finishes the job.
    given.step("CancelOrder", "order-0", reason="changed mind")
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert finished.stdout.startswith("published ")
    assert store.counts()["outbox_pending"] == 0
    duplicates = assert_complete_and_ordered(settings, store)
    print(f"relay killed {kills} times: {committed + 1} events, {duplicates} re-delivered duplicates")
    assert duplicates <= kills * 4  # at most the batch in flight at each kill


class RecordingPublisher(Publisher):
    """Publishes through ``inner`` and notes when, and how many events, each publish carried."""

    def __init__(self, inner: Publisher):
        self.inner = inner
        self.sets: list[tuple[float, int]] = []

    def publish(self, entries: list[OutboxEntry]) -> None:
        self.inner.publish(entries)
        self.sets.append((time.monotonic(), len(entries)))


def test_a_following_relay_publishes_a_trickle_in_sets_and_a_backlog_at_once(
    settings, store, given, monkeypatch
):
    """Commands committed one by one go out together at most every MIN_PUBLISH_INTERVAL_SECONDS (each a
    small commit on the bus otherwise), still within a fraction of a second; a backlog of full batches is
    not held back.

    What is asserted is the relay's decisions (when it waits, how far apart its sets are), not how fast
    this machine publishes: on a loaded machine a publish may take longer than the interval."""
    from cqrs_orders.application import relay as relay_module
    from cqrs_orders.application.relay import MIN_PUBLISH_INTERVAL_SECONDS

    waits: list[tuple[int, float]] = []  # (sets published so far, seconds) for each wait the relay made
    real_sleep = time.sleep

    class _Time:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            waits.append((len(publisher.sets), seconds))
            real_sleep(seconds)

    monkeypatch.setattr(relay_module, "time", _Time())
    backlog = make_history(given, orders=10)
    publisher = RecordingPublisher(EventLogPublisher(settings.event_log_path))
    stop = threading.Event()
    follower = threading.Thread(target=lambda: Relay(store, publisher, batch_size=8).follow(stop, 0.05))
    follower.start()
    try:
        deadline = time.monotonic() + 60
        while store.counts()["outbox_pending"] and time.monotonic() < deadline:
            time.sleep(0.005)
        full = [count for _, count in publisher.sets]
        assert sum(full) == backlog and full[: backlog // 8] == [8] * (backlog // 8)
        paced = [sets for sets, _ in waits if sets < backlog // 8]
        assert paced == [], "the relay waited before a full set of the backlog"

        trickle_start, committed = len(publisher.sets), []
        for number in range(12):  # one command every ~20 ms, as at 50 commands a second
            given.customer(f"trickle-{number}")
            committed.append(time.monotonic())
            time.sleep(0.02)
        while store.counts()["outbox_pending"] and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        stop.set()
        follower.join(10)
    trickle = publisher.sets[trickle_start:]
    assert sum(count for _, count in trickle) == 12
    gaps = [later - earlier for (earlier, _), (later, count) in itertools.pairwise(trickle) if count < 8]
    assert all(gap >= MIN_PUBLISH_INTERVAL_SECONDS * 0.9 for gap in gaps), trickle
    if committed[-1] - committed[0] < 11 * MIN_PUBLISH_INTERVAL_SECONDS:  # faster than one per interval
        assert len(trickle) < 12, trickle
    assert [seconds for sets, seconds in waits if sets >= trickle_start], "the trickle was never paced"
    assert trickle[-1][0] - committed[-1] < 2.0  # a bound far above the interval, met on a loaded machine
    assert assert_complete_and_ordered(settings, store) == 0


def test_relay_from_a_time_publishes_again_what_was_committed_since(cli, settings, store, given):
    """``cqrs-orders relay --from TIME`` (the runbook for a bus that lost events): the events committed at
    or after TIME go out once more, the same events (ids), in version order, and nothing earlier."""
    given.customer("cust-early")
    assert cli("relay").stdout == "published 1 events\n"
    time.sleep(0.01)
    since = datetime.now(timezone.utc)
    given.customer("cust-late")
    given.order("order-late", customer_id="cust-late")
    given.step("ConfirmOrder", "order-late")
    assert cli("relay").stdout == "published 3 events\n"

    result = cli("relay", "--from", since.isoformat().replace("+00:00", "Z"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("published 3 events (from ")
    by_aggregate, total = log_by_aggregate(settings)
    assert total == 7
    assert [version for _, version in by_aggregate["order-late"]] == [1, 2, 1, 2]  # sent twice, in order
    assert len(by_aggregate["cust-early"]) == 1  # committed before TIME: not again
    assert len({event_id for event_id, _ in by_aggregate["order-late"]}) == 2  # the same two events
    assert cli("relay").stdout == "published 0 events\n"  # the position is back where it was


def test_relay_from_refuses_a_time_it_cannot_read_and_a_held_lease(cli, store, capsys):
    with pytest.raises(SystemExit) as refused:  # argparse's usage error
        cli("relay", "--from", "yesterday")
    assert refused.value.code == 2 and "is not a time" in capsys.readouterr().err
    with store.relay_guard("the app's relay"):
        busy = cli("relay", "--from", "2026-03-01")
    assert busy.exit_code == 2
    assert "Nothing was republished" in busy.stderr and "the app's relay" in busy.stderr
