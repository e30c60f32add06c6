"""How the API runs commands. With a group-committing store, one committer: the commands of requests that
arrive while a group commits form the next group (one ``handle_many``, one commit), each request gets its own
results, and a failing store answers every request of its group with WRITE_STORE_UNAVAILABLE. Without group
commit (Cosmos DB), a thread per request, so concurrent requests' round trips overlap."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cqrs_orders.application.handler import CommandResult
from cqrs_orders.errors import WriteStoreError
from cqrs_orders.http.committer import Committer, ThreadPerRequest, command_runner


class GatedHandler:
    """Records each ``handle_many`` call; the first one waits until ``release`` is set."""

    def __init__(self, fail: bool = False):
        self.calls: list[list[str]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self.fail = fail

    def handle_many(self, raws):
        self.calls.append(list(raws))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if self.fail:
            raise WriteStoreError("disk I/O error")
        return [CommandResult(raw, "accepted", raw, 1) for raw in raws]


async def _run(committer: Committer, handler: GatedHandler) -> list:
    first = asyncio.ensure_future(committer.run(["a"]))
    await asyncio.to_thread(handler.entered.wait, 10)  # the first group is committing now
    later = [asyncio.ensure_future(committer.run(raws)) for raws in (["b"], ["c", "d"], ["e"])]
    await asyncio.sleep(0.05)  # all three are queued behind the first group
    handler.release.set()
    return await asyncio.gather(first, *later)


def test_requests_queued_during_a_commit_form_the_next_group_and_get_their_own_results():
    handler = GatedHandler()
    committer = Committer(handler)
    try:
        answers = asyncio.run(_run(committer, handler))
    finally:
        committer.close()

    assert handler.calls == [["a"], ["b", "c", "d", "e"]]
    assert [[result["commandId"] for result in answer] for answer in answers] == [
        ["a"],
        ["b"],
        ["c", "d"],
        ["e"],
    ]
    assert committer.committed == [2, 5]


def test_a_failing_store_answers_each_request_of_the_group_unavailable():
    handler = GatedHandler(fail=True)
    committer = Committer(handler)
    try:
        answers = asyncio.run(_run(committer, handler))
    finally:
        committer.close()

    codes = [[result["error"]["code"] for result in answer] for answer in answers]
    assert codes == [["WRITE_STORE_UNAVAILABLE"]] + [["WRITE_STORE_UNAVAILABLE"] * n for n in (1, 2, 1)]


def test_a_closed_committer_refuses_new_commands():
    committer = Committer(GatedHandler())
    committer.close()

    with pytest.raises(WriteStoreError, match="shutting down"):
        asyncio.run(committer.run(["a"]))


class BarrierHandler:
    """Each command waits until two are running at once: only concurrent requests get through."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=10)

    def handle(self, raw):
        self.barrier.wait()
        return CommandResult(raw, "accepted", raw, 1)


class _Store:
    def __init__(self, group_commits: bool):
        self.group_commits = group_commits


def test_the_runner_follows_the_store_group_commit_or_a_thread_per_request():
    grouped, per_request = GatedHandler(), BarrierHandler()
    grouped.store, per_request.store = _Store(True), _Store(False)
    committer = command_runner(grouped)
    committer.close()
    assert isinstance(committer, Committer)
    assert isinstance(command_runner(per_request), ThreadPerRequest)


def test_without_group_commit_concurrent_requests_run_at_once():
    """Cosmos DB: each command is a network round trip; two requests must not queue behind one writer."""

    async def both():
        runner = ThreadPerRequest(BarrierHandler())
        return await asyncio.wait_for(asyncio.gather(runner.run(["a"]), runner.run(["b"])), 20)

    answers = asyncio.run(both())
    assert [[result["commandId"] for result in answer] for answer in answers] == [["a"], ["b"]]
