"""How far a model judge agrees with people (DESIGN §5.1: judges are measured too).

Where a ``label_model`` or ``score_model`` grader judged an output that a person
labelled (a label carrying that output's ``output_sha``), the judge's pass or fail
and the person's good or bad make a pair. Per (eval, variant, judge), the pairs give
Cohen's kappa with its 95% interval: the asymptotic variance of Fleiss, Cohen and
Everitt (1969), as ``statsmodels.stats.inter_rater.cohens_kappa`` computes it, cut to [-1, 1]. Pure:
plain data in, plain data out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

#: Grader types that ask a model for a judgment.
JUDGE_TYPES = frozenset({"label_model", "score_model"})


@dataclass(frozen=True)
class Kappa:
    """Cohen's kappa of two raters, with its 95% interval (``None`` bounds when the variance is undefined)."""

    kappa: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Agreement:
    """One judge of one (eval, variant) against the people who labelled the same outputs."""

    eval: str
    variant: str
    judge: str
    #: (judge, person) pairs: one per label about an output the judge graded.
    pairs: int
    agreed: int
    #: ``None`` when kappa is undefined: judge and people each gave one answer only.
    kappa: float | None
    kappa_low: float | None
    kappa_high: float | None

    @property
    def label(self) -> str:
        """How the reports name it: ``judge judge-name of routing [default]``."""
        return f"judge {self.judge} of {self.eval} [{self.variant}]"


def cohens_kappa(table: Sequence[Sequence[float]], confidence: float = 0.95) -> Kappa | None:
    """Cohen's kappa of a square contingency table (rows: one rater, columns: the other); None when undefined.

    The interval is statsmodels' (``kappa_low``, ``kappa_upp``) cut to [-1, 1], where kappa lies.

    Undefined when both raters used one and the same category only (the agreement
    expected by chance is then 1), or when the table is empty.
    """
    k = len(table)
    n = sum(sum(row) for row in table)
    if n == 0:
        return None
    p = [[cell / n for cell in row] for row in table]
    rows = [sum(row) for row in p]
    cols = [sum(p[i][j] for i in range(k)) for j in range(k)]
    observed = sum(p[i][i] for i in range(k))
    expected = sum(rows[i] * cols[i] for i in range(k))
    if math.isclose(expected, 1.0):
        return None
    kappa = (observed - expected) / (1 - expected)
    term_a = sum(p[i][i] * (1 - (rows[i] + cols[i]) * (1 - kappa)) ** 2 for i in range(k))
    term_b = (1 - kappa) ** 2 * sum(p[i][j] * (cols[i] + rows[j]) ** 2 for i in range(k) for j in range(k) if i != j)
    term_c = (kappa - expected * (1 - kappa)) ** 2
    variance = (term_a + term_b - term_c) / (1 - expected) ** 2 / n
    if variance < 0 or math.isnan(variance):
        return Kappa(kappa, None, None)
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    half = z * math.sqrt(variance)
    return Kappa(kappa, max(-1.0, kappa - half), min(1.0, kappa + half))  # kappa lies in [-1, 1]; a Wald interval may not


def judge_agreement(cases: Iterable[Mapping[str, Any]]) -> list[Agreement]:
    """Each model judge's agreement with people, per (eval, variant), from the session's case results as plain
    data (``CaseResult.to_dict``); judges no label met are left out."""
    pairs: dict[tuple[str, str, str], list[tuple[bool, bool]]] = {}
    for case in cases:
        labels = [label for label in case.get("labels", ()) if label.get("output_sha")]
        if not labels:
            continue
        for run in case["runs"]:
            people = [label["rating"] == "good" for label in labels if label["output_sha"] == run.get("output_sha")]
            for grader in run["graders"]:
                if grader["type"] in JUDGE_TYPES:
                    key = (case["eval"], case["variant"], grader["name"])
                    pairs.setdefault(key, []).extend((grader["passed"], good) for good in people)
    return [_agreement(key, found) for key, found in pairs.items() if found]


def _agreement(key: tuple[str, str, str], pairs: list[tuple[bool, bool]]) -> Agreement:
    table = [[sum(judge == a and person == b for judge, person in pairs) for b in (True, False)] for a in (True, False)]
    kappa = cohens_kappa(table)
    return Agreement(
        eval=key[0], variant=key[1], judge=key[2], pairs=len(pairs), agreed=table[0][0] + table[1][1],
        kappa=kappa.kappa if kappa else None, kappa_low=kappa.low if kappa else None, kappa_high=kappa.high if kappa else None,
    )


def agreement_lines(agreements: Iterable[Agreement]) -> list[str]:
    """A line per judge: how often it agreed with people, and kappa with its interval."""
    lines = []
    for a in agreements:
        kappa = ("kappa undefined (one answer only)" if a.kappa is None
                 else f"kappa {a.kappa:.2f}" + (f" [95% CI {a.kappa_low:.2f}, {a.kappa_high:.2f}]"
                                                 if a.kappa_low is not None and a.kappa_high is not None else ""))
        lines.append(f"{a.label} agrees with people on {a.agreed} of {a.pairs} labelled output(s) "
                     f"({a.agreed / a.pairs:.0%}): {kappa}")
    return lines
