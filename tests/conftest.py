"""Fixtures shared by every test: one Spark session per run, a fresh warehouse per test, the CLI in-process.

Each test gets its own warehouse folder, so tables and checkpoints never leak between tests while the
(slow to start) Spark session is shared by all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from cqrs_orders.cli import main
from cqrs_orders.config import Settings


@pytest.fixture(scope="session")
def spark():
    from cqrs_orders.spark import get_spark

    session = get_spark("cqrs-orders-tests")
    yield session
    session.stop()


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
