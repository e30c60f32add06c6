"""Read your write on the embedded store: POST to the real server, relay and project with the CLI (local
Spark, in this process), then GET the order back from the same running server. (Using the ``spark`` fixture
puts it in the spark tier.)"""

from __future__ import annotations


def test_an_order_posted_is_read_back_after_relay_and_projection(served, settings, cli, spark):
    server = served(settings.warehouse)
    with server.client() as client:
        accepted = client.post("/commands", json=[
            {"type": "RegisterCustomer", "customerId": "rw-cust", "name": "Ada", "email": "ada@example.com"},
            {"type": "CreateOrder", "orderId": "rw-1", "customerId": "rw-cust",
             "items": [{"sku": "A", "quantity": 3, "unitPrice": 2.5}]},
            {"type": "ConfirmOrder", "orderId": "rw-1"},
        ]).json()  # fmt: skip
        assert [r["status"] for r in accepted] == ["accepted"] * 3
        assert client.get("/orders/rw-1").status_code == 503  # nothing projected yet: no read models

        assert cli("relay").exit_code == 0
        assert cli("project", "--once").exit_code == 0

        order = client.get("/orders/rw-1")
        orders = client.get("/customers/rw-cust/orders")

    assert order.status_code == 200
    body = order.json()
    assert body["order"] | {"createdDate": None, "updatedDate": None} == {
        "orderId": "rw-1", "customerId": "rw-cust", "customerName": "Ada", "status": "Confirmed",
        "totalAmount": "7.50", "itemCount": 3, "createdDate": None, "updatedDate": None,
    }  # fmt: skip
    assert body["freshness"]["lastEventTime"] >= body["order"]["updatedDate"]
    assert body["freshness"]["projectedAt"] is not None
    assert orders.status_code == 200 and [o["orderId"] for o in orders.json()["orders"]] == ["rw-1"]
