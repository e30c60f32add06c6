"""A micro-batch's rows, computed once for every write of the batch and freed when the batch is done.

A local checkpoint gives each write the same rows without recomputing the validation (and, unlike a cached
plan, nothing Delta's MERGE would copy again). Its blocks stay in memory until the driver's garbage
collector lets Spark's cleaner find them, which can take many batches: in a long-running stream, or after a
large catch-up batch, that is memory the next batches' joins and sorts do not get. So each batch frees its
own when done (:func:`release`).
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)


def release(rows: DataFrame) -> None:
    """Free the blocks of a local checkpoint now. Spark has no Python API for it: done through the JVM on
    a classic session. Spark Connect has no JVM here and frees a checkpoint when its DataFrame is collected.
    Never fails the batch: blocks not freed here are still freed at the driver's next garbage collection."""
    if getattr(rows, "_jdf", None) is None:
        return
    try:
        plan = _stored_plan(rows)
        if plan is not None:  # anything else is no checkpoint of ours
            plan.rdd().unpersist(False)
    except Exception as error:  # e.g. a cluster whose access mode refuses JVM calls
        logger.warning(
            "could not free the batch's checkpointed rows (%s); Spark frees them at its next garbage "
            "collection",
            error,
        )


def require_stored(rows: DataFrame, reader: str) -> None:
    """Refuse ``rows`` that are a lazy plan rather than stored rows (a local checkpoint), for a ``reader``
    that must not be planned over the computation behind them. Where this cannot be told (Spark Connect,
    a JVM that refuses the call), the rows pass."""
    if getattr(rows, "_jdf", None) is None:
        return
    try:
        stored = _stored_plan(rows) is not None
    except Exception:  # cannot tell here; the reader still works, only slower to plan
        return
    if not stored:
        raise ValueError(
            f"{reader} takes stored rows: call .localCheckpoint() on the validated rows first (as the "
            "runner does), or Spark plans the whole validation into it many times over"
        )


def _stored_plan(rows: DataFrame):
    """The JVM plan of ``rows`` if they are a local checkpoint (Spark's ``LogicalRDD``), else None."""
    plan = rows._jdf.queryExecution().analyzed()
    return plan if plan.getClass().getSimpleName() == "LogicalRDD" else None
