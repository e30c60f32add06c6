"""Who may call the command API app, as the real Databricks CLI deploys it: CAN_USE goes to the group the
`app_users_group` variable names, never to `users` (everyone in the workspace). Dev grants the workspace
admins (who may manage any app anyway) beside the deployer's CAN_MANAGE; prod names its own group, and a
deployer may name another with --var."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.databricks_cli, pytest.mark.timeout(1800)]


def app_acl(deploy, app_name: str) -> list[dict]:
    """The access control list the deploy sent for the app (the permissions API's PUT)."""
    [sent] = deploy.calls("PUT", f"/api/2.0/permissions/apps/{app_name}")
    return sent["body"]["access_control_list"]


def can_use(acl: list[dict]) -> set[str]:
    return {
        entry.get("group_name") or entry.get("user_name") or entry.get("service_principal_name")
        for entry in acl
        if entry["permission_level"] == "CAN_USE"
    }


def test_dev_lets_only_the_admins_use_the_app_and_the_deployer_manage_it(dev_deploys, names):
    acl = app_acl(dev_deploys[0], "dev-tester-cqrs-api")
    assert "users" not in can_use(acl)
    assert can_use(acl) == {"admins"}
    assert {"user_name": names["user"], "permission_level": "CAN_MANAGE"} in acl


def test_prod_grants_can_use_to_its_named_group_never_to_users(prod_deploy):
    acl = app_acl(prod_deploy, "cqrs-orders-api")
    assert "users" not in can_use(acl)
    assert "cqrs-orders-api-callers" in can_use(acl)
    assert not [entry for entry in acl if entry.get("group_name") == "users"]


def test_prod_takes_the_group_a_deployer_names(prod_cli, names):
    variables = [*names["prod_vars"], "--var=app_users_group=shop-frontends"]
    config = prod_cli("bundle", "validate", "--target", "prod", "--output", "json", *variables).json()
    permissions = config["resources"]["apps"]["command_api"]["permissions"]
    assert {"group_name": "shop-frontends", "level": "CAN_USE"} in permissions
    assert not [p for p in permissions if p.get("group_name") in ("users", "cqrs-orders-api-callers")]
