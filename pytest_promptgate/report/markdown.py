"""The Markdown report, for a pull request or ``$GITHUB_STEP_SUMMARY`` (``--prompt-report PATH.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..verdicts import BestVariant, EvalCheck, SessionOutcome
from .summary import conclusion, footnote_lines, note_lines, summary_rows

if TYPE_CHECKING:
    from ..improve import Findings
    from ..tracking import TrackingStatus


def markdown_report(
    checks: Sequence[EvalCheck], outcome: SessionOutcome, best: Sequence[BestVariant] = (),
    tracking: TrackingStatus | None = None, findings: Findings | None = None,
) -> str:
    """The same summary as Markdown, for a pull request or ``$GITHUB_STEP_SUMMARY``."""
    from tabulate import tabulate

    headers, rows = summary_rows(checks, tracking)
    parts = ["## promptgate", "", f"**{conclusion(outcome).removeprefix('promptgate: ')}**", ""]
    if rows:
        align = ["left", "left"] + ["right"] * (len(headers) - 2)
        parts += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=align), ""]
    footnotes = footnote_lines(checks)
    if footnotes:
        parts += [*footnotes, ""]
    parts += [f"- {note}" for note in note_lines(checks, best, tracking) + (findings.lines() if findings else [])]
    return "\n".join(parts).rstrip() + "\n"
