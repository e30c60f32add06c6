"""The loopback Cosmos DB server (``cosmos_server.py``) with faults a network gives a write: the real
azure-cosmos SDK meets them as it would meet them from an account, over a real socket.

``FaultyCosmosServer(account)`` serves the account like ``CosmosServer``; ``server.next_batch = fault`` makes
the next transactional batch (a command's commit) meet ``fault``, once:

* ``COMMIT_THEN_STALL``: the batch commits, the answer comes only after the client gave up (a timeout after
  the commit);
* ``COMMIT_THEN_DROP``: the batch commits and the connection is closed without an answer;
* ``RESET_UNREAD``: the connection is reset as the request arrives, before the account sees it (nothing is
  committed, but the client cannot tell: its request was sent).

``server.stop_listening_after(n)`` answers ``n`` more requests, each on a connection it then closes, and
stops listening before the last answer goes out: the client's next request finds no connection to reuse
and its connection is refused (a request that is never sent). ``server.stalled`` releases a stalled answer
(it is set when the server stops).
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import sys
import threading
from pathlib import Path


def _sibling(name: str):
    """A module of this folder, loaded by path (test folders are not packages; other folders use this)."""
    spec = importlib.util.spec_from_file_location(
        f"_cosmos_faults_{name}", Path(__file__).with_name(f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


cosmos_server = _sibling("cosmos_server")
cosmos_fake = _sibling("cosmos_fake")

COMMIT_THEN_STALL = "commit-then-stall"
COMMIT_THEN_DROP = "commit-then-drop"
RESET_UNREAD = "reset-unread"


class FaultyCosmosServer(cosmos_server.CosmosServer):
    def __init__(self, account):
        super().__init__(account)
        self.RequestHandlerClass = _FaultyHandler
        self.next_batch: str | None = None
        self.stalled = threading.Event()  # set: a stalled answer goes out (or its connection closes)
        self.faults_met: list[str] = []
        self.answers_left: int | None = None  # stop listening once this many more are answered
        self._count = threading.Lock()

    def take_fault(self, headers) -> str | None:
        if not headers.get("x-ms-cosmos-is-batch-request") or self.next_batch is None:
            return None
        fault, self.next_batch = self.next_batch, None
        self.faults_met.append(fault)
        return fault

    def stop_listening_after(self, requests: int) -> None:
        self.answers_left = requests

    def last_before_stop(self) -> bool | None:
        """``None``: not armed; else whether this answer is the last before the server stops listening."""
        with self._count:
            if self.answers_left is None:
                return None
            self.answers_left -= 1
            return self.answers_left <= 0

    def __exit__(self, *exc_info) -> None:
        self.stalled.set()
        if self.socket.fileno() != -1:
            super().__exit__(*exc_info)


class _FaultyHandler(cosmos_server._Handler):
    def _answer(self) -> None:
        fault = self.server.take_fault(self.headers)
        if fault == RESET_UNREAD:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if fault is None:
            last = self.server.last_before_stop()
            if last is not None:  # armed: no connection outlives its answer, and the last closes the door
                self.close_connection = True
                if last:
                    self.server.shutdown()  # from a handler thread: the serving loop ends, then
                    self.server.socket.close()  # new connections are refused
            super()._answer()
            self.close_connection = self.close_connection or last is not None
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        url = self.server.url.rstrip("/") + self.path
        self.server.account.send(cosmos_server._Request(self.command, url, dict(self.headers), body))
        if fault == COMMIT_THEN_STALL:
            self.server.stalled.wait(60)
        self.close_connection = True  # COMMIT_THEN_DROP, or a stall the client has given up on

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer
