"""``cqrs-orders serve`` itself: where it binds, its port setting, and refusing a half-made configuration."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_it_binds_loopback_by_default_and_takes_the_port_from_databricks_app_port(served, tmp_path):
    server = served(tmp_path / "warehouse", None, port_in_env=True)

    with server.client() as client:
        assert client.get("/openapi.json").status_code == 200
    port = server.url.rsplit(":", 1)[1]
    from_log = server.log.name
    with open(from_log, encoding="utf-8") as output:
        assert f"Uvicorn running on http://127.0.0.1:{port}" in output.read()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABRICKS_APP_PORT": "eighty"}, "DATABRICKS_APP_PORT='eighty' must be a port number"),
        ({"CQRS_CATALOG": "main", "CQRS_SCHEMA": "orders"}, "set CQRS_SQL_WAREHOUSE_ID"),
        ({"CQRS_SQL_WAREHOUSE_ID": "wh-1"}, "CQRS_SQL_WAREHOUSE_ID needs CQRS_CATALOG and CQRS_SCHEMA"),
    ],
)
def test_a_half_made_configuration_exits_2_with_what_to_set(tmp_path, env, message):
    scrubbed = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    finished = subprocess.run(
        [sys.executable, "-m", "cqrs_orders.cli", "serve", "--warehouse", str(tmp_path / "w")],
        env={**scrubbed, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert finished.returncode == 2, finished.stderr
    assert message in finished.stderr
