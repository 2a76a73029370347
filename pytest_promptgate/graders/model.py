"""Model-graded checks: a judge (any target or provider) labels or scores the output.

The vocabulary follows OpenAI's graders: ``label_model`` (``labels``,
``passing_labels``) and ``score_model`` (``range``, ``pass_threshold``). The
judge is called through :attr:`GradeContext.judge`, which the runner provides.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from .. import template
from ..schema import TargetSpec
from . import base
from .base import BaseGrader, GradeContext, GradeResult
from .strings import cut, shown
from .structure import parse_json

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


class _JudgeOptions(base.Options):
    judge: TargetSpec
    prompt: str | None = None
    criteria: str | None = None


class _Judged(BaseGrader):
    """Asks the judge about the output and reads its answer."""

    def ask(self, ctx: GradeContext) -> tuple[str, dict[str, Any] | None]:
        """The judge's answer text, and the JSON object in it if there is one."""
        if ctx.judge is None:
            raise RuntimeError(f"{self.type} needs GradeContext.judge to call its judge; the runner provides it")
        prompt = ctx.render(self.options.prompt) if self.options.prompt is not None else self.default_prompt(ctx)
        answer = ctx.judge(self.options.judge, prompt).output
        return answer, json_object(answer)

    def default_prompt(self, ctx: GradeContext) -> str:
        """The built-in judge prompt: criteria, the case's input and expected answer when it has them, the output."""
        parts = ["You are grading the output of an AI system."]
        if self.options.criteria is not None:
            parts.append(f"<criteria>\n{ctx.render(self.options.criteria)}\n</criteria>")
        if ctx.vars:
            parts.append(f"<input>\n{json.dumps(dict(ctx.vars), ensure_ascii=False, indent=2, default=str)}\n</input>")
        if ctx.expected is not None:
            parts.append(f"<expected>\n{template.as_text(ctx.expected)}\n</expected>")
        parts.append(f"<output>\n{ctx.output}\n</output>")
        if self.options.criteria is not None:
            parts.append("Judge the output by the criteria.")
        elif ctx.expected is not None:
            parts.append("Judge how well the output agrees with the expected answer.")
        else:
            parts.append("Judge how well the output answers the input.")
        parts.append(self.instruction())
        return "\n\n".join(parts)

    def instruction(self) -> str:
        """The last line of the default prompt: what to answer, and how."""
        raise NotImplementedError


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a judge answered with: the whole answer (fenced or not), else the first one inside it."""
    try:
        data = parse_json(text)
    except json.JSONDecodeError:
        data = None
        decoder = json.JSONDecoder()
        for start in (m.start() for m in re.finditer(r"\{", text)):
            try:
                data, _ = decoder.raw_decode(text, start)
                break
            except json.JSONDecodeError:
                continue
    return data if isinstance(data, dict) else None


def _because(found: Mapping[str, Any] | None) -> str:
    reason = found.get("reason") if found else None
    return f": {cut(reason, 120)}" if isinstance(reason, str) and reason.strip() else ""


class LabelModel(_Judged):
    """A judge picks one of ``labels`` for the output; passes when it is one of ``passing_labels``.

    Options: ``judge`` (a target: ``module:callable``, ``fixture:NAME``,
    ``echo`` or ``{provider: {...}}``); ``labels`` (at least two);
    ``passing_labels`` (a non-empty subset of ``labels``); ``prompt`` (a
    template replacing the built-in judge prompt; ``{{output}}``, the case's
    vars and ``{{expected}}`` are available; it must ask for a label);
    ``criteria`` (a template the built-in prompt grades by).
    The judge's answer is read as JSON ``{"label": ...}`` (fenced or not), else
    the first label appearing in it as a whole word, ignoring case. Score: 1 or 0.
    """

    type = "label_model"

    class Options(_JudgeOptions):
        labels: list[str] = Field(min_length=2)
        passing_labels: list[str] = Field(min_length=1)

        @model_validator(mode="after")
        def _subset(self) -> LabelModel.Options:
            folded = [label.casefold() for label in self.labels]
            if len(set(folded)) != len(folded):
                raise ValueError("labels must differ from each other, ignoring case")
            strangers = [label for label in self.passing_labels if label not in self.labels]
            if strangers:
                raise ValueError(
                    f"passing_labels {', '.join(map(repr, strangers))} not among labels ({', '.join(self.labels)})"
                )
            return self

    def instruction(self) -> str:
        labels = ", ".join(self.options.labels)
        return (
            f"Choose the one label that fits the output best, from: {labels}.\n"
            'Answer with JSON only: {"label": "<one of the labels>", "reason": "<one sentence>"}'
        )

    def grade(self, ctx: GradeContext) -> GradeResult:
        answer, found = self.ask(ctx)
        by_fold = {label.casefold(): label for label in self.options.labels}
        said = found.get("label") if found else None
        if isinstance(said, str):
            label = by_fold.get(said.strip().casefold())
            if label is None:
                return GradeResult(False, 0.0, f"judge said {shown(said)}, which is not one of {', '.join(self.options.labels)}")
        else:
            words = "|".join(re.escape(label) for label in sorted(self.options.labels, key=len, reverse=True))
            match = re.search(rf"(?<!\w)(?:{words})(?!\w)", answer, re.IGNORECASE)
            if match is None:
                return GradeResult(
                    False, 0.0, f"judge answered none of the labels {', '.join(self.options.labels)}: {shown(answer.strip())}"
                )
            label = by_fold[match.group(0).casefold()]
        passed = label in self.options.passing_labels
        return GradeResult(passed, 1.0 if passed else 0.0, f"judge said {shown(label)}{_because(found)}")


class ScoreModel(_Judged):
    """A judge scores the output within ``range``; passes at ``pass_threshold`` or above.

    Options: ``judge``, ``prompt`` and ``criteria`` as for ``label_model``;
    ``range`` ``[min, max]`` (default ``[1, 5]``); ``pass_threshold`` in range
    units (default three quarters of the way up: 4 on 1..5, 7.5 on 0..10).
    The judge's answer is read as JSON ``{"score": n}`` (fenced or not), else
    the first number in it; it is clamped to the range. Score: the judge's
    score scaled to [0, 1], ``(s - min) / (max - min)``.
    """

    type = "score_model"

    class Options(_JudgeOptions):
        range: tuple[float, float] = (1, 5)
        pass_threshold: float | None = None

        @model_validator(mode="after")
        def _within(self) -> ScoreModel.Options:
            low, high = self.range
            if low >= high:
                raise ValueError(f"range must be [min, max] with min below max (got [{low:g}, {high:g}])")
            if self.pass_threshold is not None and not low <= self.pass_threshold <= high:
                raise ValueError(f"pass_threshold {self.pass_threshold:g} lies outside range [{low:g}, {high:g}]")
            return self

        @property
        def threshold(self) -> float:
            """``pass_threshold``, or three quarters of the way up the range."""
            low, high = self.range
            return self.pass_threshold if self.pass_threshold is not None else low + 0.75 * (high - low)

    def instruction(self) -> str:
        low, high = self.options.range
        return (
            f"Score the output from {low:g} (worst) to {high:g} (best).\n"
            'Answer with JSON only: {"score": <number>, "reason": "<one sentence>"}'
        )

    def grade(self, ctx: GradeContext) -> GradeResult:
        answer, found = self.ask(ctx)
        said = _number(found.get("score")) if found and "score" in found else None
        if said is None:
            match = _NUMBER.search(answer)
            said = float(match.group(0)) if match else None
        if said is None:
            return GradeResult(False, 0.0, f"judge answered no score: {shown(answer.strip())}")
        low, high = self.options.range
        score = min(high, max(low, said))
        clamped = f" (clamped to {score:g})" if score != said else ""
        threshold = self.options.threshold
        passed = score >= threshold
        verdict = f"passes at {threshold:g}" if passed else f"below {threshold:g}"
        return GradeResult(
            passed,
            (score - low) / (high - low),
            f"judge scored {said:g}{clamped} of {low:g}..{high:g}, {verdict}{_because(found)}",
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


GRADERS = (LabelModel, ScoreModel)
