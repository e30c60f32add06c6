"""The projection as it really runs: a streaming process killed mid-run and restarted, then a rebuild.

One scenario (Spark's streaming queries are slow to start on a busy machine, so each step is run once and
several tests check it):
1. ``ingest-events`` puts valid, duplicate, out-of-order and invalid records on the embedded log;
2. ``cqrs-orders project --continuous`` (one query: bus -> silver + bronze per micro-batch) runs in its own
   process, is SIGKILLed right after its first batch committed and more records arrived (mid-batch, as far
   as timing allows);
3. ``project --once`` restarts from the checkpoints; the tables must be exactly those of an uninterrupted
   run, computed here by the same pure functions in one batch over the whole log;
4. ``rebuild`` recomputes silver and gold from bronze: equal to the streamed tables; then a new event is
   projected by the same checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from chispa import assert_df_equality

from cqrs_orders.adapters import event_log
from cqrs_orders.cli import main
from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table
from cqrs_orders.envelope import AggregateType
from cqrs_orders.pipeline.bronze import to_bronze, to_quarantine, validate_records
from cqrs_orders.pipeline.gold import daily_order_metrics
from cqrs_orders.pipeline.history import VIEW, event_history, read_output
from cqrs_orders.pipeline.read_models import READ_MODELS, SILVER_PRODUCT_SALES, read_model
from cqrs_orders.pipeline.runner import CHECKPOINT, COUNTED_TABLES, STATE_CHECKS
from cqrs_orders.pipeline.silver import latest_per_aggregate
from cqrs_orders.pipeline.tables import AUTO_COMPACTED, PIPELINE_TABLES

RUN_TIME = ("ingest_time", "projected_at")
PROCESS_ARGS = ("--trigger-seconds", "1", "--profile", "--warehouse")
#: Every table the pipeline writes but ops_stream_progress; the history.
COMPARED = (*COUNTED_TABLES, SILVER_PRODUCT_SALES.table, VIEW)


def cli(settings: Settings, *args: str) -> tuple[int, dict]:
    """Run ``cqrs-orders ARGS`` in this process (sharing Spark); exit code and the JSON summary line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--warehouse", str(settings.warehouse)])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def ingest(settings: Settings, tmp: Path, name: str, *bodies: str) -> None:
    path = tmp / f"{name}.jsonl"
    path.write_text("".join(f"{body}\n" for body in bodies))
    assert cli(settings, "ingest-events", "--file", str(path)) == (
        0,
        {"ingested": len(bodies), "eventLog": str(settings.event_log_path)},
    )


def wait_for(path: Path, seconds: float, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def frozen(df):
    """The rows as they are now (a lazy or cached Delta read would follow later writes)."""
    return df.sparkSession.createDataFrame(df.collect(), df.schema)


def snapshot(spark, settings: Settings) -> dict:
    return {name: frozen(read_output(spark, settings, name).drop(*RUN_TIME)) for name in COMPARED}


def uninterrupted(spark, settings: Settings) -> dict:
    """What one uninterrupted run over the whole log gives, by the same pure functions, in one batch."""
    log = spark.read.format("delta").load(str(settings.event_log_path))
    validated = validate_records(log, STATE_CHECKS).localCheckpoint()  # stored, as the runner does
    checked_at = datetime.now(timezone.utc)
    bronze = to_bronze(validated, checked_at)
    orders = read_model("Order").project(latest_per_aggregate(bronze, AggregateType.ORDER.value))
    expected = {
        "bronze_events": bronze,
        "bronze_quarantine": to_quarantine(validated, checked_at),
        "silver_orders": orders,
        "silver_customers": read_model("Customer").project(
            latest_per_aggregate(bronze, AggregateType.CUSTOMER.value)
        ),
        VIEW: event_history(bronze),
        "gold_daily_order_metrics": daily_order_metrics(orders),
        # the aggregate computed directly from the orders, what its incremental MERGE keeps equal
        SILVER_PRODUCT_SALES.table: SILVER_PRODUCT_SALES.recompute(orders),
    }
    return {name: frozen(rows.drop(*RUN_TIME)) for name, rows in expected.items()}


def assert_same_tables(actual: dict, expected: dict) -> None:
    for name in COMPARED:
        try:
            assert_df_equality(actual[name], expected[name], ignore_nullable=True, ignore_row_order=True)
        except AssertionError as error:
            raise AssertionError(f"{name} differs: {error}") from None


@pytest.fixture(scope="module")
def scenario(spark, events, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("projection")
    settings = Settings.from_env(warehouse=tmp / "warehouse", env={})
    order, customer = events.order, events.customer
    duplicate = order("order-2", 2, "Confirmed", 2, "OrderConfirmed")
    ingest(
        settings,
        tmp,
        "first",
        customer("cust-1"),
        customer("cust-2", name="Bob"),
        order("order-1"),
        order("order-2", customer_id="cust-2"),
        duplicate,
        "not json at all",
        json.dumps({**json.loads(order("order-3")), "version": 0}),
    )
    log = tmp / "project.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cqrs_orders.cli",
                "project",
                "--continuous",
                *PROCESS_ARGS,
                str(settings.warehouse),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CQRS_SPARK_DRIVER_MEMORY": "1g"},
            start_new_session=True,  # its own process group: the kill reaches Spark's JVM too
        )
    try:
        first_committed = Path(settings.checkpoint(CHECKPOINT)) / "commits" / "0"
        first_batch = wait_for(first_committed, 900, process)  # Spark starts slowly on a busy machine
        ingest(
            settings,
            tmp,
            "second",
            order("order-1", 3, "Shipped", 3, "OrderShipped"),
            order("order-1", 2, "Confirmed", 2, "OrderConfirmed"),
            duplicate,
            customer("cust-1", 2, name="Ada Lovelace"),
            json.dumps({**json.loads(order("order-4")), "timestamp": "yesterday"}),
            order("order-5", created="2025-01-16T08:00:00Z"),
        )
        # Kill while the next batch runs (its offsets are logged before it starts).
        wait_for(Path(settings.checkpoint(CHECKPOINT)) / "offsets" / "1", 60, process)
    finally:
        alive = process.poll() is None
        if alive:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    assert first_batch and alive, f"the projection process did not get going:\n{log.read_text()[-3000:]}"

    code, restarted = cli(settings, "project", "--once")
    assert code == 0
    streamed = snapshot(spark, settings)
    expected = uninterrupted(spark, settings)
    progress = frozen(Table(settings.table("ops_stream_progress")).read(spark))
    log_records = spark.read.format("delta").load(str(settings.event_log_path)).count()

    code, rebuilt_summary = cli(settings, "rebuild")
    assert code == 0
    rebuilt = snapshot(spark, settings)
    late = order("order-5", 2, "Cancelled", event_type="OrderCancelled", created="2025-01-16T08:00:00Z")
    ingest(settings, tmp, "third", late)
    code, resumed = cli(settings, "project", "--once")
    assert code == 0
    resumed_history = read_output(spark, settings, VIEW).count()
    return {
        "settings": settings,
        "log": log.read_text(),
        "restarted": restarted,
        "streamed": streamed,
        "expected": expected,
        "progress": progress,
        "log_records": log_records,
        "rebuilt": rebuilt,
        "rebuilt_summary": rebuilt_summary,
        "resumed": resumed,
        "resumed_history": resumed_history,
        "late": json.loads(late),
    }


def test_a_killed_and_restarted_projection_equals_an_uninterrupted_run(scenario):
    assert_same_tables(scenario["streamed"], scenario["expected"])
    orders = {
        r["order_id"]: (r["status"], r["version"]) for r in scenario["streamed"]["silver_orders"].collect()
    }
    assert orders == {
        "order-1": ("Shipped", 3),
        "order-2": ("Confirmed", 2),
        "order-5": ("Created", 1),
    }


def test_every_record_lands_once_in_bronze_or_quarantine(scenario):
    streamed = scenario["streamed"]
    bronze, quarantine = streamed["bronze_events"], streamed["bronze_quarantine"]
    assert bronze.count() + quarantine.count() == scenario["log_records"] == 13
    positions = bronze.select("partition", "offset").union(quarantine.select("partition", "offset"))
    assert positions.distinct().count() == 13
    reasons = sorted(r["failed_expectations"] for r in quarantine.collect())
    assert reasons == [["body_is_json_object"], ["timestamp_is_iso8601_with_zone"], ["version_at_least_1"]]
    summary = scenario["restarted"]
    assert summary["bronze_events"] == 10 and summary["bronze_quarantine"] == 3


def test_each_batch_progress_is_recorded(scenario):
    progress = scenario["progress"]
    by_query = {r["query_name"]: r for r in progress.where("num_input_rows > 0").collect()}
    assert set(by_query) == {"projection"}
    for row in by_query.values():
        assert row["max_event_time"] is not None and row["duration_ms"] >= 0
        assert json.loads(row["source_end_offset"])["reservoirVersion"] >= 1
    assert progress.select("query_name", "run_id", "batch_id").distinct().count() == progress.count()


def test_the_profile_mode_logs_where_each_batch_spends_its_time(scenario):
    """``project --profile``: one line per micro-batch, naming the steps of the new layout, then one with the
    engine's durations around it (``durationMs``)."""
    lines = [line for line in scenario["log"].splitlines() if "INFO: batch 0 (" in line]  # a logged line
    assert len(lines) == 1, scenario["log"][-3000:]
    merges = [f"MERGE {model.table}" for model in READ_MODELS]
    for step in ("read+validate", *merges, "append bronze_events", "append bronze_quarantine"):
        assert f"{step} " in lines[0], lines[0]
    engine = [line for line in scenario["log"].splitlines() if "INFO: batch 0 engine: " in line]
    assert len(engine) == 1, scenario["log"][-3000:]  # and the streaming engine's own time around it
    for step in ("addBatch", "latestOffset", "queryPlanning", "walCommit", "commitOffsets"):
        assert f" {step} " in engine[0], engine[0]


def test_rebuild_equals_the_streamed_tables_and_streaming_resumes_after_it(spark, scenario):
    streamed, rebuilt = scenario["streamed"], scenario["rebuilt"]
    assert_same_tables({n: rebuilt[n] for n in COMPARED}, streamed)
    assert scenario["rebuilt_summary"]["silver_orders"] == 3

    resumed, late = scenario["resumed"], scenario["late"]
    assert resumed["projection_input_rows"] == 1  # resumed, not replayed from the start
    assert scenario["resumed_history"] == 10
    settings = scenario["settings"]
    order5 = Table(settings.table("silver_orders")).read(spark).where("order_id = 'order-5'").first()
    assert (order5["status"], order5["version"], order5["last_event_id"]) == ("Cancelled", 2, late["eventId"])
    assert_df_equality(  # gold refreshed at the end of the run: equal to a full recompute
        Table(settings.table("gold_daily_order_metrics")).read(spark),
        daily_order_metrics(Table(settings.table("silver_orders")).read(spark)),
        ignore_nullable=True,
        ignore_row_order=True,
    )
    sales = Table(settings.table(SILVER_PRODUCT_SALES.table)).read(spark)
    assert_df_equality(  # order-5 cancelled after the rebuild: its sales taken back by the increment
        frozen(sales.drop("projected_at")),
        frozen(SILVER_PRODUCT_SALES.recompute(Table(settings.table("silver_orders")).read(spark))).drop(
            "projected_at"
        ),
        ignore_nullable=True,
        ignore_row_order=True,
    )
    assert sales.where("orders = 0").isEmpty()


def test_every_table_stays_readable_by_synapse(spark, scenario):
    """After real writes (appends, MERGEs, overwrites): reader v1, no deletion vectors / column mapping."""
    for name in PIPELINE_TABLES:
        detail = spark.sql(f"DESCRIBE DETAIL {scenario['settings'].table(name).sql_name}").first()
        assert detail["minReaderVersion"] == 1, name
        assert detail["minWriterVersion"] <= 2, name
        features = set(detail["tableFeatures"] or ())
        assert not features & {"deletionVectors", "columnMapping", "v2Checkpoint", "liquid", "clustering"}, (
            name
        )
        assert detail["properties"]["delta.enableDeletionVectors"] == "false", name
        compacts = detail["properties"].get("delta.autoOptimize.autoCompact") == "true"
        assert compacts == (name in AUTO_COMPACTED), name  # never a MERGE target: see AUTO_COMPACTED


def test_the_stream_reads_each_record_once_across_event_log_compactions(spark, events, tmp_path, monkeypatch):
    """The embedded log compacts its files every few commits: the stream must skip those rewrites."""
    monkeypatch.setattr(event_log, "COMPACT_EVERY_COMMITS", 2)
    settings = Settings.from_env(warehouse=tmp_path / "warehouse", env={})
    ingest(settings, tmp_path, "first", events.order("order-1"))
    assert cli(settings, "project", "--once")[1]["projection_input_rows"] == 1
    for version in (2, 3, 4):  # three more commits: the log compacts twice on the way
        ingest(settings, tmp_path, f"v{version}", events.order("order-1", version, "Confirmed", version))
    assert len(list(settings.event_log_path.rglob("*.parquet"))) > 4  # rewritten files are added, not swapped
    code, summary = cli(settings, "project", "--once")
    assert (code, summary["projection_input_rows"], summary["bronze_events"]) == (0, 3, 4)
    assert_same_tables(snapshot(spark, settings), uninterrupted(spark, settings))
