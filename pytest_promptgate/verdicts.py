"""Deciding what a session's eval results mean. Pure functions, no pytest, no MLflow.

For now an eval passes when its pass rate is at or above its threshold (DESIGN
§3); baseline comparison and gates build on this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .results import EvalSummary

# Pass rates are fractions of whole cases; the tolerance absorbs float noise only.
_EPSILON = 1e-9


@dataclass(frozen=True)
class ThresholdCheck:
    """Whether one (eval, variant) is at or above its eval's threshold."""

    summary: EvalSummary
    threshold: float | None  # None: the eval's settings never reached the controller
    dataset_size: int | None = None  # cases in the eval's dataset; more than ran when a run is partial

    @property
    def partial(self) -> bool:
        """Whether only some of the dataset's cases ran (-k, --lf, deselection, -x)."""
        return self.dataset_size is not None and self.summary.cases < self.dataset_size

    @property
    def passed(self) -> bool:
        return self.threshold is not None and self.summary.pass_rate >= self.threshold - _EPSILON


def check_thresholds(summaries: Iterable[EvalSummary], evals: Mapping[str, Mapping[str, Any]]) -> list[ThresholdCheck]:
    """One check per summary, against the threshold of its eval in ``evals`` (name → info)."""
    return [
        ThresholdCheck(s, evals[s.eval]["threshold"], evals[s.eval]["cases"]) if s.eval in evals else ThresholdCheck(s, None)
        for s in summaries
    ]


@dataclass(frozen=True)
class SessionOutcome:
    """Why the session passes or fails, in counts."""

    below_threshold: int
    ordinary_failures: int
    bad_eval_files: int
    failed_cases: int
    error_cases: int
    strict: bool

    @property
    def failed(self) -> bool:
        """DESIGN §3: evals tolerate failed cases down to their threshold, ordinary tests do not."""
        strict_failure = self.strict and (self.failed_cases or self.error_cases)
        return bool(self.below_threshold or self.ordinary_failures or self.bad_eval_files or strict_failure)
