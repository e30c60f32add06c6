"""The embedded event log: a local stand-in for Event Hubs, stored as an append-only Delta table.

Each row looks like an Event Hubs / Kafka record (``body``, ``partition``, ``offset``, ``enqueued_time``,
``partition_key``), so the Spark pipeline reads the log and the real bus through the same columns.
Appends go through ``deltalake`` (no JVM), which keeps ``submit``/``relay`` fast; Spark reads the table as
a streaming source.

Offsets are dense and increase by one per partition, like Kafka's. A file lock serialises appenders
(relay, ``ingest-events``, several processes) so no two records ever share a (partition, offset).
"""

from __future__ import annotations

import fcntl
import json
import math
import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from cqrs_orders.errors import EventLogError

RECORD_SCHEMA = pa.schema(
    [
        pa.field("body", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("enqueued_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("partition_key", pa.string()),
    ]
)

#: Every this many commits an append also compacts the log's files (see ``EventLog._compact``).
COMPACT_EVERY_COMMITS = 100

#: One message to append: (partition key, body). The key picks the partition, as on Event Hubs.
Message = tuple[str | None, str]


def partition_key_of(body: str) -> str | None:
    """The aggregate id of a wire body, or ``None`` when the body is not a JSON object with a usable one.

    Any text is a body here (``ingest-events`` promises to take every line): one that nests deeper than
    the parser can follow, or whose id is not valid Unicode (a lone surrogate such as ``"\\ud800"``),
    just has no key; bronze quarantines it downstream.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    key = parsed.get("aggregateId") if isinstance(parsed, dict) else None
    return key if isinstance(key, str) and _is_unicode(key) else None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class EventLog:
    """Append-only, partitioned, offset-addressed log of raw event bodies."""

    def __init__(self, path: str | Path, partitions: int = 4):
        self.path = Path(path)
        self.partitions = partitions
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._cached: tuple[int, dict[int, int]] | None = None  # (table version, next offsets)
        self._delta: DeltaTable | None = None  # loaded once, then brought up to date incrementally

    def partition_for(self, key: str | None, body: str) -> int:
        text = key if key is not None else body
        return zlib.crc32(text.encode("utf-8", errors="surrogatepass")) % self.partitions

    def append(self, messages: Sequence[Message]) -> list[tuple[int, int]]:
        """Append messages in order, atomically (all or none); return each one's (partition, offset)."""
        if not messages:
            return []
        with self._locked():
            next_offsets = dict(self._next_offsets())
            positions, columns = [], {name: [] for name in RECORD_SCHEMA.names}
            now = datetime.now(timezone.utc)
            for key, body in messages:
                partition = self.partition_for(key, body)
                offset = next_offsets.get(partition, 0)
                next_offsets[partition] = offset + 1
                positions.append((partition, offset))
                for name, value in zip(RECORD_SCHEMA.names, (body, partition, offset, now, key), strict=True):
                    columns[name].append(value)
            try:
                data = pa.table(columns, schema=RECORD_SCHEMA)
                if self._delta is None:
                    write_deltalake(str(self.path), data, mode="append")  # creates the table
                    self._delta = DeltaTable(str(self.path))
                else:
                    write_deltalake(self._delta, data, mode="append")  # also moves _delta to the new version
                version = self._delta.version()
            except (DeltaError, OSError) as error:
                raise EventLogError(f"Could not append to the event log at {self.path}: {error}") from error
            self._cached = (version, next_offsets)
            if version % COMPACT_EVERY_COMMITS == 0:
                self._compact()
        return positions

    def _compact(self) -> None:
        """Merge the small files of many appends into one (a ``dataChange=false`` commit, which streaming
        readers skip), so that an append keeps costing ~20 ms instead of growing with every file the log
        ever received (~70 ms after 600 appends, without bound for a relay that runs for days).

        Best effort: the append is already committed, so a failed compaction only warns and is left for
        the next one."""
        try:
            self._delta.optimize.compact()
            self._cached = (self._delta.version(), self._cached[1])
        except (DeltaError, OSError) as error:
            warnings.warn(
                f"Could not compact the event log at {self.path} (will retry): {error}", stacklevel=2
            )

    def vacuum(self, retain_hours: float | None = None) -> int:
        """Delete the files compactions replaced more than ``retain_hours`` ago (default and minimum: 7
        days, so a stream that lags less than that still finds them); returns how many were deleted."""
        with self._locked():
            table = self._table()
            if table is None:
                return 0
            hours = None if retain_hours is None else math.ceil(retain_hours)
            return len(table.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=True))

    def end_offsets(self) -> dict[int, int]:
        """Per partition, the offset the next record will get (Kafka's "end offset")."""
        with self._locked():
            return dict(self._next_offsets())

    def read(self) -> pa.Table:
        """Every record (for tools and tests; Spark streams the table itself)."""
        with self._locked():  # the cached table object is shared with append()
            table = self._table()
            if table is None:
                return RECORD_SCHEMA.empty_table()
            return _query(table, 'SELECT * FROM log ORDER BY "partition", "offset"')

    def _table(self) -> DeltaTable | None:
        """The table at its newest version (other processes append too), or None before the first append.

        Re-loading a log of many small commits costs ~100 ms; catching up from the last one read, a few."""
        try:
            if self._delta is None:
                self._delta = DeltaTable(str(self.path))
            else:
                self._delta.update_incremental()
        except TableNotFoundError:
            return None
        except DeltaError as error:  # its message carries a Rust backtrace: keep the first line
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise EventLogError(
                f"Cannot read the event log at {self.path} ({reason}). If a file of its _delta_log is "
                "damaged, restore it from a backup."
            ) from None
        return self._delta

    def _next_offsets(self) -> dict[int, int]:
        table = self._table()
        if table is None:
            return {}
        if self._cached and self._cached[0] == table.version():
            return self._cached[1]
        grouped = _query(table, 'SELECT "partition", max("offset") + 1 AS next FROM log GROUP BY "partition"')
        offsets = dict(zip(grouped["partition"].to_pylist(), grouped["next"].to_pylist(), strict=True))
        self._cached = (table.version(), offsets)
        return offsets

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _query(table: DeltaTable, sql: str) -> pa.Table:
    # deltalake's own SQL engine: pyarrow's dataset scanner can abort the process at exit after a write.
    return pa.table(QueryBuilder().register("log", table).execute(sql).read_all())


__all__ = ["RECORD_SCHEMA", "EventLog", "Message", "partition_key_of"]
