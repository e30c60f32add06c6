"""``maintain``: OPTIMIZE ZORDER BY the read models' keys and VACUUM, beside a running projection.

The race test makes a real Delta conflict happen on purpose: a MERGE is held inside its transaction (a
UDF in its source waits on a file) while an OPTIMIZE rewrites the files the MERGE read, and only then is
the MERGE let go. Delta fails the MERGE's commit; :func:`retry_on_conflict` must run it again, once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.delta_io import Table
from cqrs_orders.envelope import AggregateType
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.pipeline.conflicts import retry_on_conflict
from cqrs_orders.pipeline.maintenance import CLUSTER_KEYS, maintain
from cqrs_orders.pipeline.read_models import read_model
from cqrs_orders.pipeline.silver import MATERIALIZE_SOURCE, latest_per_aggregate, merge_latest
from cqrs_orders.pipeline.tables import PIPELINE_TABLES, SCHEMAS, ensure_tables


def project_batches(spark, settings, events, batches, count: int) -> None:
    """``count`` micro-batches of three new orders and one new customer each; each batch's orders in a
    currency of its own, so that every batch adds new keys to ``silver_product_sales`` too."""
    ensure_tables(spark, settings)
    for batch in range(count):
        currency = ("EUR", "USD", "GBP", "CHF")[batch]
        orders = [events.order(f"order-{batch}-{n}", version=1, currency=currency) for n in range(3)]
        batches.project(settings, batch, *orders, events.customer(f"cust-{batch}"), writer="writer")


def test_maintain_clusters_each_read_model_into_one_file_and_keeps_every_row(
    spark, settings, events, batches
):
    project_batches(spark, settings, events, batches, count=2)  # at least one new file per table and batch
    before = {name: Table(settings.table(name)).version(spark) for name in CLUSTER_KEYS}
    log = EventLog(settings.event_log_path)
    log.append([("order-0-0", events.order("order-0-0"))])

    result = maintain(spark, settings)

    assert result["vacuumed"] == [*PIPELINE_TABLES, "event_log"]
    assert log.read().num_rows == 1
    for name, key in CLUSTER_KEYS.items():
        table = Table(settings.table(name))
        assert result["optimized"][name]["files_before"] >= 2, name
        assert result["optimized"][name]["files_after"] == 1, name  # a few KiB: far below 32 MiB
        as_before = spark.read.format("delta").option("versionAsOf", before[name]).load(table.path)
        assert_df_equality(as_before, table.read(spark), ignore_row_order=True)
        history = table.delta(spark).history().where("operation = 'OPTIMIZE'").first()
        assert json.loads(history["operationParameters"]["zOrderBy"]) == list(key)
        detail = table.delta(spark).detail().first()
        assert (detail["minReaderVersion"], detail["minWriterVersion"]) == (1, 2), name  # still Synapse's
        assert detail["properties"]["delta.enableDeletionVectors"] == "false"


def test_vacuum_keeping_less_than_seven_days_is_refused_before_anything_runs(spark, settings):
    with pytest.raises(ConfigurationError, match="168 or more"):
        maintain(spark, settings, retain_hours=24)
    assert not settings.warehouse.exists()  # not even the tables were created


def test_cli_maintain_prints_its_summary_and_refuses_a_short_retention(spark, cli, settings):
    refused = cli("maintain", "--retain-hours", "1")
    assert refused.exit_code == 2 and "Pass 168 or more" in refused.stderr
    refused = cli("maintain", "--ops-retention-days", "0")
    assert refused.exit_code == 2 and "at least 1" in refused.stderr
    assert not settings.warehouse.exists()  # both refused before Spark touched anything

    result = cli("maintain", "--no-vacuum")  # a new warehouse: empty tables, nothing to cluster or delete
    assert result.exit_code == 0, result.stderr
    assert result.json_lines()[-1] == {
        "trimmed": {"ops_stream_progress": 0, "ops_projection_lag": 0},
        "optimized": {},
        "vacuumed": [],
    }
    assert "silver_orders: 0 file(s), nothing to cluster" in result.stderr


def test_maintain_trims_the_operational_tables_to_their_window_keeping_each_names_newest_row(spark, settings):
    ensure_tables(spark, settings)
    now = datetime.now(timezone.utc)

    def ago(days: float) -> datetime:
        return now - timedelta(days=days)

    def write(name: str, rows: list[dict]) -> None:
        columns = SCHEMAS[name]
        frame = spark.createDataFrame([tuple(row.get(c) for c in columns.names) for row in rows], columns)
        Table(settings.table(name)).save(frame.write.format("delta").mode("append"))

    progress = {"projection": (200, 100, 1), "retired_query": (300,)}  # a query's only row is its newest
    write("ops_stream_progress", [
        {"query_name": query, "batch_id": n, "recorded_at": ago(days)}
        for query, ages in progress.items() for n, days in enumerate(ages)
    ])  # fmt: skip
    lag = {"silver_orders": (95, 10), "silver_customers": (120,)}
    write("ops_projection_lag", [
        {"projection": projection, "run_at": ago(days), "healthy": True}
        for projection, ages in lag.items() for days in ages
    ])  # fmt: skip

    result = maintain(spark, settings, vacuum=False, ops_retention_days=90)

    assert result["trimmed"] == {"ops_stream_progress": 2, "ops_projection_lag": 1}
    kept = {
        name: sorted((row[0], round((now - row[1].replace(tzinfo=timezone.utc)).total_seconds() / 86400))
                     for row in Table(settings.table(name)).read(spark).select(who, when).collect())
        for name, who, when in (("ops_stream_progress", "query_name", "recorded_at"),
                                ("ops_projection_lag", "projection", "run_at"))
    }  # fmt: skip
    assert kept == {
        "ops_stream_progress": [("projection", 1), ("retired_query", 300)],  # 100 days: older than 90
        "ops_projection_lag": [("silver_customers", 120), ("silver_orders", 10)],
    }


def test_a_merge_that_loses_a_race_with_optimize_runs_again_and_lands_once(
    spark, settings, events, batches, tmp_path
):
    project_batches(spark, settings, events, batches, count=2)
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "armed").touch()
    folder = str(gate)

    @F.udf("string")
    def held_once(value):
        """The first call (one task only: the rename is atomic) waits until the test releases it."""
        try:
            os.rename(os.path.join(folder, "armed"), os.path.join(folder, "started"))
        except FileNotFoundError:
            return value
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(folder, "released")) and time.monotonic() < deadline:
            time.sleep(0.05)
        return value

    updates = [events.order(f"order-{batch}-0", version=2, status="Confirmed") for batch in range(2)]
    incoming = read_model("Order").project(
        latest_per_aggregate(batches.bronze(*updates), AggregateType.ORDER.value)
    )
    incoming = incoming.withColumn("status", held_once("status"))
    orders = Table(settings.table("silver_orders"))

    def optimize_while_the_merge_waits() -> None:
        while not (gate / "started").exists():
            time.sleep(0.05)
        maintain(spark, settings, vacuum=False)
        (gate / "released").touch()

    attempts = []

    def merge() -> None:
        attempts.append(time.monotonic())
        merge_latest(spark, orders, incoming, ("order_id",))

    optimizer = threading.Thread(target=optimize_while_the_merge_waits)
    optimizer.start()
    spark.conf.set(MATERIALIZE_SOURCE, "none")  # as in apply_batch: the source is read inside the MERGE
    try:
        retry_on_conflict(merge, "test MERGE", pause_seconds=0.1)
    finally:
        spark.conf.unset(MATERIALIZE_SOURCE)
        (gate / "released").touch()
        optimizer.join()

    assert len(attempts) == 2
    operations = [row["operation"] for row in orders.delta(spark).history().collect()]
    assert operations[:2] == ["MERGE", "OPTIMIZE"]  # newest first: the retried MERGE after the OPTIMIZE
    assert operations.count("MERGE") == 3  # two batches before, one retried MERGE: nothing twice
    statuses = orders.read(spark).groupBy("status", "version").count()
    expected = spark.createDataFrame([("Confirmed", 2, 2), ("Created", 1, 4)], statuses.schema)
    assert_df_equality(statuses, expected, ignore_row_order=True, ignore_nullable=True)


def java_conflict(spark, message: str) -> Exception:
    """A Delta conflict as PySpark raises it when no Python type was registered for it (delta-spark 4.0.0
    has none): a ``Py4JJavaError`` around Delta's own Java exception."""
    from py4j.protocol import Py4JJavaError

    return Py4JJavaError(
        "An error occurred while calling o1.execute.\n",
        spark._jvm.io.delta.exceptions.ConcurrentAppendException(message),
    )


def test_a_conflict_is_retried_up_to_the_last_attempt_and_other_errors_not_at_all(spark):
    calls = []
    conflict = java_conflict(spark, "another writer added files this write read")

    def keeps_conflicting() -> None:
        calls.append("conflict")
        raise conflict

    def fails() -> None:
        calls.append("error")
        raise ValueError("not a conflict")

    with pytest.raises(type(conflict)) as raised:
        retry_on_conflict(keeps_conflicting, "test", attempts=3, pause_seconds=0)
    assert raised.value is conflict  # the last conflict, as it was: it names the other operation
    with pytest.raises(ValueError):
        retry_on_conflict(fails, "test", pause_seconds=0)
    assert calls == ["conflict"] * 3 + ["error"]
