"""JSON out: read-model rows and freshness with exact money and ISO-8601 UTC times.

Money (``Decimal``) goes out as a string ("25.50"): a JSON number would be read as a float by most clients
and lose cents past 2**53. Timestamps are ``...Z`` UTC, dates ``YYYY-MM-DD``.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any


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
