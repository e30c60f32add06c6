"""How the HTTP API runs commands: grouped by one writer thread when the store group-commits, else each
request on a thread of its own (:func:`command_runner` picks by ``store.group_commits``).

:class:`Committer` (the SQLite store):
Each ``POST /commands`` hands its commands to :meth:`Committer.run` and awaits the results. One thread takes
everything queued (up to :data:`MAX_GROUP_COMMANDS`) and runs it through ``handler.handle_many``, the path
``submit --file`` takes: each command in its own savepoint, one commit (one fsync) for the group, every
result answered only once that commit is durable. While a group commits, the event loop goes on reading and
framing the next requests, so HTTP work overlaps the fsync instead of queueing behind it.

Why not a thread per request there: with 16 concurrent callers, a pool thread per request costs a hand-off
each way and 16 threads taking turns on the interpreter lock; here it is one hand-off per group.

:class:`ThreadPerRequest` (Cosmos DB): each command is its own transactional batch, a network round trip
that releases the interpreter lock, so concurrent requests must overlap their round trips instead of
queueing behind one writer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from cqrs_orders.application.handler import CommandHandler, CommandResult
from cqrs_orders.errors import WriteStoreError

logger = logging.getLogger(__name__)

#: Commands per group: a whole batch request (1,000 at most) fits in one.
MAX_GROUP_COMMANDS = 1000


@dataclass(eq=False)
class _Request:
    raws: list[str | bytes]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


class Committer:
    """The API's one writer: ``await run(raws)`` gives one result dict per command, in order."""

    def __init__(self, handler: CommandHandler, *, max_commands: int = MAX_GROUP_COMMANDS):
        self.handler = handler
        self.max_commands = max_commands
        self._queue: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="cqrs-orders-committer", daemon=True)
        self._thread.start()
        #: (groups, commands) run: how well the requests are grouping.
        self.committed = [0, 0]

    async def run(self, raws: list[str | bytes]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        request = _Request(raws, loop, loop.create_future())
        with self._ready:
            if self._closed:
                raise WriteStoreError("The server is shutting down; retry")
            self._queue.append(request)
            self._ready.notify()
        return await request.future

    def close(self) -> None:
        """Answer what is queued, then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()
        groups, commands = self.committed
        if groups:
            logger.info(
                "committed %d commands in %d groups (%.1f per group)", commands, groups, commands / groups
            )

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                group = [self._queue.popleft()]
                size = len(group[0].raws)
                while self._queue and size + len(self._queue[0].raws) <= self.max_commands:
                    size += len(self._queue[0].raws)
                    group.append(self._queue.popleft())
            self._commit(group)

    def _commit(self, group: list[_Request]) -> None:
        raws = [raw for request in group for raw in request.raws]
        try:
            results: list[dict[str, Any]] | BaseException = [
                result.to_dict() for result in self.handler.handle_many(raws)
            ]
            self.committed[0] += 1
            self.committed[1] += len(raws)
        except WriteStoreError as error:  # nothing of the group was committed: each caller may retry
            logger.warning("the write store failed: %s", error)
            failed = {"code": error.code, "message": f"the write store failed: {error}; retry later"}
            results = [CommandResult(None, "rejected", error=failed).to_dict() for _ in raws]
        except Exception as error:  # a bug: each request of the group answers 500, the log has the details
            logger.exception("the committer failed on a group of %d commands", len(raws))
            results = error
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
        start = 0
        for request in group:
            if isinstance(results, BaseException):
                answer: Any = results
            else:
                answer = results[start : start + len(request.raws)]
                start += len(request.raws)
            answers.setdefault(request.loop, []).append((request.future, answer))
        # One wake-up per event loop and group (each call_soon_threadsafe writes to the loop's self-pipe).
        for loop, settled in answers.items():
            loop.call_soon_threadsafe(_settle, settled)


class ThreadPerRequest:
    """For a store without group commit: ``await run(raws)`` runs the request's commands in order on a
    pool thread; if the store fails, that command and the ones after it answer WRITE_STORE_UNAVAILABLE
    (not run; a retry with the same commandIds is safe for the ones before)."""

    def __init__(self, handler: CommandHandler):
        self.handler = handler

    async def run(self, raws: list[str | bytes]) -> list[dict[str, Any]]:
        return await run_in_threadpool(self._run, raws)

    def close(self) -> None:
        """Nothing queued here: each request waited for its own thread."""

    def _run(self, raws: list[str | bytes]) -> list[dict[str, Any]]:
        results = []
        for index, raw in enumerate(raws):
            try:
                results.append(self.handler.handle(raw).to_dict())
            except WriteStoreError as error:
                logger.warning("the write store failed: %s", error)
                failed = {"code": error.code, "message": f"the write store failed: {error}; retry later"}
                results.extend(CommandResult(None, "rejected", error=failed).to_dict() for _ in raws[index:])
                break
        return results


def command_runner(handler: CommandHandler) -> Committer | ThreadPerRequest:
    """The way to run the API's commands that suits the handler's store (see the module's docstring)."""
    return Committer(handler) if handler.store.group_commits else ThreadPerRequest(handler)


def _settle(answers: list[tuple[asyncio.Future, Any]]) -> None:
    for future, answer in answers:
        if future.done():  # the request was cancelled (its client went away); its commands ran all the same
            continue
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)
