"""How long the pipeline keeps what it no longer reads, and the limits an operator's choice is held to.

Spark-free, so the CLI refuses a wrong value before Spark starts.
"""

from __future__ import annotations

from cqrs_orders.errors import ConfigurationError

#: Delta's recommended floor for VACUUM's retention (7 days).
MIN_RETAIN_HOURS = 168
#: How long the operational tables (:data:`~.tables.OPERATIONAL_WINDOWS`) keep their rows by default: a
#: quarter of lag and progress history, more than a dashboard or an incident review looks back.
DEFAULT_OPS_RETENTION_DAYS = 90


def check_retention(retain_hours: float | None) -> None:
    """Refuse a VACUUM retention under :data:`MIN_RETAIN_HOURS` (None: each table's own, 7 days)."""
    if retain_hours is not None and retain_hours < MIN_RETAIN_HOURS:
        raise ConfigurationError(
            f"Refusing to VACUUM with --retain-hours {retain_hours:g}: a lagging stream (silver reads "
            f"bronze_events) or a time-travel query would lose its files. Pass {MIN_RETAIN_HOURS} or "
            "more, or leave it out for each table's own retention."
        )


def check_ops_retention(days: int) -> None:
    """Refuse a window of the operational tables under one day: the lag monitor and the dashboard read
    the last day's rows."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigurationError(
            f"--ops-retention-days {days!r} must be a whole number of days, at least 1 (default "
            f"{DEFAULT_OPS_RETENTION_DAYS})."
        )
