"""One JSON intake: every hostile body is answered the same way alone and inside a batch (422
VALIDATION_ERROR, nothing run, nothing written), and by ``submit`` and the command-ingest job alike. Never a
500, never a last-value-wins."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.batch import handle_payload
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.identity import os_user
from cqrs_orders.http.app import create_app
from cqrs_orders.query.api import ReadModels

GOOD = '{"type": "RegisterCustomer", "customerId": "c-1", "name": "Ada", "email": "a@b.io"}'

#: Bodies no command may be read from, each with a word its refusal names.
HOSTILE = {
    "duplicate key": ('{"type": "RegisterCustomer", "customerId": "c-1", "customerId": "c-2", "name": "A", '
                      '"email": "a@b.io"}', "more than once"),
    "nested duplicate key": ('{"type": "CreateOrder", "customerId": "c-1", "items": [{"sku": "a", '
                             '"sku": "b", "quantity": 1, "unitPrice": "1"}]}', "more than once"),
    "deep arrays": ("[" * 20 + "]" * 20, "nested deeper"),
    "deep objects": ('{"a":' * 20 + "1" + "}" * 20, "nested deeper"),
    "very deep arrays": ("[" * 50_000, "nested deeper"),
    "very deep objects": ('{"a":' * 40_000, "nested deeper"),
    "NaN": ('{"type": "AddOrderItem", "orderId": "o", "sku": "s", "quantity": 1, "unitPrice": NaN}', "NaN"),
    "Infinity": ('{"type": "AddOrderItem", "orderId": "o", "sku": "s", "quantity": 1, '
                 '"unitPrice": Infinity}', "Infinity"),
    "-Infinity": ('{"type": "AddOrderItem", "orderId": "o", "sku": "s", "quantity": 1, '
                  '"unitPrice": -Infinity}', "Infinity"),
    "not JSON": ('{"type": "RegisterCustomer",', "not valid JSON"),
    "trailing data": (GOOD + " {}", "not valid JSON"),
}  # fmt: skip
INVALID_UTF8 = b'{"type": "RegisterCustomer", "name": "\xff\xfe"}'


def as_batch(body: str) -> str:
    return f'[{GOOD[:-1]}, "commandId": "first"}}, {body}]'


@pytest.fixture
def app(settings):
    store = SqliteWriteStore(settings.write_store_path)
    yield create_app(CommandHandler(store), ReadModels.on_delta(settings)), store
    store.close()


def post(app, *bodies: bytes | str) -> list[httpx.Response]:
    async def run():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            headers = {"content-type": "application/json"}
            return [await client.post("/commands", content=body, headers=headers) for body in bodies]

    return asyncio.run(run())


@pytest.mark.parametrize("name", [*HOSTILE, "invalid UTF-8"])
def test_a_hostile_body_is_refused_alike_alone_and_in_a_batch_and_writes_nothing(app, name):
    served, store = app
    body, word = HOSTILE.get(name, (INVALID_UTF8, "UTF-8"))
    batch = as_batch(body) if isinstance(body, str) else b"[" + body + b"]"
    alone, in_batch = post(served, body, batch)

    for answer in (alone, in_batch):
        assert answer.status_code == 422, answer.text
        assert (
            answer.json()["error"]["code"] == "VALIDATION_ERROR" and word in answer.json()["error"]["message"]
        )
    assert store.counts()["commands"] == 0  # the batch's good first command was not run either


@pytest.mark.parametrize("name", list(HOSTILE))
def test_submit_and_the_ingest_job_refuse_the_same_bodies_with_the_same_code(settings, name):
    body, word = HOSTILE[name]
    store = SqliteWriteStore(settings.write_store_path)
    handler = CommandHandler(store)
    line = handler.handle(body)  # what `submit` does with a line
    job = handle_payload(handler, body, os_user())
    job_batch = handle_payload(handler, as_batch(body), os_user())
    for result in (line.to_dict(), job, job_batch):
        assert result["error"]["code"] == "VALIDATION_ERROR" and word in result["error"]["message"], result
    assert store.counts()["commands"] == 0
    store.close()


#: Any JSON value (numbers of every shape included), as hypothesis draws them.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.dictionaries(st.text(min_size=1, max_size=5), JSON_VALUES, min_size=1, max_size=5),
    data=st.data(),
)
def test_a_key_given_twice_anywhere_is_refused_alone_and_in_a_batch(app, value, data):
    served, store = app
    text = json.dumps(value)
    key = data.draw(st.sampled_from(sorted(value)))
    doubled = text[:-1] + f", {json.dumps(key)}: {json.dumps(value[key])}}}"  # the key again, last
    alone, in_batch = post(served, doubled, as_batch(doubled))
    assert (alone.status_code, in_batch.status_code) == (422, 422)
    assert "more than once" in alone.json()["error"]["message"] == in_batch.json()["error"]["message"]
    assert store.counts()["commands"] == 0
