"""The edges of ``rebuild`` and ``rebuild --rollback`` that a crash or time brings: a rebuild SIGKILLed in the
middle of its publish, a rollback once VACUUM has deleted the old versions' files, and a rollback two
rebuilds back.

A rebuild here mostly publishes a generation with a defect the check cannot see (keys and versions right,
one column upper-cased), so that its tables differ from those before it: that is what tells a half-published
table, a restored one and one rebuilt again apart. Tiny data through the real micro-batch function, as
``test_rebuild``; no projection runs, so each rebuild and rollback first drains the (empty) checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import table
from cqrs_orders.errors import RebuildError
from cqrs_orders.pipeline import checkpoint_lock, pause
from cqrs_orders.pipeline import rebuild as rebuilding
from cqrs_orders.pipeline.gold import GOLD_TABLE, daily_order_metrics
from cqrs_orders.pipeline.read_models import READ_MODELS, SILVER_CUSTOMERS, SILVER_ORDERS
from cqrs_orders.pipeline.runner import CHECKPOINT

from . import test_rebuild
from .test_rebuild import WRITER, assert_tables, exact, now

#: Two customers and three orders, projected as one micro-batch (``test_rebuild``'s fixture).
projected = test_rebuild.projected

#: Run in the child: the real ``cqrs-orders rebuild`` (argv: warehouse), publishing a generation whose order
#: statuses are upper-cased, and stopping for good once its first table's overwrite has committed (the parent
#: SIGKILLs it there: between the overwrites, before "published" is recorded).
CHILD = """
import sys, threading
from pyspark.sql import functions as F
from cqrs_orders.cli import main
from cqrs_orders.pipeline import rebuild

built, overwrite = rebuild.build_generation, rebuild.retry_on_conflict

def upper_statuses(bronze):
    generation = built(bronze)
    orders = generation["silver_orders"].withColumn("status", F.upper("status"))
    return {**generation, "silver_orders": orders}

def stop_after_the_first_overwrite(step, what, *args, **kwargs):
    done = overwrite(step, what, *args, **kwargs)
    if what == rebuild.PUBLISHED[0]:
        threading.Event().wait()
    return done

rebuild.build_generation, rebuild.retry_on_conflict = upper_statuses, stop_after_the_first_overwrite
sys.exit(main(["rebuild", "--warehouse", sys.argv[1]]))
"""
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


def with_a_defect(monkeypatch, model, column: str) -> None:
    """The next rebuilds publish ``model``'s ``column`` upper-cased (a bug the check cannot see)."""
    built = rebuilding.build_generation

    def defective(bronze):
        generation = built(bronze)
        rows = generation[model.table].withColumn(column, F.upper(column))
        return {**generation, model.table: rows}

    monkeypatch.setattr(rebuilding, "build_generation", defective)


def upper(expected: dict, model, column: str, keys: set[str]) -> dict:
    """``expected`` with ``model``'s ``column`` upper-cased on the rows of ``keys``, and gold recomputed from
    the orders that gives."""
    chosen = F.col(model.key[0]).isin(*keys)
    rows = expected[model.table].withColumn(column, F.when(chosen, F.upper(column)).otherwise(F.col(column)))
    changed = {**expected, model.table: rows}
    changed[GOLD_TABLE] = daily_order_metrics(changed[SILVER_ORDERS.table])
    return changed


def records(spark, settings) -> list[tuple[str, str]]:
    rows = table(settings, rebuilding.RECORDS).read(spark).orderBy("recorded_at").collect()
    return [(r["rebuild_id"], r["status"]) for r in rows]


def statuses(spark, settings) -> dict[str, str]:
    return {r["order_id"]: r["status"] for r in now(spark, settings, SILVER_ORDERS.table).collect()}


def later_events(batches, settings, events) -> None:
    """After the rebuild: an order is cancelled, another one placed (batch 1 of the fixture's writer). Gold
    is not refreshed: the next rebuild or rollback does it."""
    batches.project(
        settings,
        1,
        events.order("order-2", 2, "Cancelled", event_type="OrderCancelled", customer_id="cust-2"),
        events.order("order-4"),
        writer=WRITER,
        first_offset=6,
    )


def test_a_rebuild_killed_mid_publish_is_remedied_by_a_rebuild_or_a_rollback(
    spark, spark_process, projected, batches, events, cli, tmp_path
):
    settings = projected
    first = rebuilding.PUBLISHED[0]
    before = table(settings, first).version(spark)  # the drain writes no silver here: no event log
    committed = settings.warehouse / first / "_delta_log" / f"{before + 1:020d}.json"
    lock = settings.checkpoint(rebuilding.LOCK_FOLDER)

    output = tmp_path / "child.log"
    with output.open("w") as written:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(settings.warehouse)],
            env={**spark_process, "CQRS_SPARK_DRIVER_MEMORY": "1g"},
            stdout=written,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Spark's JVM goes with it
        )
    try:
        deadline = time.monotonic() + 600
        while not committed.exists():  # the first overwrite's commit: the publish has begun
            assert child.poll() is None, output.read_text()[-3000:]
            assert time.monotonic() < deadline, output.read_text()[-3000:]
            time.sleep(0.05)
        assert checkpoint_lock.held_elsewhere(lock) is True  # the rebuild holds its lock until ...
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(60) == -signal.SIGKILL
        assert checkpoint_lock.held_elsewhere(lock) is False  # ... the kernel releases it with the process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # its JVM

    # The killed warehouse twice: one for each remedy. The first one runs at once, within the killed
    # rebuild's pause request lease (30 s, renewed every 10 s: 20 s or more left).
    copy = Settings.from_env(warehouse=tmp_path / "copy" / "warehouse", env={})
    shutil.copytree(settings.warehouse, copy.warehouse)

    # (a) Rebuild again: the request left by the killed rebuild is taken over, not waited for.
    assert pause.is_requested(settings.checkpoint(CHECKPOINT))
    rebuilt = cli("rebuild")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert "taking over the pause request" in rebuilt.stderr
    assert_tables(spark, settings, exact(spark, settings))
    assert [s for _, s in records(spark, settings)] == ["started", "started", "published"]
    assert not pause.is_requested(settings.checkpoint(CHECKPOINT))  # withdrawn: a projection would resume

    # What the kill left: the first table holds the new generation, the last one the old, no "published".
    (started,) = table(copy, rebuilding.RECORDS).read(spark).collect()
    assert started["status"] == "started"
    recorded = dict(started["versions"])  # before the publish (after the drain: gold refreshed)
    assert rebuilding._versions(spark, copy) == {**recorded, first: recorded[first] + 1}
    assert set(statuses(spark, copy).values()) == {"CREATED", "CONFIRMED"}

    # (b) Or roll it back: every table at its version before the killed rebuild, plus the later events.
    later_events(batches, copy, events)
    rolled = rebuilding.rollback(spark, copy)
    assert rolled["rolled_back"] == started["rebuild_id"]
    assert rolled["restored_to"] == recorded
    assert_tables(spark, copy, exact(spark, copy))
    assert [status for _, status in records(spark, copy)] == ["started", "rolled_back"]
    assert statuses(spark, copy) == {
        "order-1": "Confirmed",
        "order-2": "Cancelled",
        "order-3": "Created",
        "order-4": "Created",
    }


@pytest.fixture
def no_retention_check(spark):
    """Delta refuses a VACUUM under 7 days' retention unless told not to: told, for this test only."""
    previous = spark.conf.get(RETENTION_CHECK, None)
    spark.conf.set(RETENTION_CHECK, "false")
    yield
    if previous is None:
        spark.conf.unset(RETENTION_CHECK)
    else:
        spark.conf.set(RETENTION_CHECK, previous)


def test_a_rollback_after_vacuum_is_refused_and_restores_nothing(
    spark, projected, monkeypatch, no_retention_check
):
    """The rebuild was run for a lost ``silver_orders`` (emptied by mistake): that empty version needs no
    file, nor gold's (refreshed from it), so those two could still be restored after the VACUUM; the other
    two cannot. A rollback that restored them before failing on another table would leave every order
    gone."""
    settings = projected
    table(settings, SILVER_ORDERS.table).delta(spark).delete()
    rebuilding.rebuild(spark, settings)
    for name in rebuilding.PUBLISHED:
        table(settings, name).delta(spark).vacuum(0)
    versions = rebuilding._versions(spark, settings)
    contents = {name: now(spark, settings, name) for name in rebuilding.PUBLISHED}
    assert contents[SILVER_ORDERS.table].count() == 3

    def unchanged() -> None:
        for name, rows in contents.items():
            try:
                actual = now(spark, settings, name)
                assert_df_equality(actual, rows, ignore_nullable=True, ignore_row_order=True)
            except AssertionError as error:
                raise AssertionError(f"{name} changed: {error}") from None
        assert "rolled_back" not in {s for _, s in records(spark, settings)}
        assert not pause.is_requested(settings.checkpoint(CHECKPOINT))

    with pytest.raises(RebuildError, match="run `cqrs-orders rebuild` again instead") as refused:
        rebuilding.rollback(spark, settings)
    message = str(refused.value)
    assert "silver_customers cannot be restored" in message and "FILE_NOT_EXIST" in message
    assert "silver_orders" not in message and "Nothing was restored" in message
    silver = [model.table for model in READ_MODELS]  # gold: refreshed by the drain, same rows, new version
    assert {name: versions[name] for name in silver} == {n: table(settings, n).version(spark) for n in silver}
    unchanged()

    # Had the files gone between that check and the restores: silver_orders and gold (empty before the
    # rebuild: no file needed) are restored, silver_customers fails, and the two are rolled forward.
    (started,) = table(settings, rebuilding.RECORDS).read(spark).where("status = 'started'").collect()
    monkeypatch.setattr(rebuilding, "_check_restorable", lambda *args: None)
    with pytest.raises(RebuildError, match="restored beside it are back as they were") as failed:
        rebuilding._restore_all(spark, settings, dict(started["versions"]))
    assert "silver_customers cannot be restored" in str(failed.value)
    assert table(settings, SILVER_ORDERS.table).version(spark) == versions[SILVER_ORDERS.table] + 2
    unchanged()


def test_two_rollbacks_undo_two_rebuilds_keeping_every_later_event(
    spark, projected, batches, events, monkeypatch
):
    """Rebuild A (customers' names wrong), events, rebuild B (order statuses wrong), events; each rollback
    brings back the generation before its rebuild, defects included, and re-applies every event bronze got
    since (a re-applied event that is already there changes nothing: the MERGE needs a higher version)."""
    settings = projected
    # Rebuild A publishes customers' names upper-cased; then events arrive.
    with_a_defect(monkeypatch, SILVER_CUSTOMERS, "customer_name")
    first = rebuilding.rebuild(spark, settings)
    monkeypatch.undo()
    later_events(batches, settings, events)
    names = {
        r["customer_id"]: r["customer_name"] for r in now(spark, settings, SILVER_CUSTOMERS.table).collect()
    }
    assert names == {"cust-1": "ADA", "cust-2": "BOB"}

    # Rebuild B publishes order statuses upper-cased (and the customers right again); more events arrive.
    with_a_defect(monkeypatch, SILVER_ORDERS, "status")
    second = rebuilding.rebuild(spark, settings)
    monkeypatch.undo()
    batches.project(
        settings,
        2,
        events.customer("cust-3", name="Cy"),
        events.order("order-1", 3, "Shipped", 2, "OrderShipped"),
        events.order("order-5", customer_id="cust-3"),
        writer=WRITER,
        first_offset=8,
    )
    assert statuses(spark, settings) == {
        "order-1": "Shipped",  # projected after B: right
        "order-2": "CANCELLED",
        "order-3": "CREATED",
        "order-4": "CREATED",
        "order-5": "Created",
    }

    # Undo B: A's generation comes back (names upper-cased), with every event since A applied on it.
    undone = rebuilding.rollback(spark, settings)
    assert undone["rolled_back"] == second["rebuild_id"]
    assert undone["restored_to"] == second["previous_versions"]
    assert_tables(
        spark,
        settings,
        upper(exact(spark, settings), SILVER_CUSTOMERS, "customer_name", {"cust-1", "cust-2"}),
    )

    # Undo A: the tables as the projection built them, with every event since.
    undone = rebuilding.rollback(spark, settings)
    assert undone["rolled_back"] == first["rebuild_id"]
    assert undone["restored_to"] == first["previous_versions"]
    assert_tables(spark, settings, exact(spark, settings))

    with pytest.raises(RebuildError, match="No rebuild to roll back"):
        rebuilding.rollback(spark, settings)
    assert [s for _, s in records(spark, settings)] == [
        "started",
        "published",
        "started",
        "published",
        "rolled_back",
        "rolled_back",
    ]
