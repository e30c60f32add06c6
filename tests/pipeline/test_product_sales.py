"""``silver_product_sales``, a read model on another key than an aggregate id, kept incrementally exact.

Its rows must always equal the aggregate computed directly from ``silver_orders`` (orders not cancelled,
per SKU and currency): after every batch, whatever the duplicates, the order of versions across batches,
a replayed batch, a crash between its write and ``silver_orders``' write, and SKUs leaving an order (an
item removed, an order cancelled: sales taken back, a last sale time falling back to an earlier order).
``rebuild`` recomputes it whole and gives the same rows. One warehouse, one sequence of batches.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from chispa import assert_df_equality

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table, table
from cqrs_orders.envelope import LineItem, OrderState, new_event
from cqrs_orders.pipeline import idempotency
from cqrs_orders.pipeline.read_models import SILVER_ORDERS, SILVER_PRODUCT_SALES
from cqrs_orders.pipeline.rebuild import rebuild
from cqrs_orders.pipeline.silver import _writer_session, latest_per_aggregate, merge_aggregate
from cqrs_orders.pipeline.tables import ensure_tables

SALES = SILVER_PRODUCT_SALES.table


def order(order_id: str, version: int, items: dict[str, int], status: str = "Created", currency: str = "EUR",
          created: str = "2025-01-15T10:00:00Z", event_type: str = "OrderItemAdded") -> str:  # fmt: skip
    """An Order event carrying its full state: ``items`` maps SKU -> quantity (unit price 2.50)."""
    state = OrderState(
        orderId=order_id,
        customerId="cust-1",
        status=status,
        items=[LineItem(sku=sku, quantity=quantity, price="2.50") for sku, quantity in items.items()],
        currency=currency,
        createdAt=created,
        updatedAt=f"2025-01-15T11:{version:02d}:00Z",
    )
    at = datetime(2025, 1, 15, 11, version, tzinfo=timezone.utc)
    return new_event(event_type, state, version, at=at).model_copy(update={"eventId": uuid.uuid4()}).to_json()


def sales(spark, settings):
    """The table's rows as they are now, without the projection time."""
    rows = table(settings, SALES).read(spark).drop("projected_at")
    return spark.createDataFrame(rows.collect(), rows.schema)


def expected(spark, settings):
    """The aggregate computed directly from ``silver_orders`` as it is now."""
    rows = SILVER_PRODUCT_SALES.recompute(table(settings, SILVER_ORDERS.table).read(spark)).drop(
        "projected_at"
    )
    return spark.createDataFrame(rows.collect(), rows.schema)


def assert_exact(spark, settings) -> None:
    assert_df_equality(
        sales(spark, settings), expected(spark, settings), ignore_row_order=True, ignore_nullable=True
    )


@pytest.fixture(scope="module")
def run(spark, batches, tmp_path_factory):
    """Batches of shuffled, duplicated and superseded Order events through the real micro-batch function
    (bronze and silver); facts checked after each one."""
    root = tmp_path_factory.mktemp("product_sales")
    settings = Settings.from_env(warehouse=root / "warehouse", env={})
    ensure_tables(spark, settings)
    writer = idempotency.app_id(str(root / "checkpoint"))
    late = "2025-01-16T08:00:00Z"
    a1 = order("A", 1, {"X": 2, "Y": 1}, event_type="OrderCreated")
    a2 = order("A", 2, {"X": 2, "Y": 1}, "Confirmed")
    a3 = order("A", 3, {"X": 2, "Y": 1}, "Cancelled", event_type="OrderCancelled")
    b1 = order("B", 1, {"X": 1}, currency="USD", event_type="OrderCreated")
    b2 = order("B", 2, {"X": 1, "Z": 4}, currency="USD")
    c1 = order("C", 1, {"X": 3, "Y": 2}, created=late, event_type="OrderCreated")
    c2 = order("C", 2, {"Y": 2}, created=late, event_type="OrderItemRemoved")
    c3 = order("C", 3, {"Y": 2}, "Confirmed", created=late)
    facts, snapshots = {}, {}

    def project(batch_id: int, *bodies: str) -> None:
        batches.project(settings, batch_id, *bodies, writer=writer, first_offset=100 * batch_id)

    project(0, a1, b2, b1, a1)  # B's versions reversed in one batch; A twice
    facts["after 0"] = (sales(spark, settings), expected(spark, settings))
    project(1, c1, b1, a1)  # B's older version and A again: both lose
    facts["after 1"] = (sales(spark, settings), expected(spark, settings))
    snapshots["X after 1"] = sales(spark, settings).where("sku = 'X' AND currency = 'EUR'").first()
    project(2, c2)  # C's X removed: X's latest sale in EUR, which must fall back to A's
    facts["after 2"] = (sales(spark, settings), expected(spark, settings))
    before_replay = sales(spark, settings).collect()
    project(2, c2, c3)  # a crash after batch 2's writes replays it (c3 shows a wrongly applied write)
    facts["replay changes nothing"] = sales(spark, settings).collect() == before_replay
    project(3, a3, c2, c2)  # A cancelled; C's duplicates
    facts["after 3"] = (sales(spark, settings), expected(spark, settings))

    # A crash between the two writes of batch 4: silver_product_sales committed, silver_orders not. The
    # replay must skip the first (its transaction id) and write the second. A's version 2 arrives after its
    # cancellation, and loses.
    batch_4 = (c3, a2)
    latest = SILVER_ORDERS.project(
        latest_per_aggregate(batches.bronze(*batch_4, first_offset=400), SILVER_ORDERS.aggregate_type.value)
    )
    session = _writer_session(spark, SALES)
    with idempotency.transaction_id(session, writer, SALES, 4):
        merge_aggregate(session, settings, SILVER_PRODUCT_SALES, latest)
    facts["half written"] = Table(settings.table(SALES)).version(spark)
    project(4, *batch_4)
    facts["after 4"] = (sales(spark, settings), expected(spark, settings))
    facts["replay skipped the written half"] = (
        Table(settings.table(SALES)).version(spark) == facts["half written"]
    )
    incremental = sales(spark, settings)
    rebuilt = rebuild(spark, settings)
    return settings, facts, snapshots, incremental, rebuilt


@pytest.mark.parametrize("step", ["after 0", "after 1", "after 2", "after 3", "after 4"])
def test_every_batch_leaves_the_aggregate_of_silver_orders(run, step):
    _, facts, _, _, _ = run
    actual, wanted = facts[step]
    assert_df_equality(actual, wanted, ignore_row_order=True, ignore_nullable=True)


def test_the_figures_are_those_of_the_orders_not_cancelled(run):
    _, facts, snapshots, _, _ = run
    rows = {(r.sku, r.currency): (r.units, r.revenue, r.orders) for r in facts["after 4"][0].collect()}
    # A is cancelled, C lost X: X is left with B's unit in USD, Y with C's two units.
    assert rows == {
        ("X", "USD"): (1, Decimal("2.50"), 1),
        ("Z", "USD"): (4, Decimal("10.00"), 1),
        ("Y", "EUR"): (2, Decimal("5.00"), 1),
    }
    # After batch 1, X in EUR came from A (2 units) and C (3, the later order): repeats counted once.
    assert (snapshots["X after 1"].units, snapshots["X after 1"].orders) == (5, 2)
    assert snapshots["X after 1"].last_sale_at == datetime(2025, 1, 16, 8, 0)


def test_a_removed_latest_sale_falls_back_to_the_earlier_one(run):
    _, facts, _, _, _ = run
    after_removal = {(r.sku, r.currency): r for r in facts["after 2"][0].collect()}
    x = after_removal[("X", "EUR")]
    assert (x.units, x.orders, x.last_sale_at) == (2, 1, datetime(2025, 1, 15, 10, 0))
    after_cancel = {(r.sku, r.currency) for r in facts["after 3"][0].collect()}
    assert ("X", "EUR") not in after_cancel  # no order holds X in EUR any more: the row is gone


def test_replays_change_nothing_and_a_half_written_batch_completes(run):
    _, facts, _, _, _ = run
    assert facts["replay changes nothing"]
    assert facts["replay skipped the written half"]


def test_rebuild_recomputes_what_the_increments_built(spark, run):
    settings, _, _, incremental, rebuilt = run
    assert rebuilt[SALES] == incremental.count() == 3
    assert_df_equality(sales(spark, settings), incremental, ignore_row_order=True, ignore_nullable=True)
