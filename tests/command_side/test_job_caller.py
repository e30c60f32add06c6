"""The command-ingest job records who it runs as: on Databricks compute the principal the workspace says its
credentials belong to (the real Databricks SDK against a loopback stand-in of the SCIM ``Me`` endpoint),
marked ``databricks``; when the workspace cannot say, the OS user, marked ``os-user``, and the commands
still run."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cqrs_orders.adapters.workspace_identity import databricks_identity
from cqrs_orders.application.batch import handle_payload
from cqrs_orders.envelope import EventEnvelope

SERVICE_PRINCIPAL = "aaaaaaaa-bbbb-4ccc-dddd-eeeeeeeeeeee"


class _Me(BaseHTTPRequestHandler):
    def do_GET(self):
        """``Me`` answers ``answer_status``; anything else (the SDK's host-metadata probe) is 404."""
        status = 404
        body = json.dumps({"error_code": "NOT_FOUND", "message": "no"}).encode()
        if self.path.startswith("/api/2.0/preview/scim/v2/Me"):
            self.server.asked.append(self.headers.get("Authorization"))
            status = self.server.answer_status
            if status == 200:
                body = json.dumps({"id": "42", "userName": SERVICE_PRINCIPAL}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def workspace(monkeypatch, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Me)
    server.answer_status, server.asked = 200, []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    for key in [k for k in __import__("os").environ if k.startswith("DATABRICKS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.0")  # as on Databricks compute
    monkeypatch.setenv("DATABRICKS_HOST", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("DATABRICKS_TOKEN", "job-token")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "none.cfg"))
    yield server
    server.shutdown()
    server.server_close()


def recorded(store) -> dict:
    [entry] = store.pending(10).entries
    return EventEnvelope.from_json(entry.body).metadata.model_dump()


REGISTER = {"type": "RegisterCustomer", "customerId": "c-1", "name": "Ada", "email": "ada@example.com"}


def test_on_databricks_the_job_records_the_principal_it_runs_as(workspace, handler, store):
    result = handle_payload(
        handler, json.dumps({**REGISTER, "metadata": {"userId": "front-end-user"}}), databricks_identity()
    )

    assert result["status"] == "accepted"
    assert workspace.asked == ["Bearer job-token"]
    metadata = recorded(store)
    assert (metadata["userId"], metadata["authenticatedBy"]) == (SERVICE_PRINCIPAL, "databricks")
    assert metadata["claimedUserId"] == "front-end-user"


def test_when_the_workspace_cannot_say_the_os_user_is_recorded_and_the_command_runs(
    workspace, handler, store, caplog
):
    workspace.answer_status = 403

    result = handle_payload(handler, json.dumps(REGISTER), databricks_identity())

    assert result["status"] == "accepted" and workspace.asked == ["Bearer job-token"]
    assert recorded(store)["authenticatedBy"] == "os-user"
    assert "could not ask the workspace who runs this job" in caplog.text
