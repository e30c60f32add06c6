"""Configuration faults end as the documented one-line error and exit 2, naming the path or setting.

No traceback, no blame on the wrong thing: a warehouse that cannot be a folder, an empty ``--warehouse``,
a damaged event log, a driver memory Spark cannot start with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.cli import main


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    for variable in ("CQRS_CATALOG", "CQRS_SCHEMA", "CQRS_WAREHOUSE", "CQRS_PUBLISHER", "CQRS_WRITE_STORE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_text('{"a": 1}\n')

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["ingest-events", "--file", str(events), *args])
        return code, capsys.readouterr().err

    return run


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_warehouse_that_is_a_file_is_refused(run, tmp_path):
    regular = tmp_path / "a-file"
    regular.write_text("not a folder")
    for path in (str(regular), os.devnull, str(regular / "below")):
        code, err = run("--warehouse", path)
        assert code == 2, err
        line = _one_line(err)
        assert path.split("/below")[0] in line and "not a directory" in line, line
        assert "--warehouse" in line


@pytest.mark.skipif(not Path("/proc/1").is_dir(), reason="needs Linux /proc")
def test_a_warehouse_where_nothing_can_be_written_is_refused(run):
    for path in ("/proc/1", "/proc/1/warehouse"):
        code, err = run("--warehouse", path)
        assert code == 2, err
        line = _one_line(err)
        assert path in line and "cannot" in line and "--warehouse" in line, line


def test_an_empty_warehouse_is_an_error_not_the_default(run, tmp_path):
    code, err = run("--warehouse", "")
    assert code == 2, err
    assert "--warehouse" in _one_line(err) and "empty" in err
    assert not (tmp_path / "warehouse").exists()


def _truncate_last_commit(table: Path) -> Path:
    commit = sorted((table / "_delta_log").glob("*.json"))[-1]
    text = commit.read_text()
    commit.write_text(text[: len(text) // 2])
    return commit


def test_a_damaged_event_log_is_named(run, tmp_path):
    warehouse = tmp_path / "warehouse"
    log = EventLog(warehouse / "event_log")
    log.append([(None, "first")])
    log.append([(None, "second")])
    _truncate_last_commit(warehouse / "event_log")

    code, err = run("--warehouse", str(warehouse))

    assert code == 2, err
    line = _one_line(err)
    assert str(warehouse / "event_log") in line and "Restore" in line, line


def test_a_driver_memory_spark_cannot_start_with_is_named(tmp_path):
    env = {**os.environ, "CQRS_SPARK_DRIVER_MEMORY": "1m"}
    env.pop("CQRS_WAREHOUSE", None)
    for memory in ("1m", "lots"):
        env["CQRS_SPARK_DRIVER_MEMORY"] = memory
        result = subprocess.run(
            [sys.executable, "-m", "cqrs_orders.cli", "lag", "--warehouse", str(tmp_path / "w")],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        line = _one_line(result.stderr)
        assert f"CQRS_SPARK_DRIVER_MEMORY={memory!r}" in line and "jars" not in line, line


def test_a_damaged_event_log_read_through_the_adapter_is_one_line(tmp_path):
    """What ``relay`` and ``submit`` meet: the adapter's own error, without deltalake's Rust backtrace."""
    from cqrs_orders.errors import EventLogError

    log = EventLog(tmp_path / "event_log")
    log.append([(None, "first")])
    log.append([(None, "second")])
    _truncate_last_commit(tmp_path / "event_log")

    with pytest.raises(EventLogError) as raised:
        EventLog(tmp_path / "event_log").end_offsets()

    message = str(raised.value)
    assert len(message.splitlines()) == 1, message
    assert str(tmp_path / "event_log") in message and "restore it from a backup" in message
