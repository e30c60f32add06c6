"""``cqrs-orders sql`` and ``cqrs-orders report`` through the CLI, in-process (sharing the Spark session)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cqrs_orders.cli import main


@pytest.fixture
def run(capsys, monkeypatch):
    for variable in ("CQRS_CATALOG", "CQRS_SCHEMA"):
        monkeypatch.delenv(variable, raising=False)

    def run(*args: str):
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_sql_json_prints_one_object_per_row_with_iso_timestamps_and_exact_decimals(run, read_warehouse):
    code, out, err = run(
        "sql", "--json", "--warehouse", str(read_warehouse.warehouse),
        "SELECT order_id, customer_name, total_amount, created_date, o.order_id FROM vw_order_summary AS o "
        "WHERE order_id IN ('o-1', 'o-3') ORDER BY order_id",
    )  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line, parse_float=Decimal) for line in out.splitlines()]
    assert rows == [
        {"order_id": "o-1", "customer_name": "Ada", "total_amount": Decimal("25.50"),
         "created_date": "2025-01-15T09:00:00.000000Z", "order_id_2": "o-1"},
        {"order_id": "o-3", "customer_name": None, "total_amount": Decimal("100.00"),
         "created_date": "2025-01-16T00:15:00.000000Z", "order_id_2": "o-3"},
    ]  # fmt: skip


def test_sql_prints_a_table_with_nothing_truncated(run, read_warehouse):
    code, out, _ = run(
        "sql", "--warehouse", str(read_warehouse.warehouse),
        "SELECT order_date, avg_order_value, 'a value longer than twenty characters' AS note "
        "FROM vw_daily_order_metrics ORDER BY order_date",
    )  # fmt: skip
    assert code == 0
    assert "|2025-01-15|15.03          |a value longer than twenty characters|" in out
    assert "|2025-01-16|50.99          |a value longer than twenty characters|" in out


def test_sql_errors_name_what_exists(run, read_warehouse, tmp_path):
    code, _, err = run("sql", "--warehouse", str(read_warehouse.warehouse), "SELECT * FROM silver_order")
    assert code == 2
    assert "TABLE_OR_VIEW_NOT_FOUND" in err and "silver_order" in err
    assert (
        "Tables and views here: silver_orders, silver_customers, silver_product_sales, ops_projection_lag, "
        "vw_order_summary" in err
    )

    code, _, err = run("sql", "--warehouse", str(read_warehouse.warehouse), "SELEC 1")
    assert code == 2 and "PARSE_SYNTAX_ERROR" in err

    code, _, err = run("sql", "--warehouse", str(tmp_path / "empty"), "SELECT * FROM vw_order_summary")
    assert code == 2 and "has no tables yet: run `cqrs-orders project --once` first" in err


class _Charts(HTMLParser):
    """Collects each chart figure's attributes from the DOM Chromium dumped."""

    def __init__(self):
        super().__init__()
        self.charts: dict[str, dict] = {}
        self.body: dict = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "figure" and "data-chart" in attributes:
            self.charts[attributes["data-chart"]] = attributes
        if tag == "body":
            self.body = attributes


def render_in_chromium(page: Path, profile: Path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CQRS_SKIP_BROWSER") == "1":
            pytest.skip("CQRS_SKIP_BROWSER=1 and no chromium")
        pytest.fail("headless Chromium is needed: apt-get install -y chromium (or set CQRS_SKIP_BROWSER=1)")
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.browser
def test_report_is_self_contained_and_its_charts_draw_in_chromium(run, read_warehouse, tmp_path):
    page = tmp_path / "report.html"
    code, _, err = run("report", "--warehouse", str(read_warehouse.warehouse), "--out", str(page))
    assert code == 0, err
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "src=" not in html

    charts = _Charts()
    charts.feed(render_in_chromium(page, tmp_path / "profile"))
    assert charts.body.get("data-rendered") == "true", "the page's script did not run"
    drawn = {name: (attrs["data-marks"], attrs.get("data-rendered")) for name, attrs in charts.charts.items()}
    assert drawn == {
        "daily-revenue": ("2", "2"),  # two days
        "daily-orders": ("2", "2"),
        "status-mix": ("5", "5"),  # Created, Confirmed, Shipped, Cancelled, Delivered
        "projection-lag": ("6", "6"),  # three runs of two projections
    }


def test_report_of_an_empty_warehouse_says_what_to_run(spark, run, tmp_path):
    page = tmp_path / "report.html"
    code, _, err = run("report", "--warehouse", str(tmp_path / "empty"), "--out", str(page))
    assert code == 0, err
    html = page.read_text()
    assert "no lag measurements yet (run cqrs-orders lag)" in html
    assert html.count("no orders yet (run cqrs-orders project --once)") == 3
    assert 'data-chart="projection-lag" data-marks="0"' in html


def test_create_views_outside_unity_catalog_says_what_to_set(run, tmp_path):
    code, _, err = run("create-views", "--warehouse", str(tmp_path / "w"))
    assert code == 2 and "needs CQRS_CATALOG and CQRS_SCHEMA" in err
