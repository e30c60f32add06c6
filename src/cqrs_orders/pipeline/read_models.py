"""The read models, each declared once: from a declaration the projection derives its MERGE, ``rebuild``
its recompute, ``maintain`` its clustering, the lag monitor what it measures, and ``tables`` the schema.

Two kinds, one :class:`ReadModel` each in :data:`READ_MODELS` (nothing else lists them):

* **latest state** of an aggregate (``silver_orders``, ``silver_customers``): keyed by the aggregate id,
  one row per aggregate, the state carried by its winning event (highest version; see :mod:`.silver`).
  The declaration names the table, the aggregate type, the key, the columns, and the row function that
  turns winning events into rows.
* **an aggregate over another read model** (``silver_product_sales``), keyed by any columns: the
  declaration adds an :class:`Aggregation`, naming the read model it derives from, the *contribution* of
  one source row (zero or more rows of key columns and measures) and how each measure combines (a sum or
  a maximum). Events carry their aggregate's full state, so a source row's contribution is a pure function
  of that row: the MERGE adds, per key, the new winners' contributions minus those of the rows they
  replace (:func:`.silver.merge_aggregate`), which stays exact under duplicates, reordering and replays.

A row function receives the winning events as header columns (``aggregate_id``, ``version``,
``event_id``, ``event_type``, ``event_time``) plus ``state``: the event's ``data`` parsed with the
aggregate's state schema. Only winners are parsed (:meth:`ReadModel.winners_with_state`): bronze keeps the
raw body, and a batch's superseded events are never parsed beyond their envelope header.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cqrs_orders.envelope import SCHEMA_VERSION_FIELD, STATE_MODELS, AggregateType, OrderStatus
from cqrs_orders.envelope_schema import (
    JSON_OPTIONS,
    MONEY_SUM_TYPE,
    MONEY_TYPE,
    current_state,
    read_schema,
    spark_schema,
)

S, TS = T.StringType(), T.TimestampType()


def schema(*fields: tuple[str, T.DataType]) -> T.StructType:
    """A struct of nullable fields (the tables' style: Delta enforces no NOT NULL here)."""
    return T.StructType([T.StructField(name, data_type, True) for name, data_type in fields])


#: The columns every read model ends with: which event its row comes from, and when it was projected.
LAST_EVENT = (("version", T.LongType()), ("last_event_id", S), ("last_event_type", S),
              ("last_event_time", TS), ("projected_at", TS))  # fmt: skip


@dataclass(frozen=True)
class Measure:
    """One column of an aggregate read model and how contributions combine into it.

    ``sum``: added, and taken back by adding the negated contribution (exact for integers and decimals).
    ``max``: not invertible; when a contribution that may have been the maximum leaves, the keys concerned
    are recomputed from the source (see :func:`.silver.merge_aggregate`)."""

    name: str
    how: Literal["sum", "max"]


@dataclass(frozen=True)
class Aggregation:
    """How a read model follows from another one (its *source*), row by row.

    ``contribution`` turns source rows into contribution rows: the source's key (to tell each source row's
    contribution apart), the key columns and one column per measure, with at most one row per source row
    and key (an order holding a SKU on two lines is one contribution to that SKU's count of orders)."""

    source: ReadModel
    contribution: Callable[[DataFrame], DataFrame]
    measures: tuple[Measure, ...]
    #: The measure counting a key's contributions (a sum of 1 per contribution): a key whose count falls to
    #: zero has no source row behind it any more, and its row is deleted.
    count: str

    def totals(self, source_rows: DataFrame, key: tuple[str, ...]) -> DataFrame:
        """The read model's rows computed whole from ``source_rows`` (``rebuild``, and the tests' oracle)."""
        return (
            self.contribution(source_rows)
            .groupBy(*key)
            .agg(*[_combine(m, F.col(m.name)) for m in self.measures])
        )


def _combine(measure: Measure, column: Column) -> Column:
    combined = F.sum(column) if measure.how == "sum" else F.max(column)
    return combined.alias(measure.name)


@dataclass(frozen=True)
class ReadModel:
    """One read model: everything the pipeline and the operators' tools need to know about it."""

    table: str
    aggregate_type: AggregateType
    #: The MERGE key: the aggregate id's column, or for an aggregation any columns.
    key: tuple[str, ...]
    columns: T.StructType
    #: Columns Delta keeps statistics for: those that filters and the MERGE use.
    stats_columns: str
    #: Latest state: the row function over winning events, and a check of the parsed state (``state``
    #: column) a valid event of this type must pass. ``None`` for an aggregation.
    rows: Callable[[DataFrame], DataFrame] | None = None
    state_is_complete: Callable[[Column], Column] | None = None
    #: Set for a read model derived from another one.
    aggregation: Aggregation | None = None

    @property
    def derived_from(self) -> ReadModel | None:
        """The read model this one is computed from (its MERGE runs before that one's in each batch)."""
        return None if self.aggregation is None else self.aggregation.source

    @property
    def applied_by(self) -> ReadModel:
        """The latest-state read model whose progress is this one's: itself, or its source's (written in
        the same batch, just before its source), which is what the lag monitor measures."""
        return self if self.derived_from is None else self.derived_from.applied_by

    @property
    def cluster_key(self) -> tuple[str, ...]:
        """What ``maintain`` clusters on: the MERGE key, so a batch's key range maps to few files."""
        return self.key

    @property
    def state_schema(self) -> T.StructType:
        return spark_schema(STATE_MODELS[self.aggregate_type])

    def parse_state(self, body: Column) -> Column:
        """The ``data`` of a raw body in the current schema of this aggregate's state, whatever schema
        version the body was written in: the typed read that validation checked it with (:mod:`.bronze`),
        so a row holds what passed the check. Read the current names only (older ones stay in the
        struct, unread: :func:`~cqrs_orders.envelope_schema.current_state`)."""
        data_type = read_schema(self.aggregate_type)
        envelope = T.StructType(
            [
                T.StructField(SCHEMA_VERSION_FIELD, T.LongType(), True),
                T.StructField("data", data_type, True),
            ]
        )
        parsed = F.from_json(body, envelope, JSON_OPTIONS)
        return current_state(parsed["data"], data_type, parsed[SCHEMA_VERSION_FIELD], self.aggregate_type)

    def winners_with_state(self, winners: DataFrame) -> DataFrame:
        """Winning ``bronze_events`` rows of this type with their parsed ``state`` (only these are parsed)."""
        return winners.withColumn("state", self.parse_state(F.col("body")))

    def project(self, winners: DataFrame) -> DataFrame:
        """The read model's rows for winning events (one per aggregate); latest-state models only."""
        return self.rows(self.winners_with_state(winners))

    def recompute(self, source_rows: DataFrame) -> DataFrame:
        """An aggregation's rows computed whole from its source's rows, in the table's column order."""
        totals = self.aggregation.totals(source_rows, self.key)
        return totals.select(
            *[
                F.current_timestamp().alias(f.name) if f.name == "projected_at" else F.col(f.name)
                for f in self.columns.fields
            ]
        )


ORDER_ITEM_TYPE = T.StructType(
    [
        T.StructField("sku", S, True),
        T.StructField("quantity", T.LongType(), True),
        T.StructField("unit_price", MONEY_TYPE, True),
    ]
)


def last_event_columns() -> list[Column]:
    return [
        F.col("version"),
        F.col("event_id").alias("last_event_id"),
        F.col("event_type").alias("last_event_type"),
        F.col("event_time").alias("last_event_time"),
        F.current_timestamp().alias("projected_at"),
    ]


def order_rows(winners: DataFrame) -> DataFrame:
    """``silver_orders`` rows from winning Order events."""
    state = F.col("state")
    items = F.transform(
        state["items"],
        lambda item: F.struct(
            item["sku"].alias("sku"),
            item["quantity"].alias("quantity"),
            item["price"].alias("unit_price"),
        ),
    )
    total = F.aggregate(
        state["items"],
        F.lit(0).cast(MONEY_TYPE),
        lambda acc, item: (acc + item["quantity"] * item["price"]).cast(MONEY_TYPE),
    )
    count = F.aggregate(state["items"], F.lit(0).cast("bigint"), lambda acc, item: acc + item["quantity"])
    return winners.select(
        F.col("aggregate_id").alias("order_id"),
        state["customerId"].alias("customer_id"),
        state["status"].alias("status"),
        items.alias("items"),
        count.alias("item_count"),
        total.alias("total_amount"),
        state["currency"].alias("currency"),
        state["createdAt"].alias("created_at"),
        state["updatedAt"].alias("updated_at"),
        *last_event_columns(),
    )


def customer_rows(winners: DataFrame) -> DataFrame:
    """``silver_customers`` rows from winning Customer events."""
    state = F.col("state")
    return winners.select(
        F.col("aggregate_id").alias("customer_id"),
        state["name"].alias("customer_name"),
        state["email"].alias("email"),
        state["createdAt"].alias("created_at"),
        state["updatedAt"].alias("updated_at"),
        *last_event_columns(),
    )


def order_state_is_complete(state: Column) -> Column:
    def item_ok(item: Column) -> Column:
        return item["sku"].isNotNull() & (item["quantity"] > 0) & (item["price"] >= 0)

    return (
        state["customerId"].isNotNull()
        & state["status"].isin([s.value for s in OrderStatus])
        & state["items"].isNotNull()
        & F.forall(state["items"], item_ok)
        & state["currency"].rlike(r"^[A-Z]{3}$")
        & state["createdAt"].isNotNull()
        & state["updatedAt"].isNotNull()
    )


def customer_state_is_complete(state: Column) -> Column:
    return (
        state["name"].isNotNull()
        & state["email"].isNotNull()
        & state["createdAt"].isNotNull()
        & state["updatedAt"].isNotNull()
    )


SILVER_ORDERS = ReadModel(
    table="silver_orders",
    aggregate_type=AggregateType.ORDER,
    key=("order_id",),
    columns=schema(
        ("order_id", S),
        ("customer_id", S),
        ("status", S),
        ("items", T.ArrayType(ORDER_ITEM_TYPE, True)),
        ("item_count", T.LongType()),
        ("total_amount", MONEY_TYPE),
        ("currency", S),
        ("created_at", TS),
        ("updated_at", TS),
        *LAST_EVENT,
    ),
    rows=order_rows,
    state_is_complete=order_state_is_complete,
    stats_columns="order_id,customer_id,status,created_at,version,last_event_time,projected_at",
)

SILVER_CUSTOMERS = ReadModel(
    table="silver_customers",
    aggregate_type=AggregateType.CUSTOMER,
    key=("customer_id",),
    columns=schema(
        ("customer_id", S),
        ("customer_name", S),
        ("email", S),
        ("created_at", TS),
        ("updated_at", TS),
        *LAST_EVENT,
    ),
    rows=customer_rows,
    state_is_complete=customer_state_is_complete,
    stats_columns="customer_id,created_at,version,last_event_time,projected_at",
)


def product_sales_contribution(orders: DataFrame) -> DataFrame:
    """What one ``silver_orders`` row adds to ``silver_product_sales``: per SKU of a non-cancelled order,
    its units, its revenue, the order once (however many lines hold the SKU) and the order's creation time.
    A cancelled order adds nothing, so cancelling takes its sales back."""
    item = F.col("item")
    lines = orders.where(F.col("status") != OrderStatus.CANCELLED.value).select(
        "order_id", "currency", "created_at", F.explode("items").alias("item")
    )
    return lines.groupBy("order_id", item["sku"].alias("sku"), "currency").agg(
        F.sum(item["quantity"]).cast("bigint").alias("units"),
        F.sum(item["quantity"] * item["unit_price"]).cast(MONEY_SUM_TYPE).alias("revenue"),
        F.lit(1).cast("bigint").alias("orders"),
        F.max("created_at").alias("last_sale_at"),
    )


SILVER_PRODUCT_SALES = ReadModel(
    table="silver_product_sales",
    aggregate_type=AggregateType.ORDER,
    key=("sku", "currency"),
    columns=schema(
        ("sku", S),
        ("currency", S),
        ("units", T.LongType()),
        ("revenue", MONEY_SUM_TYPE),
        ("orders", T.LongType()),
        ("last_sale_at", TS),
        ("projected_at", TS),
    ),
    stats_columns="sku,currency,last_sale_at,projected_at",
    aggregation=Aggregation(
        source=SILVER_ORDERS,
        contribution=product_sales_contribution,
        measures=(
            Measure("units", "sum"),
            Measure("revenue", "sum"),
            Measure("orders", "sum"),
            Measure("last_sale_at", "max"),
        ),
        count="orders",
    ),
)

#: Every read model. A derived one comes after the one it derives from.
READ_MODELS: tuple[ReadModel, ...] = (SILVER_ORDERS, SILVER_CUSTOMERS, SILVER_PRODUCT_SALES)
#: The latest-state read models, one per aggregate type: what validation checks events against.
LATEST_STATE_MODELS: tuple[ReadModel, ...] = tuple(m for m in READ_MODELS if m.aggregation is None)


def read_model(aggregate_type: str) -> ReadModel:
    """The latest-state read model of ``aggregate_type``."""
    return next(model for model in LATEST_STATE_MODELS if model.aggregate_type.value == aggregate_type)


def derived_from(source: ReadModel) -> tuple[ReadModel, ...]:
    """The read models computed from ``source``."""
    return tuple(model for model in READ_MODELS if model.derived_from is source)
