"""The session's Kafka broker: started once from Kafka's own jars, killed at the end of the run.

When it cannot start, every test that needs it fails with the reason (set ``CQRS_SKIP_KAFKA=1`` to skip
them on purpose instead).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest


def _broker_module():
    # Test folders are not packages (pytest's importlib mode), so load the sibling module by path.
    spec = importlib.util.spec_from_file_location(
        "cqrs_orders_test_kafka_broker", Path(__file__).with_name("broker.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


broker = _broker_module()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> str:
    """``host:port`` of a running single-node Kafka broker (plaintext, loopback)."""
    if os.environ.get("CQRS_SKIP_KAFKA") == "1":
        pytest.skip("CQRS_SKIP_KAFKA=1: the Kafka broker tests are skipped on request")
    stack = ExitStack()
    try:
        bootstrap = stack.enter_context(broker.running_broker(tmp_path_factory.mktemp("kafka")))
    except broker.BrokerUnavailable as error:
        pytest.fail(f"The local Kafka broker could not start: {error}", pytrace=False)
    with stack:
        yield bootstrap


@pytest.fixture
def kafka_topic(kafka_broker, request) -> str:
    """A fresh topic with 2 partitions, named after the test."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:100]
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    try:
        admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    return name
