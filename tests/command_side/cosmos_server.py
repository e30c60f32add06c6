"""The in-memory Cosmos DB account of ``cosmos_fake.FakeCosmosAccount``, served over HTTP on a loopback port
for processes that cannot be handed a transport object: the app and the job tasks the bundle flow test starts
talk to it with the real azure-cosmos SDK, as to an account's endpoint.

The account answers requests (method, URL, headers, body) exactly as it does in-process; this module only
carries them over the wire.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class _Request:
    """What the account reads of a request (the attributes of azure-core's ``HttpRequest`` it uses)."""

    method: str
    url: str
    headers: dict = field(default_factory=dict)
    body: bytes | None = None


class CosmosServer(ThreadingHTTPServer):
    """``CosmosServer(account)`` serves ``account.send`` at :attr:`url`; ``with`` starts and stops it."""

    daemon_threads = True

    def __init__(self, account):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.account = account
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def __enter__(self) -> CosmosServer:
        self.account.endpoint = self.url  # the account advertises the address it is served at
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(10)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        request = _Request(self.command, self.server.url.rstrip("/") + self.path, dict(self.headers), body)
        response = self.server.account.send(request)  # the account makes each request atomic
        payload = response.body()
        self.send_response(response.status_code, response.reason)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass
