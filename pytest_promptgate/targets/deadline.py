"""One deadline per attempt for a whole HTTP response: connecting, the headers and every byte of the body.

An HTTP client's timeouts are per operation: each read may wait the whole timeout,
so a server that sends its body one byte at a time keeps a call for as long as it
likes (issue 12 measured 121 s with ``timeout: 2, retries: 2``). :func:`event_hooks`
holds each attempt to one deadline through the event hooks of the HTTP client the
``openai`` SDK uses (``httpx``, or ``httpx2`` in recent SDKs; event hooks, the
response's ``stream`` and its ``network_stream`` extension are public API of both):

- the request hook stamps the attempt's deadline on the request;
- the response hook, called when the headers are in, checks it; then it wraps the
  body so that every chunk checks it again, and sets a watchdog that hangs up the
  connection at the deadline, which ends a read waiting for the next byte.

A passed deadline raises the library's ``ReadTimeout`` and the response is closed
unread: the SDK counts the attempt as timed out (retried, then ``APITimeoutError``)
and the connection is dropped, not left reading. Connecting and each wait for the
headers are bounded by the client's own timeout, which equals the deadline.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

#: Where the attempt's deadline rides on the request (``time.monotonic()`` seconds). Redirects copy a
#: request's extensions, so the hops of one attempt share its deadline; each SDK attempt builds a new request.
DEADLINE = "promptgate.deadline"


def event_hooks(http: ModuleType, seconds: float) -> dict[str, list[Callable[[Any], None]]]:
    """The ``event_hooks`` of a client of ``http`` (``httpx`` or ``httpx2``) holding each attempt to ``seconds``."""

    def stamp(request: Any) -> None:
        request.extensions.setdefault(DEADLINE, time.monotonic() + seconds)

    def check(response: Any) -> None:
        request = response.request
        deadline = request.extensions.get(DEADLINE)
        if deadline is not None:
            response.stream = _stream_class(http)(response, http, deadline, seconds)

    return {"request": [stamp], "response": [check]}


def _timeout(http: ModuleType, request: Any, seconds: float) -> Exception:
    return http.ReadTimeout(f"the response took longer than its deadline of {seconds:g} s", request=request)


@functools.cache
def _stream_class(http: ModuleType) -> type:
    """A body stream of ``http`` (the client checks the type) held to the attempt's deadline."""

    class DeadlineStream(http.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, response: Any, http: ModuleType, deadline: float, seconds: float) -> None:
            self._inner, self._request, self._http = response.stream, response.request, http
            self._deadline, self._seconds = deadline, seconds
            self._lock = threading.Lock()
            self._reading = True
            self._watchdog: threading.Timer | None = None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout(http, self._request, seconds)
            # Only an HTTP/1 connection is this response's alone: hanging up an HTTP/2 one would end others too.
            network = response.extensions.get("network_stream") if response.http_version.startswith("HTTP/1") else None
            sock = network.get_extra_info("socket") if network is not None else None
            if isinstance(sock, socket.socket):
                self._watchdog = threading.Timer(remaining, self._hang_up, (sock,))
                self._watchdog.daemon = True
                self._watchdog.start()

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self._inner:
                    if time.monotonic() >= self._deadline:
                        raise _timeout(self._http, self._request, self._seconds)
                    yield chunk
            except self._http.TransportError:
                if time.monotonic() >= self._deadline:  # the watchdog hung up: the read ended at the deadline
                    raise _timeout(self._http, self._request, self._seconds) from None
                raise
            finally:
                self._stop_watchdog()

        def close(self) -> None:
            self._stop_watchdog()
            self._inner.close()

        def _stop_watchdog(self) -> None:
            with self._lock:
                self._reading = False
            if self._watchdog is not None:
                self._watchdog.cancel()

        def _hang_up(self, sock: socket.socket) -> None:
            with self._lock:
                if not self._reading:
                    return
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the read blocked on it; close() would not
                except OSError:
                    pass  # already closed

    return DeadlineStream
