"""Configuration: one warehouse for everything locally, Unity Catalog names on Databricks, hidden secrets."""

from __future__ import annotations

import pytest

from cqrs_orders.config import TABLES, Secret, Settings
from cqrs_orders.errors import ConfigurationError


def test_warehouse_flag_wins_over_environment(tmp_path):
    settings = Settings.from_env(tmp_path / "flag", env={"CQRS_WAREHOUSE": str(tmp_path / "env")})
    assert settings.warehouse == (tmp_path / "flag").resolve()
    assert Settings.from_env(env={"CQRS_WAREHOUSE": str(tmp_path / "env")}).warehouse == tmp_path / "env"


def test_everything_lives_under_the_warehouse(tmp_path):
    settings = Settings.from_env(tmp_path, env={})
    places = [settings.write_store_path, settings.event_log_path, settings.checkpoint("silver")]
    places += [settings.table(name).path for name in TABLES]
    assert all(str(place).startswith(str(tmp_path)) for place in places)
    assert settings.table("silver_orders").sql_name == f"delta.`{tmp_path}/silver_orders`"


def test_unity_catalog_names_when_catalog_and_schema_are_set(tmp_path):
    settings = Settings.from_env(tmp_path, env={"CQRS_CATALOG": "main", "CQRS_SCHEMA": "orders"})
    assert settings.table("silver_orders").sql_name == "main.orders.silver_orders"
    assert settings.table("silver_orders").path is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CQRS_CATALOG": "main"}, "CQRS_SCHEMA"),
        ({"CQRS_WRITE_STORE": "postgres"}, "sqlite, cosmos"),
        ({"CQRS_EVENT_LOG_PARTITIONS": "0"}, "positive integer"),
    ],
)
def test_bad_settings_say_what_to_fix(tmp_path, env, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(tmp_path, env=env)


def test_unknown_table_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigurationError, match="silver_orders"):
        Settings.from_env(tmp_path, env={}).table("silver_order")


def test_secrets_come_from_the_environment_and_never_show(tmp_path):
    settings = Settings.from_env(
        tmp_path, env={"EVENTHUB_CONNECTION": "Endpoint=sb://x/;SharedAccessKey=s3cr3t"}
    )
    secret = settings.secret("EVENTHUB_CONNECTION")
    assert isinstance(secret, Secret) and secret.reveal().endswith("s3cr3t")
    assert "s3cr3t" not in repr(secret) + str(secret) + repr(settings)
    assert settings.secret("COSMOS_KEY") is None
