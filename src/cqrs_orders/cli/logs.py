"""Logging for the command line, configured once: what the operator is told goes to stderr.

Modules log through ``logging.getLogger(__name__)`` and never configure logging themselves; the CLI calls
:func:`configure` once per run. Results (JSON lines, tables, query rows) are the CLI's output and go to
stdout, so ``cqrs-orders submit ... | jq`` sees only results, while a Databricks job's driver log keeps the
levelled, timestamped progress lines.
"""

from __future__ import annotations

import logging
import sys

#: ``--quiet`` shows warnings and errors only; ``--verbose`` adds debug lines and the logger names.
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
_HANDLER_NAME = "cqrs-orders-cli"


class _OneLine(logging.Formatter):
    """Leaves tracebacks out: a terminal gets one line that says what happened (``-v`` shows them)."""

    def formatException(self, exc_info) -> str:
        kind, error = exc_info[0].__name__, str(exc_info[1]).splitlines()[:1]
        return f"  ({kind}: {error[0] if error else ''}; run with -v for the traceback)"


def configure(verbosity: int = 0, *, tracebacks: bool = False) -> None:
    """Send the ``cqrs_orders`` loggers to stderr at the level ``verbosity`` asks for (idempotent).
    Tracebacks are printed with ``-v``, or always when ``tracebacks`` (a server's log)."""
    level = LEVELS[max(-1, min(1, verbosity))]
    root = logging.getLogger("cqrs_orders")
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    detail = " %(name)s" if level <= logging.DEBUG else ""
    formatter = logging.Formatter if tracebacks or level <= logging.DEBUG else _OneLine
    handler.setFormatter(formatter(f"%(asctime)s %(levelname)s{detail}: %(message)s", datefmt="%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False  # a host application's root handler must not print every line twice
