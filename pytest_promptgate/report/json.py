"""The JSON report: everything the summary says, as data (``--prompt-report PATH.json``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..verdicts import BestVariant, EvalCheck, FlippedCases, RunComparison, SessionOutcome, prompt_changes
from .summary import conclusion

if TYPE_CHECKING:
    from ..improve import Findings
    from ..quarantine import QuarantinedCase
    from ..tracking import EvalHistory, TrackingStatus


#: Version of the JSON report's layout; bumped when a field changes meaning or goes away.
JSON_REPORT_VERSION = 1


def json_report(
    checks: Sequence[EvalCheck], outcome: SessionOutcome, cases: Sequence[Mapping[str, Any]],
    best: Sequence[BestVariant] = (), tracking: TrackingStatus | None = None, findings: Findings | None = None,
    flipped: Sequence[FlippedCases] = (), history: Mapping[str, EvalHistory] | None = None,
    promotion: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the summary says, as data: the session's outcome, one entry per eval and variant, every case
    (``cases``: :meth:`CaseResult.to_dict <pytest_promptgate.results.CaseResult.to_dict>` dicts).

    ``findings``: people's labels and the judges measured against them; ``flipped``: the cases that flipped
    against each baseline (read when a report shows them); ``history``: the recent runs of the evals (read for
    the HTML report only), as ``trend``; ``promotion``: what ``--promote`` decided, and why.
    """
    return {
        "version": JSON_REPORT_VERSION,
        "passed": not outcome.failed,
        "conclusion": conclusion(outcome).removeprefix("promptgate: "),
        "stopped_early": outcome.stopped_early,
        "strict": outcome.strict,
        "fail_on": sorted(outcome.fail_on),
        "tracking": dataclasses.asdict(tracking) if tracking is not None else None,
        "evals": [_json_check(check) for check in checks],
        "best_variants": [{**dataclasses.asdict(b), "significant": b.significant} for b in best],
        # People's labels and the judges measured against them (improve.Findings): empty lists without labels.
        **(findings.to_dict() if findings is not None else {"labels": [], "judge_agreement": []}),
        "cases": _marked_cases(checks, cases),
        "flipped_cases": [flipped_json(f) for f in flipped],
        "trend": [trend_entry(h) for h in history.values()] if history else None,
        "promotion": dict(promotion) if promotion is not None else None,
    }


def flipped_json(flipped: FlippedCases) -> dict[str, Any]:
    """The flipped cases of one (eval, variant): counts, then each flip with both runs' sides."""
    return {
        "eval": flipped.eval, "variant": flipped.variant,
        "before_run_id": flipped.before_run_id, "after_run_id": flipped.after_run_id,
        "problem": flipped.problem,
        "newly_failing": flipped.count("failing"), "newly_passing": flipped.count("passing"),
        "cases": None if flipped.cases is None else [dataclasses.asdict(flip) for flip in flipped.cases],
    }


def compare_json(rc: RunComparison) -> dict[str, Any]:
    """``--prompt-compare`` as data: both runs, the comparison of ``after`` with ``before``, the flipped cases."""
    c = rc.comparison
    return {
        "version": JSON_REPORT_VERSION,
        "eval": rc.eval, "variant": rc.variant,
        "before": _recorded_json(rc.before, c.baseline_ci if c else None),
        "after": _recorded_json(rc.after, c.current_ci if c else None),
        "delta": c.delta if c else None,
        "p_value": c.p_value if c else None,
        "test": c.test if c else None,
        "shared_cases": c.shared_cases if c else 0,
        "flipped_cases": flipped_json(rc.flipped),
    }


def _recorded_json(run: Any, ci: tuple[float, float] | None) -> dict[str, Any]:
    counts = run.counts
    return {
        "run_id": run.run_id, "start_time_ms": run.start_time, "prompt_versions": run.prompt_versions,
        "complete": run.complete, "passed": counts.passed if counts else None, "cases": counts.total if counts else None,
        "pass_rate": counts.rate if counts else None, "pass_rate_ci95": list(ci) if ci else None,
    }


def _marked_cases(checks: Sequence[EvalCheck], cases: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Every case; those the quarantine held out of their verdict carry ``"quarantined": true``."""
    held = {(c.summary.eval, c.summary.variant, q.case_id) for c in checks for q in c.quarantined if q.status == "held"}
    if not held:
        return list(cases)
    return [{**case, "quarantined": True} if (case["eval"], case["variant"], case["case_id"]) in held else case
            for case in cases]


def trend_entry(history: EvalHistory) -> dict[str, Any]:
    """The recent complete runs of one eval, oldest first, each with the prompt versions that changed since the
    run before it of its variant (None for the first one shown, which has nothing to compare with)."""
    runs, previous = [], {}
    for run in history.runs:
        if not run.complete:
            continue
        before = previous.get(run.variant)
        previous[run.variant] = run
        runs.append({
            "run_id": run.run_id,
            "date": datetime.fromtimestamp(run.start_time / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "variant": run.variant,
            "pass_rate": run.pass_rate,
            "cases": run.total_cases,
            "verdict": run.verdict,
            "prompt_versions": run.prompt_versions,
            "prompts_changed": None if before is None else [
                dataclasses.asdict(change) for change in prompt_changes(before.prompt_versions, run.prompt_versions)
            ],
        })
    return {"eval": history.eval, "experiment": history.experiment, "runs": runs}


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
        "p_adjusted": c.p_adjusted if c else None,
        "correction": c.correction if c and c.p_adjusted is not None else None,
        "detectable_change": c.detectable if c else None,
        "alpha": c.alpha if c else None,
        "run_pass_rate": c.run_rate if c else None,
        "run_pass_rate_ci95": list(c.run_ci) if c and c.run_ci else None,
        "test": c.test if c else None,
        "shared_cases": c.shared_cases if c else 0,
        "fixed_cases": c.fixed if c else None,
        "broken_cases": c.broke if c else None,
        "prompts_changed": [dataclasses.asdict(change) for change in check.prompts_changed],
        "run_id": check.run_id,
        "gates": [dataclasses.asdict(gate) for gate in check.gates],
        "quarantined": [_json_quarantined(case) for case in check.quarantined],
        "flaky_across_runs": [dataclasses.asdict(case) for case in check.flaky_across_runs],
    }


def _json_quarantined(case: QuarantinedCase) -> dict[str, Any]:
    """A quarantined case: ``outcome`` is ``quarantined`` while held, else what the case did (it counts)."""
    return {
        "case_id": case.case_id, "outcome": "quarantined" if case.status == "held" else case.outcome,
        "ran": case.outcome, "status": case.status, "pattern": case.entry.pattern, "reason": case.entry.reason,
        "until": case.entry.until.isoformat(),
    }
