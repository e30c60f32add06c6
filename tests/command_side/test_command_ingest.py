"""The command-ingest endpoint: the notebook runs as a plain script, and ``submit_command`` drives it through
the real databricks-sdk ``WorkspaceClient`` against a local HTTP server implementing the Jobs 2.2 and Files
calls it makes. That server "runs" the job by executing the notebook file as a subprocess, on the file
uploaded to its stand-in volume: the whole path is real. The commands travel in that file, never in the
job parameters (which every viewer of the job's runs may read)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from databricks.sdk import WorkspaceClient

from cqrs_orders.client import submit_command
from cqrs_orders.errors import ConfigurationError, RemoteRunError

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "command_ingest.py"
REGISTER = {
    "type": "RegisterCustomer",
    "commandId": "reg-1",
    "customerId": "cust-1",
    "name": "Ada",
    "email": "a@b.io",
}


INBOX = "/Volumes/main/cqrs_orders/command_inbox"


def run_notebook(command: str | Path, warehouse: Path, suffix: str = ".json") -> subprocess.CompletedProcess:
    """Run the notebook on a command file: ``command`` is the file, or the text to write into a new one."""
    if not isinstance(command, Path):
        inbox = warehouse.parent / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        path = inbox / f"command-{len(list(inbox.iterdir()))}{suffix}"
        path.write_text(command)
        command = path
    env = {"PATH": "/usr/bin:/bin", "CQRS_WAREHOUSE": str(warehouse)}
    return subprocess.run(
        [sys.executable, str(NOTEBOOK), str(command)], capture_output=True, text=True, timeout=60, env=env
    )


def test_the_notebook_is_in_databricks_source_format():
    text = NOTEBOOK.read_text()
    assert text.startswith("# Databricks notebook source\n")
    assert text.count("# COMMAND ----------") >= 3
    assert 'dbutils.widgets.get("command_file")' in text and "dbutils.notebook.exit(" in text
    assert 'dbutils.widgets.get("command")' not in text  # the commands never travel as a job parameter


def test_the_notebook_runs_locally_as_a_script(settings, tmp_path):
    command_file = tmp_path / "register.json"
    command_file.write_text(json.dumps(REGISTER))
    done = run_notebook(command_file, settings.warehouse)
    assert done.returncode == 0, done.stderr
    assert not command_file.exists()  # answered: the file (names, e-mails) is gone
    result = json.loads(done.stdout)
    assert (result["status"], result["commandId"], result["aggregateId"], result["version"]) == (
        "accepted",
        "reg-1",
        "cust-1",
        1,
    )
    rejected = json.loads(run_notebook('{"type": "Teleport"}', settings.warehouse).stdout)
    assert rejected["error"]["code"] == "UNKNOWN_COMMAND"


def test_the_notebook_publishes_unless_another_relay_holds_the_lease_and_says_which(settings):
    from cqrs_orders.adapters.event_log import EventLog
    from cqrs_orders.adapters.sqlite_store import SqliteWriteStore

    done = run_notebook(json.dumps(REGISTER), settings.warehouse)
    assert done.returncode == 0, done.stderr
    assert "relay: published 1 events" in done.stderr  # no other relay: this run published
    assert len(EventLog(settings.event_log_path).read()) == 1

    app = SqliteWriteStore(settings.write_store_path)
    try:
        with app.relay_guard("command API relay"):  # the app's relay holds the lease
            held = run_notebook(
                json.dumps({**REGISTER, "commandId": "reg-2", "customerId": "c2"}), settings.warehouse
            )
    finally:
        app.close()
    assert held.returncode == 0, held.stderr
    assert json.loads(held.stdout)["status"] == "accepted"  # the result is the same either way
    assert "relay: not published by this run: command API relay (host " in held.stderr
    assert "holds the outbox lease" in held.stderr and "publishes the pending events" in held.stderr
    assert len(EventLog(settings.event_log_path).read()) == 1  # left to the holder


class JobsApi(BaseHTTPRequestHandler):
    """Jobs 2.2: list (by name), run-now (honouring idempotency_token), runs/get, runs/get-output."""

    state: dict  # set per server: warehouse, runs, requests, job

    def do_GET(self):
        url = urlparse(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        self.state["requests"].append(("GET", url.path, query))
        if url.path == "/api/2.2/jobs/list":
            jobs = [{"job_id": 42, "settings": {"name": "command-ingest"}}]
            self._reply({"jobs": [job for job in jobs if job["settings"]["name"] == query.get("name")]})
        elif url.path == "/api/2.2/jobs/runs/get":
            run = self.state["runs"][int(query["run_id"])]
            self._reply(
                {
                    "run_id": run["run_id"],
                    "job_id": 42,
                    "state": run["state"],
                    "tasks": [{"run_id": run["run_id"] + 1000, "task_key": "ingest"}],
                }
            )
        elif url.path == "/api/2.2/jobs/runs/get-output":
            run = self.state["runs"][int(query["run_id"]) - 1000]
            self._reply(
                {"notebook_output": {"result": run["result"]}} if run["result"] else {"error": run["error"]}
            )
        else:
            self._reply({"error_code": "ENDPOINT_NOT_FOUND", "message": url.path}, status=404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.state["requests"].append(("POST", self.path, body))
        if self.path != "/api/2.2/jobs/run-now" or body.get("job_id") != 42:
            self._reply({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such job"}, status=400)
            return
        token = body.get("idempotency_token")
        existing = [run for run in self.state["runs"].values() if token and run["token"] == token]
        if existing:
            self._reply({"run_id": existing[0]["run_id"]})
            return
        done = run_notebook(self._local(body["job_parameters"]["command_file"]), self.state["warehouse"])
        run_id = 100 + len(self.state["runs"])
        succeeded = done.returncode == 0
        self.state["runs"][run_id] = {
            "run_id": run_id,
            "token": token,
            "result": done.stdout.strip() if succeeded else None,
            "error": None if succeeded else done.stderr.strip().splitlines()[-1],
            "state": {
                "life_cycle_state": "TERMINATED",
                "result_state": "SUCCESS" if succeeded else "FAILED",
                "state_message": "" if succeeded else "notebook failed",
            },
        }
        self._reply({"run_id": run_id})

    def do_PUT(self):
        """Files API upload: the file lands in the stand-in volume folder."""
        url = urlparse(self.path)
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.state["requests"].append(("PUT", url.path, data))
        path = self._local(url.path.removeprefix("/api/2.0/fs/files"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self._reply({}, status=204)

    def do_DELETE(self):
        url = urlparse(self.path)
        self.state["requests"].append(("DELETE", url.path, None))
        path = self._local(url.path.removeprefix("/api/2.0/fs/files"))
        if not path.exists():
            self._reply({"error_code": "NOT_FOUND", "message": "no such file"}, status=404)
            return
        path.unlink()
        self._reply({}, status=204)

    def _local(self, path: str) -> Path:
        return self.state["volumes"] / path.lstrip("/")

    def _reply(self, payload: dict, status: int = 200):
        data = json.dumps(payload).encode() if status != 204 else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        return None


@pytest.fixture
def workspace(settings):
    volumes = settings.warehouse.parent  # the stand-in of /Volumes/...: a folder beside the warehouse
    state = {"warehouse": settings.warehouse, "runs": {}, "requests": [], "volumes": volumes}
    handler = type("Handler", (JobsApi,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    client = WorkspaceClient(host=f"http://127.0.0.1:{server.server_address[1]}", token="x")
    yield client, state
    server.shutdown()
    server.server_close()


def test_submit_command_runs_the_job_and_returns_the_result(workspace):
    client, state = workspace
    result = submit_command(client, "command-ingest", REGISTER, inbox=INBOX)
    assert (result["status"], result["commandId"], result["version"]) == ("accepted", "reg-1", 1)
    [run_now] = [body for method, path, body in state["requests"] if path == "/api/2.2/jobs/run-now"]
    assert run_now["job_id"] == 42
    assert run_now["job_parameters"] == {"command_file": f"{INBOX}/reg-1.json"}  # a path, no personal data
    [upload] = [body for method, path, body in state["requests"] if method == "PUT"]
    assert json.loads(upload) == REGISTER
    assert run_now["idempotency_token"] == "reg-1"
    inbox = state["volumes"] / INBOX.lstrip("/")
    assert not list(inbox.iterdir())  # the answered file is gone

    # A retry with the same commandId reuses the run (idempotency token) and gets the same answer; the file
    # it uploaded again, which no run reads, is removed by the client.
    assert submit_command(client, 42, json.dumps(REGISTER), inbox=INBOX) == result
    assert len(state["runs"]) == 1
    assert not list(inbox.iterdir())

    rejected = submit_command(client, "42", {"type": "ShipOrder", "orderId": "order-404"}, inbox=INBOX)
    assert rejected["status"] == "rejected" and rejected["error"]["code"] == "NOT_FOUND"


def test_submit_command_errors(workspace, settings):
    client, _ = workspace
    with pytest.raises(ConfigurationError, match="exactly one job named 'nope'"):
        submit_command(client, "nope", REGISTER, inbox=INBOX)
    settings.warehouse.mkdir(parents=True, exist_ok=True)
    (settings.warehouse / "write_store.sqlite").mkdir()  # the write store cannot be opened: the run fails
    with pytest.raises(RemoteRunError, match="ended FAILED"):
        submit_command(client, 42, REGISTER, inbox=INBOX)


def test_the_notebook_takes_a_batch_and_answers_one_result_per_command(settings):
    batch = [REGISTER, {"type": "Teleport"}, {**REGISTER, "commandId": "reg-2", "customerId": "cust-2"}]
    done = run_notebook(json.dumps(batch), settings.warehouse)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [(r["commandId"], r["status"]) for r in results] == [
        ("reg-1", "accepted"),
        (results[1]["commandId"], "rejected"),
        ("reg-2", "accepted"),
    ]
    assert results[1]["error"]["code"] == "UNKNOWN_COMMAND"  # one rejection does not stop the others
    assert len(results[1]["commandId"]) == 36  # a command without an id is answered with a generated one
    # A retried batch is answered from the recorded outcomes: same versions, nothing written twice.
    retried = json.loads(run_notebook(json.dumps(batch), settings.warehouse).stdout)
    assert [retried[0], retried[2]] == [results[0], results[2]]
    # The same batch as JSON Lines, one command a line, is the same batch.
    lines = "\n".join(json.dumps(command) for command in batch) + "\n"
    from_lines = json.loads(run_notebook(lines, settings.warehouse, suffix=".jsonl").stdout)
    assert [from_lines[0], from_lines[2]] == [results[0], results[2]]
    assert from_lines[1]["error"]["code"] == "UNKNOWN_COMMAND"
    too_many = json.loads(run_notebook("[]", settings.warehouse).stdout)
    assert too_many[0]["error"]["code"] == "VALIDATION_ERROR"


def test_submit_command_sends_a_batch_as_one_run(workspace):
    client, state = workspace
    batch = [REGISTER, {**REGISTER, "commandId": "reg-2", "customerId": "cust-2"}]
    results = submit_command(client, 42, batch, inbox=INBOX)
    assert [(r["commandId"], r["version"]) for r in results] == [("reg-1", 1), ("reg-2", 1)]
    [run_now] = [body for method, path, body in state["requests"] if path == "/api/2.2/jobs/run-now"]
    [upload] = [body for method, path, body in state["requests"] if method == "PUT"]
    assert json.loads(upload) == batch
    token = run_now["idempotency_token"]
    assert len(token) == 64 and token not in ("reg-1", "reg-2")  # one token for the whole batch
    assert run_now["job_parameters"] == {"command_file": f"{INBOX}/{token}.json"}
    assert submit_command(client, 42, json.dumps(batch), inbox=INBOX) == results and len(state["runs"]) == 1


def test_the_notebook_refuses_to_run_without_a_command_file(settings):
    env = {"PATH": "/usr/bin:/bin", "CQRS_WAREHOUSE": str(settings.warehouse)}
    done = subprocess.run(
        [sys.executable, str(NOTEBOOK)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode != 0 and "no command_file" in done.stderr
