"""``cqrs-orders ingest-events``: every line becomes one record, byte for byte, valid or not (no Spark)."""

from __future__ import annotations

import json

from cqrs_orders.adapters.event_log import EventLog


def test_ingest_events_appends_each_line_as_it_is(cli, settings, tmp_path, events):
    valid, text = events.order(), "caf\u00e9 \u2615"
    lines = [
        valid.encode(),
        b'  {"padded": true}  ',
        b"",
        b"not json\r",
        text.encode(),
        b"last",
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines))  # CRLF on one line, no newline after the last one

    result = cli("ingest-events", "--file", str(path))

    assert result.exit_code == 0, result.stderr
    assert result.json_lines() == [{"ingested": 6, "eventLog": str(settings.event_log_path)}]
    records = EventLog(settings.event_log_path).read().to_pylist()
    assert sorted(r["body"] for r in records) == sorted(
        [valid, '  {"padded": true}  ', "", "not json", text, "last"]
    )
    keys = {r["body"]: r["partition_key"] for r in records}
    assert keys[valid] == json.loads(valid)["aggregateId"] == "order-1"
    assert {key for body, key in keys.items() if body != valid} == {None}


def test_ingest_events_names_a_missing_file(cli, tmp_path):
    result = cli("ingest-events", "--file", str(tmp_path / "missing.jsonl"))
    assert result.exit_code == 2
    assert "missing.jsonl" in result.stderr and "Pass an existing file" in result.stderr
