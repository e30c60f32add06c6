"""``cqrs-orders quarantine list | replay | acknowledge``: work the records that failed validation.

The logic is :mod:`cqrs_orders.pipeline.quarantine`; this module parses, checks what it can before Spark
starts, and prints: ``list`` a line (or, with ``--json``, a JSON object) per record, ``replay`` and
``acknowledge`` one JSON summary line. ``list`` only reads: on a laptop it runs its SQL
(:mod:`cqrs_orders.query.quarantine`) on DataFusion over the Delta folders, without Spark; with
``CQRS_CATALOG`` set (the ``quarantine`` job) on Spark.

Every option also takes an empty value, meaning "not given": the bundle's ``quarantine`` job passes each of
its parameters on every run (a job cannot leave a parameter out), empty when the operator left it blank.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from datetime import date, datetime, timezone

from cqrs_orders.errors import QuarantineError
from cqrs_orders.exit_codes import ExitCode

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
_ISO_HINT = "an ISO-8601 date or time such as 2025-01-15 or 2025-01-15T10:00:00Z (no zone: UTC)"


def register(subcommands, common) -> None:
    """Add ``quarantine`` and its actions; each action sets ``run(args, settings) -> exit code``."""
    quarantine = subcommands.add_parser(
        "quarantine",
        help="list, replay or acknowledge the records in bronze_quarantine",
        description="Work the quarantine: `list` the records that failed validation and why, `replay` them "
        "through the pipeline once their cause is fixed, or `acknowledge` their versions as lost so the "
        "lag monitor stops reporting the version gap. `cqrs-orders quarantine ACTION --help` for each.",
    )
    actions = quarantine.add_subparsers(dest="action", metavar="ACTION", required=True)
    choosing = _choosing_options()

    listing = actions.add_parser(
        "list",
        parents=[common, choosing],
        help="show quarantined records with their reasons",
        description="Show the quarantined records the criteria choose (all of them by default), oldest "
        "first, with the expectations each failed, the envelope fields read leniently off the body (it "
        "may not be JSON) and any acknowledgement.",
    )
    listing.add_argument(
        "--reason",
        type=_blank_is_none,
        metavar="EXPECTATION",
        help="only records that failed this expectation",
    )
    listing.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per record: eventId where the body has one, the body, times ISO-8601 UTC",
    )
    listing.add_argument(
        "--limit",
        type=_positive_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"show at most N records (default {DEFAULT_LIMIT})",
    )
    listing.set_defaults(run=run_list)

    replaying = actions.add_parser(
        "replay",
        parents=[common, choosing],
        help="validate chosen records again; project those that pass now",
        description="After the cause was fixed (a new upcaster, a bug fix): send the chosen records through "
        "the projection's validation and micro-batch again, exactly once. Those that pass reach "
        "bronze_events and the read models and leave the quarantine; those that fail for other reasons "
        "stay with the new reasons; those that fail as before are left alone. Replaying again changes "
        "nothing. Choose records by EVENT_ID and/or the criteria; --all for every record.",
    )
    replaying.add_argument(
        "--reason",
        type=_blank_is_none,
        metavar="EXPECTATION",
        help="only records that failed this expectation",
    )
    replaying.add_argument(
        "--all", action="store_true", help="replay every quarantined record (when no criterion is given)"
    )
    replaying.set_defaults(run=run_replay)

    acknowledging = actions.add_parser(
        "acknowledge",
        parents=[common, choosing],
        help="accept quarantined versions as lost, with who and why",
        description="Record in ops_quarantine_acknowledgements that the quarantined events EVENT_ID... are "
        "accepted as lost: by whom (the OS user; on Databricks the current user), when and why. The lag "
        "monitor's version gaps then skip those versions; the records stay in the quarantine. "
        "Acknowledging an event again keeps the first acknowledgement.",
    )
    acknowledging.add_argument(
        "--reason", required=True, metavar="TEXT", help="why the versions are accepted as lost (required)"
    )
    acknowledging.set_defaults(run=run_acknowledge)


def _choosing_options() -> argparse.ArgumentParser:
    """The options choosing records, shared by the three actions (the job passes them all to each)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("event_ids", nargs="*", metavar="EVENT_ID", help="the records' event ids")
    options.add_argument(
        "--event-ids",
        dest="more_event_ids",
        type=_event_ids,
        default=(),
        metavar="IDS",
        help="more event ids, separated by commas or spaces (the job's form)",
    )
    options.add_argument(
        "--aggregate", type=_blank_is_none, metavar="ID", help="only records of this aggregate id"
    )
    options.add_argument(
        "--since", type=_moment, metavar="TIME", help=f"only records at or after TIME: {_ISO_HINT}"
    )
    options.add_argument("--until", type=_moment, metavar="TIME", help="only records before TIME")
    options.add_argument(
        "--time",
        choices=("ingest", "enqueued", ""),  # empty: not given (the job's form)
        default="ingest",
        metavar="{ingest,enqueued}",
        help="what --since/--until compare with: when the record was quarantined (ingest, the default) or "
        "when the bus received it (enqueued)",
    )
    return options


# --- argument types ------------------------------------------------------------------------------------


def _blank_is_none(text: str) -> str | None:
    return text.strip() or None


def _event_ids(text: str) -> tuple[str, ...]:
    return tuple(part for part in re.split(r"[\s,]+", text) if part)


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _moment(text: str) -> datetime | None:
    """An argparse type: a time (a date is its midnight), UTC unless it says otherwise; blank: none."""
    text = text.strip()
    if not text:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:  # Python 3.10 reads no "Z"
            parsed = datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {_ISO_HINT}") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


# --- the actions ---------------------------------------------------------------------------------------


def _selection(args):
    from cqrs_orders.query.quarantine import Selection

    if args.since and args.until and args.since >= args.until:
        raise QuarantineError(f"--since ({args.since:%Y-%m-%dT%H:%M:%SZ}) must come before --until.")
    reason = getattr(args, "reason", None) if args.action != "acknowledge" else None
    if reason is not None:
        _check_expectation(reason)
    return Selection(
        event_ids=tuple(dict.fromkeys([*args.event_ids, *args.more_event_ids])),
        reason=reason,
        aggregate=args.aggregate,
        since=args.since,
        until=args.until,
        time=args.time or "ingest",
    )


def _check_expectation(name: str) -> None:
    from cqrs_orders.pipeline.expectations import NAMES

    if name not in NAMES:
        raise QuarantineError(f"--reason {name!r} is no expectation; the reasons are: {', '.join(NAMES)}.")


def _spark(settings):
    from cqrs_orders.adapters.delta_log import check_warehouse_tables
    from cqrs_orders.spark import get_spark

    check_warehouse_tables(settings)  # a damaged table is named before Spark meets it
    log.info("starting Spark")
    return get_spark("cqrs-orders-quarantine")


def run_list(args, settings) -> int:
    selection = _selection(args)
    if settings.catalog:
        from cqrs_orders.pipeline.quarantine import list_records

        rows = list_records(_spark(settings), settings, selection, args.limit + 1)
    else:
        rows = _local_records(settings, selection, args.limit + 1)
    for row in rows[: args.limit]:
        print(json.dumps(_record_json(row)) if args.json else _record_text(row))
    if len(rows) > args.limit:
        log.warning("showing the first %d records only: narrow the criteria or raise --limit", args.limit)
    elif not rows:
        log.info("no quarantined record matches")
    return ExitCode.OK


def _local_records(settings, selection, limit: int) -> list[dict]:
    """The listing read from the local warehouse's Delta folders by DataFusion (a missing table: no rows
    with its columns; listing creates nothing)."""
    from pyspark.sql.pandas.types import to_arrow_schema  # pure Python: no JVM

    from cqrs_orders.adapters.delta_log import check_warehouse_tables
    from cqrs_orders.pipeline.tables import SCHEMAS
    from cqrs_orders.query.delta import DeltaBackend
    from cqrs_orders.query.quarantine import ACKNOWLEDGEMENTS, QUARANTINE, listing

    check_warehouse_tables(settings)  # a damaged table is named in one line before the engine meets it
    names = (QUARANTINE, ACKNOWLEDGEMENTS)
    backend = DeltaBackend(
        {name: settings.table(name).path for name in names},
        {name: to_arrow_schema(SCHEMAS[name]) for name in names},
    )
    return backend.query(*listing(selection, limit))


def run_replay(args, settings) -> int:
    from cqrs_orders.pipeline.quarantine import replay

    selection = _selection(args)
    if not (selection.narrows or args.all):
        raise QuarantineError(
            "Choose the records to replay: give their event ids, or --reason, --aggregate, --since or "
            "--until (see them first with `cqrs-orders quarantine list`), or --all for every record."
        )
    result = replay(_spark(settings), settings, selection)
    print(json.dumps(result.to_json()))
    return ExitCode.OK


def run_acknowledge(args, settings) -> int:
    from cqrs_orders.pipeline.quarantine import acknowledge, caller_identity

    event_ids = list(dict.fromkeys([*args.event_ids, *args.more_event_ids]))
    if not event_ids:
        raise QuarantineError(
            "Name the event ids to acknowledge (`cqrs-orders quarantine list --json` shows each eventId)."
        )
    if not args.reason.strip():
        raise QuarantineError(
            'An acknowledgement needs a reason: say why the versions are accepted as lost (--reason "...").'
        )
    given = [flag for flag in ("aggregate", "since", "until") if getattr(args, flag)]
    if given:
        raise QuarantineError(
            f"acknowledge takes event ids only, not --{', --'.join(given)}: list the records with those "
            "criteria, then acknowledge them by event id."
        )
    spark = _spark(settings)
    result = acknowledge(spark, settings, event_ids, args.reason, caller_identity(spark, settings.env))
    print(json.dumps(result.to_json()))
    return ExitCode.OK


# --- output --------------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    """A timestamp as ISO-8601 UTC with ``Z`` (both readers hand over timezone-aware UTC times)."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _record_json(row: dict) -> dict:
    acknowledged = None
    if row["acknowledged_by"] is not None:
        acknowledged = {
            "by": row["acknowledged_by"],
            "at": _iso(row["acknowledged_at"]),
            "reason": row["acknowledged_reason"],
        }
    return {
        "eventId": row["event_id"],
        "eventType": row["event_type"],
        "aggregateType": row["aggregate_type"],
        "aggregateId": row["aggregate_id"],
        "version": row["version"],
        "reasons": list(row["failed_expectations"] or []),
        "partition": row["partition"],
        "offset": row["offset"],
        "enqueuedTime": _iso(row["enqueued_time"]),
        "ingestTime": _iso(row["ingest_time"]),
        "partitionKey": row["partition_key"],
        "acknowledged": acknowledged,
        "body": row["body"],
    }


def _record_text(row: dict) -> str:
    def known(value) -> str:
        return "?" if value is None else str(value)

    line = (
        f"{_iso(row['ingest_time'])}  partition {row['partition']} offset {row['offset']}  "
        f"event {known(row['event_id'])}  {known(row['aggregate_type'])} {known(row['aggregate_id'])} "
        f"v{known(row['version'])}  failed: {', '.join(row['failed_expectations'] or [])}"
    )
    if row["acknowledged_by"] is not None:
        line += f"  (acknowledged by {row['acknowledged_by']} at {_iso(row['acknowledged_at'])}: "
        line += f"{row['acknowledged_reason']})"
    return line
