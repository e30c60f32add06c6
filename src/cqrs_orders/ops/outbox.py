"""The lag monitor's first stage: committed events that the relay has not published to the bus yet.

Every other measure starts at the bus, so a relay that stopped (the command API app stopped, its relay
unable to reach Event Hubs) would show only as read models that stop changing, which an idle system does
too. The outbox measure sees it where it happens: how many committed events wait, and how long the oldest
has waited (:meth:`~cqrs_orders.application.ports.WriteStore.outbox_lag`, read only). It is a breach when
the oldest has waited past the lag threshold, or when the write store cannot be read at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from cqrs_orders.config import Settings
from cqrs_orders.errors import WriteStoreError

log = logging.getLogger(__name__)

#: The breach's name in ``ops_projection_lag.breaches`` and in alerts.
BREACH = "outbox_lag"


@dataclass(frozen=True)
class OutboxMeasure:
    """What the monitor found in the outbox; ``error`` says why nothing could be measured."""

    unpublished: int | None
    oldest_age_seconds: float | None
    exact: bool = True  # False: the store stopped counting at a limit; ``unpublished`` is a lower bound
    error: str | None = None

    def breached(self, threshold_seconds: float) -> bool:
        return self.error is not None or (self.oldest_age_seconds or 0.0) > threshold_seconds

    def to_text(self) -> str:
        if self.error is not None:
            return f"unknown: {self.error}"
        if not self.unpublished:
            return "0 events unpublished"
        at_least = "" if self.exact else "at least "
        return (
            f"{at_least}{self.unpublished} events unpublished, the oldest for {self.oldest_age_seconds:.1f} s"
        )


def measure_outbox(settings: Settings, now: datetime) -> OutboxMeasure | None:
    """The write store's outbox lag at ``now``; ``None`` when there is no write store here to measure (the
    embedded store's file was never created: nothing was ever committed on this warehouse)."""
    from cqrs_orders.adapters import chosen

    if settings.write_store == "sqlite" and not settings.write_store_path.exists():
        return None
    try:
        store = chosen.write_store(settings)
        try:
            lag = store.outbox_lag(now)
        finally:
            store.close()
    except WriteStoreError as error:  # unreachable: a breach of its own, and the other measures still run
        log.warning("outbox: could not be measured: %s", error)
        return OutboxMeasure(None, None, error=str(error))
    return OutboxMeasure(lag.unpublished, lag.oldest_age_seconds, lag.exact)
