"""Model-graded checks: a judge (any target or provider) labels or scores the output.

The vocabulary follows OpenAI's graders: ``label_model`` (``labels``,
``passing_labels``) and ``score_model`` (``range``, ``pass_threshold``). The
judge is called through :attr:`GradeContext.judge`, which the runner provides.

The judgment protocol (docs/graders.md): the judge's reply must hold a JSON
object with the grader's key (``{"label": ...}`` or ``{"score": ...}``); the
first such object counts. Text of the reply equal to the judge prompt is removed
first: a judge that echoes its prompt (``judge: echo``, a proxy quoting the
request) would otherwise be read as agreeing with the labels and the example the
prompt itself lists. A reply without a judgment, or with a label or score that
cannot be used, is :class:`~.base.CannotGrade`: an error case, never a guess.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import Field, model_validator

from .. import template
from ..schema import TargetSpec
from . import base
from .base import BaseGrader, CannotGrade, GradeContext, GradeResult
from .strings import cut, shown
from .structure import parse_json

_SHOWN = 200  # characters of a reply without a judgment, in its error
# Starting points tried in a reply: each try may read to the reply's end, so a hostile one costs at most this many.
_MOST_OBJECTS = 100


#: The most asks ``judge_repeat`` may make of one output: each is a paid call.
MAX_JUDGE_REPEAT = 25


class _JudgeOptions(base.Options):
    judge: TargetSpec
    prompt: str | None = None
    criteria: str | None = None
    judge_repeat: int = Field(default=1, ge=1, le=MAX_JUDGE_REPEAT)


class _Judged(BaseGrader):
    """Asks the judge about the output and reads its answer."""

    #: The key of the judgment in the judge's JSON object.
    key: str = ""

    def ask(self, ctx: GradeContext) -> list[tuple[Any, dict[str, Any]]]:
        """Each ask's judgment (the value of :attr:`key`) and the JSON object it came in, ``judge_repeat`` of them.

        An ask without a judgment is :class:`CannotGrade`: a majority of the others would hide a broken judge.
        """
        if ctx.judge is None:
            raise RuntimeError(f"{self.type} needs GradeContext.judge to call its judge; the runner provides it")
        prompt = ctx.render(self.options.prompt) if self.options.prompt is not None else self.default_prompt(ctx)
        answers = []
        for ask in range(1, self.options.judge_repeat + 1):
            found = judgment(ctx.judge(self.options.judge, prompt, ask=ask).output, prompt, self.key)
            answers.append((found[self.key], found))
        return answers

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


def judgment(reply: str, prompt: str, key: str) -> dict[str, Any]:
    """The first JSON object with ``key`` in the judge's ``reply``, once the echoed ``prompt`` is removed from it."""
    answer = reply
    for echoed in sorted({prompt, prompt.strip()} - {""}, key=len, reverse=True):
        answer = answer.replace(echoed, "")
    missing = f"the judge's reply has no {{{json.dumps(key)}: ...}} object"
    if not answer.strip():
        raise CannotGrade(f"{missing}: {'it only repeats the judge prompt' if reply.strip() else 'the reply is empty'}")
    for found in json_objects(answer):
        if key in found:
            return found
    raise CannotGrade(f"{missing}: {cut(' '.join(answer.split()), _SHOWN)}")


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects in ``text``: the whole text (fenced or not), else each one starting at a ``{``, in order."""
    try:
        whole = parse_json(text)
    except (ValueError, RecursionError):
        whole = None
    if isinstance(whole, dict):
        yield whole
        return
    decoder = json.JSONDecoder()
    for start in itertools.islice((m.start() for m in re.finditer(r"\{", text)), _MOST_OBJECTS):
        try:
            found, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):  # not JSON there, or nested past the parser's depth
            continue
        if isinstance(found, dict):
            yield found


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
    The judge's reply must hold a JSON object ``{"label": ...}`` whose label is
    one of ``labels``, ignoring case (the judgment protocol above); else the case
    is an error case. Score: 1 or 0.
    """

    type = "label_model"
    key = "label"

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
        answers = [(self.label(said), found) for said, found in self.ask(ctx)]
        labels = [label for label, _ in answers]
        label = majority(labels, self.options.passing_labels)
        found = next(found for said, found in answers if said == label)
        passed = label in self.options.passing_labels
        asks = len(labels)
        if asks == 1:
            return GradeResult(passed, 1.0 if passed else 0.0, f"judge said {shown(label)}{_because(found)}")
        unstable = len(set(labels)) > 1
        tally = Counter(labels)
        agreed = f"{tally[label]} of {asks} asks"
        if unstable:
            agreed += "; unstable: " + ", ".join(f"{shown(said)} {n}" for said, n in tally.most_common())
        return GradeResult(passed, 1.0 if passed else 0.0, f"judge said {shown(label)} ({agreed}){_because(found)}",
                           unstable=unstable)

    def label(self, said: Any) -> str:
        """The label the judge said, as the grader spells it (the judge's case is ignored)."""
        by_fold = {label.casefold(): label for label in self.options.labels}
        label = by_fold.get(said.strip().casefold()) if isinstance(said, str) else None
        if label is None:
            raise CannotGrade(
                f"the judge said {_said(said)}, which is not one of the labels {', '.join(self.options.labels)}"
            )
        return label


def majority(labels: list[str], passing: list[str]) -> str:
    """The label said most often; a tie goes to a failing label (a coin flip must not pass a gate), then to the first said."""
    tally = Counter(labels)
    most = max(tally.values())
    tied = [label for label in tally if tally[label] == most]  # in the order first said
    return next((label for label in tied if label not in passing), tied[0])


class ScoreModel(_Judged):
    """A judge scores the output within ``range``; passes at ``pass_threshold`` or above.

    Options: ``judge``, ``prompt`` and ``criteria`` as for ``label_model``;
    ``range`` ``[min, max]`` (default ``[1, 5]``); ``pass_threshold`` in range
    units (default three quarters of the way up: 4 on 1..5, 7.5 on 0..10).
    The judge's reply must hold a JSON object ``{"score": n}`` (the judgment
    protocol above), ``n`` a number or the text of one; else the case is an error
    case. A score outside the range is clamped to it. Score: the judge's
    score scaled to [0, 1], ``(s - min) / (max - min)``.
    """

    type = "score_model"
    key = "score"

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
        answers = self.ask(ctx)
        said = [self.number(given) for given, _ in answers]
        low, high = self.options.range
        scores = [min(high, max(low, s)) for s in said]
        score = sum(scores) / len(scores)
        threshold = self.options.threshold
        # A mean of scores at the threshold (3.9 and 4.1 for 4) may land a rounding error below it.
        passed = score >= threshold or math.isclose(score, threshold, rel_tol=1e-9)
        verdict = f"passes at {threshold:g}" if passed else f"below {threshold:g}"
        because = _because(answers[0][1])
        if len(said) == 1:
            clamped = f" (clamped to {score:g})" if score != said[0] else ""
            return GradeResult(
                passed, (score - low) / (high - low), f"judge scored {said[0]:g}{clamped} of {low:g}..{high:g}, {verdict}{because}"
            )
        # Unstable: the asks fall on both sides of the threshold, so one ask alone could have given either grade.
        unstable = len({s >= threshold for s in scores}) > 1
        shown_scores = ", ".join(f"{s:g}" for s in said)
        mean = f"mean {_mean(score, threshold, passed)}" + (f"; unstable: on both sides of {threshold:g}" if unstable else "")
        return GradeResult(
            passed, (score - low) / (high - low),
            f"judge scored {shown_scores} of {low:g}..{high:g} ({mean}), {verdict}{because}", unstable=unstable,
        )

    @staticmethod
    def number(given: Any) -> float:
        """The judge's score as a number; :class:`CannotGrade` when it is not one."""
        said = _number(given)
        if said is None:
            raise CannotGrade(f"the judge's score {_said(given)} is not a number")
        return said


def _mean(score: float, threshold: float, passed: bool) -> str:
    """A mean score in three digits, or six where three would misstate its side of the threshold (3.9996 is not 4)."""
    text = f"{score:.3g}"
    return text if (float(text) >= threshold) == passed else f"{score:.6g}"


def _said(value: Any) -> str:
    """A judgment as the judge wrote it, for an error: text quoted, anything else as JSON."""
    return shown(value) if isinstance(value, str) else cut(json.dumps(value, default=str), 80)


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
