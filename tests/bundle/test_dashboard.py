"""The Lakeview dashboard's file is consistent: every widget reads a dataset that exists and shows fields its
query defines, and every dataset query is valid SQL over the tables' contract schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, DecimalType, LongType, StructField, StructType

from cqrs_orders.ops.lag import LAG_SCHEMA
from cqrs_orders.pipeline.tables import SCHEMAS

DASHBOARD = Path(__file__).resolve().parents[2] / "src" / "dashboards" / "cqrs_orders.lvdash.json"
MONEY = DecimalType(18, 2)
#: The contract schemas of what the datasets read (the view's from the shared contract).
SOURCES = {
    "vw_daily_order_metrics": StructType(
        [
            StructField("order_date", DateType()),
            StructField("order_count", LongType()),
            StructField("total_revenue", DecimalType(38, 2)),  # a sum of amounts
            StructField("avg_order_value", MONEY),
            StructField("unique_customers", LongType()),
        ]
    ),
    "silver_orders": SCHEMAS["silver_orders"],
    "silver_product_sales": SCHEMAS["silver_product_sales"],
    "ops_projection_lag": LAG_SCHEMA,
}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def widgets(dashboard: dict):
    for page in dashboard["pages"]:
        for item in page["layout"]:
            if "queries" in item["widget"]:
                yield item["widget"]


def test_the_dashboard_shows_revenue_orders_status_mix_lag_and_top_products(dashboard):
    assert {d["name"] for d in dashboard["datasets"]} == {
        "daily_metrics",
        "status_mix",
        "projection_lag",
        "top_products",
    }
    titles = [w["spec"]["frame"]["title"] for w in widgets(dashboard)]
    assert len(titles) == 5 and any("lag" in title.lower() for title in titles)
    (products,) = [w for w in widgets(dashboard) if w["queries"][0]["query"]["datasetName"] == "top_products"]
    assert products["spec"]["widgetType"] in ("bar", "table")


def test_every_widget_reads_an_existing_dataset_and_its_own_fields(dashboard):
    datasets = {d["name"] for d in dashboard["datasets"]}
    for widget in widgets(dashboard):
        (query,) = widget["queries"]
        assert query["query"]["datasetName"] in datasets, widget["name"]
        fields = {f["name"] for f in query["query"]["fields"]}
        encoded = {e["fieldName"] for e in widget["spec"]["encodings"].values()}
        assert encoded <= fields, widget["name"]
    for page in dashboard["pages"]:
        for item in page["layout"]:
            position = item["position"]
            assert position["x"] + position["width"] <= 6, item["widget"]["name"]  # the canvas is 6 wide


def test_dataset_queries_and_widget_expressions_resolve_against_the_contract_schemas(dashboard, spark):
    for name, schema in SOURCES.items():
        spark.createDataFrame([], schema).createOrReplaceTempView(name)
    try:
        frames = {
            d["name"]: spark.sql("".join(d["queryLines"])) for d in dashboard["datasets"]
        }  # analysis only
        for widget in widgets(dashboard):
            query = widget["queries"][0]["query"]
            fields = [
                (F.expr(f["expression"]).alias(f["name"]), "(" in f["expression"]) for f in query["fields"]
            ]
            keys = [column for column, aggregated in fields if not aggregated]
            aggregates = [column for column, aggregated in fields if aggregated]
            frames[query["datasetName"]].groupBy(*keys).agg(*aggregates).schema  # noqa: B018 - resolving is the check
    finally:
        for name in SOURCES:
            spark.catalog.dropTempView(name)
