"""The built-in proposal strategy: one meta-prompt to the optimizer model per round.

It implements ``pytest_promptgate_propose_prompts`` last (``trylast``), so any strategy a
conftest or plugin implements (a GEPA or DSPy wrapper, docs/optimize.md) answers first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from .evidence import Evidence

#: The meta-prompt; ``{evidence}`` is the evidence as JSON (its size is bounded, :data:`.evidence.EVIDENCE_CHARS`).
META_PROMPT = """You improve a prompt template for a language model application.

Goal: {goal} ({goal_hint}).
The template's variables, written {{{{name}}}}, must stay exactly these: {variables}.

The evidence below holds the current template, the failing and flaky cases of a training
set (their inputs, outputs, expected values, the graders' reasons, failure modes, and any
labels people gave), and the candidates tried in earlier rounds with what became of them.
Other cases, which you are not shown, decide whether a candidate is kept: write general
instructions, not answers to these cases.

Propose {count} different candidate templates. Answer with JSON only: a list of objects
{{"prompt": "<the full template>", "hypothesis": "<one line: why it should do better>"}}.

Evidence:
{evidence}
"""

_GOAL_HINTS = {
    "accuracy": "more cases pass their graders",
    "cost": "fewer tokens per call, with no case passing less",
    "latency": "faster answers, with no case passing less",
    "conciseness": "shorter outputs, with no case passing less",
}


def meta_prompt(evidence: Evidence) -> str:
    """The text sent to the optimizer model for one round."""
    return META_PROMPT.format(
        goal=evidence.goal, goal_hint=_GOAL_HINTS[evidence.goal], count=evidence.count,
        variables=", ".join(evidence.variables) or "(none)", evidence=evidence.as_json(),
    )


def parse_candidates(answer: str) -> Any:
    """The JSON list in the model's answer (a fenced block, or the text from its first ``[`` to its last ``]``)."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", answer, re.DOTALL)
    text = fenced.group(1) if fenced else answer
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end < start:
        raise ValueError(f"no JSON list in the optimizer's answer: {answer[:120]!r}")
    try:
        return json.loads(text[start:end + 1])
    except ValueError as exc:
        raise ValueError(f"the optimizer's answer is not valid JSON ({exc}): {answer[:120]!r}") from None


class MetaPrompt:
    """Registered by ``--prompt-optimize``; answers when no other strategy does."""

    @pytest.hookimpl(trylast=True)
    def pytest_promptgate_propose_prompts(self, config: pytest.Config, evidence: Evidence,
                                          ask: Callable[[str], str]) -> Any:
        return parse_candidates(ask(meta_prompt(evidence)))
