"""What people's labels say about a session, for the reports: how many, which way, and how far the judges agree."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .agreement import Agreement, agreement_lines, judge_agreement


@dataclass(frozen=True)
class LabelCount:
    """The labels of one (eval, variant) that this session's cases carried."""

    eval: str
    variant: str
    labels: int
    good: int
    bad: int
    #: Cases with at least one label.
    cases: int
    #: Labels about an output this session produced (its ``output_sha``), rather than the case or an earlier output.
    about_outputs: int


@dataclass(frozen=True)
class Findings:
    """The labels of a session and its judges' agreement with them; empty when no case had labels."""

    labels: tuple[LabelCount, ...] = ()
    agreement: tuple[Agreement, ...] = ()

    def lines(self) -> list[str]:
        """A line per (eval, variant) with labels, then a line per judge measured against them."""
        counted = [
            f"labels of {c.eval} [{c.variant}]: {c.labels} on {c.cases} case(s), {c.good} good, {c.bad} bad; "
            f"{c.about_outputs} about this session's outputs"
            for c in self.labels
        ]
        return counted + agreement_lines(self.agreement)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the JSON report."""
        return {"labels": [dataclasses.asdict(c) for c in self.labels],
                "judge_agreement": [dataclasses.asdict(a) for a in self.agreement]}


def label_findings(cases: Iterable[Mapping[str, Any]]) -> Findings:
    """The findings of the session's cases (``CaseResult.to_dict`` data)."""
    cases = list(cases)
    counts: dict[tuple[str, str], list[int]] = {}
    for case in cases:
        labels = case.get("labels") or ()
        if not labels:
            continue
        shas = {run.get("output_sha") for run in case["runs"]}
        count = counts.setdefault((case["eval"], case["variant"]), [0, 0, 0, 0, 0])
        count[0] += len(labels)
        count[1] += sum(label["rating"] == "good" for label in labels)
        count[2] += sum(label["rating"] == "bad" for label in labels)
        count[3] += 1
        count[4] += sum(label.get("output_sha") in shas for label in labels if label.get("output_sha"))
    return Findings(
        labels=tuple(LabelCount(eval_name, variant, *count) for (eval_name, variant), count in counts.items()),
        agreement=tuple(judge_agreement(cases)) if counts else (),
    )
