"""The read models, each declared once: from a declaration the projection derives its MERGE, ``rebuild``
its recompute, ``maintain`` its clustering, the lag monitor what it measures, and ``tables`` the schema.

A read model holds one row per aggregate of one type: the state carried by the aggregate's winning event
(highest version; see :mod:`.silver`). Its declaration names the table, the aggregate type, the key, the
columns, and the row function that turns winning events into rows. Adding a read model is one
:class:`ReadModel` in :data:`READ_MODELS` plus its row function; nothing else lists them.

A row function receives the winning events as header columns (``aggregate_id``, ``version``,
``event_id``, ``event_type``, ``event_time``) plus ``state``: the event's ``data`` parsed with the
aggregate's state schema. Only winners are parsed (:meth:`ReadModel.winners_with_state`): bronze keeps the
raw body, and a batch's superseded events are never parsed beyond their envelope header.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cqrs_orders.envelope import STATE_MODELS, AggregateType, OrderStatus
from cqrs_orders.envelope_schema import JSON_OPTIONS, MONEY_TYPE, spark_schema

S, TS = T.StringType(), T.TimestampType()


def schema(*fields: tuple[str, T.DataType]) -> T.StructType:
    """A struct of nullable fields (the tables' style: Delta enforces no NOT NULL here)."""
    return T.StructType([T.StructField(name, data_type, True) for name, data_type in fields])


#: The columns every read model ends with: which event its row comes from, and when it was projected.
LAST_EVENT = (("version", T.LongType()), ("last_event_id", S), ("last_event_type", S),
              ("last_event_time", TS), ("projected_at", TS))  # fmt: skip


@dataclass(frozen=True)
class ReadModel:
    """One read model: everything the pipeline and the operators' tools need to know about it."""

    table: str
    aggregate_type: AggregateType
    key: str
    columns: T.StructType
    rows: Callable[[DataFrame], DataFrame]
    #: A check of the parsed state (``state`` column) a valid event of this type must pass.
    state_is_complete: Callable[[Column], Column]
    #: Columns Delta keeps statistics for: those that filters and the MERGE use.
    stats_columns: str = ""

    @property
    def cluster_key(self) -> str:
        """What ``maintain`` clusters on: the MERGE key, so a batch's key range maps to few files."""
        return self.key

    @property
    def state_schema(self) -> T.StructType:
        return spark_schema(STATE_MODELS[self.aggregate_type])

    def parse_state(self, body: Column) -> Column:
        """The ``data`` of a raw body, typed by this aggregate's state schema: the typed read that
        validation checked it with (:mod:`.bronze`), so a row holds what passed the check."""
        envelope = T.StructType([T.StructField("data", self.state_schema, True)])
        return F.from_json(body, envelope, JSON_OPTIONS)["data"]

    def winners_with_state(self, winners: DataFrame) -> DataFrame:
        """Winning ``bronze_events`` rows of this type with their parsed ``state`` (only these are parsed)."""
        return winners.withColumn("state", self.parse_state(F.col("body")))

    def project(self, winners: DataFrame) -> DataFrame:
        """The read model's rows for winning events (one per aggregate)."""
        return self.rows(self.winners_with_state(winners))


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
            item["unitPrice"].alias("unit_price"),
        ),
    )
    total = F.aggregate(
        state["items"],
        F.lit(0).cast(MONEY_TYPE),
        lambda acc, item: (acc + item["quantity"] * item["unitPrice"]).cast(MONEY_TYPE),
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
        return item["sku"].isNotNull() & (item["quantity"] > 0) & (item["unitPrice"] >= 0)

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


READ_MODELS: tuple[ReadModel, ...] = (
    ReadModel(
        table="silver_orders",
        aggregate_type=AggregateType.ORDER,
        key="order_id",
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
    ),
    ReadModel(
        table="silver_customers",
        aggregate_type=AggregateType.CUSTOMER,
        key="customer_id",
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
    ),
)


def read_model(aggregate_type: str) -> ReadModel:
    """The read model of ``aggregate_type``."""
    return next(model for model in READ_MODELS if model.aggregate_type.value == aggregate_type)
