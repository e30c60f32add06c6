"""Who reads what: the objects the dashboard's readers and the command API app may SELECT, and the columns
that are personal data.

A Unity Catalog schema grant reaches every table in the schema, bronze's raw bodies and customers' names and
e-mails included, so readers get no SELECT on the schema (only USE SCHEMA, from the bundle): the ``views``
job grants them SELECT on each object here (:func:`reader_grants`), none of which holds personal data. A
view is read with its owner's rights on its sources, so granting the view grants nothing underneath it.
The command API app needs a customer's name (``GET /customers/...``) but not bronze's raw bodies: it gets
SELECT on exactly what its queries read (:data:`APP_OBJECTS`, :mod:`cqrs_orders.query.api`), granted the
same way. The jobs, which read and write everything, keep their schema grant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cqrs_orders.errors import ConfigurationError

#: Per table, its columns that are personal data (or may carry it: a raw body holds a whole event).
PERSONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "silver_customers": ("customer_name", "email"),
    "bronze_events": ("body",),
    "bronze_quarantine": ("body",),
}


@dataclass(frozen=True)
class ReaderObject:
    """One table or view the readers may SELECT, and why they need it."""

    name: str
    kind: str  # "VIEW" or "TABLE": the securable type of its GRANT
    why: str


#: Everything the readers get: the views without personal data, gold, and the tables the dashboard's
#: datasets read directly (src/dashboards/cqrs_orders.lvdash.json).
READER_OBJECTS = (
    ReaderObject("vw_orders", "VIEW", "one row per order, without the customer's name"),
    ReaderObject("vw_daily_order_metrics", "VIEW", "the dashboard's daily revenue and orders"),
    ReaderObject("vw_projection_lag", "VIEW", "the latest lag per read model"),
    ReaderObject("vw_projection_lag_hourly", "VIEW", "lag over time"),
    ReaderObject("gold_daily_order_metrics", "TABLE", "gold: the daily metrics, precomputed"),
    ReaderObject("silver_orders", "TABLE", "the dashboard's order status mix (no personal column)"),
    ReaderObject("silver_product_sales", "TABLE", "the dashboard's top products"),
    ReaderObject("ops_projection_lag", "TABLE", "the dashboard's lag chart"),
)

#: What the command API app reads (the queries of :mod:`cqrs_orders.query.api`; a test holds them equal).
APP_OBJECTS = (
    ReaderObject("vw_order_summary", "VIEW", "GET /orders/{id}, GET /customers/{id}/orders"),
    ReaderObject("vw_daily_order_metrics", "VIEW", "GET /metrics/daily"),
    ReaderObject("silver_customers", "TABLE", "GET /customers/{id}: the customer's name"),
    ReaderObject("silver_orders", "TABLE", "every answer's freshness"),
    ReaderObject("silver_product_sales", "TABLE", "GET /products/{sku}"),
)

_PRINCIPAL = re.compile(r"^[^`\x00-\x1f]{1,255}$")


def reader_grants(
    catalog: str, schema: str, readers: str, present: set[str], objects: tuple = READER_OBJECTS
) -> list[str]:
    """``GRANT SELECT`` statements giving ``readers`` (a group, user or service principal) each of
    ``objects`` in ``catalog.schema`` that exists (``present``): a grant on a missing table fails, and the
    job runs again once the projection and the lag monitor have created theirs."""
    if not _PRINCIPAL.match(readers):
        raise ConfigurationError(f"{readers!r} is not a principal name (no backticks or control characters).")
    return [
        f"GRANT SELECT ON {item.kind} `{catalog}`.`{schema}`.`{item.name}` TO `{readers}`"
        for item in objects
        if item.name in present
    ]
