"""The id rule, defined once: which strings may name an aggregate, a command, a SKU or a correlation.

An id the write side accepts must be readable back through every route and query that takes it: as a URL
path segment (``GET /orders/{orderId}``), as a SQL string literal (``cqrs-orders sql``, the views), as a
Cosmos DB partition key. So an id is 1 to 128 characters that are

* **visible**: no control, format (zero-width, direction marks, BOM), surrogate, private-use or unassigned
  character, and no space but U+0020, which may stand inside an id but not at either end (each of these
  makes an id that looks like another one);
* **not a path separator**: no ``/`` or ``\\``, and not ``.`` or ``..`` (HTTP clients and servers rewrite
  those segments, so such an id would address a different resource);
* **in Unicode NFC**: one spelling per id. Two encodings of the same text (NFC and NFD) would make two
  aggregates that print the same, so an id in any other form is refused (not silently normalised: what is
  accepted is kept exactly as given).

Every rule has a stable message (:data:`RULES`) that the API's 422 answers name.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, StringConstraints, TypeAdapter
from pydantic import ValidationError as _Invalid

MAX_ID_LENGTH = 128

#: Characters an identifier cannot hold: every control, format, surrogate, private-use and unassigned code
#: point (``\p{C}``), and any space but U+0020. Checked in pydantic-core's regex engine (about a microsecond).
_NOT_IN_ID = r"\p{C}\p{Zl}\p{Zp}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
#: The visible-characters rule as a pattern (no space at either end).
ID_PATTERN = rf"^[^\s{_NOT_IN_ID}](?:[^{_NOT_IN_ID}]*[^\s{_NOT_IN_ID}])?$"

#: Each rule's message, as the 422 answers and the docs state it.
RULES = {
    "visible": f"must be 1 to {MAX_ID_LENGTH} visible characters: no control, invisible or "
    "direction-changing characters, no spaces at either end",
    "separator": "must not contain '/' or '\\' nor be '.' or '..' (ids are URL path segments)",
    "nfc": "must be in Unicode normalisation form NFC (normalise it before sending)",
}


def _path_or_form_problem(value: str) -> str | None:
    if "/" in value or "\\" in value or value in (".", ".."):
        return RULES["separator"]
    if not unicodedata.is_normalized("NFC", value):
        return RULES["nfc"]
    return None


def _round_trips(value: str) -> str:
    problem = _path_or_form_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: An identifier, as every command field that names something takes it.
Id = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN),
    AfterValidator(_round_trips),
]

_ID = TypeAdapter(Id)


def id_problem(value: str) -> str | None:
    """The message of the rule ``value`` breaks, or ``None`` for a valid id: the same check as a command's,
    for callers outside a command (the GET routes)."""
    try:
        _ID.validate_python(value)
    except _Invalid as error:
        detail = error.errors(include_url=False)[0]
        if detail["type"] == "value_error":
            return detail["msg"].removeprefix("Value error, ")
        return RULES["visible"]
    return None
