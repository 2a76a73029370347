"""Renderings of a session's eval results: terminal lines, JSON and Markdown of the same objects.

Builds text and data; never writes to the terminal or to files itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .results import CaseResult
from .verdicts import EvalCheck, SessionOutcome

#: Version of the JSON report's layout; bumped when a field changes meaning or goes away.
JSON_REPORT_VERSION = 1


def terminal_lines(checks: Sequence[EvalCheck], outcome: SessionOutcome) -> list[str]:
    """The summary table (one row per eval and variant), then what decided the exit status."""
    headers, rows = _rows(checks)
    lines = _table(headers, rows, numeric_from=2) if rows else []
    if any(check.partial for check in checks):
        lines.append("cases ran/total: a partial run (-k, --lf, deselection, -x); its pass rate covers the cases that ran")
    lines.append("")
    lines += _notes(checks)
    lines.append(_conclusion(outcome))
    return lines


def markdown(checks: Sequence[EvalCheck], outcome: SessionOutcome) -> str:
    """The same summary as Markdown, for a pull request or ``$GITHUB_STEP_SUMMARY``."""
    from tabulate import tabulate

    headers, rows = _rows(checks)
    parts = ["## promptgate", "", f"**{_conclusion(outcome).removeprefix('promptgate: ')}**", ""]
    if rows:
        align = ["left", "left"] + ["right"] * (len(headers) - 2)
        parts += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=align), ""]
    if any(check.partial for check in checks):
        parts += ["Cases shown as ran/total come from a partial run; its pass rate covers the cases that ran.", ""]
    parts += [f"- {note}" for note in _notes(checks)]
    return "\n".join(parts).rstrip() + "\n"


def json_report(checks: Sequence[EvalCheck], outcome: SessionOutcome, results: Sequence[CaseResult]) -> dict[str, Any]:
    """Everything the summary says, as data: the session's outcome, one entry per eval and variant, every case."""
    return {
        "version": JSON_REPORT_VERSION,
        "passed": not outcome.failed,
        "conclusion": _conclusion(outcome).removeprefix("promptgate: "),
        "stopped_early": outcome.stopped_early,
        "strict": outcome.strict,
        "evals": [
            {
                **dataclasses.asdict(check.summary),
                "dataset_size": check.dataset_size,
                "partial": check.partial,
                "threshold": check.threshold,
                "threshold_met": check.passed,
                "gates": [dataclasses.asdict(gate) for gate in check.gates],
            }
            for check in checks
        ],
        "cases": [result.to_dict() for result in results],
    }


def _rows(checks: Sequence[EvalCheck]) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for check in checks:
        s = check.summary
        rows.append([
            s.eval, s.variant, f"{s.cases}/{check.dataset_size}" if check.partial else s.cases,
            s.passed, s.failed, s.errors, s.flaky,
            f"{s.pass_rate:.1%}",
            _percent(check.threshold) if check.threshold is not None else "?",
            "ok" if check.passed else "BELOW",
            f"{s.average_score:.3f}" if s.average_score is not None else "-",
            _milliseconds(s.latency_ms_p95),
            f"{s.cost_usd_total:.6f}" if s.cost_usd_total is not None else "-",
        ])
    headers = ["eval", "variant", "cases", "passed", "failed", "errors", "flaky", "pass rate", "threshold", "",
               "avg score", "p95 ms", "cost $"]
    return headers, rows


def _notes(checks: Sequence[EvalCheck]) -> list[str]:
    """Failure modes, evals below threshold and tripped gates, a line each."""
    lines = []
    for check in checks:
        modes = check.summary.failure_modes
        if modes:
            counted = ", ".join(f"{mode} {count}" for mode, count in modes.items())
            lines.append(f"failure modes of {check.summary.eval} [{check.summary.variant}]: {counted}")
    for check in checks:
        if check.threshold is None:
            lines.append(f"{check.summary.eval} [{check.summary.variant}]: settings unknown (a worker crashed?); counted as failing")
        elif not check.passed:
            lines.append(
                f"{check.summary.eval} [{check.summary.variant}]: pass rate {check.summary.pass_rate:.1%} "
                f"is below the threshold {_percent(check.threshold)}"
            )
    return lines + _gate_lines(checks)


#: What a tripped gate does, by its ``on_fail``.
_GATE_EFFECT = {
    "fail": "fails the session",
    "warn": "a warning",
    "block_promote": "blocks promoting this eval's prompts",
}


def _gate_lines(checks: Sequence[EvalCheck]) -> list[str]:
    """One line per tripped gate, saying what it does."""
    lines = []
    for check in checks:
        for gate in check.gates:
            if not gate.passed:
                lines.append(f"gate of {check.summary.eval} [{check.summary.variant}] tripped "
                             f"({gate.on_fail}: {_GATE_EFFECT[gate.on_fail]}): {gate.reason}")
    return lines


def _table(headers: list[str], rows: list[list[object]], numeric_from: int) -> list[str]:
    """A compact text table: headers, a rule, rows; columns from ``numeric_from`` on right-aligned."""
    from tabulate import tabulate

    # Headers go in as a row: tabulate pads given headers by MIN_PADDING, which doubles the width.
    cells = [headers, *([str(c) for c in row] for row in rows)]
    rule = ["-" * max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = ["left"] * numeric_from + ["right"] * (len(headers) - numeric_from)
    return tabulate([cells[0], rule, *cells[1:]], tablefmt="plain", disable_numparse=True, colalign=align).splitlines()


def _percent(value: float) -> str:
    return f"{value:.0%}" if round(value * 100, 6).is_integer() else f"{value:.1%}"


def _milliseconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _conclusion(outcome: SessionOutcome) -> str:
    tolerated = outcome.failed_cases + outcome.error_cases
    if outcome.stopped_early and not outcome.failed:
        return ("promptgate: session stopped early (-x / --maxfail), so pytest's exit status stands; "
                "the cases that ran are within their evals' thresholds")
    if outcome.failed:
        reasons = []
        if outcome.below_threshold:
            reasons.append(f"{outcome.below_threshold} eval variant(s) below threshold")
        if outcome.failed_gates:
            reasons.append(f"{outcome.failed_gates} gate(s) with on_fail: fail tripped")
        if outcome.bad_eval_files:
            reasons.append(f"{outcome.bad_eval_files} invalid eval file(s)")
        if outcome.ordinary_failures:
            reasons.append(f"{outcome.ordinary_failures} failure(s) outside eval cases (tests, fixtures, teardowns)")
        if outcome.strict and tolerated:
            reasons.append(f"--prompt-strict and {tolerated} failed or errored case(s)")
        return "promptgate: session FAILED: " + "; ".join(reasons)
    if tolerated:
        return (f"promptgate: session passes: {tolerated} failed or errored case(s) tolerated, "
                "every eval at or above its threshold")
    return "promptgate: session passes: every case passed"
