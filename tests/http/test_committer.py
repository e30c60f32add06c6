"""How the API runs commands. With a group-committing store, the committer: the requests of one turn of the
event loop form one group (one ``handle_many``, one commit) and each request gets its own results (the
handler answers a failing store per command: tests/command_side/test_one_outcome.py). Without group commit
(Cosmos DB), a thread per request, so concurrent requests' round trips overlap."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cqrs_orders.application.handler import CommandResult
from cqrs_orders.errors import WriteStoreError
from cqrs_orders.http.committer import Committer, ThreadPerRequest, command_runner


class RecordingHandler:
    """Records each ``handle_many`` call (one call is one group, one commit); can fail like a bug."""

    def __init__(self, fail: Exception | None = None):
        self.calls: list[list[str]] = []
        self.fail = fail

    def handle_many(self, raws, caller=None, *, callers=None):
        self.calls.append(list(raws))
        if self.fail is not None:
            raise self.fail
        return [CommandResult(raw, "accepted", raw, 1) for raw in raws]


async def _requests(committer: Committer, *requests: list[str]) -> list:
    """The requests in one turn of the event loop (as uvicorn starts the requests that arrived together)."""
    return await asyncio.gather(*(committer.run(raws) for raws in requests), return_exceptions=True)


def test_the_requests_of_one_turn_form_one_group_and_get_their_own_results():
    handler = RecordingHandler()
    committer = Committer(handler)

    answers = asyncio.run(_requests(committer, ["a"], ["b"], ["c", "d"], ["e"]))
    later = asyncio.run(_requests(committer, ["f"]))

    assert handler.calls == [["a", "b", "c", "d", "e"], ["f"]]
    assert [[result.commandId for result in answer] for answer in answers] == [
        ["a"],
        ["b"],
        ["c", "d"],
        ["e"],
    ]
    assert later == [[CommandResult("f", "accepted", "f", 1)]]
    assert committer.committed == [2, 6]


def test_a_group_never_exceeds_the_command_limit():
    handler = RecordingHandler()
    committer = Committer(handler, max_commands=3)

    asyncio.run(_requests(committer, ["a", "b"], ["c"], ["d", "e"], ["f"]))

    assert handler.calls == [["a", "b", "c"], ["d", "e", "f"]]


def test_a_bug_fails_each_request_of_the_group(caplog):
    committer = Committer(RecordingHandler(fail=RuntimeError("a bug")))

    answers = asyncio.run(_requests(committer, ["a"], ["b"]))

    assert [type(answer) for answer in answers] == [RuntimeError, RuntimeError]
    assert "the committer failed on a group of 2 commands" in caplog.text


def test_a_closed_committer_refuses_new_commands():
    committer = Committer(RecordingHandler())
    committer.close()

    with pytest.raises(WriteStoreError, match="shutting down"):
        asyncio.run(committer.run(["a"]))


class BarrierHandler:
    """Each command waits until two are running at once: only concurrent requests get through."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=10)

    def prepare(self, raw, caller=None):
        return raw

    def run_prepared(self, raw):
        self.barrier.wait()
        return CommandResult(raw, "accepted", raw, 1)


class _Store:
    def __init__(self, group_commits: bool):
        self.group_commits = group_commits


def test_the_runner_follows_the_store_group_commit_or_a_thread_per_request():
    grouped, per_request = RecordingHandler(), BarrierHandler()
    grouped.store, per_request.store = _Store(True), _Store(False)
    assert isinstance(command_runner(grouped), Committer)
    assert isinstance(command_runner(per_request), ThreadPerRequest)


def test_without_group_commit_concurrent_requests_run_at_once():
    """Cosmos DB: each command is a network round trip; two requests must not queue behind one writer."""

    async def both():
        runner = ThreadPerRequest(BarrierHandler())
        return await asyncio.wait_for(asyncio.gather(runner.run(["a"]), runner.run(["b"])), 20)

    answers = asyncio.run(both())
    assert [[result.commandId for result in answer] for answer in answers] == [["a"], ["b"]]
