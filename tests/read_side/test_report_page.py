"""The report page as a pure function of its figures (no Spark)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from cqrs_orders.report.charts import bar_chart, line_chart
from cqrs_orders.report.page import NO_LAG, NO_ORDERS, ReportData, render_report

NOW = datetime(2025, 1, 17, tzinfo=timezone.utc)


def test_an_empty_warehouse_gets_messages_instead_of_charts():
    html = render_report(ReportData(NOW, "/tmp/w", [], [], {}))
    assert html.count(NO_ORDERS) == 3 and NO_LAG in html
    assert 'data-marks="0"' in html and "<rect" not in html


def test_bars_scale_to_a_round_axis_and_zero_stays_visible():
    svg = bar_chart("c", "Counts", [("a", 0.0), ("b", 7.0)], integer=True)
    assert svg.count("<rect data-mark") == 2
    assert ">8</text>" in svg  # axis top: four ticks of 2
    assert 'height="1.0"' in svg  # the zero bar is a hairline
    assert "<title>b: 7</title>" in svg


def test_labels_are_escaped():
    svg = bar_chart("c", "<Status>", [("<script>", 1.0)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_lines_get_one_point_per_measurement():
    at = datetime(2025, 1, 16, 10, tzinfo=timezone.utc)
    svg = line_chart(
        "lag", "Lag", {"silver_orders": [(at, 3.0), (at.replace(minute=5), 12.5)], "x": [(at, 1.0)]}
    )
    assert svg.count("<circle data-mark") == 3 and svg.count("<path") == 2
    assert "silver_orders 2025-01-16 10:05:00 UTC: 12.5" in svg


def test_totals_count_every_order_and_revenue_without_cancelled():
    data = ReportData(
        NOW, "/tmp/w", [(date(2025, 1, 15), 2, Decimal("30.05"))], [("Created", 2), ("Cancelled", 1)], {}
    )
    html = render_report(data)
    assert "Orders (all statuses)<b>3</b>" in html and "<b>30.05</b>" in html
