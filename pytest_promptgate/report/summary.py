"""What a session's summary says, whatever it is rendered as: the rows of its table, its notes, its conclusion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..verdicts import BestVariant, EvalCheck, SessionOutcome, Verdict, format_p

if TYPE_CHECKING:
    from ..tracking import TrackingStatus


def summary_rows(checks: Sequence[EvalCheck], tracking: TrackingStatus | None = None) -> tuple[list[str], list[list[Any]]]:
    """The summary table's headers, and one row per eval and variant (cells as text)."""
    rows = []
    for check in checks:
        s = check.summary
        rate, verdict = _rate_cell(check, percent="%"), _verdict_cell(check, first_run="first run")
        baseline, delta = _baseline_cells(check, tracking, unit=" pp")
        rows.append([
            s.eval, s.variant, f"{s.cases}/{check.dataset_size}" if check.partial else s.cases,
            f"{s.failed}/{s.errors}/{s.flaky}",
            rate,
            _percent(check.threshold) if check.threshold is not None else "?",
            baseline, delta, _adjusted_cell(check), _detectable_cell(check), verdict,
            f"{s.average_score:.3f}" if s.average_score is not None else "-",
            f"{s.cost_usd_total:.6f}" if s.cost_usd_total is not None else "-",
            _milliseconds(s.latency_ms_p95),
        ])
    headers = ["eval", "variant", "cases", "fail/err/flaky", "pass rate [95% CI]", "threshold", "baseline", "delta (p)",
               "adj p", "detects", "verdict", "score", "cost $", "p95 ms"]
    return _without_empty(headers, rows, ("adj p", "detects"))


def compact_rows(checks: Sequence[EvalCheck], tracking: TrackingStatus | None = None) -> tuple[list[str], list[list[str]]]:
    """The summary table for a narrow terminal: eval/variant in one cell, short headers, the verdict on the row.

    The cells of :func:`summary_rows`, fewer of them: cases, cost and latency stay in the wide table and the reports.
    """
    rows = []
    for check in checks:
        s = check.summary
        rate, verdict = _rate_cell(check, percent=""), _verdict_cell(check, first_run="first")
        baseline, delta = _baseline_cells(check, tracking, unit="")
        rows.append([f"{s.eval}/{s.variant}", rate, baseline, delta, _adjusted_cell(check), verdict])
    return _without_empty(["eval/variant", "pass [95% CI]", "base", "delta pp (p)", "adj p", "verdict"], rows, ("adj p",))


def _without_empty(headers: list[str], rows: list[list[Any]], optional: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """The table without its ``optional`` columns that say nothing in any row (``-``: no comparison with a baseline)."""
    drop = {i for i, name in enumerate(headers) if name in optional and all(row[i] == "-" for row in rows)}
    keep = [i for i in range(len(headers)) if i not in drop]
    return [headers[i] for i in keep], [[row[i] for i in keep] for row in rows]


def _adjusted_cell(check: EvalCheck) -> str:
    """The p-value adjusted across the session (``0.093``, ``<0.001``); ``-`` without a comparison."""
    c = check.comparison
    if c is None or c.p_adjusted is None:
        return "-"
    return format_p(c.p_adjusted).removeprefix("p=").removeprefix("p")


def _detectable_cell(check: EvalCheck) -> str:
    """The smallest change these cases detect (power 0.8 at the comparison's alpha): ``14.6 pp``."""
    c = check.comparison
    if c is None or c.detectable is None or not c.has_baseline:
        return "-"
    return f"{c.detectable * 100:.1f} pp"


def _rate_cell(check: EvalCheck, percent: str) -> str:
    """The pass rate cell: ``88.9% [57%-98%]``, the interval's ``%`` signs as ``percent`` says."""
    c = check.comparison
    rate = f"{check.summary.pass_rate:.1%}"
    if c is not None:
        rate += f" [{c.current_ci[0] * 100:.0f}{percent}-{c.current_ci[1] * 100:.0f}{percent}]"
    return rate


def _verdict_cell(check: EvalCheck, first_run: str) -> str:
    """The verdict cell: ``PASS``, ``PASS (first run)`` (the words of ``first_run``), or ``?`` before a verdict."""
    v = check.verdict
    return "?" if v is None else v.kind.value + (f" ({first_run})" if v.first_run else "")


def _baseline_cells(check: EvalCheck, tracking: TrackingStatus | None, unit: str) -> tuple[str, str]:
    """The baseline and delta (p) cells of a row: ``100.0%``, ``-33.3 pp (p=0.250)``; ``-`` without a baseline."""
    c = check.comparison
    if c is not None and c.baseline_rate is not None and c.delta is not None and c.p_value is not None:
        return f"{c.baseline_rate:.1%}", f"{c.delta * 100:+.1f}{unit} ({format_p(c.p_value)})"
    return _no_baseline_word(check.verdict, tracking), "-"


def _no_baseline_word(v: Verdict | None, tracking: TrackingStatus | None) -> str:
    """The baseline cell of a row compared with nothing: "-" (first run), "off", or "unavailable"."""
    if tracking is not None and tracking.state == "off":
        return "off"
    if v is None or v.first_run:
        return "-"
    return "unavailable"


def footnote_lines(checks: Sequence[EvalCheck]) -> list[str]:
    """What the table's marks mean (a partial run's ``ran/total``), when a row uses them."""
    lines = []
    if any(check.partial for check in checks):
        lines.append("cases ran/total: a partial run (-k, --lf, deselection, -x); its pass rate covers the cases that ran, "
                     "compared with the baseline on the same cases; it is logged but never becomes a baseline")
    return lines


def note_lines(checks: Sequence[EvalCheck], best: Sequence[BestVariant], tracking: TrackingStatus | None) -> list[str]:
    """Verdicts other than PASS, changed prompts, tripped gates, failure modes, best variants, tracking: a line each."""
    lines = []
    for check in checks:
        v = check.verdict
        if v is not None and (v.kind.value != "PASS" or v.reason.startswith("dropped")):
            lines.append(f"{check.label}: {v.kind.value}: {v.reason}")  # a PASS that dropped says why it is a PASS
    for check in checks:
        c = check.comparison
        if c is not None and c.run_rate is not None and c.run_ci is not None and check.summary.flaky:
            lines.append(f"{check.label}: {c.run_rate:.1%} of runs passed [{c.run_ci[0]:.0%}-{c.run_ci[1]:.0%}], "
                         "cases as the unit (repeated runs of a case are not independent)")
    for check in checks:
        if check.prompts_changed:
            changes = ", ".join(f"{c.name} {c.before or '(none)'} -> {c.after or '(none)'}" for c in check.prompts_changed)
            lines.append(f"{check.label}: prompts changed since baseline run {check.baseline_run_id}: {changes}")
    lines += _gate_lines(checks)
    lines += _quarantine_lines(checks)
    lines += _flaky_lines(checks)
    for check in checks:
        modes = check.summary.failure_modes
        if modes:
            counted = ", ".join(f"{mode} {count}" for mode, count in modes.items())
            lines.append(f"failure modes of {check.label}: {counted}")
    lines += _unstable_lines(checks)
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


def _unstable_lines(checks: Sequence[EvalCheck]) -> list[str]:
    """One line per (eval, variant) whose judges, asked ``judge_repeat`` times, disagreed with themselves."""
    lines = []
    for check in checks:
        unstable = check.summary.unstable_judgments
        if unstable:
            counted = ", ".join(f"{name} {count}" for name, count in unstable.items())
            lines.append(f"unstable judgments of {check.label} (the judge disagreed with itself; runs per grader): {counted}")
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


#: Cases named one by one in a note; more are counted.
_NAMED_CASES = 10


def _cases_text(cases: Sequence[str]) -> str:
    """``a, b, c`` -- the first few of them, and how many more."""
    shown = ", ".join(cases[:_NAMED_CASES])
    return shown + (f" and {len(cases) - _NAMED_CASES} more" if len(cases) > _NAMED_CASES else "")


def _quarantine_lines(checks: Sequence[EvalCheck]) -> list[str]:
    """Per eval variant and quarantine entry: which cases it holds out (or no longer does), why, until when."""
    lines = []
    for check in checks:
        groups: dict[tuple[Any, str], list[str]] = {}
        for case in check.quarantined:
            groups.setdefault((case.entry, case.status), []).append(f"{case.case_id} {case.outcome}")
        for (entry, status), cases in groups.items():
            what = f"{entry.pattern}: {entry.reason}"
            if status == "held":
                lines.append(f"quarantined in {check.label}: {len(cases)} case(s) kept out of pass rate, gates and "
                             f"verdict until {entry.until} ({what}): {_cases_text(cases)}")
            elif status == "expired":
                lines.append(f"quarantine expired on {entry.until} ({what}): {len(cases)} case(s) of {check.label} "
                             f"count again: {_cases_text(cases)}; remove or renew its promptgate_quarantine line")
            else:
                lines.append(f"quarantine not applied to {check.label} ({what}): every case of it is quarantined and "
                             f"a verdict needs at least one, so they count: {_cases_text(cases)}")
    return lines


def _flaky_lines(checks: Sequence[EvalCheck]) -> list[str]:
    """Per eval variant: the cases whose outcome flipped across its recent complete runs."""
    lines = []
    for check in checks:
        for case in check.flaky_across_runs[:_NAMED_CASES]:
            times = "1 time" if case.flips == 1 else f"{case.flips} times"
            lines.append(f"flaky across runs: {check.label} case {case.case_id} flipped {times} "
                         f"in the last {case.runs} runs")
        more = len(check.flaky_across_runs) - _NAMED_CASES
        if more > 0:
            lines.append(f"flaky across runs: {check.label}: {more} more case(s) (the JSON report lists every one)")
    return lines
#: How the comparison's test is named where its p-value is shown.
TEST_NAMES = {"mcnemar": "McNemar exact", "fisher": "Fisher exact"}


def run_date(milliseconds: int) -> str:
    """When a recorded run started, in UTC to the minute (``--prompt-compare``)."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(milliseconds / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def versions_text(versions: Mapping[str, str]) -> str:
    """A run's prompt versions as ``name=version`` pairs; ``-`` when it has none."""
    return ", ".join(f"{name}={version}" for name, version in sorted(versions.items())) or "-"


def compared_p(data: Mapping[str, Any]) -> str:
    """``p=0.25 (McNemar exact, 4 shared cases)`` of a compared pair (:func:`compare_json`'s data); ``-`` without."""
    if data["p_value"] is None:
        return "-"
    return f"{format_p(data['p_value'])} ({TEST_NAMES.get(data['test'], data['test'])}, {data['shared_cases']} shared cases)"


def _percent(value: float) -> str:
    return f"{value:.0%}" if round(value * 100, 6).is_integer() else f"{value:.1%}"


def _milliseconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def conclusion(outcome: SessionOutcome) -> str:
    """The last line: whether the session passes, and what decided it."""
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
    held = f" ({outcome.quarantined_cases} quarantined case(s) not counted)" if outcome.quarantined_cases else ""
    if tolerated:
        return (f"promptgate: session passes: {tolerated} failed or errored case(s) tolerated{held}; "
                "no verdict fails the session")
    return f"promptgate: session passes: every case passed{held}"


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
