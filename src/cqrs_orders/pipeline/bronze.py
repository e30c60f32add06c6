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
    """Records plus ``event`` (the parsed envelope), ``failed_expectations`` (empty when valid) and
    ``ingest_time`` (when checked: one value per batch, shared by its bronze, quarantine and history rows).

    Three projections, on purpose: parse, then extract every variant-derived value once into a column,
    then check. Written as one expression, the guarded checks repeat ``variant_get`` in conditional
    branches that Spark does not deduplicate (~6x the work). The optimizer keeps the projections apart
    because each derived value is referenced more than once by the checks.
    """
    parsed = records.withColumn("_variant", F.try_parse_json("body")).withColumn(
        "event", F.from_json("body", ENVELOPE_SCHEMA)
    )
    derived = parsed.select("*", *_derived_columns(F.col("_variant"))).drop("_variant")
    failures = _failures(F.col("event"))
    missing = [name for name in EXPECTATIONS if name not in failures]
    assert not missing, f"expectations without a check: {missing}"
    # concat of [name]-or-[] arrays, not filter(array(...)): a higher-order function is evaluated without
    # codegen, and drags every check under it along (measured: 3x the time of the checks themselves).
    none = F.array().cast("array<string>")
    flagged = F.concat(
        *[F.when(failures[name], F.array(F.lit(name))).otherwise(none) for name in EXPECTATIONS]
    )
    return (
        derived.withColumn("failed_expectations", flagged)
        .drop(*_DERIVED)
        .withColumn("ingest_time", F.current_timestamp())
    )


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
        "ingest_time",
    )


def to_quarantine(validated: DataFrame) -> DataFrame:
    """The rejected records as ``bronze_quarantine`` rows, with the expectations each one failed."""
    return validated.where(F.size("failed_expectations") > 0).select(
        *_record_columns(), "failed_expectations", "ingest_time"
    )


def _record_columns() -> list[str]:
    return ["body", "partition", "offset", "enqueued_time", "partition_key"]


#: Envelope fields whose JSON type is checked, with the column holding it.
_FIELDS = {
    "eventId": "_kind_event_id",
    "eventType": "_kind_event_type",
    "aggregateType": "_kind_aggregate_type",
    "aggregateId": "_kind_aggregate_id",
    "version": "_kind_version",
    "timestamp": "_kind_timestamp",
    "data": "_kind_data",
    f"data.{AGGREGATE_ID_FIELD[AggregateType.ORDER]}": "_kind_order_id",
    f"data.{AGGREGATE_ID_FIELD[AggregateType.CUSTOMER]}": "_kind_customer_id",
}
#: Typed values read from the variant (``try_``: a wrong type gives null; the checks guard on the kind).
_VALUES = {
    "eventId": ("_event_id", "string"),
    "eventType": ("_event_type", "string"),
    "aggregateType": ("_aggregate_type", "string"),
    "aggregateId": ("_aggregate_id", "string"),
    "version": ("_version", "bigint"),
    "timestamp": ("_timestamp", "string"),
    f"data.{AGGREGATE_ID_FIELD[AggregateType.ORDER]}": ("_order_id", "string"),
    f"data.{AGGREGATE_ID_FIELD[AggregateType.CUSTOMER]}": ("_customer_id", "string"),
}
_DERIVED = (
    "_is_object",
    "_data_is_object",
    *_FIELDS.values(),
    *[column for column, _ in _VALUES.values()],
)


def _derived_columns(variant: Column) -> list[Column]:
    """Every value the checks need from the variant, each computed once.

    Cheap on purpose (the checks run on every record): an object is told by a cast to the empty struct,
    which reads no field (a cast to a map copies them all), and the kind of ``data``, an object with a
    nested item list when valid, is read off that test instead of ``schema_of_variant`` walking it whole.
    """

    def is_object(path: str) -> Column:
        return F.try_variant_get(variant, path, "struct<>").isNotNull()

    def kind(path: str) -> Column:
        return F.schema_of_variant(F.variant_get(variant, path, "variant"))

    return [
        is_object("$").alias("_is_object"),
        is_object("$.data").alias("_data_is_object"),
        *[
            (
                F.when(is_object(f"$.{path}"), F.lit("OBJECT")).otherwise(kind(f"$.{path}"))
                if path == "data"
                else kind(f"$.{path}")
            ).alias(column)
            for path, column in _FIELDS.items()
        ],
        *[
            F.try_variant_get(variant, f"$.{path}", kind).alias(column)
            for path, (column, kind) in _VALUES.items()
        ],
    ]


def _failures(event: Column) -> dict[str, Column]:
    """Expectation name -> a never-null boolean column that is true when the record fails it."""
    checks: dict[str, Column] = {}

    def expect(name: str, holds: Column, applies: Column | None = None) -> Column:
        """Register ``name``; it fails where it ``applies`` and does not hold. Returns "it passed"."""
        applies = F.lit(True) if applies is None else F.coalesce(applies, F.lit(False))
        holds = F.coalesce(holds, F.lit(False))
        checks[name] = applies & ~holds
        return applies & holds

    def field(name: str, snake: str, type_holds, applies: Column) -> Column:
        kind = F.col(_FIELDS[name])
        present = expect(f"{snake}_present", kind.isNotNull() & (kind != "VOID"), applies)
        return expect(type_holds[0], type_holds[1](kind), present)

    expect("body_within_1mib", F.octet_length("body") <= MAX_BODY_BYTES)
    is_object = expect("body_is_json_object", F.col("_is_object") & event.isNotNull())
    event_type_value = F.col("_event_type")
    event_id = F.col("_event_id")
    aggregate_type = F.col("_aggregate_type")
    aggregate_id = F.col("_aggregate_id")
    version = F.col("_version")
    timestamp = F.col("_timestamp")

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
    data_ok = field("data", "data", ("data_is_object", lambda _: F.col("_data_is_object")), is_object)
    is_order = aggregate_type == AggregateType.ORDER.value
    data_id = F.when(is_order, F.col("_order_id")).otherwise(F.col("_customer_id"))
    data_id_kind = F.when(is_order, F.col("_kind_order_id")).otherwise(F.col("_kind_customer_id"))
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
