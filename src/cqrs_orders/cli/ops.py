"""``cqrs-orders lag``: measure how far the read models are behind the bus; exit 3 on a breach.

The exit code is the alarm: on Databricks a breach fails the lag monitor job's run, which fires the
bundle's ``email_notifications.on_failure``. An optional webhook alert goes out too; if it cannot be
delivered that is logged as a warning, and the exit code still reports the breach.

On a laptop it reads without Spark (DataFusion over the Delta folders, :mod:`cqrs_orders.ops.lag`); with
``CQRS_CATALOG`` set (the lag job) the same measures run on the job's Spark session.
"""

from __future__ import annotations

import logging

from cqrs_orders.errors import AlertError, ConfigurationError
from cqrs_orders.exit_codes import ExitCode

log = logging.getLogger(__name__)


def register(subcommands, common) -> None:
    """Add this area's subcommands; each sets ``run(args, settings) -> exit code``."""
    lag = subcommands.add_parser(
        "lag",
        parents=[common],
        help="measure projection lag; exit 3 when past the threshold",
        description="Measure the outbox (committed events the relay has not published, read in the write "
        "store) and, per read model, the event-time lag, the backlog (bus -> bronze -> silver), "
        "the staleness of the last batch and version gaps; append the result to ops_projection_lag; "
        "print it; exit 0 when healthy and 3 when any measure is past its threshold (and send the "
        "webhook alert if CQRS_ALERT_WEBHOOK_URL is configured).",
    )
    lag.add_argument(
        "--threshold-seconds",
        type=float,
        metavar="N",
        default=60.0,
        help="lag and staleness allowed before a breach (default 60)",
    )
    lag.add_argument("--json", action="store_true", help="print the report as one JSON object")
    lag.set_defaults(run=run_lag)


def run_lag(args, settings) -> int:
    from cqrs_orders.adapters.delta_log import check_warehouse_tables
    from cqrs_orders.ops.alerts import send_webhook, webhook_url
    from cqrs_orders.ops.lag import measure_lag

    threshold = args.threshold_seconds
    if threshold < 0:
        raise ConfigurationError(f"The lag threshold must be 0 or more seconds, not {threshold:g}.")
    check_warehouse_tables(settings)
    # Read before measuring: a webhook secret the run may not read fails every run (exit 2, naming the
    # grant to make), not only the one breach that would have needed it.
    url = webhook_url(settings)
    log.info("measuring projection lag ...")
    report = measure_lag(_spark(settings), settings, threshold)
    print(report.to_json() if args.json else report.to_text())
    if report.healthy:
        return ExitCode.OK
    if url:
        try:
            send_webhook(url, report.alert_text())
            log.info("breach alert sent to the webhook")
        except AlertError as error:  # an alert that fails must never hide the breach itself
            log.warning("alert not sent: %s", error)
    return ExitCode.LAG_BREACH


def _spark(settings):
    """The Spark session where the tables are Unity Catalog's (the lag job); ``None`` for a local
    warehouse, which the monitor reads without Spark."""
    if not settings.catalog:
        return None
    from cqrs_orders.spark import get_spark

    return get_spark("cqrs-orders-lag")
