"""Failures the real server process cannot be pushed into from outside, on the same app in-process: the
write store refusing to commit (503, a real SQLite lock held past the busy timeout) and a bug (500)."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import pytest

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.http.app import create_app
from cqrs_orders.query.api import ReadModels


def call(app, *requests: tuple[str, str, dict]) -> list[httpx.Response]:
    """The requests, in order, through httpx straight into the ASGI app."""

    async def run():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return [await client.request(method, path, **options) for method, path, options in requests]

    return asyncio.run(run())


REGISTER = {"type": "RegisterCustomer", "customerId": "c-1", "name": "Ada", "email": "ada@example.com"}


@pytest.fixture
def locked_store(settings):
    """A real store whose database another connection holds locked longer than the store waits."""
    store = SqliteWriteStore(settings.write_store_path, busy_timeout_ms=50)
    blocker = sqlite3.connect(settings.write_store_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    yield store
    blocker.execute("ROLLBACK")
    blocker.close()
    store.close()


def test_a_write_store_that_cannot_commit_answers_503_and_a_batch_marks_the_rest(locked_store, settings):
    app = create_app(CommandHandler(locked_store), ReadModels.on_delta(settings))
    single, batch = call(
        app,
        ("POST", "/commands", {"json": REGISTER}),
        ("POST", "/commands", {"json": [REGISTER, {**REGISTER, "customerId": "c-2"}]}),
    )

    assert single.status_code == 503 and single.json()["error"]["code"] == "WRITE_STORE_UNAVAILABLE"
    assert batch.status_code == 200
    assert [r["error"]["code"] for r in batch.json()] == ["WRITE_STORE_UNAVAILABLE"] * 2


class _Broken:
    def query(self, statement, parameters):
        raise RuntimeError("a bug")


def test_a_bug_answers_500_with_a_code_and_no_traceback(settings, caplog):
    app = create_app(CommandHandler(SqliteWriteStore(settings.write_store_path)), ReadModels(_Broken()))
    (answer,) = call(app, ("GET", "/orders/o-1", {}))

    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "INTERNAL_ERROR" and "a bug" not in answer.text
    assert "a bug" in caplog.text  # the server log has it
