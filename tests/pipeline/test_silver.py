"""Silver projections, one micro-batch at a time (``apply_batch`` as ``foreachBatch`` calls it).

Covers what a real bus does to a projection: several events of one aggregate in one batch, versions out of
order across batches, redelivered events, a replayed batch after a crash, a reset checkpoint, and two
different events claiming the same version. One warehouse, one sequence of batches, one aggregate per
scenario (Delta commits are the slow part on a busy machine).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table
from cqrs_orders.pipeline import idempotency
from cqrs_orders.pipeline.batch_rows import release
from cqrs_orders.pipeline.gold import GoldRefresher, daily_order_metrics
from cqrs_orders.pipeline.history import read_output
from cqrs_orders.pipeline.progress import ProgressRecorder
from cqrs_orders.pipeline.silver import apply_batch
from cqrs_orders.pipeline.tables import SCHEMAS, ensure_tables


def table(spark, settings, name: str, aggregate_id: str | None = None):
    rows = read_output(spark, settings, name).drop("projected_at", "ingest_time")
    if aggregate_id is None:
        return rows
    key = {"silver_orders": "order_id", "silver_customers": "customer_id"}.get(name, "aggregate_id")
    return rows.where(rows[key] == aggregate_id)


def expected_order(spark, body: str, quantity: int):
    """The silver_orders row (without projected_at) that the order event ``body`` must produce."""
    event = json.loads(body)
    total = Decimal("2.50") * quantity + Decimal("10.00")
    row = (
        event["aggregateId"], "cust-1", event["data"]["status"],
        [("SKU-1", quantity, Decimal("2.50")), ("SKU-2", 1, Decimal("10.00"))], quantity + 1, total, "EUR",
        datetime(2025, 1, 15, 10, 0), datetime.fromisoformat(event["data"]["updatedAt"][:-1]),
        event["version"],
        event["eventId"], event["eventType"], datetime.fromisoformat(event["timestamp"][:-1]), None,
    )  # fmt: skip
    return spark.createDataFrame([row], SCHEMAS["silver_orders"]).drop("projected_at")


@pytest.fixture(scope="module")
def run(spark, events, batches, tmp_path_factory):
    """Three batches, a replay of the last one after a "crash", then a reset checkpoint; facts on the way.

    A: three events in one batch, shuffled.  B: versions 3, 1, 2 in three batches.  C: one event three
    times (twice in batch 0, once in batch 1).  D: version 2 claimed by two different events.
    E: the replayed batch's content, which must not land until the checkpoint is reset.
    """
    order, root = events.order, tmp_path_factory.mktemp("silver")
    settings = Settings.from_env(warehouse=root / "warehouse", env={})
    ensure_tables(spark, settings)
    small, large = uuid.UUID(int=1), uuid.UUID(int=2)
    bodies = {
        "a": [
            order("A", 2, "Confirmed", 2, "OrderConfirmed"),
            order("A", 1),
            order("A", 3, "Shipped", 2, "OrderShipped"),
        ],
        "customers": [events.customer(), events.customer(version=2, name="Ada L.")],
        "b": {v: order("B", v, "Confirmed" if v > 1 else "Created", v) for v in (1, 2, 3)},
        "c": order("C"),
        "d1": order("D"),
        "d_large": order("D", 2, "Confirmed", event_id=large),
        "d_small": order("D", 2, "Cancelled", event_type="OrderCancelled", event_id=small),
        "e": order("E"),
    }  # fmt: skip
    checkpoint = str(root / "checkpoint")
    writer = idempotency.app_id(checkpoint)
    facts = {"stable_app_id": idempotency.app_id(checkpoint) == writer}
    batches.project(
        settings,
        0,
        *bodies["a"],
        *bodies["customers"],
        bodies["b"][3],
        bodies["c"],
        bodies["c"],
        bodies["d1"],
        bodies["d_large"],
        writer=writer,
    )
    batches.project(
        settings, 1, bodies["b"][1], bodies["c"], bodies["d_small"], writer=writer, first_offset=100
    )
    batches.project(settings, 2, bodies["b"][2], writer=writer, first_offset=200)
    before_replay = {
        name: table(spark, settings, name).collect() for name in ("silver_orders", "silver_event_history")
    }
    # A crash after the writes of batch 2 but before its checkpoint commit replays batch 2: Delta must skip
    # it. (The replay carries E only to make a wrongly applied write visible; a real replay repeats rows.)
    batches.project(settings, 2, bodies["e"], writer=writer, first_offset=300)
    facts["unchanged_by_replay"] = before_replay == {
        name: table(spark, settings, name).collect() for name in ("silver_orders", "silver_event_history")
    }
    idempotency.reset(checkpoint)  # batch ids restart at 0, under a new app id
    facts["new_app_id"] = idempotency.app_id(checkpoint) != writer
    batches.project(settings, 0, bodies["e"], writer=idempotency.app_id(checkpoint), first_offset=400)
    return settings, bodies, facts, (small, large)


def test_several_events_of_one_aggregate_in_one_batch_keep_the_highest_version(spark, run):
    settings, bodies, _, _ = run
    assert_df_equality(
        table(spark, settings, "silver_orders", "A"),
        expected_order(spark, bodies["a"][2], 2),
        ignore_nullable=True,
    )
    customers = table(spark, settings, "silver_customers").select("customer_id", "customer_name", "version")
    assert [tuple(r) for r in customers.collect()] == [("cust-1", "Ada L.", 2)]
    history = table(spark, settings, "silver_event_history", "A").select("version", "version_conflict")
    assert sorted(tuple(r) for r in history.collect()) == [(1, False), (2, False), (3, False)]


def test_versions_arriving_3_1_2_across_batches_end_at_3(spark, run):
    settings, bodies, _, _ = run
    assert_df_equality(
        table(spark, settings, "silver_orders", "B"),
        expected_order(spark, bodies["b"][3], 3),
        ignore_nullable=True,
    )
    assert sorted(r["version"] for r in table(spark, settings, "silver_event_history", "B").collect()) == [
        1,
        2,
        3,
    ]


def test_the_same_event_three_times_changes_nothing(spark, run):
    settings, bodies, _, _ = run
    assert_df_equality(
        table(spark, settings, "silver_orders", "C"),
        expected_order(spark, bodies["c"], 1),
        ignore_nullable=True,
    )
    history = table(spark, settings, "silver_event_history", "C").collect()
    assert [(r["event_id"], r["source_offset"]) for r in history] == [(json.loads(bodies["c"])["eventId"], 6)]


def test_two_different_events_for_one_version_are_flagged_and_resolved_by_event_id(spark, run):
    settings, _, _, (small, large) = run
    orders = (
        table(spark, settings, "silver_orders", "D").select("status", "version", "last_event_id").collect()
    )
    assert [tuple(r) for r in orders] == [
        ("Cancelled", 2, str(small))
    ]  # arrived later, but the smaller id wins
    history = table(spark, settings, "silver_event_history", "D").select(
        "version", "event_id", "version_conflict"
    )
    flags = sorted((r["version"], r["event_id"], r["version_conflict"]) for r in history.collect())
    assert flags[1:] == [(2, str(small), True), (2, str(large), True)]
    assert flags[0][0] == 1 and flags[0][2] is False


def test_a_replayed_batch_changes_nothing_but_a_reset_checkpoint_still_writes(spark, run):
    settings, bodies, facts, _ = run
    assert facts == {"stable_app_id": True, "unchanged_by_replay": True, "new_app_id": True}
    assert_df_equality(
        table(spark, settings, "silver_orders", "E"),
        expected_order(spark, bodies["e"], 1),
        ignore_nullable=True,
    )


def test_daily_metrics_count_every_order_but_cancelled_ones(spark):
    orders = spark.createDataFrame(
        [
            ("o1", "c1", "Created", Decimal("10.00"), datetime(2025, 1, 15, 0, 0)),
            ("o2", "c1", "Shipped", Decimal("5.01"), datetime(2025, 1, 15, 23, 59, 59)),
            ("o3", "c2", "Cancelled", Decimal("99.00"), datetime(2025, 1, 15, 12, 0)),
            ("o4", "c2", "Delivered", Decimal("1.00"), datetime(2025, 1, 16, 8, 0)),
        ],
        "order_id string, customer_id string, status string, total_amount decimal(18,2), "
        "created_at timestamp",
    )
    assert_df_equality(
        daily_order_metrics(orders),
        spark.createDataFrame(
            [
                (datetime(2025, 1, 15).date(), 2, Decimal("15.01"), Decimal("7.51"), 1),
                (datetime(2025, 1, 16).date(), 1, Decimal("1.00"), Decimal("1.00"), 1),
            ],
            SCHEMAS["gold_daily_order_metrics"],
        ),
        ignore_nullable=True,
        ignore_row_order=True,
    )


def test_gold_is_refreshed_when_silver_changed_and_equals_a_full_recompute(spark, events, batches, tmp_path):
    """An order moving to another day and one cancelled (its day left empty): gold follows silver exactly,
    and an unchanged silver costs no refresh."""
    settings = Settings.from_env(warehouse=tmp_path / "warehouse", env={})
    ensure_tables(spark, settings)
    refresher = GoldRefresher(spark, settings)
    first = [
        events.order("G1", created="2025-01-15T10:00:00Z"),
        events.order("G2", created="2025-01-16T10:00:00Z"),
        events.order("G3", created="2025-01-17T10:00:00Z"),
    ]
    batches.project(settings, 0, *first, writer="gold")
    assert refresher.refresh_if_changed() is True
    days = [r["order_date"].isoformat() for r in table(spark, settings, "gold_daily_order_metrics").collect()]
    assert sorted(days) == ["2025-01-15", "2025-01-16", "2025-01-17"]
    gold_version = Table(settings.table("gold_daily_order_metrics")).version(spark)
    assert refresher.refresh_if_changed() is False  # silver unchanged: gold is not rewritten
    assert Table(settings.table("gold_daily_order_metrics")).version(spark) == gold_version

    moved = events.order("G1", 2, "Confirmed", created="2025-01-18T10:00:00Z")
    cancelled = events.order(
        "G2", 2, "Cancelled", event_type="OrderCancelled", created="2025-01-16T10:00:00Z"
    )
    batches.project(settings, 1, moved, cancelled, writer="gold", first_offset=10)
    assert refresher.refresh_if_changed() is True
    assert_df_equality(
        Table(settings.table("gold_daily_order_metrics")).read(spark),
        daily_order_metrics(Table(settings.table("silver_orders")).read(spark)),
        ignore_nullable=True,
        ignore_row_order=True,
    )
    days = [r["order_date"].isoformat() for r in table(spark, settings, "gold_daily_order_metrics").collect()]
    assert sorted(days) == ["2025-01-17", "2025-01-18"]


def test_writers_beside_the_batches_leave_the_batch_transaction_id_alone(spark, events, batches, tmp_path):
    """Gold's refresh and the progress recorder run on other threads while a batch holds a transaction id
    in the session confs: their writes must neither consume it nor be recorded under it."""
    settings = Settings.from_env(warehouse=tmp_path / "warehouse", env={})
    ensure_tables(spark, settings)
    batches.project(settings, 0, events.order("T1"), writer="beside")
    recorder = ProgressRecorder(spark, settings, ("beside",), write_every_seconds=0)
    with recorder, idempotency.transaction_id(spark, "batch-app", "silver_orders", 7):
        assert GoldRefresher(spark, settings).refresh_if_changed() is True
        recorder._rows.put(("beside", "run-1", 7, *[None] * 8, datetime(2025, 1, 15)))  # as a listener would
        recorder.flush()
        assert spark.conf.get(idempotency.TXN_VERSION, None) == "7"  # still there for the batch's MERGE
    for name in ("gold_daily_order_metrics", "ops_stream_progress"):
        assert Table(settings.table(name)).read(spark).count() == 1, name
        commits = (Path(settings.table(name).path) / "_delta_log").glob("*.json")
        txns = [line for commit in commits for line in commit.read_text().splitlines() if '"txn"' in line]
        assert txns == [], name  # a write recorded under the batch's id would skip the next one under it


def test_a_batch_frees_the_rows_it_validated_once_its_writes_are_done(spark, events, batches, tmp_path):
    """The batch's rows are a local checkpoint that every write reads; the batch frees it at its end rather
    than leaving it to the driver's garbage collector (a 1,000,000-event batch holds ~0.9 GB there). The
    rebuild's path (``apply_batch`` checkpointing bronze rows itself) frees its own too."""
    settings = Settings.from_env(warehouse=tmp_path / "warehouse", env={})
    ensure_tables(spark, settings)
    storage = spark.sparkContext._jsc.sc()

    def held() -> set[int]:  # Delta keeps each table's log state cached: that is not the batch's
        return {rdd.id() for rdd in storage.getRDDStorageInfo() if not rdd.name().startswith("Delta Table")}

    before = held()
    batches.project(settings, 0, events.order("F1"), events.order("F2"), "not json", writer="frees")
    assert held() - before == set()
    assert [
        read_output(spark, settings, name).count() for name in ("bronze_events", "bronze_quarantine")
    ] == [2, 1]
    apply_batch(batches.bronze(events.order("F3")), 1, settings, "frees-rebuild")
    assert held() - before == set()
    assert sorted(r["order_id"] for r in read_output(spark, settings, "silver_orders").collect()) == [
        "F1",
        "F2",
        "F3",
    ]


def test_a_checkpoint_that_cannot_be_freed_does_not_fail_the_batch(caplog):
    """Where the JVM refuses the call (a cluster's access mode), the batch goes on and says so."""

    class Refused:
        def queryExecution(self):
            raise RuntimeError("method not whitelisted")

    class Rows:
        _jdf = Refused()

    release(Rows())
    assert "could not free the batch's checkpointed rows (method not whitelisted)" in caplog.text
