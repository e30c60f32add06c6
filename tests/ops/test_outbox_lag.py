"""The lag monitor's outbox measure: committed events the relay has not published, measured on the real
(SQLite) write store, recorded in ``ops_projection_lag`` next to the other measures (a table made by an
earlier version gains the columns), a breach failing the run with exit 3 and an alert that names it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from pyspark.sql.types import StructType

from cqrs_orders.adapters.event_log_publisher import EventLogPublisher
from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.ports import Commit
from cqrs_orders.application.relay import Relay
from cqrs_orders.delta_io import Table
from cqrs_orders.envelope import AggregateType, CustomerState, new_event
from cqrs_orders.ops.lag import LAG_SCHEMA
from cqrs_orders.pipeline.tables import SYNAPSE_COMPATIBLE_PROPERTIES

#: ``ops_projection_lag`` as the version before the outbox measure created it.
EARLIER_SCHEMA = StructType(LAG_SCHEMA.fields[:10])


def commit_at(customer_id: str, at: datetime) -> Commit:
    """A customer registered at ``at`` (the store keeps the event's time as the commit's)."""
    state = CustomerState(customerId=customer_id, name="Ada", email="a@b.io", createdAt=at, updatedAt=at)
    event = new_event("CustomerRegistered", state, 1, at=at)
    command_id = str(uuid.uuid4())
    outcome = {"commandId": command_id, "status": "accepted", "aggregateId": customer_id, "version": 1,
               "eventIds": [str(event.eventId)], "error": None}  # fmt: skip
    return Commit(command_id, "fp", "{}", AggregateType.CUSTOMER, customer_id, 0, [event], outcome)


def earlier_lag_table(spark, settings) -> None:
    """The table as an earlier version made it, with one row of its own."""
    from delta.tables import DeltaTable

    path = settings.table("ops_projection_lag").path
    builder = DeltaTable.createIfNotExists(spark).addColumns(EARLIER_SCHEMA).location(path)
    for key, value in SYNAPSE_COMPATIBLE_PROPERTIES.items():
        builder = builder.property(key, value)
    builder.execute()
    row = (datetime(2025, 1, 1, tzinfo=timezone.utc), "silver_orders", 1.0, 0, 0, 1.0, 0, 60.0, True, [])
    spark.createDataFrame([row], EARLIER_SCHEMA).write.format("delta").mode("append").save(path)


def test_an_outbox_the_relay_left_breaches_is_recorded_and_alerts(cli, spark, settings, monkeypatch):
    import cqrs_orders.ops.alerts

    earlier_lag_table(spark, settings)
    store = SqliteWriteStore(settings.write_store_path)
    now = datetime.now(timezone.utc)
    store.append(commit_at("cust-old", now - timedelta(seconds=300)))
    store.append(commit_at("cust-new", now - timedelta(seconds=10)))
    alerts: list[str] = []
    monkeypatch.setenv("CQRS_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setattr(cqrs_orders.ops.alerts, "send_webhook", lambda url, text: alerts.append(text))

    breached = cli("lag", "--json", "--threshold-seconds", "60")
    assert breached.exit_code == 3, breached.stderr
    (document,) = breached.json_lines()
    assert document["outbox"]["unpublished"] == 2 and document["outbox"]["error"] is None
    assert 300 <= document["outbox"]["oldest_age_seconds"] < 360
    for projection in document["projections"]:
        assert projection["breaches"] == ["outbox_lag"]  # nothing reached the bus: no other measure moved
        assert projection["outbox_unpublished"] == 2
    [alert] = alerts
    assert "silver_orders (outbox_lag); silver_customers (outbox_lag)" in alert
    assert "not publishing the outbox (outbox_lag): 2 events unpublished, the oldest for" in alert
    assert "outbox: BREACH: 2 events unpublished" in alert

    # The table of the earlier version gained the columns; its own row reads them as null.
    recorded = Table(settings.table("ops_projection_lag")).read(spark)
    assert recorded.schema == LAG_SCHEMA
    rows = recorded.orderBy("run_at", "projection").collect()
    assert [(r.outbox_unpublished, r.outbox_oldest_age_seconds is None) for r in rows] == [
        (None, True),  # the earlier version's row
        *[(2, False)] * 3,  # one per read model
    ]
    detail = spark.sql(f"DESCRIBE DETAIL {settings.table('ops_projection_lag').sql_name}").first()
    assert detail.minReaderVersion == 1 and detail.minWriterVersion == 2  # still what Synapse reads

    # Published: the outbox measure is healthy again (the bus now waits for the projection, another story).
    bus = EventLogPublisher(settings.event_log_path, settings.event_log_partitions)
    assert Relay(store, bus).drain() == 2
    store.close()
    after = cli("lag", "--json", "--threshold-seconds", "600")
    (document,) = after.json_lines()
    assert document["outbox"] == {"unpublished": 0, "oldest_age_seconds": None, "exact": True, "error": None}
    assert all("outbox_lag" not in p["breaches"] for p in document["projections"])
