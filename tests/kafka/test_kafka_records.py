"""Spark's Kafka source against a real broker yields the same record columns as the embedded event log."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from chispa import assert_df_equality
from kafka import KafkaProducer

from cqrs_orders.adapters.kafka_source import read_kafka_records
from cqrs_orders.config import Settings

pytestmark = pytest.mark.kafka

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def produce(bootstrap: str, topic: str, records: list[tuple[int, str | None, str, datetime]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for partition, key, value, at in records:
            producer.send(
                topic,
                key=key.encode() if key is not None else None,
                value=value.encode(),
                partition=partition,
                timestamp_ms=int(at.timestamp() * 1000),
            )
        producer.flush()
    finally:
        producer.close()


def test_records_arrive_with_body_position_time_and_key(spark, kafka_broker, kafka_topic, tmp_path):
    later = T0.replace(second=6)
    produce(
        kafka_broker,
        kafka_topic,
        [(0, "order-1", '{"a":1}', T0), (1, "order-2", '{"b":2}', T0), (0, "order-1", "not json", later)],
    )
    settings = Settings.from_env(
        warehouse=tmp_path,
        env={"CQRS_SOURCE": "kafka", "KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "EVENTHUB_NAME": kafka_topic},
    )
    sink = str(tmp_path / "records")

    query = (
        read_kafka_records(spark, settings)
        .writeStream.format("delta")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start(sink)
    )
    query.awaitTermination(120)

    expected = spark.createDataFrame(
        [
            ('{"a":1}', 0, 0, T0, "order-1"),
            ("not json", 0, 1, later, "order-1"),
            ('{"b":2}', 1, 0, T0, "order-2"),
        ],
        "body string, partition int, offset bigint, enqueued_time timestamp, partition_key string",
    )
    actual = spark.read.format("delta").load(sink)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
