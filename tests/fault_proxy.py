"""A tiny HTTP proxy in front of the moto server that injects AWS faults.

``fail[action] = [status, ...]`` makes the next requests for that API action
(the ``Action`` form field, or the ``X-Amz-Target`` header) answer with those
HTTP statuses and an AWS-style throttling body, before forwarding again.  It
records every action it forwarded (and its request body), so tests can count
calls and read what was sent.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

THROTTLE_XML = (
    b'<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type>'
    b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
    b"<RequestId>fault</RequestId></ErrorResponse>"
)
THROTTLE_JSON = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fail: dict[str, list[int]] = {}
        self.calls: list[str] = []
        self.bodies: list[tuple[str, bytes]] = []
        self.injected: list[tuple[str, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            forward_headers: ClassVar[tuple[str, ...]] = ("content-type", "x-amz-target")

            def log_message(self, *args: object) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = proxy.action_of(self.headers.get("X-Amz-Target"), body, self.path)
                pending = proxy.fail.get(action)
                if pending:
                    status = pending.pop(0)
                    proxy.injected.append((action, status))
                    json_api = bool(self.headers.get("X-Amz-Target"))
                    payload = THROTTLE_JSON if json_api else THROTTLE_XML
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-amz-json-1.1" if json_api
                                     else "text/xml")  # fmt: skip
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                proxy.calls.append(action)
                proxy.bodies.append((action, body))
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=body or None, method=self.command
                )
                for key, value in self.headers.items():
                    if key.lower() not in ("host", "content-length"):
                        request.add_header(key, value)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, headers, data = response.status, response.headers, response.read()
                except urllib.error.HTTPError as error:
                    status, headers, data = error.code, error.headers, error.read()
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def action_of(target: str | None, body: bytes, path: str) -> str:
        if target:
            return target.rsplit(".", 1)[-1]
        fields = urllib.parse.parse_qs(body.decode(errors="replace"))
        if "Action" in fields:
            return fields["Action"][0]
        return path.split("?", 1)[0]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
