"""The walking skeleton end to end through the CLI: command -> write store -> event log -> bronze -> silver
-> SQL view, on a fresh warehouse; then a duplicate and a late, older event that must change nothing."""

from __future__ import annotations

import json

COMMANDS = [
    {
        "type": "RegisterCustomer",
        "commandId": "c-1",
        "customerId": "cust-1",
        "name": "Ada",
        "email": "ada@example.com",
    },
    {
        "type": "RegisterCustomer",
        "commandId": "c-2",
        "customerId": "cust-2",
        "name": "Bob",
        "email": "bob@example.com",
    },
    {
        "type": "CreateOrder",
        "commandId": "c-3",
        "orderId": "order-1",
        "customerId": "cust-1",
        "items": [
            {"sku": "A", "quantity": 2, "unitPrice": 10.25},
            {"sku": "B", "quantity": 1, "unitPrice": 5},
        ],
        "currency": "EUR",
    },
    {
        "type": "CreateOrder",
        "commandId": "c-4",
        "orderId": "order-2",
        "customerId": "cust-2",
        "items": [{"sku": "C", "quantity": 3, "unitPrice": 1.5}],
    },
]


def test_an_order_flows_from_command_to_view(spark, cli, tmp_path, settings):
    commands = tmp_path / "commands.jsonl"
    commands.write_text("\n".join(json.dumps(c) for c in COMMANDS) + "\n")

    submitted = cli("submit", "--file", str(commands))
    assert submitted.exit_code == 0, submitted.stderr
    results = submitted.json_lines()
    assert [r["status"] for r in results] == ["accepted"] * 4
    assert [r["aggregateId"] for r in results] == ["cust-1", "cust-2", "order-1", "order-2"]
    assert all(r["version"] == 1 and len(r["eventIds"]) == 1 and r["error"] is None for r in results)

    assert cli("relay").exit_code == 0
    assert cli("project", "--once").exit_code == 0

    summary = cli("sql", "--json", "SELECT * FROM vw_order_summary ORDER BY order_id")
    assert summary.exit_code == 0, summary.stderr
    rows = summary.json_lines()
    assert [(r["order_id"], r["customer_name"], r["status"], r["item_count"]) for r in rows] == [
        ("order-1", "Ada", "Created", 3),
        ("order-2", "Bob", "Created", 3),
    ]
    assert [float(r["total_amount"]) for r in rows] == [25.5, 4.5]

    metrics = cli(
        "sql", "--json", "SELECT order_count, unique_customers, total_revenue FROM vw_daily_order_metrics"
    )
    assert [
        (m["order_count"], m["unique_customers"], float(m["total_revenue"])) for m in metrics.json_lines()
    ] == [(2, 2, 30.0)]

    # A repeated command is answered with the first outcome and writes nothing new.
    again = cli("submit", json.dumps(COMMANDS[2]))
    assert again.exit_code == 0 and again.json_lines()[0]["eventIds"] == results[2]["eventIds"]

    # A bad command is rejected with a code and changes nothing.
    rejected = cli("submit", json.dumps({"type": "CreateOrder", "customerId": "cust-1", "items": []}))
    assert rejected.exit_code == 1
    assert rejected.json_lines()[0]["error"]["code"] == "VALIDATION_ERROR"


def test_duplicates_and_late_older_versions_leave_silver_unchanged(spark, cli, tmp_path):
    from cqrs_orders.envelope import LineItem, OrderState, new_event

    def order_event(version: int, status: str, quantity: int, event_type: str):
        state = OrderState(
            orderId="order-9",
            customerId="cust-9",
            status=status,
            items=[LineItem(sku="X", quantity=quantity, price="2.50")],
            currency="EUR",
            createdAt="2025-01-15T10:00:00Z",
            updatedAt=f"2025-01-15T1{version}:00:00Z",
        )
        return new_event(event_type, state, version).to_json()

    created, confirmed, shipped = (
        order_event(1, "Created", 1, "OrderCreated"),
        order_event(2, "Confirmed", 1, "OrderConfirmed"),
        order_event(3, "Shipped", 1, "OrderShipped"),
    )
    first = tmp_path / "first.jsonl"
    first.write_text(f"{created}\n{shipped}\n")
    assert cli("ingest-events", "--file", str(first)).exit_code == 0
    assert cli("project", "--once").exit_code == 0
    query = "SELECT order_id, status, version, last_event_type FROM silver_orders"
    before = cli("sql", "--json", query).json_lines()
    assert before == [
        {"order_id": "order-9", "status": "Shipped", "version": 3, "last_event_type": "OrderShipped"}
    ]

    late = tmp_path / "late.jsonl"
    late.write_text(f"{shipped}\n{confirmed}\n{created}\n")  # a duplicate, then two older versions
    assert cli("ingest-events", "--file", str(late)).exit_code == 0
    assert cli("project", "--once").exit_code == 0
    assert cli("sql", "--json", query).json_lines() == before
    bronze = cli("sql", "--json", "SELECT count(*) AS n FROM bronze_events").json_lines()
    assert bronze == [{"n": 5}]  # bronze keeps every record as it arrived
