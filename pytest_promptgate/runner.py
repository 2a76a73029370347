"""Measuring items: getting outputs from targets (concurrently, each call once), grading them.

One :class:`Runner` per process and session. An item hands it a :class:`Job`, its
resolved target, and the jobs of the items this process runs next (the
*lookahead*). With ``--prompt-concurrency N`` above 1 the runner starts the target
calls of the item and of its lookahead on a pool of N threads, so the outputs of
upcoming items are on their way while earlier ones are graded and reported. Each
(eval, variant, case, run) gets one call per process and session: a call started
ahead is waited for by its own item, never made again. Grading stays with the
item, in its turn, on pytest's thread.

Async targets and judges share one event loop owned by the runner, running in a
thread of its own: clients they keep (connection pools) stay valid from call to
call, and the loop is never one that pytest-asyncio runs tests on.

:meth:`Runner.stop` (end of session, ``-x``, Ctrl-C) cancels the calls not started
and the async calls under way, and waits for the sync calls under way, which a
thread cannot be made to abandon.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dataclasses import dataclass, replace

from .graders import BaseGrader, GradeContext, grade_run
from .results import CaseResult, JudgeCall, RunRecord, combine_runs, judge_usage
from .places import describe_exception
from .schema import Grader, LoadedCase, LoadedVariant, labels_for
from .targets import Target, TargetError, TargetRequest, TargetResult, as_result, build
from .targets.cache import ResponseCache
from .targets.pricing import cost_usd

_STOPPED = "the call was cancelled: the session stopped while it was under way"
#: Names of the runner's threads (``threading.enumerate()`` shows them while they live).
THREAD_PREFIX = "promptgate"
#: One target call: eval, variant, case id, run number.
CallKey = tuple[str, str, str, int]


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

    def labels(self) -> tuple[dict[str, Any], ...]:
        """People's labels of this case under this variant, as plain data for its result."""
        return tuple(label.to_dict() for label in labels_for(self.case.labels, self.case.id, self.variant.name))

    def key(self, run: int) -> CallKey:
        """The call of run ``run`` of this job's case: made at most once per process and session."""
        return self.eval, self.variant.name, self.case.id, run


class Runner:
    """Calls targets and judges for the items of this process."""

    def __init__(self, concurrency: int = 1) -> None:
        #: Target calls under way at once (``--prompt-concurrency``); 1 calls each target in its item's turn.
        self.concurrency = concurrency
        #: The response cache (``--prompt-cache``); set by collection, ``None`` when nothing configured it.
        self.cache: ResponseCache | None = None
        self._judges: dict[str, Target] = {}
        self._targets: list[Any] = []
        self._started: dict[CallKey, concurrent.futures.Future[TargetResult]] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._awaiting: set[concurrent.futures.Future[Any]] = set()
        self._stopping = False  # while stop() runs: a call that gets this far is not started
        self._lock = threading.Lock()  # the loop's creation, _awaiting and _stopping, from any calling thread
        # Calls under way at once, targets' and judges' alike: the pool's threads and pytest's, which asks the judges.
        self._slots = threading.BoundedSemaphore(concurrency)

    @property
    def lookahead(self) -> int:
        """How many items after the current one may have calls started: none without concurrency.

        Twice the pool's size less one, so the pool has queued calls to go on with
        while pytest reports the items that are done.
        """
        return 2 * self.concurrency - 1 if self.concurrency > 1 else 0

    def measure(self, job: Job, target: Target, judge: Callable[[Any, Any], TargetResult],
                ahead: Iterable[tuple[Job, Target]] = ()) -> CaseResult:
        """Run the target ``job.repeat`` times and grade every run; start the calls of ``ahead``.

        ``ahead`` are the jobs (with their targets) of the items this process runs
        next, nearest first; with a concurrency above 1 their calls start now, up to
        the pool's size at once. A run whose target fails, or a grader that raises,
        stops the case: it raises :class:`TargetError` (naming the run when there are
        several) or :class:`~pytest_promptgate.graders.GraderFailed`.
        """
        if self.concurrency > 1:
            self._start(job, target)  # this item's own runs first: it waits for them
            for other, other_target in ahead:
                self._start(other, other_target)
        case, request = job.case, None  # rendered once, and only for a call made here
        runs: list[RunRecord] = []
        try:
            for k in range(1, job.repeat + 1):
                future = self._started.pop(job.key(k), None)
                if future is None and request is None:
                    request = job.request()
                try:
                    result = self.call(target, request, job.prices, run=k) if future is None else future.result()
                except TargetError as exc:
                    if job.repeat == 1:
                        raise
                    raise TargetError(f"run {k}/{job.repeat}: {exc}") from exc
                judged: list[JudgeCall] = []
                ctx = GradeContext(output=result.output, expected=case.expected, vars=case.vars, result=result,
                                   case_id=case.id, variant=job.variant.name, judge=_counted(judge, judged),
                                   labels=labels_for(case.labels, case.id, job.variant.name))
                runs.append(replace(grade_run(job.graders, ctx), **judge_usage(judged)))
        finally:  # a case stopped by a failed run or grader needs none of its later runs
            running = []
            for k in range(len(runs) + 1, job.repeat + 1):
                unneeded = self._started.pop(job.key(k), None)
                if unneeded is not None and not unneeded.cancel():
                    running.append(unneeded)
            # Those under way use this item's target (a function-scoped fixture's value): they end before it does.
            concurrent.futures.wait(running)
        passed, score, flaky = combine_runs(runs, job.repeat_pass)
        return CaseResult(
            eval=job.eval, variant=job.variant.name, case_id=case.id, passed=passed, score=score,
            runs=tuple(runs), flaky=flaky, vars=dict(case.vars), expected=case.expected, tags=case.tags,
            labels=job.labels(),
        )

    @staticmethod
    def fetches(target: Target) -> bool:
        """Whether calls of ``target`` go to the pool: not an instant one, for which a thread costs more than the call."""
        return not getattr(target, "instant", False)

    def started(self, eval: str, variant: str, case_id: str) -> bool:
        """Whether the calls of this case are under way or done (its runs start together)."""
        return (eval, variant, case_id, 1) in self._started

    def _start(self, job: Job, target: Target) -> None:
        """Submit the calls of ``job``'s runs that are not under way yet (none for an instant target)."""
        if not self.fetches(target):
            return
        request = None
        for k in range(1, job.repeat + 1):
            key = job.key(k)
            if key in self._started:
                continue
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{THREAD_PREFIX}-call")
            if request is None:
                request = job.request()
            self._started[key] = self._pool.submit(self.call, target, request, job.prices, k)

    def call(self, target: Target, request: TargetRequest, prices: Mapping[str, tuple[float, float]],
             run: int | None = None, ask: int | None = None) -> TargetResult:
        """One call of ``target`` (run ``run`` of a case; ``None`` for a judge, whose ``ask`` numbers the asks
        of ``judge_repeat``); any failure becomes a :class:`TargetError` with a readable summary.

        With a response cache the result may be a recorded one, with the recorded call's latency
        (docs/cache.md); it is priced like a fresh one.
        """
        cache = self.cache
        if cache is None:
            result = self._call(target, request)
        else:
            with cache.claim(target, request, run, ask):
                result = cache.read(target, request, run, ask)
                if result is None:
                    result = self._call(target, request)
                    cache.write(target, request, run, result, ask)  # as the target answered it, before pricing
        if result.cost_usd is None:
            result.cost_usd = cost_usd(result.model, result.input_tokens, result.output_tokens, prices)
        return result

    def _call(self, target: Target, request: TargetRequest) -> TargetResult:
        if self._stopping:  # a queued call that started while stop() cancelled the others (e.g. after a claim)
            raise TargetError(_STOPPED)
        try:
            prepare = getattr(target, "prepare", None)
            if prepare is not None:  # one-time set-up (imports, clients) is not the target's latency
                prepare()
            with self._slots:  # waiting for a slot is not the target's latency either
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
              fixture: Callable[[str], Target], ask: int = 1) -> TargetResult:
        """Call a judge (any target spec) with a rendered prompt, for ask ``ask`` of a grader's ``judge_repeat``.

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
        return self.call(judge, request, prices, ask=ask)

    def _await(self, awaitable: Any) -> Any:
        """Run ``awaitable`` on the runner's loop and wait for it here, in whichever thread calls."""
        with self._lock:
            if self._stopping:
                close = getattr(awaitable, "close", None)
                if close is not None:
                    close()  # a coroutine never awaited would warn
                raise TargetError(_STOPPED)
            future = asyncio.run_coroutine_threadsafe(_wait_for(awaitable), self._event_loop_locked())
            self._awaiting.add(future)
        try:
            outcome = future.result()
        except concurrent.futures.CancelledError:
            raise TargetError(_STOPPED) from None
        finally:
            with self._lock:
                self._awaiting.discard(future)
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    def _event_loop_locked(self) -> asyncio.AbstractEventLoop:
        """The runner's loop, started in its thread on first use; called with ``_lock`` held."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            # A daemon: should close() never run (a crash), a loop waiting for work must not keep the process alive.
            thread = threading.Thread(target=loop.run_forever, name=f"{THREAD_PREFIX}-loop", daemon=True)
            thread.start()
            self._loop, self._loop_thread = loop, thread
        return self._loop

    def stop(self) -> None:
        """Cancel the calls not started and the async calls under way; wait for the sync calls under way.

        Called when the session ends, normally or not (``-x``, Ctrl-C). A later item
        (there should be none) would start a new pool.
        """
        for future in self._started.values():
            future.cancel()
        self._started.clear()
        with self._lock:
            self._stopping = True
            awaiting = list(self._awaiting)
        for future in awaiting:
            future.cancel()  # cancels the task on the loop: the coroutine sees CancelledError
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._lock:
            self._stopping = False

    def close(self) -> None:
        """Stop, then close targets' and judges' clients and the event loop."""
        self.stop()
        for target in [*self._targets, *self._judges.values()]:
            close = getattr(target, "close", None)
            if close is not None:
                close()
        loop, thread = self._loop, self._loop_thread
        if loop is not None and thread is not None:
            if thread.is_alive():  # it always should be (_wait_for keeps exceptions off the loop); never wait on a dead one
                asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result()
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
            loop.close()
            self._loop = self._loop_thread = None


def _counted(judge: Callable[..., TargetResult], calls: list[JudgeCall]) -> Callable[..., TargetResult]:
    """``judge``, noting what each call took in ``calls``: judges' usage is counted apart from the target's."""

    def counted(spec: Any, prompt: Any, ask: int = 1) -> TargetResult:
        result = judge(spec, prompt, ask=ask)
        calls.append(JudgeCall(result.input_tokens, result.output_tokens, result.cost_usd, result.latency_ms))
        return result

    return counted


@dataclass(frozen=True)
class _Outcome:
    """What an awaitable gave: a value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None


async def _wait_for(awaitable: Any) -> _Outcome:
    # SystemExit and KeyboardInterrupt raised in a task would stop the loop itself (asyncio re-raises them
    # out of run_forever) and leave every caller waiting: they are carried to the calling thread instead.
    try:
        return _Outcome(value=await awaitable)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return _Outcome(error=exc)


