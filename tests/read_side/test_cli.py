"""``cqrs-orders sql`` and ``cqrs-orders report`` through the CLI, in-process, on the Delta folders read
without Spark (a warehouse written by ``deltalake``), and on the Databricks edition's SQL warehouse (a local
stand-in of the statement execution API)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cqrs_orders.cli import main


def _load_statement_server():
    # Test folders are not packages (pytest's importlib mode), so load the sibling module by path.
    path = Path(__file__).with_name("statement_server.py")
    spec = importlib.util.spec_from_file_location("_read_side_statement_server_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stand_in = _load_statement_server()


@pytest.fixture
def run(capsys, monkeypatch):
    for variable in ("CQRS_CATALOG", "CQRS_SCHEMA", "CQRS_SQL_WAREHOUSE_ID"):
        monkeypatch.delenv(variable, raising=False)

    def run(*args: str):
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_sql_json_prints_one_object_per_row_with_iso_timestamps_and_exact_decimals(run, delta_warehouse):
    code, out, err = run(
        "sql", "--json", "--warehouse", str(delta_warehouse.warehouse),
        "SELECT order_id, customer_name, total_amount, created_date, o.order_id AS again "
        "FROM vw_order_summary AS o WHERE order_id IN ('o-1', 'o-3') ORDER BY order_id",
    )  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line, parse_float=Decimal) for line in out.splitlines()]
    assert rows == [
        {"order_id": "o-1", "customer_name": "Ada", "total_amount": Decimal("25.50"),
         "created_date": "2025-01-15T09:00:00.000000Z", "again": "o-1"},
        {"order_id": "o-3", "customer_name": None, "total_amount": Decimal("100.00"),
         "created_date": "2025-01-16T00:15:00.000000Z", "again": "o-3"},
    ]  # fmt: skip
    assert '"total_amount":25.50,' in out.splitlines()[0]  # the scale's digits, as written


def test_sql_json_keeps_nested_rows_and_duplicate_names_apart(run, delta_warehouse):
    code, out, err = run(
        "sql", "--json", "--warehouse", str(delta_warehouse.warehouse),
        "SELECT o.order_id, o.items, c.customer_id, o.customer_id FROM silver_orders AS o "
        "JOIN silver_customers AS c ON o.customer_id = c.customer_id WHERE o.order_id = 'o-1'",
    )  # fmt: skip
    assert code == 0, err
    (row,) = [json.loads(line, parse_float=Decimal) for line in out.splitlines()]
    assert row == {
        "order_id": "o-1",
        "items": [{"sku": "A", "quantity": 2, "unit_price": Decimal("10.25")},
                  {"sku": "B", "quantity": 1, "unit_price": Decimal("5.00")}],
        "customer_id": "cust-1",
        "customer_id_2": "cust-1",
    }  # fmt: skip


def test_sql_prints_a_table_with_nothing_truncated(run, delta_warehouse):
    code, out, _ = run(
        "sql", "--warehouse", str(delta_warehouse.warehouse),
        "SELECT order_date, avg_order_value, 'a value longer than twenty characters' AS note "
        "FROM vw_daily_order_metrics ORDER BY order_date",
    )  # fmt: skip
    assert code == 0
    assert out.splitlines() == [
        "+----------+---------------+-------------------------------------+",
        "|order_date|avg_order_value|note                                 |",
        "+----------+---------------+-------------------------------------+",
        "|2025-01-15|15.03          |a value longer than twenty characters|",
        "|2025-01-16|50.99          |a value longer than twenty characters|",
        "+----------+---------------+-------------------------------------+",
    ]


def test_a_capped_table_says_how_many_rows_there_are(run, delta_warehouse):
    query = "SELECT value FROM generate_series(1, 5312) ORDER BY value"
    code, out, err = run("sql", "--warehouse", str(delta_warehouse.warehouse), query)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[3] == "|1    |" and lines[102] == "|100  |" and lines[103].startswith("+")
    assert lines[-1] == "100 of 5,312 rows; use --limit to see more"

    code, out, _ = run("sql", "--limit", "2", "--warehouse", str(delta_warehouse.warehouse), query)
    assert out.splitlines()[-2:] == ["+-----+", "2 of 5,312 rows; use --limit to see more"]

    code, out, _ = run("sql", "--limit", "5312", "--warehouse", str(delta_warehouse.warehouse), query)
    assert "rows; use --limit" not in out and out.splitlines()[-2] == "|5312 |"

    code, out, _ = run("sql", "--json", "--warehouse", str(delta_warehouse.warehouse), query)
    assert len(out.splitlines()) == 5312  # --json prints every row


def test_sql_errors_are_one_line_that_names_what_exists(run, delta_warehouse, tmp_path):
    warehouse = str(delta_warehouse.warehouse)
    code, out, err = run("sql", "--warehouse", warehouse, "SELECT * FROM silver_order")
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert "table 'silver_order' not found" in line
    assert (
        "Tables and views here: silver_orders, silver_customers, silver_product_sales, ops_projection_lag, "
        "vw_order_summary" in line
    )

    code, _, err = run("sql", "--warehouse", warehouse, "SELEC 1")
    assert code == 2 and len(err.splitlines()) == 1 and "Expected: an SQL statement, found: SELEC" in err

    code, _, err = run("sql", "--warehouse", warehouse, "SELECT nope FROM silver_orders")
    assert code == 2 and len(err.splitlines()) == 1 and "nope" in err and "Traceback" not in err

    code, _, err = run("sql", "--warehouse", str(tmp_path / "empty"), "SELECT * FROM vw_order_summary")
    assert code == 2 and "has no tables yet: run `cqrs-orders project --once` first" in err


def test_a_failure_while_the_query_runs_is_one_line_with_the_detail_under_verbose(run, delta_warehouse):
    query = "SELECT CAST(order_id AS INT) FROM silver_orders"
    code, out, err = run("sql", "--warehouse", str(delta_warehouse.warehouse), query)
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("cqrs-orders sql: the query failed") and "o-1" in line, line


def test_an_unexpected_failure_is_one_line_and_verbose_shows_the_traceback(run, delta_warehouse, monkeypatch):
    from cqrs_orders.query.delta import DeltaBackend

    def broken(self, query, **_):
        raise RuntimeError("the engine broke\nat line 2 of its story")

    monkeypatch.setattr(DeltaBackend, "plan", broken)
    code, out, err = run("sql", "--warehouse", str(delta_warehouse.warehouse), "SELECT 1")
    assert code != 0 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("cqrs-orders sql: ") and "RuntimeError: the engine broke" in line
    assert "-v" in line and "at line 2" not in line

    code, _, err = run("sql", "-v", "--warehouse", str(delta_warehouse.warehouse), "SELECT 1")
    assert code != 0 and "Traceback" in err and "at line 2 of its story" in err


def test_sql_refuses_a_negative_limit(run, delta_warehouse):
    code, _, err = run("sql", "--limit", "-1", "--warehouse", str(delta_warehouse.warehouse), "SELECT 1")
    assert code == 2 and "--limit must be 0 or more" in err


# --- the Databricks edition: the same guard, then the SQL warehouse ----------------------------------------
@pytest.fixture
def sql_warehouse(delta_warehouse, monkeypatch):
    """A stand-in SQL warehouse serving the hand-made warehouse, and the settings that point `sql` at it."""
    server = stand_in.StatementServer(stand_in.delta_engine(delta_warehouse.warehouse)).start()
    for name, value in {
        "CQRS_CATALOG": "main", "CQRS_SCHEMA": "orders", "CQRS_SQL_WAREHOUSE_ID": "wh-cli",
        "DATABRICKS_HOST": server.url, "DATABRICKS_TOKEN": "cli-token", "DATABRICKS_AUTH_TYPE": "pat",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    yield server
    server.stop()


def _in_unity_catalog(*args: str):
    return main(list(args))


def test_with_a_catalog_sql_reads_through_the_sql_warehouse(sql_warehouse, capsys):
    code = _in_unity_catalog(
        "sql", "--json", "SELECT order_id, total_amount, created_date FROM vw_order_summary "
        "WHERE order_id = 'o-1'",
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [json.loads(line, parse_float=Decimal) for line in out.splitlines()] == [
        {"order_id": "o-1", "total_amount": Decimal("25.50"), "created_date": "2025-01-15T09:00:00.000000Z"}
    ]
    (request,) = sql_warehouse.requests
    assert (request["warehouse_id"], request["catalog"], request["schema"]) == ("wh-cli", "main", "orders")


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("DELETE FROM silver_orders", "a write (Delete)"),
        ("SELECT * FROM main.orders.silver_orders", "not found"),
        ("SELECT * FROM '/etc/passwd'", "not found"),
        ("SELECT 1; SELECT 2", "exactly one query"),
        ("SELECT unix_micros(created_at) FROM silver_orders", "unix_micros"),  # Spark's, not DataFusion's
    ],
)
def test_with_a_catalog_the_guard_refuses_before_the_sql_warehouse_sees_the_query(
    sql_warehouse, capsys, query, words
):
    code = _in_unity_catalog("sql", query)
    _, err = capsys.readouterr()
    assert code == 2
    (line,) = err.splitlines()
    assert words in line and "checked before the SQL warehouse runs it" in line, line
    assert sql_warehouse.requests == []


def test_with_a_catalog_but_no_sql_warehouse_sql_says_what_to_set(run, monkeypatch):
    monkeypatch.setenv("CQRS_CATALOG", "main")
    monkeypatch.setenv("CQRS_SCHEMA", "orders")
    code, _, err = run("sql", "SELECT 1")
    assert code == 2 and "set CQRS_SQL_WAREHOUSE_ID" in err


def test_with_a_catalog_report_reads_through_the_sql_warehouse(sql_warehouse, capsys, tmp_path):
    page = tmp_path / "report.html"
    code = _in_unity_catalog("report", "--out", str(page))
    _, err = capsys.readouterr()
    assert code == 0, err
    html = page.read_text()
    assert "from main.orders" in html and "Orders (all statuses)<b>5</b>" in html
    assert 'data-chart="projection-lag" data-marks="6"' in html
    assert len(sql_warehouse.requests) == 3


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
def test_report_is_self_contained_and_its_charts_draw_in_chromium(run, delta_warehouse, tmp_path):
    page = tmp_path / "report.html"
    code, _, err = run("report", "--warehouse", str(delta_warehouse.warehouse), "--out", str(page))
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


def test_report_of_an_empty_warehouse_says_what_to_run(run, tmp_path):
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


def test_report_reads_the_warehouse_without_spark(run, delta_warehouse, tmp_path):
    page = tmp_path / "report.html"
    code, _, err = run("report", "--warehouse", str(delta_warehouse.warehouse), "--out", str(page))
    assert code == 0, err
    html = page.read_text()
    assert "Orders (all statuses)<b>5</b>" in html and "Revenue (not cancelled)<b>132.03</b>" in html
    for name, count in (("daily-revenue", 2), ("daily-orders", 2), ("status-mix", 5), ("projection-lag", 6)):
        assert html.count(f'data-chart="{name}" data-marks="{count}"') == 1, name
