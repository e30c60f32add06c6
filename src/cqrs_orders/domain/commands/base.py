"""What every command shares, how a command is declared, and how one is read from JSON.

A command is one class: its ``type`` (the class name), its fields, its target (``aggregate``, whose id is
the field :data:`~cqrs_orders.envelope.AGGREGATE_ID_FIELD` names), whether it ``creates`` that aggregate,
the other aggregates it ``refers_to``, the events it ``emits``, an ``example`` of it and its rule,
``decide``. Defining the class registers it in :data:`COMMANDS`, after checking the declaration is whole: a
command without a decision, one emitting an event the envelope does not know, or one whose example it would
itself refuse, fails at import and says which. The handler, the HTTP API's schema, the CLI's help and
``cqrs-orders commands``, and ``docs/commands.md`` are all read from :data:`COMMANDS`.

A command arrives as JSON text or a dict with a ``type`` naming it. :func:`decode_command` then
:func:`validate_command` turn it into one of the registered models, or raise a
:class:`~cqrs_orders.errors.CommandRejected` whose message names the offending field, so callers can fix
their input without reading our code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from cqrs_orders.domain import strict_json
from cqrs_orders.domain.ids import RULES as ID_RULES
from cqrs_orders.domain.ids import Id
from cqrs_orders.domain.strict_json import MAX_COMMAND_BYTES, short
from cqrs_orders.envelope import (
    AGGREGATE_ID_FIELD,
    EVENT_CATALOG,
    MONEY_DECIMAL_PLACES,
    MONEY_MAX_DIGITS,
    AggregateType,
    CustomerState,
    Money,
    OrderState,
)
from cqrs_orders.errors import UnknownCommand, ValidationError

#: Characters free text (names, reasons) cannot hold: controls (NUL would reach the read models), private
#: use, and the bidirectional marks, embeddings, overrides and isolates that make text display as something
#: else. Joiners (U+200C, U+200D) stay allowed: emoji and several scripts need them. (Lone surrogates never
#: get this far: pydantic-core refuses a string that is not valid Unicode.)
_NOT_IN_TEXT = r"\p{Cc}\p{Co}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff"

#: Free text: not blank, none of ``_NOT_IN_TEXT``.
_TEXT_PATTERN = rf"^[^{_NOT_IN_TEXT}]*[^\s{_NOT_IN_TEXT}][^{_NOT_IN_TEXT}]*$"
_EMAIL_PATTERN = r"^[^@\s\p{C}]+@[^@\s\p{C}]+\.[^@\s\p{C}]+$"
_CURRENCY_PATTERN = r"^[A-Z]{3}$"
Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=_TEXT_PATTERN)]
LongText = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=1000, pattern=_TEXT_PATTERN)
]
Email = Annotated[str, StringConstraints(strict=True, max_length=320, pattern=_EMAIL_PATTERN)]
Currency = Annotated[str, StringConstraints(strict=True, pattern=_CURRENCY_PATTERN)]
Quantity = Annotated[int, Field(strict=True, gt=0, le=1_000_000)]
_WHOLE_DIGITS = MONEY_MAX_DIGITS - MONEY_DECIMAL_PLACES
_MONEY_PATTERN = rf"^[0-9]{{1,{_WHOLE_DIGITS}}}(\.[0-9]{{1,{MONEY_DECIMAL_PLACES}}})?$"
#: A unit price: the envelope's money rule (a decimal string or number, kept digit for digit). Its schema
#: states the rule's limits, which pydantic leaves out of a decimal's: the largest amount and the decimals.
Price = Annotated[
    Money,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "exclusiveMaximum": 10**_WHOLE_DIGITS},
                {"type": "string", "pattern": _MONEY_PATTERN},
            ],
            "description": f"an amount >= 0 and below 10^{_WHOLE_DIGITS} with at most {MONEY_DECIMAL_PLACES} "
            'decimals, e.g. "9.50"',
        }
    ),
]

_TEXT_HINT = (
    "must be a non-blank string of visible characters: no control, invisible or direction-changing characters"
)
#: What a field whose pattern failed must be, by the pattern; any other pattern is an id's.
_PATTERN_HINTS = {
    _TEXT_PATTERN: _TEXT_HINT,
    _EMAIL_PATTERN: "must be an email address like name@example.com",
    _CURRENCY_PATTERN: "must be 3 upper-case letters (ISO 4217), e.g. EUR",
    _MONEY_PATTERN: "a number, or a string of digits that keeps every one",
}

#: An aggregate's state, as the envelope carries it.
State = OrderState | CustomerState
#: What a decision records: the event type (one of the command's ``emits``) and the aggregate's state
#: after it.
Decision = tuple[str, State]

#: Every command, by its ``type``, in the order they were declared.
COMMANDS: dict[str, type[Command]] = {}


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CommandMetadata(_Strict):
    """Where the caller says the command comes from: the events keep ``userId`` as ``claimedUserId`` (a
    claim nobody checked) and ``source`` as it is."""

    userId: Id | None = None
    source: Id | None = None


class Command(_Strict):
    """Fields every command may carry, and the declaration every command completes."""

    type: str = Field(description="the command's name: one of the sections below")
    commandId: Id | None = None
    expectedVersion: Annotated[int, Field(strict=True, ge=0)] | None = Field(
        default=None, description="the aggregate version the caller last saw (0: must not exist yet)"
    )
    correlationId: Id | None = None
    metadata: CommandMetadata = CommandMetadata()

    #: The aggregate type the command acts on; its id is the field ``AGGREGATE_ID_FIELD`` names for it.
    aggregate: ClassVar[AggregateType]
    #: What an aggregate of that type is called in a rejection, with ``{id}``: when it exists although the
    #: command creates it, and when it does not although the command needs it.
    already_exists: ClassVar[str]
    missing: ClassVar[str]
    #: True: the command brings its aggregate into being (refused if it exists); False: it needs it to exist.
    creates: ClassVar[bool] = False
    #: Other aggregates the decision reads: the field holding the id -> the aggregate type it must be.
    refers_to: ClassVar[Mapping[str, AggregateType]] = {}
    #: The event types (past tense, from ``EVENT_CATALOG``) the decision may record.
    emits: ClassVar[tuple[str, ...]] = ()
    #: A whole command of this type, as a caller sends it: checked against the class at import.
    example: ClassVar[Mapping[str, Any]]

    def decide(self, state: State | None, now: datetime, referenced: Mapping[str, State | None]) -> Decision:
        """The command's rule: the event it records and the aggregate's state after it, or a
        ``CommandRejected`` naming the rule it breaks. ``state`` is ``None`` exactly when the command
        ``creates``; ``referenced`` holds the state of each aggregate ``refers_to`` names (``None``: there is
        none of that type). The id, version and existence checks have been made by then."""
        raise NotImplementedError

    def with_target(self) -> Command:
        """The command with its aggregate id filled in (a command may generate it; ``commandId`` is set)."""
        return self

    def target(self) -> tuple[AggregateType, str]:
        """The aggregate type and id the command (after :meth:`with_target`) acts on."""
        return self.aggregate, getattr(self, AGGREGATE_ID_FIELD[self.aggregate])

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        kind = _declared_type(cls)
        if kind is not None:  # a class with a Literal type is a command; one without, a base for commands
            _check_declaration(cls, kind)
            COMMANDS[kind] = cls


def _declared_type(cls: type[Command]) -> str | None:
    annotation = cls.model_fields["type"].annotation
    return get_args(annotation)[0] if get_origin(annotation) is Literal else None


def _check_declaration(cls: type[Command], kind: str) -> None:
    """Refuse (``TypeError``, at import) a command whose declaration is not whole, naming what is missing."""
    name = cls.__name__
    if cls.decide is Command.decide:
        raise TypeError(f"{name} declares no decide(...)")
    if kind != name:
        raise TypeError(f"{name} declares type {kind!r}; a command's type is its class name")
    if kind in COMMANDS:
        raise TypeError(f"{name} is declared twice (also in {COMMANDS[kind].__module__})")
    for attribute in ("aggregate", "already_exists", "missing"):
        if not hasattr(cls, attribute):
            raise TypeError(f"{name} declares no {attribute} (give it in the class or its aggregate's base)")
    id_field = AGGREGATE_ID_FIELD[cls.aggregate]
    if id_field not in cls.model_fields:
        raise TypeError(f"{name} acts on a {cls.aggregate.value} but has no {id_field} field")
    for field in cls.refers_to:
        if field not in cls.model_fields:
            raise TypeError(
                f"{name} refers to another aggregate by {field!r}, which is not one of its fields"
            )
    if not cls.emits:
        raise TypeError(f"{name} declares no emits (the event types its decision records)")
    for event_type in cls.emits:
        owner = EVENT_CATALOG.get(event_type)
        if owner is None:
            raise TypeError(f"{name} emits {event_type!r}, which the envelope's EVENT_CATALOG does not list")
        if owner is not cls.aggregate:
            raise TypeError(
                f"{name} acts on a {cls.aggregate.value} but emits {event_type!r}, a {owner.value} event"
            )
    _check_example(cls, name)


def _check_example(cls: type[Command], name: str) -> None:
    """The example must be one the command itself accepts: what the documentation shows is never refused."""
    example = cls.__dict__.get("example")
    if example is None:
        raise TypeError(f"{name} declares no example (a whole {name}, as a caller sends it)")
    if example.get("type") != name:
        raise TypeError(f"{name}'s example has type {example.get('type')!r}, not {name!r}")
    try:
        cls.model_validate(example)
    except pydantic.ValidationError as error:
        raise TypeError(
            f"{name}'s example is refused by its own declaration: {_describe(name, error)}"
        ) from None


def json_schemas(ref_template: str = "#/$defs/{model}") -> dict[str, dict[str, Any]]:
    """The JSON schemas of the commands, by name: ``Command`` (any one of them, a ``oneOf`` told apart by
    ``type``), each command's with its example, and those they refer to; each refers to the others by
    ``ref_template``."""
    any_command = Annotated[Union[tuple(COMMANDS.values())], Field(discriminator="type")]  # noqa: UP007
    schema = pydantic.TypeAdapter(any_command).json_schema(ref_template=ref_template)
    defs = schema["$defs"]
    for name, command in COMMANDS.items():  # as declared (pydantic would sort an example's keys)
        defs[name]["examples"] = [dict(command.example)]
    return {"Command": {key: value for key, value in schema.items() if key != "$defs"}, **defs}


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


def pattern_rule(pattern: str | None) -> str:
    """What a string field held to ``pattern`` must be, in words (the rejection's and the reference's)."""
    return _PATTERN_HINTS.get(pattern, ID_RULES["visible"])


def _message(detail: dict[str, Any]) -> str:
    if detail["type"] == "string_pattern_mismatch":
        return pattern_rule(detail.get("ctx", {}).get("pattern"))
    if detail["type"] == "too_short" and detail["loc"][-1] == "items":
        return "an order needs at least one item"
    if detail["type"] == "extra_forbidden":
        return "unknown field; remove it"
    message = detail["msg"]
    return message.removeprefix("Value error, ")
