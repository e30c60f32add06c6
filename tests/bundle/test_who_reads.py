"""Who may read what, as the bundle deploys it: readers get USE SCHEMA (the views job grants them each object
without personal data), prod jobs are viewed by a named group, and the commands' volume is the run-as
identity's alone."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.databricks_cli, pytest.mark.timeout(1800)]


def resolved(cli, variables: list[str]) -> dict:
    return cli("bundle", "validate", "--target", "prod", "--output", "json", *variables).json()


def test_the_views_job_grants_the_dashboards_readers_and_prod_jobs_are_viewed_by_a_named_group(
    prod_cli, names
):
    config = resolved(prod_cli, names["prod_vars"])
    [task] = config["resources"]["jobs"]["views"]["tasks"]
    assert "--readers=users" in task["python_wheel_task"]["parameters"]  # dashboard_readers' default
    [app] = [p for p in task["python_wheel_task"]["parameters"] if p.startswith("--app=")]
    assert app.removeprefix("--app=")  # the app's service principal, resolved at deploy
    grants = {
        g["principal"]: g["privileges"] for g in config["resources"]["schemas"]["cqrs_orders"]["grants"]
    }
    assert grants["users"] == ["USE_SCHEMA"]  # no SELECT on the schema: bronze, customers' e-mails
    assert [g for p, g in grants.items() if "command_api" in p] == [["USE_SCHEMA"]]  # the app: per object
    assert [p for p in config["permissions"] if p.get("level") != "CAN_MANAGE"] == []  # none bundle-wide
    for key, job in config["resources"]["jobs"].items():  # per job: bundle-wide it would reach the app
        viewers = [p for p in job["permissions"] if p.get("level") == "CAN_VIEW"]
        assert viewers == [{"group_name": "cqrs-orders-operators", "level": "CAN_VIEW"}], key
    app = config["resources"]["apps"]["command_api"]["permissions"]
    assert "cqrs-orders-operators" not in {p.get("group_name") for p in app}  # viewers may not send commands


def test_the_command_inbox_volume_is_the_run_as_identitys_alone(prod_deploy, prod_cli, names):
    answer = prod_cli("grants", "get", "volume", "main.cqrs_orders.command_inbox", "--output", "json").json()
    grants = {g["principal"]: set(g["privileges"]) for g in answer.get("privilege_assignments", [])}
    assert grants == {names["service_principal"]: {"READ_VOLUME", "WRITE_VOLUME"}}
    [ingest] = [job for job in prod_deploy.jobs().values() if job["name"].endswith("command_ingest")]
    assert [p["name"] for p in ingest["parameters"]] == ["command_file"]  # no command text in parameters
