"""String checks on the output: equality, substrings, affixes, regular expressions, length.

Every text option is a ``{{var}}`` template rendered for the case at hand, so
``value: "{{expected}}"`` compares with each case's expected answer. A number or
boolean given as ``value`` compares as its text (``3`` → ``"3"``, ``true`` → ``"true"``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from .. import template
from . import base, patterns
from .base import BaseGrader, GradeContext, GradeResult

SHOWN_CHARS = 80


def cut(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` quoted for a reason: one line, at most about ``limit`` characters."""
    return repr(cut(text, limit))


def listed(texts: list[str], most: int = 5) -> str:
    """Several texts quoted for a reason, the list cut after ``most``."""
    words = ", ".join(shown(t, 40) for t in texts[:most])
    return words + (f" (+{len(texts) - most} more)" if len(texts) > most else "")


def _as_text(value: Any) -> Any:
    # Numbers and booleans compare as the text a template would insert for them.
    return template.as_text(value) if isinstance(value, (bool, int, float)) else value


Text = Annotated[str, BeforeValidator(_as_text)]


class _Unusable(Exception):
    """An option that rendered into something the grader cannot use; the case fails with this reason."""


class _Check(BaseGrader):
    """A yes/no check of the output against one rendered ``value``, optionally negated."""

    negate: ClassVar[bool] = False

    class Options(base.Options):
        value: Text
        ignore_case: bool = False

    def grade(self, ctx: GradeContext) -> GradeResult:
        value = ctx.render(self.operand)
        try:
            found = self.find(ctx.output, value)
        except _Unusable as exc:
            return GradeResult(False, 0.0, str(exc))
        passed = bool(found) != self.negate
        return GradeResult(passed, 1.0 if passed else 0.0, self.describe(found, value, ctx.output))

    @property
    def operand(self) -> str:
        """The option the output is checked against, before rendering."""
        return self.options.value

    @property
    def ignore_case(self) -> bool:
        """Whether case is ignored."""
        return self.options.ignore_case

    def fold(self, text: str) -> str:
        """``text`` as compared: case-folded when ``ignore_case``."""
        return text.casefold() if self.ignore_case else text

    def find(self, output: str, value: str) -> Any:
        """Something truthy when the output has the property checked."""
        raise NotImplementedError

    def describe(self, found: Any, value: str, output: str) -> str:
        """The reason, saying what was found."""
        raise NotImplementedError


class Equals(_Check):
    """Passes when the output equals ``value``.

    Options: ``value`` (template), ``ignore_case`` (default false), ``strip``
    (default true: surrounding whitespace of the output and the value is ignored).
    """

    type = "equals"

    class Options(_Check.Options):
        strip: bool = True

    def normal(self, text: str) -> str:
        """``text`` as compared."""
        return self.fold(text.strip() if self.options.strip else text)

    def find(self, output: str, value: str) -> bool:
        return self.normal(output) == self.normal(value)

    def describe(self, found: Any, value: str, output: str) -> str:
        if found:
            return f"output equals {shown(value)}"
        return f"expected {shown(value)}, got {shown(output.strip() if self.options.strip else output)}"


class NotEquals(Equals):
    """Passes when the output differs from ``value``; same options as ``equals``."""

    type = "not_equals"
    negate = True

    def describe(self, found: Any, value: str, output: str) -> str:
        return f"output equals {shown(value)}" if found else f"output differs from {shown(value)}"


class _Affix(_Check):
    """A substring-like check phrased with a verb: ``verbs = ("contains", "contain")``."""

    verbs: ClassVar[tuple[str, str]]

    def describe(self, found: Any, value: str, output: str) -> str:
        does, do = self.verbs
        return f"output {does if found else 'does not ' + do} {shown(value)}"


class Contains(_Affix):
    """Passes when the output contains ``value``. Options: ``value`` (template), ``ignore_case`` (default false)."""

    type = "contains"
    verbs = ("contains", "contain")

    def find(self, output: str, value: str) -> bool:
        return self.fold(value) in self.fold(output)


class NotContains(Contains):
    """Passes when the output does not contain ``value``. Options: ``value`` (template), ``ignore_case``."""

    type = "not_contains"
    negate = True


class IContains(Contains):
    """Passes when the output contains ``value``, ignoring case. Options: ``value`` (template)."""

    type = "icontains"

    class Options(base.Options):
        value: Text

    @property
    def ignore_case(self) -> bool:
        return True


class StartsWith(_Affix):
    """Passes when the output starts with ``value`` (whitespace counts). Options: ``value`` (template), ``ignore_case``."""

    type = "starts_with"
    verbs = ("starts with", "start with")

    def find(self, output: str, value: str) -> bool:
        return self.fold(output).startswith(self.fold(value))


class EndsWith(_Affix):
    """Passes when the output ends with ``value`` (whitespace counts). Options: ``value`` (template), ``ignore_case``."""

    type = "ends_with"
    verbs = ("ends with", "end with")

    def find(self, output: str, value: str) -> bool:
        return self.fold(output).endswith(self.fold(value))


class _Several(BaseGrader):
    """Checks the output for each of several rendered ``values``."""

    class Options(base.Options):
        values: list[Text] = Field(min_length=1)
        ignore_case: bool = False

    def split(self, ctx: GradeContext) -> tuple[list[str], list[str]]:
        """The rendered values the output contains, and those it lacks."""
        fold = str.casefold if self.options.ignore_case else str
        output = fold(ctx.output)
        present: list[str] = []
        absent: list[str] = []
        for value in (ctx.render(v) for v in self.options.values):
            (present if fold(value) in output else absent).append(value)
        return present, absent


class ContainsAny(_Several):
    """Passes when the output contains at least one of ``values``.

    Options: ``values`` (list of templates, at least one), ``ignore_case`` (default false).
    Score: 1 or 0.
    """

    type = "contains_any"

    def grade(self, ctx: GradeContext) -> GradeResult:
        present, absent = self.split(ctx)
        if present:
            return GradeResult(True, 1.0, f"output contains {shown(present[0])}")
        return GradeResult(False, 0.0, f"output contains none of {listed(absent)}")


class ContainsAll(_Several):
    """Passes when the output contains every one of ``values``.

    Options: ``values`` (list of templates, at least one), ``ignore_case`` (default false).
    Score: the fraction of the values found (partial credit), so 2 of 3 found scores 0.67 and fails.
    """

    type = "contains_all"

    def grade(self, ctx: GradeContext) -> GradeResult:
        present, absent = self.split(ctx)
        score = len(present) / (len(present) + len(absent))
        if not absent:
            return GradeResult(True, score, f"output contains all {len(present)} values")
        return GradeResult(False, score, f"output lacks {listed(absent)} ({len(present)} of {len(present) + len(absent)} found)")


class Regex(_Check):
    """Passes when ``pattern`` matches somewhere in the output (a search).

    Options: ``pattern`` (template; substituted vars are regex text, not escaped),
    ``ignore_case``, ``multiline`` (``^``/``$`` match at every line), ``dotall``
    (``.`` matches newlines), all default false; ``timeout``, the seconds a match
    may take (default 1). A pattern without vars is compiled when the eval file
    is collected, so a bad one is a collection error; one with vars that renders
    into a bad regex fails the case. Patterns are matched by the ``regex``
    package (Python's ``re`` syntax and more); a match that takes longer than
    ``timeout`` makes the case an error case (:mod:`.patterns`).
    """

    type = "regex"

    class Options(base.Options):
        pattern: str
        ignore_case: bool = False
        multiline: bool = False
        dotall: bool = False
        timeout: float = Field(default=patterns.TIMEOUT, gt=0, le=60)

        @field_validator("pattern")
        @classmethod
        def _compiles(cls, value: str) -> str:
            if not template.variables(value):
                try:
                    patterns.compiled(value)
                except patterns.PatternError as exc:
                    raise ValueError(f"invalid regex {value!r}: {exc}") from None
            return value

    @property
    def operand(self) -> str:
        return self.options.pattern

    def find(self, output: str, value: str) -> Any:
        options = self.options
        try:
            pattern = patterns.compiled(value, ignore_case=options.ignore_case, multiline=options.multiline,
                                        dotall=options.dotall)
        except patterns.PatternError as exc:
            raise _Unusable(f"invalid regex {shown(value)}: {exc}") from None
        return patterns.search(pattern, output, options.timeout, what=self.type)

    def describe(self, found: Any, value: str, output: str) -> str:
        if found is None:
            return f"output does not match {shown(value)}"
        return f"output matches {shown(value)} at {shown(found.group(0))}"


class NotRegex(Regex):
    """Passes when ``pattern`` matches nowhere in the output; same options as ``regex``."""

    type = "not_regex"
    negate = True


class Length(BaseGrader):
    """Passes when the output's length lies within ``min`` and ``max`` (inclusive).

    Options: ``min`` and/or ``max`` (at least one), ``unit``: ``chars`` (default)
    or ``words`` (runs of non-whitespace). Surrounding whitespace is not counted.
    Score: 1 within the bounds, else partial credit: ``length / min`` below the
    minimum, ``max / length`` above the maximum.
    """

    type = "length"

    class Options(base.Options):
        min: int | None = Field(default=None, ge=0)
        max: int | None = Field(default=None, ge=0)
        unit: Literal["chars", "words"] = "chars"

        @model_validator(mode="after")
        def _bounds(self) -> Length.Options:
            if self.min is None and self.max is None:
                raise ValueError("length needs min, max or both")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"min ({self.min}) is above max ({self.max})")
            return self

    def grade(self, ctx: GradeContext) -> GradeResult:
        text = ctx.output.strip()
        size = len(text.split()) if self.options.unit == "words" else len(text)
        unit = self.options.unit if size != 1 else self.options.unit[:-1]
        low, high = self.options.min, self.options.max
        if low is not None and size < low:
            return GradeResult(False, size / low, f"{size} {unit}, below min {low}")
        if high is not None and size > high:
            return GradeResult(False, high / size, f"{size} {unit}, above max {high}")
        bounds = f"{low if low is not None else 0}..{high if high is not None else '∞'}"
        return GradeResult(True, 1.0, f"{size} {unit}, within {bounds}")


GRADERS = (
    Equals,
    NotEquals,
    Contains,
    NotContains,
    IContains,
    ContainsAny,
    ContainsAll,
    StartsWith,
    EndsWith,
    Regex,
    NotRegex,
    Length,
)
