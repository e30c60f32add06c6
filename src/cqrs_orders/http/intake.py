"""Turn a ``POST /commands`` request into the commands for the handler, refusing bad input early.

The body, object or array, is decoded once by the one strict JSON intake (:mod:`~cqrs_orders.domain.
strict_json`), so a duplicate key, too deep a nesting, ``NaN`` or a size over the limit is refused the same
way whether the command came alone or in a batch: 422 (413 for size) for the whole request. Then only the
framing is checked here (media type, object vs. array, batch length); each command goes to the handler as
its decoded object, and validation and its messages stay there. A refusal raises before anything runs, so a
refused request writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from cqrs_orders.domain import strict_json
from cqrs_orders.domain.commands import one_command
from cqrs_orders.errors import BatchTooLarge, PayloadTooLarge, UnsupportedMediaType
from cqrs_orders.http.status import MAX_BATCH_COMMANDS, MAX_BODY_BYTES


@dataclass(frozen=True)
class Commands:
    """The commands of one request; ``batch`` when the body was a JSON array (answered with an array)."""

    raw: list[dict | str]
    batch: bool


def check_media_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            f"the body must be sent as Content-Type: application/json, not {content_type or 'nothing'!r}"
        )


def check_declared_size(content_length: str | None) -> None:
    """Refuse a body whose declared length is over :data:`MAX_BODY_BYTES` before reading any of it."""
    if content_length is not None and content_length.isdigit() and int(content_length) > MAX_BODY_BYTES:
        raise too_large(int(content_length))


def split(body: bytes) -> Commands:
    """The body's commands: one for an object, the elements of an array (each judged by the handler)."""
    decoded = strict_json.decode(body, max_bytes=MAX_BODY_BYTES)
    if not isinstance(decoded, list):
        return Commands([one_command(decoded)], batch=False)
    if len(decoded) > MAX_BATCH_COMMANDS:
        raise BatchTooLarge(
            f"the batch holds {len(decoded)} commands; the limit is {MAX_BATCH_COMMANDS} per request"
        )
    return Commands([one_command(item) for item in decoded], batch=True)


def too_large(size: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes (the command size limit), "
        "for one command or a whole batch"
    )
