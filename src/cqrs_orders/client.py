"""Submit a command to the command-ingest endpoint on Databricks (a job running notebooks/command_ingest.py).

The command JSON is uploaded to a file in the bundle's ``command_inbox`` volume and the job is given its path
(job parameter ``command_file``): job parameters are readable by everyone who may view the job's runs, and
commands carry names and e-mail addresses. The job answers with the same result JSON as ``cqrs-orders
submit``; a JSON array of commands (a batch: one run for many commands) answers a list with one result per
command. A ``commandId`` doubles as the Jobs API idempotency token (for a batch, a hash of all of them), so a
caller retrying after a timeout starts no second run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import uuid
from datetime import timedelta

from cqrs_orders.errors import ConfigurationError, RemoteRunError

#: The job parameter (and notebook widget) carrying the path of the command file.
COMMAND_PARAMETER = "command_file"


def submit_command(
    workspace_client,
    job: int | str,
    command: dict | list | str,
    *,
    inbox: str,
    timeout=timedelta(minutes=10),
) -> dict | list[dict]:
    """Run the command-ingest job (``job``: its id, or its unique name); return the result (a list of
    results for a batch, given as a list or as JSON array text).

    ``inbox`` is the volume folder the job reads commands from
    (``/Volumes/<catalog>/<schema>/command_inbox``); the caller needs WRITE VOLUME on it.
    ``workspace_client`` is a ``databricks.sdk.WorkspaceClient``. Raises ``RemoteRunError`` if the run
    fails, ``ConfigurationError`` if the job cannot be found.
    """
    payload = command if isinstance(command, str) else json.dumps(command, separators=(",", ":"))
    job_id = _job_id(workspace_client, job)
    token = _idempotency_token(payload)
    # Named by the token, so a retry writes the same file; a payload without ids gets a file of its own.
    path = f"{inbox.rstrip('/')}/{token or uuid.uuid4().hex}.json"
    workspace_client.files.upload(path, io.BytesIO(payload.encode("utf-8")), overwrite=True)
    waiter = workspace_client.jobs.run_now(
        job_id=job_id, job_parameters={COMMAND_PARAMETER: path}, idempotency_token=token
    )
    run = waiter.result(timeout=timeout)
    _remove(workspace_client, path)
    result_state = run.state.result_state.value if run.state and run.state.result_state else None
    if result_state != "SUCCESS":
        message = run.state.state_message if run.state else ""
        raise RemoteRunError(
            f"Command-ingest run {run.run_id} of job {job_id} ended {result_state}: {message}"
        )
    task_run_id = run.tasks[0].run_id if run.tasks else run.run_id
    output = workspace_client.jobs.get_run_output(run_id=task_run_id)
    if output.error or not (output.notebook_output and output.notebook_output.result):
        raise RemoteRunError(
            f"Command-ingest run {run.run_id} returned no result{': ' + output.error if output.error else ''}"
        )
    return json.loads(output.notebook_output.result)


def _remove(workspace_client, path: str) -> None:
    """Delete the command file if it is still there: the run deletes it once its commands are answered,
    but a retry answered by an earlier run (idempotency token) uploaded it again for no run to read."""
    from databricks.sdk.errors import NotFound

    with contextlib.suppress(NotFound):
        workspace_client.files.delete(path)


def _job_id(workspace_client, job: int | str) -> int:
    if isinstance(job, int) or str(job).isdigit():
        return int(job)
    matches = list(workspace_client.jobs.list(name=job))
    if len(matches) != 1:
        raise ConfigurationError(
            f"Expected exactly one job named {job!r}, found {len(matches)}; pass the job id instead "
            "(databricks bundle summary shows it)."
        )
    return matches[0].job_id


def _idempotency_token(payload: str) -> str | None:
    try:
        decoded = json.loads(payload)
        commands = decoded if isinstance(decoded, list) else [decoded]
        command_ids = [command.get("commandId") for command in commands]
    except (ValueError, AttributeError):
        return None
    if not command_ids or not all(isinstance(i, str) and i for i in command_ids):
        return None  # a command without an id may be meant to run again: no token
    if isinstance(decoded, dict) and len(command_ids[0]) <= 64:
        return command_ids[0]
    return hashlib.sha256("\n".join(command_ids).encode()).hexdigest()
