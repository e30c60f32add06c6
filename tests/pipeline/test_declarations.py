"""What is declared once and derived everywhere: the read models, the expectations, the profile's steps."""

from __future__ import annotations

import logging

from cqrs_orders import config, delta_io
from cqrs_orders.config import Settings, TableLocation
from cqrs_orders.ops import lag
from cqrs_orders.pipeline import maintenance, profile, tables
from cqrs_orders.pipeline.expectations import EXPECTATIONS
from cqrs_orders.pipeline.read_models import LATEST_STATE_MODELS, READ_MODELS, derived_from


def test_every_tool_derives_the_read_models_from_their_one_declaration():
    for model in READ_MODELS:
        assert tables.SCHEMAS[model.table] is model.columns
        assert tables.STATS_COLUMNS[model.table] == model.stats_columns
        assert maintenance.CLUSTER_KEYS[model.table] == model.cluster_key == model.key
        assert set(model.key) <= set(model.columns.fieldNames())
        assert set(model.key) <= set(model.stats_columns.split(","))  # the MERGE's and ZORDER's columns
        measured = model.applied_by
        assert lag.COLUMNS_READ[measured.table].fieldNames()[0] == measured.key[0]
        assert model.table in config.TABLES
    assert lag.PROJECTIONS == READ_MODELS
    assert len({m.aggregate_type for m in LATEST_STATE_MODELS}) == len(LATEST_STATE_MODELS)


def test_an_aggregation_derives_from_a_latest_state_model_declared_before_it():
    for position, model in enumerate(READ_MODELS):
        if model.aggregation is None:
            assert model.rows is not None and model.state_is_complete is not None
            assert len(model.key) == 1  # the aggregate id
            continue
        source = model.derived_from
        assert source in LATEST_STATE_MODELS and READ_MODELS.index(source) < position
        assert model in derived_from(source)
        measures = [m.name for m in model.aggregation.measures]
        assert model.aggregation.count in measures
        assert model.columns.fieldNames() == [*model.key, *measures, "projected_at"]


def test_the_lag_table_is_declared_with_the_others():
    assert lag.LAG_SCHEMA is tables.SCHEMAS[lag.LAG_TABLE]
    assert lag.LAG_TABLE in tables.PIPELINE_TABLES  # so maintenance vacuums it


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
