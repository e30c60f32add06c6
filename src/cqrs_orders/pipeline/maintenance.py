"""Table maintenance: trim the operational tables to their window, cluster the MERGE targets on their key,
then VACUUM what no reader needs any more.

Every micro-batch's MERGE leaves a few small files, and silver is not auto-compacted (see
:data:`~.tables.AUTO_COMPACTED`), so a long-running projection slowly scatters each read model over many
files. ``OPTIMIZE ... ZORDER BY`` the key puts each key range back into few files, which is what lets a
MERGE bounded to a batch's key range (:func:`~.silver.merge_latest`) skip the rest.

The files are kept to :data:`REWRITE_FILE_BYTES`, not OPTIMIZE's default of 1 GiB: without deletion
vectors (Synapse cannot read them) a MERGE rewrites every file it touches whole, so one large file would
make every batch rewrite the whole table.

Runs beside the streaming projection: a batch that collides with an OPTIMIZE runs again (:mod:`.conflicts`),
and so does an OPTIMIZE that collides with a batch.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from functools import partial

from pyspark.sql import functions as F

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table
from cqrs_orders.pipeline.conflicts import retry_on_conflict
from cqrs_orders.pipeline.read_models import READ_MODELS
from cqrs_orders.pipeline.retention import DEFAULT_OPS_RETENTION_DAYS, check_ops_retention, check_retention
from cqrs_orders.pipeline.sessions import isolated_session
from cqrs_orders.pipeline.tables import OPERATIONAL_WINDOWS, PIPELINE_TABLES, ensure_tables

log = logging.getLogger(__name__)

#: The tables worth clustering, and the columns their MERGEs and range filters use: each read model's
#: cluster key.
CLUSTER_KEYS = {model.table: model.cluster_key for model in READ_MODELS}
#: OPTIMIZE's target file size for them (Delta's default is 1 GiB).
REWRITE_FILE_BYTES = 32 * 1024 * 1024
MAX_FILE_SIZE_CONF = "spark.databricks.delta.optimize.maxFileSize"


def maintain(
    spark,
    settings: Settings,
    *,
    vacuum: bool = True,
    retain_hours: float | None = None,
    ops_retention_days: int = DEFAULT_OPS_RETENTION_DAYS,
) -> dict:
    """Delete the operational tables' rows older than ``ops_retention_days`` (:func:`trim_operational`);
    OPTIMIZE ZORDER BY each of :data:`CLUSTER_KEYS` (of more than one file); then, with ``vacuum``,
    VACUUM every pipeline table and the embedded event log (what its compactions replaced).

    ``retain_hours``: how long removed files stay for time travel and lagging streams (default: each
    table's ``delta.deletedFileRetentionDuration``, 7 days). Less than
    :data:`~.retention.MIN_RETAIN_HOURS` is refused before anything runs: a stream or query still reading
    an older version would lose its files, and Delta's own check refuses only 0.
    Returns the rows trimmed per operational table, per clustered table the number of files before and
    after and the seconds it took, and the names of the vacuumed tables.
    """
    check_retention(retain_hours)
    check_ops_retention(ops_retention_days)
    ensure_tables(spark, settings)
    trimmed = trim_operational(spark, settings, ops_retention_days)
    session = isolated_session(spark)  # the file-size conf stays out of the caller's session
    session.conf.set(MAX_FILE_SIZE_CONF, str(REWRITE_FILE_BYTES))
    optimized = {}
    for name, key in CLUSTER_KEYS.items():
        table = Table(settings.table(name))
        before, started = _file_count(session, table), time.monotonic()
        if before <= 1:  # nothing a MERGE could skip: rewriting the one file would buy nothing
            log.info("%s: %d file(s), nothing to cluster", name, before)
            continue
        log.info("OPTIMIZE %s ZORDER BY (%s): %d files", name, ", ".join(key), before)
        zorder = partial(table.delta(session).optimize().executeZOrderBy, *key)
        retry_on_conflict(zorder, f"OPTIMIZE {name}")
        optimized[name] = {
            "files_before": before,
            "files_after": _file_count(session, table),
            "seconds": round(time.monotonic() - started, 2),
        }
    with_log = settings.source == "event_log" and settings.event_log_path.exists()
    vacuumed = vacuum_tables(session, settings, PIPELINE_TABLES, retain_hours, with_log) if vacuum else []
    return {"trimmed": trimmed, "optimized": optimized, "vacuumed": vacuumed}


def trim_operational(spark, settings: Settings, days: int) -> dict[str, int]:
    """Delete the rows of each of :data:`~.tables.OPERATIONAL_WINDOWS` older than ``days``, except each
    name's newest row; returns the rows deleted per table. The VACUUM that follows (or the next one)
    removes their files."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    trimmed = {}
    for name, (time_column, name_column) in OPERATIONAL_WINDOWS.items():
        table = Table(settings.table(name))
        rows = table.read(spark)
        newest = rows.groupBy(name_column).agg(F.max(time_column).alias("newest")).collect()
        old = F.col(time_column) < F.lit(cutoff)
        for row in newest:  # a handful of names: one literal condition each
            if row["newest"] is not None:
                kept = F.col(name_column).eqNullSafe(F.lit(row[name_column])) & (
                    F.col(time_column) == F.lit(row["newest"])
                )
                old &= ~kept
        trimmed[name] = rows.where(old).count()
        if trimmed[name]:
            log.info("%s: deleting %d rows older than %d days", name, trimmed[name], days)
            retry_on_conflict(partial(table.delta(spark).delete, old), f"DELETE FROM {name}")
    return trimmed


def vacuum_tables(
    spark,
    settings: Settings,
    names,
    retain_hours: float | None,
    event_log: bool,
    *,
    enforce_retention: bool = True,
) -> list[str]:
    """VACUUM the tables ``names`` and, with ``event_log``, the embedded event log; returns what was
    vacuumed. ``maintain`` and an erasure share it (``enforce_retention=False``: Delta's retention check is
    off, so the event log's minimum is lifted too)."""
    vacuumed = []
    for name in names:
        log.info("VACUUM %s", name)
        Table(settings.table(name)).delta(spark).vacuum(retain_hours)
        vacuumed.append(name)
    if event_log:
        log_files = EventLog(settings.event_log_path, settings.event_log_partitions)
        deleted = log_files.vacuum(retain_hours, enforce_retention=enforce_retention)
        log.info("VACUUM event_log: %d files deleted", deleted)
        vacuumed.append("event_log")
    return vacuumed


def _file_count(session, table) -> int:
    return table.delta(session).detail().first()["numFiles"]
