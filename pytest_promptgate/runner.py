"""Getting outputs for items: calling targets, sync or async, timed and priced.

One :class:`Runner` per process and session. Async targets and judges share one
event loop owned by the runner, so clients they keep (connection pools) stay
valid from call to call; the loop is never the one a pytest-asyncio test runs on,
because eval items are not coroutines.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .targets import Target, TargetError, TargetRequest, TargetResult, as_result
from .targets.pricing import cost_usd

_OWN_CODE = str(Path(__file__).parent)


class Runner:
    """Calls targets and judges for the items of this process."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._judges: dict[str, Target] = {}
        self._targets: list[Any] = []

    def call(self, target: Target, request: TargetRequest, prices: Mapping[str, tuple[float, float]]) -> TargetResult:
        """One call of ``target``; any failure becomes a :class:`TargetError` with a readable summary."""
        try:
            prepare = getattr(target, "prepare", None)
            if prepare is not None:  # one-time set-up (imports, clients) is not the target's latency
                prepare()
            start = time.perf_counter()
            value = target(request)
            if inspect.isawaitable(value):
                value = self._await(value)
        except TargetError:
            raise
        except Exception as exc:
            raise TargetError(describe_exception(f"target {target.identity}", exc)) from exc
        latency_ms = (time.perf_counter() - start) * 1000
        result = as_result(value, f"target {target.identity}")
        result.latency_ms = latency_ms
        if result.cost_usd is None:
            result.cost_usd = cost_usd(result.model, result.input_tokens, result.output_tokens, prices)
        return result

    def own(self, target: Any) -> None:
        """Close ``target`` (its client, its connections) when the runner closes."""
        self._targets.append(target)

    def judge(self, spec: Any, build: Callable[[Any], Target], prompt: Any,
              prices: Mapping[str, tuple[float, float]]) -> TargetResult:
        """Call a judge (any target spec) with a rendered prompt; judges are built once per spec."""
        key = repr(spec)
        judge = self._judges.get(key)
        if judge is None:
            judge = self._judges[key] = build(spec)
        request = TargetRequest(prompt=prompt, prompts={"judge": prompt}, vars={}, params={}, variant="judge")
        return self.call(judge, request, prices)

    def _await(self, awaitable: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(awaitable)

    def close(self) -> None:
        """Close judges' clients and the event loop."""
        for target in [*self._targets, *self._judges.values()]:
            close = getattr(target, "close", None)
            if close is not None:
                close()
        if self._loop is not None:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
            self._loop = None


def describe_exception(what: str, exc: BaseException) -> str:
    """``what raised Type: message`` and the innermost frame outside this plugin (file:line, code)."""
    summary = f"{what} raised {type(exc).__name__}: {exc}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_OWN_CODE)]
    if frames:
        frame = frames[-1]
        summary += f"\n  at {_short_path(frame.filename)}:{frame.lineno} in {frame.name}"
        if frame.line:
            summary += f"\n    {frame.line}"
    return summary


def _short_path(filename: str) -> str:
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename
