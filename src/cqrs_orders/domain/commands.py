"""Commands: what a caller asks the write side to do (imperative names), validated before anything runs.

A command arrives as JSON text or a dict with a ``type`` naming it. :func:`decode_command` then
:func:`validate_command` turn it into one of the frozen models below, or raise a
:class:`~cqrs_orders.errors.CommandRejected` whose message names the offending field, so callers can fix
their input without reading our code.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from cqrs_orders.domain import strict_json
from cqrs_orders.domain.ids import RULES as ID_RULES
from cqrs_orders.domain.ids import Id
from cqrs_orders.domain.strict_json import MAX_COMMAND_BYTES, short
from cqrs_orders.envelope import Money
from cqrs_orders.errors import UnknownCommand, ValidationError

__all__ = ["COMMANDS", "MAX_COMMAND_BYTES", "Command", "decode_command", "one_command", "validate_command"]

#: Characters free text (names, reasons) cannot hold: controls (NUL would reach the read models), private
#: use, and the bidirectional marks, embeddings, overrides and isolates that make text display as something
#: else. Joiners (U+200C, U+200D) stay allowed: emoji and several scripts need them. (Lone surrogates never
#: get this far: pydantic-core refuses a string that is not valid Unicode.)
_NOT_IN_TEXT = r"\p{Cc}\p{Co}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff"

#: Free text: not blank, none of ``_NOT_IN_TEXT``.
_TEXT_PATTERN = rf"^[^{_NOT_IN_TEXT}]*[^\s{_NOT_IN_TEXT}][^{_NOT_IN_TEXT}]*$"
Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=_TEXT_PATTERN)]
Email = Annotated[
    str, StringConstraints(strict=True, max_length=320, pattern=r"^[^@\s\p{C}]+@[^@\s\p{C}]+\.[^@\s\p{C}]+$")
]
Currency = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{3}$")]
Quantity = Annotated[int, Field(strict=True, gt=0, le=1_000_000)]
#: A unit price: the envelope's money rule (a decimal string or number, kept digit for digit).
Price = Money

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
    reason: Annotated[
        str, StringConstraints(strict=True, min_length=1, max_length=1000, pattern=_TEXT_PATTERN)
    ]


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
    """JSON text (or an already decoded dict) -> a dict: the strict intake (:mod:`.strict_json`), and the
    text must be one JSON object. Each refusal is a ``ValidationError`` of this command alone."""
    if isinstance(raw, dict):  # from Python (a job, a test): held to the same size limit
        size = len(json.dumps(raw, default=str).encode())
        if size > MAX_COMMAND_BYTES:
            raise ValidationError(f"command: {strict_json.too_large(size, MAX_COMMAND_BYTES)}")
        return raw
    try:
        decoded = strict_json.decode(raw)
    except ValidationError as refused:
        raise ValidationError(f"command: {refused.message}") from None
    if not isinstance(decoded, dict):
        raise ValidationError(f"command must be a JSON object, not {_json_kind(decoded)}")
    return decoded


def one_command(value: Any) -> dict | str:
    """A decoded JSON value as the handler takes one command: an object as it is, anything else as JSON
    text, which :func:`decode_command` then refuses as not an object (a batch element like any other)."""
    return value if isinstance(value, dict) else json.dumps(value, default=str)


def _json_kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def validate_command(decoded: dict) -> Command:
    """The typed command for a decoded JSON object; ``ValidationError``/``UnknownCommand`` name the fault."""
    kind = decoded.get("type")
    if kind is None:
        raise ValidationError(f"type: missing; give one of {', '.join(COMMANDS)}")
    if not isinstance(kind, str) or kind not in COMMANDS:
        raise UnknownCommand(f"type: unknown command {short(kind)}; known commands: {', '.join(COMMANDS)}")
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


_TEXT_HINT = (
    "must be a non-blank string of visible characters: no control, invisible or direction-changing characters"
)
#: What a field whose pattern failed must be; any other such field is an id.
_PATTERN_HINTS = {
    "email": "must be an email address like name@example.com",
    "currency": "must be 3 upper-case letters (ISO 4217), e.g. EUR",
    "name": _TEXT_HINT,
    "reason": _TEXT_HINT,
}


def _message(detail: dict[str, Any]) -> str:
    if detail["type"] == "string_pattern_mismatch":
        return _PATTERN_HINTS.get(str(detail["loc"][-1]), ID_RULES["visible"])
    if detail["type"] == "too_short" and detail["loc"][-1] == "items":
        return "an order needs at least one item"
    if detail["type"] == "extra_forbidden":
        return "unknown field; remove it"
    message = detail["msg"]
    return message.removeprefix("Value error, ")
