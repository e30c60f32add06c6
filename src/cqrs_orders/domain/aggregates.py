"""The Order and Customer aggregates as pure decision functions: (current state, command) -> new events.

No I/O happens here: the application layer loads the current :class:`Snapshot`, calls :func:`decide`, and
appends the returned events atomically. Every event carries the aggregate's full state after it (the
envelope contract), so a projection never has to replay history.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from cqrs_orders.domain.commands import (
    MAX_ITEMS,
    AddOrderItem,
    CancelOrder,
    Command,
    ConfirmOrder,
    CreateOrder,
    DeliverOrder,
    RegisterCustomer,
    RemoveOrderItem,
    ShipOrder,
    UpdateCustomer,
)
from cqrs_orders.envelope import (
    AggregateType,
    CustomerState,
    EventEnvelope,
    EventMetadata,
    LineItem,
    OrderState,
    OrderStatus,
    new_event,
)
from cqrs_orders.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    InvalidTransition,
    NotFound,
    ValidationError,
)


@dataclass(frozen=True)
class Snapshot:
    """An aggregate as stored: its state after its latest event, and that event's version."""

    aggregate_type: AggregateType
    state: OrderState | CustomerState
    version: int


#: The largest order total decimal(18,2) can hold.
MAX_ORDER_TOTAL = Decimal("9999999999999999.99")

#: Status changes: command -> (the status it requires, the status it gives, the event it records).
_TRANSITIONS: dict[type[Command], tuple[tuple[OrderStatus, ...], OrderStatus, str]] = {
    ConfirmOrder: ((OrderStatus.CREATED,), OrderStatus.CONFIRMED, "OrderConfirmed"),
    ShipOrder: ((OrderStatus.CONFIRMED,), OrderStatus.SHIPPED, "OrderShipped"),
    DeliverOrder: ((OrderStatus.SHIPPED,), OrderStatus.DELIVERED, "OrderDelivered"),
    CancelOrder: ((OrderStatus.CREATED, OrderStatus.CONFIRMED), OrderStatus.CANCELLED, "OrderCancelled"),
}


#: Namespace of generated order ids (uuid5 of the commandId).
_ORDER_IDS = uuid.UUID("5d1f2f0e-6f4a-4c8e-9a57-0c2b8f3e8a11")


def with_target(command: Command) -> Command:
    """The command with its aggregate id filled in: a CreateOrder without ``orderId`` gets one derived from
    its ``commandId`` (set by then), so a retried command targets the same order even in a race."""
    if isinstance(command, CreateOrder) and command.orderId is None:
        return command.model_copy(update={"orderId": f"order-{uuid.uuid5(_ORDER_IDS, command.commandId)}"})
    return command


def target_of(command: Command) -> tuple[AggregateType, str]:
    """Which aggregate a command (after :func:`with_target`) acts on."""
    if isinstance(command, (RegisterCustomer, UpdateCustomer)):
        return AggregateType.CUSTOMER, command.customerId
    return AggregateType.ORDER, command.orderId


def decide(
    command: Command,
    current: Snapshot | None,
    *,
    now: datetime,
    customer: CustomerState | None = None,
) -> list[EventEnvelope]:
    """The events ``command`` causes on ``current``, or a ``CommandRejected`` naming the rule it breaks.

    ``customer`` is the registered customer a ``CreateOrder`` refers to (``None`` if unregistered).
    """
    kind, aggregate_id = target_of(command)
    version = current.version if current else 0
    if command.expectedVersion is not None and command.expectedVersion != version:
        raise ConcurrencyConflict(
            f"expectedVersion: {kind.value} {aggregate_id!r} is at version {version}, not "
            f"{command.expectedVersion}; reload it and decide again"
        )
    if current is not None and current.aggregate_type is not kind:
        creating = isinstance(command, (RegisterCustomer, CreateOrder))
        error = AlreadyExists if creating else NotFound
        raise error(
            f"{_id_field(kind)}: {aggregate_id!r} already identifies a {current.aggregate_type.value}"
        )
    if kind is AggregateType.CUSTOMER:
        event_type, state = _decide_customer(command, current.state if current else None, now)
    else:
        event_type, state = _decide_order(command, current.state if current else None, now, customer)
    return [
        new_event(
            event_type,
            state,
            version + 1,
            causation_id=command.commandId,
            correlation_id=command.correlationId or command.commandId,
            metadata=EventMetadata(userId=command.metadata.userId, source=command.metadata.source),
            at=now,
        )
    ]


def _decide_customer(command: Command, state: CustomerState | None, now: datetime):
    if isinstance(command, RegisterCustomer):
        if state is not None:
            raise AlreadyExists(f"customerId: customer {command.customerId!r} is already registered")
        created = CustomerState(
            customerId=command.customerId,
            name=command.name,
            email=command.email,
            createdAt=now,
            updatedAt=now,
        )
        return "CustomerRegistered", created
    if state is None:
        raise NotFound(f"customerId: customer {command.customerId!r} is not registered; register it first")
    changes = {"updatedAt": now}
    if command.name is not None:
        changes["name"] = command.name
    if command.email is not None:
        changes["email"] = command.email
    return "CustomerUpdated", state.model_copy(update=changes)


def _decide_order(command: Command, state: OrderState | None, now: datetime, customer: CustomerState | None):
    if isinstance(command, CreateOrder):
        if state is not None:
            raise AlreadyExists(f"orderId: order {command.orderId!r} already exists")
        if customer is None:
            raise NotFound(
                f"customerId: customer {command.customerId!r} is not registered; register it first"
            )
        items = _within_total(
            tuple(LineItem(sku=i.sku, quantity=i.quantity, unitPrice=i.unitPrice) for i in command.items)
        )
        created = OrderState(
            orderId=command.orderId,
            customerId=command.customerId,
            status=OrderStatus.CREATED,
            items=items,
            currency=command.currency,
            createdAt=now,
            updatedAt=now,
        )
        return "OrderCreated", created
    if state is None:
        raise NotFound(f"orderId: order {command.orderId!r} does not exist")
    if isinstance(command, (AddOrderItem, RemoveOrderItem)):
        return _change_items(command, state, now)
    allowed, target, event_type = _TRANSITIONS[type(command)]
    if state.status not in allowed:
        raise InvalidTransition(
            f"status: {command.type} needs an order that is {' or '.join(s.value for s in allowed)}; "
            f"order {state.orderId!r} is {state.status.value}"
        )
    return event_type, state.model_copy(update={"status": target, "updatedAt": now})


def _change_items(command: AddOrderItem | RemoveOrderItem, state: OrderState, now: datetime):
    if state.status is not OrderStatus.CREATED:
        raise InvalidTransition(
            f"status: items change only while an order is Created; order {state.orderId!r} is "
            f"{state.status.value}"
        )
    skus = [item.sku for item in state.items]
    if isinstance(command, AddOrderItem):
        if command.sku in skus:
            raise AlreadyExists(
                f"sku: {command.sku!r} is already on order {state.orderId!r}; remove it first to change it"
            )
        if len(skus) >= MAX_ITEMS:
            raise ValidationError(f"items: an order holds at most {MAX_ITEMS} lines")
        added = LineItem(sku=command.sku, quantity=command.quantity, unitPrice=command.unitPrice)
        items = _within_total((*state.items, added))
        return "OrderItemAdded", state.model_copy(update={"items": items, "updatedAt": now})
    if command.sku not in skus:
        raise NotFound(f"sku: {command.sku!r} is not on order {state.orderId!r}")
    if len(skus) == 1:
        raise ValidationError(
            f"items: an order needs at least one item; cancel order {state.orderId!r} instead of removing "
            "its "
            "last item"
        )
    kept = tuple(item for item in state.items if item.sku != command.sku)
    return "OrderItemRemoved", state.model_copy(update={"items": kept, "updatedAt": now})


def _within_total(items: tuple[LineItem, ...]) -> tuple[LineItem, ...]:
    """The read models keep totals as decimal(18,2); an order whose total cannot fit there is refused."""
    total = sum((item.quantity * item.unitPrice for item in items), Decimal(0))
    if total > MAX_ORDER_TOTAL:
        raise ValidationError(f"items: the order total {total} exceeds the maximum {MAX_ORDER_TOTAL}")
    return items


def _id_field(kind: AggregateType) -> str:
    return "customerId" if kind is AggregateType.CUSTOMER else "orderId"
