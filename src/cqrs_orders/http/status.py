"""The one table from a stable error code to an HTTP status, and the limits of ``POST /commands``.

Callers branch on ``error.code`` in the body (the same codes ``cqrs-orders submit`` prints); the status only
sorts answers for proxies, retries and dashboards. Everything here is shown in the OpenAPI document.
"""

from __future__ import annotations

from cqrs_orders.domain.commands import MAX_COMMAND_BYTES

#: Status of an accepted command (and of a batch, whatever its commands' outcomes).
ACCEPTED = 200

#: HTTP status per error code. A batch (JSON array) always answers 200 with one result per command.
STATUS_BY_CODE: dict[str, int] = {
    "NOT_FOUND": 404,  # the command's aggregate (or GET's order / customer) does not exist
    "ALREADY_EXISTS": 409,  # the aggregate exists, or the commandId was used for another command
    "CONCURRENCY_CONFLICT": 409,  # expectedVersion is stale, or the aggregate kept changing
    "CUSTOMER_ERASED": 409,  # the customer's personal data was erased: nothing more is written for it
    "UNAUTHENTICATED": 401,  # no caller identity where one is required (the app without its proxy's headers)
    "METHOD_NOT_ALLOWED": 405,  # the path takes other methods (the Allow header lists them)
    "PAYLOAD_TOO_LARGE": 413,  # the body is over MAX_BODY_BYTES
    "BATCH_TOO_LARGE": 413,  # the array holds more than MAX_BATCH_COMMANDS commands
    "UNSUPPORTED_MEDIA_TYPE": 415,  # the body is not declared application/json
    "VALIDATION_ERROR": 422,  # not JSON, not an object, a field missing or invalid
    "INVALID_TRANSITION": 422,  # the order's status does not allow the command (e.g. ship a new order)
    "UNKNOWN_COMMAND": 422,  # the 'type' names no command
    "REJECTED": 422,  # any other rejection of a command
    "INTERNAL_ERROR": 500,  # a bug: the server log has the traceback; retry with the same commandId
    "WRITE_STORE_UNAVAILABLE": 503,  # the write store failed and did not write the command; retry later
    "WRITE_OUTCOME_UNKNOWN": 503,  # the store did not confirm the write; retry with the same commandId
    "READ_SIDE_UNAVAILABLE": 503,  # the read models cannot be queried (not projected yet, down, too slow)
}

#: Largest request body, object or array: the command size limit itself, so a batch is no way around it.
MAX_BODY_BYTES = MAX_COMMAND_BYTES

#: Most commands in one JSON array; more answer 413 BATCH_TOO_LARGE and nothing is run.
MAX_BATCH_COMMANDS = 100


#: The body of the answer to a bug (the server log has the traceback; the caller gets no detail of it).
INTERNAL_ERROR_BODY = {
    "error": {"code": "INTERNAL_ERROR", "message": "an unexpected error; the server log has the details"}
}


def status_for(code: str | None) -> int:
    """The status of one command's result: 200 when accepted (no code), else the table's entry."""
    if code is None:
        return ACCEPTED
    return STATUS_BY_CODE.get(code, STATUS_BY_CODE["REJECTED"])


def table_markdown() -> str:
    """The table as Markdown, for the OpenAPI description."""
    rows = [f"| `{code}` | {status} |" for code, status in STATUS_BY_CODE.items()]
    return "\n".join(["| error.code | HTTP status |", "| --- | --- |", *rows])
