"""Exactly-once writes from ``foreachBatch``: Delta's transaction ids, keyed to the checkpoint's lifetime.

A micro-batch that crashed after writing but before its checkpoint commit runs again with the same batch
id. Delta skips a write whose (app id, version) it has already committed to that table: appends take them
as writer options, MERGE only from the session confs ``spark.databricks.delta.write.txnAppId`` /
``txnVersion``, which must be set on the batch's own session.

The app id must change whenever the checkpoint is reset: batch ids restart at 0, and Delta would silently
skip every write below the last version it saw. So the id is a uuid stored in a file inside the checkpoint
folder, created together with it and deleted with it.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from cqrs_orders.pipeline.checkpoint_files import checkpoint_folder, read_marker, write_marker

APP_ID_FILE = "_cqrs_app_id"
TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"


def app_id(checkpoint: str) -> str:
    """The stable id of this checkpoint's writes (created on first use)."""
    existing = read_marker(checkpoint, APP_ID_FILE)
    if existing:
        return existing
    new_id = str(uuid.uuid4())
    write_marker(checkpoint, APP_ID_FILE, new_id)
    return new_id


def append_options(checkpoint_app_id: str, table: str, batch_id: int) -> dict[str, str]:
    """Writer options that make an append of ``batch_id`` into ``table`` happen at most once."""
    return {"txnAppId": f"{checkpoint_app_id}:{table}", "txnVersion": str(batch_id)}


@contextmanager
def transaction_id(session, checkpoint_app_id: str, step: str, batch_id: int) -> Iterator[None]:
    """Within the block, Delta writes of this session (MERGE included) happen at most once per batch.

    ``step`` tells apart several writes to the same table in one batch (each needs its own app id, or the
    second would be skipped as "already done").
    """
    session.conf.set(TXN_APP_ID, f"{checkpoint_app_id}:{step}")
    session.conf.set(TXN_VERSION, str(batch_id))
    try:
        yield
    finally:
        session.conf.unset(TXN_APP_ID)
        session.conf.unset(TXN_VERSION)


def reset(checkpoint: str) -> None:
    """Forget the checkpoint (and with it the app id): the next query starts afresh."""
    shutil.rmtree(checkpoint_folder(checkpoint), ignore_errors=True)
