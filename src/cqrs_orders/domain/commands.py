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

#: Characters an identifier cannot hold: every control, format (zero-width, direction marks and overrides,
#: BOM), surrogate, private-use and unassigned code point (``\p{C}``), and any space but U+0020: each makes
#: an id that looks like another one. Patterns run in pydantic-core's regex engine, so this costs ~1 us.
_NOT_IN_ID = r"\p{C}\p{Zl}\p{Zp}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
#: Characters free text (names, reasons) cannot hold: controls (NUL would reach the read models), private
#: use, and the bidirectional marks, embeddings, overrides and isolates that make text display as something
#: else. Joiners (U+200C, U+200D) stay allowed: emoji and several scripts need them. (Lone surrogates never
#: get this far: pydantic-core refuses a string that is not valid Unicode.)
_NOT_IN_TEXT = r"\p{Cc}\p{Co}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff"

#: An identifier: 1-128 visible characters (inner U+0020 spaces allowed), nothing invisible or look-alike.
Id = Annotated[
    str,
    StringConstraints(
        strict=True,
        min_length=1,
        max_length=128,
        pattern=rf"^[^\s{_NOT_IN_ID}](?:[^{_NOT_IN_ID}]*[^\s{_NOT_IN_ID}])?$",
    ),
]
#: Free text: not blank, none of ``_NOT_IN_TEXT``.
_TEXT_PATTERN = rf"^[^{_NOT_IN_TEXT}]*[^\s{_NOT_IN_TEXT}][^{_NOT_IN_TEXT}]*$"
Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=_TEXT_PATTERN)]
Email = Annotated[
    str, StringConstraints(strict=True, max_length=320, pattern=r"^[^@\s\p{C}]+@[^@\s\p{C}]+\.[^@\s\p{C}]+$")
]
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
    """JSON text (or an already decoded dict) -> a dict, refusing oversized, non-UTF-8, too deeply nested,
    duplicate-keyed and non-object input: each a ``ValidationError`` of this command alone."""
    if isinstance(raw, dict):
        size = len(json.dumps(raw, default=str).encode())
    elif isinstance(raw, str):
        try:
            size = len(raw.encode())
        except UnicodeEncodeError as error:  # a lone surrogate, e.g. undecodable bytes via surrogateescape
            raise ValidationError(f"command is not valid JSON: not UTF-8 text ({error.reason})") from None
    else:
        size = len(raw)
    if size > MAX_COMMAND_BYTES:
        raise ValidationError(f"command is {size} bytes; the limit is {MAX_COMMAND_BYTES} bytes (256 KiB)")
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError as error:
            raise ValidationError(
                f"command is not valid JSON: not UTF-8 text (byte {error.start} is "
                f"{error.object[error.start]:#04x}: {error.reason})"
            ) from None
    try:
        decoded = _DECODER.decode(raw)
    except _DuplicateKey as duplicate:
        raise ValidationError(f"{duplicate.key}: given more than once; give each field once") from None
    except RecursionError:
        raise ValidationError("command is nested too deeply to be a command") from None
    except ValueError as error:
        raise ValidationError(f"command is not valid JSON: {error}") from None
    if not isinstance(decoded, dict):
        raise ValidationError(f"command must be a JSON object, not {type(decoded).__name__}")
    return decoded


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    """JSON objects as dicts, except that a key given twice is an error (plain ``json`` keeps the last,
    so ``{"customerId": "a", "customerId": "b"}`` would silently mean whatever the sender did not check)."""
    decoded = dict(pairs)
    if len(decoded) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(_short(key))
            seen.add(key)
    return decoded


#: One decoder for every command (``json.loads`` with a hook would build a new one per call).
_DECODER = json.JSONDecoder(object_pairs_hook=_object_without_duplicates)


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
            "must be a non-blank string of visible characters: no control, invisible or direction-changing "
            "characters, no surrounding spaces",
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
