"""Event Hubs over Kafka as a Databricks job sees it: the runtime's shaded Kafka client.

Databricks relocates its Kafka client under ``kafkashaded.``, so the JAAS line must name
``kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule`` there and the plain class locally.
Which one is chosen from the job's environment (``DATABRICKS_RUNTIME_VERSION``), through the same entry the
pipeline uses (``read_records``). The line is then read back by the Kafka client's own JAAS parser in the
session's JVM (the connection string holds ``;`` and ``=``, which must stay inside the quoted password).
The shaded class itself exists only on Databricks; what is checked here is that it is exactly the
relocation of the login module this Kafka client ships.
"""

from __future__ import annotations

import pytest

from cqrs_orders.adapters.kafka_source import kafka_options
from cqrs_orders.config import Settings
from cqrs_orders.pipeline.sources import read_records

CONNECTION = (
    "Endpoint=sb://orders-ns.servicebus.windows.net/;SharedAccessKeyName=listen;"
    "SharedAccessKey=FAKE-test-key+with/the=characters"  # not a secret: + / = are what JAAS must quote
)
LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


@pytest.mark.parametrize(
    ("runtime_version", "login_module"),
    [("18", f"kafkashaded.{LOGIN_MODULE}"), (None, LOGIN_MODULE)],
    ids=["databricks", "local"],
)
def test_the_jaas_line_names_the_login_module_of_the_client_that_runs_it(
    spark, tmp_path, monkeypatch, runtime_version, login_module
):
    if runtime_version:
        monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", runtime_version)
    else:
        monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    env = {"CQRS_SOURCE": "kafka", "EVENTHUB_CONNECTION": CONNECTION, "EVENTHUB_NAME": "orders"}
    settings = Settings.from_env(warehouse=tmp_path, env=env)

    assert read_records(spark, settings).isStreaming  # the job's own path builds the Kafka source
    jaas = kafka_options(settings)["kafka.sasl.jaas.config"]  # as read_records got them (no argument)

    jvm = spark._jvm
    entries = jvm.org.apache.kafka.common.security.JaasConfig("KafkaClient", jaas).getAppConfigurationEntry(
        "KafkaClient"
    )
    assert len(entries) == 1
    assert entries[0].getLoginModuleName() == login_module
    assert dict(entries[0].getOptions()) == {"username": "$ConnectionString", "password": CONNECTION}
    assert entries[0].getControlFlag().toString() == "LoginModuleControlFlag: required"
    loader = jvm.Thread.currentThread().getContextClassLoader()
    shipped = jvm.java.lang.Class.forName(LOGIN_MODULE, False, loader)  # raises if the client lacks it
    assert login_module.removeprefix("kafkashaded.") == shipped.getName()
