"""How the HTTP API runs commands: grouped on the event loop when the store group-commits, else each request
on a thread of its own (:func:`command_runner` picks by ``store.group_commits``).

:class:`Committer` (the SQLite store): each ``POST /commands`` hands its commands to :meth:`Committer.run`
and awaits the results. The commands of all requests that reach it in one turn of the event loop run as one
group through ``handler.handle_many``, the path ``submit --file`` takes: each command in its own savepoint,
one commit (one fsync) for the group, every result answered only once that commit is durable.

It commits on the event loop itself, which blocks the loop for the group's transaction: about a
millisecond, or as long as another process (a ``submit --file`` import, the relay) holds the store's write
lock; the read routes wait that long. Measured against a committer thread, that was ~20% more
commands/s (benchmarks/RESULTS.md): the store's work holds the interpreter lock anyway, and a thread cost two
hand-offs per group and lost the lock to the loop at each SQLite call. A thread per request was slower still
(16 threads taking turns on the lock).

:class:`ThreadPerRequest` (Cosmos DB): each command is its own transactional batch, a network round trip
that releases the interpreter lock, so concurrent requests must overlap their round trips on threads of
their own instead of queueing behind one writer (and never block the loop).
"""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from cqrs_orders.application.handler import CommandHandler, CommandResult
from cqrs_orders.errors import WriteOutcomeUnknown, WriteStoreError

logger = logging.getLogger(__name__)

#: Commands per group: a whole batch request (the API's batch limit) fits in one.
MAX_GROUP_COMMANDS = 1000

_Pending = tuple[list, asyncio.Future]


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

    async def run(self, raws: list[str | bytes]) -> list[CommandResult]:
        if self._closed:
            raise WriteStoreError("The server is shutting down; retry")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:  # the first of this turn: commit once the turn's other requests are in
            loop.call_soon(self._commit_pending)
        self._pending.append((raws, future))
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
        raws = [raw for request_raws, _ in group for raw in request_raws]
        try:  # one result per command, whatever happened to its neighbours
            results: list[CommandResult] | BaseException = self.handler.handle_many(raws)
            self.committed[0] += 1
            self.committed[1] += len(raws)
        except Exception as error:  # a bug outside any command: each request answers 500, the log has it
            logger.exception("the committer failed on a group of %d commands", len(raws))
            results = error
        start = 0
        for request_raws, future in group:
            if future.done():  # the request was cancelled (its client went away); its commands ran anyway
                start += len(request_raws)
                continue
            if isinstance(results, BaseException):
                future.set_exception(results)
            else:
                future.set_result(results[start : start + len(request_raws)])
                start += len(request_raws)


class ThreadPerRequest:
    """For a store without group commit: ``await run(raws)`` runs the request's commands in order on a
    pool thread. Once the store fails on one, the ones after it are not run (a batch is in order: the next
    may need this one) and say so; a retry with the same commandIds is safe for all of them."""

    def __init__(self, handler: CommandHandler):
        self.handler = handler

    async def run(self, raws: list[str | bytes]) -> list[CommandResult]:
        return await run_in_threadpool(self._run, raws)

    def close(self) -> None:
        """Nothing queued here: each request waited for its own thread."""

    def _run(self, raws: list[str | bytes]) -> list[CommandResult]:
        results = []
        for index, raw in enumerate(raws):
            result = self.handler.handle(raw)
            results.append(result)
            if result.error and result.error["code"] in STORE_FAILED_CODES:
                why = "the write store failed on an earlier command of this request"
                return results + [self.handler.not_run(later, why) for later in raws[index + 1 :]]
        return results


def command_runner(handler: CommandHandler) -> Committer | ThreadPerRequest:
    """The way to run the API's commands that suits the handler's store (see the module's docstring)."""
    return Committer(handler) if handler.store.group_commits else ThreadPerRequest(handler)


#: The codes of a command the store failed on (its neighbours' outcomes are their own).
STORE_FAILED_CODES = (WriteStoreError.code, WriteOutcomeUnknown.code)
