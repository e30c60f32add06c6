"""What is declared once and derived everywhere: the read models, the expectations, the profile's steps."""

from __future__ import annotations

import logging

from cqrs_orders import delta_io
from cqrs_orders.config import Settings, TableLocation
from cqrs_orders.ops import lag
from cqrs_orders.pipeline import maintenance, profile, tables
from cqrs_orders.pipeline.expectations import EXPECTATIONS
from cqrs_orders.pipeline.read_models import READ_MODELS


def test_every_tool_derives_the_read_models_from_their_one_declaration():
    for model in READ_MODELS:
        assert tables.SCHEMAS[model.table] is model.columns
        assert tables.STATS_COLUMNS[model.table] == model.stats_columns
        assert maintenance.CLUSTER_KEYS[model.table] == model.cluster_key == model.key
        assert model.key in model.columns.fieldNames()
        assert lag.COLUMNS_READ[model.table].fieldNames()[0] == model.key
    assert lag.PROJECTIONS == READ_MODELS
    assert len({m.aggregate_type for m in READ_MODELS}) == len(READ_MODELS)


def test_expectations_are_data_each_depending_only_on_earlier_ones():
    names = [e.name for e in EXPECTATIONS]
    assert len(names) == len(set(names))
    for position, expectation in enumerate(EXPECTATIONS):
        assert set(expectation.after) <= set(names[:position]), expectation.name
        assert callable(expectation.holds)


def test_configuration_only_names_tables_and_io_lives_in_the_pipeline(tmp_path):
    location = Settings.from_env(tmp_path, env={}).table("silver_orders")
    assert isinstance(location, TableLocation)
    assert not any(hasattr(location, io) for io in ("read", "save", "delta", "exists", "start_stream"))
    assert delta_io.Table(location).path == location.path == str(tmp_path / "silver_orders")


def test_the_profile_logs_one_line_per_batch_with_its_steps(caplog, monkeypatch):
    monkeypatch.setattr(profile, "_enabled", True)
    with caplog.at_level(logging.INFO, logger=profile.__name__):
        with profile.batch(7) as info:
            info["rows"] = 3
            with profile.step("read+validate"):
                pass
            with profile.step("MERGE silver_orders"):
                pass
        with profile.step("outside a batch"):  # not recorded anywhere
            pass
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("batch 7 (3 rows): ") and "read+validate 0.00" in line
    assert "MERGE silver_orders" in line and "outside" not in line


def test_the_profile_is_silent_when_off(caplog, monkeypatch):
    monkeypatch.setattr(profile, "_enabled", False)
    with caplog.at_level(logging.INFO, logger=profile.__name__), profile.batch(1), profile.step("x"):
        pass
    assert not caplog.records
