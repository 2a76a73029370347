"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for provider tests.

The ``openai_server`` fixture starts a ``ThreadingHTTPServer`` on a free port in a
daemon thread and stops it after the test. Tests script it: queue one-off replies
(status, headers, body, a delay that outlasts the client's timeout, or a body
dripped one byte at a time), set the default reply, then assert on the recorded
requests. Every handler is bounded: delays are capped, delays and drips are cut
short at shutdown (a drip also ends when the client hangs up), idle keep-alive
connections time out.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

MAX_DELAY = 5.0  # seconds; no handler may hang a test for longer
CHAT_PATH = "/v1/chat/completions"


@dataclass
class Reply:
    """One scripted answer: a body (a mapping is sent as JSON, text as is) after ``delay`` seconds."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: Seconds to stall after the headers and half the body (a server dying mid-response).
    stall: float = 0.0
    #: Seconds between the bytes of the body, sent one at a time after the headers (a slow-drip server);
    #: not capped by ``MAX_DELAY``: it ends when the client hangs up or the server stops.
    drip: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """A request as the server received it."""

    path: str
    headers: dict[str, str]  # names in lower case
    json: Any  # the decoded body, or None when it was not JSON
    time: float  # time.monotonic() at arrival
    client_port: int  # tells whether the client reused its connection


def completion(
    content: str | None,
    *,
    model: str = "test-model",
    prompt_tokens: int = 7,
    completion_tokens: int = 3,
    finish_reason: str = "stop",
    id: str = "chatcmpl-test",
) -> dict[str, Any]:
    """A chat-completion response body as OpenAI sends it."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error(message: str, type: str = "server_error") -> dict[str, Any]:
    """An error body as OpenAI sends it."""
    return {"error": {"message": message, "type": type, "param": None, "code": None}}


def echo(request: Any) -> Reply:
    """The default reply: the last user message back, in the model the request named."""
    messages = request.get("messages") or []
    last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    return Reply(body=completion(str(last), model=request.get("model") or "test-model"))


class OpenAIServer:
    """The scriptable server behind the ``openai_server`` fixture."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.handler_errors: list[BaseException] = []
        self.default: Callable[[Any], Reply | str] = echo
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-server", daemon=True
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, as a provider's ``base_url``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def count(self) -> int:
        """How many requests arrived."""
        return len(self.requests)

    def queue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then go back to the default."""
        with self._lock:
            self._queue.extend(replies)

    def reply_with(self, default: Callable[[Any], Reply | str]) -> None:
        """Answer every unqueued request with ``default(request_json)``: a :class:`Reply`, or the content text."""
        self.default = default

    def gaps(self) -> list[float]:
        """Seconds between consecutive requests."""
        times = [r.time for r in self.requests]
        return [b - a for a, b in zip(times, times[1:])]

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, cutting short any handler still waiting out a delay."""
        self._closing.set()  # wake handlers sleeping on a delay
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=MAX_DELAY)

    def _answer(self, path: str, headers: dict[str, str], raw: bytes, port: int) -> Reply:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(Recorded(path, headers, body, time.monotonic(), port))
            queued = self._queue.popleft() if self._queue else None
        if queued is not None:
            return queued
        if path != CHAT_PATH:
            return Reply(404, error(f"no route {path}", "invalid_request_error"))
        if not isinstance(body, dict):
            return Reply(400, error("the body must be a JSON object", "invalid_request_error"))
        reply = self.default(body)
        return reply if isinstance(reply, Reply) else Reply(body=completion(reply, model=body.get("model") or "test-model"))

    def _wait(self, seconds: float) -> None:
        self._closing.wait(min(seconds, MAX_DELAY))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: OpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that gave up (timeouts) close their end: not a server fault.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)) and exc is not None:
            self.owner.handler_errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable
    timeout = 2.0  # an idle keep-alive connection frees its thread after this
    server: _HTTPServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        owner = self.server.owner
        reply = owner._answer(self.path, headers, raw, self.client_address[1])
        if reply.delay:
            owner._wait(reply.delay)
        self._send(reply)

    do_GET = do_POST

    def _send(self, reply: Reply) -> None:
        if isinstance(reply.body, (dict, list)):
            data, kind = json.dumps(reply.body).encode(), "application/json"
        elif isinstance(reply.body, bytes):
            data, kind = reply.body, "application/octet-stream"
        else:
            data, kind = str(reply.body or "").encode(), "text/plain; charset=utf-8"
        self.send_response(reply.status)
        headers = {"Content-Type": kind, **reply.headers, "Content-Length": str(len(data))}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.drip:
            closing = self.server.owner._closing
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                if closing.wait(reply.drip):
                    break
            self.close_connection = True
            return
        if reply.stall:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.server.owner._wait(reply.stall)
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: tests assert on recorded requests, not on stderr."""


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A running :class:`OpenAIServer`; ``.base_url`` is ``http://127.0.0.1:PORT/v1``."""
    server = OpenAIServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.handler_errors, f"the test server's handlers failed: {server.handler_errors!r}"
