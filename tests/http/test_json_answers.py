"""Every JSON answer of the API, whatever the route and the outcome, is in one key style and carries no trace
of the server's insides.

One style: every key at every depth is camelCase, the style of the commands and their results (the read
models' snake_case columns are renamed at the edge). No key of any answer is data (no map keyed by ids),
so the rule has no exception. No trace: a failure nobody foresaw, injected into what each route depends on,
answers a JSON body with a stable code and what to do, never the error's text or a traceback. Both walks
cover every route the OpenAPI document lists, and fail when a new one is added without being walked.
"""

from __future__ import annotations

import re

import pytest

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.config import Settings
from cqrs_orders.http.app import create_app
from cqrs_orders.http.status import MAX_BATCH_COMMANDS
from cqrs_orders.query.api import ReadModels

from .test_failures import call

CAMEL = re.compile(r"[a-z][a-zA-Z0-9]*")
#: The OpenAPI document describes the API in OpenAPI's own keys (``requestBody``, ``$ref``,
#: ``x-status-by-error-code``, media types); it is the one answer that is not the API's data.
NOT_DATA = {"/openapi.json"}

REGISTER = {
    "type": "RegisterCustomer",
    "commandId": "walk-c1",
    "customerId": "walk-1",
    "name": "Ada",
    "email": "ada@example.com",
}
CONFIRM_UNKNOWN = {"type": "ConfirmOrder", "orderId": "walk-none"}


def keys_not_camel(value, where: str = "$") -> list[str]:
    """Every key, at any depth of a decoded JSON value, that is not camelCase (with where it is)."""
    if isinstance(value, dict):
        found = [f"{where}.{key}" for key in value if not CAMEL.fullmatch(key)]
        for key, inner in value.items():
            found += keys_not_camel(inner, f"{where}.{key}")
        return found
    if isinstance(value, list):
        return [
            bad for index, inner in enumerate(value) for bad in keys_not_camel(inner, f"{where}[{index}]")
        ]
    return []


def test_the_key_check_finds_a_snake_case_key_at_any_depth():
    assert keys_not_camel({"ok": [{"fine": 1, "deep": {"last_sale_at": 1}}]}) == ["$.ok[0].deep.last_sale_at"]
    assert keys_not_camel({"lastSaleAt": [1, "a_b"], "eventIds": []}) == []


#: Every route of the OpenAPI document, with the requests that make it answer each way it can: success,
#: refusals and not-found, one command and a batch. (method, path template) -> [(path, options, status)].
WALK: dict[tuple[str, str], list[tuple[str, dict, int]]] = {
    ("POST", "/commands"): [
        ("/commands", {"json": REGISTER}, 200),
        ("/commands", {"json": REGISTER}, 200),  # the retry answers the first result
        ("/commands", {"json": {**REGISTER, "commandId": "other"}}, 409),
        ("/commands", {"json": CONFIRM_UNKNOWN}, 404),
        ("/commands", {"json": {"type": "CreateOrder", "customerId": "walk-1", "items": []}}, 422),
        ("/commands", {"json": {"type": "Nope"}}, 422),
        ("/commands", {"json": [REGISTER, CONFIRM_UNKNOWN, {"type": "Nope"}, 7]}, 200),
        ("/commands", {"json": [CONFIRM_UNKNOWN] * (MAX_BATCH_COMMANDS + 1)}, 413),
        ("/commands", {"content": b"{}", "headers": {"content-type": "text/plain"}}, 415),
        ("/commands", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
    ],
    ("GET", "/orders/{orderId}"): [
        ("/orders/o-1", {}, 200),
        ("/orders/o-404", {}, 404),
        ("/orders/%20x", {}, 422),
    ],
    ("GET", "/customers/{customerId}/orders"): [
        ("/customers/cust-1/orders", {}, 200),
        ("/customers/cust-404/orders", {}, 404),
    ],
    ("GET", "/products/{sku}"): [
        ("/products/A", {}, 200),
        ("/products/E", {}, 404),
        ("/products/a/b", {}, 404),
    ],
    ("GET", "/healthz"): [("/healthz", {}, 200)],
}
#: What no route takes, answered by the app all the same.
OFF_ROUTE = [("GET", "/nowhere", {}, 404), ("GET", "/commands", {}, 405), ("POST", "/orders/o-1", {}, 405)]


def openapi_routes(app) -> set[tuple[str, str]]:
    (document,) = call(app, ("GET", "/openapi.json", {}))
    return {(method.upper(), path) for path, item in document.json()["paths"].items() for method in item}


@pytest.fixture
def app(read_warehouse_without_spark, tmp_path):
    """The app over the hand-made read models and a fresh write store."""
    settings = Settings.from_env(read_warehouse_without_spark, env={})
    store = SqliteWriteStore(tmp_path / "write_store.sqlite")
    yield create_app(CommandHandler(store), ReadModels.on_delta(settings))
    store.close()


def test_the_walks_cover_every_route_the_openapi_document_lists(app):
    assert set(WALK) == openapi_routes(app) == set(FAILING)


def test_every_answer_of_every_route_has_camel_case_keys_only(app):
    requests = [(method, path, options) for (method, _), cases in WALK.items() for path, options, _ in cases]
    requests += [(method, path, options) for method, path, options, _ in OFF_ROUTE]
    expected = [status for cases in WALK.values() for *_, status in cases] + [s for *_, s in OFF_ROUTE]

    answers = call(app, *requests)

    assert [answer.status_code for answer in answers] == expected, [a.text for a in answers]
    for (method, path, _), answer in zip(requests, answers, strict=True):
        assert answer.headers["content-type"].startswith("application/json"), (method, path)
        assert keys_not_camel(answer.json()) == [], (method, path, answer.text)
    # The read models' columns did reach the answers, renamed, with their values.
    order = answers[len(WALK["POST", "/commands"])].json()["order"]
    assert order["orderId"] == "o-1" and order["totalAmount"] == "25.50" and order["customerName"] == "Ada"


def test_an_empty_warehouse_answers_in_the_same_style(settings, tmp_path):
    """Before the first projection: the 503s of the reads and of /healthz."""
    store = SqliteWriteStore(settings.write_store_path)
    try:
        app = create_app(CommandHandler(store), ReadModels.on_delta(settings))
        answers = call(app, *[("GET", path, {}) for path in ("/orders/o-1", "/products/A", "/healthz")])
    finally:
        store.close()
    assert [answer.status_code for answer in answers] == [503, 503, 503]
    assert all(keys_not_camel(answer.json()) == [] for answer in answers)


# --- failures nobody foresaw --------------------------------------------------------------------------------

SECRET = "internal detail /srv/secret.db"


class Bug(RuntimeError):
    pass


def _bug(*args, **kwargs):
    raise Bug(f"{SECRET}\nTraceback (most recent call last): a frame")


class BrokenBackend:
    """A read-model backend with a bug: every query raises."""

    def query(self, statement, parameters):
        _bug()


#: Each route, and a request that reaches the dependency that fails.
FAILING: dict[tuple[str, str], list[tuple[str, dict]]] = {
    ("POST", "/commands"): [("/commands", {"json": REGISTER}), ("/commands", {"json": [REGISTER, REGISTER]})],
    ("GET", "/orders/{orderId}"): [("/orders/o-1", {})],
    ("GET", "/customers/{customerId}/orders"): [("/customers/cust-1/orders", {})],
    ("GET", "/products/{sku}"): [("/products/A", {})],
    ("GET", "/healthz"): [("/healthz", {})],
}


@pytest.fixture
def broken_app(settings, monkeypatch):
    """The app whose write store (under the command handler) and read models both fail with a bug."""
    store = SqliteWriteStore(settings.write_store_path)
    handler = CommandHandler(store)
    monkeypatch.setattr(handler, "handle_many", _bug)
    monkeypatch.setattr(store, "load", _bug)  # /healthz's probe of the write store
    yield create_app(handler, ReadModels(BrokenBackend()))
    store.close()


@pytest.mark.parametrize("route", list(FAILING), ids=" ".join)
def test_a_bug_behind_any_route_answers_json_with_a_code_and_no_trace(broken_app, route, caplog):
    method, _ = route
    answers = call(broken_app, *[(method, path, options) for path, options in FAILING[route]])

    for answer in answers:
        assert answer.headers["content-type"].startswith("application/json"), answer.text
        assert SECRET not in answer.text and "Traceback" not in answer.text
        assert keys_not_camel(answer.json()) == []
        body = answer.json()
        if route == ("GET", "/healthz"):  # a probe's failure is an unhealthy answer, not a failed request
            assert answer.status_code == 503 and body["status"] == "unavailable"
            assert (
                body["writeStore"]
                == body["readModels"]
                == ("unreachable: an unexpected error; the server log has the details")
            )
        else:
            assert answer.status_code == 500, answer.text
            assert body["error"] == {
                "code": "INTERNAL_ERROR",
                "message": "an unexpected error; the server log has the details",
            }
    # The server's log has what the body has not: the error and where it was raised (how much of the
    # traceback a handler prints is the operator's -v; the record carries it whatever the format).
    assert SECRET in caplog.text
    assert any(r.exc_info and isinstance(r.exc_info[1], Bug) for r in caplog.records), caplog.text
