"""The lag monitor's measures, each written once as SQL over the warehouse's logical table names.

Why SQL text: the same measure runs in both editions without a second implementation. On a laptop
Apache DataFusion runs it over the Delta folders (:class:`~cqrs_orders.query.delta.DeltaBackend`, no JVM);
on Databricks the lag job's Spark session runs it over Unity Catalog tables registered under the same
names (:mod:`.lag`). So every statement here is in the overlap of the two dialects: no backtick or double
quote around a name, no backslash in a literal, no engine-only function (``unix_micros``, ``count_if``,
``get_json_object``); times come back as timestamps and are turned into numbers in Python.

Besides the warehouse's tables, one more name resolves: :data:`EVENT_LOG`, the embedded event log (the
bus of the local edition), with the columns ``body``, ``partition`` and ``offset``.

The few steps that are not queries (parsing the bodies of records no table holds yet, widening the event
times by them, reading a progress row's offsets) are plain functions below, shared by both editions too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime

from cqrs_orders.pipeline.read_models import ReadModel

#: The name under which the embedded event log's records are read.
EVENT_LOG = "event_log"

#: Per aggregate type, the newest and oldest event time in bronze: the part of the bus the projection
#: has read (the unread part is added by :func:`with_events`).
BRONZE_EVENT_TIMES = (
    "SELECT aggregate_type, max(event_time) AS newest_event_time, min(event_time) AS oldest_event_time "
    "FROM bronze_events GROUP BY aggregate_type"
)

#: The bodies of the embedded log's records that reached neither bronze nor the quarantine: what waits.
#: (A quarantined record will never reach a read model: counting its time would show a lag no projection
#: can ever close.)
UNREAD_RECORDS = (
    f"SELECT r.body FROM {EVENT_LOG} AS r "
    "WHERE NOT EXISTS (SELECT 1 FROM bronze_events AS b "
    "WHERE b.partition = r.partition AND b.offset = r.offset) "
    "AND NOT EXISTS (SELECT 1 FROM bronze_quarantine AS q "
    "WHERE q.partition = r.partition AND q.offset = r.offset)"
)

_INGESTED = (
    "(SELECT b.partition, b.offset FROM bronze_events AS b "
    "UNION ALL SELECT q.partition, q.offset FROM bronze_quarantine AS q) AS i"
)  # ``partition`` and ``offset`` are keywords to one parser or the other: always qualified
#: How many records of the bus reached bronze or quarantine (each position once): on the embedded log,
#: whose offsets start at 0 without holes, the records not yet read are the log's records minus these,
#: whatever order the log was read in (a new stream reads a compacted log's files as they were written,
#: compacted ones last, so a bounded catch-up may have ingested a later record before an earlier one).
INGESTED_POSITIONS = (
    f"SELECT count(*) AS ingested FROM (SELECT i.partition, i.offset FROM {_INGESTED} "
    "GROUP BY i.partition, i.offset) AS positions"
)
#: How many records the embedded log holds (an engine answers it from the Delta log's statistics).
LOG_RECORDS = f"SELECT count(*) AS records FROM {EVENT_LOG}"
#: Per source partition, the offset after the last record that reached bronze or quarantine (Kafka is
#: read in offset order).
INGESTED_NEXT_OFFSETS = (
    f"SELECT i.partition, max(i.offset) + 1 AS next_offset FROM {_INGESTED} GROUP BY i.partition"
)

#: The end offsets of the projection's newest progress row that has them (its checkpoint's word).
NEWEST_SOURCE_END = (
    "SELECT source_end_offset FROM ops_stream_progress WHERE source_end_offset IS NOT NULL "
    "ORDER BY recorded_at DESC LIMIT 1"
)
#: When the projection's last batch was recorded.
LAST_BATCH = "SELECT max(recorded_at) AS last_batch_at FROM ops_stream_progress"


def unapplied_events(aggregate_type: str, table: str, id_column: str) -> str:
    """Bronze events of one aggregate type that the read model ``table`` has not applied yet, one row per
    distinct (``aggregate_id``, ``version``): duplicates in bronze count once.

    An event is applied once the read model holds its aggregate at that version or a higher one (silver
    keeps only the highest version), so pending = version above the silver row's, or no silver row. The
    pending events are chosen before duplicates are removed: there are few of them."""
    return (
        "SELECT e.aggregate_id, e.version FROM bronze_events AS e "
        f"LEFT JOIN (SELECT {_plain(id_column)} AS applied_id, version AS applied_version "
        f"FROM {_plain(table)}) AS s ON e.aggregate_id = s.applied_id "
        f"WHERE e.aggregate_type = '{_plain(aggregate_type)}' "
        "AND (s.applied_version IS NULL OR e.version > s.applied_version) "
        "GROUP BY e.aggregate_id, e.version"
    )


def version_gaps(aggregate_type: str | None = None, events: str = "bronze_events") -> str:
    """Aggregates whose events skip a version (a sign of a lost event), one row each, with
    ``max_version``, ``distinct_versions`` and ``missing``; ``events`` names ``bronze_events`` or the
    event history (``silver_event_history``): redeliveries count once either way.

    Versions start at 1 and grow by one per event, so an aggregate with highest version ``n`` must have
    ``n`` distinct versions. A version acknowledged as lost (``ops_quarantine_acknowledgements``) fills
    the hole it names and nothing more: only below the highest version (an acknowledgement can close a
    gap, never open one) and only while that version is absent (one replayed later must not hide another
    gap). Only aggregates that skip a version in ``events`` are compared with the acknowledgements (which
    can only close gaps), and of ``events`` only the acknowledged aggregates' versions."""
    events, kind = _plain(events), "" if aggregate_type is None else _plain(aggregate_type)
    of_kind = "" if not kind else f" AND aggregate_type = '{kind}'"
    same = "{0}.aggregate_type = {1}.aggregate_type AND {0}.aggregate_id = {1}.aggregate_id"
    # One aggregate type: grouped by the id alone (a second grouping column costs as much again).
    typed, grouped = (f"'{kind}' AS aggregate_type, ", "") if kind else ("aggregate_type, ",) * 2
    return (
        "WITH acknowledged AS (SELECT DISTINCT aggregate_type, aggregate_id, version "
        f"FROM ops_quarantine_acknowledgements WHERE version IS NOT NULL{of_kind}), "
        "touched AS (SELECT t.aggregate_type, t.aggregate_id, t.version "
        "FROM (SELECT DISTINCT aggregate_type, aggregate_id FROM acknowledged) AS k "
        f"JOIN {events} AS t ON {same.format('k', 't')}), "
        "tops AS (SELECT aggregate_type, aggregate_id, max(version) AS max_version FROM touched "
        "GROUP BY aggregate_type, aggregate_id), "
        "filled AS (SELECT a.aggregate_type, a.aggregate_id, count(*) AS accepted "
        f"FROM acknowledged AS a JOIN tops AS m ON {same.format('a', 'm')} "
        "WHERE a.version BETWEEN 1 AND m.max_version "
        f"AND NOT EXISTS (SELECT 1 FROM touched AS v WHERE {same.format('v', 'a')} "
        "AND v.version = a.version) "
        "GROUP BY a.aggregate_type, a.aggregate_id) "
        "SELECT p.aggregate_type, p.aggregate_id, p.max_version, p.distinct_versions, "
        "p.max_version - p.distinct_versions - coalesce(f.accepted, 0) AS missing "
        f"FROM (SELECT {typed}aggregate_id, max(version) AS max_version, "
        f"count(DISTINCT version) AS distinct_versions FROM {events} WHERE TRUE{of_kind} "
        f"GROUP BY {grouped}aggregate_id HAVING max(version) > count(DISTINCT version)) AS p "
        f"LEFT JOIN filled AS f ON {same.format('f', 'p')} "
        "WHERE p.max_version - p.distinct_versions - coalesce(f.accepted, 0) > 0"
    )  # fmt: skip


def projection_figures(projection: ReadModel) -> str:
    """One row of a read model's raw figures: the newest event time it applied and when it was last
    projected (``newest_applied``, ``last_projected``), its ``bronze_backlog`` and ``version_gaps``."""
    table, kind = projection.applied_by.table, projection.aggregate_type.value
    (id_column,) = projection.applied_by.key
    return (
        "SELECT applied.newest_applied, applied.last_projected, pending.bronze_backlog, gaps.version_gaps "
        "FROM (SELECT max(last_event_time) AS newest_applied, max(projected_at) AS last_projected "
        f"FROM {_plain(table)}) AS applied "
        f"CROSS JOIN (SELECT count(*) AS bronze_backlog FROM ({unapplied_events(kind, table, id_column)}) "
        "AS unapplied) AS pending "
        f"CROSS JOIN (SELECT count(*) AS version_gaps FROM ({version_gaps(kind)}) AS gapped) AS gaps"
    )


def _plain(text: str) -> str:
    """A name or value from the declarations, checked to need no quoting in either dialect."""
    if not text.replace("_", "").isalnum():
        raise ValueError(f"{text!r} is not a plain name")
    return text


# --- the steps that are not queries --------------------------------------------------------------------


def with_events(
    event_times: Mapping[str, tuple[datetime, datetime]], events: Iterable[tuple[str, datetime]]
) -> dict[str, tuple[datetime, datetime]]:
    """``event_times`` (aggregate type -> newest, oldest) widened by more events, given as (aggregate
    type, event time): the records on the bus that no table holds yet."""
    widened = dict(event_times)
    for kind, at in events:
        newest, oldest = widened.get(kind, (at, at))
        widened[kind] = (max(newest, at), min(oldest, at))
    return widened


def event_of(body: str | None) -> tuple[str, datetime] | None:
    """(aggregate type, event time) read leniently off a bus record's body; ``None`` for a body that is
    not an event (bronze will quarantine it, so it is no read model's lag)."""
    try:
        parsed = json.loads(body or "")
        kind, at = parsed["aggregateType"], parsed["timestamp"]
        if not isinstance(kind, str) or not isinstance(at, str):
            return None
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        return None
    return (kind, moment) if moment.tzinfo is not None else None


def latest_source_offsets(progress_json: str | None, topic: str | None = None) -> dict[int, int]:
    """Kafka's end offsets per partition from a progress row's ``source_latest_offset`` JSON
    (``{"topic": {"0": 12, "1": 7}}``); ``{}`` when unknown. Only ``topic`` is used when given."""
    if not progress_json:
        return {}
    parsed = json.loads(progress_json)
    if not isinstance(parsed, dict):
        return {}
    offsets: dict[int, int] = {}
    for name, partitions in parsed.items():
        if (topic is None or name == topic) and isinstance(partitions, dict):
            for partition, offset in partitions.items():
                offsets[int(partition)] = offsets.get(int(partition), 0) + int(offset)
    return offsets
