"""Fixtures of the command-side tests: a real SQLite write store in the test's warehouse, and a handler."""

from __future__ import annotations

import pytest

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.config import Settings

from .cosmos_fake import COSMOS_ENDPOINT, COSMOS_KEY, FakeClock, FakeCosmosAccount


@pytest.fixture
def store(settings):
    store = SqliteWriteStore(settings.write_store_path)
    yield store
    store.close()


@pytest.fixture
def handler(store):
    return CommandHandler(store)


class Given:
    """Set-up steps that must succeed (an assertion error here means the arrangement itself failed)."""

    def __init__(self, handler):
        self.handler = handler

    def accepted(self, command: dict):
        result = self.handler.handle(command)
        assert result.accepted, result.error
        return result

    def customer(self, customer_id="cust-1", **extra):
        command = {
            "type": "RegisterCustomer",
            "customerId": customer_id,
            "name": "Ada",
            "email": "ada@example.com",
        }
        return self.accepted({**command, **extra})

    def order(self, order_id="order-1", customer_id="cust-1", **extra):
        command = {
            "type": "CreateOrder",
            "orderId": order_id,
            "customerId": customer_id,
            "items": [
                {"sku": "A", "quantity": 2, "unitPrice": 10.25},
                {"sku": "B", "quantity": 1, "unitPrice": 5},
            ],
        }
        return self.accepted({**command, **extra})

    def step(self, kind: str, order_id="order-1", **extra):
        return self.accepted({"type": kind, "orderId": order_id, **extra})


@pytest.fixture
def given(handler):
    return Given(handler)


@pytest.fixture
def reject(handler, store):
    """``reject(command, code, *words)``: the command is rejected with ``code``, the message names each of
    ``words``, and the store is left exactly as it was."""

    def check(command, code: str, *words: str):
        before = store.counts()
        result = handler.handle(command)
        assert result.status == "rejected", result
        assert result.error["code"] == code, result.error
        for word in words:
            assert word in result.error["message"], (word, result.error["message"])
        assert result.eventIds == [] and result.version is None
        assert store.counts() == before
        return result

    return check


@pytest.fixture
def cosmos_clock() -> FakeClock:
    """The clock of the fake account (its ``_ts``) and of the stores a test opens on it."""
    return FakeClock()


@pytest.fixture
def cosmos_account(cosmos_clock):
    """A fresh in-memory account; pass it as ``transport=`` to ``CosmosClient``."""
    return FakeCosmosAccount(clock=cosmos_clock)


@pytest.fixture
def cosmos_settings(tmp_path):
    """Settings selecting the Cosmos write store at the fake account's endpoint."""
    env = {"CQRS_WRITE_STORE": "cosmos", "COSMOS_ENDPOINT": COSMOS_ENDPOINT, "COSMOS_KEY": COSMOS_KEY}
    return Settings.from_env(tmp_path / "warehouse", env=env)
