"""The read-side API: one contract, run on local Spark and through a real databricks-sdk client.

The SQL-warehouse backend talks to a small local HTTP server that speaks the statement execution API
(``statement_server.py``: POST /api/2.0/sql/statements, GET /api/2.0/sql/statements/{id}) and answers by
running the received statement, with the received parameters bound, on the test's Spark session over the
hand-made warehouse.
"""

from __future__ import annotations

import importlib.util
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from cqrs_orders.delta_io import table
from cqrs_orders.errors import QueryError
from cqrs_orders.query.api import ReadModels, SparkBackend
from cqrs_orders.query.views import register_views

INJECTION = "x' OR '1'='1"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


class ReadModelsContract:
    """What every backend of ReadModels must do; subclasses provide the ``read_models`` fixture."""

    def test_get_order_returns_the_summary_row_with_python_types(self, read_models):
        assert read_models.get_order("o-1") == {
            "order_id": "o-1",
            "customer_id": "cust-1",
            "customer_name": "Ada",
            "status": "Created",
            "total_amount": Decimal("25.50"),
            "item_count": 3,
            "created_date": utc("2025-01-15T09:00:00"),
            "updated_date": utc("2025-01-15T09:00:00"),
        }

    def test_an_order_of_an_unknown_customer_has_no_name(self, read_models):
        order = read_models.get_order("o-3")
        assert (order["customer_id"], order["customer_name"], order["status"]) == ("cust-9", None, "Shipped")

    def test_an_unknown_order_is_none(self, read_models):
        assert read_models.get_order("o-404") is None

    def test_orders_of_a_customer_come_oldest_first(self, read_models):
        orders = read_models.orders_of_customer("cust-1")
        assert [(o["order_id"], o["status"]) for o in orders] == [
            ("o-1", "Created"),
            ("o-4", "Cancelled"),
            ("o-5", "Delivered"),
        ]
        assert read_models.orders_of_customer("cust-404") == []

    def test_daily_metrics_between_two_days_inclusive(self, read_models):
        assert read_models.daily_metrics(date(2025, 1, 16), date(2025, 1, 31)) == [
            {
                "order_date": date(2025, 1, 16),
                "order_count": 2,
                "total_revenue": Decimal("101.98"),
                "avg_order_value": Decimal("50.99"),
                "unique_customers": 2,
            }
        ]
        assert len(read_models.daily_metrics(date(2025, 1, 15), date(2025, 1, 16))) == 2
        assert read_models.daily_metrics(date(2024, 1, 1), date(2024, 12, 31)) == []

    def test_a_customer_is_found_by_id(self, read_models):
        assert read_models.get_customer("cust-2") == {
            "customer_id": "cust-2",
            "customer_name": "Bob",
            "created_at": utc("2025-01-14T09:00:00"),
            "updated_at": utc("2025-01-14T09:00:00"),
        }
        assert read_models.get_customer("cust-9") is None  # has an order, but was never projected

    def test_freshness_is_the_newest_event_applied_and_the_last_projection(self, read_models):
        # the hand-made rows carry last_event_time = projected_at = updated_at; o-5 is the newest
        assert read_models.freshness() == {
            "last_event_time": utc("2025-01-17T10:00:00"),
            "projected_at": utc("2025-01-17T10:00:00"),
        }

    def test_values_are_bound_not_executed(self, read_models):
        assert read_models.get_order(INJECTION) is None
        assert read_models.orders_of_customer(f"cust-1{INJECTION[1:]}") == []
        assert read_models.product_sales(INJECTION) == []

    def test_a_products_sales_come_one_row_per_currency(self, read_models):
        assert read_models.product_sales("A") == [
            {"sku": "A", "currency": "EUR", "units": 2, "revenue": Decimal("20.50"), "orders": 1,
             "last_sale_at": utc("2025-01-15T09:00:00")},
            {"sku": "A", "currency": "USD", "units": 3, "revenue": Decimal("36.00"), "orders": 2,
             "last_sale_at": utc("2025-01-16T12:00:00")},
        ]  # fmt: skip
        assert read_models.product_sales("E") == []  # only in a cancelled order


@pytest.fixture(scope="module")
def registered(spark, read_warehouse):
    register_views(spark, read_warehouse)
    return read_warehouse


class TestOnSpark(ReadModelsContract):
    @pytest.fixture
    def read_models(self, spark, registered):
        return ReadModels(SparkBackend(spark))  # the views are registered once per module

    def test_on_spark_registers_the_warehouse_first(self, spark, registered):
        spark.catalog.dropTempView("vw_order_summary")
        assert ReadModels.on_spark(spark, registered).get_order("o-5")["status"] == "Delivered"


class TestOnDelta(ReadModelsContract):
    """The same contract on the Delta folders, read by deltalake without Spark (the HTTP server's backend)."""

    @pytest.fixture
    def read_models(self, read_warehouse):
        return ReadModels.on_delta(read_warehouse)

    def test_a_missing_table_is_a_query_error_that_says_what_to_run(self, settings):
        with pytest.raises(QueryError, match="project --once"):
            ReadModels.on_delta(settings).get_order("o-1")

    def test_a_new_version_of_a_table_is_seen_by_the_next_query(self, spark, write_warehouse, settings):
        write_warehouse(settings, ("silver_orders", "silver_customers"))
        read_models = ReadModels.on_delta(settings)
        assert read_models.get_order("o-1")["status"] == "Created"

        table(settings, "silver_orders").delta(spark).delete("order_id = 'o-1'")

        assert read_models.get_order("o-1") is None


# --- the SQL warehouse: a local stand-in of the statement execution API, answering with Spark -------------
def _load_statement_server():
    # Test folders are not packages (pytest's importlib mode), so load the sibling module by path.
    path = Path(__file__).with_name("statement_server.py")
    spec = importlib.util.spec_from_file_location("_read_side_statement_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stand_in = _load_statement_server()

_TYPE_NAMES = {
    "StringType": "STRING",
    "LongType": "LONG",
    "IntegerType": "INT",
    "DecimalType": "DECIMAL",
    "DateType": "DATE",
    "TimestampType": "TIMESTAMP",
    "DoubleType": "DOUBLE",
    "BooleanType": "BOOLEAN",
}


def spark_engine(spark):
    """Runs each received statement, its parameters bound, on the test's Spark session."""

    def run(statement: str, args: dict):
        from pyspark.errors import PySparkException

        try:
            frame = spark.sql(statement, args=args)
            rows = frame.collect()
        except PySparkException as error:
            raise stand_in.StatementFailed(str(error).splitlines()[0]) from None
        columns = [
            (field.name, _TYPE_NAMES[type(field.dataType).__name__], field.dataType.simpleString().upper())
            for field in frame.schema.fields
        ]
        return columns, [list(row) for row in rows]

    return run


@pytest.fixture(scope="module")
def statement_server(spark, registered):
    server = stand_in.StatementServer(spark_engine(spark)).start()
    yield server
    server.stop()


@pytest.fixture
def server(statement_server):
    statement_server.requests.clear()
    statement_server.defer = False
    return statement_server


class TestOnSqlWarehouse(ReadModelsContract):
    @pytest.fixture
    def read_models(self, server):
        from databricks.sdk import WorkspaceClient

        host = f"http://127.0.0.1:{server.server_address[1]}"
        client = WorkspaceClient(host=host, token="x", auth_type="pat")
        return ReadModels.on_sql_warehouse(client, warehouse_id="wh-1", catalog="main", schema="orders")

    def test_values_travel_as_parameters_next_to_the_sql(self, read_models, server):
        assert read_models.get_order(INJECTION) is None
        read_models.daily_metrics(date(2025, 1, 15), date(2025, 1, 16))

        lookup, metrics = server.requests
        assert INJECTION not in lookup["statement"] and ":order_id" in lookup["statement"]
        assert lookup["parameters"] == [{"name": "order_id", "type": "STRING", "value": INJECTION}]
        assert metrics["parameters"] == [
            {"name": "start_date", "type": "DATE", "value": "2025-01-15"},
            {"name": "end_date", "type": "DATE", "value": "2025-01-16"},
        ]
        assert (lookup["warehouse_id"], lookup["catalog"], lookup["schema"]) == ("wh-1", "main", "orders")
        assert (lookup["format"], lookup["disposition"]) == ("JSON_ARRAY", "INLINE")
        assert lookup["authorization"] == "Bearer x"

    def test_a_statement_still_running_is_polled_until_done(self, read_models, server):
        server.defer = True
        assert read_models.get_order("o-2")["customer_name"] == "Bob"

    def test_a_failed_statement_is_a_query_error(self, read_models, server):
        from cqrs_orders.query.api import Parameter

        with pytest.raises(QueryError, match="statement failed"):
            read_models._backend.query(
                "SELECT * FROM no_such_table WHERE id = :id", {"id": Parameter("1", "STRING")}
            )
