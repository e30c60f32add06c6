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
