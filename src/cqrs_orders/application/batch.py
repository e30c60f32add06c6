"""One command or a batch of them, as one payload: what the command-ingest job (and any endpoint) receives.

A job run costs seconds even on serverless compute, so a caller with many commands sends them as one JSON
array and gets one result per command, in order; a single JSON object still gets a single result. The
payload is decoded by the one strict JSON intake (:mod:`~cqrs_orders.domain.strict_json`), as an HTTP body
is. Each command goes through the handler on its own: one rejection does not stop the others.

After handling, the job tries one drain of the outbox (:func:`publish_pending`): it publishes when it gets
the outbox lease, and otherwise says which relay holds it (the command API's, which publishes them).

The events record who ran the job: the Databricks principal it runs as (asked of the workspace with the
runtime's credentials, :mod:`cqrs_orders.adapters.workspace_identity`), marked ``authenticatedBy:
databricks``. Who triggered the run is
the Jobs API's to say (the run's creator); the job's parameters are not evidence of anyone.
"""

from __future__ import annotations

from typing import Any

from cqrs_orders.application.handler import CommandResult
from cqrs_orders.application.identity import Caller
from cqrs_orders.application.relay import Relay
from cqrs_orders.domain import strict_json
from cqrs_orders.domain.commands import MAX_COMMAND_BYTES, one_command
from cqrs_orders.errors import PublishError, RelayBusy, ValidationError, WriteStoreError

#: Commands per batch. The Jobs API caps a run's job parameters (the command JSON) well below this times
#: the per-command limit anyway; the cap keeps one run's duration bounded.
MAX_BATCH_COMMANDS = 1000
#: The largest payload: room for a full batch of ordinary commands, each far under the per-command limit.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


def handle_payload(handler, payload: str | bytes, caller: Caller) -> dict[str, Any] | list[dict[str, Any]]:
    """The result of a JSON object, or the list of results of a JSON array (``handler``: a CommandHandler).
    ``caller``: who the events record, as the entry point established it."""
    try:
        decoded = strict_json.decode(payload, max_bytes=MAX_PAYLOAD_BYTES)
    except ValidationError as refused:  # not one command run: the payload's one answer says why
        return CommandResult.rejected(None, None, refused).to_dict()
    if isinstance(decoded, list) and (not decoded or len(decoded) > MAX_BATCH_COMMANDS):
        return [_batch_size_rejection(len(decoded))]
    if not isinstance(decoded, list):
        return handler.handle(one_command(decoded), caller).to_dict()
    return [handler.handle(one_command(item), caller).to_dict() for item in decoded]


def publish_pending(relay: Relay) -> dict[str, Any]:
    """One drain under the outbox lease, reported as ``{"published": n, "publishedBy": who, "note": text}``.

    ``publishedBy`` is this relay when it held the lease, else the holder (which publishes the events: the
    command API's relay in the bundle). A bus or store that fails leaves the events in the outbox for the
    next drain and is reported, not raised: the commands themselves were handled, and their results stand.
    """
    try:
        published = relay.drain()
    except RelayBusy as busy:
        return {"published": 0, "publishedBy": busy.holder, "note": f"not published by this run: {busy}"}
    except (PublishError, WriteStoreError) as error:
        note = f"not published yet: {error}; the events stay in the outbox for the next relay"
        return {"published": 0, "publishedBy": None, "note": note}
    return {"published": published, "publishedBy": relay.who, "note": f"published {published} events"}


def _batch_size_rejection(size: int) -> dict[str, Any]:
    return {
        "commandId": None,
        "status": "rejected",
        "aggregateId": None,
        "version": None,
        "eventIds": [],
        "error": {
            "code": "VALIDATION_ERROR",
            "message": f"a batch holds 1 to {MAX_BATCH_COMMANDS} commands (each up to "
            f"{MAX_COMMAND_BYTES} bytes), not {size}",
        },
    }
