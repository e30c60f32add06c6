"""`cqrs-orders bi-connection`: the Power BI connection file of a deployment, from its settings or flags.

The shapes are the ones Power BI Desktop opens: Databricks Partner Connect's (protocol ``databricks-sql``,
``address {host, path}``, the catalog and schema as options) and the SQL Server connector's for Synapse
serverless (protocol ``tds``, ``address {server, database}``); one connection per file, no credential.
"""

from __future__ import annotations

import json

import pytest

from cqrs_orders.cli import main, pbids
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.exit_codes import ExitCode

HOST = "adb-1234567890123456.7.azuredatabricks.net"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch):
    for name in ("CQRS_SQL_WAREHOUSE_ID", "CQRS_CATALOG", "CQRS_SCHEMA"):
        monkeypatch.delenv(name, raising=False)


def test_the_warehouse_file_opens_the_deployed_schema_with_settings_from_the_environment(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("CQRS_SQL_WAREHOUSE_ID", "1234567890abcdef")
    monkeypatch.setenv("CQRS_CATALOG", "main")
    monkeypatch.setenv("CQRS_SCHEMA", "dev_ada_cqrs_orders")
    out = tmp_path / "cqrs-orders.pbids"
    assert main(["bi-connection", "--server-hostname", f"https://{HOST}/", "--out", str(out)]) == ExitCode.OK
    assert json.loads(out.read_text()) == {
        "version": "0.1",
        "connections": [
            {
                "details": {
                    "protocol": "databricks-sql",
                    "address": {"host": HOST, "path": "/sql/1.0/warehouses/1234567890abcdef"},
                    "authentication": None,
                    "query": None,
                },
                "options": {"Catalog": "main", "Database": "dev_ada_cqrs_orders"},
                "mode": "DirectQuery",
            }
        ],
    }


def test_flags_win_over_settings_and_the_file_goes_to_stdout_without_out(monkeypatch, capsys):
    monkeypatch.setenv("CQRS_SQL_WAREHOUSE_ID", "from-settings")
    argv = ["bi-connection", "--server-hostname", HOST, "--catalog", "main", "--schema", "cqrs_orders"]
    assert main([*argv, "--http-path", "/sql/1.0/warehouses/abc", "--mode", "Import"]) == ExitCode.OK
    [connection] = json.loads(capsys.readouterr().out)["connections"]
    assert connection["details"]["address"]["path"] == "/sql/1.0/warehouses/abc"
    assert connection["mode"] == "Import"
    assert main([*argv, "--warehouse-id", "from-flag"]) == ExitCode.OK
    [connection] = json.loads(capsys.readouterr().out)["connections"]
    assert connection["details"]["address"]["path"] == "/sql/1.0/warehouses/from-flag"


def test_the_synapse_file_names_the_serverless_endpoint_and_database(tmp_path):
    out = tmp_path / "cqrs-orders-synapse.pbids"
    argv = ["bi-connection", "--to", "synapse", "--synapse-endpoint", "contoso-ondemand.sql.azuresynapse.net"]
    assert main([*argv, "--synapse-database", "orders_read", "--out", str(out)]) == ExitCode.OK
    [connection] = json.loads(out.read_text())["connections"]
    assert connection["details"]["protocol"] == "tds"
    assert connection["details"]["address"] == {
        "server": "contoso-ondemand.sql.azuresynapse.net",
        "database": "orders_read",
    }
    assert connection["mode"] == "DirectQuery" and connection["options"] == {}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--warehouse-id", "abc"], "no --server-hostname"),
        (["--server-hostname", HOST], "no SQL warehouse: give --warehouse-id"),
        (["--server-hostname", "not a host", "--warehouse-id", "abc"], "is not a host name"),
        (["--server-hostname", HOST, "--http-path", "/api/2.0/x"], "is not a SQL warehouse's"),
        (
            ["--server-hostname", HOST, "--warehouse-id", "abc", "--catalog", "main"],
            "Set both CQRS_CATALOG and CQRS_SCHEMA",
        ),
        (["--server-hostname", HOST, "--warehouse-id", "abc", "--out", "x.json"], "ending in .pbids"),
        (
            ["--to", "synapse", "--synapse-endpoint", "contoso.sql.azuresynapse.net"],
            "not a Synapse serverless",
        ),
        (
            ["--to", "synapse", "--synapse-endpoint", "contoso-ondemand.sql.azuresynapse.net"],
            "no Synapse database",
        ),
    ],
)
def test_bad_input_is_a_usage_error_that_says_what_to_give(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bi-connection", *argv]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert says in captured.err and captured.out == ""
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_unknown_mode_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as refused:
        main(["bi-connection", "--server-hostname", HOST, "--warehouse-id", "a", "--mode", "Live"])
    assert refused.value.code == ExitCode.USAGE and "invalid choice: 'Live'" in capsys.readouterr().err


def test_help_names_both_endpoints(capsys):
    with pytest.raises(SystemExit) as done:
        main(["bi-connection", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--server-hostname" in text and "--synapse-endpoint" in text and ".pbids" in text


def test_the_pure_functions_refuse_what_power_bi_cannot_open():
    with pytest.raises(ConfigurationError, match="Power BI takes DirectQuery or Import"):
        pbids.databricks_sql(HOST, "/sql/1.0/warehouses/a", mode="Live")
    with pytest.raises(ConfigurationError, match="not a plain name"):
        pbids.databricks_sql(HOST, "/sql/1.0/warehouses/a", "main", "cqrs orders")
    assert pbids.render(pbids.databricks_sql(HOST, "/sql/1.0/warehouses/a")).endswith("}\n")
