"""The read-side API: an order, a customer's orders, a product's sales, daily metrics, from the read models
and the views.

The same SQL runs on local Spark (``spark.sql(query, args=...)``), on a Databricks SQL warehouse
(statement execution API with ``parameters=[...]``) and, without Spark, on the warehouse's Delta folders
(:mod:`cqrs_orders.query.delta`, for the HTTP server). Values are always bound as named parameters, never
formatted into the SQL text as given, so an id like ``x' OR '1'='1`` is only ever compared, not executed.
Rows come back as dicts with the same Python types from both backends: ``str``, ``int``, ``Decimal`` for
money, ``datetime.date``, and timezone-aware UTC ``datetime``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Protocol

from cqrs_orders.errors import QueryError

_SUMMARY_COLUMNS = (
    "order_id, customer_id, customer_name, status, total_amount, item_count, created_date, updated_date"
)
GET_ORDER = f"SELECT {_SUMMARY_COLUMNS} FROM vw_order_summary WHERE order_id = :order_id"
ORDERS_OF_CUSTOMER = (
    f"SELECT {_SUMMARY_COLUMNS} FROM vw_order_summary WHERE customer_id = :customer_id "
    "ORDER BY created_date, order_id"
)
GET_CUSTOMER = (
    "SELECT customer_id, customer_name, created_at, updated_at FROM silver_customers "
    "WHERE customer_id = :customer_id"
)
#: A product's sales, one row per currency (``silver_product_sales``: orders not cancelled).
PRODUCT_SALES = (
    "SELECT sku, currency, units, revenue, orders, last_sale_at FROM silver_product_sales "
    "WHERE sku = :sku ORDER BY currency"
)
#: How far the read models have got: the newest event they applied and when they were last projected.
FRESHNESS = (
    "SELECT max(last_event_time) AS last_event_time, max(projected_at) AS projected_at FROM ("
    "SELECT last_event_time, projected_at FROM silver_orders "
    "UNION ALL SELECT last_event_time, projected_at FROM silver_customers) AS read_models"
)  # the latest-state read models: a derived one is written in the same batch, before its source
DAILY_METRICS = (
    "SELECT order_date, order_count, total_revenue, avg_order_value, unique_customers "
    "FROM vw_daily_order_metrics WHERE order_date BETWEEN :start_date AND :end_date ORDER BY order_date"
)


@dataclass(frozen=True)
class Parameter:
    """A value bound to ``:name``, with its SQL type (STRING, DATE)."""

    value: str | date
    sql_type: str


class Backend(Protocol):
    def query(self, statement: str, parameters: dict[str, Parameter]) -> list[dict[str, Any]]: ...


class ReadModels:
    """Queries of the read models; build it with :meth:`on_spark` or :meth:`on_sql_warehouse`."""

    def __init__(self, backend: Backend):
        self._backend = backend

    @classmethod
    def on_spark(cls, spark, settings) -> ReadModels:
        """Local Spark (or a Databricks cluster): registers the warehouse's tables and views first."""
        from cqrs_orders.query.views import register_views

        register_views(spark, settings)
        return cls(SparkBackend(spark))

    @classmethod
    def on_sql_warehouse(cls, workspace_client, warehouse_id: str, catalog: str, schema: str) -> ReadModels:
        """A Databricks SQL warehouse reading the views deployed in ``catalog.schema``."""
        return cls(SqlWarehouseBackend(workspace_client, warehouse_id, catalog, schema))

    @classmethod
    def on_delta(cls, settings) -> ReadModels:
        """The warehouse's Delta folders read in this process with ``deltalake``: no Spark, no JVM."""
        from cqrs_orders.query.delta import DeltaBackend

        return cls(DeltaBackend.for_warehouse(settings))

    def get_order(self, order_id: str) -> dict[str, Any] | None:
        rows = self._backend.query(GET_ORDER, {"order_id": Parameter(order_id, "STRING")})
        return rows[0] if rows else None

    def orders_of_customer(self, customer_id: str) -> list[dict[str, Any]]:
        return self._backend.query(ORDERS_OF_CUSTOMER, {"customer_id": Parameter(customer_id, "STRING")})

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        rows = self._backend.query(GET_CUSTOMER, {"customer_id": Parameter(customer_id, "STRING")})
        return rows[0] if rows else None

    def product_sales(self, sku: str) -> list[dict[str, Any]]:
        """The sales of ``sku`` in orders not cancelled, one row per currency (none: never sold)."""
        return self._backend.query(PRODUCT_SALES, {"sku": Parameter(sku, "STRING")})

    def freshness(self) -> dict[str, datetime | None]:
        """``last_event_time`` (the newest event applied to the read models) and ``projected_at`` (when the
        projection last wrote them); both ``None`` while they are empty."""
        return self._backend.query(FRESHNESS, {})[0]

    def daily_metrics(self, start: date, end: date) -> list[dict[str, Any]]:
        """One row per day from ``start`` to ``end`` (both included) that had orders."""
        return self._backend.query(
            DAILY_METRICS, {"start_date": Parameter(start, "DATE"), "end_date": Parameter(end, "DATE")}
        )


class SparkBackend:
    """Runs on a Spark session where the logical names resolve (see ``register_views``)."""

    def __init__(self, spark):
        self._spark = spark  # local sessions bind parameters despite delta-io/delta#7640: see spark.py

    def query(self, statement: str, parameters: dict[str, Parameter]) -> list[dict[str, Any]]:
        from pyspark.errors import PySparkException

        args = {name: parameter.value for name, parameter in parameters.items()}
        try:
            rows = self._spark.sql(statement, args=args).collect()
        except PySparkException as error:
            raise QueryError(f"The read-model query failed: {str(error).splitlines()[0]}") from None
        return [{key: _utc(value) for key, value in row.asDict().items()} for row in rows]


def _utc(value):
    # PySpark hands timestamps over as naive datetimes in the process's local time zone.
    return value.astimezone(timezone.utc) if isinstance(value, datetime) else value


class SqlWarehouseBackend:
    """Runs on a Databricks SQL warehouse through the databricks-sdk statement execution API."""

    def __init__(self, workspace_client, warehouse_id: str, catalog: str, schema: str, timeout_seconds=120):
        self._client = workspace_client
        self._warehouse_id = warehouse_id
        self._catalog = catalog
        self._schema = schema
        self._timeout_seconds = timeout_seconds

    def query(self, statement: str, parameters: dict[str, Parameter]) -> list[dict[str, Any]]:
        from databricks.sdk.service.sql import Disposition, Format, StatementParameterListItem

        api = self._client.statement_execution
        response = api.execute_statement(
            statement=statement,
            warehouse_id=self._warehouse_id,
            catalog=self._catalog,
            schema=self._schema,
            parameters=[
                StatementParameterListItem(name=name, value=_text(parameter.value), type=parameter.sql_type)
                for name, parameter in parameters.items()
            ],
            disposition=Disposition.INLINE,
            format=Format.JSON_ARRAY,
            wait_timeout="30s",
        )
        response = self._wait(response)
        columns = [(column.name, column.type_name.value) for column in response.manifest.schema.columns]
        data = list(response.result.data_array or []) if response.result else []
        chunk = response.result
        while chunk is not None and chunk.next_chunk_index is not None:
            chunk = api.get_statement_result_chunk_n(response.statement_id, chunk.next_chunk_index)
            data.extend(chunk.data_array or [])
        return [
            {name: _parse(value, type_name) for (name, type_name), value in zip(columns, row, strict=True)}
            for row in data
        ]

    def _wait(self, response):
        from databricks.sdk.service.sql import StatementState

        deadline = time.monotonic() + self._timeout_seconds
        while response.status.state in (StatementState.PENDING, StatementState.RUNNING):
            if time.monotonic() > deadline:
                self._client.statement_execution.cancel_execution(response.statement_id)
                raise QueryError(f"The SQL warehouse did not answer within {self._timeout_seconds} s.")
            time.sleep(0.2)
            response = self._client.statement_execution.get_statement(response.statement_id)
        if response.status.state != StatementState.SUCCEEDED:
            error = response.status.error
            message = error.message if error else response.status.state.value
            raise QueryError(f"The SQL warehouse statement failed: {message}")
        return response


def _text(value: str | date) -> str:
    return value.isoformat() if isinstance(value, date) else value


def _parse(value: str | None, type_name: str):
    """A JSON_ARRAY cell (always a string) as the Python type Spark would hand over."""
    if value is None:
        return None
    if type_name in ("LONG", "INT", "SHORT", "BYTE"):
        return int(value)
    if type_name == "DECIMAL":
        return Decimal(value)
    if type_name in ("DOUBLE", "FLOAT"):
        return float(value)
    if type_name == "BOOLEAN":
        return value == "true"
    if type_name == "DATE":
        return date.fromisoformat(value)
    if type_name == "TIMESTAMP":
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    return value
