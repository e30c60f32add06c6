"""``cqrs-orders``: one command line for the write side, the pipeline and the read side.

Each area registers its own subcommands (``command_side``, ``pipeline``, ``quarantine``, ``read_side``,
``ops``, ``demo``, ``serve``); every subcommand takes ``--warehouse``, ``--verbose``/``--quiet`` and the
settings options below. Exit codes are :class:`~cqrs_orders.exit_codes.ExitCode`. Results go to stdout;
progress and errors are logged to stderr (:mod:`.logs`).
"""

from __future__ import annotations

import argparse
import sys

from cqrs_orders import __version__
from cqrs_orders.cli import (
    command_side,
    demo,
    logs,
    ops,
    pipeline,
    quarantine,
    read_side,
    serve,
    write_store,
)
from cqrs_orders.config import WAREHOUSE_ENV, Settings
from cqrs_orders.errors import CqrsOrdersError
from cqrs_orders.exit_codes import ExitCode

#: Settings every subcommand takes as options, each overriding its environment variable. On Databricks the
#: bundle passes them as task parameters (serverless compute has no environment variables); secrets are
#: never options: they come from the environment or the secret scope named by ``--secret-scope``.
SETTING_OPTIONS = (
    ("--catalog", "CQRS_CATALOG", "Unity Catalog catalog of the tables (with --schema)"),
    ("--schema", "CQRS_SCHEMA", "Unity Catalog schema of the tables (with --catalog)"),
    ("--checkpoint-root", "CQRS_CHECKPOINT_ROOT", "folder (or volume path) of the streaming checkpoints"),
    ("--write-store", "CQRS_WRITE_STORE", "sqlite | cosmos"),
    ("--publisher", "CQRS_PUBLISHER", "event_log | eventhubs"),
    ("--source", "CQRS_SOURCE", "event_log | kafka"),
    ("--cosmos-endpoint", "COSMOS_ENDPOINT", "Cosmos DB account endpoint URL"),
    ("--cosmos-database", "COSMOS_DATABASE", "Cosmos DB database of the write store"),
    ("--eventhub-name", "EVENTHUB_NAME", "the event hub (Kafka topic) carrying the events"),
    ("--kafka-bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "a plaintext broker instead of Event Hubs"),
    ("--secret-scope", "CQRS_SECRET_SCOPE", "Databricks secret scope holding the secrets"),
    ("--max-records-per-batch", "CQRS_MAX_RECORDS_PER_BATCH", "most bus records one micro-batch reads"),
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--warehouse",
        metavar="DIR",
        help=f"folder holding the write store, event log, Delta tables and checkpoints "
        f"(env {WAREHOUSE_ENV}, default ./warehouse)",
    )
    for flag, env_name, text in SETTING_OPTIONS:
        common.add_argument(flag, metavar="VALUE", help=f"{text} (env {env_name})")
    loudness = common.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v", "--verbose", dest="verbosity", action="store_const", const=1, default=0,
        help="also log debug lines, with the logger names",
    )  # fmt: skip
    loudness.add_argument(
        "-q", "--quiet", dest="verbosity", action="store_const", const=-1, help="log warnings and errors only"
    )
    parser = argparse.ArgumentParser(
        prog="cqrs-orders",
        description="CQRS on the lakehouse: submit commands, relay events, project read models, query them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for area in (command_side, pipeline, quarantine, read_side, ops, demo, serve, write_store):
        area.register(subcommands, common)
    return parser


def setting_overrides(args: argparse.Namespace) -> dict[str, str | None]:
    """The settings given as options, keyed by the environment variable each one overrides."""
    return {env: getattr(args, flag[2:].replace("-", "_"), None) for flag, env, _ in SETTING_OPTIONS}


def run() -> None:
    """The ``cqrs-orders`` console script and the bundle's wheel tasks: exit with :func:`main`'s code.

    Raising ``SystemExit`` (rather than returning the code) is what fails a Databricks wheel task, which
    ignores return values, so a lag breach or a rejected command fails its job run.
    """
    raise SystemExit(main())


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit code (tests call this directly)."""
    args = build_parser().parse_args(argv)
    logs.configure(args.verbosity)
    try:
        settings = Settings.from_env(args.warehouse, overrides=setting_overrides(args))
        return int(args.run(args, settings) or ExitCode.OK)
    except CqrsOrdersError as error:
        return _fail(args.subcommand, str(error), ExitCode.USAGE)
    except KeyboardInterrupt:
        return _fail(args.subcommand, "interrupted", ExitCode.INTERRUPTED)


def _fail(subcommand: str, message: str, code: ExitCode) -> ExitCode:
    """The CLI's last word on a failed run: one plain line on stderr (``cqrs-orders sql: ...``), whatever
    the log level, so a person and a job log both see what went wrong and what to do."""
    print(f"cqrs-orders {subcommand}: {message}", file=sys.stderr, flush=True)
    return code
