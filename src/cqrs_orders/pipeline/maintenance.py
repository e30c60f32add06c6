"""Table maintenance: cluster the MERGE targets on their key, then VACUUM what no reader needs any more.

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
from functools import partial

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.pipeline.conflicts import retry_on_conflict
from cqrs_orders.pipeline.read_models import READ_MODELS
from cqrs_orders.pipeline.sessions import isolated_session
from cqrs_orders.pipeline.tables import PIPELINE_TABLES, ensure_tables

log = logging.getLogger(__name__)

#: The tables worth clustering, and the columns their MERGEs and range filters use: each read model's
#: cluster key.
CLUSTER_KEYS = {model.table: model.cluster_key for model in READ_MODELS}
#: OPTIMIZE's target file size for them (Delta's default is 1 GiB).
REWRITE_FILE_BYTES = 32 * 1024 * 1024
MAX_FILE_SIZE_CONF = "spark.databricks.delta.optimize.maxFileSize"
#: Delta's recommended floor for VACUUM's retention (7 days).
MIN_RETAIN_HOURS = 168


def maintain(spark, settings: Settings, *, vacuum: bool = True, retain_hours: float | None = None) -> dict:
    """OPTIMIZE ZORDER BY each of :data:`CLUSTER_KEYS` (of more than one file); then, with ``vacuum``,
    VACUUM every pipeline table and the embedded event log (what its compactions replaced).

    ``retain_hours``: how long removed files stay for time travel and lagging streams (default: each
    table's ``delta.deletedFileRetentionDuration``, 7 days). Less than :data:`MIN_RETAIN_HOURS` is refused
    before anything runs: a stream or query still reading an older version would lose its files, and
    Delta's own check refuses only 0.
    Returns, per clustered table, the number of files before and after and the seconds it took, and the
    names of the vacuumed tables.
    """
    check_retention(retain_hours)
    ensure_tables(spark, settings)
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
    return {"optimized": optimized, "vacuumed": vacuumed}


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


def check_retention(retain_hours: float | None) -> None:
    """Refuse a VACUUM retention under :data:`MIN_RETAIN_HOURS` (None: each table's own, 7 days)."""
    if retain_hours is not None and retain_hours < MIN_RETAIN_HOURS:
        raise ConfigurationError(
            f"Refusing to VACUUM with --retain-hours {retain_hours:g}: a lagging stream (silver reads "
            f"bronze_events) or a time-travel query would lose its files. Pass {MIN_RETAIN_HOURS} or "
            "more, or leave it out for each table's own retention."
        )


def _file_count(session, table) -> int:
    return table.delta(session).detail().first()["numFiles"]
