"""Bounded catch-up on Kafka: ``CQRS_MAX_RECORDS_PER_BATCH`` becomes ``maxOffsetsPerTrigger``, so a backlog
many times the limit is read in batches of at most the limit, continuous or ``--once`` (availableNow), and
the lag monitor sees the bus backlog shrink between runs. (The embedded log's: ``tests/pipeline``.)"""

from __future__ import annotations

import json
import threading

from kafka import KafkaProducer

from cqrs_orders.config import Settings
from cqrs_orders.envelope import LineItem, OrderState, OrderStatus, new_event
from cqrs_orders.pipeline.runner import run_continuous, run_once

LIMIT = 50
BACKLOG = 600  # 300 on each of the topic's 2 partitions: every batch takes 25 + 25


class Batches:
    """Polls the session's streaming queries every 20 ms (the engine's listener events can arrive seconds
    late) for the numInputRows of every micro-batch with input; sets ``stop`` once ``stop_after`` ran."""

    def __init__(self, spark, stop_after: int):
        self.spark, self.rows, self.stop, self.stop_after = spark, [], threading.Event(), stop_after
        self._queries, self._counted, self._done, self._lock = {}, set(), threading.Event(), threading.Lock()
        self._thread = threading.Thread(target=self._poll, name="batches", daemon=True)

    def __enter__(self) -> Batches:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()
        self.record()

    def _poll(self) -> None:
        while not self._done.wait(0.02):
            for query in self.spark.streams.active:
                self._queries.setdefault(str(query.runId), query)  # kept: read again once it ended
            self.record()

    def record(self) -> None:
        with self._lock:  # the poller and the test's thread
            for run_id, query in list(self._queries.items()):
                for progress in query.recentProgress:
                    if progress.numInputRows and (run_id, progress.batchId) not in self._counted:
                        self._counted.add((run_id, progress.batchId))
                        self.rows.append(progress.numInputRows)
            if len(self.rows) >= self.stop_after:
                self.stop.set()


def produce_backlog(broker: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=20)
    at = OrderState(
        orderId="order-0", customerId="cust-1", status=OrderStatus("Created"),
        items=(LineItem(sku="A", quantity=1, unitPrice="2.50"),), currency="EUR",
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

    with Batches(spark, stop_after=2) as batches:
        assert bus_backlog() is None  # Kafka's end offsets are known from the projection's first batch on
        deadline = threading.Timer(300, batches.stop.set)  # the test must not hang if no batch ever runs
        deadline.start()
        try:  # a trigger every 10 s: the runner stops in the pause between two batches
            run_continuous(spark, bounded, trigger_seconds=10, stop=batches.stop)
        finally:
            deadline.cancel()
        batches.record()
        first = list(batches.rows)
        after_first = bus_backlog()
        rest = run_once(spark, bounded)  # `project --once`: availableNow, in batches of the limit too
        after_all = bus_backlog()
    print(json.dumps({"batches": batches.rows, "lag": [after_first, after_all]}))  # shown with -s

    assert len(first) == 2 and all(rows <= LIMIT for rows in batches.rows), batches.rows
    assert batches.rows == [LIMIT] * (BACKLOG // LIMIT)  # 25 + 25 each: exactly the limit, every record once
    assert BACKLOG > after_first == BACKLOG - sum(first) > after_all == 0
    assert rest["projection_input_rows"] == after_first and rest["silver_orders"] == BACKLOG
