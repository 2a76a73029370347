"""The ``provider:`` target: an OpenAI-compatible chat-completions endpoint (DESIGN §4).

Covers OpenAI, vLLM, Ollama, LM Studio and llama.cpp servers through the official
``openai`` SDK, which is imported only when a provider target first runs (the
plugin stays light). ``timeout`` is a deadline per attempt for the whole response
(:mod:`.deadline`). Retries are the SDK's: it retries timeouts, connection
errors, 408, 409, 429 and 5xx with exponential backoff (0.5 s doubling to 8 s,
less up to 25 % jitter) and waits what ``retry-after-ms`` / ``Retry-After`` say
instead when that is between 0 and 120 s (a longer one is not retried). A reply
without text (a tool call, a refusal, a null content) is an error, not ``""``.

The API key is read from the environment variable the eval file names when the
client is made (every call checks the variable is still set), and never appears
in a message, a repr, an identity or a result: a server that reflects it finds
it masked (:mod:`.secrets`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import deadline, secrets
from .base import TargetError, TargetRequest, TargetResult, scrubbed

if TYPE_CHECKING:
    import openai

    from ..schema import Provider

#: Sent when the eval names no key variable: local servers (Ollama, llama.cpp) want none,
#: and it keeps the SDK from falling back to an ambient ``OPENAI_API_KEY``.
NO_KEY = "not-needed"
INSTALL_HINT = "provider targets need the openai package: pip install 'pytest-promptgate[openai]'"
# Set by the target itself, so a param may not: they would replace what the eval's prompt and
# the provider's timeout decide, or ask for a stream this target does not read.
_RESERVED_PARAMS = frozenset({"messages", "stream", "timeout", "extra_headers", "extra_query"})
_SHOWN_CHARS = 200  # of a server's message or body, in an error


class ProviderTarget:
    """Sends each request's prompt to a chat-completions endpoint; one pooled client per instance.

    ``params`` are the variant's: they override the provider's ``params``, and a
    ``model`` key overrides the provider's ``model``. Given the eval's
    ``prompt_names``, a ``provider.prompt`` that is missing or names no prompt is
    refused here, at collection, rather than on every call. Calls are synchronous and
    thread-safe (the SDK's client is), so a runner may call one instance from
    several threads at once. :meth:`close` releases the connections.
    """

    def __init__(
        self, provider: Provider, params: Mapping[str, Any] | None = None, prompt_names: tuple[str, ...] = ()
    ) -> None:
        merged = {**provider.params, **(params or {})}
        model = merged.pop("model", provider.model)
        reserved = sorted(_RESERVED_PARAMS.intersection(merged))
        if reserved:
            raise TargetError(
                f"params {', '.join(reserved)} cannot be set for a provider target "
                "(the prompt, the provider's timeout and whole responses are the target's to decide)"
            )
        if provider.prompt is None and len(prompt_names) > 1:
            raise TargetError(_several_prompts(prompt_names))
        if provider.prompt is not None and prompt_names and provider.prompt not in prompt_names:
            raise TargetError(_unknown_prompt(provider.prompt, prompt_names))
        self.base_url = provider.base_url
        self.model = str(model)
        self.params = merged
        self.api_key_env = provider.api_key_env
        if self.api_key_env is not None:
            secrets.watch(self.api_key_env)
        self.timeout = provider.timeout
        self.retries = provider.retries
        self.prompt_name = provider.prompt
        self.identity = f"provider:{self.base_url}#{self.model}"
        self._client: openai.OpenAI | None = None
        self._sent_key = ""  # the key the client was made with, masked in every message
        self._keywords: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r})"
        )

    def __call__(self, request: TargetRequest) -> TargetResult:
        """Send the request's prompt; raise :class:`TargetError` with a one-line reason on any failure."""
        messages = self._messages(request)
        self._api_key()  # a missing key fails here, before any connection
        client = self._ensure_client()
        keywords = {k: v for k, v in self.params.items() if k in self._keywords}
        extra = {k: v for k, v in self.params.items() if k not in self._keywords}
        extra_body = {**extra.pop("extra_body", {}), **extra}
        try:
            response = client.chat.completions.with_raw_response.create(
                model=self.model, messages=messages, extra_body=extra_body or None, **keywords
            )
            body = response.content
        except Exception as exc:  # noqa: BLE001 - sorted below; anything not the SDK's is re-raised
            reason = self._failure(exc)
        else:
            return self._result(body)
        # Raised outside the except block on purpose: the SDK's exception carries the request,
        # Authorization header included, and must not ride along as __context__.
        raise TargetError(self._redact(reason))

    def close(self) -> None:
        """Close the client's connections; a later call opens a new client."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> ProviderTarget:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- request

    def _messages(self, request: TargetRequest) -> list[Any]:
        if self.prompt_name is not None:
            if self.prompt_name not in request.prompts:
                raise TargetError(_unknown_prompt(self.prompt_name, tuple(request.prompts)))
            prompt = request.prompts[self.prompt_name]
        elif request.prompt is not None:
            prompt = request.prompt
        elif len(request.prompts) == 1:
            (prompt,) = request.prompts.values()
        elif request.prompts:
            raise TargetError(_several_prompts(tuple(request.prompts)))
        else:
            raise TargetError("the eval has no prompt to send to the provider")
        if isinstance(prompt, str):
            return [{"role": "user", "content": prompt}]
        return list(prompt)

    def _api_key(self) -> str:
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise TargetError(f"environment variable {self.api_key_env} is not set (named by api_key_env)")
        return key

    def prepare(self) -> None:
        """Import the SDK and make the client, so the first call's latency is the call's alone."""
        self._api_key()
        self._ensure_client()

    def _ensure_client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                try:
                    import openai
                except ImportError:
                    raise TargetError(INSTALL_HINT) from None
                # The key is read when the client is made (a string works with every SDK
                # version; a callable key needs a recent one); each call still checks that
                # the variable is set.
                self._sent_key = self._api_key()
                # The SDK's own HTTP client (its defaults, proxies from the environment), with a deadline per attempt.
                http_client = openai.DefaultHttpxClient(event_hooks=deadline.event_hooks(_http_library(openai), self.timeout))
                self._client = openai.OpenAI(
                    base_url=self.base_url, api_key=self._sent_key, timeout=self.timeout, max_retries=self.retries,
                    http_client=http_client,
                )
                self._keywords = frozenset(inspect.signature(self._client.chat.completions.create).parameters) - {
                    "extra_body",
                    *_RESERVED_PARAMS,
                }
            return self._client

    # ----------------------------------------------------------------- outcome

    def _result(self, body: bytes) -> TargetResult:
        try:
            data = json.loads(body)
        except ValueError:
            raise self._malformed(f"the body is not JSON: {_snippet(body.decode('utf-8', 'replace'))}") from None
        if not isinstance(data, dict):
            raise self._malformed(f"expected a JSON object, got {type(data).__name__}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            said = _server_message(data.get("error"))
            raise self._malformed(
                f"no 'choices' (keys: {', '.join(data) or 'none'})" + (f"; the server said: {said}" if said else "")
            )
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(message, dict) or not isinstance(content, (str, type(None))):
            raise self._malformed("choices[0].message.content is missing or not text")
        without_text = _without_text(message, choice.get("finish_reason"))
        if without_text:
            # Graded as "", a tool call or a filtered reply would pass not_contains and fail silently.
            raise TargetError(self._redact(f"the reply from {self.base_url} has no text: {without_text}"))
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        model = data.get("model")
        # A server may echo the key anywhere it writes text: nothing it sent leaves here unscrubbed.
        return scrubbed(TargetResult(
            output=content or "",  # "" only when the model said "" (a null content is refused above)
            input_tokens=_count(usage.get("prompt_tokens")),
            output_tokens=_count(usage.get("completion_tokens")),
            model=model if isinstance(model, str) and model else self.model,
            metadata={"finish_reason": choice.get("finish_reason"), "response_id": data.get("id")},
        ), self._keys())

    def _malformed(self, why: str) -> TargetError:
        return TargetError(self._redact(f"malformed response from {self.base_url}: {why}"))

    def _failure(self, exc: Exception) -> str:
        """One line saying why a call failed; re-raises what is not the SDK's."""
        import openai

        if not isinstance(exc, openai.APIError):
            raise exc
        retries = _retries_taken(exc)
        after = f" after {_plural(retries, 'retry', 'retries')}" if retries else ""
        if isinstance(exc, openai.APIStatusError):
            said = _server_message(exc.body) or exc.response.reason_phrase
            return f"HTTP {exc.status_code} from {self.base_url}{after}: {said}"
        if isinstance(exc, openai.APITimeoutError):
            attempts = f" after {_plural(retries + 1, 'attempt', 'attempts')}" if retries is not None else ""
            return f"request to {self.base_url} timed out: the deadline of {self.timeout:g} s per attempt passed{attempts}"
        if isinstance(exc, openai.APIConnectionError):
            return f"connection to {self.base_url} failed{after}: {exc.__cause__ or exc.message}"
        return f"request to {self.base_url} failed{after}: {exc.message}"

    def _redact(self, text: str) -> str:
        """A server may echo what it was sent; never let the key through."""
        return secrets.redact(text, self._keys())

    def _keys(self) -> list[str]:
        """The keys to mask: the one the client was made with (rotated or not), and every watched one."""
        return [key for key in {self._sent_key, *secrets.values()} if key and key != NO_KEY]


def _without_text(message: Mapping[str, Any], finish_reason: Any) -> str:
    """Why a reply's message has no text to grade (a tool call, a refusal, a null content), or ``""``."""
    calls = message.get("tool_calls")
    functions = [call.get("function") for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []
    functions.append(message.get("function_call"))  # the older API's single call
    names = [str(f.get("name")) for f in functions if isinstance(f, dict)]
    content = message.get("content")
    if names and not content:
        listed = _snippet(", ".join(names))
        if len(names) == 1:
            return f"the model called a tool ({listed}) instead"
        return f"the model called {len(names)} tools ({listed}) instead"
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal.strip() and not content:
        return f"the model refused: {_snippet(refusal)}"
    if content is None:
        reason = _snippet(finish_reason) if isinstance(finish_reason, str) and finish_reason else "none given"
        return f"its message content is null (finish_reason: {reason})"
    return ""


def _http_library(openai: Any) -> ModuleType:
    """The HTTP library the SDK's client is built on: ``httpx``, or ``httpx2`` in recent SDKs."""
    for cls in openai.DefaultHttpxClient.__mro__:
        if cls.__name__ == "Client":
            return importlib.import_module(cls.__module__.partition(".")[0])
    raise TargetError(f"the openai SDK {openai.__version__} has no HTTP client this plugin knows (httpx or httpx2)")


def _several_prompts(names: tuple[str, ...]) -> str:
    return f"the eval has several prompts ({', '.join(names)}); set provider.prompt to the one to send"


def _unknown_prompt(name: str, names: tuple[str, ...]) -> str:
    return f"provider.prompt names {name!r}, which this eval does not have (prompts: {', '.join(names) or 'none'})"


def _retries_taken(exc: Exception) -> int | None:
    """How many retries the SDK made, or ``None`` when it does not say (SDKs before the header)."""
    # Recent SDKs stamp each attempt with its retry number; the error carries the last attempt.
    request = getattr(exc, "request", None)
    count = request.headers.get("x-stainless-retry-count") if request is not None else None
    try:
        return int(count) if count is not None else None
    except ValueError:
        return None


def _server_message(body: Any) -> str:
    """The message of an OpenAI-style error body (``{"message": ...}``), or the body's text, trimmed."""
    if isinstance(body, dict):
        message = body.get("message")
        return _snippet(message if isinstance(message, str) else json.dumps(body, default=str))
    if isinstance(body, str):
        return _snippet(body)
    return ""


def _snippet(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _SHOWN_CHARS else line[: _SHOWN_CHARS - 3] + "..."


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
