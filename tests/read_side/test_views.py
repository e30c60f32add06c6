"""The shipped Databricks views, created on local Spark over hand-made warehouse tables (see conftest)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality

from cqrs_orders.cli import main
from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.query.views import create_views, register_views, view_definitions

REPO = Path(__file__).resolve().parents[2]
ALL_VIEWS = [
    "vw_order_summary",
    "vw_daily_order_metrics",
    "silver_event_history",
    "vw_orders",
    "vw_projection_lag",
    "vw_projection_lag_hourly",
]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def at(month_day_time: str) -> datetime:
    """``at("01-15 09:00")``: that minute of January 2025, UTC."""
    return utc(f"2025-{month_day_time.replace(' ', 'T')}:00")


def test_the_repository_sql_folder_is_the_shipped_one():
    shipped = sorted(f"{view.name}.sql" for view in view_definitions())
    assert shipped == sorted(f"{name}.sql" for name in ALL_VIEWS)
    for name in shipped:
        assert (REPO / "sql" / "databricks" / name).read_text() == (
            REPO / "src" / "cqrs_orders" / "query" / "sql" / name
        ).read_text()


def test_each_view_reads_the_tables_it_names():
    sources = {view.name: view.sources for view in view_definitions()}
    assert sources == {
        "vw_order_summary": ("silver_customers", "silver_orders"),
        "vw_daily_order_metrics": ("silver_orders",),
        "silver_event_history": ("bronze_events",),
        "vw_orders": ("silver_orders",),
        "vw_projection_lag": ("ops_projection_lag",),
        "vw_projection_lag_hourly": ("ops_projection_lag",),
    }


def test_unity_catalog_statements_name_the_schema_and_refuse_odd_identifiers():
    summary = view_definitions()[0]
    statement = summary.unity_catalog_sql("main", "orders_dev")
    assert statement.count("`main`.`orders_dev`.") == 3 and "${" not in statement
    assert "CREATE OR REPLACE VIEW `main`.`orders_dev`.vw_order_summary AS" in statement
    with pytest.raises(ConfigurationError, match="plain catalog/schema name"):
        summary.unity_catalog_sql("main`; DROP TABLE x; --", "orders")


def test_register_views_registers_every_table_and_view(spark, read_warehouse):
    names = register_views(spark, read_warehouse)
    over_its_tables = [view for view in ALL_VIEWS if view != "silver_event_history"]  # it has no bronze
    tables = ["silver_orders", "silver_customers", "silver_product_sales", "ops_projection_lag"]
    assert names == [*tables, *over_its_tables]


def test_order_summary_keeps_orders_of_unknown_customers(spark, read_warehouse):
    register_views(spark, read_warehouse)
    actual = spark.sql("SELECT * FROM vw_order_summary ORDER BY order_id")
    expected = spark.createDataFrame(
        [
            ("o-1", "cust-1", "Ada", "Created", Decimal("25.50"), 3, at("01-15 09:00"), at("01-15 09:00")),
            ("o-2", "cust-2", "Bob", "Confirmed", Decimal("4.55"), 1, at("01-15 23:30"), at("01-16 01:00")),
            ("o-3", "cust-9", None, "Shipped", Decimal("100.00"), 1, at("01-16 00:15"), at("01-16 05:00")),
            ("o-4", "cust-1", "Ada", "Cancelled", Decimal("100.00"), 5, at("01-16 08:00"), at("01-16 08:30")),
            ("o-5", "cust-1", "Ada", "Delivered", Decimal("1.98"), 2, at("01-16 10:00"), at("01-17 10:00")),
        ],
        "order_id string, customer_id string, customer_name string, status string, "
        "total_amount decimal(18,2), item_count bigint, created_date timestamp, updated_date timestamp",
    )  # fmt: skip
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_daily_metrics_exclude_cancelled_orders_and_group_by_utc_day(spark, read_warehouse):
    register_views(spark, read_warehouse)
    actual = spark.sql("SELECT * FROM vw_daily_order_metrics ORDER BY order_date")
    expected = spark.createDataFrame(
        [
            (date(2025, 1, 15), 2, Decimal("30.05"), Decimal("15.03"), 2),  # avg 15.025 rounds half up
            (date(2025, 1, 16), 2, Decimal("101.98"), Decimal("50.99"), 2),  # o-4 (Cancelled) left out
        ],
        "order_date date, order_count bigint, total_revenue decimal(38,2), avg_order_value decimal(18,2), "
        "unique_customers bigint",
    )
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_lag_views_give_the_latest_run_and_hourly_history(spark, read_warehouse):
    register_views(spark, read_warehouse)
    latest = spark.sql(
        "SELECT projection, run_at, event_time_lag_seconds, healthy FROM vw_projection_lag "
        "ORDER BY projection"
    )
    assert_df_equality(
        latest,
        spark.createDataFrame(
            [
                ("silver_customers", utc("2025-01-16T11:10:00"), 0.5, True),
                ("silver_orders", utc("2025-01-16T11:10:00"), 5.0, True),
            ],
            "projection string, run_at timestamp, event_time_lag_seconds double, healthy boolean",
        ),
        ignore_nullable=True,
    )
    hourly = spark.sql("SELECT * FROM vw_projection_lag_hourly ORDER BY hour, projection")
    assert_df_equality(
        hourly,
        spark.createDataFrame(
            [
                (utc("2025-01-16T10:00:00"), "silver_customers", 2, 2.0, 1.5, 2, 4.0, 0, 0),
                (utc("2025-01-16T10:00:00"), "silver_orders", 2, 75.0, 39.0, 2, 4.0, 0, 1),
                (utc("2025-01-16T11:00:00"), "silver_customers", 1, 0.5, 0.5, 2, 4.0, 0, 0),
                (utc("2025-01-16T11:00:00"), "silver_orders", 1, 5.0, 5.0, 2, 4.0, 0, 0),
            ],
            "hour timestamp, projection string, measurements bigint, max_event_time_lag_seconds double, "
            "avg_event_time_lag_seconds double, max_backlog bigint, max_staleness_seconds double, "
            "max_version_gaps bigint, unhealthy_measurements bigint",
        ),
        ignore_nullable=True,
    )


def test_views_over_missing_tables_are_left_out_and_stale_names_dropped(
    spark, read_warehouse, tmp_path, write_warehouse
):
    register_views(spark, read_warehouse)  # the session knows the full warehouse first
    partial = Settings.from_env(warehouse=tmp_path / "partial", env={})
    write_warehouse(partial, tables=("silver_orders",))

    assert register_views(spark, partial) == ["silver_orders", "vw_daily_order_metrics", "vw_orders"]
    assert not spark.catalog.tableExists("silver_customers")
    assert not spark.catalog.tableExists("vw_order_summary")
    assert spark.sql("SELECT count(*) FROM vw_daily_order_metrics").first()[0] == 2


def test_create_views_deploys_the_same_files_to_a_catalog_schema(
    spark, read_warehouse, tmp_path, monkeypatch, capsys
):
    """Unity Catalog stand-in: the local session catalog, with the warehouse's tables registered in it."""
    uc_env = {"CQRS_CATALOG": "spark_catalog", "CQRS_SCHEMA": "cqrs_uc_test"}
    uc = Settings.from_env(env=uc_env)
    spark.sql(f"CREATE SCHEMA spark_catalog.cqrs_uc_test LOCATION '{tmp_path}'")
    try:
        for name in ("silver_orders", "silver_customers"):
            location = read_warehouse.table(name).path
            spark.sql(f"CREATE TABLE spark_catalog.cqrs_uc_test.{name} USING delta LOCATION '{location}'")

        for variable, value in uc_env.items():
            monkeypatch.setenv(variable, value)
        capsys.readouterr()
        assert main(["create-views"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            "spark_catalog.cqrs_uc_test.vw_order_summary",
            "spark_catalog.cqrs_uc_test.vw_daily_order_metrics",
            "spark_catalog.cqrs_uc_test.vw_orders",
        ]  # no lag views: ops_projection_lag does not exist in that schema
        metrics = spark.sql("SELECT order_count FROM spark_catalog.cqrs_uc_test.vw_daily_order_metrics")
        assert sorted(row.order_count for row in metrics.collect()) == [2, 2]
        assert register_views(spark, uc)[:3] == ["silver_orders", "silver_customers", "vw_order_summary"]
        assert spark.sql("SELECT count(*) FROM vw_order_summary").first()[0] == 5
    finally:
        spark.sql("DROP SCHEMA IF EXISTS spark_catalog.cqrs_uc_test CASCADE")

    with pytest.raises(ConfigurationError, match="CQRS_CATALOG and CQRS_SCHEMA"):
        create_views(spark, read_warehouse)  # a local warehouse has no schema to create them in


def test_the_wheel_ships_the_view_files():
    import tomllib

    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "query/sql/*.sql" in package_data["cqrs_orders"], (
        "create_views on Databricks reads them from the wheel"
    )


def test_the_view_and_the_gold_table_share_one_definition(spark, read_warehouse):
    from cqrs_orders.pipeline.gold import daily_order_metrics

    register_views(spark, read_warehouse)
    gold = daily_order_metrics(Table(read_warehouse.table("silver_orders")).read(spark)).orderBy("order_date")
    view = spark.sql("SELECT * FROM vw_daily_order_metrics ORDER BY order_date")
    assert_df_equality(view, gold, ignore_nullable=True)
