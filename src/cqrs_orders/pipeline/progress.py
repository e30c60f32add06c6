"""Each micro-batch's progress, appended to ``ops_stream_progress`` for the lag monitor and dashboards.

A ``StreamingQueryListener`` receives the progress events; its callbacks run on Spark's listener thread,
which must never block or fail, so they only queue a row. A daemon thread appends the queued rows to Delta,
one commit per ``write_every_seconds`` rather than per micro-batch (a commit costs the streams CPU; each row
keeps the time it was recorded), and any error there is reported on stderr without touching the streams.
:meth:`ProgressRecorder.flush` writes at once and waits until everything of the watched queries is written
(tests and ``run_once`` use it).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import datetime, timezone

from pyspark.sql.streaming import StreamingQueryListener

from cqrs_orders.config import Settings
from cqrs_orders.delta_io import table
from cqrs_orders.pipeline import profile
from cqrs_orders.pipeline.sessions import isolated_session
from cqrs_orders.pipeline.tables import SCHEMAS

log = logging.getLogger(__name__)

#: Name of the observed metric (``DataFrame.observe``) that carries a batch's maximum event time.
EVENT_TIME_METRIC = "event_time"


class ProgressRecorder(StreamingQueryListener):
    """Records the progress of the queries named in ``query_names``; use as a context manager."""

    def __init__(
        self, spark, settings: Settings, query_names: tuple[str, ...], write_every_seconds: float = 10.0
    ):
        self._spark, self._table = spark, table(settings, "ops_stream_progress")
        self._writer_session = isolated_session(spark)  # writes beside the batches
        self._names = set(query_names)
        self._rows: queue.Queue = queue.Queue()
        self._terminated: set[str] = set()
        self._changed = threading.Condition()
        self._write_every = write_every_seconds
        self._write_now = threading.Event()
        self._writer = threading.Thread(target=self._write_forever, name="ops-stream-progress", daemon=True)

    def __enter__(self) -> ProgressRecorder:
        self._writer.start()
        self._spark.streams.addListener(self)
        return self

    def __exit__(self, *exc_info) -> None:
        self._spark.streams.removeListener(self)
        self.flush(timeout=0 if exc_info[0] else 30)
        self._rows.put(None)  # ends the writer thread

    # --- listener callbacks (Spark's thread: queue only, never raise) ---------------------------------
    def onQueryStarted(self, event) -> None:
        pass

    def onQueryProgress(self, event) -> None:
        try:
            if event.progress.name in self._names:
                self._rows.put(progress_row(event.progress))
                profile.engine(event.progress.batchId, event.progress.durationMs)
        except Exception as error:  # never let a bookkeeping bug stop a stream
            _warn(f"could not read a progress event: {error}")

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        with self._changed:
            self._terminated.add(str(event.id))
            self._changed.notify_all()

    # --- writing -------------------------------------------------------------------------------------
    def flush(self, query_ids=(), timeout: float = 30) -> None:
        """Wait until the given queries' termination was seen and every queued row is written."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._changed.wait_for(
                lambda: {str(q) for q in query_ids} <= self._terminated, max(0.0, deadline - time.monotonic())
            )
        self._write_now.set()
        while self._rows.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        self._write_now.clear()

    def _write_forever(self) -> None:
        while (first := self._rows.get()) is not None:
            self._write_now.wait(self._write_every)  # gather the window's rows: one commit for all of them
            rows = [first]
            while not self._rows.empty():
                row = self._rows.get_nowait()
                if row is None:
                    self._rows.put(None)  # write what we have, then stop
                    break
                rows.append(row)
            try:
                frame = self._writer_session.createDataFrame(rows, SCHEMAS["ops_stream_progress"])
                self._table.save(frame.write.format("delta").mode("append"))
            except Exception as error:
                _warn(f"could not record {len(rows)} progress rows: {error}")
            finally:
                for _ in rows:
                    self._rows.task_done()


def progress_row(progress) -> tuple:
    """One ``ops_stream_progress`` row from a ``StreamingQueryProgress``."""
    source = progress.sources[0] if progress.sources else None
    observed = (progress.observedMetrics or {}).get(EVENT_TIME_METRIC)
    max_event_time = observed["max_event_time"] if observed is not None else None
    return (
        progress.name,
        str(progress.runId),
        progress.batchId,
        _parse_time(progress.timestamp),
        progress.numInputRows,
        _number(progress.inputRowsPerSecond),
        _number(progress.processedRowsPerSecond),
        progress.batchDuration,
        max_event_time,
        _offset_json(source.endOffset) if source else None,
        _offset_json(source.latestOffset) if source else None,
        datetime.now(timezone.utc),
    )


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _number(value) -> float | None:
    return None if value is None or value != value else float(value)  # NaN (no input) -> null


def _offset_json(offset) -> str | None:
    if offset is None:
        return None
    return offset if isinstance(offset, str) else json.dumps(offset)


def _warn(message: str) -> None:
    log.warning("ops_stream_progress: %s", message)
