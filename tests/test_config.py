"""Configuration: one warehouse for everything locally, Unity Catalog names on Databricks, hidden secrets."""

from __future__ import annotations

from dataclasses import fields

import pytest

from cqrs_orders.config import PLAIN, SETTINGS, TABLES, Secret, Settings, value_of
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
        ({"CQRS_MAX_RECORDS_PER_BATCH": "0"}, "positive integer"),
        ({"CQRS_COMMAND_ID_RETENTION_DAYS": "0"}, "RETENTION_DAYS='0' must be a positive integer"),
        ({"CQRS_COMMAND_ID_RETENTION_DAYS": "7d"}, "must be a positive integer"),
        ({"CQRS_READ_TIMEOUT_SECONDS": "nan"}, "positive number of seconds"),
        ({"DATABRICKS_APP_PORT": "eighty"}, "must be a port number"),
        ({"CQRS_SPARK_DRIVER_MEMORY": "lots"}, "not a memory size"),
        ({"CQRS_SPARK_DRIVER_MEMORY": "100m"}, "too small"),
    ],
)
def test_bad_settings_say_what_to_fix(tmp_path, env, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(tmp_path, env=env)


def test_the_idempotency_window_is_days_and_thirty_unless_set(tmp_path):
    assert Settings.from_env(tmp_path, env={}).command_id_retention_days == 30
    window = Settings.from_env(tmp_path, env={"CQRS_COMMAND_ID_RETENTION_DAYS": "7"})
    assert window.command_id_retention_days == 7


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


def test_every_setting_is_a_field_and_every_field_a_declared_setting(tmp_path):
    """The declaration is the one list: a field added without a declaration (or the reverse) fails here."""
    assert [f.name for f in fields(Settings) if f.name != "env"] == list(PLAIN)
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)  # one variable, one setting
    assert len({s.flag for s in SETTINGS if s.flag}) == len([s for s in SETTINGS if s.flag])
    defaults = Settings.from_env(tmp_path, env={})
    for setting in PLAIN.values():
        if setting.name not in ("warehouse", "caller_identity"):  # resolved, and derived from the app name
            assert getattr(defaults, setting.name) == setting.default, setting.name


def test_the_callers_are_required_by_default_only_as_a_databricks_app(tmp_path):
    assert Settings.from_env(tmp_path, env={}).caller_identity == "optional"
    app = Settings.from_env(tmp_path, env={"DATABRICKS_APP_NAME": "cqrs-api"})
    assert (app.caller_identity, app.as_databricks_app) == ("required", True)
    explicit = {"DATABRICKS_APP_NAME": "cqrs-api", "CQRS_CALLER_IDENTITY": "optional"}
    assert Settings.from_env(tmp_path, env=explicit).caller_identity == "optional"


def test_a_process_wide_setting_is_read_through_its_declaration():
    assert value_of("spark_driver_memory", {}) == "4g"
    assert value_of("spark_driver_memory", {"CQRS_SPARK_DRIVER_MEMORY": "1536M"}) == "1536m"
    assert value_of("jars_dir", {}) is None
