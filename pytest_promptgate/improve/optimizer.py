"""``pytest --prompt-optimize NAME``: improve a prompt from its failures, prove it on held-out cases, hand it to the gate.

Design (docs/optimize.md): candidates are not pytest items. The session runs as usual
(the current prompt on every case of the evals that use NAME); then, in the session's
finish on the controlling process, each round

1. shows a proposal strategy (the ``pytest_promptgate_propose_prompts`` hook; built in:
   :mod:`.metaprompt`) the evidence of the *training* split (:mod:`.evidence`);
2. refuses candidates whose ``{{variables}}`` differ from the current prompt's;
3. runs the others as variants of the eval on the training split, through the same
   runner, targets and graders as the items (:class:`pytest_promptgate.runner.Runner`);
4. runs the best of them by the goal on the held-out split, and calls it a winner only when
   it does better there than the prompt it would replace, with a one-sided paired p-value
   adjusted for every candidate tried so far below alpha, and trips no gate of the eval
   (:mod:`.decide`);
5. feeds the next round with the failures of the prompt to beat and what was tried.

A winner is registered at alias ``candidate`` with its lineage, or written back to its
file; ``--promote`` stays the only way to production. Every candidate evaluation is an
MLflow run of its own, in experiment ``{prefix}-optimize/{eval}`` (never a baseline).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from ..results import CaseResult, summarize
from ..verdicts import DEFAULT_ALPHA, check_evals
from .decide import adjusted, beats, pass_rate, rank, sign_test_greater, wins_losses
from .evidence import (
    HELDOUT,
    TRAIN,
    Tried,
    build_evidence,
    proposals,
    refusal,
    split_of,
)
from .handoff import hand_off, log_candidates

if TYPE_CHECKING:
    from ..collect import EvalItem, EvalPlan
    from ..schema import LoadedCase, LoadedVariant

#: Exit statuses of ``--prompt-optimize`` (docs/optimize.md): a winner was handed off, or none was.
EXIT_WINNER = pytest.ExitCode.OK
EXIT_NO_WINNER = pytest.ExitCode.TESTS_FAILED


class BudgetExhausted(Exception):
    """``--optimize-budget-usd`` is spent: the optimization stops before its next call."""


@dataclass(frozen=True)
class OptimizeRequest:
    """``--prompt-optimize NAME`` and its companions, read and checked once."""

    name: str
    candidates: int
    rounds: int
    goal: str
    budget_usd: float | None
    holdout: float
    dry_run: bool
    alpha: float

    @classmethod
    def from_config(cls, config: pytest.Config) -> OptimizeRequest:
        """From the options; alpha is ``--prompt-significance``, else :data:`DEFAULT_ALPHA`."""
        significance = config.getoption("prompt_significance")
        return cls(
            name=config.getoption("prompt_optimize"), candidates=config.getoption("optimize_candidates"),
            rounds=config.getoption("optimize_rounds"), goal=config.getoption("optimize_goal"),
            budget_usd=config.getoption("optimize_budget_usd"), holdout=config.getoption("optimize_holdout"),
            dry_run=config.getoption("prompt_dry_run"), alpha=DEFAULT_ALPHA if significance is None else significance,
        )


@dataclass
class Budget:
    """What the optimization spent: the optimizer model's calls and the candidates' target calls."""

    limit: float | None
    optimizer_usd: float = 0.0
    evaluation_usd: float = 0.0
    optimizer_calls: int = 0

    @property
    def spent(self) -> float:
        """USD spent so far, both kinds of call."""
        return self.optimizer_usd + self.evaluation_usd

    def check(self) -> None:
        """Raise :class:`BudgetExhausted` once the limit is reached: the call that would come next is not made."""
        if self.limit is not None and self.spent >= self.limit:
            raise BudgetExhausted(f"--optimize-budget-usd {self.limit:g} spent (USD {self.spent:.4f})")


@dataclass
class Candidate:
    """One proposed prompt, and what became of it."""

    round: int
    index: int
    prompt: str
    hypothesis: str
    refused: str | None = None
    train: list[CaseResult] = field(default_factory=list)
    heldout: list[CaseResult] = field(default_factory=list)
    status: str = "proposed"
    p_value: float | None = None
    p_adjusted: float | None = None
    cost_usd: float = 0.0
    run_ids: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``r1c2``: round 1, candidate 2."""
        return f"r{self.round}c{self.index}"

    @property
    def train_pass_rate(self) -> float | None:
        """Its pass rate on the training cases it ran; None before it ran any."""
        return pass_rate(self.train) if self.train else None

    @property
    def heldout_pass_rate(self) -> float | None:
        """Its pass rate on the held-out cases it ran; None when it never ran there."""
        return pass_rate(self.heldout) if self.heldout else None


@dataclass
class Slot:
    """One eval that uses the prompt: its plan, the variant that runs the current prompt, its cases by split."""

    plan: EvalPlan
    variant: LoadedVariant
    key: str  # the eval's own name for the prompt
    cases: dict[str, list[LoadedCase]]
    #: The current prompt's results from the session, by case id.
    current: dict[str, CaseResult]

    @property
    def eval(self) -> str:
        """The eval's name."""
        return self.plan.loaded.name


class Optimization:
    """``--prompt-optimize NAME`` on the controlling process: registered by the plugin, run by the session's finish."""

    def __init__(self, config: pytest.Config) -> None:
        from .metaprompt import MetaPrompt

        self.config = config
        self.request = OptimizeRequest.from_config(config)
        self.id = uuid.uuid4().hex[:12]
        self.budget = Budget(self.request.budget_usd)
        self.candidates: list[Candidate] = []
        self.winner: Candidate | None = None
        self.stop_reason: str | None = None
        self.handoff: list[tuple[str, dict[str, bool]]] = []
        self.handed_off = False
        self.optimizer_model: str | None = None
        self.current_prompt: str | None = None
        self.current_heldout: float | None = None
        self.current_train: float | None = None
        self.ran = False
        self.interrupted = False
        config.pluginmanager.register(MetaPrompt(), "promptgate-metaprompt")

    # ------------------------------------------------------------------ collection

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """Only the evals that use NAME run; without an optimizer model (and no other strategy), a usage error."""
        keep = [item for item in items if _prompt_key(item, self.request.name) is not None]
        drop = [item for item in items if item not in keep]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
        if not keep:
            raise pytest.UsageError(f"promptgate: --prompt-optimize: no selected eval uses prompt {self.request.name!r} "
                                    "(a registry name, or a key under an eval's prompts:)")
        if self._optimizer_spec(keep) is None and not self._other_strategies():
            raise pytest.UsageError(
                "promptgate: --prompt-optimize needs an optimizer model: set ini promptgate_optimizer (a target, "
                "e.g. mypkg.llm:call) or an eval file's optimizer: (any target or provider); docs/optimize.md"
            )

    def _optimizer_spec(self, items: Sequence[Any]) -> Any:
        """The eval file's ``optimizer:`` (the first eval that has one), else ini ``promptgate_optimizer``."""
        for item in items:
            spec = getattr(item.plan.loaded.spec, "optimizer", None)
            if spec is not None:
                return spec
        return self.config.getini("promptgate_optimizer").strip() or None

    def _other_strategies(self) -> bool:
        impls = self.config.pluginmanager.hook.pytest_promptgate_propose_prompts.get_hookimpls()
        return any(impl.plugin_name != "promptgate-metaprompt" for impl in impls)

    # ------------------------------------------------------------------ the loop

    def run(self, evals: Any, session: pytest.Session) -> None:
        """Run the rounds after the session's items ran and its runs were logged, then hand off any winner."""
        from ..collect import EvalItem

        self.ran = True
        items = [item for item in session.items if isinstance(item, EvalItem)]
        slots = self._slots(items, evals)
        if isinstance(slots, str):
            self.stop_reason = slots
            return
        current = slots[0].variant.prompts[slots[0].key].text()
        self.current_prompt = current
        incumbent_text = current
        incumbent = {s.eval: s.current for s in slots}  # eval -> case id -> result
        self.current_train = pass_rate(self._results(slots, incumbent, TRAIN))
        self.current_heldout = pass_rate(self._results(slots, incumbent, HELDOUT))
        ask = self._asker(items)
        tested: list[float] = []
        tried: list[Tried] = []
        try:
            for round_number in range(1, self.request.rounds + 1):
                won = self._round(round_number, slots, incumbent_text, incumbent, ask, tested, tried)
                if won is not None:
                    self.winner = won
                    incumbent_text = won.prompt
                    incumbent = {s.eval: _by_case(won.train + won.heldout, s.eval) for s in slots}
        except BudgetExhausted as exc:
            self.stop_reason = f"stopped: {exc}; what was measured is kept"
            for c in self.candidates:
                if c.status in ("proposed", "measuring"):
                    c.status = "stopped by the budget"
        except _StrategyFailed as exc:
            self.stop_reason = str(exc)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what was measured is still logged and reported
            self.interrupted = True
            self.stop_reason = "interrupted: what was measured is kept; nothing is registered or written"
            self.winner = None
            for c in self.candidates:
                if c.status in ("proposed", "measuring"):
                    c.status = "interrupted"
        log_candidates(self, evals)
        if self.winner is not None and not self.interrupted:
            hand_off(self, evals, slots[0])
        elif self.stop_reason is None:
            self.stop_reason = "no candidate won: nothing registered or written"

    def _round(self, number: int, slots: list[Slot], incumbent_text: str, incumbent: dict[str, dict[str, CaseResult]],
               ask: Callable[[str], str], tested: list[float], tried: list[Tried]) -> Candidate | None:
        r = self.request
        train_now = self._results(slots, incumbent, TRAIN)
        evidence = build_evidence(r.name, incumbent_text, r.goal, r.candidates, number, train_now, tried)
        try:
            answer = self.config.hook.pytest_promptgate_propose_prompts(config=self.config, evidence=evidence, ask=ask)
        except BudgetExhausted:
            raise
        except Exception as exc:  # a strategy's failure, or the optimizer model's: one line, the session goes on
            raise _StrategyFailed(f"round {number}: the proposal strategy failed: {exc}") from None
        try:
            proposed = proposals(answer if answer is not None else [])[: r.candidates]
        except ValueError as exc:
            raise _StrategyFailed(f"round {number}: the optimizer's answer could not be read: {exc}") from None
        measured = []
        for k, proposal in enumerate(proposed, 1):
            candidate = Candidate(number, k, proposal.prompt, proposal.hypothesis)
            self.candidates.append(candidate)
            candidate.refused = refusal(proposal.prompt, self.current_prompt or "")
            if candidate.refused:
                candidate.status = f"refused: {candidate.refused}"
                continue
            candidate.status = "measuring"
            self._measure(candidate, slots, TRAIN)
            candidate.status = "measured on training"
            measured.append(candidate)
        if not measured:
            return None
        best = min(measured, key=lambda c: rank(r.goal, c.train))
        for c in measured:
            if c is not best:
                c.status = "not the best of its round on training"
        try:
            return self._held_out(best, slots, train_now, incumbent, tested, sum(c.refused is None for c in self.candidates))
        finally:
            tried += [Tried(c.hypothesis, c.train_pass_rate, c.status) for c in measured]

    def _held_out(self, best: Candidate, slots: list[Slot], train_now: list[CaseResult],
                  incumbent: dict[str, dict[str, CaseResult]], tested: list[float], count: int) -> Candidate | None:
        goal = self.request.goal
        if not beats(goal, best.train, train_now):
            best.status = f"not better than the prompt to beat on training ({goal})"
            return None
        best.status = "measuring"
        self._measure(best, slots, HELDOUT)
        before = {(s.eval, cid): res for s in slots for cid, res in incumbent[s.eval].items()
                  if split_of(s.eval, cid, self.request.holdout) == HELDOUT}
        after = {(res.eval, res.case_id): res for res in best.heldout}
        wins, losses = wins_losses(goal, before, after)
        best.p_value = sign_test_greater(wins, losses)
        tested.append(best.p_value)
        best.p_adjusted = adjusted(tested, count)
        gates = self._tripped_gates(best)
        record = f"{wins} better, {losses} worse"
        if wins <= losses:
            best.status = f"no better on held-out ({record})"
        elif best.p_adjusted >= self.request.alpha:
            best.status = f"not significant on held-out ({record}; adjusted p {best.p_adjusted:.3g} >= {self.request.alpha:g})"
        elif gates:
            best.status = f"a gate tripped: {'; '.join(gates)}"
        else:
            best.status = f"won ({record})"
            return best
        return None

    def _tripped_gates(self, candidate: Candidate) -> list[str]:
        """The eval's gates (``fail`` and ``block_promote``) and threshold, checked on the candidate's cases."""
        evals = {name: info for name, info in _state(self.config).evals.items()}
        problems = []
        for check in check_evals(summarize(candidate.train + candidate.heldout), evals):
            problems += [f"{check.summary.eval}: {g.reason}" for g in check.tripped("fail") + check.tripped("block_promote")]
            if not check.passed:
                problems.append(f"{check.summary.eval}: pass rate {check.summary.pass_rate:.1%} below the threshold")
        return problems

    def _measure(self, candidate: Candidate, slots: list[Slot], split: str) -> None:
        """Run the candidate on one split of every eval's cases, one case at a time, within the budget."""
        from ..graders import GraderFailed
        from ..targets import TargetError

        runner = _state(self.config).runner()
        out = candidate.train if split == TRAIN else candidate.heldout
        for slot in slots:
            variant = _variant(slot, candidate)
            target = slot.plan.targets[slot.variant.name]
            for case in slot.cases[split]:
                self.budget.check()
                job = slot.plan.job(variant, case)

                def judge(spec: Any, prompt: Any, plan: EvalPlan = slot.plan) -> Any:
                    return runner.judge(spec, prompt, plan.prices, _no_fixture)

                try:
                    result = runner.measure(job, target, judge)  # type: ignore[arg-type]
                except (TargetError, GraderFailed) as exc:
                    result = CaseResult(eval=slot.eval, variant=variant.name, case_id=case.id, passed=False,
                                        score=None, error=str(exc), vars=dict(case.vars), expected=case.expected)
                cost = sum(run.cost_usd or 0.0 for run in result.runs)
                self.budget.evaluation_usd += cost
                candidate.cost_usd += cost
                out.append(result)

    def _asker(self, items: Sequence[Any]) -> Callable[[str], str]:
        """``ask(text) -> answer``: one call of the optimizer model, counted and held to the budget."""
        from ..targets import TargetError, TargetRequest, build

        spec = self._optimizer_spec(items)
        prices = items[0].plan.prices if items else {}
        runner = _state(self.config).runner()
        built: list[Any] = []

        def ask(text: str) -> str:
            if spec is None:
                raise TargetError("no optimizer model: set ini promptgate_optimizer or an eval file's optimizer:")
            self.budget.check()
            if not built:
                target = build(spec, {}, ("optimizer",))
                if isinstance(target, str):
                    raise TargetError(f"the optimizer cannot be a fixture (fixture:{target}): name a target or a provider")
                runner.own(target)
                built.append(target)
                self.optimizer_model = getattr(target, "identity", None) or repr(spec)
            request = TargetRequest(prompt=text, prompts={"optimizer": text}, vars={}, params={}, variant="optimizer")
            result = runner.call(built[0], request, prices)
            self.budget.optimizer_calls += 1
            self.budget.optimizer_usd += result.cost_usd or 0.0
            if result.model:
                self.optimizer_model = result.model
            return result.output

        self.optimizer_model = spec if isinstance(spec, str) else getattr(getattr(spec, "provider", None), "model", None)
        return ask

    # ------------------------------------------------------------------ what the session ran

    def _slots(self, items: list[EvalItem], evals: Any) -> list[Slot] | str:
        """Each eval that uses the prompt, with its current results; or why there is nothing to optimize."""
        name, holdout = self.request.name, self.request.holdout
        plans: dict[str, tuple[EvalPlan, str]] = {}
        for item in items:
            key = _prompt_key(item, name)
            if key is not None:
                plans.setdefault(item.plan.loaded.name, (item.plan, key))
        if not plans:
            return f"no selected eval uses prompt {name!r}: nothing to optimize"
        results = [CaseResult.from_dict(data) for data in evals._case_data]
        slots = []
        for eval_name, (plan, key) in plans.items():
            variant = next((v for v in plan.loaded.variants if key not in _overrides(plan, v.name)), plan.loaded.variants[0])
            prompt = variant.prompts[key]
            if prompt.messages is not None:
                return f"{eval_name}: prompt {name!r} is a chat prompt; the optimizer improves template prompts"
            if isinstance(plan.targets[variant.name], str):
                return f"{eval_name}: its target is a fixture; the optimizer runs candidates after the session, " \
                       "when fixtures are gone: use a module:callable or provider target"
            current = {r.case_id: r for r in results if r.eval == eval_name and r.variant == variant.name}
            if not current:
                return f"{eval_name}: variant {variant.name} did not run, so the current prompt has no results to improve on"
            cases = {TRAIN: [], HELDOUT: []}
            for case in plan.loaded.cases:
                if case.id in current:
                    cases[split_of(eval_name, case.id, holdout)].append(case)
            if not cases[TRAIN] or not cases[HELDOUT]:
                return (f"{eval_name}: {len(cases[TRAIN])} training and {len(cases[HELDOUT])} held-out case(s) with "
                        f"--optimize-holdout {holdout:g}: both splits need cases")
            slots.append(Slot(plan, variant, key, cases, current))
        texts = {s.variant.prompts[s.key].text() for s in slots}
        if len(texts) > 1:
            return f"the evals that use prompt {name!r} hold different texts of it: optimize one eval at a time (-k)"
        return slots

    @staticmethod
    def _results(slots: list[Slot], by_eval: dict[str, dict[str, CaseResult]], split: str) -> list[CaseResult]:
        return [result for s in slots for case in s.cases[split] if (result := by_eval[s.eval].get(case.id)) is not None]

    def exit_status(self) -> pytest.ExitCode:
        """0 when a winner was handed off (registered, written, or shown by ``--prompt-dry-run``); 2 when
        interrupted; 1 otherwise."""
        if self.interrupted:
            return pytest.ExitCode.INTERRUPTED
        return EXIT_WINNER if self.winner is not None and self.handed_off else EXIT_NO_WINNER

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The candidates' table and the decision: the last word of the session."""
        if not self.ran:
            return
        from .render import optimization_lines

        terminalreporter.write_sep("=", f"optimize {self.request.name}")
        for line in optimization_lines(self):
            terminalreporter.write_line(line)
        for line, markup in self.handoff:
            terminalreporter.write_line(line, **markup)


class _StrategyFailed(Exception):
    """The proposal strategy (or the optimizer model behind it) failed or answered nonsense."""


def _state(config: pytest.Config) -> Any:
    """The plugin's per-process state (collection's eval info, the runner)."""
    from ..state import get_state

    return get_state(config)


def _prompt_key(item: Any, name: str) -> str | None:
    """The eval's own name of prompt NAME (a registry prompt's registry name, or an eval prompt's key), or None."""
    plan = getattr(item, "plan", None)
    if plan is None:
        return None
    for key, prompt in plan.loaded.spec.prompts.items():
        if key == name and prompt.registry is None:
            return key
    for variant in plan.loaded.variants:
        for key, prompt in variant.prompts.items():
            if prompt.registry_name == name:
                return key
    return None


def _overrides(plan: EvalPlan, variant: str) -> set[str]:
    """The eval prompts that variant ``variant`` replaces with its own."""
    for declared in plan.loaded.spec.variants:
        if declared.name == variant:
            return set(declared.prompts)
    return set()


def _variant(slot: Slot, candidate: Candidate) -> LoadedVariant:
    """The current variant with the candidate's text in place of the prompt: a variant named for the candidate."""
    prompt = dataclasses.replace(slot.variant.prompts[slot.key], template=candidate.prompt, registry_name=None,
                                 version=None, source="optimizer")
    return dataclasses.replace(slot.variant, name=f"optimize-{candidate.label}",
                               prompts={**slot.variant.prompts, slot.key: prompt})


def _by_case(results: list[CaseResult], eval_name: str) -> dict[str, CaseResult]:
    return {r.case_id: r for r in results if r.eval == eval_name}


def _no_fixture(name: str) -> Any:
    from ..targets import TargetError

    raise TargetError(f"judge fixture:{name} cannot be used by the optimizer, which runs after the session's fixtures")
