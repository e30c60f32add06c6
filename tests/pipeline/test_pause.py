"""Pausing the projection for a rebuild (:mod:`cqrs_orders.pipeline.pause`), without Spark: a micro-batch is a
thread holding the gate, as ``project_batch`` holds it. And one rebuild at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cqrs_orders.errors import RebuildError
from cqrs_orders.pipeline import checkpoint_lock, pause


@pytest.fixture
def checkpoint(tmp_path) -> str:
    return str(tmp_path / "checkpoints" / "projection")


class Batches:
    """Micro-batches on threads, each holding the gate for ``seconds``; ``log`` says when each ran."""

    def __init__(self, gate: pause.PauseGate):
        self.gate, self.log, self.threads = gate, [], []

    def start(self, name: str, seconds: float) -> None:
        started = threading.Event()

        def run() -> None:
            with self.gate.batch():
                self.log.append(f"{name} starts")
                started.set()
                time.sleep(seconds)
                self.log.append(f"{name} ends")

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)
        started.wait(0.5)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(10)


def test_a_pause_waits_for_the_running_batch_and_holds_the_next_until_withdrawn(checkpoint):
    gate, stop = pause.PauseGate(), threading.Event()
    batches = Batches(gate)
    with checkpoint_lock.exclusive(checkpoint), pause.serving(checkpoint, gate, stop):  # as run_continuous
        batches.start("batch 1", seconds=1.5)
        with pause.paused(checkpoint, timeout=10) as projection_running:
            assert projection_running is True
            assert batches.log == ["batch 1 starts", "batch 1 ends"]  # acknowledged once it ended
            assert pause.is_paused(checkpoint)
            batches.start("batch 2", seconds=0)
            time.sleep(3 * pause.POLL_SECONDS)
            assert "batch 2 starts" not in batches.log  # held at its start while paused
        batches.join()
    assert batches.log == ["batch 1 starts", "batch 1 ends", "batch 2 starts", "batch 2 ends"]
    assert not pause.is_paused(checkpoint) and not pause.projection_alive(checkpoint)


def test_without_a_running_projection_nothing_is_waited_for(checkpoint):
    began = time.monotonic()
    with pause.paused(checkpoint, timeout=30) as projection_running:
        assert projection_running is False
        assert pause.is_requested(checkpoint)
    assert time.monotonic() - began < 1
    assert not pause.is_requested(checkpoint)  # withdrawn


def test_a_projection_started_during_a_rebuild_runs_no_batch_until_it_is_done(checkpoint):
    gate, stop = pause.PauseGate(), threading.Event()
    batches = Batches(gate)
    with pause.paused(checkpoint, timeout=10), pause.serving(checkpoint, gate, stop):
        assert pause.is_paused(checkpoint)  # before serving yielded: before any batch
        batches.start("batch 1", seconds=0)
        time.sleep(3 * pause.POLL_SECONDS)
        assert batches.log == []
        stop.set()  # a projection told to stop is released at once, paused or not
        batches.join()
        assert batches.log == ["batch 1 starts", "batch 1 ends"]


def test_a_projection_that_does_not_answer_fails_the_rebuild_in_time_and_the_request_is_withdrawn(checkpoint):
    pause._write_lease(checkpoint, pause.ALIVE_FILE)  # alive (it says), but no watcher answers
    began = time.monotonic()
    refused = pytest.raises(RebuildError, match=r"did not pause within 1 s.*nothing was changed")
    with checkpoint_lock.exclusive(checkpoint), refused, pause.paused(checkpoint, timeout=1):
        pytest.fail("must not get here")
    assert 1 <= time.monotonic() - began < 3
    assert not pause.is_requested(checkpoint)


def test_a_projection_killed_within_its_lease_is_not_waited_for(checkpoint):
    """Its liveness has not expired yet, but its checkpoint's lock is free: the kernel released it."""
    pause._write_lease(checkpoint, pause.ALIVE_FILE)
    with checkpoint_lock.exclusive(checkpoint):
        pass  # the lock file exists, as a projection leaves it
    with pause.paused(checkpoint, timeout=30) as projection_running:
        assert projection_running is False


def test_a_second_request_is_refused_while_the_first_is_live(checkpoint):
    refused = pytest.raises(RebuildError, match="already requested")
    with pause.paused(checkpoint, timeout=1), refused, pause.paused(checkpoint, timeout=1):
        pytest.fail("must not get here")


def test_a_request_left_by_a_killed_rebuild_expires(checkpoint, monkeypatch):
    monkeypatch.setattr(pause, "LEASE_SECONDS", 0.5)
    pause._write_lease(checkpoint, pause.REQUEST_FILE)  # never renewed: its rebuild died
    assert pause.is_requested(checkpoint)
    time.sleep(0.6)
    assert not pause.is_requested(checkpoint)
    gate, stop = pause.PauseGate(), threading.Event()
    with pause.serving(checkpoint, gate, stop):
        assert not pause.is_paused(checkpoint)
        with gate.batch():  # batches run
            pass


def test_a_second_rebuild_is_refused_by_the_lock_before_spark_starts(settings, cli, tmp_path):
    """Another process holds the rebuild lock (a rebuild running): ``rebuild`` says so and exits 2; the
    fast tier refuses to start Spark, so this also shows it was never asked for."""
    from cqrs_orders.pipeline.rebuild import LOCK_FOLDER

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from cqrs_orders.pipeline.checkpoint_lock import exclusive\n"
            "with exclusive(sys.argv[1]):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
            settings.checkpoint(LOCK_FOLDER),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (("rebuild",), ("rebuild", "--rollback")):
            result = cli(*args)
            assert result.exit_code == 2, result.stderr
            assert "Another rebuild or rollback is running on this warehouse" in result.stderr
            assert f"(pid {holder.pid})" in result.stderr
    finally:
        holder.kill()
        holder.wait()


def _request_of(checkpoint: str, pid: int) -> None:
    """A live request, as the process ``pid`` of this machine writes it."""
    pause._write_lease(checkpoint, pause.REQUEST_FILE)
    marker = Path(checkpoint) / pause.REQUEST_FILE
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "pid": pid}))


def test_a_request_left_by_a_dead_requester_is_taken_over_under_the_requesters_lock(checkpoint, tmp_path):
    """Only the holder of the requesters' lock takes a live request over, and only when its process is gone:
    otherwise the request holds until its lease expires."""
    lock = str(tmp_path / "checkpoints" / "_rebuild")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    _request_of(checkpoint, int(gone.stdout))
    refused = pytest.raises(RebuildError, match="already requested")
    with refused, pause.paused(checkpoint, timeout=1, requesters_lock=lock):  # the lock not held
        pytest.fail("must not get here")

    with checkpoint_lock.exclusive(lock), pause.paused(checkpoint, timeout=1, requesters_lock=lock):
        assert json.loads((Path(checkpoint) / pause.REQUEST_FILE).read_text())["pid"] == os.getpid()
    assert not pause.is_requested(checkpoint)

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _request_of(checkpoint, alive.pid)
        with checkpoint_lock.exclusive(lock), refused, pause.paused(checkpoint, 1, requesters_lock=lock):
            pytest.fail("must not get here")
    finally:
        alive.kill()
        alive.wait()
