"""``cqrs-orders report``: the read models as one self-contained HTML page.

:func:`collect_report_data` is the only part that reads, through a read-side backend (the Delta folders
read without Spark, or the SQL warehouse; its queries are in the dialect both share, docs/queries.md);
:func:`render_report` is a pure function of the collected figures. The page loads nothing: a
Content-Security-Policy forbids every external fetch, and a few lines of inline script only mark each chart
with how many of its marks the browser laid out (``data-rendered``), which the browser test reads back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from html import escape

from cqrs_orders.config import Settings
from cqrs_orders.errors import QueryError
from cqrs_orders.report.charts import PALETTE, bar_chart, line_chart

logger = logging.getLogger(__name__)

NO_LAG = "no lag measurements yet (run cqrs-orders lag)"
NO_ORDERS = "no orders yet (run cqrs-orders project --once)"


@dataclass(frozen=True)
class ReportData:
    generated_at: datetime
    warehouse: str
    daily: list[tuple[date, int, Decimal]]  # order_date, order_count, total_revenue (cancelled excluded)
    status_mix: list[tuple[str, int]]  # status, orders
    lag: dict[str, list[tuple[datetime, float]]]  # projection -> (run_at UTC, event-time lag seconds)


#: The report's queries, each with the logical name it reads.
DAILY = (
    "vw_daily_order_metrics",
    "SELECT order_date, order_count, total_revenue FROM vw_daily_order_metrics ORDER BY order_date",
)
STATUS_MIX = (
    "silver_orders",
    "SELECT status, count(*) AS orders FROM silver_orders GROUP BY status ORDER BY orders DESC, status",
)
LAG = (
    "ops_projection_lag",
    "SELECT projection, run_at, event_time_lag_seconds FROM ops_projection_lag "
    "WHERE event_time_lag_seconds IS NOT NULL ORDER BY run_at",
)


def collect_report_data(
    backend, settings: Settings, now: datetime | None = None, present: set[str] | None = None
) -> ReportData:
    """The figures, read with ``backend.query(statement, {})``. ``present``: the logical names that exist
    (a chart over a missing one stays empty); ``None`` when only the backend can tell (a SQL warehouse), in
    which case a query it fails leaves its chart empty, with a warning."""

    def rows(source: tuple[str, str]) -> list[dict]:
        name, statement = source
        if present is not None:
            return backend.query(statement, {}) if name in present else []
        try:
            return backend.query(statement, {})
        except QueryError as error:
            logger.warning("the report leaves out %s: %s", name, error)
            return []

    daily = [(row["order_date"], row["order_count"], row["total_revenue"]) for row in rows(DAILY)]
    status_mix = [(row["status"], row["orders"]) for row in rows(STATUS_MIX)]
    lag: dict[str, list[tuple[datetime, float]]] = {}
    for row in rows(LAG):
        moment = row["run_at"].astimezone(timezone.utc)
        lag.setdefault(row["projection"], []).append((moment, row["event_time_lag_seconds"]))
    return ReportData(
        generated_at=now or datetime.now(timezone.utc),
        warehouse=str(
            settings.warehouse if not settings.catalog else f"{settings.catalog}.{settings.schema}"
        ),
        daily=daily,
        status_mix=status_mix,
        lag=lag,
    )


def render_report(data: ReportData) -> str:
    days = [day.isoformat() for day, _, _ in data.daily]
    revenue = bar_chart(
        "daily-revenue",
        "Daily revenue (cancelled orders excluded)",
        [(day, float(total)) for day, (_, _, total) in zip(days, data.daily, strict=True)],
        value_label=lambda value: f"{value:,.2f}",
        empty_message=NO_ORDERS,
    )
    counts = bar_chart(
        "daily-orders",
        "Orders per day (cancelled orders excluded)",
        [(day, float(count)) for day, (_, count, _) in zip(days, data.daily, strict=True)],
        value_label=lambda value: f"{value:,.0f}",
        color=PALETTE[1],
        integer=True,
        empty_message=NO_ORDERS,
    )
    statuses = bar_chart(
        "status-mix",
        "Orders by status",
        [(status, float(count)) for status, count in data.status_mix],
        value_label=lambda value: f"{value:,.0f}",
        color=PALETTE[2],
        integer=True,
        empty_message=NO_ORDERS,
    )
    lag = line_chart(
        "projection-lag",
        "Projection lag over time (event-time lag, seconds)",
        data.lag,
        value_label=lambda value: f"{value:,.1f} s",
        empty_message=NO_LAG,
    )
    orders = sum(count for _, count in data.status_mix)
    total_revenue = sum((total for _, _, total in data.daily), Decimal("0"))
    return _PAGE.format(
        generated=f"{data.generated_at:%Y-%m-%d %H:%M:%S} UTC",
        warehouse=escape(data.warehouse),
        orders=f"{orders:,}",
        revenue=f"{total_revenue:,.2f}",
        days=len(data.daily),
        charts="\n".join((revenue, counts, statuses, lag)),
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'">
<title>cqrs-orders: read models</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #111827; background: #f9fafb; }}
header p {{ color: #4b5563; margin: 0.2rem 0; }}
.totals {{ display: flex; gap: 1rem; margin: 1rem 0; }}
.totals div {{ background: white; border: 1px solid #e5e7eb; border-radius: 8px; padding: 0.6rem 1rem; }}
.totals b {{ display: block; font-size: 1.4rem; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure.chart {{ background: white; border: 1px solid #e5e7eb; border-radius: 8px; margin: 0;
  padding: 0.8rem; }}
figcaption {{ font-weight: 600; margin-bottom: 0.4rem; }}
p.empty {{ width: 600px; color: #6b7280; font-style: italic; }}
</style>
</head>
<body>
<header>
<h1>Orders read models</h1>
<p>Generated {generated} from {warehouse}</p>
</header>
<section class="totals">
<div>Orders (all statuses)<b>{orders}</b></div>
<div>Revenue (not cancelled)<b>{revenue}</b></div>
<div>Days with orders<b>{days}</b></div>
</section>
<section class="charts">
{charts}
</section>
<script>
for (const figure of document.querySelectorAll("figure.chart")) {{
  let drawn = 0;
  for (const mark of figure.querySelectorAll("[data-mark]")) {{
    const box = mark.getBBox();
    if (box.width > 0 && box.height > 0) drawn += 1;
  }}
  figure.dataset.rendered = String(drawn);
}}
document.body.dataset.rendered = "true";
</script>
</body>
</html>
"""
