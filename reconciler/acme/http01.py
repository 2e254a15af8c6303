"""http-01 answers: a file under a webroot, or certform's own small responder.

Pebble and real CAs fetch ``http://<name>/.well-known/acme-challenge/<token>``
several times; the answer must stay until the authorization is final, and be
removed afterwards whatever happened (``remove`` is idempotent).
"""

from __future__ import annotations

import contextlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from reconciler.errors import ProviderError
from reconciler.fsutil import PUBLIC_DIR_MODE, make_dirs, write_atomic

CHALLENGE_PATH = "/.well-known/acme-challenge/"


class Webroot:
    """Writes the key authorization where an existing web server serves it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, token: str) -> Path:
        return self.root / ".well-known" / "acme-challenge" / token

    def put(self, token: str, validation: str) -> None:
        path = self._path(token)
        try:
            make_dirs(path.parent, PUBLIC_DIR_MODE)
            write_atomic(path, validation.encode(), 0o644, durable=False)
        except OSError as exc:
            raise ProviderError(f"http-01: cannot write {path}: {exc.strerror or exc}") from None

    def remove(self, token: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(token))

    def close(self) -> None:
        return None


class _Responder:
    """One listening socket shared by every order that answers on its address."""

    def __init__(self, host: str, port: int) -> None:
        self.tokens: dict[str, str] = {}
        self.users = 0
        tokens = self.tokens

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = (
                    self.path[len(CHALLENGE_PATH) :]
                    if self.path.startswith(CHALLENGE_PATH)
                    else None
                )
                body = tokens.get(token or "")
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return None  # tokens are not secrets, but request logs are noise

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ProviderError(
                f"http-01 standalone: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self.server.daemon_threads = True
        # A short poll interval: shutdown() waits for the loop to notice, and the
        # default 0.5 s made every sequential order half a second slower.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()


_RESPONDERS: dict[tuple[str, int], _Responder] = {}
_LOCK = threading.Lock()


class Standalone:
    """certform's own responder on ``host:port`` while orders are pending."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.key = (host.strip("[]") or "0.0.0.0", int(port))
        with _LOCK:
            responder = _RESPONDERS.get(self.key)
            if responder is None:
                responder = _Responder(*self.key)
                _RESPONDERS[self.key] = responder
            responder.users += 1
        self.responder = responder
        self.closed = False

    def put(self, token: str, validation: str) -> None:
        self.responder.tokens[token] = validation

    def remove(self, token: str) -> None:
        self.responder.tokens.pop(token, None)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with _LOCK:  # held while closing: a new responder must not bind the port first
            self.responder.users -= 1
            if self.responder.users == 0:
                _RESPONDERS.pop(self.key, None)
                self.responder.server.shutdown()
                self.responder.server.server_close()
