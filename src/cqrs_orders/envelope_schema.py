"""The Spark schema of the envelope, derived from the pydantic models in :mod:`cqrs_orders.envelope`.

Deriving (rather than writing a second schema by hand) keeps the Python and Spark views of an event from
drifting apart. ``data`` is a union (Order or Customer state); in Spark it becomes one struct holding the
fields of both, and each projection reads the fields of its own aggregate type.
"""

from __future__ import annotations

import enum
import types
import typing
import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel
from pyspark.sql import types as T

from cqrs_orders.envelope import EventEnvelope

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
