"""Where bus records come from: the embedded event log or Event Hubs over Kafka, as the same columns.

Everything downstream sees only ``body, partition, offset, enqueued_time, partition_key``, so bronze never
knows which bus delivered a record.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.pipeline.tables import RECORD_SCHEMA


def read_records(spark, settings: Settings) -> DataFrame:
    """A streaming DataFrame of bus records (``RECORD_SCHEMA``) from ``settings.source``."""
    if settings.source == "kafka":
        from cqrs_orders.adapters.kafka_source import read_kafka_records

        records = read_kafka_records(spark, settings)
    else:
        records = spark.readStream.format("delta").load(str(settings.event_log_path))
    return as_records(records)


def as_records(df: DataFrame) -> DataFrame:
    """Exactly the record columns, in order and with the contract types."""
    return df.select(
        [F.col(f"`{field.name}`").cast(field.dataType).alias(field.name) for field in RECORD_SCHEMA]
    )


def source_exists(spark, settings: Settings) -> bool:
    """Whether there is anything to stream from yet (the embedded log appears with its first append)."""
    if settings.source != "event_log":
        return True
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, str(settings.event_log_path))
