"""``cqrs-orders erase-customer CUSTOMER_ID --reason TEXT``: make a customer's personal data unreadable
everywhere the project stores it (docs/operations.md, "Erase a customer"; docs/architecture.md says why by
rewriting).

In order: the write store (state, events, commands masked; registry entry; old bytes scrubbed), then the
lake (registry, bronze, quarantine, silver, the embedded event log; then VACUUM). The write store goes
first: it answers which values the customer ever had (the lake searches broken quarantined bodies for
them), and from then on no command writes the customer again. Every step is idempotent, so a run that
failed half-way is finished by running it again with the same arguments.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.exit_codes import ExitCode

log = logging.getLogger(__name__)


def register(subcommands, common) -> None:
    """Add ``erase-customer``; it sets ``run(args, settings) -> exit code``."""
    erase = subcommands.add_parser(
        "erase-customer",
        parents=[common],
        help="erase a customer's personal data (name, e-mail) from the write store, the bus and the lake",
        description="Replace the customer's name and e-mail with the marker '[erased]' in the write store "
        "(state, events, commands; registered, so no later command writes the customer again), the "
        "embedded event log, bronze_events, bronze_quarantine and silver_customers; record the erasure in "
        "ops_erasures (every micro-batch masks the customer's records from then on, replays included); "
        "then VACUUM those tables. Orders keep their amounts, dates and statuses. Prints one JSON object. "
        "Idempotent: run it again after a failure. Event Hubs cannot be rewritten: its copies expire with "
        "its retention (docs/operations.md, 'Erase a customer').",
    )
    erase.add_argument("customer_id", metavar="CUSTOMER_ID", help="the customer to erase")
    erase.add_argument(
        "--reason",
        required=True,
        metavar="TEXT",
        help="why (a ticket number, the legal basis), kept in the registry; no personal data in it",
    )
    erase.add_argument(
        "--retain-hours",
        type=float,
        default=None,
        metavar="N",
        help="VACUUM the rewritten tables keeping N hours of old files (at least 168; default: each table's "
        "own retention, 7 days): the erased values' old files are deleted once N hours have passed, by this "
        "run's VACUUM or a later one (the nightly maintenance)",
    )
    erase.add_argument(
        "--no-vacuum",
        action="store_true",
        help="rewrite only; leave the old files to the nightly maintenance",
    )
    erase.set_defaults(run=run_erase)


def run_erase(args, settings: Settings) -> int:
    from cqrs_orders.adapters.workspace_identity import databricks_identity
    from cqrs_orders.application.erasure import Erasure
    from cqrs_orders.pipeline.erasure import check_retention, erase_in_lake
    from cqrs_orders.spark import get_spark
    from cqrs_orders.wiring import write_store

    reason = args.reason.strip()
    if not args.customer_id.strip():
        raise ConfigurationError("Name the customer to erase: erase-customer CUSTOMER_ID --reason TEXT.")
    if not reason:
        raise ConfigurationError("--reason must say why the customer is erased (a ticket, the legal basis).")
    started = time.monotonic()
    caller = databricks_identity()
    erasure = Erasure(args.customer_id, datetime.now(timezone.utc), reason, caller.user_id or "unknown")
    log.info("starting Spark")
    spark = get_spark("cqrs-orders-erase")
    check_retention(spark, args.retain_hours)  # before anything is erased, not half-way
    store = write_store(settings)
    try:
        stored = store.erase_customer(erasure)
    finally:
        store.close()
    lake = erase_in_lake(
        spark,
        settings,
        stored.erasure,
        stored.values,
        retain_hours=args.retain_hours,
        vacuum=not args.no_vacuum,
    )
    result = {
        "customerId": args.customer_id,
        "erasedAt": stored.erasure.erased_at.isoformat(),
        "erasedBy": stored.erasure.erased_by,
        "alreadyErased": stored.already_erased,
        "writeStore": {"events": stored.events, "commands": stored.commands},
        "lake": {key: lake[key] for key in ("rewritten", "vacuumed")},
        "seconds": round(time.monotonic() - started, 2),
    }
    print(json.dumps(result))
    return ExitCode.OK
