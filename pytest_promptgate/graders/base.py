"""What a grader is: options in, a :class:`GradeResult` out.

A grader type is a subclass of :class:`BaseGrader` with a ``type`` name and an
``Options`` pydantic model of the keys it takes (checked when the eval file is
collected, so a typo is a collection error). One instance is made per grader
entry of an eval file and grades every case it applies to through
:meth:`BaseGrader.grade`.

String options, and strings inside list options, are ``{{var}}`` templates: a
grader renders them for the case at hand with :meth:`GradeContext.render`
(names: the case's vars, ``expected`` and ``output``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from .. import template
from ..targets.base import TargetResult


@dataclass(frozen=True)
class GradeResult:
    """A grader's answer: pass/fail, a score in [0, 1], and a reason a person can read."""

    passed: bool
    score: float
    reason: str = ""
    #: The judge, asked several times (``judge_repeat``), did not give one answer: the grade is a majority or a mean.
    unstable: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            object.__setattr__(self, "score", min(1.0, max(0.0, float(self.score))))


@dataclass
class GradeContext:
    """Everything a grader may look at for one run of one case."""

    output: str
    expected: Any
    vars: Mapping[str, Any]
    result: TargetResult
    case_id: str
    variant: str
    # Calls a judge (any target spec) with a prompt: ``judge(spec, prompt, ask=1)``, ``ask`` numbering the asks of
    # ``judge_repeat`` (each its own response, also in the response cache); provided by the runner.
    judge: Callable[..., TargetResult] = field(repr=False, default=None)  # type: ignore[assignment]
    #: People's labels of the case under this variant (``schema.Label``), for the ``human`` grader.
    labels: tuple[Any, ...] = ()

    def values(self) -> dict[str, Any]:
        """The names a grader template may use."""
        values = {**self.vars, "output": self.output}
        if self.expected is not None:
            values["expected"] = self.expected
        return values

    def render(self, text: str) -> str:
        """``text`` with ``{{vars}}``, ``{{expected}}`` and ``{{output}}`` substituted."""
        return template.render(text, self.values())

    def rendered(self, value: Any) -> Any:
        """An option's value for this case: strings, and strings in a list, rendered as templates.

        The same rule as the collection-time check of the variables grader options use.
        """
        if isinstance(value, str):
            return self.render(value)
        if isinstance(value, list):
            return [self.render(item) if isinstance(item, str) else item for item in value]
        return value


class CannotGrade(Exception):
    """The grader cannot judge this output (a regex that gave up, a judge's reply without a judgment).

    Raised from :meth:`BaseGrader.grade`: the case becomes an error case whose message
    is this exception's text, not a pass or a fail that would be a guess.
    """


class Options(BaseModel):
    """Base for grader option models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseGrader:
    """Subclass this to add a grader type; register it with the ``pytest_promptgate_register_graders`` hook."""

    type: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel] | None] = Options

    def __init__(self, options: Mapping[str, Any]) -> None:
        # Options were checked at collection; validating again here gives typed access.
        self.options = self.Options.model_validate(dict(options)) if self.Options is not None else dict(options)

    def grade(self, ctx: GradeContext) -> GradeResult:
        """Grade one run of one case."""
        raise NotImplementedError


# Keyword arguments a function grader may declare.
FUNCTION_ARGS = ("output", "expected", "vars", "result", "case_id", "variant", "options", "context")


def call_with_declared(fn: Callable[..., Any], available: Mapping[str, Any]) -> Any:
    """Call ``fn`` with the keyword arguments it declares among ``available``."""
    return fn(**pick_arguments(fn, available))


def pick_arguments(fn: Callable[..., Any], available: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``available`` that ``fn``'s signature accepts (all of it for ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(available)
    return {name: available[name] for name in params if name in available}


def as_grade(value: Any, pass_threshold: float = 0.5) -> GradeResult:
    """Turn what a custom grader returned into a :class:`GradeResult`.

    Accepted: a ``GradeResult``; a bool; a number (the score, passing at
    ``pass_threshold``); ``(passed, reason)``; a mapping with ``pass`` or
    ``passed``, and optional ``score`` and ``reason``.
    """
    if isinstance(value, GradeResult):
        return value
    if isinstance(value, bool):
        return GradeResult(value, 1.0 if value else 0.0, "")
    if isinstance(value, (int, float)):
        score = float(value)
        return GradeResult(score >= pass_threshold, score, f"score {score:.3g} (passes at {pass_threshold:g})")
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bool):
        return GradeResult(value[0], 1.0 if value[0] else 0.0, str(value[1]))
    if isinstance(value, Mapping) and ("pass" in value or "passed" in value):
        passed = bool(value.get("pass", value.get("passed")))
        score = float(value.get("score", 1.0 if passed else 0.0))
        return GradeResult(passed, score, str(value.get("reason", "")))
    raise TypeError(
        f"a grader returned {type(value).__name__}; expected a bool, a score, (passed, reason), "
        "a mapping with 'pass', or a GradeResult"
    )


class FunctionGrader(BaseGrader):
    """A plain function registered as a grader type; its options are passed as ``options``."""

    Options = None

    def __init__(self, options: Mapping[str, Any], fn: Callable[..., Any], type_name: str) -> None:
        super().__init__(options)
        self.fn = fn
        self.type = type_name  # type: ignore[misc]

    def grade(self, ctx: GradeContext) -> GradeResult:
        options = {name: ctx.rendered(value) for name, value in self.options.items()}
        value = call_with_declared(self.fn, function_arguments(ctx, options))
        threshold = self.options.get("pass_threshold", 0.5) if isinstance(self.options, dict) else 0.5
        return as_grade(value, threshold)


def function_arguments(ctx: GradeContext, options: Any) -> dict[str, Any]:
    """The keyword arguments offered to a function grader."""
    return {
        "output": ctx.output,
        "expected": ctx.expected,
        "vars": dict(ctx.vars),
        "result": ctx.result,
        "case_id": ctx.case_id,
        "variant": ctx.variant,
        "options": options,
        "context": ctx,
    }
