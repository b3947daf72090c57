"""Real receivers on loopback for notification tests: an SMTP server (aiosmtpd) and an HTTP
server that checks the HMAC signature of each post, either of which can be told to fail or
to hang."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import socket
import threading
import time
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpReceiver:
    """Collects every email it is sent (parsed), on 127.0.0.1."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.port = free_port()
        receiver = self

        class Handler:
            async def handle_DATA(self, server: t.Any, session: t.Any, envelope: t.Any) -> str:
                receiver.messages.append(email.message_from_bytes(envelope.content))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def ids(self) -> list[str]:
        return [m["Idempotency-Key"] for m in self.messages]


class HttpReceiver:
    """Records each post with whether its signature is right; ``mode`` ok, fail (HTTP 500) or
    hang (never answers in time)."""

    def __init__(self, secret: str | None = None, mode: str = "ok", port: int = 0) -> None:
        self.secret = secret
        self.mode = mode
        self.posts: list[dict[str, t.Any]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(
                    {
                        "key": self.headers.get("Idempotency-Key"),
                        "payload": json.loads(body),
                        "signed": receiver._signed(self.headers, body),
                        "path": self.path,
                    }
                )
                if receiver.mode == "hang":
                    receiver.release.wait(60)
                    return
                self.send_response(500 if receiver.mode == "fail" else 200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: t.Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def _signed(self, headers: t.Any, body: bytes) -> bool | None:
        if self.secret is None:
            return None
        stamp = headers.get("X-AccountHealth-Timestamp", "")
        expected = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        given = headers.get("X-AccountHealth-Signature", "")
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        return fresh and hmac.compare_digest(given, "sha256=" + expected.hexdigest())

    def __enter__(self) -> HttpReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def keys(self) -> list[str]:
        return [p["key"] for p in self.posts]
