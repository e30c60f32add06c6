"""``cqrs-orders``: one command line for the write side, the pipeline and the read side.

Each area registers its own subcommands (``command_side``, ``commands_reference``, ``pipeline``,
``quarantine``, ``read_side``, ``ops``, ``demo``, ``serve``); every subcommand takes ``--verbose``/``--quiet``
and an option for each setting a job passes (``--warehouse``, ``--catalog``, ...:
:data:`cqrs_orders.config.SETTINGS`). Exit codes are :class:`~cqrs_orders.exit_codes.ExitCode`. Results go
to stdout; progress and errors are logged to stderr (:mod:`.logs`). No traceback reaches the terminal
unless asked for: a failed run ends with one line saying what to do, and ``-v`` adds the traceback above it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cqrs_orders import __version__
from cqrs_orders.cli import (
    bi_connection,
    command_side,
    commands_reference,
    demo,
    erase,
    logs,
    ops,
    pipeline,
    quarantine,
    read_side,
    serve,
    upgrade,
    write_store,
)
from cqrs_orders.config import SETTINGS, Settings
from cqrs_orders.errors import CqrsOrdersError
from cqrs_orders.exit_codes import ExitCode

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # Every setting with an option (config.SETTINGS); on Databricks the bundle passes them as task
    # parameters (serverless compute has no environment variables). Secrets are never options.
    for setting in SETTINGS:
        if setting.flag:
            common.add_argument(
                setting.flag,
                dest=setting.name,
                metavar=setting.metavar,
                help=f"{setting.help} (env {setting.env})",
            )
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
        epilog="Every setting, its environment variable and its default: docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    areas = (command_side, commands_reference, pipeline, quarantine, read_side, ops, demo, serve, write_store,
             upgrade, bi_connection, erase)  # fmt: skip
    for area in areas:
        area.register(subcommands, common)
    return parser


def setting_overrides(args: argparse.Namespace) -> dict[str, str | None]:
    """The settings given as options, keyed by the environment variable each one overrides."""
    return {setting.env: getattr(args, setting.name, None) for setting in SETTINGS if setting.flag}


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
        settings = Settings.from_env(overrides=setting_overrides(args))
        return int(args.run(args, settings) or ExitCode.OK)
    except CqrsOrdersError as error:
        log.debug("%s failed", args.subcommand, exc_info=True)  # -v: where it was raised
        return _fail(args.subcommand, str(error), ExitCode.USAGE)
    except KeyboardInterrupt:
        return _fail(args.subcommand, "interrupted", ExitCode.INTERRUPTED)
    except Exception as error:  # a bug: the person at the terminal gets what to do, -v the traceback
        log.debug("%s failed unexpectedly", args.subcommand, exc_info=True)
        return _fail(args.subcommand, unexpected(error, args.verbosity > 0), ExitCode.INTERNAL_ERROR)


def unexpected(error: BaseException, traceback_shown: bool) -> str:
    """The one line for an error no ``CqrsOrdersError`` describes: what it was, and what to do about it."""
    first_line = (str(error).splitlines() or [""])[0]
    what = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    where = "the traceback above" if traceback_shown else "run it again with -v for the traceback"
    return f"unexpected error ({what}); this is a bug: {where}, and report it with that traceback"


def _fail(subcommand: str, message: str, code: ExitCode) -> ExitCode:
    """The CLI's last word on a failed run: one plain line on stderr (``cqrs-orders sql: ...``), whatever
    the log level, so a person and a job log both see what went wrong and what to do."""
    print(f"cqrs-orders {subcommand}: {message}", file=sys.stderr, flush=True)
    return code
