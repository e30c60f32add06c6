"""``cqrs-orders upgrade``: convert what an older cqrs-orders left in a warehouse, once.

The run path (``submit``, ``serve``, ``relay``, ``project``, ``create-views``) knows only today's layout
and refuses an older one with a message naming this command; everything known about older layouts lives
here, so no run carries it. Each conversion is made only when its old form is found, so a second run finds
nothing to do, and each is logged:

* **The SQLite write store of schema 0** (an ``outbox`` table with a row per event) becomes the current
  schema: the outbox becomes the relay's position before its first unpublished event. An event published
  out of order after that one is published again: delivery is at least once anyway. The other tables keep
  their layout; they work the same.
* **The projection's checkpoint folder** ``bronze`` is renamed to the name the projection uses now, so the
  projection resumes where it stopped. Not when a folder of the new name exists: that one is what the
  projection resumes from, so the old one is left for the operator (logged).
* **A Delta table** ``silver_event_history`` is dropped, where the event history is now a view over
  ``bronze_events`` (``CREATE OR REPLACE VIEW`` refuses to replace a table). Its rows were derived from
  bronze, which holds every event, so nothing is lost.

Stop the projection and the writers (``serve``, ``relay``) first: the store is converted in one write
transaction, and the checkpoint is renamed under the projection's lock.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path

from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError, WriteStoreError
from cqrs_orders.exit_codes import ExitCode

log = logging.getLogger(__name__)

#: The schema (``PRAGMA user_version``) of the first SQLite layout, and the one its conversion produces.
OLD_STORE_SCHEMA, CONVERTED_STORE_SCHEMA = 0, 2
#: The conversion of a schema-0 store: the position before the first unpublished event, then the outbox
#: table (and the trigger that filled it) goes.
_STORE_FROM_0 = (
    """CREATE TABLE outbox_position (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    published_through INTEGER NOT NULL,
    published_at      TEXT
)""",
    """INSERT INTO outbox_position (id, published_through) VALUES (1, coalesce(
    (SELECT min(e.seq) - 1 FROM events e JOIN outbox o ON o.event_id = e.event_id
     WHERE o.published_at IS NULL),
    (SELECT max(seq) FROM events),
    0
))""",
    "DROP TRIGGER IF EXISTS events_to_outbox",
    "DROP TABLE outbox",
)
#: The projection's checkpoint folder under its first name.
OLD_CHECKPOINT = "bronze"
#: The table that stood where the event-history view is now.
OLD_HISTORY_TABLE = "silver_event_history"


def register(subcommands, common) -> None:
    """Add ``upgrade``; it sets ``run(args, settings) -> exit code``."""
    upgrade = subcommands.add_parser(
        "upgrade",
        parents=[common],
        help="convert a warehouse written by an older cqrs-orders (once; idempotent)",
        description="Convert what an older cqrs-orders left in the warehouse: a SQLite write store of "
        f"schema {OLD_STORE_SCHEMA} (separate outbox table) to the current schema, the projection's "
        f"checkpoint folder '{OLD_CHECKPOINT}' to its current name (unless that exists), and a Delta "
        f"table '{OLD_HISTORY_TABLE}' (now a view) dropped. Stop the projection and the writers first. "
        "Each step runs only when its old form is there: a second run does nothing. Prints one JSON "
        'object: {"upgraded": [what was done]}.',
    )
    upgrade.set_defaults(run=run_upgrade)


def run_upgrade(args, settings: Settings) -> int:
    done = upgrade(settings)
    if not done:
        log.info("nothing to upgrade in %s", settings.warehouse)
    print(json.dumps({"upgraded": done}))
    return ExitCode.OK


def upgrade(settings: Settings) -> list[str]:
    """Make every conversion the warehouse needs; return what was done, one line each."""
    steps = (
        upgrade_store(settings.write_store_path),
        rename_checkpoint(settings),
        drop_history_table(settings),
    )
    return [step for step in steps if step]


def upgrade_store(path: Path) -> str | None:
    """Convert a schema-0 SQLite store at ``path`` to the current schema, in one write transaction."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    except sqlite3.Error as error:
        raise WriteStoreError(f"Cannot open the write store at {path}: {error}") from error
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            converted = _convert_store(connection, path)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    except sqlite3.Error as error:
        raise WriteStoreError(
            f"Could not convert the write store at {path} ({error}); it is unchanged. Restore it from a "
            "backup if it is damaged, or stop the process writing it and run upgrade again"
        ) from error
    finally:
        connection.close()
    if converted:
        message = f"write store {path}: schema {OLD_STORE_SCHEMA} -> {CONVERTED_STORE_SCHEMA}"
        log.info("%s (the outbox table became the relay's position)", message)
        return message
    return None


def _convert_store(connection: sqlite3.Connection, path: Path) -> bool:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version != OLD_STORE_SCHEMA or not tables:
        return False
    if "outbox" not in tables or "events" not in tables:
        raise WriteStoreError(
            f"The write store at {path} has schema {version} but not its tables (found: "
            f"{', '.join(sorted(tables))}); it was not written by cqrs-orders. Move it away to start an "
            "empty store"
        )
    for statement in _STORE_FROM_0:
        connection.execute(statement)
    connection.execute(f"PRAGMA user_version = {CONVERTED_STORE_SCHEMA}")
    return True


def rename_checkpoint(settings: Settings) -> str | None:
    """Rename the projection's checkpoint folder from its first name to its current one, under its lock."""
    from cqrs_orders.pipeline import checkpoint_lock
    from cqrs_orders.pipeline.checkpoint_files import checkpoint_folder
    from cqrs_orders.pipeline.runner import CHECKPOINT

    old = settings.checkpoint(OLD_CHECKPOINT)
    old_folder, new_folder = checkpoint_folder(old), checkpoint_folder(settings.checkpoint(CHECKPOINT))
    if not old_folder.is_dir():
        return None
    if new_folder.exists():
        log.warning(
            "%s is kept: the projection resumes from %s; remove the old folder once you no longer need it",
            old_folder,
            new_folder,
        )
        return None
    with checkpoint_lock.exclusive(old):  # refused while a projection runs on it
        os.rename(old_folder, new_folder)
    message = f"checkpoint {old_folder} -> {new_folder}"
    log.info("%s", message)
    return message


def drop_history_table(settings: Settings) -> str | None:
    """Drop the Delta table at the event history's name; a view of that name is left alone."""
    if settings.catalog:
        return _drop_catalog_table(settings)
    folder = settings.warehouse / OLD_HISTORY_TABLE
    if not (folder / "_delta_log").is_dir():
        return None
    shutil.rmtree(folder)
    message = f"Delta table {folder} dropped (the event history is a view over bronze_events)"
    log.info("%s", message)
    return message


def _drop_catalog_table(settings: Settings) -> str | None:
    """In Unity Catalog: ``DROP TABLE`` when the name holds a table, not a view."""
    from cqrs_orders.spark import get_spark

    if not settings.schema:
        raise ConfigurationError("With CQRS_CATALOG set, upgrade needs CQRS_SCHEMA too (--schema).")
    name = f"`{settings.catalog}`.`{settings.schema}`.`{OLD_HISTORY_TABLE}`"
    spark = get_spark("cqrs-orders-upgrade")
    if not spark.catalog.tableExists(name):
        return None
    kind = spark.sql(f"DESCRIBE TABLE EXTENDED {name}").where("col_name = 'Type'").first()
    if kind is None or kind["data_type"].upper() == "VIEW":
        return None
    spark.sql(f"DROP TABLE {name}")
    message = f"table {name} dropped (the event history is a view over bronze_events)"
    log.info("%s", message)
    return message
