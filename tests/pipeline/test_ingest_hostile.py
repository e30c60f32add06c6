"""``ingest-events`` takes any line: a hostile one is an error of that line alone, found downstream.

A deeply nested line, a JSON text with a lone surrogate (``\\ud800``) and bytes that are not UTF-8 are
appended like every other line; ``project --once`` then quarantines them with their reasons, and every
record in is accounted for (records in = bronze rows + quarantine rows).
"""

from __future__ import annotations

import json

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.delta_io import table

DEEP = b"[" * 200_000  # under the 1 MiB body limit, far past any parser's nesting limit
SURROGATE_KEY = b'{"aggregateId": "\\ud800", "note": "a lone surrogate as the key"}'
SURROGATE_EVENT_ID = b'{"eventId": "\\udfff"}'
NOT_UTF8 = b'{"aggregateId": "\xed\xa0\x80"}'  # a surrogate encoded as UTF-8: invalid bytes


def _hostile_file(tmp_path, events) -> tuple:
    valid = events.order()
    lines = [valid.encode(), DEEP, SURROGATE_KEY, NOT_UTF8, SURROGATE_EVENT_ID, events.customer().encode()]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


def test_ingest_events_appends_every_hostile_line(cli, settings, tmp_path, events):
    path, lines = _hostile_file(tmp_path, events)

    result = cli("ingest-events", "--file", str(path))

    assert result.exit_code == 0, result.stderr
    assert result.json_lines() == [{"ingested": len(lines), "eventLog": str(settings.event_log_path)}]
    records = EventLog(settings.event_log_path).read().to_pylist()
    expected = [line.decode("utf-8", errors="replace") for line in lines]
    assert sorted(r["body"] for r in records) == sorted(expected)
    keys = {r["body"]: r["partition_key"] for r in records}
    assert keys[expected[0]] == "order-1"
    assert keys[DEEP.decode()] is None
    assert keys[SURROGATE_KEY.decode()] is None  # not a usable key; the line still goes in
    assert keys[expected[3]] == "\ufffd\ufffd\ufffd"


def test_project_quarantines_the_hostile_lines_with_reasons(spark, cli, settings, tmp_path, events):
    path, lines = _hostile_file(tmp_path, events)
    assert cli("ingest-events", "--file", str(path)).exit_code == 0

    result = cli("project", "--once")

    assert result.exit_code == 0, result.stderr
    bronze = table(settings, "bronze_events").read(spark).collect()
    quarantine = {
        row.body: list(row.failed_expectations)
        for row in table(settings, "bronze_quarantine").read(spark).collect()
    }
    assert len(bronze) + len(quarantine) == len(lines)
    assert sorted(row.aggregate_id for row in bronze) == ["cust-1", "order-1"]
    assert quarantine[DEEP.decode()] == ["body_is_json_object"]
    assert quarantine[NOT_UTF8.decode("utf-8", errors="replace")][0] == "event_id_present"
    assert quarantine[SURROGATE_KEY.decode()][0] == "event_id_present"
    assert "event_id_is_uuid" in quarantine[SURROGATE_EVENT_ID.decode()]
    assert json.loads(result.stdout.splitlines()[-1])  # the run's summary
