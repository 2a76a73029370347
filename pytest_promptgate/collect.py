"""Collection: ``EvalFile`` → ``VariantNode`` → ``EvalItem``, pytest's non-python pattern.

Node ids are ``path/x.eval.yaml::VARIANT::CASE_ID``, so ``-k``, ``--lf``,
``--deselect`` and ``path::VARIANT`` selection behave as they do for tests.

An item does its measuring in ``setup``: it calls the target (``repeat`` times)
and grades the outputs. Anything that stops a case from being measured —
an exception in the target, a fixture or a grader — is therefore a setup error,
which pytest shows and counts as an *error*, apart from failures. ``runtest``
then only states the verdict: a case whose required graders failed fails.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.fixtures import TopRequest  # the route pytest's own doctest items take to fixtures

from . import template
from .graders import BaseGrader, GraderFailed, GraderRegistry
from .graders.strings import cut
from .results import CaseResult, label_text
from .places import describe_exception
from .runner import Job, Runner
from .schema import EvalFileError, Grader, LoadedCase, LoadedEval, LoadedVariant, Problem, load_eval, parse_registry_ref
from .state import DIST_KEY, NEXT_ITEM, State, get_state
from .targets import CallableTarget, Target, TargetError, build
from .targets.cache import ResponseCache, from_config as cache_from_config

#: How much of an output a failure message shows.
SHOWN_OUTPUT_CHARS = 300
#: xdist modes that run all the items of one eval and variant on one worker, in collection order
#: (loadgroup by the ``xdist_group`` mark each eval item carries under it, where it works).
GROUPING_DIST_MODES = frozenset({"loadgroup", "loadscope", "loadfile"})
#: Fixture scopes whose value eval items share: pytest gives eval items (which have no module or class
#: of their own) a new value of a class- or function-scoped fixture each.
SHARED_FIXTURE_SCOPES = frozenset({"session", "package"})


def eval_files(config: pytest.Config, state: State) -> Iterator[Path]:
    """The eval files under the paths pytest was given, as collection would find them (``norecursedirs`` honoured)."""
    ignored = config.getini("norecursedirs")
    seen: set[Path] = set()
    for arg in config.args:
        path = Path(os.path.abspath(Path(config.invocation_params.dir, arg.split("::", 1)[0])))  # a link loop cannot resolve()
        if path.is_file():
            candidates = [path]
        elif path.is_dir():
            candidates = []
            for directory, subdirs, files in os.walk(path):
                subdirs[:] = sorted(d for d in subdirs if not any(fnmatch.fnmatch(d, pattern) for pattern in ignored))
                candidates += [Path(directory, name) for name in sorted(files)]
        else:
            continue
        for candidate in candidates:
            if state.is_eval_file(candidate.name) and candidate not in seen:
                seen.add(candidate)
                yield candidate


def allowed_roots(config: pytest.Config) -> tuple[Path, ...]:
    """Where the files an eval file names may lie: the rootdir, then the ini key ``promptgate_allowed_paths``."""
    return (config.rootpath, *config.getini("promptgate_allowed_paths"))


def labels_dir(config: pytest.Config) -> Path | None:
    """The ini key ``promptgate_labels``: the directory of the labels files (relative to the ini file), else None
    (each beside its eval file)."""
    written = (config.getini("promptgate_labels") or "").strip()
    if not written:
        return None
    return Path(config.inipath.parent if config.inipath else config.rootpath, written)


class EvalFile(pytest.File):
    """A ``*.eval.yaml`` file: one eval."""

    def collect(self) -> Iterator[VariantNode]:
        state = get_state(self.config)
        registry = state.registry(self.config)
        if registry is None:
            if hasattr(self.config, "workerinput"):
                # A usage error would kill an xdist worker; as a collection error the
                # controller shows it once (it drops repeats of the same text).
                raise EvalFileError([Problem("", None, None, "", state.registry_error or "")])
            return  # reported once, as a usage error, after collection
        loaded = load_eval(self.path, registry.options_model, state.selects, state.registry_prompt, allowed_roots(self.config),
                           labels_dir(self.config))
        if isinstance(loaded, list):  # an eval of suites not selected
            state.suites_seen.update(loaded)
            return
        state.suites_seen.update(loaded.spec.suites)
        other = state.evals.get(loaded.name)
        if other is not None and other["path"] != str(self.path):
            raise EvalFileError([loaded.problem(("eval",), f"eval name {loaded.name!r} is already used by {other['path']}")])
        plan = EvalPlan.build(loaded, state, registry, self)
        state.evals[loaded.name] = plan.info()
        loaded.release_source()
        for variant in loaded.variants:
            yield VariantNode.from_parent(self, name=variant.name, plan=plan, variant=variant)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """Problems in the file as ``file:line:col: field: message`` lines, without a traceback."""
        if isinstance(excinfo.value, EvalFileError):
            return f"invalid eval file ({len(excinfo.value.problems)} problem(s)):\n" + str(excinfo.value)
        return super().repr_failure(excinfo)


class EvalPlan:
    """What an eval's items share: the loaded file, its targets and its graders."""

    def __init__(self, loaded: LoadedEval, targets: dict[str, Target | str], graders: list[tuple[Grader, BaseGrader]],
                 case_graders: dict[str, list[tuple[Grader, BaseGrader]]], prices: dict[str, tuple[float, float]]) -> None:
        self.loaded = loaded
        self.targets = targets
        self.graders = graders
        self.case_graders = case_graders
        self.prices = prices
        # The last fixture value wrapped as a target; only the last, so function-scoped
        # fixture values are not kept alive for the whole session.
        self.last_fixture_target: CallableTarget | None = None
        self.cache: ResponseCache | None = None
        #: Variant name → scope of its ``fixture:`` target's fixture, learnt at its first item.
        self.fixture_scopes: dict[str, str] = {}

    @classmethod
    def build(cls, loaded: LoadedEval, state: State, registry: GraderRegistry, node: pytest.Collector) -> EvalPlan:
        """Import targets and make graders; what fails here is a collection error pointing at the file."""
        config = node.config
        problems: list[Problem] = []
        targets: dict[str, Target | str] = {}
        for variant in loaded.variants:
            try:
                target = build(variant.target, variant.params, tuple(variant.prompts))
            except TargetError as exc:
                problems.append(loaded.problem(variant.target_loc, str(exc)))
                continue
            missing = _missing_fixture(target, "target", node) or _missing_sdk(target)
            if missing:
                problems.append(loaded.problem(variant.target_loc, missing))
            targets[variant.name] = target
            if not isinstance(target, str):  # fixture targets belong to their fixtures
                state.runner().own(target)
        graders = [(spec, registry.create(spec.type, spec.options)) for spec in loaded.spec.graders]
        case_graders = {
            case.id: [(spec, registry.create(spec.type, spec.options)) for spec in case.graders]
            for case in loaded.cases if case.graders
        }
        for i, (_, grader) in enumerate(graders):
            problems += _judge_problems(grader, node, lambda m, i=i: loaded.problem(("graders", i, "judge"), m))
        for case in loaded.cases:
            for i, (_, grader) in enumerate(case_graders.get(case.id, [])):
                problems += _judge_problems(
                    grader, node, lambda m, i=i, case=case: Problem(case.file, case.line, None, f"case {case.id}: graders[{i}].judge", m)
                )
        if problems:
            raise EvalFileError(problems)
        prices = {**state.prices(config), **{m: (p.input, p.output) for m, p in loaded.spec.pricing.items()}}
        plan = cls(loaded, targets, graders, case_graders, prices)
        plan.cache = state.runner().cache = cache_from_config(config)
        return plan

    def job(self, variant: LoadedVariant, case: LoadedCase) -> Job:
        """What the runner needs to measure one item."""
        spec = self.loaded.spec
        graders = self.graders + self.case_graders.get(case.id, [])
        return Job(spec.eval, variant, case, graders, case.repeat or spec.repeat, spec.repeat_pass, self.prices)

    def info(self) -> dict[str, Any]:
        """What the controller needs to know of this eval (plain data: it crosses xdist's channel)."""
        spec = self.loaded.spec
        return {
            "name": spec.eval,
            "path": str(self.loaded.path),
            "suites": list(spec.suites),
            "threshold": spec.threshold,
            "warn_drop": spec.warn_drop,
            "repeat": spec.repeat,
            "repeat_pass": spec.repeat_pass,
            "cases": len(self.loaded.cases),
            "variants": [v.name for v in self.loaded.variants],
            "dataset_hash": self.loaded.dataset_hash,
            # The response cache's mode (off, use, record, replay): recorded outputs keep their original latency.
            "cache": self.cache.mode if self.cache is not None else "off",
            "gates": spec.gates.model_dump() if spec.gates else None,
            # What each variant's MLflow run records as params and artifacts.
            "runs": {v.name: _run_info(v) for v in self.loaded.variants},
            "registry_prompts": sorted({p.registry_name for v in self.loaded.variants for p in v.prompts.values()
                                        if p.registry_name}),
            # Where the eval's own prompts come from, and which prompts each variant replaces (--prompt-*-best).
            "prompt_sources": {name: _prompt_source(self.loaded, name, prompt) for name, prompt in spec.prompts.items()},
            "variant_overrides": {v.name: sorted(v.prompts) for v in spec.variants},
        }


def _prompt_source(loaded: LoadedEval, name: str, prompt: Any) -> dict[str, Any]:
    """Where an eval's own prompt ``name`` is written: a file, an inline template, chat messages or the registry."""
    if prompt.file is not None:
        return {"kind": "file", "path": str(loaded.path.parent / prompt.file)}
    if prompt.template is not None:
        span = loaded.span(("prompts", name, "template"))
        return {"kind": "inline", "path": str(loaded.path), "span": list(span) if span else None}
    if prompt.registry is not None:
        parsed = parse_registry_ref(prompt.registry)
        return {"kind": "registry", "registry_name": parsed[0] if parsed else None}
    return {"kind": "messages", "path": str(loaded.path)}


def _run_info(variant: LoadedVariant) -> dict[str, Any]:
    """A variant's target, model params and prompt templates, as plain data."""
    if isinstance(variant.target, str):
        target, params = variant.target, dict(variant.params)
    else:
        provider = variant.target.provider
        target = f"provider:{provider.base_url}"
        params = {"model": provider.model, **provider.params, **variant.params}
    from .template import prompt_digest

    texts = {name: p.text() for name, p in variant.prompts.items()}
    # prompt.{name} params: a registry prompt's pinned version, a digest of any other prompt's text.
    versions = {
        name: str(p.version) if p.version is not None else prompt_digest(texts[name]) for name, p in variant.prompts.items()
    }
    linked = [{"name": p.registry_name, "version": str(p.version)} for p in variant.prompts.values() if p.registry_name]
    messages = {name: [list(m) for m in p.messages] for name, p in variant.prompts.items() if p.messages is not None}
    return {"target": target, "params": params, "prompts": texts, "prompt_versions": versions, "linked_prompts": linked,
            "prompt_messages": messages}


def _judge_problems(grader: BaseGrader, node: pytest.Collector, problem: Any) -> list[Problem]:
    """A model-graded grader's judge must be a target that exists, like an eval's own target."""
    judge = getattr(grader.options, "judge", None)
    if judge is None:
        return []
    try:
        built = build(judge, {}, ("judge",))
    except TargetError as exc:
        return [problem(str(exc))]
    missing = _missing_fixture(built, "judge", node) or _missing_sdk(built)
    return [problem(missing)] if missing else []


def _missing_sdk(target: Target | str) -> str | None:
    """For a provider target, why it cannot run here: the openai package is not installed (once for the
    eval file, rather than once for each of its items)."""
    from .targets.provider import INSTALL_HINT, ProviderTarget

    if not isinstance(target, ProviderTarget):
        return None
    try:
        found = importlib.util.find_spec("openai")  # found, not imported: --co and deselected items cost nothing
    except (ImportError, ValueError):
        found = None
    return INSTALL_HINT if found is None else None


def _missing_fixture(target: Target | str, role: str, node: pytest.Collector) -> str | None:
    """For a ``fixture:NAME`` target (a name here), why it cannot be used from ``node``, if it cannot."""
    if not isinstance(target, str) or node.session._fixturemanager.getfixturedefs(target, node):
        return None
    return f"no fixture named {target!r} ({role} 'fixture:{target}'); define it in a conftest.py"


class Schedule:
    """Which eval items this process runs after a given one: the items whose target calls may start early.

    - Without xdist, and on a worker of ``--dist each``, the process runs
      ``session.items`` in order: an item's lookahead is the eval items after it.
    - On a worker of ``--dist loadscope`` or ``loadfile``, and of ``loadgroup`` when it
      groups, the items of one eval and variant all run on the worker that runs any of
      them, in collection order: an item's lookahead is the rest of its eval and variant.
    - Other modes (``load``, ``worksteal``) hand items to workers a few at a time and
      may take pending ones back: only pytest's ``nextitem`` is sure to run here.

    Starting a call for an item that another process runs would call the target twice.
    """

    def __init__(self, items: list[pytest.Item], mode: str) -> None:
        self.mode = mode
        self._sequences: dict[Any, list[EvalItem]] = {}
        self._positions: dict[EvalItem, int] = {}
        self._may_skip: dict[EvalItem, bool] = {}
        evals = [item for item in items if isinstance(item, EvalItem)]
        #: Whether any eval item's target is called on a thread (not ``echo``): else nothing is fetched ahead.
        self.fetching = any(
            isinstance(target, str) or Runner.fetches(target)
            for plan in {id(item.plan): item.plan for item in evals}.values() for target in plan.targets.values()
        )
        if mode == "next":
            return
        for item in evals:
            sequence = self._sequences.setdefault(self._group(item), [])
            self._positions[item] = len(sequence)
            sequence.append(item)

    def may_skip(self, item: pytest.Item) -> bool:
        """Whether a mark may keep ``item`` from running (``skip``, ``skipif``, ``xfail(run=False)``): its
        calls are not started early, so a skipped case costs nothing."""
        known = self._may_skip.get(item)
        if known is None:
            known = self._may_skip[item] = bool(
                item.get_closest_marker("skip") or item.get_closest_marker("skipif")
                or any(not mark.kwargs.get("run", True) for mark in item.iter_markers("xfail"))
            )
        return known

    @classmethod
    def of(cls, config: pytest.Config, items: list[pytest.Item]) -> Schedule:
        """The schedule of this process: its mode from xdist's ``--dist`` (handed to workers by the controller)."""
        workerinput = getattr(config, "workerinput", None)
        if workerinput is None:
            return cls(items, "all")
        dist = workerinput.get(DIST_KEY)
        if dist == "loadgroup":
            # loadgroup groups by a suffix it appends to node ids, which some pytest versions ignore
            # (pytest-xdist issue #1386): trust it only when the suffix is there.
            evals = [item for item in items if isinstance(item, EvalItem)]
            grouped = all(item.nodeid.endswith(f"@{item.xdist_group}") for item in evals)  # no other group either
            return cls(items, "group" if grouped else "next")
        return cls(items, "group" if dist in GROUPING_DIST_MODES else "all" if dist == "each" else "next")

    def _group(self, item: EvalItem) -> Any:
        return (item.plan.loaded.name, item.variant.name) if self.mode == "group" else None

    def ahead(self, item: EvalItem, count: int) -> list[EvalItem]:
        """Up to ``count`` eval items this process runs after ``item``, nearest first."""
        if self.mode == "next":
            nextitem = item.stash.get(NEXT_ITEM, None)
            return [nextitem] if isinstance(nextitem, EvalItem) else []
        position = self._positions.get(item)
        if position is None:
            return []
        return self._sequences[self._group(item)][position + 1:position + 1 + count]


class VariantNode(pytest.Collector):
    """One variant of an eval: collects one item per case."""

    def __init__(self, *, plan: EvalPlan, variant: LoadedVariant, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.variant = variant

    def collect(self) -> Iterator[EvalItem]:
        fixtureinfo = None  # the same for every case: the same parents and markers ask for the same fixtures
        for case in self.plan.loaded.cases:
            item = EvalItem.from_parent(
                self, name=case.id, plan=self.plan, variant=self.variant, case=case, fixtureinfo=fixtureinfo
            )
            fixtureinfo = item._fixtureinfo
            yield item


class CaseFailed(Exception):
    """Raised by ``runtest`` for a case whose required graders failed."""


class EvalItem(pytest.Item):
    """One case under one variant."""

    def __init__(
        self, *, plan: EvalPlan, variant: LoadedVariant, case: LoadedCase, fixtureinfo: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.variant = variant
        self.case = case
        self.result: CaseResult | None = None
        self.extra_keyword_matches.update(case.tags)
        #: The ``xdist_group`` of the item under ``--dist loadgroup``: its eval and variant stay on one worker.
        self.xdist_group = f"{plan.loaded.name}:{variant.name}"
        workerinput = getattr(self.config, "workerinput", None)
        if workerinput is not None and workerinput.get(DIST_KEY) == "loadgroup":
            self.add_marker(pytest.mark.xdist_group(self.xdist_group))
        # Fixture support, as pytest's DoctestItem does it: autouse fixtures apply,
        # and fixture targets are looked up by name at setup. ``fixtureinfo``: a sibling's (VariantNode.collect).
        self.obj = None
        self.funcargs: dict[str, Any] = {}
        self._fixtureinfo = fixtureinfo or self.session._fixturemanager.getfixtureinfo(node=self, func=None, cls=None)
        self.fixturenames = self._fixtureinfo.names_closure
        self._request = TopRequest(self, _ispytest=True)  # type: ignore[arg-type]

    # -- the pytest protocol

    def setup(self) -> None:
        if self.fixturenames:  # nothing to fill when no autouse fixture applies (a fixture target is looked up later)
            self._request._fillfixtures()
        try:
            self.result = self._measure()
            return
        except (TargetError, GraderFailed) as exc:
            error = str(exc)
        # Failed outside the except block, so the report shows the summary alone, not the exception chain.
        self.result = self._error_result(error)
        pytest.fail(error, pytrace=False)

    def runtest(self) -> None:
        assert self.result is not None
        if not self.result.passed:
            raise CaseFailed()

    def teardown(self) -> None:
        self.result = None  # it is on the reports by now; kept, 10000 items would hold 10 MB of them

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CaseFailed) and self.result is not None:
            return "\n".join(failure_lines(self.result, self.plan.loaded.spec.repeat_pass))
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, (self.case.line - 1 if self.case.line else None), f"{self.plan.loaded.name}::{self.variant.name}::{self.case.id}"

    # -- measuring

    def _measure(self) -> CaseResult:
        target = self.plan.targets[self.variant.name]
        if isinstance(target, str):
            if self.variant.name not in self.plan.fixture_scopes:
                fixturedefs = self.session._fixturemanager.getfixturedefs(target, self) or ()
                self.plan.fixture_scopes[self.variant.name] = fixturedefs[-1].scope if fixturedefs else "function"
            target = self._fixture_target(target, tuple(self.variant.prompts))
        state = get_state(self.config)
        runner = state.runner()

        def judge(spec: Any, prompt: Any, ask: int = 1) -> Any:
            return runner.judge(spec, prompt, self.plan.prices, lambda name: self._fixture_target(name, ("judge",)), ask)

        ahead = self._lookahead(state, target, runner.lookahead) if runner.lookahead else ()
        return runner.measure(self.plan.job(self.variant, self.case), target, judge, ahead)

    def _lookahead(self, state: State, target: Target, count: int) -> Iterator[tuple[Any, Target]]:
        """The jobs and targets of the items this process runs next whose calls may start now.

        A ``fixture:`` target's value is known only for this item's own eval and
        variant, and stands for the items after it only when eval items share it
        (:data:`SHARED_FIXTURE_SCOPES`); the others are called in their own turn.
        """
        if state.schedule is None:
            state.schedule = Schedule.of(self.config, self.session.items)
        schedule, runner = state.schedule, state.runner()
        if not schedule.fetching:
            return
        for other in schedule.ahead(self, count):
            other_target = other.plan.targets[other.variant.name]
            if isinstance(other_target, str):
                if other.plan is not self.plan or other.variant is not self.variant:
                    continue
                if self.plan.fixture_scopes.get(self.variant.name) not in SHARED_FIXTURE_SCOPES:
                    continue
                other_target = target
            if (runner.fetches(other_target) and not runner.started(other.plan.loaded.name, other.variant.name, other.case.id)
                    and not schedule.may_skip(other)):
                yield other.plan.job(other.variant, other.case), other_target

    def _fixture_target(self, name: str, prompt_names: tuple[str, ...]) -> Target:
        value = self._request.getfixturevalue(name)
        if not callable(value):
            raise TargetError(f"fixture {name!r} (target 'fixture:{name}') gave a {type(value).__name__}; it must give a callable")
        last = self.plan.last_fixture_target
        if last is not None and last.fn is value and last.prompt_names == prompt_names:
            return last  # a session fixture gives every item the same value: wrap it once
        self.plan.last_fixture_target = CallableTarget(value, f"fixture:{name}", prompt_names)
        return self.plan.last_fixture_target

    def _error_result(self, error: str) -> CaseResult:
        return CaseResult(
            eval=self.plan.loaded.name, variant=self.variant.name, case_id=self.case.id, passed=False, score=None,
            error=error, vars=dict(self.case.vars), expected=self.case.expected, tags=self.case.tags,
            labels=self.plan.job(self.variant, self.case).labels(),
        )

    def result_for_report(self, when: str, excinfo: pytest.ExceptionInfo[BaseException] | None) -> CaseResult | None:
        """The result to attach to this phase's report: one per item, on setup (errors) or call."""
        if when == "setup" and excinfo is not None and not excinfo.errisinstance(pytest.skip.Exception):
            if self.result is None or self.result.error is None:  # a fixture broke before the target ran
                self.result = self._error_result(describe_exception("setup", excinfo.value))
            return self.result
        if when == "call":
            return self.result
        return None


def failure_lines(result: CaseResult, repeat_pass: float) -> list[str]:
    """A few lines that say why a case failed: vars, expected, output, failed graders."""
    failing = next((run for run in result.runs if not run.passed), result.runs[0])
    lines = [f"case {result.case_id} (variant {result.variant}) failed"]
    if len(result.runs) > 1:
        lines[0] += f": {result.runs_passed}/{len(result.runs)} runs passed, needs {repeat_pass:.0%}" + (
            " (flaky)" if result.flaky else ""
        )
    lines.append(f"  vars:     {cut(template.as_text(result.vars), 200)}")
    if result.expected is not None:
        lines.append(f"  expected: {cut(template.as_text(result.expected), 200)}")
    lines.append(f"  output:   {cut(failing.output, SHOWN_OUTPUT_CHARS)!r}")
    for grader in failing.graders:
        if not grader.passed:
            mode = f" [{grader.failure_mode}]" if grader.failure_mode else ""
            optional = " (not required)" if not grader.required else ""
            lines.append(f"  FAILED {grader.name}{mode}{optional}: {grader.reason}")
    lines += label_lines(result.labels, {run.output_sha for run in result.runs})
    return lines


def label_lines(labels: Iterable[dict[str, Any]], shas: set[str | None]) -> list[str]:
    """What people said of the case (its labels file): a line each, saying whether it is about this very output."""
    lines = []
    for label in labels:
        sha = label.get("output_sha")
        about = " (this output)" if sha and sha in shas else " (an earlier output)" if sha else ""
        lines.append(f"  LABEL {label_text(label, about, limit=200)}")
    return lines

