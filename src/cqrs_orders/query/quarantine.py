"""The quarantine as SQL: its records' envelope fields read leniently off the body, the criteria an operator
chooses records by, and the listing that ``cqrs-orders quarantine list`` prints.

Why SQL text: the listing runs without Spark on a laptop (DataFusion over the Delta folders) and on the
job's Spark session on Databricks, and replay and acknowledge (Spark) choose records with the same
expressions (:mod:`cqrs_orders.pipeline.quarantine`), so what ``list`` shows is what they act on. The text
is in the overlap of the two dialects; the patterns are bound as parameters, never written as literals
(Spark reads a backslash in a literal as an escape, DataFusion does not).

A body may be invalid JSON (that may be why it is here), so each field is read as JSON where the body
parses (``get_json_object``: Spark's; :mod:`.delta` supplies it to DataFusion) and otherwise scanned for
in the text (a truncated body still names its event most of the time; escapes are then shown as sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from cqrs_orders.query.api import Parameter

QUARANTINE = "bronze_quarantine"
ACKNOWLEDGEMENTS = "ops_quarantine_acknowledgements"
#: ``--time``: which of a quarantined record's times ``since`` and ``until`` compare with.
TIME_COLUMNS = {"ingest": "ingest_time", "enqueued": "enqueued_time"}
#: The envelope's header as :func:`described_columns` reads it: column -> JSON field (strings).
LENIENT_FIELDS = {
    "event_id": "eventId",
    "event_type": "eventType",
    "aggregate_type": "aggregateType",
    "aggregate_id": "aggregateId",
}
_STRING_VALUE = r'\s*:\s*"((?:[^"\\]|\\.)*)"'
_NUMBER_VALUE = r'\s*:\s*"?(-?\d+)'  # a version sent as a JSON string still shows its number


@dataclass(frozen=True)
class Selection:
    """Which quarantined records an action is about; every given criterion must hold (none: all records).

    ``since`` is inclusive and ``until`` exclusive, on ``time`` (``ingest``: when the pipeline quarantined
    the record; ``enqueued``: when the bus received it)."""

    event_ids: tuple[str, ...] = ()
    reason: str | None = None
    aggregate: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    time: str = "ingest"

    @property
    def narrows(self) -> bool:
        """Whether any criterion is given (a replay of everything must be asked for explicitly)."""
        return bool(self.event_ids or self.reason or self.aggregate or self.since or self.until)


def _patterns() -> dict[str, str]:
    """Per field, the pattern that finds it (``scan_*``) and the one that keeps only its value
    (``extract_*``, replaced by its first group)."""
    fields = {**{column: (name, _STRING_VALUE) for column, name in LENIENT_FIELDS.items()}}
    fields["version"] = ("version", _NUMBER_VALUE)
    patterns = {}
    for column, (name, value) in fields.items():
        found = f'"{name}"{value}'
        patterns[f"scan_{column}"] = found
        patterns[f"extract_{column}"] = f"(?s)^.*?{found}.*$"
    return patterns


#: The patterns :func:`described_columns` binds, by parameter name.
PATTERNS = _patterns()


def _scanned(alias: str, column: str) -> str:
    return (
        f"CASE WHEN regexp_like({alias}.body, :scan_{column}) "
        f"THEN regexp_replace({alias}.body, :extract_{column}, '$1') END"
    )


def described_columns(alias: str = "q") -> str:
    """Select items adding ``event_id``, ``event_type``, ``aggregate_type``, ``aggregate_id`` (strings) and
    ``version`` (a number) to the quarantine rows named ``alias``: null where the body lacks them. Bind
    :data:`PATTERNS` with it."""
    items = [
        f"coalesce(get_json_object({alias}.body, '$.{name}'), nullif({_scanned(alias, column)}, '')) "
        f"AS {column}"
        for column, name in LENIENT_FIELDS.items()
    ]
    items.append(
        f"coalesce(try_cast(get_json_object({alias}.body, '$.version') AS BIGINT), "
        f"try_cast({_scanned(alias, 'version')} AS BIGINT)) AS version"
    )
    return ", ".join(items)


def criteria(selection: Selection, alias: str = "d") -> tuple[str, dict[str, str]]:
    """A condition on the described rows named ``alias`` that holds for the records ``selection`` chooses,
    and the values to bind (times as ISO-8601 UTC text)."""
    conditions, values = ["TRUE"], {}
    if selection.event_ids:
        names = [f"event_id_{number}" for number in range(len(selection.event_ids))]
        values.update(zip(names, selection.event_ids, strict=True))
        conditions.append(f"{alias}.event_id IN ({', '.join(':' + name for name in names)})")
    if selection.reason:
        values["reason"] = selection.reason
        conditions.append(f"array_contains({alias}.failed_expectations, :reason)")
    if selection.aggregate:
        values["aggregate"] = selection.aggregate
        conditions.append(f"{alias}.aggregate_id = :aggregate")
    moment = f"{alias}.{TIME_COLUMNS[selection.time]}"
    for name, operator in (("since", ">="), ("until", "<")):
        at = getattr(selection, name)
        if at is not None:
            values[name] = at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
            conditions.append(f"{moment} {operator} CAST(:{name} AS TIMESTAMP)")
    return " AND ".join(conditions), values


def listing(selection: Selection, limit: int) -> tuple[str, dict[str, Parameter]]:
    """The statement listing at most ``limit`` chosen records, described, with their acknowledgement if
    any (``acknowledged_by``, ``acknowledged_at``, ``acknowledged_reason``), oldest first; and its
    parameters."""
    condition, values = criteria(selection)
    statement = (
        f"SELECT d.*, a.acknowledged_by, a.acknowledged_at, a.reason AS acknowledged_reason "
        f"FROM (SELECT q.*, {described_columns('q')} FROM {QUARANTINE} AS q) AS d "
        f"LEFT JOIN {ACKNOWLEDGEMENTS} AS a ON a.event_id = d.event_id "
        f"WHERE {condition} ORDER BY d.ingest_time, d.partition, d.offset LIMIT {int(limit)}"
    )
    bound = {name: Parameter(value, "STRING") for name, value in {**PATTERNS, **values}.items()}
    return statement, bound
