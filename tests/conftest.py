"""Fixtures shared by every test: one Spark session per run, a fresh warehouse per test, the CLI in-process.

Each test gets its own warehouse folder, so tables and checkpoints never leak between tests while the
(slow to start) Spark session is shared by all of them.

Test tiers are derived from fixtures, never hand-kept: a test that uses ``spark`` (directly or through
another fixture) is marked ``spark``, one that uses ``kafka_broker`` is marked ``kafka``. The fast tier,
``pytest -m "not spark and not kafka and not browser"``, is everything else; a test outside the ``spark``
tier that starts Spark anyway fails, so the marks cannot drift from what the tests do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from cqrs_orders.cli import main
from cqrs_orders.config import Settings

#: Which marker a fixture puts on every test that uses it.
TIER_OF_FIXTURE = {"spark": "spark", "spark_process": "spark", "kafka_broker": "kafka"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        for fixture, marker in TIER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _spark_only_in_the_spark_tier(request, monkeypatch):
    """Outside the ``spark`` tier, starting a Spark session is an error that names the missing fixture."""
    if request.node.get_closest_marker("spark") is None:
        import cqrs_orders.spark

        def refuse(*_args, **_kwargs):
            raise AssertionError(
                f"{request.node.nodeid} starts Spark but does not use the `spark` fixture: add it, so the "
                "test is marked `spark` and stays out of the fast tier"
            )

        monkeypatch.setattr(cqrs_orders.spark, "get_spark", refuse)


#: The suite's Spark session once a test has started it (the fast tier never does).
_started: list = []


@pytest.fixture(scope="session")
def spark():
    from cqrs_orders.spark import get_spark

    session = get_spark("cqrs-orders-tests")
    _started.append(session)
    yield session
    session.stop()


@pytest.fixture(autouse=True, scope="module")
def _forget_the_modules_tables():
    """Delta caches the log and state of every table it has read, up to 10,000 tables for an hour. A test's
    tables live in its own temporary folder and are never read after its module, yet in the suite's one
    JVM that cache grew by up to 130 MiB a module; it is dropped after each module instead."""
    yield
    for session in _started:
        session._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()


@pytest.fixture
def spark_process() -> dict[str, str]:
    """The environment for a child process that starts its own Spark; using it marks the test ``spark``."""
    return dict(os.environ)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a fresh, empty warehouse, independent of the caller's environment."""
    return Settings.from_env(warehouse=tmp_path / "warehouse", env={})


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@pytest.fixture
def cli(settings: Settings, capsys, monkeypatch):
    """Run ``cqrs-orders ARGS --warehouse <the test's warehouse>`` in this process (sharing Spark)."""
    for variable in ("CQRS_CATALOG", "CQRS_SCHEMA", "CQRS_WRITE_STORE", "CQRS_PUBLISHER", "CQRS_SOURCE"):
        monkeypatch.delenv(variable, raising=False)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([*args, "--warehouse", str(settings.warehouse)])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run
