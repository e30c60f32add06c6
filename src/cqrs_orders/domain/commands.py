"""Commands: what a caller asks the write side to do (imperative names), validated before anything runs.

A command arrives as JSON text or a dict with a ``type`` naming it. :func:`decode_command` then
:func:`validate_command` turn it into one of the frozen models below, or raise a
:class:`~cqrs_orders.errors.CommandRejected` whose message names the offending field, so callers can fix
their input without reading our code.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from cqrs_orders.errors import UnknownCommand, ValidationError

#: Commands larger than this (as UTF-8 JSON) are refused before parsing: they are abuse, not orders.
MAX_COMMAND_BYTES = 256 * 1024

#: An identifier: 1-128 characters, no control characters, not blank, no surrounding whitespace.
Id = Annotated[
    str,
    StringConstraints(
        strict=True,
        min_length=1,
        max_length=128,
        pattern=r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
    ),
]
Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=r"\S")]
Email = Annotated[str, StringConstraints(strict=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Currency = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{3}$")]
Quantity = Annotated[int, Field(strict=True, gt=0, le=1_000_000)]
#: Non-negative, at most 2 decimals, fits decimal(18,2) in the read models.
Price = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=2)]

#: The currency of an order created without one.
DEFAULT_CURRENCY = "EUR"
MAX_ITEMS = 500


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CommandMetadata(_Strict):
    userId: Id | None = None
    source: Id | None = None


class Command(_Strict):
    """Fields every command may carry."""

    type: str
    commandId: Id | None = None
    expectedVersion: Annotated[int, Field(strict=True, ge=0)] | None = Field(
        default=None, description="the aggregate version the caller last saw (0: must not exist yet)"
    )
    correlationId: Id | None = None
    metadata: CommandMetadata = CommandMetadata()


class Item(_Strict):
    sku: Id
    quantity: Quantity
    unitPrice: Price


class RegisterCustomer(Command):
    type: Literal["RegisterCustomer"]
    customerId: Id
    name: Text
    email: Email


class UpdateCustomer(Command):
    type: Literal["UpdateCustomer"]
    customerId: Id
    name: Text | None = None
    email: Email | None = None

    @pydantic.model_validator(mode="after")
    def _changes_something(self) -> UpdateCustomer:
        if self.name is None and self.email is None:
            raise ValueError("give at least one of name, email")
        return self


class CreateOrder(Command):
    type: Literal["CreateOrder"]
    orderId: Id | None = Field(default=None, description="generated when omitted")
    customerId: Id
    items: tuple[Item, ...] = Field(min_length=1, max_length=MAX_ITEMS)
    currency: Currency = DEFAULT_CURRENCY

    @field_validator("items")
    @classmethod
    def _distinct_skus(cls, items: tuple[Item, ...]) -> tuple[Item, ...]:
        seen: set[str] = set()
        for item in items:
            if item.sku in seen:
                raise ValueError(f"sku {item.sku!r} appears more than once; give each sku one line")
            seen.add(item.sku)
        return items


class AddOrderItem(Command):
    type: Literal["AddOrderItem"]
    orderId: Id
    sku: Id
    quantity: Quantity
    unitPrice: Price


class RemoveOrderItem(Command):
    type: Literal["RemoveOrderItem"]
    orderId: Id
    sku: Id


class ConfirmOrder(Command):
    type: Literal["ConfirmOrder"]
    orderId: Id


class ShipOrder(Command):
    type: Literal["ShipOrder"]
    orderId: Id


class DeliverOrder(Command):
    type: Literal["DeliverOrder"]
    orderId: Id


class CancelOrder(Command):
    type: Literal["CancelOrder"]
    orderId: Id
    reason: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=1000, pattern=r"\S")]


#: Every command, by its ``type``.
COMMANDS: dict[str, type[Command]] = {
    "RegisterCustomer": RegisterCustomer,
    "UpdateCustomer": UpdateCustomer,
    "CreateOrder": CreateOrder,
    "AddOrderItem": AddOrderItem,
    "RemoveOrderItem": RemoveOrderItem,
    "ConfirmOrder": ConfirmOrder,
    "ShipOrder": ShipOrder,
    "DeliverOrder": DeliverOrder,
    "CancelOrder": CancelOrder,
}


def decode_command(raw: str | bytes | dict) -> dict:
    """JSON text (or an already decoded dict) -> a dict, refusing oversized and non-object input."""
    if isinstance(raw, dict):
        size = len(json.dumps(raw, default=str).encode())
    else:
        size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_COMMAND_BYTES:
        raise ValidationError(f"command is {size} bytes; the limit is {MAX_COMMAND_BYTES} bytes (256 KiB)")
    if isinstance(raw, dict):
        return raw
    try:
        decoded = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValidationError(f"command is not valid JSON: {error}") from None
    if not isinstance(decoded, dict):
        raise ValidationError(f"command must be a JSON object, not {type(decoded).__name__}")
    return decoded


def validate_command(decoded: dict) -> Command:
    """The typed command for a decoded JSON object; ``ValidationError``/``UnknownCommand`` name the fault."""
    kind = decoded.get("type")
    if kind is None:
        raise ValidationError(f"type: missing; give one of {', '.join(COMMANDS)}")
    if not isinstance(kind, str) or kind not in COMMANDS:
        raise UnknownCommand(f"type: unknown command {_short(kind)}; known commands: {', '.join(COMMANDS)}")
    try:
        return COMMANDS[kind].model_validate(decoded)
    except pydantic.ValidationError as error:
        raise ValidationError(_describe(kind, error)) from None


def _describe(kind: str, error: pydantic.ValidationError) -> str:
    details = error.errors(include_url=False, include_input=False)
    # A list whose items failed also reports itself "too short"; the item errors are the useful ones.
    failed_inside = {detail["loc"][:-2] for detail in details if len(detail["loc"]) > 2}
    details = [d for d in details if not (d["type"] == "too_short" and d["loc"] in failed_inside)]
    problems = []
    for detail in details[:5]:
        field = ".".join(str(part) for part in detail["loc"]) or "command"
        problems.append(f"{field}: {_message(detail)}")
    more = len(details) - len(problems)
    return f"{kind} is invalid: " + "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


_PATTERN_HINTS = {
    "email": "must be an email address like name@example.com",
    "currency": "must be 3 upper-case letters (ISO 4217), e.g. EUR",
}


def _message(detail: dict[str, Any]) -> str:
    if detail["type"] == "string_pattern_mismatch":
        return _PATTERN_HINTS.get(
            str(detail["loc"][-1]),
            "must be a non-blank string without control characters or surrounding spaces",
        )
    if detail["type"] == "too_short" and detail["loc"][-1] == "items":
        return "an order needs at least one item"
    if detail["type"] == "extra_forbidden":
        return "unknown field; remove it"
    message = detail["msg"]
    return message.removeprefix("Value error, ")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
