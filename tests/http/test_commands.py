"""``POST /commands`` on the real server: each status of the table, batches, retries, and bad input that
writes nothing (the write store's row counts are compared before and after)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from cqrs_orders.domain.commands import MAX_COMMAND_BYTES
from cqrs_orders.http.status import MAX_BATCH_COMMANDS, STATUS_BY_CODE

ITEMS = [{"sku": "SKU-1", "quantity": 2, "unitPrice": 10.25}]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def register(customer_id: str, **extra) -> dict:
    return {"type": "RegisterCustomer", "customerId": customer_id, "name": "Ada", "email": "ada@example.com",
            **extra}  # fmt: skip


def create(order_id: str, customer_id: str, **extra) -> dict:
    return {"type": "CreateOrder", "orderId": order_id, "customerId": customer_id, "items": ITEMS, **extra}


def post(client: httpx.Client, payload) -> httpx.Response:
    return client.post("/commands", json=payload)


@pytest.fixture
def client(server):
    with server.client() as client:
        yield client


@pytest.fixture
def customer(client) -> str:
    customer_id = unique("cust")
    assert post(client, register(customer_id)).status_code == 200
    return customer_id


def test_an_accepted_command_answers_200_with_the_submit_result(client, server):
    before = server.stored()
    customer_id = unique("cust")

    answer = post(client, register(customer_id, commandId="cmd-" + customer_id))

    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    result = answer.json()
    assert set(result) == {"commandId", "status", "aggregateId", "version", "eventIds", "error"}
    assert result | {"eventIds": None} == {
        "commandId": "cmd-" + customer_id, "status": "accepted", "aggregateId": customer_id, "version": 1,
        "eventIds": None, "error": None,
    }  # fmt: skip
    assert len(result["eventIds"]) == 1
    after = server.stored()
    assert after["events"] == before["events"] + 1 and after["outbox_pending"] == before["outbox_pending"] + 1


@pytest.mark.parametrize(
    ("command", "code", "status"),
    [
        (lambda cust, order: {"type": "ShipOrder", "orderId": unique("missing")}, "NOT_FOUND", 404),
        (lambda cust, order: register(cust), "ALREADY_EXISTS", 409),
        (lambda cust, order: {"type": "ConfirmOrder", "orderId": order, "expectedVersion": 7},
         "CONCURRENCY_CONFLICT", 409),
        (lambda cust, order: {"type": "CreateOrder", "customerId": cust, "items": []},
         "VALIDATION_ERROR", 422),
        (lambda cust, order: {"type": "ShipOrder", "orderId": order}, "INVALID_TRANSITION", 422),
        (lambda cust, order: {"type": "LaunchRocket"}, "UNKNOWN_COMMAND", 422),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)  # fmt: skip
def test_a_rejection_answers_the_status_of_its_code_and_writes_nothing(
    client, server, customer, command, code, status
):
    order_id = unique("order")
    assert post(client, create(order_id, customer)).status_code == 200
    before = server.stored()

    answer = post(client, command(customer, order_id))

    assert answer.json()["error"]["code"] == code
    assert answer.json()["status"] == "rejected"
    assert answer.status_code == status == STATUS_BY_CODE[code]
    assert server.stored() == before


def test_the_table_is_the_one_asked_for():
    assert {code: STATUS_BY_CODE[code] for code in (
        "NOT_FOUND", "CONCURRENCY_CONFLICT", "ALREADY_EXISTS", "VALIDATION_ERROR", "INVALID_TRANSITION",
        "UNKNOWN_COMMAND", "UNSUPPORTED_MEDIA_TYPE", "PAYLOAD_TOO_LARGE", "BATCH_TOO_LARGE",
    )} == {
        "NOT_FOUND": 404, "CONCURRENCY_CONFLICT": 409, "ALREADY_EXISTS": 409, "VALIDATION_ERROR": 422,
        "INVALID_TRANSITION": 422, "UNKNOWN_COMMAND": 422, "UNSUPPORTED_MEDIA_TYPE": 415,
        "PAYLOAD_TOO_LARGE": 413, "BATCH_TOO_LARGE": 413,
    }  # fmt: skip


def test_a_batch_runs_in_order_and_answers_200_with_one_result_per_command(client, server):
    customer_id, order_id = unique("cust"), unique("order")
    before = server.stored()

    answer = post(client, [
        register(customer_id),
        create(order_id, customer_id),  # needs the customer registered just before
        {"type": "ShipOrder", "orderId": order_id},  # not confirmed yet
        {"type": "ConfirmOrder", "orderId": order_id},
        "not an object",
    ])  # fmt: skip

    assert answer.status_code == 200
    results = answer.json()
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected", "accepted", "rejected"]
    assert [r["error"]["code"] for r in results if r["error"]] == ["INVALID_TRANSITION", "VALIDATION_ERROR"]
    assert [r["version"] for r in results[:2]] + [results[3]["version"]] == [1, 1, 2]
    assert server.stored()["events"] == before["events"] + 3


def test_a_batch_of_rejections_still_answers_200(client):
    answer = post(client, [{"type": "ShipOrder", "orderId": unique("missing")}])
    assert answer.status_code == 200 and answer.json()[0]["error"]["code"] == "NOT_FOUND"
    assert post(client, []).json() == []


def test_a_retry_with_the_same_command_id_answers_the_first_result_and_writes_once(client, server, customer):
    command = create(unique("order"), customer, commandId=unique("cmd"))
    first = post(client, command)
    before = server.stored()

    again = post(client, command)
    in_a_batch = post(client, [command, command])

    assert first.status_code == again.status_code == in_a_batch.status_code == 200
    assert again.json() == first.json() and in_a_batch.json() == [first.json(), first.json()]
    assert server.stored() == before


def test_a_command_id_reused_for_another_command_is_409(client, customer):
    command_id = unique("cmd")
    assert post(client, create(unique("order"), customer, commandId=command_id)).status_code == 200

    answer = post(client, create(unique("order"), customer, commandId=command_id))

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "ALREADY_EXISTS"


# --- bad input: a clear 4xx with the stable code, and nothing written ---------------------------------
def refused(server, client, expected_status: int, expected_code: str, **request) -> dict:
    before = server.stored()
    answer = client.post("/commands", **request)
    assert (answer.status_code, answer.json()["error"]["code"]) == (expected_status, expected_code)
    assert answer.json()["status"] == "rejected"
    assert server.stored() == before
    return answer.json()


def test_a_body_that_is_not_json_is_422(server, client):
    for body in (b"{not json", b"[1, 2", "\u00e9".encode("latin-1")):
        refused(
            server,
            client,
            422,
            "VALIDATION_ERROR",
            content=body,
            headers={"content-type": "application/json"},
        )


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_valid_command_with_the_wrong_content_type_is_415(server, client, content_type):
    body = json.dumps(register(unique("cust"))).encode()
    headers = {"content-type": content_type} if content_type else {}
    answer = refused(server, client, 415, "UNSUPPORTED_MEDIA_TYPE", content=body, headers=headers)
    assert "application/json" in answer["error"]["message"]


def test_json_with_a_charset_is_accepted(client):
    body = json.dumps(register(unique("cust"))).encode()
    answer = client.post(
        "/commands", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert answer.status_code == 200


def test_a_body_over_the_command_size_limit_is_413(server, client):
    command = register(unique("cust"), metadata={"source": "x" * 100})
    command["padding"] = "x" * MAX_COMMAND_BYTES  # valid JSON, too large
    refused(server, client, 413, "PAYLOAD_TOO_LARGE", json=command)


def test_a_streamed_body_over_the_limit_is_413_without_a_content_length(server, client):
    def chunks():
        yield b'[{"type": "RegisterCustomer", "customerId": "streamed", "name": "A", "email": "a@b.cc"}'
        for _ in range(MAX_COMMAND_BYTES // 1024 + 1):
            yield b"," + b" " * 1023
        yield b"]"

    refused(
        server,
        client,
        413,
        "PAYLOAD_TOO_LARGE",
        content=chunks(),
        headers={"content-type": "application/json"},
    )


def test_a_batch_over_the_limit_is_413_and_runs_none_of_it(server, client):
    batch = [register(unique("cust")) for _ in range(MAX_BATCH_COMMANDS + 1)]
    answer = refused(server, client, 413, "BATCH_TOO_LARGE", json=batch)
    assert str(MAX_BATCH_COMMANDS) in answer["error"]["message"]
    assert post(client, batch[:MAX_BATCH_COMMANDS]).status_code == 200  # exactly the limit is fine


def test_other_methods_on_commands_answer_405_naming_post(client):
    answer = client.get("/commands")

    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
