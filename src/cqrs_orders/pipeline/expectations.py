"""The envelope expectations, kept as data: a name, one small function saying when a record meets it, and
the expectations it depends on (the dqx style: checks are rows of a table, not branches of one function).

A check reads the values :mod:`.bronze` extracts once from the parsed body (columns starting with ``_``).
A failed expectation is reported by its name (what ``quarantine --reason`` selects by); one that can say
what exactly is wrong (``because``: the schema version an event is newer than the code by) adds that text
right after its name.
An expectation *applies* only when every one it depends on passed, so a record lists its root causes only
(a body that is not JSON fails ``body_is_json_object`` alone). :func:`failed_expectations` evaluates all of
them in one projection, in the order of :data:`EXPECTATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from cqrs_orders.envelope import EVENT_CATALOG, EVENT_VERSIONS, NEWER_THAN_KNOWN, AggregateType

MAX_BODY_BYTES = 1024 * 1024
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: ISO-8601 date and time with an explicit zone (``Z`` or ``+hh:mm``); a zone-less time is ambiguous.
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$"
INTEGER_KINDS = ("BIGINT", "INT", "SMALLINT", "TINYINT")


@dataclass(frozen=True)
class Expectation:
    """``holds()`` is a column, true when a record meets the expectation; ``after`` names the expectations
    that must pass before this one applies."""

    name: str
    holds: Callable[[], Column]
    after: tuple[str, ...] = ()
    #: Says, for a record that fails, what exactly is wrong: reported right after the name.
    because: Callable[[], Column] | None = None


def _present(kind_column: str) -> Callable[[], Column]:
    return lambda: F.col(kind_column).isNotNull() & (F.col(kind_column) != "VOID")


def _is_string(kind_column: str) -> Callable[[], Column]:
    return lambda: F.col(kind_column) == "STRING"


def body_within_1mib() -> Column:
    return F.octet_length("body") <= MAX_BODY_BYTES


def body_is_json_object() -> Column:
    return F.col("_is_object")


def event_id_is_uuid() -> Column:
    return (F.col("_kind_event_id") == "STRING") & F.col("_event_id").rlike(UUID_PATTERN)


def event_type_known() -> Column:
    return F.col("_event_type").isin(list(EVENT_CATALOG))


def aggregate_type_known() -> Column:
    return F.col("_aggregate_type").isin([t.value for t in AggregateType])


def event_type_matches_aggregate_type() -> Column:
    catalog = F.create_map(*[F.lit(x) for pair in EVENT_CATALOG.items() for x in (pair[0], pair[1].value)])
    return F.try_element_at(catalog, F.col("_event_type")) == F.col("_aggregate_type")


def aggregate_id_is_string() -> Column:
    return (F.col("_kind_aggregate_id") == "STRING") & F.length("_aggregate_id").between(1, 128)


def version_is_integer() -> Column:
    return F.col("_kind_version").isin(*INTEGER_KINDS)


def version_at_least_1() -> Column:
    return F.col("_version") >= 1


def schema_version_is_integer() -> Column:
    """Absent (version 1: what events written before versions carry) or a JSON integer."""
    return F.col("_kind_schema_version").isin("ABSENT", *INTEGER_KINDS)


def _schema_version() -> Column:
    return F.coalesce(F.col("_schema_version"), F.lit(1))


def schema_version_at_least_1() -> Column:
    return _schema_version() >= 1


def _known_version() -> Column:
    versions = F.create_map(*[F.lit(x) for pair in EVENT_VERSIONS.items() for x in pair])
    return F.try_element_at(versions, F.col("_event_type"))


def schema_version_known() -> Column:
    """Not newer than this code's version of the event type: an event of a newer schema is never read in
    part. An unknown event type has no version to compare with (``event_type_known`` names it)."""
    return F.coalesce(_schema_version() <= _known_version(), F.lit(True))


def schema_version_too_new() -> Column:
    """The reason for :func:`schema_version_known`, from the one text the Python readers raise."""
    template = NEWER_THAN_KNOWN.format(version="%d", event_type="%s", known="%d")
    return F.format_string(template, _schema_version(), F.col("_event_type"), _known_version())


def timestamp_is_iso8601_with_zone() -> Column:
    text = F.col("_event_time")
    return (
        (F.col("_kind_timestamp") == "STRING")
        & text.rlike(TIMESTAMP_PATTERN)
        & F.try_to_timestamp(text).isNotNull()
    )


def data_is_object() -> Column:
    return F.col("_data_is_object")


def data_has_aggregate_id() -> Column:
    return F.col("_kind_data_id") == "STRING"


def data_matches_aggregate_id() -> Column:
    return F.col("_data_id") == F.col("_aggregate_id")


def data_matches_state_schema() -> Column:
    """The fields the aggregate's read model needs are present and well-formed: its read model's
    ``state_is_complete``, which :mod:`.bronze` evaluates on the typed ``data``."""
    return F.col("_state_is_complete")


_OBJECT = ("body_is_json_object",)

#: Every expectation a record can fail, in the order they are reported.
EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation("body_within_1mib", body_within_1mib),
    Expectation("body_is_json_object", body_is_json_object),
    Expectation("event_id_present", _present("_kind_event_id"), _OBJECT),
    Expectation("event_id_is_uuid", event_id_is_uuid, ("event_id_present",)),
    Expectation("event_type_present", _present("_kind_event_type"), _OBJECT),
    Expectation("event_type_is_string", _is_string("_kind_event_type"), ("event_type_present",)),
    Expectation("event_type_known", event_type_known, ("event_type_is_string",)),
    Expectation("aggregate_type_present", _present("_kind_aggregate_type"), _OBJECT),
    Expectation("aggregate_type_is_string", _is_string("_kind_aggregate_type"), ("aggregate_type_present",)),
    Expectation("aggregate_type_known", aggregate_type_known, ("aggregate_type_is_string",)),
    Expectation(
        "event_type_matches_aggregate_type",
        event_type_matches_aggregate_type,
        ("event_type_known", "aggregate_type_known"),
    ),
    Expectation("aggregate_id_present", _present("_kind_aggregate_id"), _OBJECT),
    Expectation("aggregate_id_is_string", aggregate_id_is_string, ("aggregate_id_present",)),
    Expectation("version_present", _present("_kind_version"), _OBJECT),
    Expectation("version_is_integer", version_is_integer, ("version_present",)),
    Expectation("version_at_least_1", version_at_least_1, ("version_is_integer",)),
    Expectation("schema_version_is_integer", schema_version_is_integer, _OBJECT),
    Expectation("schema_version_at_least_1", schema_version_at_least_1, ("schema_version_is_integer",)),
    Expectation(
        "schema_version_known",
        schema_version_known,
        ("schema_version_at_least_1",),
        because=schema_version_too_new,
    ),
    Expectation("timestamp_present", _present("_kind_timestamp"), _OBJECT),
    Expectation("timestamp_is_iso8601_with_zone", timestamp_is_iso8601_with_zone, ("timestamp_present",)),
    Expectation("data_present", _present("_kind_data"), _OBJECT),
    Expectation("data_is_object", data_is_object, ("data_present",)),
    Expectation("data_has_aggregate_id", data_has_aggregate_id, ("data_is_object", "aggregate_type_known")),
    Expectation(
        "data_matches_aggregate_id",
        data_matches_aggregate_id,
        ("data_has_aggregate_id", "aggregate_id_is_string"),
    ),
    Expectation(
        "data_matches_state_schema",
        data_matches_state_schema,
        ("data_has_aggregate_id", "schema_version_known"),
    ),
)
NAMES = tuple(e.name for e in EXPECTATIONS)


def failed_expectations(expectations: tuple[Expectation, ...] = EXPECTATIONS) -> Column:
    """An array column: the names of the expectations a record fails (empty when it meets all).

    Built as a ``concat`` of one-name-or-empty arrays, not ``filter(array(...))``: a higher-order function
    runs without generated code and drags every check under it along.
    """
    passed: dict[str, Column] = {}
    none = F.array().cast("array<string>")
    parts = []
    for expectation in expectations:
        applies = F.lit(True)
        for name in expectation.after:
            applies = applies & passed[name]
        holds = F.coalesce(expectation.holds(), F.lit(False))
        passed[expectation.name] = applies & holds
        reasons = [F.lit(expectation.name)]
        if expectation.because is not None:
            reasons.append(expectation.because())
        parts.append(F.when(applies & ~holds, F.array(*reasons)).otherwise(none))
    return F.concat(*parts)
