"""The bundle deploys as written: every target's merged configuration passes the official JSON schema and the
``databricks-bundles`` typed models, and every file, entry point and subcommand a resource names exists."""

from __future__ import annotations

import copy
import glob
import re

import jsonschema
import pytest
import tomllib
import yaml
from databricks.bundles.dashboards import Dashboard
from databricks.bundles.jobs import Job
from databricks.bundles.schemas import Schema
from databricks.bundles.volumes import Volume

from cqrs_orders.cli import build_parser

TARGETS = ("dev", "prod")
MODELS = {"jobs": Job, "schemas": Schema, "volumes": Volume, "dashboards": Dashboard}


def schema_errors(json_schema: dict, config: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(json_schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {jsonschema.exceptions.best_match([error]).message}"
        for error in validator.iter_errors(config)
    ]


def tasks(config: dict):
    """Every (job key, task) of a configuration."""
    for key, job in config["resources"]["jobs"].items():
        for task in job["tasks"]:
            yield key, task


def test_targets_are_dev_by_default_and_prod_as_a_service_principal(bundle, configs):
    assert bundle.targets() == list(TARGETS)
    targets = bundle.config["targets"]
    assert targets["dev"]["mode"] == "development" and targets["dev"]["default"] is True
    assert targets["prod"]["mode"] == "production"
    prod = configs["prod"]
    principal = prod["run_as"]["service_principal_name"]
    assert principal == "11111111-2222-3333-4444-555555555555"
    assert {"service_principal_name": principal, "level": "CAN_MANAGE"} in prod["permissions"]
    # Each developer gets a private schema; everything that uses the schema follows the schema resource.
    assert configs["dev"]["resources"]["schemas"]["cqrs_orders"]["name"] == "cqrs_orders_jane_doe"
    env = configs["dev"]["resources"]["jobs"]["projection"]["job_clusters"][0]["new_cluster"][
        "spark_env_vars"
    ]
    assert env["CQRS_SCHEMA"] == "cqrs_orders_jane_doe"
    assert env["CQRS_CHECKPOINT_ROOT"] == "/Volumes/main/cqrs_orders_jane_doe/checkpoints"


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_matches_the_official_bundle_schema(configs, json_schema, target):
    assert schema_errors(json_schema, configs[target]) == []


def test_each_file_matches_the_schema_as_written(tools, json_schema):
    """Unresolved ``${var...}`` references must match the schema's reference patterns (rewritten for re)."""
    for path in [tools.ROOT / "databricks.yml", *sorted((tools.ROOT / "resources").glob("*.yml"))]:
        assert schema_errors(json_schema, yaml.safe_load(path.read_text())) == [], path.name


def test_the_schema_rejects_what_the_cli_would(configs, json_schema):
    unknown = copy.deepcopy(configs["dev"])
    unknown["resources"]["jobs"]["lag_monitor"]["retries_forever"] = True  # not a job field
    assert "'retries_forever' was unexpected" in " ".join(schema_errors(json_schema, unknown))
    broken = copy.deepcopy(configs["dev"])
    broken["resources"]["jobs"]["projection"]["max_concurrent_runs"] = (
        "${var.}"  # neither a number nor a reference
    )
    assert schema_errors(json_schema, broken)


def test_rewritten_reference_patterns_behave_like_the_originals(tools, json_schema):
    patterns = set()

    def collect(node):
        if isinstance(node, dict):
            patterns.update(v for k, v in node.items() if k == "pattern" and isinstance(v, str))
            node = list(node.values())
        for value in node if isinstance(node, list) else ():
            collect(value)

    collect(json_schema)
    assert len(patterns) == 5 and not any(r"\p{" in pattern for pattern in patterns)
    for pattern in patterns:
        re.compile(pattern)
    var = re.compile(tools.python_pattern(r"\$\{(var(\.\p{L}+([-_]*[\p{L}\p{N}]+)*(\[[0-9]+\])*)+)\}"))
    for reference in ("${var.lag_threshold_seconds}", "${var.alert_emails[0]}", "${var.größe2}"):
        assert var.fullmatch(reference), reference
    for not_a_reference in ("${var.}", "${var.9lives}", "${var._x}", "${var.a__}"):
        assert not var.fullmatch(not_a_reference), not_a_reference


@pytest.mark.parametrize("target", TARGETS)
def test_every_resource_loads_into_its_typed_model(configs, target):
    resources = configs[target]["resources"]
    assert set(resources) <= set(MODELS), "a resource type without a typed-model check"
    for resource_type, items in resources.items():
        for key, value in items.items():
            model = MODELS[resource_type].from_dict(value)
            assert model.as_dict(), f"{resource_type}.{key}"


def test_typed_models_reject_unknown_and_missing_fields(configs):
    job = copy.deepcopy(configs["dev"]["resources"]["jobs"]["lag_monitor"])
    job["tasks"][0]["python_wheel_task"]["entrypoint"] = "cqrs-orders"  # misspelt entry_point
    with pytest.raises(ValueError, match="entrypoint"):
        Job.from_dict(job)
    schema = dict(configs["dev"]["resources"]["schemas"]["cqrs_orders"])
    del schema["catalog_name"]
    with pytest.raises(TypeError, match="catalog_name"):
        Schema.from_dict(schema)


def test_required_variables_must_be_passed_at_deploy(bundle, tools):
    with pytest.raises(tools.BundleError, match="eventhubs_namespace"):
        bundle.resolved("dev")
    with pytest.raises(tools.BundleError, match="service_principal"):
        bundle.resolved("prod", tools.DEPLOY_VARS)


def test_the_jobs_run_as_the_issues_describe(configs):
    jobs = configs["prod"]["resources"]["jobs"]
    emails = configs["prod"]["variables"]["alert_emails"]["default"]

    projection = jobs["projection"]
    assert projection["continuous"] == {"pause_status": "UNPAUSED"}
    assert [(t["task_key"], t["python_wheel_task"]["parameters"]) for t in projection["tasks"]] == [
        ("bronze", ["project", "--continuous", "--stage", "bronze"]),
        ("silver", ["project", "--continuous", "--stage", "silver"]),
    ]
    env = projection["job_clusters"][0]["new_cluster"]["spark_env_vars"]
    assert env["CQRS_SOURCE"] == "kafka" and env["CQRS_SECRET_SCOPE"] == "cqrs-orders"

    monitor = jobs["lag_monitor"]
    assert monitor["schedule"] == {
        "quartz_cron_expression": "0 0/5 * * * ?",
        "timezone_id": "UTC",
        "pause_status": "UNPAUSED",
    }
    assert monitor["email_notifications"]["on_failure"] == emails and isinstance(emails, list)
    assert monitor["tasks"][0]["python_wheel_task"]["parameters"] == ["lag", "--threshold-seconds", "60"]

    maintenance = jobs["maintenance"]
    assert maintenance["schedule"]["quartz_cron_expression"] == "0 0 3 * * ?"
    assert maintenance["tasks"][0]["python_wheel_task"]["parameters"] == ["maintain"]
    assert maintenance["max_concurrent_runs"] == 1

    ingest = jobs["command_ingest"]
    assert ingest["parameters"] == [{"name": "command", "default": ""}]
    assert ingest["queue"] == {"enabled": True} and ingest["max_concurrent_runs"] >= 10


def test_every_path_a_resource_names_exists(bundle, configs, tools):
    config = configs["dev"]
    artifact = config["artifacts"]["cqrs_orders_wheel"]
    wheel_glob = (tools.ROOT / artifact["path"] / "dist" / "*.whl").resolve()
    for key, task in tasks(config):
        base = bundle.sources[("jobs", key)].parent
        for library in task.get("libraries", []):
            assert (base / library["whl"]).resolve() == wheel_glob, f"{key}.{task['task_key']}"
        if "notebook_task" in task:
            notebook = base / task["notebook_task"]["notebook_path"]
            assert notebook.is_file(), notebook
            assert notebook.read_text().startswith("# Databricks notebook source"), notebook
        if "sql_task" in task:
            sql_file = base / task["sql_task"]["file"]["path"]
            assert sql_file.is_file(), sql_file
    for key, dashboard in config["resources"]["dashboards"].items():
        path = bundle.sources[("dashboards", key)].parent / dashboard["file_path"]
        assert path.is_file() and path.name.endswith(".lvdash.json"), path
    assert glob.has_magic(str(wheel_glob))


def test_wheel_tasks_name_a_real_entry_point_and_cli_subcommands(configs, tools):
    project = tomllib.loads((tools.ROOT / "pyproject.toml").read_text())["project"]
    normalized = re.sub(r"[-_.]+", "_", project["name"]).lower()
    parser = build_parser()
    wheel_tasks = [
        (key, task["python_wheel_task"]) for key, task in tasks(configs["dev"]) if "python_wheel_task" in task
    ]
    assert len(wheel_tasks) == 5  # bronze, silver, lag, create-views, maintain
    for key, wheel_task in wheel_tasks:
        assert re.sub(r"[-_.]+", "_", wheel_task["package_name"]).lower() == normalized, key
        assert wheel_task["entry_point"] in project["scripts"], key
        try:  # the whole argument list must parse: subcommand and every flag
            parser.parse_args(wheel_task["parameters"])
        except SystemExit:
            pytest.fail(
                f"{key}: `cqrs-orders {' '.join(wheel_task['parameters'])}` is not a valid command line"
            )


def test_notebooks_read_their_job_parameters(bundle, configs):
    jobs = configs["dev"]["resources"]["jobs"]
    for key, task in tasks(configs["dev"]):
        if "notebook_task" in task:
            source = (
                bundle.sources[("jobs", key)].parent / task["notebook_task"]["notebook_path"]
            ).read_text()
            for parameter in jobs[key].get("parameters", []):
                assert f'widgets.get("{parameter["name"]}")' in source, (key, parameter["name"])
