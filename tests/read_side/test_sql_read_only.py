"""``cqrs-orders sql`` only reads: one query over this warehouse's logical names, nothing else.

The guard works on DataFusion's own parser and plan (:mod:`cqrs_orders.query.guard`). Every refused statement
must come back as one line on stderr and exit 2 *before* it runs: the read model is unchanged afterwards, no
file is printed or written, nothing appears in the current directory. No Spark is started for any of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from cqrs_orders.config import Settings

ORDER_IDS = ["o-1", "o-2", "o-3", "o-4", "o-5"]


@pytest.fixture
def orders(settings: Settings, write_delta_warehouse):
    """This test's own warehouse with the hand-made silver tables (a refused write must leave them intact)."""
    write_delta_warehouse(settings, ("silver_orders", "silver_customers"))
    path = settings.table("silver_orders").path

    def snapshot() -> tuple[int, list[tuple[str, str]]]:
        table = DeltaTable(path)
        rows = table.to_pyarrow_table(columns=["order_id", "status"]).to_pylist()
        return table.version(), sorted((row["order_id"], row["status"]) for row in rows)

    return snapshot


def _refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cqrs-orders sql: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("DELETE FROM silver_orders", "a write (Delete)"),
        ("UPDATE silver_orders SET status = 'X'", "a write (Update)"),
        ("INSERT INTO silver_orders SELECT * FROM silver_orders", "a write (Insert Into)"),
        ("COPY silver_orders TO '{cwd}/out.csv'", "a write (COPY)"),
        ("COPY (SELECT * FROM silver_orders) TO '{cwd}/out.parquet' STORED AS PARQUET", "a write (COPY)"),
        ("CREATE TABLE x AS SELECT 1", "a definition"),
        (
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
            "a definition (CreateExternalTable)",
        ),
        ("CREATE VIEW silver_orders AS SELECT 1", "a definition"),
        ("DROP VIEW silver_orders", "a definition"),
        ("DROP TABLE silver_orders", "a definition"),
        ("SET datafusion.execution.batch_size = 1", "a statement (SetVariable)"),
        ("PREPARE p AS SELECT * FROM silver_orders", "a statement (Prepare)"),
        ("EXPLAIN SELECT * FROM silver_orders", "Explain"),
        ("EXPLAIN ANALYZE SELECT * FROM silver_orders", "Analyze"),
        ("DESCRIBE silver_orders", "DescribeTable"),
        ("WITH silver_orders AS (SELECT 'x' AS order_id) SELECT * FROM silver_orders", "reuses the logical"),
        ("WITH vw_order_summary AS (SELECT 1 AS a) SELECT * FROM vw_order_summary", "reuses the logical"),
        ("SELECT * FROM silver_customers AS silver_orders", "reuses the logical name silver_orders"),
    ],
)
def test_sql_refuses_anything_but_a_query_and_leaves_the_read_model_alone(
    cli, orders, tmp_path, monkeypatch, query, named
):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = orders()
    assert [order_id for order_id, _ in before[1]] == ORDER_IDS

    _refused(cli("sql", query.format(cwd=cwd)), named, "only reads")

    assert orders() == before
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize(
    "query",
    ["SELECT 1; DELETE FROM silver_orders", "SELECT 1; SELECT 2", "SELECT 1;;COPY silver_orders TO 'x'"],
)
def test_sql_refuses_more_than_one_statement(cli, orders, query):
    before = orders()
    _refused(cli("sql", query), "exactly one query")
    assert orders() == before


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
        ("SELECT * FROM '{other}/silver_orders'", "silver_orders"),
        ('SELECT * FROM "{other}/silver_orders"', "silver_orders"),
        ("SELECT * FROM silver_orders WHERE order_id IN (SELECT * FROM '/etc/passwd')", "/etc/passwd"),
        ("WITH p AS (SELECT * FROM '/etc/passwd') SELECT * FROM p", "/etc/passwd"),
        ("SELECT * FROM datafusion.public.silver_orders", "one-part logical name"),
        ("SELECT * FROM other.public.silver_orders", "not found"),
        ("SELECT * FROM spark_catalog.default.silver_orders", "not found"),
        ("SELECT * FROM information_schema.tables", "not found"),
        ("SHOW TABLES", "information_schema"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT * FROM read_parquet('{other}/silver_orders')", "read_parquet"),
        ("SELECT * FROM parquet_metadata('{other}/silver_orders')", "parquet_metadata"),
        ("SELECT (SELECT count(*) FROM '/etc/passwd') AS n", "/etc/passwd"),
    ],
)
def test_sql_reads_only_this_warehouse_by_logical_name(
    cli, orders, write_delta_warehouse, tmp_path, query, named
):
    other = Settings.from_env(warehouse=tmp_path / "other", env={})
    write_delta_warehouse(other, ("silver_orders",))

    result = cli("sql", query.format(other=other.warehouse))

    _refused(result, named)


def test_sql_still_answers_every_kind_of_query(cli, orders):
    result = cli(
        "sql",
        "--json",
        "WITH c AS (SELECT customer_id, count(*) AS n FROM silver_orders GROUP BY customer_id) "
        "SELECT o.order_id, c.n, (SELECT count(*) FROM silver_customers) AS customers, r.value AS id, "
        "row_number() OVER (ORDER BY o.order_id) AS place "
        "FROM silver_orders AS o JOIN c USING (customer_id) CROSS JOIN range(1) AS r "
        "WHERE EXISTS (SELECT 1 FROM (VALUES (1)) AS v(x)) AND o.status <> 'Cancelled' "
        "AND o.order_id IN (SELECT order_id FROM vw_order_summary) "
        "ORDER BY o.order_id LIMIT 2",
    )
    assert result.exit_code == 0, result.stderr
    assert result.json_lines() == [
        {"order_id": "o-1", "n": 3, "customers": 2, "id": 0, "place": 1},
        {"order_id": "o-2", "n": 1, "customers": 2, "id": 0, "place": 2},
    ]


def test_sql_answers_recursive_queries_unnest_and_aliases_of_the_same_name(cli, orders):
    result = cli(
        "sql",
        "--json",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) "
        "SELECT n, (SELECT count(*) FROM silver_orders AS silver_orders) AS orders, "
        "(SELECT max(x) FROM unnest([4, 5]) AS u(x)) AS most FROM t ORDER BY n",
    )
    assert result.exit_code == 0, result.stderr
    assert result.json_lines() == [{"n": n, "orders": 5, "most": 5} for n in (1, 2, 3)]


def test_sql_leaves_nothing_in_the_current_directory_and_starts_no_jvm(delta_warehouse, tmp_path):
    """A fresh process, run from an empty folder: it answers, the folder stays empty, and no Java runs
    (``JAVA_HOME`` points nowhere, so a Spark start would fail)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CQRS_")}
    env["JAVA_HOME"] = str(tmp_path / "no-java")
    result = subprocess.run(
        [sys.executable, "-m", "cqrs_orders.cli", "sql", "--warehouse", str(delta_warehouse.warehouse),
         "SELECT count(*) AS n FROM silver_orders"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "+-+\n|n|\n+-+\n|5|\n+-+\n"
    assert sorted(path.name for path in Path(cwd).iterdir()) == []


def test_several_statements_answer_from_one_session_each_checked_by_the_guard(settings: Settings, orders):
    """``query_all`` (the lag monitor's path) answers what each statement answers alone, and a write
    among them refuses the whole call before any of them runs."""
    from cqrs_orders.errors import QueryError
    from cqrs_orders.query.delta import DeltaBackend

    backend = DeltaBackend.for_warehouse(settings)
    statements = [
        "SELECT count(*) AS n FROM silver_orders",
        "SELECT order_id FROM silver_orders ORDER BY order_id LIMIT 2",
        "SELECT count(*) AS n FROM silver_customers",
    ]
    assert backend.query_all(statements) == [backend.query(statement, {}) for statement in statements]
    before = orders()
    with pytest.raises(QueryError, match="a write"):
        backend.query_all([statements[0], "DELETE FROM silver_orders"])
    assert orders() == before
