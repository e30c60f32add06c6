"""Read-side subcommands: ``sql`` (query the warehouse by logical names) and ``report`` (HTML charts)."""

from __future__ import annotations

import logging
from pathlib import Path

from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError, QueryError
from cqrs_orders.exit_codes import ExitCode

log = logging.getLogger(__name__)

#: ``--json``: timestamps as ISO-8601 UTC with microseconds (``...Z``); decimals stay JSON numbers with
#: their exact digits (parse with ``json.loads(line, parse_float=Decimal)`` to keep them exact).
_JSON_OPTIONS = {"ignoreNullFields": "false", "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"}


def register(subcommands, common) -> None:
    """Add this area's subcommands; each sets ``run(args, settings) -> exit code``."""
    sql = subcommands.add_parser(
        "sql",
        parents=[common],
        help="run Spark SQL over the warehouse's tables and views",
        description="Run one Spark SQL query in which the logical names (silver_orders, silver_customers, "
        "bronze_events, ..., vw_order_summary, vw_daily_order_metrics, vw_projection_lag, "
        "vw_projection_lag_hourly) resolve to the warehouse's Delta tables and the shipped views. "
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
        help="rows to print as a table (default 100; --json prints every row)",
    )
    sql.set_defaults(run=run_sql)

    report = subcommands.add_parser(
        "report",
        parents=[common],
        help="write a self-contained HTML page with charts of the read models",
        description="Write one HTML file (no external resources) with daily revenue and order counts, the "
        "order status mix and projection lag over time, read from the warehouse.",
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
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    from cqrs_orders.adapters.delta_log import check_warehouse_tables
    from cqrs_orders.query.guard import check_read_only_query
    from cqrs_orders.query.views import register_views
    from cqrs_orders.spark import get_spark

    check_warehouse_tables(settings)  # a damaged table is named before Spark meets it
    spark = get_spark("cqrs-orders-sql")
    known = register_views(spark, settings)
    try:
        check_read_only_query(spark, args.query)  # before spark.sql, which runs a command at once
        frame = spark.sql(args.query)
        if args.json:
            frame = frame.toDF(*_unique(frame.columns))
            fields = [F.col(f"`{name}`") for name in frame.columns]
            for row in frame.select(F.to_json(F.struct(*fields), _JSON_OPTIONS)).toLocalIterator():
                print(row[0])
        else:
            frame.show(n=args.limit, truncate=False)
    except PySparkException as error:
        raise QueryError(_explain(error, known, settings)) from None
    return ExitCode.OK


def _unique(names: list[str]) -> list[str]:
    """Column names made unique (``id``, ``id_2``) so each row is a JSON object without duplicate keys."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def _explain(error, known: list[str], settings: Settings) -> str:
    message = str(error).strip().splitlines()[0]
    hint = f"Tables and views here: {', '.join(known)}." if known else (
        f"The warehouse {settings.warehouse} has no tables yet: run `cqrs-orders project --once` first."
    )  # fmt: skip
    return f"the query failed: {message}\n{hint}"


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
    from cqrs_orders.adapters.delta_log import check_warehouse_tables
    from cqrs_orders.report.page import collect_report_data, render_report
    from cqrs_orders.spark import get_spark

    check_warehouse_tables(settings)
    spark = get_spark("cqrs-orders-report")
    log.info("reading the read models in %s", settings.warehouse)
    html = render_report(collect_report_data(spark, settings))
    out = Path(args.out)
    out.write_text(html, encoding="utf-8")
    log.info("wrote %s (%d KiB); open it in a browser", out.resolve(), len(html) // 1024 + 1)
    return ExitCode.OK
