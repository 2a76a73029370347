"""Measuring items: calling targets (sync or async, timed and priced), repeating, grading.

One :class:`Runner` per process and session. An item hands it a :class:`Job` and
its resolved target; the runner returns the case's :class:`CaseResult`. Async
targets and judges share one event loop owned by the runner, so clients they
keep (connection pools) stay valid from call to call; the loop is never the one
a pytest-asyncio test runs on, because eval items are not coroutines.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dataclasses import dataclass

from .graders import BaseGrader, GradeContext, grade_run
from .results import CaseResult, RunRecord, combine_runs
from .schema import Grader, LoadedCase, LoadedVariant, display_path
from .targets import Target, TargetError, TargetRequest, TargetResult, as_result, build
from .targets.cache import ResponseCache
from .targets.pricing import cost_usd

_OWN_CODE = str(Path(__file__).parent)


@dataclass(frozen=True)
class Job:
    """What measuring one item takes: the case, its variant, its graders and the eval's settings."""

    eval: str
    variant: LoadedVariant
    case: LoadedCase
    graders: list[tuple[Grader, BaseGrader]]
    repeat: int
    repeat_pass: float
    prices: Mapping[str, tuple[float, float]]

    def request(self) -> TargetRequest:
        """The target's input: the variant's prompts rendered with the case's vars."""
        prompts = {name: prompt.render(self.case.vars) for name, prompt in self.variant.prompts.items()}
        return TargetRequest(
            prompt=next(iter(prompts.values())) if len(prompts) == 1 else None,
            prompts=prompts,
            vars=dict(self.case.vars),
            params=dict(self.variant.params),
            variant=self.variant.name,
        )


class Runner:
    """Calls targets and judges for the items of this process."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._judges: dict[str, Target] = {}
        self._targets: list[Any] = []
        #: The response cache (``--prompt-cache``); set by collection, ``None`` when nothing configured it.
        self.cache: ResponseCache | None = None

    def measure(self, job: Job, target: Target, judge: Callable[[Any, Any], TargetResult]) -> CaseResult:
        """Run the target ``job.repeat`` times and grade every run.

        A run whose target fails, or a grader that raises, stops the case: it raises
        :class:`TargetError` (naming the run when there are several) or
        :class:`~pytest_promptgate.graders.GraderFailed`.
        """
        case, request = job.case, job.request()
        runs: list[RunRecord] = []
        for k in range(1, job.repeat + 1):
            try:
                result = self.call(target, request, job.prices, run=k)
            except TargetError as exc:
                if job.repeat == 1:
                    raise
                raise TargetError(f"run {k}/{job.repeat}: {exc}") from exc
            ctx = GradeContext(output=result.output, expected=case.expected, vars=case.vars, result=result,
                               case_id=case.id, variant=job.variant.name, judge=judge)
            runs.append(grade_run(job.graders, ctx))
        passed, score, flaky = combine_runs(runs, job.repeat_pass)
        return CaseResult(
            eval=job.eval, variant=job.variant.name, case_id=case.id, passed=passed, score=score,
            runs=tuple(runs), flaky=flaky, vars=dict(case.vars), expected=case.expected, tags=case.tags,
        )

    def call(self, target: Target, request: TargetRequest, prices: Mapping[str, tuple[float, float]],
             run: int | None = None) -> TargetResult:
        """One call of ``target`` (run ``run`` of a case; ``None`` for a judge); any failure becomes a
        :class:`TargetError` with a readable summary.

        With a response cache the result may be a recorded one, with the recorded call's latency
        (docs/cache.md); it is priced like a fresh one.
        """
        cache = self.cache
        result = cache.read(target, request, run) if cache is not None else None
        if result is None:
            result = self._call(target, request)
            if cache is not None:
                cache.write(target, request, run, result)  # as the target answered it, before pricing
        if result.cost_usd is None:
            result.cost_usd = cost_usd(result.model, result.input_tokens, result.output_tokens, prices)
        return result

    def _call(self, target: Target, request: TargetRequest) -> TargetResult:
        try:
            prepare = getattr(target, "prepare", None)
            if prepare is not None:  # one-time set-up (imports, clients) is not the target's latency
                prepare()
            start = time.perf_counter()
            value = target(request)
            if inspect.isawaitable(value):
                value = self._await(value)
            latency_ms = (time.perf_counter() - start) * 1000
            result = as_result(value, f"target {target.identity}")
        except TargetError:
            raise
        except Exception as exc:
            raise TargetError(describe_exception(f"target {target.identity}", exc)) from exc
        result.latency_ms = latency_ms
        return result

    def own(self, target: Any) -> None:
        """Close ``target`` (its client, its connections) when the runner closes."""
        self._targets.append(target)

    def judge(self, spec: Any, prompt: Any, prices: Mapping[str, tuple[float, float]],
              fixture: Callable[[str], Target]) -> TargetResult:
        """Call a judge (any target spec) with a rendered prompt.

        Judges are built once per spec; a ``fixture:`` judge is asked of ``fixture``
        on every call, since its value belongs to the item's fixture scope.
        """
        key = repr(spec)
        judge = self._judges.get(key)
        if judge is None:
            built = build(spec, {}, ("judge",))
            if isinstance(built, str):
                judge = fixture(built)
            else:
                judge = self._judges[key] = built
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
        summary += f"\n  at {display_path(frame.filename)}:{frame.lineno} in {frame.name}"
        if frame.line:
            summary += f"\n    {frame.line}"
    return summary

