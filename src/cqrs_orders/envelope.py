"""The event envelope: the one contract between the command side, the event bus and the read side.

Every event carries the aggregate's **full state after the event** in ``data`` (event-carried state), so a
projection only has to keep the highest version per aggregate and never needs to replay in order.

This module is the single definition: the pydantic models below validate and serialise events in Python,
and :mod:`cqrs_orders.envelope_schema` derives the Spark schema from the very same models.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

Id = Annotated[str, Field(min_length=1, max_length=128)]

#: The money rule, written once: a non-negative amount with at most 2 decimals and at most 16 digits before
#: the point (exactly what decimal(18,2) holds in the read models). It is kept as a ``Decimal`` with exactly
#: two decimals (``9.5`` is kept as ``9.50``, ``-0`` as ``0.00``) and travels as a JSON **string** of those
#: digits (``"9.50"``) in the write store, the events, the bus and the API. A string, because a JSON number
#: is read as a binary float by most readers (pydantic included), which holds only 15 to 17 digits. Readers
#: also take a number, as events written before this rule have them.
MONEY_MAX_DIGITS, MONEY_DECIMAL_PLACES = 18, 2
_CENT = Decimal(1).scaleb(-MONEY_DECIMAL_PLACES)


def _two_decimals(value: Decimal) -> Decimal:
    return value.quantize(_CENT) + 0  # ``+ 0`` turns -0.00 into 0.00


Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, allow_inf_nan=False),
    AfterValidator(_two_decimals),
    PlainSerializer(str, return_type=str, when_used="json"),
]
#: Timestamps are ISO-8601 UTC with a ``Z`` suffix on the wire.
UtcTimestamp = Annotated[
    AwareDatetime,
    PlainSerializer(
        lambda value: value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        return_type=str,
        when_used="json",
    ),
]


class AggregateType(str, Enum):
    ORDER = "Order"
    CUSTOMER = "Customer"


class OrderStatus(str, Enum):
    CREATED = "Created"
    CONFIRMED = "Confirmed"
    SHIPPED = "Shipped"
    DELIVERED = "Delivered"
    CANCELLED = "Cancelled"


#: Every event type, with the aggregate it belongs to. Past tense: an event is a fact. Commands name the
#: ones they record (their ``emits``, checked against this when they are declared); the catalog itself
#: is here, with the envelope, because the read side checks events without the command side's code, and
#: an event in the log stays readable after the command that recorded it is gone.
EVENT_CATALOG: dict[str, AggregateType] = {
    "CustomerRegistered": AggregateType.CUSTOMER,
    "CustomerUpdated": AggregateType.CUSTOMER,
    "OrderCreated": AggregateType.ORDER,
    "OrderItemAdded": AggregateType.ORDER,
    "OrderItemRemoved": AggregateType.ORDER,
    "OrderConfirmed": AggregateType.ORDER,
    "OrderShipped": AggregateType.ORDER,
    "OrderDelivered": AggregateType.ORDER,
    "OrderCancelled": AggregateType.ORDER,
}

#: The field of ``data`` holding the aggregate id, per aggregate type.
AGGREGATE_ID_FIELD = {AggregateType.ORDER: "orderId", AggregateType.CUSTOMER: "customerId"}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LineItem(_Model):
    sku: Id
    quantity: int = Field(gt=0)
    unitPrice: Money


class OrderState(_Model):
    orderId: Id
    customerId: Id
    status: OrderStatus
    items: tuple[LineItem, ...]
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    createdAt: UtcTimestamp
    updatedAt: UtcTimestamp


class CustomerState(_Model):
    customerId: Id
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    createdAt: UtcTimestamp
    updatedAt: UtcTimestamp


STATE_MODELS: dict[AggregateType, type[_Model]] = {
    AggregateType.ORDER: OrderState,
    AggregateType.CUSTOMER: CustomerState,
}


class EventMetadata(_Model):
    """Who asked for the event. ``userId`` is the caller the entry point established and ``authenticatedBy``
    what vouches for it (:mod:`cqrs_orders.application.identity`: ``databricks-apps``, ``databricks``,
    ``os-user``, ``forwarded-headers``, ``none``); ``claimedUserId`` is the command's own
    ``metadata.userId``, a claim nobody checked (a front-end naming its end user). Events written before
    this rule have no ``authenticatedBy``: their ``userId`` was the claim."""

    userId: str | None = None
    source: str | None = None
    claimedUserId: str | None = None
    authenticatedBy: str | None = None


class EventEnvelope(_Model):
    """One event as it travels: identity, ordering (``version``), causality, full state and metadata."""

    # Readers accept extra, unknown fields (schema drift); writers never emit them.
    model_config = ConfigDict(frozen=True, extra="ignore")

    eventId: uuid.UUID
    eventType: str
    aggregateId: Id
    aggregateType: AggregateType
    version: int = Field(ge=1, description="the aggregate's version after this event")
    timestamp: UtcTimestamp
    correlationId: str | None = None
    causationId: str | None = Field(default=None, description="the commandId that caused this event")
    data: OrderState | CustomerState
    metadata: EventMetadata = EventMetadata()

    @field_validator("eventType")
    @classmethod
    def _known_event_type(cls, value: str) -> str:
        if value not in EVENT_CATALOG:
            raise ValueError(f"unknown eventType {value!r}; known: {', '.join(EVENT_CATALOG)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _parse_data_by_aggregate_type(cls, values: Any) -> Any:
        """Pick the state model from ``aggregateType`` so errors name the right fields."""
        if isinstance(values, dict) and isinstance(values.get("data"), dict):
            try:
                model = STATE_MODELS[AggregateType(values.get("aggregateType"))]
            except ValueError:
                return values
            values = {**values, "data": model.model_validate(values["data"])}
        return values

    @model_validator(mode="after")
    def _consistent(self) -> EventEnvelope:
        if EVENT_CATALOG[self.eventType] is not self.aggregateType:
            raise ValueError(f"{self.eventType} belongs to {EVENT_CATALOG[self.eventType].value} aggregates")
        if not isinstance(self.data, STATE_MODELS[self.aggregateType]):
            raise ValueError(f"data is not a {self.aggregateType.value} state")
        data_id = getattr(self.data, AGGREGATE_ID_FIELD[self.aggregateType])
        if data_id != self.aggregateId:
            raise ValueError(f"data id {data_id!r} disagrees with aggregateId {self.aggregateId!r}")
        return self

    def to_json(self, data_json: str | None = None) -> str:
        """The wire form: compact JSON, UTC ``Z`` timestamps, money as decimal strings, ``data`` last.

        ``data_json`` is ``data`` already serialised (the write store needs it for the aggregate's row
        anyway): spliced in instead of serialised a second time, the state being most of an event.
        """
        head = self.model_dump_json(exclude={"data"})
        return f'{head[:-1]},"data":{data_json or self.data.model_dump_json()}}}'

    @classmethod
    def from_json(cls, body: str | bytes) -> EventEnvelope:
        return cls.model_validate_json(body)


def new_event(
    event_type: str,
    state: OrderState | CustomerState,
    version: int,
    *,
    causation_id: str | None = None,
    correlation_id: str | None = None,
    metadata: EventMetadata | None = None,
    at: datetime | None = None,
) -> EventEnvelope:
    """Build an envelope for ``state`` (the aggregate after the event)."""
    aggregate_type = EVENT_CATALOG[event_type]
    return EventEnvelope(
        eventId=uuid.uuid4(),
        eventType=event_type,
        aggregateId=getattr(state, AGGREGATE_ID_FIELD[aggregate_type]),
        aggregateType=aggregate_type,
        version=version,
        timestamp=at or datetime.now(timezone.utc),
        correlationId=correlation_id,
        causationId=causation_id,
        data=state,
        metadata=metadata or EventMetadata(),
    )
