"""Personal data stays out of what the dashboard's readers get: every reader object, run on local Spark over
the test warehouse, has no personal column, reads no table holding one, and each is granted one by one."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.query.readers import APP_OBJECTS, PERSONAL_COLUMNS, READER_OBJECTS, reader_grants
from cqrs_orders.query.views import create_views, register_views, view_definition

PERSONAL = {column for columns in PERSONAL_COLUMNS.values() for column in columns}
DASHBOARD = Path(__file__).resolve().parents[2] / "src" / "dashboards" / "cqrs_orders.lvdash.json"


def test_the_dashboard_reads_only_what_its_readers_are_granted():
    """The dashboard queries as its viewer: each table or view a dataset reads must be a reader object."""
    datasets = json.loads(DASHBOARD.read_text())["datasets"]
    read = set()
    for dataset in datasets:
        query = "".join(dataset.get("queryLines") or [dataset.get("query", "")])
        read |= {table.name for table in sqlglot.parse_one(query, read="databricks").find_all(exp.Table)}
    assert read and read <= {item.name for item in READER_OBJECTS}, read


def test_no_reader_object_is_or_reads_a_table_with_personal_data():
    for item in READER_OBJECTS:
        assert item.name not in PERSONAL_COLUMNS, item.name
        if item.kind == "VIEW":
            assert not set(view_definition(item.name).sources) & set(PERSONAL_COLUMNS), item.name


def test_the_reader_objects_run_and_have_no_personal_column(spark, tmp_path, write_warehouse):
    from cqrs_orders.delta_io import Table
    from cqrs_orders.pipeline.gold import daily_order_metrics

    settings = Settings.from_env(warehouse=tmp_path / "warehouse", env={})
    write_warehouse(settings)
    silver = Table(settings.table("silver_orders")).read(spark)
    daily_order_metrics(silver).write.format("delta").save(settings.table("gold_daily_order_metrics").path)
    registered = register_views(spark, settings)
    assert {item.name for item in READER_OBJECTS} <= set(registered)
    for item in READER_OBJECTS:
        columns = set(spark.table(item.name).columns)
        assert columns and not columns & PERSONAL, f"{item.name} shows {columns & PERSONAL}"
    # The check can fail: the order summary, which readers do not get, shows the customer's name.
    assert "customer_name" in spark.table("vw_order_summary").columns


def test_the_personal_columns_exist_where_they_are_named(spark, read_warehouse):
    """PERSONAL_COLUMNS must name real columns, or the check above would pass on a typo."""
    from cqrs_orders.pipeline.tables import SCHEMAS

    for table, columns in PERSONAL_COLUMNS.items():
        assert set(columns) <= set(SCHEMAS[table].fieldNames()), table


def test_grants_name_each_existing_reader_object_and_nothing_schema_wide():
    grants = reader_grants("main", "cqrs_orders", "order readers", {"vw_orders", "silver_orders", "x"})
    assert grants == [
        "GRANT SELECT ON VIEW `main`.`cqrs_orders`.`vw_orders` TO `order readers`",
        "GRANT SELECT ON TABLE `main`.`cqrs_orders`.`silver_orders` TO `order readers`",
    ]
    with pytest.raises(ConfigurationError, match="not a principal name"):
        reader_grants("main", "cqrs_orders", "x` ; DROP TABLE y; --", {"vw_orders"})


def test_create_views_grants_the_readers_each_reader_object(spark, read_warehouse, tmp_path, caplog):
    """On the local session catalog (no GRANT there), the statements the views job runs are recorded."""
    uc = Settings.from_env(env={"CQRS_CATALOG": "spark_catalog", "CQRS_SCHEMA": "cqrs_grants_test"})
    spark.sql(f"CREATE SCHEMA spark_catalog.cqrs_grants_test LOCATION '{tmp_path}'")
    statements: list[str] = []

    class Recording:
        """The session, with GRANTs recorded instead of run (Spark has no Unity Catalog grants)."""

        def __getattr__(self, name):
            return getattr(spark, name)

        def sql(self, text, *args, **kwargs):
            if text.startswith("GRANT "):
                statements.append(text)
                return None
            return spark.sql(text, *args, **kwargs)

    try:
        for name in ("silver_orders", "silver_customers", "ops_projection_lag"):
            location = read_warehouse.table(name).path
            spark.sql(f"CREATE TABLE spark_catalog.cqrs_grants_test.{name} USING delta LOCATION '{location}'")
        create_views(Recording(), uc, readers="dashboard readers")
        # Open-source Spark has no GRANT: the views are still created, and the log says nothing was granted.
        with caplog.at_level(logging.WARNING, logger="cqrs_orders.query.views"):
            assert "spark_catalog.cqrs_grants_test.vw_orders" in create_views(spark, uc, readers="r")
        assert "cannot GRANT" in caplog.text and "no reader was granted anything" in caplog.text
    finally:
        spark.sql("DROP SCHEMA IF EXISTS spark_catalog.cqrs_grants_test CASCADE")
    granted = [statement.split("`.`")[-1].split("`")[0] for statement in statements]
    present = {"silver_orders", "ops_projection_lag", "vw_orders", "vw_daily_order_metrics",
               "vw_projection_lag", "vw_projection_lag_hourly"}  # fmt: skip
    assert granted == [item.name for item in READER_OBJECTS if item.name in present]  # no gold table here
    assert all(statement.endswith(" TO `dashboard readers`") for statement in statements)


def test_the_app_is_granted_exactly_what_its_queries_read():
    """APP_OBJECTS is declared beside READER_OBJECTS; the app's SQL (query/api.py) is the truth it must match:
    a query reading a new table would fail on Databricks without its grant, a stale entry would over-grant."""
    from cqrs_orders.query import api

    statements = [api.GET_ORDER, api.ORDERS_OF_CUSTOMER, api.GET_CUSTOMER, api.PRODUCT_SALES, api.FRESHNESS,
                  api.DAILY_METRICS]  # fmt: skip
    read = {table.name for sql in statements for table in sqlglot.parse_one(sql).find_all(exp.Table)}
    assert read == {item.name for item in APP_OBJECTS}
    assert not read & set(PERSONAL_COLUMNS) - {"silver_customers"}  # no bronze, no quarantine
    grants = reader_grants("main", "s", "app-sp", read | {"bronze_events"}, APP_OBJECTS)
    assert len(grants) == len(APP_OBJECTS) and not [g for g in grants if "bronze" in g]
