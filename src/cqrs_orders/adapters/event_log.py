"""The embedded event log: a local stand-in for Event Hubs, stored as an append-only Delta table.

Each row looks like an Event Hubs / Kafka record (``body``, ``partition``, ``offset``, ``enqueued_time``,
``partition_key``), so the Spark pipeline reads the log and the real bus through the same columns.
Appends go through ``deltalake`` (no JVM), which keeps ``submit``/``relay`` fast; Spark reads the table as
a streaming source.

Offsets are dense and increase by one per partition, like Kafka's. A file lock serialises appenders
(relay, ``ingest-events``, several processes) so no two records ever share a (partition, offset).

**Segments: a file never holds more than** :data:`SEGMENT_RECORDS` **records.** Delta's streaming source
admits whole files (``maxFilesPerTrigger``), never a number of records, so the projection can bound its
micro-batches (``CQRS_MAX_RECORDS_PER_BATCH``) only if it knows how many records a file can hold. Each record
gets a position in the whole log (the records before it: the partitions' end offsets added up, well defined
under the lock) and the table is partitioned by ``segment`` = position // ``SEGMENT_RECORDS``; Delta writes
one file per partition value, so an append of 250 records becomes three files, a small one one file (two
across a segment's end). Compaction keeps the bound: it merges files within a partition, never across
(see :meth:`EventLog._compact`). Logs written before segments existed have no ``segment`` column and are
appended to as before; their batches cannot be bounded (:func:`records_per_file` says so).
"""

from __future__ import annotations

import fcntl
import json
import math
import warnings
import zlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from cqrs_orders.application.erasure import MARKER, mask_personal
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
#: The most records one file of the log holds: a segment's worth (see the module docstring). Small, so that
#: a micro-batch of a few thousand records still takes tens of files (a trickling relay writes a file per
#: append, a batch of files may hold few records); not smaller, since compaction leaves a file per segment
#: and an append's cost grows with the live files (benchmarks/RESULTS.md). Fixed for the life of a log:
#: changing it needs a new log.
SEGMENT_RECORDS = 100
SEGMENT_COLUMN = "segment"
#: What the table stores: the records plus the segment each belongs to (the table's partition column).
_TABLE_SCHEMA = pa.schema([*RECORD_SCHEMA, pa.field(SEGMENT_COLUMN, pa.int64(), nullable=False)])

#: The columns the log keeps min/max statistics for (a table property set when the log is created, and by
#: :meth:`EventLog.erase` on a log made before): never ``body``. deltalake would otherwise store every file's
#: smallest and largest body, whole, in the ``_delta_log`` commits, which outlive the files themselves
#: (a VACUUM removes data files, not commits), so an erased body would stay readable there.
STATS_COLUMNS = "partition,offset,enqueued_time,partition_key"
_STATS_PROPERTY = "delta.dataSkippingStatsColumns"

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
        self._segmented: bool | None = None  # whether the table has segments; known once it is loaded

    def partition_for(self, key: str | None, body: str) -> int:
        text = key if key is not None else body
        return zlib.crc32(text.encode("utf-8", errors="surrogatepass")) % self.partitions

    def append(self, messages: Sequence[Message]) -> list[tuple[int, int]]:
        """Append messages in order, atomically (all or none); return each one's (partition, offset)."""
        if not messages:
            return []
        with self._locked():
            next_offsets = dict(self._next_offsets())
            first = sum(next_offsets.values())  # offsets are dense from 0: the records already in the log
            positions, columns = [], {name: [] for name in _TABLE_SCHEMA.names}
            now = datetime.now(timezone.utc)
            for position, (key, body) in enumerate(messages, start=first):
                partition = self.partition_for(key, body)
                offset = next_offsets.get(partition, 0)
                next_offsets[partition] = offset + 1
                positions.append((partition, offset))
                segment = position // SEGMENT_RECORDS
                values = (body, partition, offset, now, key, segment)
                for name, value in zip(_TABLE_SCHEMA.names, values, strict=True):
                    columns[name].append(value)
            try:
                if self._delta is None:  # creates the table, with segments
                    data = pa.table(columns, schema=_TABLE_SCHEMA)
                    write_deltalake(
                        str(self.path),
                        data,
                        mode="append",
                        partition_by=[SEGMENT_COLUMN],
                        configuration={_STATS_PROPERTY: STATS_COLUMNS},
                    )
                    self._delta, self._segmented = DeltaTable(str(self.path)), True
                else:
                    if not self._segmented:  # a log from before segments: appended to as it was written
                        del columns[SEGMENT_COLUMN]
                    data = pa.table(columns, schema=_TABLE_SCHEMA if self._segmented else RECORD_SCHEMA)
                    write_deltalake(self._delta, data, mode="append")  # also moves _delta to the new version
                version = self._delta.version()
            except (DeltaError, OSError) as error:
                raise EventLogError(f"Could not append to the event log at {self.path}: {error}") from error
            self._cached = (version, next_offsets)
            if version % COMPACT_EVERY_COMMITS == 0:
                self._compact()
        return positions

    def _compact(self) -> None:
        """Merge the small files of many appends into one per segment (a ``dataChange=false`` commit), so
        that an append's cost stays bounded instead of growing with every file the log ever received
        (without bound for a relay that runs for days).

        A running stream skips such a commit (it read the records from the appends' files already), but a
        stream that starts on the log reads its current files, compacted ones included: they must keep the
        segment bound too, and they do, since OPTIMIZE bin-packs each partition (segment) on its own.

        Best effort: the append is already committed, so a failed compaction only warns and is left for
        the next one."""
        try:
            self._delta.optimize.compact()
            self._cached = (self._delta.version(), self._cached[1])
        except (DeltaError, OSError) as error:
            warnings.warn(
                f"Could not compact the event log at {self.path} (will retry): {error}", stacklevel=2
            )

    def vacuum(self, retain_hours: float | None = None, *, enforce_retention: bool = True) -> int:
        """Delete the files compactions (and erasures) replaced more than ``retain_hours`` ago (default and
        minimum: 7 days, so a stream that lags less than that still finds them); returns how many were
        deleted. ``enforce_retention=False`` lifts the minimum (a test erasing with no retention)."""
        with self._locked():
            table = self._table()
            if table is None:
                return 0
            hours = None if retain_hours is None else math.ceil(retain_hours)
            deleted = table.vacuum(
                retention_hours=hours, dry_run=False, enforce_retention_duration=enforce_retention
            )
            return len(deleted)

    def erase(self, aggregate_id: str, values: Collection[str] = ()) -> int:
        """Rewrite the records of ``aggregate_id`` (its partition key) with their personal members masked
        (:func:`~cqrs_orders.application.erasure.mask_personal`), and the keyless records (bodies that were
        not JSON with an id) holding any of ``values`` with each of them replaced by the marker too;
        returns how many records changed.

        One MERGE on (partition, offset): each record keeps its place, so offsets and a stream's position
        stay valid (a running projection skips the rewrite: ``skipChangeCommits``). The files holding the
        old bodies are removed from the table at once and deleted by :meth:`vacuum`. A log made before
        :data:`STATS_COLUMNS` gets that property first, so no rewritten file puts a body in its
        statistics; its older commits keep theirs until Delta's log retention cleans them."""
        with self._locked():
            table = self._table()
            if table is None:
                return 0
            if table.metadata().configuration.get(_STATS_PROPERTY) != STATS_COLUMNS:
                table.alter.set_table_properties({_STATS_PROPERTY: STATS_COLUMNS})
            key = aggregate_id.replace("'", "''")
            found = _query(
                table,
                'SELECT "partition", "offset", body, partition_key FROM log '
                f"WHERE partition_key = '{key}' OR partition_key IS NULL",
            ).to_pylist()
            changed = {"partition": [], "offset": [], "body": []}
            for record in found:
                body = record["body"]
                if record["partition_key"] == aggregate_id:
                    masked = mask_personal(body)
                elif any(value in body for value in values):
                    masked = mask_personal(body)
                    for value in values:
                        masked = masked.replace(value, MARKER)
                else:
                    continue
                if masked != body:
                    for name, value in (("partition", record["partition"]), ("offset", record["offset"]),
                                        ("body", masked)):  # fmt: skip
                        changed[name].append(value)
            if not changed["body"]:
                return 0
            source = pa.table(changed, schema=pa.schema([RECORD_SCHEMA.field(n) for n in changed]))
            try:
                (
                    table.merge(
                        source,
                        predicate='t."partition" = s."partition" AND t."offset" = s."offset"',
                        source_alias="s",
                        target_alias="t",
                    )
                    .when_matched_update({"body": "s.body"})
                    .execute()
                )
            except (DeltaError, OSError) as error:
                raise EventLogError(f"Could not erase in the event log at {self.path}: {error}") from error
            self._cached = None
            return len(changed["body"])

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
            columns = ", ".join(f'"{name}"' for name in RECORD_SCHEMA.names)  # not the segment
            return _query(table, f'SELECT {columns} FROM log ORDER BY "partition", "offset"')

    def _table(self) -> DeltaTable | None:
        """The table at its newest version (other processes append too), or None before the first append.

        Catching up from the last version read, rather than loading the log again, reads only the commits
        made since."""
        try:
            if self._delta is None:
                self._delta = DeltaTable(str(self.path))
                self._segmented = _is_segmented(self._delta)
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


def records_per_file(path: str | Path) -> int | None:
    """The most records one file of the log at ``path`` can hold, now and in every later append:
    :data:`SEGMENT_RECORDS`; ``None`` for a log written before segments (no bound) or no log yet."""
    try:
        return SEGMENT_RECORDS if _is_segmented(DeltaTable(str(path))) else None
    except TableNotFoundError:
        return None


def _is_segmented(table: DeltaTable) -> bool:
    return table.metadata().partition_columns == [SEGMENT_COLUMN]


def _query(table: DeltaTable, sql: str) -> pa.Table:
    # deltalake's own SQL engine: pyarrow's dataset scanner can abort the process at exit after a write.
    return pa.table(QueryBuilder().register("log", table).execute(sql).read_all())


__all__ = ["RECORD_SCHEMA", "SEGMENT_RECORDS", "EventLog", "Message", "partition_key_of", "records_per_file"]
