"""Profile mode: where a micro-batch's time goes, step by step, logged once per batch.

Off by default (a step then costs one attribute lookup), and never switched on at import: the entry point
does it (``cqrs-orders project --profile`` calls :func:`enable`). Each batch then logs one line at INFO on
this module's logger, e.g.
``batch 7 (183 rows): 1.62 s: read+validate 0.18, append bronze_events 0.59, MERGE silver_orders 1.23, ...``.
Steps that run concurrently (the bronze appends beside the read models' MERGEs) overlap, so they
may add up to more than the batch; a "wait for ..." step is the time the batch spent waiting for them
after its own work. The steps are named where the work is done (:mod:`.runner`, :mod:`.silver`), so the
profile follows the code as it changes. A second line per batch gives the streaming engine's own durations
(finding the new offsets, planning, its logs: :func:`engine`), from the batch's progress event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

#: Set only by :func:`enable` (the entry point's choice), so importing this module changes nothing.
_enabled = False
#: The running batch's steps (one query per process: one batch at a time); steps on the batch's worker
#: threads land here too.
_steps: list | None = None
_guard = threading.Lock()


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


def enabled() -> bool:
    return _enabled


@contextmanager
def batch(batch_id: int) -> Iterator[dict]:
    """Collect the steps of one micro-batch run on this thread; log them when it ends.

    Yields a dict the caller may add ``rows`` to."""
    if not _enabled:
        yield {}
        return
    global _steps
    info: dict = {"steps": []}
    _steps = info["steps"]
    started = time.perf_counter()
    try:
        yield info
    finally:
        total = time.perf_counter() - started
        _steps = None
        parts = ", ".join(f"{name} {seconds:.2f}" for name, seconds in info["steps"])
        rows = f" ({info['rows']} rows)" if "rows" in info else ""
        logger.info("batch %s%s: %.2f s: %s", batch_id, rows, total, parts)


@contextmanager
def step(name: str) -> Iterator[None]:
    """Time the block as the step ``name`` of the running batch (nothing outside a profiled batch)."""
    steps = _steps if _enabled else None
    if steps is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        with _guard:
            steps.append((name, time.perf_counter() - started))


def engine(batch_id: int, duration_ms: dict) -> None:
    """Log the streaming engine's own durations of a batch (its progress event's ``durationMs``): the
    time around ``foreachBatch`` (``addBatch``) that a batch's steps do not show."""
    if _enabled and duration_ms:
        parts = ", ".join(f"{name} {ms / 1000:.2f}" for name, ms in sorted(duration_ms.items()))
        logger.info("batch %s engine: %s", batch_id, parts)
