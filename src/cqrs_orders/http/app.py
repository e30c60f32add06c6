"""The routes: ``POST /commands``, ``GET /orders/{orderId}``, ``GET /customers/{customerId}/orders``,
``GET /products/{sku}``, ``GET /healthz``, and FastAPI's ``/openapi.json`` (with ``/docs``).

``POST /commands`` is served by :class:`~.command_route.CommandRoute` in front of FastAPI (the hot path,
kept lean) and described in the OpenAPI document here. Commands go to the runner :mod:`.committer` picks for
the store: on SQLite one group per turn of the event loop, committed on the loop (about a millisecond); on
Cosmos DB a thread per request, from the write pool. Read-model queries (and ``/healthz``'s probes) run in
a read pool of their own, each bounded by ``read_timeout`` (503 ``READ_SIDE_UNAVAILABLE`` past it): a
write store that stalls or throttles never holds up a read, nor a slow warehouse a write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cqrs_orders import __version__
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.domain.ids import RULES as ID_RULES
from cqrs_orders.domain.ids import id_problem
from cqrs_orders.errors import CqrsOrdersError, QueryError
from cqrs_orders.http import encoding
from cqrs_orders.http.callers import UNVERIFIED, CallerPolicy
from cqrs_orders.http.command_route import PATH as COMMANDS_PATH
from cqrs_orders.http.command_route import CommandRoute
from cqrs_orders.http.committer import WRITE_TIMEOUT_SECONDS, command_runner
from cqrs_orders.http.status import (
    INTERNAL_ERROR_BODY,
    MAX_BATCH_COMMANDS,
    MAX_BODY_BYTES,
    STATUS_BY_CODE,
    status_for,
    table_markdown,
)
from cqrs_orders.query.api import ReadModels

logger = logging.getLogger(__name__)

JSON = "application/json"
#: Threads of the read pool (read-model queries, health probes).
READ_THREADS = 16
#: A read-model query, at most (seconds; ``CQRS_READ_TIMEOUT_SECONDS``).
READ_TIMEOUT_SECONDS = 30.0

_DESCRIPTION = f"""The command side and the read models of cqrs-orders over HTTP.

`POST /commands` takes one command (a JSON object, answered with one result) or a batch (a JSON array of at
most {MAX_BATCH_COMMANDS} commands, run in order and answered with 200 and an array of results). Results are
those of `cqrs-orders submit`. A retry with the same `commandId` answers the first result. The body, object
or array, is at most {MAX_BODY_BYTES} bytes and must be sent as `application/json`. A refused request writes
nothing. Every error answer has the stable `error.code`; the status follows from it by this table:

{table_markdown()}

The GETs read the read models, which trail the write side (CQRS): `freshness.lastEventTime` is the newest
event they have applied, `freshness.projectedAt` when the projection last wrote them. Money is a decimal
string, times are ISO-8601 UTC. Every key of every answer is camelCase, as in the commands (a read model's
column `total_amount` is `totalAmount`); no key is data. An unexpected failure answers 500 `INTERNAL_ERROR`
and never its detail, which the server log keeps.
"""

_RESULT_SCHEMA = {
    "type": "object",
    "properties": {
        "commandId": {"type": ["string", "null"]},
        "status": {"enum": ["accepted", "rejected"]},
        "aggregateId": {"type": ["string", "null"]},
        "version": {"type": ["integer", "null"]},
        "eventIds": {"type": "array", "items": {"type": "string"}},
        "error": {
            "type": ["object", "null"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
_RESULTS_SCHEMA = {"type": "array", "items": _RESULT_SCHEMA}
#: ``POST /commands`` in the OpenAPI document, but for its body: :func:`_openapi` derives its schema and
#: examples from the command declarations (one command, or an array of them, each told apart by its ``type``).
_COMMANDS_OPENAPI = {"x-status-by-error-code": STATUS_BY_CODE}


def _result_response(description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": _RESULT_SCHEMA}}}


def _codes_by_status() -> dict[int, list[str]]:
    """The error codes ``POST /commands`` can answer, grouped by status (from the one table)."""
    grouped: dict[int, list[str]] = {}
    for code, status in STATUS_BY_CODE.items():
        if code != "READ_SIDE_UNAVAILABLE":  # the GETs' code
            grouped.setdefault(status, []).append(code)
    return grouped


_COMMAND_RESPONSES: dict[int | str, dict] = {
    200: {
        "description": "accepted (one command), or a batch's results (an array, whatever their outcomes)",
        "content": {
            JSON: {"schema": {"oneOf": [_RESULT_SCHEMA, {"type": "array", "items": _RESULT_SCHEMA}]}}
        },
    },
    **{status: _result_response(", ".join(codes)) for status, codes in sorted(_codes_by_status().items())},
}
_READ_RESPONSES: dict[int | str, dict] = {
    404: {"description": "NOT_FOUND: not in the read models (or not projected yet)"},
    422: {"description": "VALIDATION_ERROR: no aggregate can have this id (the message names the rule)"},
    503: {"description": "READ_SIDE_UNAVAILABLE"},
}


def create_app(
    handler: CommandHandler,
    read_models: ReadModels,
    *,
    on_start: Callable[[], None] = lambda: None,
    on_close: Callable[[], None] = lambda: None,
    callers: CallerPolicy = UNVERIFIED,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    write_timeout: float = WRITE_TIMEOUT_SECONDS,
) -> CommandRoute:
    """The ASGI app over one command handler and one set of read models; ``on_start`` runs at startup (in
    the serving process), ``on_close`` at shutdown. ``callers`` says whether a command must name its
    caller; the timeouts bound a read-model query and a request's commands (see the module)."""

    commands = command_runner(handler, write_timeout=write_timeout)
    reads = _ReadPool(read_timeout)

    @asynccontextmanager
    async def lifespan(app):
        on_start()
        yield
        commands.close()
        reads.close()
        on_close()

    app = FastAPI(
        title="cqrs-orders",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,  # a redirect would send `/orders/x/` to another order, `/orders/x`
    )
    app.openapi = partial(_openapi, app)

    @app.exception_handler(QueryError)
    async def read_side_down(request: Request, error: QueryError) -> Response:
        logger.warning("read side: %s", error)
        return _json(status_for(error.code), {"error": {"code": error.code, "message": str(error)}})

    @app.exception_handler(StarletteHTTPException)
    async def no_such_route(request: Request, error: StarletteHTTPException) -> Response:
        code = _ROUTE_ERRORS.get(error.status_code, "REJECTED")
        message = f"no route {request.method} {request.url.path}"
        if error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        elif request.url.path.startswith(("/orders/", "/customers/", "/products/")):
            message += f"; an id {ID_RULES['separator']}"
        return _json(error.status_code, {"error": {"code": code, "message": message}}, error.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return _json(status_for("INTERNAL_ERROR"), INTERNAL_ERROR_BODY)

    @app.get("/orders/{orderId}", summary="One order from the read models", responses=_READ_RESPONSES)
    async def get_order(orderId: str) -> Response:  # the API's field name
        if problem := id_problem(orderId):
            return _invalid_id("orderId", problem)
        order, fresh = await _with_freshness(reads, read_models, read_models.get_order, orderId)
        if order is None:
            return _not_found(f"order {orderId!r} is not in the read models (yet)", fresh)
        return _json(200, {"order": encoding.row(order), "freshness": fresh})

    @app.get(
        "/customers/{customerId}/orders",
        summary="A customer's orders from the read models, oldest first",
        responses=_READ_RESPONSES,
    )
    async def get_orders_of_customer(customerId: str) -> Response:  # the API's field name
        if problem := id_problem(customerId):
            return _invalid_id("customerId", problem)
        orders, fresh = await _with_freshness(reads, read_models, read_models.orders_of_customer, customerId)
        if not orders and await reads.run(read_models.get_customer, customerId) is None:
            return _not_found(f"customer {customerId!r} is not in the read models (yet)", fresh)
        return _json(200, {"customerId": customerId, "orders": encoding.rows(orders), "freshness": fresh})

    @app.get(
        "/products/{sku}",
        summary="A product's sales (orders not cancelled) from the read models, one row per currency",
        responses=_READ_RESPONSES,
    )
    async def get_product_sales(sku: str) -> Response:
        if problem := id_problem(sku):
            return _invalid_id("sku", problem)
        sales, fresh = await _with_freshness(reads, read_models, read_models.product_sales, sku)
        if not sales:
            return _not_found(f"product {sku!r} has no sales in the read models (yet)", fresh)
        return _json(200, {"sku": sku, "sales": encoding.rows(sales), "freshness": fresh})

    @app.get("/healthz", summary="Are the write store and the read models reachable?")
    async def healthz() -> Response:
        checks = await asyncio.gather(
            reads.check("writeStore", lambda: handler.store.load("healthz-probe")),
            reads.check("readModels", read_models.freshness),
        )
        healthy = all(ok for _, ok, _ in checks)
        body = {"status": "ok" if healthy else "unavailable"}
        body.update({name: detail for name, _, detail in checks})
        return _json(200 if healthy else 503, body)

    return CommandRoute(app, commands, callers)  # outermost: the hot route passes through no framework layer


class _ReadPool:
    """The read routes' threads, apart from the write pool, and their time limit."""

    def __init__(self, timeout: float, threads: int = READ_THREADS):
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cqrs-read")

    async def run(self, query: Callable, *args):
        """``query(*args)`` on a read thread; past the limit, ``QueryError`` (503) and the thread is left to
        finish on its own (a read changes nothing)."""
        running = asyncio.get_running_loop().run_in_executor(self.pool, query, *args)
        try:
            return await asyncio.wait_for(running, self.timeout)
        except asyncio.TimeoutError:
            raise QueryError(f"the read models did not answer within {self.timeout:g} s; retry") from None

    async def check(self, name: str, probe: Callable[[], object]) -> tuple[str, bool, str]:
        try:
            return await self.run(_check, name, probe)
        except QueryError:  # past the limit
            logger.warning("healthz: %s gave no answer within %g s", name, self.timeout)
            return name, False, f"unreachable: no answer within {self.timeout:g} s"

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document for its routes, plus ``POST /commands`` (served by :class:`CommandRoute`)."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        from cqrs_orders.domain.commands import json_schemas

        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        declared = json_schemas(ref_template="#/components/schemas/{model}")
        if clash := set(declared) & set(schemas):
            raise RuntimeError(f"the command schemas {sorted(clash)} clash with the routes' schemas")
        schemas.update(declared)
        one = {"$ref": "#/components/schemas/Command"}
        body = {"oneOf": [one, {"type": "array", "maxItems": MAX_BATCH_COMMANDS, "items": one}]}
        operation = {
            "summary": "Run one command (object) or a batch (array)",
            "operationId": "post_commands",
            "responses": {str(status): answer for status, answer in _COMMAND_RESPONSES.items()},
            **_COMMANDS_OPENAPI,
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": body, "examples": _body_examples()}},
            },
        }
        document["paths"] = {COMMANDS_PATH: {"post": operation}, **document["paths"]}
        app.openapi_schema = document
    return app.openapi_schema


def _body_examples() -> dict[str, dict]:
    """Each command's declared example as a body of its own, and as a batch those of the commands that
    create an aggregate, in their order (a customer, then an order of theirs)."""
    from cqrs_orders.domain.commands import COMMANDS

    examples = {
        name: {"summary": f"one {name}", "value": dict(command.example)} for name, command in COMMANDS.items()
    }
    creating = [dict(command.example) for command in COMMANDS.values() if command.creates]
    examples["batch"] = {"summary": "a batch: an array of commands, run in order", "value": creating}
    return examples


async def _with_freshness(reads: _ReadPool, read_models: ReadModels, query, key: str):
    """The query's answer and the read models' freshness, queried side by side."""
    answer, fresh = await asyncio.gather(reads.run(query, key), reads.run(read_models.freshness))
    return answer, encoding.freshness(fresh)


def _check(name: str, probe: Callable[[], object]) -> tuple[str, bool, str]:
    """Any failure means unreachable: an expected one says why (its message is meant for people), any
    other only that the server log has it, as a bug's answer does."""
    try:
        probe()
        return name, True, "ok"
    except CqrsOrdersError as error:
        logger.warning("healthz: %s is unreachable: %s", name, error)
        return name, False, f"unreachable: {error}"
    except Exception:
        logger.exception("healthz: %s failed unexpectedly", name)
        return name, False, "unreachable: an unexpected error; the server log has the details"


def _not_found(message: str, fresh: dict) -> Response:
    return _json(404, {"error": {"code": "NOT_FOUND", "message": message}, "freshness": fresh})


def _invalid_id(field: str, problem: str) -> Response:
    """No aggregate can have this id (the command side refuses it): 422, naming the rule."""
    return _json(422, {"error": {"code": "VALIDATION_ERROR", "message": f"{field}: {problem}"}})


#: The project's error code for the framework's own refusals (a path that no route takes).
_ROUTE_ERRORS = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


def _json(status: int, payload: Any, headers: dict | None = None) -> Response:
    return Response(encoding.to_json(payload), status_code=status, media_type=JSON, headers=headers)
