"""Deciding what a session's eval results mean. Pure functions, no pytest, no MLflow.

Each (eval, variant) becomes an :class:`EvalCheck`: its threshold and gates
(:func:`check_evals`, :func:`evaluate_gates`), then its comparison with the
baseline and its verdict (:func:`judge`, DESIGN §5) with exact statistics. The
session's exit status follows from the checks (:class:`SessionOutcome`, DESIGN §3).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .results import EvalSummary

if TYPE_CHECKING:
    from .quarantine import FlakyCase, QuarantinedCase

# Pass rates are fractions of whole cases; the tolerance absorbs float noise only.
_EPSILON = 1e-9

#: The names ``--prompt-fail-on`` accepts; ``none`` fails the session on no verdict.
FAIL_ON_NAMES = ("regression", "warning", "improved", "none")
DEFAULT_FAIL_ON = frozenset({"regression"})
#: The metrics a gate rule may bound (an eval file's ``gates.rules[].metric``), each a field of ``EvalSummary``.
GATE_METRICS = (
    "pass_rate",
    "average_score",
    "error_rate",
    "cost_usd_total",
    "cost_usd_per_case",
    "latency_ms_avg",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
    "input_tokens",
    "output_tokens",
    "judge_input_tokens",
    "judge_output_tokens",
    "judge_cost_usd_total",
    "judge_latency_ms_p95",
)


@dataclass(frozen=True)
class EvalCheck:
    """One (eval, variant): its threshold and gates, then its comparison with the baseline and its verdict.

    :func:`check_evals` fills the first part; :func:`judge` the comparison and the
    verdict; the session adds what tracking did with it (``run_id``).
    """

    summary: EvalSummary
    threshold: float | None  # None: the eval's settings never reached the controller
    dataset_size: int | None = None  # cases in the eval's dataset; more than ran when a run is partial
    gates: tuple[GateResult, ...] = ()
    warn_drop: float = 0.0
    comparison: Comparison | None = None
    verdict: Verdict | None = None
    baseline_run_id: str | None = None
    #: Prompts whose version differs between the baseline run and this one.
    prompts_changed: tuple[PromptChange, ...] = ()
    #: The MLflow run this (eval, variant) was logged as; None when it was not logged (yet).
    run_id: str | None = None
    #: Its cases named by ``promptgate_quarantine`` (held ones are not in ``summary``).
    quarantined: tuple[QuarantinedCase, ...] = ()
    #: Its cases whose outcome flipped across recent complete runs (``--prompt-flaky-history``).
    flaky_across_runs: tuple[FlakyCase, ...] = ()

    @property
    def partial(self) -> bool:
        """Whether only some of the dataset's cases ran (-k, --lf, deselection, -x)."""
        return self.dataset_size is not None and self.summary.cases < self.dataset_size

    @property
    def passed(self) -> bool:
        """Whether the pass rate is at or above the threshold."""
        return self.threshold is not None and self.summary.pass_rate >= self.threshold - _EPSILON

    def tripped(self, action: str) -> list[GateResult]:
        """The gates with ``on_fail == action`` that did not hold."""
        return [gate for gate in self.gates if not gate.passed and gate.on_fail == action]

    @property
    def label(self) -> str:
        """``eval [variant]``, as messages name it."""
        return f"{self.summary.eval} [{self.summary.variant}]"


@dataclass(frozen=True)
class PromptChange:
    """A prompt whose version differs between the baseline and the current run (None: absent from that run)."""

    name: str
    before: str | None
    after: str | None


def prompt_changes(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[PromptChange, ...]:
    """Every prompt whose version differs between two runs' ``{name: version}``, by name."""
    return tuple(
        PromptChange(name, before.get(name), after.get(name))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    )


def judge(
    check: EvalCheck,
    baseline: RateInput | None,
    paired: list[tuple[bool, bool]] | None,
    significance: float | None = None,
    *,
    no_baseline: str | None = None,
    paired_runs: Sequence[tuple[tuple[int, int], tuple[int, int]]] | None = None,
    case_runs: Sequence[tuple[int, int]] = (),
) -> EvalCheck:
    """``check`` with its comparison with the baseline and its verdict (DESIGN §5).

    ``baseline`` is the baseline run's pass count and case count; ``paired`` holds
    ``(passed in baseline, passed now)`` for every case both runs share. When
    only some of the dataset ran (``check.partial``) and cases are shared, the
    baseline's rate is taken over the shared cases, so a ``-k`` selection of hard
    cases is not read as a drop. ``no_baseline`` is why there is no baseline other
    than a first run (see :func:`verdict`). An eval whose settings never reached
    the controller is a REGRESSION: nothing shows it met a threshold.
    ``paired_runs`` and ``case_runs`` are the runs of repeated cases (see :func:`compare`).
    """
    s = check.summary
    current = RateInput(s.passed, s.cases)
    if check.partial and paired and baseline is not None:
        baseline = RateInput(sum(before for before, _ in paired), len(paired))
    comparison = compare(current, baseline, paired if baseline is not None else None,
                         paired_runs=paired_runs if baseline is not None else None, case_runs=case_runs,
                         alpha=significance)
    if check.threshold is None:
        found = Verdict(VerdictKind.REGRESSION, False, "settings unknown (a worker crashed?): counted as failing")
    else:
        found = verdict(s.pass_rate, check.threshold, check.warn_drop, comparison, significance, no_baseline=no_baseline)
    return dataclasses.replace(check, comparison=comparison, verdict=found)


def check_evals(summaries: Iterable[EvalSummary], evals: Mapping[str, Mapping[str, Any]]) -> list[EvalCheck]:
    """One check per summary, against the threshold and gates of its eval in ``evals`` (name → info)."""
    checks = []
    for s in summaries:
        info = evals.get(s.eval)
        if info is None:
            checks.append(EvalCheck(s, None))
            continue
        gates = info.get("gates")
        results = evaluate_gates(
            [_Rule(**rule) for rule in gates["rules"]], gates["on_fail"], metrics_of(s)
        ) if gates else []
        checks.append(EvalCheck(s, info["threshold"], info["cases"], tuple(results), info["warn_drop"]))
    return checks


@dataclass(frozen=True)
class _Rule:
    """A gate rule as plain data carries it from collection (``schema.GateRule``'s fields)."""

    metric: str
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class SessionOutcome:
    """Why the session passes or fails, in counts."""

    #: (eval, variant)s whose verdict is one ``--prompt-fail-on`` names.
    failing_verdicts: int
    ordinary_failures: int
    failed_gates: int
    bad_eval_files: int
    failed_cases: int
    error_cases: int
    strict: bool
    #: -x or --maxfail stopped the session: pytest's exit status stands.
    stopped_early: bool = False
    fail_on: frozenset[str] = DEFAULT_FAIL_ON
    #: With --prompt-require-tracking: why tracking failed, which fails the session.
    tracking_required: str | None = None
    #: Runs neither logged to MLflow nor kept on disk: what they measured is lost, which fails the session.
    lost_runs: int = 0
    #: What interrupted the session (``Ctrl-C``, ``SIGTERM``): it never passes then.
    interrupted: str | None = None
    #: Eval cases that finished, of those selected to run (None: not known).
    cases_ran: int = 0
    cases_selected: int | None = None
    #: Where this session's runs went: logged to MLflow, spooled, or (when neither) left in the journal there.
    logged_runs: int = 0
    spooled_runs: int = 0
    journal: str | None = None
    #: Cases the quarantine held out of their verdicts (``promptgate_quarantine``): counted nowhere above.
    quarantined_cases: int = 0

    @property
    def failed(self) -> bool:
        """DESIGN §3: evals tolerate failed cases down to their threshold, ordinary tests do not; an interrupted
        session never passes."""
        strict_failure = self.strict and (self.failed_cases or self.error_cases)
        return bool(
            self.failing_verdicts or self.failed_gates or self.ordinary_failures or self.bad_eval_files
            or strict_failure or self.tracking_required or self.lost_runs or self.interrupted
        )


# --------------------------------------------------------------------------- statistics
#
# DESIGN §5: each delta is shown with its uncertainty. Exact tests are computed in
# integers (binomial coefficients) and divided once at the end: Python's int / int
# is correctly rounded however large the operands, so nothing overflows or turns
# into NaN even for ten thousand cases.


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a proportion of ``successes`` out of ``n``.

    Unlike the normal (Wald) interval it stays inside [0, 1] and is not empty at
    0 % or 100 %, which is where evals live. ``n == 0`` says nothing: (0.0, 1.0).
    The normal quantile comes from :meth:`statistics.NormalDist.inv_cdf`.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes!r}, n={n!r}")
    if n == 0:
        return 0.0, 1.0
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    # At 0 and n the bound is exactly 0 or 1 in theory; float rounding must not leave it at 1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pair counts.

    ``b``: cases that passed in the baseline and fail now; ``c``: cases that
    failed in the baseline and pass now. Under no change each discordant case is
    a fair coin, so p = min(1, 2 · P[Binomial(b + c, ½) <= min(b, c)]); the same
    number as ``scipy.stats.binomtest(min(b, c), b + c, 0.5).pvalue``. With no
    discordant cases there is no evidence of change: 1.0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts cannot be negative, got b={b!r}, c={c!r}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    if 2 * k >= n:  # b == c: the observed split is the most likely one
        return 1.0
    return min(1.0, 2 * half_binomial_tail(k, n))


def half_binomial_tail(k: int, n: int) -> float:
    """P[Binomial(n, ½) <= k]: the tail exact tests of discordant pairs stand on (McNemar's two-sided, the
    optimizer's one-sided sign test), summed in integers and divided once."""
    tail, term = 0, 1  # term = comb(n, i), stepped exactly
    for i in range(min(k, n) + 1):
        tail += term
        term = term * (n - i) // (i + 1)
    return tail / (1 << n)


# Two tables count as equally likely within this relative tolerance (R's fisher.test
# and SciPy before 1.14 use 1 + 1e-7): it keeps tables tied in theory tied in floats.
_FISHER_TOLERANCE = (10**7 + 1, 10**7)


def fisher_exact_two_sided(pass_a: int, n_a: int, pass_b: int, n_b: int) -> float:
    """Fisher's exact two-sided p-value for two pass rates, ``pass_a/n_a`` against ``pass_b/n_b``.

    The unpaired test, for two runs that share no case ids. Two-sided as SciPy
    (``scipy.stats.fisher_exact``) and R define it: the probability, given both
    margins, of every table no more likely than the observed one (within a
    relative tolerance of 1e-7). With an empty run there is nothing to test: 1.0.
    """
    for passed, total in ((pass_a, n_a), (pass_b, n_b)):
        if total < 0 or not 0 <= passed <= total:
            raise ValueError(f"need 0 <= passed <= total, got passed={passed!r}, total={total!r}")
    if n_a == 0 or n_b == 0:
        return 1.0
    k = pass_a + pass_b  # passes in both runs together: the column margin
    low, high = max(0, k - n_b), min(n_a, k)
    if low == high:  # only one table has these margins (all passed, or none did)
        return 1.0
    # weight(x) = comb(n_a, x) * comb(n_b, k - x): the hypergeometric pmf times comb(n_a + n_b, k).
    observed = math.comb(n_a, pass_a) * math.comb(n_b, pass_b)
    limit_num, limit_den = _FISHER_TOLERANCE
    total = extreme = 0
    ca, cb = math.comb(n_a, low), math.comb(n_b, k - low)
    for x in range(low, high + 1):
        weight = ca * cb
        total += weight
        if weight * limit_den <= observed * limit_num:
            extreme += weight
        ca = ca * (n_a - x) // (x + 1)
        cb = cb * (k - x) // (n_b - k + x + 1) if k - x > 0 else 0
    return min(1.0, extreme / total)


#: The corrections ``--prompt-correction`` accepts for p-values of many comparisons at once.
CORRECTIONS = ("holm", "bh", "none")


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """P-values adjusted for testing them together, in the order given (DESIGN §5.1).

    A session compares many (eval, variant) pairs, and an optimizer tries many
    candidates: at alpha 0.05, twenty unchanged comparisons raise a false alarm
    about two times in three. ``holm`` (Holm–Bonferroni) holds the chance of any
    false alarm at alpha under any dependence between the tests; ``bh``
    (Benjamini–Hochberg) holds the expected share of false alarms among the
    alarms, and is less strict; ``none`` returns them unchanged. The same
    numbers as ``statsmodels.stats.multitest.multipletests(p, method="holm" or
    "fdr_bh")``.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    for p in pvalues:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must lie in [0, 1], got {p!r}")
    m = len(pvalues)
    if method == "none" or m < 2:
        return [float(p) for p in pvalues]
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    if method == "holm":  # step down: the i-th smallest times (m - i), kept non-decreasing
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * pvalues[i]))
            adjusted[i] = running
    else:  # step up: the i-th smallest times m / i, kept non-increasing from the largest
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, m * pvalues[i] / (rank + 1))
            adjusted[i] = running
    return adjusted


# --------------------------------------------------------------------------- repeats, power
#
# DESIGN §5.1. With ``repeat: N`` the unit of evidence is the case, not the run:
# runs of one case share its difficulty (and often a provider's caching or
# determinism), so N runs of a case are not N independent trials.

#: Exact sign-flip distributions are counted up to this many steps (cases x sum of
#: scaled differences); beyond it the normal approximation of the same distribution is used.
_EXACT_SIGN_FLIP_STEPS = 1_000_000  # about half a second
#: The power a detectable effect (``detectable``) is computed for.
DETECTABLE_POWER = 0.8


def sign_flip_test(differences: Sequence[int], exact_steps: int = _EXACT_SIGN_FLIP_STEPS) -> float:
    """Two-sided p-value of the paired permutation (sign-flip) test of the sum of integer ``differences``.

    Under no change each case's difference is as likely to have the other sign, so
    the 2^n sign patterns of the nonzero differences are equally likely; the
    p-value is min(1, 2 · P[T >= |t|]), as ``scipy.stats.permutation_test``
    defines it for paired samples. With all differences ±1 this is McNemar's
    exact test. The distribution is counted exactly (a subset-sum count in
    integers) while that takes at most ``exact_steps`` steps (cases x sum of
    magnitudes); larger samples use its normal approximation (mean 0, variance
    Σd², with a continuity correction of half the distribution's step), which
    is within a thousandth of the exact p-value at that size.
    """
    magnitudes = [abs(d) for d in differences if d]
    if not magnitudes:
        return 1.0
    observed, total = abs(sum(differences)), sum(magnitudes)
    if len(magnitudes) * total > exact_steps:
        # T moves in steps of twice the magnitudes' common divisor: half a step is that divisor.
        corrected = max(observed - math.gcd(*magnitudes), 0)
        z = corrected / math.sqrt(sum(d * d for d in magnitudes))
        return min(1.0, 2 * (1 - statistics.NormalDist().cdf(z)))
    # T = 2 * (sum of the positive magnitudes) - total, so T >= t  <=>  subset sum >= (total + t) / 2.
    counts = [1] + [0] * total  # counts[u]: sign patterns whose positive magnitudes sum to u
    reach = 0
    for m in magnitudes:
        reach += m
        for u in range(reach, m - 1, -1):
            counts[u] += counts[u - m]
    tail = sum(counts[(total + observed + 1) // 2:])
    return min(1.0, 2 * tail / (1 << len(magnitudes)))


def case_differences(pairs: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> list[int]:
    """Per-case differences of pass fractions (now minus baseline), scaled to integers.

    ``pairs`` holds ``((runs passed, runs) in the baseline, (runs passed, runs) now)``
    for each shared case. The common denominator of every fraction keeps the
    differences exact, so ties between them stay ties.
    """
    scale = math.lcm(*(n for before, now in pairs for _, n in (before, now)))
    return [now[0] * (scale // now[1]) - before[0] * (scale // before[1]) for before, now in pairs]


def clustered_interval(runs: Sequence[tuple[int, int]], confidence: float = 0.95) -> tuple[float, tuple[float, float]]:
    """The share of passing runs of a repeated eval, and its interval, counting cases (not runs) as the unit.

    ``runs`` holds ``(runs passed, runs)`` per case. The rate is the mean of the
    per-case fractions (each case weighs the same). The interval is Wilson's with
    the effective sample size of clustered runs (Kish): p(1-p) over the variance
    of that mean across cases, kept between the number of cases and of runs. So
    runs of a case that always agree count as one observation, independent runs
    as many; unlike a t interval on the fractions it stays inside [0, 1] and is
    not empty when every run passed; unlike a cluster bootstrap it needs no seed.
    """
    cases = len(runs)
    if cases == 0:
        return 0.0, (0.0, 1.0)
    fractions = [passed / total for passed, total in runs]
    rate = statistics.fmean(fractions)
    total_runs = sum(total for _, total in runs)
    variance = statistics.variance(fractions) / cases if cases > 1 else 0.0
    effective = cases if variance == 0 else min(max(rate * (1 - rate) / variance, cases), total_runs)
    return rate, wilson_interval(rate * effective, effective, confidence)


def normal_power(effect: float, nobs: float, alpha: float) -> float:
    """Power of a two-sided z-test of standardized ``effect`` with ``nobs`` observations at level ``alpha``.

    The same number as ``statsmodels.stats.power.NormalIndPower().power`` (``nobs`` is
    n for one sample, 1 / (1/n1 + 1/n2) for two).
    """
    normal = statistics.NormalDist()
    crit = normal.inv_cdf(1 - alpha / 2)
    shift = effect * math.sqrt(nobs)
    return (1 - normal.cdf(crit - shift)) + normal.cdf(-crit - shift)


def smallest_effect(nobs: float, alpha: float, power: float = DETECTABLE_POWER) -> float:
    """The standardized effect a two-sided z-test with ``nobs`` observations detects with ``power`` at ``alpha``.

    Solves :func:`normal_power` = ``power`` by bisection to float precision (the
    power rises with the effect, so the root is unique).
    """
    if nobs <= 0:
        return math.inf
    low, high = 0.0, 2 * (statistics.NormalDist().inv_cdf(1 - alpha / 2) + 4) / math.sqrt(nobs)
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if normal_power(middle, nobs, alpha) < power else (low, middle)
    return high


def detectable_paired(shared: int, spread: float, alpha: float, power: float = DETECTABLE_POWER) -> float:
    """The smallest change of pass rate a paired test over ``shared`` cases detects, as a fraction.

    ``spread`` is the standard deviation of the per-case changes (of pass
    fractions); the change is :func:`smallest_effect` of one sample times it.
    A normal rather than a t approximation: the noncentral t is not in the
    standard library, and above 20 cases they differ by less than a tenth.
    """
    return min(1.0, smallest_effect(shared, alpha, power) * spread)


def detectable_two_sample(
    rate: float, n_now: int, n_baseline: int, alpha: float, power: float = DETECTABLE_POWER, *, rise: bool = False,
) -> float:
    """The smallest drop (or ``rise``) from pass rate ``rate`` that two unpaired runs of these sizes detect.

    On Cohen's arcsine scale h = 2·asin(√p1) - 2·asin(√p2), where a difference of
    proportions has the same variance wherever it lies; the drop is read back from
    the smallest detectable h. A drop larger than ``rate`` (or a rise above 1) is
    cut there: nothing smaller is detectable. An empty run detects nothing.
    """
    if n_now == 0 or n_baseline == 0:
        return 1 - rate if rise else rate
    h = smallest_effect(1 / (1 / n_now + 1 / n_baseline), alpha, power)
    angle = 2 * math.asin(math.sqrt(rate)) + (h if rise else -h)
    other = math.sin(min(max(angle, 0.0), math.pi) / 2) ** 2
    return abs(other - rate)


def detectable_table(sizes: Sequence[int], rates: Sequence[float], spread: float, alpha: float) -> list[list[float]]:
    """For docs/mlflow.md: per number of cases, the detectable drop from each baseline ``rate`` with no shared
    cases, then over shared cases whose changes have this ``spread``; fractions."""
    return [[detectable_two_sample(rate, n, n, alpha) for rate in rates] + [detectable_paired(n, spread, alpha)]
            for n in sizes]


# --------------------------------------------------------------------------- comparison with the baseline


@dataclass(frozen=True)
class RateInput:
    """A pass rate as counts: ``passed`` cases out of ``total``."""

    passed: int
    total: int

    def __post_init__(self) -> None:
        if self.total < 0 or not 0 <= self.passed <= self.total:
            raise ValueError(f"need 0 <= passed <= total, got passed={self.passed!r}, total={self.total!r}")

    @property
    def rate(self) -> float:
        """``passed / total``; 0.0 for an empty run (its Wilson interval, (0, 1), says how little that means)."""
        return self.passed / self.total if self.total else 0.0


@dataclass(frozen=True)
class Comparison:
    """The current run against its baseline, with the uncertainty of each number (DESIGN §5).

    Without a baseline every ``baseline_*`` field, ``delta``, ``p_value`` and
    ``test`` are None. ``fixed``/``broke`` count the shared cases that changed
    outcome (failed then passed / passed then failed) when the test is McNemar.
    """

    current: RateInput
    current_rate: float
    current_ci: tuple[float, float]
    baseline: RateInput | None = None
    baseline_rate: float | None = None
    baseline_ci: tuple[float, float] | None = None
    #: current_rate - baseline_rate: negative is a drop.
    delta: float | None = None
    p_value: float | None = None
    test: Literal["mcnemar", "sign-flip", "fisher"] | None = None
    shared_cases: int = 0
    fixed: int | None = None
    broke: int | None = None
    #: ``p_value`` adjusted across the session's comparisons (:func:`correct_session`); None until then.
    p_adjusted: float | None = None
    #: How it was adjusted (a name of :data:`CORRECTIONS`).
    correction: str = "none"
    #: The smallest change of pass rate these cases detect with power 0.8 at ``alpha`` (a fraction).
    detectable: float | None = None
    alpha: float = 0.05
    #: A repeated eval's share of passing runs (mean of per-case fractions) and its clustered interval.
    run_rate: float | None = None
    run_ci: tuple[float, float] | None = None

    @property
    def deciding_p(self) -> float | None:
        """The p-value ``--prompt-significance`` decides on: the adjusted one once there is one."""
        return self.p_adjusted if self.p_adjusted is not None else self.p_value

    @property
    def has_baseline(self) -> bool:
        """Whether there was a baseline to compare with."""
        return self.baseline_rate is not None


def compare(
    current: RateInput,
    baseline: RateInput | None,
    paired: list[tuple[bool, bool]] | None = None,
    *,
    paired_runs: Sequence[tuple[tuple[int, int], tuple[int, int]]] | None = None,
    case_runs: Sequence[tuple[int, int]] = (),
    alpha: float | None = None,
) -> Comparison:
    """Compare the current run's pass rate with its baseline's.

    ``paired`` holds, for every case id both runs share, ``(passed in baseline,
    passed now)``. When it is non-empty the p-value is McNemar's exact test over
    those cases; otherwise Fisher's exact test on the two runs' counts. The rates
    and intervals are always those of the whole runs. A baseline with no cases is
    no baseline.

    With repeats (DESIGN §5.1), ``paired_runs`` holds the same shared cases as
    ``((runs passed, runs) in the baseline, (runs passed, runs) now)``: when any
    case ran more than once, the p-value is the sign-flip test of the per-case
    differences of pass fractions (:func:`sign_flip_test`), which is McNemar's
    when every case ran once. ``case_runs`` (every current case's runs) gives a
    repeated eval's share of passing runs with its clustered interval. The
    detectable change is computed at ``alpha`` (default 0.05).
    """
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    current_ci = wilson_interval(current.passed, current.total)
    repeated = any(n > 1 for _, n in case_runs)
    run_rate, run_ci = clustered_interval(case_runs) if repeated else (None, None)
    if baseline is None or baseline.total == 0:
        if paired:
            raise ValueError("paired case outcomes were given without a baseline")
        return Comparison(current=current, current_rate=current.rate, current_ci=current_ci, alpha=alpha,
                          run_rate=run_rate, run_ci=run_ci)
    delta = current.rate - baseline.rate
    if paired:
        broke = sum(1 for before, now in paired if before and not now)
        fixed = sum(1 for before, now in paired if now and not before)
        counts: tuple[int | None, int | None] = (fixed, broke)
        if paired_runs and any(n > 1 for pair in paired_runs for _, n in pair):
            differences = case_differences(paired_runs)
            p_value, test = sign_flip_test(differences), "sign-flip"
            scale = math.lcm(*(n for pair in paired_runs for _, n in pair))
            changes = [d / scale for d in differences]
        else:
            p_value, test = mcnemar_exact(broke, fixed), "mcnemar"
            changes = [float(now) - float(before) for before, now in paired]
        spread = statistics.stdev(changes) if len(changes) > 1 else 0.0
        # No case changed: the spread of changes is unknown, and the unpaired bound is what can be said.
        detectable = detectable_paired(len(changes), spread, alpha) if spread > 0 else None
    else:
        p_value = fisher_exact_two_sided(current.passed, current.total, baseline.passed, baseline.total)
        test, counts = "fisher", (None, None)
        detectable = None
    if detectable is None:
        # A baseline at 0 % can only rise (and one at 100 % only drop): the change to detect is the one there is room for.
        rise = delta > 0 or (delta == 0 and baseline.rate == 0)
        detectable = detectable_two_sample(baseline.rate, current.total, baseline.total, alpha, rise=rise)
    return Comparison(
        current=current,
        current_rate=current.rate,
        current_ci=current_ci,
        baseline=baseline,
        baseline_rate=baseline.rate,
        baseline_ci=wilson_interval(baseline.passed, baseline.total),
        delta=delta,
        p_value=p_value,
        test=test,  # type: ignore[arg-type]
        shared_cases=len(paired) if paired else 0,
        fixed=counts[0],
        broke=counts[1],
        detectable=detectable,
        alpha=alpha,
        run_rate=run_rate,
        run_ci=run_ci,
    )


# --------------------------------------------------------------------------- flipped cases


@dataclass(frozen=True)
class FlipSide:
    """One run's side of a flipped case: its outcome, output and the reasons it failed (a failed grader or an error)."""

    outcome: str
    output: str | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Flip:
    """A case both runs share whose outcome changed: ``newly`` ``failing`` (passed before) or ``passing``."""

    case_id: str
    newly: Literal["failing", "passing"]
    #: The case's vars as JSON text and its expected value, as the later run's results table holds them.
    vars: str | None
    expected: str | None
    before: FlipSide
    after: FlipSide


@dataclass(frozen=True)
class FlippedCases:
    """The flipped cases of one (eval, variant) between a ``before`` run and an ``after`` run (DESIGN §8).

    ``cases`` is None when they could not be read; ``problem`` then says why.
    """

    eval: str
    variant: str
    before_run_id: str
    after_run_id: str | None
    cases: tuple[Flip, ...] | None
    problem: str | None = None

    def count(self, newly: str) -> int | None:
        """How many cases are newly ``failing`` or newly ``passing``; None when the cases could not be read."""
        return None if self.cases is None else sum(flip.newly == newly for flip in self.cases)


def flipped_cases(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> list[Flip]:
    """The cases of ``after`` whose pass/fail outcome differs from ``before``'s, newly failing first.

    Both are rows of the results table (``case_id``, ``outcome``, ``passed``, ``output``,
    ``graders``, ``error``, ``vars``, ``expected``). A flip is a change of ``passed``, the
    change McNemar's test counts; a case only one run has is no flip. Within each
    direction, by case id: the tables hold their cases in the order they finished,
    which xdist makes differ from run to run.
    """
    earlier = {str(row["case_id"]): row for row in before}
    flips = []
    for row in after:
        old = earlier.get(str(row["case_id"]))
        if old is None or bool(old.get("passed")) == bool(row.get("passed")):
            continue
        flips.append(Flip(
            case_id=str(row["case_id"]), newly="passing" if row.get("passed") else "failing",
            vars=_cell_text(row.get("vars")), expected=_cell_text(row.get("expected")),
            before=_side(old), after=_side(row),
        ))
    return sorted(flips, key=lambda flip: (flip.newly != "failing", flip.case_id))


def _side(row: Mapping[str, Any]) -> FlipSide:
    """A row's outcome, output and reasons: its error, and the lines of its graders' column that say FAIL."""
    reasons = [str(row["error"])] if row.get("error") else []
    reasons += [line for line in str(row.get("graders") or "").splitlines() if ": FAIL" in line]
    passed = bool(row.get("passed"))
    outcome = str(row.get("outcome") or ("passed" if passed else "failed"))
    return FlipSide(outcome=outcome, output=_cell_text(row.get("output")), reasons=tuple(reasons))


def _cell_text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class RecordedRun:
    """A run ``--prompt-compare`` compares: its id, when it started (ms since the epoch), its prompt versions."""

    run_id: str
    start_time: int
    prompt_versions: dict[str, str]
    complete: bool
    counts: RateInput | None


@dataclass(frozen=True)
class RunComparison:
    """Two recorded runs of one (eval, variant): ``before``, ``after``, their comparison and what flipped."""

    eval: str
    variant: str
    before: RecordedRun
    after: RecordedRun
    #: ``after`` against ``before`` (:func:`compare`); None when a run's case counts are unknown.
    comparison: Comparison | None
    flipped: FlippedCases


def compare_runs(
    eval_name: str, variant: str, before: RecordedRun, after: RecordedRun,
    before_rows: Sequence[Mapping[str, Any]] | None, after_rows: Sequence[Mapping[str, Any]] | None,
    problem: str | None = None,
) -> RunComparison:
    """``after`` against ``before``: rates, the paired p-value on shared cases (Fisher's test when none), the flips.

    Rows are the runs' results tables (None: not readable, ``problem`` says why); counts come from
    the runs' metrics, else from their rows.
    """
    def counts(run: RecordedRun, rows: Sequence[Mapping[str, Any]] | None) -> RateInput | None:
        if run.counts is not None or rows is None:
            return run.counts
        return RateInput(sum(bool(row.get("passed")) for row in rows), len(rows))

    have_rows = before_rows is not None and after_rows is not None
    if have_rows:
        earlier = {str(row["case_id"]): bool(row.get("passed")) for row in before_rows or ()}
        paired = [(earlier[str(row["case_id"])], bool(row.get("passed")))
                  for row in after_rows or () if str(row["case_id"]) in earlier]
    else:
        paired = []
    now, then = counts(after, after_rows), counts(before, before_rows)
    before, after = dataclasses.replace(before, counts=then), dataclasses.replace(after, counts=now)
    comparison = compare(now, then, paired or None) if now is not None and then is not None else None
    flips = FlippedCases(
        eval=eval_name, variant=variant, before_run_id=before.run_id, after_run_id=after.run_id,
        cases=tuple(flipped_cases(before_rows or (), after_rows or ())) if have_rows else None,
        problem=None if have_rows else problem,
    )
    return RunComparison(eval_name, variant, before, after, comparison, flips)
def correct_session(checks: Sequence[EvalCheck], method: str, significance: float | None) -> list[EvalCheck]:
    """The session's checks with their p-values adjusted together (:func:`adjust_pvalues`) and verdicts given again.

    A session compares many (eval, variant)s with their baselines at once: each
    one's p-value is adjusted across every comparison of the session, and
    ``significance`` decides on the adjusted one (DESIGN §5.1). Checks without a
    comparison keep their verdict.
    """
    compared = [i for i, c in enumerate(checks) if c.comparison is not None and c.comparison.p_value is not None]
    adjusted = adjust_pvalues([checks[i].comparison.p_value for i in compared], method)  # type: ignore[union-attr]
    out = list(checks)
    for i, p in zip(compared, adjusted):
        check = checks[i]
        comparison = dataclasses.replace(check.comparison, p_adjusted=p, correction=method)  # type: ignore[arg-type]
        found = check.verdict
        if check.threshold is not None:
            found = verdict(check.summary.pass_rate, check.threshold, check.warn_drop, comparison, significance)
        out[i] = dataclasses.replace(check, comparison=comparison, verdict=found)
    return out


# --------------------------------------------------------------------------- verdicts


class VerdictKind(enum.Enum):
    """What an (eval, variant) came to this session (DESIGN §5)."""

    REGRESSION = "REGRESSION"
    WARNING = "WARNING"
    IMPROVED = "IMPROVED"
    PASS = "PASS"


@dataclass(frozen=True)
class Verdict:
    """A verdict, whether it was given without a baseline, and why, in one sentence."""

    kind: VerdictKind
    #: No baseline run exists yet: judged by the threshold alone.
    first_run: bool
    reason: str


def verdict(
    pass_rate: float,
    threshold: float,
    warn_drop: float,
    comparison: Comparison | None,
    significance: float | None = None,
    *,
    no_baseline: str | None = None,
) -> Verdict:
    """The verdict of DESIGN §5.

    REGRESSION when ``pass_rate`` is below ``threshold``, whatever the baseline.
    Otherwise, against a baseline: WARNING when the pass rate fell by at least
    ``warn_drop``, IMPROVED when it rose; with ``significance`` (``--prompt-significance``)
    either needs the comparison's p-value below it. PASS otherwise. Without a
    baseline (``comparison`` None or baseline-less) it is PASS or REGRESSION by
    the threshold and ``first_run`` is set, unless ``no_baseline`` says why no
    baseline could be looked for ("baseline unavailable", "tracking off"), which
    the reason then says instead.
    """
    if significance is not None and not 0 < significance < 1:
        raise ValueError(f"significance must be between 0 and 1 (exclusive), got {significance!r}")
    has_baseline = comparison is not None and comparison.has_baseline
    first_run = not has_baseline and no_baseline is None
    why_alone = "first run: no baseline yet" if first_run else f"{no_baseline}: judged by the threshold alone"

    if pass_rate < threshold - _EPSILON:
        reason = f"pass rate {_percent(pass_rate)} below threshold {_percent_short(threshold)}"
        return Verdict(VerdictKind.REGRESSION, first_run, reason if has_baseline else f"{reason}; {why_alone}")
    if not has_baseline:
        return Verdict(VerdictKind.PASS, first_run, why_alone)

    assert comparison is not None and comparison.baseline_rate is not None and comparison.p_value is not None
    baseline_rate, p = comparison.baseline_rate, comparison.deciding_p
    assert p is not None
    drop = baseline_rate - pass_rate
    significant = significance is None or p < significance
    # A change the test cannot call significant, and smaller than these cases could detect: the number of
    # cases is why. (A significant change stays one even below the detectable effect: that effect sits
    # well above the significance boundary by definition, so demoting it would throw most power away.)
    too_small = comparison.detectable is not None and abs(drop) < comparison.detectable - _EPSILON
    shown_p = _shown_p(comparison) + ("" if significance is None else f", alpha {significance:g}")
    if too_small:
        not_significant = f"not significant (n too small to detect < {_pp(comparison.detectable)}; {shown_p})"
    else:
        not_significant = f"not significant ({shown_p})"
    if drop >= warn_drop - _EPSILON and drop > _EPSILON:
        change = f"dropped {_pp(drop)} from {_percent(baseline_rate)}"
        if significant:
            return Verdict(VerdictKind.WARNING, False, f"{change} ({shown_p})")
        return Verdict(VerdictKind.PASS, False, f"{change}, {not_significant}")
    if drop < -_EPSILON:
        change = f"rose {_pp(-drop)} from {_percent(baseline_rate)}"
        if significant:
            return Verdict(VerdictKind.IMPROVED, False, f"{change} ({shown_p})")
        return Verdict(VerdictKind.PASS, False, f"{change}, {not_significant}")
    if drop > _EPSILON:
        return Verdict(
            VerdictKind.PASS, False,
            f"dropped {_pp(drop)} from {_percent(baseline_rate)}, less than warn_drop {_pp(warn_drop, 'g')} "
            f"({_shown_p(comparison)})",
        )
    return Verdict(VerdictKind.PASS, False, f"unchanged from baseline {_percent(baseline_rate)}")


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _percent_short(rate: float) -> str:
    return f"{rate * 100:g}%"


def _pp(fraction: float, spec: str = ".1f") -> str:
    return f"{fraction * 100:{spec}} pp"


def _shown_p(comparison: Comparison) -> str:
    """``p=0.031``, and ``holm-adjusted p=0.093`` beside it when adjusting changed it."""
    assert comparison.p_value is not None
    shown = format_p(comparison.p_value)
    if comparison.p_adjusted is not None and comparison.p_adjusted != comparison.p_value:
        shown += f", {comparison.correction}-adjusted {format_p(comparison.p_adjusted)}"
    return shown


def format_p(p: float) -> str:
    """A p-value as every report shows it: ``p=0.031``, ``p<0.001``."""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"



def parse_fail_on(text: str) -> frozenset[str]:
    """``"regression,warning"`` → ``frozenset({"regression", "warning"})``, for ``--prompt-fail-on``.

    Names are verdicts in any case, separated by commas; ``none`` alone makes no
    verdict fail the session. Unknown names raise :class:`ValueError` naming the
    choices (argparse shows the message of an ``ArgumentTypeError`` only, so the
    option's ``type=`` wraps this).
    """
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"expected verdict names separated by commas ({', '.join(FAIL_ON_NAMES)}), got {text!r}")
    unknown = [name for name in names if name not in FAIL_ON_NAMES]
    if unknown:
        hint = "; PASS never fails the session" if "pass" in unknown else ""
        raise ValueError(
            f"unknown verdict {', '.join(repr(u) for u in unknown)} in {text!r}: "
            f"expected {', '.join(FAIL_ON_NAMES)}{hint}"
        )
    if "none" in names and len(set(names)) > 1:
        raise ValueError(f"'none' cannot be combined with other verdicts, got {text!r}")
    return frozenset(names) - {"none"}


def fails_session(verdict: Verdict, fail_on: frozenset[str]) -> bool:
    """Whether ``verdict`` fails the session under ``fail_on`` (names from :func:`parse_fail_on`)."""
    return verdict.kind.value.lower() in fail_on


# --------------------------------------------------------------------------- the best variant

#: Significance level for "is the best variant's lead real" when --prompt-significance is not given.
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class BestVariant:
    """The best variant of an eval in this session (DESIGN §7), and whether its lead over the next one is significant."""

    eval: str
    variant: str
    runner_up: str
    #: What decided the order: "pass rate", "average score", "cost" or "latency" (or "nothing": a tie).
    decided_by: str
    #: Exact test of the two pass rates (McNemar over the cases both ran; Fisher when they share none).
    p_value: float
    alpha: float

    @property
    def significant(self) -> bool:
        """Whether the lead in pass rate is significant at ``alpha``; a lead by anything else never is."""
        return self.decided_by == "pass rate" and self.p_value < self.alpha


def best_variants(
    checks: Iterable[EvalCheck], outcomes: Mapping[tuple[str, str], Mapping[str, bool]], alpha: float | None = None
) -> list[BestVariant]:
    """For each eval with several variants: the best by pass rate, then average score, then cost, then latency (p95).

    ``outcomes`` maps (eval, variant) to ``{case_id: passed}`` of this session, for
    the paired test between the best variant and the runner-up.
    """
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    by_eval: dict[str, list[EvalSummary]] = {}
    for check in checks:
        by_eval.setdefault(check.summary.eval, []).append(check.summary)
    best = []
    for name, summaries in by_eval.items():
        if len(summaries) < 2:
            continue
        first, second = sorted(summaries, key=functools.cmp_to_key(_better))[:2]
        decided_by = _decided_by(first, second)
        a = outcomes.get((name, first.variant), {})
        b = outcomes.get((name, second.variant), {})
        shared = sorted(set(a) & set(b))
        if shared:
            p = mcnemar_exact(sum(b[c] and not a[c] for c in shared), sum(a[c] and not b[c] for c in shared))
        else:
            p = fisher_exact_two_sided(first.passed, first.cases, second.passed, second.cases)
        best.append(BestVariant(name, first.variant, second.variant, decided_by, p, alpha))
    return best


_RANKED_BY = ("pass rate", "average score", "cost", "latency")


def _decided_by(a: EvalSummary, b: EvalSummary) -> str:
    """The first criterion on which ``a`` and ``b`` differ by more than noise; "nothing" for a tie."""
    for what, x, y in zip(_RANKED_BY, _rank(a), _rank(b)):
        if what == "latency":
            # Timer noise is not a reason to prefer a prompt: a lead needs 1 ms and 10 %.
            if math.isfinite(x) and math.isfinite(y) and abs(x - y) < max(1.0, 0.1 * max(x, y)):
                continue
        elif math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
            continue
        if x != y:
            return what
    return "nothing"


def _better(a: EvalSummary, b: EvalSummary) -> int:
    """Sort order of two variants: -1 when ``a`` ranks before ``b``."""
    what = _decided_by(a, b)
    if what == "nothing":
        return 0
    i = _RANKED_BY.index(what)
    return -1 if _rank(a)[i] < _rank(b)[i] else 1


def _rank(s: EvalSummary) -> tuple[float, float, float, float]:
    # Smaller is better; an unknown score ranks last, an unknown cost or latency too.
    return (
        -s.pass_rate,
        -s.average_score if s.average_score is not None else math.inf,
        s.cost_usd_total if s.cost_usd_total is not None else math.inf,
        s.latency_ms_p95 if s.latency_ms_p95 is not None else math.inf,
    )


# --------------------------------------------------------------------------- gates

GateAction = Literal["warn", "fail", "block_promote"]
_GATE_ACTIONS = ("warn", "fail", "block_promote")

# Why a metric can be missing, in words the user can act on.
_NOT_REPORTED = {
    "cost_usd_total": "the target gave no cost or tokens",
    "cost_usd_per_case": "the target gave no cost or tokens",
    "input_tokens": "the target gave no token counts",
    "output_tokens": "the target gave no token counts",
    "average_score": "no case was graded (every case errored)",
    "latency_ms_avg": "no case was graded (every case errored)",
    "latency_ms_p50": "no case was graded (every case errored)",
    "latency_ms_p95": "no case was graded (every case errored)",
    "latency_ms_p99": "no case was graded (every case errored)",
    "judge_input_tokens": "no judge was asked, or the judges gave no token counts",
    "judge_output_tokens": "no judge was asked, or the judges gave no token counts",
    "judge_cost_usd_total": "no judge was asked, or the judges gave no cost or tokens",
    "judge_latency_ms_p95": "no judge was asked",
}


@dataclass(frozen=True)
class GateResult:
    """One gate rule checked against one (eval, variant)'s metrics."""

    metric: str
    value: float | None
    min: float | None
    max: float | None
    passed: bool
    on_fail: GateAction
    reason: str


def evaluate_gates(rules: Iterable[Any], on_fail: str, metrics: Mapping[str, float | None]) -> list[GateResult]:
    """Check each rule (anything with ``.metric``, ``.min``, ``.max``, such as ``schema.GateRule``).

    A bound holds when the value is within it, allowing for float rounding. A
    metric with no value (``None``: cost not reported, every case errored) cannot
    be shown to pass, so its gate trips, and the reason says why it is missing.
    """
    if on_fail not in _GATE_ACTIONS:
        raise ValueError(f"on_fail must be one of {', '.join(_GATE_ACTIONS)}, got {on_fail!r}")
    results = []
    for rule in rules:
        metric, low, high = rule.metric, rule.min, rule.max
        if low is None and high is None:
            raise ValueError(f"gate rule on {metric} has neither min nor max")
        value = metrics.get(metric)
        if value is None:
            why = _NOT_REPORTED.get(metric, "nothing measured it")
            passed, reason = False, f"{metric} not reported: {why}"
        elif math.isnan(value):
            passed, reason = False, f"{metric} is not a number"
        elif low is not None and not _at_least(value, low):
            passed, reason = False, f"{metric} {_number(value, low)} below min {_number(low)}"
        elif high is not None and not _at_least(high, value):
            passed, reason = False, f"{metric} {_number(value, high)} above max {_number(high)}"
        else:
            bounds = " and ".join(
                part for part in (
                    f">= min {_number(low)}" if low is not None else "",
                    f"<= max {_number(high)}" if high is not None else "",
                ) if part
            )
            passed, reason = True, f"{metric} {_number(value)} {bounds}"
        results.append(GateResult(metric, value, low, high, passed, on_fail, reason))  # type: ignore[arg-type]
    return results


def _at_least(value: float, bound: float) -> bool:
    # Relative, not absolute: costs per case can be 1e-7 USD.
    return value >= bound or math.isclose(value, bound, rel_tol=1e-9, abs_tol=0.0)


def _number(value: float, beside: float | None = None) -> str:
    """Six significant digits, or every digit when six would look equal to the bound it failed."""
    text = f"{value:.6g}"
    if beside is not None and text == f"{beside:.6g}":
        return repr(value)
    return text


def metrics_of(summary: EvalSummary) -> dict[str, float | None]:
    """The gate metrics (:data:`GATE_METRICS`) of one (eval, variant), from its summary's fields of the same names."""
    return {name: getattr(summary, name) for name in GATE_METRICS}
