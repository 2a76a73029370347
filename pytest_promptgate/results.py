"""Per-case results, and their aggregation into per-(eval, variant) summaries.

Pure: plain data in, plain data out; no pytest, no MLflow. A :class:`CaseResult`
travels from the process that ran the item to the controller on the pytest
report (``report.promptgate``), as the plain dict of :meth:`CaseResult.to_dict`,
which survives xdist's serialisation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Outputs longer than this are cut in the result record (the item's own report shows a shorter cut).
MAX_OUTPUT_CHARS = 20_000


@dataclass(frozen=True, slots=True)  # slots: a session holds one per grader, case and run (tens of thousands)
class GraderRecord:
    """One grader's answer for one run."""

    name: str
    type: str
    passed: bool
    score: float
    reason: str
    required: bool = True
    weight: float = 1.0
    failure_mode: str | None = None
    #: A model judge asked several times (``judge_repeat``) did not give one answer.
    unstable: bool = False


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One call of the target for a case, and how it graded."""

    output: str
    latency_ms: float
    passed: bool
    score: float
    graders: tuple[GraderRecord, ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    model: str | None = None
    #: What the judges of this run's model-graded graders took, counted apart from the target's.
    judge_input_tokens: int | None = None
    judge_output_tokens: int | None = None
    judge_cost_usd: float | None = None
    #: One latency per judge call.
    judge_latency_ms: tuple[float, ...] = ()
    #: The output's identity in a label (``schema.output_sha``), of the whole output (``output`` may be cut).
    output_sha: str | None = None
    #: The output's length before :meth:`CaseResult.to_dict` cut it (None: not cut), so that a later, shorter cut
    #: (the HTML page's) still says how many characters the reader does not see.
    output_chars: int | None = None


@dataclass(frozen=True, slots=True)
class JudgeCall:
    """What one judge call took: its tokens, cost and latency (plain data the runner collects per run)."""

    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    latency_ms: float


def judge_usage(calls: Sequence[JudgeCall]) -> dict[str, Any]:
    """The judge fields of a :class:`RunRecord` for the judge calls one run made."""
    return {
        "judge_input_tokens": _sum_known(c.input_tokens for c in calls),
        "judge_output_tokens": _sum_known(c.output_tokens for c in calls),
        "judge_cost_usd": _sum_known(c.cost_usd for c in calls),
        "judge_latency_ms": tuple(c.latency_ms for c in calls),
    }


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The result of one item: one case under one variant, over ``repeat`` runs."""

    eval: str
    variant: str
    case_id: str
    passed: bool
    score: float | None
    runs: tuple[RunRecord, ...] = ()
    error: str | None = None
    flaky: bool = False
    vars: dict[str, Any] = field(default_factory=dict)
    expected: Any = None
    tags: tuple[str, ...] = ()
    #: People's rated labels of this case under this variant (``schema.Label.to_dict``), from its labels file.
    labels: tuple[dict[str, Any], ...] = ()

    @property
    def outcome(self) -> str:
        """``passed``, ``failed`` or ``error``."""
        return "error" if self.error is not None else ("passed" if self.passed else "failed")

    @property
    def runs_passed(self) -> int:
        """How many runs passed."""
        return sum(run.passed for run in self.runs)

    @property
    def run_counts(self) -> tuple[int, int]:
        """(runs passed, runs): the case's pass fraction for paired repeats; an errored case passed none of its runs."""
        total = max(len(self.runs), 1)
        return (0 if self.error is not None else self.runs_passed), total

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the report (xdist serialises reports with execnet: builtins only).

        Built field by field rather than with ``dataclasses.asdict``, which deep-copies
        and cost about half a millisecond per item (benchmarks/run.py, b1). Sequences
        are tuples: Python's garbage collector stops tracking tuples and dicts that hold
        only strings and numbers, and pytest keeps every report to the end of the
        session (10 000 items: some 50 000 fewer objects for each collection to visit).
        """
        data = _plain(self)
        data["runs"] = tuple(_run_dict(run) for run in self.runs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        """The inverse of :meth:`to_dict`."""
        runs = tuple(
            RunRecord(**{**run, "graders": tuple(GraderRecord(**g) for g in run["graders"]),
                         "judge_latency_ms": tuple(run.get("judge_latency_ms", ()))})
            for run in data["runs"]
        )
        return cls(**{**data, "runs": runs, "tags": tuple(data.get("tags", ())), "labels": tuple(data.get("labels", ()))})

    def labelled_modes(self) -> set[str]:
        """The failure modes people gave this case (:func:`labelled_modes` over all its outputs)."""
        if not self.labels:  # most cases: no set of digests to build
            return set()
        return labelled_modes(self.labels, {run.output_sha for run in self.runs}, self.outcome == "failed")


def labelled_modes(labels: Iterable[dict[str, Any]], shas: set[str | None], failed: bool) -> set[str]:
    """The failure modes of ``bad`` labels about one of the outputs whose digests are ``shas``, and of those about
    the case as a whole (no ``output_sha``) when it ``failed``: a label about an earlier output is not counted."""
    return {
        label["failure_mode"] for label in labels
        if label["rating"] == "bad" and label.get("failure_mode")
        and (label["output_sha"] in shas if label.get("output_sha") else failed)
    }


def label_text(label: dict[str, Any], note: str = "", limit: int | None = None) -> str:
    """A person's label as the failure text, the reports and the MLflow table word it: ``bad [mode] by ana: feedback``
    (``note`` after the annotator; the feedback cut at ``limit`` characters, when given)."""
    mode = f" [{label['failure_mode']}]" if label.get("failure_mode") else ""
    by = f" by {label['annotator']}" if label.get("annotator") else ""
    feedback = label.get("feedback") or ""
    if limit is not None and len(feedback) > limit:
        feedback = feedback[:limit] + "…"
    return f"{label['rating']}{mode}{by}{note}" + (f": {feedback}" if feedback else "")


def _plain(record: Any) -> dict[str, Any]:
    """A record's fields as a dict (one level: the fields' values are not copied)."""
    return {name: getattr(record, name) for name in record.__slots__}


def _run_dict(run: RunRecord) -> dict[str, Any]:
    """A run as plain data, its output cut at :data:`MAX_OUTPUT_CHARS` (once: a record read back is cut already)."""
    data = {**_plain(run), "graders": tuple(_plain(g) for g in run.graders)}
    if run.output_chars is None and len(run.output) > MAX_OUTPUT_CHARS:
        cut = len(run.output) - MAX_OUTPUT_CHARS
        data["output"], data["output_chars"] = run.output[:MAX_OUTPUT_CHARS] + f"… [{cut} chars cut]", len(run.output)
    return data


def combine_runs(runs: Sequence[RunRecord], repeat_pass: float) -> tuple[bool, float, bool]:
    """A case's (passed, score, flaky) from its runs (DESIGN §3).

    The case passes when at least ``repeat_pass`` of its runs pass; it is flaky
    when its runs disagree; its score is the mean of the runs' scores.
    """
    passed_runs = sum(run.passed for run in runs)
    passed = passed_runs >= repeat_pass * len(runs) - 1e-9
    flaky = 0 < passed_runs < len(runs)
    return passed, sum(run.score for run in runs) / len(runs), flaky


def combine_grades(graders: Sequence[GraderRecord]) -> tuple[bool, float]:
    """A run's (passed, score): it passes when every required grader passes; the score is the weighted mean."""
    passed = all(g.passed for g in graders if g.required)
    total_weight = sum(g.weight for g in graders)
    if not graders or total_weight == 0:
        return passed, 1.0 if passed else 0.0
    return passed, sum(g.score * g.weight for g in graders) / total_weight


# --------------------------------------------------------------------------- aggregation


@dataclass(frozen=True)
class EvalSummary:
    """What one (eval, variant) measured in this session."""

    eval: str
    variant: str
    cases: int
    passed: int
    failed: int
    errors: int
    flaky: int
    #: passed / cases: error cases count against it, since they produced no passing answer.
    pass_rate: float
    #: mean case score over the graded (non-error) cases; None when every case errored.
    average_score: float | None
    error_rate: float
    latency_ms_avg: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    latency_ms_p99: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd_total: float | None
    cost_usd_per_case: float | None
    grader_pass_rates: dict[str, float]
    failure_modes: dict[str, int]
    #: Judge calls of model-graded graders (every ask of ``judge_repeat``), counted apart from the target's.
    judge_calls: int = 0
    judge_input_tokens: int | None = None
    judge_output_tokens: int | None = None
    judge_cost_usd_total: float | None = None
    judge_latency_ms_p95: float | None = None
    #: Per grader: the runs whose judge, asked ``judge_repeat`` times, did not give one answer.
    unstable_judgments: dict[str, int] = field(default_factory=dict)


def summarize(results: Iterable[CaseResult]) -> list[EvalSummary]:
    """One summary per (eval, variant), in the order they first appear."""
    groups: dict[tuple[str, str], list[CaseResult]] = {}
    for result in results:
        groups.setdefault((result.eval, result.variant), []).append(result)
    return [_summary(eval_name, variant, cases) for (eval_name, variant), cases in groups.items()]


def _summary(eval_name: str, variant: str, cases: list[CaseResult]) -> EvalSummary:
    n = len(cases)
    passed = sum(c.outcome == "passed" for c in cases)
    errors = sum(c.outcome == "error" for c in cases)
    graded = [c for c in cases if c.error is None]
    runs = [run for c in graded for run in c.runs]
    latencies = [run.latency_ms for run in runs]
    grader_runs: dict[str, list[bool]] = {}
    for run in runs:
        for g in run.graders:
            grader_runs.setdefault(g.name, []).append(g.passed)
    failure_modes: dict[str, int] = {}
    for case in graded:
        modes = {g.failure_mode for run in case.runs for g in run.graders if not g.passed and g.failure_mode}
        modes |= case.labelled_modes()  # people's failure modes count with the graders' (DESIGN §11)
        for mode in modes:
            failure_modes[mode] = failure_modes.get(mode, 0) + 1
    cost = _sum_known(run.cost_usd for c in cases for run in c.runs)
    all_runs = [run for c in cases for run in c.runs]
    judge_latencies = [ms for run in all_runs for ms in run.judge_latency_ms]
    unstable: dict[str, int] = {}
    for run in all_runs:
        for g in run.graders:
            if g.unstable:
                unstable[g.name] = unstable.get(g.name, 0) + 1
    return EvalSummary(
        eval=eval_name,
        variant=variant,
        cases=n,
        passed=passed,
        failed=n - passed - errors,
        errors=errors,
        flaky=sum(c.flaky for c in cases),
        pass_rate=passed / n,
        average_score=sum(c.score or 0.0 for c in graded) / len(graded) if graded else None,
        error_rate=errors / n,
        latency_ms_avg=sum(latencies) / len(latencies) if latencies else None,
        latency_ms_p50=percentile(latencies, 50),
        latency_ms_p95=percentile(latencies, 95),
        latency_ms_p99=percentile(latencies, 99),
        input_tokens=_sum_known(run.input_tokens for c in cases for run in c.runs),
        output_tokens=_sum_known(run.output_tokens for c in cases for run in c.runs),
        cost_usd_total=cost,
        cost_usd_per_case=cost / n if cost is not None else None,
        grader_pass_rates={name: sum(v) / len(v) for name, v in grader_runs.items()},
        failure_modes=dict(sorted(failure_modes.items(), key=lambda kv: (-kv[1], kv[0]))),
        judge_calls=len(judge_latencies),
        judge_input_tokens=_sum_known(run.judge_input_tokens for run in all_runs),
        judge_output_tokens=_sum_known(run.judge_output_tokens for run in all_runs),
        judge_cost_usd_total=_sum_known(run.judge_cost_usd for run in all_runs),
        judge_latency_ms_p95=percentile(judge_latencies, 95),
        unstable_judgments=unstable,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile with linear interpolation between closest ranks.

    The same definition as ``numpy.percentile``'s default and
    ``statistics.quantiles(method="inclusive")``; ``None`` for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _sum_known(values: Iterable[Any]) -> Any:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
