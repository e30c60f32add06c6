"""Commands: what a caller asks the write side to do (imperative names), each declared in one class.

:mod:`.base` says how a command is declared and read; each other module here declares commands, one
aggregate's (:mod:`.customer`, :mod:`.order`) or a single one. Importing this package imports every module in
it, so a new module's commands are registered in :data:`COMMANDS` with nothing else to edit.
"""

from __future__ import annotations

import importlib
import pkgutil

from cqrs_orders.domain.commands.base import (
    COMMANDS,
    MAX_COMMAND_BYTES,
    Command,
    Decision,
    State,
    decode_command,
    json_schemas,
    one_command,
    validate_command,
)

__all__ = [
    "COMMANDS",
    "MAX_COMMAND_BYTES",
    "Command",
    "Decision",
    "State",
    "decode_command",
    "json_schemas",
    "one_command",
    "validate_command",
]

# Sorted by name (pkgutil lists a directory sorted), so COMMANDS has one order wherever it is read.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
