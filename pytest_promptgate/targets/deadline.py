"""One deadline per attempt for a whole HTTP response: connecting, the headers and every byte of the body.

An HTTP client's timeouts are per operation: each read may wait the whole timeout,
so a server that sends its body one byte at a time keeps a call for as long as it
likes (issue 12 measured 121 s with ``timeout: 2, retries: 2``). :func:`event_hooks`
holds each attempt to one deadline through the event hooks of the HTTP client the
``openai`` SDK uses (``httpx``, or ``httpx2`` in recent SDKs; the hooks are public
API of both): the request hook stamps the attempt's deadline on the request; the
response hook, called when the headers are in, checks it, shortens the wait for
each chunk of the body to what remains, and wraps the body so that every chunk
checks it again. A passed deadline raises the library's ``ReadTimeout`` and the
response is closed unread: the SDK counts the attempt as timed out (retried, then
``APITimeoutError``) and the connection is dropped, not left reading.

Connecting and each wait for the headers are bounded by the client's own timeout
(equal to the deadline), and the deadline is checked as soon as the headers are in.
"""

from __future__ import annotations

import functools
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
        if deadline is None:
            return
        remaining = _remaining(http, request, deadline, seconds)
        # The body is read after this hook: its reads take the request's timeouts then (httpcore reads them when
        # the body starts), so each wait is shortened to what remains. The chunk check below holds either way.
        timeouts = request.extensions.get("timeout")
        if isinstance(timeouts, dict) and timeouts.get("read") is not None:
            request.extensions["timeout"] = {**timeouts, "read": min(timeouts["read"], remaining)}
        response.stream = _stream_class(http)(response.stream, http, request, deadline, seconds)

    return {"request": [stamp], "response": [check]}


def _remaining(http: ModuleType, request: Any, deadline: float, seconds: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise http.ReadTimeout(f"the response took longer than its deadline of {seconds:g} s", request=request)
    return remaining


@functools.cache
def _stream_class(http: ModuleType) -> type:
    """A body stream of ``http`` (the client checks the type) that checks the deadline at every chunk."""

    class DeadlineStream(http.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, http: ModuleType, request: Any, deadline: float, seconds: float) -> None:
            self._inner, self._http, self._request = inner, http, request
            self._deadline, self._seconds = deadline, seconds

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                _remaining(self._http, self._request, self._deadline, self._seconds)
                yield chunk

        def close(self) -> None:
            self._inner.close()

    return DeadlineStream
