"""Read-side subcommands: ``sql`` (query the warehouse by logical names) and ``report`` (HTML charts).

Both read without Spark, on the engine the HTTP server reads with (:class:`~cqrs_orders.query.delta.
DeltaBackend`, Apache DataFusion over the Delta folders), so a laptop answers without starting a JVM and the
query language is the same in the API, ``sql`` and the views (docs/queries.md). With ``CQRS_CATALOG`` set
(the Databricks edition) they read through the SQL warehouse the server uses, after the same guard has
checked the query against empty tables of the declared schemas. ``create-views`` is Spark's: it creates the
views in Unity Catalog.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path

from cqrs_orders import wiring
from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError, QueryError
from cqrs_orders.exit_codes import ExitCode

log = logging.getLogger(__name__)


def register(subcommands, common) -> None:
    """Add this area's subcommands; each sets ``run(args, settings) -> exit code``."""
    sql = subcommands.add_parser(
        "sql",
        parents=[common],
        help="run one read-only SQL query over the warehouse's tables and views",
        description="Run one SQL query (Apache DataFusion's dialect, docs/queries.md) in which the logical "
        "names (silver_orders, silver_customers, bronze_events, ..., vw_order_summary, "
        "vw_daily_order_metrics, vw_projection_lag, vw_projection_lag_hourly) resolve to the warehouse's "
        "Delta tables and the shipped views, read without Spark; with CQRS_CATALOG set, through the SQL "
        "warehouse (CQRS_SQL_WAREHOUSE_ID). Only reads: writes, DDL, SET, COPY, paths are refused. "
        'Example: cqrs-orders sql "SELECT status, count(*) FROM silver_orders GROUP BY status"',
    )
    sql.add_argument("query", help="the SQL query (quote it)")
    sql.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per row (timestamps ISO-8601 UTC, decimals as exact JSON numbers)",
    )
    sql.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help="rows to print as a table (default 100; a capped table says how many rows there are; --json "
        "prints every row)",
    )
    sql.set_defaults(run=run_sql)

    report = subcommands.add_parser(
        "report",
        parents=[common],
        help="write a self-contained HTML page with charts of the read models",
        description="Write one HTML file (no external resources) with daily revenue and order counts, the "
        "order status mix and projection lag over time, read from the warehouse (without Spark; with "
        "CQRS_CATALOG set, through the SQL warehouse).",
    )
    report.add_argument(
        "--out", default="report.html", metavar="FILE", help="where to write it (default report.html)"
    )
    report.set_defaults(run=run_report)

    views = subcommands.add_parser(
        "create-views",
        parents=[common],
        help="create or replace the Databricks SQL views in the Unity Catalog schema",
        description="Run the shipped view files (sql/databricks) against CQRS_CATALOG.CQRS_SCHEMA, with the "
        "placeholders filled in; views whose tables do not exist yet are skipped. For a bundle job "
        "(python_wheel_task) after deploys; locally `sql` registers the views by itself.",
    )
    views.add_argument(
        "--readers",
        metavar="PRINCIPAL",
        help="also grant this group (user, service principal) SELECT on the views and tables without "
        "personal data (docs/operations.md, 'Who may read what')",
    )
    views.add_argument(
        "--app",
        metavar="PRINCIPAL",
        help="also grant the command API app's service principal SELECT on what its queries read (the "
        "read models, not bronze)",
    )
    views.set_defaults(run=run_create_views)


def run_sql(args, settings: Settings) -> int:
    """Print the rows of one read-only query. Every failure of the engine or the SQL warehouse is a
    :class:`QueryError` (one line that says what to do); anything else is a bug, which the CLI reports in
    one line too (``-v``: the traceback)."""
    if args.limit < 0:
        raise QueryError(f"--limit must be 0 or more, not {args.limit}.")
    if settings.catalog:
        names, chunks = _warehouse_rows(settings, args.query)
    else:
        names, chunks = _local_rows(settings, args.query)
    if args.json:
        for chunk in chunks:
            for row in chunk.rows(chunk.count):
                print(json_line(names, row))
    else:
        shown, total = _first(chunks, args.limit)
        print(text_table(names, shown), end="")
        if total > len(shown):
            print(f"{len(shown):,} of {total:,} rows; use --limit to see more")
    return ExitCode.OK


@dataclass(frozen=True)
class Chunk:
    """Rows of an answer as they arrive (an Arrow batch, or the SQL warehouse's whole answer): counted
    without turning them into Python values, which only the rows shown pay for."""

    count: int
    rows: Callable[[int], list[tuple]]  # the first n rows, as tuples of Python values


def _local_rows(settings: Settings, query: str) -> tuple[list[str], Iterator[Chunk]]:
    """The query's column names and its rows, streamed batch by batch from the warehouse's Delta folders."""
    from cqrs_orders.adapters.delta_log import check_warehouse_tables
    from cqrs_orders.query.guard import first_line

    check_warehouse_tables(settings)  # a damaged table is named in one line before the engine meets it
    backend = wiring.read_backend(settings)
    try:
        planned = backend.plan(query)
    except QueryError as error:
        raise QueryError(_explain(str(error), backend.names(), settings)) from None
    names = _unique(planned.frame.schema().names)

    def tuples(batch, n: int) -> list[tuple]:
        columns = [column.to_pylist() for column in batch.slice(0, n).columns]
        return list(zip(*columns, strict=True))

    def chunks() -> Iterator[Chunk]:
        keep = planned  # the session lives until the last batch is read
        try:
            for batch in keep.frame.execute_stream():
                arrow = batch.to_pyarrow()
                yield Chunk(arrow.num_rows, lambda n, arrow=arrow: tuples(arrow, n))
        except Exception as error:  # DataFusion raises plain exceptions carrying its message
            raise QueryError(f"the query failed: {first_line(error)}") from None

    return names, chunks()


def _warehouse_rows(settings: Settings, query: str) -> tuple[list[str], Iterator[Chunk]]:
    """The Databricks edition: the query checked by the local guard, then run by the SQL warehouse."""
    from databricks.sdk.errors import DatabricksError

    backend = wiring.read_backend(settings)
    check_on_schemas(query)
    try:
        rows = backend.query(query, {})
    except (DatabricksError, OSError) as error:
        detail = str(error).strip().splitlines()
        raise QueryError(
            f"the SQL warehouse {settings.sql_warehouse_id} could not run the query "
            f"({type(error).__name__}: {detail[0] if detail else ''}); check DATABRICKS_HOST and its "
            "credentials, and that the warehouse is running"
        ) from None
    names = list(rows[0]) if rows else []
    answer = [tuple(row.values()) for row in rows]
    return names, iter([Chunk(len(answer), lambda n: answer[:n])])


def check_on_schemas(query: str) -> None:
    """Plan ``query`` with the local guard over empty tables of the declared schemas: what the SQL warehouse
    is sent is one read-only query over the logical names, in the dialect a laptop reads too."""
    from cqrs_orders.query.delta import DeltaBackend

    backend = DeltaBackend.for_schemas(declared_schemas())
    try:
        backend.plan(query)
    except QueryError as error:
        raise QueryError(f"{error} (checked before the SQL warehouse runs it; docs/queries.md)") from None


def declared_schemas() -> dict:
    """Every table's schema as Arrow, from the one place that declares it (the pipeline's)."""
    try:
        from pyspark.sql.pandas.types import to_arrow_schema  # pure Python: no JVM

        from cqrs_orders.pipeline.tables import SCHEMAS
    except ImportError as error:
        raise ConfigurationError(
            f"Checking a query for the SQL warehouse needs the declared table schemas ({error}): install "
            "the `local` extra (pip install 'cqrs-orders[local]')."
        ) from None
    return {name: to_arrow_schema(schema) for name, schema in SCHEMAS.items()}


def _first(chunks: Iterable[Chunk], limit: int) -> tuple[list[tuple], int]:
    """The first ``limit`` rows and how many there are in all (the rest are counted, not converted)."""
    shown, total = [], 0
    for chunk in chunks:
        if len(shown) < limit:
            shown.extend(chunk.rows(limit - len(shown)))
        total += chunk.count
    return shown, total


def _unique(names: list[str]) -> list[str]:
    """Column names made unique (``id``, ``id_2``) so each row is a JSON object without duplicate keys."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def _explain(message: str, known: list[str], settings: Settings) -> str:
    """The engine's message in the warehouse's terms, with what exists when a name is unknown."""
    message = message.replace("datafusion.public.", "")
    if "not found" not in message:
        return message
    hint = f"Tables and views here: {', '.join(known)}." if known else (
        f"The warehouse {settings.warehouse} has no tables yet: run `cqrs-orders project --once` first."
    )  # fmt: skip
    return f"{message.rstrip('.')}. {hint}"


def json_line(names: list[str], row: tuple) -> str:
    """One row as a JSON object: timestamps ISO-8601 UTC with microseconds (``...Z``), decimals as JSON
    numbers with their exact digits (parse with ``json.loads(line, parse_float=Decimal)``)."""
    return (
        "{"
        + ",".join(f"{json.dumps(name)}:{_json(value)}" for name, value in zip(names, row, strict=True))
        + "}"
    )


def _json(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(str(value))
    if isinstance(value, (int, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_json(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(item) for item in value) + "]"
    return json.dumps(_text(value), ensure_ascii=False)


def _text(value) -> str:
    """A value as the table and JSON show it: times in UTC with microseconds, bytes in base64."""
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        moment = value.astimezone(timezone.utc) if value.tzinfo else value
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + ("Z" if value.tzinfo else "")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (dict, list, tuple)):
        return _json(value)
    return str(value)


def text_table(names: list[str], rows: list[tuple]) -> str:
    """Rows as a bordered text table, nothing truncated, values left-aligned."""
    cells = [[_text(value) for value in row] for row in rows]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]
    rule = "+" + "+".join("-" * width for width in widths) + "+\n"

    def line(values: list[str]) -> str:
        return "|" + "|".join(value.ljust(width) for value, width in zip(values, widths, strict=True)) + "|\n"

    return rule + line(names) + rule + "".join(line(row) for row in cells) + rule


def run_create_views(args, settings: Settings) -> int:
    from cqrs_orders.query.views import create_views
    from cqrs_orders.spark import get_spark

    if not settings.catalog:  # say so before starting Spark, which is slow to start
        raise ConfigurationError(
            "create-views needs CQRS_CATALOG and CQRS_SCHEMA (a Unity Catalog schema); locally, "
            "`cqrs-orders sql` registers the views by itself."
        )
    spark = get_spark("cqrs-orders-create-views")
    for name in create_views(spark, settings, readers=args.readers, app=args.app):
        print(name)
    return ExitCode.OK


def run_report(args, settings: Settings) -> int:
    from cqrs_orders.report.page import collect_report_data, render_report

    if not settings.catalog:
        from cqrs_orders.adapters.delta_log import check_warehouse_tables

        check_warehouse_tables(settings)  # a damaged table is named in one line before the engine meets it
    backend = wiring.read_backend(settings)
    # The SQL warehouse knows what exists (a chart whose object is missing stays empty); locally, ask.
    present = None if settings.catalog else set(backend.names())
    log.info("reading the read models in %s", settings.warehouse)
    html = render_report(collect_report_data(backend, settings, present=present))
    out = Path(args.out)
    out.write_text(html, encoding="utf-8")
    log.info("wrote %s (%d KiB); open it in a browser", out.resolve(), len(html) // 1024 + 1)
    return ExitCode.OK
