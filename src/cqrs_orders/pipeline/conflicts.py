"""Retrying a Delta write that lost a race with another writer (a nightly OPTIMIZE, a rebuild, a second job).

Delta's optimistic concurrency fails whichever transaction commits second when both touched the same files.
Every write of the pipeline is idempotent (transaction ids; a MERGE updates only when the incoming version
wins), so running the whole step again on the new snapshot is safe and gives the same tables. Failing the
stream instead would restart the job and page on-call for every maintenance run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from delta import exceptions as delta_errors

log = logging.getLogger(__name__)

#: The errors of Delta's conflict detection (importing them also makes PySpark raise them by type).
CONFLICTS: tuple[type[Exception], ...] = (
    delta_errors.ConcurrentAppendException,
    delta_errors.ConcurrentDeleteReadException,
    delta_errors.ConcurrentDeleteDeleteException,
    delta_errors.ConcurrentTransactionException,
    delta_errors.ConcurrentWriteException,
    delta_errors.MetadataChangedException,
    delta_errors.ProtocolChangedException,
)
ATTEMPTS = 5
PAUSE_SECONDS = 1.0

T = TypeVar("T")


def retry_on_conflict(
    step: Callable[[], T], what: str, attempts: int = ATTEMPTS, pause_seconds: float = PAUSE_SECONDS
) -> T:
    """Run ``step`` (an idempotent write); on a Delta conflict run it again, up to ``attempts`` in all.

    The pause grows with each attempt, so two writers that keep colliding drift apart. The last conflict
    is raised as it is: it names the other transaction's operation, which is what an operator needs.
    """
    for attempt in range(1, attempts):
        try:
            return step()
        except CONFLICTS as conflict:
            wait = pause_seconds * attempt
            log.warning(
                "%s: lost a race with another Delta writer (%s); running it again in %g s (attempt %d of %d)",
                what, type(conflict).__name__, wait, attempt + 1, attempts,
            )  # fmt: skip
            time.sleep(wait)
    return step()
