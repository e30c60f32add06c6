"""Turn a ``POST /commands`` request into the raw commands for the handler, refusing bad input early.

Only the framing is checked here (media type, size, object vs. array, batch length): every command still goes
to the handler as raw JSON text, exactly as ``cqrs-orders submit`` hands it a line, so validation and its
messages stay in one place. A refusal raises before anything runs, so a refused request writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cqrs_orders.errors import BatchTooLarge, PayloadTooLarge, UnsupportedMediaType
from cqrs_orders.http.status import MAX_BATCH_COMMANDS, MAX_BODY_BYTES


@dataclass(frozen=True)
class Commands:
    """The commands of one request; ``batch`` when the body was a JSON array (answered with an array)."""

    raw: list[str | bytes]
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
    """One command (any body that is not a JSON array: the handler judges it) or the array's commands."""
    if body.lstrip()[:1] == b"[":
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None  # not JSON: the handler answers VALIDATION_ERROR, as submit does
        if isinstance(decoded, list):
            if len(decoded) > MAX_BATCH_COMMANDS:
                raise BatchTooLarge(
                    f"the batch holds {len(decoded)} commands; the limit is {MAX_BATCH_COMMANDS} per request"
                )
            return Commands([json.dumps(command) for command in decoded], batch=True)
    return Commands([body], batch=False)


def too_large(size: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes (the command size limit), "
        "for one command or a whole batch"
    )
