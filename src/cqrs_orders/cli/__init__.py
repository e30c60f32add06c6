"""``cqrs-orders``: one command line for the write side, the pipeline and the read side.

Each area registers its own subcommands (``command_side``, ``pipeline``, ``read_side``, ``ops``,
``demo``, ``serve``); every subcommand takes ``--warehouse``. Exit codes: 0 success, 1 a command was
rejected, 2 usage or configuration error (the message says what to do), 3 the lag monitor found a breach,
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from cqrs_orders import __version__
from cqrs_orders.cli import command_side, demo, ops, pipeline, read_side, serve
from cqrs_orders.config import WAREHOUSE_ENV, Settings
from cqrs_orders.errors import CqrsOrdersError

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_LAG_BREACH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--warehouse",
        metavar="DIR",
        help=f"folder holding the write store, event log, Delta tables and checkpoints "
        f"(env {WAREHOUSE_ENV}, default ./warehouse)",
    )
    parser = argparse.ArgumentParser(
        prog="cqrs-orders",
        description="CQRS on the lakehouse: submit commands, relay events, project read models, query them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for area in (command_side, pipeline, read_side, ops, demo, serve):
        area.register(subcommands, common)
    return parser


def run() -> None:
    """The ``cqrs-orders`` console script and the bundle's wheel tasks: exit with :func:`main`'s code.

    Raising ``SystemExit`` (rather than returning the code) is what fails a Databricks wheel task, which
    ignores return values, so a lag breach or a rejected command fails its job run.
    """
    raise SystemExit(main())


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit code (tests call this directly)."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(args.warehouse)
        return int(args.run(args, settings) or EXIT_OK)
    except CqrsOrdersError as error:
        print(f"cqrs-orders {args.subcommand}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"cqrs-orders {args.subcommand}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
