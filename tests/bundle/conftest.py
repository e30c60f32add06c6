"""Fixtures of the bundle tests: the real Databricks CLI (built from its Go module when not cached) against
a local fake workspace (the CLI's own ``libs/testserver``), and deploys of the dev and prod targets.

Without a Go toolchain and no cached binaries these tests skip, saying so; CI has Go, so they run there.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)


def _load(name: str):
    """A helper module of this folder (test modules cannot import each other under importlib mode)."""
    spec = importlib.util.spec_from_file_location(f"bundle_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


go_build = _load("go_build")
workspace_module = _load("workspace")

#: What `databricks bundle deploy --var ...` must pass: the variables without a default.
DEPLOY_VARS = ["--var=cosmos_endpoint=https://cosmos-orders-test.documents.azure.com:443/"]
#: The fake workspace's identities: a token starting with dbapi1 is its service principal.
USER_TOKEN, SERVICE_PRINCIPAL_TOKEN = "dev-user-token", "dbapi1-prod-service-principal"
USER = "tester@databricks.com"
SERVICE_PRINCIPAL = "aaaaaaaa-bbbb-4ccc-dddd-eeeeeeeeeeee"
PROD_VARS = [*DEPLOY_VARS, f"--var=service_principal={SERVICE_PRINCIPAL}"]


def _built(build):
    try:
        return build()
    except go_build.GoMissing as missing:
        pytest.skip(f"the real Databricks CLI cannot be built here: {missing}")


@pytest.fixture(scope="session")
def go_build_module():
    """The build helpers, for their own tests."""
    return go_build


@pytest.fixture(scope="session")
def databricks_binary() -> Path:
    return _built(go_build.databricks_cli)


@pytest.fixture(scope="session")
def workspace_binary(databricks_binary) -> Path:
    return _built(go_build.workspace_server)


def _cli(tmp_path_factory, databricks_binary, workspace_binary, token: str):
    """The CLI as one identity, with a fake workspace server of its own (so its request log holds only its
    own calls, and the identities can deploy at the same time)."""
    workspace = workspace_module.Workspace(workspace_binary, tmp_path_factory.mktemp(f"workspace-{token}"))
    cli = workspace_module.Cli(databricks_binary, workspace, token, tmp_path_factory.mktemp(token))
    # `lookup: warehouse:` resolves the dashboard's warehouse by name, so the workspace must have it.
    cli("warehouses", "create", "--json", '{"name": "Serverless Starter Warehouse"}', "--no-wait")
    return cli


@pytest.fixture(scope="session")
def dev_cli(tmp_path_factory, databricks_binary, workspace_binary):
    """The CLI as a developer (tester@databricks.com), in a bundle copy of its own."""
    cli = _cli(tmp_path_factory, databricks_binary, workspace_binary, USER_TOKEN)
    yield cli
    cli.workspace.stop()


@pytest.fixture(scope="session")
def prod_cli(tmp_path_factory, databricks_binary, workspace_binary):
    """The CLI as the prod service principal, which deploys prod (apps cannot run as someone else)."""
    cli = _cli(tmp_path_factory, databricks_binary, workspace_binary, SERVICE_PRINCIPAL_TOKEN)
    yield cli
    cli.workspace.stop()


@pytest.fixture(scope="session")
def flow_cli(tmp_path_factory, databricks_binary, workspace_binary):
    """The CLI as the prod service principal with a workspace of its own, for the flow test's deploys (on
    the stand-in catalog), so the other tests' prod workspace stays as they deployed it."""
    cli = _cli(tmp_path_factory, databricks_binary, workspace_binary, SERVICE_PRINCIPAL_TOKEN)
    yield cli
    cli.workspace.stop()


class Deploy:
    """What one `bundle deploy` sent: its requests, and the jobs it left, read back with the CLI."""

    def __init__(self, cli, requests: list[dict]):
        self.cli, self.requests = cli, requests

    def calls(self, method: str, prefix: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"].startswith(prefix)]

    def jobs(self) -> dict[str, dict]:
        """Every job in the workspace, by bundle resource key, as `databricks jobs get` shows it."""
        listed = self.cli("jobs", "list", "--output", "json").json()
        jobs = {}
        for job in listed:
            settings = self.cli("jobs", "get", str(job["job_id"]), "--output", "json").json()["settings"]
            key = settings["name"].split("cqrs_orders_", 1)[1]
            assert key not in jobs, f"two jobs named {settings['name']}"
            jobs[key] = settings
        return jobs


def _deploy_twice(cli, *args: str) -> tuple[Deploy, Deploy]:
    """Two deploys in a row: the second must update what the first created."""
    deploys = []
    for _ in range(2):
        start = len(cli.workspace.entries())
        cli("bundle", "deploy", *args)
        deploys.append(Deploy(cli, cli.workspace.requests(start)))  # this identity's deploys run in turn
    return deploys[0], deploys[1]


@pytest.fixture(scope="session")
def deploys(dev_cli, prod_cli) -> dict[str, tuple[Deploy, Deploy]]:
    """Two dev deploys (as the developer) and two prod deploys (as the service principal), the identities
    side by side: each has its own bundle copy and workspace server, so only the wall time is shared."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        dev = pool.submit(_deploy_twice, dev_cli, *DEPLOY_VARS)
        prod = pool.submit(_deploy_twice, prod_cli, "--target", "prod", *PROD_VARS)
        return {"dev": dev.result(), "prod": prod.result()}


@pytest.fixture(scope="session")
def dev_deploys(deploys) -> tuple[Deploy, Deploy]:
    return deploys["dev"]


@pytest.fixture(scope="session")
def prod_deploys(deploys) -> tuple[Deploy, Deploy]:
    """The CLI creates a started app on the first prod deploy and deploys its code on later ones."""
    return deploys["prod"]


@pytest.fixture(scope="session")
def prod_deploy(prod_deploys) -> Deploy:
    return prod_deploys[0]


@pytest.fixture(scope="session")
def names():
    """The identities and variables the tests deploy with."""
    return {
        "user": USER,
        "service_principal": SERVICE_PRINCIPAL,
        "deploy_vars": DEPLOY_VARS,
        "prod_vars": PROD_VARS,
        "root": workspace_module.ROOT,
    }
