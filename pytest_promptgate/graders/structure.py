"""Structure checks: the output is JSON, matches a JSON Schema, or has a field with a value.

All three read the output the same way (:func:`parse_json`): surrounding
whitespace and one surrounding Markdown code fence are removed first, because
models wrap JSON in fences all the time.
"""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

from pydantic import Field, field_validator

from .. import template
from . import base, patterns
from .base import BaseGrader, GradeContext, GradeResult
from .strings import cut, shown

# ```json ... ``` or ``` ... ``` around the whole output (the info string may be anything).
_FENCE = re.compile(r"\A```[^\n`]*\n(.*?)\n?```\Z", re.DOTALL)


def parse_json(text: str) -> Any:
    """The JSON value in ``text``, fenced or not; raises :class:`json.JSONDecodeError`."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    return json.loads(body)


class _JsonGrader(BaseGrader):
    """Parses the output as JSON, failing the case when it is not, and grades the value."""

    def grade(self, ctx: GradeContext) -> GradeResult:
        try:
            data = parse_json(ctx.output)
        except json.JSONDecodeError as exc:
            return GradeResult(False, 0.0, f"output is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        return self.grade_json(data, ctx)

    def grade_json(self, data: Any, ctx: GradeContext) -> GradeResult:
        """Grade the parsed output."""
        raise NotImplementedError


class IsJson(_JsonGrader):
    """Passes when the output is valid JSON (optionally inside a Markdown code fence). No options."""

    type = "is_json"

    def grade_json(self, data: Any, ctx: GradeContext) -> GradeResult:
        return GradeResult(True, 1.0, f"output is JSON ({_kind(data)})")


# A field called ``schema`` shadows the deprecated ``BaseModel.schema()``; the
# option keeps the name users know from JSON Schema, so silence that one warning.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)

    class _SchemaOptions(base.Options):
        schema: dict[str, Any]

        @field_validator("schema")
        @classmethod
        def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
            from jsonschema.exceptions import SchemaError

            try:
                _validator_class(value).check_schema(value)
            except SchemaError as exc:
                raise ValueError(f"invalid JSON schema at {exc.json_path}: {exc.message}") from None
            return value


def _validator_class(schema: dict[str, Any]) -> Any:
    from jsonschema.validators import validator_for

    # default=None: an unknown $schema is an error here, not a DeprecationWarning.
    found = validator_for(schema, default=None)
    if found is None and "$schema" in schema:
        raise ValueError(f"unknown $schema {schema['$schema']!r}; use a JSON Schema draft URI")
    return found or validator_for({})


def _bounded(cls: Any) -> Any:
    """``cls`` with its ``pattern`` and ``patternProperties`` keywords matched in bounded time (:mod:`.patterns`).

    jsonschema matches them with ``re``, which never gives up on a pattern that backtracks catastrophically.
    """
    from jsonschema import ValidationError
    from jsonschema.validators import extend

    def pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not patterns.search(pattern, instance, what="pattern"):
            yield ValidationError(f"{instance!r} does not match {pattern!r}")

    def pattern_properties(validator: Any, properties: dict[str, Any], instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "object"):
            return
        for pattern, subschema in properties.items():
            for key, value in instance.items():
                if patterns.search(pattern, key, what="patternProperties"):
                    yield from validator.descend(value, subschema, path=key, schema_path=pattern)

    return extend(cls, {"pattern": pattern, "patternProperties": pattern_properties})


class JsonSchema(_JsonGrader):
    """Passes when the output is JSON that validates against ``schema``.

    Options: ``schema``, an inline JSON Schema mapping (any draft; ``$schema``
    picks one, the latest otherwise), checked when the eval file is collected.
    ``format`` keywords are checked too. Schemas in separate files are not
    supported: an inline schema keeps the eval file self-contained. On failure
    the reason gives the most relevant error's JSON path and message.
    """

    type = "json_schema"
    requires = ("jsonschema",)
    Options = _SchemaOptions

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        cls = _bounded(_validator_class(self.options.schema))
        self.validator = cls(self.options.schema, format_checker=cls.FORMAT_CHECKER)

    def grade_json(self, data: Any, ctx: GradeContext) -> GradeResult:
        from jsonschema.exceptions import best_match

        errors = list(self.validator.iter_errors(data))
        if not errors:
            return GradeResult(True, 1.0, "output matches the schema")
        error = best_match(errors)
        more = f" (+{len(errors) - 1} more errors)" if len(errors) > 1 else ""
        return GradeResult(False, 0.0, f"{error.json_path}: {cut(error.message, 160)}{more}")


# One step of a dot/bracket path: [2], [-1], ["key"] / ['key'], or a name (after a dot, or first).
_STEP = re.compile(r"""\[(-?\d+)\]|\[(["'])(.*?)\2\]|(?:^|\.)([^.\[\]]+)""")


def parse_path(path: str) -> tuple[str | int, ...]:
    """The steps of ``a.b[0].c`` (a leading ``$`` is allowed) or of a JSON Pointer ``/a/b/0/c``."""
    if path.startswith("/"):
        return tuple(part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/"))
    pos = 1 if path.startswith("$") else 0
    steps: list[str | int] = []
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            raise ValueError(
                f"invalid field path {path!r} at character {pos + 1}; "
                "write a.b[0].c, [\"key with dots\"], or a JSON Pointer like /a/b/0/c"
            )
        index, _, quoted, name = match.groups()
        steps.append(int(index) if index is not None else quoted if quoted is not None else name)
        pos = match.end()
    return tuple(steps)


class _Missing(Exception):
    """The path leads nowhere in the document."""


def lookup(data: Any, steps: tuple[str | int, ...]) -> Any:
    """The value at ``steps`` in ``data``; raises :class:`_Missing`."""
    for step in steps:
        if isinstance(data, list):
            if isinstance(step, str) and not step.isdigit():
                raise _Missing
            index = int(step)
            if not -len(data) <= index < len(data):
                raise _Missing
            data = data[index]
        elif isinstance(data, dict) and str(step) in data:
            data = data[str(step)]
        else:
            raise _Missing
    return data


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: numbers compare numerically (1 == 1.0), but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


class JsonField(_JsonGrader):
    """Passes when the output is JSON with a field at ``path`` equal to ``value``.

    Options: ``path``, either dot/bracket syntax (``a.b[0].c``, ``items[-1]``,
    ``["key.with.dots"]``, an optional leading ``$``) or a JSON Pointer
    (``/a/b/0/c``); ``value``, any JSON value. Strings in ``value`` are
    templates (``"{{expected}}"``). When ``value`` is a string and the field is
    not, the rendered string is read as JSON first, so ``"{{expected}}"`` with
    ``expected: 3`` matches a field holding ``3``. Numbers compare numerically.
    """

    type = "json_field"

    class Options(base.Options):
        path: str = Field(min_length=1)
        value: Any

        @field_validator("path")
        @classmethod
        def _valid_path(cls, value: str) -> str:
            if not template.variables(value):
                parse_path(value)
            return value

    def grade_json(self, data: Any, ctx: GradeContext) -> GradeResult:
        path = ctx.render(self.options.path)
        try:
            steps = parse_path(path)
        except ValueError as exc:
            return GradeResult(False, 0.0, str(exc))
        try:
            found = lookup(data, steps)
        except _Missing:
            return GradeResult(False, 0.0, f"field {path} missing")
        want = ctx.rendered(self.options.value)
        if isinstance(want, str) and not isinstance(found, str):
            try:
                want = json.loads(want)
            except json.JSONDecodeError:
                pass
        if json_equal(found, want):
            return GradeResult(True, 1.0, f"field {path} is {_json_shown(found)}")
        return GradeResult(False, 0.0, f"field {path} is {_json_shown(found)}, expected {_json_shown(want)}")


def _json_shown(value: Any) -> str:
    return shown(value) if isinstance(value, str) else cut(json.dumps(value, ensure_ascii=False), 80)


def _kind(data: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(data), "a number"
    )


GRADERS = (IsJson, JsonSchema, JsonField)
