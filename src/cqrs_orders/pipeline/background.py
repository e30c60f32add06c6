"""A helper thread that lives exactly as long as a block: the projection's gold refresher and its pause
watcher both run beside the streaming query and must be stopped and joined however the block ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def beside(target: Callable[..., None], *args, name: str) -> Iterator[None]:
    """Run ``target(done, *args)`` on a daemon thread while the block runs; when the block ends, set
    ``done`` (the thread's signal to return) and wait for it."""
    done = threading.Event()
    thread = threading.Thread(target=target, args=(done, *args), name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
