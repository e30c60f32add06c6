"""The one JSON intake: every command text (a ``submit`` line, an HTTP body, single or array, a job's
payload) is decoded here, with the same limits and the same messages.

Refused, each with a ``ValidationError`` that says what to fix:

* more than ``max_bytes`` of UTF-8 (:data:`MAX_COMMAND_BYTES` unless the caller says otherwise), or text
  that is not UTF-8;
* a key given twice in one object (plain ``json`` keeps the last one, so ``{"customerId": "a",
  "customerId": "b"}`` would silently mean whatever the sender did not check);
* nesting deeper than :data:`MAX_DEPTH` (a command is three levels deep);
* ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON;
* anything else that is not JSON.

Numbers with a fraction or exponent are decoded as ``Decimal``, from their own digits: a float would turn
``90071992547409.93`` into ``90071992547409.94`` before any rule saw it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from cqrs_orders.errors import ValidationError

#: Commands larger than this (as UTF-8 JSON) are refused before parsing: they are abuse, not orders.
MAX_COMMAND_BYTES = 256 * 1024
#: Deepest nesting of arrays and objects taken (a batch of commands with items is 4 levels).
MAX_DEPTH = 16


def decode(raw: str | bytes, *, max_bytes: int = MAX_COMMAND_BYTES) -> Any:
    """JSON text -> its value, or a ``ValidationError`` naming the first rule the text breaks."""
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError as error:  # a lone surrogate, e.g. undecodable bytes via surrogateescape
            raise ValidationError(f"not valid JSON: not UTF-8 text ({error.reason})") from None
    if len(raw) > max_bytes:
        raise ValidationError(too_large(len(raw), max_bytes))
    try:
        text = raw.decode()
    except UnicodeDecodeError as error:
        raise ValidationError(
            f"not valid JSON: not UTF-8 text (byte {error.start} is {error.object[error.start]:#04x}: "
            f"{error.reason})"
        ) from None
    try:
        value = _DECODER.decode(text)
    except _Refused as refused:
        raise ValidationError(str(refused)) from None
    except RecursionError:  # hundreds of levels: past the decoder's own stack
        raise ValidationError(_TOO_DEEP) from None
    except ValueError as error:
        raise ValidationError(f"not valid JSON: {error}") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise ValidationError(_TOO_DEEP)
    return value


def too_large(size: int, max_bytes: int) -> str:
    return f"{size} bytes of JSON; the limit is {max_bytes} bytes ({max_bytes // 1024} KiB)"


_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels of arrays and objects; a command is at most 3"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep (walked without
    recursion; only called when the text holds enough brackets to be)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


class _Refused(ValueError):
    """A rule of this intake broken inside the decoder (its message is the caller's answer)."""


def _object(pairs: list[tuple[str, Any]]) -> dict:
    decoded = dict(pairs)
    if len(decoded) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"{short(key)}: given more than once; give each field once")
            seen.add(key)
    return decoded


def _not_a_number(name: str) -> Any:
    raise _Refused(f"not valid JSON: {name} is not a JSON value (send money as a decimal string)")


#: One decoder for every text (``json.loads`` with hooks would build a new one per call).
_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_float=Decimal, parse_constant=_not_a_number)


def short(value: object) -> str:
    """``repr(value)``, cut to 60 characters: a message quotes input without echoing all of it."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
