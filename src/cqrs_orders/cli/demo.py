"""``cqrs-orders demo``: the whole slice on generated data, from commands to SQL views."""

from __future__ import annotations

import argparse
import logging
import random
import time
from decimal import Decimal

from cqrs_orders.config import TABLES, Settings
from cqrs_orders.exit_codes import ExitCode

#: Lifecycle steps applied to a share of the generated orders, so the read models show every status.
log = logging.getLogger(__name__)

_LIFECYCLES = (
    (),
    ("ConfirmOrder",),
    ("ConfirmOrder", "ShipOrder"),
    ("ConfirmOrder", "ShipOrder", "DeliverOrder"),
    ("CancelOrder",),
)


def register(subcommands, common) -> None:
    parser = subcommands.add_parser(
        "demo",
        parents=[common],
        help="run the whole slice on generated data and print a summary",
        description="Generate customers and orders, submit them as commands, relay the events to the event "
        "log, project bronze/silver/gold with Spark, and print rows per table and a few orders.",
    )
    parser.add_argument("--customers", type=_positive, default=20, metavar="N", help="customers (default 20)")
    parser.add_argument("--orders", type=_positive, default=100, metavar="M", help="orders (default 100)")
    parser.add_argument("--seed", type=int, default=7, help="random seed for repeatable data (default 7)")
    parser.set_defaults(run=run)


def run(args, settings: Settings) -> int:
    started = time.monotonic()
    commands = generate_commands(args.customers, args.orders, random.Random(args.seed))
    accepted, rejected = _submit(settings, commands)
    log.info(f"[2/4] relaying the outbox to the event log at {settings.event_log_path}")
    from cqrs_orders import wiring

    published = wiring.relay(settings).drain()
    log.info(f"      {published} events published")

    log.info("[3/4] projecting bronze -> silver -> gold with Spark (first start takes ~20 s)")
    from cqrs_orders.delta_io import Table
    from cqrs_orders.pipeline.runner import run_once
    from cqrs_orders.query.views import register_views
    from cqrs_orders.spark import get_spark

    spark = get_spark("cqrs-orders-demo")
    run_once(spark, settings)

    log.info("[4/4] querying the read models")
    register_views(spark, settings)
    print(f"Warehouse: {settings.warehouse}")
    print(f"Commands: {accepted} accepted, {rejected} rejected; events published: {published}")
    print("Rows per table:")
    for name in TABLES:
        table = Table(settings.table(name))
        count = table.read(spark).count() if table.exists(spark) else 0
        print(f"  {name:<26} {count:>8}")
    print("A few orders from vw_order_summary:")
    spark.sql(
        "SELECT order_id, customer_name, status, item_count, total_amount, created_date "
        "FROM vw_order_summary ORDER BY total_amount DESC, order_id LIMIT 5"
    ).show(truncate=False)
    print("vw_daily_order_metrics:")
    spark.sql("SELECT * FROM vw_daily_order_metrics ORDER BY order_date").show(truncate=False)
    query = '"SELECT status, count(*) FROM silver_orders GROUP BY status"'
    explore = f"cqrs-orders sql --warehouse {settings.warehouse} {query}"
    print(f"Done in {time.monotonic() - started:.1f} s. Explore: {explore}")
    return ExitCode.OK


def generate_commands(customers: int, orders: int, rng: random.Random) -> list[dict]:
    """Register ``customers``, create ``orders`` for them, and move some orders along their lifecycle."""
    commands: list[dict] = []
    for number in range(1, customers + 1):
        commands.append(
            {
                "type": "RegisterCustomer",
                "commandId": f"demo-register-{number}",
                "customerId": f"cust-{number:04d}",
                "name": f"Customer {number}",
                "email": f"customer{number}@example.com",
            }
        )
    for number in range(1, orders + 1):
        order_id = f"order-{number:05d}"
        items = [
            {
                "sku": f"SKU-{rng.randint(1, 50):03d}",
                "quantity": rng.randint(1, 5),
                "unitPrice": str(Decimal(rng.randint(100, 9999)) / 100),
            }
            for _ in range(rng.randint(1, 3))
        ]
        commands.append(
            {
                "type": "CreateOrder",
                "commandId": f"demo-create-{number}",
                "orderId": order_id,
                "customerId": f"cust-{rng.randint(1, customers):04d}",
                "items": _distinct_skus(items),
                "currency": "EUR",
            }
        )
        for step in rng.choice(_LIFECYCLES):
            command = {"type": step, "commandId": f"demo-{step}-{number}", "orderId": order_id}
            if step == "CancelOrder":
                command["reason"] = "customer changed their mind"
            commands.append(command)
    return commands


def _distinct_skus(items: list[dict]) -> list[dict]:
    return list({item["sku"]: item for item in items}.values())


def _submit(settings: Settings, commands: list[dict]) -> tuple[int, int]:
    from cqrs_orders import wiring

    log.info(f"[1/4] submitting {len(commands)} commands to the write store at {settings.write_store_path}")
    handler = wiring.command_handler(settings)
    accepted = rejected = 0
    for done, command in enumerate(commands, start=1):
        result = handler.handle(command).to_dict()
        if result["status"] == "accepted":
            accepted += 1
        else:
            rejected += 1
            log.info(
                f"      rejected {command['type']}: {result['error']['code']} {result['error']['message']}"
            )
        if done % 100 == 0 or done == len(commands):
            log.info(f"      {done}/{len(commands)} submitted")
    return accepted, rejected


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)
