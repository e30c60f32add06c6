"""Azure Event Hubs (or any Kafka broker) as the pipeline's source, through Spark's Kafka connector.

Event Hubs speaks the Kafka protocol on ``<namespace>.servicebus.windows.net:9093`` with SASL_SSL/PLAIN,
the literal user name ``$ConnectionString`` and the connection string as the password. Without a
connection string but with ``KAFKA_BOOTSTRAP_SERVERS`` the source reads a plaintext broker (the local
test broker). Either way it yields the same record columns as the embedded event log.

``failOnDataLoss`` stays on: if retention deleted records the stream has not read yet, the query must stop
loudly rather than skip them. The connection string never appears in a repr or a log line.

A micro-batch reads at most ``CQRS_MAX_RECORDS_PER_BATCH`` records (``maxOffsetsPerTrigger``: offsets are
dense on Event Hubs and Kafka, so offsets are records), spread over the partitions by their backlogs. The
connector rounds a partition's share below one record up to one, so that no partition starves: a batch can
exceed the limit by one record per partition with such a tiny share, so by fewer than the event hub's
partition count (a rounding, not a memory concern).
"""

from __future__ import annotations

import logging

from cqrs_orders.adapters.kafka_endpoint import CONNECTION_STRING_USER, kafka_endpoint
from cqrs_orders.config import Settings, running_on_databricks

log = logging.getLogger(__name__)

_JAAS_KEY = "kafka.sasl.jaas.config"
_LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SHADED_LOGIN_MODULE = "kafkashaded." + _LOGIN_MODULE  # Databricks shades its Kafka client
_REDACTION_CONF = "spark.sql.redaction.string.regex"
_PASSWORD_PATTERN = 'password="[^"]*"'


class KafkaOptions(dict):
    """Spark Kafka source options; the JAAS config (it holds the connection string) is masked in repr."""

    def __repr__(self) -> str:
        shown = {key: ("***" if key == _JAAS_KEY else value) for key, value in self.items()}
        return f"KafkaOptions({shown!r})"

    __str__ = __repr__


def kafka_options(settings: Settings, on_databricks: bool | None = None) -> KafkaOptions:
    """The ``spark.readStream.format("kafka")`` options for the configured Event Hub or broker."""
    common = {
        "subscribe": settings.kafka_topic,
        "startingOffsets": "earliest",
        "failOnDataLoss": "true",
        "maxOffsetsPerTrigger": str(settings.max_records_per_batch),  # bounded catch-up
    }
    endpoint = kafka_endpoint(settings, "CQRS_SOURCE=kafka")
    if not endpoint.is_event_hubs:
        return KafkaOptions({"kafka.bootstrap.servers": endpoint.bootstrap_servers, **common})
    if on_databricks is None:
        on_databricks = running_on_databricks()
    login_module = _SHADED_LOGIN_MODULE if on_databricks else _LOGIN_MODULE
    password = endpoint.connection.reveal()
    jaas = f'{login_module} required username="{CONNECTION_STRING_USER}" password="{password}";'
    return KafkaOptions(
        {
            "kafka.bootstrap.servers": endpoint.bootstrap_servers,
            "kafka.security.protocol": "SASL_SSL",
            "kafka.sasl.mechanism": "PLAIN",
            _JAAS_KEY: jaas,
            # Microsoft's recommended client settings: Event Hubs closes connections idle for 240 s,
            # and shorter timeouts cause consumer rebalances.
            "kafka.request.timeout.ms": "60000",
            "kafka.session.timeout.ms": "30000",
            "kafka.connections.max.idle.ms": "180000",
            "kafka.metadata.max.age.ms": "180000",
            **common,
        }
    )


def read_kafka_records(spark, settings: Settings):
    """Stream the topic as records: body, partition, offset, enqueued_time, partition_key."""
    options = kafka_options(settings)
    log.info("Reading Kafka topic %s with options %r", settings.kafka_topic, options)
    _redact_passwords_in_plans(spark)
    return (
        spark.readStream.format("kafka")
        .options(**options)
        .load()
        .selectExpr(
            "CAST(value AS STRING) AS body",
            "CAST(partition AS INT) AS partition",
            "CAST(offset AS BIGINT) AS offset",
            "CAST(timestamp AS TIMESTAMP) AS enqueued_time",
            "CAST(key AS STRING) AS partition_key",
        )
    )


def _redact_passwords_in_plans(spark) -> None:
    """Make ``explain()`` hide the JAAS password: Spark masks the option itself in one place of the plan
    but prints the raw options map of the streaming relation, connection string included."""
    pattern = spark.conf.get(_REDACTION_CONF, None)
    if not pattern:
        spark.conf.set(_REDACTION_CONF, _PASSWORD_PATTERN)
    elif _PASSWORD_PATTERN not in pattern:
        spark.conf.set(_REDACTION_CONF, f"{pattern}|{_PASSWORD_PATTERN}")
