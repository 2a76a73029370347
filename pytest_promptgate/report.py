"""Renderings of a session's eval results: terminal lines, JSON and Markdown of the same objects.

Builds text and data; never writes to the terminal or to files itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .verdicts import BestVariant, EvalCheck, SessionOutcome, Verdict, format_p

if TYPE_CHECKING:
    from .tracking import TrackingStatus

#: Version of the JSON report's layout; bumped when a field changes meaning or goes away.
JSON_REPORT_VERSION = 1


def terminal_lines(
    checks: Sequence[EvalCheck], outcome: SessionOutcome, best: Sequence[BestVariant] = (),
    tracking: TrackingStatus | None = None,
) -> list[str]:
    """The summary table (one row per eval and variant), then notes, then what decided the exit status."""
    headers, rows = _rows(checks, tracking)
    lines = _table(headers, rows, numeric_from=2) if rows else []
    lines += _footnotes(checks)
    lines.append("")
    lines += _notes(checks, best, tracking)
    lines.append(_conclusion(outcome))
    return lines


def markdown(
    checks: Sequence[EvalCheck], outcome: SessionOutcome, best: Sequence[BestVariant] = (),
    tracking: TrackingStatus | None = None,
) -> str:
    """The same summary as Markdown, for a pull request or ``$GITHUB_STEP_SUMMARY``."""
    from tabulate import tabulate

    headers, rows = _rows(checks, tracking)
    parts = ["## promptgate", "", f"**{_conclusion(outcome).removeprefix('promptgate: ')}**", ""]
    if rows:
        align = ["left", "left"] + ["right"] * (len(headers) - 2)
        parts += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=align), ""]
    footnotes = _footnotes(checks)
    if footnotes:
        parts += [*footnotes, ""]
    parts += [f"- {note}" for note in _notes(checks, best, tracking)]
    return "\n".join(parts).rstrip() + "\n"


def json_report(
    checks: Sequence[EvalCheck], outcome: SessionOutcome, cases: Sequence[Mapping[str, Any]],
    best: Sequence[BestVariant] = (), tracking: TrackingStatus | None = None,
) -> dict[str, Any]:
    """Everything the summary says, as data: the session's outcome, one entry per eval and variant, every case
    (``cases``: :meth:`CaseResult.to_dict <pytest_promptgate.results.CaseResult.to_dict>` dicts)."""
    return {
        "version": JSON_REPORT_VERSION,
        "passed": not outcome.failed,
        "conclusion": _conclusion(outcome).removeprefix("promptgate: "),
        "stopped_early": outcome.stopped_early,
        "strict": outcome.strict,
        "fail_on": sorted(outcome.fail_on),
        "tracking": dataclasses.asdict(tracking) if tracking is not None else None,
        "evals": [_json_check(check) for check in checks],
        "best_variants": [{**dataclasses.asdict(b), "significant": b.significant} for b in best],
        "cases": list(cases),
    }


def _json_check(check: EvalCheck) -> dict[str, Any]:
    c, v = check.comparison, check.verdict
    return {
        **dataclasses.asdict(check.summary),
        "dataset_size": check.dataset_size,
        "partial": check.partial,
        "threshold": check.threshold,
        "threshold_met": check.passed,
        "warn_drop": check.warn_drop,
        "pass_rate_ci95": list(c.current_ci) if c else None,
        "verdict": v.kind.value if v else None,
        "verdict_reason": v.reason if v else None,
        "first_run": v.first_run if v else None,
        "baseline_run_id": check.baseline_run_id,
        "baseline_pass_rate": c.baseline_rate if c else None,
        "baseline_ci95": list(c.baseline_ci) if c and c.baseline_ci else None,
        "delta": c.delta if c else None,
        "p_value": c.p_value if c else None,
        "test": c.test if c else None,
        "shared_cases": c.shared_cases if c else 0,
        "fixed_cases": c.fixed if c else None,
        "broken_cases": c.broke if c else None,
        "prompts_changed": [dataclasses.asdict(change) for change in check.prompts_changed],
        "run_id": check.run_id,
        "gates": [dataclasses.asdict(gate) for gate in check.gates],
    }


def _rows(checks: Sequence[EvalCheck], tracking: TrackingStatus | None = None) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for check in checks:
        s, c, v = check.summary, check.comparison, check.verdict
        rate = f"{s.pass_rate:.1%}"
        if c is not None:
            rate += f" [{c.current_ci[0]:.0%}-{c.current_ci[1]:.0%}]"
        if c is not None and c.baseline_rate is not None and c.delta is not None and c.p_value is not None:
            baseline, delta = f"{c.baseline_rate:.1%}", f"{c.delta * 100:+.1f} pp ({format_p(c.p_value)})"
        else:
            baseline, delta = _no_baseline_word(v, tracking), "-"
        verdict = "?" if v is None else v.kind.value + (" (first run)" if v.first_run else "")
        rows.append([
            s.eval, s.variant, f"{s.cases}/{check.dataset_size}" if check.partial else s.cases,
            f"{s.failed}/{s.errors}/{s.flaky}",
            rate,
            _percent(check.threshold) if check.threshold is not None else "?",
            baseline, delta, verdict,
            f"{s.average_score:.3f}" if s.average_score is not None else "-",
            f"{s.cost_usd_total:.6f}" if s.cost_usd_total is not None else "-",
            _milliseconds(s.latency_ms_p95),
        ])
    headers = ["eval", "variant", "cases", "fail/err/flaky", "pass rate [95% CI]", "threshold", "baseline", "delta (p)",
               "verdict", "score", "cost $", "p95 ms"]
    return headers, rows


def _no_baseline_word(v: Verdict | None, tracking: TrackingStatus | None) -> str:
    """The baseline cell of a row compared with nothing: "-" (first run), "off", or "unavailable"."""
    if tracking is not None and tracking.state == "off":
        return "off"
    if v is None or v.first_run:
        return "-"
    return "unavailable"


def _footnotes(checks: Sequence[EvalCheck]) -> list[str]:
    lines = []
    if any(check.partial for check in checks):
        lines.append("cases ran/total: a partial run (-k, --lf, deselection, -x); its pass rate covers the cases that ran, "
                     "compared with the baseline on the same cases; it is logged but never becomes a baseline")
    return lines


def _notes(checks: Sequence[EvalCheck], best: Sequence[BestVariant], tracking: TrackingStatus | None) -> list[str]:
    """Verdicts other than PASS, changed prompts, tripped gates, failure modes, best variants, tracking: a line each."""
    lines = []
    for check in checks:
        v = check.verdict
        if v is not None and (v.kind.value != "PASS" or v.reason.startswith("dropped")):
            lines.append(f"{check.label}: {v.kind.value}: {v.reason}")  # a PASS that dropped says why it is a PASS
    for check in checks:
        if check.prompts_changed:
            changes = ", ".join(f"{c.name} {c.before or '(none)'} -> {c.after or '(none)'}" for c in check.prompts_changed)
            lines.append(f"{check.label}: prompts changed since baseline run {check.baseline_run_id}: {changes}")
    lines += _gate_lines(checks)
    for check in checks:
        modes = check.summary.failure_modes
        if modes:
            counted = ", ".join(f"{mode} {count}" for mode, count in modes.items())
            lines.append(f"failure modes of {check.label}: {counted}")
    for b in best:
        if b.decided_by == "nothing":
            lines.append(f"best variant of {b.eval}: none, {b.variant} and {b.runner_up} tie")
            continue
        lead = f"leads {b.runner_up} on {b.decided_by}"
        if b.decided_by == "pass rate":
            word = "significant" if b.significant else "not significant"
            lead += f" ({format_p(b.p_value)}, {word} at {b.alpha:g})"
        else:
            lead += f" (same pass rate: the lead is not significant, {format_p(b.p_value)})"
        lines.append(f"best variant of {b.eval}: {b.variant}, {lead}")
    return lines + _tracking_lines(tracking)


def _tracking_lines(t: TrackingStatus | None) -> list[str]:
    if t is None:
        return []
    if t.state == "off":
        return ["tracking off: no MLflow runs logged, no baselines compared"]
    lines = []
    if t.recovered:
        lines.append(f"recovered {t.recovered} partial run(s) of killed sessions from their journals into {t.spool}")
    if t.sent_earlier:
        lines.append(f"sent {t.sent_earlier} run(s) kept by earlier sessions to MLflow at {t.uri}")
    if t.logged:
        lines.append(f"logged {t.logged} run(s) to MLflow at {t.uri} (experiments: {', '.join(t.experiments)})")
    lines += list(dict.fromkeys(t.problems))  # each names the store ("MLflow tracking at URI ..."), once
    if t.spooled:
        lines.append(f"kept {t.spooled} run(s) in {t.spool}; the next session sends them, or pytest --prompt-sync")
    earlier = t.waiting - t.spooled
    if earlier > 0 and t.state == "unavailable":  # this store's among them, most likely
        lines.append(f"{earlier} run(s) of earlier sessions wait in {t.spool} too; "
                     "the next session that reaches MLflow sends them, or pytest --prompt-sync")
    elif earlier > 0:
        lines.append(f"{earlier} run(s) of earlier sessions wait in {t.spool} for another tracking URI; "
                     "send them with pytest --prompt-sync --prompt-tracking-uri URI")
    return lines


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
                lines.append(f"gate of {check.label} tripped "
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
    if outcome.interrupted:
        return _interrupted(outcome)
    tolerated = outcome.failed_cases + outcome.error_cases
    if outcome.stopped_early and not outcome.failed:
        return ("promptgate: session stopped early (-x / --maxfail), so pytest's exit status stands; "
                "the cases that ran are within their evals' thresholds")
    if outcome.failed:
        reasons = []
        if outcome.failing_verdicts:
            names = "/".join(sorted(name.upper() for name in outcome.fail_on))
            reasons.append(f"{outcome.failing_verdicts} eval variant(s) with verdict {names}")
        if outcome.failed_gates:
            reasons.append(f"{outcome.failed_gates} gate(s) with on_fail: fail tripped")
        if outcome.bad_eval_files:
            reasons.append(f"{outcome.bad_eval_files} invalid eval file(s)")
        if outcome.ordinary_failures:
            reasons.append(f"{outcome.ordinary_failures} failure(s) outside eval cases (tests, fixtures, teardowns)")
        if outcome.tracking_required:
            reasons.append("MLflow tracking unavailable and --prompt-require-tracking")
        if outcome.lost_runs:
            reasons.append(f"{outcome.lost_runs} run(s) neither logged to MLflow nor kept on disk")
        if outcome.strict and tolerated:
            reasons.append(f"--prompt-strict and {tolerated} failed or errored case(s)")
        return "promptgate: session FAILED: " + "; ".join(reasons)
    if tolerated:
        return f"promptgate: session passes: {tolerated} failed or errored case(s) tolerated; no verdict fails the session"
    return "promptgate: session passes: every case passed"


def _interrupted(outcome: SessionOutcome) -> str:
    """The conclusion of an interrupted session: by what, after how many cases, and what was kept of them."""
    ran = f"{outcome.cases_ran} of {outcome.cases_selected}" if outcome.cases_selected is not None else str(outcome.cases_ran)
    kept = []
    if outcome.logged_runs:
        kept.append(f"{outcome.logged_runs} run(s) logged to MLflow")
    if outcome.spooled_runs:
        kept.append(f"{outcome.spooled_runs} run(s) kept in the spool")
    if outcome.journal:
        kept.append(f"the cases of {outcome.lost_runs} run(s) in the journal {outcome.journal}, for the next session")
    what = "kept " + ", ".join(kept) + " (partial runs: never baselines)" if kept else "nothing kept (tracking off)"
    return f"promptgate: session INTERRUPTED ({outcome.interrupted}) after {ran} case(s); {what}"


def promotion_lines(
    name: str, version: int, current: int | None, alias: str, rows: Sequence[Sequence[Any]], blocked: Sequence[str],
    promoted: bool, forced: bool, actor: str,
) -> list[tuple[str, dict[str, bool]]]:
    """The gate table of ``--promote`` and its decision, as (line, markup) pairs."""
    headers = ["eval", "variant", "pass rate", "threshold", "verdict", "gates"]
    lines: list[tuple[str, dict[str, bool]]] = [(line, {}) for line in _table(headers, [list(r) for r in rows], 2)] if rows else []
    lines += [(f"blocked: {reason}", {"red": True}) for reason in blocked]
    move = f"{name}@{alias}: version {current if current is not None else '(none)'} -> {version}"
    if promoted and blocked and forced:
        lines.append((f"promptgate: FORCED promotion despite {len(blocked)} block(s): {move} by {actor} "
                      "(recorded as audit.forced=true)", {"red": True, "bold": True}))
    elif promoted:
        lines.append((f"promptgate: promoted {move} by {actor}", {"green": True}))
    elif blocked:
        lines.append((f"promptgate: promotion BLOCKED: {name} version {version} stays off {alias!r} "
                      "(--promote-force promotes anyway, and says so in the audit record)", {"red": True}))
    else:
        lines.append((f"promptgate: promotion of {move} FAILED", {"red": True}))
    return lines
