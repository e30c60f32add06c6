"""notebooks/explore_read_models.py as a Databricks notebook runs it after a dev deploy: its cells in order,
with a stand-in for what the runtime provides (``dbutils`` widgets, ``display``/``displayHTML``, the
current user), its wheel install recorded instead of run, over a schema named as the dev deploy names it
and holding the read side's hand-made tables (conftest). The plain-script run is test_notebook.py's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cqrs_orders.config import Settings

pytestmark = pytest.mark.spark

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_read_models.py"
#: A user name whose local part the Databricks CLI normalizes (the dot becomes `_`, capitals lower case).
USER = "Ada.Lovelace@example.com"
DEV_SCHEMA = "dev_ada_lovelace_cqrs_orders"


def cells(source: str) -> list[str]:
    """The notebook's cells, as Databricks splits its source format."""
    assert source.startswith("# Databricks notebook source\n")
    return source.split("\n# COMMAND ----------\n")


class Widgets:
    """``dbutils.widgets``: records each widget's default; ``get`` answers a value the run set, else it."""

    def __init__(self, values: dict[str, str]):
        self.values, self.defaults = values, {}

    def text(self, name, default_value="", label=None):
        self.defaults[name] = default_value

    def get(self, name):
        return self.values.get(name, self.defaults[name])


class Dbutils:
    def __init__(self, values):
        self.widgets = Widgets(values)


class Session:
    """The notebook's predefined ``spark``: the test's session, but ``current_user()`` is the workspace
    user's (a local session answers the operating-system user)."""

    def __init__(self, spark):
        self._spark = spark

    def sql(self, statement, *args, **kwargs):
        if statement.strip() == "SELECT current_user()":
            return self._spark.createDataFrame([(USER,)], "user STRING")
        return self._spark.sql(statement, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._spark, name)


@pytest.fixture
def dev_schema(spark, write_warehouse, tmp_path):
    """The read side's tables in ``spark_catalog.<the dev schema>`` (locally no catalog is named `main`)."""
    spark.sql(f"CREATE SCHEMA spark_catalog.{DEV_SCHEMA} LOCATION '{tmp_path / 'schema'}'")
    write_warehouse(Settings.from_env(env={"CQRS_CATALOG": "spark_catalog", "CQRS_SCHEMA": DEV_SCHEMA}))
    yield DEV_SCHEMA
    spark.sql(f"DROP SCHEMA spark_catalog.{DEV_SCHEMA} CASCADE")


def test_the_notebook_installs_the_dev_wheel_and_reads_the_dev_schema(
    spark, dev_schema, tmp_path, monkeypatch, capsys
):
    wheels = tmp_path / "internal"
    wheels.mkdir()
    for version in ("0.1.0+1796654170374256187", "0.1.0+1796654999999999999"):
        (wheels / f"cqrs_orders-{version}-py3-none-any.whl").write_bytes(b"")
    installed, real_run = [], subprocess.run

    def run(command, *args, **kwargs):
        """pip is recorded, not run: the test's environment keeps its own cqrs_orders."""
        if command[1:4] == ["-m", "pip", "install"]:
            installed.append(command)
            return subprocess.CompletedProcess(command, 0)
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.0")
    shown, html = [], []
    dbutils = Dbutils({"catalog": "spark_catalog", "wheel_dir": str(wheels)})  # schema: left at its default
    namespace = {
        "__name__": "__main__",
        "dbutils": dbutils,
        "spark": Session(spark),
        "display": lambda frame: shown.append([row.asDict() for row in frame.collect()]),
        "displayHTML": html.append,
    }
    for cell in cells(NOTEBOOK.read_text()):
        exec(compile(cell, str(NOTEBOOK), "exec"), namespace)  # one shared namespace, as a notebook's

    assert dbutils.widgets.defaults == {
        "catalog": "main",
        "schema": DEV_SCHEMA,
        "wheel_dir": f"/Workspace/Users/{USER}/.bundle/cqrs_orders/dev/artifacts/.internal",
    }
    newest = str(wheels / "cqrs_orders-0.1.0+1796654999999999999-py3-none-any.whl")
    assert installed == [[sys.executable, "-m", "pip", "install", "--quiet", newest]]

    out = capsys.readouterr().out
    assert f"Read models in spark_catalog.{DEV_SCHEMA}:" in out
    assert "Orders whose customer is not (yet) known: 1" in out
    assert "get_order: {'order_id': 'o-1'" in out and "orders_of_customer: ['o-1', 'o-4', 'o-5']" in out
    orders, customers, summary, daily, hourly_lag = shown
    assert [o["order_id"] for o in orders] == ["o-1", "o-2", "o-3", "o-4", "o-5"]
    assert [(c["customer_id"], c["customer_name"]) for c in customers] == [
        ("cust-1", "Ada"),
        ("cust-2", "Bob"),
    ]
    assert [(s["order_id"], s["customer_name"]) for s in summary if s["order_id"] == "o-3"] == [("o-3", None)]
    first_day = daily[0]
    assert (str(first_day["order_date"]), first_day["order_count"], str(first_day["total_revenue"])) == (
        "2025-01-15",
        2,
        "30.05",
    )
    assert {row["projection"] for row in hourly_lag} == {"silver_orders", "silver_customers"}
    [chart] = html
    assert "projection-lag" in chart and "silver_orders" in chart


def test_a_wheel_dir_without_a_wheel_says_to_deploy(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.0")
    empty = tmp_path / "internal"
    empty.mkdir()
    namespace = {"dbutils": Dbutils({"wheel_dir": str(empty)}), "spark": Session(spark)}
    setup, install = cells(NOTEBOOK.read_text())[1:3]
    exec(compile(setup, str(NOTEBOOK), "exec"), namespace)
    with pytest.raises(FileNotFoundError, match="run `databricks bundle deploy`"):
        exec(compile(install, str(NOTEBOOK), "exec"), namespace)
