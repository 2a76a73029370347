"""The ``python`` grader: a team's own function, named in the eval file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from ..targets import TargetError, import_callable
from . import base
from .base import BaseGrader, GradeContext, GradeResult, as_grade, call_with_declared, function_arguments

def resolve_callable(spec: str) -> Callable[..., Any]:
    """The callable named by ``module:attr`` (``attr`` may be dotted); ValueError saying what is wrong."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"fn must be 'module:callable' (got {spec!r})")
    try:
        return import_callable(spec)
    except TargetError as exc:
        raise ValueError(str(exc)) from None


class Python(BaseGrader):
    """Grades with a Python function: ``fn: "module:callable"``.

    The function is imported when the eval file is collected and called with the
    keyword arguments it declares among ``output``, ``expected``, ``vars``,
    ``result``, ``case_id``, ``variant``, ``options`` and ``context``.
    ``options`` is a dict of every other key of the grader entry (strings in it
    rendered as templates for the case). It returns a bool, a score in [0, 1]
    (passing at ``pass_threshold``, default 0.5), ``(passed, reason)``, a
    mapping with ``pass``/``score``/``reason``, or a ``GradeResult``. An
    exception it raises makes the case an error case.
    """

    type = "python"

    class Options(base.Options):
        model_config = ConfigDict(extra="allow", frozen=True)

        fn: str
        pass_threshold: float = Field(default=0.5, ge=0, le=1)

        @field_validator("fn")
        @classmethod
        def _importable(cls, value: str) -> str:
            resolve_callable(value)
            return value

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.fn = resolve_callable(self.options.fn)

    def grade(self, ctx: GradeContext) -> GradeResult:
        extra = {name: ctx.rendered(value) for name, value in (self.options.model_extra or {}).items()}
        return as_grade(call_with_declared(self.fn, function_arguments(ctx, extra)), self.options.pass_threshold)


GRADERS = (Python,)
