"""The bus lost events it had accepted (issue 33, point 7): the runbook in ``docs/operations.md`` ("The bus
lost events"), step by step on real parts. Events reach the bus, some are projected, then the topic is
deleted and made again (what an outage past retention does to the unread part); the lag monitor names the
loss; the projection's checkpoint is moved aside, ``cqrs-orders relay --from TIME`` publishes again what the
projection never read, and the projection brings silver back to the write store, each event once in bronze.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.delta_io import Table
from cqrs_orders.exit_codes import ExitCode
from cqrs_orders.ops.bus import DATA_LOST
from cqrs_orders.pipeline.runner import CHECKPOINT


def test_events_the_bus_lost_are_republished_from_the_write_store_once_each(
    spark, kafka_broker, kafka_topic, cli, settings
):
    flags = (
        *("--source", "kafka", "--publisher", "kafka"),
        *("--kafka-bootstrap-servers", kafka_broker, "--eventhub-name", kafka_topic),
    )

    def run(*args: str):
        return cli(*args, *flags)

    # Read by the projection before the loss.
    _submit(
        run, {"type": "RegisterCustomer", "customerId": "cust-1", "name": "Ada", "email": "a@example.com"}
    )
    _submit(run, {"type": "UpdateCustomer", "customerId": "cust-1", "name": "Ada L."})
    assert "published 2 events" in run("relay").stdout
    assert run("project", "--once").exit_code == ExitCode.OK

    # Published, never read: lost with the topic.
    time.sleep(0.01)
    lost_since = datetime.now(timezone.utc)
    _submit(run, {"type": "UpdateCustomer", "customerId": "cust-1", "name": "Ada Lovelace"})
    _submit(run, {"type": "RegisterCustomer", "customerId": "cust-2", "name": "Bo", "email": "b@example.com"})
    assert "published 2 events" in run("relay").stdout
    _make_the_topic_again(kafka_broker, kafka_topic)

    found = run("lag", "--json")
    report = json.loads(found.stdout)
    assert found.exit_code == ExitCode.LAG_BREACH, found.stdout
    assert report["bus"]["reset_partitions"] and DATA_LOST in report["projections"][0]["breaches"]

    # The runbook: checkpoint aside, republish from the first lost commit, project.
    checkpoint = Path(settings.checkpoint(CHECKPOINT))
    shutil.move(checkpoint, checkpoint.with_name(checkpoint.name + ".lost"))
    republished = run("relay", "--from", lost_since.isoformat())
    assert republished.exit_code == ExitCode.OK
    assert republished.stdout.startswith("published 2 events"), republished.stdout  # exactly the lost ones
    assert run("project", "--once").exit_code == ExitCode.OK

    store = SqliteWriteStore(settings.write_store_path)
    try:
        expected = {
            customer: (snapshot.version, snapshot.state.name)
            for customer in ("cust-1", "cust-2")
            if (snapshot := store.load(customer)) is not None
        }
        committed = store.counts()["events"]
    finally:
        store.close()
    silver = Table(settings.table("silver_customers")).read(spark).collect()
    assert {row.customer_id: (row.version, row.customer_name) for row in silver} == expected
    assert expected == {"cust-1": (3, "Ada Lovelace"), "cust-2": (1, "Bo")}
    bronze = [row.event_id for row in Table(settings.table("bronze_events")).read(spark).collect()]
    assert len(bronze) == len(set(bronze)) == committed == 4  # every committed event, once

    healed = run("lag")
    assert healed.exit_code == ExitCode.OK, healed.stdout


def _submit(run, command: dict) -> None:
    result = run("submit", json.dumps(command))
    assert result.exit_code == ExitCode.OK, result.stdout


def _make_the_topic_again(broker: str, topic: str) -> None:
    """Delete the topic and create it again, empty: its offsets start at 0 again."""
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:
        admin.delete_topics([topic])
        deadline = time.monotonic() + 60
        while True:
            try:
                admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
                return
            except TopicAlreadyExistsError:  # the deletion is still under way
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()
