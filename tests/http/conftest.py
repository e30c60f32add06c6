"""The real server: ``cqrs-orders serve`` as a subprocess on a free loopback port, called with httpx.

``served(warehouse, env)`` starts one and waits until it answers; every server is stopped (SIGTERM, then
waited for) when its test ends. A Spark-free Delta warehouse with the read side's hand-made rows is written
with ``deltalake`` in the tables' exact schemas, so most read tests need no JVM.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.config import Settings

CLI = [sys.executable, "-m", "cqrs_orders.cli"]
_SCRUBBED = ("CQRS_CATALOG", "CQRS_SCHEMA", "CQRS_WRITE_STORE", "CQRS_PUBLISHER", "CQRS_SOURCE",
             "CQRS_SQL_WAREHOUSE_ID", "CQRS_WAREHOUSE", "DATABRICKS_APP_PORT", "DATABRICKS_APP_NAME",
             "CQRS_CALLER_IDENTITY")  # fmt: skip


def _load_sibling(folder: str, name: str):
    # Test folders are not packages (pytest's importlib mode), so load the sibling module by path.
    path = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_http_tests_{folder}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


read_side_rows = _load_sibling("read_side", "conftest")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
    env.update(extra)
    return env


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    warehouse: Path
    log: object  # the open file that took the server's output

    def client(self, **options) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **options)

    def stored(self) -> dict[str, int]:
        """What the write store holds: rows of each table (a refused request must change none)."""
        store = SqliteWriteStore(Settings.from_env(self.warehouse, env={}).write_store_path)
        try:
            return store.counts()
        finally:
            store.close()


def start_server(
    warehouse: Path, env: dict[str, str] | None = None, *args: str, port_in_env: bool = False
) -> Server:
    """Start ``cqrs-orders serve`` on a free port (``--port``, or ``DATABRICKS_APP_PORT`` with
    ``port_in_env``) and wait until it answers."""
    port = free_port()
    env = dict(env or base_env())
    if port_in_env:
        env["DATABRICKS_APP_PORT"] = str(port)
    else:
        args = ("--port", str(port), *args)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    log = (warehouse.parent / f"serve-{port}.log").open("w+")  # a file, not a pipe: it never fills up
    process = subprocess.Popen(
        [*CLI, "serve", "--warehouse", str(warehouse), *args],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    server = Server(url, process, warehouse, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{stop_server(server)}")
        try:
            if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"serve did not answer on {url} within 60 s:\n{stop_server(server)}")


def stop_server(server: Server) -> str:
    """Stop it (SIGTERM, as a platform would) and return everything it printed."""
    process = server.process
    if server.log.closed:
        return ""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    server.log.seek(0)
    output = server.log.read()
    server.log.close()
    return output


@pytest.fixture
def served():
    """``served(warehouse, env=None, *args, port_in_env=False) -> Server``; stopped at the end of the test."""
    started: list[Server] = []

    def start(warehouse: Path, env: dict[str, str] | None = None, *args: str, port_in_env=False) -> Server:
        server = start_server(warehouse, env, *args, port_in_env=port_in_env)
        started.append(server)
        return server

    yield start
    for server in started:
        stop_server(server)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    """One server per module on a fresh, empty warehouse (tests use their own ids)."""
    started = start_server(tmp_path_factory.mktemp("http") / "warehouse")
    yield started
    stop_server(started)


def write_read_models(warehouse: Path) -> None:
    """The read side's hand-made silver rows, as Delta tables written without Spark."""
    import pyarrow as pa
    from deltalake import write_deltalake
    from pyspark.sql.pandas.types import to_arrow_schema  # pure Python: no JVM

    settings = Settings.from_env(warehouse, env={})
    for name in ("silver_orders", "silver_customers", "silver_product_sales"):
        schema = to_arrow_schema(read_side_rows.SCHEMAS[name])
        rows = [dict(zip(schema.names, row, strict=True)) for row in read_side_rows.ROWS[name]]
        write_deltalake(settings.table(name).path, pa.Table.from_pylist(rows, schema=schema))


@pytest.fixture(scope="module")
def read_warehouse_without_spark(tmp_path_factory) -> Path:
    warehouse = tmp_path_factory.mktemp("http_read") / "warehouse"
    write_read_models(warehouse)
    return warehouse


@pytest.fixture(scope="module")
def reader(read_warehouse_without_spark) -> Server:
    """A server over the hand-made read models (its write store is empty)."""
    started = start_server(read_warehouse_without_spark)
    yield started
    stop_server(started)


# --- a SQL warehouse stand-in (the Databricks path of the read side), answering without Spark -----------
stand_in = _load_sibling("read_side", "statement_server")


@pytest.fixture(scope="module")
def sql_warehouse(read_warehouse_without_spark):
    """``(stand-in server, failing switch)``: a SQL warehouse serving the hand-made read models."""
    failing: dict = {}
    server = stand_in.StatementServer(stand_in.delta_engine(read_warehouse_without_spark, failing)).start()
    yield server, failing
    server.stop()


@pytest.fixture
def app_env(sql_warehouse) -> dict[str, str]:
    """The Databricks App's environment for the read side: warehouse id, schema and workspace auth."""
    warehouse_url = sql_warehouse[0].url
    env = {key: value for key, value in base_env().items() if not key.startswith("DATABRICKS_")}
    env.update(
        CQRS_SQL_WAREHOUSE_ID="wh-app",
        CQRS_CATALOG="main",
        CQRS_SCHEMA="orders",
        DATABRICKS_HOST=warehouse_url,
        DATABRICKS_TOKEN="app-token",
        DATABRICKS_AUTH_TYPE="pat",
    )
    return env
