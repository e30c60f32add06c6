"""Erasure on the lake: the registry of erased customers, the rewrite of every table that holds their
personal data, the VACUUM that deletes the old files, and the mask every micro-batch applies to an erased
customer's records.

Where personal data lives in the lake (:data:`PERSONAL_COLUMNS`, which a test holds against every table
of :data:`~.tables.SCHEMAS`): the raw bodies of ``bronze_events`` and ``bronze_quarantine`` (whole events)
and ``silver_customers.customer_name`` / ``.email``. The event history is a view over bronze; gold and the
ops tables name customers by id only. Delta statistics are kept on none of these columns
(:data:`~.tables.STATS_COLUMNS`), so the ``_delta_log`` commits, which outlive the files they describe,
never hold a personal value; a rewrite's commit records its predicate, so every rewrite here names the
customer by id only and takes the new values from a DataFrame, never from literals.

An erased customer cannot come back: the registry (``ops_erasures``) is read by every micro-batch, which
masks its records before anything is written (:func:`mask_erased`): an old event replayed from the bus
(Event Hubs keeps its retention whatever we erase; a ``relay --from`` republish; a quarantine replay)
lands masked, and ``rebuild`` reads the masked bronze.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import asdict

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cqrs_orders.application.erasure import (
    MARKER,
    PERSONAL_VALUE,
    REPLACEMENT_SPARK,
    Erasure,
    mask_personal,
)
from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.pipeline.conflicts import retry_on_conflict
from cqrs_orders.pipeline.maintenance import vacuum_tables
from cqrs_orders.pipeline.retention import MIN_RETAIN_HOURS
from cqrs_orders.pipeline.tables import ensure_tables

log = logging.getLogger(__name__)

#: The registry of erased customers: who, when, why, on whose word.
REGISTRY = "ops_erasures"
#: Per table, the columns that hold personal data. A body is masked member by member (its other fields
#: stay); a read model's column is set to the marker.
PERSONAL_COLUMNS = {
    "bronze_events": ("body",),
    "bronze_quarantine": ("body",),
    "silver_customers": ("customer_name", "email"),
}
#: Delta's own switch for VACUUM retentions under its minimum; an erasure vacuums with less than
#: :data:`~.retention.MIN_RETAIN_HOURS` only where it is off (a test), as Delta itself requires.
RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"


def mask_body(body: Column) -> Column:
    """``body`` with every personal member's value replaced by the marker: the Spark form of
    :func:`~cqrs_orders.application.erasure.mask_personal` (the same pattern)."""
    return F.regexp_replace(body, F.lit(PERSONAL_VALUE), F.lit(REPLACEMENT_SPARK))


def erased_ids(spark, settings: Settings) -> list[str]:
    """Every customer id in the registry (none before the registry exists)."""
    registry = Table(settings.table(REGISTRY))
    if not registry.exists(spark):
        return []
    return [row[0] for row in registry.read(spark).select("customer_id").collect()]


def mask_erased(validated: DataFrame, ids: Collection[str]) -> DataFrame:
    """Validated records with the bodies of erased customers' records masked: what a micro-batch writes to
    bronze, the quarantine and (parsed from those bodies) silver. A record is the customer's when its
    envelope says so (``aggregate_id``) or its bus key does (``partition_key``: also for a body too broken
    to name anything). Without erased ids the records are returned as they are (the plan unchanged)."""
    if not ids:
        return validated
    ids = sorted(ids)
    theirs = F.col("aggregate_id").isin(ids) | F.col("partition_key").isin(ids)
    return validated.withColumn("body", F.when(theirs, mask_body(F.col("body"))).otherwise(F.col("body")))


def check_retention(spark, retain_hours: float | None) -> bool:
    """Whether a VACUUM of ``retain_hours`` may run: :data:`~.retention.MIN_RETAIN_HOURS` or more, or
    anything where Delta's retention check is switched off (then returns ``False``: the event log's VACUUM
    lifts its minimum too). Raises ``ConfigurationError`` otherwise, before anything is erased."""
    checked = spark.conf.get(RETENTION_CHECK_CONF, "true").lower() != "false"
    if checked and retain_hours is not None and retain_hours < MIN_RETAIN_HOURS:
        raise ConfigurationError(
            f"Refusing to VACUUM with --retain-hours {retain_hours:g}: a lagging stream or a time-travel "
            f"query would lose its files. Pass {MIN_RETAIN_HOURS} or more (the erased values' old files "
            "are deleted by that VACUUM, or by the nightly maintenance once the retention has passed)."
        )
    return checked


def register(spark, settings: Settings, erasure: Erasure) -> Erasure:
    """Add ``erasure`` to the registry unless the customer is in it; returns the entry kept (the first)."""
    registry = Table(settings.table(REGISTRY))
    row = spark.createDataFrame([asdict(erasure)], registry.read(spark).schema)
    retry_on_conflict(
        lambda: (
            registry.delta(spark)
            .alias("t")
            .merge(row.alias("s"), "t.customer_id = s.customer_id")
            .whenNotMatchedInsertAll()
            .execute()
        ),
        f"register the erasure of {erasure.customer_id}",
    )
    kept = registry.read(spark).where(F.col("customer_id") == erasure.customer_id).first()
    return Erasure(kept["customer_id"], kept["erased_at"], kept["reason"], kept["erased_by"])


def erase_in_lake(
    spark,
    settings: Settings,
    erasure: Erasure,
    values: Collection[str] = (),
    *,
    retain_hours: float | None = None,
    vacuum: bool = True,
) -> dict:
    """Register ``erasure`` and make the customer's personal data unreadable in every table of the lake.

    ``values``: the personal values the write store held (:class:`~.erasure.WriteStoreErasure`), searched
    for in quarantined records that name no aggregate (a body too broken to parse). Each table is
    rewritten twice over if needed: a micro-batch that read the registry just before the customer entered
    it may append the customer's records unmasked after the first pass; the second finds them. Then, with
    ``vacuum``, every rewritten table (and the embedded event log) is vacuumed with ``retain_hours``
    (default: each table's own, 7 days): until then the old files stay readable to time travel, and the
    nightly ``maintain`` deletes them once the retention has passed.

    Returns the rows rewritten per table, the vacuumed tables and the seconds it took."""
    started = time.monotonic()
    checked = check_retention(spark, retain_hours)
    ensure_tables(spark, settings)
    kept = register(spark, settings, erasure)
    customer_id = erasure.customer_id
    values = sorted({value for value in values if value and value != MARKER})
    rewritten: dict[str, int] = {}
    for _ in range(2):
        changed = {
            "bronze_events": _rewrite_bodies(spark, settings, "bronze_events", customer_id, ()),
            "bronze_quarantine": _rewrite_bodies(spark, settings, "bronze_quarantine", customer_id, values),
            "silver_customers": _rewrite_customer(spark, settings, customer_id),
        }
        for name, count in changed.items():
            rewritten[name] = rewritten.get(name, 0) + count
        if not any(changed.values()):
            break
    if settings.source == "event_log" and settings.event_log_path.exists():
        from cqrs_orders.adapters.event_log import EventLog

        event_log = EventLog(settings.event_log_path, settings.event_log_partitions)
        rewritten["event_log"] = event_log.erase(customer_id, values)
    vacuumed = []
    if vacuum:
        with_log = "event_log" in rewritten
        vacuumed = vacuum_tables(
            spark, settings, PERSONAL_COLUMNS, retain_hours, with_log, enforce_retention=checked
        )
    seconds = round(time.monotonic() - started, 2)
    log.info("lake: customer %s erased in %.2f s (rows rewritten: %s)", customer_id, seconds, rewritten)
    return {
        "customerId": customer_id,
        "erasedAt": kept.erased_at.isoformat(),
        "rewritten": rewritten,
        "vacuumed": vacuumed,
        "seconds": seconds,
    }


def _rewrite_bodies(spark, settings: Settings, name: str, customer_id: str, values: list[str]) -> int:
    """Mask the bodies of ``customer_id``'s records in table ``name`` (bronze or the quarantine); for the
    quarantine also the records naming no aggregate whose body holds one of ``values`` (each replaced by
    the marker). The new bodies are computed here (:func:`mask_personal`) and merged in by the old body's
    text, so the commit's predicate holds no value."""
    table = Table(settings.table(name))
    rows = table.read(spark)
    named = F.get_json_object(F.col("body"), "$.aggregateId")
    if name == "bronze_events":  # a valid record: its envelope names it (the column data skipping reads)
        theirs = F.col("aggregate_id") == customer_id
        bounds = F.col("t.aggregate_id") == customer_id
    else:
        theirs = (named == customer_id) | (F.col("partition_key") == customer_id)
        bounds = F.lit(True)
    anonymous = named.isNull() & F.col("partition_key").isNull()
    if values:
        holds = F.lit(False)
        for value in values:
            holds = holds | F.col("body").contains(value)
        theirs = theirs | (anonymous & holds)
    changes = {}
    for (body,) in rows.where(theirs).select("body").distinct().collect():
        masked = mask_personal(body)
        for value in values:
            masked = masked.replace(value, MARKER)
        if masked != body:
            changes[body] = masked
    if not changes:
        return 0
    source = spark.createDataFrame(list(changes.items()), "old_body string, new_body string")

    def merge():
        (
            table.delta(spark)
            .alias("t")
            .merge(
                F.broadcast(source).alias("s"),
                bounds & (F.col("t.body") == F.col("s.old_body")),
            )
            .whenMatchedUpdate(set={"body": "s.new_body"})
            .execute()
        )

    retry_on_conflict(merge, f"erase {customer_id} in {name}")
    return len(changes)


def _rewrite_customer(spark, settings: Settings, customer_id: str) -> int:
    """Set ``silver_customers``' personal columns of ``customer_id`` to the marker."""
    table = Table(settings.table("silver_customers"))
    personal = PERSONAL_COLUMNS["silver_customers"]
    key = F.col("customer_id") == customer_id
    differs = F.lit(False)
    for column in personal:
        differs = differs | (F.col(column) != MARKER)
    pending = key & differs
    count = table.read(spark).where(pending).count()
    if count:
        retry_on_conflict(
            lambda: table.delta(spark).update(pending, {column: F.lit(MARKER) for column in personal}),
            f"erase {customer_id} in silver_customers",
        )
    return count
