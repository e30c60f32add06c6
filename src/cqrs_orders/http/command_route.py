"""``POST /commands`` as a plain ASGI route: the API's hot path, served without the framework's per-request
machinery.

Every command costs the server its handler's work plus the HTTP around it, and FastAPI's routing,
dependency resolution and response classes are a share of that cost comparable to the handler's. So this
route reads the body, checks the framing (:mod:`.intake`), hands the commands to the command runner
(:mod:`.committer`) and writes the JSON answer, nothing else. It wraps the FastAPI app,
which serves every other route, the OpenAPI document (where this operation is described, :mod:`.app`) and
the lifespan.

Each request's caller comes from the identity headers the Databricks Apps proxy sets (:mod:`.callers`),
read before the body: a request that must name a caller and does not is refused (401) unread.
"""

from __future__ import annotations

import logging

from cqrs_orders.application.handler import CommandResult
from cqrs_orders.errors import CommandRejected, WriteStoreError
from cqrs_orders.http import encoding, intake
from cqrs_orders.http.callers import UNVERIFIED, CallerPolicy
from cqrs_orders.http.committer import Committer, ThreadPerRequest
from cqrs_orders.http.status import ACCEPTED, INTERNAL_ERROR_BODY, MAX_BODY_BYTES, status_for

logger = logging.getLogger(__name__)

PATH = "/commands"
_JSON_HEADERS = [(b"content-type", b"application/json")]


class CommandRoute:
    """The outermost ASGI app: answers ``POST /commands`` (405 for other methods there); anything else goes on
    to ``app``."""

    def __init__(self, app, committer: Committer | ThreadPerRequest, callers: CallerPolicy = UNVERIFIED):
        self.app = app
        self.committer = committer
        self.callers = callers

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            refusal = {"code": "METHOD_NOT_ALLOWED", "message": f"{scope['method']} is not allowed on {PATH}"}
            body = encoding.to_json({"error": refusal})
            await _answer(send, 405, body, [(b"allow", b"POST")])
            return
        try:
            status, body = await self._post(scope, receive)
        except _Disconnected:  # nothing to answer, and nothing was run
            return
        except CommandRejected as refused:  # the caller or the framing: nothing was run
            status, body = status_for(refused.code), _json(CommandResult.rejected(None, None, refused))
        except Exception:  # a bug: the log has the traceback, the caller a stable code
            logger.exception("unexpected error on POST %s", PATH)
            status, body = status_for("INTERNAL_ERROR"), encoding.to_json(INTERNAL_ERROR_BODY)
        await _answer(send, status, body)

    async def _post(self, scope, receive) -> tuple[int, bytes]:
        headers = dict(scope["headers"])
        caller = self.callers.caller_of(headers)
        intake.check_media_type(_text(headers.get(b"content-type")))
        intake.check_declared_size(_text(headers.get(b"content-length")))
        commands = intake.split(await _body(receive))
        try:
            results = await self.committer.run(commands.raw, caller)
        except WriteStoreError as unavailable:  # the server is shutting down: nothing was run
            handler = self.committer.handler
            results = [handler.not_run(raw, str(unavailable)) for raw in commands.raw]
        if commands.batch:
            return ACCEPTED, f"[{','.join(result.to_json() for result in results)}]".encode()
        error = results[0].error
        return status_for(error["code"] if error else None), _json(results[0])


def _json(result: CommandResult) -> bytes:
    return result.to_json().encode()


async def _body(receive) -> bytes:
    """The body, up to :data:`MAX_BODY_BYTES`; a larger one is refused without being held whole."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise intake.too_large(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Disconnected(Exception):
    """The client went away before its body arrived."""


async def _answer(send, status: int, body: bytes, extra_headers: list | None = None) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra_headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
