"""The Spark schema of the envelope, derived from the pydantic models in :mod:`cqrs_orders.envelope`.

Deriving (rather than writing a second schema by hand) keeps the Python and Spark views of an event from
drifting apart. ``data`` is a union (Order or Customer state); in Spark it becomes one struct holding the
fields of both, and each projection reads the fields of its own aggregate type.

Events of older schema versions are read with the same declarations the Python readers apply
(:data:`~cqrs_orders.envelope.UPCASTERS`): :func:`read_schema` reads ``data`` as any version wrote it, and
:func:`current_state` moves each value to where the current schema has it. The value is the one the body
holds (``from_json`` reads money from its own digits), so the result is exactly what the Python upcast
gives, with no Python in the Spark job.
"""

from __future__ import annotations

import enum
import types
import typing
import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cqrs_orders.envelope import (
    EACH,
    STATE_MODELS,
    STATE_VERSIONS,
    AggregateType,
    EventEnvelope,
    Upcaster,
    steps_after,
)

MONEY_TYPE = T.DecimalType(18, 2)
#: A sum of amounts (a day's revenue): each amount fits MONEY_TYPE, their sum needs the widest decimal.
MONEY_SUM_TYPE = T.DecimalType(38, 2)

_SCALARS = {
    str: T.StringType(),
    int: T.LongType(),
    float: T.DoubleType(),
    bool: T.BooleanType(),
    Decimal: MONEY_TYPE,
    datetime: T.TimestampType(),
    AwareDatetime: T.TimestampType(),
    uuid.UUID: T.StringType(),
}


def spark_schema(model: type[BaseModel]) -> T.StructType:
    """The Spark struct for a pydantic model: same field names, every field nullable (JSON may omit it)."""
    return T.StructType(
        [
            T.StructField(name, _spark_type(field.annotation), True)
            for name, field in model.model_fields.items()
        ]
    )


def _spark_type(annotation) -> T.DataType:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        if len(args) == 1:
            return _spark_type(args[0])
        if all(isinstance(a, type) and issubclass(a, BaseModel) for a in args):
            return _merged_struct(args)
        raise TypeError(f"cannot map union {annotation!r} to Spark")
    if origin in (tuple, list):
        return T.ArrayType(_spark_type(args[0]), True)
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return spark_schema(annotation)
        if issubclass(annotation, enum.Enum):
            return T.StringType()
        for python_type, spark_type in _SCALARS.items():
            if issubclass(annotation, python_type):
                return spark_type
    raise TypeError(f"cannot map {annotation!r} to Spark")


def _merged_struct(models) -> T.StructType:
    fields: dict[str, T.StructField] = {}
    for model in models:
        for field in spark_schema(model).fields:
            if field.name in fields and fields[field.name].dataType != field.dataType:
                raise TypeError(f"field {field.name} has different types across {models}")
            fields.setdefault(field.name, field)
    return T.StructType(list(fields.values()))


#: The schema to parse a wire body with ``from_json``.
ENVELOPE_SCHEMA = spark_schema(EventEnvelope)
#: How the pipeline reads a body with ``from_json``: as strictly as Spark's JSON options allow.
JSON_OPTIONS = {"allowSingleQuotes": "false", "allowNonNumericNumbers": "false"}


# --- older schema versions ---------------------------------------------------------------------------


def state_schema(aggregate_type: AggregateType, version: int | None = None) -> T.StructType:
    """The Spark struct of ``aggregate_type``'s state as schema ``version`` wrote it (default: current)."""
    current = spark_schema(STATE_MODELS[aggregate_type])
    if version is None:
        return current
    return _as_written(current, steps_after(aggregate_type, version), ())


def _source(path: tuple[str, ...], steps: tuple[Upcaster, ...]) -> tuple[str, ...]:
    """Where a value at ``path`` of the current schema was in a body the ``steps`` bring up to date."""
    for step in reversed(steps):
        path = step.before(path)
    return path


def _as_written(data_type: T.DataType, steps: tuple[Upcaster, ...], path: tuple[str, ...]) -> T.DataType:
    if isinstance(data_type, T.StructType):
        return T.StructType(
            [
                T.StructField(
                    _source((*path, f.name), steps)[-1], _as_written(f.dataType, steps, (*path, f.name)), True
                )
                for f in data_type.fields
            ]
        )
    if isinstance(data_type, T.ArrayType):
        return T.ArrayType(_as_written(data_type.elementType, steps, (*path, EACH)), True)
    return data_type


def read_schema(*aggregate_types: AggregateType) -> T.StructType:
    """The struct that reads ``data`` of every schema version of ``aggregate_types``: the fields of all of
    them, merged at every depth (a field has one type across versions)."""
    merged: T.DataType | None = None
    for kind in aggregate_types:
        for version in range(1, STATE_VERSIONS[kind] + 1):
            written = state_schema(kind, version)
            merged = written if merged is None else _merged(merged, written, kind.value)
    return merged


def _merged(left: T.DataType, right: T.DataType, where: str) -> T.DataType:
    if isinstance(left, T.StructType) and isinstance(right, T.StructType):
        fields = {f.name: f.dataType for f in left.fields}
        for f in right.fields:
            fields[f.name] = _merged(fields[f.name], f.dataType, where) if f.name in fields else f.dataType
        return T.StructType([T.StructField(name, data_type, True) for name, data_type in fields.items()])
    if isinstance(left, T.ArrayType) and isinstance(right, T.ArrayType):
        return T.ArrayType(_merged(left.elementType, right.elementType, where), True)
    if left != right:
        raise TypeError(f"{where}: a field has different types across schema versions ({left}, {right})")
    return left


def current_state(
    data: Column, data_type: T.StructType, schema_version: Column, aggregate_type: AggregateType
) -> Column:
    """``data`` (read with ``data_type``, which holds :func:`read_schema`'s fields) with every field of the
    current schema holding its value, whatever version ``schema_version`` (null: 1) says the body is of.

    The result keeps ``data_type`` (names only older versions use stay, unread), so an event of the current
    version is ``data`` itself, at no cost. Null for a version newer than the code knows: validation
    quarantines those events before anything reads their state."""
    version = F.coalesce(schema_version, F.lit(1))
    chosen = None
    for written in range(1, STATE_VERSIONS[aggregate_type] + 1):
        value = _moved(data, data_type, data_type, steps_after(aggregate_type, written), ())
        is_written = version == written
        chosen = F.when(is_written, value) if chosen is None else chosen.when(is_written, value)
    return chosen


def _moved(
    column: Column,
    column_type: T.DataType,
    target_type: T.DataType,
    steps: tuple[Upcaster, ...],
    path: tuple[str, ...],
) -> Column:
    """A value of ``target_type`` at ``path`` (current names) from ``column``, the same value as an older
    body holds it: each field taken from where it was (:meth:`~cqrs_orders.envelope.Renamed.before`)."""
    if column_type == target_type and not _changes_below(path, steps):
        return column
    if isinstance(target_type, T.StructType) and isinstance(column_type, T.StructType):
        fields = []
        for f in target_type.fields:
            here = (*path, f.name)
            name = _source(here, steps)[-1]
            if name in column_type.fieldNames():
                value = _moved(column[name], column_type[name].dataType, f.dataType, steps, here)
            else:
                value = F.lit(None).cast(f.dataType)
            fields.append(value.alias(f.name))
        return F.when(column.isNotNull(), F.struct(*fields))
    if isinstance(target_type, T.ArrayType) and isinstance(column_type, T.ArrayType):
        return F.transform(
            column,
            lambda e: _moved(e, column_type.elementType, target_type.elementType, steps, (*path, EACH)),
        )
    return column


def _changes_below(path: tuple[str, ...], steps: tuple[Upcaster, ...]) -> bool:
    """Whether a step renames something at or under ``path`` (or where it was): then it is rebuilt."""
    places = {path, _source(path, steps)}
    return any(
        change.path[: len(path)] in places or (*change.path, change.new)[: len(path)] in places
        for step in steps
        for change in step.changes
    )
