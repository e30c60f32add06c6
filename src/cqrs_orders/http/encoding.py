"""JSON out: read-model rows and freshness with exact money, ISO-8601 UTC times and camelCase keys.

Money (``Decimal``) goes out as a string ("25.50"): a JSON number would be read as a float by most clients
and lose cents past 2**53. Timestamps are ``...Z`` UTC, dates ``YYYY-MM-DD``. Every key of every answer is
camelCase, the style of the commands and their results: the read models' columns are snake_case (SQL's
style), so a row is renamed here (:func:`row`), at the edge, and the queries keep their column names.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

_SNAKE_WORD = re.compile(r"_([a-z0-9])")


def to_json(payload: Any) -> bytes:
    return json.dumps(payload, default=_value, separators=(",", ":")).encode()


def _value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def freshness(row: dict[str, Any]) -> dict[str, Any]:
    """``ReadModels.freshness()`` in the API's field names."""
    return {"lastEventTime": row.get("last_event_time"), "projectedAt": row.get("projected_at")}


def camel(name: str) -> str:
    """A snake_case column name as the API's key: ``last_sale_at`` -> ``lastSaleAt``."""
    return _SNAKE_WORD.sub(lambda match: match.group(1).upper(), name)


def row(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """A read-model row in the API's key style (``None`` stays ``None``: not found)."""
    return None if values is None else {camel(key): value for key, value in values.items()}


def rows(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row(value) for value in values]
