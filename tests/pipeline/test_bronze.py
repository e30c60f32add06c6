"""Bronze expectations: each quarantine reason alone, valid events (with unknown extra fields) accepted."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from cqrs_orders.pipeline.bronze import (
    EXPECTATION_NAMES,
    HEADER,
    MAX_BODY_BYTES,
    to_bronze,
    to_quarantine,
    validate_exactly,
    validate_records,
)
from cqrs_orders.pipeline.read_models import read_model
from cqrs_orders.pipeline.runner import STATE_CHECKS
from cqrs_orders.pipeline.tables import RECORD_SCHEMA, SCHEMAS

VALID = {
    "eventId": "6b8860f3-c83b-47d0-80b5-9eb8e672b3bf",
    "eventType": "OrderConfirmed",
    "aggregateId": "order-1",
    "aggregateType": "Order",
    "version": 2,
    "timestamp": "2025-01-15T10:00:00.123456Z",
    "correlationId": "corr-1",
    "causationId": "cmd-1",
    "data": {
        "orderId": "order-1",
        "customerId": "cust-1",
        "status": "Confirmed",
        "items": [{"sku": "A", "quantity": 2, "unitPrice": 1.5}],
        "currency": "EUR",
        "createdAt": "2025-01-15T09:00:00Z",
        "updatedAt": "2025-01-15T10:00:00Z",
    },
    "metadata": {"userId": "u-1", "source": "test"},
}
REMOVE = object()
#: ``VALID`` as the code writes it now: Order schema 2, where an order line's ``unitPrice`` is ``price``.
#: ``VALID`` itself is of schema 1 (written before versions: no ``schemaVersion``), and stays valid.
VALID_V2 = {
    **VALID,
    "schemaVersion": 2,
    "data": {**VALID["data"], "items": [{"sku": "A", "quantity": 2, "price": "1.50"}]},
}


def changed(**fields) -> str:
    body = {key: value for key, value in VALID.items() if fields.get(key) is not REMOVE}
    body.update({key: value for key, value in fields.items() if value is not REMOVE})
    return json.dumps(body)


def changed_data(**fields) -> str:
    data = {key: value for key, value in VALID["data"].items() if fields.get(key) is not REMOVE}
    data.update({key: value for key, value in fields.items() if value is not REMOVE})
    return changed(data=data)


#: (case, body, the expectations it must fail); an empty list means "accepted into bronze".
CASES = [
    ("valid", json.dumps(VALID), []),
    ("extra unknown fields", changed(schemaV2={"x": 1}, priority="high"), []),
    ("offset timestamp", changed(timestamp="2025-01-15T11:00:00+01:00"), []),
    ("over 1 MiB", json.dumps({**VALID, "padding": "x" * MAX_BODY_BYTES}), ["body_within_1mib"]),
    ("not json", "{not json", ["body_is_json_object"]),
    ("empty line", "", ["body_is_json_object"]),
    ("json array", "[1, 2]", ["body_is_json_object"]),
    ("json string", '"OrderCreated"', ["body_is_json_object"]),
    ("json null", "null", ["body_is_json_object"]),
    ("missing eventId", changed(eventId=REMOVE), ["event_id_present"]),
    ("null eventId", changed(eventId=None), ["event_id_present"]),
    ("eventId not a uuid", changed(eventId="42"), ["event_id_is_uuid"]),
    ("missing eventType", changed(eventType=REMOVE), ["event_type_present"]),
    ("eventType not a string", changed(eventType=7), ["event_type_is_string"]),
    ("unknown eventType", changed(eventType="OrderTeleported"), ["event_type_known"]),
    ("missing aggregateType", changed(aggregateType=REMOVE), ["aggregate_type_present"]),
    ("aggregateType not a string", changed(aggregateType=["Order"]), ["aggregate_type_is_string"]),
    ("unknown aggregateType", changed(aggregateType="Invoice"), ["aggregate_type_known"]),
    ("eventType of another aggregate", changed(eventType="CustomerRegistered"),
     ["event_type_matches_aggregate_type"]),
    ("missing aggregateId", changed(aggregateId=REMOVE), ["aggregate_id_present"]),
    ("aggregateId not a string", changed(aggregateId=12), ["aggregate_id_is_string"]),
    ("missing version", changed(version=REMOVE), ["version_present"]),
    ("version as a string", changed(version="2"), ["version_is_integer"]),
    ("version as a fraction", changed(version=2.5), ["version_is_integer"]),
    ("version 0", changed(version=0), ["version_at_least_1"]),
    ("negative version", changed(version=-3), ["version_at_least_1"]),
    ("missing timestamp", changed(timestamp=REMOVE), ["timestamp_present"]),
    ("timestamp without zone", changed(timestamp="2025-01-15T10:00:00"), ["timestamp_is_iso8601_with_zone"]),
    ("timestamp not iso", changed(timestamp="15/01/2025 10:00"), ["timestamp_is_iso8601_with_zone"]),
    ("impossible timestamp", changed(timestamp="2025-02-30T10:00:00Z"), ["timestamp_is_iso8601_with_zone"]),
    ("timestamp as a number", changed(timestamp=1736935200), ["timestamp_is_iso8601_with_zone"]),
    ("missing data", changed(data=REMOVE), ["data_present"]),
    ("null data", changed(data=None), ["data_present"]),
    ("data not an object", changed(data=[1, 2]), ["data_is_object"]),
    ("data a string", changed(data="order-1"), ["data_is_object"]),
    ("data without the aggregate id", changed_data(orderId=REMOVE), ["data_has_aggregate_id"]),
    ("data for another aggregate", changed_data(orderId="order-2"), ["data_matches_aggregate_id"]),
    ("data with an unknown status", changed_data(status="Lost"), ["data_matches_state_schema"]),
    ("data with a bad quantity", changed_data(items=[{"sku": "A", "quantity": 0, "unitPrice": 1}]),
     ["data_matches_state_schema"]),
    ("schemaVersion 1 stated", changed(schemaVersion=1), []),
    ("schemaVersion 2, the current one", json.dumps(VALID_V2), []),
    ("schemaVersion as a string", changed(schemaVersion="1"), ["schema_version_is_integer"]),
    ("null schemaVersion", changed(schemaVersion=None), ["schema_version_is_integer"]),
    ("schemaVersion as a fraction", changed(schemaVersion=1.5), ["schema_version_is_integer"]),
    ("schemaVersion 0", changed(schemaVersion=0), ["schema_version_at_least_1"]),
    ("schemaVersion newer than the code", changed(schemaVersion=3),
     ["schema_version_known",
      "schemaVersion 3 is newer than this code knows for OrderConfirmed (2); deploy a newer version"]),
    ("schemaVersion 2 holding the old line", changed(schemaVersion=2), ["data_matches_state_schema"]),
    ("schemaVersion 1 holding the new line", changed(data=VALID_V2["data"]), ["data_matches_state_schema"]),
    (
        "several problems at once",
        changed(eventId="nope", version=0, timestamp="yesterday"),
        ["event_id_is_uuid", "version_at_least_1", "timestamp_is_iso8601_with_zone"],
    ),
]  # fmt: skip


@pytest.fixture(scope="module")
def validated(spark):
    """Every case validated in one Spark job; the parametrized tests look their row up."""
    records = spark.createDataFrame(
        [(body, 0, offset, None, None) for offset, (_, body, _) in enumerate(CASES)], RECORD_SCHEMA
    )
    rows = validate_records(records, STATE_CHECKS).select("offset", "failed_expectations").collect()
    return {row["offset"]: row["failed_expectations"] for row in rows}


@pytest.mark.parametrize(
    ("offset", "case"), [(i, case) for i, case in enumerate(CASES)], ids=[c[0] for c in CASES]
)
def test_each_expectation_reports_its_own_reason(validated, offset, case):
    _, _, expected = case
    assert validated[offset] == expected


def test_every_expectation_is_exercised():
    exercised = {reason for _, _, failed in CASES for reason in failed if reason in EXPECTATION_NAMES}
    assert exercised == set(EXPECTATION_NAMES)


def test_bronze_and_quarantine_rows_keep_the_record_and_split_it_exactly(spark):
    bodies = [json.dumps(VALID), "garbage", changed(version=0), changed(schemaV2=True)]
    records = spark.createDataFrame(
        [(body, 3, 100 + i, None, "order-1") for i, body in enumerate(bodies)], RECORD_SCHEMA
    )
    validated = validate_records(records, STATE_CHECKS).localCheckpoint()  # stored, as the runner does
    checked_at = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    bronze, quarantine = to_bronze(validated, checked_at), to_quarantine(validated, checked_at)

    assert bronze.schema.simpleString() == SCHEMAS["bronze_events"].simpleString()
    assert quarantine.schema.simpleString() == SCHEMAS["bronze_quarantine"].simpleString()
    identity = ("event_id", "event_type", "aggregate_type", "aggregate_id", "version")
    assert_df_equality(
        bronze.select("body", "offset", *identity),
        spark.createDataFrame(
            [(bodies[i], 100 + i, VALID["eventId"], "OrderConfirmed", "Order", "order-1", 2) for i in (0, 3)],
            "body string, offset bigint, event_id string, event_type string, aggregate_type string, "
            "aggregate_id string, version bigint",
        ),
        ignore_nullable=True,
        ignore_row_order=True,
    )
    assert_df_equality(
        quarantine.select("body", "partition", "offset", "partition_key", "failed_expectations"),
        spark.createDataFrame(
            [
                ("garbage", 3, 101, "order-1", ["body_is_json_object"]),
                (bodies[2], 3, 102, "order-1", ["version_at_least_1"]),
            ],
            "body string, partition int, offset bigint, partition_key string, "
            "failed_expectations array<string>",
        ),
        ignore_nullable=True,
        ignore_row_order=True,
    )  # fmt: skip
    stamps = bronze.select("ingest_time").union(quarantine.select("ingest_time"))
    assert stamps.where(F.col("ingest_time") == F.lit(checked_at)).count() == len(bodies)  # on every row
    accepted = bronze.where("offset = 103").select("event_time", "correlation_id", "causation_id").first()
    assert accepted["event_time"].isoformat() == "2025-01-15T10:00:00.123456"
    assert (accepted["correlation_id"], accepted["causation_id"]) == ("corr-1", "cmd-1")
    winners = read_model("Order").winners_with_state(bronze.where("offset = 103"))
    (state,) = winners.select("state").first()
    assert [(i["sku"], i["quantity"], str(i["price"])) for i in state["items"]] == [("A", 2, "1.50")]


CUSTOMER = {
    **VALID,
    "eventType": "CustomerRegistered",
    "aggregateType": "Customer",
    "aggregateId": "cust-1",
    "version": 1,
    "data": {
        "customerId": "cust-1",
        "name": "Ada",
        "email": "ada@example.com",
        "createdAt": "2025-01-15T09:00:00Z",
        "updatedAt": "2025-01-15T09:00:00Z",
    },
}
#: JSON values of every type, and strings whose text is what another type reads as in a string field.
HOSTILE_VALUES = [
    42, -1, 0, 2.5, 10**30, True, False, None, [], ["x"], {}, {"a": 1}, [{"sku": "A"}],
    "42", "-1", "1e5", "2.5", "true", "false", "null", "[1]", '{"a": 1}', "", " ", "x" * 129,
    "Infinity", "NaN", "order-1", "cust-1", "Order", "Customer", "OrderCreated", "\ud800",
    "2025-01-15T10:00:00Z", "6b8860f3-c83b-47d0-80b5-9eb8e672b3bf",
]  # fmt: skip


def _with(event: dict, path: tuple, value) -> str:
    copy = json.loads(json.dumps(event))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(copy)


def _hostile_bodies() -> list[str]:
    """Every field of an Order and a Customer event set to every hostile value, and texts that parsers
    disagree on (duplicate keys, single quotes, NaN, trailing text, comments, leading zeros)."""
    bodies = []
    for event in (VALID, VALID_V2, CUSTOMER):
        paths = [(key,) for key in event] + [("data", key) for key in event["data"]]
        paths += [("schemaVersion",)] if "schemaVersion" not in event else []
        if "items" in event["data"]:
            paths += [("data", "items", 0, key) for key in event["data"]["items"][0]]
        bodies += [_with(event, path, value) for path in paths for value in HOSTILE_VALUES]
        id_field = "orderId" if event is VALID else "customerId"  # the ids agree, whatever their type
        bodies += [
            _with(json.loads(_with(event, ("aggregateId",), value)), ("data", id_field), value)
            for value in HOSTILE_VALUES
        ]
    valid = json.dumps(VALID)
    bodies += [
        valid[:-1] + ', "version": 3}',
        valid[:-1] + ', "aggregateId": "order-2"}',
        valid[:-1] + ', "metadata": {}}',
        valid.replace('"data": {', '"data": {"status": "Lost", '),
        valid.replace('"data": {', '"data": {"orderId": "order-2", '),
        valid.replace('"corr-1"', "'corr-1'"),
        valid[:-1] + ', "extra": NaN}',
        valid[:-1] + ', "extra": Infinity}',
        valid + " trailing",
        valid + " {}",
        valid.replace('"version": 2', '"version": 02'),
        valid.replace('"version": 2', '"version": 2.0'),
        valid.replace('"version": 2', '"version": 2e0'),
        valid.replace('"version": 2', '/* c */ "version": 2'),
        valid.replace('"order-1"', '"order-\\u0031"'),
        json.dumps(CUSTOMER).replace('"cust-1"', '"\\ud800"'),
        json.dumps([VALID]),
        json.dumps({"data": VALID}),
        valid[:-1] + ', "schemaVersion": 2.0}',
        valid[:-1] + ', "schemaVersion": 1e0}',
        valid[:-1] + ', "schemaVersion": 01}',
        valid[:-1] + ', "schema\\u0056ersion": "1"}',
        valid[:-1] + ', "schema\\u0056ersion": 3}',
        valid[:-1] + ', "schemaVersion": 1, "schemaVersion": 3}',
        valid.replace('"data": {', '"data": {"schemaVersion": "x", '),
        valid.replace('"corr-1"', '"\\"schemaVersion\\""'),
    ]
    return bodies


def test_the_typed_check_passes_only_what_the_exact_check_passes(spark):
    """``validate_records`` (typed check first) gives what the exact check gives on every record."""
    bodies = [json.dumps(VALID), json.dumps(CUSTOMER), *_hostile_bodies(), *[body for _, body, _ in CASES]]
    records = spark.createDataFrame(
        [(body, 0, offset, None, None) for offset, body in enumerate(bodies)], RECORD_SCHEMA
    )
    columns = (*HEADER, "failed_expectations")

    def named(validated, prefix: str):
        return validated.select("offset", *[F.col(c).alias(f"{prefix}_{c}") for c in columns])

    fast, exact = validate_records(records, STATE_CHECKS), validate_exactly(records, STATE_CHECKS)
    both = named(fast, "fast").join(named(exact, "exact"), "offset")
    rows = both.collect()

    assert len(rows) == len(bodies)
    different = [
        (bodies[row.offset], row.fast_failed_expectations, row.exact_failed_expectations)
        for row in rows
        if row.fast_failed_expectations != row.exact_failed_expectations
    ]
    assert different == []
    valid = [row for row in rows if not row.exact_failed_expectations]
    assert len(valid) > 50  # the corpus holds valid events the typed check must pass or defer
    mismatched = [row for row in valid if any(row[f"fast_{c}"] != row[f"exact_{c}"] for c in HEADER)]
    assert mismatched == []


def test_validation_compiles_to_the_same_code_for_every_batch(spark, capsys):
    """Spark writes constants into the code it generates. A value of the batch in validation (its time, say)
    would make every micro-batch compile validation's classes, the largest of the pipeline, once more, and
    keep each copy in the code cache."""
    records = spark.createDataFrame([(json.dumps(VALID), 0, 1, None, None)], RECORD_SCHEMA)

    def generated_code() -> list[str]:
        capsys.readouterr()
        validate_records(records, STATE_CHECKS).explain(mode="codegen")
        return [line for line in capsys.readouterr().out.splitlines() if line.startswith("/* ")]

    first = generated_code()
    time.sleep(0.01)  # a later batch
    assert len(first) > 1000
    assert generated_code() == first


def test_the_split_refuses_rows_that_are_not_stored(spark):
    """Over a lazy validation the split's filter would be planned into validation thousands of times over;
    it says what to do instead, before any plan is made."""
    records = spark.createDataFrame([(json.dumps(VALID), 0, 1, None, None)], RECORD_SCHEMA)
    lazy = validate_records(records, STATE_CHECKS)
    now = datetime.now(timezone.utc)
    for split in (to_bronze, to_quarantine):
        with pytest.raises(ValueError, match=r"localCheckpoint\(\)"):
            split(lazy, now)
    stored = lazy.localCheckpoint()
    assert to_bronze(stored, now).count() == 1 and to_quarantine(stored, now).count() == 0


def test_the_state_checks_are_data_the_caller_passes(spark):
    """Bronze knows no read model: the checks it is given decide which states pass and which aggregate types
    are known, and a check that refuses a state quarantines its event for that reason."""
    from cqrs_orders.envelope import AggregateType

    bodies = [json.dumps(VALID), json.dumps(CUSTOMER)]
    records = spark.createDataFrame(
        [(body, 0, i, None, None) for i, body in enumerate(bodies)], RECORD_SCHEMA
    )
    order_refused = {**STATE_CHECKS, AggregateType.ORDER: lambda state: F.lit(False)}
    orders_unknown = {AggregateType.CUSTOMER: STATE_CHECKS[AggregateType.CUSTOMER]}

    def failed(checks) -> list:
        rows = validate_records(records, checks).orderBy("offset").collect()
        return [row["failed_expectations"] for row in rows]

    assert failed(STATE_CHECKS) == [[], []]
    assert failed(order_refused) == [["data_matches_state_schema"], []]
    assert failed(orders_unknown)[0] != [] and failed(orders_unknown)[1] == []


def test_bronze_imports_no_read_model():
    """Validation takes its state checks as data (the runner passes the read models'), so bronze's job
    stays validating and splitting records."""
    import ast
    from pathlib import Path

    import cqrs_orders.pipeline.bronze as bronze

    tree = ast.parse(Path(bronze.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name and "read_models" in name}
