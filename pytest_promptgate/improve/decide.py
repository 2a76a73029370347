"""The optimizer's rules: ranking candidates by the goal, and the held-out test a winner must pass.

Pure: plain data in, plain data out. The held-out test is paired on the cases both
prompts ran: each case where the candidate does better by the goal is a win, each where
it does worse a loss, ties say nothing. Under "no better" a win is at most a fair coin,
so the one-sided p-value is P[Binomial(wins + losses, ½) >= wins] (the same number as
``scipy.stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue``; for
accuracy it is the exact one-sided McNemar test). It is then adjusted for every
candidate tried so far (:func:`pytest_promptgate.verdicts.adjust_pvalues`, Holm).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..results import CaseResult
from ..verdicts import adjust_pvalues, half_binomial_tail

#: Which per-case number each goal lowers (accuracy raises the pass rate instead).
_COST, _LATENCY, _LENGTH = "cost", "latency", "conciseness"


def sign_test_greater(wins: int, losses: int) -> float:
    """One-sided exact sign test: P[Binomial(wins + losses, ½) >= wins]; 1.0 without discordant cases."""
    if wins < 0 or losses < 0:
        raise ValueError(f"counts cannot be negative, got wins={wins!r}, losses={losses!r}")
    if wins + losses == 0:
        return 1.0
    return min(1.0, half_binomial_tail(losses, wins + losses))  # P[X >= wins] = P[X <= losses] at ½


def adjusted(tested: Sequence[float], tried: int) -> float:
    """The last of ``tested`` (p-values of the held-out tests so far, in order), adjusted (Holm) for ``tried``
    candidates in all: the candidates never tested on the held-out split count as p = 1."""
    padding = [1.0] * max(0, tried - len(tested))
    return adjust_pvalues([*tested, *padding], "holm")[len(tested) - 1]


def case_number(goal: str, result: CaseResult) -> float | None:
    """The per-case quantity a non-accuracy goal lowers: cost (USD), latency (ms) or output length (characters)."""
    runs = result.runs
    if not runs:
        return None
    if goal == _COST:
        costs = [run.cost_usd for run in runs]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)
    if goal == _LATENCY:
        return sum(run.latency_ms for run in runs) / len(runs)
    return sum(len(run.output) for run in runs) / len(runs)


def wins_losses(goal: str, current: Mapping[Any, CaseResult], candidate: Mapping[Any, CaseResult]) -> tuple[int, int]:
    """Cases the candidate does better and worse on, among those both ran (keys: case keys).

    For accuracy, a win is a case the candidate passes and the current prompt fails. For the
    other goals, passing where the current prompt failed is a win and failing where it passed
    a loss, whatever the numbers; among cases with the same outcome, the lower number wins.
    """
    wins = losses = 0
    for key, now in candidate.items():
        before = current.get(key)
        if before is None:
            continue
        a, b = before.outcome == "passed", now.outcome == "passed"
        if a != b:
            wins, losses = wins + b, losses + a
            continue
        if goal == "accuracy":
            continue
        x, y = case_number(goal, before), case_number(goal, now)
        if x is not None and y is not None and x != y:
            wins, losses = wins + (y < x), losses + (y > x)
    return wins, losses


def rank(goal: str, results: Sequence[CaseResult]) -> tuple[float, ...]:
    """A candidate's place by the goal on the training split: lower is better.

    Accuracy: pass rate, then average score. The other goals: their average per-case number,
    then pass rate; a candidate that passes fewer cases than the prompt it replaces is not
    better whatever it saves (:func:`beats`).
    """
    n = len(results) or 1
    rate = sum(r.outcome == "passed" for r in results) / n
    score = sum(r.score or 0.0 for r in results) / n
    if goal == "accuracy":
        return (-rate, -score)
    numbers = [case_number(goal, r) for r in results]
    known = [x for x in numbers if x is not None]
    mean = sum(known) / len(known) if known else float("inf")
    return (mean, -rate)


def pass_rate(results: Sequence[CaseResult]) -> float:
    """Passed cases over cases (0 for none)."""
    return sum(r.outcome == "passed" for r in results) / len(results) if results else 0.0


def beats(goal: str, candidate: Sequence[CaseResult], incumbent: Sequence[CaseResult]) -> bool:
    """Whether the candidate does better than the incumbent on the training split, by the goal."""
    if goal != "accuracy" and pass_rate(candidate) < pass_rate(incumbent):
        return False
    return rank(goal, candidate) < rank(goal, incumbent)
