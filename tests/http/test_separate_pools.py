"""Reads and writes of the HTTP app run on pools of their own, each with its own time limit: a write store
that stalls holds up neither the reads nor, past the write limit, its own caller (who is told which of
the request's commands are written, unknown or not run); a read-model query past the read limit answers
503. Writes go to the real azure-cosmos SDK and the loopback Cosmos DB server (tests/command_side)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from azure.cosmos import CosmosClient

from cqrs_orders.adapters.cosmos_store import CosmosWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.http.app import create_app
from cqrs_orders.query.api import FRESHNESS, ReadModels

from .conftest import _load_sibling

cosmos_faults = _load_sibling("command_side", "cosmos_faults")
COSMOS_KEY = cosmos_faults.cosmos_fake.COSMOS_KEY


class SlowReadModels:
    """A read side that answers when ``release`` is set (or never), noting the threads it ran on."""

    def __init__(self):
        self.release = threading.Event()
        self.threads: list[str] = []

    def query(self, statement, parameters):
        self.threads.append(threading.current_thread().name)
        self.release.wait(30)
        return [{"last_event_time": None, "projected_at": None}] if statement == FRESHNESS else []


@pytest.fixture
def account():
    return cosmos_faults.cosmos_fake.FakeCosmosAccount()


@pytest.fixture
def cosmos(account):
    with cosmos_faults.FaultyCosmosServer(account) as server:
        yield server


@pytest.fixture
def handler(cosmos):
    """A handler on the loopback account; the SDK waits up to 30 s for an answer (longer than the app)."""
    client = CosmosClient(cosmos.url, credential=COSMOS_KEY, read_timeout=30)
    container = client.get_database_client("orders").get_container_client("order-store")
    handler = CommandHandler(CosmosWriteStore(container, client=client))
    yield handler
    cosmos.stalled.set()
    handler.store.close()


def register(customer_id: str) -> dict:
    return {"type": "RegisterCustomer", "customerId": customer_id, "name": "Ada", "email": "ada@example.com"}


async def _client(app):
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://a"
    )


def test_a_stalled_write_past_its_limit_answers_each_command_truthfully_and_reads_go_on(
    handler, account, cosmos
):
    reads = SlowReadModels()
    reads.release.set()  # reads answer at once here
    app = create_app(handler, ReadModels(reads), write_timeout=1.5, read_timeout=5)
    batch = [{**register("c-1"), "commandId": "one"}, register("c-2"), register("c-3")]

    async def run():
        async with await _client(app) as client:
            await client.post("/commands", json={**register("c-0"), "commandId": "zero"})
            posting = asyncio.create_task(client.post("/commands", json=batch))
            await asyncio.sleep(0)
            started = time.monotonic()
            read = await client.get("/orders/o-1")  # while the write stalls
            read_seconds = time.monotonic() - started
            return await posting, read, read_seconds

    stall = _ArmOnBatch(cosmos, nth=3)  # c-0's and c-1's batches pass; c-2's (the 3rd) stalls
    answer, read, read_seconds = asyncio.run(run())
    stall.stop()

    assert read.status_code == 404 and read_seconds < 1.0  # a read is not queued behind the stalled write
    assert answer.status_code == 200
    results = answer.json()
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected"]
    assert results[0]["commandId"] == "one"
    unknown, not_run = results[1], results[2]
    assert unknown["error"]["code"] == "WRITE_OUTCOME_UNKNOWN" and len(unknown["commandId"]) == 36
    assert "same commandId" in unknown["error"]["message"]
    assert not_run["error"]["code"] == "WRITE_STORE_UNAVAILABLE" and len(not_run["commandId"]) == 36
    assert "not run" in not_run["error"]["message"]
    cosmos.stalled.set()  # the stalled commit's answer is released: the thread finishes, and stops there
    time.sleep(1.0)
    assert ("c-3", "state") not in account.documents  # a command answered "not run" never runs
    assert ("c-2", "state") in account.documents  # the unknown one had been committed


class _ArmOnBatch:
    """Arms the server's COMMIT_THEN_STALL fault for the ``nth`` transactional batch from now."""

    def __init__(self, cosmos, nth: int):
        self.cosmos, self.left = cosmos, nth
        self._original = cosmos.take_fault

        def take_fault(headers):
            if headers.get("x-ms-cosmos-is-batch-request"):
                self.left -= 1
                if self.left == 0:
                    cosmos.next_batch = cosmos_faults.COMMIT_THEN_STALL
            return self._original(headers)

        cosmos.take_fault = take_fault

    def stop(self):
        self.cosmos.take_fault = self._original


def test_reads_and_writes_run_on_pools_of_their_own(handler, settings):
    reads = SlowReadModels()
    reads.release.set()
    written_on = []
    store_load = handler.store.load

    def load(aggregate_id):
        written_on.append(threading.current_thread().name)
        return store_load(aggregate_id)

    handler.store.load = load
    app = create_app(handler, ReadModels(reads))

    async def run():
        async with await _client(app) as client:
            await client.post("/commands", json=register("c-9"))
            await client.get("/orders/o-9")

    asyncio.run(run())
    assert written_on and all(name.startswith("cqrs-write") for name in written_on)
    assert reads.threads and all(name.startswith("cqrs-read") for name in reads.threads)


def test_a_read_past_its_limit_answers_503_and_a_write_meanwhile_is_not_held_up(handler):
    reads = SlowReadModels()  # never answers
    app = create_app(handler, ReadModels(reads), read_timeout=1.0)

    async def run():
        async with await _client(app) as client:
            reading = asyncio.create_task(client.get("/orders/o-1"))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            write = await client.post("/commands", json=register("c-1"))
            write_seconds = time.monotonic() - started
            return await reading, write, write_seconds

    read, write, write_seconds = asyncio.run(run())
    reads.release.set()
    assert read.status_code == 503
    assert (
        read.json()["error"]["code"] == "READ_SIDE_UNAVAILABLE"
        and "within 1 s" in read.json()["error"]["message"]
    )
    assert write.status_code == 200 and write_seconds < 1.0
