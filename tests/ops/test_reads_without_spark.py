"""``cqrs-orders lag`` and ``cqrs-orders quarantine list`` on a laptop read without Spark (issue 29).

The warehouse is written by ``deltalake`` alone, in the pipeline's table schemas, and each command runs as a
person starts it, in a process of its own whose environment cannot start a JVM (``JAVA_HOME`` names no
folder and no ``java`` is on the ``PATH``): a command that reached for Spark would fail there. The process
also says whether a Spark gateway was started, and the figures are checked, so a command that read nothing
cannot pass either. These tests are in the fast tier: they use no ``spark`` fixture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from pyspark.sql.pandas.types import to_arrow_schema

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.config import Settings
from cqrs_orders.pipeline.tables import SCHEMAS

NOW = datetime.now(timezone.utc).replace(microsecond=0)
#: Runs the CLI, then tells on stderr whether a Spark gateway (a JVM) was started in the process.
PROBE = (
    "import sys\n"
    "from cqrs_orders.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "from pyspark import SparkContext\n"
    "print('spark-gateway:', SparkContext._gateway is not None, file=sys.stderr)\n"
    "raise SystemExit(code)\n"
)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def append(settings: Settings, name: str, rows: list[dict]) -> None:
    schema = to_arrow_schema(SCHEMAS[name])
    table = pa.Table.from_pylist([{field: row.get(field) for field in schema.names} for row in rows], schema)
    write_deltalake(settings.table(name).path, table, mode="append")


def without_java() -> dict[str, str]:
    """This process's environment, minus the warehouse settings and any way to start a JVM."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CQRS_", "SPARK_"))}
    env["JAVA_HOME"] = "/nonexistent/java-home"
    env["PATH"] = os.pathsep.join(
        folder for folder in env.get("PATH", "").split(os.pathsep) if not (Path(folder) / "java").exists()
    )
    return env


def run(settings: Settings, *args: str) -> tuple[int, str, str]:
    finished = subprocess.run(
        [sys.executable, "-c", PROBE, *args, "--warehouse", str(settings.warehouse)],
        env=without_java(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "spark-gateway: False" in finished.stderr, finished.stderr
    return finished.returncode, finished.stdout, finished.stderr


@pytest.fixture
def warehouse(settings: Settings, lake_type) -> dict:
    """o-1 v1 applied and v2 in bronze only; o-2 v1 on the bus only; o-3 v1 and v3 in bronze, its v2
    quarantined (its version sent as a JSON string) and a body cut off mid-object quarantined too; the
    projection's last batch just now."""
    log = EventLog(settings.event_log_path, settings.event_log_partitions)
    order = lake_type.order_event
    o1v1, o1v2, o2 = order("o-1", 1, ago(300)), order("o-1", 2, ago(200)), order("o-2", 1, ago(100))
    o3v1, o3v2, o3v3 = order("o-3", 1, ago(290)), order("o-3", 2, ago(280)), order("o-3", 3, ago(270))
    string_version = o3v2.to_json().replace('"version":2,', '"version":"2",', 1)
    assert string_version != o3v2.to_json()
    cut = '{"eventId":"cut-1","aggregateId":"o-9","aggregateType":"Ord'
    events = (o1v1, o1v2, o3v1, o3v3, o2)
    positions = dict(zip(events, log.append([(e.aggregateId, e.to_json()) for e in events]), strict=True))
    quarantined = log.append([("o-3", string_version), (None, cut)])
    append(
        settings,
        "bronze_events",
        [
            {"body": e.to_json(), "partition": positions[e][0], "offset": positions[e][1],
             "enqueued_time": e.timestamp, "partition_key": e.aggregateId, "event_id": str(e.eventId),
             "event_type": e.eventType, "aggregate_type": e.aggregateType.value,
             "aggregate_id": e.aggregateId, "version": e.version, "event_time": e.timestamp,
             "ingest_time": ago(60)}
            for e in (o1v1, o1v2, o3v1, o3v3)
        ],
    )  # fmt: skip
    append(
        settings,
        "bronze_quarantine",
        [
            {"body": body, "partition": partition, "offset": offset, "enqueued_time": ago(280),
             "partition_key": key, "failed_expectations": [reason], "ingest_time": ago(60 - number)}
            for number, ((partition, offset), body, key, reason) in enumerate(
                zip(quarantined, (string_version, cut), ("o-3", None),
                    ("version_is_integer", "body_is_json_object"), strict=True))
        ],
    )  # fmt: skip
    append(
        settings,
        "silver_orders",
        [
            {"order_id": e.aggregateId, "customer_id": "cust-1", "status": "Created", "version": e.version,
             "last_event_id": str(e.eventId), "last_event_type": e.eventType,
             "last_event_time": e.timestamp, "projected_at": ago(60)}
            for e in (o1v1, o3v3)
        ],
    )  # fmt: skip
    # Now, not relative to NOW: staleness is measured on the wall clock, however late this test runs.
    batch = datetime.now(timezone.utc)
    append(settings, "ops_stream_progress", [{"query_name": "projection", "recorded_at": batch}])
    return {"o3v2": str(o3v2.eventId), "quarantined": quarantined}


def test_lag_measures_without_a_jvm_and_appends_its_rows(settings, warehouse):
    code, stdout, stderr = run(settings, "lag", "--json", "--threshold-seconds", "60")
    assert code == 3, stderr  # o-1 v2 and o-2 wait past the threshold
    report = json.loads(stdout)
    orders = {p["projection"]: p for p in report["projections"]}["silver_orders"]
    # Newest on the bus: o-2 (100 s ago, not in bronze yet); newest applied: o-3 v3 (270 s ago).
    assert orders["event_time_lag_seconds"] == 170
    assert (orders["bus_backlog"], orders["bronze_backlog"], orders["version_gaps"]) == (1, 1, 1)
    assert orders["breaches"] == ["event_time_lag", "bus_backlog", "bronze_backlog", "version_gaps"]
    assert 0 <= orders["staleness_seconds"] < 60  # the last batch just ran: not stale

    recorded = DeltaTable(settings.table("ops_projection_lag").path)
    assert recorded.to_pyarrow_table().num_rows == 3
    assert recorded.protocol().min_reader_version == 1
    assert recorded.metadata().configuration["delta.enableDeletionVectors"] == "false"

    # An acknowledged version is no gap any more; the run appends its rows again.
    append(
        settings,
        "ops_quarantine_acknowledgements",
        [{"event_id": warehouse["o3v2"], "aggregate_type": "Order", "aggregate_id": "o-3", "version": 2,
          "reason": "lost", "acknowledged_by": "ops", "acknowledged_at": NOW}],
    )  # fmt: skip
    code, stdout, stderr = run(settings, "lag", "--json")
    orders = {p["projection"]: p for p in json.loads(stdout)["projections"]}["silver_orders"]
    assert orders["version_gaps"] == 0 and "version_gaps" not in orders["breaches"], stderr
    assert DeltaTable(settings.table("ops_projection_lag").path).to_pyarrow_table().num_rows == 6


def test_quarantine_list_reads_without_a_jvm(settings, warehouse):
    code, stdout, stderr = run(settings, "quarantine", "list", "--json")
    assert code == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [(r["partition"], r["offset"]) for r in records] == [tuple(p) for p in warehouse["quarantined"]]
    string_version, cut = records
    # Read leniently: the string version still shows as its number, the cut body still names its event.
    assert (string_version["eventId"], string_version["aggregateId"], string_version["version"]) == (
        warehouse["o3v2"],
        "o-3",
        2,
    )
    assert string_version["reasons"] == ["version_is_integer"] and string_version["acknowledged"] is None
    assert (cut["eventId"], cut["aggregateId"], cut["version"]) == ("cut-1", "o-9", None)
    assert cut["ingestTime"] == (ago(59)).isoformat().replace("+00:00", "Z")

    code, stdout, stderr = run(settings, "quarantine", "list", "--aggregate", "o-3", "--reason", "")
    assert code == 0 and len(stdout.splitlines()) == 1 and "failed: version_is_integer" in stdout, stderr
    code, stdout, _ = run(settings, "quarantine", "list", "--json", "--since", ago(59.5).isoformat())
    assert [json.loads(line)["eventId"] for line in stdout.splitlines()] == ["cut-1"]


def test_quarantine_list_on_a_new_warehouse_shows_nothing_and_creates_nothing(settings):
    code, stdout, stderr = run(settings, "quarantine", "list", "--event-ids=", "--reason=", "--time=")
    assert (code, stdout) == (0, ""), stderr
    assert not Path(settings.table("bronze_quarantine").path).exists()
