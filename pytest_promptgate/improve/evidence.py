"""What the optimizer is shown, and what it may give back (DESIGN §11).

Evidence in: the prompt being improved, the goal, and the failing and flaky cases
of the *training* split only (the held-out split is never shown, or a proposal
could learn its answers), within :data:`EVIDENCE_CHARS`. Hypotheses out: each
candidate is a prompt text with a one-line hypothesis, and a candidate whose
``{{variables}}`` differ from the current prompt's is refused before it costs a
call. Pure: plain data in, plain data out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import template
from ..results import CaseResult

#: The goals a candidate is ranked by (``--optimize-goal``).
GOALS = ("accuracy", "cost", "latency", "conciseness")
#: Size budget of the evidence: at most this many characters of failing cases (JSON) in all ...
EVIDENCE_CHARS = 12_000
#: ... and of any one value shown (vars, output, expected, a reason).
VALUE_CHARS = 400
#: A hypothesis is one line, cut here.
HYPOTHESIS_CHARS = 200

TRAIN = "train"
HELDOUT = "heldout"


def split_of(eval_name: str, case_id: str, holdout: float) -> str:
    """``train`` or ``heldout``: decided by a hash of (eval, case id) alone, so a case keeps its side from
    session to session, whatever else changed in the dataset."""
    digest = hashlib.sha256(f"{eval_name}\0{case_id}".encode()).digest()
    return HELDOUT if int.from_bytes(digest[:8], "big") / 2**64 < holdout else TRAIN


@dataclass(frozen=True)
class FailingCase:
    """One failing (or flaky) training case as the optimizer sees it."""

    eval: str
    case_id: str
    vars: Any
    output: str | None
    expected: Any
    #: The failed graders' reasons, ``name: reason``.
    reasons: tuple[str, ...]
    failure_modes: tuple[str, ...]
    flaky: bool = False
    error: str | None = None
    #: Labels and feedback people gave this case (``*.labels.jsonl``, DESIGN §11), when the caller has them.
    labels: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Tried:
    """A candidate of an earlier round, so the next round neither repeats it nor its mistake."""

    hypothesis: str
    train_pass_rate: float | None
    outcome: str


@dataclass(frozen=True)
class Evidence:
    """What a proposal strategy (``pytest_promptgate_propose_prompts``) receives."""

    prompt_name: str
    #: The text of the prompt to improve (the current prompt, or the previous round's winner).
    prompt: str
    goal: str
    #: How many candidates are asked for.
    count: int
    round: int
    train_cases: int
    train_pass_rate: float
    failures: tuple[FailingCase, ...]
    #: Failing cases left out to keep within :data:`EVIDENCE_CHARS`.
    omitted: int = 0
    tried: tuple[Tried, ...] = ()
    variables: tuple[str, ...] = field(default=())

    def as_json(self) -> str:
        """The evidence as one JSON text (what the built-in meta-prompt shows the optimizer model)."""
        return json.dumps(asdict(self), ensure_ascii=False, indent=1, default=str)


def build_evidence(
    prompt_name: str, prompt: str, goal: str, count: int, round: int, train: Sequence[CaseResult],
    tried: Iterable[Tried] = (), budget: int = EVIDENCE_CHARS,
) -> Evidence:
    """The evidence of one round from the training results of the prompt being improved.

    Each case brings the labels people gave it (``CaseResult.labels``, from its labels
    file). Failing cases come first, then flaky ones; each value is cut to
    :data:`VALUE_CHARS`, and cases stop being added once :data:`EVIDENCE_CHARS` is reached.
    """
    chosen = [r for r in train if r.outcome != "passed"] + [r for r in train if r.outcome == "passed" and r.flaky]
    failures: list[FailingCase] = []
    used = 0
    for result in chosen:
        case = _failing_case(result)
        size = len(json.dumps(asdict(case), ensure_ascii=False, default=str))
        if used + size > budget and failures:
            break
        failures.append(case)
        used += size
    passed = sum(r.outcome == "passed" for r in train)
    return Evidence(
        prompt_name=prompt_name, prompt=prompt, goal=goal, count=count, round=round, train_cases=len(train),
        train_pass_rate=passed / len(train) if train else 0.0, failures=tuple(failures),
        omitted=len(chosen) - len(failures), tried=tuple(tried), variables=tuple(sorted(template.variables(prompt))),
    )


def _failing_case(result: CaseResult) -> FailingCase:
    run = next((run for run in result.runs if not run.passed), result.runs[0] if result.runs else None)
    reasons = tuple(_cut(f"{g.name}: {g.reason}") for g in (run.graders if run else ()) if not g.passed)
    modes = tuple(dict.fromkeys(g.failure_mode for g in (run.graders if run else ()) if not g.passed and g.failure_mode))
    return FailingCase(
        eval=result.eval, case_id=result.case_id, vars=_cut_value(result.vars),
        output=_cut(run.output) if run else None, expected=_cut_value(result.expected), reasons=reasons,
        failure_modes=tuple(m for m in modes if m), flaky=result.flaky, error=_cut(result.error) if result.error else None,
        labels=result.labels,
    )


def _cut(text: str) -> str:
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + f"… [{len(text) - VALUE_CHARS} chars cut]"


def _cut_value(value: Any) -> Any:
    """A value as it is when small, else its JSON text cut."""
    if value is None:
        return None
    text = template.as_text(value)
    return value if len(text) <= VALUE_CHARS else _cut(text)


@dataclass(frozen=True)
class Proposal:
    """A candidate prompt as a strategy proposed it."""

    prompt: str
    hypothesis: str


def proposals(value: Any) -> list[Proposal]:
    """A strategy's answer as proposals: a list of ``{"prompt", "hypothesis"}`` mappings, objects with those
    attributes, or bare texts; anything else raises ``ValueError`` saying what was expected."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of candidates, got {type(value).__name__}")
    found = []
    for entry in value:
        if isinstance(entry, str):
            prompt, hypothesis = entry, ""
        elif isinstance(entry, Mapping):
            prompt, hypothesis = entry.get("prompt"), entry.get("hypothesis", "")
        else:
            prompt, hypothesis = getattr(entry, "prompt", None), getattr(entry, "hypothesis", "")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"a candidate without a prompt text: {entry!r:.100}")
        line = " ".join(str(hypothesis or "").split()) or "(no hypothesis given)"
        found.append(Proposal(prompt, line[:HYPOTHESIS_CHARS]))
    return found


def refusal(candidate: str, current: str) -> str | None:
    """Why ``candidate`` cannot replace ``current`` (its ``{{variables}}`` differ), or None when it can.

    A variable the current prompt does not use may be missing from the cases' vars; one it
    drops would leave an input out of every call. Either way the candidate would not be
    the same task, so it is refused before it costs a call, and does not count as tried.
    """
    have, need = template.variables(candidate), template.variables(current)
    problems = []
    if have - need:
        problems.append(f"uses {', '.join('{{' + v + '}}' for v in sorted(have - need))}, which the current prompt does not")
    if need - have:
        problems.append(f"drops {', '.join('{{' + v + '}}' for v in sorted(need - have))}")
    if candidate.strip() == current.strip():
        problems.append("is the current prompt itself")
    return "; ".join(problems) or None
