"""The server as the Databricks App reads: with ``CQRS_SQL_WAREHOUSE_ID`` set, the read models come from a
SQL warehouse through the real databricks-sdk ``WorkspaceClient``, authenticated from the environment.

The warehouse is the statement-execution stand-in of ``tests/read_side/statement_server.py`` on 127.0.0.1,
answering here with the Delta backend over the hand-made read models (so no Spark is needed).
"""

from __future__ import annotations

import pytest


@pytest.fixture
def app_server(served, sql_warehouse, app_env, tmp_path):
    stand_in, failing = sql_warehouse
    stand_in.requests.clear()
    failing.clear()
    return served(tmp_path / "warehouse", app_env)


def test_reads_go_to_the_sql_warehouse_with_bound_parameters(app_server, sql_warehouse):
    stand_in, _ = sql_warehouse
    with app_server.client() as client:
        order = client.get("/orders/o-2")
        missing = client.get("/orders/x' OR '1'='1")
        customer = client.get("/customers/cust-1/orders")

    assert order.status_code == 200
    assert order.json()["order"]["customerName"] == "Bob" and order.json()["order"]["totalAmount"] == "4.55"
    assert order.json()["freshness"]["lastEventTime"] == "2025-01-17T10:00:00Z"
    assert missing.status_code == 404
    assert [o["orderId"] for o in customer.json()["orders"]] == ["o-1", "o-4", "o-5"]
    lookups = [r for r in stand_in.requests if ":order_id" in r["statement"]]
    assert {
        (r["warehouse_id"], r["catalog"], r["schema"], r["authorization"]) for r in stand_in.requests
    } == {("wh-app", "main", "orders", "Bearer app-token")}
    assert [r["parameters"] for r in lookups] == [
        [{"name": "order_id", "type": "STRING", "value": "o-2"}],
        [{"name": "order_id", "type": "STRING", "value": "x' OR '1'='1"}],
    ]


def test_a_failing_warehouse_is_503_and_unhealthy(app_server, sql_warehouse):
    _, failing = sql_warehouse
    failing["now"] = True
    with app_server.client() as client:
        order = client.get("/orders/o-1")
        health = client.get("/healthz")

    assert order.status_code == 503 and order.json()["error"]["code"] == "READ_SIDE_UNAVAILABLE"
    assert "WAREHOUSE_STOPPED" in order.json()["error"]["message"]
    assert health.status_code == 503 and health.json()["writeStore"] == "ok"
