"""``read_secret`` on Databricks: the secret scope through the Databricks SDK's own ``dbutils``.

On a cluster ``DATABRICKS_RUNTIME_VERSION`` is set and ``read_secret`` imports
``databricks.sdk.runtime.dbutils``. Off a cluster that import gives the SDK's remote ``dbutils``, which asks
the workspace's Secrets API (``GET /api/2.0/secrets/get``) just as the runtime's does, so here the real SDK
code runs against a workspace imitation on 127.0.0.1 that answers that one call.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from cqrs_orders.adapters.kafka_source import kafka_options
from cqrs_orders.config import Secret, Settings, read_secret
from cqrs_orders.errors import ConfigurationError

SCOPE = "cqrs-orders"
TOKEN = "dapi-test-token"
CONNECTION = "Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=k3y="


class SecretsWorkspace:
    """The Secrets API of a workspace: ``{(scope, key): value}``; records every request it answers."""

    def __init__(self, secrets: dict[tuple[str, str], str]):
        self.secrets = secrets
        self.requests: list[dict] = []
        workspace = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                workspace.requests.append(
                    {"path": url.path, "query": query, "authorization": self.headers.get("Authorization")}
                )
                value = workspace.secrets.get((query.get("scope"), query.get("key")))
                if url.path != "/api/2.0/secrets/get":
                    self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": url.path})
                elif value is None:
                    message = f"Failed to get secret {query.get('key')} for scope {query.get('scope')}."
                    self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": message})
                else:
                    encoded = base64.b64encode(value.encode()).decode()
                    self._reply(200, {"key": query["key"], "value": encoded})

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def api_requests(self) -> list[dict]:
        """The REST API calls (the SDK also probes ``/.well-known/databricks-config``, unanswered here)."""
        return [request for request in self.requests if request["path"].startswith("/api/")]


@pytest.fixture
def workspace(monkeypatch) -> Iterator[SecretsWorkspace]:
    """A workspace holding one secret, and the environment of a cluster job that can reach it."""
    server = SecretsWorkspace({(SCOPE, "eventhub-connection"): CONNECTION})
    thread = threading.Thread(target=server.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    for variable in list(os.environ):
        if variable.startswith("DATABRICKS_") or variable in ("EVENTHUB_CONNECTION", "CQRS_SECRET_SCOPE"):
            monkeypatch.delenv(variable)
    # What a cluster's environment holds, but the host: the SDK's dbutils reads these (os.environ).
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18")
    monkeypatch.setenv("DATABRICKS_HOST", server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/nonexistent/.databrickscfg")
    monkeypatch.setenv("CQRS_SECRET_SCOPE", SCOPE)
    monkeypatch.delitem(sys.modules, "databricks.sdk.runtime", raising=False)  # its dbutils is made on import
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join()
        sys.modules.pop("databricks.sdk.runtime", None)  # holds a client of this (stopped) server


def test_a_secret_comes_from_the_scope_through_dbutils(workspace):
    secret = read_secret("EVENTHUB_CONNECTION", os.environ)

    assert secret == Secret(CONNECTION)
    assert workspace.api_requests == [
        {
            "path": "/api/2.0/secrets/get",
            "query": {"scope": SCOPE, "key": "eventhub-connection"},  # the put-secret naming
            "authorization": f"Bearer {TOKEN}",
        }
    ]


def test_a_key_missing_from_the_scope_reads_as_unset(workspace):
    assert read_secret("COSMOS_KEY", os.environ) is None
    assert [request["query"] for request in workspace.api_requests] == [{"scope": SCOPE, "key": "cosmos-key"}]


def test_the_environment_wins_and_the_scope_is_not_asked(workspace, monkeypatch):
    monkeypatch.setenv("EVENTHUB_CONNECTION", "from-the-environment")

    assert read_secret("EVENTHUB_CONNECTION", os.environ) == Secret("from-the-environment")
    assert workspace.requests == []  # not even the SDK's probe: dbutils was never built


def test_the_kafka_source_on_databricks_takes_the_scope_secret_and_the_shaded_login(workspace, tmp_path):
    """The runtime path of the Event Hubs source: detection from the environment, the scope, the JAAS."""
    env = {**os.environ, "CQRS_SOURCE": "kafka", "EVENTHUB_NAME": "orders"}
    settings = Settings.from_env(warehouse=tmp_path, env=env)

    options = kafka_options(settings)  # on_databricks from DATABRICKS_RUNTIME_VERSION, as in a job

    assert options["kafka.bootstrap.servers"] == "orders-ns.servicebus.windows.net:9093"
    assert options["kafka.sasl.jaas.config"] == (
        "kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="$ConnectionString" password="{CONNECTION}";'
    )
    assert [request["query"]["key"] for request in workspace.api_requests] == ["eventhub-connection"]


def test_off_a_cluster_the_scope_is_read_through_the_same_api(workspace, monkeypatch):
    """A task started elsewhere (the bundle flow test, a laptop with workspace credentials) reads the scope
    the same way: one code path, the SDK's dbutils."""
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION")
    assert read_secret("EVENTHUB_CONNECTION", os.environ) == Secret(CONNECTION)
    assert [request["query"]["key"] for request in workspace.api_requests] == ["eventhub-connection"]


def test_a_scope_without_workspace_credentials_says_what_to_set(monkeypatch, tmp_path):
    for variable in list(os.environ):
        if variable.startswith("DATABRICKS_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "none.cfg"))
    monkeypatch.delitem(sys.modules, "databricks.sdk.runtime", raising=False)
    expected = r"Set DATABRICKS_HOST and DATABRICKS_TOKEN .* or set COSMOS_KEY"
    with pytest.raises(ConfigurationError, match=expected):
        read_secret("COSMOS_KEY", {"CQRS_SECRET_SCOPE": SCOPE})
    sys.modules.pop("databricks.sdk.runtime", None)
