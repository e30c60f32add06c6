"""The event envelope: the one contract between the command side, the event bus and the read side.

Every event carries the aggregate's **full state after the event** in ``data`` (event-carried state), so a
projection only has to keep the highest version per aggregate and never needs to replay in order.

This module is the single definition: the pydantic models below validate and serialise events in Python,
and :mod:`cqrs_orders.envelope_schema` derives the Spark schema from the very same models.

Events outlive the code that wrote them, so each carries the version of its schema (``schemaVersion``;
absent means 1). An aggregate's state declares one :class:`Upcaster` per step of its schema
(:data:`UPCASTERS`), and every reader brings an older event to the current shape with them before it
validates it; an event newer than the code is refused, never half-read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
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
    price: Money = Field(description="the price of one unit (named unitPrice up to schema version 1)")


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


# --- schema versions ---------------------------------------------------------------------------------
#
# An event's schema is the envelope's plus its aggregate's state (``data`` is the whole state), so a state
# declares the steps of its schema and every event type of that aggregate carries the state's version. A
# step is declared once, as data (:class:`Renamed`), so the one declaration is applied the same way to a
# JSON object here and to Spark's typed read of a body (:mod:`cqrs_orders.envelope_schema`).

#: The envelope field holding the schema version of an event; an event without it has version 1 (every
#: event written before versions were declared).
SCHEMA_VERSION_FIELD = "schemaVersion"
#: Why an event of a version newer than the code is refused (a quarantine reason on the read side).
NEWER_THAN_KNOWN = (
    "schemaVersion {version} is newer than this code knows for {event_type} ({known}); deploy a newer version"
)
#: A path step into every element of an array (:attr:`Renamed.path`).
EACH = "[]"


@dataclass(frozen=True)
class Renamed:
    """A field renamed from ``old`` to ``new`` in the object at ``path`` within the state (``()``: the state
    itself; ``("items", EACH)``: every element of ``items``).

    Exact both ways: the value moves as it is (money keeps its digits), and a body of the older version
    that lacks ``old`` lacks ``new`` after the step, so validation refuses it instead of reading a null. A
    ``new`` the older version did not have is not part of it and is dropped with the step."""

    path: tuple[str, ...]
    old: str
    new: str

    def apply(self, data: Any) -> Any:
        """``data`` (a JSON value) with the field renamed; anything not shaped as declared is left as it
        is, for validation to name."""
        return _at(data, self.path, self._rename)

    def _rename(self, holder: Any) -> Any:
        if not isinstance(holder, dict):
            return holder
        renamed = {}
        for key, value in holder.items():
            if key == self.old:
                renamed[self.new] = value
            elif key != self.new:
                renamed[key] = value
        return renamed

    def before(self, path: tuple[str, ...]) -> tuple[str, ...]:
        """Where a value at ``path`` (after this step) was before it."""
        depth = len(self.path)
        if len(path) > depth and path[:depth] == self.path and path[depth] == self.new:
            return (*path[:depth], self.old, *path[depth + 1 :])
        return path


def _at(value: Any, path: tuple[str, ...], change) -> Any:
    """``value`` with ``change`` applied to what ``path`` leads to (every element, through :data:`EACH`)."""
    if not path:
        return change(value)
    step, rest = path[0], path[1:]
    if step == EACH:
        return [_at(element, rest, change) for element in value] if isinstance(value, list) else value
    if isinstance(value, dict) and step in value:
        return {**value, step: _at(value[step], rest, change)}
    return value


@dataclass(frozen=True)
class Upcaster:
    """One step of an aggregate state's schema: what a body of version ``version - 1`` becomes at
    ``version``. ``why`` is for the reader of the declaration (and the docs)."""

    aggregate_type: AggregateType
    version: int
    changes: tuple[Renamed, ...]
    why: str

    def apply(self, data: Any) -> Any:
        for change in self.changes:
            data = change.apply(data)
        return data

    def before(self, path: tuple[str, ...]) -> tuple[str, ...]:
        """Where a value at ``path`` (after this step) was before it."""
        for change in reversed(self.changes):
            path = change.before(path)
        return path


#: Every step of every state's schema, each declared once. A state with no step is at version 1. Add a
#: step (and raise nothing else) when a change would make an event the code wrote before unreadable by
#: the state model: docs/architecture.md, "Event schema versions".
UPCASTERS: tuple[Upcaster, ...] = (
    Upcaster(
        AggregateType.ORDER,
        2,
        (Renamed(("items", EACH), "unitPrice", "price"),),
        why="an order line's unitPrice is named price: the line is already per unit",
    ),
)


def _versions(upcasters: tuple[Upcaster, ...]) -> dict[AggregateType, int]:
    """Each state's current version; the steps of a state must be numbered 2, 3, ... in order."""
    versions = {kind: 1 for kind in AggregateType}
    for upcaster in upcasters:
        kind = upcaster.aggregate_type
        if upcaster.version != versions[kind] + 1:
            raise TypeError(
                f"the upcaster to {kind.value} version {upcaster.version} must follow the one to version "
                f"{versions[kind]}: declare one step per version, in order"
            )
        versions[kind] = upcaster.version
    return versions


#: Each aggregate state's current schema version: what the code writes.
STATE_VERSIONS: dict[AggregateType, int] = _versions(UPCASTERS)
#: Each event type's current schema version (its aggregate's state's): what the code writes and reads.
EVENT_VERSIONS: dict[str, int] = {event: STATE_VERSIONS[kind] for event, kind in EVENT_CATALOG.items()}


def steps_after(aggregate_type: AggregateType, version: int) -> tuple[Upcaster, ...]:
    """The steps, in order, that bring a state of ``version`` to the current one."""
    return tuple(u for u in UPCASTERS if u.aggregate_type is aggregate_type and u.version > version)


class NewerSchemaVersion(ValueError):
    """An event or state written by a newer version of the code: refused rather than read in part."""


def upcast_state(aggregate_type: AggregateType, data: Any, version: int) -> Any:
    """``data``, a state of ``version`` as a JSON value, in the current schema (the steps applied in
    order); :class:`NewerSchemaVersion` when ``version`` is newer than the code knows."""
    known = STATE_VERSIONS[aggregate_type]
    if version > known:
        raise NewerSchemaVersion(
            f"a stored {aggregate_type.value} state of schemaVersion {version} is newer than this code knows "
            f"({known}); deploy a newer version"
        )
    for step in steps_after(aggregate_type, version):
        data = step.apply(data)
    return data


def upcast_event(body: Any) -> Any:
    """An event (the envelope as a JSON object) in its type's current schema, ``schemaVersion`` set to it.

    What is not an event of a known type, of its aggregate type, with an integer version is returned as it
    is, for validation to refuse with its own message; an event newer than the code raises
    :class:`NewerSchemaVersion`."""
    if not isinstance(body, Mapping) or body.get("eventType") not in EVENT_VERSIONS:
        return body
    event_type = body["eventType"]
    if body.get("aggregateType") != EVENT_CATALOG[event_type].value:
        return body
    version = body.get(SCHEMA_VERSION_FIELD, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return body
    known = EVENT_VERSIONS[event_type]
    if version > known:
        raise NewerSchemaVersion(NEWER_THAN_KNOWN.format(version=version, event_type=event_type, known=known))
    if version == known or not isinstance(body.get("data"), Mapping):
        return body
    data = upcast_state(EVENT_CATALOG[event_type], body.get("data"), version)
    return {**body, SCHEMA_VERSION_FIELD: known, "data": data}


def load_state(
    aggregate_type: AggregateType, stored: str | Mapping, version: int | None
) -> OrderState | CustomerState:
    """A state as a write store kept it (JSON text or a JSON object) with the schema version it was
    written at (``None``: before versions were recorded, so 1), as the current state model.

    The current version is parsed as it is; an older one is read with its numbers as decimals (a number
    keeps its digits) and brought to the current schema first."""
    model = STATE_MODELS[aggregate_type]
    version = 1 if version is None else version
    if version == STATE_VERSIONS[aggregate_type]:
        return model.model_validate_json(stored) if isinstance(stored, str) else model.model_validate(stored)
    data = json.loads(stored, parse_float=Decimal) if isinstance(stored, str) else stored
    return model.model_validate(upcast_state(aggregate_type, data, version))


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
    schemaVersion: int = Field(
        strict=True,
        ge=1,
        description="the version of the event's schema (absent on the wire: 1); read: the current one",
    )
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
        """Bring an older event to its type's current schema (:func:`upcast_event`), then pick the state
        model from ``aggregateType`` so errors name the right fields. An event built in Python around a
        state model holds the current schema already."""
        built = isinstance(values, dict) and not isinstance(values.get("data"), dict)
        if built and SCHEMA_VERSION_FIELD not in values and values.get("eventType") in EVENT_VERSIONS:
            values = {**values, SCHEMA_VERSION_FIELD: EVENT_VERSIONS[values["eventType"]]}
        values = upcast_event(values)
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
        if self.schemaVersion != EVENT_VERSIONS[self.eventType]:  # data is a state model: the current schema
            raise ValueError(
                f"schemaVersion {self.schemaVersion} is not {self.eventType}'s current "
                f"{EVENT_VERSIONS[self.eventType]}, which its data is in"
            )
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
        """The event of a wire body, of any schema version the code knows. Numbers are read as decimals
        (an older event's money may be a JSON number: its digits are kept); a body that is no JSON is
        refused by pydantic's own parser, with its message."""
        try:
            decoded = json.loads(body, parse_float=Decimal)
        except ValueError:
            return cls.model_validate_json(body)
        return cls.model_validate(decoded)


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
        schemaVersion=EVENT_VERSIONS[event_type],
        timestamp=at or datetime.now(timezone.utc),
        correlationId=correlation_id,
        causationId=causation_id,
        data=state,
        metadata=metadata or EventMetadata(),
    )
