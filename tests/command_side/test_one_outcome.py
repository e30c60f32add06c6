"""One outcome per command: a command that fails unexpectedly gets INTERNAL_ERROR in its own slot, with its
commandId, and its neighbours keep their real results, in a batch, in a commit group, over HTTP and from
``submit``. A write whose outcome the store did not confirm is answered WRITE_OUTCOME_UNKNOWN, and a retry
with the same commandId answers the first result."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys

import httpx
import pytest

from cqrs_orders.adapters.cosmos_store import CosmosWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.http.app import create_app
from cqrs_orders.query.api import ReadModels


def register(customer_id: str) -> dict:
    return {
        "type": "RegisterCustomer",
        "commandId": f"reg-{customer_id}",
        "customerId": customer_id,
        "name": "Ada",
        "email": "ada@example.com",
    }


def update(customer_id: str, name: str = "Ada L.") -> dict:
    return {
        "type": "UpdateCustomer",
        "commandId": f"upd-{customer_id}",
        "customerId": customer_id,
        "name": name,
    }


@pytest.fixture
def poisoned(given, store):
    """Customer ``bad`` whose stored state no longer validates (as a bug of ours would leave it)."""
    given.customer("bad")
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE aggregates SET state = '{\"not\": \"a state\"}' WHERE aggregate_id = 'bad'")
    return "bad"


def test_a_command_failing_unexpectedly_answers_alone_and_its_neighbours_commit(handler, store, poisoned):
    results = handler.handle_many([register("c-1"), update(poisoned), register("c-2")])

    assert [r.status for r in results] == ["accepted", "rejected", "accepted"]
    assert results[1].error["code"] == "INTERNAL_ERROR" and results[1].commandId == "upd-bad"
    assert "same commandId" in results[1].error["message"]
    assert store.load("c-1").version == 1 and store.load("c-2").version == 1  # really committed
    assert store.counts()["commands"] == 3  # bad's registration, c-1, c-2: nothing of the failed one


def test_a_command_without_a_commandid_gets_the_generated_one_in_every_outcome(handler, poisoned):
    command = update(poisoned)
    del command["commandId"]
    result = handler.handle(command)
    assert result.error["code"] == "INTERNAL_ERROR" and len(result.commandId) == 36


def _call(app, *requests):
    async def run():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return [await client.post("/commands", json=body) for body in requests]

    return asyncio.run(run())


def test_over_http_a_batch_keeps_each_result_and_a_single_failure_is_500_with_its_id(
    settings, handler, store, poisoned
):
    app = create_app(handler, ReadModels.on_delta(settings))
    batch, single = _call(app, [register("c-1"), update(poisoned), register("c-2")], update(poisoned))

    assert batch.status_code == 200
    assert [r["status"] for r in batch.json()] == ["accepted", "rejected", "accepted"]
    assert batch.json()[1]["error"]["code"] == "INTERNAL_ERROR"
    assert single.status_code == 500
    assert single.json()["commandId"] == "upd-bad" and single.json()["error"]["code"] == "INTERNAL_ERROR"
    assert store.load("c-2").version == 1


def test_submit_prints_every_result_and_no_traceback(settings, given, poisoned):
    lines = "\n".join(json.dumps(c) for c in [register("c-1"), update(poisoned), register("c-2")])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cqrs_orders.cli",
            "submit",
            "--warehouse",
            str(settings.warehouse),
            "--file",
            "-",
        ],
        input=lines.encode(),
        capture_output=True,
        timeout=120,
    )
    assert b"Traceback" not in done.stderr and done.returncode == 1, done.stderr.decode()[-2000:]
    codes = [(json.loads(line)["error"] or {}).get("code") for line in done.stdout.decode().splitlines()]
    assert codes == [None, "INTERNAL_ERROR", None]


def test_a_cosmos_write_without_an_answer_is_unknown_and_a_retry_answers_the_first_result(
    cosmos_settings, cosmos_account
):
    handler = CommandHandler(CosmosWriteStore.from_settings(cosmos_settings, transport=cosmos_account))
    assert handler.handle(register("c-1")).accepted
    cosmos_account.answer_next_batch_with = 408  # committed, then the answer is a timeout

    first = handler.handle(update("c-1"))
    assert first.error["code"] == "WRITE_OUTCOME_UNKNOWN" and first.commandId == "upd-c-1"
    assert "same commandId" in first.error["message"]
    retried = handler.handle(update("c-1"))
    assert retried.accepted and retried.version == 2  # it had been written: the first result, once
    assert cosmos_account.documents[("c-1", "state")]["version"] == 2


def test_a_cosmos_write_refused_before_it_ran_says_not_written(cosmos_settings, cosmos_account):
    handler = CommandHandler(CosmosWriteStore.from_settings(cosmos_settings, transport=cosmos_account))
    assert handler.handle(register("c-1")).accepted
    cosmos_account.refuse_next_batch_with = 403

    refused = handler.handle(update("c-1"))
    assert refused.error["code"] == "WRITE_STORE_UNAVAILABLE" and "not written" in refused.error["message"]
    assert cosmos_account.documents[("c-1", "state")]["version"] == 1
