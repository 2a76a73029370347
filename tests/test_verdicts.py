"""The pure verdict logic: statistics against SciPy, verdict rules, gates (DESIGN §5, §2, §6)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import pytest

scipy_stats = pytest.importorskip("scipy.stats")

from pytest_promptgate.results import EvalSummary
from pytest_promptgate.schema import GateRule
from pytest_promptgate.verdicts import (
    DEFAULT_FAIL_ON,
    GATE_METRICS,
    Comparison,
    EvalCheck,
    GateResult,
    PromptChange,
    RateInput,
    Verdict,
    VerdictKind,
    adjust_pvalues,
    best_variants,
    compare,
    evaluate_gates,
    fails_session,
    fisher_exact_two_sided,
    judge,
    mcnemar_exact,
    metrics_of,
    parse_fail_on,
    prompt_changes,
    verdict,
    wilson_interval,
)

# --------------------------------------------------------------------------- Wilson


def wilson_by_quadratic(x, n, confidence=0.95):
    """The Wilson bounds as the roots of (x/n - p)^2 = z^2 p (1 - p) / n, solved for p."""
    z = scipy_stats.norm.ppf((1 + confidence) / 2)
    phat = x / n
    a = n + z * z
    b = -(2 * x + z * z)
    c = x * phat
    root = math.sqrt(b * b - 4 * a * c)
    return max(0.0, (-b - root) / (2 * a)), min(1.0, (-b + root) / (2 * a))


WILSON_GRID = [(x, n) for n in (1, 2, 3, 5, 10, 20, 29, 50, 100, 263, 1000, 10_000) for x in sorted({0, 1, n // 3, n // 2, n - 1, n})]


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
@pytest.mark.parametrize(("x", "n"), WILSON_GRID)
def test_wilson_matches_the_quadratic_roots(x, n, confidence):
    assert wilson_interval(x, n, confidence) == pytest.approx(wilson_by_quadratic(x, n, confidence), abs=1e-12)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize(("x", "n"), WILSON_GRID)
def test_wilson_matches_scipy(x, n, confidence):
    expected = scipy_stats.binomtest(x, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert wilson_interval(x, n, confidence) == pytest.approx((expected.low, expected.high), abs=1e-12)


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:857-872, Table II, method 3 (score, no continuity correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_published_values(x, n, low, high):
    assert wilson_interval(x, n) == pytest.approx((low, high), abs=5e-5)


def test_wilson_bounds_are_exact_at_none_and_all():
    for n in (1, 7, 100, 10_000):
        assert wilson_interval(0, n)[0] == 0.0
        assert wilson_interval(n, n)[1] == 1.0
        assert 0.0 < wilson_interval(0, n)[1] < 1.0
        assert 0.0 < wilson_interval(n, n)[0] < 1.0


def test_wilson_of_no_cases_is_everything():
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("x", "n", "confidence"), [(-1, 5, 0.95), (6, 5, 0.95), (0, -1, 0.95), (1, 5, 0.0), (1, 5, 1.0), (1, 5, 95)])
def test_wilson_refuses_impossible_input(x, n, confidence):
    with pytest.raises(ValueError):
        wilson_interval(x, n, confidence)


# --------------------------------------------------------------------------- McNemar

MCNEMAR_GRID = [
    (0, 0), (0, 1), (1, 0), (0, 5), (5, 0), (1, 1), (2, 2), (1, 2), (3, 7), (7, 3), (0, 20), (10, 11),
    (12, 30), (40, 10), (100, 130), (500, 560), (3000, 3100), (3100, 3000), (4990, 5010),
]


@pytest.mark.parametrize(("b", "c"), MCNEMAR_GRID)
def test_mcnemar_matches_scipy_binomtest(b, c):
    expected = 1.0 if b + c == 0 else scipy_stats.binomtest(min(b, c), b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_known_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == 2 / 32
    assert mcnemar_exact(0, 5) == 2 / 32
    assert mcnemar_exact(1, 1) == 1.0
    assert mcnemar_exact(0, 1) == 1.0


def test_mcnemar_stays_exact_for_ten_thousand_discordant_cases():
    # Every term of the binomial sum overflows a float here; the integer sum does not.
    p = mcnemar_exact(4800, 5200)
    assert p == pytest.approx(scipy_stats.binomtest(4800, 10_000, 0.5).pvalue, rel=1e-9)
    assert 0 < p < 1e-4
    assert mcnemar_exact(0, 10_000) == 0.0  # 2**-9999 is below the smallest float: an honest zero, not NaN
    assert mcnemar_exact(5000, 5000) == 1.0


def test_mcnemar_refuses_negative_counts():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


# --------------------------------------------------------------------------- Fisher

FISHER_GRID = [
    (pa, na, pb, nb)
    for na, nb in [(1, 1), (1, 5), (5, 1), (2, 3), (10, 10), (10, 20), (37, 41), (100, 100), (250, 90)]
    for pa in sorted({0, 1, na // 2, na - 1, na})
    for pb in sorted({0, 1, nb // 2, nb - 1, nb})
    if pa <= na and pb <= nb
]


@pytest.mark.parametrize(("pa", "na", "pb", "nb"), FISHER_GRID)
def test_fisher_matches_scipy(pa, na, pb, nb):
    expected = scipy_stats.fisher_exact([[pa, na - pa], [pb, nb - pb]]).pvalue
    assert fisher_exact_two_sided(pa, na, pb, nb) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_fisher_matches_scipy_on_every_small_table():
    # Every table with runs of up to 9 cases: ties between equally likely tables are frequent here.
    for na in range(1, 10):
        for nb in range(1, 10):
            for pa in range(na + 1):
                for pb in range(nb + 1):
                    expected = scipy_stats.fisher_exact([[pa, na - pa], [pb, nb - pb]]).pvalue
                    assert fisher_exact_two_sided(pa, na, pb, nb) == pytest.approx(expected, rel=1e-9), (pa, na, pb, nb)


def test_fisher_matches_scipy_on_large_runs():
    for pa, na, pb, nb in [(7000, 10_000, 7100, 10_000), (9990, 10_000, 9000, 10_000), (3, 5000, 40, 5000)]:
        expected = scipy_stats.fisher_exact([[pa, na - pa], [pb, nb - pb]]).pvalue
        assert fisher_exact_two_sided(pa, na, pb, nb) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_fisher_with_an_empty_run_or_one_table_is_one():
    assert fisher_exact_two_sided(0, 0, 3, 5) == 1.0
    assert fisher_exact_two_sided(3, 5, 0, 0) == 1.0
    assert fisher_exact_two_sided(5, 5, 9, 9) == 1.0  # everything passed both times
    assert fisher_exact_two_sided(0, 5, 0, 9) == 1.0
    assert fisher_exact_two_sided(1, 1, 1, 1) == 1.0


@pytest.mark.parametrize("args", [(-1, 3, 1, 3), (4, 3, 1, 3), (1, 3, 1, -3)])
def test_fisher_refuses_impossible_counts(args):
    with pytest.raises(ValueError):
        fisher_exact_two_sided(*args)


# --------------------------------------------------------------------------- compare


def test_compare_without_baseline_gives_the_current_rate_and_interval_only():
    result = compare(RateInput(8, 10), None, None)
    assert result.current_rate == 0.8
    assert result.current_ci == wilson_interval(8, 10)
    assert not result.has_baseline
    assert (result.baseline_rate, result.baseline_ci, result.delta, result.p_value, result.test) == (None,) * 5
    assert result.shared_cases == 0


def test_compare_uses_mcnemar_over_the_shared_cases():
    # baseline passed, passes now: 10; broke (passed then failed): 6; fixed: 1; failed both times: 3
    paired = [(True, True)] * 10 + [(True, False)] * 6 + [(False, True)] * 1 + [(False, False)] * 3
    result = compare(RateInput(11, 20), RateInput(16, 20), paired)
    assert result.test == "mcnemar"
    assert result.shared_cases == 20
    assert (result.broke, result.fixed) == (6, 1)
    assert result.p_value == pytest.approx(scipy_stats.binomtest(1, 7, 0.5).pvalue, rel=1e-12)
    assert result.delta == pytest.approx(-0.25)
    assert result.baseline_ci == wilson_interval(16, 20)


def test_compare_falls_back_to_fisher_when_no_case_is_shared():
    for paired in (None, []):
        result = compare(RateInput(11, 20), RateInput(16, 25), paired)
        assert result.test == "fisher"
        assert result.shared_cases == 0
        assert (result.fixed, result.broke) == (None, None)
        assert result.p_value == pytest.approx(scipy_stats.fisher_exact([[11, 9], [16, 9]]).pvalue, rel=1e-12)


def test_compare_treats_an_empty_baseline_as_none():
    assert not compare(RateInput(3, 4), RateInput(0, 0), None).has_baseline


def test_compare_refuses_pairs_without_a_baseline():
    with pytest.raises(ValueError, match="without a baseline"):
        compare(RateInput(3, 4), None, [(True, True)])


def test_rate_input_checks_its_counts():
    assert RateInput(0, 0).rate == 0.0
    with pytest.raises(ValueError):
        RateInput(5, 4)
    with pytest.raises(ValueError):
        RateInput(-1, 4)


# --------------------------------------------------------------------------- verdict rules


def against(baseline_rate, p_value=0.01):
    """A comparison with a baseline at ``baseline_rate`` and the given p-value."""
    return Comparison(
        current=RateInput(0, 1), current_rate=0.0, current_ci=(0.0, 1.0), baseline=RateInput(1, 1),
        baseline_rate=baseline_rate, baseline_ci=(0.0, 1.0), delta=None, p_value=p_value, test="fisher",
    )


R, W, I, P = VerdictKind.REGRESSION, VerdictKind.WARNING, VerdictKind.IMPROVED, VerdictKind.PASS

VERDICT_TABLE = [
    # pass_rate, threshold, warn_drop, comparison, significance, kind, first_run
    pytest.param(0.72, 0.80, 0.10, None, None, R, True, id="first-run-below-threshold"),
    pytest.param(0.90, 0.80, 0.10, None, None, P, True, id="first-run-above-threshold"),
    pytest.param(0.80, 0.80, 0.10, None, None, P, True, id="first-run-exactly-at-threshold"),
    pytest.param(0.72, 0.80, 0.10, against(0.95), None, R, False, id="regression-beats-warning"),
    pytest.param(0.95, 0.96, 0.10, against(0.80), None, R, False, id="regression-even-when-improved"),
    pytest.param(0.72, 0.80, 0.10, against(0.72), None, R, False, id="regression-even-when-unchanged"),
    pytest.param(0.80, 0.80, 0.10, against(0.95), None, W, False, id="warning-at-threshold"),
    pytest.param(0.80, 0.80, 0.10, against(0.89), None, P, False, id="drop-under-warn_drop"),
    pytest.param(0.85, 0.80, 0.10, against(0.85), None, P, False, id="unchanged"),
    pytest.param(0.90, 0.80, 0.10, against(0.85), None, I, False, id="improved"),
    pytest.param(0.90, 0.80, 0.10, against(0.85, p_value=0.2), 0.05, P, False, id="improved-not-significant"),
    pytest.param(0.90, 0.80, 0.10, against(0.85, p_value=0.01), 0.05, I, False, id="improved-significant"),
    pytest.param(0.80, 0.70, 0.10, against(0.95, p_value=0.2), 0.05, P, False, id="warning-not-significant"),
    pytest.param(0.80, 0.70, 0.10, against(0.95, p_value=0.05), 0.05, P, False, id="p-equal-to-alpha-is-not-below"),
    pytest.param(0.80, 0.70, 0.10, against(0.95, p_value=0.049), 0.05, W, False, id="warning-significant"),
    pytest.param(0.80, 0.70, 0.10, against(0.95, p_value=0.9), None, W, False, id="no-significance-no-gating"),
    pytest.param(0.80, 0.70, 0.0, against(0.80), None, P, False, id="warn_drop-zero-unchanged-is-pass"),
    pytest.param(0.79, 0.70, 0.0, against(0.80), None, W, False, id="warn_drop-zero-any-drop-warns"),
    pytest.param(1.0, 1.0, 0.10, against(0.9), None, I, False, id="all-passed"),
    pytest.param(0.0, 0.0, 0.10, against(0.2), None, W, False, id="threshold-zero"),
]


@pytest.mark.parametrize(("rate", "threshold", "warn_drop", "comparison", "alpha", "kind", "first_run"), VERDICT_TABLE)
def test_verdict_rules(rate, threshold, warn_drop, comparison, alpha, kind, first_run):
    result = verdict(rate, threshold, warn_drop, comparison, alpha)
    assert (result.kind, result.first_run) == (kind, first_run)
    assert result.reason and "\n" not in result.reason


def test_an_exact_ten_point_drop_warns_despite_float_rounding():
    current, baseline = RateInput(74, 100), RateInput(84, 100)
    assert baseline.rate - current.rate < 0.10  # 0.09999999999999998: why the epsilon
    result = verdict(current.rate, 0.5, 0.10, compare(current, baseline, None))
    assert result.kind is VerdictKind.WARNING
    assert result.reason.startswith("dropped 10.0 pp from 84.0% (p=")


def test_a_pass_rate_at_the_threshold_up_to_rounding_is_not_a_regression():
    assert verdict(0.3, 0.1 + 0.2, 0.10, None).kind is VerdictKind.PASS  # 0.30000000000000004
    assert verdict(17 / 20, 0.85, 0.10, None).kind is VerdictKind.PASS
    assert verdict(0.3 - 1e-6, 0.3, 0.10, None).kind is VerdictKind.REGRESSION


def test_a_rise_by_rounding_only_is_not_an_improvement():
    assert verdict(0.1 + 0.2, 0.0, 0.10, against(0.3)).kind is VerdictKind.PASS


def test_a_comparison_without_baseline_is_a_first_run():
    result = verdict(0.9, 0.8, 0.1, compare(RateInput(9, 10), None, None), 0.05)
    assert result == Verdict(VerdictKind.PASS, True, "first run: no baseline yet")


def test_verdict_reasons_read_as_one_sentence():
    assert verdict(0.72, 0.80, 0.10, against(0.9)).reason == "pass rate 72.0% below threshold 80%"
    assert verdict(0.72, 0.855, 0.10, None).reason == "pass rate 72.0% below threshold 85.5%; first run: no baseline yet"
    assert verdict(0.72, 0.5, 0.10, against(0.84, 0.031)).reason == "dropped 12.0 pp from 84.0% (p=0.031)"
    assert verdict(0.89, 0.5, 0.10, against(0.84, 0.0001)).reason == "rose 5.0 pp from 84.0% (p<0.001)"
    assert verdict(0.72, 0.5, 0.10, against(0.84, 0.2), 0.05).reason == (
        "dropped 12.0 pp from 84.0%, not significant (p=0.200, alpha 0.05)"
    )
    assert verdict(0.80, 0.5, 0.10, against(0.84, 0.4)).reason == (
        "dropped 4.0 pp from 84.0%, less than warn_drop 10 pp (p=0.400)"
    )
    assert verdict(0.84, 0.5, 0.10, against(0.84, 1.0)).reason == "unchanged from baseline 84.0%"


def test_an_unreachable_baseline_is_not_a_first_run():
    result = verdict(0.9, 0.8, 0.1, None, no_baseline="baseline unavailable")
    assert (result.kind, result.first_run) == (VerdictKind.PASS, False)
    assert result.reason == "baseline unavailable: judged by the threshold alone"
    assert verdict(0.7, 0.8, 0.1, None, no_baseline="baseline unavailable").kind is VerdictKind.REGRESSION


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.05, 5])
def test_verdict_refuses_a_significance_outside_zero_and_one(alpha):
    with pytest.raises(ValueError, match="significance"):
        verdict(0.9, 0.8, 0.1, None, alpha)


def test_verdicts_from_real_comparisons_follow_the_p_value():
    # 20 shared cases, 6 broke and 1 fixed: McNemar p = 0.125, a 25 pp drop.
    paired = [(True, True)] * 10 + [(True, False)] * 6 + [(False, True)] + [(False, False)] * 3
    comparison = compare(RateInput(11, 20), RateInput(16, 20), paired)
    assert verdict(0.55, 0.5, 0.10, comparison).kind is VerdictKind.WARNING
    assert verdict(0.55, 0.5, 0.10, comparison, 0.05).kind is VerdictKind.PASS
    assert verdict(0.55, 0.5, 0.10, comparison, 0.2).kind is VerdictKind.WARNING


# --------------------------------------------------------------------------- --prompt-fail-on


def test_parse_fail_on():
    assert parse_fail_on("regression") == frozenset({"regression"})
    assert parse_fail_on(" Regression , WARNING,") == frozenset({"regression", "warning"})
    assert parse_fail_on("none") == frozenset()
    assert DEFAULT_FAIL_ON == frozenset({"regression"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("regresion", r"unknown verdict 'regresion' in 'regresion': expected regression, warning, improved, none"),
        ("regression,pass", r"unknown verdict 'pass'.*PASS never fails the session"),
        ("", r"expected verdict names"),
        (" , ", r"expected verdict names"),
        ("none,regression", r"'none' cannot be combined"),
    ],
)
def test_parse_fail_on_rejects_unknown_names_clearly(text, message):
    with pytest.raises(ValueError, match=message):
        parse_fail_on(text)


@pytest.mark.parametrize(
    ("kind", "fail_on", "fails"),
    [
        (R, DEFAULT_FAIL_ON, True), (W, DEFAULT_FAIL_ON, False), (I, DEFAULT_FAIL_ON, False), (P, DEFAULT_FAIL_ON, False),
        (W, frozenset({"regression", "warning"}), True), (R, frozenset({"regression", "warning"}), True),
        (R, frozenset(), False), (I, frozenset({"improved"}), True), (P, frozenset({"regression", "warning", "improved"}), False),
    ],
)
def test_fails_session(kind, fail_on, fails):
    assert fails_session(Verdict(kind, False, ""), fail_on) is fails


# --------------------------------------------------------------------------- gates


@dataclass
class Rule:
    metric: str
    min: float | None = None
    max: float | None = None


def gate(rule, value, on_fail="fail"):
    [result] = evaluate_gates([rule], on_fail, {rule.metric: value})
    return result


@pytest.mark.parametrize(
    ("rule", "value", "passed"),
    [
        (Rule("latency_ms_p95", max=1500), 1200.0, True),
        (Rule("latency_ms_p95", max=1500), 1500.0, True),
        (Rule("latency_ms_p95", max=1500), 1500.1, False),
        (Rule("pass_rate", min=0.8), 0.8, True),
        (Rule("pass_rate", min=0.8), 0.79, False),
        (Rule("pass_rate", min=0.3), 0.1 + 0.2, True),
        (Rule("pass_rate", max=0.3), 0.1 + 0.2, True),  # 0.30000000000000004 is 0.3 up to rounding
        (Rule("average_score", min=0.5, max=0.9), 0.7, True),
        (Rule("average_score", min=0.5, max=0.9), 0.4, False),
        (Rule("average_score", min=0.5, max=0.9), 0.95, False),
        (Rule("cost_usd_per_case", max=1e-7), 1e-7 * (1 + 1e-12), True),
        (Rule("cost_usd_per_case", max=1e-7), 1.01e-7, False),  # an absolute tolerance would hide this
        (Rule("error_rate", max=0.0), 0.0, True),
        (Rule("input_tokens", max=1000), 1001, False),
    ],
)
def test_gate_bounds(rule, value, passed):
    result = gate(rule, value)
    assert result.passed is passed
    assert (result.metric, result.value, result.min, result.max) == (rule.metric, value, rule.min, rule.max)


def test_gate_reasons():
    assert gate(Rule("latency_ms_p95", max=1500), 1800.0).reason == "latency_ms_p95 1800 above max 1500"
    assert gate(Rule("pass_rate", min=0.8), 0.7).reason == "pass_rate 0.7 below min 0.8"
    assert gate(Rule("average_score", min=0.5, max=0.9), 0.7).reason == "average_score 0.7 >= min 0.5 and <= max 0.9"
    # Six digits would show "0.002 above max 0.002": the failing value is shown in full instead.
    assert gate(Rule("cost_usd_per_case", max=0.002), 0.0020000049).reason == "cost_usd_per_case 0.0020000049 above max 0.002"


@pytest.mark.parametrize(
    ("metric", "why"),
    [
        ("cost_usd_total", "the target gave no cost or tokens"),
        ("cost_usd_per_case", "the target gave no cost or tokens"),
        ("input_tokens", "the target gave no token counts"),
        ("latency_ms_p95", "no case was graded (every case errored)"),
        ("average_score", "no case was graded (every case errored)"),
    ],
)
def test_a_metric_not_reported_trips_its_gate(metric, why):
    result = gate(Rule(metric, max=1.0), None)
    assert not result.passed
    assert result.value is None
    assert result.reason == f"{metric} not reported: {why}"


def test_the_documented_cost_reason():
    assert gate(Rule("cost_usd_total", max=1.0), None).reason == "cost_usd_total not reported: the target gave no cost or tokens"


def test_a_metric_missing_from_the_mapping_trips_and_nan_trips():
    [missing] = evaluate_gates([Rule("latency_ms_p99", max=1)], "warn", {})
    assert not missing.passed and "not reported" in missing.reason
    assert not gate(Rule("pass_rate", min=0.5), math.nan).passed


@pytest.mark.parametrize("on_fail", ["warn", "fail", "block_promote"])
def test_gate_results_carry_on_fail(on_fail):
    results = evaluate_gates([Rule("pass_rate", min=0.9), Rule("error_rate", max=0.1)], on_fail, {"pass_rate": 0.5, "error_rate": 0.0})
    assert [(r.metric, r.passed, r.on_fail) for r in results] == [("pass_rate", False, on_fail), ("error_rate", True, on_fail)]
    assert all(isinstance(r, GateResult) for r in results)


def test_gates_refuse_an_unknown_on_fail_and_a_rule_without_bounds():
    with pytest.raises(ValueError, match="on_fail"):
        evaluate_gates([Rule("pass_rate", min=0.5)], "explode", {"pass_rate": 1.0})
    with pytest.raises(ValueError, match="neither min nor max"):
        evaluate_gates([Rule("pass_rate")], "fail", {"pass_rate": 1.0})


def summary(**changes):
    base = EvalSummary(
        eval="intent-routing", variant="default", cases=20, passed=17, failed=2, errors=1, flaky=0, pass_rate=0.85,
        average_score=0.9, error_rate=0.05, latency_ms_avg=400.0, latency_ms_p50=350.0, latency_ms_p95=900.0,
        latency_ms_p99=1400.0, input_tokens=5000, output_tokens=600, cost_usd_total=0.03, cost_usd_per_case=0.0015,
        grader_pass_rates={}, failure_modes={},
    )
    return replace(base, **changes)


def test_metrics_of_takes_every_gate_metric_from_the_summary():
    metrics = metrics_of(summary())
    assert tuple(metrics) == GATE_METRICS
    assert metrics["pass_rate"] == 0.85
    assert metrics["latency_ms_p95"] == 900.0
    assert metrics["cost_usd_per_case"] == 0.0015
    assert metrics_of(summary(cost_usd_total=None))["cost_usd_total"] is None


def test_gates_from_the_eval_file_against_a_summary():
    rules = [GateRule(metric="cost_usd_per_case", max=0.002), GateRule(metric="latency_ms_p95", max=800),
             GateRule(metric="cost_usd_total", max=1.0)]
    results = evaluate_gates(rules, "fail", metrics_of(summary(cost_usd_total=None)))
    assert [r.passed for r in results] == [True, False, False]
    assert results[1].reason == "latency_ms_p95 900 above max 800"
    assert results[2].reason == "cost_usd_total not reported: the target gave no cost or tokens"


# --------------------------------------------------------------------------- no NaN, ever


def test_random_inputs_give_finite_probabilities_and_ordered_intervals():
    rng = random.Random(20240603)
    for _ in range(2000):
        n_cur, n_base = rng.choice([0, 1, 2, rng.randint(0, 50), rng.randint(0, 3000)]), rng.randint(0, 400)
        cur = RateInput(rng.randint(0, n_cur), n_cur)
        base = RateInput(rng.randint(0, n_base), n_base) if rng.random() < 0.8 else None
        paired = None
        if base is not None and base.total and rng.random() < 0.5:
            paired = [(rng.random() < 0.7, rng.random() < 0.7) for _ in range(rng.randint(0, 300))]
        result = compare(cur, base, paired)
        for low, high in filter(None, [result.current_ci, result.baseline_ci]):
            assert 0.0 <= low <= high <= 1.0
        assert result.current_ci[0] <= cur.rate <= result.current_ci[1] or cur.total == 0
        if result.p_value is not None:
            assert not math.isnan(result.p_value)
            assert 0.0 <= result.p_value <= 1.0
        threshold, warn_drop = rng.random(), rng.choice([0.0, 0.05, 0.1, 0.3])
        alpha = rng.choice([None, 0.01, 0.05])
        outcome = verdict(cur.rate, threshold, warn_drop, result, alpha)
        assert outcome.kind in VerdictKind and outcome.reason
        assert (outcome.kind is VerdictKind.REGRESSION) is (cur.rate < threshold - 1e-9)
        b, c = rng.randint(0, 2000), rng.randint(0, 2000)
        assert 0.0 <= mcnemar_exact(b, c) <= 1.0
        pa_n, pb_n = rng.randint(0, 200), rng.randint(0, 200)
        assert 0.0 <= fisher_exact_two_sided(rng.randint(0, pa_n), pa_n, rng.randint(0, pb_n), pb_n) <= 1.0


# --------------------------------------------------------------------------- judging a check, best variant, prompts

def check(passed: int, cases: int, *, dataset: int | None = None, threshold: float | None = 0.5, **changes) -> EvalCheck:
    s = summary(cases=cases, passed=passed, failed=cases - passed, errors=0, pass_rate=passed / cases, **changes)
    return EvalCheck(s, threshold, dataset if dataset is not None else cases, warn_drop=0.1)


def test_judge_pairs_the_shared_cases_and_gives_the_verdict():
    # 10 cases: 8 passed in the baseline; now 5 pass; 3 broke and none fixed.
    paired = [(True, True)] * 5 + [(True, False)] * 3 + [(False, False)] * 2
    judged = judge(check(5, 10), RateInput(8, 10), paired)
    c = judged.comparison
    assert (c.test, c.shared_cases, c.broke, c.fixed) == ("mcnemar", 10, 3, 0)
    assert c.p_value == pytest.approx(scipy_stats.binomtest(0, 3, 0.5).pvalue)
    assert c.current_ci == pytest.approx(wilson_by_quadratic(5, 10))
    assert (judged.verdict.kind, judged.verdict.first_run) == (VerdictKind.WARNING, False)


def test_judge_compares_a_partial_run_on_the_cases_it_shares_with_the_baseline():
    # -k picked 4 hard cases of 20: 1 passes now, 1 passed in the baseline, whose whole run had 18/20.
    paired = [(True, True), (False, False), (False, False), (False, False)]
    judged = judge(check(1, 4, dataset=20, threshold=0.2), RateInput(18, 20), paired)
    assert judged.comparison.baseline_rate == 0.25  # the same four cases, not the baseline's 90 %
    assert judged.verdict.kind is VerdictKind.PASS


def test_judge_without_a_baseline_or_settings():
    first = judge(check(9, 10), None, None)
    assert (first.verdict.kind, first.verdict.first_run, first.comparison.p_value) == (VerdictKind.PASS, True, None)
    off = judge(check(9, 10), None, None, no_baseline="tracking off")
    assert off.verdict.reason == "tracking off: judged by the threshold alone"
    unknown = judge(check(9, 10, threshold=None), None, None)
    assert unknown.verdict.kind is VerdictKind.REGRESSION


def test_best_variant_by_pass_rate_with_an_exact_paired_test():
    a = check(18, 20, variant="a")
    b = check(12, 20, variant="b")
    outcomes = {
        ("intent-routing", "a"): {f"c{i}": i >= 2 for i in range(20)},
        ("intent-routing", "b"): {f"c{i}": i >= 8 for i in range(20)},
    }
    [best] = best_variants([b, a], outcomes)
    assert (best.variant, best.runner_up, best.decided_by) == ("a", "b", "pass rate")
    # 6 cases pass under a only, none under b only.
    assert best.p_value == pytest.approx(scipy_stats.binomtest(0, 6, 0.5).pvalue)
    assert best.significant is True and best.alpha == 0.05
    assert best_variants([b, a], outcomes, alpha=0.01)[0].significant is False  # p = 0.03125


def test_best_variant_ties_break_on_score_then_cost_then_latency():
    same = {"variant": "a"}, {"variant": "b"}
    by_score = best_variants([check(9, 10, **same[0], average_score=0.8), check(9, 10, **same[1], average_score=0.9)], {})
    assert (by_score[0].variant, by_score[0].decided_by, by_score[0].significant) == ("b", "average score", False)
    by_cost = best_variants([check(9, 10, **same[0], cost_usd_total=0.02), check(9, 10, **same[1], cost_usd_total=0.03)], {})
    assert (by_cost[0].variant, by_cost[0].decided_by) == ("a", "cost")
    by_latency = best_variants([check(9, 10, **same[0], latency_ms_p95=120.4), check(9, 10, **same[1], latency_ms_p95=80.0)], {})
    assert (by_latency[0].variant, by_latency[0].decided_by) == ("b", "latency")
    noise = best_variants([check(9, 10, **same[0], latency_ms_p95=80.2), check(9, 10, **same[1], latency_ms_p95=80.1)], {})
    assert noise[0].decided_by == "nothing"  # a tenth of a millisecond is timer noise
    close = best_variants([check(9, 10, **same[0], latency_ms_p95=100.0), check(9, 10, **same[1], latency_ms_p95=95.0)], {})
    assert close[0].decided_by == "nothing"  # 5 %: within noise
    # No shared case ids: Fisher's exact test on the two counts.
    unshared = best_variants([check(9, 10, **same[0]), check(3, 10, **same[1])], {})
    assert unshared[0].p_value == pytest.approx(scipy_stats.fisher_exact([[9, 1], [3, 7]]).pvalue)
    assert best_variants([check(9, 10)], {}) == []  # one variant: nothing to pick


def test_prompt_changes_lists_changed_added_and_removed_prompts():
    before = {"system": "sha256:aaa", "router": "3", "old": "sha256:ccc"}
    after = {"system": "sha256:bbb", "router": "3", "new": "4"}
    assert prompt_changes(before, after) == (
        PromptChange("new", None, "4"), PromptChange("old", "sha256:ccc", None), PromptChange("system", "sha256:aaa", "sha256:bbb"),
    )
    assert prompt_changes(after, after) == ()


# --------------------------------------------------------------------------- many comparisons at once


@pytest.mark.parametrize("method, statsmodels_name", [("holm", "holm"), ("bh", "fdr_bh")])
@pytest.mark.parametrize("seed", range(40))
def test_adjusted_pvalues_match_statsmodels(method, statsmodels_name, seed):
    from statsmodels.stats.multitest import multipletests

    rng = random.Random(seed)
    pvalues = [rng.choice([rng.random(), rng.random() / 100, 1.0, 0.05]) for _ in range(rng.randint(1, 25))]
    expected = multipletests(pvalues, method=statsmodels_name)[1]
    assert adjust_pvalues(pvalues, method) == pytest.approx(list(expected), abs=1e-12)


def test_no_correction_and_bad_input():
    assert adjust_pvalues([0.01, 0.2], "none") == [0.01, 0.2]
    assert adjust_pvalues([], "holm") == []
    with pytest.raises(ValueError, match="holm, bh, none"):
        adjust_pvalues([0.1], "bonferonni")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_pvalues([1.5], "holm")
