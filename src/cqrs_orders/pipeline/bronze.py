"""Bronze: every bus record, checked against the envelope expectations (:mod:`.expectations`).

A record that meets every expectation goes to ``bronze_events`` (duplicates included: bronze is the raw
record of what arrived) as its raw body plus the envelope's header columns; any other goes to
``bronze_quarantine`` with the names of the expectations it failed. Nothing is dropped: records in =
bronze rows + quarantine rows. Extra, unknown fields are accepted; they stay in the raw body.

Every record is checked twice over, cheaply first:

* **Typed**: the body read with ``from_json`` into the envelope's types, which is fast but lenient (a
  number in a string field comes back as its text). A value whose JSON type the typed read cannot vouch
  for (``"42"`` might have been ``42``) counts as unknown, so the check fails rather than guess.
* **Exact**, for the records the typed check did not pass: the body as a VARIANT, which keeps each JSON
  value's real type (a version sent as ``"3"`` is caught instead of being coerced) and names the root
  causes. This is the definition; the typed check only ever passes a record the exact one would pass
  (``tests/pipeline/test_bronze.py`` holds the two side by side on every hostile value it knows).

Both evaluate the same expectations over the same columns, and both check the aggregate's ``data`` as the
typed read gives it, with the state checks the caller passes (:data:`StateChecks`: the runner passes the
read models', whose typed read of the winning events this is). Bronze knows no read model: the aggregate
types it accepts are the keys of those checks. The VARIANT parse runs for every record all the same: it
alone rejects duplicate keys, which ``from_json`` resolves silently (to the last one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cqrs_orders.envelope import AGGREGATE_ID_FIELD, SCHEMA_VERSION_FIELD, AggregateType
from cqrs_orders.envelope_schema import JSON_OPTIONS, current_state, read_schema
from cqrs_orders.pipeline.batch_rows import require_stored
from cqrs_orders.pipeline.expectations import EXPECTATIONS, MAX_BODY_BYTES, failed_expectations

__all__ = [
    "EXPECTATION_NAMES",
    "MAX_BODY_BYTES",
    "StateChecks",
    "to_bronze",
    "to_quarantine",
    "validate_exactly",
    "validate_records",
]

#: Per aggregate type, the check its typed ``data`` (a struct column) must pass. A record of a type without
#: one cannot pass: neither its state nor its data's id can be checked.
StateChecks = Mapping[AggregateType, Callable[[Column], Column]]
#: Every expectation a record can fail, in the order they are reported.
EXPECTATION_NAMES = tuple(e.name for e in EXPECTATIONS)
RECORD_COLUMNS = ("body", "partition", "offset", "enqueued_time", "partition_key")
#: The envelope's header, as bronze stores it: column -> (JSON field, type).
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
    SCHEMA_VERSION_FIELD: "_kind_schema_version",
    "timestamp": "_kind_timestamp",
}
_SPARK_TYPES = {"string": T.StringType(), "bigint": T.LongType()}
#: ``data`` as the typed read takes it: every field of every aggregate's state, in every schema version.
DATA_SCHEMA = read_schema(*AggregateType)
#: The typed read of a body: the header fields, the schema version, and ``data``.
TYPED_SCHEMA = T.StructType(
    [T.StructField(field, _SPARK_TYPES[kind], True) for field, kind in HEADER.values()]
    + [T.StructField(SCHEMA_VERSION_FIELD, T.LongType(), True), T.StructField("data", DATA_SCHEMA, True)]
)
#: A body holding neither the literal key nor a ``\u`` escape (which could spell it) has no schema version.
_SCHEMA_VERSION_KEY = f'"{SCHEMA_VERSION_FIELD}"'
#: ``from_json`` gives a string field holding another JSON value as that value's text: a number (these
#: characters only), a literal, or an object or array (its first character). A string that looks like one
#: of these may not have been a JSON string, so the typed check cannot tell.
_NUMBER_CHARACTERS = "-+0123456789.eE"
_LITERALS = ("true", "false", "Infinity", "-Infinity", "NaN")


#: What every step passes on: the record, the header as bronze stores it, and the verdict on ``data``.
_CARRIED = (*RECORD_COLUMNS, *HEADER, "_state_is_complete")


def validate_records(records: DataFrame, state_checks: StateChecks) -> DataFrame:
    """Records plus the header columns (``event_id`` ... ``causation_id``; meaningful for valid rows)
    and ``failed_expectations`` (empty when valid), ``data`` checked by ``state_checks``.

    One projection per step, on purpose: parse, derive the typed values, check them, derive the exact
    values (for the rows the typed check failed; null, and so free, for the others), check those. Written
    as one expression, the checks would repeat their extractions in branches Spark does not deduplicate.
    Only flat columns pass from step to step: a wide struct carried along turns off generated code.
    """
    typed = _parsed(records, state_checks).select(
        *_CARRIED, "_is_object", *_typed_columns(F.col("_typed"), state_checks)
    )
    checked = typed.select(*_CARRIED, failed_expectations().alias("_typed_failed"))
    passed = F.size("_typed_failed") == 0
    exact_body = F.when(~passed, F.col("body"))
    exact = checked.select(
        *_CARRIED, "_typed_failed", *_exact_columns(F.try_parse_json(exact_body), state_checks)
    )
    return _checked(exact, F.when(passed, F.col("_typed_failed")).otherwise(failed_expectations()))


def validate_exactly(records: DataFrame, state_checks: StateChecks) -> DataFrame:
    """What :func:`validate_records` gives, by the exact check alone on every record, with the header read
    off the VARIANT too: its definition (tests hold the two side by side), and slower."""
    exact = _parsed(records, state_checks).select(
        *_CARRIED, *_exact_columns(F.try_parse_json("body"), state_checks)
    )
    return _checked(exact, failed_expectations(), _header(lambda field, name: F.col(f"_{name}")))


def _is_object(variant: Column, path: str = "$") -> Column:
    """Whether ``path`` holds a JSON object: a cast to the empty struct, which reads no field."""
    return F.try_variant_get(variant, path, "struct<>").isNotNull()


def _parsed(records: DataFrame, state_checks: StateChecks) -> DataFrame:
    """The records with their typed read (``_typed``), the header, ``data``'s verdict and whether the
    body is a JSON object by the VARIANT parse (which alone rejects duplicate keys)."""
    read = records.select(
        *RECORD_COLUMNS,
        F.from_json("body", TYPED_SCHEMA, JSON_OPTIONS).alias("_typed"),
        _is_object(F.try_parse_json("body")).alias("_is_object"),
    )
    typed = F.col("_typed")
    header = _header(lambda field, _: typed[field])

    def state_check(kind: AggregateType) -> Column:  # on the state as the current schema has it
        state = current_state(typed["data"], DATA_SCHEMA, typed[SCHEMA_VERSION_FIELD], kind)
        return state_checks[kind](state)

    complete = _by_aggregate_type(typed["aggregateType"], state_checks, state_check)
    # The columns named, not asked of the DataFrame: asking analyses the plan, which a declarative
    # pipeline's query function may not do (the AUTO CDC peer, benchmarks/auto_cdc_pipeline.py, runs this).
    return read.select(*RECORD_COLUMNS, "_typed", "_is_object", *header, complete.alias("_state_is_complete"))


def _header(value_of) -> list[Column]:
    """The header columns as bronze stores them, from ``value_of(json_field, column)``."""
    return [
        (F.try_to_timestamp(value) if field == "timestamp" else value).alias(name)
        for name, (field, _) in HEADER.items()
        for value in [value_of(field, name)]
    ]


def _checked(derived: DataFrame, failed: Column, header: list | None = None) -> DataFrame:
    """The validated rows: the record, the header (as carried unless given), the verdict."""
    return derived.select(*RECORD_COLUMNS, *(header or HEADER), failed.alias("failed_expectations"))


def to_bronze(validated: DataFrame, checked_at: datetime) -> DataFrame:
    """The valid records as ``bronze_events`` rows, ``ingest_time`` being ``checked_at``.

    ``validated`` must be stored rows (the runner's checkpoint; anything else is refused with a
    ``ValueError``). Over a lazy validation, Spark pushes this split's filter down through validation's
    projections, copying their expressions into it at every step: thousands of copies of the JSON read,
    a plan that takes longer to make than the batch takes to run, and gigabytes of heap.

    The batch's time is given, not taken with ``current_timestamp()`` during validation: Spark writes a
    timestamp constant into the generated code, so validation's code (the largest class) would differ,
    and be compiled and cached again, in every micro-batch. Here it is a constant of the small write step.
    """
    require_stored(validated, "to_bronze")
    return validated.where(F.size("failed_expectations") == 0).select(
        *RECORD_COLUMNS, *HEADER, _ingest_time(checked_at)
    )


def to_quarantine(validated: DataFrame, checked_at: datetime) -> DataFrame:
    """The rejected records as ``bronze_quarantine`` rows, with the expectations each one failed
    (``validated``: stored rows, as for :func:`to_bronze`)."""
    require_stored(validated, "to_quarantine")
    return validated.where(F.size("failed_expectations") > 0).select(
        *RECORD_COLUMNS, "failed_expectations", _ingest_time(checked_at)
    )


def _ingest_time(checked_at: datetime) -> Column:
    return F.lit(checked_at).cast("timestamp").alias("ingest_time")


def _by_aggregate_type(aggregate_type: Column, known: StateChecks, value_of) -> Column:
    """``value_of(kind)`` for the record's aggregate type among the ``known`` ones (null for another)."""
    chosen = None
    for kind in known:
        is_type, value = aggregate_type == kind.value, value_of(kind)
        chosen = F.when(is_type, value) if chosen is None else chosen.when(is_type, value)
    return chosen


def _typed_columns(typed: Column, known: StateChecks) -> list[Column]:
    """The columns the checks read, from the typed read: a JSON type it cannot vouch for is null."""

    def string_kind(text: Column) -> Column:
        # String functions over Spark's own UTF-8 text, not a regular expression: a regex decodes every
        # value to a Java string first, and this test runs on six fields of every record.
        maybe_not_a_string = (
            text.isin(*_LITERALS)
            | text.startswith("[")
            | text.startswith("{")
            | (F.ltrim(text, F.lit(_NUMBER_CHARACTERS)) == "")
        )
        return F.when(~maybe_not_a_string, F.lit("STRING"))

    data = typed["data"]
    data_id = _by_aggregate_type(typed["aggregateType"], known, lambda kind: data[AGGREGATE_ID_FIELD[kind]])
    kinds = {field: string_kind(typed[field]) for field in _KINDS}
    kinds["version"] = F.when(typed["version"].isNotNull(), F.lit("BIGINT"))
    # Absent and not an integer both read as null; absence is vouched for by the text alone.
    body = F.col("body")
    absent = ~body.contains(_SCHEMA_VERSION_KEY) & ~body.contains("\\u")
    kinds[SCHEMA_VERSION_FIELD] = F.when(typed[SCHEMA_VERSION_FIELD].isNotNull(), F.lit("BIGINT")).when(
        absent, F.lit("ABSENT")
    )
    return [
        data.isNotNull().alias("_data_is_object"),
        *[kinds[field].alias(column) for field, column in _KINDS.items()],
        F.when(data.isNotNull(), F.lit("OBJECT")).alias("_kind_data"),
        string_kind(data_id).alias("_kind_data_id"),
        data_id.alias("_data_id"),
        *[typed[field].alias(f"_{name}") for name, (field, _) in HEADER.items()],
        typed[SCHEMA_VERSION_FIELD].alias("_schema_version"),
    ]


def _exact_columns(variant: Column, known: StateChecks) -> list[Column]:
    """The columns the checks read, from the VARIANT: every JSON type exact, each value computed once.

    An object is told by a cast to the empty struct, which reads no field, and the kind of ``data`` is read
    off that test instead of ``schema_of_variant`` walking it whole. The verdict on ``data`` stays the typed
    read's.
    """

    def kind(path: str) -> Column:
        return F.schema_of_variant(F.variant_get(variant, path, "variant"))

    def kind_or_absent(path: str) -> Column:  # JSON null is VOID; a missing field has no kind at all
        return F.when(F.variant_get(variant, path, "variant").isNull(), F.lit("ABSENT")).otherwise(kind(path))

    aggregate_type = F.try_variant_get(variant, "$.aggregateType", "string")

    def data_id_path(kind: AggregateType) -> str:
        return f"$.data.{AGGREGATE_ID_FIELD[kind]}"

    return [
        _is_object(variant).alias("_is_object"),
        _is_object(variant, "$.data").alias("_data_is_object"),
        *[
            (kind_or_absent if field == SCHEMA_VERSION_FIELD else kind)(f"$.{field}").alias(column)
            for field, column in _KINDS.items()
        ],
        F.when(_is_object(variant, "$.data"), F.lit("OBJECT")).otherwise(kind("$.data")).alias("_kind_data"),
        _by_aggregate_type(aggregate_type, known, lambda t: kind(data_id_path(t))).alias("_kind_data_id"),
        _by_aggregate_type(
            aggregate_type, known, lambda t: F.try_variant_get(variant, data_id_path(t), "string")
        ).alias("_data_id"),
        *[
            F.try_variant_get(variant, f"$.{field}", data_type).alias(f"_{name}")
            for name, (field, data_type) in HEADER.items()
        ],
        F.try_variant_get(variant, f"$.{SCHEMA_VERSION_FIELD}", "bigint").alias("_schema_version"),
    ]
