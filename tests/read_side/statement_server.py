"""A local stand-in for the Databricks SQL statement execution API, shared by the read-side and HTTP tests.

It speaks the wire protocol the databricks-sdk uses (POST /api/2.0/sql/statements, GET
/api/2.0/sql/statements/{id}, JSON_ARRAY results with a manifest) on 127.0.0.1, and answers each statement
by handing it, with its received parameters, to an *engine*: ``engine(statement, args) -> (columns, rows)``
with ``columns`` as ``(name, type_name, type_text)`` and ``args`` as ``{name: python value}`` (DATE
parameters as ``date``). An engine raises :class:`StatementFailed` for a statement the warehouse would fail.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

Columns = list[tuple[str, str, str]]
Engine = Callable[[str, dict], tuple[Columns, list[list]]]


class StatementFailed(Exception):
    """The statement failed; the message is the warehouse's."""


def cell(value) -> str | None:
    """A value as the warehouse's JSON_ARRAY format writes it (always a string)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def bound(parameter: dict):
    value, kind = parameter.get("value"), parameter.get("type", "STRING")
    return date.fromisoformat(value) if kind == "DATE" and value is not None else value


class StatementServer(ThreadingHTTPServer):
    def __init__(self, engine: Engine):
        super().__init__(("127.0.0.1", 0), _StatementHandler)
        self.engine = engine
        self.requests: list[dict] = []
        self.defer = False  # answer PENDING first, so the client must poll
        self.finished: dict[str, dict] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> StatementServer:
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def execute(self, body: dict) -> dict:
        statement_id = f"stmt-{len(self.requests)}"
        args = {parameter["name"]: bound(parameter) for parameter in body.get("parameters", [])}
        try:
            columns, rows = self.engine(body["statement"], args)
        except StatementFailed as error:
            return {
                "statement_id": statement_id,
                "status": {"state": "FAILED", "error": {"message": str(error)}},
            }
        schema = [
            {"name": name, "position": position, "type_name": type_name, "type_text": type_text}
            for position, (name, type_name, type_text) in enumerate(columns)
        ]
        return {
            "statement_id": statement_id,
            "status": {"state": "SUCCEEDED"},
            "manifest": {
                "format": "JSON_ARRAY",
                "schema": {"column_count": len(schema), "columns": schema},
                "total_row_count": len(rows),
                "total_chunk_count": 1,
            },
            "result": {
                "chunk_index": 0,
                "row_offset": 0,
                "row_count": len(rows),
                "data_array": [[cell(value) for value in row] for row in rows],
            },
        }


class _StatementHandler(BaseHTTPRequestHandler):
    server: StatementServer

    def do_POST(self):
        if self.path.rstrip("/") != "/api/2.0/sql/statements":
            return self._reply(404, {"error_code": "NOT_FOUND", "message": self.path})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body["authorization"] = self.headers.get("Authorization")
        self.server.requests.append(body)
        response = self.server.execute(body)
        if self.server.defer:
            self.server.finished[response["statement_id"]] = response
            response = {"statement_id": response["statement_id"], "status": {"state": "PENDING"}}
        self._reply(200, response)

    def do_GET(self):
        statement_id = self.path.rstrip("/").rsplit("/", 1)[-1]
        if statement_id not in self.server.finished:
            return self._reply(404, {"error_code": "NOT_FOUND", "message": statement_id})
        self._reply(200, self.server.finished[statement_id])

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep the test output clean
        pass


# --- an engine without Spark: the project's Delta backend over a warehouse's table folders -------------
def _type_name(data_type) -> str:
    import pyarrow as pa

    checks = (
        (lambda t: pa.types.is_string(t) or pa.types.is_string_view(t), "STRING"),
        (pa.types.is_int64, "LONG"), (pa.types.is_int32, "INT"), (pa.types.is_decimal, "DECIMAL"),
        (pa.types.is_date32, "DATE"), (pa.types.is_timestamp, "TIMESTAMP"), (pa.types.is_float64, "DOUBLE"),
        (pa.types.is_boolean, "BOOLEAN"),
    )  # fmt: skip
    return next(name for check, name in checks if check(data_type))


def delta_engine(warehouse: Path, failing: dict | None = None) -> Engine:
    """Answers each statement with the Delta backend over ``warehouse``; ``failing["now"]`` fails them."""
    from datetime import date

    from cqrs_orders.config import Settings
    from cqrs_orders.errors import QueryError
    from cqrs_orders.query.api import Parameter
    from cqrs_orders.query.delta import DeltaBackend

    backend = DeltaBackend.for_warehouse(Settings.from_env(warehouse, env={}))

    def run(statement: str, args: dict):
        if (failing or {}).get("now"):
            raise StatementFailed("[WAREHOUSE_STOPPED] the warehouse is stopped")
        parameters = {
            name: Parameter(value, "DATE" if isinstance(value, date) else "STRING")
            for name, value in args.items()
        }
        try:
            table = backend.arrow(statement, parameters)
        except QueryError as error:
            raise StatementFailed(str(error)) from None
        columns = [(field.name, _type_name(field.type), str(field.type).upper()) for field in table.schema]
        return columns, [list(row.values()) for row in table.to_pylist()]

    return run
