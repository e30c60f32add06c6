"""``cqrs-orders submit`` and ``cqrs-orders relay`` as users run them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

REGISTER = {
    "type": "RegisterCustomer",
    "commandId": "c-1",
    "customerId": "cust-1",
    "name": "Ada",
    "email": "a@b.io",
}
CREATE = {
    "type": "CreateOrder",
    "commandId": "c-2",
    "orderId": "order-1",
    "customerId": "cust-1",
    "items": [{"sku": "A", "quantity": 1, "unitPrice": 9.99}],
}


def test_submit_one_command(cli):
    result = cli("submit", json.dumps(REGISTER))
    assert result.exit_code == 0, result.stderr
    [line] = result.json_lines()
    assert line["status"] == "accepted" and line["commandId"] == "c-1" and line["version"] == 1
    assert set(line) == {"commandId", "status", "aggregateId", "version", "eventIds", "error"}


def test_submit_a_file_prints_one_result_per_line_and_exits_1_on_any_rejection(cli, tmp_path):
    commands = tmp_path / "commands.jsonl"
    commands.write_text(f"{json.dumps(REGISTER)}\n\n{json.dumps(CREATE)}\nnot json\n{json.dumps(CREATE)}\n")
    result = cli("submit", "--file", str(commands))
    assert result.exit_code == 1
    lines = result.json_lines()
    assert [line["status"] for line in lines] == ["accepted", "accepted", "rejected", "accepted"]
    assert lines[2]["error"]["code"] == "VALIDATION_ERROR"
    assert lines[3] == lines[1]  # the repeated commandId got the first outcome


def test_submit_usage_errors(cli, tmp_path):
    missing = cli("submit", "--file", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2 and "Cannot read the commands file" in missing.stderr
    with pytest.raises(SystemExit) as raised:
        cli("submit")
    assert raised.value.code == 2


def test_relay_drains_and_reports(cli):
    cli("submit", json.dumps(REGISTER))
    cli("submit", json.dumps(CREATE))
    first = cli("relay")
    assert (first.exit_code, first.stdout.strip()) == (0, "published 2 events")
    assert cli("relay").stdout.strip() == "published 0 events"


def test_a_relay_that_finds_the_lease_held_says_who_publishes_instead(cli, settings):
    from cqrs_orders.adapters.sqlite_store import SqliteWriteStore

    cli("submit", json.dumps(REGISTER))
    holder = SqliteWriteStore(settings.write_store_path)
    try:
        with holder.relay_guard("the command API's relay"):
            busy = cli("relay")
    finally:
        holder.close()
    assert busy.exit_code == 0, busy.stderr
    assert busy.stdout.startswith("published 0 events: the command API's relay (host ")
    assert "holds the outbox lease (until its process ends)" in busy.stdout
    assert cli("relay").stdout.strip() == "published 1 events"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_relay_follow_publishes_until_signalled(settings, stop_signal):
    from cqrs_orders.adapters.event_log import EventLog

    base = [sys.executable, "-m", "cqrs_orders.cli"]
    warehouse = ["--warehouse", str(settings.warehouse)]
    follower = subprocess.Popen(
        [*base, "relay", "--follow", "--poll-seconds", "0.1", *warehouse],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    submitted = subprocess.run(
        [*base, "submit", json.dumps(REGISTER), *warehouse], capture_output=True, text=True
    )
    assert submitted.returncode == 0, submitted.stderr
    log = EventLog(settings.event_log_path)
    deadline = time.monotonic() + 30
    while sum(log.end_offsets().values()) < 1:
        assert time.monotonic() < deadline and follower.poll() is None, follower.stderr
        time.sleep(0.1)
    follower.send_signal(stop_signal)
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert out.strip() == "published 1 events"


def test_submit_and_relay_never_import_spark(settings):
    probe = (
        "import sys; from cqrs_orders.cli import main; "
        f"warehouse = {str(settings.warehouse)!r}; "
        f"codes = [main(['submit', {json.dumps(json.dumps(REGISTER))}, '--warehouse', warehouse]), "
        "main(['relay', '--warehouse', warehouse])]; "
        "assert codes == [0, 0], codes; "
        "assert not [m for m in sys.modules if m.startswith(('pyspark', 'azure'))], 'heavy import'"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1"])
def test_relay_follow_refuses_a_poll_that_is_not_a_positive_finite_number(cli, value):
    """``nan`` made the follow loop spin a core; ``inf`` raised OverflowError from the wait."""
    result = cli("relay", "--follow", f"--poll-seconds={value}")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--poll-seconds" in lines[0] and "finite" in lines[0], lines


def test_a_following_relay_wakes_on_a_commit_not_on_its_poll(settings):
    """With a 30 s poll, a command committed by another connection is published within a fraction of a
    second: the relay watches the write store's commit counter between polls."""
    import threading

    from cqrs_orders import wiring
    from cqrs_orders.adapters.event_log import EventLog

    handler = wiring.command_handler(settings)
    handler.handle(REGISTER)  # creates the store and the log
    relay = wiring.relay(settings)
    stop = threading.Event()
    follower = threading.Thread(target=relay.follow, args=(stop, 30.0), daemon=True)
    follower.start()
    log = EventLog(settings.event_log_path)
    try:
        deadline = time.monotonic() + 10
        while sum(log.end_offsets().values()) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # the relay is now waiting out its poll
        handler.handle(CREATE)
        committed = time.monotonic()
        while sum(log.end_offsets().values()) < 2 and time.monotonic() < committed + 10:
            time.sleep(0.01)
        waited = time.monotonic() - committed
    finally:
        stop.set()
        follower.join(10)
        relay.close()
        handler.store.close()
    assert sum(log.end_offsets().values()) == 2
    assert waited < 2.0, f"published {waited:.2f} s after the commit"
