"""The JSON report: everything the summary says, as data (``--prompt-report PATH.json``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..verdicts import BestVariant, EvalCheck, SessionOutcome
from .summary import conclusion

if TYPE_CHECKING:
    from ..tracking import TrackingStatus


#: Version of the JSON report's layout; bumped when a field changes meaning or goes away.
JSON_REPORT_VERSION = 1


def json_report(
    checks: Sequence[EvalCheck], outcome: SessionOutcome, cases: Sequence[Mapping[str, Any]],
    best: Sequence[BestVariant] = (), tracking: TrackingStatus | None = None,
) -> dict[str, Any]:
    """Everything the summary says, as data: the session's outcome, one entry per eval and variant, every case
    (``cases``: :meth:`CaseResult.to_dict <pytest_promptgate.results.CaseResult.to_dict>` dicts)."""
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
    }
