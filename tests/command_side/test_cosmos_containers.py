"""The write store's container as declared (``adapters/cosmos_containers.py``) and ``cqrs-orders
cosmos-setup``, against the in-memory account: over loopback HTTP for the command line (the real SDK, as
against an account), in-process for the time-to-live checks. The account keeps the container properties it
was given and applies per-document TTL as the service does (``cosmos_fake.py``)."""

from __future__ import annotations

import json

import pytest
from azure.cosmos import CosmosClient

from cqrs_orders.adapters.cosmos_containers import (
    COMMAND_ID_WINDOW_SECONDS,
    ORDER_STORE,
    differences,
    ensure_container,
)
from cqrs_orders.adapters.cosmos_store import CosmosWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.cli import main
from cqrs_orders.config import Settings

from .cosmos_fake import CONTAINER_PATH, COSMOS_ENDPOINT, COSMOS_KEY, FakeCosmosAccount
from .cosmos_server import CosmosServer

CUSTOMER = {"type": "RegisterCustomer", "customerId": "cust-1", "name": "Ada", "email": "ada@example.com"}
ORDER = {
    "type": "CreateOrder",
    "commandId": "create-1",
    "orderId": "order-1",
    "customerId": "cust-1",
    "items": [{"sku": "A", "quantity": 1, "unitPrice": "2.50"}],
}


@pytest.fixture
def setup_cli(monkeypatch, tmp_path, capsys):
    """``cosmos-setup`` as a person runs it, against ``account`` served on a loopback port: returns the
    exit code and the printed JSON result (``None`` if nothing was printed)."""
    monkeypatch.setenv("COSMOS_KEY", COSMOS_KEY)
    monkeypatch.delenv("CQRS_SECRET_SCOPE", raising=False)

    def run(account, *options: str):
        with CosmosServer(account) as server:
            code = main(
                ["cosmos-setup", "--warehouse", str(tmp_path), "--cosmos-endpoint", server.url, *options]
            )
        out = capsys.readouterr().out.strip()
        return code, json.loads(out) if out else None

    return run


def test_setup_creates_the_database_and_the_container_as_declared(setup_cli):
    account = FakeCosmosAccount(precreated=False)

    code, result = setup_cli(account)

    assert (code, result["action"]) == (0, "created")
    properties = account.containers[CONTAINER_PATH]
    assert properties["partitionKey"] == {"paths": ["/aggregateId"], "kind": "Hash", "version": 2}
    assert properties["indexingPolicy"]["includedPaths"] == []  # the store never queries: nothing indexed
    assert properties["indexingPolicy"]["excludedPaths"] == [{"path": "/*"}]
    assert properties["defaultTtl"] == -1  # TTL on, per document only
    assert differences(ORDER_STORE, properties) == []


def test_setup_is_idempotent(setup_cli):
    account = FakeCosmosAccount(precreated=False)
    setup_cli(account)
    created = dict(account.containers[CONTAINER_PATH])

    code, result = setup_cli(account)

    assert (code, result) == (0, {"database": "orders", "container": "order-store", "action": "unchanged",
                                  "differences": []})  # fmt: skip
    assert account.containers[CONTAINER_PATH] == created


def test_a_container_with_the_default_policy_is_reported_then_updated_on_request(setup_cli, capsys):
    account = FakeCosmosAccount()  # made by hand in the portal: every path indexed, no TTL

    code, result = setup_cli(account)

    assert (code, result["action"]) == (2, "differs")
    assert [text.split(" is ")[0] for text in result["differences"]] == ["indexing policy", "default TTL"]
    assert "indexingPolicy" in account.containers[CONTAINER_PATH]
    assert account.containers[CONTAINER_PATH].get("defaultTtl") is None  # reported, not changed

    code, result = setup_cli(account, "--update")
    assert (code, result["action"]) == (0, "updated")
    assert differences(ORDER_STORE, account.containers[CONTAINER_PATH]) == []
    assert setup_cli(account)[1]["action"] == "unchanged"


def test_a_different_partition_key_is_reported_and_never_updated(setup_cli):
    account = FakeCosmosAccount()
    account.containers[CONTAINER_PATH]["partitionKey"] = {"paths": ["/id"], "kind": "Hash", "version": 2}

    code, result = setup_cli(account, "--update")

    assert (code, result["action"]) == (2, "differs")
    assert result["differences"][0].startswith("partition key is ['/id']")
    assert account.containers[CONTAINER_PATH]["partitionKey"]["paths"] == ["/id"]


def test_check_creates_nothing(setup_cli, capsys):
    account = FakeCosmosAccount(precreated=False)

    code, result = setup_cli(account, "--check")

    assert (code, result["action"]) == (2, "missing")
    assert account.containers == {} and account.databases == set()


def test_setup_without_the_key_says_what_to_set(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("COSMOS_KEY", raising=False)
    monkeypatch.delenv("CQRS_SECRET_SCOPE", raising=False)

    code = main(["cosmos-setup", "--warehouse", str(tmp_path), "--cosmos-endpoint", COSMOS_ENDPOINT])

    assert code == 2
    assert "needs COSMOS_ENDPOINT (--cosmos-endpoint) and COSMOS_KEY" in capsys.readouterr().err


# --- time to live --------------------------------------------------------------------------------------


@pytest.fixture
def declared(cosmos_clock, tmp_path):
    """An account whose container was made by ``ensure_container``, and a handler on it."""
    account = FakeCosmosAccount(clock=cosmos_clock, precreated=False)
    client = CosmosClient(COSMOS_ENDPOINT, credential=COSMOS_KEY, transport=account)
    assert ensure_container(client, "orders", ORDER_STORE).action == "created"
    env = {"CQRS_WRITE_STORE": "cosmos", "COSMOS_ENDPOINT": COSMOS_ENDPOINT, "COSMOS_KEY": COSMOS_KEY}
    store = CosmosWriteStore.from_settings(
        Settings.from_env(tmp_path / "warehouse", env=env), transport=account, clock=cosmos_clock
    )
    return account, CommandHandler(store)


def kinds(account) -> dict[str, int]:
    """Live documents by docType (expired ones are gone, as for any reader)."""
    counts: dict[str, int] = {}
    for key in list(account.documents):
        document = account._live(key)
        if document is not None:
            counts[document["docType"]] = counts.get(document["docType"], 0) + 1
    return counts


def test_command_ids_expire_and_events_and_state_stay(declared, cosmos_clock):
    """Events are the relay's outbox (the change feed): they never expire, published or not."""
    account, handler = declared
    assert handler.handle(CUSTOMER).accepted and handler.handle(ORDER).accepted
    assert kinds(account) == {"state": 2, "event": 2, "command": 2}

    cosmos_clock.advance(COMMAND_ID_WINDOW_SECONDS - 1)
    assert kinds(account)["command"] == 2
    cosmos_clock.advance(1)
    assert kinds(account) == {"state": 2, "event": 2}


def test_a_retry_inside_the_idempotency_window_gets_the_first_result_and_after_it_runs_anew(
    declared, cosmos_clock
):
    _, handler = declared
    handler.handle(CUSTOMER)
    first = handler.handle(ORDER)

    cosmos_clock.advance(COMMAND_ID_WINDOW_SECONDS - 1)
    assert handler.handle(ORDER) == first  # the recorded outcome answers the retry

    cosmos_clock.advance(1)
    late = handler.handle(ORDER)  # the id is forgotten: the command is decided again
    assert (late.status, late.error["code"]) == ("rejected", "ALREADY_EXISTS")


def test_ttl_means_nothing_on_a_container_without_it(cosmos_account, cosmos_settings, cosmos_clock):
    """The service ignores a document's ``ttl`` unless the container turned TTL on: so does the stand-in."""
    handler = CommandHandler(
        CosmosWriteStore.from_settings(cosmos_settings, transport=cosmos_account, clock=cosmos_clock)
    )
    handler.handle(CUSTOMER)
    cosmos_clock.advance(COMMAND_ID_WINDOW_SECONDS * 10)
    assert kinds(cosmos_account) == {"state": 1, "event": 1, "command": 1}
