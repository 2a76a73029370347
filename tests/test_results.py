"""The pure aggregation: percentiles, case and run combination, per-eval summaries."""

from __future__ import annotations

import random
import statistics

import numpy
import pytest

from pytest_promptgate.results import (
    CaseResult, GraderRecord, RunRecord, combine_grades, combine_runs, percentile, summarize,
)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 101])
@pytest.mark.parametrize("q", [0, 1, 50, 95, 99, 100])
def test_percentile_matches_numpy(n, q):
    rng = random.Random(n * 1000 + q)
    values = [rng.uniform(0, 5000) for _ in range(n)]
    assert percentile(values, q) == pytest.approx(numpy.percentile(values, q), rel=1e-12)


def test_percentile_matches_statistics_inclusive():
    values = [12.0, 3.0, 7.5, 7.5, 100.0, 42.0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    assert percentile(values, 95) == pytest.approx(cuts[94])
    assert percentile(values, 50) == pytest.approx(statistics.median(values))


def test_percentile_of_nothing_is_none():
    assert percentile([], 95) is None


def g(passed, score=None, weight=1.0, required=True, mode=None, name="g"):
    return GraderRecord(name=name, type="t", passed=passed, score=float(passed) if score is None else score,
                        reason="", required=required, weight=weight, failure_mode=mode)


def test_run_passes_when_every_required_grader_passes_and_scores_by_weight():
    assert combine_grades([g(True, weight=3), g(False, required=False)]) == (True, 0.75)
    assert combine_grades([g(True), g(False)]) == (False, 0.5)
    assert combine_grades([]) == (True, 1.0)


def run(passed, score=None, latency=10.0, cost=None, tokens=(None, None), graders=()):
    return RunRecord(output="o", latency_ms=latency, passed=passed, score=float(passed) if score is None else score,
                     graders=tuple(graders), input_tokens=tokens[0], output_tokens=tokens[1], cost_usd=cost)


@pytest.mark.parametrize(
    ("outcomes", "repeat_pass", "expected"),
    [
        ([True, True, True], 1.0, (True, False)),
        ([True, True, False], 1.0, (False, True)),
        ([True, True, False], 0.6, (True, True)),
        ([True, False, False], 0.6, (False, True)),
        ([False, False], 0.5, (False, False)),
        ([True, False], 0.5, (True, True)),
    ],
)
def test_repeat_pass_and_flaky(outcomes, repeat_pass, expected):
    passed, score, flaky = combine_runs([run(o) for o in outcomes], repeat_pass)
    assert (passed, flaky) == expected
    assert score == pytest.approx(sum(outcomes) / len(outcomes))


def case(cid, outcome, runs=(), variant="v"):
    return CaseResult(eval="e", variant=variant, case_id=cid, passed=outcome == "passed",
                      score=None if outcome == "error" else float(outcome == "passed"),
                      runs=tuple(runs), error="boom" if outcome == "error" else None)


def test_summary_counts_rates_costs_and_failure_modes():
    results = [
        case("a", "passed", [run(True, latency=10, cost=0.001, tokens=(100, 5), graders=[g(True, name="eq")])]),
        case("b", "failed", [run(False, latency=30, cost=0.002, tokens=(50, 5),
                                 graders=[g(False, name="eq", mode="wrong_label"), g(False, name="len", mode="too_long")])]),
        case("c", "failed", [run(False, latency=20, graders=[g(False, name="eq", mode="wrong_label")])]),
        case("d", "error"),
        case("x", "passed", [run(True, latency=5)], variant="w"),
    ]
    s, w = summarize(results)
    assert (s.eval, s.variant, s.cases, s.passed, s.failed, s.errors) == ("e", "v", 4, 1, 2, 1)
    assert s.pass_rate == 0.25 and s.error_rate == 0.25
    assert s.average_score == pytest.approx(1 / 3)  # over the three graded cases
    assert s.latency_ms_avg == pytest.approx(20)
    assert s.latency_ms_p95 == pytest.approx(numpy.percentile([10, 30, 20], 95))
    assert (s.input_tokens, s.output_tokens) == (150, 10)
    assert s.cost_usd_total == pytest.approx(0.003)
    assert s.cost_usd_per_case == pytest.approx(0.003 / 4)
    assert s.grader_pass_rates == {"eq": pytest.approx(1 / 3), "len": 0.0}
    assert s.failure_modes == {"wrong_label": 2, "too_long": 1}
    assert (w.variant, w.pass_rate, w.cost_usd_total, w.input_tokens) == ("w", 1.0, None, None)


def test_every_case_errored():
    (s,) = summarize([case("a", "error"), case("b", "error")])
    assert (s.pass_rate, s.average_score, s.latency_ms_p95, s.error_rate) == (0.0, None, None, 1.0)


def test_case_result_round_trips_through_plain_data():
    original = case("a", "failed", [run(False, graders=[g(False, mode="m")], cost=0.5, tokens=(1, 2))])
    data = original.to_dict()
    assert CaseResult.from_dict(data) == original
    import json

    assert CaseResult.from_dict(json.loads(json.dumps(data))) == original  # survives a text channel too


def test_long_outputs_are_cut_in_the_record():
    long = CaseResult(eval="e", variant="v", case_id="a", passed=True, score=1.0,
                      runs=(RunRecord(output="x" * 30_000, latency_ms=1, passed=True, score=1),))
    assert len(long.to_dict()["runs"][0]["output"]) < 20_100


def test_a_cut_output_keeps_its_length_and_is_cut_once():
    output = "x" * 1_000_000
    record = CaseResult(eval="e", variant="v", case_id="a", passed=True, score=1.0,
                        runs=(RunRecord(output=output, latency_ms=1, passed=True, score=1),)).to_dict()
    run = record["runs"][0]
    assert run["output_chars"] == 1_000_000
    assert run["output"].endswith("… [980000 chars cut]")
    assert CaseResult.from_dict(record).to_dict()["runs"][0] == run  # read back and sent again: not cut twice
