"""How the HTTP API runs commands: grouped on the event loop when the store group-commits, else each request
on a thread of its own (:func:`command_runner` picks by ``store.group_commits``).

:class:`Committer` (the SQLite store): each ``POST /commands`` hands its commands to :meth:`Committer.run`
and awaits the results. The commands of all requests that reach it in one turn of the event loop run as one
group through ``handler.handle_many``, the path ``submit --file`` takes: each command in its own savepoint,
one commit (one fsync) for the group, every result answered only once that commit is durable.

It commits on the event loop itself, which blocks the loop for the group's transaction: about a
millisecond, or as long as another process (a ``submit --file`` import, the relay) holds the store's write
lock; the read routes wait that long. Not on a committer thread: the store's work holds the interpreter
lock anyway, and a thread costs two hand-offs per group and loses the lock to the loop at each SQLite call;
nor a thread per request, whose threads would take turns on that lock (comparison: benchmarks/RESULTS.md).

:class:`ThreadPerRequest` (Cosmos DB): each command is its own transactional batch, a network round trip
that releases the interpreter lock, so concurrent requests must overlap their round trips on threads of
their own instead of queueing behind one writer (and never block the loop). Those threads are the write
pool's, which the read routes never use: a store that throttles (Cosmos DB's client retries a 429 for a while)
holds up writes, not reads. A request's commands get ``timeout`` seconds in all; when they pass, the
request is answered at once and truthfully: each command that finished with its result, the one running
with ``WRITE_OUTCOME_UNKNOWN`` (it may still commit; a retry with its ``commandId`` answers its first
result), and the ones not started with "not run" (they never will be).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from cqrs_orders.application.handler import CommandHandler, CommandResult
from cqrs_orders.application.identity import Caller
from cqrs_orders.errors import WriteOutcomeUnknown, WriteStoreError

logger = logging.getLogger(__name__)

#: Commands per group: a whole batch request (the API's batch limit) fits in one.
MAX_GROUP_COMMANDS = 1000

#: A request's commands, its caller, and the future its results go to.
_Pending = tuple[list, Caller | None, asyncio.Future]


class Committer:
    """The API's writer for a group-committing store: ``await run(raws)`` gives one result per command,
    in order, once the group holding them is durable."""

    def __init__(self, handler: CommandHandler, *, max_commands: int = MAX_GROUP_COMMANDS):
        self.handler = handler
        self.max_commands = max_commands
        self._pending: list[_Pending] = []
        self._closed = False
        #: (groups, commands) run: how well the requests are grouping.
        self.committed = [0, 0]

    async def run(self, raws: list[str | bytes], caller: Caller | None = None) -> list[CommandResult]:
        if self._closed:
            raise WriteStoreError("the server is shutting down")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:  # the first of this turn: commit once the turn's other requests are in
            loop.call_soon(self._commit_pending)
        self._pending.append((raws, caller, future))
        return await future

    def close(self) -> None:
        """Refuse new commands (what is pending was committed in its own turn of the loop)."""
        self._closed = True
        self._commit_pending()
        groups, commands = self.committed
        if groups:
            logger.info(
                "committed %d commands in %d groups (%.1f per group)", commands, groups, commands / groups
            )

    def _commit_pending(self) -> None:
        pending, self._pending = self._pending, []
        group: list[_Pending] = []
        size = 0
        for request in pending:
            if group and size + len(request[0]) > self.max_commands:
                self._commit(group)
                group, size = [], 0
            group.append(request)
            size += len(request[0])
        if group:
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        raws = [raw for request_raws, _, _ in group for raw in request_raws]
        callers = [caller for request_raws, caller, _ in group for _ in request_raws]
        try:  # one result per command, whatever happened to its neighbours
            results: list[CommandResult] | BaseException = self.handler.handle_many(raws, callers=callers)
            self.committed[0] += 1
            self.committed[1] += len(raws)
        except Exception as error:  # a bug outside any command: each request answers 500, the log has it
            logger.exception("the committer failed on a group of %d commands", len(raws))
            results = error
        start = 0
        for request_raws, _, future in group:
            if future.done():  # the request was cancelled (its client went away); its commands ran anyway
                start += len(request_raws)
                continue
            if isinstance(results, BaseException):
                future.set_exception(results)
            else:
                future.set_result(results[start : start + len(request_raws)])
                start += len(request_raws)


#: Threads of the write pool: requests whose round trips to the store overlap.
WRITE_THREADS = 32
#: A request's commands, in all, at most (seconds; ``CQRS_WRITE_TIMEOUT_SECONDS``).
WRITE_TIMEOUT_SECONDS = 60.0


class ThreadPerRequest:
    """For a store without group commit: ``await run(raws, caller)`` runs the request's commands in order
    on a thread of the write pool. Once the store fails on one, the ones after it are not run (a batch is
    in order: the next may need this one) and say so; a retry with the same commandIds is safe for all of
    them. Past ``timeout`` seconds the request is answered as the module says."""

    def __init__(
        self,
        handler: CommandHandler,
        *,
        timeout: float = WRITE_TIMEOUT_SECONDS,
        threads: int = WRITE_THREADS,
    ):
        self.handler = handler
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cqrs-write")

    async def run(self, raws: list[str | bytes], caller: Caller | None = None) -> list[CommandResult]:
        progress = _Progress(len(raws))
        running = asyncio.get_running_loop().run_in_executor(self.pool, self._run, raws, caller, progress)
        try:
            return await asyncio.wait_for(running, self.timeout)
        except asyncio.TimeoutError:
            return self._abandon(raws, progress)

    def close(self) -> None:
        """Wait for the commands that are running (each ends within the store's own timeouts): a command
        the store is committing is not cut off by a shutdown."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _run(
        self, raws: list[str | bytes], caller: Caller | None, progress: _Progress
    ) -> list[CommandResult]:
        for index, raw in enumerate(raws):
            prepared = self.handler.prepare(raw, caller)
            with progress.lock:
                if progress.abandoned:  # answered already: the rest were told they were not run
                    return progress.results
                progress.running = prepared
            result = self.handler.run_prepared(prepared)
            with progress.lock:
                progress.results.append(result)
                progress.running = None
            if result.error and result.error["code"] in STORE_FAILED_CODES:
                why = "the write store failed on an earlier command of this request"
                return progress.results + [self.handler.not_run(later, why) for later in raws[index + 1 :]]
        return progress.results

    def _abandon(self, raws: list[str | bytes], progress: _Progress) -> list[CommandResult]:
        """The answer once the time is up: nothing not yet started will start after this."""
        with progress.lock:
            progress.abandoned = True
            results, running = list(progress.results), progress.running
        logger.warning("a request's commands passed the %g s limit after %d of %d", self.timeout,
                       len(results), len(raws))  # fmt: skip
        if running is not None:
            results.append(_unknown(running, self.timeout))
        why = f"the request passed its {self.timeout:g} s limit before this command started"
        return results + [self.handler.not_run(later, why) for later in raws[len(results) :]]


class _Progress:
    """How far a request's thread got, shared with the loop under ``lock``: the results so far, the
    command running (prepared, or its rejection), and whether the loop has answered for the rest."""

    __slots__ = ("abandoned", "lock", "results", "running")

    def __init__(self, size: int):
        self.lock = threading.Lock()
        self.results: list[CommandResult] = []
        self.running = None
        self.abandoned = False


def _unknown(running, timeout: float) -> CommandResult:
    """The answer to the command that was running when the time ran out (a rejection decided before it
    reached the store stands as it is)."""
    if isinstance(running, CommandResult):
        return running
    unknown = WriteOutcomeUnknown(f"the request passed its {timeout:g} s limit while the store ran it")
    failed = {"code": unknown.code, "message": unknown.advice()}
    return CommandResult(running.command_id, "rejected", running.aggregate_id, error=failed)


def command_runner(
    handler: CommandHandler, *, write_timeout: float = WRITE_TIMEOUT_SECONDS
) -> Committer | ThreadPerRequest:
    """The way to run the API's commands that suits the handler's store (see the module's docstring).
    The committer runs on the loop and cannot be cut short: a SQLite commit takes a millisecond, or as
    long as another writer holds the store's lock (its busy timeout bounds that)."""
    if handler.store.group_commits:
        return Committer(handler)
    return ThreadPerRequest(handler, timeout=write_timeout)


#: The codes of a command the store failed on (its neighbours' outcomes are their own).
STORE_FAILED_CODES = (WriteStoreError.code, WriteOutcomeUnknown.code)
