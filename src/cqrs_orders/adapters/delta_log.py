"""Is a Delta table's transaction log readable? Checked before Spark opens the warehouse's tables.

Why here, in Python, before Spark: Spark meets a damaged commit file inside a task, and logs pages of
Java stack on stderr before any caller can catch the error; deltalake puts a Rust backtrace into its
message. Reading only the commits since the last checkpoint (the only ones a reader replays) keeps the
check cheap, and lets the CLI say in one line which file is damaged and what to do. This is the one
place that turns a damaged log into a :class:`~cqrs_orders.errors.CorruptTableError`.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from cqrs_orders.config import TABLES, Settings
from cqrs_orders.errors import CorruptTableError

logger = logging.getLogger(__name__)

_COMMIT = re.compile(r"^(\d{20})\.json$")


def check_warehouse_tables(settings: Settings) -> None:
    """Check the log of every local Delta table of the warehouse (and of the embedded event log)."""
    tables = {} if settings.catalog else {name: Path(settings.table(name).path) for name in TABLES}
    tables["event_log"] = settings.event_log_path
    for name, path in tables.items():
        check_delta_log(path, name)


def check_delta_log(table: Path, name: str) -> None:
    """Raise :class:`CorruptTableError` when a commit a reader would replay is not valid JSON."""
    log = table / "_delta_log"
    if not log.is_dir():
        return
    since = _last_checkpoint(log, name)
    for commit in sorted(log.iterdir()):
        match = _COMMIT.match(commit.name)
        if match and int(match.group(1)) > since:
            _check_commit(commit, name)


def damaged(name: str, path: Path, detail: str) -> CorruptTableError:
    """The error for a damaged table, with what to do about it (silver and gold can be recomputed)."""
    remedy = "Restore that file from a backup"
    if name.startswith(("silver_", "gold_")):
        remedy += (
            f", or move {path.parent.parent} aside and run `cqrs-orders rebuild` to recompute it from "
            "bronze_events"
        )
    return CorruptTableError(f"The Delta table {name} is damaged: {detail}. {remedy}.")


def _last_checkpoint(log: Path, name: str) -> int:
    pointer = log / "_last_checkpoint"
    if not pointer.exists():
        return -1
    try:
        version = json.loads(pointer.read_text(encoding="utf-8"))["version"]
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise damaged(name, pointer, f"{pointer} cannot be read ({type(error).__name__})") from None
    return int(version)


def _check_commit(commit: Path, name: str) -> None:
    try:
        lines = commit.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise damaged(name, commit, f"{commit} cannot be read ({type(error).__name__})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except (ValueError, RecursionError):
            action = None
        if not isinstance(action, dict):
            logger.debug("damaged commit %s, line %d: %.200r", commit, number, line)
            raise damaged(name, commit, f"{commit} line {number} is not a complete JSON action")
