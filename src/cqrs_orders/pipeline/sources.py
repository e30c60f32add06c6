"""Where bus records come from: the embedded event log or Event Hubs over Kafka, as the same columns.

Everything downstream sees only ``body, partition, offset, enqueued_time, partition_key``, so bronze never
knows which bus delivered a record.

Either way a micro-batch reads at most ``settings.max_records_per_batch`` records (bounded catch-up: after an
outage the backlog is worked off in batches of a known size, not taken in one batch that must fit in memory):
``maxOffsetsPerTrigger`` on Kafka (:mod:`cqrs_orders.adapters.kafka_source`), a number of files on the
embedded log (:func:`event_log_options`).
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.pipeline.tables import RECORD_SCHEMA

logger = logging.getLogger(__name__)


def read_records(spark, settings: Settings) -> DataFrame:
    """A streaming DataFrame of bus records (``RECORD_SCHEMA``) from ``settings.source``."""
    if settings.source == "kafka":
        from cqrs_orders.adapters.kafka_source import read_kafka_records

        records = read_kafka_records(spark, settings)
    else:
        # An erasure rewrites records in place (``EventLog.erase``): the stream skips that commit instead of
        # failing on it; bronze and silver are rewritten by the same erasure.
        options = {**event_log_options(settings), "skipChangeCommits": "true"}
        records = spark.readStream.format("delta").options(**options).load(str(settings.event_log_path))
    return as_records(records)


def event_log_options(settings: Settings) -> dict[str, str]:
    """The Delta streaming options that keep a micro-batch of the embedded log within
    ``settings.max_records_per_batch`` records.

    Delta's streaming source has no record limit: it admits whole files (``maxFilesPerTrigger``) or bytes
    (``maxBytesPerTrigger``, which says nothing about records). So the bound comes from the files: none of
    the log's files holds more than one segment of records (:mod:`cqrs_orders.adapters.event_log`), so
    ``limit // segment`` files hold at most ``limit`` records. That holds for the files a running stream
    reads (the appends'; it skips the log's compactions, ``dataChange=false`` commits) and for those a new
    stream starts from (the table's current files, compacted ones included, which stay within a segment).
    A batch holds fewer records than the limit when appends were small (a trickling relay writes a file per
    append), never more. A limit below one segment cannot be kept and is refused.
    """
    from cqrs_orders.adapters.event_log import records_per_file

    limit, per_file = settings.max_records_per_batch, records_per_file(settings.event_log_path)
    if per_file is None:  # a log from before segments: its files may hold any number of records
        logger.warning(
            "the event log at %s was written before its files were limited to a segment of records: "
            "micro-batches are not bounded to %d records (replay its records into a new log to bound them)",
            settings.event_log_path,
            limit,
        )
        return {}
    if limit < per_file:
        raise ConfigurationError(
            f"CQRS_MAX_RECORDS_PER_BATCH={limit} is less than the {per_file} records one file of the "
            f"embedded event log holds: a micro-batch reads whole files, so set it to {per_file} or more."
        )
    return {"maxFilesPerTrigger": str(limit // per_file)}


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
