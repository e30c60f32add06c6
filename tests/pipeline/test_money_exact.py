"""The lakehouse half of "accepted means kept exactly": amounts drawn over the whole accepted range, and ids
of every allowed kind, go command -> write store -> event log -> bronze -> silver -> views, and every layer
holds the accepted digits; every id is found again through ``sql``, the views and the API's reader.
(The command side's half: ``tests/command_side/test_money_exact.py``.)"""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cqrs_orders.domain.commands.order import MAX_ORDER_TOTAL
from cqrs_orders.query.api import ReadModels

#: Every amount the API accepts (as in tests/command_side/test_money_exact.py), and its edges.
AMOUNTS = st.decimals(min_value=Decimal(0), max_value=MAX_ORDER_TOTAL, places=2)
EDGES = [Decimal("90071992547409.93"), MAX_ORDER_TOTAL, Decimal("0.01"), Decimal("0.00")]
#: Ids the id rule accepts that a URL, a SQL literal or a JSON path could trip over.
TRICKY_IDS = ["o 1", "x'y", "ü?#%", "李-1", "a+b&c=d", 'q"t', "$.data[0]"]


def create_order(order_id: str, customer_id: str, amount: Decimal) -> str:
    item = f'{{"sku": "s", "quantity": 1, "unitPrice": "{amount:.2f}"}}'
    return json.dumps({"type": "CreateOrder", "orderId": order_id, "customerId": customer_id})[:-1] + (
        f', "items": [{item}]}}'
    )


@settings(
    max_examples=2,
    deadline=None,
    phases=[Phase.generate],  # each example is a projection run: no shrinking passes
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(amounts=st.lists(AMOUNTS, min_size=40, max_size=40, unique=True))
def test_amounts_and_ids_are_the_same_in_bronze_silver_the_views_and_sql(
    spark, cli, tmp_path, settings, amounts
):
    run = len(list(tmp_path.glob("commands-*.jsonl")))
    customer = f"cust {run}'s"
    sent = {
        f"{TRICKY_IDS[n % len(TRICKY_IDS)]}-{run}-{n}": amount for n, amount in enumerate(EDGES + amounts)
    }
    register = {"type": "RegisterCustomer", "customerId": customer, "name": "Ada", "email": "a@b.io"}
    lines = [json.dumps(register)] + [create_order(o, customer, a) for o, a in sent.items()]
    path = tmp_path / f"commands-{run}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert cli("submit", "--file", str(path)).exit_code == 0
    assert cli("relay").exit_code == 0
    assert cli("project", "--once").exit_code == 0

    bronze = spark.read.format("delta").load(settings.table("bronze_events").path)
    bodies = {row.aggregate_id: row.body for row in bronze.collect() if row.aggregate_id in sent}
    assert {o: json.loads(b)["data"]["items"][0]["price"] for o, b in bodies.items()} == {
        o: f"{a:.2f}" for o, a in sent.items()
    }
    silver = spark.read.format("delta").load(settings.table("silver_orders").path)
    rows = {row.order_id: row for row in silver.collect() if row.order_id in sent}
    assert {o: (row.total_amount, row.items[0].unit_price) for o, row in rows.items()} == {
        o: (a, a) for o, a in sent.items()
    }

    answer = cli(
        "sql",
        "--json",
        f"SELECT order_id, total_amount FROM vw_order_summary WHERE customer_id = {_sql(customer)}",
    )
    assert answer.exit_code == 0, answer.stderr
    rows = [json.loads(line, parse_float=Decimal) for line in answer.stdout.splitlines()]  # exact digits
    assert {r["order_id"]: r["total_amount"] for r in rows} == sent

    reader = ReadModels.on_delta(settings)  # what GET /orders/{id} and GET /customers/{id}/orders read
    for order_id, amount in sent.items():
        assert reader.get_order(order_id)["total_amount"] == amount, order_id
    assert {o["order_id"] for o in reader.orders_of_customer(customer)} == set(sent)


def _sql(text: str) -> str:
    """A SQL string literal in the dialect `sql` reads (DataFusion's, standard SQL): a quote doubled,
    a backslash as it is."""
    return "'" + text.replace("'", "''") + "'"
