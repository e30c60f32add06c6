"""The lag monitor on hand-made lakes: each measure, each breach rule, the recorded table and the CLI."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from chispa import assert_df_equality

from cqrs_orders.config import Settings
from cqrs_orders.ops import measures
from cqrs_orders.ops.lag import LAG_SCHEMA, find_breaches, measure_lag


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def caught_up_lake(lake, now):
    """A customer and an order (two versions) all applied; the silver query ran 5 s ago."""
    customer = lake.customer_event("cust-1", 1, now - seconds(30))
    created, added = lake.order_event("o-1", 1, now - seconds(20)), lake.order_event("o-1", 2, now - seconds(10))
    lake.publish(customer, created, added)
    lake.ingest(customer, created, added)
    lake.project(customer, added, at=now - seconds(5))
    lake.history(created)
    lake.progress("silver", now - seconds(5))


def by_projection(report):
    return {p.projection: p for p in report.projections}


def test_a_caught_up_lake_is_healthy_and_the_cli_exits_0(cli, lake, now, spark, settings):
    caught_up_lake(lake, now)

    report = measure_lag(spark, settings, 60, now=now, record=False)
    assert report.healthy
    for p in report.projections:
        assert (p.event_time_lag_seconds, p.bus_backlog, p.bronze_backlog, p.version_gaps) == (0, 0, 0, 0)
        assert p.staleness_seconds == 5.0

    result = cli("lag")
    assert result.exit_code == 0, result.stderr
    assert "HEALTHY" in result.stdout and "silver_customers: ok" in result.stdout
    recorded = settings.table("ops_projection_lag").read(spark)
    assert sorted((r.projection, r.healthy) for r in recorded.collect()) == [
        ("silver_customers", True),
        ("silver_orders", True),
    ]


def test_lag_past_the_threshold_exits_3_and_is_recorded(cli, lake, now, spark, settings):
    created, added = lake.order_event("o-1", 1, now - seconds(300)), lake.order_event("o-1", 2, now - seconds(10))
    lake.publish(created, added)
    lake.ingest(created, added)
    lake.project(created, at=now - seconds(290))
    lake.progress("silver", now - seconds(290))

    result = cli("lag", "--json", "--threshold-seconds", "60")
    assert result.exit_code == 3, result.stderr
    (document,) = result.json_lines()
    assert document["healthy"] is False and document["threshold_seconds"] == 60
    orders = {p["projection"]: p for p in document["projections"]}["silver_orders"]
    assert orders["event_time_lag_seconds"] == 290
    assert orders["breaches"] == ["event_time_lag", "staleness", "bronze_backlog"]

    recorded = settings.table("ops_projection_lag").read(spark)
    assert recorded.schema == LAG_SCHEMA
    expected = spark.createDataFrame(
        [("silver_customers", 0.0, 0, 0, 0, True, []), ("silver_orders", 290.0, 0, 1, 0, False, orders["breaches"])],
        "projection string, event_time_lag_seconds double, bus_backlog bigint, bronze_backlog bigint, "
        "version_gaps bigint, healthy boolean, breaches array<string>",
    )
    assert_df_equality(
        recorded.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True
    )
    detail = spark.sql(f"DESCRIBE DETAIL {settings.table('ops_projection_lag').sql_name}").first()
    assert detail.minReaderVersion == 1
    assert detail.properties.get("delta.enableDeletionVectors") == "false"

    # The same lake under a looser threshold is healthy, and each run appends its own rows.
    assert cli("lag", "--threshold-seconds", "600").exit_code == 0
    assert recorded.count() == 4


def test_backlog_counts_each_stage(lake, now, spark, settings):
    customer = lake.customer_event("cust-1", 1, now - seconds(60))
    o1v1, o1v2 = lake.order_event("o-1", 1, now - seconds(50)), lake.order_event("o-1", 2, now - seconds(40))
    o2v1 = lake.order_event("o-2", 1, now - seconds(35))
    o3v1, o3v2 = lake.order_event("o-3", 1, now - seconds(30)), lake.order_event("o-3", 2, now - seconds(20))
    lake.publish(customer, o1v1, o1v2, o2v1, o3v1, o3v2)
    lake.ingest(customer, o1v1, o1v2, o2v1)
    lake.ingest(o1v2)  # a redelivered duplicate: pending once, not twice
    lake.quarantine('{"aggregateType": "Order", "timestamp": "2099-01-01T00:00:00Z"}', at=now)
    lake.project(customer, o1v1, at=now - seconds(45))

    pending = measures.unapplied_events(
        settings.table("bronze_events").read(spark), settings.table("silver_orders").read(spark), "Order", "order_id"
    )
    assert_df_equality(
        pending,
        spark.createDataFrame([("o-1", 2), ("o-2", 1)], "aggregate_id string, version bigint"),
        ignore_row_order=True,
        ignore_nullable=True,
    )

    report = by_projection(measure_lag(spark, settings, 60, now=now, record=False))
    orders, customers = report["silver_orders"], report["silver_customers"]
    assert orders.bus_backlog == customers.bus_backlog == 2  # o-3 v1, v2; the quarantined record is ingested
    assert (orders.bronze_backlog, customers.bronze_backlog) == (2, 0)
    # Newest order on the bus (o-3 v2, the quarantined record's far-future time ignored) minus o-1 v1.
    assert orders.event_time_lag_seconds == 30.0
    assert orders.healthy  # a backlog with little lag is just the next micro-batch waiting
    assert measure_lag(spark, settings, 10, now=now, record=False).projections[0].breaches == (
        "event_time_lag",
        "staleness",
        "bus_backlog",
        "bronze_backlog",
    )


def test_version_gaps_are_found_per_aggregate(lake, now, spark, settings):
    events = [
        lake.order_event("o-1", 1, now),
        lake.order_event("o-1", 3, now),  # version 2 was lost
        lake.order_event("o-2", 1, now),
        lake.order_event("o-2", 2, now),
        lake.customer_event("cust-1", 2, now),  # version 1 was lost
    ]
    lake.publish(*events)
    lake.ingest(*events)
    lake.project(events[1], events[3], events[4], at=now)
    lake.history(events[0], events[2])

    gaps = measures.version_gaps(settings.table("silver_event_history").read(spark))
    assert_df_equality(
        gaps,
        spark.createDataFrame(
            [("Order", "o-1", 3, 2, 1), ("Customer", "cust-1", 2, 1, 1)],
            "aggregate_type string, aggregate_id string, max_version bigint, distinct_versions bigint, "
            "missing bigint",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    report = measure_lag(spark, settings, 60, now=now, record=False)
    assert [(p.projection, p.version_gaps, p.breaches) for p in report.projections] == [
        ("silver_orders", 1, ("version_gaps",)),
        ("silver_customers", 1, ("version_gaps",)),
    ]


def test_staleness_counts_only_when_work_is_waiting(lake, now, spark, settings):
    created = lake.order_event("o-1", 1, now - seconds(3600))
    lake.publish(created)
    lake.ingest(created)
    lake.project(created, at=now - seconds(3000))  # no progress rows: staleness from projected_at

    idle = by_projection(measure_lag(spark, settings, 60, now=now, record=False))["silver_orders"]
    assert idle.staleness_seconds == 3000 and idle.healthy

    late = lake.order_event("o-2", 1, now - seconds(3610))  # old event time: event-time lag stays small
    lake.publish(late)
    lake.ingest(late)
    lake.progress("silver", now - seconds(120))
    stuck = by_projection(measure_lag(spark, settings, 60, now=now, record=False))["silver_orders"]
    assert stuck.staleness_seconds == 120
    assert stuck.event_time_lag_seconds == 0  # o-2 is older than the newest applied event
    assert stuck.breaches == ("staleness", "bronze_backlog")


def test_kafka_backlog_comes_from_the_bronze_query_progress(lake, now, spark, tmp_path):
    settings = Settings.from_env(warehouse=tmp_path / "kafka-warehouse", env={"CQRS_SOURCE": "kafka"})
    lake = type(lake)(spark, settings)
    created = lake.order_event("o-1", 1, now - seconds(100))
    lake.publish(created)
    lake.ingest(created)
    (partition, offset) = lake.positions[str(created.eventId)]

    report = measure_lag(spark, settings, 60, now=now, record=False)
    assert report.projections[0].bus_backlog is None  # no bronze batch yet: the end offsets are unknown
    assert report.projections[0].event_time_lag_seconds == 100  # nothing applied: the oldest event waits

    latest = json.dumps({"order-events": {str(partition): offset + 4}, "other-topic": {"0": 99}})
    lake.progress("bronze", now - seconds(1), latest_offset=latest)
    assert measure_lag(spark, settings, 60, now=now, record=False).projections[0].bus_backlog == 3


def test_an_empty_warehouse_is_healthy(cli, settings, spark):
    result = cli("lag", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert [p["bus_backlog"] for p in document["projections"]] == [0, 0]
    assert settings.table("ops_projection_lag").read(spark).count() == 2


@pytest.mark.parametrize(
    ("lag", "bus", "bronze", "staleness", "gaps", "expected"),
    [
        (0, 0, 0, 1, 0, ()),
        (61, 0, 0, 1, 0, ("event_time_lag",)),
        (60, 5, 5, 59, 0, ()),  # at the threshold is not past it
        (1, 0, 0, 3600, 0, ()),  # idle: nothing waiting
        (1, 2, 0, 3600, 0, ("staleness", "bus_backlog")),
        (1, None, 0, None, 0, ()),  # unknown bus, never ran, nothing pending
        (0, 0, 0, 0, 2, ("version_gaps",)),
    ],
)
def test_breach_rules(lag, bus, bronze, staleness, gaps, expected):
    assert find_breaches(lag, bus, bronze, staleness, gaps, 60) == expected


def test_latest_source_offsets_reads_kafka_progress_json():
    progress = json.dumps({"orders": {"0": 5, "1": 7}, "other": {"0": 1}})
    assert measures.latest_source_offsets(progress, "orders") == {0: 5, 1: 7}
    assert measures.latest_source_offsets(None) == {}
    assert measures.bus_backlog({0: 5, 1: 7}, {0: 5, 1: 3}) == 4
