"""The projection job carries the Jobs service's streaming-backlog health rules (issue 33, point 3), and a
breach of them e-mails the same on-call list as its failures: the real CLI resolves the bundle (`bundle
validate -o json`), so the variables are checked as the workspace would get them, for both targets."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.databricks_cli, pytest.mark.timeout(1800)]


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_the_projection_job_alerts_on_its_streaming_backlog(dev_cli, prod_cli, names, target):
    cli, variables = (dev_cli, names["deploy_vars"]) if target == "dev" else (prod_cli, names["prod_vars"])
    config = cli("bundle", "validate", "--target", target, "--output", "json", *variables).json()
    variables_resolved = config["variables"]
    job = config["resources"]["jobs"]["projection"]

    rules = {rule["metric"]: rule for rule in job["health"]["rules"]}
    assert set(rules) == {"STREAMING_BACKLOG_SECONDS", "STREAMING_BACKLOG_RECORDS"}
    assert all(rule["op"] == "GREATER_THAN" for rule in rules.values())
    # The same numbers as the lag monitor's threshold and the catch-up batch size, as integers.
    assert rules["STREAMING_BACKLOG_SECONDS"]["value"] == int(
        variables_resolved["lag_threshold_seconds"]["value"]
    )
    assert rules["STREAMING_BACKLOG_RECORDS"]["value"] == int(
        variables_resolved["max_records_per_batch"]["value"]
    )

    emails = job["email_notifications"]
    assert emails["on_streaming_backlog_exceeded"] == emails["on_failure"]
    assert emails["on_failure"] == variables_resolved["alert_emails"]["value"]
