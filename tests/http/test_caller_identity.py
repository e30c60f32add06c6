"""Who sent a command: every event records the caller its entry point established (``metadata.userId``) and
what vouches for it (``metadata.authenticatedBy``), and keeps the body's own ``metadata.userId`` apart as
``claimedUserId``. As a Databricks App (``DATABRICKS_APP_NAME`` set) a request without the proxy's identity
headers is refused (401) and runs nothing; a laptop ``serve`` takes the same headers, records a request
without them as anonymous, and warns at start that nothing vouches for its callers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.config import Settings
from cqrs_orders.envelope import EventEnvelope
from cqrs_orders.http.app import create_app
from cqrs_orders.http.callers import CallerPolicy
from cqrs_orders.query.api import ReadModels

from .conftest import base_env, stop_server

ADA = {"x-forwarded-email": "ada@example.com", "x-forwarded-user": "1234@5678"}


def register(customer_id: str, **extra) -> dict:
    return {
        "type": "RegisterCustomer",
        "customerId": customer_id,
        "name": "Ada",
        "email": "ada@example.com",
        **extra,
    }


def metadata_of(settings: Settings) -> dict[str, dict]:
    """Each aggregate's event metadata, as the outbox (hence the bus) carries it."""
    store = SqliteWriteStore(settings.write_store_path)
    try:
        events = [EventEnvelope.from_json(entry.body) for entry in store.pending(1000).entries]
    finally:
        store.close()
    return {event.aggregateId: event.metadata.model_dump() for event in events}


def post_all(app, *requests: tuple[dict, dict]) -> list[httpx.Response]:
    """The requests (body, headers) sent at once: the committer groups them into one commit."""

    async def run():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await asyncio.gather(*(client.post("/commands", json=b, headers=h) for b, h in requests))

    return asyncio.run(run())


def test_the_forwarded_caller_is_recorded_and_the_bodys_user_is_kept_as_a_claim(settings):
    store = SqliteWriteStore(settings.write_store_path)
    app = create_app(CommandHandler(store), ReadModels.on_delta(settings))
    claimed = register("c-1", metadata={"userId": "someone-else", "source": "web-shop"})
    bob = {"x-forwarded-preferred-username": "bob"}

    answers = post_all(app, (claimed, ADA), (register("c-2"), bob), (register("c-3"), {}))
    store.close()

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    recorded = metadata_of(settings)
    assert recorded["c-1"] == {
        "userId": "ada@example.com",  # the e-mail header first
        "authenticatedBy": "forwarded-headers",  # not behind the Databricks Apps proxy: nobody vouched
        "claimedUserId": "someone-else",
        "source": "web-shop",
    }
    assert recorded["c-2"]["userId"] == "bob"  # one commit group, each request's own caller
    assert recorded["c-3"] == {
        "userId": None,
        "authenticatedBy": "none",
        "claimedUserId": None,
        "source": None,
    }


def test_as_a_databricks_app_a_request_without_a_caller_is_refused_and_runs_nothing(settings):
    store = SqliteWriteStore(settings.write_store_path)
    policy = CallerPolicy(required=True, behind_proxy=True)
    app = create_app(CommandHandler(store), ReadModels.on_delta(settings), callers=policy)

    refused, batch, signed_in = post_all(
        app, (register("c-1"), {}), ([register("c-2")], {"x-forwarded-email": "  "}), (register("c-3"), ADA)
    )

    assert refused.status_code == 401 and refused.json()["error"]["code"] == "UNAUTHENTICATED"
    assert "nothing was run" in refused.json()["error"]["message"]
    assert batch.status_code == 401  # a blank header names nobody
    assert signed_in.status_code == 200
    assert store.counts()["commands"] == 1
    store.close()
    assert metadata_of(settings)["c-3"]["authenticatedBy"] == "databricks-apps"


def test_a_laptop_serve_warns_and_records_anonymous_callers(served, tmp_path):
    server = served(tmp_path / "warehouse")
    with server.client() as client:
        assert client.post("/commands", json=register("c-1")).status_code == 200
        assert client.post("/commands", json=register("c-2"), headers=ADA).status_code == 200
    output = stop_server(server)

    assert "WARNING" in output and "WITHOUT authentication" in output
    recorded = metadata_of(Settings.from_env(tmp_path / "warehouse", env={}))
    assert (recorded["c-1"]["userId"], recorded["c-1"]["authenticatedBy"]) == (None, "none")
    assert (recorded["c-2"]["userId"], recorded["c-2"]["authenticatedBy"]) == (
        "ada@example.com",
        "forwarded-headers",
    )


def test_serve_as_a_databricks_app_refuses_anonymous_requests_and_trusts_the_proxy(served, tmp_path):
    env = base_env(DATABRICKS_APP_NAME="cqrs-orders-api")
    server = served(tmp_path / "warehouse", env)
    with server.client() as client:
        anonymous = client.post("/commands", json=register("c-1"))
        signed_in = client.post("/commands", json=register("c-2"), headers=ADA)
    output = stop_server(server)

    assert anonymous.status_code == 401 and signed_in.status_code == 200
    assert "WITHOUT authentication" not in output
    recorded = metadata_of(Settings.from_env(tmp_path / "warehouse", env={}))
    assert set(recorded) == {"c-2"} and recorded["c-2"]["authenticatedBy"] == "databricks-apps"


def test_submit_records_the_os_user_marked_as_such(tmp_path):
    import getpass

    warehouse = tmp_path / "warehouse"
    command = json.dumps(register("c-1", metadata={"userId": "claimed"}))
    done = subprocess.run(
        [sys.executable, "-m", "cqrs_orders.cli", "submit", "--warehouse", str(warehouse), command],
        env=base_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    recorded = metadata_of(Settings.from_env(warehouse, env={}))["c-1"]
    assert recorded["userId"] == getpass.getuser() and recorded["authenticatedBy"] == "os-user"
    assert recorded["claimedUserId"] == "claimed"
