"""``serve --relay``: the command API publishes its own outbox from a thread of its process (what the bundle's
app runs), holding the outbox lease while it serves and releasing it at shutdown."""

from __future__ import annotations

import time

import pytest

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError

from .conftest import stop_server

COMMANDS = [
    {"type": "RegisterCustomer", "customerId": "relay-cust", "name": "Ada", "email": "ada@example.com"},
    {"type": "CreateOrder", "orderId": "relay-1", "customerId": "relay-cust",
     "items": [{"sku": "A", "quantity": 1, "unitPrice": 2.5}]},
]  # fmt: skip


def test_serve_with_relay_publishes_each_commit_and_releases_the_lease_at_shutdown(served, settings, cli):
    server = served(settings.warehouse, None, "--relay")
    log = EventLog(settings.event_log_path, settings.event_log_partitions)
    with server.client() as client:
        posted = time.monotonic()
        assert [r["status"] for r in client.post("/commands", json=COMMANDS).json()] == ["accepted"] * 2
    while len(log.read()) < 2:  # the relay wakes at the commit: no relay command was run
        assert time.monotonic() - posted < 20, "the app's relay published nothing"
        time.sleep(0.02)
    assert time.monotonic() - posted < 5

    busy = cli("relay")  # a second relay is told who publishes
    assert busy.exit_code == 0, busy.stderr
    assert busy.stdout.startswith("published 0 events: command API relay (host ")
    assert f"pid {server.process.pid})" in busy.stdout

    output = stop_server(server)
    assert "Application shutdown complete" in output, output
    assert "relay: command API relay" in output and "holds the outbox lease" in output
    assert "relay: stopped; 2 events published since the start" in output
    assert cli("relay").stdout.strip() == "published 0 events"  # the lease was released; nothing left
    assert len(log.read()) == 2


def test_cqrs_relay_follow_is_the_setting_of_the_option(tmp_path):
    assert Settings.from_env(tmp_path, env={}).relay == "off"
    assert Settings.from_env(tmp_path, env={"CQRS_RELAY": "follow"}).relay == "follow"
    with pytest.raises(ConfigurationError, match="CQRS_RELAY='always' is not one of: off, follow"):
        Settings.from_env(tmp_path, env={"CQRS_RELAY": "always"})
