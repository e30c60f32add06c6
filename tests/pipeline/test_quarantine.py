"""``cqrs-orders quarantine list | replay | acknowledge`` on a warehouse the real micro-batch function filled.

Each Spark test builds the same small lake (:func:`lake`): a batch of the projection quarantines two records
(a version sent as a string, a truncated body), and two rows are added as an earlier release would have
quarantined them (one that passes today's validation, one that fails it for another reason). The tests
without Spark check the arguments the CLI refuses before starting it.
"""

from __future__ import annotations

import getpass
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import pytest
from pyspark.testing import assertDataFrameEqual

from cqrs_orders.cli import build_parser
from cqrs_orders.delta_io import table
from cqrs_orders.ops import measures
from cqrs_orders.ops.lag import measure_lag
from cqrs_orders.pipeline import quarantine
from cqrs_orders.pipeline.quarantine import QUARANTINE, Selection, described, select_records
from cqrs_orders.pipeline.tables import SCHEMAS, ensure_tables

E = {name: str(uuid.UUID(int=number)) for number, name in enumerate(("v1", "v2", "v3", "cut", "o2", "o3"), 1)}
OLD = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)  # when "an earlier release" quarantined its rows
ENQUEUED = datetime(2025, 1, 1, 11, 59, tzinfo=timezone.utc)
NOW = datetime(2025, 3, 1, tzinfo=timezone.utc)
TABLES = ("bronze_events", "bronze_quarantine", "silver_orders", "silver_customers")


@dataclass
class Lake:
    settings: object
    bodies: dict[str, str]


def string_version(body: str) -> str:
    """The body with its version sent as a JSON string: ``version_is_integer`` fails."""
    version = json.loads(body)["version"]
    return body.replace(f'"version":{version},', f'"version":"{version}",', 1)


@pytest.fixture
def lake(spark, settings, events, batches) -> Lake:
    """Offsets 0-3 through the projection's batch function: order-1 v1 and v3 to bronze and silver; v2
    (version as a string) and a truncated body to the quarantine. Offsets 4-5 written straight into the
    quarantine with reasons today's validation no longer gives: order-2 v1 (valid now) and order-3 v1
    (its version a string: it fails, for another reason)."""
    order = events.order
    bodies = {
        "v1": order("order-1", 1, event_id=uuid.UUID(E["v1"])),
        "v2": string_version(order("order-1", 2, event_id=uuid.UUID(E["v2"]))),
        "v3": order("order-1", 3, event_id=uuid.UUID(E["v3"])),
        "cut": f'{{"eventId":"{E["cut"]}","aggregateId":"order-9","aggregateType":"Ord',
        "o2": order("order-2", 1, event_id=uuid.UUID(E["o2"])),
        "o3": string_version(order("order-3", 1, event_id=uuid.UUID(E["o3"]))),
    }
    ensure_tables(spark, settings)
    batches.project(settings, 0, *(bodies[k] for k in ("v1", "v2", "v3", "cut")), writer="stream")
    earlier = [
        (bodies["o2"], 0, 4, ENQUEUED, "order-2", ["data_matches_state_schema"], OLD),
        (bodies["o3"], 0, 5, ENQUEUED, "order-3", ["event_type_known"], OLD),
    ]
    rows = spark.createDataFrame(earlier, SCHEMAS["bronze_quarantine"])
    table(settings, "bronze_quarantine").save(rows.write.format("delta").mode("append"))
    return Lake(settings, bodies)


def snapshot(spark, settings) -> dict:
    """Each table's Delta version and rows: what "changes nothing" is checked against."""
    return {
        name: (table(settings, name).version(spark), table(settings, name).read(spark).collect())
        for name in (*TABLES, "ops_quarantine_acknowledgements")
        if table(settings, name).exists(spark)
    }


# --- list ----------------------------------------------------------------------------------------------


def test_list_shows_every_record_with_its_reasons_and_filters_them(lake, cli):
    everything = cli("quarantine", "list", "--json")
    assert everything.exit_code == 0, everything.stderr
    records = {r["offset"]: r for r in everything.json_lines()}
    assert sorted(records) == [1, 3, 4, 5]
    # The body is read leniently: the string version still shows, the truncated body still names its event.
    assert (records[1]["eventId"], records[1]["aggregateId"], records[1]["version"]) == (
        E["v2"],
        "order-1",
        2,
    )
    assert records[1]["reasons"] == ["version_is_integer"]
    assert records[3]["eventId"] == E["cut"] and records[3]["aggregateId"] == "order-9"
    assert records[3]["reasons"] == ["body_is_json_object"] and records[3]["version"] is None
    assert records[4]["ingestTime"] == "2025-01-01T12:00:00Z" and records[4]["acknowledged"] is None
    assert records[5]["body"] == lake.bodies["o3"] and records[5]["partitionKey"] == "order-3"

    def offsets(*criteria: str) -> list[int]:
        result = cli("quarantine", "list", "--json", *criteria)
        assert result.exit_code == 0, result.stderr
        return sorted(r["offset"] for r in result.json_lines())

    assert offsets("--reason", "body_is_json_object") == [3]
    assert offsets("--aggregate", "order-1") == [1]
    assert offsets("--event-ids", f"{E['o2']}, {E['o3']}") == [4, 5]
    assert offsets("--since", "2025-01-02") == [1, 3]  # quarantined by the batch, now
    assert offsets("--until", "2025-01-02", "--aggregate", "order-3") == [5]
    assert offsets("--time", "enqueued", "--since", "2025-01-01T11:59:00Z") == [4, 5]  # others: unknown
    assert offsets("--time", "enqueued", "--until", "2025-01-01T11:59:00Z") == []  # --until excludes

    text = cli("quarantine", "list", "--limit", "1")
    assert text.exit_code == 0, text.stderr
    [line] = text.stdout.splitlines()
    assert "offset 4" in line and "order-2" in line and "failed: data_matches_state_schema" in line
    assert "showing the first 1 records only" in text.stderr


def test_list_on_a_new_warehouse_shows_nothing_and_creates_nothing(cli, settings, spark):
    """What the bundle's job does when started with its defaults on a fresh schema."""
    result = cli("quarantine", "list", "--event-ids=", "--reason=", "--since=", "--time=")
    assert (result.exit_code, result.stdout) == (0, ""), result.stderr
    assert not table(settings, QUARANTINE).exists(spark)


def test_described_reads_what_a_body_has_and_leaves_the_rest_null(spark):
    """A string version is read as its number; a body cut off mid-object is scanned (escapes as sent)."""
    rows = spark.createDataFrame(
        [
            ('{"eventId": "e-1", "aggregateId": "a-1", "version": "7"}', 0, 0, None, None, ["x"], OLD),
            (
                '{"eventId": "e-2", "version": 3, "aggregateId": "a-\\"2\\"", "data": {',
                0,
                1,
                None,
                None,
                ["y"],
                OLD,
            ),
            ("not json at all", 0, 2, None, None, ["body_is_json_object"], OLD),
        ],
        SCHEMAS["bronze_quarantine"],
    )
    got = select_records(described(rows), Selection(reason="y")).select(
        "event_id", "aggregate_id", "version", "aggregate_type"
    )
    expected = spark.createDataFrame(
        [("e-2", 'a-\\"2\\"', 3, None)],
        "event_id string, aggregate_id string, version bigint, aggregate_type string",
    )
    assertDataFrameEqual(got, expected)
    assert [r.version for r in described(rows).orderBy("offset").collect()] == [7, 3, None]


# --- replay --------------------------------------------------------------------------------------------


def test_replay_after_a_fix_projects_the_record_once_and_requarantines_what_still_fails(lake, cli, spark):
    settings = lake.settings
    bronze_before = table(settings, "bronze_events").read(spark).collect()

    first = cli("quarantine", "replay", E["o2"], E["o3"])
    assert first.exit_code == 0, first.stderr
    assert first.json_lines() == [
        {"chosen": 2, "replayed": 1, "reasonsChanged": 1, "unchanged": 0, "alreadyInBronze": []}
    ]
    # order-2 v1 passes now: in bronze (once) and silver, out of the quarantine.
    bronze = table(settings, "bronze_events").read(spark)
    added = bronze.where("offset = 4").select("event_id", "aggregate_id", "version", "body")
    assertDataFrameEqual(
        added,
        spark.createDataFrame([(E["o2"], "order-2", 1, lake.bodies["o2"])], added.schema),
    )
    assert bronze.count() == len(bronze_before) + 1
    silver = table(settings, "silver_orders").read(spark).select("order_id", "version", "last_event_id")
    assertDataFrameEqual(
        silver,
        spark.createDataFrame([("order-1", 3, E["v3"]), ("order-2", 1, E["o2"])], silver.schema),
    )
    # order-3 v1 still fails, for today's reason, with a new quarantine time; the others are untouched.
    quarantine = table(settings, "bronze_quarantine").read(spark)
    reasons = {r.offset: (r.failed_expectations, r.ingest_time) for r in quarantine.collect()}
    assert sorted(reasons) == [1, 3, 5]
    assert reasons[5][0] == ["version_is_integer"] and reasons[5][1].astimezone(timezone.utc) > OLD
    # Every record of the bus is in bronze or in the quarantine, once.
    positions = bronze.select("offset").union(quarantine.select("offset")).collect()
    assert sorted(r.offset for r in positions) == [0, 1, 2, 3, 4, 5]
    assert table(settings, "gold_daily_order_metrics").read(spark).first().order_count == 2

    # Replaying the same records again changes nothing: no table gets a new version or other rows.
    before = snapshot(spark, settings)
    second = cli("quarantine", "replay", E["o2"], E["o3"])
    assert second.exit_code == 0, second.stderr
    assert second.json_lines() == [
        {"chosen": 1, "replayed": 0, "reasonsChanged": 0, "unchanged": 1, "alreadyInBronze": [E["o2"]]}
    ]
    after = snapshot(spark, settings)
    assert after.keys() == before.keys()
    for name, (version, rows) in before.items():
        assert after[name][0] == version, name
        assertDataFrameEqual(after[name][1], rows)


def test_a_replay_stopped_before_its_quarantine_update_finishes_once_when_run_again(lake, spark, monkeypatch):
    """The batch wrote bronze and silver, then the run died; meanwhile the stream quarantined another record.
    The same replay again skips the writes already done (Delta's transaction ids) and finishes."""
    settings, selection = lake.settings, Selection(event_ids=(E["o2"],))

    def dies(*_args):
        raise RuntimeError("the driver died here")

    with monkeypatch.context() as patched:
        patched.setattr(quarantine, "_replace_rows", dies)
        with pytest.raises(RuntimeError):
            quarantine.replay(spark, settings, selection)
    late = spark.createDataFrame(
        [("late", 0, 6, None, None, ["body_is_json_object"], NOW)], SCHEMAS[QUARANTINE]
    )
    table(settings, QUARANTINE).save(late.write.format("delta").mode("append"))

    assert quarantine.replay(spark, settings, selection).replayed == 1
    bronze = table(settings, "bronze_events").read(spark)
    assert bronze.where("offset = 4").count() == 1  # once, though the batch ran twice
    offsets = sorted(r.offset for r in table(settings, QUARANTINE).read(spark).select("offset").collect())
    assert offsets == [1, 3, 5, 6]


def test_replay_by_criteria_leaves_records_that_fail_as_before_alone(lake, cli, spark):
    before = snapshot(spark, lake.settings)
    result = cli("quarantine", "replay", "--aggregate", "order-1")  # v2: its version is still a string
    assert result.exit_code == 0, result.stderr
    assert result.json_lines()[0] == {
        "chosen": 1, "replayed": 0, "reasonsChanged": 0, "unchanged": 1, "alreadyInBronze": []
    }  # fmt: skip
    after = snapshot(spark, lake.settings)
    for name in TABLES:
        assert after[name][0] == before[name][0], name


# --- acknowledge ---------------------------------------------------------------------------------------


def test_acknowledge_closes_the_version_gap_and_changes_nothing_else(lake, cli, spark):
    settings = lake.settings
    gap = {
        p.projection: asdict(p) for p in measure_lag(spark, settings, 60, now=NOW, record=False).projections
    }
    assert gap["silver_orders"]["version_gaps"] == 1  # order-1: v1 and v3 in bronze, v2 quarantined
    before = snapshot(spark, settings)

    result = cli(
        "quarantine", "acknowledge", E["v2"], "--reason", "sent by the 1.2 producer bug; re-sent as v3"
    )
    assert result.exit_code == 0, result.stderr
    who = getpass.getuser()
    assert result.json_lines() == [
        {"acknowledged": [E["v2"]], "alreadyAcknowledged": [], "withoutVersion": [], "acknowledgedBy": who}
    ]
    [row] = table(settings, "ops_quarantine_acknowledgements").read(spark).collect()
    assert (row.event_id, row.aggregate_type, row.aggregate_id, row.version) == (
        E["v2"],
        "Order",
        "order-1",
        2,
    )
    assert (row.partition, row.offset, row.acknowledged_by) == (0, 1, who)
    assert row.reason == "sent by the 1.2 producer bug; re-sent as v3"

    healed = {
        p.projection: asdict(p) for p in measure_lag(spark, settings, 60, now=NOW, record=False).projections
    }
    assert healed["silver_orders"]["version_gaps"] == 0
    assert "version_gaps" not in healed["silver_orders"]["breaches"]
    for name, figures in gap.items():  # every other figure as it was
        for key in figures:
            if key not in ("version_gaps", "breaches"):
                assert healed[name][key] == figures[key], (name, key)
        remaining = tuple(b for b in figures["breaches"] if b != "version_gaps")
        assert healed[name]["breaches"] == remaining, name
    after = snapshot(spark, settings)
    for name in TABLES:  # the record stays quarantined; bronze and silver untouched
        assert after[name][0] == before[name][0], name

    listed = {r["offset"]: r for r in cli("quarantine", "list", "--json").json_lines()}
    assert listed[1]["acknowledged"]["by"] == who and listed[3]["acknowledged"] is None

    again = cli("quarantine", "acknowledge", E["v2"], "--reason", "twice")
    assert again.exit_code == 0, again.stderr
    assert again.json_lines()[0]["alreadyAcknowledged"] == [E["v2"]]
    assert table(settings, "ops_quarantine_acknowledgements").read(spark).first().reason.startswith("sent by")


def test_acknowledge_refuses_event_ids_that_are_not_quarantined(lake, cli, spark):
    unknown = str(uuid.UUID(int=99))
    result = cli("quarantine", "acknowledge", E["v2"], unknown, "--reason", "lost")
    assert result.exit_code == 2
    assert unknown in result.stderr and "cqrs-orders quarantine list" in result.stderr
    in_bronze = cli("quarantine", "acknowledge", E["v1"], "--reason", "lost")
    assert in_bronze.exit_code == 2 and "is in bronze_events" in in_bronze.stderr
    replayed = cli("quarantine", "replay", unknown)
    assert replayed.exit_code == 2 and unknown in replayed.stderr
    assert table(lake.settings, "ops_quarantine_acknowledgements").read(spark).count() == 0  # nothing written


def test_an_acknowledged_version_fills_its_own_hole_and_nothing_more(spark):
    columns = "aggregate_type string, aggregate_id string, version bigint"
    events = spark.createDataFrame(
        [
            *[("Order", "a", v) for v in (1, 3)],  # v2 acknowledged: no gap left
            ("Order", "b", 1),  # v3 acknowledged, above the highest version: still no gap (none opened)
            *[("Order", "c", v) for v in (1, 2, 4)],  # v2 acknowledged but present: v3 is still missing
            *[("Order", "d", v) for v in (1, 4)],  # v2 acknowledged: v3 is still missing
        ],
        columns,
    )
    accepted = spark.createDataFrame(
        [("Order", "a", 2), ("Order", "b", 3), ("Order", "c", 2), ("Order", "d", 2), ("Customer", "a", 2)],
        columns,
    )
    expected = spark.createDataFrame(
        [("Order", "c", 4, 3, 1), ("Order", "d", 4, 2, 1)],
        "aggregate_type string, aggregate_id string, max_version bigint, distinct_versions bigint, "
        "missing bigint",
    )
    events.createOrReplaceTempView("bronze_events")  # the monitor's SQL reads the logical names
    accepted.createOrReplaceTempView("ops_quarantine_acknowledgements")
    assertDataFrameEqual(spark.sql(measures.version_gaps()), expected)
    accepted.limit(0).createOrReplaceTempView("ops_quarantine_acknowledgements")
    assert sorted(r.aggregate_id for r in spark.sql(measures.version_gaps()).collect()) == ["a", "c", "d"]


# --- arguments, without Spark --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("acknowledge", "e-1", "--reason", "  "), "needs a reason"),
        (("acknowledge", "--reason", "lost", "--event-ids="), "Name the event ids"),
        (("acknowledge", "e-1", "--reason", "lost", "--aggregate", "a"), "event ids only, not --aggregate"),
        (("replay",), "Choose the records to replay"),
        (("replay", "--reason", "no_such_check"), "is no expectation; the reasons are: body_within_1mib"),
        (("list", "--since", "2025-02-01", "--until", "2025-01-01"), "must come before --until"),
    ],
)
def test_bad_arguments_exit_2_with_what_to_do_before_spark_starts(cli, args, message):
    result = cli("quarantine", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("cqrs-orders quarantine: ") and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [("list", "--since", "yesterday"), ("list", "--limit", "0"), ("acknowledge", "e-1"), ("forget",)],
)
def test_malformed_arguments_are_usage_errors(cli, capsys, args):
    with pytest.raises(SystemExit) as refused:
        cli("quarantine", *args)
    assert refused.value.code == 2


def test_the_jobs_form_parses_with_every_parameter_blank():
    """The bundle's job passes every parameter on every run, blank when not given."""
    blank = ["--event-ids=", "--reason=", "--aggregate=", "--since=", "--until=", "--time="]
    args = build_parser().parse_args(["quarantine", "list", *blank])
    assert (args.more_event_ids, args.reason, args.aggregate, args.since, args.until) == (
        (),
        None,
        None,
        None,
        None,
    )
    args = build_parser().parse_args(
        ["quarantine", "acknowledge", "--event-ids=a, b c", "--reason=x", *blank[2:]]
    )
    assert (args.more_event_ids, args.reason, args.time) == (("a", "b", "c"), "x", "")
    args = build_parser().parse_args(["quarantine", "replay", "--since=2025-01-15T10:00:00+02:00"])
    assert args.since == datetime(2025, 1, 15, 8, tzinfo=timezone.utc)
