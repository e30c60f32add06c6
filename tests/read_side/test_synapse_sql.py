"""The Synapse serverless SQL: parsed with sqlglot (T-SQL) and checked against the contract and the grants.

sqlglot has no grammar for ``OPENROWSET(BULK ...) WITH (...)``, so each call is replaced by a placeholder
table before parsing and checked on its own: it must read a folder relative to the one external data source
(``DATA_SOURCE = 'cqrs_orders_lake'``, whose location is the bundle's ``synapse_storage_url``), as Delta,
and every column the view reads must be declared. ``setup.sql`` is split into its sqlcmd batches (``GO``).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from cqrs_orders.domain.ids import MAX_ID_LENGTH
from cqrs_orders.pipeline.tables import SCHEMAS, SYNAPSE_TABLES
from cqrs_orders.query.readers import PERSONAL_COLUMNS
from cqrs_orders.query.views import view_definition

SYNAPSE = Path(__file__).resolve().parents[2] / "sql" / "synapse"
VIEWS = ("vw_orders", "vw_daily_order_metrics", "vw_product_sales")
#: The Synapse views with a Databricks view of the same name (sql/databricks): the same columns.
NAMESAKES = ("vw_orders", "vw_daily_order_metrics")
#: Columns holding an id the write store accepted (at most MAX_ID_LENGTH characters).
ID_COLUMNS = {"order_id", "customer_id", "sku"}
DATA_SOURCE, CREDENTIAL, ROLE, VIEW_SCHEMA = (
    "cqrs_orders_lake",
    "cqrs_orders_identity",
    "cqrs_orders_readers",
    "cqrs_orders",
)
OPENROWSET = re.compile(
    r"OPENROWSET\s*\((?P<args>(?:'[^']*'|[^()'])*)\)\s*(?:WITH\s*\((?P<columns>(?:[^()]|\([^()]*\))*)\))?",
    re.IGNORECASE,
)
BULK = re.compile(
    r"^\s*BULK\s+'(?P<folder>\w+)/'\s*,\s*DATA_SOURCE\s*=\s*'(?P<source>\w+)'\s*,\s*FORMAT\s*=\s*'DELTA'\s*$",
    re.I,
)
EXPECTED = {
    "vw_orders": (
        ["order_id", "customer_id", "status", "total_amount", "item_count", "created_date", "updated_date"],
        {"o": "silver_orders"},
    ),
    "vw_daily_order_metrics": (
        ["order_date", "order_count", "total_revenue", "avg_order_value", "unique_customers"],
        {"o": "silver_orders"},
    ),
    "vw_product_sales": (
        ["sku", "currency", "units", "revenue", "orders", "last_sale_at"],
        {"p": "silver_product_sales"},
    ),
}  # fmt: skip
PERSONAL = {column for columns in PERSONAL_COLUMNS.values() for column in columns}


def parse_view(name: str):
    """(the CREATE statement with placeholders, {placeholder: (folder, declared columns)})."""
    calls = {}

    def placeholder(match: re.Match) -> str:
        bulk = BULK.match(match.group("args"))
        assert bulk, f"{name}: OPENROWSET must read '<folder>/' of DATA_SOURCE '{DATA_SOURCE}' as DELTA"
        assert bulk.group("source") == DATA_SOURCE, f"{name}: reads through {bulk.group('source')}"
        declared = sqlglot.parse_one(f"CREATE TABLE t ({match.group('columns')})", read="tsql")
        key = f"openrowset_{len(calls) + 1}"
        calls[key] = (bulk.group("folder"), {c.name: c.kind for c in declared.find_all(exp.ColumnDef)})
        return key

    text = OPENROWSET.sub(placeholder, (SYNAPSE / f"{name}.sql").read_text())
    statements = sqlglot.parse(text, read="tsql")
    assert len(statements) == 1, f"{name}.sql must hold exactly one statement (one sqlcmd batch)"
    return statements[0], calls


def setup_batches() -> list[str]:
    """setup.sql's sqlcmd batches, comments left out."""
    text = "\n".join(
        line for line in (SYNAPSE / "setup.sql").read_text().splitlines() if not line.startswith("--")
    )
    return [batch.strip() for batch in re.split(r"^GO$", text, flags=re.M) if batch.strip()]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_synapse_view_selects_the_contract_columns_from_the_silver_folders(name):
    create, calls = parse_view(name)
    columns, folders = EXPECTED[name]
    assert isinstance(create, exp.Create) and create.kind == "VIEW"
    assert create.this.sql(dialect="tsql") == f"{VIEW_SCHEMA}.{name}"  # the schema the readers' role reads
    select = create.expression
    assert select.named_selects == columns

    tables = {table.alias: calls[table.name] for table in select.find_all(exp.Table)}
    assert {alias: folder for alias, (folder, _) in tables.items()} == folders
    for alias, (folder, declared) in tables.items():
        assert set(declared) <= set(SCHEMAS[folder].fieldNames()), (
            f"{name}: {alias} declares columns {folder} lacks"
        )
        used = {column.name for column in select.find_all(exp.Column) if column.table == alias}
        assert used <= set(declared), f"{name}: {alias} reads undeclared columns {used - set(declared)}"


@pytest.mark.parametrize("name", NAMESAKES)
def test_each_synapse_view_has_the_columns_of_its_databricks_namesake(name):
    create, _ = parse_view(name)
    databricks = sqlglot.parse_one(view_definition(name).local_sql().replace("TEMPORARY ", ""), read="spark")
    assert create.expression.named_selects == databricks.expression.named_selects


def test_synapse_reads_exactly_the_tables_created_under_its_storage_url_and_none_with_personal_data():
    read = {folder for name in VIEWS for folder, _ in parse_view(name)[1].values()}
    assert read == set(SYNAPSE_TABLES)  # any other table would be managed: at a path Synapse cannot name
    assert not read & set(PERSONAL_COLUMNS)
    for name in VIEWS:
        declared = {column for _, columns in parse_view(name)[1].values() for column in columns}
        assert not declared & PERSONAL, name


@pytest.mark.parametrize("name", VIEWS)
def test_every_accepted_id_fits_its_declared_column_whole(name):
    """A VARCHAR's length counts UTF-8 bytes: an id of MAX_ID_LENGTH characters of four bytes each must fit,
    or Synapse would cut (or refuse) an id the write store accepted."""
    for _, declared in parse_view(name)[1].values():
        for column in ID_COLUMNS & set(declared):
            kind = declared[column]
            assert kind.this == exp.DataType.Type.VARCHAR, (name, column, kind.sql("tsql"))
            [length] = kind.expressions
            assert int(length.this.this) >= 4 * MAX_ID_LENGTH, (name, column, kind.sql("tsql"))


def test_the_deploy_script_runs_every_view_file():
    script = (SYNAPSE / "deploy.sh").read_text()
    assert {path.stem for path in SYNAPSE.glob("vw_*.sql")} == set(VIEWS)
    assert f"for script in setup {' '.join(VIEWS)}; do" in script


def test_daily_metrics_leave_out_cancelled_orders_and_group_by_day():
    create, _ = parse_view("vw_daily_order_metrics")
    select = create.expression
    assert select.args["where"].sql(dialect="tsql") == "WHERE o.status <> 'Cancelled'"
    assert [g.sql(dialect="tsql") for g in select.args["group"].expressions] == ["CAST(o.created_at AS DATE)"]


def test_setup_reads_storage_with_the_workspace_identity_through_one_data_source():
    batches = setup_batches()
    for batch in batches:
        sqlglot.parse(batch, read="tsql")  # each batch is T-SQL sqlglot can read (raises otherwise)
    text = "\n".join(batches)
    assert re.search(
        rf"CREATE DATABASE SCOPED CREDENTIAL {CREDENTIAL} WITH IDENTITY = 'Managed Identity';", text
    )
    [source] = [batch for batch in batches if batch.startswith("CREATE EXTERNAL DATA SOURCE")]
    assert re.fullmatch(
        rf"CREATE EXTERNAL DATA SOURCE {DATA_SOURCE}\s+WITH \(LOCATION = '\$\(StorageUrl\)', "
        rf"CREDENTIAL = {CREDENTIAL}\);",
        source,
    )
    assert "SECRET" not in text.upper()  # no key or SAS token: the identity's own role on the folder


def test_readers_get_the_views_schema_and_the_credential_and_nothing_else():
    grants = [batch for batch in setup_batches() if batch.upper().startswith(("GRANT", "DENY", "ALTER ROLE"))]
    assert grants == [
        f"GRANT SELECT ON SCHEMA::{VIEW_SCHEMA} TO {ROLE};",
        f"GRANT REFERENCES ON DATABASE SCOPED CREDENTIAL::{CREDENTIAL} TO {ROLE};",
    ]
    parsed = sqlglot.parse_one(grants[0].rstrip(";"), read="tsql")
    assert parsed.key in {"grant", "command"}  # sqlglot reads it (as a GRANT, or whole as a command)


def test_no_storage_account_is_hard_coded():
    for path in SYNAPSE.iterdir():
        assert ".core.windows.net/" not in path.read_text().replace("<account>.dfs.core.windows.net/", "")


def test_deploy_script_passes_the_storage_url_to_sqlcmd_for_setup_and_each_view(tmp_path):
    fake = tmp_path / "sqlcmd"
    fake.write_text('#!/bin/sh\necho "$@" >> "$SQLCMD_CALLS"\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SQLCMD_CALLS": str(calls)}
    url = "abfss://lake@acct.dfs.core.windows.net/cqrs"
    args = [str(SYNAPSE / "deploy.sh"), "-S", "ws-ondemand", "-d", "orders_read", "-v", f"StorageUrl={url}"]

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        f"-b -S ws-ondemand -d orders_read -v StorageUrl={url} -i {SYNAPSE}/{script}.sql"
        for script in ("setup", *VIEWS)
    ]

    missing = subprocess.run(args[:5], env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "StorageUrl" in missing.stderr
    for wrong, message in ((f"{url}/", "must not end with '/'"), ("lake/cqrs", "abfss:// or https://")):
        refused = subprocess.run([*args[:6], f"StorageUrl={wrong}"], env=env, capture_output=True, text=True)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
