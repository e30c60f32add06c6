"""Group commit: many threads' units of work, committed together by whichever caller reaches the front.

Callers queue up; the one at the head of the queue becomes the group's leader and runs the store's
``commit_group`` for everyone queued (its own request first). Nobody in the group is answered before that
commit returned, so an answer always means durable. The design follows LevelDB's write queue: no background
thread, and a lone caller leads its own group at once, with no hand-off.

Storage-agnostic on purpose: the SQLite store supplies the transaction, this module only decides who leads,
who is in a group, and who is told what.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cqrs_orders.errors import WriteStoreError

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Request:
    """One caller's units of work, waiting in the queue; ``done`` once their group committed (or failed).
    The leader stores one outcome per work (a result, or the exception that work raised)."""

    works: list
    wake: threading.Condition | None = None  # made only by a caller that has to wait
    done: bool = False
    outcomes: list = field(default_factory=list)


#: ``commit_group(take)``: open a transaction, call ``take()`` for the group, set each request's
#: ``outcomes``, commit; return the seconds the commit took, or ``None`` if nothing was committed.
CommitGroup = Callable[[Callable[[], list[Request]]], "float | None"]


class GroupCommitQueue:
    """The queue of one store's writers in this process."""

    def __init__(self, *, max_commands: int, max_gather_seconds: float):
        self.max_commands = max_commands
        self.max_gather_seconds = max_gather_seconds
        self._lock = threading.Lock()
        self._queue: deque[Request] = deque()
        self._arrivals = threading.Condition(self._lock)
        self._expected = 1  # requests the next group waits for (see _gather)
        self._gather_seconds = 0.0
        #: (groups, commands) committed: how well the grouping works.
        self.committed = [0, 0]

    def waiting(self) -> int:
        """Requests queued for (or in) a group right now (for tests and diagnostics)."""
        with self._lock:
            return len(self._queue)

    def run(self, works: Sequence, commit_group: CommitGroup) -> list:
        """The outcomes of ``works``, once the group holding them committed (or failed as a whole)."""
        request = Request(list(works))
        with self._lock:
            self._queue.append(request)
            if len(self._queue) >= self._expected:  # a leader gathering its group has all it waits for
                self._arrivals.notify()
            if self._queue[0] is not request:  # someone else leads: wait for them (a lone caller never does)
                request.wake = threading.Condition(self._lock)
            while not request.done and self._queue[0] is not request:
                request.wake.wait()
            if request.done:
                return request.outcomes
        self._lead(commit_group)
        return request.outcomes

    def _lead(self, commit_group: CommitGroup) -> None:
        group: list[Request] = []

        def take() -> list[Request]:
            """Called by ``commit_group`` once it holds the store's write lock: whoever queued while the
            lock was awaited joins this group."""
            with self._lock:
                self._gather()
                size = 0
                for request in self._queue:
                    if group and size + len(request.works) > self.max_commands:
                        break
                    group.append(request)
                    size += len(request.works)
            return group

        failure: BaseException | None = None
        commit_seconds = None
        try:
            commit_seconds = commit_group(take)
        except BaseException as error:  # the group's transaction failed: nobody in it was committed
            failure = error
        finally:
            self._finish(group, failure, commit_seconds)
        if failure is not None and not isinstance(failure, Exception):
            raise failure  # KeyboardInterrupt and the like still stop this thread

    def _finish(self, group: list[Request], failure: BaseException | None, commit_seconds) -> None:
        """Answer the group, and wake the next head to lead the next one."""
        with self._lock:
            if not group:  # failed before the group was taken: it is the leader's request alone
                group.append(self._queue[0])
            answer = failure
            if failure is not None and not isinstance(failure, Exception):
                answer = WriteStoreError(
                    f"The group commit was interrupted ({type(failure).__name__}); retry"
                )
            for request in group:
                self._queue.popleft()
                request.done = True
                if answer is not None:
                    request.outcomes = [answer] * len(request.works)
                if request.wake is not None:
                    request.wake.notify()
            if failure is None and commit_seconds is not None:
                size = sum(len(request.works) for request in group)
                self.committed[0] += 1
                self.committed[1] += size
                # Its callers will most likely be back, beside those already queued: the next group waits
                # a moment for that many, at most as long as a commit takes here.
                self._expected = len(group) + len(self._queue)
                self._gather_seconds = min(commit_seconds, self.max_gather_seconds)
                logger.debug("group commit: %d commands in %d requests", size, len(group))
            if self._queue and self._queue[0].wake is not None:
                self._queue[0].wake.notify()

    def _gather(self) -> None:
        """Wait (queue lock held) until as many requests are queued as the last group saw callers, or at
        most as long as a commit takes: with a few busy callers each group then holds nearly all of them,
        instead of alternating between big and small groups. A lone caller expects only itself and never
        waits."""
        if len(self._queue) >= self._expected:
            return
        deadline = time.monotonic() + self._gather_seconds
        while len(self._queue) < self._expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrivals.wait(remaining)
