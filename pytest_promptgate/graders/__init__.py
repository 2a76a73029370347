"""Grader types: the built-in families and the registry that plugins extend.

Built-in families live one per module (``strings``, ``structure``,
``similarity``, ``model``, ``operational``, ``custom``); each lists its types in
``GRADERS``. Other packages and conftest files add types through the
``pytest_promptgate_register_graders`` hook or the ``pytest_promptgate.graders``
entry-point group. ``openai_rules`` holds no types: it is functions for the
``python`` grader that evals imported from openai/evals name.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from ..places import describe_exception
from ..schema import output_sha
from ..results import GraderRecord, RunRecord, combine_grades
from .base import BaseGrader, CannotGrade, FunctionGrader, GradeContext, GradeResult

__all__ = ["BaseGrader", "CannotGrade", "GradeContext", "GradeResult", "GraderRegistry", "builtin_types"]

ENTRY_POINT_GROUP = "pytest_promptgate.graders"


class UnknownGrader(Exception):
    """A grader type nobody registered, or one whose optional dependency is missing."""


def builtin_types() -> dict[str, type[BaseGrader]]:
    """The grader types that ship with the plugin, by name."""
    from . import custom, human, model, operational, similarity, strings, structure

    return {cls.type: cls for family in (strings, structure, similarity, model, operational, custom, human) for cls in family.GRADERS}


class GraderRegistry:
    """Grader types by name: built-ins plus those plugins registered."""

    def __init__(self, types: Mapping[str, Any]) -> None:
        self._types = dict(types)

    @classmethod
    def build(cls, registered: Iterable[tuple[str, Mapping[str, Any]]]) -> GraderRegistry:
        """Built-ins plus ``(origin, {name: grader})`` registrations; a clash with another name is an error."""
        types: dict[str, Any] = builtin_types()
        origins = {name: "pytest-promptgate" for name in types}
        for origin, extra in registered:
            for name, grader in extra.items():
                if name in types and types[name] is not grader:
                    raise ValueError(
                        f"grader type {name!r} from {origin} is already registered by {origins[name]}; pick another name"
                    )
                if not (isinstance(grader, type) and issubclass(grader, BaseGrader)) and not callable(grader):
                    raise ValueError(f"grader type {name!r} from {origin} is neither a BaseGrader subclass nor callable")
                types[name], origins[name] = grader, origin
        return cls(types)

    def names(self) -> list[str]:
        """Every registered type name, sorted."""
        return sorted(self._types)

    def options_model(self, name: str) -> type[BaseModel] | None | Exception:
        """The options model of ``name`` (``None``: any options), or an exception saying why it cannot be used."""
        grader = self._types.get(name)
        if grader is None:
            close = difflib.get_close_matches(name, self._types, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return UnknownGrader(f"unknown grader type {name!r}{hint}; known types: {', '.join(self.names())}")
        if isinstance(grader, type) and issubclass(grader, BaseGrader):
            missing = [m for m in getattr(grader, "requires", ()) if importlib.util.find_spec(m) is None]
            if missing:
                hint = "pip install 'pytest-promptgate[graders]'" if grader.__module__.startswith(__name__) else "install it"
                return UnknownGrader(f"grader {name!r} needs {', '.join(missing)}, which is not installed: {hint}")
            return grader.Options
        return None

    def create(self, name: str, options: Mapping[str, Any]) -> BaseGrader:
        """A grader of type ``name`` with ``options`` (already checked at collection)."""
        grader = self._types[name]
        if isinstance(grader, type) and issubclass(grader, BaseGrader):
            return grader(options)
        return FunctionGrader(options, grader, name)


def load_entry_points() -> list[tuple[str, dict[str, Any]]]:
    """Grader types published by installed packages under the ``pytest_promptgate.graders`` group."""
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            grader = ep.load()
        except Exception as exc:
            raise ValueError(f"entry point {ep.name} = {ep.value} failed to load: {type(exc).__name__}: {exc}") from None
        found.append((f"entry point {ep.name} = {ep.value}", {ep.name: grader}))
    return found


def load_from_hook(results: Iterable[Any]) -> list[tuple[str, dict[str, Any]]]:
    """Registrations returned by ``pytest_promptgate_register_graders`` implementations."""
    found = []
    for mapping in results:
        if not mapping:
            continue
        if not isinstance(mapping, Mapping):
            raise ValueError(
                f"pytest_promptgate_register_graders must return a mapping of type name to grader, got {type(mapping).__name__}"
            )
        found.append(("pytest_promptgate_register_graders", dict(mapping)))
    return found


def grade_run(graders: Iterable[tuple[Any, BaseGrader]], ctx: GradeContext) -> Any:
    """Apply ``(spec, grader)`` pairs to one run: a :class:`~pytest_promptgate.results.RunRecord`.

    An exception in a grader propagates: the case cannot be judged and becomes an error case.
    """
    records = []
    for spec, grader in graders:
        try:
            grade = grader.grade(ctx)
        except Exception as exc:
            raise GraderFailed(spec.label, exc) from exc
        records.append(
            GraderRecord(
                name=spec.label,
                type=spec.type,
                passed=bool(grade.passed),
                score=float(grade.score),
                reason=grade.reason,
                required=spec.required,
                weight=spec.weight,
                failure_mode=spec.failure_mode,
                unstable=grade.unstable,
            )
        )
    passed, score = combine_grades(records)
    result = ctx.result
    return RunRecord(
        output=ctx.output,
        latency_ms=result.latency_ms,
        passed=passed,
        score=score,
        graders=tuple(records),
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cost_usd=result.cost_usd,
        model=result.model,
        output_sha=output_sha(ctx.output),
    )


class GraderFailed(Exception):
    """A grader raised instead of grading; the case becomes an error case."""

    def __init__(self, label: str, exc: BaseException) -> None:
        if isinstance(exc, CannotGrade):  # the grader's own reason, not a bug to locate
            super().__init__(f"grader {label!r}: {exc}")
        else:
            super().__init__(describe_exception(f"grader {label!r}", exc))
        self.label = label
