"""``read_secret`` on Databricks: the secret scope through the Databricks SDK's own ``dbutils``.

On a cluster ``DATABRICKS_RUNTIME_VERSION`` is set and ``read_secret`` imports
``databricks.sdk.runtime.dbutils``. Off a cluster that import gives the SDK's remote ``dbutils``, which asks
the workspace's Secrets API (``GET /api/2.0/secrets/get``) just as the runtime's does, so here the real SDK
code runs against a workspace imitation on 127.0.0.1 that answers that one call, with the service's own
answers to a missing key, a missing scope and a scope the caller may not read (the error bodies of the
Secrets API: ``RESOURCE_DOES_NOT_EXIST`` for both of the first two, told apart by the message, and
``PERMISSION_DENIED``).
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
from cqrs_orders.config import EVENTHUB_LISTEN_CONNECTION, Secret, Settings, read_secret
from cqrs_orders.errors import ConfigurationError

SCOPE = "cqrs-orders"
TOKEN = "dapi-test-token"
CONNECTION = "Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName=both;SharedAccessKey=k3y="
LISTEN = "Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=l1st="
LISTEN_ONLY_SCOPE = "cqrs-orders-split"  # holds the listen secret only, as the bundle's jobs expect
FORBIDDEN_SCOPE = "cqrs-orders-locked"  # exists, and this identity was never granted READ on it
BROKEN_SCOPE = "cqrs-orders-broken"  # the service fails on it (500): neither absent nor forbidden


class SecretsWorkspace:
    """The Secrets API of a workspace: ``{(scope, key): value}``; records every request it answers. Scopes in
    ``forbidden`` exist but the caller lacks READ on them; a scope holding no secret does not exist."""

    def __init__(self, secrets: dict[tuple[str, str], str], forbidden: frozenset[str] = frozenset()):
        self.secrets = secrets
        self.forbidden = forbidden
        self.requests: list[dict] = []
        workspace = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                workspace.requests.append(
                    {"path": url.path, "query": query, "authorization": self.headers.get("Authorization")}
                )
                scope = query.get("scope")
                value = workspace.secrets.get((scope, query.get("key")))
                scopes = {scope for scope, _ in workspace.secrets} | workspace.forbidden
                if url.path != "/api/2.0/secrets/get":
                    self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": url.path})
                elif scope not in scopes:
                    message = f"Scope {scope} does not exist!"
                    self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": message})
                elif scope == BROKEN_SCOPE:
                    self._reply(500, {"error_code": "INTERNAL_ERROR", "message": "the service failed"})
                elif scope in workspace.forbidden:
                    message = f"User does not have READ permission on scope {scope}"
                    self._reply(403, {"error_code": "PERMISSION_DENIED", "message": message})
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
    server = SecretsWorkspace(
        {
            (SCOPE, "eventhub-connection"): CONNECTION,
            (LISTEN_ONLY_SCOPE, "eventhub-listen-connection"): LISTEN,
        },
        forbidden=frozenset({FORBIDDEN_SCOPE, BROKEN_SCOPE}),
    )
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


def test_a_scope_the_identity_may_not_read_fails_loudly_with_the_grant_to_make(workspace, monkeypatch):
    """403 is not "not configured": the message names the scope, the key and the put-acl that fixes it."""
    monkeypatch.setenv("CQRS_SECRET_SCOPE", FORBIDDEN_SCOPE)
    expected = (
        rf"Not permitted to read the secret 'cqrs-alert-webhook-url' of the secret scope '{FORBIDDEN_SCOPE}'"
        rf".*databricks secrets put-acl {FORBIDDEN_SCOPE} <principal> READ"
    )
    with pytest.raises(ConfigurationError, match=expected):
        read_secret("CQRS_ALERT_WEBHOOK_URL", os.environ)


def test_a_scope_that_does_not_exist_fails_loudly_not_as_unset(workspace, monkeypatch):
    monkeypatch.setenv("CQRS_SECRET_SCOPE", "no-such-scope")
    with pytest.raises(
        ConfigurationError, match=r"The secret scope 'no-such-scope' does not exist .*create-scope"
    ):
        read_secret("COSMOS_KEY", os.environ)


def test_a_failing_workspace_is_an_error_not_an_unset_secret(workspace, monkeypatch):
    """A 500, which the SDK does not retry (an unreachable host it retries for minutes first)."""
    monkeypatch.setenv("CQRS_SECRET_SCOPE", BROKEN_SCOPE)
    with pytest.raises(
        ConfigurationError, match=r"Could not read the secret 'cosmos-key' .*or set COSMOS_KEY"
    ):
        read_secret("COSMOS_KEY", os.environ)


def test_the_alert_webhook_of_a_forbidden_scope_is_not_silently_off(workspace, monkeypatch, tmp_path):
    """The bug filed in issue 33: a missing READ grant read as "no webhook configured"."""
    from cqrs_orders.ops.alerts import WEBHOOK_SECRET

    monkeypatch.setenv("CQRS_SECRET_SCOPE", FORBIDDEN_SCOPE)
    settings = Settings.from_env(warehouse=tmp_path, env=dict(os.environ))
    with pytest.raises(ConfigurationError, match="put-acl"):
        settings.secret(WEBHOOK_SECRET)


def test_the_environment_wins_and_the_scope_is_not_asked(workspace, monkeypatch):
    monkeypatch.setenv("EVENTHUB_CONNECTION", "from-the-environment")

    assert read_secret("EVENTHUB_CONNECTION", os.environ) == Secret("from-the-environment")
    assert workspace.requests == []  # not even the SDK's probe: dbutils was never built


def test_the_kafka_source_on_databricks_takes_the_scope_secret_and_the_shaded_login(workspace, tmp_path):
    """The runtime path of the Event Hubs source: detection from the environment, the scope, the JAAS. The
    scope holds only the one-connection secret (a deployment from before the split): the listen key is
    asked first, found absent, and the shared one is used."""
    env = {**os.environ, "CQRS_SOURCE": "kafka", "EVENTHUB_NAME": "orders"}
    settings = Settings.from_env(warehouse=tmp_path, env=env)

    options = kafka_options(settings)  # on_databricks from DATABRICKS_RUNTIME_VERSION, as in a job

    assert options["kafka.bootstrap.servers"] == "orders-ns.servicebus.windows.net:9093"
    assert options["kafka.sasl.jaas.config"] == (
        "kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="$ConnectionString" password="{CONNECTION}";'
    )
    assert [request["query"]["key"] for request in workspace.api_requests] == [
        "eventhub-listen-connection",
        "eventhub-connection",
    ]


def test_the_kafka_source_logs_in_with_the_listen_secret_alone(workspace, monkeypatch, tmp_path):
    """With the split secrets the consumer asks for its listen connection and nothing else."""
    monkeypatch.setenv("CQRS_SECRET_SCOPE", LISTEN_ONLY_SCOPE)
    settings = Settings.from_env(warehouse=tmp_path, env={**os.environ, "EVENTHUB_NAME": "orders"})

    options = kafka_options(settings)

    assert f'password="{LISTEN}"' in options["kafka.sasl.jaas.config"]
    assert [request["query"]["key"] for request in workspace.api_requests] == ["eventhub-listen-connection"]
    assert read_secret(EVENTHUB_LISTEN_CONNECTION, os.environ) == Secret(LISTEN)


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
