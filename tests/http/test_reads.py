"""The GETs, ``/healthz`` and the OpenAPI document on the real server, over Delta tables read without Spark.

The warehouse holds the read side's hand-made rows (``tests/read_side/conftest.py``), written with
``deltalake`` in the pipeline's exact schemas.
"""

from __future__ import annotations

from cqrs_orders.http.status import MAX_BATCH_COMMANDS, MAX_BODY_BYTES, STATUS_BY_CODE

#: o-5's last event (and its projection): the newest the hand-made read models applied.
FRESHNESS = {"lastEventTime": "2025-01-17T10:00:00Z", "projectedAt": "2025-01-17T10:00:00Z"}


def get(server, path: str):
    with server.client() as client:
        return client.get(path)


def test_an_order_is_read_with_exact_money_utc_times_and_its_freshness(reader):
    answer = get(reader, "/orders/o-1")

    assert answer.status_code == 200
    assert answer.json() == {
        "order": {
            "orderId": "o-1",
            "customerId": "cust-1",
            "customerName": "Ada",
            "status": "Created",
            "totalAmount": "25.50",
            "itemCount": 3,
            "createdDate": "2025-01-15T09:00:00Z",
            "updatedDate": "2025-01-15T09:00:00Z",
        },
        "freshness": FRESHNESS,
    }


def test_an_unknown_order_is_404_and_still_says_how_fresh_the_read_models_are(reader):
    answer = get(reader, "/orders/o-404")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NOT_FOUND" and answer.json()["freshness"] == FRESHNESS


def test_an_id_is_a_value_never_sql(reader):
    assert get(reader, "/orders/x' OR '1'='1").status_code == 404
    assert get(reader, "/customers/cust-1' OR '1'='1/orders").status_code == 404


def test_a_customers_orders_come_oldest_first(reader):
    answer = get(reader, "/customers/cust-1/orders")

    assert answer.status_code == 200
    body = answer.json()
    assert body["customerId"] == "cust-1" and body["freshness"] == FRESHNESS
    assert [(o["orderId"], o["status"]) for o in body["orders"]] == [
        ("o-1", "Created"),
        ("o-4", "Cancelled"),
        ("o-5", "Delivered"),
    ]


def test_orders_of_a_customer_not_projected_yet_are_still_served(reader):
    answer = get(reader, "/customers/cust-9/orders")  # cust-9 has an order but no customer row
    assert answer.status_code == 200 and [o["orderId"] for o in answer.json()["orders"]] == ["o-3"]


def test_an_unknown_customer_is_404(reader):
    answer = get(reader, "/customers/cust-404/orders")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND"


def test_a_products_sales_are_read_one_row_per_currency_with_exact_money(reader):
    answer = get(reader, "/products/A")

    assert answer.status_code == 200
    assert answer.json() == {
        "sku": "A",
        "sales": [
            {"sku": "A", "currency": "EUR", "units": 2, "revenue": "20.50", "orders": 1,
             "lastSaleAt": "2025-01-15T09:00:00Z"},
            {"sku": "A", "currency": "USD", "units": 3, "revenue": "36.00", "orders": 2,
             "lastSaleAt": "2025-01-16T12:00:00Z"},
        ],
        "freshness": FRESHNESS,
    }  # fmt: skip


def test_a_product_without_sales_is_404_and_an_impossible_sku_422_as_for_orders(reader):
    for path in ("/products/E", "/products/no-such-sku", "/products/x' OR '1'='1"):  # E: cancelled only
        answer = get(reader, path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "NOT_FOUND" and answer.json()["freshness"] == FRESHNESS
    invalid = get(reader, "/products/%20A")  # a space at an end: no SKU can have it
    assert invalid.status_code == 422
    assert invalid.json()["error"]["code"] == "VALIDATION_ERROR"
    assert invalid.json()["error"]["message"].startswith("sku: ")
    separator = get(reader, "/products/a/b")
    assert separator.status_code == 404 and "must not contain '/'" in separator.json()["error"]["message"]


def test_healthz_is_200_when_the_write_store_and_read_models_answer(reader):
    answer = get(reader, "/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "writeStore": "ok", "readModels": "ok"}


def test_before_the_first_projection_reads_and_healthz_are_503_and_say_what_to_run(server):
    for path in ("/orders/o-1", "/customers/cust-1/orders", "/products/A"):
        answer = get(server, path)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "READ_SIDE_UNAVAILABLE"
        assert "project --once" in answer.json()["error"]["message"]
    health = get(server, "/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable" and health.json()["writeStore"] == "ok"
    assert "project --once" in health.json()["readModels"]


def test_the_openapi_document_lists_the_routes_and_the_status_table(reader):
    document = get(reader, "/openapi.json").json()

    assert set(document["paths"]) == {
        "/commands",
        "/orders/{orderId}",
        "/customers/{customerId}/orders",
        "/products/{sku}",
        "/healthz",
    }
    post = document["paths"]["/commands"]["post"]
    assert post["x-status-by-error-code"] == STATUS_BY_CODE
    assert {"200", "404", "409", "413", "415", "422", "503"} <= set(post["responses"])
    body = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert body[1]["maxItems"] == MAX_BATCH_COMMANDS
    description = document["info"]["description"]
    assert "| `CONCURRENCY_CONFLICT` | 409 |" in description and str(MAX_BODY_BYTES) in description
    assert get(reader, "/docs").status_code == 200
