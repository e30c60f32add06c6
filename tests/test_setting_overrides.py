"""Settings given on the command line (job task parameters on Databricks) override the environment and are
validated like it; without them the environment still rules."""

from __future__ import annotations

import argparse

import pytest

from cqrs_orders.cli import build_parser, setting_overrides
from cqrs_orders.config import OVERRIDABLE, SETTINGS, Settings
from cqrs_orders.errors import ConfigurationError


def _commands(parser, prefix=""):
    """Every runnable (sub)command's parser, by name: ``quarantine list`` as well as ``lag``."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield prefix.strip(), parser
    for group in groups:
        for name, sub in group.choices.items():
            yield from _commands(sub, f"{prefix} {name}")


ENV = {"CQRS_CATALOG": "env_cat", "CQRS_SCHEMA": "env_schema", "EVENTHUB_NAME": "env-hub"}


def test_overrides_win_over_the_environment_and_none_means_not_given(tmp_path):
    settings = Settings.from_env(
        tmp_path, env=ENV, overrides={"CQRS_SCHEMA": "flag_schema", "EVENTHUB_NAME": None}
    )
    assert (settings.catalog, settings.schema) == ("env_cat", "flag_schema")
    assert settings.kafka_topic == "env-hub"  # the event hub is the Kafka topic: one setting
    assert Settings.from_env(tmp_path, env=ENV).schema == "env_schema"


def test_overrides_are_validated_and_limited_to_known_settings(tmp_path):
    with pytest.raises(ConfigurationError, match="CQRS_SOURCE='kinesis'"):
        Settings.from_env(tmp_path, env={}, overrides={"CQRS_SOURCE": "kinesis"})
    with pytest.raises(ConfigurationError, match="both CQRS_CATALOG and CQRS_SCHEMA"):
        Settings.from_env(tmp_path, env={}, overrides={"CQRS_CATALOG": "main"})
    with pytest.raises(ConfigurationError, match="Not a setting: COSMOS_KEY"):
        Settings.from_env(tmp_path, env={}, overrides={"COSMOS_KEY": "secret"})  # secrets never come as flags


def test_every_subcommand_takes_the_setting_options(tmp_path):
    flags = {s.flag for s in SETTINGS if s.flag}
    for name, command in _commands(build_parser()):
        taken = {option for action in command._actions for option in action.option_strings}
        assert flags <= taken, f"{name} lacks {flags - taken}"
    assert {s.env for s in SETTINGS if s.flag} == set(OVERRIDABLE)
    assert not any(s.flag for s in SETTINGS if s.secret)  # secrets never travel as job parameters
    args = build_parser().parse_args(
        ["lag", "--catalog", "main", "--schema", "s", "--source", "kafka", "--secret-scope", "scope"]
    )
    overrides = setting_overrides(args)
    assert overrides["CQRS_CATALOG"] == "main" and overrides["CQRS_CHECKPOINT_ROOT"] is None
    settings = Settings.from_env(tmp_path, env={}, overrides=overrides)
    assert (settings.catalog, settings.schema, settings.source) == ("main", "s", "kafka")
    assert settings.env["CQRS_SECRET_SCOPE"] == "scope"  # where read_secret looks on Databricks
    assert settings.table("silver_orders").qualified_name == "main.s.silver_orders"


def test_an_empty_option_is_refused_rather_than_taken_for_the_default(tmp_path):
    with pytest.raises(ConfigurationError, match=r"--catalog is empty.*\$CQRS_CATALOG"):
        Settings.from_env(tmp_path, env={}, overrides={"CQRS_CATALOG": " "})
    with pytest.raises(ConfigurationError, match="--warehouse is empty"):
        Settings.from_env("", env={})
    assert Settings.from_env(tmp_path, env={"CQRS_CATALOG": ""}).catalog is None  # an empty variable: unset
