"""A streaming checkpoint as a local folder, and the small files this project keeps in it.

Spark names a checkpoint by URL; the project's own files beside Spark's (the writer id, the projection's
lock) need a file path. A local path and ``file:`` are used as they are, ``dbfs:/`` through its mount, and a
Unity Catalog volume is already a path (``/Volumes/...``). A marker is written atomically, so a reader never
sees half of one, and it lives and dies with the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from cqrs_orders.errors import ConfigurationError


def checkpoint_folder(checkpoint: str) -> Path:
    """The checkpoint as a local folder (``dbfs:/`` through its mount); refused when it is not one."""
    path = _local(checkpoint)
    if path is None:
        raise ConfigurationError(
            f"Checkpoint {checkpoint!r} is not a file path. Set CQRS_CHECKPOINT_ROOT to a local, dbfs:/ or "
            "/Volumes/... folder (Unity Catalog volumes are mounted as files on Databricks)."
        )
    return path


def read_marker(checkpoint: str, name: str) -> str | None:
    marker = checkpoint_folder(checkpoint) / name
    return marker.read_text().strip() if marker.is_file() else None


def write_marker(checkpoint: str, name: str, value: str) -> None:
    folder = checkpoint_folder(checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.tmp"
    temporary.write_text(value)
    temporary.replace(folder / name)  # atomic: a reader never sees a half-written value


def _local(checkpoint: str) -> Path | None:
    parsed = urlparse(checkpoint)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else checkpoint)
    if parsed.scheme == "dbfs":
        return Path("/dbfs") / parsed.path.lstrip("/")
    return None
