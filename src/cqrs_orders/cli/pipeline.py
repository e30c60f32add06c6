"""Subcommands of the pipeline: ``ingest-events``, ``project``, ``rebuild`` and ``maintain``.

Progress goes to stderr; stdout gets one JSON summary line, so scripts can read the outcome.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cqrs_orders.config import Settings, positive_seconds
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.exit_codes import ExitCode
from cqrs_orders.pipeline.pause import DEFAULT_PAUSE_TIMEOUT
from cqrs_orders.pipeline.retention import DEFAULT_OPS_RETENTION_DAYS, check_ops_retention, check_retention

log = logging.getLogger(__name__)

#: Lines appended to the event log per commit (one Delta commit each).
INGEST_CHUNK = 50_000
#: ``project --continuous``'s trigger interval, in seconds.
DEFAULT_TRIGGER_SECONDS = 1.0


def register(subcommands, common) -> None:
    """Add this area's subcommands; each sets ``run(args, settings) -> exit code``."""
    ingest = subcommands.add_parser(
        "ingest-events",
        parents=[common],
        help="append raw event bodies from a file to the event log (backfills, replays, tests)",
        description="Append each line of FILE, byte for byte (only the line terminator is removed), valid or "
        "not, as one record to the embedded event log; invalid ones end up in bronze_quarantine.",
    )
    ingest.add_argument("--file", required=True, type=Path, metavar="FILE", help="JSON Lines file of events")
    ingest.set_defaults(run=run_ingest)

    project = subcommands.add_parser(
        "project",
        parents=[common],
        help="stream the event bus into bronze, silver and gold",
        description="Run the Spark projection, one streaming query: each micro-batch of the bus goes into "
        "silver_orders and silver_customers, then bronze_events / bronze_quarantine (the view "
        "silver_event_history reads bronze_events); "
        "gold_daily_order_metrics is refreshed beside it. Exactly once, restartable; one per warehouse.",
    )
    mode = project.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="process everything available, then exit")
    mode.add_argument("--continuous", action="store_true", help="keep running until Ctrl-C / SIGTERM")
    project.add_argument(
        "--trigger-seconds",
        type=seconds_argument,
        default=DEFAULT_TRIGGER_SECONDS,
        metavar="N",
        help=f"with --continuous: start a micro-batch every N seconds (default {DEFAULT_TRIGGER_SECONDS:g})",
    )
    project.add_argument(
        "--profile",
        action="store_true",
        help="log where each micro-batch's time goes, step by step (off by default)",
    )
    project.set_defaults(run=run_project)

    rebuild = subcommands.add_parser(
        "rebuild",
        parents=[common],
        help="rebuild every read model and gold from bronze_events, checked, beside the running projection; "
        "--rollback undoes the last one",
        description="Build the next generation of every read model (silver_orders, silver_customers, "
        "silver_product_sales) and gold_daily_order_metrics from one bronze_events snapshot, check it "
        "against that snapshot (aggregates, highest version per aggregate, version gaps) and publish it "
        "only if it agrees, recording each table's previous Delta version in ops_rebuilds. A running "
        "projection is paused between micro-batches meanwhile and resumed after (none running: its "
        "checkpoint is finished first); one rebuild at a time. With --rollback, restore every table to its "
        "version before the newest rebuild not yet rolled back (within the tables' retention, 7 days by "
        "default) and re-apply the events that arrived since. Bronze is never touched.",
    )
    rebuild.add_argument(
        "--rollback",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="return to the generation before the last rebuild instead of building a new one (the bundle's "
        "job passes --no-rollback by default)",
    )
    rebuild.add_argument(
        "--pause-timeout",
        type=seconds_argument,
        default=DEFAULT_PAUSE_TIMEOUT,
        metavar="N",
        help=f"wait at most N seconds for a running projection to pause (default {DEFAULT_PAUSE_TIMEOUT:g})",
    )
    rebuild.set_defaults(run=run_rebuild)

    maintain = subcommands.add_parser(
        "maintain",
        parents=[common],
        help="cluster the read models on their keys and VACUUM old files (safe beside `project`)",
        description="OPTIMIZE silver_orders and silver_customers ZORDER BY their "
        "aggregate key into files of at most 32 MiB (what keeps MERGEs small on long runs), then VACUUM "
        "every pipeline table and the embedded event log. A micro-batch that collides with it runs again. "
        "Delta's VACUUM prints its own lines; the JSON summary is the last line of stdout.",
    )
    maintain.add_argument(
        "--retain-hours",
        type=float,
        metavar="N",
        help="keep removed files this long for time travel and lagging streams (at least 168; default: "
        "each table's own retention, 7 days)",
    )
    maintain.add_argument(
        "--ops-retention-days",
        type=int,
        metavar="N",
        default=DEFAULT_OPS_RETENTION_DAYS,
        help="delete the rows of ops_stream_progress and ops_projection_lag older than N days, each "
        f"projection's newest row excepted (default {DEFAULT_OPS_RETENTION_DAYS})",
    )
    maintain.add_argument("--no-vacuum", action="store_true", help="only OPTIMIZE and trim, VACUUM nothing")
    maintain.set_defaults(run=run_maintain)


def run_ingest(args, settings: Settings) -> int:
    from cqrs_orders.adapters.delta_log import check_delta_log
    from cqrs_orders.adapters.event_log import EventLog, partition_key_of

    try:
        raw = args.file.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"Cannot read {args.file}: {error.strerror}. Pass an existing file."
        ) from None
    bodies = _lines(raw)
    check_delta_log(settings.event_log_path, "event_log")
    event_log = EventLog(settings.event_log_path, partitions=settings.event_log_partitions)
    for start in range(0, len(bodies), INGEST_CHUNK):
        chunk = bodies[start : start + INGEST_CHUNK]
        event_log.append([(partition_key_of(body), body) for body in chunk])
        log.info("appended %d/%d records to %s", start + len(chunk), len(bodies), settings.event_log_path)
    print(json.dumps({"ingested": len(bodies), "eventLog": str(settings.event_log_path)}))
    return ExitCode.OK


def run_project(args, settings: Settings) -> int:
    from cqrs_orders.adapters.delta_log import check_warehouse_tables
    from cqrs_orders.pipeline import checkpoint_lock, profile
    from cqrs_orders.pipeline.runner import CHECKPOINT, run_continuous, run_once
    from cqrs_orders.spark import get_spark

    check_warehouse_tables(settings)  # a damaged table is named before Spark meets it
    if args.profile:
        profile.enable()
    with checkpoint_lock.exclusive(settings.checkpoint(CHECKPOINT)):  # refuse before Spark starts
        log.info("starting Spark")
        spark = get_spark("cqrs-orders-projection")
        if args.once:
            log.info("projecting everything available")
            summary = run_once(spark, settings)
        else:
            summary = run_continuous(spark, settings, args.trigger_seconds)
    print(json.dumps(summary))
    return ExitCode.OK


def run_rebuild(args, settings: Settings) -> int:
    from cqrs_orders.adapters.delta_log import check_warehouse_tables
    from cqrs_orders.pipeline.rebuild import one_at_a_time, rebuild, rollback
    from cqrs_orders.spark import get_spark

    check_warehouse_tables(settings)  # a damaged table is named before Spark meets it
    with one_at_a_time(settings):  # a second rebuild is refused before Spark starts
        log.info("starting Spark")
        spark = get_spark("cqrs-orders-rebuild")
        if args.rollback:
            log.info("rolling back the last rebuild")
            summary = rollback(spark, settings, args.pause_timeout)
        else:
            log.info("rebuilding silver and gold from bronze_events")
            summary = rebuild(spark, settings, args.pause_timeout)
    print(json.dumps(summary, default=str))
    return ExitCode.OK


def run_maintain(args, settings: Settings) -> int:
    from cqrs_orders.adapters.delta_log import check_warehouse_tables
    from cqrs_orders.pipeline.maintenance import maintain
    from cqrs_orders.spark import get_spark

    check_retention(args.retain_hours)  # before Spark's start, not after
    check_ops_retention(args.ops_retention_days)
    check_warehouse_tables(settings)  # a damaged table is named before Spark meets it
    log.info("starting Spark")
    spark = get_spark("cqrs-orders-maintenance")
    summary = maintain(
        spark,
        settings,
        vacuum=not args.no_vacuum,
        retain_hours=args.retain_hours,
        ops_retention_days=args.ops_retention_days,
    )
    print(json.dumps(summary))
    return ExitCode.OK


def _lines(raw: bytes) -> list[str]:
    """Each line's bytes minus its terminator (``\\n`` or ``\\r\\n``); no trailing empty line."""
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    # The log stores text: invalid UTF-8 is kept visible (U+FFFD) and will be quarantined as not JSON.
    return [line.removesuffix(b"\r").decode("utf-8", errors="replace") for line in lines]


def seconds_argument(text: str) -> float:
    """An argparse type: a positive, finite number of seconds (a usage error, exit 2, otherwise)."""
    try:
        return positive_seconds(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive, finite number of seconds") from None
