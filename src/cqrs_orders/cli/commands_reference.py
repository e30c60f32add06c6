"""``commands``: what the write side takes, from the command declarations themselves.

Without arguments it lists every command type, what it does and the fields it cannot do without; with
``--json TYPE`` it prints that command's JSON Schema, the one ``/openapi.json`` carries for it (its
references under ``$defs``), for a client or an editor to validate against. Both come from
:mod:`cqrs_orders.domain.command_reference`, as ``docs/commands.md`` does, so none of them can say
something the handler does not do.
"""

from __future__ import annotations

import json
import sys

from cqrs_orders.config import Settings
from cqrs_orders.exit_codes import ExitCode


def register(subcommands, common) -> None:
    """Add ``commands``; it sets ``run(args, settings) -> exit code``."""
    commands = subcommands.add_parser(
        "commands",
        parents=[common],
        help="list the command types submit and POST /commands take, or print one's JSON Schema",
        description="List every command type (its name, what it does, its required fields besides "
        "'type'), or with --json TYPE print that command's JSON Schema: the one the HTTP API's "
        "/openapi.json has for it, with the schemas it refers to under $defs. Every field, rule and "
        "example: docs/commands.md.",
    )
    commands.add_argument(
        "--json", metavar="TYPE", dest="type", help="print the JSON Schema of command TYPE (e.g. CreateOrder)"
    )
    commands.set_defaults(run=run_commands)


def run_commands(args, settings: Settings) -> int:
    from cqrs_orders.domain import command_reference

    if args.type is not None:
        sys.stdout.write(json.dumps(command_reference.schema(args.type), indent=2) + "\n")
        return ExitCode.OK
    rows = [(s.type, ", ".join(s.required) or "-", s.description) for s in command_reference.summaries()]
    rows.insert(0, ("TYPE", "REQUIRED", "DESCRIPTION"))
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    lines = [f"{kind:<{widths[0]}}  {required:<{widths[1]}}  {about}" for kind, required, about in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    return ExitCode.OK
