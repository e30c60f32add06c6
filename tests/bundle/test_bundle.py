"""The real Databricks CLI judges the bundle: `bundle validate` for each target with no warning, and
`bundle deploy` of dev (twice) and prod against a local fake workspace, asserting on what the CLI sent and
on what it reads back (`jobs get`, `grants get`, `apps get`)."""

from __future__ import annotations

import re
import shutil

import pytest
import tomllib

from cqrs_orders.cli import build_parser
from cqrs_orders.config import DEFAULT_MAX_RECORDS_PER_BATCH
from cqrs_orders.spark import PIPELINE_CONF

# The first test may build the CLI from its module: ~9 minutes on two cores with a cold Go build cache.
pytestmark = [pytest.mark.databricks_cli, pytest.mark.timeout(1800)]

DEV_ROOT = "/Workspace/Users/tester@databricks.com/.bundle/cqrs_orders/dev"
JOBS = {"projection", "lag_monitor", "maintenance", "views", "command_ingest", "quarantine", "erase_customer",
        "rebuild"}  # fmt: skip
RUN_AS = {"USE_SCHEMA", "CREATE_TABLE", "MODIFY", "SELECT"}  # the jobs' least privilege on the schema
JOB_PARAMETER = re.compile(r"\{\{job\.parameters\.(\w+)\}\}")


def at_defaults(parameters: list[str], job: dict) -> list[str]:
    """A task's parameters as a run started without job parameters gets them: each reference to a job
    parameter (``{{job.parameters.NAME}}``) replaced by that parameter's default."""
    defaults = {p["name"]: p["default"] for p in job.get("parameters", [])}
    return [JOB_PARAMETER.sub(lambda m: defaults[m.group(1)], parameter) for parameter in parameters]


def grants(cli, securable: str, name: str) -> dict[str, set[str]]:
    answer = cli("grants", "get", securable, name, "--output", "json").json()
    return {g["principal"]: set(g["privileges"]) for g in answer.get("privilege_assignments", [])}


def uploads(deploy) -> list[str]:
    """Bundle files uploaded (paths relative to the bundle's files folder)."""
    marker = "/.bundle/cqrs_orders/"
    paths = [
        r["path"].split(marker, 1)[1] for r in deploy.calls("POST", "/api/2.0/workspace-files/import-file/")
    ]
    return [path.split("/files/", 1)[1] for path in paths if "/files/" in path]


# --- validate --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_validate_passes_with_no_warning(dev_cli, prod_cli, names, target):
    cli, variables = (dev_cli, names["deploy_vars"]) if target == "dev" else (prod_cli, names["prod_vars"])
    result = cli("bundle", "validate", "--target", target, *variables)
    output = result.stdout + result.stderr
    assert "Validation OK!" in output and "Warning" not in output and "Recommendation" not in output, output


def test_validate_fails_on_what_the_cli_refuses(dev_cli, names):
    """The CLI is the judge: a duplicate resource key (the bug this suite once missed) fails validate."""
    broken = dev_cli.bundle / "resources" / "duplicate.dashboard.yml"
    shutil.copy(dev_cli.bundle / "resources" / "orders_overview.dashboard.yml", broken)
    broken.write_text(broken.read_text().replace("orders_overview:", "cqrs_orders:"))
    try:
        result = dev_cli("bundle", "validate", *names["deploy_vars"], check=False)
    finally:
        broken.unlink()
    assert result.code == 1
    assert "multiple resources or scripts have been defined with the same key: cqrs_orders" in result.stderr


def test_validate_names_the_dev_schema_once_per_developer(dev_cli, names):
    config = dev_cli("bundle", "validate", "--output", "json", *names["deploy_vars"]).json()
    assert config["resources"]["schemas"]["cqrs_orders"]["name"] == "dev_tester_cqrs_orders"
    assert config["resources"]["apps"]["command_api"]["name"] == "dev-tester-cqrs-api"


def test_wheel_tasks_are_valid_command_lines_and_the_notebook_reads_its_parameters(dev_cli, names):
    """What the CLI cannot know: that each wheel task's parameters parse as a `cqrs-orders` command line
    (with each `{{job.parameters.NAME}}` at its default, as a run started without parameters passes it),
    and that the notebook reads every parameter the job passes it."""
    config = dev_cli("bundle", "validate", "--output", "json", *names["deploy_vars"]).json()
    project = tomllib.loads((names["root"] / "pyproject.toml").read_text())["project"]
    parser = build_parser()
    wheel_tasks = 0
    for key, job in config["resources"]["jobs"].items():
        for task in job["tasks"]:
            if "python_wheel_task" in task:
                wheel_tasks += 1
                wheel = task["python_wheel_task"]
                assert wheel["entry_point"] in project["scripts"], key
                given = at_defaults(wheel["parameters"], job)
                try:
                    parser.parse_args(given)
                except SystemExit:
                    pytest.fail(f"{key}: `cqrs-orders {' '.join(wheel['parameters'])}` does not parse")
            if "notebook_task" in task:
                source = (names["root"] / "notebooks" / "command_ingest.py").read_text()
                given = [
                    *task["notebook_task"].get("base_parameters", {}),
                    *(p["name"] for p in job["parameters"]),
                ]
                for parameter in given:
                    assert f'"{parameter}"' in source, (key, parameter)
    assert wheel_tasks == 7  # project, lag, maintain, create-views, quarantine, erase-customer, rebuild


def test_the_app_installs_the_wheel_the_bundle_builds(names):
    version = tomllib.loads((names["root"] / "pyproject.toml").read_text())["project"]["version"]
    lines = (names["root"] / "app" / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == [
        f"./wheels/cqrs_orders-{version}-py3-none-any.whl"
    ]


# --- dev deploy ------------------------------------------------------------------------------------------


def test_dev_deploy_answers_every_call_and_a_second_deploy_updates_in_place(dev_deploys, dev_cli):
    first, second = dev_deploys
    assert dev_cli.workspace.unhandled() == []
    assert len(first.calls("POST", "/api/2.2/jobs/create")) == len(JOBS)
    assert second.calls("POST", "/api/2.2/jobs/create") == []  # never a duplicate
    # Jobs whose settings changed (the timestamped dev wheel) are reset in place; the others are left alone.
    created = {job["job_id"] for job in first.cli("jobs", "list", "--output", "json").json()}
    reset = {call["body"]["job_id"] for call in second.calls("POST", "/api/2.2/jobs/reset")}
    assert len(reset) == len(JOBS) - 1 and reset <= created  # all but command_ingest, which has no wheel
    assert len(first.calls("POST", "/api/2.1/unity-catalog/schemas")) == 1
    assert second.calls("POST", "/api/2.1/unity-catalog/schemas") == []
    assert set(second.jobs()) == JOBS  # read back with `databricks jobs list/get`: exactly one of each


def test_dev_deploy_pauses_every_trigger(dev_deploys):
    jobs = dev_deploys[1].jobs()
    assert jobs["projection"]["continuous"] == {"pause_status": "PAUSED"}
    for key in ("lag_monitor", "maintenance"):
        assert jobs[key]["schedule"]["pause_status"] == "PAUSED", key
    assert all(job["name"].startswith("[dev tester] ") for job in jobs.values())


def test_dev_deploy_uploads_only_what_runs_in_the_workspace(dev_deploys):
    uploaded = uploads(dev_deploys[0])
    assert "notebooks/command_ingest.py" in uploaded
    assert {"app/requirements.txt", "app/wheels/cqrs_orders-0.1.0-py3-none-any.whl"} <= set(uploaded)
    for left_out in ("tests/", "benchmarks/", ".ci/", "src/", "sql/", ".databricks/"):
        assert not [path for path in uploaded if path.startswith(left_out)], left_out
    assert len(uploaded) < 30, uploaded


def test_dev_jobs_run_on_the_compute_each_needs(dev_deploys):
    jobs = dev_deploys[1].jobs()
    [artifact] = [
        r["path"]
        for r in dev_deploys[1].calls("POST", "/api/2.0/workspace-files/import-file/")
        if "/artifacts/.internal/" in r["path"]
    ]
    wheel = artifact.removeprefix("/api/2.0/workspace-files/import-file")
    assert re.fullmatch(rf"{DEV_ROOT}/artifacts/\.internal/cqrs_orders-0\.1\.0\+\d+-py3-none-any\.whl", wheel)

    # Command ingest: a notebook task with no cluster and no libraries runs on serverless job compute; the
    # notebook installs the wheel from the folder the deploy uploaded it to.
    ingest = jobs["command_ingest"]
    [task] = ingest["tasks"]
    assert not {"job_cluster_key", "new_cluster", "existing_cluster_id", "libraries"} & set(task)
    assert "job_clusters" not in ingest
    parameters = task["notebook_task"]["base_parameters"]
    assert parameters["wheel_dir"] == wheel.rsplit("/", 1)[0]
    assert parameters["write_store"] == "cosmos" and parameters["secret_scope"] == "cqrs-orders"
    assert ingest["parameters"] == [{"name": "command_file", "default": ""}]  # a path: no personal data
    assert ingest["queue"] == {"enabled": True} and ingest["max_concurrent_runs"] == 10

    # Lag monitor and views: serverless wheel tasks with the wheel in their environment; settings as flags.
    for key in ("lag_monitor", "views"):
        [task] = jobs[key]["tasks"]
        assert "job_clusters" not in jobs[key] and "job_cluster_key" not in task, key
        [environment] = jobs[key]["environments"]
        assert task["environment_key"] == environment["environment_key"]
        assert environment["spec"]["dependencies"] == [wheel], key
        assert {"--catalog=main", "--schema=dev_tester_cqrs_orders"} <= set(
            task["python_wheel_task"]["parameters"]
        )
    lag = jobs["lag_monitor"]["tasks"][0]["python_wheel_task"]["parameters"]
    assert lag[:2] == ["lag", "--threshold-seconds=60"]
    assert {"--source=kafka", "--eventhub-name=order-events", "--secret-scope=cqrs-orders"} <= set(lag)

    # The projection: ONE continuous query on the classic cluster that maintenance shares (defined once).
    [project] = jobs["projection"]["tasks"]
    assert project["python_wheel_task"]["parameters"] == [
        "project",
        "--continuous",
        "--catalog=main",
        "--schema=dev_tester_cqrs_orders",
        "--source=kafka",
        "--eventhub-name=order-events",
        "--secret-scope=cqrs-orders",
        f"--max-records-per-batch={DEFAULT_MAX_RECORDS_PER_BATCH}",  # the variable's default is the wheel's
        "--checkpoint-root=/Volumes/main/dev_tester_cqrs_orders/checkpoints",
    ]
    assert project["libraries"] == [{"whl": wheel}]
    [cluster] = jobs["projection"]["job_clusters"]
    [maintenance_cluster] = jobs["maintenance"]["job_clusters"]
    assert cluster["new_cluster"] == maintenance_cluster["new_cluster"]
    assert cluster["new_cluster"]["spark_version"] == "18.x-scala2.13"
    assert "spark_env_vars" not in cluster["new_cluster"]  # settings are task parameters now
    assert cluster["new_cluster"]["spark_conf"] == PIPELINE_CONF  # the plans run as tuned on the laptop

    # The rebuild: run by hand only, one at a time, on the projection's cluster definition and checkpoints
    # (where the pause request and acknowledgement meet), with the projection's source for its catch-up.
    rebuild = jobs["rebuild"]
    assert not {"schedule", "trigger", "continuous"} & set(rebuild) and rebuild["max_concurrent_runs"] == 1
    [task] = rebuild["tasks"]
    parameters = at_defaults(task["python_wheel_task"]["parameters"], rebuild)
    assert parameters[:3] == ["rebuild", "--no-rollback", "--pause-timeout=300"]
    assert set(project["python_wheel_task"]["parameters"][2:]) <= set(parameters)
    [rebuild_cluster] = rebuild["job_clusters"]
    assert rebuild_cluster["new_cluster"] == cluster["new_cluster"]


def test_dev_deploy_grants_and_permissions(dev_deploys, dev_cli, names):
    schema = grants(dev_cli, "schema", "main.dev_tester_cqrs_orders")
    app = dev_cli("apps", "get", "dev-tester-cqrs-api", "--output", "json").json()
    assert schema == {
        names["user"]: RUN_AS,  # the developer is the run-as identity in dev
        "users": {"USE_SCHEMA"},  # the dashboard's readers: SELECT per object, from the views job
        app["service_principal_client_id"]: {"USE_SCHEMA"},  # SELECT per object, from the views job
    }
    assert grants(dev_cli, "volume", "main.dev_tester_cqrs_orders.checkpoints") == {
        names["user"]: {"READ_VOLUME", "WRITE_VOLUME"}
    }
    [dashboard] = dev_deploys[0].calls("PUT", "/api/2.0/permissions/dashboards/")
    assert {"group_name": "users", "permission_level": "CAN_READ"} in dashboard["body"]["access_control_list"]
    [published] = dev_deploys[0].calls("POST", "/api/2.0/lakeview/dashboards/")
    assert published["body"]["embed_credentials"] is False


def test_dev_app_is_created_with_its_resources_but_not_started(dev_deploys, dev_cli):
    [created] = [r for r in dev_deploys[0].requests if r["method"] == "POST" and r["path"] == "/api/2.0/apps"]
    body = created["body"]
    assert body["name"] == "dev-tester-cqrs-api"
    assert {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in body["resources"]} == {
        "sql-warehouse": {
            "sql_warehouse": {"id": body["resources"][0]["sql_warehouse"]["id"], "permission": "CAN_USE"}
        },
        "cosmos-key": {"secret": {"scope": "cqrs-orders", "key": "cosmos-key", "permission": "READ"}},
        "eventhub-send-connection": {
            "secret": {"scope": "cqrs-orders", "key": "eventhub-send-connection", "permission": "READ"}
        },
    }
    assert created["query"].get("no_compute") == ["true"]  # a dev deploy starts nothing
    assert not [r for r in dev_deploys[0].requests if r["path"].endswith("/deployments")]


# --- prod deploy -----------------------------------------------------------------------------------------


def test_prod_deploy_runs_every_trigger_as_the_service_principal(prod_deploy, prod_cli, names):
    assert prod_cli.workspace.unhandled() == []
    jobs = prod_deploy.jobs()
    assert set(jobs) == JOBS and all(job["name"].startswith("cqrs_orders_") for job in jobs.values())
    assert jobs["projection"]["continuous"] == {"pause_status": "UNPAUSED"}
    for key in ("lag_monitor", "maintenance"):
        assert jobs[key]["schedule"]["pause_status"] == "UNPAUSED", key
    for key, job in jobs.items():
        assert job["run_as"] == {"service_principal_name": names["service_principal"]}, key
    root = f"/Workspace/Users/{names['service_principal']}/.bundle/cqrs_orders/prod"
    assert all(root in r["path"] for r in prod_deploy.calls("POST", "/api/2.0/workspace-files/import-file/"))
    for permissions in prod_deploy.calls("PUT", "/api/2.0/permissions/jobs/"):
        acl = permissions["body"]["access_control_list"]
        assert {"group_name": "cqrs-orders-operators", "permission_level": "CAN_VIEW"} in acl  # not `users`
        levels = {entry.get("service_principal_name"): entry["permission_level"] for entry in acl}
        assert levels[names["service_principal"]] in {"IS_OWNER", "CAN_MANAGE"}  # owner: it deploys prod
        assert len(acl) == 2  # no one else may manage or run the jobs


def test_prod_deploy_grants_the_run_as_principal_least_privilege(prod_deploy, prod_cli, names):
    schema = grants(prod_cli, "schema", "main.cqrs_orders")
    app = prod_cli("apps", "get", "cqrs-orders-api", "--output", "json").json()
    assert schema == {
        names["service_principal"]: RUN_AS,
        "users": {"USE_SCHEMA"},
        app["service_principal_client_id"]: {"USE_SCHEMA"},
    }
    assert grants(prod_cli, "volume", "main.cqrs_orders.checkpoints") == {
        names["service_principal"]: {"READ_VOLUME", "WRITE_VOLUME"}
    }


def test_prod_deploy_starts_the_app_with_its_command_and_environment(prod_deploys, names):
    first, second = prod_deploys
    [created] = [r for r in first.requests if r["method"] == "POST" and r["path"] == "/api/2.0/apps"]
    assert "no_compute" not in created["query"]  # prod starts the app's compute
    # The CLI (0.298.0) deploys a started app's code when it updates it, i.e. from the second deploy on; the
    # first deploy to a new workspace is followed by `databricks bundle run command_api -t prod`.
    assert [r for r in second.requests if r["method"] == "POST" and r["path"] == "/api/2.0/apps"] == []
    [deployment] = second.calls("POST", "/api/2.0/apps/cqrs-orders-api/deployments")
    body = deployment["body"]
    assert body["command"] == ["cqrs-orders", "serve", "--host", "0.0.0.0", "--relay"]  # it publishes too
    assert body["source_code_path"] == (
        f"/Workspace/Users/{names['service_principal']}/.bundle/cqrs_orders/prod/files/app"
    )
    env = {e["name"]: e.get("value", ("from", e.get("value_from"))) for e in body["env_vars"]}
    assert env == {
        "CQRS_WRITE_STORE": "cosmos",
        "CQRS_PUBLISHER": "kafka",
        "COSMOS_ENDPOINT": "https://cosmos-orders-test.documents.azure.com:443/",
        "COSMOS_DATABASE": "orders",
        "EVENTHUB_NAME": "order-events",
        "CQRS_COMMAND_ID_RETENTION_DAYS": "30",  # the idempotency window command ingest gets too
        "CQRS_CATALOG": "main",
        "CQRS_SCHEMA": "cqrs_orders",
        "CQRS_SQL_WAREHOUSE_ID": ("from", "sql-warehouse"),
        "COSMOS_KEY": ("from", "cosmos-key"),  # secrets only by reference to the app's resources
        "EVENTHUB_SEND_CONNECTION": ("from", "eventhub-send-connection"),
    }


def test_bundle_run_starts_the_dev_app_on_the_developers_schema(dev_deploys, dev_cli, names):
    workspace = dev_cli.workspace
    start = len(workspace.entries())
    dev_cli("bundle", "run", "command_api", *names["deploy_vars"])
    sent = workspace.requests(start)
    assert [r["path"] for r in sent if r["method"] == "POST"] == [
        "/api/2.0/apps/dev-tester-cqrs-api/start",
        "/api/2.0/apps/dev-tester-cqrs-api/deployments",
    ]
    body = sent[[r["path"] for r in sent].index("/api/2.0/apps/dev-tester-cqrs-api/deployments")]["body"]
    assert body["source_code_path"] == f"{DEV_ROOT}/files/app"
    env = {e["name"]: e.get("value") or e.get("value_from") for e in body["env_vars"]}
    assert (env["CQRS_SCHEMA"], env["COSMOS_KEY"]) == ("dev_tester_cqrs_orders", "cosmos-key")
