"""``cqrs-orders bi-connection``: write the Power BI connection file (``.pbids``) of a deployment.

Analysts open the file in Power BI Desktop and land on the deployment's read models, signed in as
themselves, instead of copying a host name, an http path and a schema from three pages. The SQL warehouse
comes from the settings the bundle already passes (``CQRS_SQL_WAREHOUSE_ID``, ``--catalog``,
``--schema``) or from flags; the workspace host is a flag, as ``databricks bundle validate`` shows it. With
``--to synapse`` the file opens the Synapse serverless endpoint instead (the views without personal data).
The file holds no secret. The format: :mod:`.pbids`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cqrs_orders.cli import pbids
from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.exit_codes import ExitCode

logger = logging.getLogger(__name__)


def register(subcommands, common) -> None:
    """Add ``bi-connection``; it sets ``run(args, settings) -> exit code``."""
    parser = subcommands.add_parser(
        "bi-connection",
        parents=[common],
        help="write a Power BI connection file (.pbids) for the SQL warehouse or Synapse serverless",
        description="Write a Power BI Desktop connection file (.pbids: JSON, one connection, no "
        "credentials) that opens the deployment's read models. Example: cqrs-orders bi-connection "
        "--server-hostname adb-1234567890123456.7.azuredatabricks.net --warehouse-id 1234567890abcdef "
        "--catalog main --schema cqrs_orders --out cqrs-orders.pbids",
    )
    parser.add_argument(
        "--to",
        choices=("databricks", "synapse"),
        default="databricks",
        help="the endpoint: the Databricks SQL warehouse (default) or the Synapse serverless SQL endpoint",
    )
    parser.add_argument(
        "--server-hostname",
        metavar="HOST",
        help="the workspace's host name (or URL), e.g. adb-1234567890123456.7.azuredatabricks.net",
    )
    parser.add_argument(
        "--warehouse-id",
        metavar="ID",
        help="the SQL warehouse's id (default: the setting CQRS_SQL_WAREHOUSE_ID)",
    )
    parser.add_argument(
        "--http-path",
        metavar="PATH",
        help="the warehouse's http path instead of its id: /sql/1.0/warehouses/<id>",
    )
    parser.add_argument(
        "--synapse-endpoint",
        metavar="HOST",
        help="with --to synapse: the serverless SQL endpoint, <workspace>-ondemand.sql.azuresynapse.net",
    )
    parser.add_argument(
        "--synapse-database",
        metavar="NAME",
        help="with --to synapse: the database holding the views (the one sql/synapse/deploy.sh -d names)",
    )
    parser.add_argument(
        "--mode",
        choices=pbids.MODES,
        default="DirectQuery",
        help="Power BI's storage mode (default DirectQuery: queries read the read models as they are now)",
    )
    parser.add_argument(
        "--out", metavar="FILE", help="write the file here (it should end in .pbids); default: print it"
    )
    parser.set_defaults(run=run_bi_connection)


def connection(args, settings: Settings) -> dict:
    """The ``.pbids`` document the arguments and settings describe (errors name the missing value)."""
    if args.to == "synapse":
        server = pbids.host_name(
            args.synapse_endpoint, "Synapse serverless endpoint", "<workspace>-ondemand.sql.azuresynapse.net"
        )
        return pbids.synapse_serverless(server, args.synapse_database, args.mode)
    host = pbids.host_name(
        args.server_hostname,
        "--server-hostname (the workspace host)",
        "adb-<workspace-id>.<n>.azuredatabricks.net",
    )
    http_path = pbids.warehouse_http_path(args.warehouse_id or settings.sql_warehouse_id, args.http_path)
    return pbids.databricks_sql(host, http_path, settings.catalog, settings.schema, args.mode)


def run_bi_connection(args, settings: Settings) -> ExitCode:
    text = pbids.render(connection(args, settings))
    if not args.out:
        print(text, end="")
        return ExitCode.OK
    out = Path(args.out)
    if out.suffix != ".pbids":
        raise ConfigurationError(f"--out {out}: Power BI Desktop opens only files ending in .pbids")
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot write {out}: {error.strerror or error}") from None
    logger.info("wrote %s (%s, open it in Power BI Desktop)", out, args.to)
    return ExitCode.OK
