"""Building the Kafka source options: Event Hubs over SASL_SSL, a plaintext broker, or a clear error.

No network: these only build options (and one DataFrame plan, which Spark creates without connecting).
"""

from __future__ import annotations

import contextlib
import io
import logging

import pytest

from cqrs_orders.adapters.kafka_source import kafka_options, read_kafka_records
from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError

KEY = "s3cr3tKeyValueXyz0123456789abcdefABCDEF+/="
CONNECTION = (
    f"Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey={KEY}"
)


def settings_with(tmp_path, **env) -> Settings:
    return Settings.from_env(warehouse=tmp_path, env={"CQRS_SOURCE": "kafka", **env})


def test_event_hubs_options_come_from_the_connection_string(tmp_path):
    options = kafka_options(
        settings_with(tmp_path, EVENTHUB_CONNECTION=CONNECTION, EVENTHUB_NAME="orders"), False
    )

    assert options["kafka.bootstrap.servers"] == "orders-ns.servicebus.windows.net:9093"
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.mechanism"] == "PLAIN"
    assert options["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="$ConnectionString" password="{CONNECTION}";'
    )
    assert options["subscribe"] == "orders"
    assert options["startingOffsets"] == "earliest"
    assert options["failOnDataLoss"] == "true"
    assert options["maxOffsetsPerTrigger"] == "100000"  # CQRS_MAX_RECORDS_PER_BATCH's default


def test_databricks_uses_its_shaded_login_module(tmp_path):
    options = kafka_options(settings_with(tmp_path, EVENTHUB_CONNECTION=CONNECTION), on_databricks=True)

    assert options["kafka.sasl.jaas.config"].startswith(
        "kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule required "
    )


def test_a_plaintext_broker_needs_only_its_address(tmp_path):
    options = kafka_options(
        settings_with(tmp_path, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9092", EVENTHUB_NAME="t")
    )

    assert dict(options) == {
        "kafka.bootstrap.servers": "127.0.0.1:9092",
        "subscribe": "t",
        "startingOffsets": "earliest",
        "failOnDataLoss": "true",
        "maxOffsetsPerTrigger": "100000",  # CQRS_MAX_RECORDS_PER_BATCH's default
    }


def test_the_connection_string_wins_over_a_plain_broker(tmp_path):
    options = kafka_options(
        settings_with(tmp_path, EVENTHUB_CONNECTION=CONNECTION, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9092"),
        False,
    )

    assert options["kafka.security.protocol"] == "SASL_SSL"


def test_no_broker_configured_says_what_to_set(tmp_path):
    with pytest.raises(ConfigurationError, match=r"EVENTHUB_CONNECTION .* or KAFKA_BOOTSTRAP_SERVERS"):
        kafka_options(settings_with(tmp_path))


@pytest.mark.parametrize(
    "connection",
    [f"HostName=orders-ns;SharedAccessKey={KEY}", f"Endpoint=https://orders-ns/;SharedAccessKey={KEY}"],
    ids=["no-endpoint", "not-a-service-bus-endpoint"],  # ids, so test names do not carry the key either
)
def test_a_malformed_connection_string_is_rejected_without_echoing_it(tmp_path, connection):
    with pytest.raises(ConfigurationError, match="not an Event Hubs connection string") as raised:
        kafka_options(settings_with(tmp_path, EVENTHUB_CONNECTION=connection), False)

    assert KEY not in str(raised.value)


def test_a_connection_string_for_another_event_hub_is_rejected(tmp_path):
    scoped = CONNECTION + ";EntityPath=payments"
    with pytest.raises(ConfigurationError, match="'payments' but EVENTHUB_NAME is 'orders'"):
        kafka_options(settings_with(tmp_path, EVENTHUB_CONNECTION=scoped, EVENTHUB_NAME="orders"), False)


def test_the_secret_never_shows_in_reprs_logs_or_plans(tmp_path, spark, caplog):
    settings = settings_with(tmp_path, EVENTHUB_CONNECTION=CONNECTION)
    options = kafka_options(settings, False)
    assert KEY not in repr(options) and KEY not in str(options)
    assert "kafka.sasl.jaas.config" in repr(options)  # masked, not dropped

    with caplog.at_level(logging.DEBUG, logger="cqrs_orders"):
        records = read_kafka_records(spark, settings)  # builds the plan; connects only when started
    plan = io.StringIO()
    with contextlib.redirect_stdout(plan):
        records.explain(extended=True)

    assert "kafka.security.protocol" in caplog.text
    for shown in (caplog.text, repr(records), plan.getvalue()):
        assert KEY not in shown
    assert records.columns == ["body", "partition", "offset", "enqueued_time", "partition_key"]
