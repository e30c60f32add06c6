"""Bronze: every bus record, checked against named envelope expectations (the DLT-expectations style).

A record that meets every expectation goes to ``bronze_events`` (duplicates included: bronze is the raw
record of what arrived); any other goes to ``bronze_quarantine`` with the names of the expectations it
failed. Nothing is dropped: records in = bronze rows + quarantine rows.

The checks run on the body parsed twice: as a VARIANT (which keeps each JSON value's real type, so a
version sent as ``"3"`` is caught instead of being coerced) and with ``from_json`` into the envelope schema
(which gives the typed ``event`` column). Each check is guarded by the ones it depends on, so a record lists
the root causes only (a body that is not JSON fails ``body_is_json_object`` alone). Extra, unknown fields
are accepted; they stay in the raw body.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cqrs_orders.envelope import AGGREGATE_ID_FIELD, EVENT_CATALOG, AggregateType, OrderStatus
from cqrs_orders.envelope_schema import ENVELOPE_SCHEMA

MAX_BODY_BYTES = 1024 * 1024
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: ISO-8601 date and time with an explicit zone (``Z`` or ``+hh:mm``); a zone-less time is ambiguous.
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$"
_INTEGER_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")

#: Every expectation a record can fail, in the order they are reported.
EXPECTATIONS = (
    "body_within_1mib",
    "body_is_json_object",
    "event_id_present",
    "event_id_is_uuid",
    "event_type_present",
    "event_type_is_string",
    "event_type_known",
    "aggregate_type_present",
    "aggregate_type_is_string",
    "aggregate_type_known",
    "event_type_matches_aggregate_type",
    "aggregate_id_present",
    "aggregate_id_is_string",
    "version_present",
    "version_is_integer",
    "version_at_least_1",
    "timestamp_present",
    "timestamp_is_iso8601_with_zone",
    "data_present",
    "data_is_object",
    "data_has_aggregate_id",
    "data_matches_aggregate_id",
    "data_matches_state_schema",
)


def validate_records(records: DataFrame) -> DataFrame:
    """Records plus ``event`` (the parsed envelope) and ``failed_expectations`` (empty when valid)."""
    parsed = records.withColumn("_variant", F.try_parse_json("body")).withColumn(
        "event", F.from_json("body", ENVELOPE_SCHEMA)
    )
    failures = _failures(F.col("_variant"), F.col("event"))
    missing = [name for name in EXPECTATIONS if name not in failures]
    assert not missing, f"expectations without a check: {missing}"
    flagged = F.filter(
        F.array(*[F.when(failures[name], F.lit(name)) for name in EXPECTATIONS]),
        lambda name: name.isNotNull(),
    )
    return parsed.withColumn("failed_expectations", flagged).drop("_variant")


def to_bronze(validated: DataFrame) -> DataFrame:
    """The valid records as ``bronze_events`` rows."""
    event = F.col("event")
    return validated.where(F.size("failed_expectations") == 0).select(
        *_record_columns(),
        event["eventId"].alias("event_id"),
        event["eventType"].alias("event_type"),
        event["aggregateType"].alias("aggregate_type"),
        event["aggregateId"].alias("aggregate_id"),
        event["version"].alias("version"),
        event["timestamp"].alias("event_time"),
        event.alias("event"),
        F.current_timestamp().alias("ingest_time"),
    )


def to_quarantine(validated: DataFrame) -> DataFrame:
    """The rejected records as ``bronze_quarantine`` rows, with the expectations each one failed."""
    return validated.where(F.size("failed_expectations") > 0).select(
        *_record_columns(), "failed_expectations", F.current_timestamp().alias("ingest_time")
    )


def _record_columns() -> list[str]:
    return ["body", "partition", "offset", "enqueued_time", "partition_key"]


def _failures(variant: Column, event: Column) -> dict[str, Column]:
    """Expectation name -> a never-null boolean column that is true when the record fails it."""
    checks: dict[str, Column] = {}

    def expect(name: str, holds: Column, applies: Column | None = None) -> Column:
        """Register ``name``; it fails where it ``applies`` and does not hold. Returns "it passed"."""
        applies = F.lit(True) if applies is None else F.coalesce(applies, F.lit(False))
        holds = F.coalesce(holds, F.lit(False))
        checks[name] = applies & ~holds
        return applies & holds

    def json_type(path: str) -> Column:
        return F.schema_of_variant(F.variant_get(variant, path, "variant"))

    def field(name: str, snake: str, type_holds, applies: Column) -> Column:
        kind = json_type(f"$.{name}")
        present = expect(f"{snake}_present", kind.isNotNull() & (kind != "VOID"), applies)
        return expect(type_holds[0], type_holds[1](kind), present)

    expect("body_within_1mib", F.octet_length("body") <= MAX_BODY_BYTES)
    is_object = expect(
        "body_is_json_object",
        F.try_variant_get(variant, "$", "map<string,variant>").isNotNull() & event.isNotNull(),
    )
    event_type_value = F.variant_get(variant, "$.eventType", "string")
    event_id = F.variant_get(variant, "$.eventId", "string")
    aggregate_type = F.variant_get(variant, "$.aggregateType", "string")
    aggregate_id = F.variant_get(variant, "$.aggregateId", "string")
    version = F.variant_get(variant, "$.version", "bigint")
    timestamp = F.variant_get(variant, "$.timestamp", "string")

    def string_and(condition: Column):
        return lambda kind: (kind == "STRING") & condition

    field("eventId", "event_id", ("event_id_is_uuid", string_and(event_id.rlike(UUID_PATTERN))), is_object)
    event_type_ok = field(
        "eventType", "event_type", ("event_type_is_string", string_and(F.lit(True))), is_object
    )
    known_event_type = expect("event_type_known", event_type_value.isin(list(EVENT_CATALOG)), event_type_ok)
    aggregate_type_ok = field(
        "aggregateType", "aggregate_type", ("aggregate_type_is_string", string_and(F.lit(True))), is_object
    )
    known_aggregate_type = expect(
        "aggregate_type_known", aggregate_type.isin([t.value for t in AggregateType]), aggregate_type_ok
    )
    catalog = F.create_map(*[F.lit(x) for pair in EVENT_CATALOG.items() for x in (pair[0], pair[1].value)])
    expect(
        "event_type_matches_aggregate_type",
        F.try_element_at(catalog, event_type_value) == aggregate_type,
        known_event_type & known_aggregate_type,
    )
    aggregate_id_ok = field(
        "aggregateId",
        "aggregate_id",
        ("aggregate_id_is_string", string_and(F.length(aggregate_id).between(1, 128))),
        is_object,
    )
    version_ok = field(
        "version", "version", ("version_is_integer", lambda kind: kind.isin(*_INTEGER_TYPES)), is_object
    )
    expect("version_at_least_1", version >= 1, version_ok)
    field(
        "timestamp",
        "timestamp",
        (
            "timestamp_is_iso8601_with_zone",
            string_and(timestamp.rlike(TIMESTAMP_PATTERN) & F.try_to_timestamp(timestamp).isNotNull()),
        ),
        is_object,
    )
    data_ok = field(
        "data",
        "data",
        ("data_is_object", lambda _: F.try_variant_get(variant, "$.data", "map<string,variant>").isNotNull()),
        is_object,
    )
    order_id_path = f"$.data.{AGGREGATE_ID_FIELD[AggregateType.ORDER]}"
    customer_id_path = f"$.data.{AGGREGATE_ID_FIELD[AggregateType.CUSTOMER]}"
    is_order = aggregate_type == AggregateType.ORDER.value
    data_id = F.when(is_order, F.variant_get(variant, order_id_path, "string")).otherwise(
        F.variant_get(variant, customer_id_path, "string")
    )
    data_id_kind = F.when(is_order, json_type(order_id_path)).otherwise(json_type(customer_id_path))
    has_data_id = expect("data_has_aggregate_id", data_id_kind == "STRING", data_ok & known_aggregate_type)
    expect("data_matches_aggregate_id", data_id == aggregate_id, has_data_id & aggregate_id_ok)
    expect("data_matches_state_schema", _state_is_complete(event["data"], aggregate_type), has_data_id)
    return checks


def _state_is_complete(data: Column, aggregate_type: Column) -> Column:
    """The fields the read models need are present and well-formed for the aggregate type."""
    item_ok = lambda item: (  # noqa: E731
        item["sku"].isNotNull() & (item["quantity"] > 0) & (item["unitPrice"] >= 0)
    )
    order_ok = (
        data["customerId"].isNotNull()
        & data["status"].isin([s.value for s in OrderStatus])
        & data["items"].isNotNull()
        & F.forall(data["items"], item_ok)
        & data["currency"].rlike(r"^[A-Z]{3}$")
        & data["createdAt"].isNotNull()
        & data["updatedAt"].isNotNull()
    )
    customer_ok = (
        data["name"].isNotNull()
        & data["email"].isNotNull()
        & data["createdAt"].isNotNull()
        & data["updatedAt"].isNotNull()
    )
    return F.when(aggregate_type == AggregateType.ORDER.value, order_ok).otherwise(customer_ok)
