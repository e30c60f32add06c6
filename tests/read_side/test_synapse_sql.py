"""The Synapse serverless views: parsed with sqlglot (T-SQL) and checked against the contract.

sqlglot has no grammar for ``OPENROWSET(BULK ...) WITH (...)``, so each call is replaced by a placeholder
table before parsing and checked on its own: the path must use the ``$(StorageUrl)`` sqlcmd variable and
the right silver folder, the format must be Delta, and every column the view reads must be declared.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

SYNAPSE = Path(__file__).resolve().parents[2] / "sql" / "synapse"
OPENROWSET = re.compile(
    r"OPENROWSET\s*\((?P<args>(?:'[^']*'|[^()'])*)\)\s*(?:WITH\s*\((?P<columns>(?:[^()]|\([^()]*\))*)\))?",
    re.IGNORECASE,
)
BULK = re.compile(r"^\s*BULK\s+'\$\(StorageUrl\)/(?P<folder>\w+)/'\s*,\s*FORMAT\s*=\s*'DELTA'\s*$", re.I)
CONTRACT_COLUMNS = {
    "silver_orders": {"order_id", "customer_id", "status", "items", "item_count", "total_amount", "currency",
                      "created_at", "updated_at", "version", "last_event_id", "last_event_type",
                      "last_event_time", "projected_at"},
    "silver_customers": {"customer_id", "customer_name", "email", "created_at", "updated_at", "version",
                         "last_event_id", "last_event_type", "last_event_time", "projected_at"},
}  # fmt: skip
EXPECTED = {
    "vw_order_summary": (
        ["order_id", "customer_id", "customer_name", "status", "total_amount", "item_count", "created_date",
         "updated_date"],
        {"o": "silver_orders", "c": "silver_customers"},
    ),
    "vw_daily_order_metrics": (
        ["order_date", "order_count", "total_revenue", "avg_order_value", "unique_customers"],
        {"o": "silver_orders"},
    ),
}  # fmt: skip


def parse_view(name: str):
    """(the CREATE statement with placeholders, {placeholder: (folder, declared columns)})."""
    calls = {}

    def placeholder(match: re.Match) -> str:
        bulk = BULK.match(match.group("args"))
        assert bulk, f"{name}: OPENROWSET must read '$(StorageUrl)/<folder>/' with FORMAT = 'DELTA'"
        declared = sqlglot.parse_one(f"CREATE TABLE t ({match.group('columns')})", read="tsql")
        key = f"openrowset_{len(calls) + 1}"
        calls[key] = (bulk.group("folder"), {column.name for column in declared.find_all(exp.ColumnDef)})
        return key

    text = OPENROWSET.sub(placeholder, (SYNAPSE / f"{name}.sql").read_text())
    statements = sqlglot.parse(text, read="tsql")
    assert len(statements) == 1, f"{name}.sql must hold exactly one statement (one sqlcmd batch)"
    return statements[0], calls


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_synapse_view_selects_the_contract_columns_from_the_silver_folders(name):
    create, calls = parse_view(name)
    columns, folders = EXPECTED[name]
    assert isinstance(create, exp.Create) and create.kind == "VIEW"
    assert create.this.sql(dialect="tsql") == f"dbo.{name}"
    select = create.expression
    assert select.named_selects == columns

    tables = {table.alias: calls[table.name] for table in select.find_all(exp.Table)}
    assert {alias: folder for alias, (folder, _) in tables.items()} == folders
    for alias, (folder, declared) in tables.items():
        assert declared <= CONTRACT_COLUMNS[folder], f"{name}: {alias} declares columns {folder} lacks"
        used = {column.name for column in select.find_all(exp.Column) if column.table == alias}
        assert used <= declared, f"{name}: {alias} reads undeclared columns {used - declared}"


def test_daily_metrics_leave_out_cancelled_orders_and_group_by_day():
    create, _ = parse_view("vw_daily_order_metrics")
    select = create.expression
    assert select.args["where"].sql(dialect="tsql") == "WHERE o.status <> 'Cancelled'"
    assert [g.sql(dialect="tsql") for g in select.args["group"].expressions] == ["CAST(o.created_at AS DATE)"]


def test_order_summary_left_joins_customers():
    create, _ = parse_view("vw_order_summary")
    (join,) = create.expression.args["joins"]
    assert join.side == "LEFT"


def test_no_storage_account_is_hard_coded():
    for path in SYNAPSE.iterdir():
        assert ".core.windows.net/" not in path.read_text().replace("<account>.dfs.core.windows.net/", "")


def test_deploy_script_passes_the_storage_url_to_sqlcmd_for_each_view(tmp_path):
    fake = tmp_path / "sqlcmd"
    fake.write_text('#!/bin/sh\necho "$@" >> "$SQLCMD_CALLS"\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SQLCMD_CALLS": str(calls)}
    url = "https://acct.dfs.core.windows.net/lake/warehouse"
    args = [str(SYNAPSE / "deploy.sh"), "-S", "ws-ondemand", "-d", "orders_read", "-v", f"StorageUrl={url}"]

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        f"-b -S ws-ondemand -d orders_read -v StorageUrl={url} -i {SYNAPSE}/{view}.sql"
        for view in ("vw_order_summary", "vw_daily_order_metrics")
    ]

    missing = subprocess.run(args[:5], env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "StorageUrl" in missing.stderr
    slash = subprocess.run(
        [*args[:6], f"StorageUrl={url}/"], env=env, capture_output=True, text=True, timeout=30
    )
    assert slash.returncode == 2 and "must not end with '/'" in slash.stderr
