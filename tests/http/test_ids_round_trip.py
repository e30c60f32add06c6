"""Ids that round-trip: any id the command side accepts reaches the read models, exactly, through every GET
route (percent-encoded as a client does); any other is refused with a 422 that names the rule, on commands
and GETs alike. No redirect ever changes which aggregate answers, and every 404 is the project's NOT_FOUND
body. (Through the projection, ``sql`` and the views: ``tests/pipeline/test_money_exact.py``.)"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.domain.ids import RULES
from cqrs_orders.http.app import create_app
from cqrs_orders.query.api import ReadModels

from .test_commands import register
from .test_failures import call


class Recording:
    """A read-model backend that answers every order and customer, and records the ids it was asked for."""

    def __init__(self):
        self.asked: list[str] = []

    def query(self, statement, parameters):
        if "order_id" in parameters or "customer_id" in parameters:
            value = (parameters.get("order_id") or parameters["customer_id"]).value
            self.asked.append(value)
            return [{"order_id": value, "customer_id": value, "customer_name": "n"}]
        return [{"last_event_time": None, "projected_at": None}]


@pytest.fixture
def api(settings):
    store = SqliteWriteStore(settings.write_store_path)
    backend = Recording()
    yield create_app(CommandHandler(store), ReadModels(backend)), backend
    store.close()


IDS = st.text(min_size=1, max_size=12) | st.sampled_from(
    ["a/b", "x/", "..", ".", "a\\b", "é", "e\u0301", "a b"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customer_id=IDS)
def test_an_accepted_id_reads_back_exactly_through_every_get_and_a_refused_one_names_its_rule(
    api, customer_id
):
    app, backend = api
    command, order, orders = call(
        app,
        ("POST", "/commands", {"json": register(customer_id)}),
        ("GET", f"/orders/{quote(customer_id, safe='')}", {}),
        ("GET", f"/customers/{quote(customer_id, safe='')}/orders", {}),
    )
    if command.status_code in (200, 409):  # accepted (or accepted by an earlier example)
        assert (order.status_code, orders.status_code) == (200, 200), (order.text, orders.text)
        assert backend.asked[-2:] == [customer_id, customer_id]
        assert order.json()["order"]["orderId"] == customer_id
    else:
        assert command.status_code == 422 and command.json()["error"]["code"] == "VALIDATION_ERROR"
        rule = command.json()["error"]["message"].split("customerId: ", 1)[1]
        assert rule in RULES.values(), rule
        for answer in (order, orders):  # a GET cannot reach what no command can create
            assert answer.status_code in (404, 422), answer.text
            assert answer.json()["error"]["code"] in ("NOT_FOUND", "VALIDATION_ERROR")


def test_nfc_is_the_one_spelling_of_an_id(api):
    app, _ = api
    nfc, nfd = "café", unicodedata.normalize("NFD", "café")
    accepted, refused, read_nfd = call(
        app,
        ("POST", "/commands", {"json": register(nfc)}),
        ("POST", "/commands", {"json": register(nfd)}),
        ("GET", f"/orders/{quote(nfd)}", {}),
    )
    assert accepted.status_code == 200
    assert refused.status_code == 422 and RULES["nfc"] in refused.json()["error"]["message"]
    assert read_nfd.status_code == 422 and RULES["nfc"] in read_nfd.json()["error"]["message"]


@pytest.mark.parametrize(
    "path", ["/orders/x/", "/orders/a%2Fb", "/customers/x/orders/", "/nowhere", "/orders"]
)
def test_no_redirect_and_every_404_is_the_projects_not_found(api, path):
    app, backend = api
    (answer,) = call(app, ("GET", path, {"follow_redirects": False}))
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "NOT_FOUND" and "location" not in answer.headers
    assert backend.asked == []  # no other aggregate answered


def test_a_wrong_method_is_the_projects_error_too(api):
    app, _ = api
    on_commands, on_orders = call(app, ("GET", "/commands", {}), ("POST", "/orders/x", {}))
    for answer in (on_commands, on_orders):
        assert answer.status_code == 405 and answer.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
