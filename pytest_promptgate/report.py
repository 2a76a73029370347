"""Renderings of a session's eval results. Builds lines of text; never writes to the terminal itself."""

from __future__ import annotations

from collections.abc import Sequence

from .verdicts import SessionOutcome, ThresholdCheck


def terminal_lines(checks: Sequence[ThresholdCheck], outcome: SessionOutcome) -> list[str]:
    """The summary table (one row per eval and variant), then what decided the exit status."""
    from tabulate import tabulate

    rows = []
    for check in checks:
        s = check.summary
        rows.append([
            s.eval, s.variant, s.cases, s.passed, s.failed, s.errors, s.flaky,
            f"{s.pass_rate:.1%}",
            f"{check.threshold:.0%}" if check.threshold is not None else "?",
            "ok" if check.passed else "BELOW",
            f"{s.average_score:.3f}" if s.average_score is not None else "-",
            _milliseconds(s.latency_ms_p95),
            f"{s.cost_usd_total:.4f}" if s.cost_usd_total is not None else "-",
        ])
    headers = ["eval", "variant", "cases", "passed", "failed", "errors", "flaky", "pass rate", "threshold", "",
               "avg score", "p95 ms", "cost $"]
    lines = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True).splitlines()
    lines.append("")
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
                f"is below the threshold {check.threshold:.0%}"
            )
    lines.append(_conclusion(outcome))
    return lines


def _milliseconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _conclusion(outcome: SessionOutcome) -> str:
    tolerated = outcome.failed_cases + outcome.error_cases
    if outcome.failed:
        reasons = []
        if outcome.below_threshold:
            reasons.append(f"{outcome.below_threshold} eval variant(s) below threshold")
        if outcome.bad_eval_files:
            reasons.append(f"{outcome.bad_eval_files} invalid eval file(s)")
        if outcome.ordinary_failures:
            reasons.append(f"{outcome.ordinary_failures} failed test(s) outside evals")
        if outcome.strict and tolerated:
            reasons.append(f"--prompt-strict and {tolerated} failed or errored case(s)")
        return "promptgate: session FAILED: " + "; ".join(reasons)
    if tolerated:
        return (f"promptgate: session passes: {tolerated} failed or errored case(s) tolerated, "
                "every eval at or above its threshold")
    return "promptgate: session passes: every case passed"
