"""The API's committer: the commands of requests that arrive while a group commits form the next group
(one ``handle_many``, one commit), each request gets its own results, and a failing store answers every
request of its group with WRITE_STORE_UNAVAILABLE."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cqrs_orders.application.handler import CommandResult
from cqrs_orders.errors import WriteStoreError
from cqrs_orders.http.committer import Committer


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
