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
from pathlib import Path
from urllib.parse import urlparse

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


def isolated_session(session):
    """A session of the same Spark application with SQL confs of its own: for writers on other threads,
    and for work that sets confs the caller's session must not keep (``maintain``'s file size).

    Gold's refresh and the progress recorder write while a batch may be inside :func:`transaction_id`.
    Delta takes a write's transaction id from its session's confs, so in the batch's session their writes
    would be recorded under the batch's id, and the next of them under that id skipped as already done.
    """
    return session.newSession()


def reset(checkpoint: str) -> None:
    """Forget the checkpoint (and with it the app id): the next query starts afresh."""
    shutil.rmtree(checkpoint_folder(checkpoint), ignore_errors=True)


def read_marker(checkpoint: str, name: str) -> str | None:
    marker = checkpoint_folder(checkpoint) / name
    return marker.read_text().strip() if marker.is_file() else None


def write_marker(checkpoint: str, name: str, value: str) -> None:
    folder = checkpoint_folder(checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.tmp"
    temporary.write_text(value)
    temporary.replace(folder / name)  # atomic: a reader never sees a half-written id


def _local(checkpoint: str) -> Path | None:
    parsed = urlparse(checkpoint)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else checkpoint)
    if parsed.scheme == "dbfs":
        return Path("/dbfs") / parsed.path.lstrip("/")
    return None


def checkpoint_folder(checkpoint: str) -> Path:
    """The checkpoint as a local folder (``dbfs:/`` through its mount); refused when it is not one."""
    path = _local(checkpoint)
    if path is None:
        from cqrs_orders.errors import ConfigurationError

        raise ConfigurationError(
            f"Checkpoint {checkpoint!r} is not a file path. Set CQRS_CHECKPOINT_ROOT to a local, dbfs:/ or "
            "/Volumes/... folder (Unity Catalog volumes are mounted as files on Databricks)."
        )
    return path
