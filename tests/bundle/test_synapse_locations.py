"""Synapse reads what the bundle creates: the resolved bundle (`bundle validate -o json`, the real CLI) puts
the tables Synapse reads at ``<synapse_storage_url>/<table>``, and each Synapse view reads that very path:
its data source's location (deploy.sh's StorageUrl, the same URL) plus its folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cqrs_orders.config import Settings
from cqrs_orders.pipeline.tables import SYNAPSE_STORAGE_PROPERTY, SYNAPSE_TABLES, located

pytestmark = [pytest.mark.databricks_cli, pytest.mark.timeout(1800)]

SYNAPSE = Path(__file__).resolve().parents[2] / "sql" / "synapse"
URL = "abfss://lake@cqrsacct.dfs.core.windows.net/cqrs-orders/prod"
SOURCE = re.compile(r"CREATE EXTERNAL DATA SOURCE (\w+)\s+WITH \(LOCATION = '\$\(StorageUrl\)'")
BULK = re.compile(r"BULK '(\w+)/',\s*DATA_SOURCE = '(\w+)'")


def resolved(cli, variables: list[str]) -> dict:
    return cli("bundle", "validate", "--target", "prod", "--output", "json", *variables).json()


def synapse_paths(storage_url: str) -> dict[str, str]:
    """Per Synapse view file, the full paths it reads, with deploy.sh's StorageUrl set to ``storage_url``."""
    [source] = SOURCE.findall((SYNAPSE / "setup.sql").read_text())
    paths = {}
    for view in sorted(SYNAPSE.glob("vw_*.sql")):
        reads = BULK.findall(view.read_text())
        assert reads and all(data_source == source for _, data_source in reads), view.name
        paths[view.stem] = {f"{storage_url}/{folder}" for folder, _ in reads}
    return paths


def test_each_synapse_view_reads_where_the_resolved_bundle_creates_its_table(prod_cli, names):
    config = resolved(prod_cli, [*names["prod_vars"], f"--var=synapse_storage_url={URL}"])
    schema = config["resources"]["schemas"]["cqrs_orders"]
    storage_url = schema["properties"][SYNAPSE_STORAGE_PROPERTY]
    assert storage_url == URL

    # Where a job creates each table, given the schema the bundle deployed (tables.ensure_tables).
    settings = Settings.from_env(env={"CQRS_CATALOG": schema["catalog_name"], "CQRS_SCHEMA": schema["name"]})
    created = {name: located(settings.table(name), storage_url).external_path for name in SYNAPSE_TABLES}
    assert created == {name: f"{URL}/{name}" for name in SYNAPSE_TABLES}

    paths = synapse_paths(storage_url)  # deploy.sh is given the same URL
    assert set(paths) == {"vw_orders", "vw_daily_order_metrics", "vw_product_sales"}
    for view, read in paths.items():
        assert read <= set(created.values()), f"{view} reads {read - set(created.values())}, created nowhere"
    assert set().union(*paths.values()) == set(created.values())  # and nothing is placed there for nobody


def test_without_the_variable_the_tables_stay_managed(prod_cli, names):
    schema = resolved(prod_cli, names["prod_vars"])["resources"]["schemas"]["cqrs_orders"]
    storage_url = schema["properties"][SYNAPSE_STORAGE_PROPERTY] or None
    settings = Settings.from_env(env={"CQRS_CATALOG": "main", "CQRS_SCHEMA": schema["name"]})
    assert storage_url is None
    assert all(located(settings.table(name), storage_url).external_path is None for name in SYNAPSE_TABLES)
