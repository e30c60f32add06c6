"""The AUTO CDC peer's plumbing that needs no Spark: its spec, how it reads a failed run's error, and the
adversarial log it is checked on.

The peer itself runs Spark 4.3 in an environment CI does not build (``.venv-pipelines``); these hold what
the benchmark relies on when it does run, and what it reports when the peer fails.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from cqrs_orders.adapters.event_log import EventLog

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    """A benchmark script as a module (they import each other by file name, as when run)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def auto_cdc():
    return load("auto_cdc")


def test_the_spec_names_the_definition_beside_it_and_the_event_log(auto_cdc, tmp_path):
    path = auto_cdc.write_spec(tmp_path / "pipeline", tmp_path / "storage", tmp_path / "events", "delta")

    spec = json.loads(path.read_text())  # JSON: the CLI reads it as YAML, of which JSON is a part
    assert (
        path.parent / spec["libraries"][0]["glob"]["include"]
    ).read_text() == auto_cdc.DEFINITION.read_text()
    assert spec["storage"] == (tmp_path / "storage").as_uri()
    assert spec["configuration"] == {
        "cqrs.auto_cdc.event_log": str(tmp_path / "events"),
        "cqrs.auto_cdc.target_catalog": "spark_catalog",
    }


def test_a_failed_runs_error_is_its_last_error_condition(auto_cdc):
    line = (
        "  [spark-pipelines] pyspark.errors.exceptions.connect.UnknownException: (org.apache.spark.sql."
        "AnalysisException: [AUTOCDC_TARGET_DOES_NOT_SUPPORT_MERGE] Cannot start AutoCDC flow: the target "
        "table `spark_catalog`.`default`.`silver_customers` (format: delta) does not support row-level "
        "operations.\n"
    )

    found = auto_cdc.ERROR_CONDITION.search(line).group(0).strip()

    assert found.startswith("[AUTOCDC_TARGET_DOES_NOT_SUPPORT_MERGE] Cannot start AutoCDC flow")
    assert found.endswith("does not support row-level operations.")


def test_an_error_without_a_condition_is_read_off_the_failed_calls_details(auto_cdc):
    line = '  [spark-pipelines] \tdetails = "class org.apache.iceberg.SparkView can not implement"\n'

    found = auto_cdc.ERROR_CONDITION.search(line)

    assert found.group(1) == "class org.apache.iceberg.SparkView can not implement"


def test_the_adversarial_log_holds_shuffled_versions_a_gap_duplicates_and_malformed_records(tmp_path):
    projection = load("projection")
    orders = 14  # orders 0 and 7 miss version 3; 0, 5 and 10 are sent twice

    written = projection.write_adversarial(EventLog(tmp_path / "events"), orders)

    versions = 4 * orders - 2
    duplicates = 4 + 4 + 3  # order 0 misses version 3
    assert written == versions + duplicates + len(projection.malformed_records())
    bodies = [body for _key, body in projection.malformed_records()]
    assert len(set(bodies)) == len(bodies) == 10  # each malformed for a reason of its own
