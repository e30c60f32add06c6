"""``serve``: the HTTP command and query API (:mod:`cqrs_orders.http`) under uvicorn.

Binds 127.0.0.1 by default: on a laptop the API is for this machine only. A Databricks App runs it with
``--host 0.0.0.0`` behind the platform's authenticating proxy, on the port it gives in ``DATABRICKS_APP_PORT``
(``Settings.app_port``).
"""

from __future__ import annotations

import dataclasses

from cqrs_orders.config import PLAIN, Settings
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.exit_codes import ExitCode

PORT = PLAIN["app_port"]  # its variable (Databricks Apps set it) and default


def register(subcommands, common) -> None:
    """Add this area's subcommands; each sets ``run(args, settings) -> exit code``."""
    serve = subcommands.add_parser(
        "serve",
        parents=[common],
        help="serve the HTTP API: POST /commands, GET /orders/{id}, GET /customers/{id}/orders, /healthz",
        description="Run the HTTP API until interrupted: commands through the same handler as `submit`, "
        "the read models read from the warehouse's Delta tables (no Spark), or from a Databricks SQL "
        "warehouse when CQRS_SQL_WAREHOUSE_ID is set. The OpenAPI document is at /openapi.json (/docs).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, metavar="P", help=f"port (default: env {PORT.env} if set, else {PORT.default})"
    )
    serve.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    serve.add_argument(
        "--relay",
        action="store_true",
        help="also publish the outbox from this process: a following relay that holds the outbox lease, "
        "or stands by while another relay holds it (env CQRS_RELAY=follow)",
    )
    serve.set_defaults(run=run_serve)


def run_serve(args, settings: Settings) -> int:
    import uvicorn

    from cqrs_orders.cli import logs
    from cqrs_orders.http.wiring import app_for

    logs.configure(getattr(args, "verbosity", 0), tracebacks=True)  # a server's log keeps the details
    port = args.port if args.port is not None else settings.app_port
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"--port {port} is not a TCP port (0-65535).")
    if args.relay:
        settings = dataclasses.replace(settings, relay="follow")
    app = app_for(settings)
    # uvicorn's own lines follow -v/-q like ours (the CLI configured the cqrs_orders loggers already)
    level = {-1: "warning", 0: "info", 1: "debug"}[getattr(args, "verbosity", 0)]
    # No X-Forwarded-* rewriting and no Server header: the API uses neither the client's address nor its
    # scheme, and each is work on every request of the hot route (benchmarks/RESULTS.md).
    uvicorn.run(
        app,
        host=args.host,
        port=port,
        access_log=args.access_log,
        log_level=level,
        proxy_headers=False,
        server_header=False,
    )
    return ExitCode.OK
