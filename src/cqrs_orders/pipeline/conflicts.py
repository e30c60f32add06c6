"""Retrying a Delta write that lost a race with another writer (a nightly OPTIMIZE, a rebuild, a second job).

Delta's optimistic concurrency fails whichever transaction commits second when both touched the same files.
Every write of the pipeline is idempotent (transaction ids; a MERGE updates only when the incoming version
wins), so running the whole step again on the new snapshot is safe and gives the same tables. Failing the
stream instead would restart the job and page on-call for every maintenance run.

A conflict is recognised by what the JVM threw, not by importing ``delta.exceptions``: that module is missing
from delta-spark 4.0's Python package, and even where it exists PySpark only raises
its types once something has imported it. Depending on the release and on that import, the same conflict
reaches Python as a ``Py4JJavaError`` around ``io.delta.exceptions.ConcurrentAppendException``, or as
Delta's Python ``ConcurrentAppendException``; :func:`is_conflict` accepts every form.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

log = logging.getLogger(__name__)

#: Delta's conflict exceptions, by class name: the same names in Java (``io.delta.exceptions``, and the
#: internal classes they extend) and in Delta's Python package.
CONFLICT_CLASS_NAMES = frozenset(
    {
        "DeltaConcurrentModificationException",  # the base class of all of them
        "ConcurrentAppendException",
        "ConcurrentDeleteReadException",
        "ConcurrentDeleteDeleteException",
        "ConcurrentTransactionException",
        "ConcurrentWriteException",
        "MetadataChangedException",
        "ProtocolChangedException",
    }
)
#: Their error conditions (``getCondition()``), which Databricks documents for the same conflicts.
CONFLICT_CONDITIONS = (
    "DELTA_CONCURRENT_APPEND",
    "DELTA_CONCURRENT_DELETE_DELETE",
    "DELTA_CONCURRENT_DELETE_READ",
    "DELTA_CONCURRENT_TRANSACTION",
    "DELTA_CONCURRENT_WRITE",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
)
_DELTA_PACKAGES = ("io.delta.", "org.apache.spark.sql.delta.", "com.databricks.sql.transaction.tahoe.")
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
        except Exception as error:
            name = conflict_name(error)
            if name is None:
                raise
            wait = pause_seconds * attempt
            log.warning(
                "%s: lost a race with another Delta writer (%s); running it again in %g s (attempt %d of %d)",
                what, name, wait, attempt + 1, attempts,
            )  # fmt: skip
            time.sleep(wait)
    return step()


def is_conflict(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is one of Delta's concurrent-modification conflicts."""
    return conflict_name(error) is not None


def conflict_name(error: BaseException) -> str | None:
    """The conflict's class name (``ConcurrentAppendException``...), or ``None`` if it is no conflict."""
    for python_error in _python_chain(error):
        for cls in type(python_error).__mro__:
            if cls.__name__ in CONFLICT_CLASS_NAMES:
                return type(python_error).__name__
        java_error = getattr(python_error, "java_exception", None)  # py4j.protocol.Py4JJavaError
        if java_error is not None:
            try:
                name = _java_conflict_name(java_error)
            except Exception:  # the JVM is gone: not a conflict to retry, and the original error must show
                log.debug("Could not inspect %r", python_error, exc_info=True)
                name = None
            if name is not None:
                return name
        condition = _condition(python_error)
        if condition is not None and condition.startswith(CONFLICT_CONDITIONS):
            return condition
    return None


def _python_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _java_conflict_name(java_error) -> str | None:
    """Walk a ``java.lang.Throwable`` and its causes; match Delta's classes (and superclasses) by name."""
    for _ in range(10):  # a cause chain is short; a cycle must not hang the stream
        if java_error is None:
            return None
        thrown = java_error.getClass().getName()
        cls = java_error.getClass()
        while cls is not None:
            full_name = cls.getName()
            if full_name.startswith(_DELTA_PACKAGES) and full_name.rsplit(".", 1)[-1] in CONFLICT_CLASS_NAMES:
                return thrown.rsplit(".", 1)[-1]
            cls = cls.getSuperclass()
        java_error = java_error.getCause()
    return None


def _condition(error: BaseException) -> str | None:
    """The Spark error condition of a PySpark exception, if it has one (never raises)."""
    get_condition = getattr(error, "getCondition", None)
    if get_condition is None:
        return None
    try:
        condition = get_condition()
    except Exception:  # no JVM behind it (a Spark Connect or a hand-made error)
        return None
    return condition if isinstance(condition, str) else None
