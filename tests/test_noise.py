"""Verdicts under noise (DESIGN §5.1, issue 15): paired repeats, session-wide correction, detectable effect.

Every number is checked against an independent oracle (SciPy, statsmodels); a
seeded simulation shows what the session gate does under no change; pytester
stories show what a user sees.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

from pytest_promptgate.results import EvalSummary
from pytest_promptgate.verdicts import (
    EvalCheck, RateInput, VerdictKind, case_differences, clustered_interval, compare, correct_session,
    detectable_paired, detectable_table, detectable_two_sample, fisher_exact_two_sided, judge, mcnemar_exact,
    normal_power, sign_flip_test, smallest_effect,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


# --------------------------------------------------------------------------- the paired test of repeats


def scipy_sign_flip(differences: list[float]) -> float:
    """The exact paired permutation test of SciPy: every sign pattern of the pairs enumerated."""
    zeros = [0.0] * len(differences)
    result = scipy_stats.permutation_test(
        (zeros, differences), lambda x, y, axis: np.sum(y - x, axis=axis), permutation_type="samples",
        vectorized=True, n_resamples=np.inf, alternative="two-sided",
    )
    return float(result.pvalue)


@pytest.mark.parametrize("seed", range(12))
def test_sign_flip_test_is_scipys_exact_permutation_test(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 13)  # SciPy asks for two pairs at least
    differences = [rng.randint(-6, 6) for _ in range(n)]
    assert sign_flip_test(differences) == pytest.approx(scipy_sign_flip([float(d) for d in differences]), abs=1e-9)


def test_sign_flip_test_of_plus_and_minus_one_is_mcnemars_exact_test():
    for broke, fixed in itertools.product(range(9), repeat=2):
        assert sign_flip_test([-1] * broke + [1] * fixed + [0] * 5) == pytest.approx(mcnemar_exact(broke, fixed), abs=1e-12)


def test_sign_flip_test_of_a_large_sample_is_the_normal_approximation_of_the_same_distribution():
    rng = random.Random(7)
    differences = [rng.choice([-6, -3, 0, 3, 3, 6]) for _ in range(3000)]  # too many for the exact count
    z = (abs(sum(differences)) - 3) / math.sqrt(sum(d * d for d in differences))
    assert sign_flip_test(differences) == pytest.approx(2 * scipy_stats.norm.sf(z), abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_the_normal_approximation_is_within_a_thousandth_of_the_exact_count_where_it_takes_over(seed):
    rng = random.Random(seed)
    # Repeats of 3: differences in thirds, scaled to -3..3, 800 cases (about a million counting steps).
    differences = [rng.choice([-3, -2, -1, 0, 1, 1, 2, 3]) for _ in range(800)]
    assert sign_flip_test(differences) == pytest.approx(sign_flip_test(differences, exact_steps=0), abs=1e-3)


def test_case_differences_are_exact_integers_of_fractions_with_unequal_repeats():
    pairs = [((2, 3), (1, 2)), ((1, 1), (3, 4)), ((0, 5), (5, 5))]
    assert case_differences(pairs) == [-10, -15, 60]  # over 60: -1/6, -1/4, +1


def test_compare_repeats_with_the_sign_flip_test_of_per_case_fractions():
    # 8 shared cases, 3 runs each: the baseline's fractions, then now's.
    before = [3, 3, 2, 3, 1, 3, 2, 3]
    now = [2, 3, 1, 1, 1, 0, 2, 3]
    paired = [(b >= 3, n >= 3) for b, n in zip(before, now)]
    pairs = [((b, 3), (n, 3)) for b, n in zip(before, now)]
    c = compare(RateInput(2, 8), RateInput(5, 8), paired, paired_runs=pairs, case_runs=[(n, 3) for n in now])
    assert c.test == "sign-flip"
    assert c.p_value == pytest.approx(scipy_sign_flip([(n - b) / 3 for b, n in zip(before, now)]), abs=1e-9)
    assert (c.broke, c.fixed) == (3, 0)  # case outcomes still counted for the report


def test_the_interval_of_a_repeated_eval_counts_cases_not_runs():
    runs = [(3, 3), (3, 3), (0, 3), (2, 3), (3, 3), (1, 3), (3, 3), (3, 3), (0, 3), (3, 3)]
    rate, (low, high) = clustered_interval(runs)
    fractions = np.array([k / n for k, n in runs])
    effective = fractions.mean() * (1 - fractions.mean()) / (fractions.var(ddof=1) / len(runs))
    effective = min(max(effective, len(runs)), 30)
    assert rate == pytest.approx(fractions.mean(), abs=1e-12)
    expected = proportion_confint(fractions.mean() * effective, effective, alpha=0.05, method="wilson")
    assert (low, high) == pytest.approx(expected, abs=1e-9)
    pooled = proportion_confint(sum(k for k, _ in runs), 30, alpha=0.05, method="wilson")
    assert high - low > (pooled[1] - pooled[0]) * 1.2  # pooling 30 runs as independent trials is too narrow


def test_the_interval_of_runs_that_always_agree_is_that_of_the_cases():
    rate, interval = clustered_interval([(4, 4)] * 9 + [(0, 4)])
    assert rate == 0.9
    assert interval == pytest.approx(proportion_confint(9, 10, alpha=0.05, method="wilson"), abs=1e-12)


# --------------------------------------------------------------------------- detectable effect


@pytest.mark.parametrize(("nobs", "alpha"), [(5, 0.05), (20, 0.05), (20, 0.01), (137, 0.1), (1000, 0.05)])
def test_power_and_smallest_effect_match_statsmodels(nobs, alpha):
    power = NormalIndPower()
    assert normal_power(0.3, nobs, alpha) == pytest.approx(power.power(0.3, nobs, alpha, ratio=0), abs=1e-12)
    effect = smallest_effect(nobs, alpha)
    assert power.power(effect, nobs, alpha, ratio=0) == pytest.approx(0.8, abs=1e-9)
    # statsmodels' own solver stops at a looser tolerance than the power above.
    assert effect == pytest.approx(power.solve_power(None, nobs1=nobs, alpha=alpha, power=0.8, ratio=0), rel=1e-4)


@pytest.mark.parametrize(("rate", "n_now", "n_base"), [(0.9, 20, 20), (0.8, 50, 100), (0.5, 200, 150), (0.97, 1000, 1000)])
def test_detectable_drop_of_two_unpaired_runs_matches_statsmodels(rate, n_now, n_base):
    drop = detectable_two_sample(rate, n_now, n_base, 0.05)
    effect = proportion_effectsize(rate, rate - drop)
    assert NormalIndPower().power(effect, n_now, 0.05, ratio=n_base / n_now) == pytest.approx(0.8, abs=1e-9)
    rise = detectable_two_sample(rate, n_now, n_base, 0.05, rise=True)
    if rate + rise < 1:
        effect = proportion_effectsize(rate + rise, rate)
        assert NormalIndPower().power(effect, n_now, 0.05, ratio=n_base / n_now) == pytest.approx(0.8, abs=1e-9)


def test_detectable_change_over_shared_cases_matches_statsmodels():
    change = detectable_paired(40, 0.3, 0.05)
    assert NormalIndPower().power(change / 0.3, 40, 0.05, ratio=0) == pytest.approx(0.8, abs=1e-9)


def test_a_drop_too_small_for_the_cases_reads_not_significant_with_the_detectable_drop():
    # 10 cases, 1 broke: a 10 pp drop, far below what 10 cases can detect.
    paired = [(True, True)] * 9 + [(True, False)]
    judged = judge(check(9, 10), RateInput(10, 10), paired, significance=0.05)
    c = judged.comparison
    spread = np.std([0] * 9 + [-1], ddof=1)
    assert NormalIndPower().power(c.detectable / spread, 10, 0.05, ratio=0) == pytest.approx(0.8, abs=1e-9)
    assert judged.verdict.kind is VerdictKind.PASS
    assert judged.verdict.reason == (f"dropped 10.0 pp from 100.0%, not significant (n too small to detect "
                                     f"< {c.detectable * 100:.1f} pp; p=1.000, alpha 0.05)")


def test_the_docs_table_of_how_many_cases_is_computed_by_the_same_code():
    assert detectable_markdown() in (DOCS / "mlflow.md").read_text()


def detectable_markdown() -> str:
    """The "how many cases do I need" table of docs/mlflow.md, from :func:`detectable_table`."""
    sizes, rates = (10, 20, 50, 100, 200, 500, 1000), (0.95, 0.9, 0.8)
    lines = ["| cases | from 95% | from 90% | from 80% | paired, changes' spread 0.3 |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for n, row in zip(sizes, detectable_table(sizes, rates, 0.3, 0.05)):
        lines.append(f"| {n} | " + " | ".join(f"{value * 100:.1f} pp" for value in row) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- session-wide correction


def summary(eval_name: str, passed: int, cases: int) -> EvalSummary:
    return EvalSummary(eval=eval_name, variant="default", cases=cases, passed=passed, failed=cases - passed, errors=0,
                       flaky=0, pass_rate=passed / cases, average_score=None, error_rate=0.0, latency_ms_avg=None,
                       latency_ms_p50=None, latency_ms_p95=None, latency_ms_p99=None, input_tokens=None,
                       output_tokens=None, cost_usd_total=None, cost_usd_per_case=None, grader_pass_rates={},
                       failure_modes={})


def check(passed: int, cases: int, name: str = "e", warn_drop: float = 0.1) -> EvalCheck:
    return EvalCheck(summary(name, passed, cases), 0.0, cases, warn_drop=warn_drop)


@pytest.mark.parametrize(("method", "statsmodels_name"), [("holm", "holm"), ("bh", "fdr_bh"), ("none", None)])
def test_the_session_decides_on_p_values_adjusted_together(method, statsmodels_name):
    # Three evals, 30 cases each, all passing in the baseline: 8, 7 and 1 now fail.
    judged = []
    for name, broke in (("a", 8), ("b", 7), ("c", 1)):
        paired = [(True, False)] * broke + [(True, True)] * (30 - broke)
        judged.append(judge(check(30 - broke, 30, name), RateInput(30, 30), paired, significance=0.01))
    raw = [j.comparison.p_value for j in judged]
    corrected = correct_session(judged, method, 0.01)
    expected = raw if statsmodels_name is None else list(multipletests(raw, method=statsmodels_name)[1])
    assert [c.comparison.p_adjusted for c in corrected] == pytest.approx(expected, abs=1e-12)
    assert [c.comparison.p_value for c in corrected] == raw
    kinds = [c.verdict.kind for c in corrected]
    # raw p: 0.0078, 0.0156, 1.0; b is significant at 0.01 only without correction... and a only without holm
    assert kinds == [VerdictKind.WARNING if p < 0.01 else VerdictKind.PASS for p in expected]
    assert kinds[0] is (VerdictKind.WARNING if method == "none" else VerdictKind.PASS)
    if method == "holm":
        assert corrected[0].verdict.reason == (
            "dropped 26.7 pp from 100.0%, not significant "
            f"(n too small to detect < {corrected[0].comparison.detectable * 100:.1f} pp; "
            "p=0.008, holm-adjusted p=0.023, alpha 0.01)")


# --------------------------------------------------------------------------- simulation under no change


def simulate_session(rng: random.Random, evals: int, cases: int, repeat: int, alpha: float) -> tuple[bool, bool, bool]:
    """One session of ``evals`` evals that did not change; whether the paired+holm gate, the paired gate without
    correction and the pooled+holm gate raise a false alarm (a significant WARNING or IMPROVED).

    Each case has its own pass probability, and within a session its runs copy one another most of the time
    (a provider's caching or determinism): the repeats of a case are not independent trials.
    """
    paired_checks, pooled_checks = [], []
    for e in range(evals):
        probability = [rng.betavariate(2, 1) for _ in range(cases)]

        def runs() -> list[int]:
            passed = []
            for p in probability:
                if rng.random() < 0.8:  # the runs of this case agree this session
                    passed.append(repeat if rng.random() < p else 0)
                else:
                    passed.append(sum(rng.random() < p for _ in range(repeat)))
            return passed

        before, now = runs(), runs()
        rate_before, rate_now = sum(b == repeat for b in before), sum(n == repeat for n in now)
        paired = [(b == repeat, n == repeat) for b, n in zip(before, now)]
        pairs = [((b, repeat), (n, repeat)) for b, n in zip(before, now)]
        name = f"e{e}"
        paired_checks.append(judge(check(rate_now, cases, name, warn_drop=0.0), RateInput(rate_before, cases), paired,
                                   alpha, paired_runs=pairs))
        # Pooling: the N x cases runs as independent trials, compared with Fisher's exact test.
        pooled = judge(check(sum(now), cases * repeat, name, warn_drop=0.0), RateInput(sum(before), cases * repeat),
                       None, alpha)
        pooled_checks.append(pooled)

    def alarm(checks: list[EvalCheck]) -> bool:
        return any(c.verdict.kind in (VerdictKind.WARNING, VerdictKind.IMPROVED) for c in checks)

    return (alarm(correct_session(paired_checks, "holm", alpha)), alarm(correct_session(paired_checks, "none", alpha)),
            alarm(correct_session(pooled_checks, "holm", alpha)))


def test_the_session_gate_under_no_change_raises_false_alarms_at_most_alpha_and_pooling_would_not():
    rng, sessions, alpha = random.Random(20261203), 300, 0.05
    alarms = np.array([simulate_session(rng, evals=20, cases=20, repeat=3, alpha=alpha) for _ in range(sessions)])
    paired_holm, paired_raw, pooled_holm = alarms.mean(axis=0)
    error = 3 * math.sqrt(alpha * (1 - alpha) / sessions)  # three standard errors of a rate of alpha
    assert paired_holm <= alpha + error
    assert paired_raw > alpha + error  # twenty uncorrected tests: the session cries wolf
    assert pooled_holm > alpha + error  # runs pooled as independent trials: even corrected, it does
    print(f"false alarms per session: paired+holm {paired_holm:.3f}, paired uncorrected {paired_raw:.3f}, "
          f"pooled+holm {pooled_holm:.3f}")


# --------------------------------------------------------------------------- what a user sees

NOISY = '''
import json
from pathlib import Path

RUNS = {}

def answer(vars):
    """Fails the first k runs of a case, k from failing.json ({case: k}); "yes" otherwise."""
    n = RUNS[vars["id"]] = RUNS.get(vars["id"], 0) + 1
    failing = json.loads(Path("failing.json").read_text()) if Path("failing.json").exists() else {}
    return "no" if n <= failing.get(vars["id"], 0) else "yes"
'''

NOISY_CASES = [f"n{i:02d}" for i in range(12)]


def noisy_eval(name: str, case_repeat: object = 5) -> str:
    cases = "".join(f"  - {{id: {c}, vars: {{id: {c}}}}}\n" for c in NOISY_CASES[1:])
    return (f"eval: {name}\nsuites: [core]\ntarget: noisy:answer\nrepeat: 3\nthreshold: 0.2\nwarn_drop: 0.1\n"
            "graders: [{type: equals, value: \"yes\"}]\ncases:\n"
            f"  - {{id: {NOISY_CASES[0]}, vars: {{id: {NOISY_CASES[0]}}}, repeat: {case_repeat}}}\n" + cases)


@pytest.fixture
def noisy(project, pytester, tracking_on):
    """Two repeated evals (one case of each repeated 5 times, the others 3); returns a session runner taking
    ``{case: runs that fail}`` for eval ``noisy`` (eval ``steady`` never fails)."""
    pytester.makepyfile(noisy=NOISY)
    project("noisy.eval.yaml", noisy_eval("noisy"))
    project("steady.eval.yaml", noisy_eval("steady"))

    def run(failing: dict[str, int], *args: str) -> pytest.RunResult:
        (pytester.path / "failing.json").write_text(json.dumps(failing))
        return pytester.runpytest("--prompt-suite", "core", "--prompt-report", "report.json",
                                  "--prompt-report-md", "report.md", *args)

    run.report = lambda: {e["eval"]: e for e in json.loads((pytester.path / "report.json").read_text())["evals"]}
    run.cases = lambda: json.loads((pytester.path / "report.json").read_text())["cases"]
    return run


def test_repeats_are_compared_per_case_and_p_values_adjusted_across_the_session(noisy, pytester):
    first = noisy({})
    assert first.ret == 0
    runs = {(c["eval"], c["case_id"]): len(c["runs"]) for c in noisy.cases()}
    assert runs[("noisy", "n00")] == 5 and runs[("noisy", "n01")] == 3  # the case's own repeat

    # Now 7 cases of noisy fail some of their runs: 2 of 5, or 1, 2 or 3 of 3.
    failing = {"n00": 2, "n01": 1, "n02": 2, "n03": 3, "n04": 1, "n05": 2, "n06": 3}
    result = noisy(failing, "--prompt-significance", "0.05", "--prompt-fail-on", "regression,warning")
    report = noisy.report()
    row = report["noisy"]
    assert row["test"] == "sign-flip"
    fractions = [-failing.get(c, 0) / (5 if c == "n00" else 3) for c in NOISY_CASES]
    assert row["p_value"] == pytest.approx(scipy_sign_flip(fractions), abs=1e-9)
    # Two comparisons in the session: Holm doubles the smaller p-value.
    assert row["p_adjusted"] == pytest.approx(min(1.0, 2 * row["p_value"]), abs=1e-12)
    assert (row["correction"], report["steady"]["p_value"], report["steady"]["p_adjusted"]) == ("holm", 1.0, 1.0)
    shown = f"{row['p_adjusted']:.3f}"
    result.stdout.fnmatch_lines([
        "eval*variant*pass rate ?95% CI?*baseline*delta (p)*adj p*detects*verdict*",
        f"noisy*default*41.7%*100.0%*-58.3 pp (p={row['p_value']:.3f})*{shown}*pp*WARNING*",
        f"noisy [[]default[]]: WARNING: dropped 58.3 pp from 100.0% (p={row['p_value']:.3f}, "
        f"holm-adjusted p={shown}, alpha 0.05)",
        "noisy [[]default[]]: *% of runs passed [[]*%-*%[]], cases as the unit (repeated runs of a case are not independent)",
    ])
    assert result.ret == 1
    assert row["run_pass_rate"] == pytest.approx(sum(1 + f for f in fractions) / 12, abs=1e-12)
    low, high = row["run_pass_rate_ci95"]
    assert low < row["run_pass_rate"] < high
    markdown = (pytester.path / "report.md").read_text()
    assert re.search(r"\| +adj p +\|", markdown)
    assert f"holm-adjusted p={shown}" in markdown

    none = noisy(failing, "--prompt-correction", "none")
    assert noisy.report()["noisy"]["p_adjusted"] == noisy.report()["noisy"]["p_value"]
    assert none.ret == 0


def test_correction_ini_key_and_a_bad_value(noisy, pytester):
    pytester.makeini("[pytest]\npromptgate_correction = bogus\n")
    result = noisy({})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*promptgate: ini promptgate_correction: expected one of holm, bh, none; got 'bogus'"])
    result = noisy({}, "--prompt-correction", "bonferroni")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--prompt-correction: expected one of holm, bh, none; got 'bonferroni'"])


def test_a_case_repeat_out_of_range_is_a_located_collection_error(project, pytester):
    pytester.makepyfile(noisy=NOISY)
    project("noisy.eval.yaml", noisy_eval("noisy", case_repeat=0))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-no-tracking")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["noisy.eval.yaml:9:40: cases[[]0[]].repeat: input should be greater than or equal to 1 (got a number 0)"])


def test_a_baseline_at_zero_states_the_rise_it_could_detect_not_a_zero_drop():
    """One failing case against a failing baseline: no drop is possible, so '0.0 pp' would read as 'detects anything'."""
    from pytest_promptgate.verdicts import RateInput, compare, detectable_two_sample

    c = compare(RateInput(0, 1), RateInput(0, 1), paired=[(False, False)])
    assert c.detectable == pytest.approx(detectable_two_sample(0.0, 1, 1, 0.05, rise=True))
    assert c.detectable > 0.5
