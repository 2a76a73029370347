"""What a target is and what it returns.

A target turns a :class:`TargetRequest` (rendered prompts, vars, params) into a
:class:`TargetResult`. Targets may be sync or async; the runner awaits what needs
awaiting. Everything here is light: importing it loads no client library.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, Union

Rendered = Union[str, list]  # a text prompt, or chat messages [{"role", "content"}]


@dataclass(frozen=True)
class TargetRequest:
    """What a target is called with for one run of one case."""

    prompt: Rendered | None
    prompts: dict[str, Rendered]
    vars: dict[str, Any]
    params: dict[str, Any]
    variant: str


@dataclass
class TargetResult:
    """What a target produced: the output text and what it cost.

    Targets written by a team may return a plain string, this class, or any
    object or mapping with an ``output`` and, optionally, the other fields.
    """

    output: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    model: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = 0.0


class TargetError(Exception):
    """The target could not produce an output; the case becomes an error case."""


class Target(Protocol):
    """Anything that answers a :class:`TargetRequest`."""

    #: Stable description (``module:callable``, provider URL + model): the ``target`` param and cache key.
    identity: str

    def __call__(self, request: TargetRequest) -> TargetResult | Awaitable[TargetResult]: ...

    # Optional: ``prepare()`` does one-time set-up (imports, clients) before the first
    # timed call, so that set-up is not counted as the target's latency; it must be
    # thread-safe, since calls may run on several threads (``--prompt-concurrency``).
    # Optional: ``instant = True`` says a call returns at once (``echo``), so running
    # it on a thread would cost more than it saves.


_RESULT_FIELDS = ("input_tokens", "output_tokens", "cost_usd", "model", "metadata")


def as_result(value: Any, where: str) -> TargetResult:
    """Normalise what a target returned into a :class:`TargetResult`, or raise :class:`TargetError`.

    The watched API keys are masked in it (:func:`scrubbed`), whatever the target.
    """
    return scrubbed(_as_result(value, where))


def scrubbed(result: TargetResult, secrets: Iterable[str] | None = None) -> TargetResult:
    """``result`` with ``secrets`` (the watched API keys unless given) masked in its text fields and metadata."""
    from . import secrets as keys  # light: the standard library only

    found = keys.values() if secrets is None else list(secrets)
    if not found:
        return result
    return replace(
        result,
        output=keys.redact(result.output, found),
        model=keys.redact(result.model, found) if isinstance(result.model, str) else result.model,
        metadata=keys.redact_all(result.metadata, found),
    )


def _as_result(value: Any, where: str) -> TargetResult:
    if isinstance(value, TargetResult):
        return value
    if isinstance(value, str):
        return TargetResult(output=value)
    if isinstance(value, Mapping):
        if "output" not in value:
            raise TargetError(
                f"{where} returned a mapping without 'output' (keys: {', '.join(map(str, value)) or 'none'}); "
                "return a string, or a mapping/object with 'output'"
            )
        get = value.get
    elif hasattr(value, "output"):
        get = lambda name, default=None: getattr(value, name, default)  # noqa: E731
    else:
        raise TargetError(
            f"{where} returned {type(value).__name__}; expected a string, or a mapping/object with 'output'"
        )
    output = get("output")
    return TargetResult(
        output=output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str),
        input_tokens=_int_or_none(get("input_tokens")),
        output_tokens=_int_or_none(get("output_tokens")),
        cost_usd=float(get("cost_usd")) if get("cost_usd") is not None else None,
        model=get("model"),
        metadata=dict(get("metadata") or {}),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
