"""The Order aggregate's commands: create an order, change its items, and move it along its lifecycle.

Created -> Confirmed -> Shipped -> Delivered, one step at a time; an order is cancelled while Created or
Confirmed, and its items change only while it is Created.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator

from cqrs_orders.domain.commands.base import (
    Command,
    Currency,
    Decision,
    LongText,
    Price,
    Quantity,
    State,
    _Strict,
)
from cqrs_orders.domain.commands.customer import CustomerCommand
from cqrs_orders.domain.ids import Id
from cqrs_orders.envelope import AggregateType, CustomerState, LineItem, OrderState, OrderStatus
from cqrs_orders.errors import AlreadyExists, InvalidTransition, NotFound, ValidationError

#: The currency of an order created without one.
DEFAULT_CURRENCY = "EUR"
MAX_ITEMS = 500
#: The largest order total decimal(18,2) can hold.
MAX_ORDER_TOTAL = Decimal("9999999999999999.99")

#: Namespace of generated order ids (uuid5 of the commandId).
_ORDER_IDS = uuid.UUID("5d1f2f0e-6f4a-4c8e-9a57-0c2b8f3e8a11")


class Item(_Strict):
    """One line of an order: a sku, how many, and the price of one."""

    sku: Id
    quantity: Quantity
    unitPrice: Price


class OrderCommand(Command):
    """A command on one order (``orderId``)."""

    aggregate = AggregateType.ORDER
    already_exists = "order {id!r} already exists"
    missing = "order {id!r} does not exist"


class CreateOrder(OrderCommand):
    """Create an order for a registered customer; it starts Created."""

    type: Literal["CreateOrder"]
    orderId: Id | None = Field(default=None, description="generated when omitted")
    customerId: Id
    items: tuple[Item, ...] = Field(min_length=1, max_length=MAX_ITEMS)
    currency: Currency = DEFAULT_CURRENCY

    creates = True
    refers_to = {"customerId": AggregateType.CUSTOMER}
    emits = ("OrderCreated",)
    example = {
        "type": "CreateOrder",
        "commandId": "cmd-3",
        "orderId": "ord-1",
        "customerId": "cust-1",
        "items": [{"sku": "sku-1", "quantity": 2, "unitPrice": "9.50"}],
        "currency": "EUR",
    }

    @field_validator("items")
    @classmethod
    def _distinct_skus(cls, items: tuple[Item, ...]) -> tuple[Item, ...]:
        seen: set[str] = set()
        for item in items:
            if item.sku in seen:
                raise ValueError(f"sku {item.sku!r} appears more than once; give each sku one line")
            seen.add(item.sku)
        return items

    def with_target(self) -> CreateOrder:
        """Without ``orderId``, one derived from the ``commandId``, so a retried command targets the same
        order even in a race."""
        if self.orderId is not None:
            return self
        return self.model_copy(update={"orderId": f"order-{uuid.uuid5(_ORDER_IDS, self.commandId)}"})

    def decide(self, state: None, now: datetime, referenced: Mapping[str, State | None]) -> Decision:
        if not isinstance(referenced["customerId"], CustomerState):
            raise NotFound(f"customerId: {CustomerCommand.missing.format(id=self.customerId)}")
        items = tuple(LineItem(sku=i.sku, quantity=i.quantity, price=i.unitPrice) for i in self.items)
        created = OrderState(
            orderId=self.orderId,
            customerId=self.customerId,
            status=OrderStatus.CREATED,
            items=_within_total(items),
            currency=self.currency,
            createdAt=now,
            updatedAt=now,
        )
        return "OrderCreated", created


class AddOrderItem(OrderCommand):
    """Add a line for a sku not on the order yet."""

    type: Literal["AddOrderItem"]
    orderId: Id
    sku: Id
    quantity: Quantity
    unitPrice: Price

    emits = ("OrderItemAdded",)
    example = {
        "type": "AddOrderItem",
        "commandId": "cmd-4",
        "orderId": "ord-1",
        "sku": "sku-2",
        "quantity": 1,
        "unitPrice": "4.25",
    }

    def decide(self, state: OrderState, now: datetime, referenced: Mapping[str, State | None]) -> Decision:
        _items_can_change(state)
        skus = [item.sku for item in state.items]
        if self.sku in skus:
            raise AlreadyExists(
                f"sku: {self.sku!r} is already on order {state.orderId!r}; remove it first to change it"
            )
        if len(skus) >= MAX_ITEMS:
            raise ValidationError(f"items: an order holds at most {MAX_ITEMS} lines")
        added = LineItem(sku=self.sku, quantity=self.quantity, price=self.unitPrice)
        items = _within_total((*state.items, added))
        return "OrderItemAdded", state.model_copy(update={"items": items, "updatedAt": now})


class RemoveOrderItem(OrderCommand):
    """Remove a sku's line; an order keeps at least one."""

    type: Literal["RemoveOrderItem"]
    orderId: Id
    sku: Id

    emits = ("OrderItemRemoved",)
    example = {"type": "RemoveOrderItem", "commandId": "cmd-5", "orderId": "ord-1", "sku": "sku-2"}

    def decide(self, state: OrderState, now: datetime, referenced: Mapping[str, State | None]) -> Decision:
        _items_can_change(state)
        if self.sku not in [item.sku for item in state.items]:
            raise NotFound(f"sku: {self.sku!r} is not on order {state.orderId!r}")
        if len(state.items) == 1:
            raise ValidationError(
                f"items: an order needs at least one item; cancel order {state.orderId!r} instead of "
                "removing its last item"
            )
        kept = tuple(item for item in state.items if item.sku != self.sku)
        return "OrderItemRemoved", state.model_copy(update={"items": kept, "updatedAt": now})


class ConfirmOrder(OrderCommand):
    """Confirm a Created order."""

    type: Literal["ConfirmOrder"]
    orderId: Id

    emits = ("OrderConfirmed",)
    example = {"type": "ConfirmOrder", "commandId": "cmd-6", "orderId": "ord-1", "expectedVersion": 3}

    def decide(self, state: OrderState, now: datetime, referenced: Mapping[str, State | None]) -> Decision:
        return "OrderConfirmed", _move(self, state, now, (OrderStatus.CREATED,), OrderStatus.CONFIRMED)


class ShipOrder(OrderCommand):
    """Ship a Confirmed order."""

    type: Literal["ShipOrder"]
    orderId: Id

    emits = ("OrderShipped",)
    example = {"type": "ShipOrder", "commandId": "cmd-7", "orderId": "ord-1"}

    def decide(self, state: OrderState, now: datetime, referenced: Mapping[str, State | None]) -> Decision:
        return "OrderShipped", _move(self, state, now, (OrderStatus.CONFIRMED,), OrderStatus.SHIPPED)


class DeliverOrder(OrderCommand):
    """Record a Shipped order as delivered."""

    type: Literal["DeliverOrder"]
    orderId: Id

    emits = ("OrderDelivered",)
    example = {"type": "DeliverOrder", "commandId": "cmd-8", "orderId": "ord-1"}

    def decide(self, state: OrderState, now: datetime, referenced: Mapping[str, State | None]) -> Decision:
        return "OrderDelivered", _move(self, state, now, (OrderStatus.SHIPPED,), OrderStatus.DELIVERED)


class CancelOrder(OrderCommand):
    """Cancel a Created or Confirmed order, saying why."""

    type: Literal["CancelOrder"]
    orderId: Id
    reason: LongText

    emits = ("OrderCancelled",)
    example = {
        "type": "CancelOrder",
        "commandId": "cmd-9",
        "orderId": "ord-1",
        "reason": "the customer asked",
    }

    def decide(self, state: OrderState, now: datetime, referenced: Mapping[str, State | None]) -> Decision:
        allowed = (OrderStatus.CREATED, OrderStatus.CONFIRMED)
        return "OrderCancelled", _move(self, state, now, allowed, OrderStatus.CANCELLED)


def _move(
    command: Command, state: OrderState, now: datetime, allowed: tuple[OrderStatus, ...], to: OrderStatus
) -> OrderState:
    """The order in status ``to``, if it is in one of the statuses ``allowed`` to move there."""
    if state.status not in allowed:
        raise InvalidTransition(
            f"status: {command.type} needs an order that is {' or '.join(s.value for s in allowed)}; "
            f"order {state.orderId!r} is {state.status.value}"
        )
    return state.model_copy(update={"status": to, "updatedAt": now})


def _items_can_change(state: OrderState) -> None:
    if state.status is not OrderStatus.CREATED:
        raise InvalidTransition(
            f"status: items change only while an order is Created; order {state.orderId!r} is "
            f"{state.status.value}"
        )


def _within_total(items: tuple[LineItem, ...]) -> tuple[LineItem, ...]:
    """The read models keep totals as decimal(18,2); an order whose total cannot fit there is refused."""
    total = sum((item.quantity * item.price for item in items), Decimal(0))
    if total > MAX_ORDER_TOTAL:
        raise ValidationError(f"items: the order total {total} exceeds the maximum {MAX_ORDER_TOTAL}")
    return items
