"""notebooks/explore_read_models.py runs as a plain script on a local warehouse (its own Spark: ~20 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_read_models.py"


def test_notebook_is_in_databricks_source_format():
    text = NOTEBOOK.read_text()
    assert text.startswith("# Databricks notebook source\n")
    assert text.count("\n# COMMAND ----------\n") >= 5 and "# MAGIC %md" in text


def test_notebook_runs_locally_and_shows_views_api_and_lag(read_warehouse, tmp_path):
    env = {**os.environ, "CQRS_SPARK_DRIVER_MEMORY": "1g"}
    env.pop("DATABRICKS_RUNTIME_VERSION", None)
    done = subprocess.run(
        [sys.executable, str(NOTEBOOK), "--warehouse", str(read_warehouse.warehouse)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    [listed] = [line for line in out.splitlines() if "vw_order_summary" in line][:1]
    for view in ("vw_order_summary", "vw_daily_order_metrics", "vw_orders", "vw_projection_lag"):
        assert view in listed, listed  # the notebook lists every view it registered
    assert "|o-3     |cust-9     |NULL" in out  # the order of an unknown customer, in the summary
    assert "|2025-01-15|2          |30.05        |15.03          |2               |" in out
    assert "Orders whose customer is not (yet) known: 1" in out
    assert "get_order: {'order_id': 'o-1'" in out and "orders_of_customer: ['o-1', 'o-4', 'o-5']" in out
    assert "2025-01-16 10:05 silver_orders     ######################################## 75.0" in out
