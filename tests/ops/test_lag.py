"""The lag monitor on hand-made lakes: each measure, each breach rule, the recorded table, the CLI, alerts.

Spark work is the cost here, so one module-wide lake holds every situation at once (each aggregate shows
one of them) and is measured once by each engine that runs the monitor's SQL: DataFusion (a laptop, what
the figures are checked on) and Spark (the Databricks lag job), which must agree. The CLI tests build
their own small lakes.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from chispa import assert_df_equality

from cqrs_orders.adapters.event_log import RECORD_SCHEMA
from cqrs_orders.cli import run
from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table
from cqrs_orders.ops import measures
from cqrs_orders.ops.lag import (
    COLUMNS_READ,
    LAG_SCHEMA,
    _DeltaTables,
    _kafka_positions,
    _SparkTables,
    find_breaches,
    measure_lag,
)
from cqrs_orders.pipeline.tables import SCHEMAS

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def scenario(spark, tmp_path_factory, lake_type):
    """cust-1 applied; cust-2 applied at v2 but its v1 never arrived (a gap); o-1 applied at v2; o-2 in bronze
    twice (a redelivery), not applied; o-3 on the bus only (v1, v2); o-4 with v1 and v3 (a gap); a
    quarantined record claiming a far-future time; the silver query's last batch 120 s ago."""
    settings = Settings.from_env(warehouse=tmp_path_factory.mktemp("scenario"), env={})
    lake = lake_type(spark, settings)
    c1, c2v2 = lake.customer_event("cust-1", 1, ago(200)), lake.customer_event("cust-2", 2, ago(190))
    o1v1, o1v2 = lake.order_event("o-1", 1, ago(180)), lake.order_event("o-1", 2, ago(170))
    o2 = lake.order_event("o-2", 1, ago(160))
    o3v1, o3v2 = lake.order_event("o-3", 1, ago(150)), lake.order_event("o-3", 2, ago(100))
    o4v1, o4v3 = lake.order_event("o-4", 1, ago(300)), lake.order_event("o-4", 3, ago(290))
    lake.publish(c1, c2v2, o1v1, o1v2, o2, o3v1, o3v2, o4v1, o4v3)
    lake.ingest(c1, c2v2, o1v1, o1v2, o2, o2, o4v1, o4v3)
    lake.quarantine('{"aggregateType": "Order", "timestamp": "2099-01-01T00:00:00Z"}', at=ago(100))
    lake.project(c1, c2v2, o1v2, o4v3, at=ago(165))
    lake.progress("projection", ago(120))
    laptop = measure_lag(None, settings, 60, now=NOW, record=False)
    databricks = measure_lag(spark, settings, 60, now=NOW, record=False)
    assert laptop == databricks  # the same SQL texts, DataFusion's answer and Spark's
    return settings, {p.projection: p for p in laptop.projections}


def test_bus_backlog_counts_records_not_yet_in_bronze(scenario):
    _, report = scenario
    # o-3 v1 and v2; the quarantined record reached bronze_quarantine, so it is not waiting.
    assert report["silver_orders"].bus_backlog == report["silver_customers"].bus_backlog == 2


def test_bronze_backlog_counts_events_not_yet_applied_once_each(scenario, spark):
    settings, report = scenario
    pending = measures.unapplied_events("Order", "silver_orders", "order_id")
    for engine in (_DeltaTables(settings), _SparkTables(spark, settings)):
        assert engine.query(pending) == [{"aggregate_id": "o-2", "version": 1}]
    assert (report["silver_orders"].bronze_backlog, report["silver_customers"].bronze_backlog) == (1, 0)


def test_event_time_lag_is_newest_on_the_bus_minus_newest_applied(scenario):
    _, report = scenario
    # Orders: o-3 v2 (100 s ago; the quarantined far-future record is ignored) minus o-1 v2 (170 s ago).
    assert report["silver_orders"].event_time_lag_seconds == 70
    assert report["silver_customers"].event_time_lag_seconds == 0


def test_version_gaps_are_found_per_aggregate(scenario):
    settings, report = scenario
    # On the event history view, which deduplicates bronze: the same gaps as bronze's.
    gaps = _DeltaTables(settings).query(measures.version_gaps(events="silver_event_history"))
    columns = ("aggregate_type", "aggregate_id", "max_version", "distinct_versions", "missing")
    expected = [("Customer", "cust-2", 2, 1, 1), ("Order", "o-4", 3, 2, 1)]
    assert sorted(tuple(row[c] for c in columns) for row in gaps) == expected
    assert (report["silver_orders"].version_gaps, report["silver_customers"].version_gaps) == (1, 1)


def test_staleness_is_time_since_the_silver_query_last_ran(scenario):
    _, report = scenario
    assert report["silver_orders"].staleness_seconds == report["silver_customers"].staleness_seconds == 120


def test_breaches_name_every_measure_past_its_threshold(scenario):
    _, report = scenario
    assert report["silver_orders"].breaches == (
        "event_time_lag",
        "staleness",
        "bus_backlog",
        "bronze_backlog",
        "version_gaps",
    )
    # Work is waiting on the bus, but customers' lag is 0 and their staleness counts: the bus backlog may
    # hold customer events too (the bus is untyped until bronze parses it).
    assert report["silver_customers"].breaches == ("staleness", "bus_backlog", "version_gaps")


def test_a_derived_read_model_is_measured_by_the_one_it_derives_from(scenario):
    # silver_product_sales is written in each batch just before silver_orders: it has got as far.
    _, report = scenario
    derived, source = report["silver_product_sales"], report["silver_orders"]
    assert {**vars(derived), "projection": "silver_orders"} == vars(source)


@pytest.mark.parametrize(
    ("lag", "bus", "bronze", "staleness", "gaps", "expected"),
    [
        (0, 0, 0, 1, 0, ()),
        (61, 0, 0, 1, 0, ("event_time_lag",)),
        (30, 5, 5, 30, 0, ()),  # a backlog with little lag is just the next micro-batch waiting
        (60, 5, 5, 60, 0, ()),  # at the threshold is not past it
        (1, 0, 0, 3600, 0, ()),  # idle: no batch runs when nothing arrives; nothing is waiting
        (1, 2, 0, 3600, 0, ("staleness", "bus_backlog")),
        (1, None, 0, None, 0, ()),  # bus end unknown, never ran, nothing pending
        (0, 0, 0, 0, 2, ("version_gaps",)),
    ],
)
def test_breach_rules(lag, bus, bronze, staleness, gaps, expected):
    assert find_breaches(lag, bus, bronze, staleness, gaps, 60) == expected


def test_latest_source_offsets_reads_kafka_progress_json():
    progress = json.dumps({"orders": {"0": 5, "1": 7}, "other": {"0": 1}})
    assert measures.latest_source_offsets(progress, "orders") == {0: 5, 1: 7}
    assert measures.latest_source_offsets(None) == {}


def test_on_kafka_the_projections_position_is_its_checkpoint_else_bronze(spark, tmp_path, lake_type):
    """The bus's side of Kafka's backlog is read off the broker (``tests/kafka/test_kafka_lag.py``); the
    projection's side is where its checkpoint reached, or, with no progress recorded, what bronze holds."""
    settings = Settings.from_env(warehouse=tmp_path / "warehouse", env={"CQRS_SOURCE": "kafka"})
    lake = lake_type(spark, settings)
    created = lake.order_event("o-1", 1, ago(100))
    lake.publish(created)  # only to learn a (partition, offset); the Kafka measure never reads the log
    lake.ingest(created)
    (partition, offset) = lake.positions[str(created.eventId)]

    def position() -> dict[int, int]:
        laptop = _kafka_positions(_DeltaTables(settings).query_all, settings)
        assert laptop == _kafka_positions(_SparkTables(spark, settings).query_all, settings)
        return laptop

    assert position() == {partition: offset + 1}  # no progress yet: the offset after bronze's last
    # The topic was made again and the checkpoint reset: the checkpoint reads 2 where bronze holds more.
    checkpoint = json.dumps({"order-events": {str(partition): 2}, "other-topic": {"0": 99}})
    lake.progress("projection", ago(1), latest_offset=checkpoint)
    assert position() == {partition: 2}


def test_a_caught_up_lake_is_healthy_and_the_cli_exits_0(cli, lake, spark, settings):
    now = datetime.now(timezone.utc)
    customer = lake.customer_event("cust-1", 1, now - timedelta(seconds=30))
    order = lake.order_event("o-1", 1, now - timedelta(seconds=20))
    lake.publish(customer, order)
    lake.ingest(customer, order)
    lake.project(customer, order, at=now - timedelta(seconds=5))

    result = cli("lag")
    assert result.exit_code == 0, result.stderr
    assert "HEALTHY" in result.stdout and "silver_orders: ok" in result.stdout
    recorded = (
        Table(settings.table("ops_projection_lag"))
        .read(spark)
        .select("projection", "healthy", "version_gaps")
    )
    expected = spark.createDataFrame(
        [("silver_orders", True, 0), ("silver_customers", True, 0), ("silver_product_sales", True, 0)],
        "projection string, healthy boolean, version_gaps bigint",
    )
    assert_df_equality(recorded, expected, ignore_row_order=True, ignore_nullable=True)


class _Webhook(BaseHTTPRequestHandler):
    """Records each POST body; answers with the status the test sets."""

    status, received = 200, []

    def do_POST(self):
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    handler = type("Webhook", (_Webhook,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_port}/hooks/secret-token"
    server.shutdown()
    server.server_close()


def test_a_breach_exits_3_is_recorded_and_alerts_the_webhook(
    cli, lake, spark, settings, webhook, monkeypatch, capsys
):
    handler, url = webhook
    monkeypatch.setenv("CQRS_ALERT_WEBHOOK_URL", url)
    now = datetime.now(timezone.utc)
    created, added = lake.order_event("o-1", 1, now - timedelta(seconds=300)), lake.order_event("o-1", 2, now)
    lake.publish(created, added)
    lake.ingest(created, added)
    lake.project(created, at=now)

    result = cli("lag", "--json", "--threshold-seconds", "60")
    assert result.exit_code == 3, result.stderr
    (document,) = result.json_lines()
    assert document["healthy"] is False and document["threshold_seconds"] == 60
    orders = {p["projection"]: p for p in document["projections"]}["silver_orders"]
    assert orders["event_time_lag_seconds"] >= 300 and orders["breaches"] == [
        "event_time_lag",
        "bronze_backlog",
    ]
    assert len(handler.received) == 1 and set(handler.received[0]) == {"text"}
    assert "silver_orders (event_time_lag, bronze_backlog)" in handler.received[0]["text"]

    recorded = Table(settings.table("ops_projection_lag")).read(spark)
    assert recorded.schema == LAG_SCHEMA
    assert_df_equality(
        recorded.select("projection", "bronze_backlog", "healthy", "breaches"),
        spark.createDataFrame(
            [
                ("silver_customers", 0, True, []),
                ("silver_orders", 1, False, ["event_time_lag", "bronze_backlog"]),
                ("silver_product_sales", 1, False, ["event_time_lag", "bronze_backlog"]),
            ],
            "projection string, bronze_backlog bigint, healthy boolean, breaches array<string>",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    detail = spark.sql(f"DESCRIBE DETAIL {settings.table('ops_projection_lag').sql_name}").first()
    assert detail.minReaderVersion == 1 and detail.properties.get("delta.enableDeletionVectors") == "false"

    # A webhook that fails is reported (without its secret URL) and the breach still fails the run: the
    # console script / wheel entry point raises SystemExit(3), which fails a Databricks wheel task.
    handler.status = 500
    monkeypatch.setattr(sys, "argv", ["cqrs-orders", "lag", "--warehouse", str(settings.warehouse)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as failed:
        run()
    assert failed.value.code == 3
    stderr = capsys.readouterr().err
    assert "alert not sent" in stderr and "HTTP 500" in stderr and "secret-token" not in stderr

    assert len(handler.received) == 2 and recorded.count() == 6  # every run appends its rows


def test_an_empty_warehouse_is_healthy(cli, settings, spark):
    result = cli("lag", "--json")
    assert result.exit_code == 0, result.stderr
    assert [p["bus_backlog"] for p in json.loads(result.stdout)["projections"]] == [0, 0, 0]
    assert Table(settings.table("ops_projection_lag")).read(spark).count() == 3


def test_the_columns_the_monitor_reads_match_the_pipeline_tables():
    for table, columns in COLUMNS_READ.items():
        for column in columns:
            assert SCHEMAS[table][column.name].dataType == column.dataType, (table, column.name)
    assert {"body", "partition", "offset"} <= set(RECORD_SCHEMA.names)
