"""Bounded catch-up on Kafka: ``CQRS_MAX_RECORDS_PER_BATCH`` becomes ``maxOffsetsPerTrigger``, so a backlog
many times the limit is read in batches of at most the limit, continuous or ``--once`` (availableNow), and
the lag monitor sees the bus backlog shrink between runs. (The embedded log's: ``tests/pipeline``.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from kafka import KafkaProducer

from cqrs_orders.config import Settings
from cqrs_orders.envelope import LineItem, OrderState, OrderStatus, new_event
from cqrs_orders.pipeline.runner import run_once

LIMIT = 50
BACKLOG = 600  # 300 on each of the topic's 2 partitions: every batch takes 25 + 25


def _pipeline_catch_up():
    # Test folders are not packages (pytest's importlib mode): the embedded log's catch-up support holds the
    # batch watcher both tests use; load its module by path.
    path = Path(__file__).parents[1] / "pipeline" / "catch_up_support.py"
    spec = importlib.util.spec_from_file_location("cqrs_orders_test_pipeline_catch_up", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Batches = _pipeline_catch_up().Batches


def produce_backlog(broker: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=20)
    at = OrderState(
        orderId="order-0", customerId="cust-1", status=OrderStatus("Created"),
        items=(LineItem(sku="A", quantity=1, price="2.50"),), currency="EUR",
        createdAt="2026-03-01T09:00:00Z", updatedAt="2026-03-01T09:00:00Z",
    )  # fmt: skip
    for n in range(BACKLOG):
        state = at.model_copy(update={"orderId": f"order-{n}"})
        body = new_event("OrderCreated", state, 1, at=at.createdAt).to_json()
        producer.send(topic, key=state.orderId.encode(), value=body.encode(), partition=n % 2)
    producer.flush()
    producer.close()


def test_a_kafka_backlog_is_read_in_batches_of_the_limit_and_the_lag_shrinks(
    spark, kafka_broker, kafka_topic, settings, cli
):
    produce_backlog(kafka_broker, kafka_topic)
    flags = ("--source", "kafka", "--kafka-bootstrap-servers", kafka_broker, "--eventhub-name", kafka_topic)
    overrides = {
        "CQRS_SOURCE": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "EVENTHUB_NAME": kafka_topic,
    }
    bounded = Settings.from_env(
        settings.warehouse, env={}, overrides={**overrides, "CQRS_MAX_RECORDS_PER_BATCH": str(LIMIT)}
    )

    def bus_backlog() -> int | None:
        [backlog] = {p["bus_backlog"] for p in json.loads(cli("lag", "--json", *flags).stdout)["projections"]}
        return backlog

    with Batches(spark) as batches:
        assert bus_backlog() == BACKLOG  # read off the broker: known before the projection's first batch
        first = [batch["rows"] for batch in batches.run(bounded, 2)]
        after_first = bus_backlog()
        rest = run_once(spark, bounded)  # `project --once`: availableNow, in batches of the limit too
        after_all = bus_backlog()
    rows = [batch["rows"] for batch in batches.seen]
    print(json.dumps({"batches": rows, "lag": [after_first, after_all]}))  # shown with -s

    # A run stops between batches once it saw two; on a loaded machine a batch can start before the stop is
    # seen, so a run may read a third: what matters is that the lag falls by exactly what the run read.
    assert 2 <= len(first) < len(rows) and all(n <= LIMIT for n in rows), rows
    assert rows == [LIMIT] * (BACKLOG // LIMIT)  # 25 + 25 each: exactly the limit, every record once
    assert BACKLOG > after_first == BACKLOG - sum(first) > after_all == 0
    assert rest["projection_input_rows"] == after_first and rest["silver_orders"] == BACKLOG
