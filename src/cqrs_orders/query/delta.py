"""The read side without Spark: the warehouse's Delta folders queried in-process by Apache DataFusion.

Why: the HTTP server answers ``GET /orders/...`` and ``cqrs-orders sql`` / ``report`` answer on a laptop
without a JVM, which would cost seconds and a gigabyte per process. ``deltalake`` reads the Delta log itself
and hands each table to DataFusion as a table provider, so the statements of :mod:`cqrs_orders.query.api`,
the shipped view files and a user's ``sql`` query all run on one engine, in one dialect, on one code path
(:meth:`DeltaBackend.frame`), each checked by :mod:`cqrs_orders.query.guard` before it runs.

Each query gets a fresh ``SessionContext`` holding only the warehouse's logical names: the tables it reads,
each at its newest version, and the shipped views over them (registered as DataFusion views, so a plan shows
them by name). Nothing else resolves: no file path, no other catalog, no ``information_schema``.

Binding: a string is passed as the hex digits of its UTF-8 bytes, decoded inside the query
(``CAST(decode('78', 'hex') AS VARCHAR)``), and a date as ``DATE 'YYYY-MM-DD'`` from a real ``date``; the
SQL text never holds a character of the value itself, so an id like ``x' OR '1'='1`` is only ever compared,
never executed.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from cqrs_orders.config import TABLES, Settings
from cqrs_orders.errors import QueryError
from cqrs_orders.query.guard import first_line, plan_read_only

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Planned:
    """A checked query (a DataFusion ``DataFrame``) and the session it was planned in: the Delta tables'
    providers reach their session through DataFusion's FFI, so it must live until the query has run."""

    frame: Any
    session: Any


class DeltaBackend:
    """Runs read-only queries over Delta tables given by logical name -> folder (or object store URI)."""

    def __init__(self, locations: Mapping[str, str], schemas: Mapping[str, Any] | None = None):
        """``schemas`` (logical name -> ``pyarrow.Schema``) stand in for tables without data: a query over
        them is planned and checked like any other, and answers no rows (:meth:`for_schemas`); a name in
        both reads its location while a Delta table is there, and its schema until then. Names beyond
        :data:`~cqrs_orders.config.TABLES` (the lag monitor's event log) resolve like the tables."""
        from cqrs_orders.query.views import view_definitions

        self._locations = dict(locations)
        self._schemas = dict(schemas or {})
        self._tables: dict[str, Any] = {}  # logical name -> DeltaTable, refreshed before each query
        self._lock = threading.Lock()
        self._views = {view.name: view for view in view_definitions()}

    @classmethod
    def for_warehouse(cls, settings: Settings) -> DeltaBackend:
        """The local warehouse's tables (Unity Catalog tables are read through a SQL warehouse instead)."""
        return cls({name: settings.table(name).path for name in TABLES if settings.table(name).path})

    @classmethod
    def for_schemas(cls, schemas: Mapping[str, Any]) -> DeltaBackend:
        """Empty tables of the declared schemas: the Databricks edition checks a query on them before its
        SQL warehouse runs it, so the guard and the dialect are the same as on a laptop."""
        return cls({}, schemas)

    def query(self, statement: str, parameters: Mapping) -> list[dict[str, Any]]:
        return _python_rows(self.arrow(statement, parameters))

    def arrow(self, statement: str, parameters: Mapping):
        """The answer as a ``pyarrow.Table`` (column types included). Every table the statement reads must
        exist: a missing one is a :class:`QueryError` that says what to run."""
        planned = self.plan(_bind(statement, parameters), require_tables=True)  # its session lives on
        return _collect(planned.frame)

    def query_all(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        """The answers to several statements (without parameters), all read from ONE snapshot of each table
        and run side by side (DataFusion runs a query without holding the GIL).

        Why: a monitor's measures are compared with each other (records in the log minus records ingested
        is the backlog); read at different moments they could disagree. One session also loads each
        table's log once instead of once per statement. Each statement is checked by the guard."""
        ctx, names, view_plans = self._session("\n".join(statements), require_tables=True)
        frames = [plan_read_only(ctx, statement, names, view_plans.get) for statement in statements]
        with ThreadPoolExecutor(max_workers=len(frames) or 1, thread_name_prefix="datafusion") as pool:
            return [_python_rows(answer) for answer in pool.map(_collect, frames)]

    def plan(self, query: str, *, require_tables: bool = False) -> Planned:
        """``query`` checked by the guard and planned, not yet run.

        Without ``require_tables`` a table that does not exist yet is left out of the session, so the
        planner names it as unknown (``sql`` then lists what exists: :meth:`names`)."""
        ctx, names, view_plans = self._session(query, require_tables)
        return Planned(plan_read_only(ctx, query, names, view_plans.get), ctx)

    def names(self) -> list[str]:
        """The logical names a query can read here: the tables that exist, then the views over them."""
        with self._lock:
            tables = [name for name in self._candidates() if self._exists(name)]
        return tables + self._views_over(tables)

    def _candidates(self) -> list[str]:
        given = [*self._locations, *(name for name in self._schemas if name not in self._locations)]
        return [name for name in TABLES if name in given] + [name for name in given if name not in TABLES]

    def _session(self, query: str, require_tables: bool):
        """A context with the tables ``query`` names (directly or through views) and the views over them."""
        from datafusion import SessionConfig, SessionContext

        ctx = SessionContext(SessionConfig().with_information_schema(False))
        ctx.register_udf(_get_json_object())
        named = self._named_by(query)
        tables = []
        with self._lock:  # one thread at a time refreshes the shared tables and takes their snapshots
            for name in self._candidates():
                provider = self._provider(name, require_tables) if name in named else None
                if provider is not None:
                    if isinstance(provider, _Empty):
                        ctx.register_record_batches(name, [[provider.batch]])
                    else:
                        ctx.register_table(name, provider)
                    tables.append(name)
        views = [name for name in self._views_over(tables) if name in named]
        view_plans = {}  # name -> the view's indented plan, how a query that reads it shows it
        for name in views:
            try:
                view = ctx.sql(self._views[name].select_sql())
                view_plans[name] = view.logical_plan().display_indent()
                ctx.register_view(name, view)
            except Exception as error:  # DataFusion raises plain exceptions carrying its message
                raise QueryError(
                    f"The shipped view {name} uses SQL this engine cannot plan ({first_line(error)}); read "
                    "its tables instead (docs/queries.md)."
                ) from None
        return ctx, tables + views, view_plans

    def _named_by(self, query: str) -> set[str]:
        """The logical names ``query`` mentions, and those of the views it mentions (recursively)."""
        text, named = query, set()
        changed = True
        while changed:
            changed = False
            for name, view in self._views.items():
                if name not in named and _mentions(text, name):
                    named.add(name)
                    text += "\n" + view.select_sql()
                    changed = True
        return named | {name for name in self._candidates() if _mentions(text, name)}

    def _views_over(self, tables: list[str]) -> list[str]:
        """The shipped views whose sources are all present, in an order where each follows its sources."""
        present, views = set(tables), []
        pending = list(self._views.values())
        while pending:
            ready = [view for view in pending if set(view.sources) <= present]
            if not ready:
                break
            for view in ready:
                present.add(view.name)
                views.append(view.name)
                pending.remove(view)
        return views

    def _exists(self, name: str) -> bool:
        try:
            return self._provider(name, require=False) is not None
        except QueryError:
            return False

    def _provider(self, name: str, require: bool):
        """The table for the session: a DeltaTable at its newest version, or an empty Arrow table of its
        declared schema; ``None`` when it does not exist (unless ``require``)."""
        if name not in self._locations:
            return self._empty(name)
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
            self._tables.pop(name, None)
            if name in self._schemas:
                return self._empty(name)
            if not require:
                return None
            raise QueryError(
                f"The read model {name} does not exist yet (no Delta table at {self._locations[name]}); "
                "run `cqrs-orders relay` then `cqrs-orders project --once`."
            ) from None
        except OSError as error:
            logger.warning("reading the Delta table %s failed: %s", name, error)
            raise QueryError(f"The read model {name} could not be read: {error}") from None

    def _empty(self, name: str) -> _Empty:
        import pyarrow as pa

        return _Empty(pa.RecordBatch.from_pylist([], schema=self._schemas[name]))


def _collect(frame):
    try:
        return frame.to_arrow_table()
    except Exception as error:  # DataFusion raises plain exceptions carrying its message
        raise QueryError(f"The read-model query failed: {first_line(error)}") from None


def _python_rows(answer) -> list[dict[str, Any]]:
    return [{key: utc(value) for key, value in row.items()} for row in answer.to_pylist()]


@dataclass(frozen=True)
class _Empty:
    """A table without rows, registered as one empty batch: a dataset without fragments has no partitions,
    which DataFusion's plan checker refuses under a sort (``ORDER BY ... LIMIT``)."""

    batch: Any


@functools.cache
def _get_json_object():
    """Spark's ``get_json_object(json, '$.field')``, which DataFusion lacks, for the SQL both engines run
    (:mod:`.quarantine`): a top-level field's value, a string as its text and anything else as JSON; null
    for a missing field, a JSON null or a text that is not a JSON object. Only ``$.field`` paths."""
    import pyarrow as pa
    from datafusion import udf

    def get(texts, paths):
        values = []
        for text, path in zip(texts.to_pylist(), paths.to_pylist(), strict=True):
            if path is None or not path.startswith("$.") or "." in path[2:] or "[" in path:
                raise ValueError(f"get_json_object here takes only a '$.field' path, not {path!r}")
            try:
                parsed = json.loads(text) if text is not None else None
            except ValueError:
                parsed = None
            value = parsed.get(path[2:]) if isinstance(parsed, dict) else None
            values.append(value if value is None or isinstance(value, str) else _json_text(value))
        return pa.array(values, pa.string())

    return udf(get, [pa.string(), pa.string()], pa.string(), "immutable", name="get_json_object")


def _json_text(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"\b{name}\b", text, re.IGNORECASE) is not None


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


def utc(value):
    """Arrow's tz-aware timestamps carry a zoneinfo UTC; hand over ``timezone.utc`` like the other
    backends."""
    return value.astimezone(timezone.utc) if isinstance(value, datetime) else value
