"""The exactly-once edges of a rebuild: a projection SIGKILLed mid-batch, then ``rebuild``, then a restart
must leave silver exact, wherever in the batch the kill landed.

A micro-batch writes silver (the read models' MERGEs) and bronze (an append on its own thread), then Spark
commits it in the checkpoint; each write is skipped when replayed (Delta transaction ids). So a batch cut
short between silver and bronze left events in silver that bronze lacks: a rebuild from bronze alone would
drop them, and the replay would then skip their MERGE. ``rebuild`` therefore finishes the checkpoint first
when no projection runs. The child process is the real ``project --once``, with one step of its batch
replaced by "do it, then SIGKILL myself" (or "SIGKILL myself before it"):

* ``silver only``: the MERGEs committed, the bronze append never ran;
* ``bronze only``: the bronze append committed, the MERGEs never ran;
* ``both``: every write committed, the checkpoint's commit did not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from chispa import assert_df_equality

from cqrs_orders.delta_io import table
from cqrs_orders.pipeline.bronze import to_bronze, validate_records
from cqrs_orders.pipeline.gold import GOLD_TABLE, daily_order_metrics
from cqrs_orders.pipeline.rebuild import build_generation
from cqrs_orders.pipeline.runner import CHECKPOINT, STATE_CHECKS

#: Run in the child: replace one step of the batch, then run ``project --once`` (argv: warehouse, step).
CHILD = """
import os, signal, sys, threading, time
from pathlib import Path
from cqrs_orders.cli import main
from cqrs_orders.pipeline import runner

warehouse, step = sys.argv[1], sys.argv[2]
def die():
    os.kill(os.getpid(), signal.SIGKILL)

merge, append, batch = runner.apply_batch, runner._append, runner.project_batch
if step == "silver only":
    runner._append = lambda *args: threading.Event().wait()  # never appends
    runner.apply_batch = lambda *args, **kwargs: (merge(*args, **kwargs), die())
elif step == "bronze only":
    appended = Path(warehouse) / "bronze_events" / "_delta_log" / f"{1:020d}.json"
    def merge_after_bronze(*args, **kwargs):
        while not appended.exists():
            time.sleep(0.05)
        die()
    runner.apply_batch = merge_after_bronze
else:
    runner.project_batch = lambda *args: (lambda frame, batch_id: (batch(*args)(frame, batch_id), die()))
sys.exit(main(["project", "--once", "--warehouse", warehouse]))
"""


def bodies(events) -> list[str]:
    order, customer = events.order, events.customer
    redelivered = order("order-2", quantity=5)
    return [
        customer("cust-1"),
        order("order-1"),
        order("order-1", 3, "Shipped", 3, "OrderShipped"),
        order("order-1", 2, "Confirmed", 2, "OrderConfirmed"),
        redelivered,
        redelivered,  # the same event twice
    ]


def ingest(cli, tmp_path: Path, name: str, lines: list[str]) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(f"{line}\n" for line in lines))
    assert cli("ingest-events", "--file", str(path)).exit_code == 0


def frozen(spark, rows):
    rows = rows.drop("projected_at", "ingest_time")
    return spark.createDataFrame(rows.collect(), rows.schema)


@pytest.mark.parametrize("step", ["silver only", "bronze only", "both"])
def test_a_kill_mid_batch_then_a_rebuild_then_a_restart_leaves_silver_exact(
    spark, spark_process, settings, cli, events, tmp_path, step
):
    ingest(cli, tmp_path, "first", bodies(events))
    output = tmp_path / "child.log"
    with output.open("w") as written:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(settings.warehouse), step],
            env={**spark_process, "CQRS_SPARK_DRIVER_MEMORY": "1g"},
            stdout=written,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Spark's JVM goes with it
        )
    try:
        code = child.wait(900)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    assert code == -signal.SIGKILL, output.read_text()[-3000:]  # killed itself where it was told
    checkpoint = Path(settings.checkpoint(CHECKPOINT))
    assert (checkpoint / "offsets" / "0").exists() and not (checkpoint / "commits" / "0").exists()

    rebuilt = cli("rebuild")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout.splitlines()[-1])["silver_orders"] == 2
    late = events.order("order-2", 2, "Cancelled", 5, "OrderCancelled")
    ingest(cli, tmp_path, "late", [late])
    restarted = cli("project", "--once")
    assert restarted.exit_code == 0, restarted.stderr

    log = spark.read.format("delta").load(str(settings.event_log_path))
    validated = validate_records(log, STATE_CHECKS).localCheckpoint()  # stored, as the runner does
    bronze = to_bronze(validated, datetime.now(timezone.utc))
    expected = {name: frozen(spark, rows) for name, rows in build_generation(bronze).items()}
    expected[GOLD_TABLE] = frozen(spark, daily_order_metrics(expected["silver_orders"]))
    expected["bronze_events"] = frozen(spark, bronze)
    for name, rows in expected.items():
        try:
            actual = frozen(spark, table(settings, name).read(spark))
            assert_df_equality(actual, rows, ignore_nullable=True, ignore_row_order=True)
        except AssertionError as error:
            raise AssertionError(f"{name} differs after a kill ({step}): {error}") from None
    orders = {r["order_id"]: (r["status"], r["version"]) for r in expected["silver_orders"].collect()}
    assert orders == {"order-1": ("Shipped", 3), "order-2": ("Cancelled", 2)}
