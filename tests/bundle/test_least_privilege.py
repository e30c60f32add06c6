"""Least privilege in what the bundle resolves to (`bundle validate -o json`, the real CLI): the app is handed
only the Event Hubs send secret (and the Cosmos DB key), the jobs that read the bus log in with the listen
secret, and the secret scope's READ grants come from where docs/operations.md says ("Which secret is used for
what") and from nowhere else.

Which secret a process logs in with is the package's choice, so each task's command line (or the app's
environment) is turned into ``Settings`` exactly as at run time, with a scope that holds every secret, and the
secrets the code then asks for are recorded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cqrs_orders.config as config
from cqrs_orders.adapters.kafka_endpoint import kafka_endpoint
from cqrs_orders.adapters.kafka_source import kafka_options
from cqrs_orders.cli import build_parser, setting_overrides
from cqrs_orders.config import (
    COSMOS_KEY,
    EVENTHUB_LISTEN_CONNECTION,
    EVENTHUB_SEND_CONNECTION,
    Secret,
    Settings,
    scope_key,
)
from cqrs_orders.errors import ConfigurationError

pytestmark = [pytest.mark.databricks_cli, pytest.mark.timeout(1800)]

READERS = {"projection", "lag_monitor"}  # the jobs that consume the bus


@pytest.fixture(scope="module")
def prod(prod_cli, names) -> dict:
    return prod_cli("bundle", "validate", "--output", "json", "--target", "prod", *names["prod_vars"]).json()


@pytest.fixture
def scope(monkeypatch):
    """A secret scope holding every secret (``value`` = ``"<key> value"``), as a scope an identity may
    read whole (secret ACLs are per scope); returns the list of environment names the code asked for."""
    asked: list[str] = []

    def read_secret(key, env):
        if env.get(key):
            return Secret(env[key])
        if not env.get("CQRS_SECRET_SCOPE"):
            return None
        asked.append(key)
        value = f"{scope_key(key)} value"
        if "CONNECTION" in key:  # connection strings must parse as Event Hubs ones
            value = f"Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName={scope_key(key)}"
        return Secret(value)

    monkeypatch.setattr(config, "read_secret", read_secret)
    return asked


def test_the_app_is_handed_only_the_send_secret_and_the_cosmos_key(prod, tmp_path, scope):
    [app] = prod["resources"]["apps"].values()
    secrets = {r["name"]: r["secret"] for r in app["resources"] if "secret" in r}
    assert {s["key"] for s in secrets.values()} == {
        scope_key(EVENTHUB_SEND_CONNECTION),
        scope_key(COSMOS_KEY),
    }
    assert {s["permission"] for s in secrets.values()} == {"READ"}

    # The app's environment as the platform builds it: each value_from from the app's own resources.
    env = {}
    for variable in app["config"]["env"]:
        if "value_from" in variable:
            resource = secrets.get(variable["value_from"])
            env[variable["name"]] = f"{resource['key']} value" if resource else "warehouse-id"
        else:
            env[variable["name"]] = variable["value"]
    env[EVENTHUB_SEND_CONNECTION] = "Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName=send"
    assert "CQRS_SECRET_SCOPE" not in env  # it can look up nothing beyond what it was handed
    settings = Settings.from_env(tmp_path, env=env)

    assert kafka_endpoint(settings, "CQRS_PUBLISHER=kafka").connection.reveal().endswith("=send")
    with pytest.raises(ConfigurationError, match=EVENTHUB_LISTEN_CONNECTION):
        kafka_endpoint(settings, "CQRS_SOURCE=kafka")  # the app holds no right to listen
    assert scope == []


@pytest.mark.parametrize("job_key", sorted(READERS))
def test_the_bus_readers_log_in_with_the_listen_secret_only(prod, tmp_path, scope, job_key):
    job = prod["resources"]["jobs"][job_key]
    [parameters] = [t["python_wheel_task"]["parameters"] for t in job["tasks"] if "python_wheel_task" in t]
    assert "--source=kafka" in parameters and not any(p.startswith("--publisher") for p in parameters)
    args = build_parser().parse_args(parameters)
    settings = Settings.from_env(tmp_path, env={}, overrides=setting_overrides(args))

    options = kafka_options(settings, on_databricks=True)

    assert f"SharedAccessKeyName={scope_key(EVENTHUB_LISTEN_CONNECTION)}" in options["kafka.sasl.jaas.config"]
    assert scope == [EVENTHUB_LISTEN_CONNECTION]  # never the send secret, nor the shared one


def test_the_ingest_job_may_publish_with_the_send_secret(prod, tmp_path, scope):
    """The one job that publishes (when no relay holds the outbox lease): the send secret, no listen."""
    [task] = prod["resources"]["jobs"]["command_ingest"]["tasks"]
    base = task["notebook_task"]["base_parameters"]
    assert base["publisher"] == "kafka"
    overrides = {"CQRS_SECRET_SCOPE": base["secret_scope"], "EVENTHUB_NAME": base["eventhub_name"]}
    settings = Settings.from_env(tmp_path, env={}, overrides=overrides)

    endpoint = kafka_endpoint(settings, "CQRS_PUBLISHER=kafka")

    assert endpoint.connection.reveal().endswith(scope_key(EVENTHUB_SEND_CONNECTION))
    assert scope == [EVENTHUB_SEND_CONNECTION]


def test_the_bundle_declares_no_secret_scope(prod):
    """The scope's READ grants are made with `databricks secrets put-acl` (docs/operations.md); see below."""
    assert prod["resources"].get("secret_scopes") in (None, {})
    assert f"databricks secrets put-acl {prod['variables']['secret_scope']['value']}" in (
        (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    )


def test_a_declared_scope_would_be_shared_by_every_developer(dev_cli, names, tmp_path):
    """One reason the scope is not declared (docs/operations.md, "Who may read the scope"): development mode
    prefixes jobs and schemas with the developer's name but not a secret scope's, so every developer's dev
    deploy would claim, change the ACLs of, and on `bundle destroy` delete, the same scope. If a later CLI
    prefixes it, this fails: then reconsider declaring the scope."""
    copy = type(dev_cli)(dev_cli.binary, dev_cli.workspace, dev_cli.env["DATABRICKS_TOKEN"], tmp_path)
    (copy.bundle / "resources" / "secrets.secret_scope.yml").write_text(
        "resources:\n  secret_scopes:\n    secrets:\n      name: ${var.secret_scope}\n"
    )
    resolved = copy("bundle", "validate", "--output", "json", *names["deploy_vars"]).json()

    assert resolved["resources"]["schemas"]["cqrs_orders"]["name"].startswith("dev_")  # prefixed
    assert resolved["resources"]["secret_scopes"]["secrets"]["name"] == "cqrs-orders"  # not prefixed
