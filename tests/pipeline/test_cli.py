"""``cqrs-orders ingest-events`` (every line becomes one record, byte for byte, valid or not) and the one
projection per warehouse rule; no Spark."""

from __future__ import annotations

import json
import subprocess
import sys

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.pipeline import checkpoint_lock
from cqrs_orders.pipeline.runner import CHECKPOINT


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


def test_a_second_projection_on_the_same_warehouse_refuses_to_start(cli, settings):
    """The first holds the checkpoint's lock for its life (here a stand-in process holding it); the second
    exits 2 with one line, before Spark starts, instead of dying later on Spark's offset log."""
    checkpoint = settings.checkpoint(CHECKPOINT)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, checkpoint], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        for mode in ("--once", "--continuous"):
            result = cli("project", mode)
            assert result.exit_code == 2, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "Another projection is already running" in lines[0], lines
            assert f"pid {holder.pid}" in lines[0]
    finally:
        holder.kill()
        holder.wait()
    with checkpoint_lock.exclusive(checkpoint):  # released with the process that held it (even killed)
        pass


HOLD_LOCK = (
    "import sys, time; from cqrs_orders.pipeline import checkpoint_lock\n"
    "with checkpoint_lock.exclusive(sys.argv[1]):\n"
    "    print('locked', flush=True); time.sleep(600)\n"
)
