"""A read-model backend without Spark: the warehouse's Delta folders queried in-process by ``deltalake``.

Why: the HTTP server answers ``GET /orders/...`` in milliseconds on a laptop, and starting a JVM for that
would cost seconds and a gigabyte. ``deltalake`` reads the Delta log itself and runs SQL with Apache
DataFusion (its ``QueryBuilder``), so the statements of :mod:`cqrs_orders.query.api` and the shipped view
files run unchanged: each view a statement reads is inlined as ``WITH <view> AS (<the view's query>)``.

Binding: ``QueryBuilder`` takes SQL text only, with no parameter API. A string is therefore passed as the
hex digits of its UTF-8 bytes, decoded inside the query (``CAST(decode('78', 'hex') AS VARCHAR)``), and a
date as ``DATE 'YYYY-MM-DD'`` from a real ``date``; the SQL text never holds a character of the value
itself, so an id like ``x' OR '1'='1`` is only ever compared, never executed.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any

from cqrs_orders.config import TABLES, Settings
from cqrs_orders.errors import QueryError

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class DeltaBackend:
    """Runs a statement over Delta tables given by logical name -> folder (or object store URI)."""

    def __init__(self, locations: Mapping[str, str]):
        self._locations = dict(locations)
        self._tables: dict[str, Any] = {}  # logical name -> DeltaTable, refreshed before each query
        self._lock = threading.Lock()
        from cqrs_orders.query.views import view_definitions

        self._views = {view.name: view for view in view_definitions()}

    @classmethod
    def for_warehouse(cls, settings: Settings) -> DeltaBackend:
        """The local warehouse's tables (Unity Catalog tables are read through a SQL warehouse instead)."""
        return cls({name: settings.table(name).path for name in TABLES if settings.table(name).path})

    def query(self, statement: str, parameters: Mapping) -> list[dict[str, Any]]:
        rows = self.arrow(statement, parameters).to_pylist()
        return [{key: _utc(value) for key, value in row.items()} for row in rows]

    def arrow(self, statement: str, parameters: Mapping):
        """The answer as a ``pyarrow.Table`` (column types included)."""
        import pyarrow as pa
        from deltalake import QueryBuilder

        sql = self._with_views(_bind(statement, parameters))  # bind first: view bodies hold no placeholders
        builder = QueryBuilder()
        with self._lock:  # one thread at a time refreshes the shared tables and takes their snapshots
            for name in self._tables_read_by(sql):
                builder.register(name, self._current(name))
        try:
            return pa.table(builder.execute(sql).read_all())
        except Exception as error:  # DataFusion raises plain Exceptions with its message
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise QueryError(f"The read-model query failed: {message}") from None

    def _with_views(self, statement: str) -> str:
        """The statement with every view it reads (and the views those read) inlined as a CTE."""
        needed: list[str] = []

        def visit(text: str) -> None:
            for name, view in self._views.items():
                if name not in needed and re.search(rf"\b{name}\b", text):
                    visit(view.select_sql())
                    needed.append(name)

        visit(statement)
        if not needed:
            return statement
        ctes = ",\n".join(f"{name} AS (\n{self._views[name].select_sql()}\n)" for name in needed)
        return f"WITH {ctes}\n{statement}"

    def _tables_read_by(self, sql: str) -> list[str]:
        return [name for name in self._locations if re.search(rf"\b{name}\b", sql)]

    def _current(self, name: str):
        """The table at its newest version: loaded once, then brought up to date incrementally."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            table = self._tables.get(name)
            if table is None:
                table = self._tables[name] = DeltaTable(self._locations[name])
            else:
                table.update_incremental()
            return table
        except TableNotFoundError:
            raise QueryError(
                f"The read model {name} does not exist yet (no Delta table at {self._locations[name]}); "
                "run `cqrs-orders relay` then `cqrs-orders project --once`."
            ) from None
        except OSError as error:
            logger.warning("reading the Delta table %s failed: %s", name, error)
            raise QueryError(f"The read model {name} could not be read: {error}") from None


def _bind(statement: str, parameters: Mapping) -> str:
    def literal(match: re.Match) -> str:
        name = match.group(1)
        if name not in parameters:
            raise QueryError(f"The statement needs a value for :{name}.")
        value = parameters[name].value
        if isinstance(value, date) and not isinstance(value, datetime):
            return f"DATE '{value.isoformat()}'"
        if isinstance(value, str):
            try:
                return f"CAST(decode('{value.encode('utf-8').hex()}', 'hex') AS VARCHAR)"
            except UnicodeEncodeError:
                raise QueryError(f":{name} is not valid Unicode text.") from None
        raise QueryError(f":{name} must be a string or a date, not {type(value).__name__}.")

    return _PLACEHOLDER.sub(literal, statement)


def _utc(value):
    # Arrow's tz-aware timestamps carry a zoneinfo UTC; hand over timezone.utc like the other backends.
    return value.astimezone(timezone.utc) if isinstance(value, datetime) else value
