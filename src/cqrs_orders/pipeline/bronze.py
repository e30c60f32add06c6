"""Bronze: every bus record, checked against the envelope expectations (:mod:`.expectations`).

A record that meets every expectation goes to ``bronze_events`` (duplicates included: bronze is the raw
record of what arrived) as its raw body plus the envelope's header columns; any other goes to
``bronze_quarantine`` with the names of the expectations it failed. Nothing is dropped: records in =
bronze rows + quarantine rows. Extra, unknown fields are accepted; they stay in the raw body.

The body is parsed once, as a VARIANT, which keeps each JSON value's real type (a version sent as ``"3"``
is caught instead of being coerced). The aggregate's ``data`` is typed here only as far as its check
needs; the read models parse it again for the events that win (:mod:`.read_models`), not for every record.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cqrs_orders.envelope import AGGREGATE_ID_FIELD
from cqrs_orders.pipeline.expectations import EXPECTATIONS, MAX_BODY_BYTES, failed_expectations, state_column
from cqrs_orders.pipeline.read_models import READ_MODELS

__all__ = ["EXPECTATION_NAMES", "MAX_BODY_BYTES", "to_bronze", "to_quarantine", "validate_records"]

#: Every expectation a record can fail, in the order they are reported.
EXPECTATION_NAMES = tuple(e.name for e in EXPECTATIONS)
RECORD_COLUMNS = ("body", "partition", "offset", "enqueued_time", "partition_key")
#: The envelope's header, as bronze stores it: column -> (JSON path, type).
HEADER = {
    "event_id": ("eventId", "string"),
    "event_type": ("eventType", "string"),
    "aggregate_type": ("aggregateType", "string"),
    "aggregate_id": ("aggregateId", "string"),
    "version": ("version", "bigint"),
    "event_time": ("timestamp", "string"),
    "correlation_id": ("correlationId", "string"),
    "causation_id": ("causationId", "string"),
}
#: Fields whose JSON type a check looks at, with the column holding it.
_KINDS = {
    "eventId": "_kind_event_id",
    "eventType": "_kind_event_type",
    "aggregateType": "_kind_aggregate_type",
    "aggregateId": "_kind_aggregate_id",
    "version": "_kind_version",
    "timestamp": "_kind_timestamp",
}


def validate_records(records: DataFrame) -> DataFrame:
    """Records plus the header columns (``event_id`` ... ``causation_id``; meaningful for valid rows),
    ``failed_expectations`` (empty when valid) and ``ingest_time`` (when checked: one value per batch,
    shared by its bronze and quarantine rows).

    Three projections, on purpose: parse, then extract every value the checks need once into a column,
    then check (one projection for all of them). Written as one expression, the guarded checks would repeat
    ``variant_get`` in conditional branches that Spark does not deduplicate.
    """
    parsed = records.withColumn("_variant", F.try_parse_json("body"))
    derived = parsed.select("*", *_derived_columns(F.col("_variant"))).drop("_variant")
    return derived.select(
        *RECORD_COLUMNS,
        *_header_columns(),
        failed_expectations().alias("failed_expectations"),
        F.current_timestamp().alias("ingest_time"),
    )


def to_bronze(validated: DataFrame) -> DataFrame:
    """The valid records as ``bronze_events`` rows."""
    return validated.where(F.size("failed_expectations") == 0).select(*RECORD_COLUMNS, *HEADER, "ingest_time")


def to_quarantine(validated: DataFrame) -> DataFrame:
    """The rejected records as ``bronze_quarantine`` rows, with the expectations each one failed."""
    return validated.where(F.size("failed_expectations") > 0).select(
        *RECORD_COLUMNS, "failed_expectations", "ingest_time"
    )


def _header_columns() -> list[Column]:
    columns = []
    for name, (path, _) in HEADER.items():
        value = F.col(f"_{name}")
        columns.append((F.try_to_timestamp(value) if path == "timestamp" else value).alias(name))
    return columns


def _derived_columns(variant: Column) -> list[Column]:
    """Every value the checks and the header need from the variant, each computed once.

    Cheap on purpose (they run on every record): an object is told by a cast to the empty struct, which
    reads no field, and the kind of ``data`` is read off that test instead of ``schema_of_variant``
    walking it whole. The typed ``data`` of each aggregate type is read only for events of that type.
    """

    def is_object(path: str) -> Column:
        return F.try_variant_get(variant, path, "struct<>").isNotNull()

    def kind(path: str) -> Column:
        return F.schema_of_variant(F.variant_get(variant, path, "variant"))

    aggregate_type = F.try_variant_get(variant, "$.aggregateType", "string")
    data_id_kind, data_id, states = None, None, []
    for model in READ_MODELS:
        of_type = aggregate_type == model.aggregate_type.value
        path = f"$.data.{AGGREGATE_ID_FIELD[model.aggregate_type]}"
        kind_here, id_here = kind(path), F.try_variant_get(variant, path, "string")
        data_id_kind = (
            F.when(of_type, kind_here) if data_id_kind is None else data_id_kind.when(of_type, kind_here)
        )
        data_id = F.when(of_type, id_here) if data_id is None else data_id.when(of_type, id_here)
        state = F.when(of_type, F.try_variant_get(variant, "$.data", model.state_schema.simpleString()))
        states.append(state.alias(state_column(model.aggregate_type.value)))
    return [
        is_object("$").alias("_is_object"),
        is_object("$.data").alias("_data_is_object"),
        *[kind(f"$.{path}").alias(column) for path, column in _KINDS.items()],
        F.when(is_object("$.data"), F.lit("OBJECT")).otherwise(kind("$.data")).alias("_kind_data"),
        data_id_kind.alias("_kind_data_id"),
        data_id.alias("_data_id"),
        *states,
        *[
            F.try_variant_get(variant, f"$.{path}", data_type).alias(f"_{name}")
            for name, (path, data_type) in HEADER.items()
        ],
    ]
